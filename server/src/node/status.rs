//! What the node holds and how it runs, published by the tick driver for the admin API
//! (region load, node status) and health (the driver's heartbeat).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::map::RegionMap;

/// How often the driver publishes its status (region load, counters) for the admin API
/// and metrics.
pub const STATUS_PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// One region's load, over the last publishing window.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RegionStatus {
    /// Region id.
    pub id: u32,
    /// Player avatars in it.
    pub players: usize,
    /// Entities in it (avatars included).
    pub entities: usize,
    /// Its tick (step) duration's median over the window, in milliseconds.
    pub tick_p50_ms: f64,
    /// Its tick duration's 99th percentile over the window, in milliseconds.
    pub tick_p99_ms: f64,
    /// Frozen by an operator (inputs ignored).
    pub frozen: bool,
}

/// The driver's cumulative counters (since the node started).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DriverCounters {
    /// States a session never sent: replaced by a newer one before it could (it fell
    /// behind), or the session was gone.
    pub states_dropped: u64,
    /// Bytes of the states encoded for clients (sent or dropped).
    pub state_bytes: u64,
    /// Inputs from a session that no longer holds its player.
    pub inputs_stale_session: u64,
    /// Inputs the regions applied (at least partly).
    pub inputs_applied: u64,
    /// Inputs beyond a region's per-tick limit.
    pub inputs_over_limit: u64,
    /// Inputs with a sequence number not newer than the last applied (replays).
    pub inputs_stale: u64,
    /// Inputs for a player not in the region (or dead).
    pub inputs_unknown_player: u64,
    /// Inputs of players in a region an operator froze.
    pub inputs_frozen: u64,
    /// Inputs with a non-finite move.
    pub inputs_non_finite: u64,
    /// Sessions resumed (a login found the player's avatar still in the world).
    pub resumed: u64,
    /// Avatars removed because their client did not resume in time.
    pub resume_expired: u64,
    /// Players redirected to another node.
    pub redirected: u64,
    /// Logins refused because the player was just handed off to another node (its
    /// location not there yet).
    pub logins_refused_moving: u64,
    /// Logins whose client left before the driver joined them (skipped, or their avatar
    /// left waiting for a resume).
    pub logins_abandoned: u64,
    /// Chat messages a recipient here missed because its outbox was full.
    pub chat_dropped: u64,
    /// Departed players' saves dropped because the save queue was full.
    pub saves_dropped: u64,
    /// Economy transactions (kills, starter kits) dropped because the economy's queue was
    /// full.
    pub economy_dropped: u64,
    /// Snapshot captures skipped because the encoder was behind.
    pub captures_skipped: u64,
    /// Ghost updates dropped because the publisher's queue was full.
    pub ghosts_dropped: u64,
    /// Ghost updates from other nodes missed (sequence gaps).
    pub ghost_gaps: u64,
    /// Handoffs routed between this node's regions.
    pub handoffs_local: u64,
    /// Handoffs published to other nodes' regions.
    pub handoffs_out: u64,
    /// Handoffs from other nodes applied (or found applied before) and acknowledged.
    pub handoffs_in: u64,
    /// Handoffs refused as stale: redelivered after their player moved on.
    pub handoffs_stale: u64,
    /// Handoffs dropped because a newer login claimed the player while it crossed.
    pub handoffs_dropped: u64,
    /// Location claims of sessions that left before joining, put right.
    pub claims_repaired: u64,
    /// Handoffs waiting to go out (a gauge, as of the last tick).
    pub bus_backlog: u64,
    /// Session commands waiting for the driver at the start of the last tick (a gauge).
    pub inbox_depth: u64,
    /// Clients with changes to their views waiting for room in their state budgets after
    /// the last tick (a gauge).
    pub clients_over_budget: u64,
    /// Changes waiting over all clients after the last tick (a gauge).
    pub state_changes_waiting: u64,
    /// The longest any change sent in the last tick had waited, in ticks (a gauge; at
    /// most `[net] state_staleness_ticks_max`).
    pub state_staleness_ticks: u64,
}

/// The node as of its last published window.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NodeStatus {
    /// The simulation tick.
    pub tick: u64,
    /// Ticks per second.
    pub tick_hz: u32,
    /// Players over all regions.
    pub players: usize,
    /// Entities over all regions.
    pub entities: usize,
    /// The whole tick's (step, fan-out, bookkeeping) median, in milliseconds.
    pub tick_p50_ms: f64,
    /// The whole tick's 99th percentile, in milliseconds.
    pub tick_p99_ms: f64,
    /// The regions held, by id.
    pub regions: Vec<RegionStatus>,
    /// The driver's counters.
    pub counters: DriverCounters,
}

