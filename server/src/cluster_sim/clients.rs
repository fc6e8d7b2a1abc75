//! Scripted players. Each logs in as a session does (`net::session::log_in`: claim the
//! player's location through the ledger, load its save, join), walks east and west across
//! the region borders, follows redirects, and now and then logs out, drops its
//! connection, gives up on a slow login, or goes to another node. While the run settles it
//! only logs in and stands still.

use std::time::{Duration, Instant};

use tessera_regions::io::SavedPlayer;
use tessera_shared::ids::{NetId, PlayerId, RegionId};
use tessera_shared::math::Vec2;
use tessera_shared::protocol::messages::{ErrorS2c, InputC2s, InputFrame, KickReason};
use tessera_shared::protocol::quantize::quantize_move;
use tokio::sync::oneshot;

use super::nodes::{Call, SimNode};
use super::world::{Item, Work, World};
use crate::node::{Command, Joined, Outgoing, SessionInbox, session_outbox};

/// How long a client waits for a login (claim, load, join) before it gives up.
const LOGIN_GIVE_UP: Duration = Duration::from_secs(3);
/// How long a client waits for states before it takes the connection for lost.
const STATES_GIVE_UP: Duration = Duration::from_secs(3);
/// How long a logout waits for its `Bye`.
const LOGOUT_GIVE_UP: Duration = Duration::from_secs(10);
/// Metres walked per tick (the avatar's speed is 6 m/s at 10 Hz).
const STEP_M: f32 = 0.5;

/// Where a session is: which node, which incarnation of it, which session id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct At {
    node: usize,
    incarnation: u64,
    session: u64,
}

enum State {
    Offline,
    Claiming {
        at: At,
        login: u64,
        since: Instant,
        arriving: Option<RegionId>,
    },
    Loading {
        at: At,
        token: u64,
        since: Instant,
        arriving: Option<RegionId>,
    },
    Joining {
        at: At,
        reply: oneshot::Receiver<Result<Joined, ErrorS2c>>,
        outbox: SessionInbox,
        since: Instant,
    },
    Playing {
        at: At,
        outbox: SessionInbox,
        until: Instant,
        last_state: Instant,
        seq: u32,
    },
    LoggingOut {
        at: At,
        reply: oneshot::Receiver<Result<(), tessera_persistence::StoreError>>,
        since: Instant,
    },
}

pub(super) struct Client {
    pub(super) player: PlayerId,
    state: State,
    next_at: Instant,
    /// Where to log in next: a node a refusal named, or a redirect's (with its region).
    target: Option<(usize, Option<RegionId>)>,
    /// The state of the player's last acknowledged logout, until its next login loads.
    acked: Option<SavedPlayer>,
    east: bool,
    /// Logins that joined, and logouts acknowledged.
    pub(super) logins: u64,
    pub(super) logouts: u64,
}

impl Client {
    pub(super) fn new(i: usize, world: &World) -> Client {
        Client {
            player: PlayerId(1_000 + i as u64),
            state: State::Offline,
            next_at: world.now(),
            target: None,
            acked: None,
            east: i.is_multiple_of(2),
            logins: 0,
            logouts: 0,
        }
    }

    /// Whether the client plays on a live session, and where.
    pub(super) fn playing_on(&self) -> Option<(usize, u64)> {
        match &self.state {
            State::Playing { at, .. } => Some((at.node, at.incarnation)),
            _ => None,
        }
    }

