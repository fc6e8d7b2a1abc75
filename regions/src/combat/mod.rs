//! Combat: attacks requested by players (through inputs) and by chasing NPCs, checked for
//! range, cooldown and liveness, with damage from the designer's formula.
//!
//! Attacks resolve in a fixed order (player requests in input order, then NPCs in query
//! order), each seeing the effects of the previous ones, so a tick is deterministic.

use bevy_ecs::prelude::*;
use tessera_shared::config::{Archetype, Formulas};
use tessera_shared::ids::{NetId, PlayerId};

use crate::components::*;
use crate::io::{GameEvent, TickOutput};
use crate::plugin::RegionPlugin;
use crate::resources::{Directory, SimConfig, TickClock};

/// Systems of this feature; after movement.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct CombatSystems;

/// Attack resolution.
pub struct CombatPlugin;

/// Attacks requested by player inputs this tick: (attacker avatar, target id). Bounded by
/// `inputs_per_tick_max` (at most one request per input); drained every tick.
#[derive(Resource, Debug, Default)]
pub struct AttackRequests(pub Vec<(Entity, NetId)>);

/// NPCs a player's hit brought to zero health this tick: (NPC, player). Read by
/// `life::handle_deaths` (the loot goes to the killer) and cleared there; at most one per
/// NPC (a dead NPC takes no more hits).
#[derive(Resource, Debug, Default)]
pub struct Kills(pub Vec<(Entity, PlayerId)>);

/// The attacks chasing NPCs make this tick, in query order: (attacker, target id): those
/// chasing, awake, alive and ready at the end of AI (`ai::think` lists them in its pass
/// over the NPCs; nothing between AI and combat changes these). At most one per NPC;
/// drained every tick.
#[derive(Resource, Debug, Default)]
pub struct NpcAttacks(pub Vec<(Entity, NetId)>);

impl RegionPlugin for CombatPlugin {
    fn build(&self, world: &mut World, schedule: &mut Schedule) {
        world.init_resource::<AttackRequests>();
        world.init_resource::<NpcAttacks>();
        world.init_resource::<Kills>();
        schedule.add_systems(resolve_attacks.in_set(CombatSystems));
    }
}

/// Why an attack did not land.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    UnknownTarget,
    Dead,
    OutOfRange,
    Cooldown,
}

/// Resolves this tick's attacks: the players' requests, then the NPCs'.
#[allow(clippy::too_many_arguments)] // A system: each parameter is a distinct world access.
pub fn resolve_attacks(
    mut requests: ResMut<AttackRequests>,
    mut npc_attacks: ResMut<NpcAttacks>,
    mut kills: ResMut<Kills>,
    directory: Res<Directory>,
    config: Res<SimConfig>,
    clock: Res<TickClock>,
    mut output: ResMut<TickOutput>,
    mut fighters: Fighters,
) {
    let queue = requests.0.drain(..).chain(npc_attacks.0.drain(..));
    for (attacker, target) in queue {
        match attack(
            &mut fighters,
            &directory,
            &config,
            &clock,
            Landed {
                output: &mut output,
                kills: &mut kills,
            },
            attacker,
            target,
        ) {
            Ok(()) => {}
            Err(_refusal) => output.stats.attacks_refused += 1,
        }
    }
}

/// The health one hit of `attacker` takes from `target`: the designer's damage formula,
/// where a negative or non-finite result (a division by zero, say) does no damage. What
/// [`resolve_attacks`] deals; pure, so that tools (the balance report) show the very number
/// the server uses.
pub fn hit_damage(formulas: &Formulas, attacker: &Archetype, target: &Archetype) -> f32 {
    let raw = formulas.damage.eval(&[
        f64::from(attacker.attack),
        f64::from(target.defense),
        f64::from(attacker.level),
        f64::from(target.level),
    ]);
    if raw.is_finite() && raw > 0.0 {
        raw.min(f64::from(f32::MAX)) as f32
    } else {
        0.0
    }
}

/// Ticks from one attack of `attacker` to its next at `clock`'s rate: its cooldown rounded
/// up to whole ticks, and at least one (an entity attacks at most once a tick). What
/// [`resolve_attacks`] waits.
pub fn cooldown_ticks(clock: &TickClock, attacker: &Archetype) -> u64 {
    clock.ticks_for_ms(attacker.attack_cooldown_ms).max(1)
}

/// Where a landed attack is recorded.
struct Landed<'a> {
    /// Its `Damage` event.
    output: &'a mut TickOutput,
    /// A player's killing blow.
    kills: &'a mut Kills,
}

/// Everything an attack reads and writes.
type Fighters<'w, 's> = Query<
    'w,
    's,
    (
        Entity,
        &'static Identity,
        &'static Position,
        &'static mut Health,
        &'static mut AttackCooldown,
        Option<&'static mut Npc>,
    ),
>;

fn attack(
    fighters: &mut Fighters,
    directory: &Directory,
    config: &SimConfig,
    clock: &TickClock,
    landed: Landed<'_>,
    attacker: Entity,
    target_id: NetId,
) -> Result<(), Refusal> {
    let Landed { output, kills } = landed;
    let target = *directory
        .by_net_id
        .get(&target_id)
        .ok_or(Refusal::UnknownTarget)?;
    if target == attacker {
        return Err(Refusal::UnknownTarget);
    }
    let (_, a_id, a_pos, a_health, a_cooldown, _) =
        fighters.get(attacker).map_err(|_| Refusal::UnknownTarget)?;
    let (_, t_id, t_pos, t_health, _, _) =
        fighters.get(target).map_err(|_| Refusal::UnknownTarget)?;
    if a_health.0 <= 0.0 || t_health.0 <= 0.0 {
        return Err(Refusal::Dead);
    }
    if a_cooldown.ready_tick > clock.tick {
        return Err(Refusal::Cooldown);
    }
    let a_arch = config.archetype(a_id.archetype);
    let t_arch = config.archetype(t_id.archetype);
    let range = a_arch.attack_range_m;
    if a_pos.0.distance_squared(t_pos.0) > range * range {
        return Err(Refusal::OutOfRange);
    }
    let attacker_id = a_id.id;
    let amount = hit_damage(&config.0.balance.formulas, a_arch, t_arch);
    let cooldown_ticks = cooldown_ticks(clock, a_arch);
    {
        let (_, _, _, _, mut cooldown, _) = fighters.get_mut(attacker).expect("checked above");
        cooldown.ready_tick = clock.tick + cooldown_ticks;
    }
    let (_, _, _, mut health, _, npc) = fighters.get_mut(target).expect("checked above");
    health.0 -= amount;
    // Alive before the hit (checked above), dead after it: a kill, if a player struck.
    if npc.is_some()
        && health.0 <= 0.0
        && let Some(player) = attacker_id.player()
    {
        kills.0.push((target, player));
    }
    // A struck NPC turns on its attacker, unless it is already busy or walking home.
    if let Some(mut npc) = npc
        && matches!(npc.brain, Brain::Idle { .. } | Brain::Wander { .. })
    {
        npc.brain = Brain::Chase {
            target: attacker_id,
        };
    }
    output.events.push(GameEvent::Damage {
        attacker: attacker_id,
        target: target_id,
        amount,
    });
    Ok(())
}
