//! A forgiving, position-aware reader over a parsed TOML document.
//!
//! serde derive stops at the first error; this reader records an error and goes on, so one
//! load reports every mistake of every file. A [`Table`] reads its keys by name, with the
//! type, range and default its section's [`Spec`] declares (`spec.rs`, which the JSON
//! Schemas are generated from too). Each table remembers which keys the loader asked for:
//! whatever is left over when it is finished is reported as an unknown key, with the
//! asked-for keys as the allowed list and the closest of them as a "did you mean". A
//! required key that is missing because an unknown key misspells it is reported once, at
//! the misspelling.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::error::ConfigError;
use super::spec::{Kind, Section, Spec, between, one_of};
use super::suggest;
use crate::math::Vec2;

mod values;

/// Errors beyond this many are counted, not kept (a garbage file can make one per byte).
pub(super) const ERRORS_KEPT_MAX: usize = 10_000;

/// The sink every file reports into. `rank` orders the files in the final report.
#[derive(Default)]
pub(super) struct Diag {
    errors: RefCell<Vec<(u8, ConfigError)>>,
    n_dropped: Cell<usize>,
}

impl Diag {
    pub(super) fn push(&self, rank: u8, error: ConfigError) {
        let mut errors = self.errors.borrow_mut();
        if errors.len() < ERRORS_KEPT_MAX {
            errors.push((rank, error));
        } else {
            self.n_dropped.set(self.n_dropped.get().saturating_add(1));
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.errors.borrow().is_empty()
    }

    /// The errors sorted by file rank, line, column and file name (environment variables
    /// share a rank), ties in report order; and how many were dropped.
    pub(super) fn into_sorted(self) -> (Vec<ConfigError>, usize) {
        let mut errors = self.errors.into_inner();
        errors.sort_by(|(ra, a), (rb, b)| {
            (ra, a.line, a.col, &a.file).cmp(&(rb, b.line, b.col, &b.file))
        });
        (
            errors.into_iter().map(|(_, e)| e).collect(),
            self.n_dropped.get(),
        )
    }
}

/// Where a value came from: a byte offset into the file, or an environment variable.
#[derive(Clone, Copy, Debug)]
pub(super) enum At<'a> {
    Offset(usize),
    Env(&'a str),
}

/// One input file: its display name, text and line index, and where its errors go.
pub(super) struct SourceFile<'a> {
    pub(super) name: &'a str,
    pub(super) text: &'a str,
    line_starts: Vec<usize>,
    rank: u8,
    /// Rank of errors located at environment variables applied to this file.
    env_rank: u8,
    diag: &'a Diag,
}

impl<'a> SourceFile<'a> {
    pub(super) fn new(
        name: &'a str,
        text: &'a str,
        rank: u8,
        env_rank: u8,
        diag: &'a Diag,
    ) -> SourceFile<'a> {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        SourceFile {
            name,
            text,
            line_starts,
            rank,
            env_rank,
            diag,
        }
    }

    /// 1-based line and column (in characters) of a byte offset; offsets past the end
    /// land on the end.
    pub(super) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let line_start = self.line_starts.get(line - 1).copied().unwrap_or(0);
        let col = self
            .text
            .get(line_start..offset)
            .map_or(offset.saturating_sub(line_start), |s| s.chars().count());
        (line, col + 1)
    }

    pub(super) fn error(&self, at: At<'_>, message: impl Into<String>) {
        let error = match at {
            At::Offset(offset) => {
                let (line, col) = self.position(offset);
                (
                    self.rank,
                    ConfigError::new(self.name, line, col, message.into()),
                )
            }
            At::Env(var) => (
                self.env_rank,
                ConfigError::new(format!("env {var}"), 0, 0, message.into()),
            ),
        };
        self.diag.push(error.0, error.1);
    }

    /// Parses the file, reporting every syntax error. `None` if there was any: a partial
    /// document would only add confusing follow-up errors.
    pub(super) fn parse(&self) -> Option<Spanned<DeTable<'a>>> {
        let (doc, errors) = DeTable::parse_recoverable(self.text);
        if errors.is_empty() {
            return Some(doc);
        }
        for e in errors {
            let offset = e.span().map_or(0, |s| s.start);
            self.error(At::Offset(offset), format!("invalid TOML: {}", e.message()));
        }
        None
    }
}

