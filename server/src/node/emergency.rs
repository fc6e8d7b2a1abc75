//! Operators' emergency actions at the driver: freeze and unfreeze a region, evacuate a
//! region's players to another, kick everyone off the node. Each tells the players it
//! concerns why (`EventS2c::Message`); the admin API audits them.

use tessera_shared::ids::{PlayerId, RegionId};
use tessera_shared::math::Vec2;
use tessera_shared::protocol::messages::*;

use super::{ActionError, ActionResult, Driver, Outgoing, TRANSFER_REDIRECT_WAIT};

/// Spacing of the safe spots evacuated players are put on, in metres.
pub(crate) const SAFE_SPOT_SPACING_M: f32 = 2.0;
/// Safe spots per row of the square around the spawn point.
const SAFE_SPOTS_PER_ROW: usize = 16;

/// The `i`th safe spot around `region`'s spawn point: a square of
/// [`SAFE_SPOTS_PER_ROW`] by as many rows, [`SAFE_SPOT_SPACING_M`] apart, so that an
/// evacuated crowd does not land on one point; inside the region.
pub(crate) fn safe_spot(region: &tessera_shared::config::RegionDef, i: usize) -> Vec2 {
    let (column, row) = (
        (i % SAFE_SPOTS_PER_ROW) as f32,
        (i / SAFE_SPOTS_PER_ROW % SAFE_SPOTS_PER_ROW) as f32,
    );
    let half = SAFE_SPOTS_PER_ROW as f32 / 2.0;
    let spot = Vec2::new(
        region.spawn_point.x + (column - half) * SAFE_SPOT_SPACING_M,
        region.spawn_point.y + (row - half) * SAFE_SPOT_SPACING_M,
    );
    // Half-open bounds: stay a centimetre inside the far edges.
    let (min, max) = (region.bounds.min, region.bounds.max);
    Vec2::new(
        spot.x.clamp(min.x, max.x - 0.01),
        spot.y.clamp(min.y, max.y - 0.01),
    )
}

impl Driver {
    /// Sends `player` an operators' message (`EventS2c::Message`): refused if it is not
    /// connected here, or its connection is too busy to take it.
    pub(super) fn send_message(&self, player: PlayerId, text: String) -> Result<(), ActionError> {
        let Some(view) = self.clients.get(&player).filter(|v| !v.detached) else {
            return Err(ActionError::NotFound(format!(
                "player {} is not connected to this node",
                player.0
            )));
        };
        let message = ControlS2c::Event(EventS2c::Message { text });
        view.outbox
            .try_send(Outgoing::Control(Box::new(message)))
            .map_err(|_| ActionError::unavailable("the player's connection is busy", 1))
    }

    /// Tells `player` (if connected here) `text`; whether it could be queued.
    fn tell(&self, player: PlayerId, text: &str) -> bool {
        self.send_message(player, text.to_owned()).is_ok()
    }

    /// The players whose avatars are in `region`, by id.
    pub(super) fn players_in(&self, region: RegionId) -> Vec<PlayerId> {
        let mut players: Vec<PlayerId> = self
            .region_of
            .iter()
            .filter(|(_, r)| **r == region)
            .map(|(p, _)| *p)
            .collect();
        players.sort_unstable();
        players
    }

    fn held(&self, region: RegionId) -> Result<(), ActionError> {
        match self.local.region(region) {
            Some(_) => Ok(()),
            None => Err(ActionError::NotFound(format!(
                "region {} is not held by this node",
                region.0
            ))),
        }
    }

    pub(super) fn freeze(&mut self, region: RegionId, reason: String) -> ActionResult {
        self.held(region)?;
        let text = format!(
            "Region {} is frozen by the operators: {reason}. Your moves and attacks are ignored until it is unfrozen.",
            region.0
        );
        let was_frozen = self.frozen.insert(region, reason).is_some();
        let players = self.players_in(region);
        let told = players.iter().filter(|&&p| self.tell(p, &text)).count();
        tracing::warn!(region = region.0, players = players.len(), "region frozen");
        Ok(serde_json::json!({
            "region": region.0,
            "frozen": true,
            "was_frozen": was_frozen,
            "players": players.len(),
            "told": told,
        }))
    }

    pub(super) fn unfreeze(&mut self, region: RegionId) -> ActionResult {
        if self.frozen.remove(&region).is_none() {
            self.held(region)?;
            return Err(ActionError::Conflict(format!(
                "region {} is not frozen",
                region.0
            )));
        }
        let text = format!("Region {} is unfrozen: play on.", region.0);
        let players = self.players_in(region);
        let told = players.iter().filter(|&&p| self.tell(p, &text)).count();
        tracing::warn!(region = region.0, "region unfrozen");
        Ok(serde_json::json!({
            "region": region.0,
            "frozen": false,
            "players": players.len(),
            "told": told,
        }))
    }

