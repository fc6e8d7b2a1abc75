//! NPC behaviour: dormancy far from players, wander, aggro, chase and leash.
//!
//! Cost follows activity: an NPC is awake only while some living player is within
//! `wake_radius_m` of it (rounded out to whole grid cells); a dormant NPC neither thinks nor
//! moves. Aggro is found from the players' side (one grid query per player rather than one
//! per NPC), using the grid of the previous tick; cells whose NPCs are all of archetypes
//! that never aggro (the index keeps a mask of each cell's NPC archetypes) are skipped
//! unread, so a crowd of players, or of peaceful NPCs, costs aggro nothing.

use bevy_ecs::prelude::*;
use tessera_shared::ids::NetId;
use tessera_shared::math::{Aabb, Vec2};

use crate::combat::NpcAttacks;
use crate::components::*;
use crate::grid::{SpatialIndex, archetype_bit};
use crate::plugin::RegionPlugin;
use crate::resources::{Directory, RegionInfo, SimConfig, SimRng, TickClock};

/// Systems of this feature; after inputs, before movement.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct AiSystems;

/// NPC AI.
pub struct AiPlugin;

/// How long an idle NPC waits before wandering again: 1 to 5 seconds.
const IDLE_MS_MIN: u32 = 1_000;
const IDLE_MS_MAX: u32 = 5_000;
/// A chasing NPC stops this fraction of its attack range short of its target.
const CHASE_STOP_FRACTION: f32 = 0.8;
/// Closer than this (5 cm) to a destination counts as arrived...
const ARRIVED_M: f32 = 0.05;

/// ...or closer than a few float steps where coordinates are so large (beyond ~500 km)
/// that 5 cm is below f32 resolution.
fn arrived(here: Vec2, to: Vec2) -> bool {
    let resolution = here.x.abs().max(here.y.abs()) * f32::EPSILON * 4.0;
    let r = ARRIVED_M.max(resolution);
    here.distance_squared(to) <= r * r
}

/// One bit per grid cell: is a living player within wake radius of this cell?
#[derive(Resource, Debug, Default)]
pub struct WakeMap {
    bits: Vec<u64>,
}

impl WakeMap {
    fn reset(&mut self, n_cells: usize) {
        self.bits.clear();
        self.bits.resize(n_cells.div_ceil(64), 0);
    }
    /// Sets the bits of cells `start..end`, a word at a time (a player's wake square is
    /// a run of 17 cells per row at the shipped radius and cell size).
    fn set_range(&mut self, start: usize, end: usize) {
        let mut i = start;
        while i < end {
            let bit = i % 64;
            let n = (64 - bit).min(end - i);
            let ones = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
            self.bits[i / 64] |= ones << bit;
            i += n;
        }
    }
    fn get(&self, idx: usize) -> bool {
        self.bits[idx / 64] & (1 << (idx % 64)) != 0
    }
}

/// Per grid slot, the nearest living player within aggro radius found this tick, as
/// (stamp, distance squared, player). A stamp older than the current one means "none":
/// nothing is cleared between ticks. One entry per grid slot (bounded by the region's
/// entity limit), 16 bytes each. `touched` lists the slots set this tick, in the order
/// first found (deterministic: players in query order, grid in slot order).
#[derive(Resource, Debug, Default)]
struct AggroScratch {
    best: Vec<(u64, f32, NetId)>,
    touched: Vec<u32>,
    /// Squared aggro radius per archetype (0 for non-hostile ones).
    radius2: Vec<f32>,
}

impl RegionPlugin for AiPlugin {
    fn build(&self, world: &mut World, schedule: &mut Schedule) {
        world.init_resource::<WakeMap>();
        world.init_resource::<AggroScratch>();
        schedule.add_systems(
            (wake_npcs, acquire_targets, think)
                .chain()
                .in_set(AiSystems),
        );
    }
}

/// Marks the grid cells within wake radius of a living player. The NPCs in them are woken
/// (and the others put to sleep, and stopped) by [`think`], in its own pass over the NPCs
/// rather than one more: each pass over 100k NPCs costs about half a millisecond of memory
/// traffic. Until then, [`acquire_targets`] reads wakefulness from the map.
pub fn wake_npcs(
    config: Res<SimConfig>,
    index: Res<SpatialIndex>,
    mut wake: ResMut<WakeMap>,
    players: Query<(&Position, &Player)>,
) {
    let grid = &index.grid;
    let (w, h) = grid.dims();
    wake.reset(w as usize * h as usize);
    let radius = config.0.world.interest.wake_radius_m;
    for (position, player) in &players {
        if player.respawn_tick.is_some() {
            continue;
        }
        let reach = Vec2::new(radius, radius);
        let (x0, y0) = grid.cell_of(position.0 - reach);
        let (x1, y1) = grid.cell_of(position.0 + reach);
        for y in y0..=y1 {
            let row = y as usize * w as usize;
            wake.set_range(row + x0 as usize, row + x1 as usize + 1);
        }
    }
}

