//! What each configuration file may hold: one [`Section`] per table, one [`Spec`] per key
//! (its name, type, range or allowed values, whether it is required, and its doc).
//!
//! This is the single source of truth for the shape of the files. The loader reads
//! through it: `table.int("tick_hz")` finds the spec of `tick_hz` in its table's section
//! and takes the range, the default and the "expected ..." text of its errors from there,
//! so a range is written once. `json_schema.rs` walks the same sections to generate
//! the JSON Schemas in `config/schema/`, so the schema cannot disagree with the loader
//! about a key, a type, a range or a doc. What a schema cannot say (a name's characters, a
//! cross-reference to another file, `leave_radius_m >= enter_radius_m`) stays in the
//! loader's code and is only described in the key's doc; where such a check has a bound
//! (`REGIONS_MAX`, `SPAWN_ENTRIES_MAX`, `RegionId::MAX`), the spec and the code name the
//! same constant.
//!
//! The sections are constants next to the code that reads them: `node::FILE`,
//! `world::FILE` and `balance::FILE` are the three files' top levels. Asking a table for a
//! key its section does not declare is a loader bug: a debug assertion, and an error
//! rather than a panic in release builds.

use std::fmt::Write as _;

/// One table of a file: its keys, and for `[regions]` which keys go with which layout.
#[derive(Debug)]
pub(super) struct Section {
    /// What the table is for (a sentence or two, for editors).
    pub(super) doc: &'static str,
    /// Every key the table may hold, in the order the shipped files write them.
    pub(super) keys: &'static [Spec],
    /// Keys that depend on the value of another key; `None` for most tables.
    pub(super) variants: Option<Variants>,
}

/// The keys of a table that depend on one key's value: `layout = "grid"` takes `columns`,
/// `rows` and `spawn_table`, `layout = "list"` takes `region`.
#[derive(Debug)]
pub(super) struct Variants {
    /// The choosing key (a [`Kind::Choice`] of the section).
    pub(super) key: &'static str,
    /// For each value of `key`: its doc and the keys it requires. Keys of the section that
    /// belong to other values are not allowed.
    pub(super) cases: &'static [Case],
}

/// One value of a [`Variants`] key.
#[derive(Debug)]
pub(super) struct Case {
    pub(super) value: &'static str,
    pub(super) doc: &'static str,
    pub(super) keys: &'static [&'static str],
}

/// One key: name, type and doc.
#[derive(Clone, Copy, Debug)]
pub(super) struct Spec {
    pub(super) key: &'static str,
    pub(super) kind: Kind,
    pub(super) doc: &'static str,
}

/// A key's type, with its range or allowed values.
#[derive(Clone, Copy, Debug)]
pub(super) enum Kind {
    /// An integer in `[min, max]`; optional with `default`, else required.
    Int {
        min: u32,
        max: u32,
        default: Option<u32>,
    },
    /// A number in `[min, max]` (TOML integers are accepted). Required.
    Num { min: f64, max: f64 },
    /// `true` or `false`; optional with `default`, else required.
    Bool { default: Option<bool> },
    /// A string the loader's code checks further (a name, a path, an address, a formula);
    /// `expected` is what errors say it must be. Required unless `optional`.
    Text {
        expected: &'static str,
        optional: bool,
    },
    /// One of `values`. Required.
    Choice { values: &'static [&'static str] },
    /// `{ x = ..., y = ... }`, each component in `[min, max]`.
    Vec2 { min: f64, max: f64, required: bool },
    /// An array of distinct integers in `[min, max]`. Required.
    Ids {
        min: u32,
        max: u32,
        expected: &'static str,
    },
    /// A sub-table; required when it has a required key.
    Table(&'static Section),
    /// A table of named tables (`[archetypes.NAME]`), `len_min` to `len_max` of them;
    /// required when `len_min > 0`.
    Map {
        of: &'static Section,
        len_min: usize,
        len_max: usize,
    },
    /// An array of tables, `len_min` to `len_max` long. Required.
    Tables {
        of: &'static Section,
        len_min: usize,
        len_max: usize,
        expected: &'static str,
    },
}

impl Spec {
    /// A required integer.
    pub(super) const fn int(key: &'static str, min: u32, max: u32, doc: &'static str) -> Spec {
        let default = None;
        Spec::new(key, Kind::Int { min, max, default }, doc)
    }

    /// An optional integer, `default` when absent.
    pub(super) const fn int_or(
        key: &'static str,
        min: u32,
        max: u32,
        default: u32,
        doc: &'static str,
    ) -> Spec {
        let default = Some(default);
        Spec::new(key, Kind::Int { min, max, default }, doc)
    }

    /// A required number.
    pub(super) const fn num(key: &'static str, min: f64, max: f64, doc: &'static str) -> Spec {
        Spec::new(key, Kind::Num { min, max }, doc)
    }

    /// A required boolean.
    pub(super) const fn flag(key: &'static str, doc: &'static str) -> Spec {
        Spec::new(key, Kind::Bool { default: None }, doc)
    }

    /// An optional boolean, `default` when absent.
    pub(super) const fn flag_or(key: &'static str, default: bool, doc: &'static str) -> Spec {
        let default = Some(default);
        Spec::new(key, Kind::Bool { default }, doc)
    }

