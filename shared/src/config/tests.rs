//! Loader tests: the shipped files load, and each kind of mistake is reported at the
//! exact `file:line:col` with the rule and the allowed values.

use super::*;
use crate::ids::RegionId;
use proptest::prelude::*;
use std::path::PathBuf;

pub(super) const TESSERA: &str = r#"[node]
name = "n1"
mode = "dev"
data_dir = "./data"
[net]
quic_listen = "127.0.0.1:4433"
admin_listen = "127.0.0.1:8080"
[sim]
threads = 2
[auth]
issuer = "tessera-dev"
audience = "tessera"
algorithm = "HS256"
key_file = ""
ticket_secret_file = ""
[tls]
cert_file = ""
key_file = ""
[services]
mongodb_uri = ""
mongodb_database = "tessera"
redis_url = ""
[persistence]
snapshot_interval_s = 10
[cluster]
regions = []
advertise_addr = ""
[admin]
keys_file = ""
"#;

pub(super) const WORLD: &str = r#"[world]
name = "w"
size_m = { x = 1024, y = 512 }
tick_hz = 20
[grid]
cell_size_m = 16
[interest]
enter_radius_m = 80
leave_radius_m = 96
visible_entities_max = 256
wake_radius_m = 128
[regions]
layout = "grid"
columns = 2
rows = 1
spawn_table = "wilds"
"#;

pub(super) const BALANCE: &str = r#"[movement]
speed_tolerance = 0.1
[player]
archetype = "hero"
[formulas]
damage = "max(1, atk - def)"
[archetypes.hero]
max_health = 100
speed_mps = 6
attack = 12
defense = 3
level = 1
attack_range_m = 2.5
attack_cooldown_ms = 800
regen_per_s = 1
hostile = false
aggro_radius_m = 0
leash_radius_m = 0
wander_radius_m = 0
respawn_delay_ms = 5000
[archetypes.wolf]
max_health = 40
speed_mps = 4.5
attack = 8
defense = 2
level = 2
attack_range_m = 1.5
attack_cooldown_ms = 1200
regen_per_s = 0.5
hostile = true
aggro_radius_m = 12
leash_radius_m = 40
wander_radius_m = 20
respawn_delay_ms = 30000
[spawn_tables.wilds]
entries = [{ archetype = "wolf", count = 10 }]
[progression]
level_cap = 30
xp_to_next = "100 * level"
kill_xp = "10 * target_level"
[economy]
inventory_slots = 4
starter_coins = 50
starter_items = [{ item = "potion", count = 3 }]
[items.potion]
name = "Potion"
stack_size = 2
price = 10
[items.pelt]
name = "Pelt"
stack_size = 10
price = 3
[loot.wolf]
drops = [{ item = "coins", chance = 1, amount = "2 * target_level" }, { item = "pelt", chance = 0.5, amount = "1" }]
[shops.store]
name = "Store"
goods = [{ item = "potion", stock_max = 5, restock_per_min = 1, price_percent = 150 }]
"#;

/// A world with a list layout (lines 12 onwards differ from `WORLD`).
pub(super) const WORLD_LIST: &str = r#"[world]
name = "w"
size_m = { x = 1024, y = 512 }
tick_hz = 20
[grid]
cell_size_m = 16
[interest]
enter_radius_m = 80
leave_radius_m = 96
visible_entities_max = 256
wake_radius_m = 128
[regions]
layout = "list"
[[regions.region]]
id = 7
min = { x = 0, y = 0 }
max = { x = 500, y = 512 }
spawn_table = "wilds"
[[regions.region]]
id = 3
min = { x = 500, y = 0 }
max = { x = 1024, y = 512 }
spawn_table = "wilds"
spawn_point = { x = 600, y = 10 }
"#;

fn load(tessera: &str, world: &str, balance: &str) -> Result<Config, ConfigErrors> {
    load_env(tessera, world, balance, &[])
}

fn load_env(
    tessera: &str,
    world: &str,
    balance: &str,
    env: &[(&str, &str)],
) -> Result<Config, ConfigErrors> {
    let sources = ConfigSources::new(tessera, world, balance);
    load_strs(
        &sources,
        env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    )
}

