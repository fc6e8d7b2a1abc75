//! The run's moving parts (faults, the orchestrator, IO in flight) and the invariants
//! checked after every step.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tessera_persistence::lease::LeaseStore;
use tessera_shared::ids::{HandoffId, NetId, PlayerId, RegionId};

use super::Sim;
use super::nodes::NodeState;
use super::world::{Fault, Item, Work, at_once, failed};
use crate::cluster::io::execute;

/// Chance per second that a running node is killed, or paused.
const KILL_PER_S: f64 = 1.0 / 25.0;
const PAUSE_PER_S: f64 = 1.0 / 30.0;
/// How often the orchestrator looks for regions nobody holds.
const ORCHESTRATE_EVERY: Duration = Duration::from_millis(500);

impl Sim {
    /// Kills and pauses running nodes at random (never the last one running), restarts
    /// and resumes them when due.
    pub(super) fn inject_faults(&mut self, now: Instant) {
        let step_s = super::STEP.as_secs_f64();
        let mut running = self.nodes.iter().filter(|n| n.is_up()).count();
        for i in 0..self.nodes.len() {
            match self.nodes[i].state {
                NodeState::Down { restart_at } if restart_at <= now => {
                    self.note(format!("n{i} starts"));
                    self.nodes[i].start(&mut self.world, now);
                }
                NodeState::Paused { until } if until <= now => {
                    self.note(format!("n{i} resumes"));
                    self.nodes[i].resume(now);
                }
                NodeState::Up if running > 1 => {
                    if self.world.rng.chance(KILL_PER_S * step_s) {
                        let down = self
                            .world
                            .rng
                            .between(Duration::from_millis(500), Duration::from_secs(6));
                        self.note(format!("n{i} killed (down {:.1} s)", down.as_secs_f64()));
                        self.nodes[i].kill(&mut self.world, now + down);
                        self.outcome.kills += 1;
                        running -= 1;
                        continue;
                    }
                    if self.world.rng.chance(PAUSE_PER_S * step_s) {
                        let pause = self
                            .world
                            .rng
                            .between(Duration::from_millis(500), Duration::from_secs(10));
                        self.note(format!("n{i} paused ({:.1} s)", pause.as_secs_f64()));
                        self.nodes[i].pause(now + pause);
                        self.outcome.pauses += 1;
                        running -= 1;
                    }
                }
                _ => {}
            }
        }
    }

    /// Settling: no more faults; every node runs.
    pub(super) fn heal(&mut self, now: Instant) {
        self.world.faults = false;
        for i in 0..self.nodes.len() {
            match self.nodes[i].state {
                NodeState::Down { .. } => {
                    self.note(format!("n{i} starts (settling)"));
                    self.nodes[i].start(&mut self.world, now);
                }
                NodeState::Paused { .. } => {
                    self.note(format!("n{i} resumes (settling)"));
                    self.nodes[i].resume(now);
                }
                NodeState::Up => {}
            }
        }
    }

    /// Every [`ORCHESTRATE_EVERY`], gives each region nobody holds to a running node.
    pub(super) fn orchestrate(&mut self, now: Instant) {
        let tick = ORCHESTRATE_EVERY.as_micros() / super::STEP.as_micros();
        let step = self.world.elapsed().as_micros() / super::STEP.as_micros();
        if !step.is_multiple_of(tick) {
            return;
        }
        for node in &mut self.nodes {
            node.forget_dropped();
        }
        let regions: Vec<RegionId> = self
            .world
            .config
            .world
            .regions
            .iter()
            .map(|r| r.id)
            .collect();
        for region in regions {
            if matches!(at_once(self.world.leases.holder(region)), Ok(Some(_))) {
                continue;
            }
            let up: Vec<usize> = self
                .nodes
                .iter()
                .filter(|n| n.is_up())
                .map(|n| n.index)
                .collect();
            if up.is_empty() {
                return;
            }
            let i = up[self.world.rng.below(up.len() as u64) as usize];
            match self.nodes[i].assign(&mut self.world, region, now) {
                Ok(true) => self.note(format!("region {} assigned to n{i}", region.0)),
                Ok(false) => {}
                Err(e) => self.note(format!("region {} not assigned to n{i}: {e}", region.0)),
            }
        }
    }

