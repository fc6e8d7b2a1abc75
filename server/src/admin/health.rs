//! Health: is the node alive (its driver ticking), ready (taking players), and are the
//! services it depends on answering.
//!
//! MongoDB and Redis are probed actively, every [`PROBE_INTERVAL`], each ping bounded by
//! [`PROBE_TIMEOUT`] (the ping runs as its own task, which is timed out; the driver's
//! future itself is never cancelled mid-operation). A service is down once no ping has
//! succeeded for [`DOWN_AFTER`], so the node reports it within `DOWN_AFTER` plus one
//! interval (4 s) of losing it, idle or not, and up again at the first ping that answers.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::node::status::StatusBoard;
use crate::players::SaveStats;
use crate::snapshots::SnapshotStats;

/// How often each dependency is pinged.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long one ping may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A dependency with no successful ping for this long is down.
pub const DOWN_AFTER: Duration = Duration::from_secs(3);
/// A driver that has not ticked for this long is stalled: the node is not alive.
pub const DRIVER_STALL: Duration = Duration::from_secs(2);

/// One dependency's probe results.
#[derive(Debug)]
pub struct Probe {
    name: &'static str,
    started: Instant,
    /// Milliseconds from `started` to the last successful ping (0: none yet).
    last_ok_ms: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Probe {
    /// A probe of the dependency called `name` (in health reports and metrics).
    pub fn new(name: &'static str) -> Arc<Probe> {
        Arc::new(Probe {
            name,
            started: Instant::now(),
            last_ok_ms: AtomicU64::new(0),
            last_error: Mutex::new(None),
        })
    }

    /// The dependency's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn record(&self, result: Result<(), String>) {
        match result {
            Ok(()) => {
                let ms = self.started.elapsed().as_millis() as u64;
                self.last_ok_ms.store(ms.max(1), Ordering::Relaxed);
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
            Err(e) => *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e),
        }
    }

    /// Whether a ping succeeded within [`DOWN_AFTER`].
    pub fn is_up(&self) -> bool {
        match self.last_ok_ms.load(Ordering::Relaxed) {
            0 => false,
            ms => {
                self.started
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms))
                    < DOWN_AFTER
            }
        }
    }

    fn detail(&self) -> String {
        if self.is_up() {
            "answering".into()
        } else {
            let error = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
            match &*error {
                Some(e) => format!("not answering: {e}"),
                None => format!("no answer for {} s", DOWN_AFTER.as_secs()),
            }
        }
    }
}

/// Pings with `ping` every [`PROBE_INTERVAL`] until the runtime stops, recording each
/// outcome in `probe`.
pub fn spawn_prober<F, Fut>(probe: Arc<Probe>, ping: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(PROBE_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let result = match tokio::time::timeout(PROBE_TIMEOUT, tokio::spawn(ping())).await {
                Ok(Ok(result)) => result,
                Ok(Err(e)) => Err(format!("probe failed: {e}")),
                Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
            };
            probe.record(result);
        }
    });
}

pub use crate::reload::ReloadOutcome;

/// Everything health looks at.
#[derive(Debug)]
pub struct Health {
    /// The driver's heartbeat.
    pub board: Arc<StatusBoard>,
    /// The dependencies' probes (none on the embedded default).
    pub probes: Vec<Arc<Probe>>,
    /// Player saves (degraded while they wait for the store).
    pub saves: Arc<SaveStats>,
    /// Region snapshots (degraded while they wait for the store).
    pub snapshots: Arc<SnapshotStats>,
    /// Balance reloads (none: a node that cannot reload).
    pub reloader: Option<Arc<crate::reload::Reloader>>,
}

/// One check of a health report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Whether it passes.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
}

/// A health report: `"ok"`, `"degraded"` (alive, a dependency down or writes waiting:
/// the node keeps ticking and catches up by itself) or `"unhealthy"` (the driver is not
/// ticking).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The verdict.
    pub status: &'static str,
    /// Each check, by name.
    pub checks: BTreeMap<&'static str, Check>,
    /// The last balance reload (`/readyz` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reload: Option<ReloadOutcome>,
}

impl Report {
    /// Whether the verdict is `"ok"`.
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

impl Health {
    fn driver_check(&self) -> Check {
        match self.board.since_last_tick() {
            Some(since) if since < DRIVER_STALL => Check {
                ok: true,
                detail: format!("ticked {} ms ago", since.as_millis()),
            },
            Some(since) => Check {
                ok: false,
                detail: format!("no tick for {} ms", since.as_millis()),
            },
            None => Check {
                ok: false,
                detail: "not ticking yet".into(),
            },
        }
    }

    /// Alive: the driver ticks.
    pub fn live(&self) -> Report {
        let driver = self.driver_check();
        let status = if driver.ok { "ok" } else { "unhealthy" };
        Report {
            status,
            checks: BTreeMap::from([("driver", driver)]),
            last_reload: None,
        }
    }

    /// Alive, and every dependency answering and every write keeping up.
    pub fn health(&self) -> Report {
        let mut checks = BTreeMap::from([("driver", self.driver_check())]);
        for probe in &self.probes {
            checks.insert(
                probe.name(),
                Check {
                    ok: probe.is_up(),
                    detail: probe.detail(),
                },
            );
        }
        let waiting = |degraded: bool, what: &str| Check {
            ok: !degraded,
            detail: if degraded {
                format!("{what} waiting for the store")
            } else {
                format!("{what} durable")
            },
        };
        checks.insert(
            "player_saves",
            waiting(self.saves.degraded.load(Ordering::Relaxed), "saves"),
        );
        checks.insert(
            "snapshots",
            waiting(self.snapshots.degraded.load(Ordering::Relaxed), "snapshots"),
        );
        let status = if !checks["driver"].ok {
            "unhealthy"
        } else if checks.values().all(|c| c.ok) {
            "ok"
        } else {
            "degraded"
        };
        Report {
            status,
            checks,
            last_reload: None,
        }
    }

    /// Ready for players: alive (a dependency down does not stop play: the node keeps
    /// ticking and its writes wait). Shows the last balance reload, refused or not.
    pub fn ready(&self) -> Report {
        let mut report = self.live();
        report.last_reload = self.reloader.as_ref().and_then(|r| r.last());
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_is_down_until_a_ping_answers_and_says_why() {
        let probe = Probe::new("mongodb");
        assert!(!probe.is_up());
        probe.record(Err("connection refused".into()));
        assert!(!probe.is_up());
        assert!(probe.detail().contains("connection refused"));
        probe.record(Ok(()));
        assert!(probe.is_up());
        assert_eq!(probe.detail(), "answering");
    }

    #[test]
    fn a_node_whose_driver_never_ticked_is_unhealthy_and_one_that_ticks_is_ok() {
        let health = Health {
            board: Arc::new(StatusBoard::default()),
            probes: Vec::new(),
            saves: Arc::default(),
            snapshots: Arc::default(),
            reloader: None,
        };
        assert_eq!(health.health().status, "unhealthy");
        assert_eq!(health.live().status, "unhealthy");
        health.board.beat();
        assert_eq!(health.health().status, "ok");
        health.saves.degraded.store(true, Ordering::Relaxed);
        assert_eq!(health.health().status, "degraded");
        assert!(health.ready().is_ok(), "a waiting save does not stop play");
    }
}
