//! Life and death: regeneration, death, player respawn at the spawn point, and spawn
//! tables that keep each region's NPC population.
//!
//! A dead NPC is despawned and, if it belongs to a spawn-table entry, replaced after its
//! archetype's `respawn_delay_ms` by a fresh NPC (new id) at a random point of the region.
//! A dead player stays (visible, health 0, inputs ignored) until its respawn tick.

use bevy_ecs::prelude::*;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::combat::Kills;
use crate::components::*;
use crate::interest::Observer;
use crate::io::{GameEvent, KillReward, TickOutput};
use crate::loot;
use crate::plugin::RegionPlugin;
use crate::resources::{Directory, Mint, RegionInfo, SimConfig, SimRng, TickClock};
use crate::spawn;
use tessera_shared::config::Archetype;

/// Systems of this feature; after combat.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct LifeSystems;

/// Regen, death, respawn, population.
pub struct LifePlugin;

/// Spawn-table bookkeeping: how many of each entry are alive, and the pending respawns.
/// The queue holds at most one item per configured NPC (an entry's count), so it is
/// bounded by the spawn table.
#[derive(Resource, Debug, Default)]
pub struct Population {
    /// Alive count per spawn-table entry.
    pub alive: Vec<u32>,
    /// (due tick, sequence, entry), earliest first. The sequence makes the order total.
    pending: BinaryHeap<Reverse<(u64, u64, u16)>>,
    sequence: u64,
}

impl Population {
    /// Bookkeeping for a spawn table of `n_entries` entries, none alive yet.
    pub(crate) fn new(n_entries: usize) -> Population {
        Population {
            alive: vec![0; n_entries],
            ..Population::default()
        }
    }

    /// Schedules one NPC of `entry` at `due_tick`.
    pub(crate) fn schedule(&mut self, due_tick: u64, entry: u16) {
        self.pending.push(Reverse((due_tick, self.sequence, entry)));
        self.sequence += 1;
    }

    /// Appends the bookkeeping to a snapshot's meta cell.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.alive.len() as u32).to_le_bytes());
        for &alive in &self.alive {
            out.extend_from_slice(&alive.to_le_bytes());
        }
        let mut pending: Vec<_> = self.pending.iter().map(|r| r.0).collect();
        pending.sort_unstable();
        out.extend_from_slice(&(pending.len() as u32).to_le_bytes());
        for (due, sequence, entry) in pending {
            out.extend_from_slice(&due.to_le_bytes());
            out.extend_from_slice(&sequence.to_le_bytes());
            out.extend_from_slice(&entry.to_le_bytes());
        }
        out.extend_from_slice(&self.sequence.to_le_bytes());
    }

    /// Reads what [`Population::encode_into`] wrote, fitted to a spawn table of
    /// `n_entries` entries (the table may have changed since): counts of entries that no
    /// longer exist and their pending spawns are dropped, new entries start at 0 alive
    /// with their full count scheduled by the caller's config check on the next tick.
    pub(crate) fn decode(
        r: &mut crate::snapshot::Reader<'_>,
        n_entries: usize,
    ) -> Result<Population, crate::snapshot::SnapshotError> {
        let n_alive = r.count(4)?;
        let mut alive = Vec::with_capacity(n_alive);
        for _ in 0..n_alive {
            alive.push(r.u32()?);
        }
        alive.resize(n_entries, 0);
        let n_pending = r.count(18)?;
        let mut pending = BinaryHeap::with_capacity(n_pending);
        for _ in 0..n_pending {
            let (due, sequence, entry) = (r.u64()?, r.u64()?, r.u16()?);
            if usize::from(entry) < n_entries {
                pending.push(Reverse((due, sequence, entry)));
            }
        }
        let sequence = r.u64()?;
        Ok(Population {
            alive,
            pending,
            sequence,
        })
    }

    /// Feeds everything that decides future spawns into `h`: alive counts, and the
    /// pending respawns in due order.
    pub(crate) fn hash_into(&self, h: &mut crate::hash::Fnv1a) {
        for &alive in &self.alive {
            h.u32(alive);
        }
        let mut pending: Vec<_> = self.pending.iter().map(|r| r.0).collect();
        pending.sort_unstable();
        h.u64(pending.len() as u64);
        for (due, sequence, entry) in pending {
            h.u64(due);
            h.u64(sequence);
            h.u32(u32::from(entry));
        }
        h.u64(self.sequence);
    }
}

impl RegionPlugin for LifePlugin {
    fn build(&self, world: &mut World, schedule: &mut Schedule) {
        world.init_resource::<Population>();
        schedule.add_systems(
            (regenerate, handle_deaths, respawn_players, replenish_npcs)
                .chain()
                .in_set(LifeSystems),
        );
    }
}

/// Living entities below their maximum health regain `regen_per_s`.
pub fn regenerate(
    config: Res<SimConfig>,
    clock: Res<TickClock>,
    mut entities: Query<(&Identity, &mut Health)>,
) {
    for (identity, mut health) in &mut entities {
        // Written only when regen applies: change detection tells observers.
        if let Some(next) = regenerated(config.archetype(identity.archetype), health.0, clock.dt_s)
        {
            health.0 = next;
        }
    }
}

