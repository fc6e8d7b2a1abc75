//! Handoffs: departures (hand over, then publish), their redirects, arrivals (receive,
//! check, apply, acknowledge, adopt), logins waiting for an arrival, and the refresh of
//! the keys of the players here.
//!
//! A departure's player is *moving* from when its avatar leaves until its mail is
//! published: a login of it here is refused meanwhile (its avatar is in flight, a login
//! would make a second one), and its redirect waits. The key is handed to the destination
//! region before the mail is published, so the receiving node can tell a fresh handoff
//! from one redelivered after the player moved on.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use tessera_regions::io::HandoffRecord;
use tessera_shared::ids::{HandoffId, PlayerId, RegionId};

use super::players::PlayerOp;
use super::{
    DEPARTURES_MAX, DriverAction, HANDOFFS_IN_LEN_MAX, HandoffIds, Inbound, IoAction, IoError,
    Ledger, OpId, OutMail, PUBLISH_BATCH_MAX, PlayerMap, RECEIVE_MAX, SessionEnd, move_of,
};
use crate::types::Move;
use crate::wire;

#[derive(Debug)]
struct Departure {
    record: HandoffRecord,
    m: Option<Move>,
    /// The claim the avatar had here (`None`: no view; any claim of this node).
    claim: Option<u64>,
    /// Its key is handed over (or it carries no player): its mail may be published.
    handed: bool,
    /// Being published.
    publishing: bool,
}

#[derive(Debug)]
struct Redirect {
    region: RegionId,
    handoff: HandoffId,
    deadline: Instant,
}

/// A received handoff.
#[derive(Debug)]
struct Arrival<D> {
    record: HandoffRecord,
    delivery: D,
    /// The epoch of the holding that received it: a check of its key holds only while
    /// that holding does (a region lost and taken again must check it again).
    epoch: u64,
}

#[derive(Debug)]
pub(super) struct Handoffs<D> {
    departures: BTreeMap<HandoffId, Departure>,
    /// The departure of each moving player.
    moving: PlayerMap<HandoffId>,
    /// Hand overs in flight: their departures.
    handing: BTreeMap<OpId, Vec<(PlayerId, HandoffId)>>,
    /// The publish in flight and what it carries.
    publishing: Option<(OpId, Vec<HandoffId>)>,
    publish_attempt: u32,
    publish_at: Instant,
    redirects: PlayerMap<Redirect>,
    /// Receives in flight, by region, with how many they asked for.
    /// Receives in flight: the region, how many they asked for, the holding's epoch.
    receiving: BTreeMap<OpId, (RegionId, usize, u64)>,
    next_receive: Instant,
    /// Checks in flight: their arrivals (players' first, in order, then the others).
    checking: BTreeMap<OpId, Vec<Arrival<D>>>,
    /// Fresh arrivals for the driver.
    ready: VecDeque<Arrival<D>>,
    /// Arrivals in the regions' inputs (applied after the next step, or deferred).
    applying: Vec<Arrival<D>>,
    /// Logins waiting for their player's arrival: by session, the player and until when.
    awaiting: BTreeMap<u64, (PlayerId, Instant)>,
    refresh_op: Option<OpId>,
    next_refresh: Instant,
}

impl<D> Handoffs<D> {
    pub(super) fn new(now: Instant) -> Self {
        Handoffs {
            departures: BTreeMap::new(),
            moving: BTreeMap::new(),
            handing: BTreeMap::new(),
            publishing: None,
            publish_attempt: 0,
            publish_at: now,
            redirects: BTreeMap::new(),
            receiving: BTreeMap::new(),
            next_receive: now,
            checking: BTreeMap::new(),
            ready: VecDeque::new(),
            applying: Vec::new(),
            awaiting: BTreeMap::new(),
            refresh_op: None,
            next_refresh: now,
        }
    }

