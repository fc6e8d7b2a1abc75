//! The Redis event bus: the [`crate::bus`] contract over Redis Streams (mail) and pub/sub
//! (ghosts).
//!
//! Keys carry the region in a hash tag, so that in a Redis Cluster all of a region's keys
//! live in one slot:
//! - `tessera:{r<id>}:mail:<lane>`: one stream per lane, consumer group [`GROUP`]. Entries
//!   have fields `k` (idempotency key) and `p` (payload). An acknowledged entry is
//!   `XACK`ed and `XDEL`eted, so a stream holds only unread and pending mail, which
//!   [`ADD_SCRIPT`] caps at [`LANE_LEN_MAX`] by refusing more.
//! - `tessera:{r<id>}:done:<key>`: an acknowledged idempotency key, with a TTL.
//! - `tessera:{r<id>}:dead`: the dead-letter stream (fields `k`, `p`, `lane`, `n`), trimmed
//!   to about [`DEAD_LETTERS_MAX`].
//! - `tessera:{r<id>}:ghosts`: the pub/sub channel of the region's ghosts.
//!
//! Every command goes through a [`ConnectionManager`] (it reconnects) with a response
//! timeout of [`RESPONSE_TIMEOUT`]: against a stalled server (SIGSTOP) calls fail in time
//! instead of hanging, and every [`EventBus`] call goes through a circuit breaker
//! ([`crate::breaker`]): once Redis has failed a few calls in a row, calls fail at once
//! until a probe succeeds. A ghost subscription runs on its own connection and resubscribes
//! with capped, jittered backoff after losing it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};
use redis::{AsyncCommands, Value};
use tessera_shared::ids::RegionId;
use tokio::sync::mpsc;

use crate::breaker::Breaker;
use crate::bus::*;

/// How long one command may wait for its answer.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one connection attempt may take.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// The consumer group every region's mail streams are read through.
pub const GROUP: &str = "tessera";

/// Appends mail to a lane unless the lane is full: KEYS[1] the stream; ARGV: the cap, the
/// key, the payload. Returns the entry id, or nil when full.
const ADD_SCRIPT: &str = "if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end \
return redis.call('XADD', KEYS[1], '*', 'k', ARGV[2], 'p', ARGV[3])";

/// The Redis bus. Clones share connections.
#[derive(Clone)]
pub struct RedisBus {
    client: redis::Client,
    commands: ConnectionManager,
    config: BusConfig,
    sequencer: Arc<Mutex<GhostSequencer>>,
    /// Held across a chat publish, so that its messages leave in their order.
    chat_sequencer: Arc<tokio::sync::Mutex<ChatSequencer>>,
    /// Lane streams whose consumer group this process has made sure of.
    groups: Arc<Mutex<HashSet<(RegionId, Lane)>>>,
    /// Around every [`EventBus`] call: a Redis that keeps failing is not waited on.
    breaker: Breaker,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: redis::RedisError) -> BusError {
    BusError::Unavailable(e.to_string())
}

fn lane_key(region: RegionId, lane: Lane) -> String {
    format!("tessera:{{r{}}}:mail:{}", region.0, lane.name())
}

fn done_key(region: RegionId, key: &str) -> String {
    format!("tessera:{{r{}}}:done:{key}", region.0)
}

fn dead_key(region: RegionId) -> String {
    format!("tessera:{{r{}}}:dead", region.0)
}

/// The pub/sub channel of the cluster's chat.
fn ghost_channel(region: RegionId) -> String {
    format!("tessera:{{r{}}}:ghosts", region.0)
}

/// A command connection to `url` with the bus's timeouts ([`RESPONSE_TIMEOUT`],
/// [`CONNECTION_TIMEOUT`]); it reconnects by itself. Leases share this setup.
pub async fn connection(url: &str) -> Result<ConnectionManager, BusError> {
    connection_of(&redis::Client::open(url).map_err(unavailable)?).await
}

