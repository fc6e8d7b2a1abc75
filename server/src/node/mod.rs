//! The node's tick driver: sessions and operators send [`Command`]s through one bounded
//! channel; every tick the driver drains them into the regions' inputs, steps the
//! regions, and fans each region's output out to the sessions as delta-encoded states and
//! reliable events, through bounded per-session outboxes. It never blocks on a session:
//! a full outbox drops that state (the client's ack falls behind and it gets a keyframe).
//!
//! The driver is the authority on which session holds a player on this node: a second
//! login of the same player rebinds the avatar to the new session and kicks the old one.
//! In a cluster, where a player is across nodes is the [`tessera_cluster::Ledger`]'s to
//! decide (reached through [`crate::cluster::ClusterLink`]); the driver tells it which
//! players are here ([`tessera_cluster::Ledger::bind`]) and which left by handoff, and
//! carries out what it decides for sessions (redirect, end, join now).
//!
//! The tick, in order ([`Driver::tick_at`]): lost regions dropped, commands, lingering
//! avatars evicted, arrivals from other nodes queued, the regions stepped, then logins and
//! logouts answered ([`sessions`]), released regions settled ([`actions`]), departures and
//! arrivals settled with the cluster ([`cluster`]), periodic saves ([`saves`]), the
//! fan-out ([`fanout`]) and the snapshot capture.

mod actions;
mod chat;
mod cluster;
pub mod commands;
mod emergency;
mod fanout;
mod feed;
pub mod outbox;
mod saves;
mod sessions;
pub mod status;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use tessera_regions::io::{HandoffRecord, TickStats};
use tessera_regions::snapshot::SnapshotEncoder;
use tessera_shared::config::{BalanceConfig, Config};
use tessera_shared::ids::{PlayerId, RegionId};
use tessera_shared::protocol::delta::WireEntity;
use tokio::sync::mpsc;

pub use commands::{
    ActionError, ActionResult, AdminAction, Command, DRIVER_REPLY_TIMEOUT, Joined, NodeHandle,
    Outgoing, WhoList,
};
pub use outbox::{SESSION_OUTBOX_LEN_MAX, SessionInbox, SessionOutbox, session_outbox};
use sessions::{ClientView, Linger, PendingJoin, Releasing};
pub use status::DriverCounters;

use crate::cluster::ClusterLink;
use crate::economy::EconomyRequest;
use crate::local::LocalRegions;
use crate::players::{SaveReply, SaveRequest};
use crate::snapshots::Snapshots;
use crate::views::{BudgetLimits, WireTable};

/// Commands queued from all sessions to the driver. At ~100 bytes each, 64 MiB at most.
pub const NODE_INBOX_LEN_MAX: usize = 65_536;
/// How often every connected player's state is saved (staggered by player id over the
/// interval): what a crash of the node can lose at most.
pub const PLAYER_SAVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a graceful shutdown waits for the connected players' final saves.
pub const SHUTDOWN_SAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the avatar of a dropped connection waits for its client to resume: the
/// lifetime of the resume ticket the client holds.
pub const RESUME_LINGER: Duration = Duration::from_secs(crate::auth::TICKET_TTL_S);
/// How long a redirected login waits for its avatar's handoff to arrive before the player
/// is logged in from its last save instead (the ledger's).
pub const ARRIVAL_WAIT: Duration = tessera_cluster::Timing::DEFAULT.arrival_wait;
/// When a login refused for a passing reason (a full region, a dependency that did not
/// answer, a player still moving) may be retried, in milliseconds.
pub const LOGIN_RETRY_AFTER_MS: u32 = 1_000;
/// How long a player handed off to another node waits for its handoff to go through (its
/// mail on the bus, its location handed over, the node's address known) before its
/// session is ended (it can log in again).
pub const REDIRECT_WAIT: Duration = Duration::from_secs(5);
/// How long players of a transferred region wait for its new holder's address before
/// their sessions end (the new holder takes the region once its final snapshot is
/// durable: usually well under a second).
pub const TRANSFER_REDIRECT_WAIT: Duration = Duration::from_secs(15);
/// Session ids of avatars that arrived by handoff and wait for their client: above every
/// id a connection gets (those count up from 1).
const ARRIVAL_SESSIONS_FROM: u64 = 1 << 63;
/// Departures the ledger had no room for, kept by the driver for the next tick.
pub const DEPARTURES_BACKLOG_MAX: usize = 65_536;

