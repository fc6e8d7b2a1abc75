//! Reading and writing control-stream frames on QUIC streams (feature `quic`). The only
//! async code in this crate; everything it decodes goes through [`super::codec`].

use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::mpsc;

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

/// Frames of one stream, read by their own task: `read_exact` is not cancel-safe, so a
/// `select!` must never poll [`read_frame`] directly; [`FrameReader::recv`] is. Frames
/// arrive in order; the first error is delivered and ends the stream. At most
/// `queue_len` frames wait unread (then the task stops reading and QUIC flow control
/// holds the peer back). Dropping the reader stops its task.
#[derive(Debug)]
pub struct FrameReader<T> {
    // Boxed: frames are few, and a channel allocates room for 32 of its items at once
    // whatever its bound, so an unboxed item costs every connection 32 times its size.
    frames: mpsc::Receiver<Box<Result<T, FrameError>>>,
    task: tokio::task::JoinHandle<()>,
}

impl<T: DeserializeOwned + Send + 'static> FrameReader<T> {
    /// Starts reading `recv` on a task of the current runtime.
    pub fn spawn(mut recv: quinn::RecvStream, queue_len: usize) -> FrameReader<T> {
        let (tx, frames) = mpsc::channel(queue_len);
        let task = tokio::spawn(async move {
            loop {
                let frame = read_frame::<T>(&mut recv).await;
                let end = frame.is_err();
                if tx.send(Box::new(frame)).await.is_err() || end {
                    break;
                }
            }
        });
        FrameReader { frames, task }
    }

    /// The next frame (cancel-safe); `None` once the stream ended after its error.
    pub async fn recv(&mut self) -> Option<Result<T, FrameError>> {
        self.frames.recv().await.map(|frame| *frame)
    }

    /// A frame already read, if any.
    pub fn try_recv(&mut self) -> Option<Result<T, FrameError>> {
        self.frames.try_recv().ok().map(|frame| *frame)
    }
}

impl<T> Drop for FrameReader<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}
