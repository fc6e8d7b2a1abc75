//! Hot reload of `balance.toml`: designers' edits take effect without a restart.
//!
//! A reload (from the file watch or `POST /v1/config/reload`) loads the whole config
//! directory again, exactly as at start (same environment overrides), and takes only its
//! balance: `tessera.toml` and `world.toml` are fixed for the node's life (a changed
//! `world.toml` refuses the reload: the two would disagree; a changed `tessera.toml` is
//! reported and left for a restart). The new balance must keep the archetypes and spawn
//! tables the running world refers to by index (names and order); everything else
//! (stats, speeds, cooldowns, formulas, spawn counts) may change. The driver swaps it in
//! between two ticks, so every region runs each tick wholly on one balance. A refused file
//! changes nothing: the running config stays, and `/readyz` shows why. An applied one
//! reports what changed, one line per value (`archetypes.wolf.max_health 40 -> 55`,
//! [`config::diff_balance`]), in its reply, its log line, its audit record and `/readyz`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tessera_shared::config::{self, Config};
use tokio::sync::mpsc;

use crate::node::ActionError;

/// How long the file watch waits for writes to settle before reloading (editors save in
/// several steps, some by rename).
pub const WATCH_DEBOUNCE: Duration = Duration::from_millis(500);
/// File-change notices queued for the reload task; more while one is queued are merged.
const WATCH_QUEUE_LEN_MAX: usize = 1;
/// Most changes one reload reports (replies, `/readyz`, logs); beyond it, one last line
/// counts the rest. `GET /v1/config/balance` shows the whole running balance.
pub const RELOAD_CHANGES_MAX: usize = 200;

/// Where the running config came from, to load it again.
#[derive(Clone, Debug)]
pub struct ReloadSource {
    /// The config directory.
    pub dir: PathBuf,
    /// The environment overrides it was loaded with.
    pub env: Vec<(String, String)>,
}

/// A balance ready to apply.
#[derive(Debug)]
pub struct Reloaded {
    /// The running config with the new balance.
    pub config: Arc<Config>,
    /// What changed from the running balance, one line per value (at most
    /// [`RELOAD_CHANGES_MAX`], then a line counting the rest).
    pub changes: Vec<String>,
    /// What the reload did not apply (a changed `tessera.toml`).
    pub notes: Vec<String>,
}

impl ReloadSource {
    /// The config in the directory again, as a new balance for `running`; or why not.
    pub fn load(&self, running: &Config) -> Result<Reloaded, ReloadError> {
        let new = config::load_dir_with_env(&self.dir, self.env.clone())
            .map_err(|errors| ReloadError::Invalid(errors.to_string()))?;
        compatible(running, &new).map_err(ReloadError::Incompatible)?;
        let mut notes = Vec::new();
        if new.node != running.node {
            notes.push("tessera.toml changed: restart the node to apply it".to_owned());
        }
        let changes = change_lines(&config::diff_balance(&running.balance, &new.balance));
        Ok(Reloaded {
            config: Arc::new(Config {
                node: running.node.clone(),
                world: running.world.clone(),
                balance: new.balance,
            }),
            changes,
            notes,
        })
    }

    /// The `balance.toml` being watched.
    pub fn balance_file(&self) -> PathBuf {
        self.dir.join("balance.toml")
    }
}

/// `changes` as lines, at most [`RELOAD_CHANGES_MAX`] and then one counting the rest.
fn change_lines(changes: &[config::Change]) -> Vec<String> {
    let mut lines: Vec<String> = changes
        .iter()
        .take(RELOAD_CHANGES_MAX)
        .map(ToString::to_string)
        .collect();
    if changes.len() > RELOAD_CHANGES_MAX {
        lines.push(format!(
            "... and {} more changes",
            changes.len() - RELOAD_CHANGES_MAX
        ));
    }
    lines
}

/// Why a reload was refused (the running config is kept).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The files do not load: every error, with its file, line and column.
    #[error("{0}")]
    Invalid(String),
    /// They load, but their balance does not fit the running world.
    #[error("{0}")]
    Incompatible(String),
}