/// What the driver measures: its counters (published for metrics and the admin API) and
/// the last tick's timings.
#[derive(Clone, Copy, Debug, Default)]
pub struct DriverStats {
    /// Cumulative counters.
    pub counters: DriverCounters,
    /// Time the last tick spent stepping regions.
    pub last_step: Duration,
    /// Time the last tick spent encoding states and handing them to sessions.
    pub last_fan_out: Duration,
    /// Time the last snapshot capture took on the tick's thread (every region's NPCs
    /// copied; encoding happens elsewhere).
    pub last_capture: Duration,
}

/// The tick driver. Owns the regions and the per-client delta state.
pub struct Driver {
    config: Arc<Config>,
    local: LocalRegions,
    commands: Receiver<Command>,
    /// Every player with an avatar here and the session holding it (or waiting for one).
    clients: HashMap<PlayerId, ClientView>,
    /// The region holding each player's avatar.
    region_of: HashMap<PlayerId, RegionId>,
    /// Logins whose avatar joins at the step under way.
    pending_joins: Vec<PendingJoin>,
    /// Logouts waiting for their player's final state (from the regions' `departed`).
    pending_leaves: HashMap<PlayerId, SaveReply>,
    /// Where departed players' states go to be saved (none: nothing is saved).
    saves: Option<mpsc::Sender<SaveRequest>>,
    /// The live feed (none: nothing is published).
    feed: Option<crate::feed::Feed>,
    /// The player directory's writer (none: no directory is kept).
    presence: Option<crate::directory::Presence>,
    /// Where kills and starter kits go to be committed (none: no economy).
    economy: Option<mpsc::Sender<EconomyRequest>>,
    /// The balance in force, shared with the economy's transactions.
    balance: Arc<BalanceConfig>,
    /// Detached avatars, oldest first.
    lingering: VecDeque<Linger>,
    /// [`RESUME_LINGER`] in ticks.
    resume_linger_ticks: u64,
    /// [`PLAYER_SAVE_INTERVAL`] in ticks.
    save_interval_ticks: u64,
    /// Where region snapshots go (none: regions are not persisted).
    snapshots: Option<Snapshots>,
    /// The cluster (none: every region of the world is here).
    cluster: Option<ClusterLink>,
    /// Departures the ledger had no room for yet, oldest first, with how long their
    /// sessions may wait for the redirect.
    departures_backlog: Vec<(HandoffRecord, Option<Duration>)>,
    /// Views of players handed off to another node, until their redirect goes out.
    redirecting: HashMap<PlayerId, ClientView>,
    /// Redirected logins waiting for their avatar's arrival, by session.
    awaiting: HashMap<u64, PendingJoin>,
    /// The session id of the next arrived avatar's detached view (from
    /// [`ARRIVAL_SESSIONS_FROM`]: never a connection's id).
    next_arrival_session: u64,
    /// `[persistence] snapshot_interval_s` in ticks.
    snapshot_interval_ticks: u64,
    /// Regions an operator froze, with the reason their players were told.
    frozen: HashMap<RegionId, String>,
    /// Regions to let go after the next step, with their answers.
    releasing: Vec<Releasing>,
    /// Each region's entities of the tick in wire units (indexed like the regions).
    wire_tables: Vec<WireTable>,
    /// What each client's states may cost (`[net] state_kbit_per_s` at the tick rate).
    budget_limits: BudgetLimits,
    /// The time of the tick under way.
    now: Instant,
    /// Operators' kicks, shared with logins through the [`NodeHandle`].
    kicks: Arc<crate::auth::Kicks>,
    /// Counters.
    pub stats: DriverStats,
}

impl Driver {
    /// A driver for every region of `config`'s world, and the handle sessions use.
    pub fn new(config: Arc<Config>, seed: u64) -> anyhow::Result<(Driver, NodeHandle)> {
        let local = LocalRegions::new(config.clone(), seed)?;
        Ok(Self::with_regions(config, local))
    }

