//! The node's tick driver with its network edges: sessions send [`Command`]s through one
//! bounded channel; every tick the driver drains them into the regions' inputs, steps the
//! regions, and fans each region's output out to the sessions as delta-encoded states and
//! reliable events, through bounded per-session outboxes. It never blocks on a session:
//! a full outbox drops that state (the client's ack falls behind and it gets a keyframe).
//!
//! The driver is the authority on which session holds a player: a second login of the same
//! player rebinds the avatar to the new session and kicks the old one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tessera_regions::io::{EntityView, Join};
use tessera_regions::io::{
    GameEvent, JoinRefusal, PlayerInput, SavedPlayer, SessionEvent, TickStats,
};
use tessera_shared::config::Config;
use tessera_shared::ids::{NetId, PlayerId, RegionId};
use tessera_shared::protocol::delta::{DeltaEncoder, EncodeScratch, WireEntity};
use tessera_shared::protocol::limits::{DATAGRAM_BYTES_MAX, STATE_STREAM_BYTES_MAX};
use tessera_shared::protocol::messages::*;
use tessera_shared::protocol::quantize::dequantize_move;
use tokio::sync::{mpsc, oneshot};

use crate::admin::ApiError;
use crate::admin::status::DriverCounters;
use crate::cluster::{Arrival, ClusterLink, Departure, move_of};
use crate::local::LocalRegions;
use crate::players::{SaveReply, SaveRequest};
use crate::snapshots::Snapshots;
use crate::views::{NextView, ViewChanges, WireTable, wire};
use tessera_regions::Region;
use tessera_regions::snapshot::SnapshotEncoder;

/// Commands queued from all sessions to the driver. At ~100 bytes each, 64 MiB at most.
pub const NODE_INBOX_LEN_MAX: usize = 65_536;
/// Messages queued from the driver to one session: a few ticks of states and events.
pub const SESSION_OUTBOX_LEN_MAX: usize = 64;
/// How often every connected player's state is saved (staggered by player id over the
/// interval): what a crash of the node can lose at most.
pub const PLAYER_SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a graceful shutdown waits for the connected players' final saves.
pub const SHUTDOWN_SAVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long the avatar of a dropped connection waits for its client to resume: the
/// lifetime of the resume ticket the client holds.
pub const RESUME_LINGER: std::time::Duration =
    std::time::Duration::from_secs(crate::auth::TICKET_TTL_S);

/// How long a redirected login waits for its avatar's handoff to arrive before the player
/// is logged in from its last save instead.
pub const ARRIVAL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// When a login refused for a passing reason (a full region, a dependency that did not
/// answer, a player still moving) may be retried, in milliseconds.
pub const LOGIN_RETRY_AFTER_MS: u32 = 1_000;
/// Session ids of avatars that arrived by handoff and wait for their client: above every
/// id a connection gets (those count up from 1).
const ARRIVAL_SESSIONS_FROM: u64 = 1 << 63;
/// How long a player handed off to another node waits for its handoff to go through (its
/// mail on the bus, its location handed over, the node's address known) before its
/// session is ended (it can log in again).
pub const REDIRECT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A session's request to the driver.
#[derive(Debug)]
pub enum Command {
    /// Log `player` in on `session`.
    Join {
        /// The player.
        player: PlayerId,
        /// The session's id, unique per node run.
        session: u64,
        /// Where the driver sends this session's states and events.
        outbox: mpsc::Sender<Outgoing>,
        /// The player's last save (the avatar appears there, in the region holding it).
        saved: Option<SavedPlayer>,
        /// For a login with a redirect ticket: the region the player was handed off to.
        /// Its avatar may still be in flight: the login waits for it (up to
        /// [`ARRIVAL_WAIT`]) rather than creating a second one from the save.
        arriving: Option<RegionId>,
        /// The answer: where the player is, or why not.
        reply: oneshot::Sender<Result<Joined, ErrorS2c>>,
    },
    /// Log `player` out of `session` (ignored if another session holds the player now).
    Leave {
        /// The player.
        player: PlayerId,
        /// The session asking.
        session: u64,
        /// Answered once the player's final state is out of the world and saved (with
        /// the save's outcome; `Ok` at once where the node saves no players).
        reply: Option<SaveReply>,
    },
    /// `session`'s connection dropped without a logout: the avatar stays in the world
    /// for [`RESUME_LINGER`], for the client to resume with its ticket.
    Detach {
        /// The player.
        player: PlayerId,
        /// The session whose connection dropped.
        session: u64,
    },
    /// Send `player` to another node: its session gets a `Redirect` to `addr` and ends,
    /// and the avatar leaves this node's world.
    Redirect {
        /// The player.
        player: PlayerId,
        /// `host:port` of the node that takes the player.
        addr: String,
        /// The region it will be in there.
        region: RegionId,
    },
    /// An input datagram from `session`.
    Input {
        /// The player.
        player: PlayerId,
        /// The session it came on.
        session: u64,
        /// The decoded input.
        input: InputC2s,
    },
    /// An operator's request from the admin API, carried out at the next tick boundary.
    Admin {
        /// What to do.
        action: AdminAction,
        /// The outcome (JSON for the API's answer).
        reply: oneshot::Sender<Result<serde_json::Value, ApiError>>,
    },
}

/// What an operator can have the driver do.
#[derive(Debug)]
pub enum AdminAction {
    /// End the player's session with `Kicked { Admin, reason }`; the avatar leaves as on
    /// a logout (its state saved).
    Kick {
        /// The player.
        player: PlayerId,
        /// Shown to the player.
        reason: String,
    },
    /// Move the player's avatar to `to` within its region at the next tick (a
    /// server-side displacement: exempt from the speed check).
    Teleport {
        /// The player.
        player: PlayerId,
        /// Where to; must be inside the player's region.
        to: tessera_shared::math::Vec2,
    },
    /// Send the player an operators' message (`EventS2c::Message`).
    Message {
        /// The player.
        player: PlayerId,
        /// The text (at most `TEXT_BYTES_MAX` bytes).
        text: String,
    },
    /// Run on `config` (a new balance) from the next tick on.
    Reload {
        /// The running config with the new balance.
        config: Arc<Config>,
    },
    /// Start stepping `region` (restored or new; built off the tick's thread, its
    /// snapshot encoder already with the writer).
    Assign {
        /// The region.
        region: Box<Region>,
    },
    /// Stop stepping `region` after the next tick: its players are handed off into it
    /// for its next holder and redirected there (`transfer`), or leave, saved, with their
    /// sessions told why; then its final capture goes to the snapshot writer. Answered
    /// once the region is out (`final_tick`, `players`).
    Release {
        /// The region.
        region: RegionId,
        /// Hand the players over (a transfer) rather than let them go.
        transfer: bool,
    },
}

