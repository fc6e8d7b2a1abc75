//! Border crossings: an avatar that leaves the region becomes a [`HandoffRecord`] for the
//! region it entered and is removed; an incoming record is applied at most once.
//!
//! Only players cross (NPCs are clamped to their region by movement). An avatar that
//! steps outside the region where no other region lies (a gap in a list layout) is pushed
//! back inside: an entity is never silently lost at a border.

use bevy_ecs::prelude::*;
use std::collections::{HashSet, VecDeque};

use crate::components::*;
use crate::io::{EntityState, HandoffRecord, Inbox, TickOutput};
use crate::plugin::RegionPlugin;
use crate::resources::{Directory, Mint, RegionInfo, SimConfig, TickClock};
use crate::spawn;
use bevy_ecs::system::SystemState;
use tessera_shared::ids::{HandoffId, NetId, RegionId};
use tessera_shared::math::Vec2;

/// Systems of this feature: `apply_handoffs` runs with the intake at the start of the
/// tick, `detect_crossings` after life and before the grid.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum BorderSystems {
    /// Incoming handoffs.
    Intake,
    /// Outgoing handoffs.
    Detect,
}

/// Handoffs in and out.
pub struct BorderPlugin;

/// How many applied handoff ids a region remembers to recognise redeliveries. A durable
/// transport redelivers within seconds; 65,536 ids cover minutes of heavy traffic at
/// 16 bytes each (1 MiB with the set's overhead).
pub const APPLIED_HANDOFFS_REMEMBERED: usize = 65_536;

/// The most recent applied handoff ids (a bounded window, oldest forgotten first).
#[derive(Resource, Debug, Default)]
pub struct AppliedHandoffs {
    set: HashSet<HandoffId>,
    order: VecDeque<HandoffId>,
}

impl AppliedHandoffs {
    /// True if `id` was applied recently.
    pub fn contains(&self, id: HandoffId) -> bool {
        self.set.contains(&id)
    }

    /// The remembered ids, oldest first.
    pub fn ids(&self) -> impl Iterator<Item = HandoffId> + '_ {
        self.order.iter().copied()
    }

    pub(crate) fn insert(&mut self, id: HandoffId) {
        if self.set.insert(id) {
            self.order.push_back(id);
            if self.order.len() > APPLIED_HANDOFFS_REMEMBERED
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }
}

impl RegionPlugin for BorderPlugin {
    fn build(&self, world: &mut World, schedule: &mut Schedule) {
        world.init_resource::<AppliedHandoffs>();
        schedule.add_systems(apply_handoffs.in_set(BorderSystems::Intake));
        schedule.add_systems(detect_crossings.in_set(BorderSystems::Detect));
    }
}

/// Applies incoming handoffs, up to `handoffs_per_tick_max`; the rest, and arrivals into
/// a full region, are deferred (returned for the caller to resend).
#[allow(clippy::too_many_arguments)] // A system: each parameter is a distinct world access.
pub fn apply_handoffs(
    mut commands: Commands,
    mut inbox: ResMut<Inbox>,
    mut directory: ResMut<Directory>,
    mut applied: ResMut<AppliedHandoffs>,
    mut output: ResMut<TickOutput>,
    config: Res<SimConfig>,
    region: Res<RegionInfo>,
    clock: Res<TickClock>,
) {
    let limits = config.0.world.limits;
    let limit = limits.handoffs_per_tick_max as usize;
    let player_archetype = config.0.balance.player_archetype;
    let max_health = config.0.balance.archetypes[player_archetype].max_health;
    let mut handoffs = std::mem::take(&mut inbox.0.handoffs);
    if handoffs.len() > limit {
        output.stats.handoffs_deferred += u32::try_from(handoffs.len() - limit).unwrap_or(u32::MAX);
        output.deferred_handoffs.extend(handoffs.drain(limit..));
    }
    for record in handoffs.drain(..) {
        let state = &record.entity;
        if applied.contains(record.id) || directory.by_net_id.contains_key(&state.id) {
            output.stats.handoffs_duplicate += 1;
            continue;
        }
        // Only player avatars cross, and a record must describe one exactly: its id is the
        // player's avatar id (never a minted id it could collide with), its archetype the
        // player archetype, its numbers finite and inside this region.
        let valid = record.to == region.def.id
            && state
                .player
                .is_some_and(|p| p.is_valid() && state.id == NetId::of_player(p))
            && usize::from(state.archetype) == player_archetype
            && state.position.is_finite()
            && state.velocity.is_finite()
            && state.health.is_finite()
            && region.def.bounds.contains(state.position);
        let Some(player) = state.player.filter(|_| valid) else {
            // Refused handoffs are reported, not silently dropped: the sender keeps
            // responsibility (issue 4 routes them to dead letters).
            output.stats.handoffs_refused += 1;
            continue;
        };
        if directory.by_player.contains_key(&player) {
            output.stats.handoffs_duplicate += 1;
            continue;
        }
        if !directory.has_room_for_player(&limits) {
            // Full: the player waits in flight rather than being lost.
            output.stats.handoffs_deferred += 1;
            output.deferred_handoffs.push(record);
            continue;
        }
        let mut state = *state;
        state.health = state.health.min(max_health);
        let bundle = spawn::avatar_bundle(&state, player, clock.tick);
        spawn::spawn(
            &mut commands,
            &mut directory,
            state.id,
            Some(player),
            bundle,
        );
        applied.insert(record.id);
        output.applied_handoffs.push(record.id);
        output.stats.handoffs_applied += 1;
    }
    inbox.0.handoffs = handoffs; // Hand the (empty) allocation back for reuse.
}

