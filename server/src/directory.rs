//! The player directory at the node's edge: the driver and the economy tell it who
//! entered the world, is still there (with every periodic save), left, or gained a level
//! ([`PresenceUpdate`]); one writer task applies the updates to the store in batches.
//!
//! The driver never waits on it: updates go through one bounded queue
//! ([`PRESENCE_QUEUE_LEN_MAX`]) with `try_send`, and a full queue drops the update and
//! counts it (`dropped`). A dropped heartbeat is repaired by the next one; a dropped login
//! or departure leaves a session missing or open in the history, which is why the count is
//! a metric. While the store is unavailable the writer keeps its batch and retries with
//! capped, jittered backoff, and the queue fills meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tessera_persistence::directory::{DirectoryStore, PresenceUpdate};
use tessera_persistence::economy::EconomyStore;
use tessera_persistence::node_store::NodeStore;
use tokio::sync::mpsc;

use crate::players::{RETRY_DELAY_MAX, RETRY_DELAY_MIN, store_backoff};

/// Updates waiting for the writer (each is about 100 bytes).
pub const PRESENCE_QUEUE_LEN_MAX: usize = 16_384;
/// Most updates the writer applies in one store call.
pub const PRESENCE_BATCH_MAX: usize = 512;

/// Counters of the writer.
#[derive(Debug, Default)]
pub struct PresenceStats {
    /// Updates applied.
    pub written: AtomicU64,
    /// Updates dropped: the queue was full.
    pub dropped: AtomicU64,
    /// Updates the store refused for good (not retryable).
    pub failed: AtomicU64,
    /// Set while updates wait for an unavailable store.
    pub degraded: AtomicBool,
}

/// The sending side, for the driver and the economy: never waits.
#[derive(Clone, Debug)]
pub struct Presence {
    queue: mpsc::Sender<PresenceUpdate>,
    stats: Arc<PresenceStats>,
}

impl Presence {
    /// The writer over `store`, spawned on the current runtime.
    pub fn start(store: NodeStore) -> Presence {
        let (queue, updates) = mpsc::channel(PRESENCE_QUEUE_LEN_MAX);
        let stats = Arc::new(PresenceStats::default());
        tokio::spawn(write_updates(store, updates, stats.clone()));
        Presence { queue, stats }
    }

    /// Queues `update`, or drops and counts it if the queue is full.
    pub fn tell(&self, update: PresenceUpdate) {
        if self.queue.try_send(update).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counters.
    pub fn stats(&self) -> &Arc<PresenceStats> {
        &self.stats
    }
}

async fn write_updates(
    store: NodeStore,
    mut updates: mpsc::Receiver<PresenceUpdate>,
    stats: Arc<PresenceStats>,
) {
    let mut batch = Vec::with_capacity(PRESENCE_BATCH_MAX);
    while updates.recv_many(&mut batch, PRESENCE_BATCH_MAX).await > 0 {
        fill_levels(&store, &mut batch).await;
        let mut delays = store_backoff(RETRY_DELAY_MIN, RETRY_DELAY_MAX);
        loop {
            match store.record_presence(&batch).await {
                Ok(()) => {
                    stats
                        .written
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    stats.degraded.store(false, Ordering::Relaxed);
                    break;
                }
                Err(e) if e.is_retryable() => {
                    if !stats.degraded.swap(true, Ordering::Relaxed) {
                        tracing::warn!(error = %e, "player directory unavailable: presence updates wait and are retried");
                    }
                    tokio::time::sleep(delays.next().unwrap_or(RETRY_DELAY_MAX)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, updates = batch.len(), "presence updates refused");
                    stats
                        .failed
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    break;
                }
            }
        }
        batch.clear();
    }
}

/// Logins carry the player's level as the economy has it (the driver does not know it);
/// left as it is when the economy cannot be read.
async fn fill_levels(store: &NodeStore, batch: &mut [PresenceUpdate]) {
    for update in batch {
        if let PresenceUpdate::Login { player, level, .. } = update
            && let Ok(economy) = store.economy_of(*player).await
        {
            *level = economy.map_or(*level, |e| e.level);
        }
    }
}
