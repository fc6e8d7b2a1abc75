//! The driver's side of the cluster: what the tick tells the ledger (lost regions dropped,
//! arrivals queued and settled, departures handed in, players bound and unbound) and what
//! the ledger tells the tick (redirect, end, join now), plus the ghosts published each
//! tick. The decisions are the ledger's ([`tessera_cluster::Ledger`]); this is plumbing.

use std::collections::HashSet;
use std::sync::MutexGuard;
use std::time::Duration;

use tessera_cluster::{DriverAction, Ledger, SessionEnd};
use tessera_persistence::bus::{Delivery, GhostUpdate};
use tessera_regions::io::HandoffRecord;
use tessera_shared::ids::{HandoffId, NetId, PlayerId, RegionId};
use tessera_shared::protocol::messages::KickReason;

use super::sessions::ClientView;
use super::{DEPARTURES_BACKLOG_MAX, Driver, Outgoing, REDIRECT_WAIT};

impl Driver {
    /// The ledger, locked (none: a node on its own).
    pub(super) fn ledger(&self) -> Option<MutexGuard<'_, Ledger<Delivery>>> {
        self.cluster.as_ref().map(|c| c.shared.ledger())
    }

    /// Lets the ledger settle its deadlines, then stops stepping the regions whose lease
    /// was lost, ending their players' sessions (another node takes the region over from
    /// its last snapshot; the players log in again there).
    pub(super) fn drop_lost_regions(&mut self) {
        let now = self.now;
        let Some(lost) = self.ledger().map(|mut ledger| {
            ledger.tick(now);
            ledger.take_lost()
        }) else {
            return;
        };
        for region in lost {
            if !self.local.remove(region) {
                continue;
            }
            self.update_borders();
            self.frozen.remove(&region);
            for player in self.players_in(region) {
                self.region_of.remove(&player);
                if let Some(view) = self.forget_view(player) {
                    view.kick(
                        KickReason::Shutdown,
                        "this node lost the region; log in again",
                    );
                }
                if let Some(mut ledger) = self.ledger() {
                    ledger.unbind(player);
                }
            }
        }
    }

    /// Handoffs other nodes sent into this node's regions, queued into the next step's
    /// input.
    pub(super) fn take_arrivals(&mut self) {
        let Some(arrivals) = self.ledger().map(|mut l| l.take_arrivals()) else {
            return;
        };
        for record in arrivals {
            if let Some(input) = self.local.input_mut(record.to) {
                input.handoffs.push(record);
            }
        }
    }

    /// A player's avatar left for a region held elsewhere: its view waits for the
    /// redirect (up to `wait`) and the record goes to the ledger (this tick, or later if
    /// the ledger is full).
    pub(super) fn depart(&mut self, record: HandoffRecord, wait: Duration) {
        self.publish_handoff(&record, false);
        let mut redirect = None;
        if let Some(player) = record.entity.player {
            self.region_of.remove(&player);
            if let Some(view) = self.forget_view(player)
                && !view.detached
            {
                redirect = Some(wait);
                self.redirecting.insert(player, view);
            }
        }
        if self.departures_backlog.len() < DEPARTURES_BACKLOG_MAX {
            self.departures_backlog.push((record, redirect));
        } else {
            tracing::error!(
                handoff = record.id.0,
                "departures backlog full: a handoff is lost"
            );
        }
    }

    /// After a step: the ledger settles the arrivals the regions applied (arrived players
    /// get a detached view for their redirected client to claim), takes this tick's
    /// departures, and says what to do for sessions; ghosts go out.
    pub(super) fn settle_cluster(&mut self, tick: u64) {
        if self.cluster.is_none() {
            return;
        }
        let now = self.now;
        for record in self.local.take_outbound() {
            self.depart(record, REDIRECT_WAIT);
        }
        let deferred: HashSet<HandoffId> = self
            .local
            .regions()
            .iter()
            .flat_map(|r| r.output().deferred_handoffs.iter().map(|h| h.id))
            .collect();
        let (arrived, actions, stats) = {
            let local = &self.local;
            let mut ledger = self
                .cluster
                .as_ref()
                .expect("checked above")
                .shared
                .ledger();
            let arrived = ledger.settle_arrivals(
                &|id| deferred.contains(&id),
                &|region| local.region(region).is_some(),
                &|record| {
                    local
                        .region(record.to)
                        .and_then(|r| {
                            record
                                .entity
                                .player
                                .and_then(|p| r.position_of(NetId::of_player(p)))
                        })
                        .is_some()
                },
                now,
            );
            let backlog = std::mem::take(&mut self.departures_backlog);
            for (record, redirect) in backlog {
                if ledger.has_room_to_depart() {
                    ledger.depart(record, redirect, now);
                } else {
                    self.departures_backlog.push((record, redirect));
                }
            }
            let actions: Vec<DriverAction> = std::iter::from_fn(|| ledger.poll_driver()).collect();
            (arrived, actions, ledger.stats())
        };
        for (player, region) in arrived {
            self.arrived(player, region);
        }
        let first_region = self.first_region();
        for action in actions {
            self.carry_out(action, first_region);
        }
        let c = &mut self.stats.counters;
        c.handoffs_out = stats.handoffs_out;
        c.handoffs_in = stats.handoffs_in;
        c.handoffs_stale = stats.handoffs_stale;
        c.handoffs_dropped = stats.handoffs_dropped;
        c.claims_repaired = stats.claims_repaired;
        if let Some(cluster) = &self.cluster {
            c.ghost_gaps = cluster
                .ghosts
                .gaps
                .load(std::sync::atomic::Ordering::Relaxed);
            cluster.shared.wake();
        }
        let _ = tick;
        self.publish_ghosts();
    }

    /// `player`'s avatar arrived in `region` by handoff: unless a session holds it already,
    /// it gets a detached view (with a session id of its own, so that the linger of an
    /// earlier arrival of this player cannot evict this one) for its redirected client.
    fn arrived(&mut self, player: PlayerId, region: RegionId) {
        if self.clients.contains_key(&player) {
            return;
        }
        let session = self.next_arrival_session;
        self.next_arrival_session += 1;
        self.region_of.insert(player, region);
        let outbox = super::SessionOutbox::detached();
        let view = ClientView::new(session, outbox, true, &self.budget_limits);
        self.tell_directory(tessera_persistence::directory::PresenceUpdate::Login {
            player,
            name: None,
            level: tessera_persistence::economy::START_LEVEL,
            node: self.config.node.name.clone(),
            region,
            at_ms: view.since_ms,
        });
        self.clients.insert(player, view);
        if let Some(mut ledger) = self.ledger() {
            ledger.bind(player, 0);
        }
        self.linger(player, session);
    }

    fn carry_out(&mut self, action: DriverAction, first_region: RegionId) {
        match action {
            DriverAction::Redirect {
                player,
                addr,
                region,
            } => {
                if let Some(view) = self.redirecting.remove(&player) {
                    let _ = view.outbox.try_send(Outgoing::Redirect { addr, region });
                    self.stats.counters.redirected += 1;
                }
            }
            DriverAction::EndSession { player, why } => {
                let Some(view) = self.redirecting.remove(&player) else {
                    return;
                };
                match why {
                    SessionEnd::HandoffFailed => {
                        tracing::warn!(%player, "the player's handoff did not go through in time (no node address for its region, or the bus is down)");
                        view.kick(
                            KickReason::Shutdown,
                            "the region you entered is unavailable; log in again",
                        );
                    }
                    SessionEnd::TakenOver => view.kick(
                        KickReason::LoggedInElsewhere,
                        "a newer login took the player over as it crossed",
                    ),
                }
            }
            DriverAction::JoinNow { session } => {
                if let Some(join) = self.awaiting.remove(&session) {
                    self.join(join, first_region);
                }
            }
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
            let update = GhostUpdate {
                region: region.id(),
                payload: tessera_cluster::wire::encode_ghosts(&views),
            };
            if cluster.ghosts_out.try_send(update).is_err() {
                self.stats.counters.ghosts_dropped += 1;
            }
        }
    }
}
