//! The console's map sample (`tessera_server::map::sample`), which the tick's thread takes
//! once a second between two ticks: one walk over each region's spatial grid.
//!
//! Group `map/100k`: `step_baseline` is one tick of a 2048 m region of 100,000 NPCs and
//! 1,000 moving players (tick bench's `spread` scenario); `sample` is the map sample of
//! the same region after it. Before criterion runs, the bench prints both medians over
//! 200 rounds and their ratio, and what the sample holds: at 20 Hz the sample is taken
//! once every 20 ticks, so a ratio r costs r / 20 of a tick's time on average (and delays
//! the tick after it by r ticks' worth once a second).

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::{Duration, Instant};
use tessera_server::node::status::percentile;

#[path = "support.rs"]
#[allow(dead_code)] // the dense layout is the tick bench's
mod support;
use support::{Layout, Scenario, bench_config, timed_steps};

const ROUNDS: usize = 200;

fn bench_map(c: &mut Criterion) {
    let config = bench_config();
    let world = &config.world;
    let mut scenario = Scenario::new(Layout::Spread, 100_000, 1_000, 7);
    let (mut steps, mut samples) = (Vec::new(), Vec::new());
    let mut sampled = Vec::new();
    for _ in 0..ROUNDS {
        let input = scenario.next_input();
        let started = Instant::now();
        black_box(scenario.region.step(input));
        steps.push(started.elapsed());
        let started = Instant::now();
        sampled = tessera_server::map::sample(std::slice::from_ref(&scenario.region), world);
        samples.push(started.elapsed());
    }
    steps.sort_unstable();
    samples.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (step, sample) = (percentile(&steps, 50.0), percentile(&samples, 50.0));
    let map = &sampled[0];
    println!(
        "map/100k: {} entities, {} players listed ({} unlisted), {} density cells of {} m; \
         over {ROUNDS} rounds on 1 thread: step p50 {:.3} ms, sample p50 {:.3} ms \
         (p99 {:.3} ms): sample / step = {:.2}x",
        scenario.region.counts().entities,
        map.players.len(),
        map.players_unlisted,
        map.heat.len(),
        tessera_server::map::heat_cell_m(world),
        ms(step),
        ms(sample),
        ms(percentile(&samples, 99.0)),
        sample.as_secs_f64() / step.as_secs_f64().max(1e-9),
    );

    let mut group = c.benchmark_group("map/100k");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("step_baseline", |b| {
        b.iter_custom(|iters| timed_steps(&mut scenario, iters))
    });
    group.bench_function("sample", |b| {
        b.iter(|| {
            black_box(tessera_server::map::sample(
                std::slice::from_ref(&scenario.region),
                world,
            ))
        })
    });
    group.finish();
}

criterion_group!(benches, bench_map);
criterion_main!(benches);
