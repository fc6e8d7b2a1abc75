//! The node's side of the cluster's chat: global messages and whispers to players on
//! other nodes travel over the event bus's chat channel (Redis pub/sub in a cluster, an
//! in-process bus on a node of its own), loss-tolerant and in order per publishing node;
//! `say` and region messages never leave the node (the driver delivers them).
//!
//! - Publishing: sessions queue messages ([`CHAT_PUBLISH_QUEUE_LEN_MAX`]; a full queue
//!   refuses the message, the sender is told) for one publisher task, which sends up to
//!   [`CHAT_PUBLISH_BATCH_MAX`] in one round trip, in queue order.
//! - Receiving: one subscriber task hands each message to the driver
//!   ([`Command::DeliverChat`]), which sends it to its recipients here. Messages missed
//!   (a gap in a publisher's sequence: pub/sub dropped them, or this node's feed fell
//!   behind) are counted in `lost` and logged; a subscription lost is made again.
//! - Notices: a control message for one player wherever it is in the cluster (a trade
//!   offered to it) travels the same way ([`Chat::notify`]) and is delivered by the node
//!   that holds the player ([`Command::Notify`]).
//! - Moderation: the blocked-words list ([`BlockedWords`], `[chat] blocked_words_file`)
//!   and mutes (the admin API, in the store) are checked by the session before anything
//!   is sent.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tessera_persistence::bus::{BusConfig, CHAT_BYTES_MAX, EventBus};
use tessera_persistence::local_bus::LocalBus;
use tessera_persistence::location::{LocationStore, RedisLocations};
use tessera_persistence::redis_bus::RedisBus;
use tessera_shared::config::ChatConfig;
use tessera_shared::ids::PlayerId;
use tessera_shared::protocol::codec;
use tessera_shared::protocol::messages::{ChatS2c, ControlS2c};
use tokio::sync::mpsc;

use crate::node::{Command, NodeHandle};

/// Chat messages waiting to be published; past it a message is refused.
pub const CHAT_PUBLISH_QUEUE_LEN_MAX: usize = 4_096;
/// Chat messages published in one round trip to the bus.
pub const CHAT_PUBLISH_BATCH_MAX: usize = 256;
/// Entries a blocked-words file may hold.
pub const BLOCKED_WORDS_MAX: usize = 10_000;
/// Longest entry of a blocked-words file, in bytes.
pub const BLOCKED_WORD_BYTES_MAX: usize = 64;
/// Longest wait between two tries to subscribe to the chat.
const SUBSCRIBE_RETRY_MAX: Duration = Duration::from_secs(5);

/// The chat's counters (`tessera_chat_*` metrics).
#[derive(Debug, Default)]
pub struct ChatStats {
    /// Messages sent by players here, by channel: say, region, global, whisper.
    pub sent: [AtomicU64; 4],
    /// Chat messages and commands refused (rate limit, mute, blocked word, bad request).
    pub refused: AtomicU64,
    /// Messages published to the cluster's chat.
    pub published: AtomicU64,
    /// Messages that could not be published (the bus failed; their senders were told).
    pub publish_failed: AtomicU64,
    /// Messages received from the cluster's chat.
    pub received: AtomicU64,
    /// Messages of other publishers this node missed (gaps in their sequences).
    pub lost: AtomicU64,
    /// Messages received that the driver had no room for.
    pub dropped: AtomicU64,
}

/// What travels on the cluster's chat channel.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum Published {
    /// A global message or a whisper.
    Chat(ChatS2c),
    /// A control message for one player's session.
    Notify {
        /// The player.
        player: PlayerId,
        /// The message.
        message: ControlS2c,
    },
}

/// The node's chat: where sessions publish, and the moderation they apply.
#[derive(Clone, Debug)]
pub struct Chat {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ChatConfig,
    blocked: BlockedWords,
    publish: mpsc::Sender<(Vec<u8>, tokio::sync::oneshot::Sender<bool>)>,
    locations: Option<RedisLocations>,
    /// Display names of the players logged in here, with their session, for `/who`.
    names: Mutex<HashMap<PlayerId, (u64, String)>>,
    stats: Arc<ChatStats>,
}

