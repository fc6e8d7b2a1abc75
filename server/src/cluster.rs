//! The node as part of a cluster (`[services] redis_url` set): the regions it holds under
//! Redis leases, and handoffs to and from regions other nodes hold, over the bus.
//!
//! - **Leases.** At start the node takes the lease of each region of `[cluster] regions`
//!   (waiting up to [`ACQUIRE_TIMEOUT`] for a previous holder's lease to run out), with an
//!   epoch above its newest snapshot's; the epoch fences its snapshot commits. One task
//!   renews them every third of [`LEASE_TTL`] and advertises the node's address beside
//!   them. A region whose lease could not be renewed before [`Lease::must_stop`] is
//!   reported lost: the driver stops stepping it.
//! - **Directory.** Every [`DIRECTORY_REFRESH`] the task looks up who holds each region
//!   this node does not, and where that node takes clients.
//! - **Handoffs out.** An entity crossing into a region held elsewhere leaves the driver as
//!   a [`HandoffRecord`] on a bounded queue ([`HANDOFFS_OUT_LEN_MAX`]; when full the driver
//!   keeps it and retries next tick); the publisher sends each tick's records as one bus
//!   batch of high-lane mail keyed by handoff id, retrying with backoff while Redis is
//!   down. The player's session gets a `Redirect` to the holder's address.
//! - **Handoffs in.** A receiver polls the held regions' mail and hands decoded records to
//!   the driver (bounded, [`HANDOFFS_IN_LEN_MAX`]: it receives no more than there is room
//!   for); the driver acknowledges each after the tick that applied it (a region applies
//!   a handoff id at most once, so a redelivery changes nothing). Mail that does not
//!   decode is never acknowledged: after `deliveries_max` deliveries it is a dead letter.
//! - **Ghosts.** Each tick the driver publishes, per held region bordering a region held
//!   elsewhere, the entities within the interest leave radius of that border
//!   ([`GhostUpdate`], at most [`GHOSTS_PER_REGION_MAX`], on a bounded queue of
//!   [`GHOSTS_OUT_LEN_MAX`] that drops when full: ghosts are loss-tolerant), in the same
//!   bus batch as the tick's handoffs. A subscriber keeps the newest ghosts of each
//!   neighbouring region on the [`GhostBoard`] (counting gaps); the driver shows a client
//!   near the border the ghosts within its enter radius. Ghosts are read-only: they are
//!   not in the simulation, so nothing here can move, hit or see them as targets.
//! - **Player locations.** A player is in the world on one node at a time, and a handoff
//!   is applied only while it is the player's latest move
//!   ([`tessera_persistence::location`]). A login claims the player's location key
//!   before it joins and is refused while another live node holds the player. A player
//!   handed off to another node is [`Locations::is_moving`] from when its avatar leaves
//!   until its mail is published: a login here is refused meanwhile, and its `Redirect`
//!   waits for it. The publisher hands each handoff's key to its destination region just
//!   before publishing it; the receiver refuses a handoff the key no longer names (one
//!   redelivered after the player moved on: a crash between applying and acknowledging
//!   it); the location task adopts the keys of arrived players and extends those of the
//!   players here every [`LOCATION_REFRESH`]. A key not extended lapses after
//!   [`LOCATION_TTL`]; a logout answered `Bye` (its save durable) releases it at once.
//! - **Bus health.** Every [`BUS_STATS_PERIOD`] a task reads each active region's
//!   pending deliveries and dead letters into [`BusStats`] for `/metrics`, beside the
//!   bus's circuit breaker (every bus call goes through it; lease calls do not).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tessera_persistence::breaker::Breaker;
use tessera_persistence::bus::{
    Batch, BusConfig, Delivery, EventBus, GhostUpdate, Lane, Mail, RECEIVE_MAX,
};
use tessera_persistence::lease::{Lease, LeaseError, LeaseStore, RedisLeases};
use tessera_persistence::location::{Claim, Move, RedisLocations};
use tessera_persistence::redis_bus::RedisBus;
use tessera_regions::io::{EntityState, EntityView, HandoffRecord};
use tessera_shared::config::Config;
use tessera_shared::ids::{HandoffId, NetId, PlayerId, RegionId};
use tessera_shared::math::{Aabb, Vec2};
use tessera_shared::protocol::codec;
use tokio::sync::mpsc;

/// Length of a region lease. A node that dies loses its regions this long after.
pub const LEASE_TTL: Duration = Duration::from_secs(3);
/// How long a node waits at start for each region's lease (a previous holder's may still
/// be running out).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the directory of other nodes' regions is refreshed.
pub const DIRECTORY_REFRESH: Duration = Duration::from_millis(250);
/// Handoffs queued from the driver to the publisher.
pub const HANDOFFS_OUT_LEN_MAX: usize = 8_192;
/// Received handoffs queued for the driver.
pub const HANDOFFS_IN_LEN_MAX: usize = 8_192;
/// Acknowledgements queued from the driver to the receiver.
pub const ACKS_LEN_MAX: usize = 16_384;
/// How often the receiver polls the held regions' mail.
pub const RECEIVE_POLL: Duration = Duration::from_millis(10);
/// Largest encoded handoff record.
pub const HANDOFF_BYTES_MAX: usize = 256;
/// Ghost updates queued from the driver to the publisher; beyond it they are dropped.
pub const GHOSTS_OUT_LEN_MAX: usize = 64;
/// Most entities one region's ghost update carries (about 20 bytes each).
pub const GHOSTS_PER_REGION_MAX: usize = 4_096;
/// Ghosts older than this are not shown (their region stopped publishing).
pub const GHOST_TTL: Duration = Duration::from_millis(500);

/// How long a player's location key lasts past its last refresh: how long a node that
/// died (or lost track of a player) can keep the player from logging in elsewhere at most.
pub const LOCATION_TTL: Duration = Duration::from_secs(15);
/// How often the location keys of the players here are extended.
pub const LOCATION_REFRESH: Duration = Duration::from_secs(5);
/// Arrived players queued for the location task to adopt their keys.
pub const ADOPTIONS_LEN_MAX: usize = HANDOFFS_IN_LEN_MAX;