/// An environment override of one key of `tessera.toml`.
pub(super) struct EnvOverride<'a> {
    /// The variable's full name, e.g. `TESSERA__NET__QUIC_LISTEN`.
    pub(super) var: &'a str,
    pub(super) section: String,
    pub(super) key: String,
    /// The variable's text, used as is for string keys.
    pub(super) raw: &'a str,
    /// The text parsed as a TOML value, or the text as a string if it does not parse.
    pub(super) value: DeValue<'a>,
}

impl<'a> EnvOverride<'a> {
    pub(super) fn new(var: &'a str, section: String, key: String, raw: &'a str) -> Self {
        let value = DeValue::parse(raw)
            .map(Spanned::into_inner)
            .unwrap_or_else(|_| DeValue::String(raw.into()));
        EnvOverride {
            var,
            section,
            key,
            raw,
            value,
        }
    }
}

/// A value and where it came from.
#[derive(Clone, Copy)]
pub(super) struct Item<'a> {
    pub(super) value: &'a DeValue<'a>,
    pub(super) at: At<'a>,
    /// The byte range in the file, for file values.
    pub(super) span: Option<(usize, usize)>,
    /// The variable's text, for environment values.
    env_raw: Option<&'a str>,
}

impl<'a> Item<'a> {
    pub(super) fn from_spanned(v: &'a Spanned<DeValue<'a>>) -> Item<'a> {
        let Range { start, end } = v.span();
        Item {
            value: v.get_ref(),
            at: At::Offset(start),
            span: Some((start, end)),
            env_raw: None,
        }
    }

    /// How the value was written, for "got ..." in messages.
    fn written(&self, file: &SourceFile<'_>) -> String {
        if let Some(raw) = self.env_raw {
            return shorten(raw);
        }
        match self.value {
            DeValue::String(s) => format!("the string {:?}", shorten(s)),
            DeValue::Table(_) => "a table".to_owned(),
            DeValue::Array(_) => "an array".to_owned(),
            DeValue::Datetime(_) => "a date-time".to_owned(),
            DeValue::Boolean(b) => b.to_string(),
            DeValue::Integer(_) | DeValue::Float(_) => self
                .span
                .and_then(|(s, e)| file.text.get(s..e))
                .map_or_else(|| "a number".to_owned(), shorten),
        }
    }
}

fn shorten(s: &str) -> String {
    const SHOWN_CHARS_MAX: usize = 40;
    if s.chars().count() > SHOWN_CHARS_MAX {
        let mut short: String = s.chars().take(SHOWN_CHARS_MAX).collect();
        short.push('…');
        short
    } else {
        s.to_owned()
    }
}

/// The value as an `f64`: TOML integers and floats alike (so `speed_mps = 6` is fine).
fn as_f64(value: &DeValue<'_>) -> Option<f64> {
    match value {
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .ok()
            .map(|v| v as f64)
            .or(Some(f64::INFINITY)),
        DeValue::Float(f) => Some(f.as_str().parse::<f64>().unwrap_or(f64::NAN)),
        _ => None,
    }
}

