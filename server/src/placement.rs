//! Placement suggestions for orchestrators: which live node should hold which region, by
//! measured load.
//!
//! Every cluster node publishes its regions' load (players, entities, step time) to Redis
//! each second; `GET /v1/placement` reads all of them and [`suggest`]s an assignment. The
//! cost of a region is its measured step time (its median over the last second, which
//! follows players and awake NPCs alike), plus a small amount per player so that empty
//! but busy-looking regions do not outweigh populated ones. Regions are placed heaviest
//! first, each on the node with the least cost so far, except that a region stays where
//! it is while its holder stays within [`KEEP_WITHIN`] of the mean: moving a region costs
//! its players a redirect, so small imbalances are left alone. Regions nobody holds are
//! always placed. The suggestion is advice: the orchestrator applies it with transfers
//! and assignments (see `deploy/orchestrator.sh`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::node::status::RegionStatus;

/// A node keeps its regions while its cost is within this fraction above the mean.
pub const KEEP_WITHIN: f64 = 0.25;
/// The cost of one player, in step milliseconds.
pub const PLAYER_COST_MS: f64 = 0.002;
/// The cost of a region with no measurement yet (just taken, or nobody holds it).
pub const UNMEASURED_COST_MS: f64 = 0.5;

/// What a node publishes about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeLoad {
    /// `[node] name`.
    pub node: String,
    /// Where its admin API listens (for the orchestrator).
    pub admin_addr: String,
    /// Where it takes clients.
    pub quic_addr: String,
    /// Its regions' load.
    pub regions: Vec<RegionLoad>,
    /// Its regions' map sample (`GET /v1/map`; placement does not read it).
    #[serde(default)]
    pub map: Vec<crate::map::RegionMap>,
}

/// One region's load as published.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionLoad {
    /// Region id.
    pub id: u32,
    /// Players in it.
    pub players: usize,
    /// Entities in it.
    pub entities: usize,
    /// Median step time over the last second.
    pub tick_p50_ms: f64,
    /// Frozen by an operator.
    #[serde(default)]
    pub frozen: bool,
}

impl NodeLoad {
    /// Node `node`'s report, from what its driver last published on `board`.
    pub fn of(
        node: &str,
        board: &crate::node::status::StatusBoard,
        admin_addr: &str,
        quic_addr: &str,
    ) -> NodeLoad {
        NodeLoad {
            node: node.to_owned(),
            admin_addr: admin_addr.to_owned(),
            quic_addr: quic_addr.to_owned(),
            regions: board
                .status()
                .regions
                .iter()
                .map(RegionLoad::from)
                .collect(),
            map: board.map().as_ref().clone(),
        }
    }
}

impl From<&RegionStatus> for RegionLoad {
    fn from(r: &RegionStatus) -> RegionLoad {
        RegionLoad {
            id: r.id,
            players: r.players,
            entities: r.entities,
            tick_p50_ms: r.tick_p50_ms,
            frozen: r.frozen,
        }
    }
}

/// A suggested placement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Placement {
    /// Per live node: the regions it should hold and their cost.
    pub nodes: Vec<NodePlan>,
    /// Regions to transfer: `from` holds it now, `to` should.
    pub moves: Vec<Move>,
    /// Regions nobody holds, and who should take them.
    pub unassigned: Vec<Move>,
}

/// One node's part of a placement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodePlan {
    /// The node.
    pub node: String,
    /// Its admin API, for the orchestrator.
    pub admin_addr: String,
    /// The regions it should hold.
    pub regions: Vec<u32>,
    /// Their total cost, in step milliseconds.
    pub cost_ms: f64,
}

/// A region to move (or to assign: `from` is `None`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Move {
    /// The region.
    pub region: u32,
    /// Its holder now.
    pub from: Option<String>,
    /// Who should hold it.
    pub to: String,
}

fn cost(region: &RegionLoad) -> f64 {
    let measured = if region.tick_p50_ms > 0.0 {
        region.tick_p50_ms
    } else {
        UNMEASURED_COST_MS
    };
    measured + region.players as f64 * PLAYER_COST_MS
}

