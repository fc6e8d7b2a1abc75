//! The client protocol, sans-IO: messages, their encoding, quantization and the per-client
//! delta encoding of state. PROTOCOL.md in the repository root is the normative spec;
//! this module implements it and its tests hold the two together.
//!
//! Channels: a QUIC connection with ALPN [`ALPN`]; one bidirectional control stream opened
//! by the client (length-prefixed bincode frames: [`codec::encode_frame`]); datagrams for
//! inputs ([`messages::InputC2s`]) and states ([`messages::StateS2c`]).

pub mod codec;
pub mod delta;
#[cfg(feature = "quic")]
pub mod io;
pub mod limits;
pub mod messages;
pub mod quantize;
pub mod varint;

/// The QUIC ALPN identifier of this protocol.
pub const ALPN: &[u8] = b"tessera/1";

/// Bumped on any incompatible change; the server refuses other versions with
/// [`messages::ErrorCode::VersionMismatch`].
pub const PROTOCOL_VERSION: u16 = 1;

#[cfg(test)]
mod tests;
