//! A simulated node: a real driver and ledger, started, killed (everything not durable
//! lost), paused (frozen: no ticks, no answers, its writes held) and resumed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_cluster::{LedgerStats, LoginId, LoginOutcome};
use tessera_persistence::bus::GhostUpdate;
use tessera_persistence::lease::{LeaseStore, LocalLeases};
use tessera_persistence::local_bus::LocalBus;
use tessera_persistence::location::LocalLocations;
use tessera_regions::Region;
use tessera_regions::io::SavedPlayer;
use tessera_shared::ids::{HandoffId, PlayerId, RegionId};
use tokio::sync::{mpsc, oneshot};

use super::world::{Item, Work, World, at_once};
use crate::cluster::io::Io;
use crate::cluster::{ClusterHandle, ClusterLink, GhostBoard, LEASE_TTL, Shared};
use crate::local::LocalRegions;
use crate::node::{ActionResult, AdminAction, Command, Driver, NodeHandle};
use crate::players::{SAVES_QUEUE_LEN_MAX, SaveRequest};

/// Where a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NodeState {
    /// Running.
    Up,
    /// Frozen until then.
    Paused { until: Instant },
    /// Killed; restarts then.
    Down { restart_at: Instant },
}

/// A call into a node's process that a pause holds until it resumes.
#[derive(Debug)]
pub(super) enum Call {
    /// A waiting login's session left (its claim is abandoned).
    Abandon(LoginId),
    /// A granted login's session left before it joined.
    JoinSkipped(PlayerId, u64),
    /// A logout's state is durable: its location is released.
    LoggedOut(PlayerId, u64),
    /// A command to the driver.
    Command(Command),
}

/// A running incarnation.
pub(super) struct Running {
    pub(super) driver: Driver,
    pub(super) handle: NodeHandle,
    pub(super) shared: Arc<Shared>,
    io: Io<LocalBus, LocalLeases, LocalLocations>,
    saves: mpsc::Receiver<SaveRequest>,
    ghosts: mpsc::Receiver<GhostUpdate>,
    next_tick: Instant,
    next_snapshot: Instant,
    next_session: u64,
    /// Saves handed to the writer and not yet durable (a load sees them first).
    pub(super) pending_saves: BTreeMap<PlayerId, SavedPlayer>,
    /// The writer writes in order: the last write's time.
    last_write: Instant,
    /// Login outcomes, routed from the ledger.
    pub(super) logins: BTreeMap<LoginId, LoginOutcome>,
    /// The lease epoch of each region stepped (or being assigned) here.
    pub(super) epochs: BTreeMap<RegionId, u64>,
    assigning: BTreeMap<RegionId, oneshot::Receiver<ActionResult>>,
    /// Regions whose snapshots the fence refused: they stop capturing.
    fenced: BTreeSet<RegionId>,
    /// Calls held by a pause.
    held: Vec<Call>,
}

pub(super) struct SimNode {
    pub(super) index: usize,
    pub(super) name: String,
    pub(super) addr: String,
    pub(super) incarnation: u64,
    pub(super) state: NodeState,
    pub(super) run: Option<Running>,
}

impl Running {
    /// Hands `work` to the node's writer: done in order, each after a store's delay.
    fn write(
        &mut self,
        world: &mut World,
        now: Instant,
        node: usize,
        incarnation: u64,
        work: Work,
    ) {
        let at = (now + world.latency()).max(self.last_write);
        self.last_write = at;
        world.schedule(
            at,
            Item::Process {
                node,
                incarnation,
                work,
            },
        );
    }
}

impl SimNode {
    pub(super) fn new(index: usize, world: &World) -> SimNode {
        SimNode {
            index,
            name: format!("n{index}"),
            addr: format!("10.0.0.{}:4433", index + 1),
            incarnation: 0,
            state: NodeState::Down {
                restart_at: world.now(),
            },
            run: None,
        }
    }

    pub(super) fn is_up(&self) -> bool {
        self.state == NodeState::Up
    }

    /// Up or paused: its process (and its leases, until they lapse) exists.
    pub(super) fn is_alive(&self) -> bool {
        !matches!(self.state, NodeState::Down { .. })
    }

    pub(super) fn ledger_stats(&self) -> Option<LedgerStats> {
        self.run.as_ref().map(|r| r.shared.ledger().stats())
    }

