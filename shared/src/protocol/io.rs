//! Reading and writing control-stream frames on QUIC streams (feature `quic`). The only
//! async code in this crate; everything it decodes goes through [`super::codec`].

use serde::{Serialize, de::DeserializeOwned};

use super::codec::{self, DecodeError, EncodeError, FRAME_HEADER_BYTES};

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The stream ended or the connection closed.
    #[error("stream closed: {0}")]
    Closed(String),
    /// The bytes were not a valid frame.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The message was too large to send.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Reads one frame. The header is checked against the frame limit before the body is
/// read, so a peer cannot make this allocate more than `CONTROL_FRAME_BYTES_MAX`.
pub async fn read_frame<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
) -> Result<T, FrameError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    recv.read_exact(&mut header)
        .await
        .map_err(|e| FrameError::Closed(e.to_string()))?;
    let len = codec::frame_body_len(header)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| FrameError::Closed(e.to_string()))?;
    Ok(codec::decode_frame_body(&body)?)
}

/// Writes one frame.
pub async fn write_frame<T: Serialize>(
    send: &mut quinn::SendStream,
    msg: &T,
) -> Result<(), FrameError> {
    let frame = codec::encode_frame(msg)?;
    send.write_all(&frame)
        .await
        .map_err(|e| FrameError::Closed(e.to_string()))
}
