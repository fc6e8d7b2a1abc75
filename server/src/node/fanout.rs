//! The fan-out: states and events to every client, each tick.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use tessera_regions::io::{EntityView, GameEvent};
use tessera_shared::ids::{NetId, PlayerId};
use tessera_shared::protocol::delta::EncodeScratch;
use tessera_shared::protocol::limits::{DATAGRAM_BYTES_MAX, STATE_STREAM_BYTES_MAX};
use tessera_shared::protocol::messages::*;

use super::{Driver, Outgoing};
use crate::views::{NextView, ViewChanges, WireTable, wire};

impl Driver {
    /// States and events to every client. Each region's entities of the tick are
    /// quantized once; then clients, independent (each has its own view and encoder),
    /// get their states built in parallel on the rayon pool the driver runs in; events,
    /// rare, go out sequentially afterwards.
    pub(super) fn fan_out(&mut self) {
        let player_archetype = self.config.balance.player_archetype as u16;
        let ghosts = self
            .cluster
            .as_ref()
            .map(|c| c.ghosts.current())
            .unwrap_or_default();
        let borders = self.cluster.as_ref().map_or(&[][..], |c| &c.borders[..]);
        let reach = self.config.world.interest.enter_radius_m;
        let visible_max = self.config.world.interest.visible_entities_max as usize;
        let Driver {
            local,
            clients,
            stats,
            wire_tables,
            ..
        } = self;
        let regions = local.regions();
        wire_tables.resize_with(regions.len(), WireTable::default);
        regions
            .par_iter()
            .zip(wire_tables.par_iter_mut())
            .for_each(|(region, table)| table.fill(&region.output().interest));
        let wire_tables = &*wire_tables;
        // Where each observer's diff is: (region index, diff index).
        let mut diff_of: HashMap<PlayerId, (usize, usize)> = HashMap::with_capacity(clients.len());
        for (r, region) in regions.iter().enumerate() {
            for (d, diff) in region.output().interest.observers.iter().enumerate() {
                diff_of.insert(diff.player, (r, d));
            }
        }
        let dropped = AtomicU64::new(0);
        clients.par_iter_mut().for_each_init(
            || (EncodeScratch::default(), Vec::new()),
            |(scratch, near), (player, view)| {
                let Some(&(r, d)) = diff_of.get(player) else {
                    return; // In flight between regions: no state this tick.
                };
                let region = &regions[r];
                let out = region.output();
                let interest = &out.interest;
                let diff = &interest.observers[d];
                let avatar = NetId::of_player(*player);
                let own = region.position_and_health(avatar);
                let changes = ViewChanges {
                    left: interest.left_ids(diff),
                    entered: interest.entered_indices(diff),
                    changed: interest.changed_indices(diff),
                    table: &wire_tables[r],
                    own: own.map(|(position, health)| {
                        wire(&EntityView {
                            id: avatar,
                            archetype: player_archetype,
                            position,
                            health,
                        })
                    }),
                };
                let fresh = view.view_region != Some(region.id());
                view.view_region = Some(region.id());
                // Near a border with a region held elsewhere: its ghosts within reach too.
                near.clear();
                if let Some((at, _)) = own
                    && !view.detached
                {
                    near.extend(
                        borders
                            .iter()
                            .filter(|b| {
                                b.held == region.id() && b.remote_bounds.distance_to(at) <= reach
                            })
                            .filter_map(|b| ghosts.get(&b.remote))
                            .flat_map(|g| g.iter())
                            .filter(|g| g.position.distance_squared(at) <= reach * reach)
                            .map(wire),
                    );
                    near.sort_unstable_by_key(|e| e.id);
                }
                let next = NextView {
                    changes,
                    fresh,
                    ghost_ids: &mut view.ghosts,
                    near_ghosts: near,
                    visible_max,
                };
                if view.detached {
                    // Kept current for a resume; nobody to send to.
                    view.encoder.update_view(out.tick, next);
                    return;
                }
                let mut bytes = Vec::new();
                view.encoder
                    .encode_next_into(out.tick, view.ack_tick, next, scratch, &mut bytes);
                let message = if bytes.len() <= DATAGRAM_BYTES_MAX {
                    Outgoing::Datagram(bytes.into())
                } else if bytes.len() <= STATE_STREAM_BYTES_MAX {
                    Outgoing::Stream(bytes.into())
                } else {
                    return; // Larger than any view can be: the cap prevents it.
                };
                if view.outbox.try_send(message).is_err() {
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
            },
        );
        stats.counters.states_dropped += dropped.into_inner();
        for region in regions {
            let out = region.output();
            for event in &out.events {
                let (recipients, message) = match *event {
                    GameEvent::Damage {
                        attacker,
                        target,
                        amount,
                    } => (
                        [avatar_owner(attacker), avatar_owner(target)],
                        EventS2c::Damage {
                            attacker,
                            target,
                            amount,
                        },
                    ),
                    GameEvent::Death { entity } => {
                        ([avatar_owner(entity), None], EventS2c::Death { entity })
                    }
                    GameEvent::Respawn { player } => ([Some(player), None], EventS2c::Respawn),
                };
                for player in recipients.into_iter().flatten() {
                    if let Some(view) = clients.get(&player) {
                        let _ =
                            view.outbox
                                .try_send(Outgoing::Control(Box::new(ControlS2c::Event(
                                    message.clone(),
                                ))));
                    }
                }
            }
        }
    }
}

/// The player whose avatar `id` is, if it is one.
fn avatar_owner(id: NetId) -> Option<PlayerId> {
    (id.0 >> 63 == 1).then_some(PlayerId(id.0 & PlayerId::MAX))
}