    /// Starts a new incarnation holding nothing (the orchestrator assigns regions).
    pub(super) fn start(&mut self, world: &mut World, now: Instant) {
        self.incarnation += 1;
        let config = world.config.clone();
        let (local, _) = LocalRegions::restore(config.clone(), 1, &BTreeMap::new(), &[])
            .expect("no region to build");
        let (mut driver, mut handle) = Driver::with_regions(config.clone(), local);
        let shared = Shared::new(&self.name, &config, None, world.rng.next_u64(), now);
        let (ghosts_out, ghosts) = mpsc::channel(crate::cluster::ghosts::GHOSTS_OUT_LEN_MAX);
        let link = ClusterLink {
            shared: shared.clone(),
            ghosts_out,
            ghosts: Arc::new(GhostBoard::default()),
            borders: Vec::new(),
        };
        driver.join_cluster(link, ClusterHandle::new(shared.clone()), &mut handle);
        let (saves_tx, saves) = mpsc::channel(SAVES_QUEUE_LEN_MAX);
        driver.save_players_to(saves_tx);
        let io = Io {
            bus: world.bus.clone(),
            leases: world.leases.clone(),
            locations: world.locations.clone(),
            addr: self.addr.clone(),
        };
        self.run = Some(Running {
            driver,
            handle,
            shared,
            io,
            saves,
            ghosts,
            next_tick: now,
            next_snapshot: now + config.node.snapshot_interval,
            next_session: 1,
            pending_saves: BTreeMap::new(),
            last_write: now,
            logins: BTreeMap::new(),
            epochs: BTreeMap::new(),
            assigning: BTreeMap::new(),
            fenced: BTreeSet::new(),
            held: Vec::new(),
        });
        self.state = NodeState::Up;
    }

    /// SIGKILL: the process and everything in it are gone.
    pub(super) fn kill(&mut self, world: &mut World, restart_at: Instant) {
        if let Some(stats) = self.ledger_stats() {
            let r = &mut world.retired;
            r.handoffs_out += stats.handoffs_out;
            r.handoffs_stale += stats.handoffs_stale;
        }
        self.run = None;
        self.state = NodeState::Down { restart_at };
    }

    pub(super) fn pause(&mut self, until: Instant) {
        if self.is_up() {
            self.state = NodeState::Paused { until };
        }
    }

    /// Resumes a paused node: the calls its pause held go in.
    pub(super) fn resume(&mut self, now: Instant) {
        if !matches!(self.state, NodeState::Paused { .. }) {
            return;
        }
        self.state = NodeState::Up;
        let held = self
            .run
            .as_mut()
            .map(|r| std::mem::take(&mut r.held))
            .unwrap_or_default();
        for call in held {
            self.call(call, now);
        }
    }

    /// A call into the process: now if it is up, at its resume if it is paused, never if
    /// it is down.
    pub(super) fn call(&mut self, call: Call, now: Instant) {
        let paused = matches!(self.state, NodeState::Paused { .. });
        let Some(run) = self.run.as_mut() else {
            return;
        };
        if paused {
            run.held.push(call);
            return;
        }
        match call {
            Call::Abandon(login) => run.shared.ledger().abandon_login(login, now),
            Call::JoinSkipped(player, session) => {
                run.shared.ledger().join_skipped(player, session, now)
            }
            Call::LoggedOut(player, session) => {
                run.shared.ledger().logged_out(player, session, now)
            }
            Call::Command(command) => {
                let _ = run.handle.try_send(command);
            }
        }
    }

    /// A new session id (unique per incarnation).
    pub(super) fn session(&mut self) -> u64 {
        let run = self.run.as_mut().expect("a session of a running node");
        let session = run.next_session;
        run.next_session += 1;
        session
    }

    pub(super) fn tick_due(&self, now: Instant) -> bool {
        self.is_up() && self.run.as_ref().is_some_and(|r| r.next_tick <= now)
    }

    /// One driver tick at `now`; returns the handoffs each region applied, with the lease
    /// epoch it holds the region under.
    pub(super) fn tick(
        &mut self,
        world: &mut World,
        now: Instant,
    ) -> Vec<(RegionId, u64, HandoffId)> {
        let index = self.index;
        let incarnation = self.incarnation;
        let run = self.run.as_mut().expect("ticks only while running");
        run.next_tick += Duration::from_secs(1) / world.config.world.tick_hz;
        // Assignments answered at this tick boundary: the region is stepped from now on.
        let answered: Vec<(RegionId, bool)> = run
            .assigning
            .iter_mut()
            .filter_map(|(&r, rx)| match rx.try_recv() {
                Ok(result) => Some((r, result.is_ok())),
                Err(oneshot::error::TryRecvError::Closed) => Some((r, false)),
                Err(oneshot::error::TryRecvError::Empty) => None,
            })
            .collect();
        // As region control does: stepped, it is active; refused, its lease goes.
        for (region, stepped) in answered {
            run.assigning.remove(&region);
            if stepped {
                run.shared.ledger().set_active(region, true);
            } else {
                run.epochs.remove(&region);
                run.shared.ledger().give_up(region);
            }
        }
        run.driver.tick_at(now);
        let mut applied = Vec::new();
        for region in run.driver.local().regions() {
            let epoch = run.epochs.get(&region.id()).copied().unwrap_or(0);
            for &id in &region.output().applied_handoffs {
                applied.push((region.id(), epoch, id));
            }
        }
        // The writer: saves in order, each durable after a delay.
        while let Ok(request) = run.saves.try_recv() {
            run.pending_saves.insert(request.player, request.state);
            run.write(world, now, index, incarnation, Work::Save(request));
        }
        while run.ghosts.try_recv().is_ok() {}
        // Snapshots: every region's changed cells, committed in order under its epoch.
        if run.next_snapshot <= now {
            run.next_snapshot = now + world.config.node.snapshot_interval;
            let held: Vec<RegionId> = run.driver.local().ids().collect();
            for region in held {
                if run.fenced.contains(&region) {
                    continue;
                }
                let Some(&epoch) = run.epochs.get(&region) else {
                    continue;
                };
                let Some(r) = run.driver.local_mut().region_mut(region) else {
                    continue;
                };
                let delta = r.capture_snapshot();
                let commit = Work::Commit {
                    region,
                    epoch,
                    delta,
                };
                run.write(world, now, index, incarnation, commit);
            }
        }
        applied
    }

