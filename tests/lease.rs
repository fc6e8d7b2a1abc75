//! Region leases, against both implementations (in-process always, Redis when the test
//! services are up), and the fencing they give the snapshot store: a node that lost its
//! lease cannot overwrite its successor.

use std::time::{Duration, Instant};

use tessera::persistence::embedded::EmbeddedStore;
use tessera::persistence::lease::*;
use tessera::persistence::{CellWrite, RegionCommit, SnapshotStore, StoreError};
use tessera::shared::ids::RegionId;

use crate::util::{fresh_region, runtime, services};

/// Runs `check` against the in-process leases, then Redis's when it is up.
fn both<F, Fut>(test: &str, check: F)
where
    F: Fn(Leases) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    runtime().block_on(async {
        check(Leases::Local(LocalLeases::default())).await;
        if let Some(url) = services::redis_url(test) {
            check(Leases::Redis(RedisLeases::connect(&url).await.unwrap())).await;
        }
    });
}

/// Either implementation (the conformance suites run both).
#[derive(Clone, Debug)]
pub(crate) enum Leases {
    Local(LocalLeases),
    Redis(RedisLeases),
}

impl LeaseStore for Leases {
    async fn acquire(
        &self,
        r: RegionId,
        h: &str,
        ttl: Duration,
        min_epoch: u64,
    ) -> Result<Option<Lease>, LeaseError> {
        match self {
            Leases::Local(l) => l.acquire(r, h, ttl, min_epoch).await,
            Leases::Redis(l) => l.acquire(r, h, ttl, min_epoch).await,
        }
    }
    async fn renew(&self, lease: &Lease) -> Result<Option<Lease>, LeaseError> {
        match self {
            Leases::Local(l) => l.renew(lease).await,
            Leases::Redis(l) => l.renew(lease).await,
        }
    }
    async fn release(&self, lease: &Lease) -> Result<bool, LeaseError> {
        match self {
            Leases::Local(l) => l.release(lease).await,
            Leases::Redis(l) => l.release(lease).await,
        }
    }
    async fn holder(&self, r: RegionId) -> Result<Option<(String, u64)>, LeaseError> {
        match self {
            Leases::Local(l) => l.holder(r).await,
            Leases::Redis(l) => l.holder(r).await,
        }
    }
    async fn advertise(&self, h: &str, addr: &str, ttl: Duration) -> Result<(), LeaseError> {
        match self {
            Leases::Local(l) => l.advertise(h, addr, ttl).await,
            Leases::Redis(l) => l.advertise(h, addr, ttl).await,
        }
    }
    async fn address_of(&self, h: &str) -> Result<Option<String>, LeaseError> {
        match self {
            Leases::Local(l) => l.address_of(h).await,
            Leases::Redis(l) => l.address_of(h).await,
        }
    }
}

const TTL: Duration = Duration::from_millis(600);

#[test]
fn one_holder_at_a_time_and_every_holding_a_greater_epoch() {
    both("lease::exclusive", |leases| async move {
        let region = fresh_region();
        let a = leases
            .acquire(region, "node-a", TTL, 0)
            .await
            .unwrap()
            .expect("free");
        assert_eq!(
            leases.acquire(region, "node-b", TTL, 0).await.unwrap(),
            None,
            "{leases:?}"
        );
        assert_eq!(
            leases.holder(region).await.unwrap(),
            Some(("node-a".to_owned(), a.epoch))
        );
        assert!(leases.release(&a).await.unwrap());
        assert!(!leases.release(&a).await.unwrap(), "released twice");
        let b = leases
            .acquire(region, "node-b", TTL, 0)
            .await
            .unwrap()
            .expect("free again");
        assert!(b.epoch > a.epoch, "{} then {}", a.epoch, b.epoch);
        // The old holding is gone for good: it cannot be renewed.
        assert_eq!(leases.renew(&a).await.unwrap(), None);
    });
}