    /// One step; returns the events worth tracing, or a broken invariant.
    pub(super) fn step(
        &mut self,
        nodes: &mut [SimNode],
        world: &mut World,
        now: Instant,
        settling: bool,
    ) -> Result<Vec<String>, String> {
        let mut events = Vec::new();
        let p = self.player.0;
        let state = std::mem::replace(&mut self.state, State::Offline);
        self.state = match state {
            State::Offline if now < self.next_at => State::Offline,
            State::Offline => self.begin(nodes, world, now, &mut events),
            State::Claiming {
                at,
                login,
                since,
                arriving,
            } => {
                let node = &mut nodes[at.node];
                if node.incarnation != at.incarnation || !node.is_alive() {
                    self.retry(world, now, 200, 1_000);
                    State::Offline
                } else if let Some(outcome) =
                    node.run.as_mut().and_then(|r| r.logins.remove(&login))
                {
                    match outcome {
                        Ok(()) => {
                            let token = world.token();
                            let delay = world.latency();
                            let work = Work::Load {
                                token,
                                player: self.player,
                            };
                            let item = Item::Process {
                                node: at.node,
                                incarnation: at.incarnation,
                                work,
                            };
                            world.schedule(now + delay, item);
                            State::Loading {
                                at,
                                token,
                                since,
                                arriving,
                            }
                        }
                        Err(refusal) => {
                            events.push(format!("p{p} refused on n{}: {refusal:?}", at.node));
                            if let tessera_cluster::LoginRefusal::Elsewhere {
                                node: holder, ..
                            } = &refusal
                            {
                                self.target = nodes
                                    .iter()
                                    .position(|n| &n.name == holder)
                                    .map(|n| (n, None));
                            }
                            self.retry(world, now, 200, 1_200);
                            State::Offline
                        }
                    }
                } else if now - since > LOGIN_GIVE_UP {
                    events.push(format!("p{p} gives up its claim on n{}", at.node));
                    node.call(Call::Abandon(login), now);
                    self.retry(world, now, 0, 1_000);
                    State::Offline
                } else {
                    State::Claiming {
                        at,
                        login,
                        since,
                        arriving,
                    }
                }
            }
            State::Loading {
                at,
                token,
                since,
                arriving,
            } => {
                let node = &mut nodes[at.node];
                if node.incarnation != at.incarnation || !node.is_alive() {
                    world.loads.remove(&token);
                    self.retry(world, now, 200, 1_000);
                    State::Offline
                } else if let Some(saved) = world.loads.remove(&token) {
                    if let Some(acked) = self.acked
                        && saved != Some(acked)
                    {
                        return Err(format!(
                            "player {p}'s acknowledged logout is lost: it logged out at {acked:?}, its login on n{} loaded {saved:?}",
                            at.node
                        ));
                    }
                    let (outbox_tx, outbox) = session_outbox();
                    let (reply_tx, reply) = oneshot::channel();
                    node.call(
                        Call::Command(Command::Join {
                            player: self.player,
                            name: String::new(),
                            session: at.session,
                            outbox: outbox_tx,
                            saved,
                            arriving,
                            start: None,
                            reply: reply_tx,
                        }),
                        now,
                    );
                    State::Joining {
                        at,
                        reply,
                        outbox,
                        since,
                    }
                } else if now - since > LOGIN_GIVE_UP {
                    world.loads.remove(&token);
                    events.push(format!("p{p} gives up loading on n{}", at.node));
                    node.call(Call::JoinSkipped(self.player, at.session), now);
                    self.retry(world, now, 0, 1_000);
                    State::Offline
                } else {
                    State::Loading {
                        at,
                        token,
                        since,
                        arriving,
                    }
                }
            }
            State::Joining {
                at,
                mut reply,
                outbox,
                since,
            } => {
                let node = &mut nodes[at.node];
                if node.incarnation != at.incarnation || !node.is_alive() {
                    self.retry(world, now, 200, 1_000);
                    State::Offline
                } else {
                    match reply.try_recv() {
                        Ok(Ok(joined)) => {
                            events.push(format!(
                                "p{p} joined n{} in region {}",
                                at.node, joined.region.0
                            ));
                            self.acked = None;
                            self.target = None;
                            self.logins += 1;
                            let play = if settling {
                                Duration::from_secs(3_600)
                            } else {
                                world
                                    .rng
                                    .between(Duration::from_secs(2), Duration::from_secs(20))
                            };
                            State::Playing {
                                at,
                                outbox,
                                until: now + play,
                                last_state: now,
                                seq: 1,
                            }
                        }
                        Ok(Err(error)) => {
                            events.push(format!(
                                "p{p} join refused on n{}: {:?} ({})",
                                at.node, error.code, error.message
                            ));
                            node.call(Call::JoinSkipped(self.player, at.session), now);
                            self.retry(world, now, 500, 1_500);
                            State::Offline
                        }
                        Err(_) if now - since > LOGIN_GIVE_UP => {
                            // The session leaves: the reply and outbox close, its claim
                            // is put right, and (as any dropped connection) it detaches.
                            events.push(format!("p{p} gives up joining on n{}", at.node));
                            node.call(Call::JoinSkipped(self.player, at.session), now);
                            self.detach(node, at, now);
                            self.retry(world, now, 0, 1_000);
                            State::Offline
                        }
                        Err(_) => State::Joining {
                            at,
                            reply,
                            outbox,
                            since,
                        },
                    }
                }
            }
            State::Playing {
                at,
                outbox,
                until,
                last_state,
                seq,
            } => self.play(
                nodes,
                world,
                now,
                settling,
                &mut events,
                at,
                outbox,
                until,
                last_state,
                seq,
            )?,
            State::LoggingOut {
                at,
                mut reply,
                since,
            } => {
                let node = &mut nodes[at.node];
                if node.incarnation != at.incarnation || !node.is_alive() {
                    self.retry(world, now, 200, 2_000);
                    State::Offline
                } else {
                    match reply.try_recv() {
                        Ok(Ok(())) => {
                            // Acknowledged: durable if a save of it was written.
                            if let Some(saved) = world.logout_saves.remove(&self.player) {
                                self.acked = Some(saved);
                                self.logouts += 1;
                                events
                                    .push(format!("p{p} logged out of n{} at {saved:?}", at.node));
                            }
                            node.call(Call::LoggedOut(self.player, at.session), now);
                            self.retry(world, now, 300, 5_000);
                            State::Offline
                        }
                        Ok(Err(_)) => {
                            self.retry(world, now, 300, 2_000);
                            State::Offline
                        }
                        Err(oneshot::error::TryRecvError::Closed) => {
                            self.retry(world, now, 300, 2_000);
                            State::Offline
                        }
                        Err(_) if now - since > LOGOUT_GIVE_UP => {
                            self.retry(world, now, 300, 2_000);
                            State::Offline
                        }
                        Err(_) => State::LoggingOut { at, reply, since },
                    }
                }
            }
        };
        Ok(events)
    }

