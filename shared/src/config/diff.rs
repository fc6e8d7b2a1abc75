//! What changed between two balances, one [`Change`] per value: for a reload's report
//! (`archetypes.wolf.max_health 40 -> 55`) and for comparing two config directories.
//!
//! Keys are the TOML paths of `balance.toml` (`movement.speed_tolerance`, `items.ID.price`,
//! `shops.ID.goods.ITEM.stock_max`, `loot.ARCHETYPE.drops`,
//! `player.archetype`, `formulas.damage`, `archetypes.NAME.KEY`,
//! `spawn_tables.NAME.ARCHETYPE.count`), so a designer finds each one in the file.
//! Archetypes, spawn tables and spawn entries are matched by name, not by position; one
//! only one side has is a single added or removed line. Numbers are shown as the shortest
//! text that reads back to the same value (`4.5`, `0.1`, `40`); formulas and names as
//! quoted strings, formulas by their source text.

use std::collections::BTreeMap;
use std::fmt;

use super::schema::{Archetype, BalanceConfig, Formulas, Loot, MovementRules, SpawnTable};

/// One difference between two balances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The TOML path of the value, e.g. `archetypes.wolf.max_health`.
    pub key: String,
    /// The value before, as text (`None`: added).
    pub old: Option<String>,
    /// The value after, as text (`None`: removed).
    pub new: Option<String>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.old, &self.new) {
            (Some(old), Some(new)) => write!(f, "{} {old} -> {new}", self.key),
            (None, Some(new)) => write!(f, "{} added: {new}", self.key),
            (Some(old), None) => write!(f, "{} removed (was {old})", self.key),
            (None, None) => write!(f, "{} unchanged", self.key),
        }
    }
}

/// Every value that differs from `old` to `new`, in the order of `balance.toml`'s
/// sections (movement, player, formulas, archetypes by name, spawn tables by name). Empty
/// when they are the same.
pub fn diff_balance(old: &BalanceConfig, new: &BalanceConfig) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut push = |key: String, old: Option<String>, new: Option<String>| {
        if old != new {
            changes.push(Change { key, old, new });
        }
    };
    // Exhaustive destructuring: a field added to the schema does not compile until it is
    // compared here too.
    let BalanceConfig {
        movement: MovementRules { speed_tolerance },
        player_archetype: _,
        archetypes: _,
        formulas: Formulas { damage },
        spawn_tables: _,
        progression: _,
        economy: _,
        items: _,
        loot: _,
        shops: _,
    } = old;
    push(
        "movement.speed_tolerance".into(),
        Some(number(*speed_tolerance)),
        Some(number(new.movement.speed_tolerance)),
    );
    push(
        "player.archetype".into(),
        Some(quoted(archetype_name(old, old.player_archetype))),
        Some(quoted(archetype_name(new, new.player_archetype))),
    );
    push(
        "formulas.damage".into(),
        Some(quoted(damage.source())),
        Some(quoted(new.formulas.damage.source())),
    );
    let by_name = |b: &'_ BalanceConfig| -> BTreeMap<String, Vec<(&'static str, String)>> {
        b.archetypes
            .iter()
            .map(|a| (a.name.clone(), archetype_values(a)))
            .collect()
    };
    for (name, old_values, new_values) in pair(by_name(old), by_name(new)) {
        let key = format!("archetypes.{name}");
        match (old_values, new_values) {
            (Some(o), Some(n)) => {
                for ((field, o), (_, n)) in o.into_iter().zip(n) {
                    push(format!("{key}.{field}"), Some(o), Some(n));
                }
            }
            (o, n) => push(key, o.map(inline_table), n.map(inline_table)),
        }
    }
    let tables = |b: &'_ BalanceConfig| -> BTreeMap<String, BTreeMap<String, u32>> {
        b.spawn_tables
            .iter()
            .map(|t| (t.name.clone(), spawn_counts(b, t)))
            .collect()
    };
    for (name, old_counts, new_counts) in pair(tables(old), tables(new)) {
        let key = format!("spawn_tables.{name}");
        match (old_counts, new_counts) {
            (Some(o), Some(n)) => {
                for (archetype, o, n) in pair(o, n) {
                    push(
                        format!("{key}.{archetype}.count"),
                        o.map(|c| c.to_string()),
                        n.map(|c| c.to_string()),
                    );
                }
            }
            (o, n) => push(key, o.map(entries_text), n.map(entries_text)),
        }
    }
    for (key, old_fields, new_fields) in pair(economy_tables(old), economy_tables(new)) {
        match (old_fields, new_fields) {
            (Some(o), Some(n)) => {
                for (field, o, n) in pair(o, n) {
                    push(format!("{key}.{field}"), o, n);
                }
            }
            (o, n) => push(key, o.map(named_inline_table), n.map(named_inline_table)),
        }
    }
    changes
}

