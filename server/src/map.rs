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
use tessera_shared::config::WorldConfig;
use tessera_shared::ids::PlayerId;
use tessera_shared::math::{Aabb, Vec2};

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

/// Samples `regions` (their entities as of their last step).
pub fn sample(regions: &[Region], world: &WorldConfig) -> Vec<RegionMap> {
    let cell = heat_cell_m(world);
    regions
        .iter()
        .filter_map(|region| {
            let def = world.regions.iter().find(|r| r.id == region.id())?;
            let mut sampler = Sampler::new(region.id().0, def.bounds, cell);
            region.for_each_position(|position, player| sampler.add(position, player));
            Some(sampler.finish())
        })
        .collect()
}

/// One region's sample being taken: the density grid as a dense array over the cells its
/// bounds touch (at most [`HEAT_CELLS_PER_SIDE`] squared), made sparse at the end.
struct Sampler {
    map: RegionMap,
    cell: f32,
    first: (u32, u32),
    columns: u32,
    rows: u32,
    /// Players and NPCs per cell, row-major from `first`.
    counts: Vec<[u32; 2]>,
}

impl Sampler {
    fn new(id: u32, bounds: Aabb, cell: f32) -> Sampler {
        let first = Self::cell_of(bounds.min, cell);
        let last = Self::cell_of(bounds.max, cell);
        let (columns, rows) = (last.0 - first.0 + 1, last.1 - first.1 + 1);
        Sampler {
            map: RegionMap {
                id,
                ..RegionMap::default()
            },
            cell,
            first,
            columns,
            rows,
            counts: vec![[0; 2]; (columns * rows) as usize],
        }
    }

    fn cell_of(position: Vec2, cell: f32) -> (u32, u32) {
        // Saturating casts: NaN and negatives to 0, the far edge clamped below.
        ((position.x / cell) as u32, (position.y / cell) as u32)
    }

    fn add(&mut self, position: Vec2, player: Option<PlayerId>) {
        let (column, row) = Self::cell_of(position, self.cell);
        let column = column.saturating_sub(self.first.0).min(self.columns - 1);
        let row = row.saturating_sub(self.first.1).min(self.rows - 1);
        let counts = &mut self.counts[(row * self.columns + column) as usize];
        match player {
            Some(player) => {
                counts[0] += 1;
                if self.map.players.len() < MAP_PLAYERS_PER_REGION_MAX {
                    self.map.players.push((player.0, position.x, position.y));
                } else {
                    self.map.players_unlisted += 1;
                }
            }
            None => counts[1] += 1,
        }
    }

    fn finish(mut self) -> RegionMap {
        for (i, &[players, npcs]) in self.counts.iter().enumerate() {
            if players + npcs > 0 {
                let (column, row) = (i as u32 % self.columns, i as u32 / self.columns);
                self.map
                    .heat
                    .push([self.first.0 + column, self.first.1 + row, players, npcs]);
            }
        }
        self.map.heat.sort_unstable();
        self.map.players.sort_unstable_by_key(|p| p.0);
        self.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(x: f32, y: f32) -> Vec2 {
        Vec2 { x, y }
    }

    #[test]
    fn players_are_listed_and_everything_is_counted_in_its_cell() {
        let bounds = Aabb::new(at(0.0, 0.0), at(20.0, 20.0));
        let mut sampler = Sampler::new(1, bounds, 10.0);
        sampler.add(at(5.0, 5.0), Some(PlayerId(7)));
        sampler.add(at(6.0, 9.0), None);
        sampler.add(at(15.0, 1.0), None);
        sampler.add(at(19.9, 0.5), Some(PlayerId(3)));
        let map = sampler.finish();
        assert_eq!(map.players, vec![(3, 19.9, 0.5), (7, 5.0, 5.0)]);
        assert_eq!(map.players_unlisted, 0);
        assert_eq!(map.heat, vec![[0, 0, 1, 1], [1, 0, 1, 1]]);
    }

    #[test]
    fn cells_count_from_the_world_origin_and_edges_stay_in_the_region() {
        let bounds = Aabb::new(at(100.0, 200.0), at(200.0, 300.0));
        let mut sampler = Sampler::new(2, bounds, 32.0);
        sampler.add(at(100.0, 200.0), None);
        // The far edge (exclusive) and a stray value land in the region's last cells.
        sampler.add(at(200.0, 300.0), None);
        sampler.add(at(f32::NAN, 250.0), None);
        let map = sampler.finish();
        assert_eq!(map.heat, vec![[3, 6, 0, 1], [3, 7, 0, 1], [6, 9, 0, 1]]);
    }

    #[test]
    fn players_past_the_limit_are_counted_not_listed() {
        let bounds = Aabb::new(at(0.0, 0.0), at(10.0, 10.0));
        let mut sampler = Sampler::new(3, bounds, 10.0);
        let n = MAP_PLAYERS_PER_REGION_MAX as u64 + 5;
        for p in 0..n {
            sampler.add(at(1.0, 1.0), Some(PlayerId(p)));
        }
        let map = sampler.finish();
        assert_eq!(map.players.len(), MAP_PLAYERS_PER_REGION_MAX);
        assert_eq!(map.players_unlisted, 5);
        assert_eq!(map.heat, vec![[0, 0, n as u32, 0]]);
    }

    #[test]
    fn a_region_is_sampled_whole() {
        let config = tessera_shared::config::Config::embedded_default();
        let def = &config.world.regions[0];
        let mut region = Region::new(def, std::sync::Arc::new(config.clone()), 7).unwrap();
        region.step(tessera_regions::io::TickInput::default());
        let maps = sample(std::slice::from_ref(&region), &config.world);
        let npcs: u32 = maps[0].heat.iter().map(|c| c[3]).sum();
        assert_eq!(npcs as usize, region.counts().entities);
        assert!(npcs > 0, "the default region has NPCs");
        assert!(maps[0].players.is_empty());
    }
}
