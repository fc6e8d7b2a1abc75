//! Region snapshots, PERFORMANCE.md goal 8: 100k entities flushed to MongoDB in <= 2 s,
//! with tick p99 within 10% of a no-snapshot control.
//!
//! One region of `NPCS` NPCs and `OBSERVERS` scripted players (the tick bench's "spread"
//! scenario: everything awake and moving, so every capture rewrites every cell, the worst
//! case for incremental snapshots). Ticks are paced at the world's rate, as the node paces
//! them. The snapshot run captures at its first tick (all 100k entities) and then every
//! `CAPTURE_EVERY` ticks (10x more often than the default interval), offering each
//! capture to the node's own writer (`tessera_server::snapshots::Snapshots`) over the
//! store; the control run is the same scenario without captures. Each of `ROUNDS` rounds
//! (`SNAPSHOT_ROUNDS`, 4) runs both on a fresh scenario, control first in even rounds and
//! last in odd ones. Reported: tick p50/p99 of all rounds pooled and their ratio, each
//! round's ratio (the spread shows the noise), the capture cost, and the time from
//! offering the full capture to it being durable (resolution: one tick).
//!
//! Store: MongoDB at `TESSERA_TEST_MONGO_URI`, or a private MongoDB-wire server when
//! `TESSERA_TEST_MONGO_BIN` names one (`./scripts/services.sh` provides both); the
//! embedded store always, for comparison.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tessera::persistence::embedded::EmbeddedStore;
use tessera::persistence::mongo::MongoStore;
use tessera::persistence::node_store::NodeStore;
use tessera_server::node::status::percentile;
use tessera_server::snapshots::Snapshots;

#[path = "support.rs"]
#[allow(dead_code)] // Each bench uses part of it.
mod support;
use support::{Layout, Scenario};

#[path = "../tests/private_mongo.rs"]
#[allow(dead_code)]
mod private_mongo;

const NPCS: usize = 100_000;
const OBSERVERS: usize = 1_000;
const TICKS: usize = 200;
const CAPTURE_EVERY: usize = 20;
/// Rounds per store (`SNAPSHOT_ROUNDS` to change): each runs the control and the snapshot
/// scenario, in alternating order, so that neither always runs first.
static ROUNDS: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
    std::env::var("SNAPSHOT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(4)
});

struct Run {
    ticks: Vec<Duration>,
    /// Full capture: time on the tick thread, NPCs.
    full: Option<(Duration, usize)>,
    /// Time from offering the full capture until the outbox was empty.
    durable_after: Option<Duration>,
    incremental: Vec<Duration>,
}

