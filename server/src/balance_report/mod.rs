//! `tessera balance report`: what a balance means in play, for designers, computed by the
//! server's own rules rather than a spreadsheet's copy of them.
//!
//! Two parts. **Duels**: for each pair of archetypes that can fight (players attack
//! anything, players included; NPCs attack players), the damage of one hit
//! (`combat::hit_damage`, the function `resolve_attacks` uses), the attacker's cooldown in
//! whole ticks (`combat::cooldown_ticks`), damage per second, and the hits and time one
//! attacker in reach needs to kill a defender at full health, stepped tick by tick with
//! the defender regenerating by `life::regenerated` in the order a tick runs them (combat,
//! then regen). **Casualties**: deaths, kills, hits and damage by archetype over a seeded
//! headless run of the world with scripted players (`sim::run_sim_observed`), the same
//! seed giving the same figures. With a second config (`--against`), both and the
//! difference, changed rows marked.
//!
//! What it is not: a model of group fights, movement or aggro in the duels (one attacker,
//! always in reach, the defender standing); the casualties, from the real simulation, have
//! all of that, for one seed.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use tessera_regions::RegionError;
use tessera_regions::io::{EntityView, GameEvent};
use tessera_regions::resources::TickClock;
use tessera_regions::{combat, life};
use tessera_shared::config::{Archetype, Config};
use tessera_shared::ids::NetId;
use tessera_shared::math::Aabb;

use crate::sim::{SimOptions, run_sim_observed};

mod text;

/// A duel is stepped for at most this much game time; a defender still standing then is
/// reported as never killed. Bounds the work per pair at `3_600 * tick_hz` ticks (432,000
/// at 120 Hz).
pub const TTK_SECONDS_MAX: u32 = 3_600;

/// Default length of the casualties' sim: two and a half minutes of game time at 20 Hz,
/// about a second of a release build for the default world (two with `--against`).
pub const TICKS_DEFAULT: u64 = 3_000;

/// Default number of scripted players in the casualties' sim (as `tessera sim`).
pub const PLAYERS_DEFAULT: usize = 200;

/// The top bit of a [`NetId`] marks a player's avatar (see [`NetId::of_player`]).
const AVATAR_BIT: u64 = 1 << 63;

/// How the casualties are simulated.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// Seed of the regions and the scripted players.
    pub seed: u64,
    /// Ticks to simulate (clamped like `tessera sim`: 1 to `sim::SIM_TICKS_MAX`).
    pub ticks: u64,
    /// Scripted players (clamped to `sim::SIM_PLAYERS_MAX`).
    pub players: usize,
}

impl Default for ReportOptions {
    fn default() -> ReportOptions {
        ReportOptions {
            seed: 1,
            ticks: TICKS_DEFAULT,
            players: PLAYERS_DEFAULT,
        }
    }
}

/// One attacker against one defender at full health.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Duel {
    /// The attacking archetype.
    pub attacker: String,
    /// The defending archetype.
    pub defender: String,
    /// Health one hit takes (the damage formula, as the server evaluates it).
    #[serde(serialize_with = "shortest")]
    pub damage_per_hit: f32,
    /// Time between two hits: the cooldown in whole ticks, at least one.
    pub cooldown_s: f64,
    /// `damage_per_hit / cooldown_s`, before the defender's regen.
    pub dps: f64,
    /// Hits until the defender's health is at or below zero, regen included; `None`:
    /// never within [`TTK_SECONDS_MAX`] (regen undoes the hits, or no damage).
    pub hits_to_kill: Option<u64>,
    /// From the first hit to the killing one; `None` as for `hits_to_kill`.
    pub ttk_s: Option<f64>,
}

/// What one archetype did and suffered over the sim.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Casualties {
    /// The archetype.
    pub archetype: String,
    /// Deaths of entities of this archetype.
    pub deaths: u64,
    /// Killing blows dealt by entities of this archetype.
    pub kills: u64,
    /// Hits landed.
    pub hits: u64,
    /// Health taken from others (overkill included).
    pub damage_dealt: f64,
    /// Health lost to others.
    pub damage_taken: f64,
}

/// Killing blows of one archetype on another over the sim.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Kills {
    /// The archetype that dealt the killing blow.
    pub killer: String,
    /// The archetype that died.
    pub victim: String,
    /// How many times.
    pub count: u64,
}

