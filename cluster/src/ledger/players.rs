//! Players: who is here under which claim, logins claiming a player, and the one-at-a-time
//! queue of writes to each player's location key.
//!
//! A player's key is written by claims (logins), hand overs (departures), adoptions
//! (arrivals) and releases (logouts). On one node these are issued from the player's queue
//! one at a time, in the order the node decided them: a login racing a crossing is
//! ordered against it here, and only nodes race each other (which the store's single-key
//! scripts settle).
//!
//! **Claims of sessions that left.** A login whose client gives up (its connection
//! closes) while it claims, or after its claim but before the driver joined it, leaves the
//! key naming a claim no session holds. Left so, it would make the next hand over of the
//! player fail (the key would not name the avatar's claim) and lose the crossing. So the
//! ledger puts it right: if the key still carries that claim as far as this node knows,
//! it is restamped with the claim of the avatar here, or released if there is none.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use tessera_shared::ids::{HandoffId, PlayerId};

use super::{
    IoAction, IoError, LOGINS_MAX, Ledger, LoginId, LoginRefusal, OpId, PLAYER_OPS_MAX, PlayerMap,
};
use crate::types::{Claim, Move};

/// A write to one player's key.
#[derive(Clone, Copy, Debug)]
pub(super) enum PlayerOp {
    /// A claim for a login, or a restamp of the claim of the avatar here (`login: None`).
    Claim { claim: u64, login: Option<LoginId> },
    /// The hand over of a departure.
    HandOver { handoff: HandoffId, attempt: u32 },
    /// The adoption of an arrival.
    Adopt { m: Move, attempt: u32 },
    /// A release of this node's claim.
    Release { claim: u64 },
}

#[derive(Debug)]
struct Queued {
    op: PlayerOp,
    /// Not before then (a login waiting between claims, a retry).
    not_before: Option<Instant>,
    /// In flight as this operation.
    sent: Option<OpId>,
}

#[derive(Debug)]
struct Login {
    player: PlayerId,
    session: u64,
    redirected: bool,
    deadline: Instant,
    poll: Duration,
    /// Its session left: nobody waits for the outcome.
    abandoned: bool,
}

#[derive(Debug, Default)]
pub(super) struct Players {
    /// The players with an avatar (a view) here, with the claim of its session (`0`: it
    /// arrived by handoff and no login took it since).
    pub(super) here: PlayerMap<u64>,
    /// The claim this node last wrote to each player's key, as far as it knows.
    claims: PlayerMap<u64>,
    queues: PlayerMap<VecDeque<Queued>>,
    /// Each operation in flight, and whose.
    in_flight: BTreeMap<OpId, PlayerId>,
    logins: BTreeMap<LoginId, Login>,
}

impl Players {
    pub(super) fn next_timeout(&self) -> Option<Instant> {
        self.queues
            .values()
            .filter_map(|q| q.front())
            .filter(|q| q.sent.is_none())
            .filter_map(|q| q.not_before)
            .min()
    }