/// How often the pending deliveries and dead letters of the held regions are read.
pub const BUS_STATS_PERIOD: Duration = Duration::from_secs(5);

/// The newest reading of each active region's mail on the bus, and the bus's breaker.
#[derive(Debug)]
pub struct BusStats {
    regions: Mutex<BTreeMap<RegionId, RegionMail>>,
    breaker: Breaker,
    /// Handoffs refused as stale: redelivered after their player moved on.
    stale_handoffs: AtomicU64,
}

/// One region's mail on the bus, as last read.
#[derive(Clone, Copy, Debug)]
pub struct RegionMail {
    /// Delivered to this node and not yet acknowledged: how far the receiver lags.
    pub pending: u64,
    /// Mail given up on after `deliveries_max` deliveries.
    pub dead_letters: u64,
}

impl BusStats {
    /// Whether the bus's circuit breaker is open (calls to Redis refused for now).
    pub fn breaker_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// Handoffs refused as stale since the node started: redelivered after their player
    /// moved on (a crash between applying and acknowledging them).
    pub fn stale_handoffs(&self) -> u64 {
        self.stale_handoffs.load(AtomicOrdering::Relaxed)
    }

    /// The newest reading per region (regions no longer active are gone).
    pub fn regions(&self) -> BTreeMap<RegionId, RegionMail> {
        self.regions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

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
    pub gaps: std::sync::atomic::AtomicU64,
    /// Ghost messages that did not decode.
    pub malformed: std::sync::atomic::AtomicU64,
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
}

/// A handoff into a region held elsewhere, with the claim of the player's location key
/// the avatar had here: its session's id, `0` for an avatar that arrived by handoff and
/// was not logged in to since, `None` if it had no view (see
/// [`tessera_persistence::location::RedisLocations::hand_over`]).
#[derive(Debug)]
pub struct Departure {
    /// The handoff.
    pub record: HandoffRecord,
    /// The avatar's claim.
    pub claim: Option<u64>,
}

/// The move of a player's handoff, as the location keys know it (none: not a player).
pub fn move_of(record: &HandoffRecord) -> Option<Move> {
    record.entity.player.map(|player| Move {
        player,
        from: record.from,
        to: record.to,
        handoff: record.id,
    })
}

/// A received handoff: the record, and the delivery to acknowledge once it is applied.
#[derive(Debug)]
pub struct Arrival {
    /// The record.
    pub record: HandoffRecord,
    /// For the acknowledgement.
    pub delivery: Delivery,
}

/// Where this node's players are, cluster-wide (see the module docs): shared by the
/// sessions (claims, releases), the driver (who is here, who is moving, which handoffs it
/// deferred), the publisher (hand overs), the receiver (which handoffs are fresh) and the
/// location task (adoptions, refreshes).
#[derive(Debug)]
pub struct Locations {
    store: RedisLocations,
    node: String,
    /// Players handed off to another node whose mail is not published yet.
    moving: Mutex<HashSet<PlayerId>>,
    /// The players with an avatar here, and the handoffs received here that a region
    /// deferred, as the driver last published them.
    here: Mutex<(Vec<PlayerId>, Vec<Move>)>,
    /// Players whose avatar arrived here by handoff, for the location task to adopt.
    arrived: mpsc::Sender<Move>,
}

/// Why a login could not claim its player.
#[derive(Debug)]
pub enum ClaimRefused {
    /// Another live node holds the player; its key lapses in `ttl` at the latest if that
    /// node lets the player go without a logout.
    Elsewhere {
        /// The holder.
        node: String,
        /// What is left of its key.
        ttl: Duration,
    },
    /// Redis did not answer.
    Unavailable(String),
}

impl Locations {
    /// Claims `player` for `session` (a login): see [`tessera_persistence::location`]. A
    /// player on its way to a region held here, and a login with a redirect ticket
    /// (`redirected`) that finds the player still held by the sending node, wait up to
    /// `wait` for the key to come here.
    pub async fn claim(
        &self,
        player: PlayerId,
        session: u64,
        redirected: bool,
        wait: Duration,
    ) -> Result<(), ClaimRefused> {
        let deadline = Instant::now() + wait;
        let mut poll = Duration::from_millis(25);
        loop {
            let claim = self.store.claim(player, &self.node, session).await;
            // On its way here (its avatar arrives, then this node adopts the key), or a
            // redirect ahead of the sender's publish: wait for it.
            let wait = match &claim {
                Ok(Claim::Arriving { .. }) => true,
                Ok(Claim::HeldBy { .. }) => redirected,
                _ => false,
            };
            if wait && Instant::now() < deadline {
                tokio::time::sleep(poll).await;
                poll = (poll * 2).min(Duration::from_millis(400));
                continue;
            }
            return match claim {
                Ok(Claim::Claimed) => Ok(()),
                Ok(Claim::Arriving { region }) => Err(ClaimRefused::Unavailable(format!(
                    "the player's avatar has not arrived in region {} yet",
                    region.0
                ))),
                Ok(Claim::HeldBy { node, ttl }) => Err(ClaimRefused::Elsewhere { node, ttl }),
                Err(e) => Err(ClaimRefused::Unavailable(e.to_string())),
            };
        }
    }

    /// Releases `session`'s claim of `player` (its avatar left: a logout, a kick). A newer
    /// claim, or another node's, is left alone; a failure lets the key lapse.
    pub async fn release(&self, player: PlayerId, session: u64) {
        if let Err(e) = self.store.release(player, &self.node, session).await {
            tracing::warn!(%player, error = %e, "player location not released; it lapses");
        }
    }

    /// Whether `player` was handed off from here and its key not yet handed over.
    pub fn is_moving(&self, player: PlayerId) -> bool {
        self.lock_moving().contains(&player)
    }

