//! Operators' requests at the driver (kick, teleport, message, reload, assign, release),
//! answered with an [`ActionResult`] that only the admin API turns into HTTP.

use tessera_regions::io::{SavedPlayer, Teleport};
use tessera_shared::ids::{PlayerId, RegionId};
use tessera_shared::protocol::messages::*;
use tokio::sync::oneshot;

use super::sessions::Releasing;
use super::{ActionError, ActionResult, AdminAction, Driver, TRANSFER_REDIRECT_WAIT};
use crate::players::SaveRequest;

impl Driver {
    /// Carries out an operator's request: at once, or for a release after the next step.
    pub(super) fn admin(&mut self, action: AdminAction, reply: oneshot::Sender<ActionResult>) {
        match action {
            AdminAction::Release { region, transfer } => self.release(region, transfer, reply),
            action => {
                let _ = reply.send(self.act(action));
            }
        }
    }

    /// Ends `player`'s session for an operator's `reason`: its client is told (if its
    /// connection is there to tell), its avatar leaves, and its resume tickets are refused
    /// from now on with this kick (`auth::Kicks`), in case the client missed it.
    pub(super) fn kick_by_operator(&mut self, player: PlayerId, reason: &str) {
        if let Some(view) = self.clients.get(&player) {
            view.kick(KickReason::Admin, reason);
        }
        self.kicks
            .record(player, reason, crate::economy::now_unix_ms());
        self.remove_player(player);
    }

    fn act(&mut self, action: AdminAction) -> ActionResult {
        match action {
            AdminAction::Kick { player, reason } => {
                if !self.clients.contains_key(&player) {
                    return Err(ActionError::NotFound(format!(
                        "player {} is not on this node",
                        player.0
                    )));
                }
                self.kick_by_operator(player, &reason);
                Ok(serde_json::json!({ "player": player.0, "kicked": true }))
            }
            AdminAction::Teleport { player, to } => {
                let Some(&region) = self.region_of.get(&player) else {
                    return Err(ActionError::NotFound(format!(
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
                    return Err(ActionError::Unprocessable(format!(
                        "({}, {}) is not inside region {}, where player {} is: a teleport stays within the region",
                        to.x, to.y, region.0, player.0
                    )));
                }
                let from_tick = self.current_tick() + 1;
                let Some(input) = self.local.input_mut(region) else {
                    return Err(ActionError::unavailable("the player is between regions", 1));
                };
                input.teleports.push(Teleport { player, to });
                Ok(
                    serde_json::json!({ "player": player.0, "region": region.0, "from_tick": from_tick }),
                )
            }
            AdminAction::Message { player, text } => self
                .send_message(player, text)
                .map(|()| serde_json::json!({ "player": player.0, "sent": true })),
            AdminAction::Assign { mut region } => {
                let id = region.id();
                if self.local.region(id).is_some() {
                    return Err(ActionError::Conflict(format!(
                        "region {} is held by this node already",
                        id.0
                    )));
                }
                // In a cluster, only under the lease it was built for: one lost meanwhile
                // (the node paused, Redis away) must not be stepped.
                let leased = self
                    .ledger()
                    .map(|ledger| ledger.lease(id).map(|lease| lease.epoch));
                if let Some(epoch) = leased
                    && epoch != Some(region.epoch())
                {
                    return Err(ActionError::Conflict(format!(
                        "region {}'s lease (epoch {}) was lost before the node could step it",
                        id.0,
                        region.epoch()
                    )));
                }
                region.set_config(self.config.clone());
                self.local.add(*region);
                self.update_borders();
                Ok(serde_json::json!({ "region": id.0, "from_tick": self.current_tick() + 1 }))
            }
            AdminAction::Release { .. } => Err(ActionError::Conflict(
                "a release is answered after the step".into(),
            )),
            AdminAction::Rescue { player } => self.rescue(player),
            AdminAction::Freeze { region, reason } => self.freeze(region, reason),
            AdminAction::Unfreeze { region } => self.unfreeze(region),
            AdminAction::Evacuate { from, to, reason } => self.evacuate(from, to, &reason),
            AdminAction::KickAll { reason } => self.kick_all(&reason),
            AdminAction::Reload { config } => {
                self.local.set_config(config.clone());
                self.balance = std::sync::Arc::new(config.balance.clone());
                self.config = config;
                // Commands are applied before the regions step: the tick about to run is
                // the first on the new balance.
                Ok(serde_json::json!({ "applied": true, "from_tick": self.current_tick() + 1 }))
            }
        }
    }

    /// Queues `region` to be let go after the next step (answered then).
    fn release(&mut self, region: RegionId, transfer: bool, reply: oneshot::Sender<ActionResult>) {
        if self.local.region(region).is_none() {
            let _ = reply.send(Err(ActionError::NotFound(format!(
                "region {} is not held by this node",
                region.0
            ))));
        } else if self.releasing.iter().any(|r| r.region == region) {
            let _ = reply.send(Err(ActionError::Conflict(format!(
                "region {} is being released already",
                region.0
            ))));
        } else {
            self.releasing.push(Releasing {
                region,
                transfer,
                reply,
            });
        }
    }

    /// Lets go of the regions whose release was asked for: after their last step, their
    /// players are handed off into the region (transfer) or leave, saved; the final
    /// capture goes to the snapshot writer; the region is no longer stepped.
    pub(super) fn settle_releases(&mut self) {
        for releasing in std::mem::take(&mut self.releasing) {
            let Releasing {
                region,
                transfer,
                reply,
            } = releasing;
            // The final capture must not be skipped: wait a tick for room if need be.
            if self.snapshots.as_ref().is_some_and(|s| !s.has_room_for(1)) {
                self.releasing.push(Releasing {
                    region,
                    transfer,
                    reply,
                });
                continue;
            }
            let Some(held) = self.local.region_mut(region) else {
                let _ = reply.send(Err(ActionError::NotFound(format!(
                    "region {} is no longer held",
                    region.0
                ))));
                continue;
            };
            // Everyone in the region, and everyone on the way in from a neighbour here.
            let mut leaving = held.evacuate(region);
            self.frozen.remove(&region);
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
                if transfer {
                    // Like a border crossing into a region held elsewhere: the record goes
                    // to the region's mail for its next holder, the client follows.
                    self.depart(record, TRANSFER_REDIRECT_WAIT);
                    continue;
                }
                if let Some(view) = self.forget_view(player) {
                    view.kick(
                        KickReason::Shutdown,
                        format!(
                            "region {} was released by an operator; log in again",
                            region.0
                        ),
                    );
                }
                if let Some(mut ledger) = self.ledger() {
                    ledger.unbind(player);
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
            let _ = reply.send(Ok(serde_json::json!({
                "region": region.0,
                "final_tick": final_tick,
                "players": players,
                "transfer": transfer,
            })));
        }
    }

    /// The borders between the regions stepped here and the rest (ghosts cross them).
    pub(super) fn update_borders(&mut self) {
        if let Some(cluster) = &mut self.cluster {
            let held: Vec<RegionId> = self.local.ids().collect();
            cluster.borders = crate::cluster::borders(&self.config, &held);
        }
    }
}
