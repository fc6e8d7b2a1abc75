//! The paced tick loop of a running node: ticks at the world's rate (skipping ahead
//! rather than bursting after a stall), publishes the node's status and metrics, logs
//! the status lines, and at a stop saves the players and flushes the snapshots.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tessera_shared::ids::RegionId;

use super::{CATCH_UP_MAX, NodeGauges};
use crate::admin::metrics::NodeMetrics;
use crate::node::Driver;
use crate::node::status::{
    NodeStatus, RegionStatus, StatusBoard, StatusLog, StatusNow, StatusTotals,
};
use crate::node::status::{STATUS_PUBLISH_INTERVAL, percentile};
use crate::players::SaveStats;
use crate::snapshots::SnapshotStats;

/// What the tick loop reports to.
pub(super) struct Observers<'a> {
    pub(super) saves: &'a SaveStats,
    pub(super) snapshots: &'a SnapshotStats,
    pub(super) gauges: &'a NodeGauges,
    pub(super) board: &'a StatusBoard,
    pub(super) metrics: &'a NodeMetrics,
}

/// The paced tick loop.
pub(super) fn drive(
    mut driver: Driver,
    observers: Observers<'_>,
    stop: &AtomicBool,
    ticks: Option<u64>,
) {
    let Observers {
        saves,
        snapshots,
        gauges,
        board,
        metrics,
    } = observers;
    let interval = Duration::from_secs_f64(1.0 / f64::from(driver.tick_hz()));
    let mut publish = Publisher::default();
    let mut next_tick = Instant::now();
    let mut log = StatusLog::new(driver.tick_hz(), next_tick);
    let mut tick = 0u64;
    while !stop.load(Ordering::Relaxed) && ticks.is_none_or(|max| tick < max) {
        let started = Instant::now();
        driver.tick();
        let took = started.elapsed();
        board.beat();
        metrics.record_tick(took);
        for (region, duration) in driver.local().step_durations() {
            metrics.record_region_tick(region, duration);
        }
        publish.add(&driver, took);
        if publish.due() {
            board.publish(publish.take(&driver));
            let world = &driver.config().world;
            board.publish_map(crate::map::sample(driver.local().regions(), world));
        }
        gauges
            .players
            .store(driver.local().counts().0, Ordering::Relaxed);
        log.record(took, driver.stats.last_fan_out);
        tick += 1;
        let now = Instant::now();
        if log.due(now) {
            let (players, entities) = driver.local().counts();
            let status_tick = driver.local().regions().first().map_or(0, |r| r.tick());
            let snapshot_tick = snapshots.committed_tick.load(Ordering::Relaxed);
            let line = log.line(
                &StatusNow {
                    tick: status_tick,
                    players,
                    entities,
                    regions: driver.local().regions().len(),
                    totals: StatusTotals {
                        states_dropped: driver.stats.counters.states_dropped,
                        players_saved: saves.saved.load(Ordering::Relaxed),
                        saves_failed: saves.failed.load(Ordering::Relaxed),
                        saves_dropped: driver.stats.counters.saves_dropped,
                        snapshots_committed: snapshots.committed.load(Ordering::Relaxed),
                    },
                    store_degraded: saves.degraded.load(Ordering::Relaxed)
                        || snapshots.degraded.load(Ordering::Relaxed),
                    snapshot_tick,
                },
                now,
            );
            // The line for people; the fields for tools reading the log.
            tracing::info!(tick = status_tick, players, snapshot_tick, "status: {line}");
            if log.table_due(now) {
                for region in &board.status().regions {
                    tracing::info!("{}", log.region_line(region));
                }
            }
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
    stop.store(true, Ordering::Relaxed);
    // Players still in the world keep their progress across a graceful stop.
    let players = driver.local().counts().0;
    let saved = driver.save_all_players(crate::node::SHUTDOWN_SAVE_TIMEOUT);
    tracing::info!(players, saved, "saved the players still connected");
    // Leaving the cluster (after this) releases their locations: the ledger knows who is
    // here.
    let flushed = driver.flush_snapshots(crate::node::SHUTDOWN_SAVE_TIMEOUT);
    let tick = snapshots.committed_tick.load(Ordering::Relaxed);
    if flushed {
        tracing::info!(tick, "region snapshots committed");
    } else {
        tracing::warn!(
            tick,
            "region snapshots not all committed before the shutdown timeout"
        );
    }
}

/// Collects tick durations over [`STATUS_PUBLISH_INTERVAL`] and makes the
/// [`NodeStatus`] the driver publishes from them.
#[derive(Default)]
struct Publisher {
    started: Option<Instant>,
    ticks: Vec<Duration>,
    regions: BTreeMap<RegionId, Vec<Duration>>,
}

impl Publisher {
    fn add(&mut self, driver: &Driver, took: Duration) {
        self.started.get_or_insert_with(Instant::now);
        self.ticks.push(took);
        for (region, duration) in driver.local().step_durations() {
            self.regions.entry(region).or_default().push(duration);
        }
    }

    fn due(&self) -> bool {
        self.started
            .is_some_and(|at| at.elapsed() >= STATUS_PUBLISH_INTERVAL)
    }

    fn take(&mut self, driver: &Driver) -> NodeStatus {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let summary = |durations: &mut Vec<Duration>| {
            durations.sort_unstable();
            (
                ms(percentile(durations, 50.0)),
                ms(percentile(durations, 99.0)),
            )
        };
        let (tick_p50_ms, tick_p99_ms) = summary(&mut self.ticks);
        let regions = driver
            .local()
            .regions()
            .iter()
            .map(|region| {
                let counts = region.counts();
                let (tick_p50_ms, tick_p99_ms) = self
                    .regions
                    .get_mut(&region.id())
                    .map_or((0.0, 0.0), &summary);
                RegionStatus {
                    id: region.id().0,
                    players: counts.players,
                    entities: counts.entities,
                    tick_p50_ms,
                    tick_p99_ms,
                    frozen: driver.is_frozen(region.id()),
                }
            })
            .collect();
        let (players, entities) = driver.local().counts();
        *self = Publisher::default();
        NodeStatus {
            tick: driver.local().regions().first().map_or(0, |r| r.tick()),
            tick_hz: driver.tick_hz(),
            players,
            entities,
            tick_p50_ms,
            tick_p99_ms,
            regions,
            counters: driver.stats.counters,
        }
    }
}
