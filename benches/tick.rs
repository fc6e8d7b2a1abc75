//! Full region ticks (inputs, AI, movement, combat, life, borders, grid, interest) on one
//! thread, PERFORMANCE.md goal 1: 100k moving entities with 1,000 observers, p99 <= 5 ms.
//!
//! Groups `tick/10k` and `tick/100k`, each with:
//! - `dormant_baseline`: the same NPCs with no player anywhere, so all are dormant: the
//!   floor cost of the population (grid rebuild and bookkeeping);
//! - `spread_1000_observers`: NPCs and players uniform over a 2048 m region;
//! - `dense_1000_observers`: everyone in a 512 m square crowd.
//!
//! Criterion reports means and medians; before it runs, this bench prints each scenario's
//! p50/p99/max on this thread, since the goal is a p99: over the 300 ticks after the
//! players appear ("cold") and the 300 after those ("warm"), and for the scenarios with
//! players the ratio of their p50 and p99 to the dormant baseline's of the same window,
//! measured in the same run (machines here vary ~2x from run to run, ratios much less).
//! After the warm window it prints the region's `world_hash` (600 ticks after the players
//! appear, untimed), so that a change meant to be behaviour-neutral can be checked against
//! the hashes of the previous build.
//!
//! `TICK_BENCH_ONLY=<substring>` (e.g. `100k/spread`) limits the printed scenarios and the
//! criterion runs to those whose label contains it: a quicker run, or one to profile.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::{Duration, Instant};
use tessera_server::node::status::percentile;

#[path = "support.rs"]
mod support;
use support::{Layout, Scenario, timed_steps};

const OBSERVERS: usize = 1_000;
const P99_TICKS: usize = 300;

/// p50 and p99 of one window of ticks.
#[derive(Clone, Copy)]
struct Window {
    p50: Duration,
    p99: Duration,
}

/// Prints `scenario`'s percentiles over the cold then the warm window (and their ratios to
/// `baseline`'s, when given) and returns them.
fn print_percentiles(
    label: &str,
    scenario: &mut Scenario,
    baseline: Option<&[Window; 2]>,
) -> [Window; 2] {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut windows = [Window {
        p50: Duration::ZERO,
        p99: Duration::ZERO,
    }; 2];
    // Two windows: right after 1,000 players appear at once (every NPC near them wakes and
    // hostile ones aggro), then the steady state that follows.
    for (w, window) in ["cold", "warm"].into_iter().enumerate() {
        let mut samples = Vec::with_capacity(P99_TICKS);
        for _ in 0..P99_TICKS {
            let input = scenario.next_input();
            let started = Instant::now();
            black_box(scenario.region.step(input));
            samples.push(started.elapsed());
        }
        samples.sort_unstable();
        let counts = scenario.region.counts();
        println!(
            "tick {label} [{window}, ticks {}..{}]: {} entities ({} players), 1 thread: \
             p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
            scenario.region.tick() + 1 - P99_TICKS as u64,
            scenario.region.tick(),
            counts.entities,
            counts.players,
            ms(percentile(&samples, 50.0)),
            ms(percentile(&samples, 99.0)),
            ms(*samples.last().unwrap()),
        );
        windows[w] = Window {
            p50: percentile(&samples, 50.0),
            p99: percentile(&samples, 99.0),
        };
        if w == 1 {
            println!(
                "tick {label}: world hash {:016x}",
                scenario.region.world_hash()
            );
        }
        if let Some(baseline) = baseline {
            let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
            println!(
                "tick {label} [{window}]: ratio to dormant_baseline [{window}]: \
                 p50 {:.2}x  p99 {:.2}x",
                ratio(windows[w].p50, baseline[w].p50),
                ratio(windows[w].p99, baseline[w].p99),
            );
        }
    }
    windows
}

/// Whether scenario `label` runs, by `TICK_BENCH_ONLY` (all of them if it is unset).
fn selected(label: &str) -> bool {
    std::env::var("TICK_BENCH_ONLY").map_or(true, |only| label.contains(&only))
}

fn bench_ticks(c: &mut Criterion) {
    for (n_npcs, name) in [(10_000usize, "10k"), (100_000, "100k")] {
        let layouts = [Layout::Spread, Layout::Dense];
        let wanted =
            |layout: Layout| selected(&format!("{name}/{}_{OBSERVERS}_observers", layout.name()));
        let dormant_label = format!("{name}/dormant_baseline");
        if !selected(&dormant_label) && !layouts.into_iter().any(wanted) {
            continue;
        }
        let mut group = c.benchmark_group(format!("tick/{name}"));
        group.sample_size(20);
        group.measurement_time(Duration::from_secs(6));

        // The baseline always runs when its group does: the ratios need it.
        let mut dormant = Scenario::new(Layout::Spread, n_npcs, 0, 7);
        let baseline = print_percentiles(&dormant_label, &mut dormant, None);
        if selected(&dormant_label) {
            group.bench_function("dormant_baseline", |b| {
                b.iter_custom(|iters| timed_steps(&mut dormant, iters))
            });
        }
        drop(dormant);

        for layout in layouts.into_iter().filter(|&l| wanted(l)) {
            let mut scenario = Scenario::new(layout, n_npcs, OBSERVERS, 7);
            let label = format!("{}_{OBSERVERS}_observers", layout.name());
            print_percentiles(&format!("{name}/{label}"), &mut scenario, Some(&baseline));
            group.bench_function(label, |b| {
                b.iter_custom(|iters| timed_steps(&mut scenario, iters))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_ticks);
criterion_main!(benches);