/// A connection for health probes: `PING`, with the bus's response timeout.
#[derive(Clone)]
pub struct Pinger(ConnectionManager);

impl std::fmt::Debug for Pinger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pinger")
    }
}

impl Pinger {
    /// Connects to `url`.
    pub async fn connect(url: &str) -> Result<Pinger, BusError> {
        connection(url).await.map(Pinger)
    }

    /// Whether Redis answers `PING`.
    pub async fn ping(&self) -> Result<(), BusError> {
        let mut connection = self.0.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

async fn connection_of(client: &redis::Client) -> Result<ConnectionManager, BusError> {
    let manager_config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(CONNECTION_TIMEOUT))
        .set_number_of_retries(2);
    tokio::time::timeout(
        CONNECTION_TIMEOUT * 2,
        ConnectionManager::new_with_config(client.clone(), manager_config),
    )
    .await
    .map_err(|_| BusError::Unavailable("connecting to Redis timed out".into()))?
    .map_err(unavailable)
}

/// The region of a ghost channel name.
fn region_of_channel(channel: &str) -> Option<RegionId> {
    let id = channel
        .strip_prefix("tessera:{r")?
        .strip_suffix("}:ghosts")?;
    id.parse().ok().map(RegionId)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RedisBus {
    /// Connects to `url` (`redis://host:port/`); fails within the connection timeout if
    /// Redis cannot be reached.
    pub async fn connect(url: &str, config: BusConfig) -> Result<RedisBus, BusError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let commands = connection_of(&client).await?;
        let incarnation = new_incarnation();
        Ok(RedisBus {
            client,
            commands,
            config,
            sequencer: Arc::new(Mutex::new(GhostSequencer::new(incarnation))),
            chat_sequencer: Arc::new(tokio::sync::Mutex::new(ChatSequencer::new(incarnation))),
            groups: Arc::new(Mutex::new(HashSet::new())),
            breaker: Breaker::new(),
        })
    }

    /// The circuit breaker around the bus's calls (for metrics).
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Runs `op` through the breaker.
    async fn guarded<T>(
        &self,
        op: impl Future<Output = Result<T, BusError>>,
    ) -> Result<T, BusError> {
        self.breaker
            .call(
                op,
                |e| matches!(e, BusError::Unavailable(_)),
                || {
                    BusError::Unavailable(
                        "circuit open: Redis failed repeatedly; probing again shortly".into(),
                    )
                },
            )
            .await
    }

    /// Creates the consumer group of `region`'s lanes (from the start of each stream) if
    /// this process has not yet.
    async fn ensure_groups(&self, region: RegionId) -> Result<(), BusError> {
        for lane in Lane::ALL {
            if self.known_group(region, lane) {
                continue;
            }
            let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(lane_key(region, lane))
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut self.commands.clone())
                .await;
            match created {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(unavailable(e)),
            }
            if let Ok(mut groups) = self.groups.lock() {
                groups.insert((region, lane));
            }
        }
        Ok(())
    }

    fn known_group(&self, region: RegionId, lane: Lane) -> bool {
        self.groups
            .lock()
            .is_ok_and(|groups| groups.contains(&(region, lane)))
    }