    /// Marks `player` handed off to another node (true) or back here (false).
    pub fn set_moving(&self, player: PlayerId, moving: bool) {
        let mut set = self.lock_moving();
        if moving {
            set.insert(player);
        } else {
            set.remove(&player);
        }
    }

    fn lock_moving(&self) -> std::sync::MutexGuard<'_, HashSet<PlayerId>> {
        self.moving.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A player's avatar arrived here by handoff `m`: its key is to name this node (the
    /// location task adopts it; if its queue is full the key lapses, and the player's next
    /// login claims it afresh).
    pub fn arrived(&self, m: Move) {
        if self.arrived.try_send(m).is_err() {
            tracing::warn!(player = %m.player, "adoption queue full; the player's location lapses");
        }
    }

    /// Replaces the players with an avatar here and the deferred handoffs received here
    /// (the driver, every second): their keys are kept alive.
    pub fn set_here(&self, players: Vec<PlayerId>, in_flight: Vec<Move>) {
        *self.here.lock().unwrap_or_else(|p| p.into_inner()) = (players, in_flight);
    }

    fn here(&self) -> (Vec<PlayerId>, Vec<Move>) {
        self.here.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Releases the keys of every player here (a graceful stop, after their final saves).
    pub async fn release_all(&self) {
        let (players, _) = self.here();
        if let Err(e) = self.store.release_all(&players, &self.node).await {
            tracing::warn!(players = players.len(), error = %e, "player locations not released; they lapse");
        }
    }
}

/// The driver's side of the cluster.
#[derive(Debug)]
pub struct ClusterLink {
    /// Handoffs into regions held elsewhere.
    pub outbound: mpsc::Sender<Departure>,
    /// Handoffs into regions held here.
    pub inbound: crossbeam_channel::Receiver<Arrival>,
    /// Deliveries applied, to acknowledge.
    pub acks: mpsc::Sender<Delivery>,
    /// Where the regions held elsewhere take clients.
    pub directory: Arc<RwLock<HashMap<RegionId, String>>>,
    /// Held regions whose lease was lost.
    pub lost: Arc<Mutex<HashSet<RegionId>>>,
    /// Border entities of held regions, to publish.
    pub ghosts_out: mpsc::Sender<GhostUpdate>,
    /// Border entities of neighbouring regions held elsewhere.
    pub ghosts: Arc<GhostBoard>,
    /// Where the held regions meet regions held elsewhere (ghosts cross them).
    pub borders: Vec<Border>,
    /// Where the players are.
    pub locations: Arc<Locations>,
}

impl ClusterLink {
    /// The address of the node holding `region`, if known.
    pub fn address_of(&self, region: RegionId) -> Option<String> {
        self.directory
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&region)
            .cloned()
    }

    /// Held regions lost since the last call.
    pub fn take_lost(&self) -> Vec<RegionId> {
        let mut lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        lost.drain().collect()
    }
}

/// The regions this node holds under leases, shared by the cluster's tasks (the renewer
/// renews them all; the receiver, the directory and the ghost follower work from the
/// active ones) and by region control, which adds and removes them at run time.
#[derive(Debug, Default)]
pub struct Holdings {
    /// Leases held, and whether the driver steps the region (a region is leased before it
    /// is loaded, and stays leased while its final snapshot is written).
    leases: Mutex<BTreeMap<RegionId, (Lease, bool)>>,
    /// Bumped when the set of active regions changes.
    version: AtomicU64,
}

impl Holdings {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<RegionId, (Lease, bool)>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The regions the driver steps.
    pub fn active(&self) -> Vec<RegionId> {
        self.lock()
            .iter()
            .filter(|(_, (_, active))| *active)
            .map(|(&r, _)| r)
            .collect()
    }

    /// Every leased region.
    pub fn leased(&self) -> Vec<RegionId> {
        self.lock().keys().copied().collect()
    }

    /// The lease of `region`, if held.
    pub fn lease(&self, region: RegionId) -> Option<Lease> {
        self.lock().get(&region).map(|(l, _)| l.clone())
    }

    /// Holds `lease`, active or not.
    pub fn insert(&self, lease: Lease, active: bool) {
        self.lock().insert(lease.region, (lease, active));
        self.version.fetch_add(1, AtomicOrdering::Relaxed);
    }

    /// Marks `region` stepped by the driver (true) or not.
    pub fn set_active(&self, region: RegionId, active: bool) {
        if let Some(entry) = self.lock().get_mut(&region) {
            entry.1 = active;
        }
        self.version.fetch_add(1, AtomicOrdering::Relaxed);
    }

    /// Stops holding `region`; returns its lease.
    pub fn remove(&self, region: RegionId) -> Option<Lease> {
        let lease = self.lock().remove(&region).map(|(l, _)| l);
        self.version.fetch_add(1, AtomicOrdering::Relaxed);
        lease
    }

    /// Replaces a renewed lease (unless the region was let go meanwhile).
    fn renewed(&self, lease: Lease) {
        if let Some(entry) = self.lock().get_mut(&lease.region)
            && entry.0.epoch == lease.epoch
        {
            entry.0 = lease;
        }
    }

    /// Changes with every change of the active set.
    pub fn version(&self) -> u64 {
        self.version.load(AtomicOrdering::Relaxed)
    }
}

/// How long a node asked to take a region (a transfer) may take to do it.
pub const ASSIGNMENT_TTL: Duration = Duration::from_secs(30);
/// How long taking a region at run time waits for its lease to be free.
pub const TAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Region control's side of the cluster: take and give up leases at run time, ask
/// another node to take a region.
#[derive(Debug, Clone)]
pub struct ClusterControl {
    leases: RedisLeases,
    /// The held regions.
    pub holdings: Arc<Holdings>,
    node: String,
    /// The held regions' mail on the bus.
    pub bus_stats: Arc<BusStats>,
    /// Where the players are.
    pub locations: Arc<Locations>,
}

impl ClusterControl {
    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Takes `region`'s lease with an epoch of at least `min_epoch`, waiting up to
    /// [`TAKE_TIMEOUT`] for a lapsing one; held, not yet active. `Err` names the holder.
    pub async fn take(&self, region: RegionId, min_epoch: u64) -> Result<Lease, String> {
        let deadline = Instant::now() + TAKE_TIMEOUT;
        let lease = take_lease(&self.leases, &self.node, region, min_epoch, deadline).await?;
        self.holdings.insert(lease.clone(), false);
        Ok(lease)
    }