/// The casualties of one seeded sim.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimCasualties {
    /// The seed.
    pub seed: u64,
    /// Ticks simulated.
    pub ticks: u64,
    /// Game time simulated.
    pub seconds: f64,
    /// Scripted players.
    pub players: usize,
    /// Per archetype, in config order.
    pub archetypes: Vec<Casualties>,
    /// Killer and victim pairs that happened, by killer then victim.
    pub kills: Vec<Kills>,
    /// Damage and death events of all regions (the sim's own totals).
    pub hits_total: u64,
    /// Deaths of all regions.
    pub deaths_total: u64,
    /// Events whose entities' archetypes could not be told (none expected; shown if not 0).
    pub unattributed: u64,
}

/// The report of one config.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BalanceReport {
    /// Where the config came from (a directory, or the embedded default).
    pub config: String,
    /// Ticks per second.
    pub tick_hz: u32,
    /// The players' archetype.
    pub player_archetype: String,
    /// The damage formula's source.
    pub damage_formula: String,
    /// Every pair that can fight: the player against each archetype, then each NPC
    /// archetype against the player.
    pub duels: Vec<Duel>,
    /// The sim's casualties.
    pub sim: SimCasualties,
}

/// One config's report, or two and their difference.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// The report of `--config`.
    pub base: BalanceReport,
    /// The report of `--against`, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub against: Option<BalanceReport>,
}

/// `tessera balance report`: the configs in `config_dir` (`None`: the embedded default
/// world) and, if given, `against_dir`, read by `load` (the CLI's one way of reading a
/// command's config), reported with `options`.
pub fn run(
    config_dir: Option<&Path>,
    against_dir: Option<&Path>,
    options: &ReportOptions,
    load: impl Fn(Option<&Path>) -> anyhow::Result<Config>,
) -> anyhow::Result<Comparison> {
    let label = |dir: Option<&Path>| {
        dir.map_or("the embedded default config".to_owned(), |d| {
            d.display().to_string()
        })
    };
    let base = (label(config_dir), Arc::new(load(config_dir)?));
    let against = match against_dir {
        Some(dir) => Some((label(Some(dir)), Arc::new(load(Some(dir))?))),
        None => None,
    };
    let comparison = compare(
        (&base.0, base.1),
        against.as_ref().map(|(l, c)| (l.as_str(), c.clone())),
        options,
    )?;
    Ok(comparison)
}

/// The report of `config` (named `label`): its duels and the casualties of a sim.
pub fn report(
    label: &str,
    config: Arc<Config>,
    options: &ReportOptions,
) -> Result<BalanceReport, RegionError> {
    let balance = &config.balance;
    Ok(BalanceReport {
        config: label.to_owned(),
        tick_hz: config.world.tick_hz,
        player_archetype: balance.archetypes[balance.player_archetype].name.clone(),
        damage_formula: balance.formulas.damage.source().to_owned(),
        duels: duels(&config),
        sim: casualties(config.clone(), options)?,
    })
}

/// The reports of `base` and, if given, `against`, with the same options.
pub fn compare(
    base: (&str, Arc<Config>),
    against: Option<(&str, Arc<Config>)>,
    options: &ReportOptions,
) -> Result<Comparison, RegionError> {
    Ok(Comparison {
        base: report(base.0, base.1, options)?,
        against: against
            .map(|(label, config)| report(label, config, options))
            .transpose()?,
    })
}

/// Every pair of archetypes that can fight in `config`: the player's archetype attacking
/// each archetype (itself included: players can hit players), then each other archetype
/// attacking the player's (NPCs attack players only).
pub fn duels(config: &Config) -> Vec<Duel> {
    let archetypes = &config.balance.archetypes;
    let player = &archetypes[config.balance.player_archetype];
    let attacks = archetypes.iter().map(|defender| (player, defender));
    let defends = archetypes
        .iter()
        .enumerate()
        .filter(|&(idx, _)| idx != config.balance.player_archetype)
        .map(|(_, attacker)| (attacker, player));
    attacks
        .chain(defends)
        .map(|(attacker, defender)| duel(config, attacker, defender))
        .collect()
}