/// The economy's tables by TOML path (`progression`, `economy`, `items.ID`,
/// `loot.ARCHETYPE`, `shops.ID`), each with its values by key as text. A shop's goods are
/// keyed by item (`goods.health_potion.stock_max`); a loot table's drops and the starter
/// kit, whose lines are ordered, are one value each.
fn economy_tables(b: &BalanceConfig) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut tables = BTreeMap::new();
    let item_id = |index: usize| b.items.get(index).map_or("?", |i| i.id.as_str());
    let p = &b.progression;
    tables.insert(
        "progression".to_owned(),
        BTreeMap::from([
            ("level_cap".to_owned(), p.level_cap.to_string()),
            ("xp_to_next".to_owned(), quoted(p.xp_to_next.source())),
            ("kill_xp".to_owned(), quoted(p.kill_xp.source())),
        ]),
    );
    let e = &b.economy;
    let kit: Vec<String> = e
        .starter_items
        .iter()
        .map(|s| {
            format!(
                "{{ item = {}, count = {} }}",
                quoted(item_id(s.item)),
                s.count
            )
        })
        .collect();
    tables.insert(
        "economy".to_owned(),
        BTreeMap::from([
            ("inventory_slots".to_owned(), e.inventory_slots.to_string()),
            ("starter_coins".to_owned(), e.starter_coins.to_string()),
            ("starter_items".to_owned(), format!("[{}]", kit.join(", "))),
        ]),
    );
    for i in &b.items {
        tables.insert(
            format!("items.{}", i.id),
            BTreeMap::from([
                ("name".to_owned(), quoted(&i.name)),
                ("stack_size".to_owned(), i.stack_size.to_string()),
                ("price".to_owned(), i.price.to_string()),
            ]),
        );
    }
    for t in &b.loot {
        let drops: Vec<String> = t
            .drops
            .iter()
            .map(|d| {
                let what = match d.what {
                    Loot::Coins => "coins",
                    Loot::Item(i) => item_id(i),
                };
                format!(
                    "{{ item = {}, chance = {}, amount = {} }}",
                    quoted(what),
                    number(d.chance),
                    quoted(d.amount.source())
                )
            })
            .collect();
        tables.insert(
            format!("loot.{}", archetype_name(b, t.archetype)),
            BTreeMap::from([("drops".to_owned(), format!("[{}]", drops.join(", ")))]),
        );
    }
    for s in &b.shops {
        let mut fields = BTreeMap::from([("name".to_owned(), quoted(&s.name))]);
        for g in &s.goods {
            let key = format!("goods.{}", item_id(g.item));
            fields.insert(format!("{key}.price_percent"), g.price_percent.to_string());
            fields.insert(format!("{key}.stock_max"), g.stock_max.to_string());
            fields.insert(
                format!("{key}.restock_per_min"),
                g.restock_per_min.to_string(),
            );
        }
        tables.insert(format!("shops.{}", s.id), fields);
    }
    tables
}

/// `{ name = "Wolf pelt", price = 4, stack_size = 20 }` (keys sorted).
fn named_inline_table(values: BTreeMap<String, String>) -> String {
    let fields: Vec<String> = values.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    format!("{{ {} }}", fields.join(", "))
}

/// The keys of both maps in order, with each side's value.
fn pair<V>(
    old: BTreeMap<String, V>,
    mut new: BTreeMap<String, V>,
) -> Vec<(String, Option<V>, Option<V>)> {
    let mut out = Vec::with_capacity(old.len().max(new.len()));
    for (key, o) in old {
        let n = new.remove(&key);
        out.push((key, Some(o), n));
    }
    out.extend(new.into_iter().map(|(key, n)| (key, None, Some(n))));
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// One value of an archetype, typed as `balance.toml` writes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FieldValue {
    /// A number (shown as the shortest decimal that reads back as the same `f32`).
    Number(f32),
    /// A whole number.
    Integer(u32),
    /// `true` or `false`.
    Flag(bool),
}