    /// The moves whose adoption is queued or in flight: their keys are still in flight
    /// though the avatar is here, and are refreshed as such.
    pub(super) fn adopting(&self) -> impl Iterator<Item = Move> + '_ {
        self.queues.values().flatten().filter_map(|q| match q.op {
            PlayerOp::Adopt { m, .. } => Some(m),
            _ => None,
        })
    }

    /// An answered release or refresh: the player's next write may go.
    pub(super) fn done(&mut self, op: OpId) {
        if let Some(player) = self.in_flight.remove(&op) {
            self.pop(player, op);
        }
    }

    /// Removes the head of `player`'s queue if it is `op`.
    fn pop(&mut self, player: PlayerId, op: OpId) -> Option<PlayerOp> {
        let queue = self.queues.get_mut(&player)?;
        if queue.front().is_some_and(|q| q.sent == Some(op)) {
            let head = queue.pop_front().map(|q| q.op);
            if queue.is_empty() {
                self.queues.remove(&player);
            }
            head
        } else {
            None
        }
    }

    /// Whether `player` has room for another write.
    fn has_room(&self, player: PlayerId) -> bool {
        self.queues
            .get(&player)
            .is_none_or(|q| q.len() < PLAYER_OPS_MAX)
    }

    /// Queues a write of `player`'s key (always: a departure's or an arrival's write is
    /// never refused; logins are bounded before they queue).
    pub(super) fn push(&mut self, player: PlayerId, op: PlayerOp, not_before: Option<Instant>) {
        self.queues.entry(player).or_default().push_back(Queued {
            op,
            not_before,
            sent: None,
        });
    }

    /// Queues a write of `player`'s key to go next: before anything queued, after what is
    /// in flight (a repair: later writes assume the key it restores).
    fn push_next(&mut self, player: PlayerId, op: PlayerOp) {
        let queue = self.queues.entry(player).or_default();
        let at = usize::from(queue.front().is_some_and(|q| q.sent.is_some()));
        queue.insert(
            at,
            Queued {
                op,
                not_before: None,
                sent: None,
            },
        );
    }

    /// Puts the answered head of `player`'s queue back at its end, to go again after
    /// `not_before` (a waiting login's next claim, a retry).
    fn requeue(&mut self, player: PlayerId, op: OpId, next: PlayerOp, not_before: Instant) {
        if self.pop(player, op).is_some() {
            self.push(player, next, Some(not_before));
        }
    }
}

impl<D: Clone + std::fmt::Debug> Ledger<D> {
    /// `player` has an avatar here, held by a session with `claim` (its session id, `0` for
    /// an avatar that arrived by handoff): its key is kept alive, and a hand over of it
    /// starts from this claim.
    pub fn bind(&mut self, player: PlayerId, claim: u64) {
        self.players.here.insert(player, claim);
    }

    /// `player`'s avatar left this node (a logout, a kick, an expired linger, a region let
    /// go). A departure by handoff is [`Ledger::depart`] instead.
    pub fn unbind(&mut self, player: PlayerId) {
        self.players.here.remove(&player);
    }

    /// The players with an avatar here.
    pub fn here(&self) -> Vec<PlayerId> {
        self.players.here.keys().copied().collect()
    }

    /// A login (`login`, unique) of `player` on `session`: claims the player's key. A
    /// player on its way to a region held here, and a `redirected` login that finds the
    /// player still held by the node it left, wait up to [`super::Timing::arrival_wait`]
    /// for the key to come here. The outcome comes out of [`Ledger::poll_login`].
    pub fn begin_login(
        &mut self,
        login: LoginId,
        player: PlayerId,
        session: u64,
        redirected: bool,
        now: Instant,
    ) {
        if self.players.logins.len() >= LOGINS_MAX || !self.players.has_room(player) {
            let busy = LoginRefusal::Unavailable("too many logins at once; retry".into());
            self.logins_done.push_back((login, Err(busy)));
            return;
        }
        self.players.logins.insert(
            login,
            Login {
                player,
                session,
                redirected,
                deadline: now + self.timing.arrival_wait,
                poll: self.timing.claim_poll_min,
                abandoned: false,
            },
        );
        let claim = PlayerOp::Claim {
            claim: session,
            login: Some(login),
        };
        self.players.push(player, claim, None);
        self.pump(now);
    }

    /// The session of `login` left before its outcome: if its claim was written (or is
    /// being), it is put right (see the module docs).
    pub fn abandon_login(&mut self, login: LoginId, now: Instant) {
        let Some(state) = self.players.logins.get_mut(&login) else {
            return;
        };
        self.stats.logins_abandoned += 1;
        state.abandoned = true;
        let player = state.player;
        // A claim not sent yet is simply dropped; one in flight is settled when answered.
        if let Some(queue) = self.players.queues.get_mut(&player) {
            queue.retain(|q| {
                q.sent.is_some()
                    || !matches!(q.op, PlayerOp::Claim { login: Some(l), .. } if l == login)
            });
            if queue.is_empty() {
                self.players.queues.remove(&player);
            }
        }
        let in_flight = self.players.queues.get(&player).is_some_and(|q| {
            q.iter()
                .any(|q| matches!(q.op, PlayerOp::Claim { login: Some(l), .. } if l == login))
        });
        if !in_flight {
            self.players.logins.remove(&login);
        }
        self.pump(now);
    }

