//! Chat on the driver: `say` and region messages reach the players of the speaker's
//! region (by distance for `say`), the cluster's global messages and whispers reach the
//! players here; `/who` lists a region's players. A recipient whose outbox is full misses
//! the message (counted in [`super::DriverCounters::chat_dropped`]); nothing waits.

use tessera_shared::ids::{NetId, PlayerId};
use tessera_shared::protocol::limits::WHO_PLAYERS_MAX;
use tessera_shared::protocol::messages::{ChatChannel, ChatS2c, ControlS2c};

use super::commands::{Outgoing, WhoList};
use super::{ClientView, Driver};

impl Driver {
    /// Sends `message` of `from` to the players of its region within `radius_m` of it
    /// (all of them: `None`), the sender included; how many it reached, or `None` if
    /// `session` does not hold `from` here.
    pub(super) fn chat_nearby(
        &mut self,
        from: PlayerId,
        session: u64,
        radius_m: Option<f32>,
        message: ChatS2c,
    ) -> Option<usize> {
        if self.clients.get(&from).is_none_or(|v| v.session != session) {
            return None;
        }
        let region_id = *self.region_of.get(&from)?;
        let region = self.local.region(region_id)?;
        let recipients: Vec<PlayerId> = match radius_m {
            None => region.players().collect(),
            Some(radius) => {
                let at = region.position_of(NetId::of_player(from))?;
                let reach = radius * radius;
                region
                    .players()
                    .filter(|&p| {
                        region
                            .position_of(NetId::of_player(p))
                            .is_some_and(|q| q.distance_squared(at) <= reach)
                    })
                    .collect()
            }
        };
        Some(self.send_chat(recipients, &message))
    }

    /// Delivers a message of the cluster's chat to its recipients here (everyone for a
    /// global one, the named player for a whisper); whether it reached anyone.
    pub(super) fn deliver_chat(&mut self, message: ChatS2c) -> bool {
        let recipients: Vec<PlayerId> = match message.channel {
            ChatChannel::Global => self.clients.keys().copied().collect(),
            ChatChannel::Whisper(to) => vec![to],
            // Not carried by the cluster's chat.
            ChatChannel::Say | ChatChannel::Region => Vec::new(),
        };
        self.send_chat(recipients, &message) > 0
    }

    /// Sends `message` to each of `recipients` connected here; how many it reached.
    fn send_chat(&mut self, recipients: Vec<PlayerId>, message: &ChatS2c) -> usize {
        let mut reached = 0;
        for player in recipients {
            let Some(view) = self.clients.get(&player).filter(|v| !v.detached) else {
                continue;
            };
            if send(view, message) {
                reached += 1;
            } else {
                self.stats.counters.chat_dropped += 1;
            }
        }
        reached
    }

    /// The players of `player`'s region, for `/who`.
    pub(super) fn who(&self, player: PlayerId) -> Option<WhoList> {
        let region_id = *self.region_of.get(&player)?;
        let region = self.local.region(region_id)?;
        let mut players: Vec<PlayerId> = region.players().collect();
        let region_total = players.len();
        players.sort_unstable();
        players.truncate(WHO_PLAYERS_MAX);
        Some(WhoList {
            region: region_id,
            players,
            region_total,
            node_total: self.clients.len(),
        })
    }
}

fn send(view: &ClientView, message: &ChatS2c) -> bool {
    let message = Box::new(ControlS2c::Chat(message.clone()));
    view.outbox.try_send(Outgoing::Control(message)).is_ok()
}
