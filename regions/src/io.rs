//! What crosses the region boundary: [`TickInput`] in, [`TickOutput`] out.
//!
//! These are plain data. The server fills a `TickInput` from its bounded inboxes and ships
//! the `TickOutput` to connections, the bus and the snapshot writer; the region itself does
//! no IO.

use bevy_ecs::prelude::*;
use std::ops::Range;
use tessera_shared::ids::{HandoffId, NetId, PlayerId, RegionId};
use tessera_shared::math::Vec2;

/// One player's input, as validated by the network edge (sizes) but not yet by the
/// simulation (speed, cooldowns, ranges, finiteness).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlayerInput {
    /// The player.
    pub player: PlayerId,
    /// Client sequence number; only inputs with a higher number than the last applied one
    /// are used (replays and reordered stale inputs are ignored).
    pub seq: u32,
    /// Desired displacement in metres since the previous input. Clamped to the player's
    /// remaining move budget for the tick; rejected whole if not finite.
    pub move_m: Vec2,
    /// Attack this entity, if in range and off cooldown.
    pub attack: Option<NetId>,
}

/// A player entering this region from a login (not from a border crossing).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Join {
    /// The player.
    pub player: PlayerId,
    /// Their saved state, if any; without one (or if it lies outside this region) the
    /// avatar appears at the region's spawn point with full health.
    pub saved: Option<SavedPlayer>,
}

/// An NPC killed by a player, and what it dropped (rolled by [`crate::loot::roll`]). The
/// XP is not here: the economy counts it when the kill is committed, at the player's
/// level then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KillReward {
    /// Who landed the killing blow.
    pub player: PlayerId,
    /// The NPC killed: its id is never reused, so it identifies the kill.
    pub npc: NetId,
    /// The NPC's archetype (an index into the balance's archetypes).
    pub archetype: u16,
    /// The NPC's level.
    pub target_level: u32,
    /// Coins dropped.
    pub coins: u64,
    /// Items dropped: (index into the balance's items, count), in the loot table's order.
    pub items: Vec<(usize, u32)>,
}

/// The part of a player's state that outlives a session.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SavedPlayer {
    /// Last position.
    pub position: Vec2,
    /// Last health.
    pub health: f32,
}

/// A server-side displacement (admin teleport, scripted knockback). Exempt from the speed
/// check, but not from finiteness and bounds checks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Teleport {
    /// The player to move.
    pub player: PlayerId,
    /// Where to; must be finite and inside this region.
    pub to: Vec2,
}

/// A player entering or leaving through a session (login, logout), as opposed to a border
/// crossing. Applied in order, so a logout followed by a login of the same player in one
/// tick (a reconnect) and the reverse both do what they say.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SessionEvent {
    /// Login: the avatar appears.
    Join(Join),
    /// Logout: the avatar is removed and its state reported in [`TickOutput::departed`].
    /// A player not in this region is reported in [`TickOutput::leaves_not_found`] (it
    /// may be in flight to another region: the caller routes the logout there).
    Leave(PlayerId),
    /// The player's client connected again (a resume, a takeover, a redirect's login): its
    /// avatar stays, and input sequence numbers start over (PROTOCOL.md: they are per
    /// connection). A player not in this region is ignored.
    NewConnection(PlayerId),
}

/// Session events applied per tick; the rest are returned in
/// [`TickOutput::deferred_sessions`] for the next tick (a login storm is spread over
/// ticks, a logout is never dropped).
pub const SESSION_EVENTS_PER_TICK_MAX: usize = 1_024;

/// Teleports applied per tick; the rest are refused and counted.
pub const TELEPORTS_PER_TICK_MAX: usize = 1_024;

/// Everything that happens to a region from outside during one tick.
#[derive(Clone, Debug, Default)]
pub struct TickInput {
    /// Logins and logouts, in order. At most [`SESSION_EVENTS_PER_TICK_MAX`] are applied.
    pub sessions: Vec<SessionEvent>,
    /// Inputs, applied in order. At most `inputs_per_tick_max` are looked at.
    pub inputs: Vec<PlayerInput>,
    /// Entities arriving over a border. At most `handoffs_per_tick_max` are applied; the
    /// rest are returned in [`TickOutput::deferred_handoffs`] for the caller to resend.
    pub handoffs: Vec<HandoffRecord>,
    /// Server-side displacements. At most [`TELEPORTS_PER_TICK_MAX`] are applied.
    pub teleports: Vec<Teleport>,
}

impl TickInput {
    /// Empties every list, keeping allocations.
    pub fn clear(&mut self) {
        self.sessions.clear();
        self.inputs.clear();
        self.handoffs.clear();
        self.teleports.clear();
    }
}

/// The full state of an entity, as carried by a handoff (and later by snapshots).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EntityState {
    /// Stable id.
    pub id: NetId,
    /// Archetype index.
    pub archetype: u16,
    /// The player, for avatars.
    pub player: Option<PlayerId>,
    /// Position.
    pub position: Vec2,
    /// Velocity.
    pub velocity: Vec2,
    /// Health.
    pub health: f32,
    /// Ticks until the entity may attack again (relative, so it survives a clock change).
    pub cooldown_ticks: u32,
    /// For avatars: the last applied input sequence number.
    pub last_input_seq: u32,
}

