//! The node as part of a cluster (`[services] redis_url` set): the tokio glue around the
//! sans-IO [`tessera_cluster::Ledger`], which owns every piece of the node's cluster state
//! (leases and their deadlines, player locations and logins claiming them, departures,
//! arrivals, redirects; see its docs for the protocol).
//!
//! - [`io`]: one task carries the ledger's [`IoAction`]s out against an
//!   [`EventBus`](tessera_persistence::bus::EventBus),
//!   a [`LeaseStore`](tessera_persistence::lease::LeaseStore) and a
//!   [`LocationStore`](tessera_persistence::location::LocationStore) (generic: Redis in
//!   production, the in-process ones in tests) and feeds the answers back. The ledger sits
//!   behind one mutex ([`Shared`]), like quinn's connection state behind its driver: the
//!   tick driver, the sessions and region control lock it briefly, and nobody holds it
//!   across an await.
//! - [`ClusterLink`]: the tick driver's side (departures, arrivals, lost regions,
//!   redirects; ghosts out and in).
//! - [`ClusterHandle`]: the sessions' side (a login claims its player, a logout releases
//!   it).
//! - [`regions::ClusterControl`]: region control's side (take, give up and transfer
//!   leases; load reports; Redis-specific).
//! - [`ghosts`]: border entities published each tick and followed from the neighbours
//!   (loss-tolerant pub/sub, not part of the ledger).
//! - [`Cluster`]: connects to Redis and takes the start-up leases.
//!
//! Durations are named here ([`LEASE_TTL`], [`LOCATION_TTL`], ...) and in
//! [`tessera_cluster::Timing`].

pub mod ghosts;
pub mod io;
pub mod regions;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tessera_cluster::{Ledger, LoginId, LoginOutcome};
use tessera_persistence::breaker::Breaker;
use tessera_persistence::bus::{BusConfig, Delivery, GhostUpdate};
use tessera_persistence::lease::{Lease, LeaseError, LeaseStore, RedisLeases};
use tessera_persistence::location::RedisLocations;
use tessera_persistence::redis_bus::RedisBus;
use tessera_shared::config::Config;
use tessera_shared::ids::{PlayerId, RegionId};
use tokio::sync::{Notify, mpsc, oneshot};

pub use ghosts::{Border, GhostBoard, borders};
pub use tessera_cluster::LoginRefusal;

/// Length of a region lease. A node that dies loses its regions this long after.
pub const LEASE_TTL: Duration = Duration::from_secs(3);
/// How long a node waits at start for each region's lease (a previous holder's may still
/// be running out).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a player's location key lasts past its last refresh: how long a node that
/// died (or lost track of a player) can keep the player from logging in elsewhere at most.
pub const LOCATION_TTL: Duration = Duration::from_secs(15);
/// How often the pending deliveries and dead letters of the held regions are read.
pub const BUS_STATS_PERIOD: Duration = Duration::from_secs(5);
/// The wait between two tries to take a lease held by another node (or while Redis is
/// unavailable).
pub const TAKE_RETRY: Duration = Duration::from_millis(100);

// The ledger's encodings fit the bus's limits.
const _: () =
    assert!(tessera_cluster::wire::HANDOFF_BYTES_MAX <= tessera_persistence::bus::MAIL_BYTES_MAX);
const _: () =
    assert!(tessera_cluster::wire::GHOSTS_BYTES_MAX <= tessera_persistence::bus::GHOST_BYTES_MAX);

/// The ledger and what its IO task, the driver, the sessions and region control share.
#[derive(Debug)]
pub struct Shared {
    ledger: Mutex<Ledger<Delivery>>,
    /// Wakes the IO task: the ledger may have something to do.
    wake: Notify,
    /// Sessions waiting for their login's claim.
    logins: Mutex<HashMap<LoginId, oneshot::Sender<LoginOutcome>>>,
    next_login: AtomicU64,
    /// The bus's health, for `/metrics`.
    pub bus_stats: BusStats,
}

impl Shared {
    /// A ledger for node `node` of `config`'s world, holding nothing yet, its retry
    /// jitter seeded with `seed`, starting at `now`.
    pub fn new(
        node: &str,
        config: &Config,
        breaker: Option<Breaker>,
        seed: u64,
        now: Instant,
    ) -> Arc<Shared> {
        let world = config.world.regions.iter().map(|r| r.id).collect();
        let timing = tessera_cluster::Timing::default();
        let ledger = Ledger::new(node, world, timing, seed, now);
        Arc::new(Shared {
            ledger: Mutex::new(ledger),
            wake: Notify::new(),
            logins: Mutex::default(),
            next_login: AtomicU64::new(1),
            bus_stats: BusStats {
                regions: Mutex::default(),
                breaker,
            },
        })
    }

