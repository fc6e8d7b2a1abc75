//! JSON Schemas of the three configuration files, for editors: Taplo and the Even Better
//! TOML extension complete keys, show each key's doc and range, and flag wrong types and
//! out-of-range values as you type.
//!
//! The schemas are generated from the loader's own key specs (`spec.rs`: the sections
//! `node::FILE`, `world::FILE` and `balance::FILE` that the loader reads through), so they
//! say what the loader accepts: keys, types, ranges, defaults, allowed values, docs. Checks
//! a schema cannot express (names, cross-references, `leave_radius_m >= enter_radius_m`)
//! are only described; the loader remains the authority (`tessera config check`).
//!
//! They are checked in as `config/schema/*.schema.json`, and each shipped file names its
//! schema in a first-line Taplo directive (`#:schema ./schema/world.schema.json`). A test
//! regenerates them and fails when the checked-in copy differs; after changing a spec,
//! rewrite them with `TESSERA_BLESS=1 cargo test -p tessera-shared json_schema`.
//!
//! Only JSON Schema draft 4 keywords are emitted (Taplo supports draft 4): `type`,
//! `properties`, `required`, `additionalProperties`, `minimum`, `maximum`, `enum`, `items`,
//! `minItems`, `maxItems`, `uniqueItems`, `minProperties`, `maxProperties`, `oneOf`,
//! `anyOf`, `not`, and the annotations `title`, `description`, `default`.

use std::fmt::Write as _;

use super::spec::{Kind, Section, Spec, Variants};
use super::{balance, node, world};

/// Each configuration file and the file name of its schema in `config/schema/`.
pub const JSON_SCHEMA_FILES: [(&str, &str); 3] = [
    ("tessera.toml", "tessera.schema.json"),
    ("world.toml", "world.schema.json"),
    ("balance.toml", "balance.schema.json"),
];

/// The JSON Schema of the configuration file `file_name` (`tessera.toml`, `world.toml` or
/// `balance.toml`), pretty-printed with a final newline; `None` for any other name.
pub fn json_schema(file_name: &str) -> Option<String> {
    let section = match file_name {
        "tessera.toml" => &node::FILE,
        "world.toml" => &world::FILE,
        "balance.toml" => &balance::FILE,
        _ => return None,
    };
    let mut schema = vec![
        (
            "$schema",
            Json::str("http://json-schema.org/draft-04/schema#"),
        ),
        ("title", Json::str(file_name)),
    ];
    schema.extend(section_fields(section, section.doc));
    let mut text = String::new();
    Json::Obj(schema).write(&mut text, 0);
    text.push('\n');
    Some(text)
}

fn section_schema(section: &'static Section, doc: &str) -> Json {
    Json::Obj(section_fields(section, doc))
}

/// A table: its keys, which are required, nothing else allowed; for a table with
/// [`Variants`], one of the cases.
fn section_fields(section: &'static Section, doc: &str) -> Vec<(&'static str, Json)> {
    let variant_keys: Vec<&str> = section
        .variants
        .iter()
        .flat_map(|v| v.cases.iter().flat_map(|c| c.keys.iter().copied()))
        .collect();
    let properties = section
        .keys
        .iter()
        .map(|spec| (spec.key, spec_schema(spec)))
        .collect();
    let required: Vec<&str> = section
        .keys
        .iter()
        .filter(|s| s.is_required() && !variant_keys.contains(&s.key))
        .map(|s| s.key)
        .collect();
    let mut schema = vec![
        ("description", Json::str(doc)),
        ("type", Json::str("object")),
        ("properties", Json::Obj(properties)),
    ];
    if !required.is_empty() {
        schema.push(("required", Json::strs(&required)));
    }
    schema.push(("additionalProperties", Json::Bool(false)));
    if let Some(variants) = &section.variants {
        schema.push(("oneOf", variants_schema(variants, &variant_keys)));
    }
    schema
}

/// One schema per case: the choosing key has the case's value, the case's keys are
/// required and the other cases' keys absent.
fn variants_schema(variants: &Variants, variant_keys: &[&str]) -> Json {
    let cases = variants.cases.iter().map(|case| {
        let mut required = vec![variants.key];
        required.extend(case.keys);
        let others: Vec<Json> = variant_keys
            .iter()
            .filter(|k| !case.keys.contains(k))
            .map(|k| Json::Obj(vec![("required", Json::strs(&[k]))]))
            .collect();
        let value = Json::Obj(vec![("enum", Json::strs(&[case.value]))]);
        let mut schema = vec![
            (
                "description",
                Json::Str(format!("{} = {:?}: {}", variants.key, case.value, case.doc)),
            ),
            ("properties", Json::Obj(vec![(variants.key, value)])),
            ("required", Json::strs(&required)),
        ];
        if !others.is_empty() {
            schema.push(("not", Json::Obj(vec![("anyOf", Json::Arr(others))])));
        }
        Json::Obj(schema)
    });
    Json::Arr(cases.collect())
}