/// How long players of a transferred region wait for its new holder's address before
/// their sessions end (the new holder takes the region once its final snapshot is
/// durable: usually well under a second).
pub const TRANSFER_REDIRECT_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Where a login landed.
#[derive(Clone, Copy, Debug)]
pub struct Joined {
    /// The region holding the avatar.
    pub region: RegionId,
    /// The tick at which it appeared.
    pub tick: u64,
}

/// What the driver sends a session.
#[derive(Debug)]
pub enum Outgoing {
    /// A state that fits a datagram.
    Datagram(bytes::Bytes),
    /// A state too large for a datagram: send it on a unidirectional stream.
    Stream(bytes::Bytes),
    /// A control message (boxed: rare, and large next to a state's `Bytes`, which would
    /// make every slot of every session's outbox that large).
    Control(Box<ControlS2c>),
    /// End the session with this message (another session took the player over).
    Kick(KickedS2c),
    /// End the session with a `Redirect` to `addr` (the session mints the ticket).
    Redirect {
        /// `host:port` of the node that takes the player.
        addr: String,
        /// The region it will be in there.
        region: RegionId,
    },
}

/// The sending side, cloned into every session.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    commands: Sender<Command>,
    tick_hz: u32,
    /// Where the players are, cluster-wide (none: a node on its own).
    locations: Option<Arc<crate::cluster::Locations>>,
}

impl NodeHandle {
    /// Where the players are, cluster-wide (none: a node on its own, whose driver alone
    /// decides).
    pub fn locations(&self) -> Option<&crate::cluster::Locations> {
        self.locations.as_deref()
    }

    /// The node's tick rate.
    pub fn tick_hz(&self) -> u32 {
        self.tick_hz
    }

    /// Queues `command`; `Err` if the node is saturated (the caller refuses or drops).
    pub fn try_send(&self, command: Command) -> Result<(), Command> {
        self.commands.try_send(command).map_err(|e| match e {
            TrySendError::Full(c) | TrySendError::Disconnected(c) => c,
        })
    }
}

/// A login waiting to be applied.
struct PendingJoin {
    player: PlayerId,
    session: u64,
    outbox: mpsc::Sender<Outgoing>,
    saved: Option<SavedPlayer>,
    reply: oneshot::Sender<Result<Joined, ErrorS2c>>,
}

/// One connected player's view, as its client knows it.
struct ClientView {
    session: u64,
    outbox: mpsc::Sender<Outgoing>,
    /// The view (its newest snapshot: the visible entities, sorted by id, in wire units)
    /// and the snapshots the client may acknowledge.
    encoder: DeltaEncoder,
    /// The region whose interest diffs the view is built from. A diff from another (the
    /// player crossed a border on this node) rebuilds it from nothing: the old region
    /// will not report its entities as left.
    view_region: Option<RegionId>,
    /// The ghosts in the view (entities of regions held elsewhere), sorted by id. No
    /// region reports them as left, so each tick they are dropped and merged afresh.
    ghosts: Vec<NetId>,
    ack_tick: u64,
    /// Set while the connection is gone and the avatar waits for a resume: its view is
    /// kept current, nothing is encoded or sent.
    detached: bool,
}

/// What the driver measures: its counters (published for metrics and the admin API) and
/// the last tick's timings.
#[derive(Clone, Copy, Debug, Default)]
pub struct DriverStats {
    /// Cumulative counters.
    pub counters: DriverCounters,
    /// Time the last tick spent stepping regions.
    pub last_step: std::time::Duration,
    /// Time the last tick spent encoding states and handing them to sessions.
    pub last_fan_out: std::time::Duration,
    /// Time the last snapshot capture took on the tick's thread (every region's NPCs
    /// copied; encoding happens elsewhere).
    pub last_capture: std::time::Duration,
}

