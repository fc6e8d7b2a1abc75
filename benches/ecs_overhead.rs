//! ECS overhead, PERFORMANCE.md goal 3: the movement system (`move_npcs`, run by a bevy
//! `Schedule` over 100k NPC entities) vs a raw `Vec` loop doing the same arithmetic on the
//! same data. Goal: the system takes <= 1.5x the raw loop.
//!
//! Group `movement/100k`: `raw_vec_loop` (the baseline) and `bevy_move_npcs`. Every NPC
//! has a non-zero velocity, so every position is written each tick.

use bevy_ecs::prelude::*;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tessera_regions::components::{Brain, Npc, Position, Velocity};
use tessera_regions::movement::move_npcs;
use tessera_regions::resources::{RegionInfo, TickClock};
use tessera_shared::config::RegionDef;
use tessera_shared::ids::RegionId;
use tessera_shared::math::{Aabb, Vec2};

#[path = "support.rs"]
#[allow(dead_code)]
mod support;
use support::SplitMix;

const N: usize = 100_000;
const TICK_HZ: u32 = 20;
const DT_S: f32 = 1.0 / TICK_HZ as f32;

fn data() -> (Aabb, Vec<(Vec2, Vec2)>) {
    let bounds = Aabb::new(Vec2::ZERO, Vec2::new(2048.0, 2048.0));
    let mut rng = SplitMix(42);
    let items = (0..N)
        .map(|_| {
            let p = rng.point_in(&bounds);
            let v = Vec2::new(rng.unit_f32() * 2.0 - 1.0, rng.unit_f32() * 2.0 - 1.0);
            (p, v)
        })
        .collect();
    (bounds, items)
}

/// A world holding what `move_npcs` reads: the clock, the region, and one awake NPC per
/// `(position, velocity)`.
fn npc_world(bounds: &Aabb, items: &[(Vec2, Vec2)]) -> World {
    let mut world = World::new();
    world.insert_resource(TickClock {
        tick: 1,
        ..TickClock::new(TICK_HZ)
    });
    world.insert_resource(RegionInfo {
        def: RegionDef {
            id: RegionId(1),
            bounds: *bounds,
            spawn_point: bounds.center(),
            spawn_table: 0,
        },
        world_bounds: *bounds,
    });
    for &(p, v) in items {
        world.spawn((
            Position(p),
            Velocity(v),
            Npc {
                home: p,
                brain: Brain::Idle { until_tick: 0 },
                awake: true,
                spawn_entry: None,
            },
        ));
    }
    world
}

/// The same arithmetic as `move_npcs`, on a plain vector.
fn raw_move(items: &mut [(Vec2, Vec2)], bounds: &Aabb, dt: f32) {
    for (position, velocity) in items.iter_mut() {
        if *velocity == Vec2::ZERO {
            continue;
        }
        *position = bounds.clamp(*position + *velocity * dt);
    }
}

fn bench_movement(c: &mut Criterion) {
    let (bounds, items) = data();
    let mut group = c.benchmark_group("movement/100k");
    group.sample_size(50);

    let mut raw = items.clone();
    group.bench_function("raw_vec_loop", |b| {
        b.iter(|| raw_move(black_box(&mut raw), &bounds, DT_S))
    });

    let mut world = npc_world(&bounds, &items);
    let mut schedule = Schedule::default();
    schedule.add_systems(move_npcs);
    schedule.run(&mut world); // Initialise the system outside the timed loop.
    group.bench_function("bevy_move_npcs", |b| {
        b.iter(|| schedule.run(black_box(&mut world)))
    });

    // Same results from both: one more step of each from identical state.
    let mut check_raw = items.clone();
    raw_move(&mut check_raw, &bounds, DT_S);
    let mut check_world = npc_world(&bounds, &items);
    let mut check_schedule = Schedule::default();
    check_schedule.add_systems(move_npcs);
    check_schedule.run(&mut check_world);
    let moved: Vec<Vec2> = check_world
        .query::<&Position>()
        .iter(&check_world)
        .map(|p| p.0)
        .collect();
    let expected: Vec<Vec2> = check_raw.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        moved, expected,
        "the system and the raw loop must compute the same positions"
    );
    group.finish();
}

criterion_group!(benches, bench_movement);
criterion_main!(benches);
