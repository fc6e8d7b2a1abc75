//! Encoding and decoding of whole messages: bincode 1.3 with explicit options and a size
//! limit on every decode, and the length-prefixed framing of the control stream.
//!
//! Options (PROTOCOL.md, "Encoding"): little-endian, varint integers, trailing bytes
//! rejected, and a byte limit equal to the channel's maximum message size, so that a
//! length field can never make the decoder allocate more than the message could hold.

use bincode::Options;
use serde::{Serialize, de::DeserializeOwned};

use super::limits::{CONTROL_FRAME_BYTES_MAX, DATAGRAM_BYTES_MAX};

/// Why bytes from the network were refused. Never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message ended early.
    #[error("message truncated")]
    Truncated,
    /// A varint with an unknown marker byte or a non-canonical form.
    #[error("malformed variable-length integer")]
    BadVarint,
    /// A value outside its type's or field's range.
    #[error("value out of range")]
    OutOfRange,
    /// A count above its limit.
    #[error("too many items (at most {max})")]
    TooMany {
        /// The limit.
        max: usize,
    },
    /// The message is larger than its channel allows.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Bytes left over after a complete message.
    #[error("trailing bytes after the message")]
    TrailingBytes,
    /// bincode refused the bytes (unknown enum variant, invalid UTF-8, ...).
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A state referred to a baseline the receiver does not have.
    #[error("unknown baseline tick {0}")]
    UnknownBaseline(u64),
    /// A state block that contradicts its baseline (index out of range, ids out of order).
    #[error("inconsistent state: {0}")]
    Inconsistent(&'static str),
}

/// Why a message could not be encoded (a bug or an oversized payload, not bad input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The encoded message would exceed its channel's limit.
    #[error("encoded message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

fn options(limit: usize) -> impl Options {
    bincode::DefaultOptions::new()
        .with_little_endian()
        .with_varint_encoding()
        .reject_trailing_bytes()
        .with_limit(limit as u64)
}

/// Encodes `msg`, refusing results longer than `max` bytes.
pub fn encode<T: Serialize>(msg: &T, max: usize) -> Result<Vec<u8>, EncodeError> {
    // Encode without the limit to report the real size; the types have no unbounded
    // recursion, and callers only encode their own data.
    let bytes = bincode::DefaultOptions::new()
        .with_little_endian()
        .with_varint_encoding()
        .serialize(msg)
        .expect("in-memory serialization of plain data cannot fail");
    if bytes.len() > max {
        return Err(EncodeError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    Ok(bytes)
}

/// Decodes one message of at most `max` bytes from exactly `bytes`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    options(max).deserialize(bytes).map_err(|e| match *e {
        bincode::ErrorKind::Io(ref io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Truncated
        }
        bincode::ErrorKind::SizeLimit => DecodeError::TooLarge {
            len: bytes.len(),
            max,
        },
        bincode::ErrorKind::Custom(ref m) if m.contains("trailing") => DecodeError::TrailingBytes,
        other => DecodeError::Malformed(other.to_string()),
    })
}

/// Encodes a datagram message (at most [`DATAGRAM_BYTES_MAX`]).
pub fn encode_datagram<T: Serialize>(msg: &T) -> Result<Vec<u8>, EncodeError> {
    encode(msg, DATAGRAM_BYTES_MAX)
}

/// Decodes a datagram message.
pub fn decode_datagram<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    decode(bytes, DATAGRAM_BYTES_MAX)
}

/// Length of the control-stream frame header: a `u32` little-endian body length.
pub const FRAME_HEADER_BYTES: usize = 4;

/// Encodes `msg` as one control-stream frame: `u32` LE body length, then the body.
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, EncodeError> {
    let body = encode(msg, CONTROL_FRAME_BYTES_MAX)?;
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Reads a frame header: the body length, refused above [`CONTROL_FRAME_BYTES_MAX`]
/// before any body byte is read or buffered.
pub fn frame_body_len(header: [u8; FRAME_HEADER_BYTES]) -> Result<usize, DecodeError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > CONTROL_FRAME_BYTES_MAX {
        return Err(DecodeError::TooLarge {
            len,
            max: CONTROL_FRAME_BYTES_MAX,
        });
    }
    Ok(len)
}

/// Decodes a control-stream frame body.
pub fn decode_frame_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    decode(body, CONTROL_FRAME_BYTES_MAX)
}
