//! `tessera serve`: the node's tick driver. Steps every local region at the configured
//! rate on a rayon pool and logs a status line every few seconds.
//!
//! This is the node without its network edges: the QUIC endpoint, admin API, bus and
//! snapshot writer attach here (issues 3 to 5), through the bounded inboxes and outboxes
//! of each region's `TickInput`/`TickOutput`.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_shared::config::Config;

use crate::local::LocalRegions;
use crate::sim::percentile;

/// How often the driver logs its status.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(5);
/// A driver that falls further behind than this skips ahead instead of bursting ticks to
/// catch up (a burst would stall clients more than the skip does).
pub const CATCH_UP_MAX: Duration = Duration::from_secs(1);

/// How to run the node.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Stop after this many ticks (for tests and scripted runs); `None` runs until killed.
    pub ticks: Option<u64>,
    /// Seed of every region's RNG.
    pub seed: u64,
}

/// Runs the tick driver on the current thread until `options.ticks` ticks have run.
pub fn run_node(config: Arc<Config>, options: &ServeOptions) -> anyhow::Result<()> {
    let mut local = LocalRegions::new(config.clone(), options.seed)?;
    let tick_hz = config.world.tick_hz;
    let interval = Duration::from_secs_f64(1.0 / f64::from(tick_hz));
    tracing::info!(
        node = %config.node.name,
        world = %config.world.name,
        regions = local.regions().len(),
        tick_hz,
        threads = rayon::current_num_threads(),
        "node running (no network yet: clients arrive with the QUIC endpoint)"
    );
    let mut window =
        Vec::with_capacity((STATUS_INTERVAL.as_secs_f64() * f64::from(tick_hz)) as usize + 1);
    let mut next_tick = Instant::now();
    let mut last_status = Instant::now();
    let mut tick = 0u64;
    while options.ticks.is_none_or(|max| tick < max) {
        let started = Instant::now();
        local.step();
        window.push(started.elapsed());
        tick += 1;

        if last_status.elapsed() >= STATUS_INTERVAL {
            window.sort_unstable();
            let (players, entities) = local.counts();
            tracing::info!(
                tick,
                players,
                entities,
                tick_p50_ms = %format_args!("{:.3}", percentile(&window, 50.0).as_secs_f64() * 1e3),
                tick_p99_ms = %format_args!("{:.3}", percentile(&window, 99.0).as_secs_f64() * 1e3),
                "status"
            );
            window.clear();
            last_status = Instant::now();
        }

        next_tick += interval;
        let now = Instant::now();
        if next_tick > now {
            std::thread::sleep(next_tick - now);
        } else if now - next_tick > CATCH_UP_MAX {
            tracing::warn!(
                behind_ms = (now - next_tick).as_millis() as u64,
                "tick driver overloaded; skipping ahead"
            );
            next_tick = now;
        }
    }
    tracing::info!(tick, "node stopped");
    Ok(())
}
