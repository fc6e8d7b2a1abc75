//! Player persistence at the node's edge: a login loads the player's last save, a departure
//! (logout, or a dropped connection whose resume linger ran out) saves the final state, and
//! every connected player is saved periodically.
//!
//! Saves go through one bounded queue ([`SAVES_QUEUE_LEN_MAX`]) to one writer task, so
//! the tick driver never waits on the store: it `try_send`s (a full queue drops the save
//! and counts it). The writer coalesces per player (the newest state wins) into its
//! pending set, bounded by the number of players, and writes it out. While the store is
//! unavailable it keeps the pending set and retries with capped, jittered backoff
//! ([`RETRY_DELAY_MIN`] to [`RETRY_DELAY_MAX`]), still taking new saves off the queue: an
//! outage delays saves, it does not lose them. A load sees a pending save before the
//! store. A logout's save carries the session's reply, answered once the state is durable:
//! the session says `Bye` only then, so an acknowledged logout is never lost.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tessera_persistence::audit::Sanction;
use tessera_persistence::node_store::NodeStore;
use tessera_persistence::{PlayerRecord, SnapshotStore, StoreError};
use tessera_regions::io::SavedPlayer;
use tessera_shared::ids::PlayerId;
use tessera_shared::math::Vec2;
use tessera_shared::protocol::codec;
use tokio::sync::{mpsc, oneshot};

/// Saves waiting for the writer. A save is about 100 bytes.
pub const SAVES_QUEUE_LEN_MAX: usize = 4_096;
/// Largest stored player state accepted on load, in bytes.
pub const STORED_PLAYER_BYTES_MAX: usize = 256;
/// First delay before retrying saves while the store is unavailable.
pub const RETRY_DELAY_MIN: Duration = Duration::from_millis(100);
/// Longest delay between retries while the store is unavailable.
pub const RETRY_DELAY_MAX: Duration = Duration::from_secs(2);

/// A save's outcome, for a caller that waits on it.
pub type SaveReply = oneshot::Sender<Result<(), StoreError>>;

/// One save for the writer.
#[derive(Debug)]
pub struct SaveRequest {
    /// The player.
    pub player: PlayerId,
    /// The state to store.
    pub state: SavedPlayer,
    /// Answered once durable (or failed).
    pub done: Option<SaveReply>,
}

/// The stored form of a player (bincode, inside the store's versioned document).
#[derive(Debug, Serialize, Deserialize)]
struct StoredPlayer {
    position: [f32; 2],
    health: f32,
}

/// Encodes a player's state for the store.
pub fn encode(state: &SavedPlayer) -> Vec<u8> {
    let stored = StoredPlayer {
        position: [state.position.x, state.position.y],
        health: state.health,
    };
    codec::encode(&stored, STORED_PLAYER_BYTES_MAX).expect("three floats fit the limit")
}

/// Decodes a stored player state: a typed error for bytes that are not one.
pub fn decode(bytes: &[u8]) -> Result<SavedPlayer, codec::DecodeError> {
    let stored: StoredPlayer = codec::decode(bytes, STORED_PLAYER_BYTES_MAX)?;
    Ok(SavedPlayer {
        position: Vec2::new(stored.position[0], stored.position[1]),
        health: stored.health,
    })
}

/// Counters and state of the writer.
#[derive(Debug, Default)]
pub struct SaveStats {
    /// Saves made durable.
    pub saved: AtomicU64,
    /// Saves refused by the store for good (not retryable).
    pub failed: AtomicU64,
    /// Set while saves wait for an unavailable store (health reports it).
    pub degraded: AtomicBool,
}

/// Players whose newest state is not yet durable, with the replies waiting on it. At most
/// one entry per player.
type PendingMap = BTreeMap<PlayerId, (SavedPlayer, Vec<SaveReply>)>;
type PendingSaves = Arc<Mutex<PendingMap>>;

/// The node's player persistence over the store it is configured with: loads for
/// sessions, the save queue for the driver.
#[derive(Debug)]
pub struct Players {
    store: NodeStore,
    saves: mpsc::Sender<SaveRequest>,
    pending: PendingSaves,
    /// Counters.
    pub stats: Arc<SaveStats>,
}

impl Players {
    /// Player persistence over `store`, with its writer task spawned on the current
    /// runtime.
    pub fn start(store: NodeStore) -> Players {
        let (saves, queue) = mpsc::channel(SAVES_QUEUE_LEN_MAX);
        let stats = Arc::new(SaveStats::default());
        let pending = PendingSaves::default();
        tokio::spawn(write_saves(
            store.clone(),
            queue,
            pending.clone(),
            stats.clone(),
        ));
        Players {
            store,
            saves,
            pending,
            stats,
        }
    }