#[test]
fn renewing_keeps_the_lease_and_a_silent_holder_loses_it() {
    both("lease::renew", |leases| async move {
        let region = fresh_region();
        let mut a = leases
            .acquire(region, "node-a", TTL, 0)
            .await
            .unwrap()
            .unwrap();
        // Renewed every 200 ms for 1.2 s: two TTLs, never lost.
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            a = leases.renew(&a).await.unwrap().expect("still held");
            assert_eq!(
                leases.acquire(region, "node-b", TTL, 0).await.unwrap(),
                None
            );
        }
        // Then silent past its TTL: the lease expires and another node takes it.
        tokio::time::sleep(TTL + Duration::from_millis(100)).await;
        assert!(
            a.must_stop(Instant::now()),
            "the holder knows it must have stopped"
        );
        let b = leases
            .acquire(region, "node-b", TTL, 0)
            .await
            .unwrap()
            .expect("expired");
        assert!(b.epoch > a.epoch);
        assert_eq!(leases.renew(&a).await.unwrap(), None, "{leases:?}");
    });
}

#[test]
fn bad_requests_are_refused() {
    both("lease::invalid", |leases| async move {
        let region = fresh_region();
        for (holder, ttl) in [
            ("node-a", Duration::from_millis(10)),
            ("", TTL),
            ("a|b", TTL),
        ] {
            let result = leases.acquire(region, holder, ttl, 0).await;
            assert!(matches!(result, Err(LeaseError::Invalid(_))), "{result:?}");
        }
        assert_eq!(leases.holder(region).await.unwrap(), None);
    });
}

#[test]
fn split_brain_the_paused_old_owner_cannot_overwrite_its_successor() {
    both("lease::split_brain", |leases| async move {
        let dir = std::env::temp_dir().join(format!(
            "tessera-lease-test-{}-{}",
            std::process::id(),
            fresh_region().0
        ));
        let store = EmbeddedStore::open(&dir).unwrap();
        let region = fresh_region();
        let commit = |epoch: u64, tick: u64, data: &str| RegionCommit {
            region,
            epoch,
            tick,
            cells: vec![CellWrite {
                cell: 0,
                data: Some(data.as_bytes().to_vec()),
            }],
        };
        let old = leases
            .acquire(region, "node-a", TTL, 0)
            .await
            .unwrap()
            .unwrap();
        store.commit(&commit(old.epoch, 10, "a@10")).await.unwrap();
        // node-a pauses past its lease; node-b takes the region over and writes.
        tokio::time::sleep(TTL + Duration::from_millis(100)).await;
        let new = leases
            .acquire(region, "node-b", TTL, 0)
            .await
            .unwrap()
            .unwrap();
        store.commit(&commit(new.epoch, 11, "b@11")).await.unwrap();
        // node-a wakes up and, not checking its lease, flushes: every write is refused.
        let mut refused = 0;
        for tick in 12..22 {
            match store.commit(&commit(old.epoch, tick, "a, stale")).await {
                Err(StoreError::StaleEpoch { stored, attempted }) => {
                    assert_eq!((stored, attempted), (new.epoch, old.epoch));
                    refused += 1;
                }
                other => panic!("a stale write was not refused: {other:?}"),
            }
        }
        assert_eq!(refused, 10);
        let snapshot = store.load(region).await.unwrap().expect("committed");
        assert_eq!(snapshot.epoch, new.epoch);
        assert_eq!(snapshot.cells[&0], b"b@11");
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn an_epoch_is_never_below_the_floor_the_caller_gives() {
    both("lease::floor", |leases| async move {
        let region = fresh_region();
        // As after a lease store lost its counters while snapshots of epoch 41 exist.
        let a = leases
            .acquire(region, "node-a", TTL, 42)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.epoch, 42);
        assert!(leases.release(&a).await.unwrap());
        let b = leases
            .acquire(region, "node-b", TTL, 0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.epoch, 43, "the counter moved up to the floor");
    });
}
