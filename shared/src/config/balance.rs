//! `balance.toml`: movement rules, archetypes, formulas and spawn tables.

use toml::Spanned;
use toml::de::DeTable;

use super::formula::{DAMAGE_VARS, Formula};
use super::reader::{At, Item, SourceFile, Table};
use super::schema::{Archetype, BalanceConfig, Formulas, MovementRules, SpawnEntry, SpawnTable};
use super::{ARCHETYPES_MAX, NAME_CHARS_MAX, SPAWN_ENTRIES_MAX, SPAWN_TABLES_MAX, is_key_name};

/// What world.toml needs to know about balance.toml: the spawn tables' names (sorted, so
/// a position is the index into [`BalanceConfig::spawn_tables`]) and NPCs per region.
pub(super) struct BalanceIndex {
    pub(super) spawn_tables: Vec<(String, u64)>,
}

/// Reads `balance.toml`. The index is returned even when the contents have errors, so that
/// world.toml's references are still checked.
pub(super) fn read(
    file: &SourceFile<'_>,
    doc: &Spanned<DeTable<'_>>,
) -> (Option<BalanceConfig>, BalanceIndex) {
    let mut root = Table::root(file, doc);

    let movement = root.table("movement").and_then(|mut t| {
        let speed_tolerance = t.f32_in("speed_tolerance", 0.0, 0.5);
        t.finish();
        Some(MovementRules {
            speed_tolerance: speed_tolerance?,
        })
    });

    let player = root.table("player").and_then(|mut t| {
        let name = t.string("archetype", "the name of an [archetypes.NAME]");
        t.finish();
        name
    });

    let archetypes = root.table("archetypes").map(|t| read_archetypes(file, t));
    let archetype_names: Vec<&str> = archetypes
        .as_ref()
        .map(|(_, names)| names.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let archetypes_known = archetypes.is_some();

    let player_archetype = player.and_then(|(name, at)| {
        resolve(
            file,
            &archetype_names,
            archetypes_known,
            name,
            at,
            "archetype",
        )
    });

    let formulas = root.table("formulas").and_then(|mut t| {
        let damage = t
            .string_item("damage", "a formula such as \"max(1, atk - def)\"")
            .and_then(|(source, item)| compile(file, "damage", source, item));
        t.finish();
        Some(Formulas { damage: damage? })
    });

    let (spawn_tables, index) = match root.table("spawn_tables") {
        Some(t) => read_spawn_tables(file, t, &archetype_names, archetypes_known),
        None => (
            None,
            BalanceIndex {
                spawn_tables: Vec::new(),
            },
        ),
    };
    root.finish();

    let config = (|| {
        Some(BalanceConfig {
            movement: movement?,
            player_archetype: player_archetype?,
            archetypes: archetypes?.0?,
            formulas: formulas?,
            spawn_tables: spawn_tables?,
        })
    })();
    (config, index)
}

/// The archetypes sorted by name (`None` if any has an error), and all names (sorted,
/// including those of broken archetypes, for reference checks).
fn read_archetypes(
    file: &SourceFile<'_>,
    mut t: Table<'_>,
) -> (Option<Vec<Archetype>>, Vec<String>) {
    let table_at = t.at;
    let mut entries = t.entries();
    t.finish();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let names: Vec<String> = entries.iter().map(|(n, _, _)| (*n).to_owned()).collect();
    let mut ok = true;
    if entries.is_empty() {
        file.error(
            table_at,
            "[archetypes] must define at least one archetype, e.g. [archetypes.adventurer]",
        );
        ok = false;
    }
    if entries.len() > ARCHETYPES_MAX {
        file.error(
            table_at,
            format!(
                "{} archetypes defined; at most {ARCHETYPES_MAX} allowed",
                entries.len()
            ),
        );
        return (None, names);
    }
    let mut archetypes = Vec::with_capacity(entries.len());
    for (name, name_at, item) in entries {
        ok &= check_key_name(file, name, name_at, "archetype");
        let label = format!("[archetypes.{name}]");
        let Some(mut a) = Table::from_item(file, label, format!("archetypes.{name}"), item) else {
            ok = false;
            continue;
        };
        match read_archetype(file, name, &mut a) {
            Some(arch) => archetypes.push(arch),
            None => ok = false,
        }
        a.finish();
    }
    (ok.then_some(archetypes), names)
}

fn read_archetype(file: &SourceFile<'_>, name: &str, a: &mut Table<'_>) -> Option<Archetype> {
    let max_health = a.f32_in("max_health", 1.0, 1_000_000.0);
    let speed_mps = a.f32_in("speed_mps", 0.0, 100.0);
    let attack = a.f32_in("attack", 0.0, 1_000_000.0);
    let defense = a.f32_in("defense", 0.0, 1_000_000.0);
    let level = a.u32_in("level", 1, 1000);
    let attack_range_m = a.f32_in("attack_range_m", 0.0, 100.0);
    let attack_cooldown_ms = a.u32_in("attack_cooldown_ms", 0, 600_000);
    let regen_per_s = a.f32_in("regen_per_s", 0.0, 1_000_000.0);
    let hostile = a.bool("hostile");
    let aggro_radius_m = a.f32_in("aggro_radius_m", 0.0, 1000.0);
    let leash = a.f32_in_at("leash_radius_m", 0.0, 10_000.0);
    let wander_radius_m = a.f32_in("wander_radius_m", 0.0, 10_000.0);
    let respawn_delay_ms = a.u32_in("respawn_delay_ms", 0, 3_600_000);
    let (aggro_radius_m, (leash_radius_m, leash_at)) = (aggro_radius_m?, leash?);
    if leash_radius_m < aggro_radius_m {
        file.error(
            leash_at,
            format!(
                "leash_radius_m must be at least aggro_radius_m ({aggro_radius_m}), got {leash_radius_m}"
            ),
        );
        return None;
    }
    Some(Archetype {
        name: name.to_owned(),
        max_health: max_health?,
        speed_mps: speed_mps?,
        attack: attack?,
        defense: defense?,
        level: level?,
        attack_range_m: attack_range_m?,
        attack_cooldown_ms: attack_cooldown_ms?,
        regen_per_s: regen_per_s?,
        hostile: hostile?,
        aggro_radius_m,
        leash_radius_m,
        wander_radius_m: wander_radius_m?,
        respawn_delay_ms: respawn_delay_ms?,
    })
}

fn read_spawn_tables(
    file: &SourceFile<'_>,
    mut t: Table<'_>,
    archetypes: &[&str],
    archetypes_known: bool,
) -> (Option<Vec<SpawnTable>>, BalanceIndex) {
    let table_at = t.at;
    let mut entries = t.entries();
    t.finish();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    if entries.len() > SPAWN_TABLES_MAX {
        file.error(
            table_at,
            format!(
                "{} spawn tables defined; at most {SPAWN_TABLES_MAX} allowed",
                entries.len()
            ),
        );
        return (
            None,
            BalanceIndex {
                spawn_tables: Vec::new(),
            },
        );
    }
    let mut ok = true;
    let mut tables = Vec::with_capacity(entries.len());
    let mut index = Vec::with_capacity(entries.len());
    for (name, name_at, item) in entries {
        ok &= check_key_name(file, name, name_at, "spawn table");
        let label = format!("[spawn_tables.{name}]");
        let path = format!("spawn_tables.{name}");
        let table = Table::from_item(file, label, path, item).and_then(|mut st| {
            let table = read_spawn_table(file, name, &mut st, archetypes, archetypes_known);
            st.finish();
            table
        });
        let n_npcs = table
            .as_ref()
            .map_or(0, |t| t.entries.iter().map(|e| u64::from(e.count)).sum());
        index.push((name.to_owned(), n_npcs));
        match table {
            Some(table) => tables.push(table),
            None => ok = false,
        }
    }
    (
        ok.then_some(tables),
        BalanceIndex {
            spawn_tables: index,
        },
    )
}

fn read_spawn_table(
    file: &SourceFile<'_>,
    name: &str,
    st: &mut Table<'_>,
    archetypes: &[&str],
    archetypes_known: bool,
) -> Option<SpawnTable> {
    let expected = "an array such as [{ archetype = \"wolf\", count = 40 }]";
    let (array, array_at) = st.array("entries", expected)?;
    if array.len() > SPAWN_ENTRIES_MAX {
        file.error(
            array_at,
            format!(
                "{} entries; at most {SPAWN_ENTRIES_MAX} allowed",
                array.len()
            ),
        );
        return None;
    }
    let mut ok = true;
    let mut entries: Vec<SpawnEntry> = Vec::with_capacity(array.len());
    for (i, value) in array.iter().enumerate() {
        let label = format!("[spawn_tables.{name}] entries #{}", i + 1);
        let item = Item::from_spanned(value);
        let Some(mut e) =
            Table::from_item(file, label, format!("spawn_tables.{name}.entries"), item)
        else {
            ok = false;
            continue;
        };
        let archetype = e
            .string("archetype", "the name of an [archetypes.NAME]")
            .and_then(|(arch, at)| {
                let idx = resolve(file, archetypes, archetypes_known, arch, at, "archetype")?;
                if entries.iter().any(|prev| prev.archetype == idx) {
                    file.error(
                        at,
                        format!("archetype {arch:?} is listed twice in spawn table {name:?}"),
                    );
                    return None;
                }
                Some(idx)
            });
        let count = e.u32_in("count", 0, 1_000_000);
        e.finish();
        match (archetype, count) {
            (Some(archetype), Some(count)) => entries.push(SpawnEntry { archetype, count }),
            _ => ok = false,
        }
    }
    ok.then(|| SpawnTable {
        name: name.to_owned(),
        entries,
    })
}

/// The index of `name` in the sorted `names`; reports unknown names when the names are
/// known (`known`), else returns `None` silently.
fn resolve(
    file: &SourceFile<'_>,
    names: &[&str],
    known: bool,
    name: &str,
    at: At<'_>,
    what: &str,
) -> Option<usize> {
    if !known {
        return None;
    }
    let found = names.iter().position(|n| *n == name);
    if found.is_none() {
        file.error(
            at,
            format!(
                "unknown {what} {name:?}; defined: {}",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ),
        );
    }
    found
}

fn check_key_name(file: &SourceFile<'_>, name: &str, at: At<'_>, what: &str) -> bool {
    if is_key_name(name) {
        return true;
    }
    file.error(
        at,
        format!(
            "{what} name must be 1 to {NAME_CHARS_MAX} characters of A-Z a-z 0-9 _ -, got {name:?}"
        ),
    );
    false
}

/// Compiles a formula, locating its errors inside the TOML string when it is written
/// without escapes (else at the string's start).
fn compile(file: &SourceFile<'_>, key: &str, source: &str, item: Item<'_>) -> Option<Formula> {
    match Formula::compile(source, DAMAGE_VARS) {
        Ok(f) => Some(f),
        Err(errors) => {
            let body_start = item.span.and_then(|(start, end)| {
                let raw = file.text.get(start..end)?;
                let quoted = (raw.starts_with('"') && raw.ends_with('"'))
                    || (raw.starts_with('\'') && raw.ends_with('\''));
                let body = raw.get(1..raw.len().checked_sub(1)?)?;
                (quoted && raw.len() >= 2 && body == source).then_some(start + 1)
            });
            for e in errors {
                let at = match body_start {
                    Some(start) => At::Offset(start.saturating_add(e.offset)),
                    None => item.at,
                };
                file.error(at, format!("formula {key}: {}", e.message));
            }
            None
        }
    }
}
