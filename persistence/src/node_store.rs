//! The store a node is configured with: MongoDB when `[services] mongodb_uri` is set, the
//! embedded redb store in the data dir otherwise. One type, so that the rest of the node
//! is written once, behind a circuit breaker.
//!
//! The breaker ([`crate::breaker`]) opens after `FAILURES_TO_OPEN` consecutive calls that
//! found the store unavailable; while open, calls fail at once with
//! [`StoreError::Unavailable`] instead of each waiting out the driver's timeouts, until a
//! probe finds the store back.

use std::future::Future;
use std::sync::Arc;

use tessera_shared::config::BalanceConfig;
use tessera_shared::ids::{PlayerId, RegionId};

use crate::audit::{AuditFilter, AuditPage, AuditRecord, Sanction, SanctionRecord};
use crate::breaker::Breaker;
use crate::directory::{DirectoryStore, PlayerPage, PlayerQuery, PresenceUpdate, Profile, Session};
use crate::economy::{
    EconomyAudit, EconomyStore, EconomyTx, LedgerEntry, PlayerEconomy, TxOutcome,
};
use crate::embedded::EmbeddedStore;
use crate::jobs::{JobRecord, JobStore};
use crate::mongo::MongoStore;
use crate::snapshot::{PlayerRecord, RegionCommit, RegionSnapshot, SnapshotStore, StoreError};

/// Either implementation of the [`SnapshotStore`] contract, behind a circuit breaker.
#[derive(Clone, Debug)]
pub struct NodeStore {
    backend: Backend,
    breaker: Breaker,
}

#[derive(Clone, Debug)]
enum Backend {
    Embedded(EmbeddedStore),
    Mongo(MongoStore),
}

impl NodeStore {
    /// The embedded default.
    pub fn embedded(store: EmbeddedStore) -> Self {
        Self::with(Backend::Embedded(store))
    }

    /// MongoDB (production).
    pub fn mongo(store: MongoStore) -> Self {
        Self::with(Backend::Mongo(store))
    }

    fn with(backend: Backend) -> Self {
        NodeStore {
            backend,
            breaker: Breaker::new(),
        }
    }

    /// Whether the breaker is open: the store failed repeatedly and calls are refused
    /// until a probe finds it back (health reports it).
    pub fn is_degraded(&self) -> bool {
        self.breaker.is_open()
    }

    /// Whether the store answers, bypassing the breaker (a health probe must see the
    /// store itself). The embedded store is a file in this process: it always answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(_) => Ok(()),
            Backend::Mongo(s) => s.ping().await,
        }
    }

    /// Which one this is, for logs and health.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Embedded(_) => "embedded",
            Backend::Mongo(_) => "mongodb",
        }
    }

    /// Runs `op` through the breaker.
    async fn guarded<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.breaker
            .call(op, StoreError::is_outage, || {
                StoreError::Unavailable(
                    "circuit open: the store failed repeatedly; probing again shortly".into(),
                )
            })
            .await
    }
}

impl SnapshotStore for NodeStore {
    async fn commit(&self, commit: &RegionCommit) -> Result<(), StoreError> {
        self.guarded(async {
            match &self.backend {
                Backend::Embedded(s) => s.commit(commit).await,
                Backend::Mongo(s) => s.commit(commit).await,
            }
        })
        .await
    }

    async fn load(&self, region: RegionId) -> Result<Option<RegionSnapshot>, StoreError> {
        self.guarded(async {
            match &self.backend {
                Backend::Embedded(s) => s.load(region).await,
                Backend::Mongo(s) => s.load(region).await,
            }
        })
        .await
    }

    async fn save_player(&self, record: &PlayerRecord) -> Result<(), StoreError> {
        self.guarded(async {
            match &self.backend {
                Backend::Embedded(s) => s.save_player(record).await,
                Backend::Mongo(s) => s.save_player(record).await,
            }
        })
        .await
    }

    async fn load_player(&self, player: PlayerId) -> Result<Option<PlayerRecord>, StoreError> {
        self.guarded(async {
            match &self.backend {
                Backend::Embedded(s) => s.load_player(player).await,
                Backend::Mongo(s) => s.load_player(player).await,
            }
        })
        .await
    }

    async fn write_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        self.guarded(async {
            match &self.backend {
                Backend::Embedded(s) => s.write_audit(record).await,
                Backend::Mongo(s) => s.write_audit(record).await,
            }
        })
        .await
    }

    async fn set_sanction(
        &self,
        kind: Sanction,
        player: PlayerId,
        record: Option<&SanctionRecord>,
    ) -> Result<(), StoreError> {
        self.guarded(async {
            match &self.backend {
                Backend::Embedded(s) => s.set_sanction(kind, player, record).await,
                Backend::Mongo(s) => s.set_sanction(kind, player, record).await,
            }
        })
        .await
    }

    async fn sanction_of(
        &self,
        kind: Sanction,
        player: PlayerId,
    ) -> Result<Option<SanctionRecord>, StoreError> {
        self.guarded(async {
            match &self.backend {
                Backend::Embedded(s) => s.sanction_of(kind, player).await,
                Backend::Mongo(s) => s.sanction_of(kind, player).await,
            }
        })
        .await
    }

    async fn read_audit(
        &self,
        limit: usize,
        before: Option<&str>,
        filter: &AuditFilter,
    ) -> Result<AuditPage, StoreError> {
        self.guarded(async {
            match &self.backend {
                Backend::Embedded(s) => s.read_audit(limit, before, filter).await,
                Backend::Mongo(s) => s.read_audit(limit, before, filter).await,
            }
        })
        .await
    }
}

