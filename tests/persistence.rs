//! The snapshot store contract, run against both implementations: the embedded redb store
//! always, MongoDB when the test services are up (`./scripts/test.sh` starts a real
//! MongoDB-wire server and exports `TESSERA_TEST_MONGO_URI`).

use std::collections::BTreeMap;

use tessera::persistence::embedded::EmbeddedStore;
use tessera::persistence::mongo::MongoStore;
use tessera::persistence::snapshot::PAYLOAD_BYTES_MAX;
use tessera::persistence::*;
use tessera::shared::ids::{PlayerId, RegionId};

use crate::util::{runtime, services, unique};

/// A store the tests can also make "crash" halfway through a commit.
trait TestStore: SnapshotStore {
    async fn crash_commit(&self, commit: &RegionCommit) -> Result<(), StoreError>;
}

impl TestStore for EmbeddedStore {
    async fn crash_commit(&self, commit: &RegionCommit) -> Result<(), StoreError> {
        self.commit_crashing_before_publish(commit).await
    }
}

impl TestStore for MongoStore {
    async fn crash_commit(&self, commit: &RegionCommit) -> Result<(), StoreError> {
        self.commit_crashing_before_publish(commit).await
    }
}

/// Two handles on one fresh embedded store (two "writers").
fn embedded_pair() -> (EmbeddedStore, EmbeddedStore, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(unique("tessera-store-test"));
    let a = EmbeddedStore::open(&dir).unwrap();
    (a.clone(), a, dir)
}

/// Two clients on one fresh MongoDB database, or `None` (skipped) without the service.
async fn mongo_pair(test: &str) -> Option<(MongoStore, MongoStore)> {
    let uri = services::mongo_uri(test)?;
    let db = unique("tessera_test");
    let a = MongoStore::connect(&uri, &db)
        .await
        .expect("MongoDB reachable");
    let b = MongoStore::connect(&uri, &db)
        .await
        .expect("MongoDB reachable");
    Some((a, b))
}

fn cell(cell: u32, data: &str) -> CellWrite {
    CellWrite {
        cell,
        data: Some(data.as_bytes().to_vec()),
    }
}

fn commit(epoch: u64, tick: u64, cells: Vec<CellWrite>) -> RegionCommit {
    RegionCommit {
        region: RegionId(3),
        epoch,
        tick,
        cells,
    }
}

fn cells_of(snapshot: &RegionSnapshot) -> BTreeMap<u32, String> {
    snapshot
        .cells
        .iter()
        .map(|(&c, d)| (c, String::from_utf8(d.clone()).unwrap()))
        .collect()
}

fn expect(pairs: &[(u32, &str)]) -> BTreeMap<u32, String> {
    pairs.iter().map(|&(c, d)| (c, d.to_string())).collect()
}

async fn check_incremental_commits<S: TestStore>(store: &S) {
    assert_eq!(store.load(RegionId(3)).await.unwrap(), None);
    store
        .commit(&commit(
            1,
            10,
            vec![cell(0, "a"), cell(1, "b"), cell(2, "c"), cell(7, "h")],
        ))
        .await
        .unwrap();
    // Only the dirty cells: 1 changes, 2 empties, 9 appears; 0 and 7 are untouched.
    store
        .commit(&commit(
            1,
            11,
            vec![
                cell(1, "b2"),
                CellWrite {
                    cell: 2,
                    data: None,
                },
                cell(9, "j"),
            ],
        ))
        .await
        .unwrap();
    let loaded = store.load(RegionId(3)).await.unwrap().unwrap();
    assert_eq!((loaded.epoch, loaded.tick), (1, 11));
    assert_eq!(
        cells_of(&loaded),
        expect(&[(0, "a"), (1, "b2"), (7, "h"), (9, "j")])
    );
    // Other regions are separate.
    assert_eq!(store.load(RegionId(4)).await.unwrap(), None);
}

async fn check_stale_epochs_are_fenced<S: TestStore>(a: &S, b: &S) {
    a.commit(&commit(1, 10, vec![cell(0, "a1")])).await.unwrap();
    // B takes the region over under epoch 2.
    b.commit(&commit(2, 12, vec![cell(0, "b2")])).await.unwrap();
    // A, unaware, writes again under epoch 1: refused, whatever its tick.
    assert_eq!(
        a.commit(&commit(1, 99, vec![cell(0, "a-late")])).await,
        Err(StoreError::StaleEpoch {
            stored: 2,
            attempted: 1
        })
    );
    // The same epoch must move forward.
    assert_eq!(
        b.commit(&commit(2, 12, vec![cell(0, "b-again")])).await,
        Err(StoreError::StaleTick {
            stored: 12,
            attempted: 12
        })
    );
    let loaded = a.load(RegionId(3)).await.unwrap().unwrap();
    assert_eq!((loaded.epoch, loaded.tick), (2, 12));
    assert_eq!(cells_of(&loaded), expect(&[(0, "b2")]));
}