    /// A login whose claim was granted did not join (its session left first): its claim
    /// is put right.
    pub fn join_skipped(&mut self, player: PlayerId, session: u64, now: Instant) {
        self.stats.logins_abandoned += 1;
        self.repair(player, session);
        self.pump(now);
    }

    /// `player` logged out of `session` and its final state is durable: its key is
    /// released (if it is still this claim), so that a login elsewhere may take it at once.
    pub fn logged_out(&mut self, player: PlayerId, session: u64, now: Instant) {
        if self.players.claims.get(&player) == Some(&session) {
            self.players.claims.remove(&player);
        }
        self.players
            .push(player, PlayerOp::Release { claim: session }, None);
        self.pump(now);
    }

    /// The key of `player` may carry `dead`, a claim no session here holds: restamp it
    /// with the avatar's claim, or release it if the player has no avatar here.
    fn repair(&mut self, player: PlayerId, dead: u64) {
        if self.players.claims.get(&player) != Some(&dead) {
            return; // Something newer was written since.
        }
        self.stats.claims_repaired += 1;
        match self.players.here.get(&player) {
            Some(&claim) if claim != dead => {
                let restamp = PlayerOp::Claim { claim, login: None };
                self.players.push_next(player, restamp);
            }
            Some(_) => {}
            None => {
                self.players.claims.remove(&player);
                self.players
                    .push_next(player, PlayerOp::Release { claim: dead });
            }
        }
    }

    /// Emits the head of every player's queue that is ready (hand overs batched, by
    /// first attempt or retry).
    pub(super) fn pump_players(&mut self, now: Instant) {
        let ready: Vec<PlayerId> = self
            .players
            .queues
            .iter()
            .filter(|(_, q)| {
                q.front()
                    .is_some_and(|h| h.sent.is_none() && h.not_before.is_none_or(|t| t <= now))
            })
            .map(|(&p, _)| p)
            .collect();
        let mut hand_overs: [Vec<(PlayerId, HandoffId)>; 2] = [Vec::new(), Vec::new()];
        for player in ready {
            let head = self.players.queues[&player]
                .front()
                .expect("ready heads exist")
                .op;
            let op = self.op();
            let action = match head {
                PlayerOp::Claim { claim, .. } => IoAction::Claim { op, player, claim },
                PlayerOp::Adopt { m, .. } => IoAction::Adopt { op, m },
                PlayerOp::Release { claim } => IoAction::Release { op, player, claim },
                PlayerOp::HandOver { handoff, attempt } => {
                    hand_overs[usize::from(attempt > 0)].push((player, handoff));
                    continue;
                }
            };
            self.mark_sent(player, op, true);
            self.io.push_back(action);
        }
        for (i, batch) in hand_overs.into_iter().enumerate() {
            if batch.is_empty() {
                continue;
            }
            let op = self.op();
            let mut moves = Vec::with_capacity(batch.len());
            for &(player, handoff) in &batch {
                self.mark_sent(player, op, false);
                moves.push(self.handoffs.hand_over_of(handoff));
            }
            self.handoffs.handing_over(op, batch);
            self.io.push_back(IoAction::HandOver {
                op,
                moves,
                first: i == 0,
            });
        }
    }

    /// Marks the head of `player`'s queue in flight as `op`; a `single` operation (not a
    /// batch) is found again by its id alone.
    fn mark_sent(&mut self, player: PlayerId, op: OpId, single: bool) {
        if let Some(head) = self
            .players
            .queues
            .get_mut(&player)
            .and_then(|q| q.front_mut())
        {
            head.sent = Some(op);
        }
        if single {
            self.players.in_flight.insert(op, player);
        }
    }

    /// The single operation `op` answered: removed from its player's queue (the player's
    /// next write may go).
    pub(super) fn player_answered(&mut self, op: OpId) -> Option<(PlayerId, PlayerOp)> {
        let player = self.players.in_flight.remove(&op)?;
        let head = self.players.pop(player, op)?;
        Some((player, head))
    }