    /// A driver for `local` (regions of `config`'s world, restored or new).
    pub fn with_regions(config: Arc<Config>, local: LocalRegions) -> (Driver, NodeHandle) {
        let (tx, rx) = crossbeam_channel::bounded(NODE_INBOX_LEN_MAX);
        let tick_hz = config.world.tick_hz;
        let archetypes: Arc<[String]> = config
            .balance
            .archetypes
            .iter()
            .map(|a| a.name.clone())
            .collect();
        let ticks = |d| ticks_in(d, tick_hz);
        let snapshot_interval_ticks = ticks(config.node.snapshot_interval);
        let budget_limits = BudgetLimits::new(
            &config.node.state_budget,
            tick_hz,
            config.world.interest.leave_radius_m,
        );
        let balance = Arc::new(config.balance.clone());
        let kicks = Arc::new(crate::auth::Kicks::default());
        let driver = Driver {
            config,
            local,
            commands: rx,
            clients: HashMap::new(),
            region_of: HashMap::new(),
            pending_joins: Vec::new(),
            pending_leaves: HashMap::new(),
            saves: None,
            presence: None,
            feed: None,
            economy: None,
            balance,
            lingering: VecDeque::new(),
            resume_linger_ticks: ticks(RESUME_LINGER),
            save_interval_ticks: ticks(PLAYER_SAVE_INTERVAL),
            snapshots: None,
            cluster: None,
            departures_backlog: Vec::new(),
            redirecting: HashMap::new(),
            awaiting: HashMap::new(),
            next_arrival_session: ARRIVAL_SESSIONS_FROM,
            snapshot_interval_ticks,
            frozen: HashMap::new(),
            releasing: Vec::new(),
            wire_tables: Vec::new(),
            budget_limits,
            now: Instant::now(),
            kicks: kicks.clone(),
            stats: DriverStats::default(),
        };
        let node = NodeHandle {
            commands: tx,
            tick_hz,
            archetypes,
            cluster: None,
            kicks,
        };
        (driver, node)
    }

    /// Joins the cluster behind `link`: handoffs into regions held elsewhere go out through
    /// it (their players redirected), handoffs into this node's regions come in through it,
    /// and logins on `node` claim their player first.
    pub fn join_cluster(
        &mut self,
        link: ClusterLink,
        handle: crate::cluster::ClusterHandle,
        node: &mut NodeHandle,
    ) {
        node.cluster = Some(handle);
        self.cluster = Some(link);
    }

    /// Commits the regions' snapshots through `snapshots` every
    /// `[persistence] snapshot_interval_s` (see [`crate::snapshots`]).
    pub fn snapshot_to(&mut self, snapshots: Snapshots) {
        self.snapshots = Some(snapshots);
    }

    /// Saves every departing player's final state through `saves` (see
    /// [`crate::players`]). Without it the node keeps no player state across sessions.
    pub fn save_players_to(&mut self, saves: mpsc::Sender<SaveRequest>) {
        self.saves = Some(saves);
    }

    /// Tells the player directory who enters, stays in (with each periodic save) and
    /// leaves the world here (see [`crate::directory`]).
    pub fn record_presence_to(&mut self, presence: crate::directory::Presence) {
        self.presence = Some(presence);
    }

    /// Publishes sessions, deaths and handoffs to `feed` (see [`crate::feed`]).
    pub fn publish_to(&mut self, feed: crate::feed::Feed) {
        self.feed = Some(feed);
    }

    /// Commits kills' loot and XP and players' starter kits through `economy` (see
    /// [`crate::economy`]). Without it nothing is committed.
    pub fn commit_economy_to(&mut self, economy: mpsc::Sender<EconomyRequest>) {
        self.economy = Some(economy);
    }

    /// Whether an operator froze `region`.
    pub fn is_frozen(&self, region: RegionId) -> bool {
        self.frozen.contains_key(&region)
    }

    /// The configuration the regions run on (the balance as of the last reload).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Ticks per second.
    pub fn tick_hz(&self) -> u32 {
        self.config.world.tick_hz
    }

    /// Every client's current visible list (for the fan-out bench's baseline).
    pub fn client_views_for_bench(&self) -> Vec<Vec<WireEntity>> {
        self.clients
            .values()
            .map(|v| v.encoder.view().to_vec())
            .collect()
    }

    /// The regions.
    pub fn local(&self) -> &LocalRegions {
        &self.local
    }

    /// The regions, to change (the cluster simulator restores and captures them).
    pub fn local_mut(&mut self) -> &mut LocalRegions {
        &mut self.local
    }

