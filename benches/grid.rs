//! Spatial index every tick: the counting-sort `SpatialGrid` against an rstar R-tree and
//! against brute force, on identical data.
//!
//! Goal (PERFORMANCE.md goal 2): rebuild >= 10x faster than `RTree::bulk_load`, rebuild plus
//! all queries >= 3x faster than rstar, identical results. The results are checked once per
//! scenario, outside the timed loop: grid, rstar and brute force must return the same id set
//! for every query or the bench panics.
//!
//! Each scenario has 100,000 points in a 2048 x 2048 m region, a 16 m grid, and 1,000
//! observers (the first 1,000 points) each querying an 80 m radius per tick:
//! - `spread`: points uniform over the whole region (~0.024 per m^2, ~480 hits per query).
//! - `dense`: all points in one 256 x 256 m crowd in the middle (~1.5 per m^2, ~30,000 hits
//!   per query, so the query half dominates).
//!
//! Before each timed iteration every point takes a small deterministic random step
//! (SplitMix64, up to 0.5 m per axis, staying inside its area); the step is not timed.
//! Each query sums the ids it finds so that all three methods do the same work per hit.
//!
//! Groups: `grid_rebuild/{scenario}` (`grid`, `rstar_bulk_load`) and
//! `grid_rebuild_and_query/{scenario}` (`grid`, `rstar`, and `brute_force_100q_x10`, which
//! runs 100 of the 1,000 queries by scanning all points and multiplies the time by 10: the
//! full 100M distance checks per iteration would make the bench take too long).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use rstar::RTree;
use rstar::primitives::GeomWithData;
use tessera_regions::grid::SpatialGrid;
use tessera_shared::math::{Aabb, Vec2};

const N_POINTS: usize = 100_000;
const N_OBSERVERS: usize = 1_000;
const REGION_M: f32 = 2048.0;
const CELL_SIZE_M: f32 = 16.0;
const QUERY_RADIUS_M: f32 = 80.0;
const CROWD_M: f32 = 256.0;
const STEP_M_MAX: f32 = 0.5;
/// Brute force runs this many of the observers' queries and scales its time up.
const BRUTE_FORCE_QUERIES: usize = 100;

type Item = GeomWithData<[f32; 2], u32>;

/// SplitMix64: a tiny, seeded, deterministic generator; no extra dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f32()
    }
}

/// The points of one scenario and the area they stay in.
struct World {
    name: &'static str,
    area: Aabb,
    points: Vec<Vec2>,
    rng: SplitMix64,
}

impl World {
    fn new(name: &'static str, area: Aabb, seed: u64) -> World {
        let mut rng = SplitMix64(seed);
        let points = (0..N_POINTS)
            .map(|_| {
                Vec2::new(
                    rng.range(area.min.x, area.max.x),
                    rng.range(area.min.y, area.max.y),
                )
            })
            .collect();
        World {
            name,
            area,
            points,
            rng,
        }
    }

    /// One tick of movement: a small random step, clamped to the area.
    fn step(&mut self) {
        for p in &mut self.points {
            let d = Vec2::new(
                self.rng.range(-STEP_M_MAX, STEP_M_MAX),
                self.rng.range(-STEP_M_MAX, STEP_M_MAX),
            );
            *p = self.area.clamp(*p + d);
        }
    }

    fn observers(&self) -> &[Vec2] {
        &self.points[..N_OBSERVERS]
    }
}

fn region() -> Aabb {
    Aabb::new(Vec2::ZERO, Vec2::new(REGION_M, REGION_M))
}

fn scenarios() -> Vec<World> {
    let mid = REGION_M / 2.0;
    let half = CROWD_M / 2.0;
    let crowd = Aabb::new(
        Vec2::new(mid - half, mid - half),
        Vec2::new(mid + half, mid + half),
    );
    vec![
        World::new("spread", region(), 1),
        World::new("dense", crowd, 2),
    ]
}

fn rebuild_grid(grid: &mut SpatialGrid<u32>, points: &[Vec2]) {
    grid.rebuild((0u32..).zip(points).map(|(i, &p)| (p, i)));
}

fn bulk_load(points: &[Vec2]) -> RTree<Item> {
    let items = (0u32..)
        .zip(points)
        .map(|(i, p)| Item::new([p.x, p.y], i))
        .collect();
    RTree::bulk_load(items)
}

/// The per-query work every method does for each hit: (count, sum of ids).
fn grid_query(grid: &SpatialGrid<u32>, c: Vec2) -> (u64, u64) {
    let (mut n, mut sum) = (0u64, 0u64);
    grid.for_each_in_radius(c, QUERY_RADIUS_M, |_, id| {
        n += 1;
        sum += u64::from(id);
    });
    (n, sum)
}