/// Suggests which of the live `nodes` should hold each of the world's `regions`.
pub fn suggest(regions: &[u32], nodes: &[NodeLoad]) -> Placement {
    let mut placement = Placement {
        nodes: nodes
            .iter()
            .map(|n| NodePlan {
                node: n.node.clone(),
                admin_addr: n.admin_addr.clone(),
                regions: Vec::new(),
                cost_ms: 0.0,
            })
            .collect(),
        moves: Vec::new(),
        unassigned: Vec::new(),
    };
    if nodes.is_empty() {
        return placement;
    }
    // Every region with its holder (first node publishing it: a region changing hands
    // may briefly show on two) and cost.
    let mut holder: BTreeMap<u32, (usize, f64)> = BTreeMap::new();
    for (n, node) in nodes.iter().enumerate() {
        for region in &node.regions {
            holder.entry(region.id).or_insert((n, cost(region)));
        }
    }
    let mut all: Vec<(u32, Option<usize>, f64)> = regions
        .iter()
        .map(|&id| match holder.get(&id) {
            Some(&(n, c)) => (id, Some(n), c),
            None => (id, None, UNMEASURED_COST_MS),
        })
        .collect();
    let total: f64 = all.iter().map(|r| r.2).sum();
    let mean = total / nodes.len() as f64;
    // Heaviest first; ties by id, for a stable answer.
    all.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
    for (id, held_by, c) in all {
        let least = (0..nodes.len())
            .min_by(|&a, &b| {
                placement.nodes[a]
                    .cost_ms
                    .total_cmp(&placement.nodes[b].cost_ms)
                    .then(a.cmp(&b))
            })
            .expect("nodes is not empty");
        let to = match held_by {
            Some(n) if placement.nodes[n].cost_ms + c <= mean * (1.0 + KEEP_WITHIN) => n,
            _ => least,
        };
        placement.nodes[to].regions.push(id);
        placement.nodes[to].cost_ms += c;
        let mv = Move {
            region: id,
            from: held_by.map(|n| nodes[n].node.clone()),
            to: nodes[to].node.clone(),
        };
        match held_by {
            None => placement.unassigned.push(mv),
            Some(n) if n != to => placement.moves.push(mv),
            Some(_) => {}
        }
    }
    for plan in &mut placement.nodes {
        plan.regions.sort_unstable();
    }
    placement.moves.sort_by_key(|m| m.region);
    placement.unassigned.sort_by_key(|m| m.region);
    placement
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, regions: &[(u32, f64)]) -> NodeLoad {
        NodeLoad {
            node: name.into(),
            admin_addr: format!("{name}:8080"),
            quic_addr: format!("{name}:4433"),
            regions: regions
                .iter()
                .map(|&(id, ms)| RegionLoad {
                    id,
                    players: 0,
                    entities: 100,
                    tick_p50_ms: ms,
                    frozen: false,
                })
                .collect(),
            map: Vec::new(),
        }
    }

    #[test]
    fn a_balanced_cluster_is_left_alone() {
        let nodes = [
            node("a", &[(1, 2.0), (3, 1.0)]),
            node("b", &[(2, 2.0), (4, 1.1)]),
        ];
        let p = suggest(&[1, 2, 3, 4], &nodes);
        assert!(p.moves.is_empty() && p.unassigned.is_empty(), "{p:?}");
    }

    #[test]
    fn an_overloaded_node_gives_regions_to_an_idle_one() {
        let nodes = [
            node("a", &[(1, 4.0), (2, 3.0), (3, 2.0), (4, 1.0)]),
            node("b", &[]),
        ];
        let p = suggest(&[1, 2, 3, 4], &nodes);
        let cost = |n: &str| p.nodes.iter().find(|x| x.node == n).unwrap().cost_ms;
        assert!((cost("a") - cost("b")).abs() <= 2.0, "{p:?}");
        assert!(!p.moves.is_empty());
        assert!(
            p.moves
                .iter()
                .all(|m| m.from.as_deref() == Some("a") && m.to == "b")
        );
    }

    #[test]
    fn regions_nobody_holds_are_placed_on_the_lightest_node() {
        let nodes = [node("a", &[(1, 5.0)]), node("b", &[(2, 0.5)])];
        let p = suggest(&[1, 2, 3], &nodes);
        assert_eq!(
            p.unassigned,
            [Move {
                region: 3,
                from: None,
                to: "b".into()
            }]
        );
    }

    #[test]
    fn every_region_is_placed_once_whatever_the_loads() {
        let nodes = [
            node("a", &[(1, 0.3), (5, 9.0)]),
            node("b", &[(2, 0.0), (1, 0.1)]), // 1 on two nodes: changing hands.
            node("c", &[]),
        ];
        let p = suggest(&[1, 2, 3, 4, 5], &nodes);
        let mut placed: Vec<u32> = p.nodes.iter().flat_map(|n| n.regions.clone()).collect();
        placed.sort_unstable();
        assert_eq!(placed, [1, 2, 3, 4, 5]);
        assert!(suggest(&[1], &[]).nodes.is_empty());
    }
}
