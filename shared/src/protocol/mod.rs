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
pub const PROTOCOL_VERSION: u16 = 3;

/// QUIC application close codes (PROTOCOL.md section 6). A client reconnects after any
/// close but `REFUSED`, `TAKEN_OVER` and `PROTOCOL_VIOLATION`, which end the session.
pub mod close_code {
    /// Logout, a client leaving, or the node stopping.
    pub const NORMAL: u32 = 0;
    /// No login within the login timeout.
    pub const LOGIN_TIMEOUT: u32 = 1;
    /// The login was refused (an `Error` frame says why).
    pub const REFUSED: u32 = 2;
    /// Another connection took the player over (`Kicked`).
    pub const TAKEN_OVER: u32 = 3;
    /// The client broke the protocol (`Kicked`).
    pub const PROTOCOL_VIOLATION: u32 = 4;
    /// The player went to another node (`Redirect`).
    pub const REDIRECTED: u32 = 5;
}

#[cfg(test)]
mod tests;