/// Whether an NPC at `position` is awake this tick, by `wake`'s cell.
fn awake_at(wake: &WakeMap, index: &SpatialIndex, position: Vec2) -> bool {
    let grid = &index.grid;
    let (x, y) = grid.cell_of(position);
    wake.get(y as usize * grid.dims().0 as usize + x as usize)
}

/// Hostile, awake, idle or wandering NPCs within aggro radius of a living player start
/// chasing the nearest one (ties broken by the player's id, so the result does not depend
/// on the order players are visited in).
fn acquire_targets(
    config: Res<SimConfig>,
    clock: Res<TickClock>,
    index: Res<SpatialIndex>,
    wake: Res<WakeMap>,
    mut scratch: ResMut<AggroScratch>,
    players: Query<(&Identity, &Position, &Player)>,
    mut npcs: Query<&mut Npc>,
) {
    let scratch = &mut *scratch;
    let archetypes = &config.0.balance.archetypes;
    scratch.radius2.clear();
    scratch.radius2.extend(archetypes.iter().map(|a| {
        if a.hostile {
            a.aggro_radius_m * a.aggro_radius_m
        } else {
            0.0
        }
    }));
    let max_aggro = scratch
        .radius2
        .iter()
        .copied()
        .fold(0.0f32, f32::max)
        .sqrt();
    if max_aggro <= 0.0 {
        return;
    }
    let grid = &index.grid;
    scratch.best.resize(grid.len(), (0, 0.0, NetId(0)));
    scratch.touched.clear();
    // Stamps are tick + 1 so that the zeroed initial entries never match.
    let stamp = clock.tick + 1;
    let AggroScratch {
        best,
        touched,
        radius2,
    } = scratch;
    // Archetypes that can aggro at all: a cell holding none of them is skipped unread.
    let aggressive = (0u16..)
        .zip(radius2.iter())
        .filter(|&(_, &r2)| r2 != 0.0)
        .fold(0, |mask, (archetype, _)| mask | archetype_bit(archetype));
    let positions = grid.positions();
    let values = grid.values();
    let radius_sq = max_aggro * max_aggro;
    for (identity, position, player) in &players {
        if player.respawn_tick.is_some() {
            continue;
        }
        let center = position.0;
        // The cells and the test of `for_each_slot_in_radius`, in its order.
        let Some(((cx0, cy0), (cx1, cy1))) = grid.cells_in_radius(center, max_aggro) else {
            continue;
        };
        for cy in cy0..=cy1 {
            for cx in cx0..=cx1 {
                if index.npc_archetypes_in(cx, cy) & aggressive == 0 {
                    continue;
                }
                for slot in grid.cell_range(cx, cy) {
                    let npc_pos = positions[slot];
                    if npc_pos.distance_squared(center) > radius_sq {
                        continue;
                    }
                    // Players and non-hostile archetypes have a zero radius. Whether the
                    // NPC is free to chase is checked once per NPC below, not per player.
                    let item = &values[slot];
                    let r2 = radius2[usize::from(item.archetype)];
                    if item.is_player || r2 == 0.0 {
                        continue;
                    }
                    let d2 = npc_pos.distance_squared(center);
                    if d2 > r2 {
                        continue;
                    }
                    let entry = &mut best[slot];
                    let candidate = (stamp, d2, identity.id);
                    if entry.0 != stamp {
                        *entry = candidate;
                        touched.push(slot as u32);
                    } else if (d2, identity.id) < (entry.1, entry.2) {
                        *entry = candidate;
                    }
                }
            }
        }
    }
    for &slot in touched.iter() {
        let entity = index.entry_at(slot as usize).entity;
        let target = best[slot as usize].2;
        // NPCs have not moved since the grid was built: its position is the NPC's.
        let position = grid.positions()[slot as usize];
        if let Ok(mut npc) = npcs.get_mut(entity)
            && awake_at(&wake, &index, position)
            && matches!(npc.brain, Brain::Idle { .. } | Brain::Wander { .. })
        {
            npc.brain = Brain::Chase { target };
        }
    }
}