impl EconomyStore for NodeStore {
    async fn apply_tx(
        &self,
        balance: Arc<BalanceConfig>,
        tx: &EconomyTx,
    ) -> Result<TxOutcome, StoreError> {
        self.guarded(async {
            match &self.backend {
                Backend::Embedded(s) => s.apply_tx(balance, tx).await,
                Backend::Mongo(s) => s.apply_tx(balance, tx).await,
            }
        })
        .await
    }

    async fn economy_of(&self, player: PlayerId) -> Result<Option<PlayerEconomy>, StoreError> {
        self.guarded(async {
            match &self.backend {
                Backend::Embedded(s) => s.economy_of(player).await,
                Backend::Mongo(s) => s.economy_of(player).await,
            }
        })
        .await
    }

    async fn ledger_of(
        &self,
        player: PlayerId,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        self.guarded(async {
            match &self.backend {
                Backend::Embedded(s) => s.ledger_of(player, limit).await,
                Backend::Mongo(s) => s.ledger_of(player, limit).await,
            }
        })
        .await
    }

    async fn economy_audit(&self) -> Result<EconomyAudit, StoreError> {
        self.guarded(async {
            match &self.backend {
                Backend::Embedded(s) => s.economy_audit().await,
                Backend::Mongo(s) => s.economy_audit().await,
            }
        })
        .await
    }
}

impl DirectoryStore for NodeStore {
    async fn record_presence(&self, updates: &[PresenceUpdate]) -> Result<(), StoreError> {
        self.guarded(async {
            match &self.backend {
                Backend::Embedded(s) => s.record_presence(updates).await,
                Backend::Mongo(s) => s.record_presence(updates).await,
            }
        })
        .await
    }

    async fn list_players(
        &self,
        query: &PlayerQuery,
        now_unix_s: u64,
    ) -> Result<PlayerPage, StoreError> {
        self.guarded(async {
            match &self.backend {
                Backend::Embedded(s) => s.list_players(query, now_unix_s).await,
                Backend::Mongo(s) => s.list_players(query, now_unix_s).await,
            }
        })
        .await
    }

    async fn profile_of(&self, player: PlayerId) -> Result<Option<Profile>, StoreError> {
        self.guarded(async {
            match &self.backend {
                Backend::Embedded(s) => s.profile_of(player).await,
                Backend::Mongo(s) => s.profile_of(player).await,
            }
        })
        .await
    }

    async fn sessions_of(
        &self,
        player: PlayerId,
        limit: usize,
    ) -> Result<Vec<Session>, StoreError> {
        self.guarded(async {
            match &self.backend {
                Backend::Embedded(s) => s.sessions_of(player, limit).await,
                Backend::Mongo(s) => s.sessions_of(player, limit).await,
            }
        })
        .await
    }

    async fn import_profiles(&self, profiles: &[Profile]) -> Result<(), StoreError> {
        self.guarded(async {
            match &self.backend {
                Backend::Embedded(s) => s.import_profiles(profiles).await,
                Backend::Mongo(s) => s.import_profiles(profiles).await,
            }
        })
        .await
    }
}

impl JobStore for NodeStore {
    async fn create_job(&self, job: &JobRecord) -> Result<Option<JobRecord>, StoreError> {
        self.guarded(async {
            match &self.backend {
                Backend::Embedded(s) => s.create_job(job).await,
                Backend::Mongo(s) => s.create_job(job).await,
            }
        })
        .await
    }

    async fn update_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        self.guarded(async {
            match &self.backend {
                Backend::Embedded(s) => s.update_job(job).await,
                Backend::Mongo(s) => s.update_job(job).await,
            }
        })
        .await
    }

    async fn job(&self, key: &str) -> Result<Option<JobRecord>, StoreError> {
        self.guarded(async {
            match &self.backend {
                Backend::Embedded(s) => s.job(key).await,
                Backend::Mongo(s) => s.job(key).await,
            }
        })
        .await
    }

    async fn interrupt_jobs(
        &self,
        node: &str,
        at_unix_ms: u64,
    ) -> Result<Vec<JobRecord>, StoreError> {
        self.guarded(async {
            match &self.backend {
                Backend::Embedded(s) => s.interrupt_jobs(node, at_unix_ms).await,
                Backend::Mongo(s) => s.interrupt_jobs(node, at_unix_ms).await,
            }
        })
        .await
    }
}
