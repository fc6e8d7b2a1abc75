//! The cross-region event bus contract: what every implementation guarantees, in one place.
//!
//! Two kinds of traffic, with different promises:
//! - **Mail** ([`Mail`]): events that must arrive (handoffs, cross-region messages),
//!   addressed to a region, in three priority [`Lane`]s drained high before normal before
//!   low. Delivery is at least once: a delivery stays pending until acknowledged
//!   ([`EventBus::ack`]); one left unacknowledged for [`BusConfig::reclaim_idle`] is
//!   delivered again (reclaimed), and one delivered [`BusConfig::deliveries_max`] times
//!   without an ack goes to the region's dead letters instead of being delivered again.
//!   Every mail carries an idempotency key: once a key is acknowledged, later mail with the
//!   same key (a sender's retry, a redelivery after a crash) is acknowledged and dropped
//!   without being delivered, for [`BusConfig::done_ttl`].
//! - **Ghosts** ([`EventBus::subscribe_ghosts`]): each tick's border entities of a region,
//!   loss-tolerant (pub/sub). Every message carries the publisher's incarnation and a
//!   per-region sequence number, so a subscriber knows how many it missed ([`Ghost::gap`]).
//!
//! - **Chat** ([`EventBus::publish_chat`], [`EventBus::subscribe_chat`]): the cluster's
//!   chat (global messages and whispers), loss-tolerant (pub/sub) on one channel that
//!   every node reads. Each publisher numbers its messages, so that a subscriber receives
//!   each publisher's in order and knows how many it missed ([`ChatFrame::gap`]).
//!
//! One [`Batch`] per tick carries all of a node's outgoing mail and ghosts and costs one
//! round trip to the bus (pipelined), whatever the number of regions.
//!
//! Limits: [`KEY_BYTES_MAX`], [`MAIL_BYTES_MAX`], [`GHOST_BYTES_MAX`], [`LANE_LEN_MAX`]
//! (a full lane refuses mail: the sender keeps it), [`RECEIVE_MAX`], [`DEAD_LETTERS_MAX`],
//! [`GHOST_QUEUE_LEN_MAX`], [`CHAT_BYTES_MAX`], [`CHAT_QUEUE_LEN_MAX`],
//! [`CHAT_PUBLISHERS_MAX`].

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tessera_shared::ids::RegionId;
use tokio::sync::mpsc;

/// Longest idempotency key, in bytes.
pub const KEY_BYTES_MAX: usize = 128;
/// Largest mail payload, in bytes (a handoff record is a few hundred).
pub const MAIL_BYTES_MAX: usize = 64 * 1024;
/// Largest ghost payload of one region for one tick, in bytes.
pub const GHOST_BYTES_MAX: usize = 256 * 1024;
/// Mail waiting (unread or pending) in one lane of one region; beyond it mail is refused.
pub const LANE_LEN_MAX: usize = 100_000;
/// Most deliveries one [`EventBus::receive`] returns.
pub const RECEIVE_MAX: usize = 1_024;
/// Dead letters kept per region (the oldest are trimmed).
pub const DEAD_LETTERS_MAX: usize = 10_000;
/// Ghost messages queued for a subscriber that has not read them; beyond it they are
/// dropped (and show as a gap).
pub const GHOST_QUEUE_LEN_MAX: usize = 1_024;

/// Largest chat message payload, in bytes.
pub const CHAT_BYTES_MAX: usize = 4 * 1024;
/// Chat messages queued for a subscriber that has not read them; beyond it they are
/// dropped (and show as a gap).
pub const CHAT_QUEUE_LEN_MAX: usize = 4_096;
/// Publishers whose sequence a chat subscriber tracks; past it, it forgets them all (and
/// counts no gap for the next message of each).
pub const CHAT_PUBLISHERS_MAX: usize = 1_024;

/// Priority of mail: a receiver drains `High` before `Normal` before `Low`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// Handoffs and anything a player waits on.
    High,
    /// Ordinary cross-region events.
    Normal,
    /// Bulk, deferrable traffic.
    Low,
}

impl Lane {
    /// All lanes, in drain order.
    pub const ALL: [Lane; 3] = [Lane::High, Lane::Normal, Lane::Low];