async fn check_a_crash_mid_commit_leaves_the_old_snapshot<S: TestStore>(store: &S) {
    store
        .commit(&commit(1, 10, vec![cell(0, "a"), cell(1, "b")]))
        .await
        .unwrap();
    store
        .crash_commit(&commit(1, 11, vec![cell(0, "torn"), cell(5, "torn")]))
        .await
        .unwrap();
    let loaded = store.load(RegionId(3)).await.unwrap().unwrap();
    assert_eq!(loaded.tick, 10);
    assert_eq!(cells_of(&loaded), expect(&[(0, "a"), (1, "b")]));
    // A later commit touching other cells must not surface the torn commit's leftovers.
    store
        .commit(&commit(1, 12, vec![cell(1, "b3")]))
        .await
        .unwrap();
    let loaded = store.load(RegionId(3)).await.unwrap().unwrap();
    assert_eq!(loaded.tick, 12);
    assert_eq!(cells_of(&loaded), expect(&[(0, "a"), (1, "b3")]));
}

async fn check_players_round_trip<S: TestStore>(store: &S) {
    let top = PlayerId(PlayerId::MAX);
    assert_eq!(store.load_player(top).await.unwrap(), None);
    for data in [&b"v1"[..], b"version two"] {
        let record = PlayerRecord {
            player: top,
            data: data.to_vec(),
        };
        store.save_player(&record).await.unwrap();
        assert_eq!(store.load_player(top).await.unwrap(), Some(record));
    }
    assert_eq!(store.load_player(PlayerId(1)).await.unwrap(), None);
}