    /// Carries out everything in flight that is due.
    pub(super) fn run_io(&mut self, now: Instant) -> Result<(), String> {
        while let Some(item) = self.world.due(now) {
            match item {
                Item::Exec {
                    node,
                    incarnation,
                    action,
                    fault,
                } => {
                    self.outcome.io += 1;
                    let Some(io) = self.nodes[node].io() else {
                        // Sent before the node died: it still reaches the store.
                        continue;
                    };
                    let traced = traced(&action);
                    let answer = if fault == Fault::Fail {
                        self.outcome.io_failed += 1;
                        failed(&action)
                    } else {
                        let lost = failed(&action);
                        let name = self.nodes[node].name.clone();
                        let answer = at_once(execute(io, name, action, &Default::default()));
                        if fault == Fault::Lost {
                            self.outcome.io_failed += 1;
                            lost
                        } else {
                            answer
                        }
                    };
                    if let (Some(what), Some(answer)) = (traced, &answer) {
                        self.note(format!("n{node} {what} -> {}", outcome_of(answer, fault)));
                    }
                    if let Some(answer) = answer {
                        let at = now + self.world.latency();
                        let work = Work::Answer(answer);
                        let item = Item::Process {
                            node,
                            incarnation,
                            work,
                        };
                        self.world.schedule(at, item);
                    }
                }
                Item::Process {
                    node,
                    incarnation,
                    work,
                } => {
                    let n = &mut self.nodes[node];
                    if n.incarnation != incarnation || !n.is_alive() {
                        continue; // Died with its process (a writer's queue, a load, an answer).
                    }
                    if let NodeState::Paused { until } = n.state {
                        let item = Item::Process {
                            node,
                            incarnation,
                            work,
                        };
                        self.world.schedule(until.max(now + super::STEP), item);
                        continue;
                    }
                    self.work(node, work, now)?;
                }
            }
        }
        Ok(())
    }

    /// Carries out `work` in running node `node`'s process.
    fn work(&mut self, node: usize, work: Work, now: Instant) -> Result<(), String> {
        let run = self.nodes[node].run.as_mut().expect("running nodes run");
        match work {
            Work::Answer(answer) => run.shared.ledger().handle(answer, now),
            Work::Save(request) => {
                if run.pending_saves.get(&request.player) == Some(&request.state) {
                    run.pending_saves.remove(&request.player);
                }
                self.world.players.insert(request.player, request.state);
                if let Some(done) = request.done {
                    self.world
                        .logout_saves
                        .insert(request.player, request.state);
                    let _ = done.send(Ok(()));
                }
            }
            Work::Load { token, player } => {
                let saved = run
                    .pending_saves
                    .get(&player)
                    .or_else(|| self.world.players.get(&player))
                    .copied();
                self.world.loads.insert(token, saved);
            }
            Work::Commit {
                region,
                epoch,
                delta,
            } => {
                let before = self.world.snapshots.get(&region).map(|s| (s.epoch, s.tick));
                match self.world.commit(region, epoch, delta) {
                    Ok(()) => {
                        let after = self.world.snapshots.get(&region).map(|s| (s.epoch, s.tick));
                        if let (Some(before), Some(after)) = (before, after)
                            && (after.0 < before.0 || (after.0 == before.0 && after.1 <= before.1))
                        {
                            return Err(format!(
                                "region {}'s snapshot went back from {before:?} to {after:?} (epoch, tick)",
                                region.0
                            ));
                        }
                        if let Some(before) = before
                            && epoch < before.0
                        {
                            return Err(format!(
                                "a stale epoch {epoch} was accepted over {} for region {}",
                                before.0, region.0
                            ));
                        }
                    }
                    Err(e) => {
                        self.outcome.fenced += 1;
                        self.note(format!(
                            "n{node}'s snapshot of region {} refused: {e}",
                            region.0
                        ));
                        self.nodes[node].fence(region);
                    }
                }
            }
        }
        Ok(())
    }

    /// After node `i`'s tick at `now`: it stepped only regions whose lease it holds, and
    /// no handoff it applied is applied by another live holding.
    pub(super) fn check_node_tick(
        &mut self,
        i: usize,
        now: Instant,
        applied: &[(RegionId, u64, HandoffId)],
    ) -> Result<(), String> {
        let _ = now;
        let node = &self.nodes[i];
        let run = node.run.as_ref().expect("ticked nodes run");
        let orphans = run.driver.views_without_avatars();
        if let Some(&player) = orphans.first() {
            return Err(format!(
                "n{i} holds a session of player {} with no avatar: {}",
                player.0,
                run.driver.describe_player(player)
            ));
        }
        let orphans = run.driver.avatars_without_views();
        if let Some(&player) = orphans.first() {
            return Err(format!(
                "n{i} has an avatar of player {} that no session holds: {}",
                player.0,
                run.driver.describe_player(player)
            ));
        }
        for region in run.driver.local().regions() {
            let epoch = run.epochs.get(&region.id()).copied();
            let holder = at_once(self.world.leases.holder(region.id()))
                .ok()
                .flatten();
            if holder.as_ref().map(|(h, e)| (h.as_str(), Some(*e)))
                != Some((node.name.as_str(), epoch))
            {
                return Err(format!(
                    "n{i} stepped region {} (epoch {epoch:?}) without its lease: the store says {holder:?}",
                    region.id().0
                ));
            }
        }
        for &(region, epoch, id) in applied {
            if let Some(&(r0, e0)) = self.applied.get(&id)
                && self.holding_is_live(r0, e0)
            {
                return Err(format!(
                    "handoff {} applied twice: by region {} (epoch {e0}) and region {} (epoch {epoch})",
                    id.0, r0.0, region.0
                ));
            }
            self.applied.insert(id, (region, epoch));
        }
        if self.applied.len() > APPLIED_REMEMBERED {
            let oldest = *self.applied.keys().next().expect("not empty");
            self.applied.remove(&oldest);
        }
        Ok(())
    }