impl Chat {
    /// Starts the publisher and the subscriber over `bus` on the current runtime;
    /// `locations` (a cluster's) tell whether a whisper's recipient is on another node.
    pub fn start<B: EventBus>(
        bus: B,
        node: NodeHandle,
        config: ChatConfig,
        blocked: BlockedWords,
        locations: Option<RedisLocations>,
    ) -> Chat {
        let (publish, queue) = mpsc::channel(CHAT_PUBLISH_QUEUE_LEN_MAX);
        let stats = Arc::new(ChatStats::default());
        tokio::spawn(publisher(bus.clone(), queue, stats.clone()));
        tokio::spawn(subscriber(bus, node, stats.clone()));
        Chat {
            inner: Arc::new(Inner {
                config,
                blocked,
                publish,
                locations,
                names: Mutex::new(HashMap::new()),
                stats,
            }),
        }
    }

    /// The node's chat for `config` (its blocked-words file read now) on the current
    /// runtime: over the cluster's Redis bus and locations, or in process (`None`).
    pub fn start_for(
        config: &ChatConfig,
        node: NodeHandle,
        cluster: Option<(RedisBus, RedisLocations)>,
    ) -> anyhow::Result<Chat> {
        let blocked = match &config.blocked_words_file {
            Some(path) => BlockedWords::load(path)
                .map_err(|e| anyhow::anyhow!("[chat] blocked_words_file: {e}"))?,
            None => BlockedWords::default(),
        };
        let config = config.clone();
        Ok(match cluster {
            Some((bus, locations)) => Chat::start(bus, node, config, blocked, Some(locations)),
            None => {
                let bus = LocalBus::new(BusConfig::default());
                Chat::start(bus, node, config, blocked, None)
            }
        })
    }

    /// `[chat]` of tessera.toml.
    pub fn config(&self) -> &ChatConfig {
        &self.inner.config
    }

