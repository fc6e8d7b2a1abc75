//! The player directory at 100,000 players (issue 18's bench): how long the admin API's
//! work for `GET /v1/players?...` (filtered, sorted, paged lists with their total count)
//! and `GET /v1/players/{id}` (a player's details: seven reads at once) takes, in the
//! embedded store and in MongoDB. Measured is what the handlers run after parsing
//! (`tessera_server::admin::directory::{list_page, player_details}`), not HTTP.
//!
//! Seeding (untimed): `PLAYERS` profiles imported in chunks, varied like a live game's
//! (names sharing prefixes, levels 1-60, logins over 30 days, 5% online on two nodes and
//! four regions, 3% banned, 2% muted), and 500 players given two sessions each.
//!
//! Printed per store: each query's p50, p95 and max over `RUNS` runs and its total count;
//! the p95 over all list queries and of details, against the goals (list <= 100 ms,
//! details <= 50 ms); and each query's p95 as a ratio to the unfiltered first page of the
//! same run (the baseline: one index walk, nothing filtered).
//!
//! Store: MongoDB at `TESSERA_TEST_MONGO_URI`, or a private MongoDB-wire server when
//! `TESSERA_TEST_MONGO_BIN` names one (`./scripts/services.sh` provides both); the embedded
//! store always. `DIRECTORY_BENCH_PLAYERS` changes `PLAYERS`.

use std::time::{Duration, Instant};

use tessera::persistence::directory::*;
use tessera::persistence::embedded::EmbeddedStore;
use tessera::persistence::mongo::MongoStore;
use tessera::persistence::node_store::NodeStore;
use tessera::shared::ids::{PlayerId, RegionId};
use tessera_server::admin::directory::{list_page, player_details};
use tessera_server::node::status::percentile;

#[path = "../tests/private_mongo.rs"]
#[allow(dead_code)]
mod private_mongo;

static PLAYERS: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
    std::env::var("DIRECTORY_BENCH_PLAYERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(100_000)
});
/// Runs of each list query.
const RUNS: usize = 40;
/// Players whose details are read.
const DETAILS: usize = 200;
/// Players given a session history.
const WITH_SESSIONS: u64 = 500;
const NOW: u64 = 1_800_000_000;
const LIST_GOAL_MS: f64 = 100.0;
const DETAILS_GOAL_MS: f64 = 50.0;

/// A small deterministic generator (xorshift), so both stores hold the same players.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn profiles() -> Vec<Profile> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let stems = [
        "an", "ber", "cal", "dor", "el", "fen", "gar", "hal", "is", "jor", "kal", "lun",
    ];
    (1..=*PLAYERS)
        .map(|id| {
            let mut p = Profile::new(PlayerId(id));
            p.name = format!(
                "{}{}{}",
                stems[rng.below(12) as usize],
                stems[rng.below(12) as usize],
                rng.below(1000)
            );
            p.level = 1 + rng.below(60) as u32;
            p.first_login_unix_s = NOW - 90 * 86_400 + rng.below(86_400);
            p.last_login_unix_s = NOW - rng.below(30 * 86_400);
            p.last_seen_unix_s = p.last_login_unix_s;
            if rng.below(20) == 0 {
                p.node = Some(["node-a", "node-b"][rng.below(2) as usize].into());
                p.region = Some(RegionId(1 + rng.below(4) as u32));
                p.last_seen_unix_s = NOW - rng.below(60);
            }
            if rng.below(33) == 0 {
                p.banned_until_unix_s = NOW + 86_400;
            }
            if rng.below(50) == 0 {
                p.muted_until_unix_s = FOREVER;
            }
            p
        })
        .collect()
}