    /// Gives up `region`'s lease (its state is durable elsewhere by now).
    pub async fn give_up(&self, region: RegionId) {
        if let Some(lease) = self.holdings.remove(region)
            && let Err(e) = self.leases.release(&lease).await
        {
            // It lapses within LEASE_TTL anyway.
            tracing::warn!(region = region.0, error = %e, "lease release failed; it will lapse");
        }
    }

    /// Who holds `region`, if anyone.
    pub async fn holder(&self, region: RegionId) -> Option<String> {
        self.leases
            .holder(region)
            .await
            .ok()
            .flatten()
            .map(|(n, _)| n)
    }

    /// Asks node `to` to take `region` within [`ASSIGNMENT_TTL`].
    pub async fn request_assignment(&self, region: RegionId, to: &str) -> Result<(), String> {
        self.leases
            .request_assignment(region, to, ASSIGNMENT_TTL)
            .await
            .map_err(|e| e.to_string())
    }

    /// The regions another node asked this one to take.
    pub async fn assigned_to_me(&self) -> Vec<RegionId> {
        self.leases
            .assignments_for(&self.node)
            .await
            .unwrap_or_default()
    }

    /// Publishes this node's load report (it lapses after a lease TTL: a node that stops
    /// publishing is not live).
    pub async fn publish_load(&self, load: &crate::placement::NodeLoad) {
        let Ok(report) = serde_json::to_string(load) else {
            return;
        };
        if let Err(e) = self
            .leases
            .publish_load(&self.node, &report, 3 * LEASE_TTL)
            .await
        {
            tracing::warn!(error = %e, "could not publish the node's load");
        }
    }

    /// Leaves the cluster (a graceful stop, after the regions' final snapshots): gives up
    /// the lease of every region whose snapshots are `durable`, so that other nodes can
    /// take them at once, and withdraws the load report.
    pub async fn leave(&self, durable: impl Fn(RegionId) -> bool) {
        for region in self.holdings.leased() {
            // A region whose last snapshot is not durable keeps its lease until it lapses:
            // its next holder must not start from an older snapshot while ours may still
            // land (it would be fenced, and lost).
            if durable(region) {
                self.give_up(region).await;
            }
        }
        // The players here were saved: they may log in anywhere now.
        self.locations.release_all().await;
        let _ = self.leases.withdraw_load(&self.node).await;
    }

    /// The load reports of the live nodes (malformed ones left out).
    pub async fn loads(&self) -> Result<Vec<crate::placement::NodeLoad>, String> {
        let reports = self.leases.loads().await.map_err(|e| e.to_string())?;
        Ok(reports
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect())
    }

    /// Whether node `name` is alive (it advertised its address within the lease TTL).
    pub async fn is_live(&self, name: &str) -> bool {
        matches!(self.leases.address_of(name).await, Ok(Some(_)))
    }