    /// The lane's name in keys and logs.
    pub fn name(self) -> &'static str {
        match self {
            Lane::High => "high",
            Lane::Normal => "normal",
            Lane::Low => "low",
        }
    }
}

/// An event that must reach region `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    /// The receiving region.
    pub to: RegionId,
    /// Its priority.
    pub lane: Lane,
    /// The idempotency key (a handoff id, for instance): at most [`KEY_BYTES_MAX`] bytes.
    pub key: String,
    /// The event, opaque to the bus: at most [`MAIL_BYTES_MAX`] bytes.
    pub payload: Vec<u8>,
}

/// One region's ghosts of one tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GhostUpdate {
    /// The publishing region.
    pub region: RegionId,
    /// Its border entities, opaque to the bus: at most [`GHOST_BYTES_MAX`] bytes.
    pub payload: Vec<u8>,
}

/// Everything a node publishes in one tick: one round trip.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// Mail to send.
    pub mail: Vec<Mail>,
    /// Ghosts to publish.
    pub ghosts: Vec<GhostUpdate>,
}

/// What became of a [`Batch`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Published {
    /// The indices (into `Batch::mail`) of mail refused because its lane was full
    /// ([`LANE_LEN_MAX`]): not sent, the caller keeps and retries it.
    pub refused: Vec<usize>,
}

/// Identifies a delivery for [`EventBus::ack`]: opaque.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeliveryId {
    pub(crate) lane: Lane,
    pub(crate) id: String,
}

/// Mail delivered to a region's consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// For [`EventBus::ack`].
    pub id: DeliveryId,
    /// The region it is for.
    pub region: RegionId,
    /// Its lane.
    pub lane: Lane,
    /// Its idempotency key.
    pub key: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// How many times it has been delivered, this one included (1 the first time).
    pub deliveries: u32,
}

/// Mail that was delivered [`BusConfig::deliveries_max`] times and never acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its lane.
    pub lane: Lane,
    /// Its idempotency key.
    pub key: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Deliveries made.
    pub deliveries: u32,
}

/// One ghost message as a subscriber receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ghost {
    /// The publishing region.
    pub region: RegionId,
    /// Its sequence number on the region's channel (from 1 for each publisher incarnation).
    pub seq: u64,
    /// Messages of this channel missed just before this one (0: none). A new publisher
    /// incarnation starts a new sequence and is not a gap.
    pub gap: u64,
    /// The payload.
    pub payload: Vec<u8>,
}

/// One chat message as a subscriber receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatFrame {
    /// The publisher (its incarnation: distinct per process start).
    pub publisher: u64,
    /// Its sequence number from that publisher (from 1).
    pub seq: u64,
    /// Messages of this publisher missed just before this one (0: none).
    pub gap: u64,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Tuning shared by the implementations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusConfig {
    /// A delivery not acknowledged for this long is delivered again.
    pub reclaim_idle: Duration,
    /// Deliveries after which unacknowledged mail goes to the dead letters (N >= 1).
    pub deliveries_max: u32,
    /// How long an acknowledged idempotency key is remembered.
    pub done_ttl: Duration,
    /// The Redis pub/sub channel of [`EventBus::publish_chat`] and
    /// [`EventBus::subscribe_chat`]: loss-tolerant broadcasts to every node, the chat's
    /// (`tessera:chat`), or on a bus of its own the live feed's (`tessera:feed`).
    pub broadcast_channel: &'static str,
}

impl Default for BusConfig {
    /// Reclaim after 30 s, dead letters after 5 deliveries, keys remembered for 1 h.
    fn default() -> Self {
        BusConfig {
            reclaim_idle: Duration::from_secs(30),
            deliveries_max: 5,
            done_ttl: Duration::from_secs(3_600),
            broadcast_channel: "tessera:chat",
        }
    }
}

/// Why a bus operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// A key or payload over its limit.
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bus could not be reached or did not answer in time.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// The bus answered something this code does not understand.
    #[error("bus protocol: {0}")]
    Protocol(String),
}

