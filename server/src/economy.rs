//! The economy at the node's edge: what the simulation and the players ask of the
//! economy (a kill's loot and XP, the starter kit, later purchases and trades) goes through
//! one bounded queue ([`ECONOMY_QUEUE_LEN_MAX`]) to a committer task, which runs each as a
//! store transaction ([`tessera_persistence::economy`]).
//!
//! The tick driver never waits: it `try_send`s, and a full queue drops the request and
//! counts it (`economy_dropped`). The committer runs up to [`ECONOMY_IN_FLIGHT_MAX`]
//! transactions at once; one the store could not answer (unavailable, contended) is
//! retried with the same idempotency key, with capped jittered backoff, for up to
//! [`ECONOMY_RETRY_FOR`]: applied once however often it is tried. A caller that waits on
//! the outcome gets it through its reply.
//!
//! After a transaction is applied, the leaderboards get the new scores of the players it
//! changed ([`Economy::applied`], read back from the store); one that fails is counted
//! (`leaderboard_failed`) and mended by a rebuild.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tessera_persistence::StoreError;
use tessera_persistence::economy::{EconomyStore, EconomyTx, TxKind, TxOutcome};
use tessera_persistence::leaderboard::Leaderboards;
use tessera_persistence::node_store::NodeStore;
use tessera_regions::io::KillReward;
use tessera_shared::config::BalanceConfig;
use tessera_shared::ids::PlayerId;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::players::store_backoff;

/// Requests waiting for the committer. A request is about 200 bytes.
pub const ECONOMY_QUEUE_LEN_MAX: usize = 16_384;
/// Transactions the committer runs at once.
pub const ECONOMY_IN_FLIGHT_MAX: usize = 32;
/// How long a transaction the store cannot answer is retried before it is given up
/// (counted in `failed`).
pub const ECONOMY_RETRY_FOR: Duration = Duration::from_secs(120);
/// The key of a player's starter kit: one per player, so a retried or repeated delivery is
/// the same transaction.
pub const STARTER_KIT_KEY: &str = "starter-kit";

/// A transaction's outcome, for a caller that waits on it.
pub type TxReply = oneshot::Sender<Result<TxOutcome, StoreError>>;

/// One transaction for the committer, under the balance in force when it was asked.
#[derive(Debug)]
pub struct EconomyRequest {
    /// The transaction.
    pub tx: EconomyTx,
    /// The balance to decide it by (shops, items, progression).
    pub balance: Arc<BalanceConfig>,
    /// Answered with the outcome.
    pub done: Option<TxReply>,
}

/// The committer's counters.
#[derive(Debug, Default)]
pub struct EconomyStats {
    /// Transactions applied.
    pub applied: AtomicU64,
    /// Requests whose key was applied before (retries, repeated deliveries).
    pub duplicates: AtomicU64,
    /// Transactions refused (by the economy's rules: not enough coins, no room...).
    pub refused: AtomicU64,
    /// Transactions given up after [`ECONOMY_RETRY_FOR`], or refused by the store.
    pub failed: AtomicU64,
    /// Attempts the store could not answer, retried.
    pub retries: AtomicU64,
    /// Leaderboard updates that failed (the boards lag until a rebuild).
    pub leaderboard_failed: AtomicU64,
}

/// The sending side and the counters of the committer.
#[derive(Clone, Debug)]
pub struct Economy {
    requests: mpsc::Sender<EconomyRequest>,
    store: NodeStore,
    leaderboards: Leaderboards,
    /// Counters.
    pub stats: Arc<EconomyStats>,
}

impl Economy {
    /// The committer over `store`, spawned on the current runtime, keeping
    /// `leaderboards` current.
    pub fn start(store: NodeStore, leaderboards: Leaderboards) -> Economy {
        let (requests, queue) = mpsc::channel(ECONOMY_QUEUE_LEN_MAX);
        let stats = Arc::new(EconomyStats::default());
        let economy = Economy {
            requests,
            store,
            leaderboards,
            stats,
        };
        tokio::spawn(commit(economy.clone(), queue));
        economy
    }

