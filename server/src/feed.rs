//! The live feed: what happens on the node (and, in a cluster, on every node) as
//! [`FeedEvent`]s, for operators watching `GET /v1/feed` (WebSocket) and the console.
//!
//! Events are published without waiting ([`Feed::publish`], from the tick's thread too):
//! into a `tokio::sync::broadcast` ring of [`FEED_QUEUE_LEN_MAX`] events that every local
//! subscriber reads at its own pace, and, in a cluster, onto a bounded queue
//! ([`FEED_PUBLISH_QUEUE_LEN_MAX`]) that one task publishes to Redis pub/sub
//! (`tessera:feed`, a bus connection of its own). Each node takes the other nodes' events
//! from that channel into its own ring, so any node's feed shows the cluster's. A
//! subscriber more than [`FEED_QUEUE_LEN_MAX`] events behind has missed some: it is
//! dropped with a close reason, never waited for (`admin::feed`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};
use tessera_persistence::bus::{CHAT_BYTES_MAX, EventBus};
use tessera_persistence::redis_bus::RedisBus;
use tessera_shared::protocol::codec;
use tokio::sync::{broadcast, mpsc};

/// Events a subscriber may fall behind before it is dropped (the ring every local
/// subscriber reads).
pub const FEED_QUEUE_LEN_MAX: usize = 4_096;
/// Events waiting to be published to the cluster; past it they are dropped (counted).
pub const FEED_PUBLISH_QUEUE_LEN_MAX: usize = 4_096;
/// Events published to Redis in one round trip at most.
const PUBLISH_BATCH_MAX: usize = 256;
/// Longest event on the cluster's channel, in bytes (the bus's broadcast limit).
pub const FEED_EVENT_BYTES_MAX: usize = CHAT_BYTES_MAX;
/// How often node and region metrics are published.
pub const METRICS_PERIOD: Duration = Duration::from_secs(1);

/// What an event is about (`GET /v1/feed?topics=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    /// A player entered or left the world on a node.
    Session,
    /// An entity died (a player's kill of an NPC, or a player).
    Death,
    /// A player crossed into another region (on the node, or to another node).
    Handoff,
    /// An operator's mutation (the audit record).
    Admin,
    /// A balance reload, applied or refused.
    Reload,
    /// The node's health changed (a dependency down, a writer degraded, back to ok).
    Alert,
    /// The node's and its regions' load, every [`METRICS_PERIOD`].
    Metrics,
    /// What a game embedding the server publishes itself (`RunningNode::feed`).
    Game,
}

impl Topic {
    /// Every topic, by name.
    pub const ALL: [(&'static str, Topic); 8] = [
        ("session", Topic::Session),
        ("death", Topic::Death),
        ("handoff", Topic::Handoff),
        ("admin", Topic::Admin),
        ("reload", Topic::Reload),
        ("alert", Topic::Alert),
        ("metrics", Topic::Metrics),
        ("game", Topic::Game),
    ];

    /// The topic by name.
    pub fn parse(name: &str) -> Option<Topic> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|&(_, t)| t)
    }
}

/// One event, as subscribers receive it (JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeedEvent {
    /// What about.
    pub topic: Topic,
    /// The node it happened on.
    pub node: String,
    /// The region it happened in, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<u32>,
    /// When, Unix ms (the node's clock).
    pub at_ms: u64,
    /// What happened; its fields depend on the topic (PROTOCOL.md does not cover it:
    /// the admin API's OpenAPI document does).
    pub data: serde_json::Value,
}

/// An event with its JSON, made once for every subscriber.
#[derive(Debug)]
pub struct Published {
    /// The event.
    pub event: FeedEvent,
    /// Its JSON text (a subscriber's message shares it).
    pub json: Utf8Bytes,
}

impl Published {
    fn new(event: FeedEvent) -> Arc<Published> {
        let json = serde_json::to_string(&event).unwrap_or_default().into();
        Arc::new(Published { event, json })
    }
}

/// Counters.
#[derive(Debug, Default)]
pub struct FeedStats {
    /// Events published on this node.
    pub published: AtomicU64,
    /// Events from other nodes taken into this node's feed.
    pub received: AtomicU64,
    /// Events not sent to the cluster: the queue was full, or too large.
    pub dropped: AtomicU64,
    /// Subscribers dropped for falling behind or not taking what was sent.
    pub slow_subscribers: AtomicU64,
    /// Subscribers connected now.
    pub subscribers: AtomicUsize,
}

/// The node's feed; cheap to clone.
#[derive(Clone, Debug)]
pub struct Feed {
    node: String,
    local: broadcast::Sender<Arc<Published>>,
    cluster: Option<mpsc::Sender<FeedEvent>>,
    stats: Arc<FeedStats>,
}

impl Feed {
    /// A feed of this node's events only.
    pub fn local(node: &str) -> Feed {
        let (local, _) = broadcast::channel(FEED_QUEUE_LEN_MAX);
        Feed {
            node: node.to_owned(),
            local,
            cluster: None,
            stats: Arc::default(),
        }
    }

    /// A feed shared with the cluster over `bus` (whose broadcast channel is the feed's),
    /// its tasks spawned on the current runtime.
    pub fn clustered(node: &str, bus: RedisBus) -> Feed {
        let mut feed = Feed::local(node);
        let (tx, rx) = mpsc::channel(FEED_PUBLISH_QUEUE_LEN_MAX);
        feed.cluster = Some(tx);
        tokio::spawn(publish_to_cluster(bus.clone(), rx, feed.stats.clone()));
        tokio::spawn(take_from_cluster(bus, feed.clone()));
        feed
    }