    /// The sending side of the save queue, for the driver.
    pub fn saves(&self) -> mpsc::Sender<SaveRequest> {
        self.saves.clone()
    }

    /// The player's ban or mute (`kind`) in force at `now_unix_s`, if any.
    pub async fn sanction(
        &self,
        kind: Sanction,
        player: PlayerId,
        now_unix_s: u64,
    ) -> Result<Option<tessera_persistence::audit::SanctionRecord>, StoreError> {
        Ok(self
            .store
            .sanction_of(kind, player)
            .await?
            .filter(|b| b.is_in_force(now_unix_s)))
    }

    /// The player's last save, if any. A stored state that does not decode is an error,
    /// not a fresh start: the player's progress is not silently reset.
    pub async fn load(&self, player: PlayerId) -> Result<Option<SavedPlayer>, StoreError> {
        if let Some((state, _)) = lock(&self.pending).get(&player) {
            return Ok(Some(*state)); // Newer than the store's, not yet written.
        }
        let Some(record) = self.store.load_player(player).await? else {
            return Ok(None);
        };
        decode(&record.data)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("player {}: {e}", player.0)))
    }
}

fn lock(pending: &PendingSaves) -> std::sync::MutexGuard<'_, PendingMap> {
    pending.lock().unwrap_or_else(|p| p.into_inner())
}

/// Adds a request to the pending set: its state replaces an older one of the player.
fn add(pending: &PendingSaves, request: SaveRequest) {
    let mut pending = lock(pending);
    let (state, replies) = pending
        .entry(request.player)
        .or_insert_with(|| (request.state, Vec::new()));
    *state = request.state; // The newest state wins.
    replies.extend(request.done);
}

/// Delays between retries of a store that is unavailable: exponential from `min`, capped
/// at `max`, jittered (backon) so that nodes recovering together do not retry in step;
/// endless.
pub(crate) fn store_backoff(min: Duration, max: Duration) -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

async fn write_saves(
    store: NodeStore,
    mut queue: mpsc::Receiver<SaveRequest>,
    pending: PendingSaves,
    stats: Arc<SaveStats>,
) {
    let mut delays = store_backoff(RETRY_DELAY_MIN, RETRY_DELAY_MAX);
    loop {
        if lock(&pending).is_empty() {
            match queue.recv().await {
                Some(request) => add(&pending, request),
                None => return,
            }
        }
        while let Ok(request) = queue.try_recv() {
            add(&pending, request);
        }
        if write_pending(&store, &pending, &stats).await {
            stats.degraded.store(false, Ordering::Relaxed);
            delays = store_backoff(RETRY_DELAY_MIN, RETRY_DELAY_MAX);
            continue;
        }
        if !stats.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                pending = lock(&pending).len(),
                "player store unavailable: saves wait and are retried"
            );
        }
        // Wait before retrying, still taking saves off the queue.
        let retry_at = tokio::time::Instant::now() + delays.next().unwrap_or(RETRY_DELAY_MAX);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(retry_at) => break,
                request = queue.recv() => match request {
                    Some(request) => add(&pending, request),
                    None => break,
                },
            }
        }
    }
}

/// Writes every pending save, oldest player id first; `false` at the first one that found
/// the store unavailable (it and the rest stay pending).
async fn write_pending(store: &NodeStore, pending: &PendingSaves, stats: &SaveStats) -> bool {
    let players: Vec<PlayerId> = lock(pending).keys().copied().collect();
    for player in players {
        let Some(state) = lock(pending).get(&player).map(|e| e.0) else {
            continue;
        };
        let record = PlayerRecord {
            player,
            data: encode(&state),
        };
        let result = store.save_player(&record).await;
        if result.as_ref().is_err_and(StoreError::is_retryable) {
            return false;
        }
        // Done with this state; a newer one queued meanwhile stays for the next round.
        let replies = {
            let mut pending = lock(pending);
            match pending.get(&player) {
                Some((newest, _)) if *newest == state => {
                    pending.remove(&player).map(|e| e.1).unwrap_or_default()
                }
                // A newer state arrived meanwhile: its write answers them all.
                Some(_) | None => Vec::new(),
            }
        };
        match &result {
            Ok(()) => stats.saved.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tracing::error!(player = player.0, error = %e, "player save refused");
                stats.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
        for reply in replies {
            let _ = reply.send(result.clone());
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_states_round_trip_and_garbage_is_an_error() {
        let state = SavedPlayer {
            position: Vec2::new(1030.5, -7.25),
            health: 42.0,
        };
        assert_eq!(decode(&encode(&state)).unwrap(), state);
        assert!(decode(&[1, 2, 3]).is_err());
        assert!(decode(&vec![0; STORED_PLAYER_BYTES_MAX + 1]).is_err());
    }
}