/// Wakes the NPCs in [`WakeMap`]'s cells and puts the others to sleep (stopped); then, for
/// the awake: velocity from behaviour, and behaviour transitions; and lists the chasing
/// NPCs whose attack is ready for combat ([`NpcAttacks`], in query order), which saves
/// combat a pass over every NPC.
#[allow(clippy::too_many_arguments)] // A system: each parameter is a distinct world access.
pub fn think(
    config: Res<SimConfig>,
    clock: Res<TickClock>,
    region: Res<RegionInfo>,
    directory: Res<Directory>,
    index: Res<SpatialIndex>,
    wake: Res<WakeMap>,
    mut rng: ResMut<SimRng>,
    mut attacks: ResMut<NpcAttacks>,
    targets: Query<(&Position, &Health), With<Player>>,
    mut npcs: Query<
        (
            Entity,
            &Identity,
            &Position,
            &mut Velocity,
            &mut Npc,
            &mut Health,
            &AttackCooldown,
        ),
        Without<Player>,
    >,
) {
    let bounds = region.def.bounds;
    attacks.0.clear();
    for (entity, identity, position, mut velocity, mut npc, mut health, cooldown) in &mut npcs {
        let awake = awake_at(&wake, &index, position.0);
        if npc.awake != awake {
            npc.awake = awake;
            if !awake && velocity.0 != Vec2::ZERO {
                velocity.0 = Vec2::ZERO;
            }
        }
        if !npc.awake || health.0 <= 0.0 {
            continue;
        }
        // Most NPCs stand idle at any time: nothing to decide until their timer is due.
        if let Brain::Idle { until_tick } = npc.brain
            && clock.tick < until_tick
            && velocity.0 == Vec2::ZERO
        {
            continue;
        }
        let arch = config.archetype(identity.archetype);
        let here = position.0;
        let (next_brain, goal) = match npc.brain {
            Brain::Chase { target } => {
                let target = directory
                    .by_net_id
                    .get(&target)
                    .and_then(|&e| targets.get(e).ok())
                    .filter(|(_, h)| h.0 > 0.0)
                    .map(|(p, _)| p.0);
                let leash = arch.leash_radius_m;
                match target {
                    Some(t) if t.distance_squared(npc.home) <= leash * leash => {
                        let stop = arch.attack_range_m * CHASE_STOP_FRACTION;
                        let goal = if here.distance_squared(t) > stop * stop {
                            Some(t)
                        } else {
                            None
                        };
                        (npc.brain, goal)
                    }
                    _ => (Brain::Return, Some(npc.home)),
                }
            }
            Brain::Return => {
                if arrived(here, npc.home) {
                    // Home: reset like an MMO mob does, then rest.
                    if health.0 != arch.max_health {
                        health.0 = arch.max_health;
                    }
                    (idle(&mut rng, &clock), None)
                } else {
                    (Brain::Return, Some(npc.home))
                }
            }
            Brain::Idle { until_tick } => {
                if clock.tick >= until_tick && arch.wander_radius_m > 0.0 {
                    let r = arch.wander_radius_m;
                    let around = Aabb::new(npc.home - Vec2::new(r, r), npc.home + Vec2::new(r, r));
                    let to = bounds.clamp(rng.point_in(&around));
                    (Brain::Wander { to }, Some(to))
                } else {
                    (npc.brain, None)
                }
            }
            Brain::Wander { to } => {
                if arrived(here, to) {
                    (idle(&mut rng, &clock), None)
                } else {
                    (npc.brain, Some(to))
                }
            }
        };
        if npc.brain != next_brain {
            npc.brain = next_brain;
        }
        let wanted = match goal {
            Some(goal) => seek(here, goal, arch.speed_mps, clock.dt_s),
            None => Vec2::ZERO,
        };
        if velocity.0 != wanted {
            velocity.0 = wanted;
        }
        if let Brain::Chase { target } = npc.brain
            && health.0 > 0.0
            && cooldown.ready_tick <= clock.tick
        {
            attacks.0.push((entity, target));
        }
    }
}

fn idle(rng: &mut SimRng, clock: &TickClock) -> Brain {
    let wait_ms = IDLE_MS_MIN + rng.below(IDLE_MS_MAX - IDLE_MS_MIN);
    Brain::Idle {
        until_tick: clock.tick + clock.ticks_for_ms(wait_ms),
    }
}

/// The velocity that walks from `from` toward `to` at `speed`, landing exactly on `to`
/// rather than overshooting it.
fn seek(from: Vec2, to: Vec2, speed_mps: f32, dt_s: f32) -> Vec2 {
    let delta = to - from;
    let dist = delta.length();
    if dist <= speed_mps * dt_s {
        // Arrive this tick. Movement adds `v * dt`; rounding may leave us a hair short,
        // in which case the next tick closes the gap.
        delta * (1.0 / dt_s)
    } else if dist > 0.0 {
        delta * (speed_mps / dist)
    } else {
        Vec2::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::WakeMap;

    #[test]
    fn set_range_sets_exactly_the_range() {
        for (n, start, end) in [
            (300, 0, 0),
            (300, 3, 4),
            (300, 60, 70),
            (300, 0, 300),
            (300, 64, 128),
            (300, 5, 250),
        ] {
            let mut map = WakeMap::default();
            map.reset(n);
            map.set_range(start, end);
            for i in 0..n {
                assert_eq!(map.get(i), (start..end).contains(&i), "{start}..{end}: {i}");
            }
        }
    }
}