/// An entity leaving one region for another. Applied at most once by the receiver,
/// identified by `id`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HandoffRecord {
    /// Idempotency key.
    pub id: HandoffId,
    /// Sending region.
    pub from: RegionId,
    /// Receiving region.
    pub to: RegionId,
    /// Sender's tick when the entity left.
    pub tick: u64,
    /// The entity.
    pub entity: EntityState,
}

/// What an observer is told about a visible entity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EntityView {
    /// Stable id.
    pub id: NetId,
    /// Archetype index (the client maps it to a model).
    pub archetype: u16,
    /// Position.
    pub position: Vec2,
    /// Health.
    pub health: f32,
}

/// One observer's visibility change this tick. `entered` and `changed` are ranges of
/// [`InterestOutput::members`], `left` of [`InterestOutput::left`].
#[derive(Clone, Debug, PartialEq)]
pub struct ObserverDiff {
    // Each of `entered`, `changed` and `left` is sorted by id (the observer's visible set
    // is kept sorted), so a consumer keeping a sorted view merges rather than searches.
    /// The observing player.
    pub player: PlayerId,
    /// Entities that became visible.
    pub entered: Range<usize>,
    /// Visible entities whose position or health changed.
    pub changed: Range<usize>,
    /// Entities no longer visible.
    pub left: Range<usize>,
}

/// Per-observer diffs for one tick, stored flat (one allocation per list, reused every
/// tick, rather than three per observer). Each entity entered or changed for any observer
/// is in `entities` once; observers refer to it by index, so a crowd seen by many
/// observers is copied (and converted by consumers) once, not once per observer.
#[derive(Clone, Debug, Default)]
pub struct InterestOutput {
    /// One entry per observer, in a deterministic order.
    pub observers: Vec<ObserverDiff>,
    /// This tick's views, each entity at most once, in the grid's order (by cell, then
    /// by entity index): read in that order, the grid is read front to back.
    pub entities: Vec<EntityView>,
    /// Indices into `entities`, referenced by the diffs' `entered` and `changed`.
    pub members: Vec<u32>,
    /// Ids referenced by `left`.
    pub left: Vec<NetId>,
}

impl InterestOutput {
    /// The indices into [`InterestOutput::entities`] of `diff`'s entered entities.
    pub fn entered_indices(&self, diff: &ObserverDiff) -> &[u32] {
        &self.members[diff.entered.clone()]
    }

    /// The indices into [`InterestOutput::entities`] of `diff`'s changed entities.
    pub fn changed_indices(&self, diff: &ObserverDiff) -> &[u32] {
        &self.members[diff.changed.clone()]
    }

    /// The entered views of `diff`.
    pub fn entered(&self, diff: &ObserverDiff) -> Views<'_> {
        self.views(diff.entered.clone())
    }

    /// The changed views of `diff`.
    pub fn changed(&self, diff: &ObserverDiff) -> Views<'_> {
        self.views(diff.changed.clone())
    }

    /// Entered then changed views of `diff` (they are stored adjacent).
    pub fn updated(&self, diff: &ObserverDiff) -> Views<'_> {
        self.views(diff.entered.start..diff.changed.end)
    }

    /// The ids that left `diff`'s view.
    pub fn left_ids(&self, diff: &ObserverDiff) -> &[NetId] {
        &self.left[diff.left.clone()]
    }

    fn views(&self, members: Range<usize>) -> Views<'_> {
        Views {
            entities: &self.entities,
            members: self.members[members].iter(),
        }
    }
}

/// The views an observer's diff refers to, in id order.
#[derive(Clone, Debug)]
pub struct Views<'a> {
    entities: &'a [EntityView],
    members: std::slice::Iter<'a, u32>,
}

impl<'a> Iterator for Views<'a> {
    type Item = &'a EntityView;

    fn next(&mut self) -> Option<&'a EntityView> {
        self.members.next().map(|&i| &self.entities[i as usize])
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.members.size_hint()
    }
}

impl ExactSizeIterator for Views<'_> {}

/// Something observers may want to hear about reliably.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GameEvent {
    /// `attacker` hit `target` for `amount`.
    Damage {
        /// Who hit.
        attacker: NetId,
        /// Who was hit.
        target: NetId,
        /// Health removed.
        amount: f32,
    },
    /// `entity` died.
    Death {
        /// Who died.
        entity: NetId,
    },
    /// A player's avatar respawned at the spawn point.
    Respawn {
        /// The player.
        player: PlayerId,
    },
}

/// Why a join was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinRefusal {
    /// The player is already in this region.
    AlreadyPresent,
    /// The player id is above [`PlayerId::MAX`].
    InvalidPlayer,
    /// `players_per_region_max` or `entities_per_region_max` reached.
    RegionFull,
    /// The saved state held a non-finite number.
    InvalidState,
}

