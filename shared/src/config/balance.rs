//! `balance.toml`: movement rules, archetypes, formulas and spawn tables.

use toml::Spanned;
use toml::de::DeTable;

use super::economy::{self, Names};
use super::formula::{DAMAGE_VARS, Formula};
use super::reader::{At, Item, SourceFile, Table};
use super::schema::{Archetype, BalanceConfig, Formulas, MovementRules, SpawnEntry, SpawnTable};
use super::spec::{Section, Spec};
use super::suggest;
use super::{
    ARCHETYPES_MAX, ITEMS_MAX, NAME_CHARS_MAX, SHOPS_MAX, SPAWN_ENTRIES_MAX, SPAWN_TABLES_MAX,
    is_key_name,
};

/// `balance.toml`.
pub(super) const FILE: Section = Section::of(
    "Numbers and formulas. Owned by game design. Units: metres (m), seconds (s), \
     milliseconds (ms); integers are fine where a number is expected.",
    &[
        Spec::table("movement", &MOVEMENT),
        Spec::table("player", &PLAYER),
        Spec::map(
            "archetypes",
            &ARCHETYPE,
            1,
            ARCHETYPES_MAX,
            "Kinds of creature, player avatars and NPCs alike, by NAME: 1 to 64 characters \
             of A-Z a-z 0-9 _ -",
        ),
        Spec::table("formulas", &FORMULAS),
        Spec::map(
            "spawn_tables",
            &SPAWN_TABLE,
            0,
            SPAWN_TABLES_MAX,
            "NPC populations by NAME, which regions of world.toml refer to: 1 to 64 \
             characters of A-Z a-z 0-9 _ -",
        ),
        Spec::table("progression", &economy::PROGRESSION),
        Spec::table("economy", &economy::ECONOMY),
        Spec::map(
            "items",
            &economy::ITEM,
            0,
            ITEMS_MAX,
            "Things players own, by ID: 1 to 64 characters of A-Z a-z 0-9 _ -, not \"coins\"",
        ),
        Spec::map(
            "loot",
            &economy::LOOT,
            0,
            ARCHETYPES_MAX,
            "What NPCs drop when a player kills them, by the name of their [archetypes.NAME]; \
             an archetype without a table drops nothing",
        ),
        Spec::map(
            "shops",
            &economy::SHOP,
            0,
            SHOPS_MAX,
            "Vendors, by ID: 1 to 64 characters of A-Z a-z 0-9 _ -",
        ),
    ],
);

/// What an archetype reference must be.
const ARCHETYPE_EXPECTED: &str = "the name of an [archetypes.NAME]";

const MOVEMENT: Section = Section::of(
    "Movement rules.",
    &[Spec::num(
        "speed_tolerance",
        0.0,
        0.5,
        "A client's move may exceed speed_mps * elapsed time by this fraction before the \
         server clamps it (absorbs timing jitter).",
    )],
);

const PLAYER: Section = Section::of(
    "Player avatars.",
    &[Spec::text(
        "archetype",
        ARCHETYPE_EXPECTED,
        "The archetype of players' avatars: one of the [archetypes.NAME].",
    )],
);

const ARCHETYPE: Section = Section::of(
    "A kind of creature, player avatars and NPCs alike.",
    &[
        Spec::num("max_health", 1.0, 1_000_000.0, "Health when spawned."),
        Spec::num("speed_mps", 0.0, 100.0, "Top speed (m/s)."),
        Spec::num("attack", 0.0, 1_000_000.0, "The damage formula's atk."),
        Spec::num("defense", 0.0, 1_000_000.0, "The damage formula's def."),
        Spec::int(
            "level",
            1,
            1000,
            "The damage formula's level and target_level.",
        ),
        Spec::num("attack_range_m", 0.0, 100.0, "Reach of an attack (m)."),
        Spec::int(
            "attack_cooldown_ms",
            0,
            600_000,
            "Time between two attacks (ms).",
        ),
        Spec::num(
            "regen_per_s",
            0.0,
            1_000_000.0,
            "Health regained per second while alive.",
        ),
        Spec::flag(
            "hostile",
            "true: NPCs of this kind attack players who come within aggro range.",
        ),
        Spec::num(
            "aggro_radius_m",
            0.0,
            1000.0,
            "How close a player must come to be attacked (m).",
        ),
        Spec::num(
            "leash_radius_m",
            0.0,
            10_000.0,
            "A chasing NPC this far from home gives up and walks back (m); at least \
             aggro_radius_m.",
        ),
        Spec::num(
            "wander_radius_m",
            0.0,
            10_000.0,
            "Idle NPCs stroll within this distance of home (m).",
        ),
        Spec::int(
            "respawn_delay_ms",
            0,
            3_600_000,
            "Time from death to respawn (ms).",
        ),
    ],
);

const FORMULAS: Section = Section::of(
    "Designer formulas, compiled once at load.",
    &[Spec::text(
        "damage",
        "a formula such as \"max(1, atk - def)\"",
        "Damage of one hit, computed when an attack lands. Variables: atk (the attacker's \
         attack), def (the target's defense), level (the attacker's level), target_level \
         (the target's). Allowed: numbers, + - * / % (usual precedence), unary -, \
         parentheses, and min(a, b), max(a, b), floor(x), ceil(x), clamp(x, lo, hi). At most \
         1024 characters. A negative or non-finite result does no damage.",
    )],
);

