//! Intake of everything players do: logins and logouts, server-side teleports, and
//! authoritative movement with a speed cap.
//!
//! Movement rule: each tick a player may move at most `speed_mps * dt * (1 +
//! speed_tolerance)` metres in total, whatever the number of inputs that arrive. A longer
//! move is shortened to the cap (not rejected: a late burst of inputs from an honest client
//! still moves it as far as it may go), a non-finite one is rejected whole. Server-side
//! displacements (teleport, respawn) do not touch this budget.

use bevy_ecs::prelude::*;
use tessera_shared::math::Vec2;

use crate::combat::AttackRequests;
use crate::components::*;
use crate::interest::Observer;
use crate::io::{
    EntityState, Inbox, JoinRefusal, SESSION_EVENTS_PER_TICK_MAX, SavedPlayer, SessionEvent,
    TELEPORTS_PER_TICK_MAX, TickOutput,
};
use crate::plugin::RegionPlugin;
use crate::resources::{Directory, RegionInfo, SimConfig, TickClock};
use crate::spawn;
use tessera_shared::ids::{NetId, PlayerId};

/// Systems of this feature, run first in the tick.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct InputsSystems;

/// Logins, logouts, teleports and player inputs.
pub struct InputsPlugin;

impl RegionPlugin for InputsPlugin {
    fn build(&self, _world: &mut World, schedule: &mut Schedule) {
        schedule.add_systems(
            (
                apply_sessions,
                apply_teleports,
                reset_move_budgets,
                apply_inputs,
            )
                .chain()
                .in_set(InputsSystems),
        );
    }
}

/// Applies logins and logouts in order, up to [`SESSION_EVENTS_PER_TICK_MAX`].
#[allow(clippy::too_many_arguments)] // A system: each parameter is a distinct world access.
pub fn apply_sessions(
    mut commands: Commands,
    mut inbox: ResMut<Inbox>,
    mut directory: ResMut<Directory>,
    mut output: ResMut<TickOutput>,
    config: Res<SimConfig>,
    region: Res<RegionInfo>,
    clock: Res<TickClock>,
    avatars: Query<(&Position, &Health)>,
    mut players: Query<&mut Player>,
    mut joined: Local<Vec<(PlayerId, SavedPlayer)>>,
) {
    let limits = config.0.world.limits;
    let archetype_idx = u16::try_from(config.0.balance.player_archetype)
        .expect("config validation bounds the archetype count");
    let max_health = config.archetype(archetype_idx).max_health;
    let mut events = std::mem::take(&mut inbox.0.sessions);
    if events.len() > SESSION_EVENTS_PER_TICK_MAX {
        output
            .deferred_sessions
            .extend(events.drain(SESSION_EVENTS_PER_TICK_MAX..));
    }
    // Avatars spawned by this system are not queryable until its commands apply: remember
    // their state for a logout in the same tick.
    joined.clear();
    for event in events.drain(..) {
        match event {
            SessionEvent::Leave(player) => {
                let Some(&entity) = directory.by_player.get(&player) else {
                    output.leaves_not_found.push(player);
                    continue;
                };
                let saved = match avatars.get(entity) {
                    Ok((position, health)) => SavedPlayer {
                        position: position.0,
                        health: health.0,
                    },
                    Err(_) => match joined.iter().rev().find(|(p, _)| *p == player) {
                        Some(&(_, saved)) => saved,
                        None => {
                            // Every directory entry is queryable or joined this tick; if
                            // that ever breaks, save a safe state rather than crash.
                            debug_assert!(false, "{player} in the directory but not found");
                            SavedPlayer {
                                position: region.def.spawn_point,
                                health: max_health,
                            }
                        }
                    },
                };
                output.departed.push((player, saved));
                let id = NetId::of_player(player);
                spawn::despawn(&mut commands, &mut directory, entity, id, Some(player));
            }
            SessionEvent::NewConnection(player) => {
                // An avatar spawned this tick has not applied an input yet: nothing to reset.
                if let Some(&entity) = directory.by_player.get(&player)
                    && let Ok(mut player) = players.get_mut(entity)
                {
                    player.last_input_seq = 0;
                }
            }
            SessionEvent::Join(join) => {
                let refusal = if !join.player.is_valid() {
                    Some(JoinRefusal::InvalidPlayer)
                } else if directory.by_player.contains_key(&join.player)
                    || directory
                        .by_net_id
                        .contains_key(&NetId::of_player(join.player))
                {
                    Some(JoinRefusal::AlreadyPresent)
                } else if !directory.has_room_for_player(&limits) {
                    Some(JoinRefusal::RegionFull)
                } else if join
                    .saved
                    .is_some_and(|s| !s.position.is_finite() || !s.health.is_finite())
                {
                    Some(JoinRefusal::InvalidState)
                } else {
                    None
                };
                if let Some(refusal) = refusal {
                    output.refused_joins.push((join.player, refusal));
                    continue;
                }
                // A saved state outside this region, or of a dead player, starts over at
                // the spawn point with full health (as a respawn would).
                let (position, health) = match join.saved {
                    Some(s) if region.def.bounds.contains(s.position) && s.health > 0.0 => {
                        (s.position, s.health.min(max_health))
                    }
                    _ => (region.def.spawn_point, max_health),
                };
                let id = NetId::of_player(join.player);
                let state = EntityState {
                    id,
                    archetype: archetype_idx,
                    player: Some(join.player),
                    position,
                    velocity: Vec2::ZERO,
                    health,
                    cooldown_ticks: 0,
                    last_input_seq: 0,
                };
                let bundle = spawn::avatar_bundle(&state, join.player, clock.tick);
                spawn::spawn(&mut commands, &mut directory, id, Some(join.player), bundle);
                joined.push((join.player, SavedPlayer { position, health }));
            }
        }
    }
    inbox.0.sessions = events; // Hand the (empty) allocation back for reuse.
}

