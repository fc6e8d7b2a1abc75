//! The world hash: a 64-bit digest of everything that determines future ticks.
//!
//! FNV-1a is written out here rather than taken from a crate because the exact function
//! must never change under us: hashes are compared across runs, builds and machines, and
//! `std`'s `DefaultHasher` explicitly does not promise that.

/// FNV-1a, 64-bit. Not for hash maps (no DoS resistance): for stable digests only.
#[derive(Clone, Copy, Debug)]
pub struct Fnv1a(u64);

impl Fnv1a {
    /// A hasher at the FNV offset basis.
    #[allow(clippy::new_without_default)] // A `Default` would hide the fixed basis.
    pub fn new() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    /// Feeds bytes.
    pub fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Feeds a `u64`, little-endian.
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// Feeds a `u32`, little-endian.
    pub fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }

    /// Hashes the bit pattern, so `-0.0` and `0.0` differ (they can lead to different
    /// futures only in theory, but a determinism check should be strict).
    pub fn f32(&mut self, v: f32) {
        self.u32(v.to_bits());
    }

    /// The digest.
    pub fn finish(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_reference_vectors() {
        let mut h = Fnv1a::new();
        h.bytes(b"");
        assert_eq!(h.finish(), 0xcbf29ce484222325);
        let mut h = Fnv1a::new();
        h.bytes(b"a");
        assert_eq!(h.finish(), 0xaf63dc4c8601ec8c);
        let mut h = Fnv1a::new();
        h.bytes(b"foobar");
        assert_eq!(h.finish(), 0x85944171f73967e8);
    }
}