    /// Withdraws the request that this node take `region`.
    pub async fn clear_assignment(&self, region: RegionId) {
        let _ = self.leases.clear_assignment(region, &self.node).await;
    }
}

/// Takes `region`'s lease for `node` with an epoch of at least `min_epoch`, retrying
/// until `deadline` while another holder's lease lapses or Redis is unavailable. `Err`
/// names the holder.
async fn take_lease(
    leases: &RedisLeases,
    node: &str,
    region: RegionId,
    min_epoch: u64,
    deadline: Instant,
) -> Result<Lease, String> {
    loop {
        match leases.acquire(region, node, LEASE_TTL, min_epoch).await {
            Ok(Some(lease)) => return Ok(lease),
            Ok(None) | Err(LeaseError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(None) => {
                let holder = leases.holder(region).await.ok().flatten();
                return Err(match holder {
                    Some((holder, _)) => format!("region {} is held by {holder}", region.0),
                    None => format!("region {}'s lease could not be taken", region.0),
                });
            }
            Err(e) => return Err(format!("taking the lease of region {}: {e}", region.0)),
        }
    }
}

/// Redis leases and bus of a cluster node, before it starts.
pub struct Cluster {
    leases: RedisLeases,
    bus: RedisBus,
    locations: RedisLocations,
    node: String,
}

impl Cluster {
    /// Connects to the cluster's Redis as node `node`.
    pub async fn connect(url: &str, node: &str) -> anyhow::Result<Cluster> {
        let failed = |e: tessera_persistence::bus::BusError| {
            anyhow::anyhow!("connecting to Redis ([services] redis_url): {e}")
        };
        // Leases and player locations share one connection; the bus (behind its circuit
        // breaker) has its own.
        let commands = tessera_persistence::redis_bus::connection(url)
            .await
            .map_err(failed)?;
        let bus = RedisBus::connect(url, BusConfig::default())
            .await
            .map_err(failed)?;
        Ok(Cluster {
            leases: RedisLeases::new(commands.clone()),
            bus,
            locations: RedisLocations::new(commands, LOCATION_TTL),
            node: node.to_owned(),
        })
    }

    /// Takes the lease of each region of `min_epochs` with an epoch of at least its
    /// entry, waiting up to [`ACQUIRE_TIMEOUT`] for each.
    pub async fn acquire(
        &self,
        min_epochs: &std::collections::BTreeMap<RegionId, u64>,
    ) -> anyhow::Result<Vec<Lease>> {
        let deadline = Instant::now() + ACQUIRE_TIMEOUT;
        let mut leases = Vec::with_capacity(min_epochs.len());
        for (&region, &min_epoch) in min_epochs {
            let lease = take_lease(&self.leases, &self.node, region, min_epoch, deadline)
                .await
                .map_err(|e| anyhow::anyhow!("{e} (waited up to {ACQUIRE_TIMEOUT:?})"))?;
            leases.push(lease);
        }
        Ok(leases)
    }

    /// Starts the cluster's tasks on the current runtime for the `held` leases of
    /// `config`'s world, advertising `addr`; returns the driver's side and region
    /// control's. The other regions are looked up in the directory; those bordering a held
    /// one send ghosts.
    pub fn start(
        self,
        config: &Config,
        held: Vec<Lease>,
        addr: String,
    ) -> (ClusterLink, ClusterControl) {
        let holdings = Arc::new(Holdings::default());
        for lease in held {
            holdings.insert(lease, true);
        }
        let world: Vec<RegionId> = config.world.regions.iter().map(|r| r.id).collect();
        let borders = borders(config, &holdings.active());
        let (outbound, outbound_rx) = mpsc::channel(HANDOFFS_OUT_LEN_MAX);
        let (ghosts_out, ghosts_rx) = mpsc::channel(GHOSTS_OUT_LEN_MAX);
        let ghosts = Arc::new(GhostBoard::default());
        let (inbound_tx, inbound) = crossbeam_channel::bounded(HANDOFFS_IN_LEN_MAX);
        let (acks, acks_rx) = mpsc::channel(ACKS_LEN_MAX);
        let directory = Arc::new(RwLock::new(HashMap::new()));
        let lost = Arc::new(Mutex::new(HashSet::new()));
        tokio::spawn(renew_leases(
            self.leases.clone(),
            holdings.clone(),
            self.node.clone(),
            addr,
            lost.clone(),
        ));
        tokio::spawn(refresh_directory(
            self.leases.clone(),
            world,
            holdings.clone(),
            directory.clone(),
        ));
        let (arrived_tx, arrived_rx) = mpsc::channel(ADOPTIONS_LEN_MAX);
        let locations = Arc::new(Locations {
            store: self.locations,
            node: self.node.clone(),
            moving: Mutex::default(),
            here: Mutex::default(),
            arrived: arrived_tx,
        });
        tokio::spawn(publish(
            self.bus.clone(),
            outbound_rx,
            ghosts_rx,
            locations.clone(),
        ));
        tokio::spawn(follow_locations(locations.clone(), arrived_rx));
        tokio::spawn(follow_ghosts(
            self.bus.clone(),
            config.clone(),
            holdings.clone(),
            ghosts.clone(),
        ));
        let bus_stats = Arc::new(BusStats {
            regions: Mutex::default(),
            breaker: self.bus.breaker().clone(),
            stale_handoffs: AtomicU64::new(0),
        });
        tokio::spawn(watch_bus(
            self.bus.clone(),
            holdings.clone(),
            bus_stats.clone(),
        ));
        tokio::spawn(receive_handoffs(
            self.bus,
            holdings.clone(),
            locations.clone(),
            bus_stats.clone(),
            inbound_tx,
            acks_rx,
            lost.clone(),
        ));
        let control = ClusterControl {
            leases: self.leases,
            holdings,
            node: self.node,
            bus_stats,
            locations: locations.clone(),
        };
        (
            ClusterLink {
                outbound,
                inbound,
                acks,
                directory,
                lost,
                ghosts_out,
                ghosts,
                borders,
                locations,
            },
            control,
        )
    }
}

async fn renew_leases(
    leases: RedisLeases,
    holdings: Arc<Holdings>,
    node: String,
    addr: String,
    lost: Arc<Mutex<HashSet<RegionId>>>,
) {
    loop {
        if let Err(e) = leases.advertise(&node, &addr, LEASE_TTL).await {
            tracing::warn!(error = %e, "could not advertise the node's address");
        }
        let held: Vec<Lease> = holdings
            .leased()
            .into_iter()
            .filter_map(|r| holdings.lease(r))
            .collect();
        for lease in held {
            match leases.renew(&lease).await {
                Ok(Some(renewed)) => holdings.renewed(renewed),
                Ok(None) => {
                    holdings.remove(lease.region);
                    lose(&lost, lease.region, "taken or expired");
                }
                Err(e) if lease.must_stop(Instant::now()) => {
                    holdings.remove(lease.region);
                    lose(&lost, lease.region, &e.to_string());
                }
                Err(e) => {
                    tracing::warn!(region = lease.region.0, error = %e, "lease renewal failed; retrying");
                }
            }
        }
        let next = holdings
            .leased()
            .into_iter()
            .filter_map(|r| holdings.lease(r))
            .map(|l| l.renew_due())
            .min()
            .unwrap_or_else(|| Instant::now() + LEASE_TTL / 3);
        // A region taken meanwhile is renewed within this bound too.
        let next = next.min(Instant::now() + LEASE_TTL / 6);
        tokio::time::sleep_until(next.max(Instant::now() + Duration::from_millis(50)).into()).await;
    }
}

fn lose(lost: &Mutex<HashSet<RegionId>>, region: RegionId, why: &str) {
    tracing::error!(
        region = region.0,
        why,
        "region lease lost: this node stops simulating it"
    );
    lost.lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(region);
}

async fn refresh_directory(
    leases: RedisLeases,
    world: Vec<RegionId>,
    holdings: Arc<Holdings>,
    directory: Arc<RwLock<HashMap<RegionId, String>>>,
) {
    loop {
        let held = holdings.leased();
        let mut found = HashMap::with_capacity(world.len());
        let mut addresses: HashMap<String, Option<String>> = HashMap::new();
        for &region in world.iter().filter(|r| !held.contains(r)) {
            let Ok(Some((holder, _))) = leases.holder(region).await else {
                continue;
            };
            if !addresses.contains_key(&holder) {
                let addr = leases.address_of(&holder).await.ok().flatten();
                addresses.insert(holder.clone(), addr);
            }
            if let Some(Some(addr)) = addresses.get(&holder) {
                found.insert(region, addr.clone());
            }
        }
        *directory.write().unwrap_or_else(|p| p.into_inner()) = found;
        tokio::time::sleep(DIRECTORY_REFRESH).await;
    }
}

/// Sends the handoffs and ghosts queued since the last batch, one batch (one round trip)
/// at a time. Handoffs are kept and resent until the bus takes them; ghosts that could not
/// be sent are dropped (the next tick's replace them). Before a handoff of a player goes
/// out, its location key is handed to its destination region (pipelined for the batch,
/// once per handoff); once it is out, the player is no longer moving (its redirect may
/// go). A handoff whose key was not handed over is not sent (see [`hand_over`]).
async fn publish(
    bus: RedisBus,
    mut handoffs: mpsc::Receiver<Departure>,
    mut ghosts: mpsc::Receiver<GhostUpdate>,
    locations: Arc<Locations>,
) {
    let mut waiting: Vec<Pending> = Vec::new();
    let mut fresh: HashMap<RegionId, GhostUpdate> = HashMap::new();
    let backoff =
        || crate::players::store_backoff(Duration::from_millis(50), Duration::from_secs(2));
    let mut delays = backoff();
    loop {
        if waiting.is_empty() && fresh.is_empty() {
            tokio::select! {
                departure = handoffs.recv() => match departure {
                    Some(departure) => waiting.push(Pending::of(departure)),
                    None => return,
                },
                update = ghosts.recv() => match update {
                    Some(update) => { fresh.insert(update.region, update); }
                    None => return,
                },
            }
        }
        while waiting.len() < RECEIVE_MAX
            && let Ok(departure) = handoffs.try_recv()
        {
            waiting.push(Pending::of(departure));
        }
        while let Ok(update) = ghosts.try_recv() {
            fresh.insert(update.region, update); // The newest of each region wins.
        }
        if let Err(e) = hand_over(&locations, &mut waiting).await {
            tracing::warn!(error = %e, pending = waiting.len(), "player locations not handed over; retrying");
            tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(2))).await;
            continue;
        }
        let mut carried = Vec::with_capacity(waiting.len());
        let mut mail = Vec::with_capacity(waiting.len());
        for pending in waiting.drain(..) {
            mail.push(pending.mail);
            carried.push((pending.m, pending.claim));
        }
        let batch = Batch {
            mail,
            ghosts: fresh.drain().map(|(_, update)| update).collect(),
        };
        let published = bus.publish(&batch).await;
        let mut sent: Vec<Pending> = batch
            .mail
            .into_iter()
            .zip(carried)
            .map(|(mail, (m, claim))| Pending {
                mail,
                m,
                claim,
                handed: true,
            })
            .collect();
        match published {
            Ok(published) => {
                delays = backoff();
                // Refused (a full lane): kept and resent.
                for &i in published.refused.iter().rev() {
                    waiting.push(sent.swap_remove(i));
                }
                for m in sent.iter().filter_map(|p| p.m) {
                    locations.set_moving(m.player, false);
                }
                if !waiting.is_empty() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Err(e) => {
                if !sent.is_empty() {
                    tracing::warn!(error = %e, pending = sent.len(), "handoffs not sent; retrying");
                }
                waiting = sent;
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(2))).await;
            }
        }
    }
}