/// Avatars outside the region's bounds leave for the region that contains them.
#[allow(clippy::too_many_arguments)] // A system: each parameter is a distinct world access.
pub fn detect_crossings(
    mut commands: Commands,
    mut directory: ResMut<Directory>,
    mut mint: ResMut<Mint>,
    mut output: ResMut<TickOutput>,
    config: Res<SimConfig>,
    region: Res<RegionInfo>,
    clock: Res<TickClock>,
    mut avatars: Query<(
        Entity,
        &Identity,
        &mut Position,
        &Velocity,
        &Health,
        &AttackCooldown,
        &Player,
    )>,
) {
    let bounds = region.def.bounds;
    for (entity, identity, mut position, velocity, health, cooldown, player) in &mut avatars {
        if bounds.contains(position.0) {
            continue;
        }
        // The dead do not travel: a corpse pushed over the border (it moved, then died in
        // the same tick) stays here until it respawns.
        if player.respawn_tick.is_some() || health.0 <= 0.0 {
            position.0 = bounds.clamp(position.0);
            continue;
        }
        // Outside this region's bounds, so any region holding the position is another.
        let destination = config.0.world.region_at(position.0);
        let Some(destination) = destination else {
            position.0 = bounds.clamp(position.0);
            continue;
        };
        let record = handoff_of(
            &mut mint,
            Crossing {
                from: region.def.id,
                to: destination.id,
                tick: clock.tick,
            },
            identity,
            (position.0, velocity.0, health.0),
            cooldown,
            player,
        );
        output.handoffs.push(record);
        spawn::despawn(
            &mut commands,
            &mut directory,
            entity,
            identity.id,
            Some(player.player),
        );
    }
}

/// Where and when an avatar crosses.
#[derive(Clone, Copy, Debug)]
struct Crossing {
    from: RegionId,
    to: RegionId,
    tick: u64,
}

/// The handoff record of an avatar crossing (its id minted here): the one place a record is
/// built. `motion` is its position, velocity and health.
fn handoff_of(
    mint: &mut Mint,
    crossing: Crossing,
    identity: &Identity,
    motion: (Vec2, Vec2, f32),
    cooldown: &AttackCooldown,
    player: &Player,
) -> HandoffRecord {
    let (position, velocity, health) = motion;
    let cooldown_ticks = cooldown.ready_tick.saturating_sub(crossing.tick);
    HandoffRecord {
        id: mint.handoff(crossing.from),
        from: crossing.from,
        to: crossing.to,
        tick: crossing.tick,
        entity: EntityState {
            id: identity.id,
            archetype: identity.archetype,
            player: Some(player.player),
            position,
            velocity,
            health,
            cooldown_ticks: u32::try_from(cooldown_ticks).unwrap_or(u32::MAX),
            last_input_seq: player.last_input_seq,
        },
    }
}

/// The avatars of a region's world, with what a handoff record carries.
type Avatars<'w, 's> = Query<
    'w,
    's,
    (
        Entity,
        &'static Identity,
        &'static Position,
        &'static Velocity,
        &'static Health,
        &'static AttackCooldown,
        &'static Player,
    ),
>;

/// Takes every player avatar out of `world` (a region's, between steps), each as a
/// handoff into `to`, removed as a crossing removes it: see [`crate::Region::evacuate`].
/// The dead travel revived (full health, where they lay): a handoff carries only the
/// living.
pub(crate) fn evacuate(world: &mut World, to: RegionId) -> Vec<HandoffRecord> {
    let mut state: SystemState<(
        Commands,
        ResMut<Directory>,
        ResMut<Mint>,
        Res<SimConfig>,
        Res<RegionInfo>,
        Res<TickClock>,
        Avatars,
    )> = SystemState::new(world);
    let (mut commands, mut directory, mut mint, config, region, clock, avatars) = state
        .get_mut(world)
        .expect("a region's world holds its resources");
    let mut records = Vec::new();
    for (entity, identity, position, velocity, health, cooldown, player) in &avatars {
        let health = if player.respawn_tick.is_some() || health.0 <= 0.0 {
            config.archetype(identity.archetype).max_health
        } else {
            health.0
        };
        let crossing = Crossing {
            from: region.def.id,
            to,
            tick: clock.tick,
        };
        records.push(handoff_of(
            &mut mint,
            crossing,
            identity,
            (position.0, velocity.0, health),
            cooldown,
            player,
        ));
        spawn::despawn(
            &mut commands,
            &mut directory,
            entity,
            identity.id,
            Some(player.player),
        );
    }
    state.apply(world);
    records
}