/// Whether `new`'s balance can replace `running`'s in a running world.
fn compatible(running: &Config, new: &Config) -> Result<(), String> {
    if new.world != running.world {
        return Err(
            "world.toml changed: restart the node to apply it (balance.toml not applied)".into(),
        );
    }
    let names = |c: &Config| -> Vec<String> {
        c.balance
            .archetypes
            .iter()
            .map(|a| a.name.clone())
            .collect()
    };
    if names(new) != names(running) {
        return Err(format!(
            "balance.toml: the archetypes must stay the same while the world runs (entities refer to them); running: {}; new: {}",
            names(running).join(", "),
            names(new).join(", ")
        ));
    }
    if new.balance.player_archetype != running.balance.player_archetype {
        return Err("balance.toml: [player] archetype cannot change while the world runs".into());
    }
    let tables = |c: &Config| -> Vec<String> {
        c.balance
            .spawn_tables
            .iter()
            .map(|t| t.name.clone())
            .collect()
    };
    if tables(new) != tables(running) {
        return Err(format!(
            "balance.toml: the spawn tables must stay the same while the world runs (regions refer to them); running: {}; new: {}",
            tables(running).join(", "),
            tables(new).join(", ")
        ));
    }
    Ok(())
}

/// A running file watch; dropping it stops the watch.
pub type Watch = notify_debouncer_full::Debouncer<
    notify::RecommendedWatcher,
    notify_debouncer_full::RecommendedCache,
>;

/// Watches `file` and sends a notice (merged while one waits) for each settled change.
pub fn watch(file: &Path) -> anyhow::Result<(Watch, mpsc::Receiver<()>)> {
    use notify::RecursiveMode;
    use notify_debouncer_full::new_debouncer;
    let (tx, rx) = mpsc::channel(WATCH_QUEUE_LEN_MAX);
    let name = file.file_name().map(|n| n.to_owned());
    let mut debouncer = new_debouncer(
        WATCH_DEBOUNCE,
        None,
        move |events: notify_debouncer_full::DebounceEventResult| {
            // Only what changes the file: a read (an access, or the access time it sets)
            // is no change, and reloading on it would read the file again, forever.
            let ours = match events {
                Ok(events) => events
                    .iter()
                    .filter(|e| changes_content(&e.kind))
                    .flat_map(|e| e.paths.iter())
                    .any(|p| p.file_name() == name.as_deref()),
                Err(_) => false,
            };
            if ours {
                // Full: a reload is already queued, and it will read the newest file.
                let _ = tx.try_send(());
            }
        },
    )?;
    // The directory, not the file: an editor's save-by-rename replaces the file.
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    debouncer.watch(dir, RecursiveMode::NonRecursive)?;
    Ok((debouncer, rx))
}

/// Whether a file event may have changed the file's content: created, removed, renamed or
/// written (not read, not a metadata change such as an access time).
fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    use notify::event::ModifyKind;
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

/// A hash of a file's bytes (`None`: unreadable), to tell a real change from a rewrite of
/// the same content.
fn content_hash(file: &Path) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let bytes = std::fs::read(file).ok()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some(hasher.finish())
}

/// The outcome of the last balance reload, for `/readyz`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReloadOutcome {
    /// Whether it was applied.
    pub applied: bool,
    /// Why it was refused (`None` when applied).
    pub error: Option<String>,
    /// Seconds since the Unix epoch.
    pub at_unix_s: u64,
    /// What it changed, one line per value (empty when refused, or nothing differed).
    pub changes: Vec<String>,
    /// What it did not apply (a changed `tessera.toml`).
    pub notes: Vec<String>,
}

/// An applied reload, as `POST /v1/config/reload` answers it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    /// Always `true` (a refused reload is an error).
    pub applied: bool,
    /// The first tick that runs on the new balance.
    pub from_tick: u64,
    /// What changed, one line per value (see [`Reloaded::changes`]).
    pub changes: Vec<String>,
    /// What was not applied (a changed `tessera.toml`).
    pub notes: Vec<String>,
}

/// The balance the node runs, and where and when it came from.
#[derive(Clone, Debug)]
pub struct Running {
    /// The running config (its balance is the one in force).
    pub config: Arc<Config>,
    /// When it was loaded: at start, or by the last applied reload (seconds since the
    /// Unix epoch).
    pub loaded_at_unix_s: u64,
    /// The first tick on it, if a reload applied it (`None`: loaded at start).
    pub from_tick: Option<u64>,
}