/// The operator's queries: (what, query).
fn queries() -> Vec<(&'static str, PlayerQuery)> {
    let base = PlayerQuery {
        limit: PAGE_LEN_DEFAULT,
        ..PlayerQuery::default()
    };
    vec![
        ("first page, by id (baseline)", base.clone()),
        (
            "online, newest login first",
            PlayerQuery {
                online: Some(true),
                sort: SortKey::LastLogin,
                descending: true,
                ..base.clone()
            },
        ),
        (
            "name prefix 'ber', by name",
            PlayerQuery {
                name_prefix: Some("ber".into()),
                sort: SortKey::Name,
                ..base.clone()
            },
        ),
        (
            "level 10-20, highest first",
            PlayerQuery {
                level_min: Some(10),
                level_max: Some(20),
                sort: SortKey::Level,
                descending: true,
                ..base.clone()
            },
        ),
        (
            "banned, by id",
            PlayerQuery {
                banned: Some(true),
                ..base.clone()
            },
        ),
        (
            "logged in within a day, newest first",
            PlayerQuery {
                last_login_from: Some(NOW - 86_400),
                sort: SortKey::LastLogin,
                descending: true,
                ..base.clone()
            },
        ),
        (
            "online on node-a in region 2",
            PlayerQuery {
                node: Some("node-a".into()),
                region: Some(RegionId(2)),
                ..base.clone()
            },
        ),
        (
            "offline, level >= 50, not muted, by name, 500 a page",
            PlayerQuery {
                online: Some(false),
                level_min: Some(50),
                muted: Some(false),
                sort: SortKey::Name,
                limit: PAGE_LEN_MAX,
                ..base.clone()
            },
        ),
    ]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Seeds `store` (untimed) and measures it; returns (every list latency, every details
/// latency).
fn bench(
    name: &str,
    store: &NodeStore,
    runtime: &tokio::runtime::Runtime,
) -> (Vec<Duration>, Vec<Duration>) {
    runtime.block_on(async {
        let seeding = Instant::now();
        let all = profiles();
        for chunk in all.chunks(IMPORT_LEN_MAX) {
            store.import_profiles(chunk).await.expect("import");
        }
        let mut updates = Vec::new();
        for p in 1..=WITH_SESSIONS {
            let player = PlayerId(p * 97 % *PLAYERS + 1);
            for (i, node) in ["node-a", "node-b"].into_iter().enumerate() {
                let since_ms = (NOW - 3_600 + i as u64 * 600) * 1000;
                updates.push(PresenceUpdate::Login {
                    player,
                    name: None,
                    level: 5,
                    node: node.into(),
                    region: RegionId(1),
                    at_ms: since_ms,
                });
                updates.push(PresenceUpdate::Left {
                    player,
                    node: node.into(),
                    since_ms,
                    at_ms: since_ms + 300_000,
                });
            }
        }
        for chunk in updates.chunks(500) {
            store.record_presence(chunk).await.expect("sessions");
        }
        println!(
            "directory/{name}: seeded {} players and {} sessions in {:.1} s",
            all.len(),
            WITH_SESSIONS * 2,
            seeding.elapsed().as_secs_f64()
        );

        let mut all_lists = Vec::new();
        let mut baseline_p95 = None;
        for (what, query) in queries() {
            let mut latencies = Vec::with_capacity(RUNS);
            let mut total = 0;
            for run in 0..RUNS {
                // Every fourth run reads the third page (two cursors followed, untimed).
                let mut q = query.clone();
                if run % 4 == 3 {
                    for _ in 0..2 {
                        let page = store.list_players(&q, NOW).await.expect("list");
                        q.after = page.next;
                    }
                }
                let t = Instant::now();
                let page = list_page(store, &q, NOW).await.expect("list");
                latencies.push(t.elapsed());
                total = page["total"].as_u64().expect("a total");
            }
            latencies.sort_unstable();
            let p95 = ms(percentile(&latencies, 95.0));
            let base = *baseline_p95.get_or_insert(p95);
            println!(
                "directory/{name}/list {what:<56} total {total:>6}: p50 {:>7.2} ms, p95 {p95:>7.2} ms, max {:>7.2} ms; p95 ratio to baseline {:.2}",
                ms(percentile(&latencies, 50.0)),
                ms(*latencies.last().expect("runs")),
                p95 / base.max(1e-3),
            );
            all_lists.extend(latencies);
        }
        let mut details = Vec::with_capacity(DETAILS);
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        for i in 0..DETAILS {
            // Half of them with a session history.
            let player = if i % 2 == 0 {
                PlayerId((1 + rng.below(WITH_SESSIONS)) * 97 % *PLAYERS + 1)
            } else {
                PlayerId(1 + rng.below(*PLAYERS))
            };
            let t = Instant::now();
            let answer = player_details(store, player, NOW).await.expect("details");
            details.push(t.elapsed());
            assert_eq!(answer["profile"]["player"], player.0);
        }
        all_lists.sort_unstable();
        details.sort_unstable();
        let verdict = |p95: f64, goal: f64| if p95 <= goal { "met" } else { "NOT MET" };
        let list_p95 = ms(percentile(&all_lists, 95.0));
        let details_p95 = ms(percentile(&details, 95.0));
        println!(
            "directory/{name}: list p95 over all queries {list_p95:.2} ms (goal <= {LIST_GOAL_MS} ms: {}); details p50 {:.2} ms, p95 {details_p95:.2} ms (goal <= {DETAILS_GOAL_MS} ms: {})",
            verdict(list_p95, LIST_GOAL_MS),
            ms(percentile(&details, 50.0)),
            verdict(details_p95, DETAILS_GOAL_MS),
        );
        (all_lists, details)
    })
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that does not match skips.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"directory".contains(&a))
    {
        return;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "directory: {} players, {} list queries x {RUNS} runs (a quarter of them on the third page), {DETAILS} details, one request at a time, {threads} cores shared with the store",
        *PLAYERS,
        queries().len()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("tessera-bench-directory-{}", std::process::id()));
    let embedded = NodeStore::embedded(EmbeddedStore::open(&dir).expect("embedded store"));
    let (base_lists, base_details) = bench("embedded", &embedded, &runtime);
    drop(embedded);
    let _ = std::fs::remove_dir_all(&dir);

    let Some((uri, _private)) = private_mongo::for_bench("directory") else {
        return;
    };
    let database = format!("tessera_bench_directory_{}", std::process::id());
    let mongo = runtime
        .block_on(MongoStore::connect(&uri, &database))
        .expect("MongoDB reachable");
    let (lists, details) = bench("mongodb", &NodeStore::mongo(mongo), &runtime);
    let p95 = |v: &[Duration]| ms(percentile(v, 95.0));
    println!(
        "directory/ratio: mongodb / embedded p95: lists {:.2}, details {:.2}",
        p95(&lists) / p95(&base_lists).max(1e-3),
        p95(&details) / p95(&base_details).max(1e-3),
    );
}