    /// The ledger, locked: keep it short, and never across an await.
    pub fn ledger(&self) -> MutexGuard<'_, Ledger<Delivery>> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the IO task the ledger may have new actions.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn logins(&self) -> MutexGuard<'_, HashMap<LoginId, oneshot::Sender<LoginOutcome>>> {
        self.logins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands each decided login its outcome (a session that left is not waiting).
    fn route_logins(&self, outcomes: Vec<(LoginId, LoginOutcome)>) {
        if outcomes.is_empty() {
            return;
        }
        let mut waiting = self.logins();
        for (login, outcome) in outcomes {
            if let Some(session) = waiting.remove(&login) {
                let _ = session.send(outcome);
            }
        }
    }
}

/// The newest reading of each active region's mail on the bus, and the bus's breaker.
#[derive(Debug)]
pub struct BusStats {
    regions: Mutex<BTreeMap<RegionId, RegionMail>>,
    breaker: Option<Breaker>,
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
        self.breaker.as_ref().is_some_and(Breaker::is_open)
    }

    /// The newest reading per region (regions no longer active are gone).
    pub fn regions(&self) -> BTreeMap<RegionId, RegionMail> {
        self.regions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn replace(&self, active: &[RegionId], read: BTreeMap<RegionId, RegionMail>) {
        let mut regions = self.regions.lock().unwrap_or_else(|p| p.into_inner());
        regions.retain(|r, _| active.contains(r));
        regions.extend(read);
    }
}

/// The tick driver's side of the cluster.
#[derive(Debug)]
pub struct ClusterLink {
    /// The ledger.
    pub shared: Arc<Shared>,
    /// Border entities of held regions, to publish (dropped when full: loss-tolerant).
    pub ghosts_out: mpsc::Sender<GhostUpdate>,
    /// Border entities of neighbouring regions held elsewhere.
    pub ghosts: Arc<GhostBoard>,
    /// Where the held regions meet regions held elsewhere (ghosts cross them).
    pub borders: Vec<Border>,
}

/// The sessions' side of the cluster: cloned into every session.
#[derive(Clone, Debug)]
pub struct ClusterHandle {
    shared: Arc<Shared>,
}

impl ClusterHandle {
    /// The handle of `shared`'s ledger.
    pub fn new(shared: Arc<Shared>) -> Self {
        ClusterHandle { shared }
    }

    /// Claims `player` for `session` (a login): see [`Ledger::begin_login`]. The claim
    /// stays this session's only if it joins: drop the returned [`Claimed`] without
    /// calling [`Claimed::joined`] (the session left first) and the claim is put right.
    /// Cancel-safe: a login dropped while it waits is abandoned in the ledger.
    pub async fn claim(
        &self,
        player: PlayerId,
        session: u64,
        redirected: bool,
    ) -> Result<Claimed, LoginRefusal> {
        let login = self.shared.next_login.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.shared.logins().insert(login, tx);
        let waiting = Waiting {
            shared: &self.shared,
            login,
        };
        self.shared
            .ledger()
            .begin_login(login, player, session, redirected, Instant::now());
        self.shared.wake();
        let outcome = rx.await;
        std::mem::forget(waiting);
        match outcome {
            Ok(Ok(())) => Ok(Claimed {
                shared: self.shared.clone(),
                player,
                session,
                joined: false,
            }),
            Ok(Err(refusal)) => Err(refusal),
            Err(_) => Err(LoginRefusal::Unavailable("the cluster task stopped".into())),
        }
    }

    /// `player` logged out of `session` and its final state is durable: its location is
    /// released, so that a login elsewhere may take it at once.
    pub fn release(&self, player: PlayerId, session: u64) {
        self.shared
            .ledger()
            .logged_out(player, session, Instant::now());
        self.shared.wake();
    }
}

/// A login waiting for its claim: dropped (the session left), it is abandoned.
struct Waiting<'a> {
    shared: &'a Shared,
    login: LoginId,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.shared.logins().remove(&self.login);
        self.shared
            .ledger()
            .abandon_login(self.login, Instant::now());
        self.shared.wake();
    }
}

