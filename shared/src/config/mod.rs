//! Configuration: three TOML files, parsed and validated once, then frozen into [`Config`].
//!
//! - `tessera.toml` (operator-owned): the node's name, mode, data dir, listen addresses and
//!   thread count. Any of its keys can be overridden from the environment:
//!   `TESSERA__SECTION__KEY=value` sets `[section] key` (both lowercased). The value is read
//!   as a TOML value if it parses as one (`4`, `true`, `"text"`), else as a bare string
//!   (`127.0.0.1:4433`). Other variables are ignored; overrides apply to no other file.
//! - `world.toml` (level design): world size and tick rate, spatial grid, interest
//!   management, per-region limits and the region layout.
//! - `balance.toml` (game design): movement rules, archetypes, formulas, spawn tables,
//!   progression, the economy's starter kit and inventories, items, loot and shops.
//!
//! Every key is required except `[limits]` in world.toml (see [`WorldLimits::DEFAULT`]) and
//! `spawn_point` of a listed region (default: the region's centre), and in balance.toml
//! `[items]`, `[loot]`, `[shops]` (none) and a shop good's `price_percent` (100). The
//! shipped files in `config/` document each key, its unit and its range;
//! [`Config::embedded_default`] is
//! those files compiled into the binary. What each file may hold (keys, types, ranges,
//! defaults, docs) is declared once, in `spec.rs`'s sections, which the loader reads
//! through and [`json_schema()`] turns into the JSON Schemas of `config/schema/` for editors.
//!
//! # Errors
//!
//! The loader never stops at the first problem and never panics on bad input: it reports
//! every syntax error, wrong type, unknown key, missing key, out-of-range value, bad
//! formula and broken cross-reference of all three files at once, as [`ConfigErrors`],
//! one per line in the form `file:line:col: message` (1-based, columns in characters):
//!
//! ```text
//! world.toml:12:15: cell_size_m must be between 1 and 1024, got 0
//! world.toml:3:1: unknown key "tick_hzz" in [world]; allowed: name, size_m, tick_hz; did you mean "tick_hz"? (it is required and missing; expected an integer between 1 and 120)
//! env TESSERA__NET__QUIC_LISTENN: unknown key "quic_listenn" in [net]; allowed: quic_listen, admin_listen; did you mean TESSERA__NET__QUIC_LISTEN?
//! ```
//!
//! Errors of environment overrides name the variable instead of a file position. Missing
//! keys are reported at the header of their table (`[world]`), a missing table at the
//! top of the file, except when an unknown key misspells them: that is one error, at the
//! misspelling. Unknown keys, names (an archetype, a spawn table, a formula's variables
//! and functions) and values of a fixed set (`mode`) suggest the closest known one.

pub mod diff;
pub mod error;
pub mod formula;
pub mod json_schema;
pub mod schema;

mod balance;
mod economy;
mod node;
mod reader;
mod spec;
mod suggest;
mod world;

use std::fmt;
use std::io::Read;
use std::path::Path;

pub use diff::{Change, FieldValue, archetype_fields, diff_balance};
pub use error::{ConfigError, ConfigErrors, FormulaError};
pub use formula::{
    DAMAGE_VARS, FORMULA_BYTES_MAX, FORMULA_DEPTH_MAX, FORMULA_FUNCTIONS, FORMULA_VARS_MAX,
    Formula, KILL_VARS, LOOT_VARS, XP_TO_NEXT_VARS,
};
pub use json_schema::{JSON_SCHEMA_FILES, json_schema};
pub use schema::*;

use crate::math::Vec2;
use reader::{Diag, SourceFile};

/// Most spatial-grid cells one region may need: `ceil(w / cell) * ceil(h / cell)` of its
/// bounds. At 8 bytes of cell header each, 32 MiB per region.
pub const GRID_CELLS_MAX: u64 = 4_194_304;

/// Most regions one world may have.
pub const REGIONS_MAX: usize = 4096;

/// Most archetypes in balance.toml: their names are sent in every `Welcome`
/// (`WelcomeS2c::archetypes`), which must fit one control frame.
pub const ARCHETYPES_MAX: usize = 128;

const _: () = assert!(
    ARCHETYPES_MAX * (NAME_CHARS_MAX + 1) + 2 * 1024
        <= crate::protocol::limits::CONTROL_FRAME_BYTES_MAX,
    "the archetype table must fit a Welcome frame"
);

/// Most spawn tables in balance.toml.
pub const SPAWN_TABLES_MAX: usize = 1024;

/// Most entries of one spawn table.
pub const SPAWN_ENTRIES_MAX: usize = 256;

/// Most items in balance.toml.
pub const ITEMS_MAX: usize = 4096;

