//! `GET /v1/map`: the world as the console's map draws it (`crate::map`), cluster-wide
//! from the nodes' reports.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use tessera_shared::config::WorldConfig;
use tessera_shared::math::Aabb;

use super::{AdminState, ApiError, round_ms};
use crate::placement::NodeLoad;

/// The answer.
#[derive(Debug, Serialize)]
pub(super) struct WorldMap {
    /// The world's name.
    world: String,
    /// It spans `[0, x) x [0, y)` metres.
    size_m: tessera_shared::math::Vec2,
    /// Ticks per second (a region's budget is `1000 / tick_hz` ms).
    tick_hz: u32,
    /// The density grid's cell edge, in metres.
    heat_cell_m: f32,
    /// The node answering.
    node: String,
    /// The live nodes, by name.
    nodes: Vec<MapNode>,
    /// Every region of the world, by id.
    regions: Vec<MapRegion>,
    /// Players by position, by region then id.
    players: Vec<MapPlayer>,
    /// Players in the world beyond those listed (a region lists
    /// [`crate::map::MAP_PLAYERS_PER_REGION_MAX`] at most).
    players_unlisted: usize,
    /// Non-empty density cells: `[column, row, players, NPCs]`.
    heat: Vec<[u32; 4]>,
}

#[derive(Debug, Serialize)]
struct MapNode {
    node: String,
    admin_addr: String,
    quic_addr: String,
}

#[derive(Debug, Serialize)]
struct MapRegion {
    id: u32,
    bounds: Aabb,
    /// The node holding it, if a live one does.
    node: Option<String>,
    players: usize,
    entities: usize,
    tick_p50_ms: f64,
    frozen: bool,
}

#[derive(Debug, Serialize)]
struct MapPlayer {
    id: u64,
    x: f32,
    y: f32,
    region: u32,
    node: String,
}

pub(super) async fn map(State(state): State<Arc<AdminState>>) -> Result<Json<WorldMap>, ApiError> {
    let reports = state.regions.reports(super::local_report(&state)).await?;
    Ok(Json(world_map(
        state.regions.world(),
        &state.node_name,
        &reports,
    )))
}

/// The map of `world` from the nodes' `reports` (a region two reports claim, as during a
/// transfer's last second, is shown with the first).
fn world_map(world: &WorldConfig, node: &str, reports: &[NodeLoad]) -> WorldMap {
    let mut loads = HashMap::new();
    let mut samples = HashMap::new();
    for report in reports {
        for load in &report.regions {
            loads.entry(load.id).or_insert((report.node.as_str(), load));
        }
        for sample in &report.map {
            samples
                .entry(sample.id)
                .or_insert((report.node.as_str(), sample));
        }
    }
    let mut map = WorldMap {
        world: world.name.clone(),
        size_m: world.size_m,
        tick_hz: world.tick_hz,
        heat_cell_m: crate::map::heat_cell_m(world),
        node: node.to_owned(),
        nodes: reports
            .iter()
            .map(|r| MapNode {
                node: r.node.clone(),
                admin_addr: r.admin_addr.clone(),
                quic_addr: r.quic_addr.clone(),
            })
            .collect(),
        regions: Vec::with_capacity(world.regions.len()),
        players: Vec::new(),
        players_unlisted: 0,
        heat: Vec::new(),
    };
    for def in &world.regions {
        let id = def.id.0;
        let load = loads.get(&id);
        map.regions.push(MapRegion {
            id,
            bounds: def.bounds,
            node: load.map(|(node, _)| (*node).to_owned()),
            players: load.map_or(0, |(_, l)| l.players),
            entities: load.map_or(0, |(_, l)| l.entities),
            tick_p50_ms: load.map_or(0.0, |(_, l)| round_ms(l.tick_p50_ms)),
            frozen: load.is_some_and(|(_, l)| l.frozen),
        });
        if let Some((node, sample)) = samples.get(&id) {
            map.players
                .extend(sample.players.iter().map(|&(id, x, y)| MapPlayer {
                    id,
                    x,
                    y,
                    region: sample.id,
                    node: (*node).to_owned(),
                }));
            map.players_unlisted += sample.players_unlisted;
            map.heat.extend_from_slice(&sample.heat);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::RegionMap;
    use crate::placement::RegionLoad;

    fn report(node: &str, region: u32, players: Vec<(u64, f32, f32)>) -> NodeLoad {
        NodeLoad {
            node: node.into(),
            admin_addr: String::new(),
            quic_addr: String::new(),
            regions: vec![RegionLoad {
                id: region,
                players: players.len(),
                entities: players.len() + 10,
                tick_p50_ms: 0.25,
                frozen: region == 2,
            }],
            map: vec![RegionMap {
                id: region,
                players,
                players_unlisted: 1,
                heat: vec![[region, 0, 1, 10]],
            }],
        }
    }

    #[test]
    fn every_region_is_shown_with_its_holder_and_players() {
        let world = tessera_shared::config::Config::embedded_default().world;
        let ids: Vec<u32> = world.regions.iter().map(|r| r.id.0).collect();
        assert!(
            ids.len() >= 3,
            "the default world has {} regions",
            ids.len()
        );
        let reports = [
            report("a", ids[0], vec![(5, 1.0, 2.0)]),
            report("b", ids[1], vec![(6, 3.0, 4.0)]),
        ];
        let map = world_map(&world, "a", &reports);
        assert_eq!(map.regions.len(), world.regions.len());
        assert_eq!(map.regions[0].node.as_deref(), Some("a"));
        assert_eq!(map.regions[1].node.as_deref(), Some("b"));
        assert_eq!(map.regions[2].node, None, "nobody holds the third");
        assert_eq!(map.regions[1].entities, 11);
        let players: Vec<(u64, u32, &str)> = map
            .players
            .iter()
            .map(|p| (p.id, p.region, p.node.as_str()))
            .collect();
        assert_eq!(players, vec![(5, ids[0], "a"), (6, ids[1], "b")]);
        assert_eq!(map.players_unlisted, 2);
        assert_eq!(map.heat.len(), 2);
    }
}