/// Counters for one tick; the server sums them into metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickStats {
    /// Inputs applied (at least partly).
    pub inputs_applied: u32,
    /// Inputs beyond `inputs_per_tick_max`, not looked at.
    pub inputs_over_limit: u32,
    /// Inputs whose sequence number was not newer than the last applied one.
    pub inputs_stale: u32,
    /// Inputs for a player not in this region (or dead).
    pub inputs_unknown_player: u32,
    /// Inputs with a non-finite displacement, rejected whole.
    pub inputs_non_finite: u32,
    /// Moves shortened to the speed cap.
    pub moves_clamped: u32,
    /// Attacks refused (out of range, on cooldown, unknown or dead target).
    pub attacks_refused: u32,
    /// Handoffs applied.
    pub handoffs_applied: u32,
    /// Handoffs ignored because already applied (redelivery).
    pub handoffs_duplicate: u32,
    /// Handoffs refused as invalid (wrong region, non-finite, forged id or archetype).
    pub handoffs_refused: u32,
    /// Handoffs waiting because this region was full or over its per-tick limit (returned
    /// in [`TickOutput::deferred_handoffs`]).
    pub handoffs_deferred: u32,
    /// Teleports refused (unknown player, non-finite or outside the region).
    pub teleports_refused: u32,
}

impl TickStats {
    /// Adds `other` into `self` (saturating), to total counters over ticks or regions.
    pub fn accumulate(&mut self, other: &TickStats) {
        let TickStats {
            inputs_applied,
            inputs_over_limit,
            inputs_stale,
            inputs_unknown_player,
            inputs_non_finite,
            moves_clamped,
            attacks_refused,
            handoffs_applied,
            handoffs_duplicate,
            handoffs_refused,
            handoffs_deferred,
            teleports_refused,
        } = *other;
        self.inputs_applied = self.inputs_applied.saturating_add(inputs_applied);
        self.inputs_over_limit = self.inputs_over_limit.saturating_add(inputs_over_limit);
        self.inputs_stale = self.inputs_stale.saturating_add(inputs_stale);
        self.inputs_unknown_player = self
            .inputs_unknown_player
            .saturating_add(inputs_unknown_player);
        self.inputs_non_finite = self.inputs_non_finite.saturating_add(inputs_non_finite);
        self.moves_clamped = self.moves_clamped.saturating_add(moves_clamped);
        self.attacks_refused = self.attacks_refused.saturating_add(attacks_refused);
        self.handoffs_applied = self.handoffs_applied.saturating_add(handoffs_applied);
        self.handoffs_duplicate = self.handoffs_duplicate.saturating_add(handoffs_duplicate);
        self.handoffs_refused = self.handoffs_refused.saturating_add(handoffs_refused);
        self.handoffs_deferred = self.handoffs_deferred.saturating_add(handoffs_deferred);
        self.teleports_refused = self.teleports_refused.saturating_add(teleports_refused);
    }
}

/// Everything a region produced in one tick. Owned by the region and reused: read it
/// (or clone what you keep) before the next [`crate::Region::step`].
#[derive(Resource, Clone, Debug, Default)]
pub struct TickOutput {
    /// The tick just simulated.
    pub tick: u64,
    /// Visibility diffs per observer.
    pub interest: InterestOutput,
    /// Entities that left this region, to deliver to their new region.
    pub handoffs: Vec<HandoffRecord>,
    /// Incoming handoffs not applied this tick (over the per-tick limit, or the region is
    /// full): resend them. The entity is in flight until one is applied.
    pub deferred_handoffs: Vec<HandoffRecord>,
    /// Incoming handoffs applied this tick (each id at most once per region's lifetime).
    pub applied_handoffs: Vec<HandoffId>,
    /// Session events not applied this tick (over the per-tick limit): resend them first.
    pub deferred_sessions: Vec<SessionEvent>,
    /// Players that logged out, with their final state (to persist).
    pub departed: Vec<(PlayerId, SavedPlayer)>,
    /// Logouts of players not in this region.
    pub leaves_not_found: Vec<PlayerId>,
    /// Joins that were refused, with the reason.
    pub refused_joins: Vec<(PlayerId, JoinRefusal)>,
    /// Reliable events.
    pub events: Vec<GameEvent>,
    /// NPCs killed by players this tick, with their loot: for the node to commit to the
    /// economy ([`KillReward`]). At most one per NPC that died.
    pub kills: Vec<KillReward>,
    /// Counters.
    pub stats: TickStats,
}

impl TickOutput {
    pub(crate) fn clear(&mut self, tick: u64) {
        self.tick = tick;
        self.interest.observers.clear();
        self.interest.entities.clear();
        self.interest.members.clear();
        self.interest.left.clear();
        self.handoffs.clear();
        self.deferred_handoffs.clear();
        self.applied_handoffs.clear();
        self.deferred_sessions.clear();
        self.departed.clear();
        self.leaves_not_found.clear();
        self.refused_joins.clear();
        self.events.clear();
        self.kills.clear();
        self.stats = TickStats::default();
    }
}

/// The inbox: the current tick's [`TickInput`], moved in by [`crate::Region::step`] and
/// drained by the intake systems.
#[derive(Resource, Debug, Default)]
pub struct Inbox(pub TickInput);
