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
/// A session's resume ticket is replaced (`ControlS2c::ResumeTicket`) this often, in
/// seconds; a ticket is valid for 30 s, so the newest one is always valid.
pub const RESUME_TICKET_REFRESH_S: u64 = 10;
/// The smallest datagram payload a connection must be able to carry, in bytes: a client
/// whose `max_datagram_frame_size` transport parameter leaves less (or that sends none)
/// is refused with `UnsupportedTransport`. States that do not fit the connection's
/// current datagram size go on a stream instead.
pub const DATAGRAM_PAYLOAD_BYTES_MIN: usize = 1_024;
/// The `max_datagram_frame_size` a client must advertise at least: a full
/// [`DATAGRAM_BYTES_MAX`] payload plus a DATAGRAM frame's type and length bytes (RFC 9221).
pub const DATAGRAM_FRAME_SIZE_MIN: usize = 1_232;
/// Longest idempotency key of an economy request (`BuyC2s::key`), in bytes. (The node
/// stores it with a prefix of its own, within the ledger's 64 bytes.)
pub const TX_KEY_BYTES_MAX: usize = 48;
/// Longest shop or item id in an economy request, in bytes.
pub const ECONOMY_NAME_BYTES_MAX: usize = crate::config::NAME_CHARS_MAX;
/// Most item kinds on one side of a trade offer.
pub const TRADE_ITEM_KINDS_MAX: usize = 32;
/// Longest time a trade offer stays open, in milliseconds (10 minutes).
pub const OFFER_TTL_MAX_MS: u32 = 600_000;
/// Economy requests of one session waiting for their answer; past it: `RateLimited`.
pub const ECONOMY_REQUESTS_IN_FLIGHT_MAX: usize = 4;
/// Longest chat message text (`ChatC2s::text`), in bytes.
pub const CHAT_TEXT_BYTES_MAX: usize = 256;
/// Longest slash command line (`CommandC2s::line`), in bytes.
pub const COMMAND_LINE_BYTES_MAX: usize = 256;
/// Longest display name a `Chat` message carries, in bytes (a token's `name` claim is cut
/// to it).
pub const PLAYER_NAME_BYTES_MAX: usize = 64;
/// Longest text of a `Reply` (a command's output), in bytes.
pub const REPLY_TEXT_BYTES_MAX: usize = 4_096;
/// Entries of a leaderboard one `GetLeaderboard` may ask for.
pub const LEADERBOARD_TOP_MAX: u8 = 100;
/// Players a `/who` lists at most (it says how many more there are).
pub const WHO_PLAYERS_MAX: usize = 50;

const _: () = assert!(
    // An `Economy` message with every slot a different item of the longest id.
    crate::config::INVENTORY_SLOTS_MAX as usize * (crate::config::NAME_CHARS_MAX + 1 + 5) + 64
        <= CONTROL_FRAME_BYTES_MAX,
    "a full inventory must fit one Economy frame"
);

/// States a receiver keeps to decode against (at 20 Hz, 1.6 s of them): a sender's
/// baseline is never more than `BASELINES_MAX - 1` ticks older than the state it sends.
pub const BASELINES_MAX: usize = 32;