fn spec_schema(spec: &'static Spec) -> Json {
    let range = |min: f64, max: f64| format!(" {} to {}.", Json::number(min), Json::number(max));
    let mut doc = spec.doc.to_owned();
    let mut schema: Vec<(&'static str, Json)> = Vec::new();
    match spec.kind {
        Kind::Int { min, max, default } => {
            doc.push_str(&range(f64::from(min), f64::from(max)));
            schema.push(("type", Json::str("integer")));
            schema.push(("minimum", Json::Int(i64::from(min))));
            schema.push(("maximum", Json::Int(i64::from(max))));
            if let Some(default) = default {
                let _ = write!(doc, " Default: {default}.");
                schema.push(("default", Json::Int(i64::from(default))));
            }
        }
        Kind::Num { min, max } => {
            doc.push_str(&range(min, max));
            schema.push(("type", Json::str("number")));
            schema.push(("minimum", Json::Num(min)));
            schema.push(("maximum", Json::Num(max)));
        }
        Kind::Bool { default } => {
            schema.push(("type", Json::str("boolean")));
            if let Some(default) = default {
                let _ = write!(doc, " Default: {default}.");
                schema.push(("default", Json::Bool(default)));
            }
        }
        Kind::Text { .. } => schema.push(("type", Json::str("string"))),
        Kind::Choice { values } => {
            schema.push(("type", Json::str("string")));
            schema.push(("enum", Json::strs(values)));
        }
        Kind::Vec2 { min, max, .. } => {
            let _ = write!(doc, " x and y each{}", range(min, max));
            let component = |axis: &str| {
                Json::Obj(vec![
                    (
                        "description",
                        Json::Str(format!("{axis}{}", range(min, max))),
                    ),
                    ("type", Json::str("number")),
                    ("minimum", Json::Num(min)),
                    ("maximum", Json::Num(max)),
                ])
            };
            schema.push(("type", Json::str("object")));
            let properties = vec![("x", component("x (m).")), ("y", component("y (m)."))];
            schema.push(("properties", Json::Obj(properties)));
            schema.push(("required", Json::strs(&["x", "y"])));
            schema.push(("additionalProperties", Json::Bool(false)));
        }
        Kind::Ids { min, max, .. } => {
            let _ = write!(
                doc,
                " Each distinct,{}",
                range(f64::from(min), f64::from(max))
            );
            let item = Json::Obj(vec![
                ("type", Json::str("integer")),
                ("minimum", Json::Int(i64::from(min))),
                ("maximum", Json::Int(i64::from(max))),
            ]);
            schema.push(("type", Json::str("array")));
            schema.push(("items", item));
            schema.push(("uniqueItems", Json::Bool(true)));
        }
        Kind::Table(section) => return section_schema(section, spec.doc),
        Kind::Map {
            of,
            len_min,
            len_max,
        } => {
            schema.push(("type", Json::str("object")));
            if len_min > 0 {
                schema.push(("minProperties", Json::count(len_min)));
            }
            schema.push(("maxProperties", Json::count(len_max)));
            schema.push(("additionalProperties", section_schema(of, of.doc)));
        }
        Kind::Tables {
            of,
            len_min,
            len_max,
            ..
        } => {
            schema.push(("type", Json::str("array")));
            schema.push(("items", section_schema(of, of.doc)));
            if len_min > 0 {
                schema.push(("minItems", Json::count(len_min)));
            }
            schema.push(("maxItems", Json::count(len_max)));
        }
    }
    schema.insert(0, ("description", Json::Str(doc)));
    Json::Obj(schema)
}

/// The JSON the schemas need, written in a stable order (objects keep insertion order).
enum Json {
    Bool(bool),
    Int(i64),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(&'static str, Json)>),
}

impl Json {
    fn str(s: &str) -> Json {
        Json::Str(s.to_owned())
    }

    fn strs(values: &[&str]) -> Json {
        Json::Arr(values.iter().map(|v| Json::str(v)).collect())
    }

    fn count(n: usize) -> Json {
        Json::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }

    /// A number as JSON (and TOML) write it: `1024`, `0.5`. Ranges are finite.
    fn number(v: f64) -> String {
        debug_assert!(v.is_finite(), "ranges are finite");
        if v.is_finite() {
            format!("{v}")
        } else {
            "0".to_owned()
        }
    }

    fn is_scalar(&self) -> bool {
        !matches!(self, Json::Arr(_) | Json::Obj(_))
    }

    /// Two-space indentation; arrays of scalars on one line.
    fn write(&self, out: &mut String, indent: usize) {
        let pad = |out: &mut String, n: usize| out.extend(std::iter::repeat_n("  ", n));
        match self {
            Json::Bool(b) => {
                let _ = write!(out, "{b}");
            }
            Json::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Json::Num(v) => out.push_str(&Json::number(*v)),
            Json::Str(s) => write_str(out, s),
            Json::Arr(items) if items.iter().all(Json::is_scalar) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write(out, indent);
                }
                out.push(']');
            }
            Json::Arr(items) => {
                out.push_str("[\n");
                for (i, item) in items.iter().enumerate() {
                    pad(out, indent + 1);
                    item.write(out, indent + 1);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                pad(out, indent);
                out.push(']');
            }
            Json::Obj(fields) if fields.is_empty() => out.push_str("{}"),
            Json::Obj(fields) => {
                out.push_str("{\n");
                for (i, (key, value)) in fields.iter().enumerate() {
                    pad(out, indent + 1);
                    write_str(out, key);
                    out.push_str(": ");
                    value.write(out, indent + 1);
                    out.push_str(if i + 1 < fields.len() { ",\n" } else { "\n" });
                }
                pad(out, indent);
                out.push('}');
            }
        }
    }
}

/// A JSON string literal.
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests;