async fn check_limits_are_refused_before_any_write<S: TestStore>(store: &S) {
    let huge = CellWrite {
        cell: 0,
        data: Some(vec![0; PAYLOAD_BYTES_MAX + 1]),
    };
    assert!(matches!(
        store.commit(&commit(1, 1, vec![huge])).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store
            .commit(&commit(1, 1, vec![cell(4, "x"), cell(4, "y")]))
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.load(RegionId(3)).await.unwrap(), None);
}

async fn check_audit_records_are_updated_in_place_and_read_newest_first<S: TestStore>(store: &S) {
    use tessera::persistence::audit::{
        AUDIT_FIELD_BYTES_MAX, AuditFilter, AuditRecord, RESULT_STARTED,
    };
    let record = |ms: u64, seq: u64, result: &str| AuditRecord {
        id: AuditRecord::id_for(ms, "node-a", seq),
        at_unix_ms: ms,
        node: "node-a".into(),
        who: "ops".into(),
        role: "admin".into(),
        action: "kick".into(),
        target: format!("player:{seq}"),
        reason: "test".into(),
        details: if result == RESULT_STARTED {
            String::new()
        } else {
            format!("details of {seq}")
        },
        result: result.into(),
    };
    let all = AuditFilter::default();
    let page = store.read_audit(10, None, &all).await.unwrap();
    assert!(page.records.is_empty() && page.next_before.is_none());
    // Three mutations; each written as started, then with its outcome and details.
    for (ms, seq) in [(1_000, 1), (1_000, 2), (2_000, 3)] {
        store
            .write_audit(&record(ms, seq, RESULT_STARTED))
            .await
            .unwrap();
        store.write_audit(&record(ms, seq, "ok")).await.unwrap();
    }
    let page = store.read_audit(10, None, &all).await.unwrap();
    assert_eq!(
        page.records,
        [
            record(2_000, 3, "ok"),
            record(1_000, 2, "ok"),
            record(1_000, 1, "ok")
        ]
    );
    assert_eq!(page.next_before, None, "nothing older");
    // Pages: newest first, below an id.
    let first = store.read_audit(2, None, &all).await.unwrap();
    assert_eq!(first.records.len(), 2);
    assert_eq!(first.next_before.as_ref(), Some(&first.records[1].id));
    let rest = store
        .read_audit(2, first.next_before.as_deref(), &all)
        .await
        .unwrap();
    assert_eq!(rest.records, [record(1_000, 1, "ok")]);
    let mut huge = record(3_000, 4, "ok");
    huge.reason = "x".repeat(AUDIT_FIELD_BYTES_MAX + 1);
    assert!(matches!(
        store.write_audit(&huge).await,
        Err(StoreError::Invalid(_))
    ));
    huge.reason = "test".into();
    huge.details = "x".repeat(AUDIT_FIELD_BYTES_MAX + 1);
    assert!(matches!(
        store.write_audit(&huge).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        store
            .read_audit(10, None, &all)
            .await
            .unwrap()
            .records
            .len(),
        3
    );
    // Filters: by player (not player 10 for player 1), action and key name, together.
    let mut other = record(3_000, 5, "ok");
    other.who = "orchestrator".into();
    other.action = "region.release".into();
    other.target = "region:1".into();
    let mut player_10 = record(3_000, 6, "ok");
    player_10.target = "player:10".into();
    let mut older_form = record(3_000, 7, "ok");
    older_form.action = "teleport".into();
    older_form.target = "player:1 to:(3, 4)".into();
    for r in [&other, &player_10, &older_form] {
        store.write_audit(r).await.unwrap();
    }
    let ids = |page: tessera::persistence::audit::AuditPage| -> Vec<String> {
        page.records.into_iter().map(|r| r.id).collect()
    };
    let player_1 = AuditFilter {
        player: Some(PlayerId(1)),
        ..AuditFilter::default()
    };
    assert_eq!(
        ids(store.read_audit(10, None, &player_1).await.unwrap()),
        [older_form.id.clone(), record(1_000, 1, "ok").id]
    );
    let by_action = AuditFilter {
        actions: vec!["region.release".into()],
        ..AuditFilter::default()
    };
    assert_eq!(
        store
            .read_audit(10, None, &by_action)
            .await
            .unwrap()
            .records,
        [other.clone()]
    );
    // Several actions: either, newest first.
    let kicks = AuditFilter {
        actions: vec!["kick".into()],
        ..AuditFilter::default()
    };
    let kicks = store.read_audit(10, None, &kicks).await.unwrap().records;
    assert!(!kicks.is_empty());
    let either = AuditFilter {
        actions: vec!["kick".into(), "region.release".into()],
        ..AuditFilter::default()
    };
    let either = store.read_audit(10, None, &either).await.unwrap().records;
    assert_eq!(either.len(), kicks.len() + 1);
    assert!(either.contains(&other) && kicks.iter().all(|k| either.contains(k)));
    assert!(either.windows(2).all(|w| w[0].id > w[1].id));
    let by_who = AuditFilter {
        who: Some("ops".into()),
        ..AuditFilter::default()
    };
    assert_eq!(
        store
            .read_audit(10, None, &by_who)
            .await
            .unwrap()
            .records
            .len(),
        5
    );
    let together = AuditFilter {
        player: Some(PlayerId(1)),
        actions: vec!["kick".into()],
        who: Some("ops".into()),
    };
    let page = store.read_audit(1, None, &together).await.unwrap();
    assert_eq!(page.records, [record(1_000, 1, "ok")]);
    let nobody = AuditFilter {
        who: Some("nobody".into()),
        ..AuditFilter::default()
    };
    let page = store.read_audit(10, None, &nobody).await.unwrap();
    assert!(page.records.is_empty() && page.next_before.is_none());
}

async fn check_bans_are_set_read_and_lifted<S: TestStore>(store: &S) {
    use tessera::persistence::audit::{Sanction, SanctionRecord};
    let player = PlayerId(77);
    for kind in [Sanction::Ban, Sanction::Mute] {
        assert_eq!(store.sanction_of(kind, player).await.unwrap(), None);
        for until in [Some(2_000_000_000), None] {
            let record = SanctionRecord {
                player,
                until_unix_s: until,
                reason: format!("griefing ({})", kind.name()),
            };
            store
                .set_sanction(kind, player, Some(&record))
                .await
                .unwrap();
            assert_eq!(store.sanction_of(kind, player).await.unwrap(), Some(record));
        }
        assert_eq!(store.sanction_of(kind, PlayerId(78)).await.unwrap(), None);
    }
    // Each kind is its own: lifting the ban leaves the mute.
    store
        .set_sanction(Sanction::Ban, player, None)
        .await
        .unwrap();
    assert_eq!(
        store.sanction_of(Sanction::Ban, player).await.unwrap(),
        None
    );
    let mute = store.sanction_of(Sanction::Mute, player).await.unwrap();
    assert_eq!(mute.map(|m| m.reason), Some("griefing (mute)".into()));
    store
        .set_sanction(Sanction::Mute, player, None)
        .await
        .unwrap();
    assert_eq!(
        store.sanction_of(Sanction::Mute, player).await.unwrap(),
        None
    );
}

macro_rules! conformance {
    ($($name:ident => |$a:ident, $b:ident| $body:expr;)*) => {
        mod embedded {
            use super::*;
            $(
                #[test]
                fn $name() {
                    let ($a, $b, dir) = embedded_pair();
                    let _ = &$b;
                    runtime().block_on(async { $body.await });
                    drop(($a, $b));
                    let _ = std::fs::remove_dir_all(dir);
                }
            )*
        }
        mod mongo {
            use super::*;
            $(
                #[test]
                fn $name() {
                    runtime().block_on(async {
                        let Some(($a, $b)) = mongo_pair(stringify!($name)).await else {
                            return;
                        };
                        let _ = &$b;
                        $body.await
                    });
                }
            )*
        }
    };
}

conformance! {
    commits_are_incremental_and_load_what_was_committed => |a, b| check_incremental_commits(&a);
    a_stale_epoch_is_rejected_between_two_writers => |a, b| check_stale_epochs_are_fenced(&a, &b);
    a_crash_mid_commit_leaves_the_old_snapshot => |a, b| check_a_crash_mid_commit_leaves_the_old_snapshot(&a);
    players_are_saved_and_loaded => |a, b| check_players_round_trip(&a);
    limits_are_refused_before_any_write => |a, b| check_limits_are_refused_before_any_write(&a);
    audit_records_are_updated_in_place_and_read_newest_first => |a, b| check_audit_records_are_updated_in_place_and_read_newest_first(&a);
    bans_are_set_read_and_lifted => |a, b| check_bans_are_set_read_and_lifted(&a);
}

#[test]
fn the_embedded_store_survives_a_reopen() {
    let dir = std::env::temp_dir().join(unique("tessera-store-reopen"));
    runtime().block_on(async {
        let store = EmbeddedStore::open(&dir).unwrap();
        store
            .commit(&commit(4, 40, vec![cell(2, "kept")]))
            .await
            .unwrap();
        drop(store);
        let store = EmbeddedStore::open(&dir).unwrap();
        let loaded = store.load(RegionId(3)).await.unwrap().unwrap();
        assert_eq!((loaded.epoch, loaded.tick), (4, 40));
        assert_eq!(cells_of(&loaded), expect(&[(2, "kept")]));
    });
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_breaker_fails_fast_while_mongodb_is_down_and_closes_when_it_is_back() {
    use tessera::persistence::breaker::FAILURES_TO_OPEN;
    use tessera::persistence::node_store::NodeStore;
    let Some(bin) = services::mongo_bin("persistence::breaker") else {
        return;
    };
    let mut mongo = crate::private_mongo::PrivateMongo::start(&bin);
    runtime().block_on(async {
        let store = NodeStore::mongo(MongoStore::connect(&mongo.uri(), "breaker").await.unwrap());
        let player = PlayerId(42);
        assert_eq!(store.load_player(player).await.unwrap(), None);
        mongo.kill();
        // Each call waits out the driver's server selection, until the breaker opens.
        for _ in 0..FAILURES_TO_OPEN {
            let result = store.load_player(player).await;
            assert!(
                matches!(result, Err(StoreError::Unavailable(_))),
                "{result:?}"
            );
        }
        let started = std::time::Instant::now();
        let result = store.load_player(player).await;
        let took = started.elapsed();
        match result {
            Err(StoreError::Unavailable(why)) => assert!(why.contains("circuit open"), "{why}"),
            other => panic!("expected the open breaker's refusal, got {other:?}"),
        }
        eprintln!("persistence::breaker: refused in {took:?} while open");
        mongo.restart();
        // Half-open after at most OPEN_MAX: a probe gets through and closes it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            match store.load_player(player).await {
                Ok(None) => break,
                Ok(Some(record)) => panic!("nothing was saved: {record:?}"),
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(e) => panic!("still failing after MongoDB returned: {e}"),
            }
        }
        let record = PlayerRecord {
            player,
            data: b"back".to_vec(),
        };
        store.save_player(&record).await.unwrap();
        assert_eq!(store.load_player(player).await.unwrap(), Some(record));
    });
}

// After `conformance!`, which it uses.
mod economy;
