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
//!
//! One key, one attempt at a time: a request whose (player, key) is already being
//! committed (a client sent it again after an answer that was late, not lost) joins that
//! commit and is answered with its outcome (`Duplicate` if it was applied), instead of
//! running beside it. Two attempts of one key running at once could decide differently
//! (one refused, the other applied later), and a client told "refused, nothing changed"
//! would find the key applied after all. For the same reason a retry is given up as soon
//! as nobody waits for its answer any more (the session that asked ended: its client
//! sends the key again wherever it logs in next), and each attempt is decided at the time
//! it is made (`at_ms` is the attempt's: an offer that expired meanwhile is not accepted,
//! a shop restocks up to now).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tessera_persistence::StoreError;
use tessera_persistence::directory::PresenceUpdate;
use tessera_persistence::economy::{EconomyStore, EconomyTx, PlayerEconomy, TxKind, TxOutcome};
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
    /// Requests that joined the commit of the same key already running.
    pub joined: AtomicU64,
    /// Retries given up because nobody waited for the answer any more.
    pub abandoned: AtomicU64,
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
    pub fn start(
        store: NodeStore,
        leaderboards: Leaderboards,
        presence: Option<crate::directory::Presence>,
    ) -> Economy {
        let (requests, queue) = mpsc::channel(ECONOMY_QUEUE_LEN_MAX);
        let stats = Arc::new(EconomyStats::default());
        let economy = Economy {
            requests,
            store,
            leaderboards,
            stats,
        };
        tokio::spawn(commit(
            economy.store.clone(),
            queue,
            economy.stats.clone(),
            Some(economy.leaderboards.clone()),
            presence,
        ));
        economy
    }

    /// The leaderboards.
    pub fn leaderboards(&self) -> &Leaderboards {
        &self.leaderboards
    }

    /// In-process leaderboards start empty: fills them from the store, in a task on the
    /// current runtime (nothing to do for the cluster's, in Redis).
    pub fn fill_local_leaderboards(&self) {
        if !matches!(self.leaderboards, Leaderboards::Local(_)) {
            return;
        }
        let economy = self.clone();
        tokio::spawn(async move {
            let rebuilt = match economy.store.economy_audit().await {
                Ok(audit) => economy
                    .leaderboards
                    .rebuild(&audit.players)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = rebuilt {
                tracing::warn!(error = %e, "leaderboards not filled from the store");
            }
        });
    }

    /// After `tx` was applied: the leaderboards get the new scores of the players it
    /// changed.
    pub async fn applied(&self, tx: &EconomyTx) {
        record_scores(&self.store, &self.leaderboards, &self.stats, tx).await;
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

/// The leaderboards get the new scores of the players `tx` changed, read from `store`.
async fn record_scores<S: EconomyStore>(
    store: &S,
    leaderboards: &Leaderboards,
    stats: &EconomyStats,
    tx: &EconomyTx,
) -> Option<Vec<(PlayerId, PlayerEconomy)>> {
    let other = tx.kind.touches(tx.player).other;
    let mut economies = Vec::with_capacity(2);
    for player in std::iter::once(tx.player).chain(other) {
        match store.economy_of(player).await {
            Ok(economy) => economies.push((player, economy.unwrap_or_default())),
            Err(_) => {
                stats.leaderboard_failed.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
    }
    if let Err(e) = leaderboards.record(&economies).await {
        stats.leaderboard_failed.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(error = %e, "leaderboards not updated");
    }
    Some(economies)
}

/// The replies waiting on the commit of one (player, key): the request's own (if it has
/// one) and those that joined it.
#[derive(Default)]
struct Waiting {
    own: Option<TxReply>,
    joined: Vec<TxReply>,
    /// Whether the request had a reply (a client's): it is then given up once every
    /// reply is closed. The node's own (kills, kits) have none and are never given up.
    answered: bool,
}

impl Waiting {
    fn nobody_waits(&self) -> bool {
        self.answered
            && self.own.as_ref().is_none_or(|r| r.is_closed())
            && self.joined.iter().all(|r| r.is_closed())
    }

    fn answer(self, outcome: Result<TxOutcome, StoreError>) {
        let joined = match &outcome {
            Ok(TxOutcome::Applied(entry)) => Ok(TxOutcome::Duplicate(entry.clone())),
            other => other.clone(),
        };
        for reply in self.joined {
            let _ = reply.send(joined.clone());
        }
        if let Some(own) = self.own {
            let _ = own.send(outcome);
        }
    }
}

type InFlight = Arc<Mutex<HashMap<(PlayerId, String), Waiting>>>;

/// Commits the requests of `queue` in `store`; with `leaderboards`, records the scores
/// each applied one changed, and with `presence` tells the player directory of levels
/// gained.
async fn commit<S: EconomyStore + Clone + 'static>(
    store: S,
    mut queue: mpsc::Receiver<EconomyRequest>,
    stats: Arc<EconomyStats>,
    leaderboards: Option<Leaderboards>,
    presence: Option<crate::directory::Presence>,
) {
    let slots = Arc::new(Semaphore::new(ECONOMY_IN_FLIGHT_MAX));
    let in_flight: InFlight = Arc::default();
    while let Some(request) = queue.recv().await {
        let id = (request.tx.player, request.tx.key.clone());
        {
            let mut map = in_flight.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(waiting) = map.get_mut(&id) {
                stats.joined.fetch_add(1, Ordering::Relaxed);
                if let Some(done) = request.done {
                    waiting.joined.push(done);
                }
                continue;
            }
            let answered = request.done.is_some();
            map.insert(
                id.clone(),
                Waiting {
                    own: request.done,
                    joined: Vec::new(),
                    answered,
                },
            );
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (store, stats, in_flight) = (store.clone(), stats.clone(), in_flight.clone());
        let (leaderboards, presence) = (leaderboards.clone(), presence.clone());
        let (tx, balance) = (request.tx, request.balance);
        tokio::spawn(async move {
            let nobody_waits = || {
                in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&id)
                    .is_some_and(Waiting::nobody_waits)
            };
            let outcome =
                apply_with_retries(&store, balance, tx.clone(), &stats, nobody_waits).await;
            let applied = matches!(outcome, Ok(TxOutcome::Applied(_)));
            let levelled = matches!(&outcome, Ok(TxOutcome::Applied(e)) if e.levels > 0);
            let waiting = in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            if let Some(waiting) = waiting {
                waiting.answer(outcome);
            }
            if applied && let Some(leaderboards) = &leaderboards {
                let economies = record_scores(&store, leaderboards, &stats, &tx).await;
                if levelled
                    && let Some(presence) = &presence
                    && let Some((player, economy)) = economies.as_ref().and_then(|e| e.first())
                {
                    presence.tell(PresenceUpdate::Level {
                        player: *player,
                        level: economy.level,
                    });
                }
            }
            drop(slot);
        });
    }
}

/// Runs `tx` until the store answers, for up to [`ECONOMY_RETRY_FOR`], each attempt at
/// the time it is made; given up early once `nobody_waits`.
async fn apply_with_retries<S: EconomyStore>(
    store: &S,
    balance: Arc<BalanceConfig>,
    mut tx: EconomyTx,
    stats: &EconomyStats,
    nobody_waits: impl Fn() -> bool,
) -> Result<TxOutcome, StoreError> {
    let give_up_at = tokio::time::Instant::now() + ECONOMY_RETRY_FOR;
    let mut delays = store_backoff(Duration::from_millis(50), Duration::from_secs(2));
    loop {
        let result = store.apply_tx(balance.clone(), &tx).await;
        match &result {
            Ok(TxOutcome::Applied(_)) => {
                stats.applied.fetch_add(1, Ordering::Relaxed);
            }
            Ok(TxOutcome::Duplicate(_)) => {
                stats.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            Ok(TxOutcome::Refused(why)) => {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(player = tx.player.0, key = %tx.key, %why, "economy transaction refused");
            }
            Err(e) if e.is_retryable() && tokio::time::Instant::now() < give_up_at => {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                let delay = delays.next().unwrap_or(Duration::from_secs(2));
                tokio::time::sleep(delay).await;
                if nobody_waits() {
                    stats.abandoned.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(player = tx.player.0, key = %tx.key, "economy transaction given up: nobody waits for it");
                    return result;
                }
                // Decided at the time it is applied, not when it was first asked.
                tx.at_ms = tx.at_ms.max(now_unix_ms());
                continue;
            }
            Err(e) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(player = tx.player.0, key = %tx.key, error = %e, "economy transaction given up");
            }
        }
        return result;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use tessera_persistence::economy::{
        EconomyAudit, Holdings, LedgerEntry, PlayerEconomy, Reads, plan,
    };
    use tessera_shared::config::Config;

    use super::*;

    /// A store that fails its first `failures` attempts (contended), then applies each key
    /// once; it records every attempt's `at_ms`.
    #[derive(Clone, Default)]
    struct Flaky(Arc<Mutex<FlakyState>>);

    #[derive(Default)]
    struct FlakyState {
        failures: u32,
        attempts: Vec<u64>,
        applied: BTreeSet<(PlayerId, String)>,
    }

    impl Flaky {
        fn failing(failures: u32) -> Flaky {
            let store = Flaky::default();
            store.0.lock().unwrap().failures = failures;
            store
        }

        fn attempts(&self) -> Vec<u64> {
            self.0.lock().unwrap().attempts.clone()
        }
    }

    impl EconomyStore for Flaky {
        async fn apply_tx(
            &self,
            balance: Arc<BalanceConfig>,
            tx: &EconomyTx,
        ) -> Result<TxOutcome, StoreError> {
            let mut s = self.0.lock().unwrap();
            s.attempts.push(tx.at_ms);
            if s.failures > 0 {
                s.failures -= 1;
                return Err(StoreError::Contended("a lock held elsewhere".into()));
            }
            let entry = plan(&balance, tx, Reads::default()).unwrap().entry;
            if s.applied.insert((tx.player, tx.key.clone())) {
                Ok(TxOutcome::Applied(entry))
            } else {
                Ok(TxOutcome::Duplicate(entry))
            }
        }

        async fn economy_of(&self, _: PlayerId) -> Result<Option<PlayerEconomy>, StoreError> {
            Ok(None)
        }

        async fn ledger_of(&self, _: PlayerId, _: usize) -> Result<Vec<LedgerEntry>, StoreError> {
            Ok(Vec::new())
        }

        async fn economy_audit(&self) -> Result<EconomyAudit, StoreError> {
            Ok(EconomyAudit::default())
        }
    }

    fn grant(key: &str, at_ms: u64) -> EconomyTx {
        EconomyTx {
            player: PlayerId(7),
            key: key.into(),
            kind: TxKind::Grant(Holdings {
                coins: 5,
                items: Default::default(),
            }),
            at_ms,
        }
    }

    fn committer(store: &Flaky) -> (mpsc::Sender<EconomyRequest>, Arc<EconomyStats>) {
        let (requests, queue) = mpsc::channel(16);
        let stats = Arc::new(EconomyStats::default());
        tokio::spawn(commit(store.clone(), queue, stats.clone(), None, None));
        (requests, stats)
    }

    fn request(
        tx: EconomyTx,
    ) -> (
        EconomyRequest,
        oneshot::Receiver<Result<TxOutcome, StoreError>>,
    ) {
        let (done, outcome) = oneshot::channel();
        let request = EconomyRequest {
            tx,
            balance: Arc::new(Config::embedded_default().balance),
            done: Some(done),
        };
        (request, outcome)
    }

    #[tokio::test]
    async fn a_key_sent_again_while_it_is_committed_joins_that_commit() {
        let store = Flaky::failing(3);
        let (requests, stats) = committer(&store);
        let (first, first_outcome) = request(grant("client:k1", 1));
        let (again, again_outcome) = request(grant("client:k1", 2));
        requests.send(first).await.unwrap();
        requests.send(again).await.unwrap();
        assert!(matches!(
            first_outcome.await.unwrap(),
            Ok(TxOutcome::Applied(_))
        ));
        assert!(matches!(
            again_outcome.await.unwrap(),
            Ok(TxOutcome::Duplicate(_))
        ));
        // One commit ran: three failed attempts and the one applied, none beside it.
        assert_eq!(store.attempts().len(), 4);
        assert_eq!(stats.joined.load(Ordering::Relaxed), 1);
        assert_eq!(stats.applied.load(Ordering::Relaxed), 1);
        // Sent once more after it: a duplicate, from the store.
        let (later, later_outcome) = request(grant("client:k1", 3));
        requests.send(later).await.unwrap();
        assert!(matches!(
            later_outcome.await.unwrap(),
            Ok(TxOutcome::Duplicate(_))
        ));
    }

    #[tokio::test]
    async fn a_retry_is_decided_when_it_is_made_and_given_up_once_nobody_waits() {
        // Each attempt at its own time: the first at the request's, the retries now.
        let store = Flaky::failing(2);
        let (requests, _) = committer(&store);
        let (old, outcome) = request(grant("client:old", 1));
        requests.send(old).await.unwrap();
        assert!(matches!(outcome.await.unwrap(), Ok(TxOutcome::Applied(_))));
        let attempts = store.attempts();
        assert_eq!(attempts[0], 1);
        assert!(
            attempts[1..].iter().all(|&at| at > 1_000_000),
            "{attempts:?}"
        );

        // A client's request whose session ended is given up at its next retry.
        let store = Flaky::failing(u32::MAX);
        let (requests, stats) = committer(&store);
        let (gone, outcome) = request(grant("client:gone", 1));
        requests.send(gone).await.unwrap();
        while store.attempts().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(outcome);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while stats.abandoned.load(Ordering::Relaxed) == 0 {
            assert!(tokio::time::Instant::now() < deadline, "never given up");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let tried = store.attempts().len();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            store.attempts().len(),
            tried,
            "retried after it was given up"
        );

        // The node's own transactions (no reply) are retried until applied.
        let store = Flaky::failing(3);
        let (requests, stats) = committer(&store);
        let kit = EconomyRequest {
            tx: starter_kit_tx(PlayerId(7), 1),
            balance: Arc::new(Config::embedded_default().balance),
            done: None,
        };
        requests.send(kit).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while stats.applied.load(Ordering::Relaxed) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the kit was never applied"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(stats.abandoned.load(Ordering::Relaxed), 0);
    }
}