    /// The blocked-words list.
    pub fn blocked(&self) -> &BlockedWords {
        &self.inner.blocked
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<ChatStats> {
        &self.inner.stats
    }

    /// Publishes `message` to the cluster's chat; whether it went out (false: the queue
    /// is full, or the bus failed).
    pub async fn publish(&self, message: &ChatS2c) -> bool {
        self.send(&Published::Chat(message.clone())).await
    }

    /// Sends `message` to `player`'s session wherever it is in the cluster (dropped if it
    /// is nowhere, as pub/sub drops); whether it went out.
    pub async fn notify(&self, player: PlayerId, message: ControlS2c) -> bool {
        self.send(&Published::Notify { player, message }).await
    }

    async fn send(&self, published: &Published) -> bool {
        let Ok(payload) = codec::encode(published, CHAT_BYTES_MAX) else {
            return false;
        };
        let (sent, outcome) = tokio::sync::oneshot::channel();
        if self.inner.publish.try_send((payload, sent)).is_err() {
            return false;
        }
        outcome.await.unwrap_or(false)
    }

    /// Whether `player` is in the world on another node of the cluster (a whisper's
    /// recipient); false on a node of its own, or if the cluster cannot tell.
    pub async fn is_elsewhere(&self, player: PlayerId) -> bool {
        let Some(locations) = &self.inner.locations else {
            return false;
        };
        matches!(locations.holder(player).await, Ok(Some(_)))
    }

    /// Remembers `player`'s display name while `session` holds it here: until the
    /// returned guard is dropped (unless a newer session took the player over).
    pub fn logged_in(&self, player: PlayerId, session: u64, name: &str) -> Listed {
        lock(&self.inner.names).insert(player, (session, name.to_owned()));
        Listed {
            chat: self.clone(),
            player,
            session,
        }
    }

    /// The display names of `players` logged in here (empty if none).
    pub fn names(&self, players: &[PlayerId]) -> Vec<String> {
        let names = lock(&self.inner.names);
        players
            .iter()
            .map(|p| names.get(p).map(|(_, n)| n.clone()).unwrap_or_default())
            .collect()
    }
}

/// A session's display name in the node's list ([`Chat::logged_in`]).
#[derive(Debug)]
pub struct Listed {
    chat: Chat,
    player: PlayerId,
    session: u64,
}

impl Drop for Listed {
    fn drop(&mut self) {
        let mut names = lock(&self.chat.inner.names);
        if names
            .get(&self.player)
            .is_some_and(|(s, _)| *s == self.session)
        {
            names.remove(&self.player);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Publishes queued messages in their order, a batch per round trip.
async fn publisher<B: EventBus>(
    bus: B,
    mut queue: mpsc::Receiver<(Vec<u8>, tokio::sync::oneshot::Sender<bool>)>,
    stats: Arc<ChatStats>,
) {
    let mut batch = Vec::with_capacity(CHAT_PUBLISH_BATCH_MAX);
    while queue.recv_many(&mut batch, CHAT_PUBLISH_BATCH_MAX).await > 0 {
        let (payloads, senders): (Vec<Vec<u8>>, Vec<_>) = batch.drain(..).unzip();
        let ok = match bus.publish_chat(&payloads).await {
            Ok(()) => {
                stats
                    .published
                    .fetch_add(payloads.len() as u64, Ordering::Relaxed);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, messages = payloads.len(), "chat not published");
                stats
                    .publish_failed
                    .fetch_add(payloads.len() as u64, Ordering::Relaxed);
                false
            }
        };
        for sender in senders {
            let _ = sender.send(ok);
        }
    }
}

/// Hands every message of the cluster's chat to the driver; subscribes again whenever
/// the feed ends.
async fn subscriber<B: EventBus>(bus: B, node: NodeHandle, stats: Arc<ChatStats>) {
    let mut wait = Duration::from_millis(100);
    loop {
        let mut feed = match bus.subscribe_chat().await {
            Ok(feed) => feed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to the chat; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(SUBSCRIBE_RETRY_MAX);
                continue;
            }
        };
        wait = Duration::from_millis(100);
        while let Some(frame) = feed.recv().await {
            stats.received.fetch_add(1, Ordering::Relaxed);
            if frame.gap > 0 {
                stats.lost.fetch_add(frame.gap, Ordering::Relaxed);
                tracing::warn!(
                    publisher = frame.publisher,
                    missed = frame.gap,
                    "chat messages lost"
                );
            }
            let Ok(published) = codec::decode::<Published>(&frame.payload, CHAT_BYTES_MAX) else {
                tracing::warn!(
                    publisher = frame.publisher,
                    "malformed chat message ignored"
                );
                continue;
            };
            let deliver = match published {
                Published::Chat(message) => Command::DeliverChat {
                    message: Box::new(message),
                    reply: None,
                },
                Published::Notify { player, message } => Command::Notify {
                    player,
                    message: Box::new(message),
                },
            };
            if node.try_send(deliver).is_err() {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        tracing::warn!("chat feed ended; subscribing again");
    }
}

/// Words and phrases a chat message may not hold (`[chat] blocked_words_file`), matched
/// as whole words, case ignored.
#[derive(Clone, Debug, Default)]
pub struct BlockedWords {
    /// Single words, lowercase.
    words: HashSet<String>,
    /// Phrases of several words, lowercase, each word separated by one space.
    phrases: Vec<String>,
}

impl BlockedWords {
    /// The list of `path`: one entry per line, `#` starts a comment, blank lines skipped;
    /// at most [`BLOCKED_WORDS_MAX`] entries of at most [`BLOCKED_WORD_BYTES_MAX`] bytes.
    /// Errors name the file and line.
    pub fn load(path: &Path) -> anyhow::Result<BlockedWords> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        BlockedWords::parse(&text).map_err(|e| anyhow::anyhow!("{}:{e}", path.display()))
    }

    /// The list in `text` (as [`BlockedWords::load`]); errors as `line: message`.
    pub fn parse(text: &str) -> Result<BlockedWords, String> {
        let mut list = BlockedWords::default();
        for (n, line) in text.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or_default().trim();
            if entry.is_empty() {
                continue;
            }
            if entry.len() > BLOCKED_WORD_BYTES_MAX {
                return Err(format!(
                    "{}: an entry of {} bytes; at most {BLOCKED_WORD_BYTES_MAX}",
                    n + 1,
                    entry.len()
                ));
            }
            if list.len() == BLOCKED_WORDS_MAX {
                return Err(format!("{}: more than {BLOCKED_WORDS_MAX} entries", n + 1));
            }
            let words: Vec<String> = words(entry).collect();
            match words.as_slice() {
                [] => return Err(format!("{}: an entry without letters or digits", n + 1)),
                [word] => {
                    list.words.insert(word.clone());
                }
                _ => list.phrases.push(words.join(" ")),
            }
        }
        Ok(list)
    }

    /// Entries in the list.
    pub fn len(&self) -> usize {
        self.words.len() + self.phrases.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first blocked entry `text` holds as whole words, if any.
    pub fn find(&self, text: &str) -> Option<&str> {
        if self.is_empty() {
            return None;
        }
        let words: Vec<String> = words(text).collect();
        if let Some(hit) = words.iter().find_map(|w| self.words.get(w)) {
            return Some(hit);
        }
        let joined = format!(" {} ", words.join(" "));
        self.phrases
            .iter()
            .find(|p| joined.contains(&format!(" {p} ")))
            .map(String::as_str)
    }
}

/// The words of `text`: runs of letters and digits, lowercase.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_words_match_whole_words_and_phrases_case_ignored() {
        let list = BlockedWords::parse("# comment\nbadword\n\nTwo Words # trailing\n").unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list.find("a BADWORD here"), Some("badword"));
        assert_eq!(list.find("badword!"), Some("badword"));
        assert_eq!(
            list.find("badwords and notbadword"),
            None,
            "whole words only"
        );
        assert_eq!(list.find("say two   words,"), Some("two words"));
        assert_eq!(list.find("twowords"), None);
        assert_eq!(BlockedWords::default().find("anything"), None);
    }

