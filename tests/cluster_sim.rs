//! The deterministic cluster simulator (`tessera_server::cluster_sim`): several nodes in one
//! process on a virtual clock, faults injected from a seed, the invariants of RELIABILITY.md
//! checked after every step. CI runs `CLUSTER_SIM_SEEDS` seeds (200 by default) from
//! `CLUSTER_SIM_FIRST` (1); `CLUSTER_SIM_SEED=<n>` replays one; `scripts/soak.sh` runs
//! thousands.

use tessera_server::cluster_sim::{Options, run, soak};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn every_seed_keeps_the_invariants() {
    let seeds: Vec<u64> = match env_u64("CLUSTER_SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            let first = env_u64("CLUSTER_SIM_FIRST").unwrap_or(1);
            let n = env_u64("CLUSTER_SIM_SEEDS").unwrap_or(200);
            (first..first + n).collect()
        }
    };
    let soak = soak(seeds, &Options::new(0), true, |_| {});
    if let Some(violation) = soak.violations.first() {
        panic!("{violation}");
    }
    eprintln!("cluster_sim: {soak}");
    let t = &soak.totals;
    assert!(t.handoffs > 0 && t.kills > 0 && t.logouts > 0, "{t:?}");
}

/// A seed replays the identical run: the trace hash of every event is the same.
#[test]
fn a_seed_replays_identically() {
    let seed = env_u64("CLUSTER_SIM_SEED").unwrap_or(7);
    let first = run(&Options::new(seed)).unwrap_or_else(|v| panic!("{v}"));
    let second = run(&Options::new(seed)).unwrap_or_else(|v| panic!("{v}"));
    assert_eq!(first, second);
    let other = run(&Options::new(seed + 1)).unwrap_or_else(|v| panic!("{v}"));
    assert_ne!(first.trace, other.trace, "the seed drives the run");
}
