//! Every size the protocol bounds, in one place. PROTOCOL.md ("Limits") lists the same
//! values; a peer exceeding one is disconnected.

/// Largest datagram either side sends or accepts: fits a 1280-byte IPv6 minimum MTU after
/// QUIC and UDP/IP headers.
pub const DATAGRAM_BYTES_MAX: usize = 1_200;
/// Largest control-stream frame body.
pub const CONTROL_FRAME_BYTES_MAX: usize = 16 * 1024;
/// Largest login token.
pub const TOKEN_BYTES_MAX: usize = 4_096;
/// Largest resume or redirect ticket.
pub const TICKET_BYTES_MAX: usize = 512;
/// Largest human-readable text (error and kick messages).
pub const TEXT_BYTES_MAX: usize = 512;
/// Input frames in one input datagram: the newest and up to three repeated for loss.
pub const INPUT_FRAMES_MAX: usize = 4;
/// Entities in one state (its block); the server's `visible_entities_max` must not exceed it.
pub const STATE_ENTITIES_MAX: usize = 65_536;
/// Largest state message sent on a unidirectional stream when it does not fit a datagram.
pub const STATE_STREAM_BYTES_MAX: usize = 1024 * 1024;
/// Baselines a sender keeps per client, and a receiver keeps: at 20 Hz, 1.6 s of acks.
pub const BASELINES_MAX: usize = 32;