/// `attacker` in reach of `defender` (at full health), hitting whenever its cooldown
/// allows, stepped tick by tick with the server's combat and regen rules.
pub fn duel(config: &Config, attacker: &Archetype, defender: &Archetype) -> Duel {
    let clock = TickClock::new(config.world.tick_hz);
    let damage = combat::hit_damage(&config.balance.formulas, attacker, defender);
    let every = combat::cooldown_ticks(&clock, attacker);
    let ticks_max = u64::from(TTK_SECONDS_MAX) * u64::from(clock.tick_hz);
    let mut health = defender.max_health;
    let mut before_last_hit = f32::INFINITY;
    let (mut tick, mut hits) = (0u64, 0u64);
    let kill_tick = loop {
        if tick > ticks_max {
            break None;
        }
        if tick % every == 0 {
            // Hit to hit, health only goes down if the first cycle took some: the next
            // cycle starts lower, and regen cannot give back more from lower down.
            if health >= before_last_hit {
                break None;
            }
            before_last_hit = health;
            health -= damage;
            hits += 1;
            if health <= 0.0 {
                break Some(tick);
            }
        }
        // Combat, then regen, in the same tick.
        match life::regenerated(defender, health, clock.dt_s) {
            Some(next) => {
                health = next;
                tick += 1;
            }
            // Nothing changes until the next hit.
            None => tick = (tick / every + 1) * every,
        }
    };
    let seconds = |ticks: u64| ticks as f64 / f64::from(clock.tick_hz);
    let cooldown_s = seconds(every);
    Duel {
        attacker: attacker.name.clone(),
        defender: defender.name.clone(),
        damage_per_hit: damage,
        cooldown_s: round(cooldown_s, 4),
        dps: round(f64::from(damage) / cooldown_s, 3),
        hits_to_kill: kill_tick.map(|_| hits),
        ttk_s: kill_tick.map(|t| round(seconds(t), 4)),
    }
}

/// Deaths, kills, hits and damage by archetype over a sim of `config` with `options`.
///
/// Events name entities by id; their archetypes are read from the regions' grids at the
/// end of the tick before (an entity that dies in a tick was alive at the end of the one
/// before: NPCs spawn after deaths), and avatars are always of the player archetype. A
/// killing blow is the last hit on the dead entity in its tick (later attacks on it are
/// refused).
pub fn casualties(
    config: Arc<Config>,
    options: &ReportOptions,
) -> Result<SimCasualties, RegionError> {
    let archetypes = &config.balance.archetypes;
    let player = u16::try_from(config.balance.player_archetype).expect("validated count");
    let bounds: HashMap<_, Aabb> = config
        .world
        .regions
        .iter()
        .map(|r| (r.id, r.bounds))
        .collect();
    let mut rows: Vec<Casualties> = archetypes
        .iter()
        .map(|a| Casualties {
            archetype: a.name.clone(),
            ..Casualties::default()
        })
        .collect();
    let mut kills: BTreeMap<(u16, u16), u64> = BTreeMap::new();
    let mut known: HashMap<NetId, u16> = HashMap::new();
    let mut last_hit: HashMap<NetId, u16> = HashMap::new();
    let mut views: Vec<EntityView> = Vec::new();
    let mut unattributed = 0u64;
    let sim = SimOptions {
        ticks: options.ticks,
        seed: options.seed,
        players: options.players,
    };
    let report = run_sim_observed(config.clone(), &sim, |_, local| {
        let archetype_of = |known: &HashMap<NetId, u16>, id: NetId| {
            if id.0 & AVATAR_BIT != 0 {
                Some(player)
            } else {
                known.get(&id).copied()
            }
        };
        for region in local.regions() {
            last_hit.clear();
            for event in &region.output().events {
                match *event {
                    GameEvent::Damage {
                        attacker,
                        target,
                        amount,
                    } => match (archetype_of(&known, attacker), archetype_of(&known, target)) {
                        (Some(a), Some(t)) => {
                            let dealt = &mut rows[usize::from(a)];
                            dealt.hits += 1;
                            dealt.damage_dealt += f64::from(amount);
                            rows[usize::from(t)].damage_taken += f64::from(amount);
                            last_hit.insert(target, a);
                        }
                        _ => unattributed += 1,
                    },
                    GameEvent::Death { entity } => match archetype_of(&known, entity) {
                        Some(victim) => {
                            rows[usize::from(victim)].deaths += 1;
                            if let Some(&killer) = last_hit.get(&entity) {
                                rows[usize::from(killer)].kills += 1;
                                *kills.entry((killer, victim)).or_default() += 1;
                            }
                        }
                        None => unattributed += 1,
                    },
                    GameEvent::Respawn { .. } => {}
                }
            }
        }
        known.clear();
        for region in local.regions() {
            if let Some(&area) = bounds.get(&region.id()) {
                region.views_in(area, &mut views);
            }
            known.extend(views.drain(..).map(|v| (v.id, v.archetype)));
        }
    })?;
    for row in &mut rows {
        row.damage_dealt = round(row.damage_dealt, 2);
        row.damage_taken = round(row.damage_taken, 2);
    }
    let name = |idx: u16| archetypes[usize::from(idx)].name.clone();
    let ticks = report.options.ticks;
    Ok(SimCasualties {
        seed: options.seed,
        ticks,
        seconds: round(ticks as f64 / f64::from(config.world.tick_hz), 3),
        players: report.options.players.min(crate::sim::SIM_PLAYERS_MAX),
        archetypes: rows,
        kills: kills
            .into_iter()
            .map(|((killer, victim), count)| Kills {
                killer: name(killer),
                victim: name(victim),
                count,
            })
            .collect(),
        hits_total: report.hits,
        deaths_total: report.deaths,
        unattributed,
    })
}

