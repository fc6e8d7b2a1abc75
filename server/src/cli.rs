//! The `tessera` command line, as a library function so that tests can run it in-process
//! and check its exit code and output.

use crate::serve::{ServeOptions, run_node};
use crate::sim::{SimOptions, run_sim};
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tessera_shared::config;

/// Tessera: an authoritative region simulation server for MMO-style games.
#[derive(Parser, Debug)]
#[command(name = "tessera", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(missing_docs)] // clap uses the doc comments as help text.
enum Command {
    /// Run a node: every region of the world, ticking at the configured rate.
    Serve {
        /// Config directory (tessera.toml, world.toml, balance.toml). Default: the
        /// embedded default world.
        #[arg(long, env = "TESSERA_CONFIG")]
        config: Option<PathBuf>,
        /// Stop after this many ticks (default: run until killed).
        #[arg(long)]
        ticks: Option<u64>,
        /// Seed of the regions' random number generators.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Run the world headless and unpaced with scripted players; print tick timings,
    /// entity counts and the final world hash.
    Sim {
        /// Ticks to simulate.
        #[arg(long, default_value_t = 600)]
        ticks: u64,
        /// Seed of the regions and the scripted players.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Scripted players, spread over the regions.
        #[arg(long, default_value_t = 200)]
        players: usize,
        /// Config directory. Default: the embedded default world.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Rayon threads stepping regions (default: from tessera.toml, 0 = one per core).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Run the deterministic cluster simulator: several nodes in one process on a virtual
    /// clock, with kills, pauses and failed IO from a seed, every invariant checked after
    /// every step. Exits non-zero on a violation, printing its seed and last events.
    SimCluster {
        /// Replay this one seed (with its events printed: --trace).
        #[arg(long, conflicts_with_all = ["seeds", "from"])]
        seed: Option<u64>,
        /// Seeds to run.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// The first seed.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Nodes (default: 2 to 5, from the seed).
        #[arg(long)]
        nodes: Option<usize>,
        /// Scripted players.
        #[arg(long, default_value_t = 12)]
        players: usize,
        /// Print every event of each run.
        #[arg(long)]
        trace: bool,
        /// Go on after a violation (report them all at the end).
        #[arg(long)]
        keep_going: bool,
    },
    /// Mint a dev login token for a player name (signed with the dev secret in the data
    /// dir, generated if absent).
    Token {
        /// The player's display name; the player id is derived from it.
        #[arg(long)]
        player: String,
        /// Config directory. Default: the embedded default world.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl_s: u64,
    },
    /// Make an admin API key: print the key (give it to its holder) and its entry for
    /// `[admin] keys_file` (which holds only the key's hash). With `--dev`, print the
    /// dev admin key of the data dir instead (generated if absent; dev mode only).
    AdminKey {
        /// Who holds it (shown in the audit log): 1 to 64 of A-Z a-z 0-9 _ . -
        #[arg(long, default_value = "operator")]
        name: String,
        /// `viewer`, `orchestrator` or `admin`.
        #[arg(long, default_value = "viewer", value_parser = parse_role)]
        role: crate::admin::keys::Role,
        /// Print the dev admin key of the config's data dir.
        #[arg(long)]
        dev: bool,
        /// Config directory (for `--dev`: its data dir). Default: the embedded default.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run many QUIC clients against a node and print a summary.
    Bots {
        /// How many.
        #[arg(long, default_value_t = 200)]
        count: usize,
        /// The node's QUIC address.
        #[arg(long, default_value = "127.0.0.1:4433")]
        addr: std::net::SocketAddr,
        /// How long: `30s`, `2m`, `500ms`, or seconds.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        duration: std::time::Duration,
        /// The node's data dir (its dev certificate and token secret).
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand, Debug)]
#[allow(missing_docs)]
enum ConfigCommand {
    /// Validate a config directory: print every error (file:line:col) and exit 1, or a
    /// summary and exit 0.
    Check {
        /// The directory holding tessera.toml, world.toml and balance.toml.
        #[arg(default_value = "config")]
        dir: PathBuf,
    },
}

/// Parses `args` (the first is the program name) and runs the command, writing its report
/// to `out` and its errors to `err`. Never panics on bad arguments or files: clap's own
/// messages go to `err` with exit code 2.
pub fn run<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let text = e.render().to_string();
            let _ = if e.use_stderr() {
                write!(err, "{text}")
            } else {
                write!(out, "{text}")
            };
            return ExitCode::from(code);
        }
    };
    match execute(cli, out, err) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check { dir },
        } => match config::check_dir(&dir) {
            Ok(summary) => {
                writeln!(out, "{}: ok\n{summary}", dir.display())?;
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                writeln!(err, "{errors}")?;
                writeln!(err, "{}: {} error(s)", dir.display(), errors.0.len())?;
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Sim {
            ticks,
            seed,
            players,
            config,
            threads,
        } => {
            let config = load_config(config.as_deref())?;
            let threads = threads.unwrap_or(config.node.sim_threads as usize);
            let pool = crate::serve::sim_pool(threads)?;
            let options = SimOptions {
                ticks,
                seed,
                players,
            };
            let report = pool.install(|| run_sim(config, &options))?;
            writeln!(out, "{report}")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::SimCluster {
            seed,
            seeds,
            from,
            nodes,
            players,
            trace,
            keep_going,
        } => {
            let mut options = crate::cluster_sim::Options::new(0);
            options.nodes = nodes;
            options.players = players;
            options.trace = options.trace || trace || seed.is_some();
            let range: Vec<u64> = match seed {
                Some(seed) => vec![seed],
                None => (from..from.saturating_add(seeds)).collect(),
            };
            // The nodes' own logs (leases lost, handoffs retried: the faults at work) would
            // drown the report; the runs' events are printed with --trace.
            let quiet = tracing::subscriber::NoSubscriber::default();
            let soak = tracing::subscriber::with_default(quiet, || {
                crate::cluster_sim::soak(range, &options, !keep_going, |result| {
                    if let Err(violation) = result {
                        let _ = writeln!(err, "{violation}");
                    }
                })
            });
            writeln!(out, "{soak}")?;
            Ok(if soak.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Serve {
            config,
            ticks,
            seed,
        } => {
            let config_dir = config.clone();
            let config = load_config(config.as_deref())?;
            run_node(
                config,
                &ServeOptions {
                    ticks,
                    seed,
                    config_dir,
                },
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bots {
            count,
            addr,
            duration,
            data_dir,
        } => {
            let options = crate::bots::BotsOptions {
                count,
                addr,
                duration,
                data_dir,
                progress: true,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the bots' runtime")?;
            let report = runtime.block_on(crate::bots::run_bots(&options))?;
            writeln!(out, "{report}")?;
            Ok(if report.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::AdminKey {
            name,
            role,
            dev,
            config,
        } => {
            if dev {
                let config = load_config(config.as_deref())?;
                anyhow::ensure!(
                    config.node.mode == config::NodeMode::Dev
                        && config.node.admin.keys_file.is_none(),
                    "--dev: the config names an [admin] keys_file or is in production mode; there is no dev admin key"
                );
                writeln!(
                    out,
                    "{}",
                    crate::admin::keys::dev_admin_key(&config.node.data_dir)?
                )?;
                return Ok(ExitCode::SUCCESS);
            }
            let (key, entry) = crate::admin::keys::new_key(&name, role)?;
            // Checked like the node will check it.
            crate::admin::keys::ApiKeys::parse(&entry)?;
            writeln!(
                out,
                "key (give it to {name}; it is not stored anywhere):
{key}
"
            )?;
            writeln!(
                out,
                "entry for [admin] keys_file:
{entry}"
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            player,
            config,
            ttl_s,
        } => {
            let config = load_config(config.as_deref())?;
            let secret = crate::auth::signing_secret(&config.node)?;
            let claims = crate::auth::claims_for(
                &player,
                &config.node.auth.issuer,
                &config.node.auth.audience,
                crate::auth::unix_now_s(),
                ttl_s,
            );
            writeln!(out, "{}", crate::auth::mint(&secret, &claims))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); one JSON object per line
/// (with the current span's fields) if `TESSERA_LOG_FORMAT=json`.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("TESSERA_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().with_current_span(true).init();
    } else {
        builder.init();
    }
}

fn parse_role(text: &str) -> Result<crate::admin::keys::Role, String> {
    use crate::admin::keys::Role;
    match text {
        "viewer" => Ok(Role::Viewer),
        "orchestrator" => Ok(Role::Orchestrator),
        "admin" => Ok(Role::Admin),
        other => Err(format!("{other:?}: expected viewer, orchestrator or admin")),
    }
}

/// The config in `dir`, or the embedded default world.
fn load_config(dir: Option<&Path>) -> anyhow::Result<Arc<config::Config>> {
    let config = match dir {
        Some(dir) => config::load_dir(dir).map_err(|errors| {
            anyhow::anyhow!("invalid configuration in {}:\n{errors}", dir.display())
        })?,
        None => {
            tracing::info!("no --config given: using the embedded default world");
            // The embedded files are known good; only TESSERA__* overrides can fail here.
            config::process_env()
                .and_then(|env| config::load_strs(&config::ConfigSources::embedded(), env))
                .map_err(|errors| {
                    anyhow::anyhow!(
                        "invalid environment override of the embedded config:\n{errors}"
                    )
                })?
        }
    };
    Ok(Arc::new(config))
}

/// `30s`, `2m`, `500ms` or plain seconds.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 2m or 500ms"))?;
    match unit {
        "ms" => Ok(std::time::Duration::from_millis(n)),
        "s" => Ok(std::time::Duration::from_secs(n)),
        "m" => Ok(std::time::Duration::from_secs(n.saturating_mul(60))),
        _ => Err(format!("unknown unit {unit:?}; use ms, s or m")),
    }
}
