//! The checked-in schemas are the generated ones, the shipped files and the loader's
//! fixtures match them, and mistakes the loader rejects fail them too. Validation is a
//! small checker of exactly the draft 4 keywords the generator emits (the `jsonschema`
//! crate would pull an HTTP client and a regex engine into the build for this).

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use serde_json::Value;

use super::super::spec::Kind;
use super::super::tests::{BALANCE, TESSERA, WORLD, WORLD_LIST};
use super::super::{ConfigSources, DAMAGE_VARS, FILE_NAMES, balance, load_strs, node, world};
use super::{JSON_SCHEMA_FILES, json_schema};

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

fn schema_path(schema_file: &str) -> PathBuf {
    config_dir().join("schema").join(schema_file)
}

/// The checked-in schema of `file_name`, parsed.
fn checked_in(file_name: &str) -> Value {
    let (_, schema_file) = JSON_SCHEMA_FILES
        .iter()
        .find(|(f, _)| *f == file_name)
        .expect("a configuration file");
    let text = std::fs::read_to_string(schema_path(schema_file)).expect("schema is checked in");
    serde_json::from_str(&text).expect("schema is JSON")
}

#[test]
fn checked_in_schemas_are_current() {
    let bless = std::env::var_os("TESSERA_BLESS").is_some_and(|v| v == "1");
    assert_eq!(JSON_SCHEMA_FILES.map(|(f, _)| f), FILE_NAMES);
    for (file_name, schema_file) in JSON_SCHEMA_FILES {
        let generated = json_schema(file_name).expect("a configuration file");
        let path = schema_path(schema_file);
        if bless {
            std::fs::create_dir_all(path.parent().expect("in config/schema")).unwrap();
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            current == generated,
            "{} is not what the loader's specs generate; regenerate it with \
             `TESSERA_BLESS=1 cargo test -p tessera-shared json_schema`",
            path.display()
        );
        serde_json::from_str::<Value>(&generated).expect("generated schema is JSON");
    }
    assert_eq!(json_schema("other.toml"), None);
}

#[test]
fn shipped_files_name_their_schema() {
    for (file_name, schema_file) in JSON_SCHEMA_FILES {
        let text = std::fs::read_to_string(config_dir().join(file_name)).unwrap();
        let first = text.lines().next().unwrap_or_default();
        assert_eq!(
            first,
            format!("#:schema ./schema/{schema_file}"),
            "{file_name} names its schema for editors on its first line"
        );
    }
}

#[test]
fn shipped_files_and_fixtures_match_their_schemas() {
    let shipped = ConfigSources::embedded();
    for (file_name, text) in [
        ("tessera.toml", shipped.tessera.text),
        ("world.toml", shipped.world.text),
        ("balance.toml", shipped.balance.text),
        ("tessera.toml", TESSERA),
        ("world.toml", WORLD),
        ("world.toml", WORLD_LIST),
        ("balance.toml", BALANCE),
    ] {
        let errors = schema_errors(file_name, text);
        assert!(errors.is_empty(), "{file_name}: {errors:#?}\n{text}");
    }
}

#[test]
fn schemas_reject_what_the_loader_rejects() {
    let cases = [
        (
            "world.toml",
            WORLD.replace("tick_hz = 20", "tick_hz = 0"),
            "world.tick_hz: below minimum 1",
        ),
        (
            "world.toml",
            WORLD.replace("tick_hz = 20", "tick_hz = 20.0"),
            "world.tick_hz: not of type integer",
        ),
        (
            "world.toml",
            WORLD.replace("tick_hz = 20", "tick_hzz = 20"),
            "world: unknown key tick_hzz",
        ),
        (
            "world.toml",
            WORLD.replace("[grid]\ncell_size_m = 16\n", ""),
            "the top level: missing grid",
        ),
        (
            "world.toml",
            WORLD.replace("x = 1024,", "x = 1024, z = 1,"),
            "world.size_m: unknown key z",
        ),
        // A grid layout takes no region list, a list layout needs one.
        (
            "world.toml",
            format!("{WORLD}[[regions.region]]\nid = 1\n"),
            "regions: no oneOf case",
        ),
        (
            "world.toml",
            WORLD_LIST.replace("layout = \"list\"", "layout = \"grid\""),
            "regions: no oneOf case",
        ),
        (
            "world.toml",
            WORLD.replace("layout = \"grid\"", "layout = \"hex\""),
            "regions.layout: not one of",
        ),
        (
            "tessera.toml",
            TESSERA.replace("mode = \"dev\"", "mode = \"prod\""),
            "node.mode: not one of",
        ),
        (
            "tessera.toml",
            TESSERA.replace("regions = []", "regions = [1, 1]"),
            "cluster.regions: not unique",
        ),
        (
            "tessera.toml",
            TESSERA.replace("threads = 2", "threads = 257"),
            "sim.threads: above maximum 256",
        ),
        (
            "balance.toml",
            BALANCE.replace("hostile = true", "hostile = 1"),
            "archetypes.wolf.hostile: not of type boolean",
        ),
        (
            "balance.toml",
            BALANCE.replace("count = 10", "count = 10, extra = 1"),
            "spawn_tables.wilds.entries.0: unknown key extra",
        ),
        (
            "balance.toml",
            BALANCE.replace("[archetypes.hero]", "[archetypes.hero]\nlevell = 1"),
            "archetypes.hero: unknown key levell",
        ),
    ];
    for (file_name, text, expected) in cases {
        let sources = match file_name {
            "tessera.toml" => ConfigSources::new(&text, WORLD, BALANCE),
            "world.toml" => ConfigSources::new(TESSERA, &text, BALANCE),
            _ => ConfigSources::new(TESSERA, WORLD, &text),
        };
        assert!(load_strs(&sources, std::iter::empty()).is_err(), "{text}");
        let errors = schema_errors(file_name, &text);
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{file_name}: expected {expected:?} in {errors:#?}"
        );
    }
}

