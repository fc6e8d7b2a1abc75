//! Movement of NPCs by their velocity. (Player avatars move only through validated inputs
//! and server-side displacements, see `inputs`.)
//!
//! NPCs never leave their region: they are clamped to its bounds. Only players cross
//! borders.

use bevy_ecs::prelude::*;
use tessera_shared::math::Vec2;

use crate::components::*;
use crate::plugin::RegionPlugin;
use crate::resources::{RegionInfo, TickClock};

/// Systems of this feature; after AI.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct MovementSystems;

/// Integrates NPC velocities.
pub struct MovementPlugin;

impl RegionPlugin for MovementPlugin {
    fn build(&self, _world: &mut World, schedule: &mut Schedule) {
        schedule.add_systems(move_npcs.in_set(MovementSystems));
    }
}

/// `position += velocity * dt`, clamped to the region. Entities standing still are not
/// written, so change detection (and thus interest updates) skips them.
pub fn move_npcs(
    clock: Res<TickClock>,
    region: Res<RegionInfo>,
    mut npcs: Query<(&mut Position, &Velocity), With<Npc>>,
) {
    let dt = clock.dt_s;
    let bounds = region.def.bounds;
    for (mut position, velocity) in &mut npcs {
        if velocity.0 == Vec2::ZERO {
            continue;
        }
        let next = bounds.clamp(position.0 + velocity.0 * dt);
        debug_assert!(next.is_finite());
        position.0 = next;
    }
}