    /// Starts a login: on the target node if it is up, else on a random running one.
    fn begin(
        &mut self,
        nodes: &mut [SimNode],
        world: &mut World,
        now: Instant,
        events: &mut Vec<String>,
    ) -> State {
        let (node, arriving) = match self.target.take() {
            Some((node, arriving)) if nodes[node].is_up() => (node, arriving),
            _ => {
                let up: Vec<usize> = nodes
                    .iter()
                    .filter(|n| n.is_up())
                    .map(|n| n.index)
                    .collect();
                if up.is_empty() {
                    self.retry(world, now, 200, 500);
                    return State::Offline;
                }
                (up[world.rng.below(up.len() as u64) as usize], None)
            }
        };
        let n = &mut nodes[node];
        let session = n.session();
        let login = world.token();
        let at = At {
            node,
            incarnation: n.incarnation,
            session,
        };
        let shared = n.run.as_ref().expect("up nodes run").shared.clone();
        shared
            .ledger()
            .begin_login(login, self.player, session, arriving.is_some(), now);
        events.push(format!(
            "p{} logs in on n{node} (session {session}{})",
            self.player.0,
            if arriving.is_some() {
                ", redirected"
            } else {
                ""
            }
        ));
        State::Claiming {
            at,
            login,
            since: now,
            arriving,
        }
    }

