//! Sessions at the driver: logins (onto an avatar here, or a new one in the region holding
//! the saved position), logouts, dropped connections lingering for a resume, inputs.

use std::collections::HashMap;

use tessera_persistence::directory::PresenceUpdate;
use tessera_regions::io::{Join, JoinRefusal, PlayerInput, SavedPlayer, SessionEvent};
use tessera_shared::ids::{NetId, PlayerId, RegionId};
use tessera_shared::protocol::delta::DeltaEncoder;
use tessera_shared::protocol::messages::*;
use tessera_shared::protocol::quantize::dequantize_move;
use tokio::sync::oneshot;

use super::{ActionResult, Command, Driver, Joined, LOGIN_RETRY_AFTER_MS, Outgoing, claim_of};
use crate::players::SaveRequest;
use crate::views::{BudgetLimits, ClientBudget};

/// A login waiting to be applied.
#[derive(Debug)]
pub(super) struct PendingJoin {
    pub(super) player: PlayerId,
    pub(super) name: String,
    pub(super) session: u64,
    pub(super) outbox: super::SessionOutbox,
    pub(super) saved: Option<SavedPlayer>,
    /// Where it starts without a save, if its token said.
    pub(super) start: Option<RegionId>,
    pub(super) reply: oneshot::Sender<Result<Joined, ErrorS2c>>,
    /// The region its avatar joins (set once queued into that region's input).
    pub(super) region: Option<RegionId>,
}

/// One connected player's view, as its client knows it.
#[derive(Debug)]
pub(super) struct ClientView {
    pub(super) session: u64,
    pub(super) outbox: super::SessionOutbox,
    /// The view (its newest snapshot: the visible entities, sorted by id, in wire units)
    /// and the snapshots the client may acknowledge.
    pub(super) encoder: DeltaEncoder,
    /// The region whose interest diffs the view is built from. A diff from another (the
    /// player crossed a border on this node) rebuilds it from nothing: the old region
    /// will not report its entities as left.
    pub(super) view_region: Option<RegionId>,
    /// The ghosts in the view (entities of regions held elsewhere), sorted by id. No
    /// region reports them as left, so each tick they are dropped and merged afresh.
    pub(super) ghosts: Vec<NetId>,
    pub(super) ack_tick: u64,
    /// Set while the connection is gone and the avatar waits for a resume: its view is
    /// kept current, nothing is encoded or sent.
    pub(super) detached: bool,
    /// The deaths this client is told of this tick (`EventS2c::Death`, PROTOCOL.md
    /// section 6 rule 5): gathered during the fan-out, sent and cleared at its end, so
    /// empty between ticks. At most the deaths of the tick on this node.
    pub(super) deaths: Vec<NetId>,
    /// What its states may cost, and the changes waiting for room (`views::budget`).
    pub(super) budget: ClientBudget,
    /// When the player entered the world on this node, Unix ms: its session's key in
    /// the player directory.
    pub(super) since_ms: u64,
}

impl ClientView {
    pub(super) fn new(
        session: u64,
        outbox: super::SessionOutbox,
        detached: bool,
        limits: &BudgetLimits,
    ) -> Self {
        ClientView {
            session,
            outbox,
            encoder: DeltaEncoder::default(),
            view_region: None,
            ghosts: Vec::new(),
            ack_tick: 0,
            detached,
            deaths: Vec::new(),
            budget: ClientBudget::new(limits),
            since_ms: crate::economy::now_unix_ms(),
        }
    }

    /// Ends the session with `reason` (dropped if its outbox is full or gone: the session
    /// ends anyway once its avatar is out).
    pub(super) fn kick(&self, reason: KickReason, message: impl Into<String>) {
        let _ = self.outbox.try_send(Outgoing::Kick(KickedS2c {
            reason,
            message: message.into(),
        }));
    }
}

/// A detached avatar waiting for its client: evicted at `until_tick` unless resumed.
#[derive(Clone, Copy, Debug)]
pub(super) struct Linger {
    pub(super) player: PlayerId,
    pub(super) session: u64,
    pub(super) until_tick: u64,
}