/// Most shops in balance.toml.
pub const SHOPS_MAX: usize = 256;

/// Most goods one shop sells.
pub const SHOP_GOODS_MAX: usize = 256;

/// Most lines of one loot table.
pub const LOOT_DROPS_MAX: usize = 32;

/// Most slots of an inventory (`[economy] inventory_slots`): a full inventory of
/// different items fits one `Economy` message.
pub const INVENTORY_SLOTS_MAX: u32 = 128;

/// Largest stack of one item in one inventory slot.
pub const STACK_SIZE_MAX: u32 = 1_000_000;

/// Largest item price and starter coins, in coins.
pub const PRICE_MAX: u32 = 1_000_000_000;

/// Largest stock of one shop good.
pub const STOCK_MAX: u32 = 1_000_000;

/// Most units of one loot line one kill drops.
pub const LOOT_AMOUNT_MAX: u32 = 1_000_000;

/// Highest `[progression] level_cap`.
pub const LEVEL_CAP_MAX: u32 = 1000;

/// Most XP one kill grants, and the most one level may need.
pub const XP_AMOUNT_MAX: u64 = 1_000_000_000_000;

/// Longest name (node, world, archetype, spawn table, item, shop), in characters.
pub const NAME_CHARS_MAX: usize = 64;

/// Largest configuration file [`load_dir`] reads, in bytes.
pub const CONFIG_FILE_BYTES_MAX: u64 = 1 << 20;

/// Most errors one load reports; the rest are counted in a last line.
pub const ERRORS_SHOWN_MAX: usize = 200;

/// The file names [`load_dir`] reads.
pub const FILE_NAMES: [&str; 3] = ["tessera.toml", "world.toml", "balance.toml"];

/// One configuration file's text and the name its errors are reported under.
#[derive(Clone, Copy, Debug)]
pub struct SourceText<'a> {
    /// Display name, e.g. `config/world.toml`.
    pub name: &'a str,
    /// The file's contents.
    pub text: &'a str,
}

/// The three configuration files, for [`load_strs`].
#[derive(Clone, Copy, Debug)]
pub struct ConfigSources<'a> {
    /// `tessera.toml`.
    pub tessera: SourceText<'a>,
    /// `world.toml`.
    pub world: SourceText<'a>,
    /// `balance.toml`.
    pub balance: SourceText<'a>,
}

impl<'a> ConfigSources<'a> {
    /// The three files' texts, named `tessera.toml`, `world.toml`, `balance.toml`.
    pub fn new(tessera: &'a str, world: &'a str, balance: &'a str) -> ConfigSources<'a> {
        let source = |name, text| SourceText { name, text };
        ConfigSources {
            tessera: source("tessera.toml", tessera),
            world: source("world.toml", world),
            balance: source("balance.toml", balance),
        }
    }
}

impl ConfigSources<'static> {
    /// The shipped `config/*.toml`, compiled in.
    pub fn embedded() -> ConfigSources<'static> {
        ConfigSources {
            tessera: SourceText {
                name: "embedded config/tessera.toml",
                text: include_str!("../../../config/tessera.toml"),
            },
            world: SourceText {
                name: "embedded config/world.toml",
                text: include_str!("../../../config/world.toml"),
            },
            balance: SourceText {
                name: "embedded config/balance.toml",
                text: include_str!("../../../config/balance.toml"),
            },
        }
    }
}

impl Config {
    /// The shipped `config/*.toml`, compiled in and loaded without environment overrides:
    /// a dev node with the default world.
    ///
    /// # Panics
    ///
    /// Never in practice: a unit test proves the shipped files load.
    pub fn embedded_default() -> Config {
        match load_strs(&ConfigSources::embedded(), std::iter::empty()) {
            Ok(config) => config,
            Err(errors) => panic!("the shipped config/*.toml must load:\n{errors}"),
        }
    }
}

/// Loads `tessera.toml`, `world.toml` and `balance.toml` from `dir`, with environment
/// overrides from the process environment.
///
/// Errors are reported under the files' paths (`dir/world.toml:12:15: ...`).
pub fn load_dir(dir: &Path) -> Result<Config, ConfigErrors> {
    load_dir_with_env(dir, process_env()?)
}