/// What a table may hold.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// The keys of a section.
    Keys(&'static Section),
    /// Named tables of one section (`[archetypes.NAME]`).
    Map(&'static Section),
    /// `{ x, y }`, read with the ranges of the key that holds it.
    Xy,
}

/// A required key that was absent, reported when the table is finished (unless an unknown
/// key turns out to be it, misspelt).
struct Missing {
    key: &'static str,
    expected: String,
    /// An absent sub-table: it reports itself; the entry is here only so that a misspelt
    /// name of it says that it is missing.
    table: bool,
}

/// A table being read: a `[section]`, an inline table or one `[[array]]` element.
///
/// Keys are asked for by name (`t.int("tick_hz")`); their type, range and default come
/// from the table's [`Section`]. Every key asked for is allowed; whatever else the table
/// holds is reported as unknown when it is finished, with the closest allowed key as a
/// suggestion.
pub(super) struct Table<'a> {
    pub(super) file: &'a SourceFile<'a>,
    /// How messages name it: `[world]`, `[world] size_m`, `[[regions.region]] #2`.
    label: String,
    /// Dotted path, for the labels of sub-tables.
    path: String,
    entries: Option<&'a DeTable<'a>>,
    /// The table's header (or the parent's, when absent): where missing keys are reported.
    pub(super) at: At<'a>,
    shape: Shape,
    env: Vec<&'a EnvOverride<'a>>,
    known: Vec<&'static str>,
    missing: Vec<Missing>,
    /// Keys accepted without being read (dynamic maps, or a table whose shape is unknown
    /// because of an earlier error).
    accept_all: bool,
    /// An absent table whose name the parent holds misspelt: the parent reports it.
    misspelt: bool,
}

