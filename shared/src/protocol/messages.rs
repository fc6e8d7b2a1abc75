//! The messages. Names end in `C2s` (client to server) or `S2c` (server to client). Field
//! order is the wire order (bincode writes fields in declaration order): never reorder,
//! only append new enum variants at the end, and bump [`super::PROTOCOL_VERSION`] for
//! anything else.

use serde::{Deserialize, Serialize};

use crate::ids::{NetId, PlayerId, RegionId};

/// Control stream, client to server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ControlC2s {
    /// The first message on a connection.
    Hello(HelloC2s),
    /// The player logs out; the server saves, answers `Bye`, and closes.
    Logout,
    /// Buys from a shop: answered with `TxResult` (then `Economy` if applied).
    Buy(BuyC2s),
    /// Refunds one of the player's purchases: answered like `Buy`.
    Refund(RefundC2s),
    /// Asks for the player's economy: answered with `Economy`.
    GetEconomy,
    /// Offers another player a trade: answered like `Buy`; the other player, wherever in
    /// the cluster, is sent `TradeOffered`.
    TradeOffer(TradeOfferC2s),
    /// Accepts an open offer made to the player: answered like `Buy`.
    TradeAccept(TradeAcceptC2s),
    /// Withdraws one of the player's own open offers: answered like `Buy`.
    TradeCancel(TradeCancelC2s),
    /// A chat message: answered with `Reply`; its recipients are sent `Chat`.
    Chat(ChatC2s),
    /// A slash command (`/who`, `/w`, `/buy`, `/trade`, `/inventory`, `/top`, `/help`):
    /// answered with `Reply` (and, for an economy command, what its request is answered
    /// with).
    Command(CommandC2s),
    /// Asks for the top of a leaderboard and the player's standing: answered with
    /// `Leaderboard` (or a `Reply` refusing it, id 0).
    GetLeaderboard(GetLeaderboardC2s),
}

/// What a leaderboard ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaderboardKind {
    /// 0: Experience gained.
    Xp,
    /// 1: NPCs killed.
    Kills,
    /// 2: Coins held.
    Coins,
}

/// A leaderboard request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetLeaderboardC2s {
    /// Which.
    pub board: LeaderboardKind,
    /// How many of its top: 1 to [`super::limits::LEADERBOARD_TOP_MAX`].
    pub count: u8,
}

/// A player's place on a leaderboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandingS2c {
    /// 1 for the highest score (ties: the lower player id first).
    pub rank: u64,
    /// The player.
    pub player: PlayerId,
    /// Its score.
    pub score: u64,
}

/// The top of a leaderboard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderboardS2c {
    /// Which.
    pub board: LeaderboardKind,
    /// Its first entries, by rank.
    pub top: Vec<StandingS2c>,
    /// The player's own standing, if it is on it.
    pub you: Option<StandingS2c>,
}

/// Where a chat message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChatChannel {
    /// 0: The players of the speaker's region within `[chat] say_radius_m`.
    Say,
    /// 1: Every player of the speaker's region.
    Region,
    /// 2: Every player of the cluster.
    Global,
    /// 3: One player, wherever in the cluster (its id).
    Whisper(PlayerId),
}

/// A chat message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatC2s {
    /// Chosen by the client, echoed in the `Reply`.
    pub id: u32,
    /// Where it goes.
    pub channel: ChatChannel,
    /// The text: 1 to [`super::limits::CHAT_TEXT_BYTES_MAX`] bytes of UTF-8, not only
    /// spaces, without control or bidirectional-override characters.
    pub text: String,
}

/// A slash command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandC2s {
    /// Chosen by the client, echoed in the `Reply`.
    pub id: u32,
    /// The line as typed, `/` first: at most [`super::limits::COMMAND_LINE_BYTES_MAX`]
    /// bytes, the same characters as chat.
    pub line: String,
}

/// Coins and items (a side of a trade).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Goods {
    /// Coins.
    pub coins: u64,
    /// Items, each at most once, counts at least 1; at most
    /// [`super::limits::TRADE_ITEM_KINDS_MAX`] kinds.
    pub items: Vec<ItemCount>,
}

