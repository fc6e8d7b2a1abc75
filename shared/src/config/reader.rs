//! A forgiving, position-aware reader over a parsed TOML document.
//!
//! serde derive stops at the first error; this reader records an error and goes on, so one
//! load reports every mistake of every file. Each [`Table`] remembers which keys the loader
//! asked for: whatever is left over when it is finished is reported as an unknown key, with
//! the asked-for keys as the allowed list.

use std::cell::{Cell, RefCell};
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::error::ConfigError;
use crate::math::Vec2;

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

/// Describes a numeric range for messages: `between 1 and 1024`, `at least 1`.
fn between(min: f64, max: f64) -> String {
    format!("between {min} and {max}")
}

/// A table being read: a `[section]`, an inline table or one `[[array]]` element.
pub(super) struct Table<'a> {
    pub(super) file: &'a SourceFile<'a>,
    /// How messages name it: `[world]`, `[world] size_m`, `[[regions.region]] #2`.
    label: String,
    /// Dotted path, for the labels of sub-tables.
    path: String,
    entries: Option<&'a DeTable<'a>>,
    /// The table's header (or the parent's, when absent): where missing keys are reported.
    pub(super) at: At<'a>,
    env: Vec<&'a EnvOverride<'a>>,
    known: Vec<&'static str>,
    absent_required: Vec<&'static str>,
    /// Keys accepted without being read (dynamic maps, or a table whose shape is unknown
    /// because of an earlier error).
    accept_all: bool,
}

