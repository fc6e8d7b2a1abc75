//! The spatial index: a uniform grid over the region, rebuilt every tick with a counting
//! sort (`index`), plus the system that rebuilds it.
//!
//! Rebuilding is cheaper than updating in place when most entities move every tick, and
//! it keeps no per-entity bookkeeping that could drift out of sync with the world. When
//! the rebuild finds every entity in the same cell and the same order as the tick before
//! (a dormant region), it keeps the slots, and the index keeps its placements and
//! archetype masks too, rewriting only the changed flags.
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

/// What the grid stores per entity, next to its position: what a scan needs to filter
/// items without touching anything else (8 bytes, so the rebuild's scatter stays small).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GridItem {
    /// Index of the entity's [`GridEntry`] ([`SpatialIndex::entry`]).
    pub entry: u32,
    /// Its archetype.
    pub archetype: u16,
    /// True for player avatars.
    pub is_player: bool,
}

/// The rest of what the index knows of an entity, in the order entities were inserted:
/// read only for the few items a query keeps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GridEntry {
    /// The entity.
    pub entity: Entity,
    /// Its stable id.
    pub id: NetId,
    /// Its health.
    pub health: f32,
}

/// Where an entity sits in the grid, by entity index: one random read answers both "is
/// it still there" and "did it change", which is what interest asks of every visible
/// entity every tick (8 bytes each, so the table of 100k entities fits a core's L2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Placement {
    /// The entity's generation, so that a reused index does not alias a despawned one.
    generation: u32,
    /// The grid slot, with [`CHANGED_BIT`] set if position or health changed since the
    /// previous rebuild; [`NO_SLOT`] if the index holds no entity.
    slot_and_changed: u32,
}

/// `Placement::slot_and_changed`'s flag bit.
const CHANGED_BIT: u32 = 1 << 31;

/// `Placement::slot_and_changed` of an index with no entity in the grid.
const NO_SLOT: u32 = u32::MAX;

/// The most entities the index holds: slots must leave [`CHANGED_BIT`] free. Far above
/// any `entities_per_region_max` the config accepts.
pub const INDEX_ENTITIES_MAX: usize = (CHANGED_BIT - 1) as usize;

/// The region's grid of all entities, positions as of the last [`update_grid`], and where
/// each entity sits in it.
#[derive(Resource, Debug)]
pub struct SpatialIndex {
    /// The grid.
    pub grid: SpatialGrid<GridItem>,
    /// One per entity, in insertion order; [`GridItem::entry`] points here.
    entries: Vec<GridEntry>,
    /// Reused by `update_grid`: the entity indices whose position or health changed this
    /// tick, in insertion order (staging for `placements`' [`CHANGED_BIT`]s).
    changed: Vec<u32>,
    /// The entity indices whose placement has [`CHANGED_BIT`] set (last tick's `changed`):
    /// when the slots are kept, only these and the newly changed are rewritten.
    flagged: Vec<u32>,
    /// By entity index. Rewritten wholesale at every rebuild (8 bytes per entity index).
    placements: Vec<Placement>,
    /// Per cell (`cy * cells_x + cx`), which NPC archetypes it holds, one bit each
    /// ([`archetype_bit`]): lets aggro skip the cells without a hostile NPC. 8 bytes per
    /// cell.
    npc_archetypes: Vec<u64>,
}

/// The bit of archetype `archetype` in [`SpatialIndex::npc_archetypes_in`]: archetypes
/// from 63 on share bit 63, so a mask is exact for the first 63 and conservative after.
pub fn archetype_bit(archetype: u16) -> u64 {
    1 << archetype.min(63)
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
                entries: Vec::new(),
                changed: Vec::new(),
                flagged: Vec::new(),
                placements: Vec::new(),
                npc_archetypes: Vec::new(),
            })
            .map_err(|source| RegionError::Grid {
                region: region.def.id,
                source,
            })
    }

    /// The grid slot of `entity` as of the last rebuild, if it was in the grid.
    pub fn slot(&self, entity: Entity) -> Option<usize> {
        self.placement(entity).map(|(slot, _)| slot)
    }

    /// The grid slot of `entity` as of the last rebuild, if it was in the grid, and
    /// whether its position or health changed in the tick before that rebuild.
    #[inline]
    pub fn placement(&self, entity: Entity) -> Option<(usize, bool)> {
        let p = self.placements.get(entity.index_u32() as usize)?;
        if p.slot_and_changed == NO_SLOT || p.generation != entity.generation().to_bits() {
            return None;
        }
        let slot = (p.slot_and_changed & !CHANGED_BIT) as usize;
        Some((slot, p.slot_and_changed & CHANGED_BIT != 0))
    }

    /// The NPC archetypes (a mask of [`archetype_bit`]s) in cell `(cx, cy)` as of the
    /// last rebuild; 0 outside the grid.
    #[inline]
    pub fn npc_archetypes_in(&self, cx: u32, cy: u32) -> u64 {
        let (w, h) = self.grid.dims();
        if cx >= w || cy >= h {
            return 0;
        }
        // Empty before the first rebuild, like the grid.
        let cell_idx = cy as usize * w as usize + cx as usize;
        self.npc_archetypes.get(cell_idx).copied().unwrap_or(0)
    }

    /// The entry an item of the grid points to.
    #[inline]
    pub fn entry(&self, item: &GridItem) -> &GridEntry {
        &self.entries[item.entry as usize]
    }

    /// The entry of the item in grid `slot`.
    #[inline]
    pub fn entry_at(&self, slot: usize) -> &GridEntry {
        self.entry(&self.grid.values()[slot])
    }
}