    /// Reclaims `lane`'s deliveries idle past `reclaim_idle`: those delivered
    /// `deliveries_max` times go to the dead letters, the others are returned (at most
    /// `max`), delivered once more to `consumer`.
    async fn reclaim(
        &self,
        region: RegionId,
        lane: Lane,
        consumer: &str,
        max: usize,
    ) -> Result<Vec<(StreamId, u32)>, BusError> {
        let key = lane_key(region, lane);
        let idle = millis(self.config.reclaim_idle);
        let stuck: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&key)
            .arg(GROUP)
            .arg("IDLE")
            .arg(idle)
            .arg("-")
            .arg("+")
            .arg(max)
            .query_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        if stuck.ids.is_empty() {
            return Ok(Vec::new());
        }
        let n_max = self.config.deliveries_max as usize;
        // Deliveries so far, by entry id (XCLAIM's answer carries no count).
        let delivered: HashMap<String, usize> = stuck
            .ids
            .iter()
            .map(|p| (p.id.clone(), p.times_delivered))
            .collect();
        let (dead, again): (Vec<_>, Vec<_>) = stuck
            .ids
            .into_iter()
            .partition(|p| p.times_delivered >= n_max);
        let mut out = Vec::new();
        if !again.is_empty() {
            // XCLAIM counts a delivery; the idle check makes a race with another
            // consumer's reclaim harmless (only one gets each entry).
            let ids = again.iter().map(|p| p.id.as_str());
            let claimed = self.claim(&key, consumer, idle, ids, None).await?;
            for entry in claimed.ids {
                let before = delivered.get(&entry.id).copied().unwrap_or(0);
                out.push((entry, u32::try_from(before + 1).unwrap_or(u32::MAX)));
            }
        }
        if !dead.is_empty() {
            // Take them over (without counting a delivery), then move them in one
            // transaction: copy to the dead letters, acknowledge, delete.
            let ids = dead.iter().map(|p| p.id.as_str());
            let claimed = self.claim(&key, consumer, idle, ids, Some(n_max)).await?;
            let mut pipe = redis::pipe();
            pipe.atomic();
            for entry in &claimed.ids {
                let (k, p) = fields(entry)?;
                let n = delivered.get(&entry.id).copied().unwrap_or(n_max);
                pipe.cmd("XADD")
                    .arg(dead_key(region))
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(DEAD_LETTERS_MAX)
                    .arg("*")
                    .arg("k")
                    .arg(k)
                    .arg("p")
                    .arg(p)
                    .arg("lane")
                    .arg(lane.name())
                    .arg("n")
                    .arg(n)
                    .ignore();
                pipe.cmd("XACK")
                    .arg(&key)
                    .arg(GROUP)
                    .arg(&entry.id)
                    .ignore();
                pipe.cmd("XDEL").arg(&key).arg(&entry.id).ignore();
            }
            if !claimed.ids.is_empty() {
                let () = pipe
                    .query_async(&mut self.commands.clone())
                    .await
                    .map_err(unavailable)?;
                tracing::warn!(
                    region = region.0,
                    lane = lane.name(),
                    count = claimed.ids.len(),
                    "mail moved to dead letters after {n_max} deliveries"
                );
            }
        }
        Ok(out)
    }
}

/// The key and payload of a mail entry.
fn fields(entry: &StreamId) -> Result<(String, Vec<u8>), BusError> {
    let key: Option<String> = entry.get("k");
    let payload: Option<Vec<u8>> = entry.get("p");
    match (key, payload) {
        (Some(k), Some(p)) => Ok((k, p)),
        _ => Err(BusError::Protocol(format!(
            "stream entry {} lacks its key or payload",
            entry.id
        ))),
    }
}

impl EventBus for RedisBus {
    async fn publish(&self, batch: &Batch) -> Result<Published, BusError> {
        self.guarded(async {
            check_batch(batch)?;
            if batch.mail.is_empty() && batch.ghosts.is_empty() {
                return Ok(Published::default());
            }
            let frames: Vec<(RegionId, Vec<u8>)> = {
                let mut sequencer = self
                    .sequencer
                    .lock()
                    .map_err(|_| BusError::Protocol("ghost sequencer poisoned".into()))?;
                batch
                    .ghosts
                    .iter()
                    .map(|g| (g.region, sequencer.frame(g)))
                    .collect()
            };
            // One pipeline, one round trip: all mail, then all ghosts.
            let mut pipe = redis::pipe();
            for mail in &batch.mail {
                pipe.cmd("EVAL")
                    .arg(ADD_SCRIPT)
                    .arg(1)
                    .arg(lane_key(mail.to, mail.lane))
                    .arg(LANE_LEN_MAX)
                    .arg(&mail.key)
                    .arg(&mail.payload);
            }
            for (region, frame) in &frames {
                pipe.cmd("PUBLISH")
                    .arg(ghost_channel(*region))
                    .arg(frame)
                    .ignore();
            }
            let replies: Vec<Value> = pipe
                .query_async(&mut self.commands.clone())
                .await
                .map_err(unavailable)?;
            let refused = replies
                .iter()
                .enumerate()
                .filter(|(_, v)| matches!(v, Value::Nil))
                .map(|(i, _)| i)
                .collect();
            Ok(Published { refused })
        })
        .await
    }