    pub(super) fn next_timeout(&self, receiving: bool) -> Option<Instant> {
        let publish = (self.publishing.is_none() && self.departures.values().any(|d| d.handed))
            .then_some(self.publish_at);
        let receive = receiving.then_some(self.next_receive);
        let refresh = self.refresh_op.is_none().then_some(self.next_refresh);
        [publish, receive, refresh].into_iter().flatten().min()
    }

    /// Received handoffs held: the bound [`HANDOFFS_IN_LEN_MAX`] counts them all.
    fn inbound_len(&self) -> usize {
        self.ready.len()
            + self.applying.len()
            + self.checking.values().map(Vec::len).sum::<usize>()
            + self.receiving.values().map(|(_, n, _)| n).sum::<usize>()
    }

    /// The move and claim a hand over of `handoff` starts from.
    pub(super) fn hand_over_of(&self, handoff: HandoffId) -> (Move, Option<u64>) {
        let d = &self.departures[&handoff];
        (
            d.m.expect("only players' departures are handed over"),
            d.claim,
        )
    }

    pub(super) fn handing_over(&mut self, op: OpId, batch: Vec<(PlayerId, HandoffId)>) {
        self.handing.insert(op, batch);
    }

    pub(super) fn refresh_done(&mut self, op: OpId) {
        if self.refresh_op == Some(op) {
            self.refresh_op = None;
        }
    }
}

impl<D: Clone + std::fmt::Debug> Ledger<D> {
    /// Whether `player` was handed off from here and its mail is not published yet (its
    /// avatar is in flight: a login here must wait).
    pub fn is_moving(&self, player: PlayerId) -> bool {
        self.handoffs.moving.contains_key(&player)
    }

    /// Whether the ledger takes another departure now (at most [`DEPARTURES_MAX`] held).
    pub fn has_room_to_depart(&self) -> bool {
        self.handoffs.departures.len() < DEPARTURES_MAX
    }

    /// An avatar left a held region for one held elsewhere (or, in a transfer, for its
    /// own region's next holder): its key is handed over, then its mail published. If its
    /// session is to follow it (`redirect`: how long it may wait), a `Redirect` goes out
    /// once the handoff is durable and the destination's address known.
    pub fn depart(&mut self, record: HandoffRecord, redirect: Option<Duration>, now: Instant) {
        let id = record.id;
        let m = move_of(&record);
        let claim = m.and_then(|m| self.players.here.remove(&m.player));
        if let Some(m) = m {
            self.handoffs.moving.insert(m.player, id);
            if let Some(wait) = redirect {
                self.handoffs.redirects.insert(
                    m.player,
                    Redirect {
                        region: record.to,
                        handoff: id,
                        deadline: now + wait,
                    },
                );
            }
            let op = PlayerOp::HandOver {
                handoff: id,
                attempt: 0,
            };
            self.players.push(m.player, op, None);
        }
        self.handoffs.departures.insert(
            id,
            Departure {
                record,
                m,
                claim,
                handed: m.is_none(),
                publishing: false,
            },
        );
        self.pump(now);
    }

    pub(super) fn on_hand_over(
        &mut self,
        op: OpId,
        result: Result<Vec<bool>, IoError>,
        now: Instant,
    ) {
        let Some(batch) = self.handoffs.handing.remove(&op) else {
            return;
        };
        match result {
            Ok(handed) if handed.len() == batch.len() => {
                for (&(player, handoff), handed) in batch.iter().zip(handed) {
                    self.batch_answered(player, op);
                    if handed {
                        self.handed_over(player);
                        if let Some(d) = self.handoffs.departures.get_mut(&handoff) {
                            d.handed = true;
                        }
                    } else {
                        // A newer login here (or another holder) has the player: that
                        // login has it, the handoff would be refused by its receiver.
                        self.handoffs.departures.remove(&handoff);
                        self.handoffs.moving.remove(&player);
                        self.stats.handoffs_dropped += 1;
                        if self.handoffs.redirects.remove(&player).is_some() {
                            self.driver.push_back(DriverAction::EndSession {
                                player,
                                why: SessionEnd::TakenOver,
                            });
                        }
                    }
                }
            }
            _ => {
                for (player, _) in batch {
                    self.retry_head(player, op, now);
                }
            }
        }
    }