/// Rebuilds the grid from every entity's position, then the placements and the cells'
/// archetype masks (or, if the grid kept every slot and the same entities are in the same
/// order, only the placements' changed flags).
pub fn update_grid(
    mut index: ResMut<SpatialIndex>,
    entities: Query<(Entity, &Identity, Ref<Position>, Ref<Health>, Has<Player>)>,
) {
    let SpatialIndex {
        grid,
        entries,
        changed,
        flagged,
        placements,
        npc_archetypes,
    } = &mut *index;
    // Entries are compared with the ones the same insertion index held last tick and
    // overwritten only where they differ: a tick where nothing changed writes nothing.
    let mut same_entities = true;
    let mut n_entries = 0usize;
    changed.clear();
    grid.rebuild(
        entities
            .iter()
            .map(|(entity, identity, position, health, is_player)| {
                let entry = u32::try_from(n_entries).expect("below GRID_ITEMS_MAX");
                let new_entry = GridEntry {
                    entity,
                    id: identity.id,
                    health: health.0,
                };
                match entries.get_mut(n_entries) {
                    Some(old) => {
                        same_entities &= old.entity == entity;
                        if *old != new_entry {
                            *old = new_entry;
                        }
                    }
                    None => {
                        same_entities = false;
                        entries.push(new_entry);
                    }
                }
                n_entries += 1;
                if position.is_changed() || health.is_changed() {
                    changed.push(entity.index_u32());
                }
                let item = GridItem {
                    entry,
                    archetype: identity.archetype,
                    is_player,
                };
                (position.0, item)
            }),
    );
    // Fewer entities than last tick: not the same sequence (the grid sees it too).
    same_entities &= entries.len() == n_entries;
    entries.truncate(n_entries);
    assert!(entries.len() <= INDEX_ENTITIES_MAX, "too many entities");
    let values_changed = match grid.last_rebuild() {
        // The same entities in the same slots: only the changed flags move.
        Rebuilt::SlotsKept { values_changed } if same_entities => {
            for &idx in flagged.iter() {
                placements[idx as usize].slot_and_changed &= !CHANGED_BIT;
            }
            values_changed
        }
        _ => {
            place(grid.inserted_slots(), entries, placements);
            true
        }
    };
    for &idx in changed.iter() {
        placements[idx as usize].slot_and_changed |= CHANGED_BIT;
    }
    std::mem::swap(flagged, changed);
    if values_changed {
        npc_archetypes.clear();
        let values = grid.values();
        npc_archetypes.extend(grid.cell_ranges().map(|range| {
            values[range]
                .iter()
                .filter(|item| !item.is_player)
                .fold(0, |mask, item| mask | archetype_bit(item.archetype))
        }));
    }
}

/// Rewrites every placement from the rebuild's slots, without changed flags.
fn place(slots: &[u32], entries: &[GridEntry], placements: &mut Vec<Placement>) {
    let absent = Placement {
        generation: 0,
        slot_and_changed: NO_SLOT,
    };
    placements.fill(absent);
    for (entry, &slot) in entries.iter().zip(slots) {
        let idx = entry.entity.index_u32() as usize;
        if idx >= placements.len() {
            placements.resize(idx + 1, absent);
        }
        placements[idx] = Placement {
            generation: entry.entity.generation().to_bits(),
            slot_and_changed: slot,
        };
    }
}