/// Applies server-side displacements: exempt from the speed cap, not from validation.
pub fn apply_teleports(
    mut inbox: ResMut<Inbox>,
    directory: Res<Directory>,
    region: Res<RegionInfo>,
    mut output: ResMut<TickOutput>,
    mut avatars: Query<(&mut Position, &mut Observer), With<Player>>,
) {
    let n_teleports = inbox.0.teleports.len();
    if n_teleports > TELEPORTS_PER_TICK_MAX {
        output.stats.teleports_refused +=
            u32::try_from(n_teleports - TELEPORTS_PER_TICK_MAX).unwrap_or(u32::MAX);
    }
    for teleport in inbox.0.teleports.drain(..).take(TELEPORTS_PER_TICK_MAX) {
        let target = directory
            .by_player
            .get(&teleport.player)
            .and_then(|&e| avatars.get_mut(e).ok());
        match target {
            Some((mut position, mut observer))
                if teleport.to.is_finite() && region.def.bounds.contains(teleport.to) =>
            {
                position.0 = teleport.to;
                observer.refresh_now();
            }
            _ => output.stats.teleports_refused += 1,
        }
    }
}

/// Gives every living avatar this tick's movement allowance and zeroes its velocity (the
/// inputs of this tick rebuild it).
pub fn reset_move_budgets(
    config: Res<SimConfig>,
    clock: Res<TickClock>,
    mut avatars: Query<(&Identity, &mut Player, &mut Velocity)>,
) {
    let tolerance = config.0.balance.movement.speed_tolerance;
    for (identity, mut player, mut velocity) in &mut avatars {
        let speed = config.archetype(identity.archetype).speed_mps;
        player.move_budget_m = if player.respawn_tick.is_some() {
            0.0
        } else {
            move_cap_m(speed, clock.dt_s, tolerance)
        };
        if velocity.0 != Vec2::ZERO {
            velocity.0 = Vec2::ZERO;
        }
    }
}

/// The most a player may move in one tick.
pub fn move_cap_m(speed_mps: f32, dt_s: f32, speed_tolerance: f32) -> f32 {
    speed_mps * dt_s * (1.0 + speed_tolerance)
}

/// Applies player inputs in order: sequence check, finiteness, speed cap, world bounds;
/// attack requests are queued for combat.
#[allow(clippy::too_many_arguments)] // A system: each parameter is a distinct world access.
pub fn apply_inputs(
    mut inbox: ResMut<Inbox>,
    directory: Res<Directory>,
    region: Res<RegionInfo>,
    config: Res<SimConfig>,
    clock: Res<TickClock>,
    mut output: ResMut<TickOutput>,
    mut attacks: ResMut<AttackRequests>,
    mut avatars: Query<(&mut Player, &mut Position, &mut Velocity)>,
) {
    let limit = config.0.world.limits.inputs_per_tick_max as usize;
    let stats = &mut output.stats;
    let n_inputs = inbox.0.inputs.len();
    if n_inputs > limit {
        stats.inputs_over_limit += u32::try_from(n_inputs - limit).unwrap_or(u32::MAX);
    }
    for input in inbox.0.inputs.drain(..).take(limit) {
        let Some(entity) = directory.by_player.get(&input.player).copied() else {
            stats.inputs_unknown_player += 1;
            continue;
        };
        let Ok((mut player, mut position, mut velocity)) = avatars.get_mut(entity) else {
            stats.inputs_unknown_player += 1;
            continue;
        };
        if input.seq <= player.last_input_seq {
            stats.inputs_stale += 1;
            continue;
        }
        if !input.move_m.is_finite() {
            stats.inputs_non_finite += 1;
            continue;
        }
        player.last_input_seq = input.seq;
        if player.respawn_tick.is_some() {
            continue; // Dead: the input is consumed but does nothing.
        }
        stats.inputs_applied += 1;
        let wanted_m = input.move_m.length();
        let step = if wanted_m > player.move_budget_m {
            stats.moves_clamped += 1;
            input.move_m.clamp_length(player.move_budget_m)
        } else {
            input.move_m
        };
        if step != Vec2::ZERO {
            // The region's own bounds are not enforced here: leaving them is a border
            // crossing, detected after movement. The world's edge is a wall.
            let target = region.world_bounds.clamp(position.0 + step);
            let moved = target - position.0;
            player.move_budget_m = (player.move_budget_m - moved.length()).max(0.0);
            position.0 = target;
            velocity.0 += moved * (1.0 / clock.dt_s);
        }
        if let Some(target) = input.attack {
            attacks.0.push((entity, target));
        }
    }
}
