//! Scenario builders shared by the tick benches and the integration tests' perf smoke.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_regions::Region;
use tessera_regions::io::{Join, SavedPlayer, SessionEvent, TickInput};
use tessera_regions::scripted::ScriptedPlayers;
use tessera_shared::config::{Config, RegionDef};
use tessera_shared::ids::RegionId;
use tessera_shared::math::{Aabb, Vec2};

/// Edge of the square single region the benches simulate, in metres.
pub(crate) const REGION_EDGE_M: f32 = 2048.0;

/// Where entities stand.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Layout {
    /// Uniform over the whole region.
    Spread,
    /// Uniform over a 512 m square in the middle: a crowd.
    Dense,
}

impl Layout {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Layout::Spread => "spread",
            Layout::Dense => "dense",
        }
    }

    fn area(self) -> Aabb {
        match self {
            Layout::Spread => Aabb::new(Vec2::ZERO, Vec2::new(REGION_EDGE_M, REGION_EDGE_M)),
            Layout::Dense => {
                let c = REGION_EDGE_M / 2.0;
                Aabb::new(
                    Vec2::new(c - 256.0, c - 256.0),
                    Vec2::new(c + 256.0, c + 256.0),
                )
            }
        }
    }
}

/// The default balance with one region covering the whole (bench-sized) world, no spawn
/// table population (the bench places NPCs itself) and limits raised to fit.
pub(crate) fn bench_config() -> Arc<Config> {
    let mut config = Config::embedded_default();
    let bounds = Aabb::new(Vec2::ZERO, Vec2::new(REGION_EDGE_M, REGION_EDGE_M));
    config.world.size_m = bounds.max;
    let spawn_table = config.world.regions[0].spawn_table;
    config.world.regions = vec![RegionDef {
        id: RegionId(1),
        bounds,
        spawn_point: bounds.center(),
        spawn_table,
    }];
    for table in &mut config.balance.spawn_tables {
        for entry in &mut table.entries {
            entry.count = 0;
        }
    }
    let limits = &mut config.world.limits;
    limits.entities_per_region_max = 300_000;
    limits.players_per_region_max = 10_000;
    limits.inputs_per_tick_max = 100_000;
    Arc::new(config)
}

/// A region with `n_npcs` NPCs (the default spawn table's archetypes, round-robin) and
/// `n_observers` scripted players, laid out by `layout`, warmed up for a few ticks.
pub(crate) struct Scenario {
    pub(crate) region: Region,
    pub(crate) bots: ScriptedPlayers,
    step_m: f32,
    reach_m: f32,
}

impl Scenario {
    pub(crate) fn new(layout: Layout, n_npcs: usize, n_observers: usize, seed: u64) -> Scenario {
        let config = bench_config();
        let def = config.world.regions[0].clone();
        let mut region = Region::new(&def, config.clone(), seed).expect("bench region");
        let mut rng = SplitMix(seed);
        let area = layout.area();
        let archetypes: Vec<u16> = config.balance.spawn_tables[def.spawn_table]
            .entries
            .iter()
            .map(|e| e.archetype as u16)
            .collect();
        for i in 0..n_npcs {
            let home = rng.point_in(&area);
            region
                .spawn_npc(archetypes[i % archetypes.len()], home)
                .expect("room for the bench NPCs");
        }
        let bots = ScriptedPlayers::new(n_observers, 1, seed);
        let mut input = TickInput::default();
        for player in bots.players() {
            let position = rng.point_in(&area);
            input.sessions.push(SessionEvent::Join(Join {
                player,
                saved: Some(SavedPlayer {
                    position,
                    health: 100.0,
                }),
            }));
        }
        region.step(input);
        let arch = &config.balance.archetypes[config.balance.player_archetype];
        let dt_s = 1.0 / config.world.tick_hz as f32;
        let mut scenario = Scenario {
            region,
            bots,
            step_m: arch.speed_mps * dt_s,
            reach_m: arch.attack_range_m,
        };
        for _ in 0..5 {
            let input = scenario.next_input();
            scenario.region.step(input);
        }
        scenario
    }

    /// Next tick's inputs: every bot moves and attacks what it can reach.
    pub(crate) fn next_input(&mut self) -> TickInput {
        let mut input = TickInput::default();
        let tick = self.region.tick() + 1;
        let out = self.region.output();
        for diff in &out.interest.observers {
            let idx = (diff.player.0 - 1) as usize;
            let own = self.region.position_of(self.bots.avatar(idx));
            let visible = out.interest.updated(diff);
            input.inputs.push(
                self.bots
                    .input(idx, tick, self.step_m, own, visible, self.reach_m),
            );
        }
        input
    }
}

/// A tiny deterministic generator for placing entities (keeps benches dependency-free).
pub(crate) struct SplitMix(pub u64);

impl SplitMix {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn unit_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    pub(crate) fn point_in(&mut self, area: &Aabb) -> Vec2 {
        let s = area.size();
        area.clamp(Vec2::new(
            area.min.x + s.x * self.unit_f32(),
            area.min.y + s.y * self.unit_f32(),
        ))
    }
}

/// Steps `iters` ticks, timing only the steps (input generation is the client's work).
pub(crate) fn timed_steps(scenario: &mut Scenario, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let input = scenario.next_input();
        let started = Instant::now();
        std::hint::black_box(scenario.region.step(input));
        total += started.elapsed();
    }
    total
}