/// The error lines of a load that must fail.
fn errors(result: Result<Config, ConfigErrors>) -> Vec<String> {
    match result {
        Ok(_) => panic!("expected errors, the configuration loaded"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

/// `src` with its 1-based line `line` replaced by `text`.
fn with_line(src: &str, line: usize, text: &str) -> String {
    let mut lines: Vec<&str> = src.lines().collect();
    assert!(line >= 1 && line <= lines.len(), "no line {line}");
    lines[line - 1] = text;
    lines.join("\n") + "\n"
}

fn world_errors(world: &str) -> Vec<String> {
    errors(load(TESSERA, world, BALANCE))
}

fn balance_errors(balance: &str) -> Vec<String> {
    errors(load(TESSERA, WORLD, balance))
}

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

#[test]
fn fixtures_load() {
    let c = load(TESSERA, WORLD, BALANCE).unwrap();
    assert_eq!(c.node.name, "n1");
    assert_eq!(c.node.sim_threads, 2);
    assert_eq!(c.node.snapshot_interval, std::time::Duration::from_secs(10));
    assert_eq!(c.world.regions.len(), 2);
    let r2 = &c.world.regions[1];
    assert_eq!(r2.id, RegionId(2));
    assert_eq!(r2.bounds.min, Vec2::new(512.0, 0.0));
    assert_eq!(r2.bounds.max, Vec2::new(1024.0, 512.0));
    assert_eq!(r2.spawn_point, Vec2::new(768.0, 256.0));
    assert_eq!(
        c.world.limits.entities_per_region_max,
        WorldLimits::DEFAULT.entities_per_region_max
    );
    let names: Vec<&str> = c
        .balance
        .archetypes
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["hero", "wolf"]);
    assert_eq!(c.balance.player_archetype, 0);
    assert_eq!(c.balance.spawn_tables[0].entries[0].archetype, 1);

    let c = load(TESSERA, WORLD_LIST, BALANCE).unwrap();
    let ids: Vec<RegionId> = c.world.regions.iter().map(|r| r.id).collect();
    assert_eq!(ids, [RegionId(3), RegionId(7)]);
    assert_eq!(c.world.regions[0].spawn_point, Vec2::new(600.0, 10.0));
    assert_eq!(c.world.regions[1].spawn_point, Vec2::new(250.0, 256.0));
}

#[test]
fn shipped_files_load() {
    let c = Config::embedded_default();
    assert_eq!(c.node.mode, NodeMode::Dev);
    assert_eq!(c.world.size_m, Vec2::new(2048.0, 2048.0));
    assert_eq!(c.world.tick_hz, 20);
    assert_eq!(c.world.cell_size_m, 16.0);
    assert_eq!(c.world.interest.enter_radius_m, 80.0);
    assert_eq!(c.world.interest.leave_radius_m, 96.0);
    assert_eq!(c.world.interest.visible_entities_max, 256);
    assert_eq!(c.world.interest.wake_radius_m, 128.0);
    let ids: Vec<u32> = c.world.regions.iter().map(|r| r.id.0).collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    // Row-major from the origin: 2 is east of 1, 3 north of 1.
    assert_eq!(c.world.regions[1].bounds.min, Vec2::new(1024.0, 0.0));
    assert_eq!(c.world.regions[2].bounds.min, Vec2::new(0.0, 1024.0));
    assert_eq!(c.world.regions[3].bounds.max, Vec2::new(2048.0, 2048.0));
    let player = &c.balance.archetypes[c.balance.player_archetype];
    assert_eq!(player.name, "adventurer");
    assert_eq!(player.max_health, 100.0);
    assert!(!player.hostile);
    let wolf = c
        .balance
        .archetypes
        .iter()
        .find(|a| a.name == "wolf")
        .unwrap();
    assert!(wolf.hostile && wolf.aggro_radius_m == 12.0 && wolf.leash_radius_m == 40.0);
    // adventurer hits wolf: max(1, 12 * 1.1 - 2) = 11.2
    let dmg = c.balance.formulas.damage.eval(&[12.0, 2.0, 1.0, 2.0]);
    assert!((dmg - 11.2).abs() < 1e-9, "{dmg}");

    let from_dir = load_dir_with_env(&config_dir(), std::iter::empty()).unwrap();
    assert_eq!(from_dir.world.regions.len(), 4);
    let summary = check_dir(&config_dir()).unwrap().to_string();
    assert!(summary.contains("4 regions"), "{summary}");
    assert!(
        summary.contains("4 archetypes, 1 spawn table, 320 NPCs per region (1280 in total)"),
        "{summary}"
    );
}

#[test]
fn missing_directory_reports_each_file() {
    let e = errors(load_dir_with_env(
        Path::new("/nonexistent/tessera"),
        std::iter::empty(),
    ));
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e[0].starts_with("/nonexistent/tessera/tessera.toml: cannot read"),
        "{e:?}"
    );
}

#[test]
fn wrong_type() {
    assert_eq!(
        world_errors(&with_line(WORLD, 4, r#"tick_hz = "20""#)),
        [r#"world.toml:4:11: tick_hz must be an integer between 1 and 120, got the string "20""#]
    );
    assert_eq!(
        world_errors(&with_line(WORLD, 4, "tick_hz = 20.0")),
        ["world.toml:4:11: tick_hz must be an integer between 1 and 120, got 20.0"]
    );
}

#[test]
fn misspelt_required_key_is_one_error() {
    // Not "missing tick_hz" and "unknown tick_hzz": one mistake, one error, at the typo.
    assert_eq!(
        world_errors(&with_line(WORLD, 4, "tick_hzz = 20")),
        [
            r#"world.toml:4:1: unknown key "tick_hzz" in [world]; allowed: name, size_m, tick_hz; did you mean "tick_hz"? (it is required and missing; expected an integer between 1 and 120)"#,
        ]
    );
    assert_eq!(
        balance_errors(&with_line(BALANCE, 28, "attack_cooldownms = 1200")),
        [
            r#"balance.toml:28:1: unknown key "attack_cooldownms" in [archetypes.wolf]; allowed: max_health, speed_mps, attack, defense, level, attack_range_m, attack_cooldown_ms, regen_per_s, hostile, aggro_radius_m, leash_radius_m, wander_radius_m, respawn_delay_ms; did you mean "attack_cooldown_ms"? (it is required and missing; expected an integer between 0 and 600000)"#,
        ]
    );
    // A missing key nothing misspells is still reported at the table's header.
    let world = with_line(WORLD, 4, "tick_hzz = 20");
    let world = with_line(&world, 2, "colour = 1");
    assert_eq!(
        world_errors(&world),
        [
            r#"world.toml:1:1: missing key "name" in [world]; expected a world name such as "default""#,
            r#"world.toml:2:1: unknown key "colour" in [world]; allowed: name, size_m, tick_hz"#,
            r#"world.toml:4:1: unknown key "tick_hzz" in [world]; allowed: name, size_m, tick_hz; did you mean "tick_hz"? (it is required and missing; expected an integer between 1 and 120)"#,
        ]
    );
}

#[test]
fn unknown_key_suggests_the_closest_allowed_one() {
    // The key it misspells is there too: a suggestion, nothing missing.
    let balance = BALANCE.replace(
        "attack_cooldown_ms = 1200\n",
        "attack_cooldown_ms = 1200\nattack_cooldownms = 5\n",
    );
    assert_eq!(
        balance_errors(&balance),
        [
            r#"balance.toml:29:1: unknown key "attack_cooldownms" in [archetypes.wolf]; allowed: max_health, speed_mps, attack, defense, level, attack_range_m, attack_cooldown_ms, regen_per_s, hostile, aggro_radius_m, leash_radius_m, wander_radius_m, respawn_delay_ms; did you mean "attack_cooldown_ms"?"#,
        ]
    );
    // Case and swapped letters are typos too; an optional key is suggested without
    // "missing".
    let world = WORLD.replace(
        "[regions]",
        "[limits]\nPLAYERS_PER_REGION_MAX = 5\nentities_per_regoin_max = 5\n[regions]",
    );
    assert_eq!(
        world_errors(&world),
        [
            r#"world.toml:13:1: unknown key "PLAYERS_PER_REGION_MAX" in [limits]; allowed: entities_per_region_max, players_per_region_max, inputs_per_tick_max, handoffs_per_tick_max; did you mean "players_per_region_max"?"#,
            r#"world.toml:14:1: unknown key "entities_per_regoin_max" in [limits]; allowed: entities_per_region_max, players_per_region_max, inputs_per_tick_max, handoffs_per_tick_max; did you mean "entities_per_region_max"?"#,
        ]
    );
    // In an inline table and an array of tables.
    assert_eq!(
        world_errors(&with_line(WORLD, 3, "size_m = { x = 1024, yy = 512 }")),
        [
            r#"world.toml:3:22: unknown key "yy" in [world] size_m; allowed: x, y; did you mean "y"? (it is required and missing; expected a number between 1 and 1000000)"#,
        ]
    );
    assert_eq!(
        world_errors(&with_line(
            WORLD_LIST,
            24,
            "spawn_pont = { x = 600, y = 10 }"
        )),
        [
            r#"world.toml:24:1: unknown key "spawn_pont" in [[regions.region]] #2; allowed: id, min, max, spawn_table, spawn_point; did you mean "spawn_point"?"#,
        ]
    );
}

#[test]
fn misspelt_table_names_are_one_error() {
    // A required table: the typo and the missing table are one error.
    assert_eq!(
        world_errors(&with_line(WORLD, 5, "[gird]")),
        [
            r#"world.toml:5:2: unknown key "gird" in the top level; allowed: world, grid, interest, limits, regions; did you mean "grid"? (the table is required and missing)"#,
        ]
    );
    // An optional one: just the suggestion.
    let world = WORLD.replace(
        "[regions]",
        "[limts]\nplayers_per_region_max = 5\n[regions]",
    );
    assert_eq!(
        world_errors(&world),
        [
            r#"world.toml:12:2: unknown key "limts" in the top level; allowed: world, grid, interest, limits, regions; did you mean "limits"?"#,
        ]
    );
    // A table name nothing is close to: the missing table is reported on its own.
    let world = WORLD.replace("[grid]", "[spatial]");
    assert_eq!(
        world_errors(&world),
        [
            "world.toml:1:1: missing table [grid]; required keys: cell_size_m",
            r#"world.toml:5:2: unknown key "spatial" in the top level; allowed: world, grid, interest, limits, regions"#,
        ]
    );
    // The key that chooses the others: misspelt, it is still found.
    assert_eq!(
        world_errors(&with_line(WORLD, 13, r#"layuot = "grid""#)),
        [
            r#"world.toml:13:1: unknown key "layuot" in [regions]; allowed: layout; did you mean "layout"? (it is required and missing; expected "grid" or "list")"#,
        ]
    );
}

#[test]
fn values_of_a_fixed_set_suggest_the_closest() {
    assert_eq!(
        errors(load(
            &with_line(TESSERA, 3, r#"mode = "Dev""#),
            WORLD,
            BALANCE
        )),
        [r#"tessera.toml:3:8: mode must be "dev" or "production", got "Dev"; did you mean "dev"?"#]
    );
    assert_eq!(
        errors(load(
            &with_line(TESSERA, 13, r#"algorithm = "hs256""#),
            WORLD,
            BALANCE
        )),
        [
            r#"tessera.toml:13:13: algorithm must be "HS256", "RS256", "ES256" or "EdDSA", got "hs256"; did you mean "HS256"?"#
        ]
    );
    assert_eq!(
        world_errors(&with_line(WORLD, 13, r#"layout = "lists""#)),
        [r#"world.toml:13:10: layout must be "grid" or "list", got "lists"; did you mean "list"?"#]
    );
}

#[test]
fn unknown_names_suggest_the_closest() {
    assert_eq!(
        balance_errors(&with_line(
            BALANCE,
            36,
            r#"entries = [{ archetype = "wolve", count = 10 }]"#
        )),
        [
            r#"balance.toml:36:26: unknown archetype "wolve"; defined: hero, wolf; did you mean "wolf"?"#
        ]
    );
    // Nothing close: no suggestion.
    assert_eq!(
        balance_errors(&with_line(BALANCE, 4, r#"archetype = "knight""#)),
        [r#"balance.toml:4:13: unknown archetype "knight"; defined: hero, wolf"#]
    );
    assert_eq!(
        balance_errors(&with_line(BALANCE, 6, r#"damage = "flor(atk) - deff""#)),
        [
            r#"balance.toml:6:11: formula damage: unknown function "flor"; allowed: min, max, floor, ceil, clamp; did you mean "floor"?"#,
            r#"balance.toml:6:23: formula damage: unknown variable "deff"; allowed: atk, def, level, target_level; did you mean "def"?"#,
        ]
    );
}

#[test]
fn env_typos_name_the_variable_to_set() {
    // The file lacks quic_listen and the environment misspells it: one error.
    let tessera = TESSERA.replace("quic_listen = \"127.0.0.1:4433\"\n", "");
    assert_eq!(
        errors(load_env(
            &tessera,
            WORLD,
            BALANCE,
            &[("TESSERA__NET__QUIC_LISTENN", "0.0.0.0:5000")]
        )),
        [
            r#"env TESSERA__NET__QUIC_LISTENN: unknown key "quic_listenn" in [net]; allowed: quic_listen, admin_listen, logins_per_address_per_s, login_burst_per_address, login_limit_loopback, state_kbit_per_s, state_staleness_ticks_max; did you mean TESSERA__NET__QUIC_LISTEN? (it is required and missing; expected an IP address and port such as "127.0.0.1:4433" or "[::1]:4433")"#
        ]
    );
    assert_eq!(
        errors(load_env(
            TESSERA,
            WORLD,
            BALANCE,
            &[("TESSERA__SIMM__THREADS", "4")]
        )),
        [
            r#"env TESSERA__SIMM__THREADS: unknown section "simm" of tessera.toml; allowed: node, net, sim, auth, tls, services, persistence, cluster, admin, chat; did you mean TESSERA__SIM__THREADS?"#
        ]
    );
}

#[test]
fn suggestions_are_close_and_few() {
    use super::suggest::{closest, distance};
    let d = |a: &str, b: &str| {
        let chars = |s: &str| s.chars().collect::<Vec<char>>();
        distance(&chars(a), &chars(b))
    };
    assert_eq!(d("kitten", "sitting"), 3);
    assert_eq!(d("spawn_tabel", "spawn_table"), 1, "a swap is one edit");
    assert_eq!(d("", "abc"), 3);
    assert_eq!(d("héé", "hé"), 1, "characters, not bytes");
    let keys = ["name", "size_m", "tick_hz"];
    assert_eq!(closest("tick_hzz", keys), Some("tick_hz"));
    assert_eq!(closest("Tick_HZ", keys), Some("tick_hz"));
    assert_eq!(closest("tickrate", keys), None);
    assert_eq!(closest("nmae", keys), Some("name"));
    // Short names need a close match: "min" is no typo of "max", "z" none of "x".
    assert_eq!(closest("min", ["max"]), None);
    assert_eq!(closest("z", ["x", "y"]), None);
    assert_eq!(closest("lvl", ["atk", "def", "level"]), Some("level"));
    // At most three edits, however long the name.
    assert_eq!(
        closest("attack_cooldown", ["attack_cooldown_ms"]),
        Some("attack_cooldown_ms")
    );
    assert_eq!(closest("attack_cool", ["attack_cooldown_ms"]), None);
    // Ties go to the first candidate; an exact match is not a suggestion.
    assert_eq!(closest("ab", ["aa", "bb"]), Some("aa"));
    assert_eq!(closest("x", ["x"]), None);
    // Very long names are not compared.
    let long = "a".repeat(10_000);
    assert_eq!(closest(&long, [long.as_str()]), None);
    assert_eq!(closest(&long[1..], [long.as_str()]), None);
}

#[test]
fn out_of_range() {
    assert_eq!(
        world_errors(&with_line(WORLD, 6, "cell_size_m = 0")),
        ["world.toml:6:15: cell_size_m must be between 1 and 1024, got 0"]
    );
    assert_eq!(
        world_errors(&with_line(WORLD, 6, "cell_size_m = nan")),
        ["world.toml:6:15: cell_size_m must be between 1 and 1024, got nan"]
    );
    assert_eq!(
        world_errors(&with_line(WORLD, 3, "size_m = { x = inf, y = 512 }")),
        ["world.toml:3:16: x must be between 1 and 1000000, got inf"]
    );
    assert_eq!(
        world_errors(&with_line(WORLD, 4, "tick_hz = 99999999999999999999999")),
        ["world.toml:4:11: tick_hz must be between 1 and 120, got 99999999999999999999999"]
    );
}

#[test]
fn three_mistakes_three_errors() {
    let world = with_line(WORLD, 4, "tick_hz = 0");
    let world = with_line(&world, 6, "cell_size_m = 2000");
    let world = with_line(&world, 10, "visible_entities_max = -1");
    assert_eq!(
        world_errors(&world),
        [
            "world.toml:4:11: tick_hz must be between 1 and 120, got 0",
            "world.toml:6:15: cell_size_m must be between 1 and 1024, got 2000",
            "world.toml:10:24: visible_entities_max must be between 1 and 65536, got -1",
        ]
    );
}

#[test]
fn errors_of_all_files_are_reported_together() {
    let e = errors(load(
        &with_line(TESSERA, 9, "threads = 1000"),
        &with_line(WORLD, 4, "tick_hz = 0"),
        &with_line(BALANCE, 2, "speed_tolerance = 1"),
    ));
    assert_eq!(
        e,
        [
            "tessera.toml:9:11: threads must be between 0 and 256, got 1000",
            "world.toml:4:11: tick_hz must be between 1 and 120, got 0",
            "balance.toml:2:19: speed_tolerance must be between 0 and 0.5, got 1",
        ]
    );
}

#[test]
fn missing_key_and_missing_table() {
    assert_eq!(
        balance_errors(&with_line(BALANCE, 11, "")),
        [
            r#"balance.toml:7:1: missing key "defense" in [archetypes.hero]; expected a number between 0 and 1000000"#
        ]
    );
    let world = WORLD.replace("[grid]\ncell_size_m = 16\n", "");
    assert_eq!(
        world_errors(&world),
        ["world.toml:1:1: missing table [grid]; required keys: cell_size_m"]
    );
}

#[test]
fn toml_syntax_error() {
    let e = world_errors(&with_line(WORLD, 4, "tick_hz = = 20"));
    assert!(!e.is_empty());
    assert!(e[0].starts_with("world.toml:4:11: invalid TOML: "), "{e:?}");
    let e = world_errors(&with_line(WORLD, 2, r#"name = "w"#));
    assert!(e[0].starts_with("world.toml:2:"), "{e:?}");
    assert!(e[0].contains("invalid TOML"), "{e:?}");
}

#[test]
fn formula_errors_point_into_the_string() {
    assert_eq!(
        balance_errors(&with_line(BALANCE, 6, r#"damage = "sqrt(atk)""#)),
        [
            r#"balance.toml:6:11: formula damage: unknown function "sqrt"; allowed: min, max, floor, ceil, clamp"#
        ]
    );
    assert_eq!(
        balance_errors(&with_line(BALANCE, 6, r#"damage = "atk * (def""#)),
        [r#"balance.toml:6:17: formula damage: unclosed "(""#]
    );
    assert_eq!(
        balance_errors(&with_line(BALANCE, 6, r#"damage = 'atk * lvl'"#)),
        [
            r#"balance.toml:6:17: formula damage: unknown variable "lvl"; allowed: atk, def, level, target_level; did you mean "level"?"#
        ]
    );
    // With an escape the string's text differs from the formula: point at the string.
    assert_eq!(
        balance_errors(&with_line(BALANCE, 6, r#"damage = "atk \u002A ^""#)),
        [
            r#"balance.toml:6:10: formula damage: unexpected character '^'; allowed: numbers, variables, + - * / %, parentheses and function calls"#
        ]
    );
}

#[test]
fn cross_checks() {
    assert_eq!(
        world_errors(&with_line(WORLD, 16, r#"spawn_table = "wildz""#)),
        [
            r#"world.toml:16:15: unknown spawn table "wildz"; balance.toml defines: wilds; did you mean "wilds"?"#
        ]
    );
    assert_eq!(
        world_errors(&with_line(WORLD, 9, "leave_radius_m = 50")),
        ["world.toml:9:18: leave_radius_m must be at least enter_radius_m (80), got 50"]
    );
    assert_eq!(
        balance_errors(&with_line(BALANCE, 32, "leash_radius_m = 5")),
        ["balance.toml:32:18: leash_radius_m must be at least aggro_radius_m (12), got 5"]
    );
    assert_eq!(
        balance_errors(&with_line(BALANCE, 4, r#"archetype = "heroo""#)),
        [
            r#"balance.toml:4:13: unknown archetype "heroo"; defined: hero, wolf; did you mean "hero"?"#
        ]
    );
    assert_eq!(
        balance_errors(&with_line(
            BALANCE,
            36,
            r#"entries = [{ archetype = "wolf", count = 1 }, { archetype = "wolf", count = 2 }]"#
        )),
        [r#"balance.toml:36:61: archetype "wolf" is listed twice in spawn table "wilds""#]
    );
    let world = WORLD.replace(
        "[regions]",
        "[limits]\nentities_per_region_max = 5\n[regions]",
    );
    assert_eq!(
        world_errors(&world),
        [
            r#"world.toml:18:15: spawn table "wilds" keeps 10 NPCs per region, more than [limits] entities_per_region_max = 5"#
        ]
    );
    // A broken balance.toml still lets world.toml's references be checked, and does not
    // make them fail.
    let broken = with_line(
        BALANCE,
        36,
        r#"entries = [{ archetype = "wolf", count = -1 }]"#,
    );
    assert_eq!(
        errors(load(TESSERA, WORLD, &broken)),
        ["balance.toml:36:42: count must be between 0 and 1000000, got -1"]
    );
}

#[test]
fn region_list_errors() {
    // Overlap: region 3 starts at x = 400, inside region 7.
    assert_eq!(
        world_errors(&with_line(WORLD_LIST, 21, "min = { x = 400, y = 0 }")),
        [
            "world.toml:20:6: region 3 [400, 1024) x [0, 512) overlaps region 7 (line 15); regions must be disjoint"
        ]
    );
    assert_eq!(
        world_errors(&with_line(WORLD_LIST, 20, "id = 7")),
        ["world.toml:20:6: duplicate region id 7 (first defined on line 15)"]
    );
    assert_eq!(
        world_errors(&with_line(WORLD_LIST, 22, "max = { x = 1025, y = 512 }")),
        [
            "world.toml:22:7: region 3 extends outside the world: max is (1025, 512), the world spans [0, 1024) x [0, 512)"
        ]
    );
    assert_eq!(
        world_errors(&with_line(
            WORLD_LIST,
            24,
            "spawn_point = { x = 10, y = 10 }"
        )),
        [
            "world.toml:24:15: spawn_point (10, 10) of region 3 must lie inside its bounds [500, 1024) x [0, 512)"
        ]
    );
    assert_eq!(
        world_errors(&with_line(WORLD_LIST, 17, "max = { x = 0, y = 512 }")),
        [
            "world.toml:16:7: region 7 is empty: max must be greater than min on both axes, got min (0, 0) and max (0, 512)"
        ]
    );
    assert_eq!(
        world_errors(&with_line(WORLD_LIST, 18, "spawn_tabel = \"wilds\"")),
        [
            r#"world.toml:18:1: unknown key "spawn_tabel" in [[regions.region]] #1; allowed: id, min, max, spawn_table, spawn_point; did you mean "spawn_table"? (it is required and missing; expected the name of a [spawn_tables.NAME] of balance.toml)"#,
        ]
    );
    let world = with_line(WORLD_LIST, 6, "cell_size_m = 1");
    let world = with_line(&world, 3, "size_m = { x = 10000, y = 512 }");
    let world = with_line(&world, 22, "max = { x = 10000, y = 512 }");
    assert_eq!(
        world_errors(&world),
        [
            "world.toml:20:6: region 3 needs 9500 x 512 = 4864000 grid cells of 1 m, more than 4194304; use a larger [grid] cell_size_m or smaller regions"
        ]
    );
}

#[test]
fn grid_errors() {
    assert_eq!(
        world_errors(&with_line(
            &with_line(WORLD, 14, "columns = 4096"),
            15,
            "rows = 2"
        )),
        ["world.toml:12:1: columns * rows = 8192 regions; at most 4096 are allowed"]
    );
    // 1_000_000 x 512 m in two columns of 1 m cells: 500_000 * 512 cells each.
    let world = with_line(WORLD, 3, "size_m = { x = 1000000, y = 512 }");
    let world = with_line(&world, 6, "cell_size_m = 1");
    assert_eq!(
        world_errors(&world),
        [
            "world.toml:6:15: region 1 needs 500000 x 512 = 256000000 grid cells of 1 m, more than 4194304; use a larger [grid] cell_size_m or smaller regions"
        ]
    );
    assert_eq!(
        world_errors(&with_line(WORLD, 13, r#"layout = "hex""#)),
        [r#"world.toml:13:10: layout must be "grid" or "list", got "hex""#]
    );
}

#[test]
fn node_errors() {
    assert_eq!(
        errors(load(
            &with_line(TESSERA, 6, r#"quic_listen = "localhost:4433""#),
            WORLD,
            BALANCE
        )),
        [
            r#"tessera.toml:6:15: quic_listen must be an IP address and port such as "127.0.0.1:4433" or "[::1]:4433", got "localhost:4433""#
        ]
    );
    assert_eq!(
        errors(load(
            &with_line(TESSERA, 3, r#"mode = "prod""#),
            WORLD,
            BALANCE
        )),
        [r#"tessera.toml:3:8: mode must be "dev" or "production", got "prod""#]
    );
    assert_eq!(
        errors(load(
            &with_line(TESSERA, 2, r#"name = "a b""#),
            WORLD,
            BALANCE
        )),
        [r#"tessera.toml:2:8: name must be 1 to 64 characters of A-Z a-z 0-9 _ . -, got "a b""#]
    );
}

#[test]
fn service_uris_are_checked_and_not_echoed() {
    let bad = with_line(TESSERA, 20, r#"mongodb_uri = "http://user:secret@db""#);
    let found = errors(load(&bad, WORLD, BALANCE));
    assert_eq!(
        found,
        [
            r#"tessera.toml:20:15: mongodb_uri must be a URI starting with mongodb://, or "" for none (at most 4096 bytes)"#
        ]
    );
    assert!(!found[0].contains("secret"));
    let bad = with_line(TESSERA, 21, r#"mongodb_database = "a.b""#);
    assert_eq!(
        errors(load(&bad, WORLD, BALANCE)),
        [
            r#"tessera.toml:21:20: mongodb_database must be 1 to 63 characters of A-Z a-z 0-9 _ -, got "a.b""#
        ]
    );
    let empty = load(TESSERA, WORLD, BALANCE).unwrap();
    assert_eq!(empty.node.services.mongodb_uri, None);
    let set = with_line(TESSERA, 20, r#"mongodb_uri = "mongodb://127.0.0.1:27017/""#);
    let set = load(&set, WORLD, BALANCE).unwrap();
    assert_eq!(
        set.node.services.mongodb_uri.as_deref(),
        Some("mongodb://127.0.0.1:27017/")
    );
}

#[test]
fn env_overrides_apply_to_tessera_toml() {
    let c = load_env(
        TESSERA,
        WORLD,
        BALANCE,
        &[
            ("TESSERA__NET__QUIC_LISTEN", "0.0.0.0:5000"),
            ("TESSERA__SIM__THREADS", "8"),
            ("TESSERA__NODE__NAME", "prod-1"),
            ("TESSERA__node__mode", "\"production\""),
            ("TESSERA__AUTH__KEY_FILE", "/run/secrets/jwt"),
            ("TESSERA__AUTH__TICKET_SECRET_FILE", "/run/secrets/tickets"),
            ("TESSERA__TLS__CERT_FILE", "/etc/tessera/cert.pem"),
            ("TESSERA__TLS__KEY_FILE", "/etc/tessera/key.pem"),
            ("TESSERA__ADMIN__KEYS_FILE", "/run/secrets/admin-keys.toml"),
            ("PATH", "/usr/bin"),
            ("TESSERA_NOT_OURS", "x"),
        ],
    )
    .unwrap();
    assert_eq!(c.node.quic_listen, "0.0.0.0:5000".parse().unwrap());
    assert_eq!(c.node.sim_threads, 8);
    assert_eq!(c.node.name, "prod-1");
    assert_eq!(c.node.mode, NodeMode::Production);
    assert_eq!(
        c.node.admin.keys_file.as_deref(),
        Some(std::path::Path::new("/run/secrets/admin-keys.toml"))
    );
    assert_eq!(
        c.node.auth.key_file.as_deref(),
        Some(std::path::Path::new("/run/secrets/jwt"))
    );
    assert_eq!(
        c.node.tls.key_file.as_deref(),
        Some(std::path::Path::new("/etc/tessera/key.pem"))
    );

    // A section absent from the file can come entirely from the environment.
    let c = load_env(
        &TESSERA.replace("[sim]\nthreads = 2\n", ""),
        WORLD,
        BALANCE,
        &[("TESSERA__SIM__THREADS", "3")],
    )
    .unwrap();
    assert_eq!(c.node.sim_threads, 3);
}

#[test]
fn bad_env_overrides_error() {
    let result = load_env(
        TESSERA,
        WORLD,
        BALANCE,
        &[
            ("TESSERA__NET__QUIC_LISTENN", "0.0.0.0:5000"),
            ("TESSERA__SIM__THREADS", "many"),
            ("TESSERA__NETT__X", "1"),
            ("TESSERA__NODE", "1"),
        ],
    );
    let e = result.unwrap_err();
    let quic =
        e.0.iter()
            .find(|e| e.file == "env TESSERA__NET__QUIC_LISTENN")
            .unwrap();
    assert_eq!((quic.line, quic.col), (0, 0));
    assert_eq!(
        e.to_string(),
        [
            r#"env TESSERA__NETT__X: unknown section "nett" of tessera.toml; allowed: node, net, sim, auth, tls, services, persistence, cluster, admin, chat; did you mean TESSERA__NET__X?"#,
            r#"env TESSERA__NET__QUIC_LISTENN: unknown key "quic_listenn" in [net]; allowed: quic_listen, admin_listen, logins_per_address_per_s, login_burst_per_address, login_limit_loopback, state_kbit_per_s, state_staleness_ticks_max; did you mean TESSERA__NET__QUIC_LISTEN?"#,
            "env TESSERA__NODE: expected a name of the form TESSERA__SECTION__KEY, e.g. TESSERA__NET__QUIC_LISTEN",
            "env TESSERA__SIM__THREADS: threads must be an integer between 0 and 256, got many",
        ]
        .join("\n")
    );
}

#[test]
fn error_flood_is_capped() {
    let world: String = (0..5000).map(|i| format!("k{i} = 1\n")).collect();
    let e = world_errors(&world);
    assert_eq!(e.len(), ERRORS_SHOWN_MAX + 1);
    assert!(
        e.last().unwrap().ends_with("more errors not shown"),
        "{:?}",
        e.last()
    );
}

/// The shipped files and, for mutations, which file to break.
fn shipped() -> [String; 3] {
    let s = ConfigSources::embedded();
    [
        s.tessera.text.to_owned(),
        s.world.text.to_owned(),
        s.balance.text.to_owned(),
    ]
}

fn load_three(files: &[String; 3]) -> Result<Config, ConfigErrors> {
    load_env(
        &files[0],
        &files[1],
        &files[2],
        &[("TESSERA__SIM__THREADS", "x")],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}", which in 0usize..3) {
        let mut files = shipped();
        files[which] = text;
        let _ = load_three(&files);
    }

    #[test]
    fn mutated_shipped_files_never_panic(
        which in 0usize..3,
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        truncate in any::<bool>(),
    ) {
        let mut files = shipped();
        let mut bytes = files[which].clone().into_bytes();
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        for (at, byte) in flips {
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
        }
        files[which] = String::from_utf8_lossy(&bytes).into_owned();
        let _ = load_three(&files);
    }

    #[test]
    fn arbitrary_env_never_panics(
        vars in prop::collection::vec(("TESSERA__[A-Za-z_]{0,12}(__[A-Za-z_]{0,12})?", "\\PC{0,30}"), 0..6)
    ) {
        let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let _ = load_env(TESSERA, WORLD, BALANCE, &env);
    }

    #[test]
    fn mutated_values_never_panic(
        which in 0usize..3,
        line in any::<prop::sample::Index>(),
        value in prop_oneof![
            Just("-1".to_owned()), Just("1e400".to_owned()), Just("nan".to_owned()),
            Just("\"\"".to_owned()), Just("{}".to_owned()), Just("[]".to_owned()),
            Just("9223372036854775808".to_owned()), Just("0x7fffffff".to_owned()),
            Just("\"min(\"".to_owned()), Just("{ x = 1 }".to_owned()),
            "\\PC{0,20}".prop_map(|s| format!("{s:?}")),
        ],
    ) {
        let mut files = shipped();
        let lines: Vec<&str> = files[which].lines().collect();
        let i = line.index(lines.len());
        let mutated: Vec<String> = lines
            .iter()
            .enumerate()
            .map(|(j, l)| match l.split_once(" = ") {
                Some((key, _)) if j == i => format!("{key} = {value}"),
                _ => (*l).to_owned(),
            })
            .collect();
        files[which] = mutated.join("\n");
        let _ = load_three(&files);
    }
}

#[test]
fn empty_files_report_missing_tables() {
    assert_eq!(
        errors(load(TESSERA, "", BALANCE)),
        [
            "world.toml:1:1: missing table [world]; required keys: name, size_m, tick_hz",
            "world.toml:1:1: missing table [grid]; required keys: cell_size_m",
            "world.toml:1:1: missing table [interest]; required keys: enter_radius_m, leave_radius_m, visible_entities_max, wake_radius_m",
            "world.toml:1:1: missing table [regions]; required keys: layout",
        ]
    );
    let e = errors(load(TESSERA, WORLD, "world = 1"));
    assert!(e.contains(&"balance.toml:1:1: [archetypes] must define at least one archetype, e.g. [archetypes.adventurer]".to_owned()), "{e:?}");
    assert!(e.contains(&r#"balance.toml:1:1: unknown key "world" in the top level; allowed: movement, player, archetypes, formulas, spawn_tables, progression, economy, items, loot, shops"#.to_owned()), "{e:?}");
}

#[test]
fn production_mode_refuses_generated_credentials() {
    let tessera = with_line(TESSERA, 3, r#"mode = "production""#);
    assert_eq!(
        errors(load(&tessera, WORLD, BALANCE)),
        [
            "tessera.toml:14:12: key_file is required in production mode (an empty path generates dev credentials, which production refuses)",
            "tessera.toml:15:22: ticket_secret_file is required in production mode (an empty path generates dev credentials, which production refuses)",
            "tessera.toml:17:13: cert_file is required in production mode (an empty path generates dev credentials, which production refuses)",
            "tessera.toml:18:12: key_file is required in production mode (an empty path generates dev credentials, which production refuses)",
            "tessera.toml:29:13: keys_file is required in production mode (an empty path generates dev credentials, which production refuses)",
        ]
    );
    // Dev mode: empty paths are the generated dev credentials.
    let c = load(TESSERA, WORLD, BALANCE).unwrap();
    assert_eq!(c.node.auth.key_file, None);
    assert_eq!(c.node.auth.algorithm, TokenAlgorithm::Hs256);
    assert_eq!(c.node.tls.cert_file, None);
}

#[test]
fn auth_values_are_checked() {
    let tessera = with_line(TESSERA, 13, r#"algorithm = "none""#);
    let tessera = with_line(&tessera, 11, r#"issuer = """#);
    assert_eq!(
        errors(load(&tessera, WORLD, BALANCE)),
        [
            "tessera.toml:11:10: issuer must be 1 to 256 bytes, got 0 bytes",
            r#"tessera.toml:13:13: algorithm must be "HS256", "RS256", "ES256" or "EdDSA", got "none""#,
        ]
    );
}

#[test]
fn cluster_region_lists_are_checked() {
    let with_regions = |list: &str| TESSERA.replace("regions = []", &format!("regions = {list}"));
    let c = load(&with_regions("[2, 1]"), WORLD, BALANCE).unwrap();
    assert_eq!(c.node.cluster.regions, [RegionId(2), RegionId(1)]);
    for (list, message) in [
        ("[1, 1]", "region 1 is listed twice in regions"),
        ("[0]", "regions must hold region ids between 1 and 8388607"),
        (
            "[\"a\"]",
            "regions must hold region ids between 1 and 8388607",
        ),
    ] {
        let errors = errors(load(&with_regions(list), WORLD, BALANCE));
        assert!(
            errors.iter().any(|e| e.ends_with(message)),
            "{list}: {errors:?}"
        );
    }
}

#[test]
fn the_login_limit_is_optional_with_defaults_and_can_be_set() {
    let config = load_env(TESSERA, WORLD, BALANCE, &[]).unwrap();
    assert_eq!(config.node.login_limit, LoginLimitConfig::DEFAULT);
    let config = load_env(
        TESSERA,
        WORLD,
        BALANCE,
        &[
            ("TESSERA__NET__LOGINS_PER_ADDRESS_PER_S", "2"),
            ("TESSERA__NET__LOGIN_BURST_PER_ADDRESS", "7"),
            ("TESSERA__NET__LOGIN_LIMIT_LOOPBACK", "true"),
        ],
    )
    .unwrap();
    assert_eq!(
        config.node.login_limit,
        LoginLimitConfig {
            per_s: 2,
            burst: 7,
            loopback: true
        }
    );
    let e = load_env(
        TESSERA,
        WORLD,
        BALANCE,
        &[
            ("TESSERA__NET__LOGIN_BURST_PER_ADDRESS", "0"),
            ("TESSERA__NET__LOGIN_LIMIT_LOOPBACK", "1"),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("login_burst_per_address must be between 1 and 100000, got 0"),
        "{e}"
    );
    assert!(e.contains("login_limit_loopback"), "{e}");
}

#[test]
fn the_state_budget_is_optional_with_defaults_and_can_be_set() {
    let config = load_env(TESSERA, WORLD, BALANCE, &[]).unwrap();
    assert_eq!(config.node.state_budget, StateBudgetConfig::DEFAULT);
    assert_eq!(
        config.node.state_budget.bytes_per_tick(20),
        800,
        "128 kbit/s at 20 Hz"
    );
    let config = load_env(
        TESSERA,
        WORLD,
        BALANCE,
        &[
            ("TESSERA__NET__STATE_KBIT_PER_S", "256"),
            ("TESSERA__NET__STATE_STALENESS_TICKS_MAX", "60"),
        ],
    )
    .unwrap();
    assert_eq!(
        config.node.state_budget,
        StateBudgetConfig {
            kbit_per_s: 256,
            staleness_ticks_max: 60,
        }
    );
    assert_eq!(config.node.state_budget.bytes_per_tick(10), 3_200);
    let e = load_env(
        TESSERA,
        WORLD,
        BALANCE,
        &[
            ("TESSERA__NET__STATE_KBIT_PER_S", "4"),
            ("TESSERA__NET__STATE_STALENESS_TICKS_MAX", "0"),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("state_kbit_per_s must be between 8 and 100000, got 4"),
        "{e}"
    );
    assert!(
        e.contains("state_staleness_ticks_max must be between 1 and 1000, got 0"),
        "{e}"
    );
}

mod economy;