    async fn receive(
        &self,
        region: RegionId,
        consumer: &str,
        max: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        self.guarded(async {
            self.ensure_groups(region).await?;
            let max = max.min(RECEIVE_MAX);
            let mut received: Vec<(Lane, StreamId, u32)> = Vec::new();
            for lane in Lane::ALL {
                let room = max - received.len();
                if room == 0 {
                    break;
                }
                for (entry, n) in self.reclaim(region, lane, consumer, room).await? {
                    received.push((lane, entry, n));
                }
                let room = max - received.len();
                if room == 0 {
                    break;
                }
                let fresh: Option<StreamReadReply> = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(GROUP)
                    .arg(consumer)
                    .arg("COUNT")
                    .arg(room)
                    .arg("STREAMS")
                    .arg(lane_key(region, lane))
                    .arg(">")
                    .query_async(&mut self.commands.clone())
                    .await
                    .map_err(unavailable)?;
                for stream in fresh.into_iter().flat_map(|r| r.keys) {
                    for entry in stream.ids {
                        received.push((lane, entry, 1));
                    }
                }
            }
            if received.is_empty() {
                return Ok(Vec::new());
            }
            let mut deliveries = Vec::with_capacity(received.len());
            for (lane, entry, n) in received {
                let (key, payload) = fields(&entry)?;
                deliveries.push(Delivery {
                    id: DeliveryId { lane, id: entry.id },
                    region,
                    lane,
                    key,
                    payload,
                    deliveries: n,
                });
            }
            // Mail whose key is already done (a retry, a redelivery) is dropped, as acked.
            let mut check = redis::pipe();
            for delivery in &deliveries {
                check.exists(done_key(region, &delivery.key));
            }
            let done: Vec<bool> = check
                .query_async(&mut self.commands.clone())
                .await
                .map_err(unavailable)?;
            let (duplicates, fresh): (Vec<_>, Vec<_>) = deliveries
                .into_iter()
                .zip(done)
                .partition(|(_, done)| *done);
            if !duplicates.is_empty() {
                let duplicates: Vec<Delivery> = duplicates.into_iter().map(|(d, _)| d).collect();
                self.drop_deliveries(region, &duplicates).await?;
            }
            Ok(fresh.into_iter().map(|(d, _)| d).collect())
        })
        .await
    }

    async fn ack(&self, region: RegionId, deliveries: &[Delivery]) -> Result<(), BusError> {
        self.guarded(async {
            if deliveries.is_empty() {
                return Ok(());
            }
            // Keys are marked done first, in the same transaction: a crash cannot leave an
            // acknowledged entry whose key is not done.
            let ttl = millis(self.config.done_ttl).max(1);
            let mut pipe = redis::pipe();
            pipe.atomic();
            for delivery in deliveries {
                pipe.cmd("SET")
                    .arg(done_key(region, &delivery.key))
                    .arg(1)
                    .arg("PX")
                    .arg(ttl)
                    .ignore();
            }
            add_ack_and_delete(&mut pipe, region, deliveries);
            pipe.query_async::<()>(&mut self.commands.clone())
                .await
                .map_err(unavailable)
        })
        .await
    }