/// A region to let go after the next step.
#[derive(Debug)]
pub(super) struct Releasing {
    pub(super) region: RegionId,
    pub(super) transfer: bool,
    pub(super) reply: oneshot::Sender<ActionResult>,
}

impl Driver {
    pub(super) fn apply(&mut self, command: Command, first_region: RegionId) {
        match command {
            Command::Join {
                player,
                name,
                session,
                outbox,
                saved,
                arriving,
                start,
                reply,
            } => {
                let join = PendingJoin {
                    player,
                    name,
                    session,
                    outbox,
                    saved,
                    start,
                    reply,
                    region: None,
                };
                self.login(join, arriving, first_region);
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
                let until_tick = self.current_tick().saturating_add(self.resume_linger_ticks);
                self.lingering.push_back(Linger {
                    player,
                    session,
                    until_tick,
                });
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
            Command::Admin { action, reply } => self.admin(action, reply),
            Command::Chat {
                from,
                session,
                radius_m,
                message,
                reply,
            } => {
                let _ = reply.send(self.chat_nearby(from, session, radius_m, *message));
            }
            Command::DeliverChat { message, reply } => {
                let reached = self.deliver_chat(*message);
                if let Some(reply) = reply {
                    let _ = reply.send(reached);
                }
            }
            Command::Who { player, reply } => {
                let _ = reply.send(self.who(player));
            }
            Command::Notify { player, message } => {
                if let Some(view) = self.clients.get(&player).filter(|v| !v.detached) {
                    let _ = view.outbox.try_send(Outgoing::Control(message));
                }
            }
            Command::Economy { session, tx, reply } => {
                let holds = self
                    .clients
                    .get(&tx.player)
                    .is_some_and(|v| v.session == session);
                if holds {
                    self.send_economy_request(*tx, Some(reply));
                } else {
                    let _ = reply.send(Err(tessera_persistence::StoreError::Unavailable(
                        "the player is not in the world on this node".into(),
                    )));
                }
            }
            Command::Input {
                player,
                session,
                input,
            } => self.input(player, session, input),
        }
    }

    /// A login command: joined now, refused (its player is moving to another node), or
    /// waiting for its player's handoff into a region held here.
    fn login(&mut self, join: PendingJoin, arriving: Option<RegionId>, first_region: RegionId) {
        let player = join.player;
        let here = self.clients.contains_key(&player);
        let awaited =
            arriving.filter(|&r| self.cluster.is_some() && self.local.region(r).is_some() && !here);
        // Handed off to another node, its location not yet there: its avatar is in
        // flight, and a login here would make a second one.
        let moving =
            awaited.is_none() && !here && self.ledger().is_some_and(|l| l.is_moving(player));
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
            let (session, now) = (join.session, self.now);
            if let Some(mut ledger) = self.ledger() {
                ledger.await_arrival(session, player, now);
            }
            self.awaiting.insert(session, join);
            return;
        }
        self.join(join, first_region);
    }