/// The contract. Every method is bounded in time (implementations time out rather than
/// hang) and in memory (the limits above).
pub trait EventBus: Clone + Send + Sync + 'static {
    /// Sends a tick's mail and publishes its ghosts, in one round trip.
    fn publish(&self, batch: &Batch) -> impl Future<Output = Result<Published, BusError>> + Send;

    /// Up to `max` (capped at [`RECEIVE_MAX`]) deliveries for `region`, high lane first:
    /// reclaimed ones (unacknowledged for `reclaim_idle`) and new ones. Mail delivered
    /// `deliveries_max` times moves to the dead letters instead; mail whose key was already
    /// acknowledged is dropped. `consumer` names the receiving node.
    fn receive(
        &self,
        region: RegionId,
        consumer: &str,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Delivery>, BusError>> + Send;

    /// Acknowledges deliveries: they leave the bus and their keys are remembered as done.
    fn ack(
        &self,
        region: RegionId,
        deliveries: &[Delivery],
    ) -> impl Future<Output = Result<(), BusError>> + Send;

    /// Deliveries of `region` made and not yet acknowledged.
    fn pending(&self, region: RegionId) -> impl Future<Output = Result<u64, BusError>> + Send;

    /// The newest `max` dead letters of `region`, oldest first.
    fn dead_letters(
        &self,
        region: RegionId,
        max: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, BusError>> + Send;

    /// How many dead letters `region` has (at most [`DEAD_LETTERS_MAX`]).
    fn dead_letter_count(
        &self,
        region: RegionId,
    ) -> impl Future<Output = Result<u64, BusError>> + Send;

    /// A feed of the ghosts `regions` publish from now on.
    fn subscribe_ghosts(
        &self,
        regions: &[RegionId],
    ) -> impl Future<Output = Result<GhostFeed, BusError>> + Send;

    /// Publishes chat messages (each at most [`CHAT_BYTES_MAX`] bytes) to every chat
    /// subscriber of the cluster, this process's included, numbered in order: messages of
    /// one call, and of calls one after another, arrive in that order (or are missed).
    fn publish_chat(
        &self,
        payloads: &[Vec<u8>],
    ) -> impl Future<Output = Result<(), BusError>> + Send;

    /// A feed of the chat messages published from now on.
    fn subscribe_chat(&self) -> impl Future<Output = Result<ChatFeed, BusError>> + Send;
}

/// Checks chat payloads against [`CHAT_BYTES_MAX`] before anything is sent.
pub(crate) fn check_chat(payloads: &[Vec<u8>]) -> Result<(), BusError> {
    payloads
        .iter()
        .try_for_each(|p| check_len("a chat message", p.len(), CHAT_BYTES_MAX))
}

/// Checks a batch against the limits before anything is sent.
pub(crate) fn check_batch(batch: &Batch) -> Result<(), BusError> {
    for mail in &batch.mail {
        check_len("an idempotency key", mail.key.len(), KEY_BYTES_MAX)?;
        check_len("a mail payload", mail.payload.len(), MAIL_BYTES_MAX)?;
    }
    for ghost in &batch.ghosts {
        check_len("a ghost payload", ghost.payload.len(), GHOST_BYTES_MAX)?;
    }
    Ok(())
}

fn check_len(what: &'static str, len: usize, max: usize) -> Result<(), BusError> {
    if len > max {
        return Err(BusError::TooLarge { what, len, max });
    }
    Ok(())
}

/// Ghost messages on the wire: publisher incarnation (u64 LE), sequence (u64 LE), payload.
pub(crate) const GHOST_HEADER_BYTES: usize = 16;

/// Frames a ghost message.
pub(crate) fn ghost_frame(incarnation: u64, seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(GHOST_HEADER_BYTES + payload.len());
    frame.extend_from_slice(&incarnation.to_le_bytes());
    frame.extend_from_slice(&seq.to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// A framed message's (publisher incarnation, sequence number, payload); `None` if it is
/// shorter than its header.
fn unframe(frame: &[u8]) -> Option<(u64, u64, &[u8])> {
    let (header, payload) = frame.split_at_checked(GHOST_HEADER_BYTES)?;
    let (incarnation, seq) = header.split_at(8);
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
    Some((word(incarnation), word(seq), payload))
}

/// Per-region sequence numbers of one publisher incarnation.
#[derive(Debug)]
pub(crate) struct GhostSequencer {
    incarnation: u64,
    next: HashMap<RegionId, u64>,
}

impl GhostSequencer {
    pub(crate) fn new(incarnation: u64) -> Self {
        GhostSequencer {
            incarnation,
            next: HashMap::new(),
        }
    }

    /// The framed message for `update`, with the region's next sequence number.
    pub(crate) fn frame(&mut self, update: &GhostUpdate) -> Vec<u8> {
        let seq = self.next.entry(update.region).or_insert(1);
        let frame = ghost_frame(self.incarnation, *seq, &update.payload);
        *seq += 1;
        frame
    }
}

/// A publisher incarnation: distinct per process start (time and pid; not secret).
pub(crate) fn new_incarnation() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// Ghosts of the subscribed regions, in arrival order, with gaps counted.
#[derive(Debug)]
pub struct GhostFeed {
    raw: mpsc::Receiver<(RegionId, Vec<u8>)>,
    /// Per region: (publisher incarnation, last sequence number seen).
    seen: HashMap<RegionId, (u64, u64)>,
    malformed: u64,
    _task: AbortOnDrop,
}

/// Aborts the feed's background task when the feed is dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl GhostFeed {
    /// A feed reading `raw` (region, framed message) from `task`.
    pub(crate) fn new(
        raw: mpsc::Receiver<(RegionId, Vec<u8>)>,
        task: tokio::task::JoinHandle<()>,
    ) -> Self {
        GhostFeed {
            raw,
            seen: HashMap::new(),
            malformed: 0,
            _task: AbortOnDrop(task),
        }
    }

    /// The next ghost message; `None` once the feed has ended for good.
    pub async fn recv(&mut self) -> Option<Ghost> {
        loop {
            let (region, frame) = self.raw.recv().await?;
            if let Some(ghost) = self.accept(region, frame) {
                return Some(ghost);
            }
        }
    }

    /// Malformed or out-of-date messages ignored so far.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    fn accept(&mut self, region: RegionId, frame: Vec<u8>) -> Option<Ghost> {
        let Some((incarnation, seq, payload)) = unframe(&frame) else {
            self.malformed += 1;
            return None;
        };
        let gap = match self.seen.get(&region) {
            Some(&(known, last)) if known == incarnation => {
                if seq <= last {
                    // Duplicate or reordered: already past it.
                    self.malformed += 1;
                    return None;
                }
                seq - last - 1
            }
            // First message seen from this publisher: nothing to compare against.
            _ => 0,
        };
        self.seen.insert(region, (incarnation, seq));
        Some(Ghost {
            region,
            seq,
            gap,
            payload: payload.to_vec(),
        })
    }
}

/// The cluster's chat messages, in arrival order (each publisher's in its order), with
/// gaps counted per publisher.
#[derive(Debug)]
pub struct ChatFeed {
    raw: mpsc::Receiver<Vec<u8>>,
    /// Per publisher incarnation: the last sequence number seen.
    seen: HashMap<u64, u64>,
    malformed: u64,
    _task: AbortOnDrop,
}

impl ChatFeed {
    /// A feed reading framed messages from `raw`, filled by `task`.
    pub(crate) fn new(raw: mpsc::Receiver<Vec<u8>>, task: tokio::task::JoinHandle<()>) -> Self {
        ChatFeed {
            raw,
            seen: HashMap::new(),
            malformed: 0,
            _task: AbortOnDrop(task),
        }
    }

    /// The next chat message; `None` once the feed has ended for good.
    pub async fn recv(&mut self) -> Option<ChatFrame> {
        loop {
            let frame = self.raw.recv().await?;
            if let Some(chat) = self.accept(&frame) {
                return Some(chat);
            }
        }
    }

    /// Malformed, duplicate or reordered messages ignored so far.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    fn accept(&mut self, frame: &[u8]) -> Option<ChatFrame> {
        let Some((publisher, seq, payload)) = unframe(frame) else {
            self.malformed += 1;
            return None;
        };
        let gap = match self.seen.get(&publisher) {
            Some(&last) if seq <= last => {
                self.malformed += 1;
                return None;
            }
            Some(&last) => seq - last - 1,
            // A publisher not seen before (or forgotten): its first message here.
            None => {
                if self.seen.len() >= CHAT_PUBLISHERS_MAX {
                    self.seen.clear();
                }
                0
            }
        };
        self.seen.insert(publisher, seq);
        Some(ChatFrame {
            publisher,
            seq,
            gap,
            payload: payload.to_vec(),
        })
    }
}