/// The process's `TESSERA__*` environment variables, as `(name, value)` pairs. A variable
/// whose value is not UTF-8 is an error (never a panic, unlike `std::env::vars`).
pub fn process_env() -> Result<Vec<(String, String)>, ConfigErrors> {
    let mut env = Vec::new();
    let mut errors = Vec::new();
    for (key, value) in std::env::vars_os() {
        let Some(key) = key.to_str().filter(|k| k.starts_with(node::ENV_PREFIX)) else {
            continue;
        };
        match value.into_string() {
            Ok(value) => env.push((key.to_owned(), value)),
            Err(_) => errors.push(ConfigError::new(
                format!("env {key}"),
                0,
                0,
                "value is not valid UTF-8",
            )),
        }
    }
    if errors.is_empty() {
        Ok(env)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Like [`load_dir`], with the environment given as `(name, value)` pairs (variables not
/// starting with `TESSERA__` are ignored).
pub fn load_dir_with_env(
    dir: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let mut texts = Vec::with_capacity(FILE_NAMES.len());
    let mut errors = Vec::new();
    for file_name in FILE_NAMES {
        let path = dir.join(file_name);
        let name = path.display().to_string();
        match read_text(&path) {
            Ok(text) => texts.push((name, text)),
            Err(message) => errors.push(error_for_unreadable(name, message)),
        }
    }
    let [
        (tessera_name, tessera),
        (world_name, world),
        (balance_name, balance),
    ] = texts.as_slice()
    else {
        return Err(ConfigErrors(errors));
    };
    let sources = ConfigSources {
        tessera: SourceText {
            name: tessera_name,
            text: tessera,
        },
        world: SourceText {
            name: world_name,
            text: world,
        },
        balance: SourceText {
            name: balance_name,
            text: balance,
        },
    };
    load_strs(&sources, env)
}

/// Why a file could not be read, and where if it is not UTF-8.
enum Unreadable {
    Io(String),
    NotUtf8 { text_before: String },
}

fn read_text(path: &Path) -> Result<String, Unreadable> {
    let file = std::fs::File::open(path).map_err(|e| Unreadable::Io(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(CONFIG_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Unreadable::Io(e.to_string()))?;
    if bytes.len() as u64 > CONFIG_FILE_BYTES_MAX {
        return Err(Unreadable::Io(format!(
            "file is larger than {CONFIG_FILE_BYTES_MAX} bytes"
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let bytes = e.into_bytes();
        Unreadable::NotUtf8 {
            text_before: String::from_utf8_lossy(bytes.get(..valid).unwrap_or(&[])).into_owned(),
        }
    })
}

fn error_for_unreadable(name: String, why: Unreadable) -> ConfigError {
    match why {
        Unreadable::Io(message) => ConfigError::new(name, 0, 0, format!("cannot read: {message}")),
        Unreadable::NotUtf8 { text_before } => {
            let line = text_before.matches('\n').count() + 1;
            let col = text_before
                .rsplit('\n')
                .next()
                .map_or(0, |l| l.chars().count())
                + 1;
            ConfigError::new(name, line, col, "file is not valid UTF-8")
        }
    }
}

/// Loads the configuration from the three files' texts, with environment overrides as
/// `(name, value)` pairs (variables not starting with `TESSERA__` are ignored).
pub fn load_strs(
    sources: &ConfigSources<'_>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(node::ENV_PREFIX))
        .collect();
    env.sort();

    let diag = Diag::default();
    let node_file = SourceFile::new(sources.tessera.name, sources.tessera.text, 0, 1, &diag);
    let world_file = SourceFile::new(sources.world.name, sources.world.text, 2, 2, &diag);
    let balance_file = SourceFile::new(sources.balance.name, sources.balance.text, 3, 3, &diag);

    let node_doc = node_file.parse();
    let world_doc = world_file.parse();
    let balance_doc = balance_file.parse();

    let overrides = node::env_overrides(&node_file, &env);
    let node = node_doc
        .as_ref()
        .and_then(|doc| node::read(&node_file, doc, &overrides));
    let (balance, index) = match &balance_doc {
        Some(doc) => {
            let (balance, index) = balance::read(&balance_file, doc);
            (balance, Some(index))
        }
        None => (None, None),
    };
    let world = world_doc
        .as_ref()
        .and_then(|doc| world::read(&world_file, doc, index.as_ref()));

    if diag.is_empty()
        && let (Some(node), Some(world), Some(balance)) = (node, world, balance)
    {
        return Ok(Config {
            node,
            world,
            balance,
        });
    }
    let (mut errors, n_dropped) = diag.into_sorted();
    if errors.is_empty() {
        // Every rejected value reports an error; this is a loader bug, but it must not
        // let a partial configuration through.
        errors.push(ConfigError::new(
            sources.tessera.name,
            0,
            0,
            "configuration incomplete (loader bug: no error was reported)",
        ));
    }
    let n_hidden = errors.len().saturating_sub(ERRORS_SHOWN_MAX) + n_dropped;
    errors.truncate(ERRORS_SHOWN_MAX);
    if n_hidden > 0 {
        errors.push(ConfigError::new(
            "tessera config",
            0,
            0,
            format!("{n_hidden} more errors not shown"),
        ));
    }
    Err(ConfigErrors(errors))
}

/// Loads `dir` like [`load_dir`] and summarises it (for `tessera check-config`).
pub fn check_dir(dir: &Path) -> Result<ConfigSummary, ConfigErrors> {
    load_dir(dir).map(|config| ConfigSummary::of(&config))
}

/// A short description of a loaded configuration; `Display` prints three lines.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ConfigSummary {
    /// `[node] name`.
    pub node_name: String,
    /// `[node] mode`.
    pub mode: NodeMode,
    /// `[net] quic_listen`.
    pub quic_listen: std::net::SocketAddr,
    /// `[net] admin_listen`.
    pub admin_listen: std::net::SocketAddr,
    /// `[world] name`.
    pub world_name: String,
    /// `[world] size_m`.
    pub world_size_m: Vec2,
    /// `[world] tick_hz`.
    pub tick_hz: u32,
    /// `[grid] cell_size_m`.
    pub cell_size_m: f32,
    /// Number of regions.
    pub n_regions: usize,
    /// Number of archetypes.
    pub n_archetypes: usize,
    /// Number of spawn tables.
    pub n_spawn_tables: usize,
    /// Fewest NPCs any region keeps.
    pub npcs_per_region_min: u64,
    /// Most NPCs any region keeps.
    pub npcs_per_region_max: u64,
    /// NPCs of all regions together.
    pub npcs_total: u64,
}

impl ConfigSummary {
    /// Summarises `config`.
    pub fn of(config: &Config) -> ConfigSummary {
        let per_region: Vec<u64> = config
            .world
            .regions
            .iter()
            .map(|r| {
                config
                    .balance
                    .spawn_tables
                    .get(r.spawn_table)
                    .map_or(0, |t| t.entries.iter().map(|e| u64::from(e.count)).sum())
            })
            .collect();
        ConfigSummary {
            node_name: config.node.name.clone(),
            mode: config.node.mode,
            quic_listen: config.node.quic_listen,
            admin_listen: config.node.admin_listen,
            world_name: config.world.name.clone(),
            world_size_m: config.world.size_m,
            tick_hz: config.world.tick_hz,
            cell_size_m: config.world.cell_size_m,
            n_regions: config.world.regions.len(),
            n_archetypes: config.balance.archetypes.len(),
            n_spawn_tables: config.balance.spawn_tables.len(),
            npcs_per_region_min: per_region.iter().copied().min().unwrap_or(0),
            npcs_per_region_max: per_region.iter().copied().max().unwrap_or(0),
            npcs_total: per_region.iter().sum(),
        }
    }
}

impl fmt::Display for ConfigSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            NodeMode::Dev => "dev",
            NodeMode::Production => "production",
        };
        writeln!(
            f,
            "node {:?} ({mode} mode): QUIC {}, admin {}",
            self.node_name, self.quic_listen, self.admin_listen
        )?;
        writeln!(
            f,
            "world {:?}: {} x {} m, {} Hz, {} m grid cells, {} region{}",
            self.world_name,
            self.world_size_m.x,
            self.world_size_m.y,
            self.tick_hz,
            self.cell_size_m,
            self.n_regions,
            plural(self.n_regions as u64)
        )?;
        let npcs = if self.npcs_per_region_min == self.npcs_per_region_max {
            self.npcs_per_region_max.to_string()
        } else {
            format!(
                "{} to {}",
                self.npcs_per_region_min, self.npcs_per_region_max
            )
        };
        write!(
            f,
            "balance: {} archetype{}, {} spawn table{}, {npcs} NPCs per region ({} in total)",
            self.n_archetypes,
            plural(self.n_archetypes as u64),
            self.n_spawn_tables,
            plural(self.n_spawn_tables as u64),
            self.npcs_total
        )
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `[node] name`: 1 to [`NAME_CHARS_MAX`] of `[A-Za-z0-9_.-]`.
fn is_node_name(s: &str) -> bool {
    (1..=NAME_CHARS_MAX).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Archetype and spawn-table names: 1 to [`NAME_CHARS_MAX`] of `[A-Za-z0-9_-]`.
fn is_key_name(s: &str) -> bool {
    (1..=NAME_CHARS_MAX).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// `[world] name`: 1 to [`NAME_CHARS_MAX`] characters, no control characters.
fn is_display_name(s: &str) -> bool {
    (1..=NAME_CHARS_MAX).contains(&s.chars().count()) && !s.chars().any(char::is_control)
}

#[cfg(test)]
mod tests;