/// The health of a living `arch` at `health` after one tick of `dt_s` seconds of
/// regeneration (capped at its maximum), or `None` if it regenerates nothing (dead, at
/// full health, or no regen). What [`regenerate`] applies; pure, so that tools (the balance
/// report) use the server's own rule.
pub fn regenerated(arch: &Archetype, health: f32, dt_s: f32) -> Option<f32> {
    (health > 0.0 && health < arch.max_health && arch.regen_per_s > 0.0)
        .then(|| (health + arch.regen_per_s * dt_s).min(arch.max_health))
}

/// NPCs at zero health are removed (and queued for respawn), with their loot for the
/// player who killed them ([`TickOutput::kills`]); players start their respawn timer. Only NPCs whose health changed since the last run are looked at: a dead NPC is
/// removed the tick it dies, so one with unchanged health is alive (and a spawned one
/// counts as changed).
#[allow(clippy::too_many_arguments)] // A system: each parameter is a distinct world access.
pub fn handle_deaths(
    mut commands: Commands,
    config: Res<SimConfig>,
    clock: Res<TickClock>,
    mut directory: ResMut<Directory>,
    mut population: ResMut<Population>,
    mut output: ResMut<TickOutput>,
    mut kills: ResMut<Kills>,
    region: Res<RegionInfo>,
    npcs: Query<(Entity, &Identity, &Health, &Npc), Changed<Health>>,
    mut players: Query<(&Identity, &Health, &mut Player, &mut Velocity)>,
) {
    for (entity, identity, health, npc) in &npcs {
        if health.0 > 0.0 {
            continue;
        }
        output.events.push(GameEvent::Death {
            entity: identity.id,
        });
        if let Some(&(_, player)) = kills.0.iter().find(|(npc, _)| *npc == entity) {
            let balance = &config.0.balance;
            let archetype = usize::from(identity.archetype);
            let drops = loot::roll(balance, region.def.id, clock.tick, identity.id, archetype);
            output.kills.push(KillReward {
                player,
                npc: identity.id,
                archetype: identity.archetype,
                target_level: config.archetype(identity.archetype).level,
                coins: drops.coins,
                items: drops.items,
            });
        }
        if let Some(entry) = npc.spawn_entry {
            let alive = &mut population.alive[usize::from(entry)];
            *alive = alive.saturating_sub(1);
            let delay = config.archetype(identity.archetype).respawn_delay_ms;
            let due = clock.tick + clock.ticks_for_ms(delay).max(1);
            population.schedule(due, entry);
        }
        spawn::despawn(&mut commands, &mut directory, entity, identity.id, None);
    }
    kills.0.clear();
    for (identity, health, mut player, mut velocity) in &mut players {
        if health.0 > 0.0 || player.respawn_tick.is_some() {
            continue;
        }
        output.events.push(GameEvent::Death {
            entity: identity.id,
        });
        let delay = config.archetype(identity.archetype).respawn_delay_ms;
        player.respawn_tick = Some(clock.tick + clock.ticks_for_ms(delay).max(1));
        velocity.0 = tessera_shared::math::Vec2::ZERO;
    }
}

/// Dead players whose timer ran out reappear at the spawn point with full health: a
/// server-side displacement, exempt from the speed check.
pub fn respawn_players(
    config: Res<SimConfig>,
    clock: Res<TickClock>,
    region: Res<RegionInfo>,
    mut output: ResMut<TickOutput>,
    mut players: Query<(
        &Identity,
        &mut Player,
        &mut Position,
        &mut Health,
        &mut Observer,
    )>,
) {
    for (identity, mut player, mut position, mut health, mut observer) in &mut players {
        if player.respawn_tick.is_some_and(|t| t <= clock.tick) {
            player.respawn_tick = None;
            position.0 = region.def.spawn_point;
            observer.refresh_now();
            health.0 = config.archetype(identity.archetype).max_health;
            output.events.push(GameEvent::Respawn {
                player: player.player,
            });
        }
    }
}

/// Spawns the NPCs whose respawn is due, while the region has room.
#[allow(clippy::too_many_arguments)] // A system: each parameter is a distinct world access.
pub fn replenish_npcs(
    mut commands: Commands,
    config: Res<SimConfig>,
    clock: Res<TickClock>,
    region: Res<RegionInfo>,
    mut directory: ResMut<Directory>,
    mut population: ResMut<Population>,
    mut mint: ResMut<Mint>,
    mut rng: ResMut<SimRng>,
) {
    let table = &config.0.balance.spawn_tables[region.def.spawn_table];
    let entities_max = config.0.world.limits.entities_per_region_max as usize;
    while let Some(&Reverse((due, _, entry))) = population.pending.peek() {
        if due > clock.tick {
            break;
        }
        population.pending.pop();
        if directory.by_net_id.len() >= entities_max {
            // Full (players take precedence): try again in a second.
            let retry = clock.tick + clock.ticks_for_ms(1_000).max(1);
            population.schedule(retry, entry);
            break;
        }
        let Some(id) = mint.entity(region.def.id) else {
            break; // 2^40 ids spent: nothing sensible left to do but stop spawning.
        };
        let archetype = table.entries[usize::from(entry)].archetype;
        let archetype_idx = u16::try_from(archetype).expect("archetype count is validated");
        let home = rng.point_in(&region.def.bounds);
        let bundle = spawn::npc_bundle(
            id,
            archetype_idx,
            config.archetype(archetype_idx),
            home,
            Some(entry),
        );
        spawn::spawn(&mut commands, &mut directory, id, None, bundle);
        population.alive[usize::from(entry)] += 1;
    }
}
