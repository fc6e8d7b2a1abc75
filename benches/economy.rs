//! Economy transactions committed per second, and their latency, in the embedded store
//! and in MongoDB (issue 17's bench): what `tessera_persistence::economy` commits, each
//! transaction durable when it returns (redb: fsync'd commit; MongoDB: a multi-document
//! transaction with majority write concern, journaled), not queued.
//!
//! 1,000 players, each granted coins first (untimed). Then, per kind, `TXS` transactions
//! with unique keys, run `IN_FLIGHT` at once (the node's committer runs up to 32) and one
//! at a time:
//! - `purchase`: a random player buys one potion (the shop's stock raised so it never
//!   runs out);
//! - `trade`: a random player gives another 1 coin for nothing back (two players written);
//! - `kill`: a kill's loot and XP for a random player.
//!
//! Printed per store and kind: committed transactions per second, p50 and p99 latency, and
//! the ratio of MongoDB's rate to the embedded store's of the same run. After each store,
//! the whole economy is reconciled against its ledger (a check, not a timing).
//!
//! Store: MongoDB at `TESSERA_TEST_MONGO_URI`, or a private MongoDB-wire server when
//! `TESSERA_TEST_MONGO_BIN` names one (`./scripts/services.sh` provides both); the embedded
//! store always. `ECONOMY_BENCH_TXS` changes `TXS`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera::persistence::economy::*;
use tessera::persistence::embedded::EmbeddedStore;
use tessera::persistence::mongo::MongoStore;
use tessera::persistence::node_store::NodeStore;
use tessera::shared::config::{BalanceConfig, Config};
use tessera::shared::ids::PlayerId;
use tessera_server::node::status::percentile;

#[path = "../tests/private_mongo.rs"]
#[allow(dead_code)]
mod private_mongo;

const PLAYERS: u64 = 1_000;
const IN_FLIGHT: usize = 32;
static TXS: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
    std::env::var("ECONOMY_BENCH_TXS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(2_000)
});

/// The embedded default's balance, its shop's stock raised so that purchases never run
/// out.
fn balance() -> Arc<BalanceConfig> {
    let mut balance = Config::embedded_default().balance.clone();
    for shop in &mut balance.shops {
        for good in &mut shop.goods {
            good.stock_max = 1_000_000;
        }
    }
    Arc::new(balance)
}

/// A small deterministic generator (xorshift), so both stores run the same transactions.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn txs(name: &str, n: usize, round: &str) -> Vec<EconomyTx> {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    (0..n)
        .map(|i| {
            let player = PlayerId(1 + rng.below(PLAYERS));
            let kind = match name {
                "purchase" => TxKind::Purchase {
                    shop: "general_store".into(),
                    item: "health_potion".into(),
                    count: 1,
                },
                "trade" => TxKind::Trade {
                    with: PlayerId(1 + (player.0 + rng.below(PLAYERS - 1)) % PLAYERS),
                    give: Holdings {
                        coins: 1,
                        items: BTreeMap::new(),
                    },
                    take: Holdings::default(),
                },
                _ => TxKind::Kill {
                    coins: 3,
                    items: vec![("wolf_pelt".into(), 1)],
                    target_level: 2,
                },
            };
            EconomyTx {
                player,
                key: format!("{round}-{name}-{i}"),
                kind,
                at_ms: 1_000_000 + i as u64,
            }
        })
        .collect()
}

