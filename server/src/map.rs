//! The world map operators see (`GET /v1/map`, the console): every region with its
//! holder and load, the players' positions and a density grid of players and NPCs.
//!
//! Each node samples its own regions once a second (when the tick driver publishes its
//! status) on the tick's thread ([`sample`]: one walk over each region's spatial grid)
//! and publishes the sample with its load report (`placement::NodeLoad::map`), so any
//! node's `/v1/map` shows the whole cluster from the reports it already reads for
//! placement. This module is a leaf: it knows regions, not the node.

use serde::{Deserialize, Serialize};
use tessera_regions::Region;
use tessera_regions::io::EntityView;
use tessera_shared::config::WorldConfig;

/// Players listed by position per region at most; the rest are counted
/// ([`RegionMap::players_unlisted`]) and still show in the density grid.
pub const MAP_PLAYERS_PER_REGION_MAX: usize = 2_000;
/// Density cells along the world's longer side: the grid's cells are squares of
/// [`heat_cell_m`] metres, the same on every node of a world.
pub const HEAT_CELLS_PER_SIDE: f32 = 64.0;

/// One region as sampled.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RegionMap {
    /// Region id.
    pub id: u32,
    /// Players by position: `[player id, x, y]`, at most [`MAP_PLAYERS_PER_REGION_MAX`].
    pub players: Vec<(u64, f32, f32)>,
    /// Players in the region beyond those listed.
    pub players_unlisted: usize,
    /// The density grid's non-empty cells inside the region: `[column, row, players,
    /// NPCs]`, columns and rows of [`heat_cell_m`] metres from the world's origin.
    pub heat: Vec<[u32; 4]>,
}

/// The edge of a density cell, in metres, for `world`.
pub fn heat_cell_m(world: &WorldConfig) -> f32 {
    (world.size_m.x.max(world.size_m.y) / HEAT_CELLS_PER_SIDE).max(1.0)
}

/// Samples `regions` (their entities as of their last step); `scratch` is reused.
pub fn sample(
    regions: &[Region],
    world: &WorldConfig,
    scratch: &mut Vec<EntityView>,
) -> Vec<RegionMap> {
    let cell = heat_cell_m(world);
    regions
        .iter()
        .filter_map(|region| {
            let def = world.regions.iter().find(|r| r.id == region.id())?;
            scratch.clear();
            region.views_in(def.bounds, scratch);
            Some(sample_one(region.id().0, scratch, cell))
        })
        .collect()
}

fn sample_one(id: u32, entities: &[EntityView], cell: f32) -> RegionMap {
    let mut map = RegionMap {
        id,
        ..RegionMap::default()
    };
    // Cells in the order first met; a region holds few of them (its area over the cell's).
    let mut heat: std::collections::HashMap<(u32, u32), usize> = Default::default();
    for entity in entities {
        let (column, row) = (
            (entity.position.x / cell).max(0.0) as u32,
            (entity.position.y / cell).max(0.0) as u32,
        );
        let slot = *heat.entry((column, row)).or_insert_with(|| {
            map.heat.push([column, row, 0, 0]);
            map.heat.len() - 1
        });
        match entity.id.player() {
            Some(player) => {
                map.heat[slot][2] += 1;
                if map.players.len() < MAP_PLAYERS_PER_REGION_MAX {
                    map.players
                        .push((player.0, entity.position.x, entity.position.y));
                } else {
                    map.players_unlisted += 1;
                }
            }
            None => map.heat[slot][3] += 1,
        }
    }
    map.heat.sort_unstable();
    map.players.sort_unstable_by_key(|p| p.0);
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_shared::ids::{NetId, PlayerId, RegionId};
    use tessera_shared::math::Vec2;

    fn view(id: NetId, x: f32, y: f32) -> EntityView {
        EntityView {
            id,
            archetype: 0,
            position: Vec2 { x, y },
            health: 1.0,
        }
    }

    #[test]
    fn players_are_listed_and_everything_is_counted_in_its_cell() {
        let npc = |n| NetId::mint(RegionId(1), n).unwrap();
        let player = |p| NetId::of_player(PlayerId(p));
        let entities = [
            view(player(7), 5.0, 5.0),
            view(npc(1), 6.0, 9.0),
            view(npc(2), 15.0, 1.0),
            view(player(3), 19.9, 0.5),
        ];
        let map = sample_one(1, &entities, 10.0);
        assert_eq!(map.players, vec![(3, 19.9, 0.5), (7, 5.0, 5.0)]);
        assert_eq!(map.players_unlisted, 0);
        assert_eq!(map.heat, vec![[0, 0, 1, 1], [1, 0, 1, 1]]);
    }

    #[test]
    fn players_past_the_limit_are_counted_not_listed() {
        let entities: Vec<EntityView> = (0..MAP_PLAYERS_PER_REGION_MAX as u64 + 5)
            .map(|p| view(NetId::of_player(PlayerId(p)), 1.0, 1.0))
            .collect();
        let map = sample_one(2, &entities, 10.0);
        assert_eq!(map.players.len(), MAP_PLAYERS_PER_REGION_MAX);
        assert_eq!(map.players_unlisted, 5);
        assert_eq!(map.heat, vec![[0, 0, entities.len() as u32, 0]]);
    }
}