/// The tick driver. Owns the regions and the per-client delta state.
pub struct Driver {
    config: Arc<Config>,
    local: LocalRegions,
    commands: Receiver<Command>,
    clients: HashMap<PlayerId, ClientView>,
    region_of: HashMap<PlayerId, RegionId>,
    pending_joins: Vec<(
        PlayerId,
        u64,
        RegionId,
        mpsc::Sender<Outgoing>,
        oneshot::Sender<Result<Joined, ErrorS2c>>,
    )>,
    /// Logouts waiting for their player's final state (from the regions' `departed`).
    pending_leaves: HashMap<PlayerId, SaveReply>,
    /// Where departed players' states go to be saved (none: nothing is saved).
    saves: Option<mpsc::Sender<SaveRequest>>,
    /// Detached players, oldest first: (player, session, the tick it is evicted at).
    detached: std::collections::VecDeque<(PlayerId, u64, u64)>,
    /// [`RESUME_LINGER`] in ticks.
    resume_linger_ticks: u64,
    /// [`PLAYER_SAVE_INTERVAL`] in ticks.
    save_interval_ticks: u64,
    /// Where region snapshots go (none: regions are not persisted).
    snapshots: Option<Snapshots>,
    /// The cluster (none: every region of the world is here).
    cluster: Option<ClusterLink>,
    /// Handoffs to other nodes not yet queued (the queue was full), oldest first.
    outbound_backlog: Vec<Departure>,
    /// Players handed off to another node whose address is not known yet: their view
    /// (to redirect) and the tick their session is ended at.
    pending_redirects: Vec<(PlayerId, ClientView, RegionId, u64)>,
    /// Arrivals a region deferred (re-queued into its input by [`LocalRegions::step`]):
    /// acknowledged once applied. At most [`crate::cluster::HANDOFFS_IN_LEN_MAX`].
    deferred_arrivals: Vec<Arrival>,
    /// Redirected logins waiting for their avatar's handoff, with the tick they stop
    /// waiting at.
    awaiting_arrival: Vec<(PendingJoin, u64)>,
    /// The session id of the next arrived avatar's detached view (from
    /// [`ARRIVAL_SESSIONS_FROM`]: never a connection's id).
    next_arrival_session: u64,
    /// `[persistence] snapshot_interval_s` in ticks.
    snapshot_interval_ticks: u64,
    /// Regions to let go after the next step, with their answers.
    releasing: Vec<(
        RegionId,
        bool,
        oneshot::Sender<Result<serde_json::Value, ApiError>>,
    )>,
    /// Each region's entities of the tick in wire units (indexed like the regions).
    wire_tables: Vec<WireTable>,
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
        let config_tick_hz = config.world.tick_hz;
        let ticks = |d| ticks_in(d, config_tick_hz);
        let snapshot_interval_ticks = ticks(config.node.snapshot_interval);
        (
            Driver {
                config,
                local,
                commands: rx,
                clients: HashMap::new(),
                region_of: HashMap::new(),
                pending_joins: Vec::new(),
                pending_leaves: HashMap::new(),
                saves: None,
                detached: std::collections::VecDeque::new(),
                resume_linger_ticks: ticks(RESUME_LINGER),
                save_interval_ticks: ticks(PLAYER_SAVE_INTERVAL),
                snapshots: None,
                cluster: None,
                outbound_backlog: Vec::new(),
                pending_redirects: Vec::new(),
                awaiting_arrival: Vec::new(),
                deferred_arrivals: Vec::new(),
                next_arrival_session: ARRIVAL_SESSIONS_FROM,
                snapshot_interval_ticks,
                releasing: Vec::new(),
                wire_tables: Vec::new(),
                stats: DriverStats::default(),
            },
            NodeHandle {
                commands: tx,
                tick_hz: config_tick_hz,
                locations: None,
            },
        )
    }

    /// Joins the cluster behind `link`: handoffs into regions held elsewhere go out through
    /// it (their players redirected), handoffs into this node's regions come in through it.
    pub fn join_cluster(&mut self, link: ClusterLink, node: &mut NodeHandle) {
        node.locations = Some(link.locations.clone());
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

    /// One tick: commands in, regions stepped, outputs out.
    pub fn tick(&mut self) {
        let span = tracing::debug_span!("tick", n = tracing::field::Empty).entered();
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
        self.drop_lost_regions();
        let arrivals = self.take_arrivals();
        let started = std::time::Instant::now();
        let routed = self.local.step();
        self.stats.last_step = started.elapsed();
        self.count_tick(routed, arrivals.len());
        let tick = self.current_tick();
        span.record("n", tick);
        self.settle_sessions(tick);
        self.settle_releases(tick);
        self.settle_cluster(arrivals, tick);
        self.save_due_players(tick);
        let started = std::time::Instant::now();
        self.fan_out();
        self.stats.last_fan_out = started.elapsed();
        if tick.is_multiple_of(self.snapshot_interval_ticks) {
            self.capture_snapshots();
        }
    }

    /// Carries out an operator's request.
    fn admin(&mut self, action: AdminAction) -> Result<serde_json::Value, ApiError> {
        match action {
            AdminAction::Kick { player, reason } => {
                let Some(view) = self.clients.get(&player) else {
                    return Err(ApiError::not_found(format!(
                        "player {} is not on this node",
                        player.0
                    )));
                };
                let _ = view.outbox.try_send(Outgoing::Kick(KickedS2c {
                    reason: KickReason::Admin,
                    message: reason,
                }));
                self.remove_player(player);
                Ok(serde_json::json!({ "player": player.0, "kicked": true }))
            }
            AdminAction::Teleport { player, to } => {
                let Some(&region) = self.region_of.get(&player) else {
                    return Err(ApiError::not_found(format!(
                        "player {} is not on this node",
                        player.0
                    )));
                };
                let inside = self
                    .config
                    .world
                    .regions
                    .iter()
                    .find(|r| r.id == region)
                    .is_some_and(|r| r.bounds.contains(to));
                if !to.x.is_finite() || !to.y.is_finite() || !inside {
                    return Err(ApiError::unprocessable(format!(
                        "({}, {}) is not inside region {}, where player {} is: a teleport stays within the region",
                        to.x, to.y, region.0, player.0
                    )));
                }
                let Some(input) = self.local.input_mut(region) else {
                    return Err(ApiError::unavailable("the player is between regions", 1));
                };
                input
                    .teleports
                    .push(tessera_regions::io::Teleport { player, to });
                Ok(
                    serde_json::json!({ "player": player.0, "region": region.0, "from_tick": self.current_tick() + 1 }),
                )
            }
            AdminAction::Message { player, text } => {
                let Some(view) = self.clients.get(&player).filter(|v| !v.detached) else {
                    return Err(ApiError::not_found(format!(
                        "player {} is not connected to this node",
                        player.0
                    )));
                };
                let message = ControlS2c::Event(EventS2c::Message { text });
                if view
                    .outbox
                    .try_send(Outgoing::Control(Box::new(message)))
                    .is_err()
                {
                    return Err(ApiError::unavailable("the player's connection is busy", 1));
                }
                Ok(serde_json::json!({ "player": player.0, "sent": true }))
            }
            AdminAction::Assign { mut region } => {
                let id = region.id();
                if self.local.region(id).is_some() {
                    return Err(ApiError::conflict(format!(
                        "region {} is held by this node already",
                        id.0
                    )));
                }
                region.set_config(self.config.clone());
                self.local.add(*region);
                self.update_borders();
                Ok(serde_json::json!({ "region": id.0, "from_tick": self.current_tick() + 1 }))
            }
            AdminAction::Release { .. } => unreachable!("answered after the step, in `apply`"),
            AdminAction::Reload { config } => {
                self.local.set_config(config.clone());
                self.config = config;
                // Commands are applied before the regions step: the tick about to run is
                // the first on the new balance.
                Ok(serde_json::json!({ "applied": true, "from_tick": self.current_tick() + 1 }))
            }
        }
    }

    /// Lets go of the regions whose release was asked for: after their last step, their
    /// players are handed off into the region (transfer) or leave, saved; the final
    /// capture goes to the snapshot writer; the region is no longer stepped.
    fn settle_releases(&mut self, tick: u64) {
        let releasing = std::mem::take(&mut self.releasing);
        for (region, transfer, reply) in releasing {
            // The final capture must not be skipped: wait a tick for room if need be.
            if self.snapshots.as_ref().is_some_and(|s| !s.has_room_for(1)) {
                self.releasing.push((region, transfer, reply));
                continue;
            }
            let Some(held) = self.local.region_mut(region) else {
                let _ = reply.send(Err(ApiError::not_found(format!(
                    "region {} is no longer held",
                    region.0
                ))));
                continue;
            };
            // Everyone in the region, and everyone on the way in from a neighbour here.
            let mut leaving = held.evacuate(region);
            let records = held.capture_records();
            let final_tick = held.tick();
            if let Some(snapshots) = &self.snapshots {
                snapshots.offer_records(region, records);
            }
            if let Some(input) = self.local.remove_with_input(region) {
                leaving.extend(
                    input
                        .handoffs
                        .into_iter()
                        .filter(|h| h.entity.player.is_some()),
                );
            }
            self.update_borders();
            let players = leaving.len();
            for record in leaving {
                let Some(player) = record.entity.player else {
                    continue;
                };
                self.region_of.remove(&player);
                let view = self.clients.remove(&player);
                let claim = view.as_ref().map(|v| claim_of(v.session));
                if transfer {
                    // Like a border crossing into a region held elsewhere: the record goes
                    // to the region's mail for its next holder, the client follows.
                    if let Some(view) = view.filter(|v| !v.detached) {
                        let deadline =
                            tick + ticks_in(TRANSFER_REDIRECT_WAIT, self.config.world.tick_hz);
                        self.pending_redirects
                            .push((player, view, region, deadline));
                    }
                    self.outbound_backlog.push(Departure { record, claim });
                } else {
                    if let Some(view) = view {
                        let _ = view.outbox.try_send(Outgoing::Kick(KickedS2c {
                            reason: KickReason::Shutdown,
                            message: format!(
                                "region {} was released by an operator; log in again",
                                region.0
                            ),
                        }));
                    }
                    self.send_save(SaveRequest {
                        player,
                        state: SavedPlayer {
                            position: record.entity.position,
                            health: record.entity.health,
                        },
                        done: None,
                    });
                }
            }
            let _ = reply.send(Ok(serde_json::json!({
                "region": region.0,
                "final_tick": final_tick,
                "players": players,
                "transfer": transfer,
            })));
        }
    }

    /// The borders between the regions stepped here and the rest (ghosts cross them).
    fn update_borders(&mut self) {
        if let Some(cluster) = &mut self.cluster {
            let held: Vec<RegionId> = self.local.regions().iter().map(|r| r.id()).collect();
            cluster.borders = crate::cluster::borders(&self.config, &held);
        }
    }

    /// Adds the last step's region counters (and `routed` local handoffs, `arrived` from
    /// other nodes) to the driver's.
    fn count_tick(&mut self, routed: usize, arrived: usize) {
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
        c.handoffs_in += arrived as u64;
        if let Some(cluster) = &self.cluster {
            c.ghost_gaps = cluster.ghosts.gaps.load(Ordering::Relaxed);
        }
        c.bus_backlog = self.outbound_backlog.len() as u64;
    }

    /// Captures every region's state for the snapshot writer (if there is one), which
    /// encodes the changed cells off this thread. Skipped (and counted) while the
    /// encoder is still behind by more than its queue holds: the next capture then
    /// carries every change since the last one taken, so nothing is lost.
    fn capture_snapshots(&mut self) {
        if let Some(snapshots) = &self.snapshots {
            if !snapshots.has_room_for(self.local.regions().len()) {
                self.stats.counters.captures_skipped += 1;
                return;
            }
            let started = std::time::Instant::now();
            for (region, records) in self.local.capture_records() {
                snapshots.offer_records(region, records);
            }
            self.stats.last_capture = started.elapsed();
        }
    }

    /// The regions' snapshot encoders, for [`Snapshots::start`].
    pub fn take_snapshot_encoders(&mut self) -> Vec<(RegionId, SnapshotEncoder)> {
        self.local.take_snapshot_encoders()
    }

    /// Captures every region one last time and waits up to `timeout` for the snapshot
    /// outbox to be durable (a graceful shutdown). Returns whether it all was.
    pub fn flush_snapshots(&mut self, timeout: std::time::Duration) -> bool {
        self.capture_snapshots();
        self.snapshots
            .as_ref()
            .is_none_or(|s| s.flush_blocking(timeout))
    }

    /// A login: onto the avatar already here (a resume, a takeover, an arrival), or a new
    /// avatar in the region holding the saved position.
    fn join(&mut self, join: PendingJoin, first_region: RegionId) {
        let player = join.player;
        if let Some(view) = self.clients.get_mut(&player) {
            // Takeover or resume: the avatar stays; a live old session is told
            // why it ends.
            if view.detached {
                self.stats.counters.resumed += 1;
            } else {
                let _ = view.outbox.try_send(Outgoing::Kick(KickedS2c {
                    reason: KickReason::LoggedInElsewhere,
                    message: "logged in from another connection".into(),
                }));
            }
            view.detached = false;
            view.session = join.session;
            view.outbox = join.outbox;
            view.encoder.forget_sent();
            view.ack_tick = 0;
            let region = self.region_of.get(&player).copied().unwrap_or(first_region);
            let tick = self.current_tick();
            let _ = join.reply.send(Ok(Joined { region, tick }));
            return;
        }
        // Into the region holding the saved position (the first one otherwise, or
        // if that region is not on this node).
        let PendingJoin {
            player,
            session,
            outbox,
            saved,
            reply,
        } = join;
        let region = saved
            .and_then(|s| self.config.world.region_at(s.position))
            .map_or(first_region, |r| r.id);
        let region = if self.local.region(region).is_some() {
            region
        } else {
            first_region
        };
        let Some(input) = self.local.input_mut(region) else {
            // This node holds no region (all leases lost).
            let _ = reply.send(Err(ErrorS2c {
                code: ErrorCode::RegionUnavailable,
                message: "this node holds no region".into(),
                retry_after_ms: Some(LOGIN_RETRY_AFTER_MS),
            }));
            return;
        };
        input
            .sessions
            .push(SessionEvent::Join(Join { player, saved }));
        self.pending_joins
            .push((player, session, region, outbox, reply));
    }

    fn apply(&mut self, command: Command, first_region: RegionId) {
        match command {
            Command::Join {
                player,
                session,
                outbox,
                saved,
                arriving,
                reply,
            } => {
                let join = PendingJoin {
                    player,
                    session,
                    outbox,
                    saved,
                    reply,
                };
                let awaited = arriving.filter(|&r| {
                    self.cluster.is_some()
                        && self.local.region(r).is_some()
                        && !self.clients.contains_key(&player)
                });
                // Handed off to another node, its location not yet there: its avatar is
                // in flight, and a login here would make a second one.
                let moving = awaited.is_none()
                    && !self.clients.contains_key(&player)
                    && self
                        .cluster
                        .as_ref()
                        .is_some_and(|c| c.locations.is_moving(player));
                if moving {
                    self.stats.counters.logins_refused_moving += 1;
                    let _ = join.reply.send(Err(ErrorS2c {
                        code: ErrorCode::RegionUnavailable,
                        message: "the player is moving to another node; retry".into(),
                        retry_after_ms: Some(LOGIN_RETRY_AFTER_MS),
                    }));
                    return;
                }
                if awaited.is_some() {
                    let deadline =
                        self.current_tick() + ticks_in(ARRIVAL_WAIT, self.config.world.tick_hz);
                    self.awaiting_arrival.push((join, deadline));
                    return;
                }
                self.join(join, first_region);
            }
            Command::Leave {
                player,
                session,
                reply,
            } => {
                let holds = self
                    .clients
                    .get(&player)
                    .is_some_and(|v| v.session == session);
                if !holds {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(()));
                    }
                    return;
                }
                self.remove_player(player);
                if let Some(reply) = reply {
                    self.pending_leaves.insert(player, reply);
                }
            }
            Command::Detach { player, session } => {
                let Some(view) = self
                    .clients
                    .get_mut(&player)
                    .filter(|v| v.session == session)
                else {
                    return;
                };
                view.detached = true;
                let deadline = self.current_tick().saturating_add(self.resume_linger_ticks);
                self.detached.push_back((player, session, deadline));
            }
            Command::Redirect {
                player,
                addr,
                region,
            } => {
                let Some(view) = self.clients.get(&player) else {
                    return;
                };
                // A detached session cannot be told: its client will resume here, find
                // no avatar and log in afresh.
                let _ = view.outbox.try_send(Outgoing::Redirect { addr, region });
                self.stats.counters.redirected += 1;
                self.remove_player(player);
            }
            Command::Admin {
                action: AdminAction::Release { region, transfer },
                reply,
            } => {
                if self.local.region(region).is_none() {
                    let _ = reply.send(Err(ApiError::not_found(format!(
                        "region {} is not held by this node",
                        region.0
                    ))));
                } else if self.releasing.iter().any(|(r, _, _)| *r == region) {
                    let _ = reply.send(Err(ApiError::conflict(format!(
                        "region {} is being released already",
                        region.0
                    ))));
                } else {
                    self.releasing.push((region, transfer, reply));
                }
            }
            Command::Admin { action, reply } => {
                let _ = reply.send(self.admin(action));
            }
            Command::Input {
                player,
                session,
                input,
            } => {
                let Some(view) = self
                    .clients
                    .get_mut(&player)
                    .filter(|v| v.session == session)
                else {
                    self.stats.counters.inputs_stale_session += 1;
                    return;
                };
                view.ack_tick = view.ack_tick.max(input.ack_tick);
                let Some(region) = self.region_of.get(&player).copied() else {
                    return;
                };
                let Some(tick_input) = self.local.input_mut(region) else {
                    return;
                };
                // Oldest first; the region ignores sequence numbers it has already applied.
                for (i, frame) in input.frames.iter().enumerate().rev() {
                    let Some(seq) = input.seq.checked_sub(i as u32) else {
                        continue;
                    };
                    tick_input.inputs.push(PlayerInput {
                        player,
                        seq,
                        move_m: dequantize_move(frame.move_q),
                        attack: frame.attack,
                    });
                }
            }
        }
    }

    /// Queues the periodic save of the players whose turn it is this tick (each player
    /// once per [`PLAYER_SAVE_INTERVAL`], spread over it by id).
    fn save_due_players(&mut self, tick: u64) {
        if self.saves.is_none() {
            return;
        }
        let interval = self.save_interval_ticks;
        let phase = tick % interval;
        let due: Vec<PlayerId> = self
            .clients
            .keys()
            .filter(|p| p.0 % interval == phase)
            .copied()
            .collect();
        for player in due {
            self.queue_save(player, None);
        }
    }

    /// Queues a save of `player`'s current state; `false` if it could not be queued (no
    /// store, no avatar, or a full queue: counted).
    fn queue_save(&mut self, player: PlayerId, done: Option<SaveReply>) -> bool {
        let Some((position, health)) = self
            .region_of
            .get(&player)
            .and_then(|&region| self.local.region(region))
            .and_then(|r| r.position_and_health(NetId::of_player(player)))
        else {
            return false;
        };
        self.send_save(SaveRequest {
            player,
            state: SavedPlayer { position, health },
            done,
        })
    }

    /// Hands `request` to the save writer without waiting: `false` if it could not be
    /// (a full queue: counted, and a caller waiting on it is told). Without a writer the
    /// save is not made and a waiting caller is answered at once.
    fn send_save(&mut self, request: SaveRequest) -> bool {
        let Some(saves) = &self.saves else {
            if let Some(done) = request.done {
                let _ = done.send(Ok(()));
            }
            return false;
        };
        match saves.try_send(request) {
            Ok(()) => true,
            Err(
                mpsc::error::TrySendError::Full(request)
                | mpsc::error::TrySendError::Closed(request),
            ) => {
                self.stats.counters.saves_dropped += 1;
                if let Some(done) = request.done {
                    let _ = done.send(Err(tessera_persistence::StoreError::Unavailable(
                        "the save queue is full".into(),
                    )));
                }
                false
            }
        }
    }

    /// Saves every player still in the world (a graceful shutdown) and waits up to
    /// `timeout` for the saves to be durable. Returns how many were.
    pub fn save_all_players(&mut self, timeout: std::time::Duration) -> usize {
        let players: Vec<PlayerId> = self.clients.keys().copied().collect();
        let mut waiting = Vec::new();
        for player in players {
            let (done, answer) = oneshot::channel();
            if self.queue_save(player, Some(done)) {
                waiting.push(answer);
            }
        }
        let deadline = std::time::Instant::now() + timeout;
        let mut durable = 0;
        for mut answer in waiting {
            loop {
                match answer.try_recv() {
                    Ok(result) => {
                        durable += usize::from(result.is_ok());
                        break;
                    }
                    Err(oneshot::error::TryRecvError::Empty)
                        if std::time::Instant::now() < deadline =>
                    {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(_) => break,
                }
            }
        }
        durable
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

    /// Stops stepping the regions whose lease was lost, ending their players' sessions
    /// (another node takes the region over from its last snapshot; the players log in
    /// again there).
    fn drop_lost_regions(&mut self) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        for region in cluster.take_lost() {
            if !self.local.remove(region) {
                continue;
            }
            let players: Vec<PlayerId> = self
                .region_of
                .iter()
                .filter(|(_, r)| **r == region)
                .map(|(p, _)| *p)
                .collect();
            for player in players {
                self.region_of.remove(&player);
                if let Some(view) = self.clients.remove(&player) {
                    let _ = view.outbox.try_send(Outgoing::Kick(KickedS2c {
                        reason: KickReason::Shutdown,
                        message: "this node lost the region; log in again".into(),
                    }));
                }
            }
        }
    }

    /// Handoffs other nodes sent into this node's regions, queued into next tick's input;
    /// returns them, to settle after the step.
    fn take_arrivals(&mut self) -> Vec<Arrival> {
        let Some(cluster) = &self.cluster else {
            return Vec::new();
        };
        // Deferred arrivals count against the same bound: while regions defer, no more
        // are taken (the receiver then stops reading the bus).
        let room = crate::cluster::HANDOFFS_IN_LEN_MAX.saturating_sub(self.deferred_arrivals.len());
        let take = cluster.inbound.len().min(room);
        let mut arrivals = Vec::with_capacity(take);
        for _ in 0..take {
            let Ok(arrival) = cluster.inbound.try_recv() else {
                break;
            };
            // Not into a region being let go: left unacknowledged, the bus delivers it
            // again to the region's next holder.
            if self
                .releasing
                .iter()
                .any(|(r, _, _)| *r == arrival.record.to)
            {
                continue;
            }
            if let Some(input) = self.local.input_mut(arrival.record.to) {
                input.handoffs.push(arrival.record);
                arrivals.push(arrival);
            }
        }
        arrivals
    }

    /// After a step: acknowledges the applied arrivals, gives each arrived player a
    /// detached view for its redirected client to claim, answers the logins that waited
    /// for them, and sends handoffs into other nodes' regions on, redirecting their
    /// players there.
    fn settle_cluster(&mut self, mut arrivals: Vec<Arrival>, tick: u64) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let linger = self.resume_linger_ticks;
        arrivals.append(&mut self.deferred_arrivals);
        // What a region deferred (over its per-tick limit, or full) is back in its next
        // input: acknowledged only once applied, so a crash meanwhile cannot lose it (the
        // bus delivers it again to the region's next holder). Looked up only on a tick
        // with arrivals to settle.
        let deferred: std::collections::HashSet<_> = if arrivals.is_empty() {
            std::collections::HashSet::new()
        } else {
            self.local
                .regions()
                .iter()
                .flat_map(|r| r.output().deferred_handoffs.iter().map(|h| h.id))
                .collect()
        };
        for arrival in arrivals {
            if deferred.contains(&arrival.record.id) {
                self.deferred_arrivals.push(arrival);
                continue;
            }
            // Its region was let go or lost meanwhile: left unacknowledged, the bus
            // delivers it to the region's next holder (which restores the applied ids
            // with the region's snapshot, so one applied here is not applied twice).
            if self.local.region(arrival.record.to).is_none() {
                continue;
            }
            // Applied, or a duplicate of one applied earlier: either way done with.
            let _ = cluster.acks.try_send(arrival.delivery);
            let Some(player) = arrival.record.entity.player else {
                continue;
            };
            cluster.locations.set_moving(player, false);
            let here = self
                .local
                .region(arrival.record.to)
                .and_then(|r| r.position_of(NetId::of_player(player)))
                .is_some();
            if let Some(m) = move_of(&arrival.record).filter(|_| here) {
                cluster.locations.arrived(m);
            }
            if here && !self.clients.contains_key(&player) {
                // A session id of its own, so that the linger of an earlier arrival of
                // this player cannot evict this one.
                let session = self.next_arrival_session;
                self.next_arrival_session += 1;
                self.region_of.insert(player, arrival.record.to);
                let (outbox, _) = mpsc::channel(1);
                self.clients.insert(
                    player,
                    ClientView {
                        session,
                        outbox,
                        encoder: DeltaEncoder::default(),
                        view_region: None,
                        ghosts: Vec::new(),
                        ack_tick: 0,
                        detached: true,
                    },
                );
                self.detached
                    .push_back((player, session, tick.saturating_add(linger)));
            }
        }
        let waiting = std::mem::take(&mut self.awaiting_arrival);
        for (join, deadline) in waiting {
            if self.clients.contains_key(&join.player) || deadline <= tick {
                let first_region = self.first_region();
                self.join(join, first_region);
            } else {
                self.awaiting_arrival.push((join, deadline));
            }
        }

        let mut outbound = std::mem::take(&mut self.outbound_backlog);
        outbound.extend(
            self.local
                .take_outbound()
                .into_iter()
                .map(|record| Departure {
                    record,
                    claim: None,
                }),
        );
        let cluster = self.cluster.as_ref().expect("checked above");
        for mut departure in outbound {
            let record = &departure.record;
            if let Some(player) = record.entity.player {
                cluster.locations.set_moving(player, true);
                self.region_of.remove(&player);
                if let Some(view) = self.clients.remove(&player) {
                    departure.claim = Some(claim_of(view.session));
                    if !view.detached {
                        let deadline = tick + ticks_in(REDIRECT_WAIT, self.config.world.tick_hz);
                        self.pending_redirects
                            .push((player, view, record.to, deadline));
                    }
                }
            }
            match cluster.outbound.try_send(departure) {
                Ok(()) => self.stats.counters.handoffs_out += 1,
                Err(mpsc::error::TrySendError::Full(departure)) => {
                    self.outbound_backlog.push(departure);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    tracing::error!("the handoff publisher stopped; a handoff is lost");
                }
            }
        }
        let redirects = std::mem::take(&mut self.pending_redirects);
        for (player, view, region, deadline) in redirects {
            // The redirect tells the client its handoff went through: only once its mail
            // is on the bus and its location handed over (no longer moving).
            let handed_over = !cluster.locations.is_moving(player);
            match cluster.address_of(region) {
                Some(addr) if handed_over => {
                    let _ = view.outbox.try_send(Outgoing::Redirect { addr, region });
                    self.stats.counters.redirected += 1;
                }
                _ if deadline <= tick => {
                    tracing::warn!(%player, region = region.0, handed_over, "the player's handoff did not go through in time (no node address for its region, or the bus is down)");
                    let _ = view.outbox.try_send(Outgoing::Kick(KickedS2c {
                        reason: KickReason::Shutdown,
                        message: "the region you entered is unavailable; log in again".into(),
                    }));
                }
                _ => self
                    .pending_redirects
                    .push((player, view, region, deadline)),
            }
        }
        self.publish_ghosts();
        if tick.is_multiple_of(u64::from(self.config.world.tick_hz.max(1))) {
            self.publish_locations();
        }
    }

    /// Tells the cluster which players have an avatar here (their location keys are
    /// extended from this list). Every second, and at a graceful stop.
    pub fn publish_locations(&self) {
        if let Some(cluster) = &self.cluster {
            let in_flight = self
                .deferred_arrivals
                .iter()
                .filter_map(|a| move_of(&a.record))
                .collect();
            cluster
                .locations
                .set_here(self.clients.keys().copied().collect(), in_flight);
        }
    }

    /// Sends each held region's entities near a border with a region held elsewhere to
    /// the publisher (dropped and counted if its queue is full: ghosts are loss-tolerant).
    fn publish_ghosts(&mut self) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let mut views = Vec::new();
        for region in self.local.regions() {
            if !cluster.borders.iter().any(|b| b.held == region.id()) {
                continue;
            }
            views.clear();
            for border in cluster.borders.iter().filter(|b| b.held == region.id()) {
                region.views_in(border.band, &mut views);
            }
            views.sort_unstable_by_key(|v| v.id);
            views.dedup_by_key(|v| v.id);
            let update = tessera_persistence::bus::GhostUpdate {
                region: region.id(),
                payload: crate::cluster::encode_ghosts(&views),
            };
            if cluster.ghosts_out.try_send(update).is_err() {
                self.stats.counters.ghosts_dropped += 1;
            }
        }
    }

    /// Takes `player`'s avatar out of the world and forgets its view.
    fn remove_player(&mut self, player: PlayerId) {
        self.clients.remove(&player);
        if let Some(region) = self.region_of.remove(&player)
            && let Some(input) = self.local.input_mut(region)
        {
            input.sessions.push(SessionEvent::Leave(player));
        }
    }

    /// Removes the avatars whose clients did not resume within [`RESUME_LINGER`].
    fn evict_detached(&mut self) {
        let tick = self.current_tick();
        while let Some(&(player, session, deadline)) = self.detached.front() {
            if deadline > tick {
                break;
            }
            self.detached.pop_front();
            // Still the same detached session (not resumed, not taken over)?
            if self
                .clients
                .get(&player)
                .is_some_and(|v| v.detached && v.session == session)
            {
                self.stats.counters.resume_expired += 1;
                self.remove_player(player);
            }
        }
    }

    /// Answers the logins and logouts of this tick, saves departed players, and follows
    /// handoffs.
    fn settle_sessions(&mut self, tick: u64) {
        let mut refused: HashMap<PlayerId, JoinRefusal> = HashMap::new();
        let mut departed = Vec::new();
        for region in self.local.regions() {
            let out = region.output();
            for &(player, why) in &out.refused_joins {
                refused.insert(player, why);
            }
            for &(player, state) in &out.departed {
                let done = self.pending_leaves.remove(&player);
                departed.push(SaveRequest {
                    player,
                    state,
                    done,
                });
            }
            for record in &out.handoffs {
                if let Some(player) = record.entity.player {
                    self.region_of.insert(player, record.to);
                }
            }
        }
        for request in departed {
            self.send_save(request);
        }
        for (player, session, region, outbox, reply) in self.pending_joins.drain(..) {
            if let Some(why) = refused.get(&player) {
                let (code, message) = match why {
                    JoinRefusal::RegionFull => (ErrorCode::ServerFull, "the region is full"),
                    JoinRefusal::AlreadyPresent => {
                        (ErrorCode::RegionUnavailable, "already in the world")
                    }
                    _ => (ErrorCode::Internal, "login refused"),
                };
                let _ = reply.send(Err(ErrorS2c {
                    code,
                    message: message.into(),
                    retry_after_ms: Some(LOGIN_RETRY_AFTER_MS),
                }));
                continue;
            }
            self.region_of.insert(player, region);
            self.clients.insert(
                player,
                ClientView {
                    session,
                    outbox,
                    encoder: DeltaEncoder::default(),
                    view_region: None,
                    ghosts: Vec::new(),
                    ack_tick: 0,
                    detached: false,
                },
            );
            let _ = reply.send(Ok(Joined { region, tick }));
        }
        // Logouts whose player left no state (it was in flight between regions).
        for (_, reply) in self.pending_leaves.drain() {
            let _ = reply.send(Ok(()));
        }
    }

    /// States and events to every client. Each region's entities of the tick are
    /// quantized once; then clients, independent (each has its own view and encoder),
    /// get their states built in parallel on the rayon pool the driver runs in; events,
    /// rare, go out sequentially afterwards.
    fn fan_out(&mut self) {
        let player_archetype = self.config.balance.player_archetype as u16;
        let ghosts = self
            .cluster
            .as_ref()
            .map(|c| c.ghosts.current())
            .unwrap_or_default();
        let borders = self.cluster.as_ref().map_or(&[][..], |c| &c.borders[..]);
        let reach = self.config.world.interest.enter_radius_m;
        let visible_max = self.config.world.interest.visible_entities_max as usize;
        let Driver {
            local,
            clients,
            stats,
            wire_tables,
            ..
        } = self;
        let regions = local.regions();
        wire_tables.resize_with(regions.len(), WireTable::default);
        regions
            .par_iter()
            .zip(wire_tables.par_iter_mut())
            .for_each(|(region, table)| table.fill(&region.output().interest));
        let wire_tables = &*wire_tables;
        // Where each observer's diff is: (region index, diff index).
        let mut diff_of: HashMap<PlayerId, (usize, usize)> = HashMap::with_capacity(clients.len());
        for (r, region) in regions.iter().enumerate() {
            for (d, diff) in region.output().interest.observers.iter().enumerate() {
                diff_of.insert(diff.player, (r, d));
            }
        }
        let dropped = AtomicU64::new(0);
        clients.par_iter_mut().for_each_init(
            || (EncodeScratch::default(), Vec::new()),
            |(scratch, near), (player, view)| {
                let Some(&(r, d)) = diff_of.get(player) else {
                    return; // In flight between regions: no state this tick.
                };
                let region = &regions[r];
                let out = region.output();
                let interest = &out.interest;
                let diff = &interest.observers[d];
                let avatar = NetId::of_player(*player);
                let own = region.position_and_health(avatar);
                let changes = ViewChanges {
                    left: interest.left_ids(diff),
                    entered: interest.entered_indices(diff),
                    changed: interest.changed_indices(diff),
                    table: &wire_tables[r],
                    own: own.map(|(position, health)| {
                        wire(&EntityView {
                            id: avatar,
                            archetype: player_archetype,
                            position,
                            health,
                        })
                    }),
                };
                let fresh = view.view_region != Some(region.id());
                view.view_region = Some(region.id());
                // Near a border with a region held elsewhere: its ghosts within reach too.
                near.clear();
                if let Some((at, _)) = own
                    && !view.detached
                {
                    near.extend(
                        borders
                            .iter()
                            .filter(|b| {
                                b.held == region.id() && b.remote_bounds.distance_to(at) <= reach
                            })
                            .filter_map(|b| ghosts.get(&b.remote))
                            .flat_map(|g| g.iter())
                            .filter(|g| g.position.distance_squared(at) <= reach * reach)
                            .map(wire),
                    );
                    near.sort_unstable_by_key(|e| e.id);
                }
                let next = NextView {
                    changes,
                    fresh,
                    ghost_ids: &mut view.ghosts,
                    near_ghosts: near,
                    visible_max,
                };
                if view.detached {
                    // Kept current for a resume; nobody to send to.
                    view.encoder.update_view(out.tick, next);
                    return;
                }
                let mut bytes = Vec::new();
                view.encoder
                    .encode_next_into(out.tick, view.ack_tick, next, scratch, &mut bytes);
                let message = if bytes.len() <= DATAGRAM_BYTES_MAX {
                    Outgoing::Datagram(bytes.into())
                } else if bytes.len() <= STATE_STREAM_BYTES_MAX {
                    Outgoing::Stream(bytes.into())
                } else {
                    return; // Larger than any view can be: the cap prevents it.
                };
                if view.outbox.try_send(message).is_err() {
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
            },
        );
        stats.counters.states_dropped += dropped.into_inner();
        for region in regions {
            let out = region.output();
            for event in &out.events {
                let (recipients, message) = match *event {
                    GameEvent::Damage {
                        attacker,
                        target,
                        amount,
                    } => (
                        [avatar_owner(attacker), avatar_owner(target)],
                        EventS2c::Damage {
                            attacker,
                            target,
                            amount,
                        },
                    ),
                    GameEvent::Death { entity } => {
                        ([avatar_owner(entity), None], EventS2c::Death { entity })
                    }
                    GameEvent::Respawn { player } => ([Some(player), None], EventS2c::Respawn),
                };
                for player in recipients.into_iter().flatten() {
                    if let Some(view) = clients.get(&player) {
                        let _ =
                            view.outbox
                                .try_send(Outgoing::Control(Box::new(ControlS2c::Event(
                                    message.clone(),
                                ))));
                    }
                }
            }
        }
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

/// The player whose avatar `id` is, if it is one.
fn avatar_owner(id: NetId) -> Option<PlayerId> {
    (id.0 >> 63 == 1).then_some(PlayerId(id.0 & PlayerId::MAX))
}

/// Whole ticks in `d` at `tick_hz`, at least 1.
fn ticks_in(d: std::time::Duration, tick_hz: u32) -> u64 {
    (d.as_millis() as u64 * u64::from(tick_hz))
        .div_ceil(1000)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session's outbox reserves room for 32 items at a time (tokio's block), per
    /// session: its items stay as small as a state's `Bytes` and a tag.
    #[test]
    fn outbox_items_are_small() {
        assert!(
            std::mem::size_of::<Outgoing>() <= 40,
            "{}",
            std::mem::size_of::<Outgoing>()
        );
    }

    /// A driver at 1 Hz (so the linger is [`RESUME_LINGER`] in ticks) and a logged-in
    /// player on session 1.
    fn driver_with_player(player: PlayerId) -> (Driver, NodeHandle, mpsc::Receiver<Outgoing>) {
        let mut config = Config::embedded_default();
        config.world.tick_hz = 1;
        let (mut driver, node) = Driver::new(Arc::new(config), 1).unwrap();
        let (outbox, outbox_rx) = mpsc::channel(SESSION_OUTBOX_LEN_MAX);
        let (reply, mut joined) = oneshot::channel();
        node.try_send(Command::Join {
            player,
            session: 1,
            outbox,
            saved: None,
            arriving: None,
            reply,
        })
        .unwrap();
        driver.tick();
        assert!(matches!(joined.try_recv(), Ok(Ok(_))));
        assert_eq!(driver.local().counts().0, 1);
        (driver, node, outbox_rx)
    }

    const LINGER_TICKS: u64 = crate::auth::TICKET_TTL_S;

    #[test]
    fn a_detached_avatar_waits_for_its_resume_then_leaves() {
        let player = PlayerId(7);
        let (mut driver, node, _outbox) = driver_with_player(player);
        node.try_send(Command::Detach { player, session: 1 })
            .unwrap();
        for _ in 0..LINGER_TICKS - 1 {
            driver.tick();
        }
        assert_eq!(driver.local().counts().0, 1, "still waiting for a resume");
        driver.tick();
        driver.tick();
        assert_eq!(driver.local().counts().0, 0, "gone after the linger");
        assert_eq!(driver.stats.counters.resume_expired, 1);
    }

    #[test]
    fn departed_players_are_saved_and_a_logout_waits_for_its_save() {
        let player = PlayerId(7);
        let (mut driver, node, _outbox) = driver_with_player(player);
        let (saves, mut queue) = mpsc::channel(4);
        driver.save_players_to(saves);
        // A dropped connection whose client never comes back: saved, nobody waits.
        node.try_send(Command::Detach { player, session: 1 })
            .unwrap();
        for _ in 0..LINGER_TICKS + 2 {
            driver.tick();
        }
        // Its departure is the last save of it (periodic ones may come before).
        let mut last = None;
        while let Ok(request) = queue.try_recv() {
            last = Some(request);
        }
        let saved = last.expect("the expired avatar's state is saved");
        assert_eq!(saved.player, player);
        assert!(saved.done.is_none());
        assert!(saved.state.health > 0.0);
        assert_eq!(driver.local().counts().0, 0, "and it left the world");
        // A logout: its reply rides with the save, answered by whoever writes it.
        let other = PlayerId(8);
        let (outbox, _states) = mpsc::channel(SESSION_OUTBOX_LEN_MAX);
        let (reply, _joined) = oneshot::channel();
        node.try_send(Command::Join {
            player: other,
            session: 2,
            outbox,
            saved: None,
            arriving: None,
            reply,
        })
        .unwrap();
        driver.tick();
        let (done, mut answer) = oneshot::channel();
        node.try_send(Command::Leave {
            player: other,
            session: 2,
            reply: Some(done),
        })
        .unwrap();
        driver.tick();
        let save = std::iter::from_fn(|| queue.try_recv().ok())
            .find(|r| r.done.is_some())
            .expect("the logout's state is saved");
        assert_eq!(save.player, other);
        assert!(
            answer.try_recv().is_err(),
            "not answered before the save is durable"
        );
        save.done.expect("the logout waits").send(Ok(())).unwrap();
        assert_eq!(answer.try_recv().unwrap(), Ok(()));
    }

    #[test]
    fn every_player_is_saved_once_per_interval() {
        let player = PlayerId(7);
        let (mut driver, _node, _outbox) = driver_with_player(player);
        let (saves, mut queue) = mpsc::channel(64);
        driver.save_players_to(saves);
        let interval = PLAYER_SAVE_INTERVAL.as_secs(); // ticks at 1 Hz
        for _ in 0..interval * 3 {
            driver.tick();
        }
        let mut saved = 0;
        while let Ok(request) = queue.try_recv() {
            assert_eq!(request.player, player);
            saved += 1;
        }
        assert_eq!(saved, 3);
    }

    #[test]
    fn a_resume_within_the_linger_keeps_the_avatar() {
        let player = PlayerId(7);
        let (mut driver, node, _outbox) = driver_with_player(player);
        node.try_send(Command::Detach { player, session: 1 })
            .unwrap();
        driver.tick();
        let (outbox, mut states) = mpsc::channel(SESSION_OUTBOX_LEN_MAX);
        let (reply, _joined) = oneshot::channel();
        node.try_send(Command::Join {
            player,
            session: 2,
            outbox,
            saved: None,
            arriving: None,
            reply,
        })
        .unwrap();
        for _ in 0..LINGER_TICKS + 2 {
            driver.tick();
        }
        assert_eq!(driver.local().counts().0, 1);
        assert_eq!(
            (
                driver.stats.counters.resumed,
                driver.stats.counters.resume_expired
            ),
            (1, 0)
        );
        // The resumed session gets states again; a stale detach of it is ignored.
        assert!(matches!(states.try_recv(), Ok(Outgoing::Datagram(_))));
        node.try_send(Command::Detach { player, session: 1 })
            .unwrap();
        for _ in 0..LINGER_TICKS + 2 {
            driver.tick();
        }
        assert_eq!(driver.local().counts().0, 1);
    }
}
