//! The spatial index: a uniform grid over the region, rebuilt from scratch every tick with
//! a counting sort (`index`), plus the system that rebuilds it.
//!
//! Rebuilding is cheaper than updating in place when most entities move every tick, and
//! it keeps no per-entity bookkeeping that could drift out of sync with the world.
//! Readers that run before [`update_grid`] in a tick (AI aggro) see the previous tick's
//! positions; that lag of one tick is deliberate and documented in ARCHITECTURE.md.

mod index;
pub use index::*;

use bevy_ecs::prelude::*;
use tessera_shared::ids::NetId;

use crate::components::*;
use crate::error::RegionError;
use crate::plugin::RegionPlugin;
use crate::resources::RegionInfo;

/// Systems of this feature; after border crossings, before interest.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct GridSystems;

/// What the grid stores per entity: enough for interest and aggro to work without touching
/// the world again.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GridItem {
    /// The entity.
    pub entity: Entity,
    /// Its stable id.
    pub id: NetId,
    /// Its archetype.
    pub archetype: u16,
    /// Its health.
    pub health: f32,
    /// True if position or health changed since the previous rebuild.
    pub changed: bool,
    /// True for player avatars.
    pub is_player: bool,
}

/// The region's grid of all entities, positions as of the last [`update_grid`], and where
/// each entity sits in it.
#[derive(Resource, Debug)]
pub struct SpatialIndex {
    /// The grid.
    pub grid: SpatialGrid<GridItem>,
    /// Grid slot (index into `grid.items()`) by entity index. Entries of despawned
    /// entities go stale rather than being cleared: [`SpatialIndex::slot`] checks that the
    /// slot still holds the same entity. One `u32` per entity index.
    slot_of: Vec<u32>,
}

/// Builds the grid for a region.
pub struct GridPlugin;

impl RegionPlugin for GridPlugin {
    fn build(&self, _world: &mut World, schedule: &mut Schedule) {
        schedule.add_systems(update_grid.in_set(GridSystems));
    }
}

impl SpatialIndex {
    /// An empty grid over `region`'s bounds.
    pub fn new(region: &RegionInfo, cell_size_m: f32) -> Result<SpatialIndex, RegionError> {
        SpatialGrid::new(region.def.bounds, cell_size_m)
            .map(|grid| SpatialIndex {
                grid,
                slot_of: Vec::new(),
            })
            .map_err(|source| RegionError::Grid {
                region: region.def.id,
                source,
            })
    }

    /// The grid slot of `entity` as of the last rebuild, if it was in the grid.
    pub fn slot(&self, entity: Entity) -> Option<usize> {
        let slot = *self.slot_of.get(entity.index_u32() as usize)? as usize;
        let (_, item) = self.grid.items().get(slot)?;
        (item.entity == entity).then_some(slot)
    }
}

/// Rebuilds the grid from every entity's position.
pub fn update_grid(
    mut index: ResMut<SpatialIndex>,
    entities: Query<(Entity, &Identity, Ref<Position>, Ref<Health>, Has<Player>)>,
) {
    let index = &mut *index;
    index.grid.rebuild(
        entities
            .iter()
            .map(|(entity, identity, position, health, is_player)| {
                let item = GridItem {
                    entity,
                    id: identity.id,
                    archetype: identity.archetype,
                    health: health.0,
                    changed: position.is_changed() || health.is_changed(),
                    is_player,
                };
                (position.0, item)
            }),
    );
    for (slot, (_, item)) in index.grid.items().iter().enumerate() {
        let idx = item.entity.index_u32() as usize;
        if idx >= index.slot_of.len() {
            index.slot_of.resize(idx + 1, u32::MAX);
        }
        // The grid holds at most GRID_ITEMS_MAX = u32::MAX items.
        index.slot_of[idx] = slot as u32;
    }
}