fn rstar_query(tree: &RTree<Item>, c: Vec2) -> (u64, u64) {
    let (mut n, mut sum) = (0u64, 0u64);
    for item in tree.locate_within_distance([c.x, c.y], QUERY_RADIUS_M * QUERY_RADIUS_M) {
        n += 1;
        sum += u64::from(item.data);
    }
    (n, sum)
}

fn brute_query(points: &[Vec2], c: Vec2) -> (u64, u64) {
    let radius_sq = QUERY_RADIUS_M * QUERY_RADIUS_M;
    let (mut n, mut sum) = (0u64, 0u64);
    for (id, p) in (0u32..).zip(points) {
        if p.distance_squared(c) <= radius_sq {
            n += 1;
            sum += u64::from(id);
        }
    }
    (n, sum)
}

/// Once per scenario, untimed: every query returns the same id set from all three methods.
fn check_identical(world: &World) {
    let mut grid = SpatialGrid::new(region(), CELL_SIZE_M).expect("grid");
    rebuild_grid(&mut grid, &world.points);
    let tree = bulk_load(&world.points);
    let radius_sq = QUERY_RADIUS_M * QUERY_RADIUS_M;
    let mut n_hits = 0usize;
    for &c in world.observers() {
        let mut from_grid = Vec::new();
        grid.for_each_in_radius(c, QUERY_RADIUS_M, |_, id| from_grid.push(id));
        let mut from_rstar: Vec<u32> = tree
            .locate_within_distance([c.x, c.y], radius_sq)
            .map(|item| item.data)
            .collect();
        let from_brute: Vec<u32> = (0u32..)
            .zip(&world.points)
            .filter(|(_, p)| p.distance_squared(c) <= radius_sq)
            .map(|(id, _)| id)
            .collect();
        from_grid.sort_unstable();
        from_rstar.sort_unstable();
        assert_eq!(
            from_grid, from_brute,
            "{}: grid != brute force at {c:?}",
            world.name
        );
        assert_eq!(
            from_rstar, from_brute,
            "{}: rstar != brute force at {c:?}",
            world.name
        );
        n_hits += from_brute.len();
    }
    println!(
        "grid bench {}: {N_POINTS} points, {N_OBSERVERS} queries of {QUERY_RADIUS_M} m, \
         {:.0} hits per query on average; grid, rstar and brute force identical",
        world.name,
        n_hits as f64 / N_OBSERVERS as f64,
    );
}

/// Times `work` over `iters` ticks, moving the points (untimed) before each one.
fn time_ticks(world: &mut World, iters: u64, mut work: impl FnMut(&[Vec2])) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        world.step();
        let start = Instant::now();
        work(&world.points);
        total += start.elapsed();
    }
    total
}

fn bench_grid(c: &mut Criterion) {
    for mut world in scenarios() {
        check_identical(&world);
        let name = world.name;
        let mut grid = SpatialGrid::<u32>::new(region(), CELL_SIZE_M).expect("grid");
        // Warm the buffers: steady state is a rebuild that does not allocate.
        rebuild_grid(&mut grid, &world.points);

        let mut group = c.benchmark_group(format!("grid_rebuild/{name}"));
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(4));
        group.bench_function("grid", |b| {
            b.iter_custom(|iters| {
                time_ticks(&mut world, iters, |pts| {
                    rebuild_grid(&mut grid, black_box(pts));
                    black_box(grid.len());
                })
            })
        });
        group.bench_function("rstar_bulk_load", |b| {
            b.iter_custom(|iters| {
                time_ticks(&mut world, iters, |pts| {
                    black_box(bulk_load(black_box(pts)));
                })
            })
        });
        group.finish();

        let mut group = c.benchmark_group(format!("grid_rebuild_and_query/{name}"));
        // Tens of ms per iteration (dense): flat sampling keeps the run short.
        group.sampling_mode(SamplingMode::Flat);
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(5));
        group.bench_function("grid", |b| {
            b.iter_custom(|iters| {
                time_ticks(&mut world, iters, |pts| {
                    rebuild_grid(&mut grid, black_box(pts));
                    for &o in &pts[..N_OBSERVERS] {
                        black_box(grid_query(&grid, o));
                    }
                })
            })
        });
        group.bench_function("rstar", |b| {
            b.iter_custom(|iters| {
                time_ticks(&mut world, iters, |pts| {
                    let tree = bulk_load(black_box(pts));
                    for &o in &pts[..N_OBSERVERS] {
                        black_box(rstar_query(&tree, o));
                    }
                })
            })
        });
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(5));
        group.bench_function(format!("brute_force_{BRUTE_FORCE_QUERIES}q_x10"), |b| {
            b.iter_custom(|iters| {
                let scale = (N_OBSERVERS / BRUTE_FORCE_QUERIES) as u32;
                time_ticks(&mut world, iters, |pts| {
                    for &o in &pts[..BRUTE_FORCE_QUERIES] {
                        black_box(brute_query(black_box(pts), o));
                    }
                }) * scale
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench_grid);
criterion_main!(benches);