/// An `f32` as the shortest decimal that reads back as it (`6.6`, not the `f64` widening's
/// `6.599999904632568`).
fn shortest<S: serde::Serializer>(x: &f32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(x.to_string().parse().unwrap_or(f64::from(*x)))
}

/// `x` to `decimals` places, so that printed and serialized figures carry no float noise.
fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

/// A row of one table under comparison: the same key in both reports, or in one only.
#[derive(Clone, Debug, Serialize)]
pub struct Change<T> {
    /// In the base report.
    pub base: Option<T>,
    /// In the other report.
    pub against: Option<T>,
}

impl<T: PartialEq> Change<T> {
    /// True if the row differs (or is in one report only).
    pub fn changed(&self) -> bool {
        self.base != self.against
    }
}

impl Comparison {
    /// The duels of both reports matched by attacker and defender: the base's order, then
    /// those only in the other.
    pub fn duel_changes(&self) -> Vec<Change<&Duel>> {
        let key = |d: &Duel| (d.attacker.clone(), d.defender.clone());
        matched(
            &self.base.duels,
            self.against.as_ref().map(|a| a.duels.as_slice()),
            key,
        )
    }

    /// The casualties of both reports matched by archetype.
    pub fn casualty_changes(&self) -> Vec<Change<&Casualties>> {
        matched(
            &self.base.sim.archetypes,
            self.against.as_ref().map(|a| a.sim.archetypes.as_slice()),
            |c| c.archetype.clone(),
        )
    }

    /// The kills of both reports matched by killer and victim.
    pub fn kill_changes(&self) -> Vec<Change<&Kills>> {
        matched(
            &self.base.sim.kills,
            self.against.as_ref().map(|a| a.sim.kills.as_slice()),
            |k| (k.killer.clone(), k.victim.clone()),
        )
    }

    /// The comparison as JSON: `base`, `against` (if any) and, with `against`, `changes`:
    /// the changed rows only, each with its `base` and `against` values (null where the
    /// row is in one report only) and, for duels, `ttk_change_pct`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::to_value(self).expect("plain data serializes");
        if self.against.is_some() {
            let duels: Vec<_> = self
                .duel_changes()
                .into_iter()
                .filter(Change::changed)
                .map(|c| {
                    let any = c.base.or(c.against).expect("one side at least");
                    serde_json::json!({
                        "attacker": any.attacker,
                        "defender": any.defender,
                        "base": c.base,
                        "against": c.against,
                        "ttk_change_pct": ttk_change_pct(&c),
                    })
                })
                .collect();
            let casualties: Vec<_> = self
                .casualty_changes()
                .into_iter()
                .filter(Change::changed)
                .map(|c| serde_json::to_value(c).expect("plain data"))
                .collect();
            let kills: Vec<_> = self
                .kill_changes()
                .into_iter()
                .filter(Change::changed)
                .map(|c| serde_json::to_value(c).expect("plain data"))
                .collect();
            json["changes"] = serde_json::json!({
                "duels": duels,
                "casualties": casualties,
                "kills": kills,
            });
        }
        json
    }
}

/// Rows of `base` and `against` paired by `key`.
fn matched<'a, T, K: PartialEq>(
    base: &'a [T],
    against: Option<&'a [T]>,
    key: impl Fn(&T) -> K,
) -> Vec<Change<&'a T>> {
    let Some(against) = against else {
        return base
            .iter()
            .map(|b| Change {
                base: Some(b),
                against: None,
            })
            .collect();
    };
    let find = |rows: &'a [T], k: &K| rows.iter().find(|r| key(r) == *k);
    let mut out: Vec<_> = base
        .iter()
        .map(|b| Change {
            base: Some(b),
            against: find(against, &key(b)),
        })
        .collect();
    out.extend(
        against
            .iter()
            .filter(|a| find(base, &key(a)).is_none())
            .map(|a| Change {
                base: None,
                against: Some(a),
            }),
    );
    out
}

/// The relative change of the time to kill, in percent, when both kill in finite time.
fn ttk_change_pct(change: &Change<&Duel>) -> Option<f64> {
    let before = change.base?.ttk_s?;
    let after = change.against?.ttk_s?;
    (before > 0.0).then(|| round((after - before) / before * 100.0, 1))
}

#[cfg(test)]
mod tests;
