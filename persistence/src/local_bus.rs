//! The in-process event bus: the embedded default (one node, no Redis). Same contract as
//! [`crate::redis_bus::RedisBus`] ([`crate::bus`]), held in memory behind one mutex; ghosts
//! go through a bounded broadcast channel (a subscriber that falls behind loses the oldest,
//! which its feed reports as a gap).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tessera_shared::ids::RegionId;
use tokio::sync::{broadcast, mpsc};

use crate::bus::*;
use crate::clock::Clock;

/// The in-process bus. Clones share one bus.
#[derive(Clone, Debug)]
pub struct LocalBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: BusConfig,
    clock: Clock,
    state: Mutex<State>,
    ghosts: broadcast::Sender<(RegionId, Vec<u8>)>,
    chat: broadcast::Sender<Vec<u8>>,
}

#[derive(Debug)]
struct State {
    next_id: u64,
    lanes: HashMap<(RegionId, Lane), VecDeque<Entry>>,
    /// Acknowledged keys per region, with when they are forgotten.
    done: HashMap<RegionId, HashMap<String, Instant>>,
    dead: HashMap<RegionId, VecDeque<DeadLetter>>,
    sequencer: GhostSequencer,
    chat_sequencer: ChatSequencer,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    key: String,
    payload: Vec<u8>,
    deliveries: u32,
    /// When it was last delivered (`None`: never).
    delivered_at: Option<Instant>,
}

impl LocalBus {
    /// An empty bus.
    pub fn new(config: BusConfig) -> Self {
        LocalBus::with_clock(config, Clock::system())
    }

