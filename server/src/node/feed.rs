//! What the driver tells the live feed (`crate::feed`): sessions starting and ending,
//! deaths, handoffs. Publishing never waits; nothing is built while nobody watches.

use serde_json::json;
use tessera_persistence::directory::PresenceUpdate;
use tessera_regions::io::{GameEvent, HandoffRecord};
use tessera_shared::ids::RegionId;

use super::Driver;
use crate::feed::Topic;

/// Deaths one tick publishes at most, one event each; the rest of the tick's are told as
/// one count.
pub(crate) const FEED_DEATHS_PER_TICK_MAX: usize = 64;

impl Driver {
    /// Sessions: the directory's logins and departures, as the feed's `session` events.
    pub(super) fn publish_session(&self, update: &PresenceUpdate) {
        let Some(feed) = self.feed.as_ref().filter(|f| f.is_watched()) else {
            return;
        };
        match update {
            PresenceUpdate::Login {
                player,
                name,
                region,
                ..
            } => feed.publish(
                Topic::Session,
                Some(region.0),
                json!({ "event": "login", "player": player.0, "name": name }),
            ),
            PresenceUpdate::Left { player, .. } => feed.publish(
                Topic::Session,
                None,
                json!({ "event": "logout", "player": player.0 }),
            ),
            PresenceUpdate::Seen { .. } | PresenceUpdate::Level { .. } => {}
        }
    }

    /// A player crossed from `from` into `to` (held here, or elsewhere: `node` `None`).
    pub(super) fn publish_handoff(&self, record: &HandoffRecord, local: bool) {
        let (Some(feed), Some(player)) = (
            self.feed.as_ref().filter(|f| f.is_watched()),
            record.entity.player,
        ) else {
            return;
        };
        feed.publish(
            Topic::Handoff,
            Some(record.from.0),
            json!({
                "player": player.0,
                "from": record.from.0,
                "to": record.to.0,
                "x": record.entity.position.x,
                "y": record.entity.position.y,
                "to_another_node": !local,
            }),
        );
    }

    /// A player crossed between two regions of this node (the regions report it).
    pub(super) fn publish_local_crossing(&self, player: u64, from: RegionId, to: RegionId) {
        if let Some(feed) = self.feed.as_ref().filter(|f| f.is_watched()) {
            feed.publish(
                Topic::Handoff,
                Some(from.0),
                json!({ "player": player, "from": from.0, "to": to.0, "to_another_node": false }),
            );
        }
    }

    /// This tick's deaths, with their killer where a player landed the blow.
    pub(super) fn publish_deaths(&self) {
        let Some(feed) = self.feed.as_ref().filter(|f| f.is_watched()) else {
            return;
        };
        let mut published = 0;
        let mut more = 0u64;
        for region in self.local.regions() {
            let out = region.output();
            for event in &out.events {
                let GameEvent::Death { entity } = *event else {
                    continue;
                };
                if published == FEED_DEATHS_PER_TICK_MAX {
                    more += 1;
                    continue;
                }
                published += 1;
                let kill = out.kills.iter().find(|k| k.npc == entity);
                let archetype = kill.and_then(|k| {
                    self.config
                        .balance
                        .archetypes
                        .get(usize::from(k.archetype))
                        .map(|a| a.name.clone())
                });
                feed.publish(
                    Topic::Death,
                    Some(region.id().0),
                    json!({
                        "entity": entity.0,
                        "player": entity.player().map(|p| p.0),
                        "archetype": archetype,
                        "killer": kill.map(|k| k.player.0),
                    }),
                );
            }
        }
        if more > 0 {
            feed.publish(Topic::Death, None, json!({ "more_deaths_this_tick": more }));
        }
    }
}