impl<'a> Table<'a> {
    pub(super) fn root(file: &'a SourceFile<'a>, doc: &'a Spanned<DeTable<'a>>) -> Table<'a> {
        Table {
            file,
            label: "the top level".to_owned(),
            path: String::new(),
            entries: Some(doc.get_ref()),
            at: At::Offset(doc.span().start),
            env: Vec::new(),
            known: Vec::new(),
            absent_required: Vec::new(),
            accept_all: false,
        }
    }

    /// A table read from an array element or dynamic map entry, labelled `label`.
    pub(super) fn from_item(
        file: &'a SourceFile<'a>,
        label: String,
        path: String,
        item: Item<'a>,
    ) -> Option<Table<'a>> {
        match item.value {
            DeValue::Table(t) => Some(Table {
                file,
                label,
                path,
                entries: Some(t),
                at: item.at,
                env: Vec::new(),
                known: Vec::new(),
                absent_required: Vec::new(),
                accept_all: false,
            }),
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

    /// Marks `key` as allowed and returns its value, the environment's first.
    pub(super) fn optional(&mut self, key: &'static str) -> Option<Item<'a>> {
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

    /// Like [`Table::optional`], but a missing key is an error: "missing key ... expected".
    pub(super) fn required(&mut self, key: &'static str, expected: &str) -> Option<Item<'a>> {
        let item = self.optional(key);
        if item.is_none() {
            if self.entries.is_none() {
                self.absent_required.push(key);
            } else {
                self.file.error(
                    self.at,
                    format!(
                        "missing key \"{key}\" in {}; expected {expected}",
                        self.label
                    ),
                );
            }
        }
        item
    }

    /// A sub-table `[path.key]`. When absent, an empty reader: its required keys are then
    /// reported together as one "missing table" error, and keys with defaults just default.
    pub(super) fn table(&mut self, key: &'static str) -> Option<Table<'a>> {
        let path = if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        };
        let label = format!("[{path}]");
        match self.optional(key) {
            Some(item) => Table::from_item(self.file, label, path, item),
            None => Some(Table {
                file: self.file,
                label,
                path,
                entries: None,
                at: self.at,
                env: Vec::new(),
                known: Vec::new(),
                absent_required: Vec::new(),
                accept_all: false,
            }),
        }
    }

    /// Every entry, for tables whose keys are names (`[archetypes.NAME]`); all are allowed.
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

    /// Stops reporting unknown keys (the table's shape is unknown after an earlier error).
    pub(super) fn accept_all(&mut self) {
        self.accept_all = true;
    }

    /// Reports unknown keys (file and environment) and, for an absent table, the required
    /// keys it lacks.
    pub(super) fn finish(self) {
        if !self.absent_required.is_empty() {
            self.file.error(
                self.at,
                format!(
                    "missing table {}; required keys: {}",
                    self.label,
                    self.absent_required.join(", ")
                ),
            );
        }
        if self.accept_all {
            return;
        }
        let allowed = self.known.join(", ");
        if let Some(entries) = self.entries {
            let mut unknown: Vec<(usize, &str)> = entries
                .iter()
                .filter(|(k, _)| !self.known.contains(&k.get_ref().as_ref()))
                .map(|(k, _)| (k.span().start, k.get_ref().as_ref()))
                .collect();
            unknown.sort_unstable();
            for (offset, key) in unknown {
                self.file.error(
                    At::Offset(offset),
                    format!("unknown key {key:?} in {}; allowed: {allowed}", self.label),
                );
            }
        }
        for o in &self.env {
            if !self.known.contains(&o.key.as_str()) {
                self.file.error(
                    At::Env(o.var),
                    format!(
                        "unknown key {:?} in {}; allowed: {allowed}",
                        o.key, self.label
                    ),
                );
            }
        }
    }

    fn type_error(&self, key: &str, item: Item<'_>, expected: &str) {
        self.file.error(
            item.at,
            format!("{key} must be {expected}, got {}", item.written(self.file)),
        );
    }

    /// A required number in `[min, max]`; integers are accepted. NaN and infinities are
    /// out of every range.
    pub(super) fn f32_in(&mut self, key: &'static str, min: f64, max: f64) -> Option<f32> {
        self.f32_in_at(key, min, max).map(|(v, _)| v)
    }

    /// Like [`Table::f32_in`], with where the value is (for cross-key checks).
    pub(super) fn f32_in_at(
        &mut self,
        key: &'static str,
        min: f64,
        max: f64,
    ) -> Option<(f32, At<'a>)> {
        let expected = format!("a number {}", between(min, max));
        let item = self.required(key, &expected)?;
        Some((self.f32_of(key, item, min, max)?, item.at))
    }

    /// Checks a number found under `key`.
    pub(super) fn f32_of(&self, key: &str, item: Item<'_>, min: f64, max: f64) -> Option<f32> {
        let Some(v) = as_f64(item.value) else {
            self.type_error(key, item, &format!("a number {}", between(min, max)));
            return None;
        };
        if !(v >= min && v <= max) {
            self.file.error(
                item.at,
                format!(
                    "{key} must be {}, got {}",
                    between(min, max),
                    item.written(self.file)
                ),
            );
            return None;
        }
        Some(v as f32)
    }

    /// A required integer in `[min, max]`.
    pub(super) fn u32_in(&mut self, key: &'static str, min: u32, max: u32) -> Option<u32> {
        let expected = format!("an integer between {min} and {max}");
        let item = self.required(key, &expected)?;
        self.u32_of(key, item, min, max)
    }

    /// An optional integer in `[min, max]`, `default` when absent. `None` on error.
    pub(super) fn u32_or(
        &mut self,
        key: &'static str,
        min: u32,
        max: u32,
        default: u32,
    ) -> Option<u32> {
        match self.optional(key) {
            Some(item) => self.u32_of(key, item, min, max),
            None => Some(default),
        }
    }

    pub(super) fn u32_of(&self, key: &str, item: Item<'_>, min: u32, max: u32) -> Option<u32> {
        let DeValue::Integer(i) = item.value else {
            self.type_error(key, item, &format!("an integer between {min} and {max}"));
            return None;
        };
        let v = i64::from_str_radix(i.as_str(), i.radix())
            .ok()
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| (min..=max).contains(v));
        if v.is_none() {
            self.file.error(
                item.at,
                format!(
                    "{key} must be between {min} and {max}, got {}",
                    item.written(self.file)
                ),
            );
        }
        v
    }

    /// A required string (an environment override's text is taken as is).
    pub(super) fn string(
        &mut self,
        key: &'static str,
        expected: &str,
    ) -> Option<(&'a str, At<'a>)> {
        let item = self.required(key, expected)?;
        self.string_of(key, item, expected)
    }

    pub(super) fn string_of(
        &self,
        key: &str,
        item: Item<'a>,
        expected: &str,
    ) -> Option<(&'a str, At<'a>)> {
        match (item.value, item.env_raw) {
            (DeValue::String(s), _) => Some((s.as_ref(), item.at)),
            (_, Some(raw)) => Some((raw, item.at)),
            _ => {
                self.type_error(key, item, expected);
                None
            }
        }
    }

    /// A required string, with the item (for formulas, which need the value's span).
    pub(super) fn string_item(
        &mut self,
        key: &'static str,
        expected: &str,
    ) -> Option<(&'a str, Item<'a>)> {
        let item = self.required(key, expected)?;
        let (s, _) = self.string_of(key, item, expected)?;
        Some((s, item))
    }

    /// A required boolean.
    pub(super) fn bool(&mut self, key: &'static str) -> Option<bool> {
        let item = self.required(key, "true or false")?;
        match item.value {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.type_error(key, item, "true or false");
                None
            }
        }
    }

    /// A required array.
    pub(super) fn array(
        &mut self,
        key: &'static str,
        expected: &str,
    ) -> Option<(&'a DeArray<'a>, At<'a>)> {
        let item = self.required(key, expected)?;
        match item.value {
            DeValue::Array(a) => Some((a, item.at)),
            _ => {
                self.type_error(key, item, expected);
                None
            }
        }
    }

    /// A required `{ x = ..., y = ... }` with each component in `[min, max]`.
    pub(super) fn vec2_in(
        &mut self,
        key: &'static str,
        min: f64,
        max: f64,
    ) -> Option<(Vec2, At<'a>)> {
        let expected = format!("{{ x = ..., y = ... }}, each {}", between(min, max));
        let item = self.required(key, &expected)?;
        self.vec2_of(key, item, min, max)
    }

    /// An optional `{ x = ..., y = ... }`; `Some(None)` when absent, `None` on error.
    pub(super) fn vec2_opt(
        &mut self,
        key: &'static str,
        min: f64,
        max: f64,
    ) -> Option<Option<(Vec2, At<'a>)>> {
        match self.optional(key) {
            Some(item) => self.vec2_of(key, item, min, max).map(Some),
            None => Some(None),
        }
    }

    fn vec2_of(
        &self,
        key: &'static str,
        item: Item<'a>,
        min: f64,
        max: f64,
    ) -> Option<(Vec2, At<'a>)> {
        if !matches!(item.value, DeValue::Table(_)) {
            let expected = format!("{{ x = ..., y = ... }}, each {}", between(min, max));
            self.type_error(key, item, &expected);
            return None;
        }
        let mut t = Table::from_item(
            self.file,
            format!("{} {key}", self.label),
            format!("{}.{key}", self.path),
            item,
        )?;
        let x = t.f32_in("x", min, max);
        let y = t.f32_in("y", min, max);
        t.finish();
        Some((Vec2::new(x?, y?), item.at))
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