/// Carries out reloads: loads, checks, hands the balance to the driver, and keeps the
/// outcome (the last one and the counts, for `/readyz` and metrics) and logs it. One at a
/// time.
#[derive(Debug)]
pub struct Reloader {
    source: Option<ReloadSource>,
    /// Held through a reload, so that reloads go one at a time.
    reloading: tokio::sync::Mutex<()>,
    /// Never held across an await: reads (`GET /v1/config/balance`) do not wait for a
    /// reload in progress.
    running: std::sync::Mutex<Running>,
    node: crate::node::NodeHandle,
    last: std::sync::Mutex<Option<ReloadOutcome>>,
    applied: AtomicU64,
    refused: AtomicU64,
    /// The hash of `balance.toml` as last loaded (at start, or by the last reload).
    loaded: std::sync::Mutex<Option<u64>>,
}

impl Reloader {
    /// Reloads from `source` (none: the embedded default, which has no file to reload)
    /// into the driver behind `node`, which runs `running`.
    pub fn new(
        source: Option<ReloadSource>,
        running: Arc<Config>,
        node: crate::node::NodeHandle,
    ) -> Reloader {
        Reloader {
            reloading: tokio::sync::Mutex::new(()),
            running: std::sync::Mutex::new(Running {
                config: running,
                loaded_at_unix_s: crate::auth::unix_now_s(),
                from_tick: None,
            }),
            node,
            last: std::sync::Mutex::new(None),
            applied: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            loaded: std::sync::Mutex::new(
                source
                    .as_ref()
                    .and_then(|s| content_hash(&s.balance_file())),
            ),
            source,
        }
    }

    /// The reload source, if any.
    pub fn source(&self) -> Option<&ReloadSource> {
        self.source.as_ref()
    }