fn run(store: Option<&NodeStore>, runtime: &tokio::runtime::Runtime, round: usize) -> Run {
    let mut scenario = Scenario::new(Layout::Spread, NPCS, OBSERVERS, 7 + round as u64);
    let region = scenario.region.id();
    let snapshots = store.map(|store| {
        let _guard = runtime.enter();
        // As the node does: the region's encoder runs on the writer's encoder thread.
        let encoder = scenario.region.take_snapshot_encoder().expect("an encoder");
        // Each round takes the region over from the previous one (a newer epoch).
        Snapshots::start(
            store.clone(),
            BTreeMap::from([(region, round as u64 + 1)]),
            vec![(region, encoder)],
        )
    });
    let interval = Duration::from_secs_f64(1.0 / 20.0);
    let mut out = Run {
        ticks: Vec::with_capacity(TICKS),
        full: None,
        durable_after: None,
        incremental: Vec::new(),
    };
    let mut offered_at = None;
    let mut next = Instant::now();
    for tick in 0..TICKS {
        let started = Instant::now();
        let input = scenario.next_input();
        scenario.region.step(input);
        if let Some(snapshots) = &snapshots
            && tick % CAPTURE_EVERY == 0
        {
            // The tick thread's half: what the node's driver does.
            let capture_started = Instant::now();
            let records = scenario.region.capture_records();
            let took = capture_started.elapsed();
            if tick == 0 {
                out.full = Some((took, records.len()));
                offered_at = Some(Instant::now());
            } else {
                out.incremental.push(took);
            }
            snapshots.offer_records(region, records);
        }
        out.ticks.push(started.elapsed());
        if let (Some(snapshots), Some(at)) = (&snapshots, offered_at)
            && out.durable_after.is_none()
            && snapshots.is_flushed()
        {
            out.durable_after = Some(at.elapsed());
        }
        next += interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    if let Some(snapshots) = &snapshots {
        if !snapshots.flush_blocking(Duration::from_secs(60)) {
            println!("  warning: the outbox did not drain within 60 s after the run");
        }
        if out.durable_after.is_none() {
            out.durable_after = offered_at.map(|at| at.elapsed());
        }
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn p(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    percentile(&sorted, q)
}

fn bench(name: &str, store: &NodeStore, runtime: &tokio::runtime::Runtime) {
    println!("snapshot/{name}:");
    let mut control = Vec::new();
    let mut flushed = Vec::new();
    let mut round_ratios = Vec::new();
    for round in 0..*ROUNDS {
        let (c, r) = if round % 2 == 0 {
            let c = run(None, runtime, round).ticks;
            (c, run(Some(store), runtime, round))
        } else {
            let r = run(Some(store), runtime, round);
            (run(None, runtime, round).ticks, r)
        };
        let ratio = p(&r.ticks, 99.0).as_secs_f64() / p(&c, 99.0).as_secs_f64();
        round_ratios.push(ratio);
        control.extend(c);
        flushed.extend(r.ticks.iter().copied());
        let (full_took, npcs) = r.full.expect("a full capture");
        let inc = p(&r.incremental, 50.0);
        println!(
            "  round {round}: first capture of {npcs} NPCs {:.1} ms on the tick thread, all durable {:.0} ms after; later captures p50 {:.1} ms on the tick thread; this round's p99 ratio {ratio:.3}",
            ms(full_took),
            r.durable_after.map_or(f64::NAN, ms),
            ms(inc),
        );
    }
    let (c50, c99) = (p(&control, 50.0), p(&control, 99.0));
    let (f50, f99) = (p(&flushed, 50.0), p(&flushed, 99.0));
    round_ratios.sort_by(f64::total_cmp);
    println!(
        "  tick control p50 {:.2} ms p99 {:.2} ms | with snapshots p50 {:.2} ms p99 {:.2} ms ({} ticks each) | p99 ratio {:.3} (goal <= 1.10); per round {:.3} to {:.3}, median {:.3}",
        ms(c50),
        ms(c99),
        ms(f50),
        ms(f99),
        control.len(),
        f99.as_secs_f64() / c99.as_secs_f64(),
        round_ratios[0],
        round_ratios[round_ratios.len() - 1],
        round_ratios[round_ratios.len() / 2],
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that does not match skips.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"snapshot".contains(&a))
    {
        return;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "snapshot: {NPCS} NPCs, {OBSERVERS} observers, {TICKS} ticks paced at 20 Hz per run, capture every {CAPTURE_EVERY} ticks, {} rounds of control and snapshots in alternating order, {threads} cores shared with the store",
        *ROUNDS
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let dir = std::env::temp_dir().join(format!("tessera-bench-snapshot-{}", std::process::id()));
    let embedded = NodeStore::embedded(EmbeddedStore::open(&dir).expect("embedded store"));
    bench("embedded", &embedded, &runtime);
    drop(embedded);
    let _ = std::fs::remove_dir_all(&dir);

    let Some((uri, _private)) = private_mongo::for_bench("snapshot") else {
        return;
    };
    // A database of this invocation's own: earlier runs' epochs do not fence it.
    let database = format!("tessera_bench_snapshot_{}", std::process::id());
    let mongo = runtime
        .block_on(MongoStore::connect(&uri, &database))
        .expect("MongoDB reachable");
    bench("mongodb", &NodeStore::mongo(mongo), &runtime);
}