    /// `player`'s part of the batch `op` answered: removed from its queue.
    pub(super) fn batch_answered(&mut self, player: PlayerId, op: OpId) {
        self.players.pop(player, op);
    }

    /// The hand over of `player` answered: its key is no longer this node's claim.
    pub(super) fn handed_over(&mut self, player: PlayerId) {
        self.players.claims.remove(&player);
    }

    /// The write `op` at the head of `player`'s queue failed: it goes again, first in the
    /// queue (the player's later writes come after it), after a backoff.
    pub(super) fn retry_head(&mut self, player: PlayerId, op: OpId, now: Instant) {
        self.players.in_flight.remove(&op);
        let Some(head) = self.players.pop(player, op) else {
            return;
        };
        let (next, attempt) = match head {
            PlayerOp::HandOver { handoff, attempt } => (
                PlayerOp::HandOver {
                    handoff,
                    attempt: attempt + 1,
                },
                attempt,
            ),
            PlayerOp::Adopt { m, attempt } => (
                PlayerOp::Adopt {
                    m,
                    attempt: attempt + 1,
                },
                attempt,
            ),
            other => (other, 0),
        };
        let at = now + self.backoff(attempt);
        self.players
            .queues
            .entry(player)
            .or_default()
            .push_front(Queued {
                op: next,
                not_before: Some(at),
                sent: None,
            });
    }

    pub(super) fn on_claim(&mut self, op: OpId, result: Result<Claim, IoError>, now: Instant) {
        let Some(player) = self.players.in_flight.remove(&op) else {
            return;
        };
        let head = self.players.queues[&player]
            .front()
            .map(|q| q.op)
            .expect("an op in flight is its queue's head");
        let PlayerOp::Claim { claim, login } = head else {
            return;
        };
        if let Ok(Claim::Claimed) = result {
            self.players.claims.insert(player, claim);
        }
        let Some(login) = login else {
            // A restamp: done whatever came of it.
            self.players.pop(player, op);
            return;
        };
        let Some(state) = self.players.logins.get(&login) else {
            self.players.pop(player, op);
            return;
        };
        let (redirected, abandoned, session, deadline, poll) = (
            state.redirected,
            state.abandoned,
            state.session,
            state.deadline,
            state.poll,
        );
        let wait = match &result {
            Ok(Claim::Arriving { .. }) => true,
            Ok(Claim::HeldBy { .. }) => redirected,
            _ => false,
        };
        if abandoned {
            self.players.pop(player, op);
            self.players.logins.remove(&login);
            if let Ok(Claim::Claimed) = result {
                self.repair(player, session);
            }
            return;
        }
        if wait && now < deadline {
            let max = self.timing.claim_poll_max;
            if let Some(state) = self.players.logins.get_mut(&login) {
                state.poll = (poll * 2).min(max);
            }
            self.players.requeue(player, op, head, now + poll);
            return;
        }
        self.players.pop(player, op);
        self.players.logins.remove(&login);
        let outcome = match result {
            Ok(Claim::Claimed) => Ok(()),
            Ok(Claim::Arriving { region }) => Err(LoginRefusal::Unavailable(format!(
                "the player's avatar has not arrived in region {} yet",
                region.0
            ))),
            Ok(Claim::HeldBy { node, ttl }) => Err(LoginRefusal::Elsewhere { node, ttl }),
            Err(e) => Err(LoginRefusal::Unavailable(e)),
        };
        self.logins_done.push_back((login, outcome));
    }

    pub(super) fn on_adopt(&mut self, op: OpId, result: Result<bool, IoError>, now: Instant) {
        let Some(&player) = self.players.in_flight.get(&op) else {
            return;
        };
        match result {
            Ok(adopted) => {
                self.player_answered(op);
                if adopted {
                    self.players.claims.insert(player, 0);
                }
            }
            // Tried again while the avatar is here: a key left in flight would keep its
            // player's logins waiting, and lapse.
            Err(_) if self.players.here.contains_key(&player) => self.retry_head(player, op, now),
            Err(_) => {
                self.player_answered(op);
            }
        }
    }
}