    /// A login: onto the avatar already here (a resume, a takeover, an arrival), or a new
    /// avatar in the region holding the saved position.
    pub(super) fn join(&mut self, join: PendingJoin, first_region: RegionId) {
        let player = join.player;
        // The client gave up on this login (its session is gone): it must not take the
        // player over from the session the client's next attempt opened. (Its claim, if
        // it made one, is put right by the session's side.)
        if join.reply.is_closed() {
            self.stats.counters.logins_abandoned += 1;
            return;
        }
        let tick = self.current_tick();
        if let Some(view) = self.clients.get_mut(&player) {
            // Takeover or resume: the avatar stays; a live old session is told
            // why it ends.
            if view.detached {
                self.stats.counters.resumed += 1;
            } else {
                view.kick(
                    KickReason::LoggedInElsewhere,
                    "logged in from another connection",
                );
            }
            view.detached = false;
            view.session = join.session;
            view.outbox = join.outbox;
            view.encoder.forget_sent();
            view.ack_tick = 0;
            let region = self.region_of.get(&player).copied().unwrap_or(first_region);
            // Input sequence numbers are per connection: the new one starts at 1. Inputs
            // the old connection got queued this tick would otherwise come after the reset.
            if let Some(input) = self.local.input_mut(region) {
                input.inputs.retain(|i| i.player != player);
                input.sessions.push(SessionEvent::NewConnection(player));
            }
            if let Some(mut ledger) = self.ledger() {
                ledger.bind(player, claim_of(join.session));
            }
            let _ = join.reply.send(Ok(Joined { region, tick }));
            return;
        }
        // A login of this player already joins at this step: this one takes it over (one
        // avatar, one pending login per player; the earlier session is refused).
        if let Some(pending) = self.pending_joins.iter_mut().find(|j| j.player == player) {
            let superseded = std::mem::replace(
                pending,
                PendingJoin {
                    region: pending.region,
                    saved: pending.saved,
                    ..join
                },
            );
            let _ = superseded.reply.send(Err(ErrorS2c {
                code: ErrorCode::RegionUnavailable,
                message: "logged in from another connection".into(),
                retry_after_ms: Some(LOGIN_RETRY_AFTER_MS),
            }));
            return;
        }
        // Into the region holding the saved position, or without a save the token's
        // start region (the first one otherwise, or if that region is not on this node).
        let region = match join.saved {
            Some(saved) => self.config.world.region_at(saved.position).map(|r| r.id),
            None => join.start,
        }
        .unwrap_or(first_region);
        let region = if self.local.region(region).is_some() {
            region
        } else {
            first_region
        };
        let Some(input) = self.local.input_mut(region) else {
            // This node holds no region (all leases lost).
            let _ = join.reply.send(Err(ErrorS2c {
                code: ErrorCode::RegionUnavailable,
                message: "this node holds no region".into(),
                retry_after_ms: Some(LOGIN_RETRY_AFTER_MS),
            }));
            return;
        };
        input.sessions.push(SessionEvent::Join(Join {
            player,
            saved: join.saved,
        }));
        self.pending_joins.push(PendingJoin {
            region: Some(region),
            ..join
        });
    }