    /// The players with an avatar (and a session, live or waiting) here.
    pub fn players(&self) -> impl Iterator<Item = PlayerId> + '_ {
        self.clients.keys().copied()
    }

    /// Players whose view has no avatar behind it (in a region, or between two of this
    /// node's): a session that would wait for states forever. Always empty; the cluster
    /// simulator checks it after every tick.
    pub fn views_without_avatars(&self) -> Vec<PlayerId> {
        let mut orphans: Vec<PlayerId> = self
            .clients
            .keys()
            .copied()
            .filter(|&p| !self.local.has_avatar(p))
            .collect();
        orphans.sort_unstable();
        orphans
    }

    /// Avatars in this node's regions that no view holds: a player in the world nobody can
    /// log in to (its region refuses a second avatar). Always empty; the cluster simulator
    /// checks it after every tick.
    pub fn avatars_without_views(&self) -> Vec<PlayerId> {
        let mut orphans: Vec<PlayerId> = self
            .local
            .regions()
            .iter()
            .flat_map(|r| r.players())
            .filter(|p| !self.clients.contains_key(p))
            .collect();
        orphans.sort_unstable();
        orphans
    }

    /// What the driver knows of `player` (for diagnostics): its view, its region, and
    /// where its avatar is.
    pub fn describe_player(&self, player: PlayerId) -> String {
        let view = self.clients.get(&player).map(|v| (v.session, v.detached));
        let redirecting = self.redirecting.contains_key(&player);
        let region = self.region_of.get(&player);
        let avatar: Vec<RegionId> = self
            .local
            .regions()
            .iter()
            .filter(|r| {
                r.position_of(tessera_shared::ids::NetId::of_player(player))
                    .is_some()
            })
            .map(|r| r.id())
            .collect();
        let held: Vec<u32> = self.local.regions().iter().map(|r| r.id().0).collect();
        format!(
            "view (session, detached) {view:?}, redirecting {redirecting}, region_of {region:?}, avatar in {avatar:?}, regions held {held:?}"
        )
    }

    /// One tick at the system's time.
    pub fn tick(&mut self) {
        self.tick_at(Instant::now());
    }

    /// One tick at `now` (the cluster simulator's virtual time): commands in, regions
    /// stepped, outputs out.
    pub fn tick_at(&mut self, now: Instant) {
        let span = tracing::debug_span!("tick", n = tracing::field::Empty).entered();
        self.now = now;
        // Regions whose lease is gone go first: nothing of this tick may land in them.
        self.drop_lost_regions();
        let first_region = self.first_region();
        self.stats.counters.inbox_depth = self.commands.len() as u64;
        // Drain what is queued now (bounded by the channel's capacity).
        for _ in 0..self.commands.len() {
            let Ok(command) = self.commands.try_recv() else {
                break;
            };
            self.apply(command, first_region);
        }
        self.evict_detached();
        self.take_arrivals();
        let started = Instant::now();
        let routed = self.local.step();
        self.stats.last_step = started.elapsed();
        self.count_tick(routed);
        let tick = self.current_tick();
        span.record("n", tick);
        self.settle_sessions(tick);
        self.commit_kills();
        self.publish_deaths();
        self.settle_releases();
        self.settle_cluster(tick);
        self.save_due_players(tick);
        let started = Instant::now();
        self.fan_out();
        self.stats.last_fan_out = started.elapsed();
        if tick.is_multiple_of(self.snapshot_interval_ticks) {
            self.capture_snapshots();
        }
    }

    /// Adds the last step's region counters (and `routed` local handoffs) to the driver's.
    fn count_tick(&mut self, routed: usize) {
        let mut step = TickStats::default();
        for region in self.local.regions() {
            step.accumulate(&region.output().stats);
        }
        let c = &mut self.stats.counters;
        c.inputs_applied += u64::from(step.inputs_applied);
        c.inputs_over_limit += u64::from(step.inputs_over_limit);
        c.inputs_stale += u64::from(step.inputs_stale);
        c.inputs_unknown_player += u64::from(step.inputs_unknown_player);
        c.inputs_non_finite += u64::from(step.inputs_non_finite);
        c.handoffs_local += routed as u64;
        c.bus_backlog = self.departures_backlog.len() as u64;
    }

    /// The regions' snapshot encoders, for [`Snapshots::start`].
    pub fn take_snapshot_encoders(&mut self) -> Vec<(RegionId, SnapshotEncoder)> {
        self.local.take_snapshot_encoders()
    }

    /// Where logins without a usable saved position land: the first region held here (the
    /// world's first if none is, which [`Driver::join`] then refuses).
    fn first_region(&self) -> RegionId {
        self.local
            .regions()
            .first()
            .map_or(self.config.world.regions[0].id, |r| r.id())
    }

    /// The tick the regions are at (they step together).
    fn current_tick(&self) -> u64 {
        self.local.regions().first().map_or(0, |r| r.tick())
    }
}

/// The claim of a player's location key a view's session holds: its id, or 0 for an
/// avatar that arrived by handoff (its key adopted, claimed by no login since).
fn claim_of(session: u64) -> u64 {
    if session >= ARRIVAL_SESSIONS_FROM {
        0
    } else {
        session
    }
}

/// Whole ticks in `d` at `tick_hz`, at least 1.
fn ticks_in(d: Duration, tick_hz: u32) -> u64 {
    (d.as_millis() as u64 * u64::from(tick_hz))
        .div_ceil(1000)
        .max(1)
}