#[test]
fn specs_are_consistent() {
    for file in [&node::FILE, &world::FILE, &balance::FILE] {
        let mut sections = vec![file];
        while let Some(section) = sections.pop() {
            for (i, spec) in section.keys.iter().enumerate() {
                assert!(
                    section.keys[..i].iter().all(|s| s.key != spec.key),
                    "{} declared twice",
                    spec.key
                );
                assert!(!spec.doc.is_empty(), "{} has a doc", spec.key);
                match spec.kind {
                    Kind::Table(of) | Kind::Map { of, .. } | Kind::Tables { of, .. } => {
                        sections.push(of);
                    }
                    _ => {}
                }
            }
            let Some(variants) = &section.variants else {
                continue;
            };
            let Some(Kind::Choice { values }) = section.get(variants.key).map(|s| s.kind) else {
                panic!("{} chooses the variants but is no choice", variants.key);
            };
            let cases: Vec<&str> = variants.cases.iter().map(|c| c.value).collect();
            assert_eq!(values, cases);
            for case in variants.cases {
                assert!(case.keys.iter().all(|k| section.get(k).is_some()));
            }
        }
    }
    // The damage formula's doc names its variables.
    let Some(Kind::Table(formulas)) = balance::FILE.get("formulas").map(|s| s.kind) else {
        panic!("balance.toml has [formulas]");
    };
    let damage = formulas.get("damage").map(|s| s.doc).unwrap_or_default();
    for var in DAMAGE_VARS {
        assert!(damage.contains(var), "damage's doc names {var}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// The schema is never stricter than the loader: whatever loads matches it.
    #[test]
    fn whatever_loads_matches_the_schema(
        which in 0usize..3,
        line in any::<prop::sample::Index>(),
        value in prop_oneof![
            (0u32..2_000_000).prop_map(|v| v.to_string()),
            (0.0f64..2_000.0).prop_map(|v| format!("{v:?}")),
            Just("true".to_owned()), Just("false".to_owned()), Just("[]".to_owned()),
            Just("[2, 1]".to_owned()), Just("\"\"".to_owned()),
            Just("{ x = 12, y = 7.5 }".to_owned()),
            prop::sample::select(&["dev", "production", "HS256", "EdDSA", "grid", "list", "wilds", "n-2"][..])
                .prop_map(|s| format!("{s:?}")),
        ],
    ) {
        let shipped = ConfigSources::embedded();
        let mut files = [shipped.tessera.text, shipped.world.text, shipped.balance.text]
            .map(str::to_owned);
        let lines: Vec<&str> = files[which].lines().collect();
        let i = line.index(lines.len());
        let mutated: Vec<String> = lines
            .iter()
            .enumerate()
            .map(|(j, l)| match l.split_once(" = ") {
                Some((key, _)) if j == i && !l.starts_with('#') => format!("{key} = {value}"),
                _ => (*l).to_owned(),
            })
            .collect();
        files[which] = mutated.join("\n");
        let sources = ConfigSources::new(&files[0], &files[1], &files[2]);
        if load_strs(&sources, std::iter::empty()).is_ok() {
            let errors = schema_errors(FILE_NAMES[which], &files[which]);
            prop_assert!(errors.is_empty(), "{:#?}\n{}", errors, files[which]);
        }
    }
}

/// What the checked-in schema of `file_name` finds wrong with `text`.
fn schema_errors(file_name: &str, text: &str) -> Vec<String> {
    let table: toml::Table = toml::from_str(text).expect("valid TOML");
    let mut errors = Vec::new();
    check(
        &checked_in(file_name),
        &to_json(&toml::Value::Table(table)),
        "the top level",
        &mut errors,
    );
    errors
}

fn to_json(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

/// Checks `value` at `at` against `schema`, pushing one message per failed keyword. A
/// keyword the checker does not know fails the test rather than being skipped.
fn check(schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let Value::Object(schema) = schema else {
        panic!("the schema at {at} is not an object");
    };
    let mut fail = |what: String| errors.push(format!("{at}: {what}"));
    let mut nested = Vec::new();
    for (keyword, arg) in schema {
        match (keyword.as_str(), value) {
            ("$schema" | "title" | "description" | "default", _) => {}
            ("type", _) => {
                let ok = match arg.as_str().expect("type is a string") {
                    "object" => value.is_object(),
                    "array" => value.is_array(),
                    "string" => value.is_string(),
                    "boolean" => value.is_boolean(),
                    "integer" => value.is_i64() || value.is_u64(),
                    "number" => value.is_number(),
                    other => panic!("unknown type {other}"),
                };
                if !ok {
                    fail(format!("not of type {}", arg.as_str().unwrap_or_default()));
                }
            }
            ("properties", Value::Object(fields)) => {
                for (key, sub) in arg.as_object().expect("properties is an object") {
                    if let Some(field) = fields.get(key) {
                        nested.push((sub, field, child(at, key)));
                    }
                }
            }
            ("required", Value::Object(fields)) => {
                for key in arg.as_array().expect("required is an array") {
                    let key = key.as_str().expect("required names keys");
                    if !fields.contains_key(key) {
                        fail(format!("missing {key}"));
                    }
                }
            }
            ("additionalProperties", Value::Object(fields)) => {
                let declared = schema.get("properties").and_then(Value::as_object);
                for (key, field) in fields {
                    if declared.is_some_and(|d| d.contains_key(key)) {
                        continue;
                    }
                    match arg {
                        Value::Bool(true) => {}
                        Value::Bool(false) => fail(format!("unknown key {key}")),
                        sub => nested.push((sub, field, child(at, key))),
                    }
                }
            }
            ("minimum" | "maximum", Value::Number(n)) => {
                let (n, bound) = (n.as_f64().unwrap(), arg.as_f64().expect("a number"));
                if keyword == "minimum" && n < bound {
                    fail(format!("below minimum {arg}"));
                }
                if keyword == "maximum" && n > bound {
                    fail(format!("above maximum {arg}"));
                }
            }
            ("enum", _) => {
                if !arg.as_array().expect("enum is an array").contains(value) {
                    fail(format!("not one of {arg}"));
                }
            }
            ("items", Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    nested.push((arg, item, child(at, &i.to_string())));
                }
            }
            ("minItems" | "maxItems", Value::Array(items)) => {
                let bound = arg.as_u64().expect("a count");
                let n = items.len() as u64;
                if (keyword == "minItems" && n < bound) || (keyword == "maxItems" && n > bound) {
                    fail(format!("{n} items, {keyword} {bound}"));
                }
            }
            ("uniqueItems", Value::Array(items)) => {
                let unique = items
                    .iter()
                    .enumerate()
                    .all(|(i, a)| !items[..i].contains(a));
                if arg == &Value::Bool(true) && !unique {
                    fail("not unique".to_owned());
                }
            }
            ("minProperties" | "maxProperties", Value::Object(fields)) => {
                let bound = arg.as_u64().expect("a count");
                let n = fields.len() as u64;
                if (keyword == "minProperties" && n < bound)
                    || (keyword == "maxProperties" && n > bound)
                {
                    fail(format!("{n} keys, {keyword} {bound}"));
                }
            }
            ("oneOf" | "anyOf", _) => {
                let n_matching = arg
                    .as_array()
                    .expect("an array of schemas")
                    .iter()
                    .filter(|sub| {
                        let mut sub_errors = Vec::new();
                        check(sub, value, at, &mut sub_errors);
                        sub_errors.is_empty()
                    })
                    .count();
                if keyword == "oneOf" && n_matching != 1 {
                    fail(format!("no oneOf case matches ({n_matching} do)"));
                }
                if keyword == "anyOf" && n_matching == 0 {
                    fail("no anyOf case matches".to_owned());
                }
            }
            ("not", _) => {
                let mut sub_errors = Vec::new();
                check(arg, value, at, &mut sub_errors);
                if sub_errors.is_empty() {
                    fail(format!("matches what is not allowed: {arg}"));
                }
            }
            (
                "properties"
                | "required"
                | "additionalProperties"
                | "minimum"
                | "maximum"
                | "items"
                | "minItems"
                | "maxItems"
                | "uniqueItems"
                | "minProperties"
                | "maxProperties",
                _,
            ) => {} // applies to other types only
            (other, _) => panic!("the checker does not know the keyword {other} (at {at})"),
        }
    }
    for (sub, field, at) in nested {
        check(sub, field, &at, errors);
    }
}

/// `world`, `world.size_m`, `spawn_tables.wilds.entries.0`.
fn child(at: &str, key: &str) -> String {
    if at == "the top level" {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}