    /// An empty bus on `clock`'s time (reclaims and remembered keys).
    pub fn with_clock(config: BusConfig, clock: Clock) -> Self {
        let (ghosts, _) = broadcast::channel(GHOST_QUEUE_LEN_MAX);
        let (chat, _) = broadcast::channel(CHAT_QUEUE_LEN_MAX);
        let incarnation = new_incarnation();
        LocalBus {
            inner: Arc::new(Inner {
                config,
                clock,
                state: Mutex::new(State {
                    next_id: 1,
                    lanes: HashMap::new(),
                    done: HashMap::new(),
                    dead: HashMap::new(),
                    sequencer: GhostSequencer::new(incarnation),
                    chat_sequencer: ChatSequencer::new(incarnation),
                }),
                ghosts,
                chat,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way
        // that matters more than losing the bus: keep serving.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for LocalBus {
    fn default() -> Self {
        LocalBus::new(BusConfig::default())
    }
}

impl State {
    fn is_done(&mut self, region: RegionId, key: &str, now: Instant) -> bool {
        let Some(done) = self.done.get_mut(&region) else {
            return false;
        };
        match done.get(key) {
            Some(&until) if until > now => true,
            Some(_) => {
                done.remove(key);
                false
            }
            None => false,
        }
    }
}

impl EventBus for LocalBus {
    async fn publish(&self, batch: &Batch) -> Result<Published, BusError> {
        check_batch(batch)?;
        let mut published = Published::default();
        let frames: Vec<(RegionId, Vec<u8>)> = {
            let mut state = self.state();
            for (i, mail) in batch.mail.iter().enumerate() {
                let id = state.next_id;
                let lane = state.lanes.entry((mail.to, mail.lane)).or_default();
                if lane.len() >= LANE_LEN_MAX {
                    published.refused.push(i);
                    continue;
                }
                lane.push_back(Entry {
                    id,
                    key: mail.key.clone(),
                    payload: mail.payload.clone(),
                    deliveries: 0,
                    delivered_at: None,
                });
                state.next_id += 1;
            }
            batch
                .ghosts
                .iter()
                .map(|g| (g.region, state.sequencer.frame(g)))
                .collect()
        };
        for frame in frames {
            // No subscriber: the message is gone, as with pub/sub.
            let _ = self.inner.ghosts.send(frame);
        }
        Ok(published)
    }

    async fn receive(
        &self,
        region: RegionId,
        _consumer: &str,
        max: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        let max = max.min(RECEIVE_MAX);
        let config = self.inner.config;
        let now = self.inner.clock.now();
        let mut state = self.state();
        let mut out = Vec::new();
        for lane in Lane::ALL {
            let Some(mut entries) = state.lanes.remove(&(region, lane)) else {
                continue;
            };
            let mut kept = VecDeque::with_capacity(entries.len());
            while let Some(mut entry) = entries.pop_front() {
                let due = entry
                    .delivered_at
                    .is_none_or(|at| now.duration_since(at) >= config.reclaim_idle);
                if out.len() >= max || !due {
                    kept.push_back(entry);
                    continue;
                }
                if state.is_done(region, &entry.key, now) {
                    continue; // Already applied: dropped, as if acknowledged.
                }
                if entry.deliveries >= config.deliveries_max {
                    let dead = state.dead.entry(region).or_default();
                    if dead.len() == DEAD_LETTERS_MAX {
                        dead.pop_front();
                    }
                    dead.push_back(DeadLetter {
                        lane,
                        key: entry.key,
                        payload: entry.payload,
                        deliveries: entry.deliveries,
                    });
                    continue;
                }
                entry.deliveries += 1;
                entry.delivered_at = Some(now);
                out.push(Delivery {
                    id: DeliveryId {
                        lane,
                        id: entry.id.to_string(),
                    },
                    region,
                    lane,
                    key: entry.key.clone(),
                    payload: entry.payload.clone(),
                    deliveries: entry.deliveries,
                });
                kept.push_back(entry);
            }
            if !kept.is_empty() {
                state.lanes.insert((region, lane), kept);
            }
        }
        Ok(out)
    }

    async fn ack(&self, region: RegionId, deliveries: &[Delivery]) -> Result<(), BusError> {
        let until = self.inner.clock.now() + self.inner.config.done_ttl;
        let mut state = self.state();
        for delivery in deliveries {
            let Ok(id) = delivery.id.id.parse::<u64>() else {
                continue;
            };
            if let Some(lane) = state.lanes.get_mut(&(region, delivery.id.lane)) {
                lane.retain(|e| e.id != id);
            }
            state
                .done
                .entry(region)
                .or_default()
                .insert(delivery.key.clone(), until);
        }
        Ok(())
    }

    async fn pending(&self, region: RegionId) -> Result<u64, BusError> {
        let state = self.state();
        Ok(Lane::ALL
            .iter()
            .filter_map(|&lane| state.lanes.get(&(region, lane)))
            .flatten()
            .filter(|e| e.delivered_at.is_some())
            .count() as u64)
    }

    async fn dead_letters(
        &self,
        region: RegionId,
        max: usize,
    ) -> Result<Vec<DeadLetter>, BusError> {
        let state = self.state();
        let Some(dead) = state.dead.get(&region) else {
            return Ok(Vec::new());
        };
        Ok(dead
            .iter()
            .skip(dead.len().saturating_sub(max))
            .cloned()
            .collect())
    }

    async fn dead_letter_count(&self, region: RegionId) -> Result<u64, BusError> {
        Ok(self.state().dead.get(&region).map_or(0, |d| d.len() as u64))
    }

    async fn subscribe_ghosts(&self, regions: &[RegionId]) -> Result<GhostFeed, BusError> {
        let mut source = self.inner.ghosts.subscribe();
        let wanted: Vec<RegionId> = regions.to_vec();
        let (tx, rx) = mpsc::channel(GHOST_QUEUE_LEN_MAX);
        let task = tokio::spawn(async move {
            loop {
                match source.recv().await {
                    Ok((region, frame)) if wanted.contains(&region) => {
                        // A full feed drops the message: the reader sees a gap.
                        if let Err(mpsc::error::TrySendError::Closed(_)) =
                            tx.try_send((region, frame))
                        {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // Fell behind: the sequence numbers tell the reader what it missed.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(GhostFeed::new(rx, task))
    }

    async fn publish_chat(&self, payloads: &[Vec<u8>]) -> Result<(), BusError> {
        check_chat(payloads)?;
        // Framed and sent under the lock: the sequence leaves in its order.
        let mut state = self.state();
        for payload in payloads {
            // No subscriber: the message is gone, as with pub/sub.
            let _ = self.inner.chat.send(state.chat_sequencer.frame(payload));
        }
        Ok(())
    }

    async fn subscribe_chat(&self) -> Result<ChatFeed, BusError> {
        let mut source = self.inner.chat.subscribe();
        let (tx, rx) = mpsc::channel(CHAT_QUEUE_LEN_MAX);
        let task = tokio::spawn(async move {
            loop {
                match source.recv().await {
                    // A full feed drops the message: the reader sees a gap.
                    Ok(frame) => {
                        if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(frame) {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(ChatFeed::new(rx, task))
    }
}
