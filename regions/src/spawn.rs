//! Building and removing entities, in one place so that the [`Directory`] and the id mint
//! stay consistent with the world whichever feature spawns or despawns.

use bevy_ecs::prelude::*;
use tessera_shared::config::Archetype;
use tessera_shared::ids::{NetId, PlayerId};
use tessera_shared::math::Vec2;

use crate::components::*;
use crate::interest::Observer;
use crate::io::EntityState;
use crate::resources::Directory;

/// Components of a fresh NPC standing at `home`.
pub(crate) fn npc_bundle(
    id: NetId,
    archetype_idx: u16,
    archetype: &Archetype,
    home: Vec2,
    spawn_entry: Option<u16>,
) -> impl Bundle {
    (
        Identity {
            id,
            archetype: archetype_idx,
        },
        Position(home),
        Velocity::default(),
        Health(archetype.max_health),
        AttackCooldown::default(),
        Npc {
            home,
            brain: Brain::Idle { until_tick: 0 },
            awake: false,
            spawn_entry,
        },
    )
}

/// Components of a player avatar in `state` (which the caller has validated).
pub(crate) fn avatar_bundle(state: &EntityState, player: PlayerId, now_tick: u64) -> impl Bundle {
    (
        Identity {
            id: state.id,
            archetype: state.archetype,
        },
        Position(state.position),
        Velocity(state.velocity),
        Health(state.health),
        AttackCooldown {
            ready_tick: now_tick + u64::from(state.cooldown_ticks),
        },
        Player {
            player,
            last_input_seq: state.last_input_seq,
            move_budget_m: 0.0,
            respawn_tick: None,
        },
        Observer::default(),
    )
}

/// Spawns `bundle` and records it in the directory.
pub(crate) fn spawn(
    commands: &mut Commands,
    directory: &mut Directory,
    id: NetId,
    player: Option<PlayerId>,
    bundle: impl Bundle,
) -> Entity {
    let entity = commands.spawn(bundle).id();
    let previous = directory.by_net_id.insert(id, entity);
    debug_assert!(previous.is_none(), "{id} spawned twice");
    if let Some(player) = player {
        let previous = directory.by_player.insert(player, entity);
        debug_assert!(previous.is_none(), "{player} spawned twice");
    }
    entity
}

/// Despawns `entity` and forgets it in the directory.
pub(crate) fn despawn(
    commands: &mut Commands,
    directory: &mut Directory,
    entity: Entity,
    id: NetId,
    player: Option<PlayerId>,
) {
    let removed = directory.by_net_id.remove(&id);
    debug_assert_eq!(removed, Some(entity));
    if let Some(player) = player {
        let removed = directory.by_player.remove(&player);
        debug_assert_eq!(removed, Some(entity));
    }
    commands.entity(entity).despawn();
}