impl std::fmt::Display for FieldValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldValue::Number(x) => write!(f, "{x}"),
            FieldValue::Integer(n) => write!(f, "{n}"),
            FieldValue::Flag(b) => write!(f, "{b}"),
        }
    }
}

/// An archetype's values, every key of `[archetypes.NAME]` but its name, in
/// `balance.toml`'s order: what a diff compares and what the admin API shows.
pub fn archetype_fields(a: &Archetype) -> [(&'static str, FieldValue); 13] {
    use FieldValue::{Flag, Integer, Number};
    let Archetype {
        name: _,
        max_health,
        speed_mps,
        attack,
        defense,
        level,
        attack_range_m,
        attack_cooldown_ms,
        regen_per_s,
        hostile,
        aggro_radius_m,
        leash_radius_m,
        wander_radius_m,
        respawn_delay_ms,
    } = *a;
    [
        ("max_health", Number(max_health)),
        ("speed_mps", Number(speed_mps)),
        ("attack", Number(attack)),
        ("defense", Number(defense)),
        ("level", Integer(level)),
        ("attack_range_m", Number(attack_range_m)),
        ("attack_cooldown_ms", Integer(attack_cooldown_ms)),
        ("regen_per_s", Number(regen_per_s)),
        ("hostile", Flag(hostile)),
        ("aggro_radius_m", Number(aggro_radius_m)),
        ("leash_radius_m", Number(leash_radius_m)),
        ("wander_radius_m", Number(wander_radius_m)),
        ("respawn_delay_ms", Integer(respawn_delay_ms)),
    ]
}

/// An archetype's values in `balance.toml`'s order, as text.
fn archetype_values(a: &Archetype) -> Vec<(&'static str, String)> {
    archetype_fields(a)
        .into_iter()
        .map(|(key, value)| (key, value.to_string()))
        .collect()
}

/// A spawn table's counts by archetype name.
fn spawn_counts(balance: &BalanceConfig, table: &SpawnTable) -> BTreeMap<String, u32> {
    let SpawnTable { name: _, entries } = table;
    entries
        .iter()
        .map(|e| (archetype_name(balance, e.archetype).to_owned(), e.count))
        .collect()
}

fn archetype_name(balance: &BalanceConfig, index: usize) -> &str {
    // The loader resolves every index; `?` only if a hand-built config breaks that.
    balance
        .archetypes
        .get(index)
        .map_or("?", |a| a.name.as_str())
}

/// `{ max_health = 40, speed_mps = 4.5, ... }`.
fn inline_table(values: Vec<(&'static str, String)>) -> String {
    let fields: Vec<String> = values.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    format!("{{ {} }}", fields.join(", "))
}

/// `[wolf 120, boar 180]`.
fn entries_text(counts: BTreeMap<String, u32>) -> String {
    let entries: Vec<String> = counts.iter().map(|(a, c)| format!("{a} {c}")).collect();
    format!("[{}]", entries.join(", "))
}

/// The shortest text that reads back as `x` (`40`, `4.5`, `0.1`).
fn number(x: f32) -> String {
    x.to_string()
}

fn quoted(text: &str) -> String {
    format!("{text:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigSources, load_strs};

    fn with_balance(edit: impl Fn(&str) -> String) -> BalanceConfig {
        let shipped = ConfigSources::embedded();
        let balance = edit(shipped.balance.text);
        let sources = ConfigSources {
            balance: crate::config::SourceText {
                name: "balance.toml",
                text: &balance,
            },
            ..shipped
        };
        match load_strs(&sources, std::iter::empty()) {
            Ok(config) => config.balance,
            Err(errors) => panic!("the edited balance loads:\n{errors}"),
        }
    }

    fn lines(old: &BalanceConfig, new: &BalanceConfig) -> Vec<String> {
        diff_balance(old, new)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn the_same_balance_has_no_changes() {
        let shipped = Config::embedded_default().balance;
        assert!(diff_balance(&shipped, &shipped).is_empty());
        // Reordered text is the same balance.
        let reordered = with_balance(|text| {
            text.replacen(
                "    { archetype = \"wolf\", count = 120 },\n    { archetype = \"boar\", count = 180 },\n",
                "    { archetype = \"boar\", count = 180 },\n    { archetype = \"wolf\", count = 120 },\n",
                1,
            )
        });
        assert!(lines(&shipped, &reordered).is_empty());
    }

    #[test]
    fn each_changed_value_is_one_line_with_its_toml_path() {
        let shipped = Config::embedded_default().balance;
        let edited = with_balance(|text| {
            text.replacen("max_health = 40\n", "max_health = 55\n", 1)
                .replacen("speed_tolerance = 0.1", "speed_tolerance = 0.25", 1)
                .replacen("speed_mps = 4.5", "speed_mps = 4.75", 1)
                .replacen("hostile = true", "hostile = false", 1)
                .replacen(
                    "damage = \"max(1, atk * (1 + level * 0.1) - def)\"",
                    "damage = \"max(2, atk - def)\"",
                    1,
                )
                .replacen("count = 120", "count = 150", 1)
        });
        assert_eq!(
            lines(&shipped, &edited),
            [
                "movement.speed_tolerance 0.1 -> 0.25",
                "formulas.damage \"max(1, atk * (1 + level * 0.1) - def)\" -> \"max(2, atk - def)\"",
                "archetypes.wolf.max_health 40 -> 55",
                "archetypes.wolf.speed_mps 4.5 -> 4.75",
                "archetypes.wolf.hostile true -> false",
                "spawn_tables.wilds.wolf.count 120 -> 150",
            ]
        );
        // And back: the same lines the other way.
        assert_eq!(
            lines(&edited, &shipped)[2],
            "archetypes.wolf.max_health 55 -> 40"
        );
    }

    #[test]
    fn added_and_removed_archetypes_tables_and_entries_are_one_line_each() {
        let shipped = Config::embedded_default().balance;
        let deer = "[archetypes.deer]\nmax_health = 30\nspeed_mps = 7\nattack = 0\ndefense = 1\n\
                    level = 1\nattack_range_m = 1\nattack_cooldown_ms = 1_000\nregen_per_s = 0.5\n\
                    hostile = false\naggro_radius_m = 0\nleash_radius_m = 30\nwander_radius_m = 30\n\
                    respawn_delay_ms = 10_000\n\n";
        let edited = with_balance(|text| {
            let text = text.replacen("[archetypes.boar]", &format!("{deer}[archetypes.boar]"), 1);
            let text = text.replacen(
                "    { archetype = \"bandit\", count = 20 },\n",
                "    { archetype = \"deer\", count = 10 },\n",
                1,
            );
            format!(
                "{text}\n[spawn_tables.meadow]\nentries = [{{ archetype = \"deer\", count = 5 }}]\n"
            )
        });
        assert_eq!(
            lines(&shipped, &edited),
            [
                "archetypes.deer added: { max_health = 30, speed_mps = 7, attack = 0, defense = 1, \
                 level = 1, attack_range_m = 1, attack_cooldown_ms = 1000, regen_per_s = 0.5, \
                 hostile = false, aggro_radius_m = 0, leash_radius_m = 30, wander_radius_m = 30, \
                 respawn_delay_ms = 10000 }",
                "spawn_tables.meadow added: [deer 5]",
                "spawn_tables.wilds.bandit.count removed (was 20)",
                "spawn_tables.wilds.deer.count added: 10",
            ]
        );
        let back = lines(&edited, &shipped);
        assert!(
            back[0].starts_with("archetypes.deer removed (was { max_health = 30,"),
            "{back:?}"
        );
        assert!(
            back.contains(&"spawn_tables.meadow removed (was [deer 5])".to_owned()),
            "{back:?}"
        );
    }

    #[test]
    fn the_player_archetype_is_shown_by_name() {
        let shipped = Config::embedded_default().balance;
        let edited = with_balance(|text| {
            text.replacen("archetype = \"adventurer\"", "archetype = \"bandit\"", 1)
        });
        assert_eq!(
            lines(&shipped, &edited),
            ["player.archetype \"adventurer\" -> \"bandit\""]
        );
    }
}