/// A trade offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeOfferC2s {
    /// The offer's idempotency key (as [`BuyC2s::key`]); the other player accepts it by
    /// this key.
    pub key: String,
    /// The player it is made to.
    pub with: PlayerId,
    /// What the offering player gives.
    pub give: Goods,
    /// What it receives.
    pub take: Goods,
    /// How long it stays open, in milliseconds: 1 to
    /// [`super::limits::OFFER_TTL_MAX_MS`].
    pub ttl_ms: u32,
}

/// The acceptance of an offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeAcceptC2s {
    /// The acceptance's own idempotency key.
    pub key: String,
    /// Who made the offer.
    pub from: PlayerId,
    /// The offer's key.
    pub offer: String,
}

/// The withdrawal of an offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeCancelC2s {
    /// The withdrawal's own idempotency key.
    pub key: String,
    /// The offer's key.
    pub offer: String,
}

/// A purchase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuyC2s {
    /// The idempotency key, chosen by the client: 1 to [`super::limits::TX_KEY_BYTES_MAX`]
    /// bytes of `A-Z a-z 0-9 _ - . :`, unique per player. A request sent again with the
    /// same key (after a lost answer or a reconnect) is applied once.
    pub key: String,
    /// The shop's id (`[shops.ID]` of balance.toml).
    pub shop: String,
    /// The item's id.
    pub item: String,
    /// How many, at least 1.
    pub count: u32,
}

/// A refund of a purchase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundC2s {
    /// The refund's own idempotency key (as [`BuyC2s::key`]).
    pub key: String,
    /// The key of the purchase to refund.
    pub purchase: String,
}

/// Login.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HelloC2s {
    /// Must equal the server's [`super::PROTOCOL_VERSION`].
    pub protocol_version: u16,
    /// A JWT (at most [`super::limits::TOKEN_BYTES_MAX`] bytes).
    pub token: String,
    /// A resume or redirect ticket from a previous connection, if any.
    pub ticket: Option<Vec<u8>>,
}

/// Control stream, server to client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ControlS2c {
    /// Login accepted.
    Welcome(WelcomeS2c),
    /// Login or a request refused; see the code.
    Error(ErrorS2c),
    /// Something happened that the client must not miss.
    Event(EventS2c),
    /// The player's region lives on another node: reconnect there with the ticket.
    Redirect(RedirectS2c),
    /// The session ends.
    Kicked(KickedS2c),
    /// Logout acknowledged: the player's state is saved.
    Bye,
    /// A fresh resume ticket, replacing the previous one (sent every
    /// [`super::limits::RESUME_TICKET_REFRESH_S`]). Since protocol version 3.
    ResumeTicket(Vec<u8>),
    /// The outcome of a `Buy` or a `Refund`.
    TxResult(TxResultS2c),
    /// The player's economy: the answer to `GetEconomy`, and sent after each applied
    /// request.
    Economy(EconomyS2c),
    /// Another player offered this player a trade (wherever in the cluster each is).
    TradeOffered(TradeOfferedS2c),
    /// A chat message for this player.
    Chat(ChatS2c),
    /// The answer to a `Chat` or a `Command`.
    Reply(ReplyS2c),
    /// The answer to `GetLeaderboard`.
    Leaderboard(LeaderboardS2c),
}

/// A chat message as its recipients receive it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatS2c {
    /// Where it was sent: for a whisper, `Whisper(recipient)`.
    pub channel: ChatChannel,
    /// Who sent it.
    pub from: PlayerId,
    /// The sender's display name (its token's `name`; empty if none), at most
    /// [`super::limits::PLAYER_NAME_BYTES_MAX`] bytes.
    pub from_name: String,
    /// The text.
    pub text: String,
}

/// The answer to a `Chat` or a `Command`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyS2c {
    /// The request's id.
    pub id: u32,
    /// Why it was refused (nothing was sent or done); `None`: done.
    pub refused: Option<RefusedS2c>,
    /// For people: a command's output (at most [`super::limits::REPLY_TEXT_BYTES_MAX`]
    /// bytes), or empty.
    pub text: String,
}