    /// The running balance, and when it was loaded.
    pub fn running(&self) -> Running {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The file the balance is reloaded from (`None`: the embedded default).
    pub fn balance_file(&self) -> Option<PathBuf> {
        self.source.as_ref().map(ReloadSource::balance_file)
    }

    /// The last reload's outcome, if any.
    pub fn last(&self) -> Option<ReloadOutcome> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether `balance.toml` differs from what was last loaded (the file watch reloads
    /// only then: a save of the same content, or a touch, changes nothing).
    pub fn changed_on_disk(&self) -> bool {
        let Some(source) = &self.source else {
            return false;
        };
        let now = content_hash(&source.balance_file());
        *self.loaded.lock().unwrap_or_else(|e| e.into_inner()) != now
    }

    /// Reloads applied and refused since the node started.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.applied.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }

    /// Reloads `balance.toml` now: applied at the next tick boundary, or refused with the
    /// running config kept.
    pub async fn reload(&self) -> Result<Applied, ActionError> {
        let Some(source) = &self.source else {
            return Err(ActionError::Conflict(
                "this node runs the embedded default config: start it with --config DIR to reload DIR/balance.toml".into(),
            ));
        };
        let _one_at_a_time = self.reloading.lock().await;
        *self.loaded.lock().unwrap_or_else(|e| e.into_inner()) =
            content_hash(&source.balance_file());
        let running = self.running().config;
        let outcome = match source.load(&running) {
            Err(error) => Err(ActionError::Unprocessable(error.to_string())),
            Ok(reloaded) => {
                let action = crate::node::AdminAction::Reload {
                    config: reloaded.config.clone(),
                };
                self.node.ask(action).await.map(|reply| {
                    let from_tick = reply["from_tick"].as_u64().unwrap_or_default();
                    *self.running.lock().unwrap_or_else(|e| e.into_inner()) = Running {
                        config: reloaded.config,
                        loaded_at_unix_s: crate::auth::unix_now_s(),
                        from_tick: Some(from_tick),
                    };
                    Applied {
                        applied: true,
                        from_tick,
                        changes: reloaded.changes,
                        notes: reloaded.notes,
                    }
                })
            }
        };
        let counter = if outcome.is_ok() {
            &self.applied
        } else {
            &self.refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let (changes, notes) = match &outcome {
            Ok(applied) => (applied.changes.clone(), applied.notes.clone()),
            Err(_) => (Vec::new(), Vec::new()),
        };
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(ReloadOutcome {
            applied: outcome.is_ok(),
            error: outcome.as_ref().err().map(ToString::to_string),
            at_unix_s: crate::auth::unix_now_s(),
            changes,
            notes,
        });
        match &outcome {
            Ok(applied) => tracing::info!(
                from_tick = applied.from_tick,
                changes = %if applied.changes.is_empty() {
                    "none".to_owned()
                } else {
                    applied.changes.join("; ")
                },
                notes = %applied.notes.join("; "),
                "balance.toml reloaded"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "balance.toml reload refused; the running config is kept")
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(balance: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tessera-reload-{}-{}",
            std::process::id(),
            balance.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in [
            ("tessera.toml", include_str!("../../config/tessera.toml")),
            ("world.toml", include_str!("../../config/world.toml")),
            ("balance.toml", balance),
        ] {
            std::fs::write(dir.join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn a_new_formula_is_taken_and_an_incompatible_balance_refused() {
        let running = Config::embedded_default();
        let shipped = include_str!("../../config/balance.toml");
        let source = |balance: &str| ReloadSource {
            dir: dir_with(balance),
            env: Vec::new(),
        };
        // The damage formula changes: taken.
        let edited = shipped.replacen("damage = ", "damage = \"7\"\n# was: damage = ", 1);
        let reloaded = source(&edited).load(&running).unwrap();
        assert!(reloaded.notes.is_empty(), "{:?}", reloaded.notes);
        assert_eq!(
            reloaded.changes,
            ["formulas.damage \"max(1, atk * (1 + level * 0.1) - def)\" -> \"7\""]
        );
        assert_eq!(reloaded.config.world, running.world);
        // Broken: the loader's errors, with positions.
        let broken = shipped.replacen("damage = ", "damage = \"pow(2)\"\n# was: damage = ", 1);
        let err = source(&broken).load(&running).unwrap_err();
        assert!(matches!(err, ReloadError::Invalid(_)), "{err:?}");
        let err = err.to_string();
        assert!(
            err.contains("balance.toml:") && err.contains("pow"),
            "{err}"
        );
        // An archetype renamed: refused, saying why.
        let renamed = shipped.replacen("[archetypes.wolf]", "[archetypes.wolff]", 1);
        let renamed = renamed
            .replace("archetype = \"wolf\"", "archetype = \"wolff\"")
            .replace("[loot.wolf]", "[loot.wolff]");
        let err = source(&renamed).load(&running).unwrap_err();
        assert!(matches!(err, ReloadError::Incompatible(_)), "{err:?}");
        assert!(
            err.to_string().contains("archetypes must stay the same"),
            "{err}"
        );
    }

    /// A watch that took any event reloaded on its own reads of the file, forever.
    #[test]
    fn reading_the_file_is_no_change_and_the_same_content_is_not_reloaded() {
        let shipped = include_str!("../../config/balance.toml");
        let dir = dir_with(&format!("{shipped}\n# watch test\n"));
        let file = dir.join("balance.toml");
        let (_watch, mut notices) = watch(&file).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        for _ in 0..50 {
            let _ = std::fs::read_to_string(&file).unwrap();
        }
        std::thread::sleep(WATCH_DEBOUNCE * 4);
        assert!(notices.try_recv().is_err(), "a read is no change");
        // A write is.
        std::fs::write(&file, format!("{shipped}\n# changed\n")).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while notices.try_recv().is_err() {
            assert!(std::time::Instant::now() < deadline, "no notice of a write");
            std::thread::sleep(Duration::from_millis(50));
        }
        // The reload task then goes by content: the same bytes written again are no change.
        let (_driver, node) =
            crate::node::Driver::new(Arc::new(Config::embedded_default()), 1).unwrap();
        let source = ReloadSource {
            dir: dir.clone(),
            env: Vec::new(),
        };
        let reloader = Reloader::new(Some(source), Arc::new(Config::embedded_default()), node);
        assert!(!reloader.changed_on_disk());
        std::fs::write(&file, std::fs::read(&file).unwrap()).unwrap();
        assert!(!reloader.changed_on_disk(), "same content");
        std::fs::write(&file, format!("{shipped}\n# changed again\n")).unwrap();
        assert!(reloader.changed_on_disk());
        let _ = std::fs::remove_dir_all(dir);
    }
}
