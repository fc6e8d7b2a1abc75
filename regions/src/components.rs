//! Components shared by several features. A feature's private components live in its module.

use bevy_ecs::prelude::*;
use tessera_shared::ids::{NetId, PlayerId};
use tessera_shared::math::Vec2;

/// Who an entity is: its stable network id and its archetype (index into
/// `BalanceConfig::archetypes`). Never changes for the life of the entity.
#[derive(Component, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Stable id, kept across regions by handoff.
    pub id: NetId,
    /// Index into the balance archetypes.
    pub archetype: u16,
}

/// World-space position in metres. Always finite and inside the region's bounds at the end
/// of a tick (entities that leave are handed off or clamped).
#[derive(Component, Clone, Copy, Debug, PartialEq)]
pub struct Position(pub Vec2);

/// Metres per second. Always finite.
#[derive(Component, Clone, Copy, Debug, Default, PartialEq)]
pub struct Velocity(pub Vec2);

/// Current health; the maximum comes from the archetype. Zero or below means dead.
#[derive(Component, Clone, Copy, Debug, PartialEq)]
pub struct Health(pub f32);

/// Earliest tick at which the entity may attack again.
#[derive(Component, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttackCooldown {
    /// The tick from which an attack is allowed.
    pub ready_tick: u64,
}

/// A player's avatar. Moved only by validated inputs and server-side displacements.
#[derive(Component, Clone, Debug)]
pub struct Player {
    /// The account behind the avatar.
    pub player: PlayerId,
    /// Highest input sequence number applied; older or repeated ones are ignored.
    pub last_input_seq: u32,
    /// Metres the avatar may still move this tick (reset every tick to
    /// `speed_mps * dt * (1 + speed_tolerance)`).
    pub move_budget_m: f32,
    /// Set while dead: the tick at which the avatar respawns.
    pub respawn_tick: Option<u64>,
}

/// What an NPC is doing. Driven by the AI feature.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Brain {
    /// Standing still until `until_tick`.
    Idle {
        /// When to pick a new wander destination.
        until_tick: u64,
    },
    /// Walking to a point near home.
    Wander {
        /// Destination.
        to: Vec2,
    },
    /// Pursuing (and attacking) a target.
    Chase {
        /// The target's id; looked up every tick, so a despawned target ends the chase.
        target: NetId,
    },
    /// Walking back home after losing the target; ignores aggro until home.
    Return,
}

/// A non-player character.
#[derive(Component, Clone, Debug)]
pub struct Npc {
    /// Where it spawned; wander and leash are measured from here.
    pub home: Vec2,
    /// Current behaviour.
    pub brain: Brain,
    /// False while no player is within `wake_radius_m`: no AI, no movement.
    pub awake: bool,
    /// Which spawn-table entry keeps it alive (respawned on death), if any.
    pub spawn_entry: Option<u16>,
}