/// Where the driver publishes [`NodeStatus`] and its heartbeat.
#[derive(Debug)]
pub struct StatusBoard {
    started: Instant,
    /// Milliseconds from `started` to the driver's last tick (0: none yet).
    last_tick_ms: AtomicU64,
    status: Mutex<NodeStatus>,
    map: Mutex<Arc<Vec<RegionMap>>>,
}

impl Default for StatusBoard {
    fn default() -> Self {
        StatusBoard {
            started: Instant::now(),
            last_tick_ms: AtomicU64::new(0),
            status: Mutex::new(NodeStatus::default()),
            map: Mutex::default(),
        }
    }
}

impl StatusBoard {
    /// The driver ticked (called every tick: one relaxed store).
    pub fn beat(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_tick_ms.store(ms.max(1), Ordering::Relaxed);
    }

    /// How long ago the driver last ticked (`None`: it has not yet).
    pub fn since_last_tick(&self) -> Option<Duration> {
        match self.last_tick_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(
                self.started
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms)),
            ),
        }
    }

    /// Replaces the published status.
    pub fn publish(&self, status: NodeStatus) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }

    /// The last published status.
    pub fn status(&self) -> NodeStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the published map sample (`crate::map`).
    pub fn publish_map(&self, map: Vec<RegionMap>) {
        *self.map.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(map);
    }

    /// The last published map sample of this node's regions.
    pub fn map(&self) -> Arc<Vec<RegionMap>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Time since the board was made (the node's uptime).
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// The `p`th percentile (0 to 100) of `sorted` samples, by nearest rank; the default
/// value (zero) for no samples.
pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// How often the node logs its status line.
pub const STATUS_LOG_INTERVAL: Duration = Duration::from_secs(5);
/// How often the status line is followed by one line per region.
pub const REGION_TABLE_INTERVAL: Duration = Duration::from_secs(30);
/// Tick durations kept for one status line: 5 s at the highest tick rate (120 Hz), with
/// room for a late line; more are not kept (the percentiles are over the first ones).
const STATUS_WINDOW_MAX: usize = 1_024;

/// The node's running totals a status line reports the change of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusTotals {
    /// States a session never sent: replaced by a newer one before it could (it fell
    /// behind), or the session was gone.
    pub states_dropped: u64,
    /// Player saves made durable.
    pub players_saved: u64,
    /// Player saves refused by the store for good.
    pub saves_failed: u64,
    /// Departed players' saves dropped (the save queue was full).
    pub saves_dropped: u64,
    /// Region snapshot commits made durable.
    pub snapshots_committed: u64,
}

/// What a status line shows besides the window's tick times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusNow {
    /// The simulation tick.
    pub tick: u64,
    /// Players over all regions.
    pub players: usize,
    /// Entities over all regions.
    pub entities: usize,
    /// Regions held.
    pub regions: usize,
    /// The running totals.
    pub totals: StatusTotals,
    /// The tick of the newest durable snapshot commit (0: none yet): what a crash now
    /// would restart from.
    pub snapshot_tick: u64,
    /// The store is unavailable (saves or commits wait for it).
    pub store_degraded: bool,
}

/// The node's log lines about itself: every [`STATUS_LOG_INTERVAL`] one line (gauges now;
/// tick and fan-out times and counts over the window since the last line; the tick as a
/// share of its budget), and every [`REGION_TABLE_INTERVAL`] one line per region.
#[derive(Debug)]
pub struct StatusLog {
    budget: Duration,
    ticks: Vec<Duration>,
    fan_outs: Vec<Duration>,
    window_started: Instant,
    table_at: Instant,
    before: StatusTotals,
}

impl StatusLog {
    /// A log for a node ticking at `tick_hz`, its window starting at `now`.
    pub fn new(tick_hz: u32, now: Instant) -> StatusLog {
        StatusLog {
            budget: Duration::from_secs(1) / tick_hz.max(1),
            ticks: Vec::with_capacity(STATUS_WINDOW_MAX),
            fan_outs: Vec::with_capacity(STATUS_WINDOW_MAX),
            window_started: now,
            table_at: now,
            before: StatusTotals::default(),
        }
    }

    /// One tick: how long it took, and its fan-out part.
    pub fn record(&mut self, took: Duration, fan_out: Duration) {
        if self.ticks.len() < STATUS_WINDOW_MAX {
            self.ticks.push(took);
            self.fan_outs.push(fan_out);
        }
    }