    /// The leaderboards.
    pub fn leaderboards(&self) -> &Leaderboards {
        &self.leaderboards
    }

    /// After `tx` was applied: the leaderboards get the new scores of the players it
    /// changed.
    pub async fn applied(&self, tx: &EconomyTx) {
        let other = tx.kind.touches(tx.player).other;
        let mut economies = Vec::with_capacity(2);
        for player in std::iter::once(tx.player).chain(other) {
            match self.store.economy_of(player).await {
                Ok(economy) => economies.push((player, economy.unwrap_or_default())),
                Err(_) => {
                    self.stats
                        .leaderboard_failed
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        if let Err(e) = self.leaderboards.record(&economies).await {
            self.stats
                .leaderboard_failed
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "leaderboards not updated");
        }
    }

    /// The sending side, for the driver.
    pub fn requests(&self) -> mpsc::Sender<EconomyRequest> {
        self.requests.clone()
    }

    /// The store (reads for the admin API and the sessions).
    pub fn store(&self) -> &NodeStore {
        &self.store
    }
}

/// The transaction of a kill: its key is the NPC's id, which is never reused, so that the
/// kill is committed once however often it is sent.
pub fn kill_tx(balance: &BalanceConfig, kill: &KillReward, at_ms: u64) -> EconomyTx {
    let items = kill
        .items
        .iter()
        .filter_map(|&(item, n)| balance.items.get(item).map(|i| (i.id.clone(), n)))
        .collect();
    EconomyTx {
        player: kill.player,
        key: format!("kill:{}", kill.npc.0),
        kind: TxKind::Kill {
            coins: kill.coins,
            items,
            target_level: kill.target_level,
        },
        at_ms,
    }
}

/// The transaction delivering `player`'s starter kit.
pub fn starter_kit_tx(player: PlayerId, at_ms: u64) -> EconomyTx {
    EconomyTx {
        player,
        key: STARTER_KIT_KEY.to_owned(),
        kind: TxKind::StarterKit,
        at_ms,
    }
}

/// The wall clock in Unix milliseconds (ledger times and restocking).
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn commit(economy: Economy, mut queue: mpsc::Receiver<EconomyRequest>) {
    let slots = Arc::new(Semaphore::new(ECONOMY_IN_FLIGHT_MAX));
    while let Some(request) = queue.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let economy = economy.clone();
        tokio::spawn(async move {
            let outcome = apply_with_retries(&economy.store, &request, &economy.stats).await;
            let applied = matches!(outcome, Ok(TxOutcome::Applied(_)));
            if let Some(done) = request.done {
                let _ = done.send(outcome);
            }
            if applied {
                economy.applied(&request.tx).await;
            }
            drop(slot);
        });
    }
}

async fn apply_with_retries(
    store: &NodeStore,
    request: &EconomyRequest,
    stats: &EconomyStats,
) -> Result<TxOutcome, StoreError> {
    let give_up_at = tokio::time::Instant::now() + ECONOMY_RETRY_FOR;
    let mut delays = store_backoff(Duration::from_millis(50), Duration::from_secs(2));
    loop {
        let result = store.apply_tx(request.balance.clone(), &request.tx).await;
        match &result {
            Ok(TxOutcome::Applied(_)) => {
                stats.applied.fetch_add(1, Ordering::Relaxed);
            }
            Ok(TxOutcome::Duplicate(_)) => {
                stats.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            Ok(TxOutcome::Refused(why)) => {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(player = request.tx.player.0, key = %request.tx.key, %why, "economy transaction refused");
            }
            Err(e) if e.is_retryable() && tokio::time::Instant::now() < give_up_at => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                let delay = delays.next().unwrap_or(Duration::from_secs(2));
                tokio::time::sleep(delay).await;
                continue;
            }
            Err(e) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(player = request.tx.player.0, key = %request.tx.key, error = %e, "economy transaction given up");
            }
        }
        return result;
    }
}