/// A handoff waiting to be published.
struct Pending {
    mail: Mail,
    /// The player's move, if it carries a player.
    m: Option<Move>,
    /// The avatar's claim here (see [`Departure`]).
    claim: Option<u64>,
    /// Whether the move's location key is handed over already.
    handed: bool,
}

impl Pending {
    fn of(departure: Departure) -> Pending {
        Pending {
            mail: mail_of(&departure.record),
            m: move_of(&departure.record),
            claim: departure.claim,
            handed: false,
        }
    }
}

/// Hands over the location keys of the `waiting` handoffs not handed over yet (one
/// pipelined round trip). A handoff whose key is not handed over is dropped: another
/// holder, or a newer login here, has the player, and the receiving node would refuse it.
async fn hand_over(locations: &Locations, waiting: &mut Vec<Pending>) -> Result<(), String> {
    let moves: Vec<(Move, Option<u64>)> = waiting
        .iter()
        .filter(|p| !p.handed)
        .filter_map(|p| p.m.map(|m| (m, p.claim)))
        .collect();
    if moves.is_empty() {
        return Ok(());
    }
    let handed = locations
        .store
        .hand_over(&moves, &locations.node, true)
        .await
        .map_err(|e| e.to_string())?;
    let refused: HashSet<HandoffId> = moves
        .iter()
        .zip(handed)
        .filter(|(_, handed)| !handed)
        .map(|((m, _), _)| m.handoff)
        .collect();
    waiting.retain_mut(|p| {
        let Some(m) = p.m else { return true };
        if !p.handed && refused.contains(&m.handoff) {
            tracing::warn!(player = %m.player, key = %p.mail.key, "player location held elsewhere at handoff; handoff dropped");
            locations.set_moving(m.player, false);
            return false;
        }
        p.handed = true;
        true
    });
    Ok(())
}

/// Adopts the location keys of players arrived here, and extends the keys of the players
/// here every [`LOCATION_REFRESH`].
async fn follow_locations(locations: Arc<Locations>, mut arrived: mpsc::Receiver<Move>) {
    let mut next_refresh = Instant::now() + LOCATION_REFRESH;
    loop {
        tokio::select! {
            next = arrived.recv() => match next {
                Some(m) => adopt(&locations, m).await,
                None => return,
            },
            () = tokio::time::sleep_until(next_refresh.into()) => {
                next_refresh = Instant::now() + LOCATION_REFRESH;
                let (here, in_flight) = locations.here();
                if let Err(e) = locations.store.refresh(&here, &in_flight, &locations.node).await {
                    tracing::warn!(players = here.len(), error = %e, "player locations not refreshed");
                }
            }
        }
    }
}

/// Makes an arrived player's location name this node. A failure lets the key lapse (the
/// player's next login claims it afresh).
async fn adopt(locations: &Locations, m: Move) {
    match locations.store.adopt(m, &locations.node).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(player = %m.player, "arrived player's location already moved on")
        }
        Err(e) => {
            tracing::warn!(player = %m.player, error = %e, "arrived player's location not adopted")
        }
    }
}

