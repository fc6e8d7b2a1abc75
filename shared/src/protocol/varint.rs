//! The integer encoding of the wire, identical to bincode 1.3's `VarintEncoding` so that a
//! client needs one routine for both the bincode-framed messages and the hand-packed state
//! block: an unsigned value `u` is one byte if `u < 251`, else a marker byte (251: `u16`
//! follows, 252: `u32`, 253: `u64`) and the value little-endian. Signed values are
//! zigzag-mapped first (`0, -1, 1, -2, ...` to `0, 1, 2, 3, ...`).

use super::codec::DecodeError;

const U16_MARKER: u8 = 251;
/// Values below this are one byte.
pub const ONE_BYTE_VARINT_END: u64 = U16_MARKER as u64;
const U32_MARKER: u8 = 252;
const U64_MARKER: u8 = 253;

/// Appends `v` to `out`.
#[inline(always)]
pub fn write_u64(out: &mut Vec<u8>, v: u64) {
    // Inlined for the one-byte case, by far the commonest in state blocks.
    if v < u64::from(U16_MARKER) {
        out.push(v as u8);
    } else {
        write_u64_long(out, v);
    }
}

/// [`write_u64`] of a value of more than one byte.
#[inline(never)]
fn write_u64_long(out: &mut Vec<u8>, v: u64) {
    if let Ok(v) = u16::try_from(v) {
        out.push(U16_MARKER);
        out.extend_from_slice(&v.to_le_bytes());
    } else if let Ok(v) = u32::try_from(v) {
        out.push(U32_MARKER);
        out.extend_from_slice(&v.to_le_bytes());
    } else {
        out.push(U64_MARKER);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Appends the zigzag encoding of `v` to `out`.
#[inline(always)]
pub fn write_i64(out: &mut Vec<u8>, v: i64) {
    write_u64(out, zigzag(v));
}

/// Zigzag: small magnitudes of either sign become small unsigned values.
#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
pub fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// A cursor over untrusted bytes. Every read is bounds-checked and returns
/// [`DecodeError`] instead of panicking.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let slice = self
            .bytes
            .get(self.pos..end)
            .ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// A varint. Non-canonical encodings (a marker where a shorter form fits) are
    /// rejected, as bincode does, so every value has exactly one encoding.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        let first = self.u8()?;
        let (v, min) = match first {
            U16_MARKER => {
                let b = self.take(2)?;
                (
                    u64::from(u16::from_le_bytes([b[0], b[1]])),
                    u64::from(U16_MARKER),
                )
            }
            U32_MARKER => {
                let b = self.take(4)?;
                (
                    u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    1 << 16,
                )
            }
            U64_MARKER => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                (u64::from_le_bytes(a), 1 << 32)
            }
            b if b < U16_MARKER => return Ok(u64::from(b)),
            _ => return Err(DecodeError::BadVarint),
        };
        if v < min {
            return Err(DecodeError::BadVarint);
        }
        Ok(v)
    }

    /// A zigzag varint.
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(unzigzag(self.u64()?))
    }

    /// A varint that must fit `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.u64()?).map_err(|_| DecodeError::OutOfRange)
    }

    /// A zigzag varint that must fit `i32`.
    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        i32::try_from(self.i64()?).map_err(|_| DecodeError::OutOfRange)
    }

    /// A count that must not exceed `max`.
    pub fn count(&mut self, max: usize) -> Result<usize, DecodeError> {
        let n = self.u64()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= max)
            .ok_or(DecodeError::TooMany { max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips_and_matches_bincode(v: u64, s: i64) {
            let mut out = Vec::new();
            write_u64(&mut out, v);
            write_i64(&mut out, s);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.u64().unwrap(), v);
            prop_assert_eq!(r.i64().unwrap(), s);
            prop_assert_eq!(r.remaining(), 0);
            // Same bytes as bincode's varint encoding.
            use bincode::Options;
            let opts = bincode::DefaultOptions::new().with_varint_encoding();
            let mut expect = opts.serialize(&v).unwrap();
            expect.extend(opts.serialize(&s).unwrap());
            prop_assert_eq!(out, expect);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes: Vec<u8>) {
            let mut r = Reader::new(&bytes);
            while r.remaining() > 0 {
                if r.u64().is_err() { break; }
            }
        }
    }

    #[test]
    fn non_canonical_forms_are_rejected() {
        assert!(Reader::new(&[251, 5, 0]).u64().is_err());
        assert!(Reader::new(&[252, 1, 0, 0, 0]).u64().is_err());
        assert!(Reader::new(&[254]).u64().is_err());
        assert!(Reader::new(&[251, 1]).u64().is_err()); // truncated
    }
}
