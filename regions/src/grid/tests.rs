//! The index kept up to date from change detection against one built afresh from the
//! world, tick after tick of a busy region (moves, deaths, respawns, logins, logouts).

use std::collections::HashMap;
use std::sync::Arc;
use tessera_shared::config::Config;
use tessera_shared::ids::PlayerId;

use super::*;
use crate::io::{Join, SavedPlayer, SessionEvent, TickInput};
use crate::region::Region;
use crate::scripted::ScriptedPlayers;

/// What the index showed of each entity after the previous tick: position and health.
type Previous = HashMap<Entity, (Vec2, f32)>;

/// Checks everything a reader of the index sees against the world's entities: the grid
/// equals a fresh sort of every entity in entity-index order, and every entity's
/// placement and entry, and every cell's archetype mask, are right; an entity whose
/// position or health differs from `previous` is flagged as changed.
fn assert_index_matches_world(world: &mut World, previous: &mut Previous) {
    let mut rows: Vec<(Entity, Identity, Vec2, f32, bool)> = world
        .query::<(Entity, &Identity, &Position, &Health, Has<Player>)>()
        .iter(world)
        .map(|(e, identity, p, h, is_player)| (e, *identity, p.0, h.0, is_player))
        .collect();
    rows.sort_by_key(|row| row.0.index_u32());
    let index = world.resource::<SpatialIndex>();
    let mut fresh = SpatialGrid::new(index.grid.bounds(), index.grid.cell_size_m()).unwrap();
    fresh.rebuild(rows.iter().map(|&(e, identity, p, _, is_player)| {
        let item = GridItem {
            entry: e.index_u32(),
            archetype: identity.archetype,
            is_player,
        };
        (p, item)
    }));
    let bits = |ps: &[Vec2]| -> Vec<(u32, u32)> {
        ps.iter().map(|p| (p.x.to_bits(), p.y.to_bits())).collect()
    };
    assert_eq!(bits(index.grid.positions()), bits(fresh.positions()));
    assert_eq!(index.grid.values(), fresh.values());
    assert!(index.grid.cell_ranges().eq(fresh.cell_ranges()));
    for &(e, identity, position, health, _) in &rows {
        let (slot, flagged) = index.placement(e).expect("every entity is placed");
        assert_eq!(index.grid.values()[slot].entry, e.index_u32());
        if let Some(was) = previous.insert(e, (position, health)) {
            assert!(
                flagged || was == (position, health),
                "changed flag of {e:?}"
            );
        }
        let entry = index.entry_at(slot);
        assert_eq!(
            (entry.entity, entry.id, entry.health),
            (e, identity.id, health)
        );
    }
    let (w, h) = index.grid.dims();
    for cy in 0..h {
        for cx in 0..w {
            let (_, items) = fresh.cell_items(cx, cy);
            let mask = items
                .iter()
                .filter(|item| !item.is_player)
                .fold(0, |m, item| m | archetype_bit(item.archetype));
            assert_eq!(index.npc_archetypes_in(cx, cy), mask, "cell {cx},{cy}");
        }
    }
}

#[test]
fn the_index_equals_a_fresh_build_after_every_tick() {
    let config = Arc::new(Config::embedded_default());
    let def = config.world.regions[0].clone();
    let mut region = Region::new(&def, config.clone(), 3).unwrap();
    let mut bots = ScriptedPlayers::new(40, 1, 3);
    let centre = def.bounds.center();
    let arch = &config.balance.archetypes[config.balance.player_archetype];
    let step_m = arch.speed_mps / config.world.tick_hz as f32;
    let mut despawned = 0;
    let mut previous = Previous::new();
    for tick in 1..=300u64 {
        let mut input = TickInput::default();
        // Players come and go: a login every other tick at first, then some leave (a
        // despawn that reshuffles the ECS's order) and come back.
        let n = bots.players().count();
        let player = PlayerId(1 + tick % n as u64);
        let joined = region.players().any(|p| p == player);
        if tick % 2 == 0 && !joined {
            input.sessions.push(SessionEvent::Join(Join {
                player,
                saved: Some(SavedPlayer {
                    position: centre,
                    health: 100.0,
                }),
            }));
        } else if tick > 100 && tick % 7 == 0 && joined {
            input.sessions.push(SessionEvent::Leave(player));
            despawned += 1;
        }
        let out = region.output();
        for diff in &out.interest.observers {
            let idx = (diff.player.0 - 1) as usize;
            let own = region.position_of(bots.avatar(idx));
            let visible = out.interest.updated(diff);
            input
                .inputs
                .push(bots.input(idx, tick, step_m, own, visible, arch.attack_range_m));
        }
        region.step(input);
        assert_index_matches_world(region.world_mut(), &mut previous);
    }
    assert!(despawned > 5, "players left {despawned} times");
}