    async fn pending(&self, region: RegionId) -> Result<u64, BusError> {
        self.guarded(async {
            self.ensure_groups(region).await?;
            let mut pipe = redis::pipe();
            for lane in Lane::ALL {
                pipe.cmd("XPENDING").arg(lane_key(region, lane)).arg(GROUP);
            }
            let summaries: Vec<Value> = pipe
                .query_async(&mut self.commands.clone())
                .await
                .map_err(unavailable)?;
            let mut total = 0u64;
            for summary in summaries {
                match summary {
                    Value::Array(items) => match items.first() {
                        Some(Value::Int(n)) => total += u64::try_from(*n).unwrap_or(0),
                        _ => {
                            return Err(BusError::Protocol(
                                "XPENDING summary without a count".into(),
                            ));
                        }
                    },
                    other => {
                        return Err(BusError::Protocol(format!("XPENDING answered {other:?}")));
                    }
                }
            }
            Ok(total)
        })
        .await
    }

    async fn dead_letters(
        &self,
        region: RegionId,
        max: usize,
    ) -> Result<Vec<DeadLetter>, BusError> {
        self.guarded(async {
            let newest: Vec<StreamId> = {
                let reply: redis::streams::StreamRangeReply = self
                    .commands
                    .clone()
                    .xrevrange_count(dead_key(region), "+", "-", max.min(DEAD_LETTERS_MAX))
                    .await
                    .map_err(unavailable)?;
                reply.ids
            };
            let mut out = Vec::with_capacity(newest.len());
            for entry in newest.iter().rev() {
                let (key, payload) = fields(entry)?;
                let lane = match entry.get::<String>("lane").as_deref() {
                    Some("high") => Lane::High,
                    Some("low") => Lane::Low,
                    _ => Lane::Normal,
                };
                out.push(DeadLetter {
                    lane,
                    key,
                    payload,
                    deliveries: entry.get("n").unwrap_or(0),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn dead_letter_count(&self, region: RegionId) -> Result<u64, BusError> {
        self.guarded(async {
            redis::cmd("XLEN")
                .arg(dead_key(region))
                .query_async(&mut self.commands.clone())
                .await
                .map_err(unavailable)
        })
        .await
    }

    async fn subscribe_ghosts(&self, regions: &[RegionId]) -> Result<GhostFeed, BusError> {
        self.guarded(async {
            let channels: Vec<String> = regions.iter().map(|&r| ghost_channel(r)).collect();
            // The first subscription is made here, so that an unreachable Redis is an error
            // now and messages published after this returns are seen.
            let first = subscribe(&self.client, &channels).await?;
            let (tx, rx) = mpsc::channel(GHOST_QUEUE_LEN_MAX);
            let task = tokio::spawn(resubscribing(
                self.client.clone(),
                channels,
                first,
                move |message| {
                    let Some(region) = region_of_channel(message.get_channel_name()) else {
                        return true;
                    };
                    // A full feed drops the message: the reader sees a gap.
                    match tx.try_send((region, message.get_payload_bytes().to_vec())) {
                        Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => true,
                        Err(mpsc::error::TrySendError::Closed(_)) => false,
                    }
                },
            ));
            Ok(GhostFeed::new(rx, task))
        })
        .await
    }

    async fn publish_chat(&self, payloads: &[Vec<u8>]) -> Result<(), BusError> {
        self.guarded(async {
            check_chat(payloads)?;
            if payloads.is_empty() {
                return Ok(());
            }
            let mut sequencer = self.chat_sequencer.lock().await;
            let mut pipe = redis::pipe();
            for payload in payloads {
                pipe.cmd("PUBLISH")
                    .arg(self.config.broadcast_channel)
                    .arg(sequencer.frame(payload))
                    .ignore();
            }
            pipe.query_async::<()>(&mut self.commands.clone())
                .await
                .map_err(unavailable)
        })
        .await
    }

    async fn subscribe_chat(&self) -> Result<ChatFeed, BusError> {
        self.guarded(async {
            let channels = [self.config.broadcast_channel.to_owned()];
            let first = subscribe(&self.client, &channels).await?;
            let (tx, rx) = mpsc::channel(CHAT_QUEUE_LEN_MAX);
            let task = tokio::spawn(resubscribing(
                self.client.clone(),
                channels.to_vec(),
                first,
                move |message| {
                    // A full feed drops the message: the reader sees a gap.
                    match tx.try_send(message.get_payload_bytes().to_vec()) {
                        Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => true,
                        Err(mpsc::error::TrySendError::Closed(_)) => false,
                    }
                },
            ));
            Ok(ChatFeed::new(rx, task))
        })
        .await
    }
}

/// Reads `channels` (subscribed first as `first`), handing each message to `deliver`
/// until it returns false; resubscribes with backoff whenever the subscription is lost.
async fn resubscribing(
    client: redis::Client,
    channels: Vec<String>,
    first: redis::aio::PubSub,
    mut deliver: impl FnMut(redis::Msg) -> bool,
) {
    let mut pubsub = Some(first);
    loop {
        let current = match pubsub.take() {
            Some(p) => p,
            None => {
                use backon::{ExponentialBuilder, Retryable};
                let backoff = ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(5))
                    .with_jitter()
                    .without_max_times();
                match (|| subscribe(&client, &channels)).retry(backoff).await {
                    Ok(p) => p,
                    Err(_) => return,
                }
            }
        };
        let mut messages = current.into_on_message();
        while let Some(message) = messages.next().await {
            if !deliver(message) {
                return;
            }
        }
        tracing::warn!(?channels, "subscription lost; resubscribing");
    }
}

impl RedisBus {
    /// `XCLAIM`s `ids` idle for `idle_ms` for `consumer`: counting a delivery, or with
    /// `RETRYCOUNT` set to `retry_count` (not counting one).
    async fn claim<'a>(
        &self,
        key: &str,
        consumer: &str,
        idle_ms: u64,
        ids: impl Iterator<Item = &'a str>,
        retry_count: Option<usize>,
    ) -> Result<StreamClaimReply, BusError> {
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(key).arg(GROUP).arg(consumer).arg(idle_ms);
        for id in ids {
            cmd.arg(id);
        }
        if let Some(n) = retry_count {
            cmd.arg("RETRYCOUNT").arg(n);
        }
        cmd.query_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)
    }

    /// Removes deliveries from the bus without marking their keys (they already are).
    async fn drop_deliveries(
        &self,
        region: RegionId,
        deliveries: &[Delivery],
    ) -> Result<(), BusError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        add_ack_and_delete(&mut pipe, region, deliveries);
        pipe.query_async::<()>(&mut self.commands.clone())
            .await
            .map_err(unavailable)
    }
}

fn add_ack_and_delete(pipe: &mut redis::Pipeline, region: RegionId, deliveries: &[Delivery]) {
    for delivery in deliveries {
        let key = lane_key(region, delivery.id.lane);
        pipe.cmd("XACK")
            .arg(&key)
            .arg(GROUP)
            .arg(&delivery.id.id)
            .ignore();
        pipe.cmd("XDEL").arg(&key).arg(&delivery.id.id).ignore();
    }
}

/// A pub/sub connection subscribed to `channels`, within the connection timeout.
async fn subscribe(
    client: &redis::Client,
    channels: &[String],
) -> Result<redis::aio::PubSub, BusError> {
    tokio::time::timeout(CONNECTION_TIMEOUT * 2, async {
        let mut pubsub = client.get_async_pubsub().await.map_err(unavailable)?;
        for channel in channels {
            pubsub.subscribe(channel).await.map_err(unavailable)?;
        }
        Ok(pubsub)
    })
    .await
    .map_err(|_| BusError::Unavailable("subscribing timed out".into()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip() {
        for id in [0, 1, 42, RegionId::MAX] {
            assert_eq!(
                region_of_channel(&ghost_channel(RegionId(id))),
                Some(RegionId(id))
            );
        }
        assert_eq!(region_of_channel("tessera:{rx}:ghosts"), None);
        assert_eq!(region_of_channel("other"), None);
    }
}