/// A trade offered to the player.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeOfferedS2c {
    /// Who offers it.
    pub from: PlayerId,
    /// The offer's key, to accept it with (`TradeAccept`).
    pub offer: String,
    /// What the offering player gives (this player receives).
    pub give: Goods,
    /// What it asks for (this player gives).
    pub take: Goods,
    /// Until when it may be accepted (Unix milliseconds, the node's clock).
    pub open_until_ms: u64,
}

/// The outcome of an economy request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxResultS2c {
    /// The request's key.
    pub key: String,
    /// What happened.
    pub outcome: TxOutcomeS2c,
}

/// What happened to an economy request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxOutcomeS2c {
    /// 0: Applied now.
    Applied,
    /// 1: The key was applied before (a repeated request): nothing changed now.
    Duplicate,
    /// 2: Refused: nothing changed.
    Refused(RefusedS2c),
}

/// Why an economy request changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedS2c {
    /// The reason, for programs.
    pub code: RefusalCode,
    /// For people (at most [`super::limits::TEXT_BYTES_MAX`] bytes).
    pub message: String,
    /// When set, the request may succeed if sent again (same key) after this many
    /// milliseconds.
    pub retry_after_ms: Option<u32>,
}

/// Refusal codes of economy, chat and command requests; the numbers are the wire values, new codes only
/// appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalCode {
    /// 0: A field is out of its bounds (a bad key, a count of 0, a name too long).
    BadRequest,
    /// 1: No such shop.
    UnknownShop,
    /// 2: No such item.
    UnknownItem,
    /// 3: The shop does not sell the item.
    NotSold,
    /// 4: Not enough coins.
    InsufficientCoins,
    /// 5: Not enough of an item.
    InsufficientItems,
    /// 6: The shop has too few in stock.
    OutOfStock,
    /// 7: The inventory has no room.
    InventoryFull,
    /// 8: The wallet would hold too many coins.
    WalletFull,
    /// 9: No purchase of this player has that key.
    NotRefundable,
    /// 10: The purchase was refunded already.
    AlreadyRefunded,
    /// 11: Too many requests: retry after `retry_after_ms`.
    RateLimited,
    /// 12: The economy could not answer now (its store): retry with the same key.
    Unavailable,
    /// 13: No open offer with that key to accept or withdraw (never made, accepted,
    /// withdrawn or expired).
    OfferNotOpen,
    /// 14: The player is muted: no chat until the mute ends.
    Muted,
    /// 15: The message holds a blocked word.
    Moderated,
    /// 16: The player named is not in the world (a whisper's target, a trade's partner).
    PlayerNotFound,
    /// 17: No such command (`/help` lists them).
    UnknownCommand,
}

/// A player's economy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EconomyS2c {
    /// Coins.
    pub coins: u64,
    /// Items held, sorted by id, no zero counts; at most
    /// [`crate::config::INVENTORY_SLOTS_MAX`] kinds.
    pub items: Vec<ItemCount>,
    /// Experience gained, all of it.
    pub xp: u64,
    /// The level.
    pub level: u32,
}

/// An amount of one item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemCount {
    /// The item's id (`[items.ID]` of balance.toml).
    pub item: String,
    /// How many.
    pub count: u32,
}

/// The session's parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WelcomeS2c {
    /// Session id, for logs and support.
    pub session: u64,
    /// The authenticated player.
    pub player: PlayerId,
    /// The player's avatar.
    pub entity: NetId,
    /// The region it is in.
    pub region: RegionId,
    /// The server's current tick.
    pub tick: u64,
    /// Ticks per second.
    pub tick_hz: u16,
    /// A ticket to resume this session after a dropped connection.
    pub resume_ticket: Vec<u8>,
    /// Archetype names by archetype number (the `archetype` of state entities): the
    /// names of `balance.toml` sorted ascending by their bytes, at most
    /// [`crate::config::ARCHETYPES_MAX`]. Since protocol version 3.
    pub archetypes: Vec<String>,
}

