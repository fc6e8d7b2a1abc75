//! Errors of the configuration loader.
//!
//! A person reads these: each names the file, the 1-based line and column of the offending
//! value (or of the table that lacks a required key), the rule that was broken and what is
//! allowed, e.g. `world.toml:12:15: cell_size_m must be between 1 and 1024, got 0`.

use std::fmt;

/// One problem in the configuration.
///
/// `line` and `col` are 1-based; `col` counts characters, not bytes. Line 0 means the
/// problem has no position in a file: an environment override (`file` is then
/// `env TESSERA__SECTION__KEY`) or a file that could not be read at all.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigError {
    /// The file's display name (the path it was read from, or the name given to
    /// [`super::load_strs`]), or `env NAME` for an environment override.
    pub file: String,
    /// 1-based line, or 0 when there is no position.
    pub line: usize,
    /// 1-based column in characters, or 0 when there is no position.
    pub col: usize,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl ConfigError {
    /// An error at `file:line:col`.
    pub fn new(
        file: impl Into<String>,
        line: usize,
        col: usize,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: file.into(),
            line,
            col,
            message: message.into(),
        }
    }
}

/// `file:line:col: message`, or `file: message` when there is no position (line 0).
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.col, self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one load, in file order and then position order.
///
/// Never empty when returned by the loader.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// One error per line, no trailing newline.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A formula that does not compile: what is wrong and where in the formula's source.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct FormulaError {
    /// Byte offset into the formula's source of the offending token (the source length
    /// for "unexpected end").
    pub offset: usize,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl FormulaError {
    pub(crate) fn new(offset: usize, message: impl Into<String>) -> FormulaError {
        FormulaError {
            offset,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_formats() {
        let errors = ConfigErrors(vec![
            ConfigError::new(
                "world.toml",
                12,
                15,
                "cell_size_m must be between 1 and 1024, got 0",
            ),
            ConfigError::new("env TESSERA__NET__X", 0, 0, "unknown key"),
        ]);
        assert_eq!(
            errors.to_string(),
            "world.toml:12:15: cell_size_m must be between 1 and 1024, got 0\n\
             env TESSERA__NET__X: unknown key"
        );
    }
}
