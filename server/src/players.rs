//! Player persistence at the node's edge: a login loads the player's last save, a departure
//! (logout, or a dropped connection whose resume linger ran out) saves the final state.
//!
//! Saves go through one bounded queue ([`SAVES_QUEUE_LEN_MAX`]) to one writer task, so
//! the tick driver never waits on the store: it `try_send`s (a full queue drops the save
//! and counts it). A logout's save carries the session's reply, answered once the state is
//! durable: the session says `Bye` only then, so an acknowledged logout is never lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
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
/// Attempts per save before it is reported failed (with backoff between).
pub const SAVE_ATTEMPTS_MAX: usize = 3;

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

/// Counters of the writer.
#[derive(Debug, Default)]
pub struct SaveStats {
    /// Saves made durable.
    pub saved: AtomicU64,
    /// Saves that failed after every attempt.
    pub failed: AtomicU64,
    /// Saves dropped because the queue was full.
    pub dropped: AtomicU64,
}

/// A node's player persistence, over the store it is configured with.
pub type NodePlayers = Players<tessera_persistence::node_store::NodeStore>;

/// The node's player persistence: loads for sessions, the save queue for the driver.
#[derive(Debug)]
pub struct Players<S> {
    store: S,
    saves: mpsc::Sender<SaveRequest>,
    /// Counters.
    pub stats: Arc<SaveStats>,
}

impl<S: SnapshotStore + Clone + Send + Sync + 'static> Players<S> {
    /// Player persistence over `store`, with its writer task spawned on the current
    /// runtime.
    pub fn start(store: S) -> Players<S> {
        let (saves, queue) = mpsc::channel(SAVES_QUEUE_LEN_MAX);
        let stats = Arc::new(SaveStats::default());
        tokio::spawn(write_saves(store.clone(), queue, stats.clone()));
        Players {
            store,
            saves,
            stats,
        }
    }

    /// The sending side of the save queue, for the driver.
    pub fn saves(&self) -> mpsc::Sender<SaveRequest> {
        self.saves.clone()
    }

    /// The player's last save, if any. A stored state that does not decode is an error,
    /// not a fresh start: the player's progress is not silently reset.
    pub async fn load(&self, player: PlayerId) -> Result<Option<SavedPlayer>, StoreError> {
        let Some(record) = self.store.load_player(player).await? else {
            return Ok(None);
        };
        decode(&record.data)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("player {}: {e}", player.0)))
    }
}

async fn write_saves<S: SnapshotStore>(
    store: S,
    mut queue: mpsc::Receiver<SaveRequest>,
    stats: Arc<SaveStats>,
) {
    while let Some(request) = queue.recv().await {
        let record = PlayerRecord {
            player: request.player,
            data: encode(&request.state),
        };
        let mut result = Err(StoreError::Unavailable("not attempted".into()));
        for attempt in 0..SAVE_ATTEMPTS_MAX {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            result = store.save_player(&record).await;
            if !result.as_ref().is_err_and(StoreError::is_retryable) {
                break;
            }
        }
        match &result {
            Ok(()) => stats.saved.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tracing::error!(player = request.player.0, error = %e, "player save failed");
                stats.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
        if let Some(done) = request.done {
            let _ = done.send(result);
        }
    }
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
