//! The spatial index: a uniform grid over the region (`index`), plus the system that keeps
//! it up to date.
//!
//! The index is updated from bevy's change detection, not rebuilt: [`update_grid`] visits
//! only the entities whose identity, position or health changed since it last ran, and
//! those that left (a removal of one of the components it reads, which a despawn is).
//! An entity that moved within its cell is rewritten in place; the few that entered,
//! left or changed cell are spliced in with one merge ([`SpatialGrid::splice`]). Most
//! NPCs move every tick but few cross a cell (16 m at a few m/s: about 1% a tick), so a
//! tick costs a scan of the change ticks, a write per moved entity and a copy of the
//! arrays, instead of a counting sort of every entity and a rewrite of every placement.
//!
//! Order: the items of a cell are in entity-index order, so the layout depends only on
//! which entities are where, never on the order the ECS iterates them in (which a
//! despawn reshuffles) nor on the order of the edits. Nothing in the simulation depends
//! on the order of slots anyway: every choice among grid items breaks ties by id.
//!
//! Readers that run before [`update_grid`] in a tick (AI aggro) see the previous tick's
//! positions; that lag of one tick is deliberate and documented in ARCHITECTURE.md.

mod index;
pub use index::*;

#[cfg(test)]
mod tests;

use bevy_ecs::prelude::*;
use bevy_ecs::system::SystemParam;
use tessera_shared::ids::NetId;
use tessera_shared::math::Vec2;

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
    /// The entity's index ([`Entity::index_u32`]), which is also where its [`GridEntry`]
    /// is ([`SpatialIndex::entry`]) and the order of the items within a cell.
    pub entry: u32,
    /// Its archetype.
    pub archetype: u16,
    /// True for player avatars.
    pub is_player: bool,
}

/// The rest of what the index knows of an entity, by entity index: read only for the few
/// items a query keeps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GridEntry {
    /// The entity.
    pub entity: Entity,
    /// Its stable id.
    pub id: NetId,
    /// Its health.
    pub health: f32,
    /// Its archetype, as in its [`GridItem`].
    pub archetype: u16,
    /// True for player avatars, as in its [`GridItem`].
    pub is_player: bool,
}

/// Where an entity sits in the grid, by entity index: one random read of 8 bytes answers
/// both "is it still there" and "did it change", which is what interest asks of every
/// visible entity every tick (the table of 100k entities fits a core's L2). The place is a
/// cell, and the rank within it is apart ([`SpatialIndex::ranks`], read only to find the
/// slot): a splice moves the slots of every item after its first edit, but the ranks of
/// the items of the cells it touched only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Placement {
    /// The entity's generation, so that a reused index does not alias a despawned one.
    generation: u32,
    /// The cell (`cy * cells_x + cx`), with [`CHANGED_BIT`] set if position or health
    /// changed in the tick before the last update; [`NO_CELL`] if the index holds no
    /// entity, [`PENDING`] while [`update_grid`] (re)inserts it (never after it returns).
    cell_and_changed: u32,
}

impl Placement {
    /// The cell of entity `generation`, if it is in the grid (not pending).
    #[inline]
    fn cell_of(self, generation: u32) -> Option<u32> {
        let cell = self.cell_and_changed & !CHANGED_BIT;
        (cell < PENDING && self.generation == generation).then_some(cell)
    }

    #[inline]
    fn is_changed(self) -> bool {
        self.cell_and_changed & CHANGED_BIT != 0
    }
}

/// `Placement::cell_and_changed`'s flag bit.
const CHANGED_BIT: u32 = 1 << 31;

/// `Placement::cell_and_changed` of an index with no entity in the grid.
const NO_CELL: u32 = CHANGED_BIT - 1;

/// `Placement::cell_and_changed` of an entity that the update in progress (re)inserts.
const PENDING: u32 = CHANGED_BIT - 2;

// Every cell is below the sentinels.
const _: () = assert!(GRID_CELLS_MAX < PENDING as usize);

/// A placement of no entity.
const ABSENT: Placement = Placement {
    generation: 0,
    cell_and_changed: NO_CELL,
};