    pub(super) fn on_publish(
        &mut self,
        op: OpId,
        result: Result<Vec<usize>, IoError>,
        now: Instant,
    ) {
        let Some((sent, ids)) = self.handoffs.publishing.take() else {
            return;
        };
        if sent != op {
            self.handoffs.publishing = Some((sent, ids));
            return;
        }
        for id in &ids {
            if let Some(d) = self.handoffs.departures.get_mut(id) {
                d.publishing = false;
            }
        }
        match result {
            Ok(refused) => {
                self.handoffs.publish_attempt = 0;
                let refused: HandoffIds = refused
                    .iter()
                    .filter_map(|&i| ids.get(i))
                    .copied()
                    .collect();
                if !refused.is_empty() {
                    self.handoffs.publish_at = now + self.timing.lane_full_retry;
                }
                for id in ids.iter().filter(|id| !refused.contains(id)) {
                    if let Some(d) = self.handoffs.departures.remove(id) {
                        self.stats.handoffs_out += 1;
                        if let Some(m) = d.m {
                            self.handoffs.moving.remove(&m.player);
                        }
                    }
                }
                self.settle_redirects(now);
            }
            Err(_) => {
                let attempt = self.handoffs.publish_attempt;
                self.handoffs.publish_attempt += 1;
                self.handoffs.publish_at = now + self.backoff(attempt);
            }
        }
    }

    /// Redirects whose handoff is durable go out (once the region's address is known);
    /// those past their wait end their session.
    pub(super) fn settle_redirects(&mut self, now: Instant) {
        let players: Vec<PlayerId> = self.handoffs.redirects.keys().copied().collect();
        for player in players {
            let r = &self.handoffs.redirects[&player];
            let durable = !self.handoffs.departures.contains_key(&r.handoff);
            let address = self.address_of(r.region).map(str::to_owned);
            let action = match address {
                Some(addr) if durable => DriverAction::Redirect {
                    player,
                    addr,
                    region: r.region,
                },
                _ if r.deadline <= now => DriverAction::EndSession {
                    player,
                    why: SessionEnd::HandoffFailed,
                },
                _ => continue,
            };
            match action {
                DriverAction::Redirect { .. } => self.stats.redirects += 1,
                _ => self.stats.redirects_failed += 1,
            }
            self.handoffs.redirects.remove(&player);
            self.driver.push_back(action);
        }
    }

    /// A redirected login (`session`) of `player`, whose handoff into a region held here
    /// has not arrived: it waits up to [`super::Timing::arrival_wait`]
    /// ([`DriverAction::JoinNow`] when it arrives, or when the wait is over).
    pub fn await_arrival(&mut self, session: u64, player: PlayerId, now: Instant) {
        let until = now + self.timing.arrival_wait;
        self.handoffs.awaiting.insert(session, (player, until));
    }

    pub(super) fn settle_awaiting(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .handoffs
            .awaiting
            .iter()
            .filter(|(_, (_, until))| *until <= now)
            .map(|(&s, _)| s)
            .collect();
        for session in due {
            self.handoffs.awaiting.remove(&session);
            self.driver.push_back(DriverAction::JoinNow { session });
        }
    }

    /// Fresh arrivals into the active regions, for the driver to put into their next
    /// inputs (each region applies a handoff id at most once). Arrivals for a region no
    /// longer active are left unacknowledged: the bus delivers them to its next holder.
    pub fn take_arrivals(&mut self) -> Vec<HandoffRecord> {
        let mut records = Vec::with_capacity(self.handoffs.ready.len());
        while let Some(arrival) = self.handoffs.ready.pop_front() {
            // Checked under the holding that still steps the region: fresh. Otherwise its
            // key may have moved on since (the region was lost meanwhile): it waits for its
            // redelivery, and a check under the holding that gets it.
            if self.holds_active(arrival.record.to, arrival.epoch) {
                records.push(arrival.record);
                self.handoffs.applying.push(arrival);
            }
        }
        records
    }