const SPAWN_TABLE: Section = Section::of(
    "The NPC population a region keeps alive.",
    &[Spec::tables(
        "entries",
        &SPAWN_ENTRY,
        (0, SPAWN_ENTRIES_MAX),
        "an array such as [{ archetype = \"wolf\", count = 40 }]",
        "One { archetype, count } per archetype, each archetype at most once.",
    )],
);

const SPAWN_ENTRY: Section = Section::of(
    "How many NPCs of one archetype a region keeps alive.",
    &[
        Spec::text("archetype", ARCHETYPE_EXPECTED, "An [archetypes.NAME]."),
        Spec::int("count", 0, 1_000_000, "How many."),
    ],
);

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
    let mut root = Table::root(file, &FILE, doc);

    let movement = root.table("movement").and_then(|mut t| {
        let speed_tolerance = t.num("speed_tolerance");
        t.finish();
        Some(MovementRules {
            speed_tolerance: speed_tolerance?,
        })
    });

    let player = root.table("player").and_then(|mut t| {
        let name = t.text("archetype");
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
            .text_item("damage")
            .and_then(|(source, item)| compile(file, "damage", DAMAGE_VARS, source, item));
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
    let progression = root
        .table("progression")
        .and_then(|t| economy::read_progression(file, t));
    // Taken in the file's order (which is the order "allowed:" lists them in), read once
    // the items they refer to are.
    let economy_table = root.table("economy");
    let items = root.table("items").map(|t| economy::read_items(file, t));
    let item_ids: Vec<&str> = items
        .as_ref()
        .map(|(_, ids)| ids.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let item_names = Names {
        names: &item_ids,
        known: items.is_some(),
    };
    let item_defs = items.as_ref().and_then(|(defs, _)| defs.as_deref());
    let economy =
        economy_table.and_then(|t| economy::read_economy(file, t, &item_names, item_defs));
    let archetype_refs = Names {
        names: &archetype_names,
        known: archetypes_known,
    };
    let loot = root
        .table("loot")
        .and_then(|t| economy::read_loot(file, t, &archetype_refs, &item_names));
    let shops = root
        .table("shops")
        .and_then(|t| economy::read_shops(file, t, &item_names, item_defs));
    root.finish();

    let config = (|| {
        Some(BalanceConfig {
            movement: movement?,
            player_archetype: player_archetype?,
            archetypes: archetypes?.0?,
            formulas: formulas?,
            spawn_tables: spawn_tables?,
            progression: progression?,
            economy: economy?,
            items: items?.0?,
            loot: loot?,
            shops: shops?,
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
        t.finish();
        return (None, names);
    }
    let mut archetypes = Vec::with_capacity(entries.len());
    for (name, name_at, item) in entries {
        ok &= check_key_name(file, name, name_at, "archetype");
        let Some(mut a) = t.entry(name, item) else {
            ok = false;
            continue;
        };
        match read_archetype(file, name, &mut a) {
            Some(arch) => archetypes.push(arch),
            None => ok = false,
        }
        a.finish();
    }
    t.finish();
    (ok.then_some(archetypes), names)
}

fn read_archetype(file: &SourceFile<'_>, name: &str, a: &mut Table<'_>) -> Option<Archetype> {
    let max_health = a.num("max_health");
    let speed_mps = a.num("speed_mps");
    let attack = a.num("attack");
    let defense = a.num("defense");
    let level = a.int("level");
    let attack_range_m = a.num("attack_range_m");
    let attack_cooldown_ms = a.int("attack_cooldown_ms");
    let regen_per_s = a.num("regen_per_s");
    let hostile = a.flag("hostile");
    let aggro_radius_m = a.num("aggro_radius_m");
    let leash = a.num_at("leash_radius_m");
    let wander_radius_m = a.num("wander_radius_m");
    let respawn_delay_ms = a.int("respawn_delay_ms");
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
    entries.sort_by(|a, b| a.0.cmp(b.0));
    if entries.len() > SPAWN_TABLES_MAX {
        file.error(
            table_at,
            format!(
                "{} spawn tables defined; at most {SPAWN_TABLES_MAX} allowed",
                entries.len()
            ),
        );
        t.finish();
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
        let table = t.entry(name, item).and_then(|mut st| {
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
    t.finish();
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
    let (array, array_at) = st.array("entries")?;
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
        let Some(mut e) = st.element("entries", label, item) else {
            ok = false;
            continue;
        };
        let archetype = e.text("archetype").and_then(|(arch, at)| {
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
        let count = e.int("count");
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
pub(super) fn resolve(
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
                "unknown {what} {name:?}; defined: {}{}",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                },
                suggest::did_you_mean(name, names.iter().copied())
            ),
        );
    }
    found
}

pub(super) fn check_key_name(file: &SourceFile<'_>, name: &str, at: At<'_>, what: &str) -> bool {
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
pub(super) fn compile(
    file: &SourceFile<'_>,
    key: &str,
    vars: &'static [&'static str],
    source: &str,
    item: Item<'_>,
) -> Option<Formula> {
    match Formula::compile(source, vars) {
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