    fn input(&mut self, player: PlayerId, session: u64, input: InputC2s) {
        let tick = self.current_tick();
        let Some(view) = self
            .clients
            .get_mut(&player)
            .filter(|v| v.session == session)
        else {
            self.stats.counters.inputs_stale_session += 1;
            return;
        };
        // Ticks are per node: an ack of a tick this node has not reached is another
        // node's (a client that kept its ack across a redirect) and would discard every
        // baseline, so it is ignored.
        if input.ack_tick <= tick {
            view.ack_tick = view.ack_tick.max(input.ack_tick);
        }
        let Some(region) = self.region_of.get(&player).copied() else {
            return;
        };
        if self.frozen.contains_key(&region) {
            self.stats.counters.inputs_frozen += 1;
            return;
        }
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

    /// Takes `player`'s avatar out of the world and forgets its view.
    pub(super) fn remove_player(&mut self, player: PlayerId) {
        self.forget_view(player);
        if let Some(mut ledger) = self.ledger() {
            ledger.unbind(player);
        }
        if let Some(region) = self.region_of.remove(&player)
            && let Some(input) = self.local.input_mut(region)
        {
            input.sessions.push(SessionEvent::Leave(player));
        }
    }

    /// Takes `player`'s view out of this node's sessions, telling the directory that it
    /// left the world here; the view, for a caller that still has a use for it.
    pub(super) fn forget_view(&mut self, player: PlayerId) -> Option<ClientView> {
        let view = self.clients.remove(&player)?;
        self.tell_directory(PresenceUpdate::Left {
            player,
            node: self.config.node.name.clone(),
            since_ms: view.since_ms,
            at_ms: crate::economy::now_unix_ms(),
        });
        Some(view)
    }

    /// Hands `update` to the directory's writer, if there is one (never waits).
    pub(super) fn tell_directory(&self, update: PresenceUpdate) {
        self.publish_session(&update);
        if let Some(presence) = &self.presence {
            presence.tell(update);
        }
    }

    /// Removes the avatars whose clients did not resume within [`super::RESUME_LINGER`].
    pub(super) fn evict_detached(&mut self) {
        let tick = self.current_tick();
        while let Some(&linger) = self.lingering.front() {
            if linger.until_tick > tick {
                break;
            }
            self.lingering.pop_front();
            // Still the same detached session (not resumed, not taken over)?
            if self
                .clients
                .get(&linger.player)
                .is_some_and(|v| v.detached && v.session == linger.session)
            {
                self.stats.counters.resume_expired += 1;
                self.remove_player(linger.player);
            }
        }
    }

    /// Lets the avatar of `player` (on `session`) wait for its client from now on.
    pub(super) fn linger(&mut self, player: PlayerId, session: u64) {
        let until_tick = self.current_tick().saturating_add(self.resume_linger_ticks);
        self.lingering.push_back(Linger {
            player,
            session,
            until_tick,
        });
    }

    /// Answers the logins and logouts of this tick and saves departed players.
    pub(super) fn settle_sessions(&mut self, tick: u64) {
        let mut refused: HashMap<PlayerId, JoinRefusal> = HashMap::new();
        let mut departed = Vec::new();
        // Where each avatar that crossed a border this step went (a joining one too: it
        // may land outside its region and cross at once).
        let mut crossed: HashMap<PlayerId, RegionId> = HashMap::new();
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
                    crossed.insert(player, record.to);
                }
            }
        }
        for request in departed {
            self.send_save(request);
        }
        for join in std::mem::take(&mut self.pending_joins) {
            let (player, session) = (join.player, join.session);
            if let Some(why) = refused.get(&player) {
                let (code, message) = match why {
                    JoinRefusal::RegionFull => (ErrorCode::ServerFull, "the region is full"),
                    JoinRefusal::AlreadyPresent => {
                        (ErrorCode::RegionUnavailable, "already in the world")
                    }
                    _ => (ErrorCode::Internal, "login refused"),
                };
                let _ = join.reply.send(Err(ErrorS2c {
                    code,
                    message: message.into(),
                    retry_after_ms: Some(LOGIN_RETRY_AFTER_MS),
                }));
                continue;
            }
            let region = join.region.expect("queued joins know their region");
            // Its region may have gone since it was queued (let go): no avatar, no login.
            let joined = crossed.contains_key(&player)
                || self
                    .local
                    .region(region)
                    .is_some_and(|r| r.position_of(NetId::of_player(player)).is_some());
            if !joined {
                let _ = join.reply.send(Err(ErrorS2c {
                    code: ErrorCode::RegionUnavailable,
                    message: "the region is no longer held here; retry".into(),
                    retry_after_ms: Some(LOGIN_RETRY_AFTER_MS),
                }));
                continue;
            }
            self.region_of.insert(player, region);
            if let Some(mut ledger) = self.ledger() {
                ledger.bind(player, claim_of(session));
            }
            // A session that left while its avatar joined: the avatar waits for a resume
            // like that of any dropped connection (the session's own detach came before
            // its view existed).
            let gone = join.reply.send(Ok(Joined { region, tick })).is_err();
            if gone {
                self.stats.counters.logins_abandoned += 1;
                self.linger(player, session);
            }
            let view = ClientView::new(session, join.outbox, gone, &self.budget_limits);
            self.tell_directory(PresenceUpdate::Login {
                player,
                name: Some(join.name),
                level: tessera_persistence::economy::START_LEVEL,
                node: self.config.node.name.clone(),
                region,
                at_ms: view.since_ms,
            });
            self.clients.insert(player, view);
            self.tell_if_frozen(player, region);
            // Every login asks: the kit's one key per player makes all but the first a
            // duplicate.
            self.send_economy(crate::economy::starter_kit_tx(
                player,
                crate::economy::now_unix_ms(),
            ));
        }
        // After the joins: an avatar that joined and crossed at once is where it went.
        let at_ms = crate::economy::now_unix_ms();
        for (&player, &region) in &crossed {
            if let Some(&from) = self.region_of.get(&player)
                && self.local.region(region).is_some()
            {
                self.publish_local_crossing(player.0, from, region);
            }
            if self.clients.contains_key(&player) {
                self.tell_directory(PresenceUpdate::Seen {
                    player,
                    node: self.config.node.name.clone(),
                    region,
                    at_ms,
                });
            }
        }
        self.region_of.extend(crossed);
        // Logouts whose player left no state (it was in flight between regions).
        for (_, reply) in self.pending_leaves.drain() {
            let _ = reply.send(Ok(()));
        }
    }
}