impl<'a> Table<'a> {
    pub(super) fn root(
        file: &'a SourceFile<'a>,
        section: &'static Section,
        doc: &'a Spanned<DeTable<'a>>,
    ) -> Table<'a> {
        Table::new(
            file,
            "the top level".to_owned(),
            String::new(),
            Some(doc.get_ref()),
            At::Offset(doc.span().start),
            Shape::Keys(section),
        )
    }

    fn new(
        file: &'a SourceFile<'a>,
        label: String,
        path: String,
        entries: Option<&'a DeTable<'a>>,
        at: At<'a>,
        shape: Shape,
    ) -> Table<'a> {
        Table {
            file,
            label,
            path,
            entries,
            at,
            shape,
            env: Vec::new(),
            known: Vec::new(),
            missing: Vec::new(),
            accept_all: false,
            misspelt: false,
        }
    }

    /// A table read from a value, labelled `label`; an error if the value is no table.
    fn from_item(
        file: &'a SourceFile<'a>,
        label: String,
        path: String,
        item: Item<'a>,
        shape: Shape,
    ) -> Option<Table<'a>> {
        match item.value {
            DeValue::Table(t) => Some(Table::new(file, label, path, Some(t), item.at, shape)),
            _ => {
                file.error(
                    item.at,
                    format!("{label} must be a table, got {}", item.written(file)),
                );
                None
            }
        }
    }

    /// Attaches environment overrides to this table.
    pub(super) fn with_env(mut self, env: Vec<&'a EnvOverride<'a>>) -> Table<'a> {
        self.env = env;
        self
    }

    /// The spec of `key` in this table's section. A key without one is a loader bug
    /// (reported as an error in release builds).
    fn spec(&self, key: &'static str) -> Option<&'static Spec> {
        let spec = match self.shape {
            Shape::Keys(section) => section.get(key),
            Shape::Map(_) | Shape::Xy => None,
        };
        debug_assert!(spec.is_some(), "{key} is not declared in {}", self.label);
        if spec.is_none() {
            self.bug(format!("key {key:?} is not declared in {}", self.label));
        }
        spec
    }

    /// What a value of `key` must be, for the caller's own checks.
    pub(super) fn expected(&self, key: &'static str) -> String {
        self.spec(key).map(Spec::expected).unwrap_or_default()
    }

    /// A spec of another kind than the reading method expects: a loader bug.
    fn wrong_kind<T>(&self, spec: &Spec) -> Option<T> {
        debug_assert!(false, "{} in {} is a {:?}", spec.key, self.label, spec.kind);
        self.bug(format!(
            "key {:?} of {} is read as another type",
            spec.key, self.label
        ));
        None
    }

    fn bug(&self, what: String) {
        self.file.error(self.at, format!("loader bug: {what}"));
    }

    /// Marks `key` as allowed and returns its value, the environment's first.
    fn optional(&mut self, key: &'static str) -> Option<Item<'a>> {
        if !self.known.contains(&key) {
            self.known.push(key);
        }
        if let Some(o) = self.env.iter().find(|o| o.key == key) {
            return Some(Item {
                value: &o.value,
                at: At::Env(o.var),
                span: None,
                env_raw: Some(o.raw),
            });
        }
        self.entries?.get(key).map(Item::from_spanned)
    }

    /// Like [`Table::optional`], but a missing key is an error ("missing key ...;
    /// expected ..."), reported when the table is finished.
    fn required(
        &mut self,
        key: &'static str,
        expected: impl FnOnce() -> String,
    ) -> Option<Item<'a>> {
        let item = self.optional(key);
        if item.is_none() && !self.missing.iter().any(|m| m.key == key) {
            self.missing.push(Missing {
                key,
                expected: expected(),
                table: false,
            });
        }
        item
    }

    /// A sub-table `[path.key]` (or a map of named tables). When absent, an empty reader:
    /// its required keys are then reported together as one "missing table" error, and
    /// keys with defaults just default.
    pub(super) fn table(&mut self, key: &'static str) -> Option<Table<'a>> {
        let spec = self.spec(key)?;
        let shape = match spec.kind {
            Kind::Table(section) => Shape::Keys(section),
            Kind::Map { of, .. } => Shape::Map(of),
            _ => return self.wrong_kind(spec),
        };
        let path = if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        };
        let label = format!("[{path}]");
        match self.optional(key) {
            Some(item) => Table::from_item(self.file, label, path, item, shape),
            None => {
                let mut table = Table::new(self.file, label, path, None, self.at, shape);
                if matches!(spec.kind, Kind::Table(_)) && spec.is_required() {
                    table.misspelt = self.holds_misspelt(key);
                    self.missing.push(Missing {
                        key,
                        expected: spec.expected(),
                        table: true,
                    });
                }
                Some(table)
            }
        }
    }

    /// Whether the table holds an undeclared key whose closest declared key is `key`
    /// (the choice [`Table::finish`] makes, as every declared table is asked for).
    fn holds_misspelt(&self, key: &str) -> bool {
        let (Some(entries), Shape::Keys(section)) = (self.entries, self.shape) else {
            return false;
        };
        let declared = || section.keys.iter().map(|s| s.key);
        entries.iter().any(|(k, _)| {
            let k = k.get_ref().as_ref();
            section.get(k).is_none() && suggest::closest(k, declared()) == Some(key)
        })
    }

    /// Every entry of a map (`[archetypes]`), for [`Table::entry`]; all are allowed.
    pub(super) fn entries(&mut self) -> Vec<(&'a str, At<'a>, Item<'a>)> {
        self.accept_all = true;
        self.entries
            .map(|t| {
                t.iter()
                    .map(|(k, v)| {
                        (
                            k.get_ref().as_ref(),
                            At::Offset(k.span().start),
                            Item::from_spanned(v),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The named table `name` of a map (`[archetypes.wolf]`).
    pub(super) fn entry(&self, name: &str, item: Item<'a>) -> Option<Table<'a>> {
        let Shape::Map(section) = self.shape else {
            debug_assert!(false, "{} is not a map", self.label);
            self.bug(format!("{} is read as a map", self.label));
            return None;
        };
        let path = format!("{}.{name}", self.path);
        let label = format!("[{path}]");
        Table::from_item(self.file, label, path, item, Shape::Keys(section))
    }

    /// One element of the array of tables `key` (read with [`Table::array`]).
    pub(super) fn element(
        &self,
        key: &'static str,
        label: String,
        item: Item<'a>,
    ) -> Option<Table<'a>> {
        let spec = self.spec(key)?;
        let Kind::Tables { of, .. } = spec.kind else {
            return self.wrong_kind(spec);
        };
        let path = if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        };
        Table::from_item(self.file, label, path, item, Shape::Keys(of))
    }

    /// Stops reporting unknown keys (the table's shape is unknown after an earlier error).
    pub(super) fn accept_all(&mut self) {
        self.accept_all = true;
    }

    /// Reports unknown keys (file and environment), each with the closest allowed key as a
    /// suggestion, and the required keys that are missing. A missing key whose name an
    /// unknown key misspells is one error, at the misspelling: `unknown key "tick_hzz" in
    /// [world]; allowed: ...; did you mean "tick_hz"? (it is required and missing; expected
    /// an integer between 1 and 120)`.
    pub(super) fn finish(self) {
        let allowed = self.known.join(", ");
        let mut unknown: Vec<(usize, &str)> = self
            .entries
            .iter()
            .flat_map(|entries| entries.iter())
            .filter(|(k, _)| !self.known.contains(&k.get_ref().as_ref()))
            .map(|(k, _)| (k.span().start, k.get_ref().as_ref()))
            .collect();
        unknown.sort_unstable();
        let unknown = unknown
            .into_iter()
            .map(|(offset, key)| (At::Offset(offset), key, None))
            .chain(
                self.env
                    .iter()
                    .filter(|o| !self.known.contains(&o.key.as_str()))
                    .map(|o| (At::Env(o.var), o.key.as_str(), Some(o.var))),
            );
        let mut merged = vec![false; self.missing.len()];
        for (at, key, var) in unknown {
            let suggestion = suggest::closest(key, self.known.iter().copied());
            let missing = suggestion.and_then(|s| {
                (0..self.missing.len()).find(|&i| !merged[i] && self.missing[i].key == s)
            });
            if self.accept_all && missing.is_none() {
                continue;
            }
            let mut message = format!("unknown key {key:?} in {}; allowed: {allowed}", self.label);
            if let Some(s) = suggestion {
                match var {
                    // Name the variable to set: TESSERA__NET__QUIC_LISTEN.
                    Some(var) => {
                        let section = var.rsplit_once("__").map_or(var, |(section, _)| section);
                        let _ = write!(
                            message,
                            "; did you mean {section}__{}?",
                            s.to_ascii_uppercase()
                        );
                    }
                    None => {
                        let _ = write!(message, "; did you mean {s:?}?");
                    }
                }
            }
            if let Some(m) = missing.and_then(|i| {
                merged[i] = true;
                self.missing.get(i)
            }) {
                if m.table {
                    message.push_str(" (the table is required and missing)");
                } else {
                    let _ = write!(
                        message,
                        " (it is required and missing; expected {})",
                        m.expected
                    );
                }
            }
            self.file.error(at, message);
        }
        let missing = self
            .missing
            .iter()
            .zip(merged)
            .filter(|(m, merged)| !merged && !m.table)
            .map(|(m, _)| m);
        if self.entries.is_none() {
            let keys: Vec<&str> = missing.map(|m| m.key).collect();
            if !keys.is_empty() && !self.misspelt {
                self.file.error(
                    self.at,
                    format!(
                        "missing table {}; required keys: {}",
                        self.label,
                        keys.join(", ")
                    ),
                );
            }
            return;
        }
        for m in missing {
            self.file.error(
                self.at,
                format!(
                    "missing key \"{}\" in {}; expected {}",
                    m.key, self.label, m.expected
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let diag = Diag::default();
        let file = SourceFile::new("f.toml", "ab\néé = 1\n", 0, 1, &diag);
        assert_eq!(file.position(0), (1, 1));
        assert_eq!(file.position(2), (1, 3));
        assert_eq!(file.position(3), (2, 1));
        // "éé" is 4 bytes, 2 characters.
        assert_eq!(file.position(7), (2, 3));
        assert_eq!(file.position(10_000), (3, 1));
    }
}