/// A granted claim, until its session joins.
#[derive(Debug)]
pub struct Claimed {
    shared: Arc<Shared>,
    player: PlayerId,
    session: u64,
    joined: bool,
}

impl Claimed {
    /// The session joined its player: the claim is its to keep.
    pub fn joined(mut self) {
        self.joined = true;
    }
}

impl Drop for Claimed {
    fn drop(&mut self) {
        if !self.joined {
            self.shared
                .ledger()
                .join_skipped(self.player, self.session, Instant::now());
            self.shared.wake();
        }
    }
}

/// Redis leases, bus and locations of a cluster node, before it starts.
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

    /// Where the cluster's players are (whispers ask whether a player is on another node).
    pub fn locations(&self) -> RedisLocations {
        self.locations.clone()
    }

    /// Takes the lease of each region of `min_epochs` with an epoch of at least its
    /// entry, waiting up to [`ACQUIRE_TIMEOUT`] for each.
    pub async fn acquire(
        &self,
        min_epochs: &BTreeMap<RegionId, u64>,
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

    /// Advertises `addr` as this node's (for [`tessera_cluster::Timing::address_ttl`]):
    /// once it holds leases, a node must be live before it steps anything. Returns when
    /// the advertisement was sent, for [`Cluster::start`].
    pub async fn advertise(&self, addr: &str) -> anyhow::Result<Instant> {
        let sent = Instant::now();
        let ttl = tessera_cluster::Timing::default().address_ttl;
        self.leases
            .advertise(&self.node, addr, ttl)
            .await
            .map_err(|e| anyhow::anyhow!("advertising the node's address in Redis: {e}"))?;
        Ok(sent)
    }

    /// Starts the cluster's tasks on the current runtime for the `held` leases of
    /// `config`'s world, advertising `addr` (first `advertised` at that time: see
    /// [`Cluster::advertise`]); returns the driver's side, the sessions' and region
    /// control's.
    pub fn start(
        self,
        config: &Config,
        held: Vec<Lease>,
        addr: String,
        advertised: Instant,
    ) -> (ClusterLink, ClusterHandle, regions::ClusterControl) {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let breaker = Some(self.bus.breaker().clone());
        let shared = Shared::new(&self.node, config, breaker, seed, Instant::now());
        {
            let mut ledger = shared.ledger();
            ledger.advertised_at(advertised);
            for lease in held {
                ledger.hold(lease, true);
            }
        }
        let (link, handle) = io::start(
            io::Io {
                bus: self.bus,
                leases: self.leases.clone(),
                locations: self.locations.clone(),
                addr,
            },
            shared.clone(),
            config,
        );
        let control = regions::ClusterControl::new(self.leases, self.locations, shared, &self.node);
        (link, handle, control)
    }
}

/// Why a region's lease could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TakeError {
    /// Another node holds it (still, at the deadline).
    #[error("region {} is held by {holder}", region.0)]
    Held {
        /// The region.
        region: RegionId,
        /// Its holder.
        holder: String,
    },
    /// It was not free at the deadline, and its holder could not be read.
    #[error("region {}'s lease could not be taken", .0 .0)]
    NotFree(RegionId),
    /// The lease store refused the request (a bad name or TTL).
    #[error("taking the lease of region {}: {error}", region.0)]
    Refused {
        /// The region.
        region: RegionId,
        /// The store's answer.
        error: LeaseError,
    },
}

/// Takes `region`'s lease for `node` with an epoch of at least `min_epoch`, retrying
/// until `deadline` while another holder's lease lapses or the store is unavailable.
pub async fn take_lease<L: LeaseStore>(
    leases: &L,
    node: &str,
    region: RegionId,
    min_epoch: u64,
    deadline: Instant,
) -> Result<Lease, TakeError> {
    loop {
        match leases.acquire(region, node, LEASE_TTL, min_epoch).await {
            Ok(Some(lease)) => return Ok(lease),
            Ok(None) | Err(LeaseError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(TAKE_RETRY).await;
            }
            Ok(None) => {
                let holder = leases.holder(region).await.ok().flatten();
                return Err(match holder {
                    Some((holder, _)) => TakeError::Held { region, holder },
                    None => TakeError::NotFree(region),
                });
            }
            Err(error) => return Err(TakeError::Refused { region, error }),
        }
    }
}