    /// Publishes an event of this node, never waiting.
    pub fn publish(&self, topic: Topic, region: Option<u32>, data: serde_json::Value) {
        let event = FeedEvent {
            topic,
            node: self.node.clone(),
            region,
            at_ms: crate::economy::now_unix_ms(),
            data,
        };
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        if let Some(cluster) = &self.cluster
            && cluster.try_send(event.clone()).is_err()
        {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        // No subscriber here: nobody to tell (not an error).
        if self.local.receiver_count() > 0 {
            let _ = self.local.send(Published::new(event));
        }
    }

    /// Whether anybody could read an event published now: a subscriber here, or other
    /// nodes. Lets hot paths skip building events nobody reads.
    pub fn is_watched(&self) -> bool {
        self.cluster.is_some() || self.local.receiver_count() > 0
    }

    /// A new subscriber's side: every event from now on, until it falls
    /// [`FEED_QUEUE_LEN_MAX`] behind.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.local.subscribe()
    }

    /// Counters.
    pub fn stats(&self) -> &Arc<FeedStats> {
        &self.stats
    }
}

async fn publish_to_cluster(
    bus: RedisBus,
    mut queue: mpsc::Receiver<FeedEvent>,
    stats: Arc<FeedStats>,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH_MAX);
    while queue.recv_many(&mut batch, PUBLISH_BATCH_MAX).await > 0 {
        let payloads: Vec<Vec<u8>> = batch
            .drain(..)
            .filter_map(
                |event| match codec::encode(&Wire::from(&event), FEED_EVENT_BYTES_MAX) {
                    Ok(bytes) => Some(bytes),
                    Err(_) => {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                },
            )
            .collect();
        if let Err(e) = bus.publish_chat(&payloads).await {
            // Loss-tolerant: the events are gone, the next ones are tried.
            stats
                .dropped
                .fetch_add(payloads.len() as u64, Ordering::Relaxed);
            tracing::debug!(error = %e, "feed events not published to the cluster");
        }
    }
}

/// How long to wait before subscribing again after a failure, at most.
const SUBSCRIBE_RETRY_MAX: Duration = Duration::from_secs(5);

async fn take_from_cluster(bus: RedisBus, feed: Feed) {
    let mut wait = Duration::from_millis(100);
    loop {
        let mut events = match bus.subscribe_chat().await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to the cluster's feed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(SUBSCRIBE_RETRY_MAX);
                continue;
            }
        };
        wait = Duration::from_millis(100);
        while let Some(frame) = events.recv().await {
            let Ok(wire) = codec::decode::<Wire>(&frame.payload, FEED_EVENT_BYTES_MAX) else {
                continue;
            };
            let Some(event) = wire.into_event() else {
                continue;
            };
            // This node's own events are in its feed already.
            if event.node != feed.node {
                feed.stats.received.fetch_add(1, Ordering::Relaxed);
                if feed.local.receiver_count() > 0 {
                    let _ = feed.local.send(Published::new(event));
                }
            }
        }
    }
}

/// An event on the cluster's channel: bincode around the JSON of its data (bincode
/// cannot carry a `serde_json::Value`).
#[derive(Serialize, Deserialize)]
struct Wire {
    topic: String,
    node: String,
    region: Option<u32>,
    at_ms: u64,
    data: String,
}

impl Wire {
    fn from(event: &FeedEvent) -> Wire {
        Wire {
            topic: serde_json::to_value(event.topic)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            node: event.node.clone(),
            region: event.region,
            at_ms: event.at_ms,
            data: event.data.to_string(),
        }
    }

    fn into_event(self) -> Option<FeedEvent> {
        Some(FeedEvent {
            topic: Topic::parse(&self.topic)?,
            node: self.node,
            region: self.region,
            at_ms: self.at_ms,
            data: serde_json::from_str(&self.data).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_cross_the_wire_unchanged_and_garbage_is_dropped() {
        let event = FeedEvent {
            topic: Topic::Handoff,
            node: "n1".into(),
            region: Some(3),
            at_ms: 17,
            data: serde_json::json!({ "player": 5, "to": 4 }),
        };
        let wire = Wire::from(&event);
        assert_eq!(wire.topic, "handoff");
        assert_eq!(wire.into_event(), Some(event));
        let bad = Wire {
            topic: "gossip".into(),
            node: "n1".into(),
            region: None,
            at_ms: 0,
            data: "{}".into(),
        };
        assert_eq!(bad.into_event(), None);
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_event_and_a_slow_one_learns_it_lagged() {
        let feed = Feed::local("n1");
        assert!(!feed.is_watched());
        let (mut a, mut slow) = (feed.subscribe(), feed.subscribe());
        assert!(feed.is_watched());
        for i in 0..FEED_QUEUE_LEN_MAX + 10 {
            feed.publish(Topic::Admin, None, serde_json::json!({ "i": i }));
            if i < 3 {
                assert_eq!(a.recv().await.unwrap().event.data["i"], i);
            }
        }
        assert!(matches!(
            slow.recv().await,
            Err(broadcast::error::RecvError::Lagged(n)) if n == 10
        ));
    }
}
