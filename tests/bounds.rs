//! Entities are never silently lost at region or world bounds: with players walking in all
//! directions for a long time, every player is always in exactly one region or in flight
//! between two, and NPCs stay inside their region.

use std::collections::HashSet;
use std::sync::Arc;
use tessera::shared::config::{Config, RegionDef};
use tessera::shared::ids::RegionId;
use tessera::shared::ids::{NetId, PlayerId};
use tessera_server::sim::{SimOptions, run_sim_observed};

#[test]
fn players_are_always_somewhere_exactly_once() {
    const PLAYERS: u64 = 80;
    let options = SimOptions {
        ticks: 1_500,
        seed: 11,
        players: PLAYERS as usize,
    };
    let config = Arc::new(Config::embedded_default());
    let report = run_sim_observed(config.clone(), &options, |tick, local| {
        let (players, _) = local.counts();
        assert_eq!(
            players + local.in_flight(),
            PLAYERS as usize,
            "tick {tick}: {players} placed + {} in flight",
            local.in_flight()
        );
        let mut seen = HashSet::new();
        for region in local.regions() {
            for p in 1..=PLAYERS {
                if let Some(position) = region.position_of(NetId::of_player(PlayerId(p))) {
                    assert!(seen.insert(p), "tick {tick}: player {p} in two regions");
                    let def = def_of(&config, region.id());
                    assert!(
                        def.bounds.contains(position),
                        "tick {tick}: p{p} outside {}",
                        def.id
                    );
                }
            }
        }
    })
    .unwrap();
    assert!(
        report.handoffs >= 5,
        "players should cross borders: {report}"
    );
}

#[test]
fn npcs_stay_inside_their_region() {
    let options = SimOptions {
        ticks: 600,
        seed: 5,
        players: 100,
    };
    let config = Arc::new(Config::embedded_default());
    let mut checked = 0;
    run_sim_observed(config.clone(), &options, |tick, local| {
        if tick % 100 != 0 {
            return;
        }
        for region in local.regions() {
            let def = def_of(&config, region.id());
            for view in &region.output().interest.entities {
                // Every entity observers see is where it should be.
                if let Some(position) = region.position_of(view.id) {
                    assert!(def.bounds.contains(position));
                    checked += 1;
                }
            }
        }
    })
    .unwrap();
    assert!(checked > 0);
}

fn def_of(config: &Config, id: RegionId) -> &RegionDef {
    config
        .world
        .regions
        .iter()
        .find(|d| d.id == id)
        .expect("a world region")
}