    #[test]
    fn a_bad_blocked_words_file_names_its_line() {
        let long = "x".repeat(BLOCKED_WORD_BYTES_MAX + 1);
        assert!(
            BlockedWords::parse(&format!("ok\n{long}\n"))
                .unwrap_err()
                .starts_with("2: ")
        );
        assert!(
            BlockedWords::parse("ok\n  !!! \n")
                .unwrap_err()
                .starts_with("2: ")
        );
        let many = "w\n".repeat(BLOCKED_WORDS_MAX + 1);
        let many: String = many
            .lines()
            .enumerate()
            .map(|(i, _)| format!("w{i}\n"))
            .collect();
        assert!(
            BlockedWords::parse(&many)
                .unwrap_err()
                .contains("more than")
        );
    }
}

#[cfg(test)]
mod wire_tests {
    use super::*;

    #[test]
    fn published_messages_decode_as_sent() {
        let chat = Published::Chat(ChatS2c {
            channel: tessera_shared::protocol::messages::ChatChannel::Global,
            from: PlayerId(1),
            from_name: "ada".into(),
            text: "hi".into(),
        });
        let bytes = codec::encode(&chat, CHAT_BYTES_MAX).unwrap();
        let back = codec::decode::<Published>(&bytes, CHAT_BYTES_MAX);
        assert!(matches!(back, Ok(Published::Chat(_))), "{back:?}");
    }
}