    /// Whether some live node steps `region` under `epoch`, its lease still valid (a
    /// holding whose lease lapsed is dropped before it steps again: what it applied is gone).
    fn holding_is_live(&self, region: RegionId, epoch: u64) -> bool {
        let holder = at_once(self.world.leases.holder(region)).ok().flatten();
        self.nodes.iter().filter(|n| n.is_alive()).any(|n| {
            holder.as_ref() == Some(&(n.name.clone(), epoch))
                && n.run.as_ref().is_some_and(|r| {
                    r.epochs.get(&region) == Some(&epoch)
                        && r.driver.local().region(region).is_some()
                })
        })
    }

    /// Where each player's avatar is: in regions of live nodes that hold their lease.
    fn avatars(&self) -> BTreeMap<PlayerId, Vec<(usize, RegionId)>> {
        let mut found: BTreeMap<PlayerId, Vec<(usize, RegionId)>> = BTreeMap::new();
        for node in self.nodes.iter().filter(|n| n.is_alive()) {
            let Some(run) = node.run.as_ref() else {
                continue;
            };
            for region in run.driver.local().regions() {
                let epoch = run.epochs.get(&region.id()).copied();
                let holder = at_once(self.world.leases.holder(region.id()))
                    .ok()
                    .flatten();
                if holder.map(|(h, e)| (h, Some(e))) != Some((node.name.clone(), epoch)) {
                    continue; // Its lease lapsed: the node drops it before stepping again.
                }
                for client in &self.clients {
                    if region
                        .position_of(NetId::of_player(client.player))
                        .is_some()
                    {
                        found
                            .entry(client.player)
                            .or_default()
                            .push((node.index, region.id()));
                    }
                }
            }
        }
        found
    }

    /// Each player is in the world at most once.
    pub(super) fn check_once(&mut self, now: Instant) -> Result<(), String> {
        let _ = now;
        for (player, at) in self.avatars() {
            if at.len() > 1 {
                return Err(format!(
                    "player {} is in the world {} times: {at:?}",
                    player.0,
                    at.len()
                ));
            }
        }
        Ok(())
    }

    /// At rest (the run settled): every player plays, and is in the world exactly once,
    /// on the node its client is connected to.
    pub(super) fn check_at_rest(&mut self) -> Result<(), String> {
        let avatars = self.avatars();
        for client in &self.clients {
            let p = client.player.0;
            let Some((node, incarnation)) = client.playing_on() else {
                return Err(format!("player {p} is not playing at rest"));
            };
            if self.nodes[node].incarnation != incarnation {
                return Err(format!(
                    "player {p} plays on a dead incarnation of n{node} at rest"
                ));
            }
            match avatars.get(&client.player).map(Vec::as_slice) {
                Some([(at, _)]) if *at == node => {}
                other => {
                    let seen = self.nodes[node]
                        .run
                        .as_ref()
                        .map(|r| r.driver.describe_player(client.player));
                    return Err(format!(
                        "player {p} plays on n{node} but its avatars at rest are {other:?}; n{node}'s driver: {seen:?}"
                    ));
                }
            }
        }
        self.outcome.fenced = self.world.fenced;
        Ok(())
    }
}

/// Applied handoff ids remembered for the applied-twice check (handoff ids grow, so the
/// oldest go first).
const APPLIED_REMEMBERED: usize = 100_000;

/// The location writes and checks worth a line in the trace.
fn traced(
    action: &tessera_cluster::IoAction<tessera_persistence::bus::Delivery>,
) -> Option<String> {
    use tessera_cluster::IoAction;
    Some(match action {
        IoAction::Claim { player, claim, .. } => format!("claim p{} for {claim}", player.0),
        IoAction::HandOver { moves, first, .. } => format!(
            "hand over {:?} (first {first})",
            moves
                .iter()
                .map(|(m, c)| format!(
                    "p{} {}->{} h{} from {c:?}",
                    m.player.0, m.from.0, m.to.0, m.handoff.0
                ))
                .collect::<Vec<_>>()
        ),
        IoAction::Accepts { moves, .. } => format!(
            "accepts {:?}",
            moves
                .iter()
                .map(|m| format!("p{} {}->{} h{}", m.player.0, m.from.0, m.to.0, m.handoff.0))
                .collect::<Vec<_>>()
        ),
        IoAction::Adopt { m, .. } => format!("adopt p{} h{}", m.player.0, m.handoff.0),
        IoAction::Release { player, claim, .. } => format!("release p{} claim {claim}", player.0),
        _ => return None,
    })
}

fn outcome_of(
    answer: &tessera_cluster::Answer<tessera_persistence::bus::Delivery>,
    fault: Fault,
) -> String {
    use tessera_cluster::Answer;
    let shown = match answer {
        Answer::Claim(_, r) => format!("{r:?}"),
        Answer::HandOver(_, r) | Answer::Accepts(_, r) => format!("{r:?}"),
        Answer::Adopt(_, r) => format!("{r:?}"),
        Answer::Done(_, r) => format!("{r:?}"),
        _ => String::new(),
    };
    match fault {
        Fault::Lost => format!("{shown} (ran; answer lost)"),
        _ => shown,
    }
}