/// The region's grid of all entities, positions as of the last [`update_grid`], and where
/// each entity sits in it.
#[derive(Resource, Debug)]
pub struct SpatialIndex {
    /// The grid; each cell's items in entity-index order.
    pub grid: SpatialGrid<GridItem>,
    /// By entity index ([`GridItem::entry`]); stale for an index not in the grid.
    entries: Vec<GridEntry>,
    /// By entity index; [`ABSENT`] past the end.
    placements: Vec<Placement>,
    /// By entity index, the rank of a placed entity among its cell's items: its slot is
    /// the cell's first slot plus this.
    ranks: Vec<u32>,
    /// Reused by `update_grid`: the entity indices whose position or health changed this
    /// tick (staging for `placements`' [`CHANGED_BIT`]s).
    changed: Vec<u32>,
    /// The entity indices whose placement may have [`CHANGED_BIT`] set (the last
    /// update's `changed`): only these are cleared at the next.
    flagged: Vec<u32>,
    /// Reused by `update_grid`: the slots of the entities leaving the grid or their cell.
    departures: Vec<u32>,
    /// Reused by `update_grid`: the entities entering the grid or a new cell.
    arrivals: Vec<(Vec2, GridItem)>,
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

/// Keeps the grid up to date for a region.
pub struct GridPlugin;

impl RegionPlugin for GridPlugin {
    fn build(&self, _world: &mut World, schedule: &mut Schedule) {
        schedule.add_systems(update_grid.in_set(GridSystems));
    }
}

/// What the index reads of an entity: every entity with an identity, a position and
/// health is in the grid.
type GridRow = (
    Entity,
    &'static Identity,
    Ref<'static, Position>,
    Ref<'static, Health>,
    Has<Player>,
);

/// The entities whose [`GridRow`] may differ from what the index holds. An added
/// component counts as changed, so this includes the spawned. [`Identity`] never changes
/// (an entity is spawned with it, and with a position), so it is not watched: a filter
/// costs a read per entity of every tick. The player marker is watched for free (only
/// players' tables have it).
type GridChanged = Or<(Changed<Position>, Changed<Health>, Added<Player>)>;

/// The removals that can take an entity out of the grid or change its row: a despawn
/// removes them all.
#[derive(SystemParam)]
pub struct GridRemovals<'w, 's> {
    identity: RemovedComponents<'w, 's, Identity>,
    position: RemovedComponents<'w, 's, Position>,
    health: RemovedComponents<'w, 's, Health>,
    player: RemovedComponents<'w, 's, Player>,
}

impl SpatialIndex {
    /// An empty grid over `region`'s bounds.
    pub fn new(region: &RegionInfo, cell_size_m: f32) -> Result<SpatialIndex, RegionError> {
        SpatialGrid::new(region.def.bounds, cell_size_m)
            .map(|grid| {
                let (w, h) = grid.dims();
                SpatialIndex {
                    grid,
                    entries: Vec::new(),
                    placements: Vec::new(),
                    ranks: Vec::new(),
                    changed: Vec::new(),
                    flagged: Vec::new(),
                    departures: Vec::new(),
                    arrivals: Vec::new(),
                    npc_archetypes: vec![0; w as usize * h as usize],
                }
            })
            .map_err(|source| RegionError::Grid {
                region: region.def.id,
                source,
            })
    }

    /// The grid slot of `entity` as of the last update, if it was in the grid.
    pub fn slot(&self, entity: Entity) -> Option<usize> {
        self.placement(entity).map(|(slot, _)| slot)
    }

    /// The grid slot of `entity` as of the last update, if it was in the grid, and
    /// whether its position or health changed in the tick before that update.
    #[inline]
    pub fn placement(&self, entity: Entity) -> Option<(usize, bool)> {
        let idx = entity.index_u32() as usize;
        let p = *self.placements.get(idx)?;
        let cell = p.cell_of(entity.generation().to_bits())?;
        Some((self.slot_in(cell, idx), p.is_changed()))
    }

    /// Whether `entity`'s position or health changed in the tick before the last update,
    /// if it was in the grid: [`SpatialIndex::placement`] without finding the slot.
    #[inline]
    pub fn changed_flag(&self, entity: Entity) -> Option<bool> {
        let p = *self.placements.get(entity.index_u32() as usize)?;
        p.cell_of(entity.generation().to_bits())?;
        Some(p.is_changed())
    }

    /// The slot of the placed entity of index `idx` in `cell`.
    #[inline]
    fn slot_in(&self, cell: u32, idx: usize) -> usize {
        self.grid.slots_of_cell(cell).start + self.ranks[idx] as usize
    }