/// Numbers one publisher's chat messages; held across the send so that they leave in
/// their order.
#[derive(Debug)]
pub(crate) struct ChatSequencer {
    incarnation: u64,
    next: u64,
}

impl ChatSequencer {
    pub(crate) fn new(incarnation: u64) -> Self {
        ChatSequencer {
            incarnation,
            next: 1,
        }
    }

    /// The framed message of `payload`, with the next sequence number.
    pub(crate) fn frame(&mut self, payload: &[u8]) -> Vec<u8> {
        let frame = ghost_frame(self.incarnation, self.next, payload);
        self.next += 1;
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed() -> GhostFeed {
        let (_tx, rx) = mpsc::channel(1);
        GhostFeed::new(rx, tokio::spawn(async {}))
    }

    #[tokio::test]
    async fn gaps_are_counted_per_region_and_a_new_publisher_is_no_gap() {
        let mut feed = feed();
        let r = RegionId(1);
        assert_eq!(feed_gap(&mut feed, r, 7, 1), Some(0));
        assert_eq!(feed_gap(&mut feed, r, 7, 2), Some(0));
        assert_eq!(feed_gap(&mut feed, r, 7, 5), Some(2), "3 and 4 missed");
        assert_eq!(feed_gap(&mut feed, r, 7, 5), None, "duplicate ignored");
        assert_eq!(
            feed_gap(&mut feed, RegionId(2), 7, 9),
            Some(0),
            "other region"
        );
        assert_eq!(feed_gap(&mut feed, r, 8, 1), Some(0), "restarted publisher");
        assert!(feed.accept(r, vec![1, 2, 3]).is_none());
        assert_eq!(feed.malformed(), 2);
    }

    fn feed_gap(feed: &mut GhostFeed, region: RegionId, incarnation: u64, seq: u64) -> Option<u64> {
        feed.accept(region, ghost_frame(incarnation, seq, b"x"))
            .map(|g| g.gap)
    }

    #[tokio::test]
    async fn chat_gaps_are_counted_per_publisher_interleaved() {
        let (_tx, rx) = mpsc::channel(1);
        let mut feed = ChatFeed::new(rx, tokio::spawn(async {}));
        let mut gap = |publisher, seq| {
            feed.accept(&ghost_frame(publisher, seq, b"hi"))
                .map(|c| (c.gap, c.payload))
        };
        assert_eq!(gap(7, 1), Some((0, b"hi".to_vec())));
        assert_eq!(
            gap(9, 4),
            Some((0, b"hi".to_vec())),
            "first seen mid-sequence"
        );
        assert_eq!(
            gap(7, 2),
            Some((0, b"hi".to_vec())),
            "interleaved publishers"
        );
        assert_eq!(gap(9, 7), Some((2, b"hi".to_vec())), "5 and 6 missed");
        assert_eq!(gap(7, 2), None, "duplicate ignored");
        assert_eq!(gap(7, 1), None, "reordered ignored");
        assert!(feed.accept(&[0; 15]).is_none(), "shorter than its header");
        assert_eq!(feed.malformed(), 3);
    }

    #[test]
    fn a_chat_sequencer_numbers_from_one_under_its_incarnation() {
        let mut sequencer = ChatSequencer::new(42);
        let frames = [sequencer.frame(b"a"), sequencer.frame(b"b")];
        let parsed: Vec<_> = frames.iter().map(|f| unframe(f).expect("framed")).collect();
        assert_eq!(parsed, [(42, 1, &b"a"[..]), (42, 2, &b"b"[..])]);
    }
}