/// Error codes. On the wire an enum is its variant index (a varint, in declaration order),
/// so the numbers in the comments are the wire values: stable, clients switch on them,
/// new codes only appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// 0: `protocol_version` is not supported.
    VersionMismatch,
    /// 1: The token is malformed or its signature or algorithm is wrong.
    BadToken,
    /// 2: The token has expired.
    TokenExpired,
    /// 3: The token is for another audience or issuer.
    WrongAudience,
    /// 4: The node is at its connection or player limit; retry later.
    ServerFull,
    /// 5: Too many requests; retry later.
    RateLimited,
    /// 6: A message could not be decoded or broke the protocol.
    Malformed,
    /// 7: The player's region is not available (moving, or failed); retry later.
    RegionUnavailable,
    /// 8: A ticket was unknown or expired.
    BadTicket,
    /// 9: The player is banned.
    Banned,
    /// 10: A server fault.
    Internal,
    /// 11: The client's QUIC connection cannot carry the protocol's datagrams (it did not
    /// send the `max_datagram_frame_size` transport parameter, or a too small one).
    /// Since protocol version 3.
    UnsupportedTransport,
}

/// A refusal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorS2c {
    /// What went wrong.
    pub code: ErrorCode,
    /// For people (at most [`super::limits::TEXT_BYTES_MAX`] bytes).
    pub message: String,
    /// When set, the client may retry after this many milliseconds.
    pub retry_after_ms: Option<u32>,
}

/// A reliable game event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EventS2c {
    /// `attacker` hit `target` for `amount`.
    Damage {
        /// Who hit.
        attacker: NetId,
        /// Who was hit.
        target: NetId,
        /// Health removed.
        amount: f32,
    },
    /// `entity` died.
    Death {
        /// Who died.
        entity: NetId,
    },
    /// The player's avatar respawned.
    Respawn,
    /// A message from the game's operators, to show the player (at most
    /// [`super::limits::TEXT_BYTES_MAX`] bytes). Since protocol version 2.
    Message {
        /// The text.
        text: String,
    },
}

/// Go to another node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RedirectS2c {
    /// `host:port` of the node that now holds the player.
    pub addr: String,
    /// Present it in `HelloC2s::ticket` there.
    pub ticket: Vec<u8>,
}

/// Why a session ended (wire values in the comments, as for [`ErrorCode`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KickReason {
    /// 0: The same player logged in on another connection.
    LoggedInElsewhere,
    /// 1: An operator removed the player.
    Admin,
    /// 2: The client broke the protocol (malformed messages, floods).
    ProtocolViolation,
    /// 3: The node is shutting down.
    Shutdown,
    /// 4: The client fell too far behind.
    TooSlow,
}

/// The session ends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KickedS2c {
    /// Why.
    pub reason: KickReason,
    /// For people.
    pub message: String,
}

/// Datagram, client to server: the newest input and the previous ones repeated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputC2s {
    /// Sequence number of `frames[0]`; `frames[i]` has `seq - i`.
    pub seq: u32,
    /// The newest state tick the client has applied (0: none): the server's delta baseline.
    pub ack_tick: u64,
    /// Newest first, 1 to [`super::limits::INPUT_FRAMES_MAX`].
    pub frames: Vec<InputFrame>,
}

/// One tick's worth of input.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputFrame {
    /// Desired displacement since the previous input, in 1/1024 m per axis
    /// ([`super::quantize::INPUT_UNITS_PER_M`]).
    pub move_q: [i16; 2],
    /// Attack this entity.
    pub attack: Option<NetId>,
}

/// Datagram (or unidirectional stream), server to client: the visible world at `tick`,
/// delta-encoded against the client's state at `baseline_tick`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateS2c {
    /// The tick this state describes.
    pub tick: u64,
    /// The state it is relative to; 0 for a keyframe (relative to nothing).
    pub baseline_tick: u64,
    /// The packed delta (PROTOCOL.md, "State block").
    pub block: Vec<u8>,
}