    #[allow(clippy::too_many_arguments)] // The playing state's fields, taken apart.
    fn play(
        &mut self,
        nodes: &mut [SimNode],
        world: &mut World,
        now: Instant,
        settling: bool,
        events: &mut Vec<String>,
        at: At,
        mut outbox: SessionInbox,
        until: Instant,
        mut last_state: Instant,
        seq: u32,
    ) -> Result<State, String> {
        let p = self.player.0;
        let node = &mut nodes[at.node];
        if node.incarnation != at.incarnation || !node.is_alive() {
            events.push(format!("p{p} lost its connection to n{}", at.node));
            self.target = Some((at.node, None));
            self.retry(world, now, 500, 3_000);
            return Ok(State::Offline);
        }
        while let Some(out) = outbox.try_recv() {
            match out {
                Outgoing::Datagram(_) | Outgoing::Stream(_) => last_state = now,
                Outgoing::Control(_) => {}
                Outgoing::Kick(kicked) => {
                    // One client per player: a login that takes its live session over can
                    // only be one it gave up on (the crash test's old flake).
                    if kicked.reason == KickReason::LoggedInElsewhere {
                        return Err(format!(
                            "player {p}'s live session on n{} was taken over ({}): by a login its client had given up",
                            at.node, kicked.message
                        ));
                    }
                    events.push(format!(
                        "p{p} kicked from n{}: {:?}",
                        at.node, kicked.reason
                    ));
                    self.retry(world, now, 300, 2_000);
                    return Ok(State::Offline);
                }
                Outgoing::Redirect { addr, region } => {
                    let to = nodes.iter().position(|n| n.addr == addr);
                    events.push(format!(
                        "p{p} redirected from n{} to {addr} (region {})",
                        at.node, region.0
                    ));
                    self.target = to.map(|n| (n, Some(region)));
                    self.next_at = now;
                    return Ok(State::Offline);
                }
            }
        }
        let node = &mut nodes[at.node];
        if now - last_state > STATES_GIVE_UP {
            // The node is frozen (or its outbox full): the connection times out.
            events.push(format!("p{p} times out on n{}", at.node));
            self.detach(node, at, now);
            self.target = Some((at.node, None));
            self.retry(world, now, 500, 3_000);
            return Ok(State::Offline);
        }
        if !settling && now >= until {
            return Ok(self.leave(node, world, now, events, at));
        }
        // Walk (standing still while settling), turning at the world's ends.
        let x = node
            .run
            .as_ref()
            .and_then(|r| {
                r.driver
                    .local()
                    .regions()
                    .iter()
                    .find_map(|region| region.position_of(NetId::of_player(self.player)))
            })
            .map(|position| position.x);
        if let Some(x) = x {
            if x > 112.0 {
                self.east = false;
            } else if x < 8.0 {
                self.east = true;
            }
        }
        let step = match (settling, self.east) {
            (true, _) => 0.0,
            (false, true) => STEP_M,
            (false, false) => -STEP_M,
        };
        let input = InputC2s {
            seq,
            ack_tick: 0,
            frames: vec![InputFrame {
                move_q: quantize_move(Vec2::new(step, 0.0)),
                attack: None,
            }],
        };
        node.call(
            Call::Command(Command::Input {
                player: self.player,
                session: at.session,
                input,
            }),
            now,
        );
        Ok(State::Playing {
            at,
            outbox,
            until,
            last_state,
            seq: seq + 1,
        })
    }

    /// The end of a session, at random: a logout, a dropped connection (the client
    /// resumes later), or a move to another node without a logout.
    fn leave(
        &mut self,
        node: &mut SimNode,
        world: &mut World,
        now: Instant,
        events: &mut Vec<String>,
        at: At,
    ) -> State {
        let p = self.player.0;
        match world.rng.below(10) {
            0..=6 => {
                let (done, reply) = oneshot::channel();
                world.logout_saves.remove(&self.player);
                node.call(
                    Call::Command(Command::Leave {
                        player: self.player,
                        session: at.session,
                        reply: Some(done),
                    }),
                    now,
                );
                events.push(format!("p{p} logs out of n{}", at.node));
                State::LoggingOut {
                    at,
                    reply,
                    since: now,
                }
            }
            7..=8 => {
                events.push(format!("p{p} drops its connection to n{}", at.node));
                self.detach(node, at, now);
                self.target = Some((at.node, None));
                self.retry(world, now, 200, 4_000);
                State::Offline
            }
            _ => {
                events.push(format!("p{p} leaves n{} for another node", at.node));
                self.detach(node, at, now);
                self.next_at = now;
                State::Offline
            }
        }
    }

    /// Its connection to `at` is gone: the session detaches (the avatar waits for a
    /// resume).
    fn detach(&self, node: &mut SimNode, at: At, now: Instant) {
        let detach = Command::Detach {
            player: self.player,
            session: at.session,
        };
        node.call(Call::Command(detach), now);
    }

    /// Offline until a random moment `lo_ms` to `hi_ms` from now.
    fn retry(&mut self, world: &mut World, now: Instant, lo_ms: u64, hi_ms: u64) {
        self.next_at = now
            + world
                .rng
                .between(Duration::from_millis(lo_ms), Duration::from_millis(hi_ms));
    }
}