    /// After the regions stepped: the arrivals they applied (not `deferred`, into a region
    /// still `stepped`) are acknowledged; those of players whose avatar is now here
    /// (`present`) have their keys adopted and are returned, for the driver to give each
    /// a view (and [`Ledger::bind`] it with claim 0). Logins waiting for them may join.
    pub fn settle_arrivals(
        &mut self,
        deferred: &dyn Fn(HandoffId) -> bool,
        stepped: &dyn Fn(RegionId) -> bool,
        present: &dyn Fn(&HandoffRecord) -> bool,
        now: Instant,
    ) -> Vec<(PlayerId, RegionId)> {
        let mut arrived = Vec::new();
        let mut acks: BTreeMap<RegionId, Vec<D>> = BTreeMap::new();
        for arrival in std::mem::take(&mut self.handoffs.applying) {
            let region = arrival.record.to;
            if !stepped(region) || self.holding_epoch(region) != Some(arrival.epoch) {
                continue; // Let go or lost: its next holder gets it.
            }
            if deferred(arrival.record.id) {
                self.handoffs.applying.push(arrival);
                continue;
            }
            self.stats.handoffs_in += 1;
            acks.entry(region).or_default().push(arrival.delivery);
            let Some(m) = move_of(&arrival.record) else {
                continue;
            };
            if present(&arrival.record) {
                arrived.push((m.player, region));
                let adopt = PlayerOp::Adopt { m, attempt: 0 };
                self.players.push(m.player, adopt, None);
            }
        }
        for (region, deliveries) in acks {
            self.io.push_back(IoAction::Ack { region, deliveries });
        }
        let waiting: Vec<u64> = self
            .handoffs
            .awaiting
            .iter()
            .filter(|(_, (p, _))| arrived.iter().any(|(a, _)| a == p))
            .map(|(&s, _)| s)
            .collect();
        for session in waiting {
            self.handoffs.awaiting.remove(&session);
            self.driver.push_back(DriverAction::JoinNow { session });
        }
        self.pump(now);
        arrived
    }

    pub(super) fn pump_handoffs(&mut self, now: Instant) {
        // Publish: one batch in flight at a time.
        if self.handoffs.publishing.is_none() && self.handoffs.publish_at <= now {
            let ids: Vec<HandoffId> = self
                .handoffs
                .departures
                .iter()
                .filter(|(_, d)| d.handed && !d.publishing)
                .map(|(&id, _)| id)
                .take(PUBLISH_BATCH_MAX)
                .collect();
            if !ids.is_empty() {
                let op = self.op();
                let mail = ids
                    .iter()
                    .map(|id| {
                        let d = self.handoffs.departures.get_mut(id).expect("listed above");
                        d.publishing = true;
                        OutMail {
                            to: d.record.to,
                            key: wire::handoff_key(*id),
                            payload: wire::encode_handoff(&d.record),
                        }
                    })
                    .collect();
                self.handoffs.publishing = Some((op, ids));
                self.io.push_back(IoAction::Publish { op, mail });
            }
        }
        // Receive: each active region polled every `receive_poll`, within the bound.
        if self.handoffs.next_receive <= now {
            self.handoffs.next_receive = now + self.timing.receive_poll;
            let active: Vec<RegionId> = self.regions.active().collect();
            for region in active {
                if self
                    .handoffs
                    .receiving
                    .values()
                    .any(|(r, _, _)| *r == region)
                {
                    continue;
                }
                let room = HANDOFFS_IN_LEN_MAX.saturating_sub(self.handoffs.inbound_len());
                if room == 0 {
                    break;
                }
                let max = room.min(RECEIVE_MAX);
                let Some(epoch) = self.holding_epoch(region) else {
                    continue;
                };
                let op = self.op();
                self.handoffs.receiving.insert(op, (region, max, epoch));
                self.io.push_back(IoAction::Receive { op, region, max });
            }
        }
        // Refresh: the keys of the players here, of the deferred arrivals, and of the
        // arrived players not adopted yet.
        if self.handoffs.refresh_op.is_none() && self.handoffs.next_refresh <= now {
            self.handoffs.next_refresh = now + self.timing.location_refresh;
            let players = self.here();
            let in_flight: Vec<Move> = self
                .handoffs
                .applying
                .iter()
                .filter_map(|a| move_of(&a.record))
                .chain(self.players.adopting())
                .collect();
            if !players.is_empty() || !in_flight.is_empty() {
                let op = self.op();
                self.handoffs.refresh_op = Some(op);
                self.io.push_back(IoAction::Refresh {
                    op,
                    players,
                    in_flight,
                });
            }
        }
    }

