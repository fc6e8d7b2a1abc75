//! The typed values a [`Table`] reads (numbers, integers, text, choices, flags, arrays,
//! positions): each checked against its key's [`Spec`] and reported, never panicking, when
//! wrong.

use super::*;

impl<'a> Table<'a> {
    pub(super) fn type_error(&self, key: &str, item: Item<'_>, expected: &str) {
        self.file.error(
            item.at,
            format!("{key} must be {expected}, got {}", item.written(self.file)),
        );
    }

    /// A number (integers are accepted) in its spec's range. NaN and infinities are out of
    /// every range.
    pub(in crate::config) fn num(&mut self, key: &'static str) -> Option<f32> {
        self.num_at(key).map(|(v, _)| v)
    }

    /// Like [`Table::num`], with where the value is (for cross-key checks).
    pub(in crate::config) fn num_at(&mut self, key: &'static str) -> Option<(f32, At<'a>)> {
        let spec = self.spec(key)?;
        let Kind::Num { min, max } = spec.kind else {
            return self.wrong_kind(spec);
        };
        self.num_in(key, min, max)
    }

    /// A required number in `[min, max]`.
    pub(super) fn num_in(
        &mut self,
        key: &'static str,
        min: f64,
        max: f64,
    ) -> Option<(f32, At<'a>)> {
        let item = self.required(key, || format!("a number {}", between(min, max)))?;
        Some((self.f32_of(key, item, min, max)?, item.at))
    }

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

    /// An integer in its spec's range; its default when absent, if it has one.
    pub(in crate::config) fn int(&mut self, key: &'static str) -> Option<u32> {
        self.int_at(key).map(|(v, _)| v)
    }

    /// Like [`Table::int`], with where the value is (the table's header for a default).
    pub(in crate::config) fn int_at(&mut self, key: &'static str) -> Option<(u32, At<'a>)> {
        let spec = self.spec(key)?;
        let Kind::Int { min, max, default } = spec.kind else {
            return self.wrong_kind(spec);
        };
        let item = match default {
            None => self.required(key, || spec.expected())?,
            Some(default) => match self.optional(key) {
                Some(item) => item,
                None => return Some((default, self.at)),
            },
        };
        Some((self.u32_of(key, item, min, max)?, item.at))
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

    /// A string (an environment override's text is taken as is), checked further by the
    /// caller.
    pub(in crate::config) fn text(&mut self, key: &'static str) -> Option<(&'a str, At<'a>)> {
        self.text_item(key).map(|(s, item)| (s, item.at))
    }

    /// Like [`Table::text`], with the item (formulas need the value's span).
    pub(in crate::config) fn text_item(
        &mut self,
        key: &'static str,
    ) -> Option<(&'a str, Item<'a>)> {
        let spec = self.spec(key)?;
        if !matches!(
            spec.kind,
            Kind::Text {
                optional: false,
                ..
            } | Kind::Choice { .. }
        ) {
            return self.wrong_kind(spec);
        }
        let item = self.required(key, || spec.expected())?;
        self.text_of(spec, key, item)
    }

    /// An optional string: `Some(None)` when absent, `None` (the error recorded) when not a
    /// string.
    pub(in crate::config) fn text_opt(
        &mut self,
        key: &'static str,
    ) -> Option<Option<(&'a str, At<'a>)>> {
        let spec = self.spec(key)?;
        if !matches!(spec.kind, Kind::Text { optional: true, .. }) {
            return self.wrong_kind(spec);
        }
        match self.optional(key) {
            Some(item) => self
                .text_of(spec, key, item)
                .map(|(s, item)| Some((s, item.at))),
            None => Some(None),
        }
    }

    fn text_of(
        &mut self,
        spec: &'static Spec,
        key: &'static str,
        item: Item<'a>,
    ) -> Option<(&'a str, Item<'a>)> {
        match (item.value, item.env_raw) {
            (DeValue::String(s), _) => Some((s.as_ref(), item)),
            (_, Some(raw)) => Some((raw, item)),
            _ => {
                self.type_error(key, item, &spec.expected());
                None
            }
        }
    }

    /// One of the spec's values, as the spec writes it.
    pub(in crate::config) fn choice(
        &mut self,
        key: &'static str,
    ) -> Option<(&'static str, At<'a>)> {
        let spec = self.spec(key)?;
        let Kind::Choice { values } = spec.kind else {
            return self.wrong_kind(spec);
        };
        let (text, at) = self.text(key)?;
        if let Some(value) = values.iter().find(|v| **v == text) {
            return Some((value, at));
        }
        self.file.error(
            at,
            format!(
                "{key} must be {}, got {text:?}{}",
                one_of(values),
                suggest::did_you_mean(text, values.iter().copied())
            ),
        );
        None
    }

    /// A boolean; its default when absent, if it has one.
    pub(in crate::config) fn flag(&mut self, key: &'static str) -> Option<bool> {
        let spec = self.spec(key)?;
        let Kind::Bool { default } = spec.kind else {
            return self.wrong_kind(spec);
        };
        let item = match default {
            None => self.required(key, || spec.expected())?,
            Some(default) => match self.optional(key) {
                Some(item) => item,
                None => return Some(default),
            },
        };
        match item.value {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.type_error(key, item, &spec.expected());
                None
            }
        }
    }

    /// An array: of ids, or of tables (read each with [`Table::element`]).
    pub(in crate::config) fn array(
        &mut self,
        key: &'static str,
    ) -> Option<(&'a DeArray<'a>, At<'a>)> {
        let spec = self.spec(key)?;
        if !matches!(spec.kind, Kind::Ids { .. } | Kind::Tables { .. }) {
            return self.wrong_kind(spec);
        }
        let item = self.required(key, || spec.expected())?;
        match item.value {
            DeValue::Array(a) => Some((a, item.at)),
            _ => {
                self.type_error(key, item, &spec.expected());
                None
            }
        }
    }

    /// A required `{ x = ..., y = ... }` with each component in the spec's range.
    pub(in crate::config) fn vec2(&mut self, key: &'static str) -> Option<(Vec2, At<'a>)> {
        let spec = self.spec(key)?;
        let Kind::Vec2 {
            min,
            max,
            required: true,
        } = spec.kind
        else {
            return self.wrong_kind(spec);
        };
        let item = self.required(key, || spec.expected())?;
        self.vec2_of(spec, item, min, max)
    }

    /// An optional `{ x = ..., y = ... }`; `Some(None)` when absent, `None` on error.
    pub(in crate::config) fn vec2_opt(
        &mut self,
        key: &'static str,
    ) -> Option<Option<(Vec2, At<'a>)>> {
        let spec = self.spec(key)?;
        let Kind::Vec2 {
            min,
            max,
            required: false,
        } = spec.kind
        else {
            return self.wrong_kind(spec);
        };
        match self.optional(key) {
            Some(item) => self.vec2_of(spec, item, min, max).map(Some),
            None => Some(None),
        }
    }

    pub(super) fn vec2_of(
        &self,
        spec: &'static Spec,
        item: Item<'a>,
        min: f64,
        max: f64,
    ) -> Option<(Vec2, At<'a>)> {
        let key = spec.key;
        if !matches!(item.value, DeValue::Table(_)) {
            self.type_error(key, item, &spec.expected());
            return None;
        }
        let mut t = Table::from_item(
            self.file,
            format!("{} {key}", self.label),
            format!("{}.{key}", self.path),
            item,
            Shape::Xy,
        )?;
        let x = t.num_in("x", min, max);
        let y = t.num_in("y", min, max);
        t.finish();
        Some((Vec2::new(x?.0, y?.0), item.at))
    }
}
