//! The store a node is configured with: MongoDB when `[services] mongodb_uri` is set, the
//! embedded redb store in the data dir otherwise. One type, so that the rest of the node
//! is written once, behind a circuit breaker.
//!
//! The breaker (failsafe) opens after [`FAILURES_TO_OPEN`] consecutive calls that found
//! the store unavailable; while open, calls fail at once with
//! [`StoreError::Unavailable`] instead of each waiting out the driver's timeouts, and after
//! a jittered delay growing from [`OPEN_MIN`] to [`OPEN_MAX`] one call is let through to
//! probe the store (half-open): its success closes the breaker.

use std::future::Future;
use std::time::Duration;

use failsafe::backoff::{self, EqualJittered};
use failsafe::failure_policy::{self, ConsecutiveFailures};
use tessera_shared::ids::{PlayerId, RegionId};

use crate::embedded::EmbeddedStore;
use crate::mongo::MongoStore;
use crate::snapshot::{PlayerRecord, RegionCommit, RegionSnapshot, SnapshotStore, StoreError};

/// Consecutive unavailable calls that open the breaker.
pub const FAILURES_TO_OPEN: u32 = 3;
/// Shortest time the breaker stays open, jittered down to half (failsafe counts whole
/// seconds: from 1 s, the first half would round to nothing).
pub const OPEN_MIN: Duration = Duration::from_secs(2);
/// Longest time the breaker stays open.
pub const OPEN_MAX: Duration = Duration::from_secs(10);

type Breaker = failsafe::StateMachine<ConsecutiveFailures<EqualJittered>, ()>;

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
        let policy = failure_policy::consecutive_failures(
            FAILURES_TO_OPEN,
            backoff::equal_jittered(OPEN_MIN, OPEN_MAX),
        );
        NodeStore {
            backend,
            breaker: failsafe::Config::new().failure_policy(policy).build(),
        }
    }

    /// Which one this is, for logs and health.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Embedded(_) => "embedded",
            Backend::Mongo(_) => "mongodb",
        }
    }

    /// Runs `op` if the breaker permits, recording whether it found the store available.
    async fn guarded<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if !self.breaker.is_call_permitted() {
            return Err(StoreError::Unavailable(
                "circuit open: the store failed repeatedly; probing again shortly".into(),
            ));
        }
        let result = op.await;
        match &result {
            Err(e) if e.is_retryable() => self.breaker.on_error(),
            _ => self.breaker.on_success(),
        }
        result
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_consecutive_unavailable_calls() {
        let dir = std::env::temp_dir().join(format!("tessera-breaker-{}", std::process::id()));
        let store = NodeStore::embedded(EmbeddedStore::open(&dir).unwrap());
        for _ in 0..FAILURES_TO_OPEN {
            assert!(store.breaker.is_call_permitted());
            store.breaker.on_error();
        }
        assert!(!store.breaker.is_call_permitted());
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
