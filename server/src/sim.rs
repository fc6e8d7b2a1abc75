//! `tessera sim`: the world headless, unpaced, with deterministic scripted players, for
//! measuring ticks and checking determinism. No network, no storage.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_regions::RegionError;
use tessera_regions::io::{GameEvent, Join, SavedPlayer, SessionEvent, TickStats};
use tessera_regions::scripted::ScriptedPlayers;
use tessera_shared::config::Config;
use tessera_shared::ids::{PlayerId, RegionId};

use crate::local::LocalRegions;
use crate::node::status::percentile;

/// Most ticks one `sim` run may take (the per-tick timings are kept: 8 bytes each).
pub const SIM_TICKS_MAX: u64 = 10_000_000;
/// Most scripted players one `sim` run may have.
pub const SIM_PLAYERS_MAX: usize = 100_000;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Ticks to run, 1 to [`SIM_TICKS_MAX`].
    pub ticks: u64,
    /// Seed of every region's RNG and of the scripted players.
    pub seed: u64,
    /// Scripted players, spread round-robin over the regions at random points, 0 to
    /// [`SIM_PLAYERS_MAX`].
    pub players: usize,
}

/// What a `sim` run measured.
#[derive(Clone, Debug)]
pub struct SimReport {
    /// The options run.
    pub options: SimOptions,
    /// Regions simulated.
    pub regions: usize,
    /// Rayon threads stepping them.
    pub threads: usize,
    /// Time to step all regions once: median, 99th percentile, maximum.
    pub tick_p50: Duration,
    /// 99th percentile.
    pub tick_p99: Duration,
    /// Maximum.
    pub tick_max: Duration,
    /// Players in the world at the end.
    pub players: usize,
    /// Entities in the world at the end.
    pub entities: usize,
    /// Players between two regions at the end (handed off, applied next tick).
    pub in_flight: usize,
    /// Border crossings routed between regions.
    pub handoffs: u64,
    /// Damage events.
    pub hits: u64,
    /// Deaths.
    pub deaths: u64,
    /// Counters summed over all ticks and regions.
    pub stats: TickStats,
    /// Hash of the final state of every region.
    pub world_hash: u64,
}

/// Runs the world for `options.ticks` ticks on the current rayon pool.
pub fn run_sim(config: Arc<Config>, options: &SimOptions) -> Result<SimReport, RegionError> {
    run_sim_observed(config, options, |_, _| {})
}

/// [`run_sim`], calling `observe(tick, regions)` after every tick (outside the timing).
pub fn run_sim_observed(
    config: Arc<Config>,
    options: &SimOptions,
    mut observe: impl FnMut(u64, &mut LocalRegions),
) -> Result<SimReport, RegionError> {
    let ticks = options.ticks.clamp(1, SIM_TICKS_MAX);
    let mut local = LocalRegions::new(config.clone(), options.seed)?;
    let region_ids: Vec<RegionId> = local.regions().iter().map(|r| r.id()).collect();
    let mut bots = ScriptedPlayers::new(options.players.min(SIM_PLAYERS_MAX), 1, options.seed);
    let players: Vec<PlayerId> = bots.players().collect();
    for (i, player) in players.into_iter().enumerate() {
        let def = &config.world.regions[i % config.world.regions.len()];
        let position = bots.random_point(&def.bounds);
        let input = local.input_mut(def.id).expect("every region is local");
        input.sessions.push(SessionEvent::Join(Join {
            player,
            saved: Some(SavedPlayer {
                position,
                health: f32::MAX, // Clamped to the archetype's maximum.
            }),
        }));
    }
    let player_arch = &config.balance.archetypes[config.balance.player_archetype];
    let dt_s = 1.0 / config.world.tick_hz as f32;
    let step_m = player_arch.speed_mps * dt_s;
    let reach_m = player_arch.attack_range_m;

    let mut durations = Vec::with_capacity(ticks as usize);
    let mut report_stats = TickStats::default();
    let (mut handoffs, mut hits, mut deaths) = (0u64, 0u64, 0u64);
    let mut pending = Vec::new();
    for tick in 1..=ticks {
        // Inputs for this tick, from what each bot saw last tick.
        pending.clear();
        for region in local.regions() {
            let out = region.output();
            for diff in &out.interest.observers {
                let idx = bot_index(diff.player);
                let own = region.position_of(bots.avatar(idx));
                let visible = out.interest.updated(diff);
                let input = bots.input(idx, tick, step_m, own, visible, reach_m);
                pending.push((region.id(), input));
            }
        }
        for (region, input) in pending.drain(..) {
            local
                .input_mut(region)
                .expect("own region")
                .inputs
                .push(input);
        }

        let started = Instant::now();
        handoffs += local.step() as u64;
        durations.push(started.elapsed());
        observe(tick, &mut local);

        for region in local.regions() {
            let out = region.output();
            report_stats.accumulate(&out.stats);
            for event in &out.events {
                match event {
                    GameEvent::Damage { .. } => hits += 1,
                    GameEvent::Death { .. } => deaths += 1,
                    GameEvent::Respawn { .. } => {}
                }
            }
        }
    }
    durations.sort_unstable();
    let (players, entities) = local.counts();
    Ok(SimReport {
        options: SimOptions {
            ticks,
            ..options.clone()
        },
        regions: region_ids.len(),
        threads: rayon::current_num_threads(),
        tick_p50: percentile(&durations, 50.0),
        tick_p99: percentile(&durations, 99.0),
        tick_max: durations.last().copied().unwrap_or_default(),
        players,
        entities,
        in_flight: local.in_flight(),
        handoffs,
        hits,
        deaths,
        stats: report_stats,
        world_hash: local.world_hash(),
    })
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        writeln!(
            f,
            "sim: {} ticks, seed {}, {} regions, {} scripted players, {} threads",
            o.ticks, o.seed, self.regions, o.players, self.threads
        )?;
        writeln!(
            f,
            "tick (all regions): p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
            ms(self.tick_p50),
            ms(self.tick_p99),
            ms(self.tick_max)
        )?;
        writeln!(
            f,
            "entities: {} ({} players, {} npcs), {} in flight between regions",
            self.entities,
            self.players,
            self.entities - self.players,
            self.in_flight
        )?;
        writeln!(
            f,
            "activity: {} inputs applied, {} moves clamped, {} hits, {} deaths, {} handoffs",
            self.stats.inputs_applied,
            self.stats.moves_clamped,
            self.hits,
            self.deaths,
            self.handoffs
        )?;
        write!(f, "world hash: {:016x}", self.world_hash)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Scripted player ids start at 1 (see [`run_sim`]); this maps one back to its index.
fn bot_index(player: PlayerId) -> usize {
    (player.0 - 1) as usize
}