/// Keeps the newest ghosts of the regions bordering the active ones on `board`,
/// resubscribing when the active regions change.
async fn follow_ghosts(
    bus: RedisBus,
    config: Config,
    holdings: Arc<Holdings>,
    board: Arc<GhostBoard>,
) {
    loop {
        let version = holdings.version();
        let mut neighbours: Vec<RegionId> = borders(&config, &holdings.active())
            .iter()
            .map(|b| b.remote)
            .collect();
        neighbours.sort_unstable();
        neighbours.dedup();
        if neighbours.is_empty() {
            tokio::time::sleep(DIRECTORY_REFRESH).await;
            continue;
        }
        let mut delays =
            crate::players::store_backoff(Duration::from_millis(200), Duration::from_secs(5));
        let mut feed = loop {
            match bus.subscribe_ghosts(&neighbours).await {
                Ok(feed) => break feed,
                Err(e) => {
                    tracing::warn!(error = %e, "subscribing to neighbours' ghosts failed; retrying");
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(5))).await;
                }
            }
        };
        loop {
            let ghost = tokio::select! {
                ghost = feed.recv() => ghost,
                _ = tokio::time::sleep(DIRECTORY_REFRESH) => {
                    if holdings.version() != version {
                        break; // Other neighbours now: resubscribe.
                    }
                    continue;
                }
            };
            let Some(ghost) = ghost else { break };
            board
                .gaps
                .fetch_add(ghost.gap, std::sync::atomic::Ordering::Relaxed);
            match decode_ghosts(&ghost.payload) {
                Some(views) => {
                    board
                        .by_region
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(ghost.region, (Instant::now(), Arc::new(views)));
                }
                None => {
                    board
                        .malformed
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }
}

/// Reads the active regions' pending deliveries and dead letters into `stats` every
/// [`BUS_STATS_PERIOD`]. A region whose reading fails keeps its previous one.
async fn watch_bus(bus: RedisBus, holdings: Arc<Holdings>, stats: Arc<BusStats>) {
    loop {
        let active = holdings.active();
        let mut read = BTreeMap::new();
        for &region in &active {
            let (pending, dead_letters) =
                tokio::join!(bus.pending(region), bus.dead_letter_count(region));
            match (pending, dead_letters) {
                (Ok(pending), Ok(dead_letters)) => {
                    read.insert(
                        region,
                        RegionMail {
                            pending,
                            dead_letters,
                        },
                    );
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::debug!(region = region.0, error = %e, "reading the region's mail failed");
                }
            }
        }
        {
            let mut regions = stats.regions.lock().unwrap_or_else(|p| p.into_inner());
            regions.retain(|r, _| active.contains(r));
            regions.extend(read);
        }
        tokio::time::sleep(BUS_STATS_PERIOD).await;
    }
}

async fn receive_handoffs(
    bus: RedisBus,
    holdings: Arc<Holdings>,
    locations: Arc<Locations>,
    stats: Arc<BusStats>,
    inbound: crossbeam_channel::Sender<Arrival>,
    mut acks: mpsc::Receiver<Delivery>,
    lost: Arc<Mutex<HashSet<RegionId>>>,
) {
    let node = locations.node.clone();
    let mut malformed = 0u64;
    loop {
        let mut by_region: HashMap<RegionId, Vec<Delivery>> = HashMap::new();
        while let Ok(delivery) = acks.try_recv() {
            by_region.entry(delivery.region).or_default().push(delivery);
        }
        for (region, deliveries) in by_region {
            if let Err(e) = bus.ack(region, &deliveries).await {
                // Redelivered later and applied at most once.
                tracing::warn!(region = region.0, error = %e, "handoff acks failed");
            }
        }
        let lost_now = lost.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // Only regions the driver steps: it could not apply (nor acknowledge) the others'.
        for region in holdings
            .active()
            .into_iter()
            .filter(|r| !lost_now.contains(r))
        {
            let room = HANDOFFS_IN_LEN_MAX.saturating_sub(inbound.len());
            if room == 0 {
                break;
            }
            let deliveries = match bus.receive(region, &node, room.min(RECEIVE_MAX)).await {
                Ok(deliveries) => deliveries,
                Err(e) => {
                    tracing::warn!(region = region.0, error = %e, "receiving handoffs failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let mut arrivals = Vec::with_capacity(deliveries.len());
            for delivery in deliveries {
                match decode(&delivery.payload) {
                    Some(record) if record.to == region => {
                        arrivals.push(Arrival { record, delivery });
                    }
                    _ => {
                        malformed += 1;
                        tracing::warn!(region = region.0, key = %delivery.key, malformed, "mail that is no handoff for this region; left for the dead letters");
                    }
                }
            }
            pass_fresh(&bus, &locations, &stats, region, arrivals, &inbound).await;
        }
        tokio::time::sleep(RECEIVE_POLL).await;
    }
}

/// Hands the driver the `arrivals` into `region` that are still their players' latest
/// move; a stale one (redelivered after its player moved on) is acknowledged and dropped,
/// counted. If the locations cannot be read, none is passed on: they stay pending and are
/// delivered again.
async fn pass_fresh(
    bus: &RedisBus,
    locations: &Locations,
    stats: &BusStats,
    region: RegionId,
    arrivals: Vec<Arrival>,
    inbound: &crossbeam_channel::Sender<Arrival>,
) {
    let moves: Vec<Move> = arrivals.iter().filter_map(|a| move_of(&a.record)).collect();
    let accepted = match locations.store.accepts(&moves, &locations.node).await {
        Ok(accepted) => accepted,
        Err(e) => {
            tracing::warn!(region = region.0, error = %e, "handoffs not checked against player locations; retrying");
            return;
        }
    };
    let mut accepted = accepted.into_iter();
    let mut stale = Vec::new();
    for arrival in arrivals {
        // Only avatars cross (the region refuses anything else); one without a player
        // goes on to be refused and counted there.
        let fresh = arrival.record.entity.player.is_none() || accepted.next().unwrap_or(false);
        if fresh {
            let _ = inbound.try_send(arrival);
        } else {
            tracing::info!(region = region.0, key = %arrival.delivery.key, "stale handoff (its player moved on since) dropped");
            stale.push(arrival.delivery);
        }
    }
    if !stale.is_empty() {
        stats
            .stale_handoffs
            .fetch_add(stale.len() as u64, AtomicOrdering::Relaxed);
        if let Err(e) = bus.ack(region, &stale).await {
            tracing::warn!(region = region.0, error = %e, "stale handoffs not acknowledged; checked again on redelivery");
        }
    }
}

/// The wire form of a [`HandoffRecord`] (bincode, through the protocol codec's limits).
#[derive(Serialize, Deserialize)]
struct WireHandoff {
    id: u64,
    from: u32,
    to: u32,
    tick: u64,
    entity: u64,
    archetype: u16,
    player: Option<u64>,
    position: [f32; 2],
    velocity: [f32; 2],
    health: f32,
    cooldown_ticks: u32,
    last_input_seq: u32,
}

/// The wire form of one ghost.
#[derive(Serialize, Deserialize)]
struct WireGhost {
    id: u64,
    archetype: u16,
    position: [f32; 2],
    health: f32,
}

/// Encodes a region's ghosts for the bus (at most [`GHOSTS_PER_REGION_MAX`]; the rest
/// are left out).
pub fn encode_ghosts(views: &[EntityView]) -> Vec<u8> {
    let wire: Vec<WireGhost> = views
        .iter()
        .take(GHOSTS_PER_REGION_MAX)
        .map(|v| WireGhost {
            id: v.id.0,
            archetype: v.archetype,
            position: [v.position.x, v.position.y],
            health: v.health,
        })
        .collect();
    codec::encode(&wire, tessera_persistence::bus::GHOST_BYTES_MAX)
        .expect("GHOSTS_PER_REGION_MAX ghosts fit GHOST_BYTES_MAX")
}

/// Decodes a region's ghosts; `None` for bytes that are not, or hold a number that is not
/// finite.
pub fn decode_ghosts(bytes: &[u8]) -> Option<Vec<EntityView>> {
    let wire: Vec<WireGhost> =
        codec::decode(bytes, tessera_persistence::bus::GHOST_BYTES_MAX).ok()?;
    let views: Vec<EntityView> = wire
        .into_iter()
        .map(|g| EntityView {
            id: NetId(g.id),
            archetype: g.archetype,
            position: Vec2::new(g.position[0], g.position[1]),
            health: g.health,
        })
        .collect();
    let finite = views
        .iter()
        .all(|v| v.position.is_finite() && v.health.is_finite());
    (finite && views.len() <= GHOSTS_PER_REGION_MAX).then_some(views)
}

fn mail_of(record: &HandoffRecord) -> Mail {
    Mail {
        to: record.to,
        lane: Lane::High,
        key: format!("handoff-{}", record.id.0),
        payload: encode(record),
    }
}

/// Encodes a handoff for the bus.
pub fn encode(record: &HandoffRecord) -> Vec<u8> {
    let e = &record.entity;
    let wire = WireHandoff {
        id: record.id.0,
        from: record.from.0,
        to: record.to.0,
        tick: record.tick,
        entity: e.id.0,
        archetype: e.archetype,
        player: e.player.map(|p| p.0),
        position: [e.position.x, e.position.y],
        velocity: [e.velocity.x, e.velocity.y],
        health: e.health,
        cooldown_ticks: e.cooldown_ticks,
        last_input_seq: e.last_input_seq,
    };
    codec::encode(&wire, HANDOFF_BYTES_MAX).expect("a handoff record fits its limit")
}

/// Decodes a handoff from the bus; `None` for bytes that are not one. (The region checks
/// the values themselves: finiteness, bounds, archetype.)
pub fn decode(bytes: &[u8]) -> Option<HandoffRecord> {
    let w: WireHandoff = codec::decode(bytes, HANDOFF_BYTES_MAX).ok()?;
    Some(HandoffRecord {
        id: HandoffId(w.id),
        from: RegionId(w.from),
        to: RegionId(w.to),
        tick: w.tick,
        entity: EntityState {
            id: NetId(w.entity),
            archetype: w.archetype,
            player: w.player.map(PlayerId),
            position: Vec2::new(w.position[0], w.position[1]),
            velocity: Vec2::new(w.velocity[0], w.velocity[1]),
            health: w.health,
            cooldown_ticks: w.cooldown_ticks,
            last_input_seq: w.last_input_seq,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handoff_records_round_trip_and_garbage_is_refused() {
        let record = HandoffRecord {
            id: HandoffId(99),
            from: RegionId(1),
            to: RegionId(2),
            tick: 1234,
            entity: EntityState {
                id: NetId::of_player(PlayerId(5)),
                archetype: 0,
                player: Some(PlayerId(5)),
                position: Vec2::new(1024.5, 3.0),
                velocity: Vec2::new(-1.0, 0.5),
                health: 77.0,
                cooldown_ticks: 3,
                last_input_seq: 410,
            },
        };
        assert_eq!(decode(&encode(&record)), Some(record));
        assert_eq!(decode(b"not a handoff"), None);
        assert_eq!(decode(&[]), None);
    }

    #[test]
    fn ghosts_round_trip_and_non_finite_values_are_refused() {
        let views = vec![EntityView {
            id: NetId(7),
            archetype: 2,
            position: Vec2::new(1020.0, 5.5),
            health: 40.0,
        }];
        assert_eq!(decode_ghosts(&encode_ghosts(&views)), Some(views.clone()));
        let mut bad = views;
        bad[0].health = f32::NAN;
        assert_eq!(decode_ghosts(&encode_ghosts(&bad)), None);
        assert_eq!(decode_ghosts(b"garbage"), None);
    }
}
