//! Ghosts: each tick the driver publishes, per held region bordering a region held
//! elsewhere, the entities within the interest enter radius of that border (at most
//! [`GHOSTS_PER_REGION_MAX`], on a queue of [`GHOSTS_OUT_LEN_MAX`] that drops when full:
//! ghosts are loss-tolerant). A subscriber keeps the newest ghosts of each neighbouring
//! region on the [`GhostBoard`] (counting gaps); the driver shows a client near the border
//! the ghosts within its enter radius. Ghosts are read-only: they are not in the
//! simulation, so nothing can move, hit or see them as targets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tessera_cluster::wire::decode_ghosts;
use tessera_persistence::bus::EventBus;
use tessera_regions::io::EntityView;
use tessera_shared::config::Config;
use tessera_shared::ids::RegionId;
use tessera_shared::math::Aabb;

use super::Shared;

pub use tessera_cluster::wire::GHOSTS_PER_REGION_MAX;

/// Ghost updates queued from the driver to the publisher; beyond it they are dropped.
pub const GHOSTS_OUT_LEN_MAX: usize = 64;
/// Ghosts older than this are not shown (their region stopped publishing).
pub const GHOST_TTL: Duration = Duration::from_millis(500);
/// How often the ghost follower checks whether the neighbours changed (resubscribing).
pub const NEIGHBOURS_CHECK: Duration = Duration::from_millis(250);
/// First and longest wait between two tries to subscribe.
const SUBSCRIBE_RETRY_MIN: Duration = Duration::from_millis(200);
const SUBSCRIBE_RETRY_MAX: Duration = Duration::from_secs(5);

/// Where a held region meets one held elsewhere.
#[derive(Clone, Copy, Debug)]
pub struct Border {
    /// The held region.
    pub held: RegionId,
    /// The region across, held elsewhere.
    pub remote: RegionId,
    /// The part of the held region within the interest enter radius of the remote one:
    /// what its ghosts show.
    pub band: Aabb,
    /// The remote region's bounds.
    pub remote_bounds: Aabb,
}

/// Every border between a region of `held` and a region of `config`'s world not in it.
pub fn borders(config: &Config, held: &[RegionId]) -> Vec<Border> {
    let reach = config.world.interest.enter_radius_m;
    let mut borders = Vec::new();
    for mine in config.world.regions.iter().filter(|r| held.contains(&r.id)) {
        for other in config
            .world
            .regions
            .iter()
            .filter(|r| !held.contains(&r.id))
        {
            if let Some(band) = mine.bounds.intersection(&other.bounds.expanded(reach)) {
                borders.push(Border {
                    held: mine.id,
                    remote: other.id,
                    band,
                    remote_bounds: other.bounds,
                });
            }
        }
    }
    borders
}

/// The newest ghosts of each neighbouring region held elsewhere.
#[derive(Debug, Default)]
pub struct GhostBoard {
    by_region: Mutex<HashMap<RegionId, (Instant, Arc<Vec<EntityView>>)>>,
    /// Ghost messages missed (sequence gaps).
    pub gaps: AtomicU64,
    /// Ghost messages that did not decode.
    pub malformed: AtomicU64,
}

impl GhostBoard {
    /// The current ghosts of every neighbouring region (fresher than [`GHOST_TTL`]).
    pub fn current(&self) -> HashMap<RegionId, Arc<Vec<EntityView>>> {
        let now = Instant::now();
        self.by_region
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, (at, _))| now.duration_since(*at) < GHOST_TTL)
            .map(|(&r, (_, ghosts))| (r, ghosts.clone()))
            .collect()
    }

    fn put(&self, region: RegionId, views: Vec<EntityView>) {
        self.by_region
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(region, (Instant::now(), Arc::new(views)));
    }
}

/// Keeps the newest ghosts of the regions bordering the active ones on `board`,
/// resubscribing when the active regions change.
pub(super) async fn follow_ghosts<B: EventBus>(
    bus: B,
    config: Config,
    shared: Arc<Shared>,
    board: Arc<GhostBoard>,
) {
    loop {
        let (version, active) = {
            let ledger = shared.ledger();
            (ledger.version(), ledger.active())
        };
        let mut neighbours: Vec<RegionId> =
            borders(&config, &active).iter().map(|b| b.remote).collect();
        neighbours.sort_unstable();
        neighbours.dedup();
        if neighbours.is_empty() {
            tokio::time::sleep(NEIGHBOURS_CHECK).await;
            continue;
        }
        let mut delay = SUBSCRIBE_RETRY_MIN;
        let mut feed = loop {
            match bus.subscribe_ghosts(&neighbours).await {
                Ok(feed) => break feed,
                Err(e) => {
                    tracing::warn!(error = %e, "subscribing to neighbours' ghosts failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(SUBSCRIBE_RETRY_MAX);
                }
            }
        };
        loop {
            let ghost = tokio::select! {
                ghost = feed.recv() => ghost,
                () = tokio::time::sleep(NEIGHBOURS_CHECK) => {
                    if shared.ledger().version() != version {
                        break; // Other neighbours now: resubscribe.
                    }
                    continue;
                }
            };
            let Some(ghost) = ghost else { break };
            board.gaps.fetch_add(ghost.gap, Ordering::Relaxed);
            match decode_ghosts(&ghost.payload) {
                Some(views) => board.put(ghost.region, views),
                None => {
                    board.malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}