    /// The NPC archetypes (a mask of [`archetype_bit`]s) in cell `(cx, cy)` as of the
    /// last update; 0 outside the grid.
    #[inline]
    pub fn npc_archetypes_in(&self, cx: u32, cy: u32) -> u64 {
        let (w, h) = self.grid.dims();
        if cx >= w || cy >= h {
            return 0;
        }
        self.npc_archetypes[cy as usize * w as usize + cx as usize]
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

    /// Takes `entity` out of the grid at the next splice, if it is in it.
    fn depart(&mut self, entity: Entity) {
        let idx = entity.index_u32() as usize;
        let Some(&p) = self.placements.get(idx) else {
            return;
        };
        if let Some(cell) = p.cell_of(entity.generation().to_bits()) {
            // Below GRID_ITEMS_MAX, which fits u32.
            self.departures.push(self.slot_in(cell, idx) as u32);
            self.placements[idx].cell_and_changed = NO_CELL;
        }
    }

    /// Brings the index up to date with `row`: the entry rewritten, the position moved in
    /// place if the entity stays in its cell as the same item, or else the entity
    /// (re)inserted at the next splice. Idempotent within one update.
    fn upsert(&mut self, row: <GridRow as bevy_ecs::query::QueryData>::Item<'_, '_>) {
        let (entity, identity, position, health, is_player) = row;
        let idx = entity.index_u32() as usize;
        let generation = entity.generation().to_bits();
        if idx >= self.placements.len() {
            self.placements.resize(idx + 1, ABSENT);
            self.ranks.resize(idx + 1, 0);
            self.entries.resize(
                idx + 1,
                GridEntry {
                    entity: Entity::PLACEHOLDER,
                    id: NetId(0),
                    health: 0.0,
                    archetype: 0,
                    is_player: false,
                },
            );
        }
        let entry = GridEntry {
            entity,
            id: identity.id,
            health: health.0,
            archetype: identity.archetype,
            is_player,
        };
        let was = self.entries[idx];
        if was != entry {
            self.entries[idx] = entry;
        }
        if position.is_changed() || health.is_changed() {
            // Entity indices fit u32.
            self.changed.push(idx as u32);
        }
        let p = self.placements[idx];
        if p.generation == generation && p.cell_and_changed & !CHANGED_BIT == PENDING {
            return;
        }
        // Placed under this generation or, if its departure went unreported, a previous one.
        if let Some(cell) = p.cell_of(p.generation) {
            let slot = self.slot_in(cell, idx);
            // The entry is the placed entity's (written whenever it is placed), so the
            // item is compared without reading the grid's copy (a cache miss).
            let stays = p.generation == generation
                && (was.archetype, was.is_player) == (entry.archetype, entry.is_player)
                && self.grid.cell_index(position.0) == cell;
            if stays {
                // Written unconditionally: reading first would cost the same cache miss.
                self.grid.set_position(slot, position.0);
                return;
            }
            // Moved cell, changed item, or the stale placement of an entity whose
            // departure went unreported: either way, out of its slot.
            self.departures.push(slot as u32);
        }
        self.placements[idx] = Placement {
            generation,
            cell_and_changed: PENDING,
        };
        let item = GridItem {
            entry: idx as u32,
            archetype: entry.archetype,
            is_player,
        };
        self.arrivals.push((position.0, item));
    }

    /// Splices the departures and arrivals into the grid, then rewrites the placements
    /// and archetype masks of the cells it touched.
    fn splice(&mut self) {
        if self.departures.is_empty() && self.arrivals.is_empty() {
            return;
        }
        let SpatialIndex {
            grid,
            placements,
            ranks,
            departures,
            arrivals,
            npc_archetypes,
            ..
        } = self;
        grid.splice(departures, arrivals.drain(..), |item| item.entry);
        departures.clear();
        let values = grid.values();
        for &cell in grid.touched_cells() {
            let mut mask = 0;
            for (rank, item) in (0u32..).zip(&values[grid.slots_of_cell(cell)]) {
                let idx = item.entry as usize;
                // The changed flags are set afresh after the splice.
                placements[idx].cell_and_changed = cell;
                ranks[idx] = rank;
                if !item.is_player {
                    mask |= archetype_bit(item.archetype);
                }
            }
            npc_archetypes[cell as usize] = mask;
        }
    }
}

/// Brings the index up to date with the entities that changed or left since it last ran
/// (see the module documentation), and sets the changed flags of this tick's changes.
pub fn update_grid(
    mut index: ResMut<SpatialIndex>,
    changed: Query<GridRow, GridChanged>,
    rows: Query<GridRow>,
    mut removals: GridRemovals,
) {
    let index = &mut *index;
    index.changed.clear();
    let removed = removals
        .identity
        .read()
        .chain(removals.position.read())
        .chain(removals.health.read())
        .chain(removals.player.read());
    for entity in removed {
        // Out of its slot; back in if it still has all the grid reads (a component
        // removed and added again, or the player marker removed).
        index.depart(entity);
        if let Ok(row) = rows.get(entity) {
            index.upsert(row);
        }
    }
    for row in &changed {
        index.upsert(row);
    }
    index.splice();
    let SpatialIndex {
        placements,
        changed,
        flagged,
        ..
    } = index;
    for &idx in flagged.iter() {
        placements[idx as usize].cell_and_changed &= !CHANGED_BIT;
    }
    for &idx in changed.iter() {
        placements[idx as usize].cell_and_changed |= CHANGED_BIT;
    }
    std::mem::swap(flagged, changed);
}
