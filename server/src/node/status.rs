//! What the node holds and how it runs, published by the tick driver for the admin API
//! (region load, node status) and health (the driver's heartbeat).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

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
}

/// The driver's cumulative counters (since the node started).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DriverCounters {
    /// States dropped because a session's outbox was full.
    pub states_dropped: u64,
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
    /// Departed players' saves dropped because the save queue was full.
    pub saves_dropped: u64,
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
}

impl Default for StatusBoard {
    fn default() -> Self {
        StatusBoard {
            started: Instant::now(),
            last_tick_ms: AtomicU64::new(0),
            status: Mutex::new(NodeStatus::default()),
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

    /// Time since the board was made (the node's uptime).
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}
