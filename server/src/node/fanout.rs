//! The fan-out: states and events to every client, each tick.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use tessera_regions::Region;
use tessera_regions::io::{EntityView, GameEvent};
use tessera_shared::ids::{NetId, PlayerId, RegionId};
use tessera_shared::protocol::delta::EncodeScratch;
use tessera_shared::protocol::limits::{DATAGRAM_BYTES_MAX, STATE_STREAM_BYTES_MAX};
use tessera_shared::protocol::messages::*;

use super::sessions::ClientView;
use super::{Driver, Outgoing};
use crate::views::{
    BudgetScratch, Budgeted, NextView, ViewChanges, WireTable, deaths_in_view, wire,
};

impl Driver {
    /// States and events to every client. Each region's entities of the tick are
    /// quantized once; then clients, independent (each has its own view and encoder),
    /// get their states built in parallel on the rayon pool the driver runs in; events,
    /// rare, go out sequentially afterwards.
    ///
    /// Deaths (PROTOCOL.md section 6 rule 5) go to every client whose view showed the
    /// dead, so each client's previous view is checked against its region's deaths of
    /// the tick (a short sorted list) before its next view replaces it: a dead NPC is
    /// gone from the next one. The dead avatar's player and the players whose avatars hit
    /// the dead in that tick are added while the events go out; each client's deaths go
    /// last, after the tick's `Damage`, once per death.
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
            budget_limits,
            ..
        } = self;
        let limits = *budget_limits;
        let regions = local.regions();
        wire_tables.resize_with(regions.len(), WireTable::default);
        regions
            .par_iter()
            .zip(wire_tables.par_iter_mut())
            .for_each(|(region, table)| table.fill(&region.output().interest));
        let wire_tables = &*wire_tables;
        // Each region's deaths of the tick, sorted by id: only regions that had any.
        let deaths: Vec<(RegionId, Vec<NetId>)> = regions
            .iter()
            .filter_map(|region| {
                let mut dead: Vec<NetId> = region
                    .output()
                    .events
                    .iter()
                    .filter_map(|event| match *event {
                        GameEvent::Death { entity } => Some(entity),
                        _ => None,
                    })
                    .collect();
                dead.sort_unstable();
                dead.dedup();
                (!dead.is_empty()).then(|| (region.id(), dead))
            })
            .collect();
        let fighting = fighting_avatars(regions);
        // Where each observer's diff is: (region index, diff index).
        let mut diff_of: HashMap<PlayerId, (usize, usize)> = HashMap::with_capacity(clients.len());
        for (r, region) in regions.iter().enumerate() {
            for (d, diff) in region.output().interest.observers.iter().enumerate() {
                diff_of.insert(diff.player, (r, d));
            }
        }
        let (dropped, bytes_out) = (AtomicU64::new(0), AtomicU64::new(0));
        let (waiting, staleness) = (AtomicU64::new(0), AtomicU64::new(0));
        let behind = AtomicU64::new(0);
        clients.par_iter_mut().for_each_init(
            || {
                (
                    EncodeScratch::default(),
                    Vec::new(),
                    BudgetScratch::default(),
                )
            },
            |(scratch, near, budget_scratch), (player, view)| {
                // Before the view is rebuilt: the deaths it showed (its entities are of
                // `view_region`; ghosts are another node's, whose deaths it reports).
                if !deaths.is_empty()
                    && !view.detached
                    && let Some(region) = view.view_region
                    && let Some((_, dead)) = deaths.iter().find(|(r, _)| *r == region)
                {
                    deaths_in_view(view.encoder.view(), dead, &mut view.deaths);
                }
                let Some(&(r, d)) = diff_of.get(player) else {
                    return; // In flight between regions: no state this tick.
                };
                let region = &regions[r];
                let out = region.output();
                let interest = &out.interest;
                let diff = &interest.observers[d];
                let avatar = NetId::of_player(*player);
                let own = region.position_and_health(avatar);
                let own_wire = own.map(|(position, health)| {
                    wire(&EntityView {
                        id: avatar,
                        archetype: player_archetype,
                        position,
                        health,
                    })
                });
                let changes = ViewChanges {
                    left: interest.left_ids(diff),
                    entered: interest.entered_indices(diff),
                    changed: interest.changed_indices(diff),
                    table: &wire_tables[r],
                    own: own_wire,
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
                if !view.detached {
                    view.budget.refill(&limits);
                }
                let next = Budgeted {
                    view: next,
                    budget: &mut view.budget,
                    scratch: budget_scratch,
                    limits,
                    observer: own_wire,
                    fighting: fighting.get(player).map_or(&[][..], |f| &f[..]),
                };
                if view.detached {
                    // Kept current (and whole) for a resume; nobody to send to.
                    view.encoder.update_view(out.tick, next);
                    return;
                }
                let mut bytes = Vec::new();
                view.encoder
                    .encode_next_into(out.tick, view.ack_tick, next, scratch, &mut bytes);
                view.budget.spend(bytes.len(), &limits);
                bytes_out.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                let n_waiting = view.budget.n_waiting() as u64;
                waiting.fetch_add(n_waiting, Ordering::Relaxed);
                behind.fetch_add(u64::from(n_waiting > 0), Ordering::Relaxed);
                staleness.fetch_max(u64::from(view.budget.last_staleness()), Ordering::Relaxed);
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
        stats.counters.state_bytes += bytes_out.into_inner();
        stats.counters.state_changes_waiting = waiting.into_inner();
        stats.counters.state_staleness_ticks = staleness.into_inner();
        stats.counters.clients_over_budget = behind.into_inner();
        for region in regions {
            let out = region.output();
            let dead = deaths
                .iter()
                .find(|(r, _)| *r == region.id())
                .map_or(&[][..], |(_, dead)| &dead[..]);
            for event in &out.events {
                let (recipients, message) = match *event {
                    GameEvent::Damage {
                        attacker,
                        target,
                        amount,
                    } => {
                        // A hit in the tick its target died: the attacker hears of the death.
                        if dead.binary_search(&target).is_ok()
                            && let Some(view) =
                                avatar_owner(attacker).and_then(|p| clients.get_mut(&p))
                        {
                            view.deaths.push(target);
                        }
                        (
                            [avatar_owner(attacker), avatar_owner(target)],
                            EventS2c::Damage {
                                attacker,
                                target,
                                amount,
                            },
                        )
                    }
                    GameEvent::Death { entity } => {
                        if let Some(view) = avatar_owner(entity).and_then(|p| clients.get_mut(&p)) {
                            view.deaths.push(entity);
                        }
                        continue;
                    }
                    GameEvent::Respawn { player } => ([Some(player), None], EventS2c::Respawn),
                };
                for player in recipients.into_iter().flatten() {
                    if let Some(view) = clients.get(&player) {
                        send_event(view, message.clone());
                    }
                }
            }
        }
        if deaths.is_empty() {
            return;
        }
        for view in clients.values_mut() {
            if view.deaths.is_empty() {
                continue;
            }
            view.deaths.sort_unstable();
            view.deaths.dedup();
            for &entity in &view.deaths {
                send_event(view, EventS2c::Death { entity });
            }
            view.deaths.clear();
        }
    }
}

/// Per player with an avatar in a fight this tick, who hit it or was hit by it, sorted:
/// those changes are sent whatever the player's budget.
fn fighting_avatars(regions: &[Region]) -> HashMap<PlayerId, Vec<NetId>> {
    let mut fighting: HashMap<PlayerId, Vec<NetId>> = HashMap::new();
    for region in regions {
        for event in &region.output().events {
            if let GameEvent::Damage {
                attacker, target, ..
            } = *event
            {
                for (avatar, other) in [(attacker, target), (target, attacker)] {
                    if let Some(player) = avatar_owner(avatar) {
                        fighting.entry(player).or_default().push(other);
                    }
                }
            }
        }
    }
    for ids in fighting.values_mut() {
        ids.sort_unstable();
        ids.dedup();
    }
    fighting
}

/// `event` to `view`'s session (dropped if its outbox is full or gone, as every event).
fn send_event(view: &ClientView, event: EventS2c) {
    let _ = view
        .outbox
        .try_send(Outgoing::Control(Box::new(ControlS2c::Event(event))));
}

/// The player whose avatar `id` is, if it is one.
fn avatar_owner(id: NetId) -> Option<PlayerId> {
    (id.0 >> 63 == 1).then_some(PlayerId(id.0 & PlayerId::MAX))
}