    /// Whether the status line is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        now.duration_since(self.window_started) >= STATUS_LOG_INTERVAL
    }

    /// Whether the per-region lines are due at `now` (then not again for an interval).
    pub fn table_due(&mut self, now: Instant) -> bool {
        let due = now.duration_since(self.table_at) >= REGION_TABLE_INTERVAL;
        if due {
            self.table_at = now;
        }
        due
    }

    /// The status line for the window ending at `now`; starts the next window.
    pub fn line(&mut self, status: &StatusNow, now: Instant) -> String {
        let window = now.duration_since(self.window_started);
        self.ticks.sort_unstable();
        self.fan_outs.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let tick_p50 = percentile(&self.ticks, 50.0);
        let tick_p99 = percentile(&self.ticks, 99.0);
        let fan_out_p99 = percentile(&self.fan_outs, 99.0);
        let share = tick_p99.as_secs_f64() / self.budget.as_secs_f64() * 100.0;
        let (now_totals, before) = (status.totals, self.before);
        let delta = |f: fn(&StatusTotals) -> u64| f(&now_totals).saturating_sub(f(&before));
        let mut line = format!(
            "{} players, {} entities in {} regions, tick {}; tick p50 {:.2} ms, p99 {:.2} ms \
             ({share:.0}% of the {:.0} ms budget), fan-out p99 {:.2} ms; last {} s: {} ticks, \
             {} players saved, {} snapshot commits, {} states dropped",
            status.players,
            status.entities,
            status.regions,
            status.tick,
            ms(tick_p50),
            ms(tick_p99),
            ms(self.budget),
            ms(fan_out_p99),
            window.as_secs(),
            self.ticks.len(),
            delta(|t| t.players_saved),
            delta(|t| t.snapshots_committed),
            delta(|t| t.states_dropped),
        );
        let (failed, dropped) = (delta(|t| t.saves_failed), delta(|t| t.saves_dropped));
        if failed + dropped > 0 {
            line += &format!(", {failed} saves failed, {dropped} saves dropped");
        }
        line += &match status.snapshot_tick {
            0 => "; no snapshot durable yet".to_owned(),
            tick => format!("; snapshots durable to tick {tick}"),
        };
        if status.store_degraded {
            line += "; STORE DEGRADED (saves and commits wait for it)";
        }
        self.ticks.clear();
        self.fan_outs.clear();
        self.window_started = now;
        self.before = now_totals;
        line
    }

    /// One region's line of the table, from the last published status.
    pub fn region_line(&self, region: &RegionStatus) -> String {
        let share = region.tick_p99_ms / (self.budget.as_secs_f64() * 1e3) * 100.0;
        format!(
            "region {}: {} players, {} entities; step p50 {:.2} ms, p99 {:.2} ms ({share:.0}% \
             of the budget) over the last second",
            region.id, region.players, region.entities, region.tick_p50_ms, region.tick_p99_ms,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_line_shows_the_window_its_budget_share_and_what_changed_in_it() {
        let start = Instant::now();
        let mut log = StatusLog::new(20, start);
        for ms in 1..=100 {
            log.record(Duration::from_millis(ms % 10), Duration::from_millis(1));
        }
        log.record(Duration::from_millis(25), Duration::from_millis(2));
        assert!(!log.due(start + Duration::from_secs(4)));
        let at = start + STATUS_LOG_INTERVAL;
        assert!(log.due(at));
        let mut status = StatusNow {
            tick: 101,
            players: 3,
            entities: 40,
            regions: 4,
            totals: StatusTotals {
                players_saved: 7,
                ..StatusTotals::default()
            },
            store_degraded: false,
            snapshot_tick: 0,
        };
        let line = log.line(&status, at);
        // 101 ticks: the p99 is the 100th fastest, 9 ms: 18% of 50 ms.
        assert!(
            line.contains("p99 9.00 ms (18% of the 50 ms budget)"),
            "{line}"
        );
        assert!(
            line.contains("last 5 s: 101 ticks, 7 players saved"),
            "{line}"
        );
        assert!(!line.contains("failed"), "{line}");
        assert!(line.ends_with("; no snapshot durable yet"), "{line}");
        // The next window starts empty and counts from the last totals.
        status.totals.players_saved = 9;
        status.totals.saves_dropped = 1;
        status.store_degraded = true;
        status.snapshot_tick = 80;
        let line = log.line(&status, at + STATUS_LOG_INTERVAL);
        assert!(line.contains("0 ticks, 2 players saved"), "{line}");
        assert!(line.contains("0 saves failed, 1 saves dropped"), "{line}");
        assert!(line.contains("STORE DEGRADED"), "{line}");
        assert!(line.contains("; snapshots durable to tick 80"), "{line}");
        let region = RegionStatus {
            id: 2,
            players: 1,
            entities: 9,
            tick_p50_ms: 1.0,
            tick_p99_ms: 5.0,
            frozen: false,
        };
        assert_eq!(
            log.region_line(&region),
            "region 2: 1 players, 9 entities; step p50 1.00 ms, p99 5.00 ms (10% of the budget) over the last second"
        );
        assert!(!log.table_due(start + Duration::from_secs(29)));
        assert!(log.table_due(start + REGION_TABLE_INTERVAL));
        assert!(!log.table_due(start + REGION_TABLE_INTERVAL));
    }
}