    /// A snapshot commit of `region` was refused: it stops capturing (as production does).
    pub(super) fn fence(&mut self, region: RegionId) {
        if let Some(run) = self.run.as_mut() {
            run.fenced.insert(region);
        }
    }

    /// Lets the ledger start what is due, and takes its actions and login outcomes.
    pub(super) fn pump(&mut self, world: &mut World, now: Instant) {
        if !self.is_up() {
            return;
        }
        let (index, incarnation) = (self.index, self.incarnation);
        let Some(run) = self.run.as_mut() else {
            return;
        };
        let (actions, logins) = {
            let mut ledger = run.shared.ledger();
            ledger.handle_timeout(now);
            let actions: Vec<_> = std::iter::from_fn(|| ledger.poll_io()).collect();
            let logins: Vec<_> = std::iter::from_fn(|| ledger.poll_login()).collect();
            (actions, logins)
        };
        run.logins.extend(logins);
        for action in actions {
            let fault = world.fault();
            let at = now + world.latency();
            world.schedule(
                at,
                Item::Exec {
                    node: index,
                    incarnation,
                    action,
                    fault,
                },
            );
        }
    }

    /// The stores of this node's IO, for running an action.
    pub(super) fn io(&self) -> Option<&Io<LocalBus, LocalLeases, LocalLocations>> {
        self.run.as_ref().map(|r| &r.io)
    }

    /// The orchestrator gives `region` to this node: its lease taken (above the stored
    /// snapshot's epoch), the region restored from its snapshot (or new), and handed to
    /// the driver, which steps it from its next tick. `Ok(false)`: the lease is held.
    pub(super) fn assign(
        &mut self,
        world: &mut World,
        region: RegionId,
        now: Instant,
    ) -> Result<bool, String> {
        let Some(run) = self.run.as_mut() else {
            return Ok(false);
        };
        if run.epochs.contains_key(&region) {
            return Ok(false);
        }
        let stored = world.snapshots.get(&region);
        let min_epoch = stored.map_or(1, |s| s.epoch + 1);
        let Ok(Some(lease)) = at_once(
            world
                .leases
                .acquire(region, &self.name, LEASE_TTL, min_epoch),
        ) else {
            return Ok(false);
        };
        let config = world.config.clone();
        let def = config
            .world
            .regions
            .iter()
            .find(|r| r.id == region)
            .cloned()
            .expect("the orchestrator assigns the world's regions");
        let built = match stored.filter(|s| !s.cells.is_empty()) {
            Some(s) => Region::restore(&def, config.clone(), &s.cells).map(|(r, _)| r),
            None => Region::new(&def, config.clone(), world.rng.next_u64()),
        };
        let mut built = built.map_err(|e| {
            format!(
                "region {} does not restore from its snapshot: {e}",
                region.0
            )
        })?;
        built.set_epoch(lease.epoch);
        run.epochs.insert(region, lease.epoch);
        run.shared.ledger().hold(lease, false);
        let (reply, answer) = oneshot::channel();
        let assign = Command::Admin {
            action: AdminAction::Assign {
                region: Box::new(built),
            },
            reply,
        };
        if run.handle.try_send(assign).is_err() {
            return Err("the driver's inbox is full".into());
        }
        run.assigning.insert(region, answer);
        let _ = now;
        Ok(true)
    }

    /// Forgets the epochs of regions the driver no longer steps (lost).
    pub(super) fn forget_dropped(&mut self) {
        if let Some(run) = self.run.as_mut() {
            let stepped: BTreeSet<RegionId> = run.driver.local().ids().collect();
            let assigning: BTreeSet<RegionId> = run.assigning.keys().copied().collect();
            run.epochs
                .retain(|r, _| stepped.contains(r) || assigning.contains(r));
        }
    }
}