    /// A required string, checked further by the loader.
    pub(super) const fn text(key: &'static str, expected: &'static str, doc: &'static str) -> Spec {
        let optional = false;
        Spec::new(key, Kind::Text { expected, optional }, doc)
    }

    /// An optional string, checked further by the loader.
    pub(super) const fn text_opt(
        key: &'static str,
        expected: &'static str,
        doc: &'static str,
    ) -> Spec {
        let optional = true;
        Spec::new(key, Kind::Text { expected, optional }, doc)
    }

    /// A required string out of `values`.
    pub(super) const fn choice(
        key: &'static str,
        values: &'static [&'static str],
        doc: &'static str,
    ) -> Spec {
        Spec::new(key, Kind::Choice { values }, doc)
    }

    /// A required `{ x, y }`.
    pub(super) const fn vec2(key: &'static str, min: f64, max: f64, doc: &'static str) -> Spec {
        let required = true;
        Spec::new(key, Kind::Vec2 { min, max, required }, doc)
    }

    /// An optional `{ x, y }`.
    pub(super) const fn vec2_opt(key: &'static str, min: f64, max: f64, doc: &'static str) -> Spec {
        let required = false;
        Spec::new(key, Kind::Vec2 { min, max, required }, doc)
    }

    /// A sub-table.
    pub(super) const fn table(key: &'static str, of: &'static Section) -> Spec {
        Spec::new(key, Kind::Table(of), of.doc)
    }

    /// A table of `len_min` to `len_max` named tables of `of`.
    pub(super) const fn map(
        key: &'static str,
        of: &'static Section,
        len_min: usize,
        len_max: usize,
        doc: &'static str,
    ) -> Spec {
        Spec::new(
            key,
            Kind::Map {
                of,
                len_min,
                len_max,
            },
            doc,
        )
    }

    /// A required array of `len_min` to `len_max` tables of `of`.
    pub(super) const fn tables(
        key: &'static str,
        of: &'static Section,
        (len_min, len_max): (usize, usize),
        expected: &'static str,
        doc: &'static str,
    ) -> Spec {
        let kind = Kind::Tables {
            of,
            len_min,
            len_max,
            expected,
        };
        Spec::new(key, kind, doc)
    }

    /// A required array of distinct integers in `[min, max]`.
    pub(super) const fn ids(
        key: &'static str,
        min: u32,
        max: u32,
        expected: &'static str,
        doc: &'static str,
    ) -> Spec {
        Spec::new(key, Kind::Ids { min, max, expected }, doc)
    }

    const fn new(key: &'static str, kind: Kind, doc: &'static str) -> Spec {
        Spec { key, kind, doc }
    }

    /// Whether the key must be present (for tables: whether they have a required key).
    pub(super) fn is_required(&self) -> bool {
        match self.kind {
            Kind::Int { default, .. } => default.is_none(),
            Kind::Bool { default } => default.is_none(),
            Kind::Vec2 { required, .. } => required,
            Kind::Table(section) => section.has_required(),
            Kind::Text { optional, .. } => !optional,
            Kind::Map { len_min, .. } => len_min > 0,
            Kind::Num { .. } | Kind::Choice { .. } | Kind::Ids { .. } | Kind::Tables { .. } => true,
        }
    }

    /// What a value of this key must be, for "missing key ...; expected ..." and "... must
    /// be ..., got ..." messages: `an integer between 1 and 120`.
    pub(super) fn expected(&self) -> String {
        match self.kind {
            Kind::Int { min, max, .. } => format!("an integer between {min} and {max}"),
            Kind::Num { min, max } => format!("a number {}", between(min, max)),
            Kind::Bool { .. } => "true or false".to_owned(),
            Kind::Text { expected, .. }
            | Kind::Ids { expected, .. }
            | Kind::Tables { expected, .. } => expected.to_owned(),
            Kind::Choice { values } => one_of(values),
            Kind::Vec2 { min, max, .. } => {
                format!("{{ x = ..., y = ... }}, each {}", between(min, max))
            }
            Kind::Table(_) | Kind::Map { .. } => "a table".to_owned(),
        }
    }
}

impl Section {
    /// A table of `keys`.
    pub(super) const fn of(doc: &'static str, keys: &'static [Spec]) -> Section {
        Section {
            doc,
            keys,
            variants: None,
        }
    }

    /// The spec of `key`, if the section declares it.
    pub(super) fn get(&'static self, key: &str) -> Option<&'static Spec> {
        self.keys.iter().find(|s| s.key == key)
    }

    /// Whether any key must be present.
    pub(super) fn has_required(&self) -> bool {
        self.keys.iter().any(Spec::is_required)
    }
}

/// `between 1 and 1024` (numbers as the file would write them).
pub(super) fn between(min: f64, max: f64) -> String {
    format!("between {min} and {max}")
}

/// `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
pub(super) fn one_of(values: &[&str]) -> String {
    let mut text = String::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            text.push_str(if i + 1 == values.len() { " or " } else { ", " });
        }
        let _ = write!(text, "{v:?}");
    }
    text
}