    /// Tells a player who just entered `region` that it is frozen, if it is.
    pub(super) fn tell_if_frozen(&self, player: PlayerId, region: RegionId) {
        if let Some(reason) = self.frozen.get(&region) {
            let text = format!(
                "Region {} is frozen by the operators: {reason}. Your moves and attacks are ignored until it is unfrozen.",
                region.0
            );
            self.tell(player, &text);
        }
    }

    pub(super) fn evacuate(&mut self, from: RegionId, to: RegionId, reason: &str) -> ActionResult {
        self.held(from)?;
        let Some(target) = self.config.world.regions.iter().find(|r| r.id == to) else {
            return Err(ActionError::Unprocessable(format!(
                "to: region {} is not in the world",
                to.0
            )));
        };
        if to == from {
            return Err(ActionError::Unprocessable(
                "to: must be another region than the one evacuated".into(),
            ));
        }
        let local = self.local.region(to).is_some();
        if !local && self.cluster.is_none() {
            return Err(ActionError::Unprocessable(format!(
                "to: region {} is not held by this node, and it is in no cluster",
                to.0
            )));
        }
        let target = target.clone();
        let text = format!(
            "The operators moved you from region {} to region {}: {reason}.",
            from.0, to.0
        );
        let records = self
            .local
            .region_mut(from)
            .map(|r| r.evacuate(to))
            .unwrap_or_default();
        let mut moved = Vec::with_capacity(records.len());
        for (i, mut record) in records.into_iter().enumerate() {
            let Some(player) = record.entity.player else {
                continue;
            };
            record.entity.position = safe_spot(&target, i);
            record.entity.velocity = Vec2::ZERO;
            self.tell(player, &text);
            moved.push(player.0);
            if local {
                self.publish_handoff(&record, true);
                self.region_of.insert(player, to);
                if let Some(input) = self.local.input_mut(to) {
                    input.handoffs.push(record);
                }
                self.tell_directory(tessera_persistence::directory::PresenceUpdate::Seen {
                    player,
                    node: self.config.node.name.clone(),
                    region: to,
                    at_ms: crate::economy::now_unix_ms(),
                });
            } else {
                // Held elsewhere: like a border crossing, the client follows its avatar.
                self.depart(record, TRANSFER_REDIRECT_WAIT);
            }
        }
        tracing::warn!(
            from = from.0,
            to = to.0,
            players = moved.len(),
            "region evacuated"
        );
        Ok(serde_json::json!({
            "from": from.0,
            "to": to.0,
            "players": moved,
            "redirected": !local,
        }))
    }

    pub(super) fn rescue(&mut self, player: PlayerId) -> ActionResult {
        let Some(&region) = self.region_of.get(&player) else {
            return Err(ActionError::NotFound(format!(
                "player {} is not on this node",
                player.0
            )));
        };
        let Some(def) = self.config.world.regions.iter().find(|r| r.id == region) else {
            return Err(ActionError::NotFound(format!(
                "region {} is not in the world",
                region.0
            )));
        };
        let to = safe_spot(def, (player.0 % 256) as usize);
        let Some(input) = self.local.input_mut(region) else {
            return Err(ActionError::unavailable("the player is between regions", 1));
        };
        input
            .teleports
            .push(tessera_regions::io::Teleport { player, to });
        Ok(serde_json::json!({ "player": player.0, "region": region.0, "x": to.x, "y": to.y }))
    }

    pub(super) fn kick_all(&mut self, reason: &str) -> ActionResult {
        let mut players: Vec<PlayerId> = self.clients.keys().copied().collect();
        players.sort_unstable();
        for &player in &players {
            self.kick_by_operator(player, reason);
        }
        tracing::warn!(players = players.len(), "every session kicked");
        Ok(serde_json::json!({
            "kicked": players.len(),
            "players": players.iter().map(|p| p.0).collect::<Vec<_>>(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_shared::config::Config;

    #[test]
    fn safe_spots_are_distinct_and_inside_the_region() {
        let config = Config::embedded_default();
        for region in &config.world.regions {
            let spots: Vec<Vec2> = (0..300).map(|i| safe_spot(region, i)).collect();
            assert!(spots.iter().all(|&s| region.bounds.contains(s)));
            let distinct: std::collections::HashSet<(u32, u32)> = spots[..256]
                .iter()
                .map(|s| (s.x.to_bits(), s.y.to_bits()))
                .collect();
            assert_eq!(distinct.len(), 256, "region {}", region.id.0);
        }
    }
}