/// Runs `txs` with `in_flight` at once; returns (wall time, each one's latency, the
/// retries after a retryable store error).
async fn run(
    store: &NodeStore,
    balance: &Arc<BalanceConfig>,
    txs: Vec<EconomyTx>,
    in_flight: usize,
) -> (Duration, Vec<Duration>, u32) {
    let slots = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(txs.len());
    for tx in txs {
        let slot = slots.clone().acquire_owned().await.expect("open");
        let (store, balance) = (store.clone(), balance.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let mut retries = 0u32;
            loop {
                match store.apply_tx(balance.clone(), &tx).await {
                    Ok(TxOutcome::Applied(_) | TxOutcome::Duplicate(_)) => break,
                    Ok(TxOutcome::Refused(why)) => panic!("{why}: {tx:?}"),
                    // As the node's committer: the same transaction again, after a wait
                    // (a store failing fast behind its breaker must not be spun on).
                    Err(e) if e.is_retryable() => {
                        retries += 1;
                        let backoff = 10u64 << retries.min(6);
                        tokio::time::sleep(Duration::from_millis(backoff)).await;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            drop(slot);
            (t.elapsed(), retries)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut retries = 0;
    for t in tasks {
        let (latency, tries) = t.await.expect("a transaction task");
        latencies.push(latency);
        retries += tries;
    }
    (started.elapsed(), latencies, retries)
}

/// Committed transactions per second, by (kind, in flight).
type Rates = BTreeMap<(String, usize), f64>;

fn bench(name: &str, store: &NodeStore, runtime: &tokio::runtime::Runtime) -> Rates {
    let balance = balance();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut rates = Rates::new();
    runtime.block_on(async {
        let grants: Vec<EconomyTx> = (1..=PLAYERS)
            .map(|p| EconomyTx {
                player: PlayerId(p),
                key: "bench-grant".into(),
                kind: TxKind::Grant(Holdings {
                    coins: 1_000_000,
                    items: BTreeMap::new(),
                }),
                at_ms: 1,
            })
            .collect();
        run(store, &balance, grants, IN_FLIGHT).await;
        for kind in ["purchase", "trade", "kill"] {
            for in_flight in [1, IN_FLIGHT] {
                let n = if in_flight == 1 { *TXS / 4 } else { *TXS };
                let txs = txs(kind, n, &format!("r{in_flight}"));
                let (wall, mut lat, retries) = run(store, &balance, txs, in_flight).await;
                lat.sort_unstable();
                let rate = n as f64 / wall.as_secs_f64();
                rates.insert((kind.to_owned(), in_flight), rate);
                println!(
                    "economy/{name}/{kind} {in_flight:>2} in flight: {n} committed in {:.2} s: {rate:.0} tx/s, p50 {:.2} ms, p99 {:.2} ms, {retries} retries",
                    wall.as_secs_f64(),
                    ms(percentile(&lat, 50.0)),
                    ms(percentile(&lat, 99.0)),
                );
            }
        }
        let audit = store.economy_audit().await.expect("the audit reads");
        let mismatches = audit.mismatches(&balance);
        println!(
            "economy/{name}: {} ledger entries, {} players reconciled: {}",
            audit.ledger.len(),
            audit.players.len(),
            if mismatches.is_empty() {
                "0 mismatches".to_owned()
            } else {
                format!("{} MISMATCHES: {:?}", mismatches.len(), &mismatches[..mismatches.len().min(3)])
            }
        );
    });
    rates
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that does not match skips.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"economy".contains(&a))
    {
        return;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "economy: {PLAYERS} players, {} transactions per kind at {IN_FLIGHT} in flight and {} one at a time, committed (durable) before each counts, {threads} cores shared with the store",
        *TXS,
        *TXS / 4
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("tessera-bench-economy-{}", std::process::id()));
    let embedded = NodeStore::embedded(EmbeddedStore::open(&dir).expect("embedded store"));
    let base = bench("embedded", &embedded, &runtime);
    drop(embedded);
    let _ = std::fs::remove_dir_all(&dir);

    let Some((uri, _private)) = private_mongo::for_bench("economy") else {
        return;
    };
    let database = format!("tessera_bench_economy_{}", std::process::id());
    let mongo = runtime
        .block_on(MongoStore::connect(&uri, &database))
        .expect("MongoDB reachable");
    let rates = bench("mongodb", &NodeStore::mongo(mongo), &runtime);
    for ((kind, in_flight), rate) in &rates {
        if let Some(embedded) = base.get(&(kind.clone(), *in_flight)) {
            println!(
                "economy/ratio/{kind} {in_flight:>2} in flight: mongodb / embedded = {:.2}",
                rate / embedded
            );
        }
    }
}