    pub(super) fn on_receive(&mut self, op: OpId, result: Result<Vec<Inbound<D>>, IoError>) {
        let Some((region, _, epoch)) = self.handoffs.receiving.remove(&op) else {
            return;
        };
        let Ok(deliveries) = result else {
            return; // Polled again; nothing was taken.
        };
        if !self.holds_active(region, epoch) {
            return; // Let go meanwhile: the next holder gets them (after the reclaim).
        }
        let mut players = Vec::new();
        let mut others = Vec::new();
        for inbound in deliveries {
            match wire::decode_handoff(&inbound.payload) {
                Some(record) if record.to == region => {
                    let arrival = Arrival {
                        record,
                        delivery: inbound.delivery,
                        epoch,
                    };
                    if arrival.record.entity.player.is_some() {
                        players.push(arrival);
                    } else {
                        others.push(arrival);
                    }
                }
                // Never acknowledged: after `deliveries_max` deliveries it is a dead letter.
                _ => self.stats.handoffs_malformed += 1,
            }
        }
        // Only avatars cross; anything else goes on to be refused and counted by the region.
        self.handoffs.ready.extend(others);
        if !players.is_empty() {
            let op = self.op();
            let moves = players.iter().filter_map(|a| move_of(&a.record)).collect();
            self.handoffs.checking.insert(op, players);
            self.io.push_back(IoAction::Accepts { op, moves });
        }
    }

    pub(super) fn on_accepts(&mut self, op: OpId, result: Result<Vec<bool>, IoError>) {
        let Some(mut arrivals) = self.handoffs.checking.remove(&op) else {
            return;
        };
        // Unchecked: left pending, delivered again after the bus's reclaim time.
        let Ok(mut accepted) = result else { return };
        if accepted.len() == arrivals.len() {
            // Regions lost since the check was sent: their arrivals wait for a new one.
            let keep: Vec<bool> = arrivals
                .iter()
                .map(|a| self.holds_active(a.record.to, a.epoch))
                .collect();
            let mut flags = keep.iter();
            arrivals.retain(|_| *flags.next().unwrap_or(&false));
            let mut flags = keep.iter();
            accepted.retain(|_| *flags.next().unwrap_or(&false));
        }
        if accepted.len() != arrivals.len() {
            return;
        }
        let mut stale: BTreeMap<RegionId, Vec<D>> = BTreeMap::new();
        for (arrival, fresh) in arrivals.into_iter().zip(accepted) {
            // Its player has an avatar here already (this handoff applied before, its
            // acknowledgement lost): applying it again would make a second one.
            let here = arrival
                .record
                .entity
                .player
                .is_some_and(|p| self.players.here.contains_key(&p));
            if fresh && !here {
                self.handoffs.ready.push_back(arrival);
            } else {
                // Redelivered after its player moved on (a crash between applying and
                // acknowledging it): done with.
                self.stats.handoffs_stale += 1;
                stale
                    .entry(arrival.record.to)
                    .or_default()
                    .push(arrival.delivery);
            }
        }
        for (region, deliveries) in stale {
            self.io.push_back(IoAction::Ack { region, deliveries });
        }
    }
}
