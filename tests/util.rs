//! Helpers shared by the test modules.

use std::sync::Arc;
use tessera::regions::Region;
use tessera::regions::io::{Join, SavedPlayer, SessionEvent, TickInput};
use tessera::shared::config::{Archetype, Config, RegionDef};
use tessera::shared::ids::PlayerId;
use tessera::shared::math::Vec2;

/// The embedded default config with no NPC population and one extra archetype, `statue`:
/// never moves, never attacks, never heals; handy for placing exact test fixtures.
pub(crate) fn quiet_config() -> (Config, u16) {
    let mut config = Config::embedded_default();
    for table in &mut config.balance.spawn_tables {
        for entry in &mut table.entries {
            entry.count = 0;
        }
    }
    let mut statue: Archetype = config.balance.archetypes[0].clone();
    statue.name = "statue".into();
    statue.hostile = false;
    statue.speed_mps = 0.0;
    statue.wander_radius_m = 0.0;
    statue.aggro_radius_m = 0.0;
    statue.regen_per_s = 0.0;
    config.balance.archetypes.push(statue);
    let statue_idx = (config.balance.archetypes.len() - 1) as u16;
    (config, statue_idx)
}

/// The first region of `config`.
pub(crate) fn first_region(config: &Config) -> RegionDef {
    config.world.regions[0].clone()
}

/// A region of `config` (the first one), stepped once so that it is initialised.
pub(crate) fn region(config: Config) -> Region {
    let config = Arc::new(config);
    let def = first_region(&config);
    let mut region = Region::new(&def, config, 1).expect("valid test region");
    region.step(TickInput::default());
    region
}

/// Joins `player` at `position` (with full health) and steps one tick.
pub(crate) fn join_at(region: &mut Region, player: PlayerId, position: Vec2) {
    let mut input = TickInput::default();
    input.sessions.push(SessionEvent::Join(Join {
        player,
        saved: Some(SavedPlayer {
            position,
            health: 100.0,
        }),
    }));
    let out = region.step(input);
    assert!(
        out.refused_joins.is_empty(),
        "join refused: {:?}",
        out.refused_joins
    );
}
