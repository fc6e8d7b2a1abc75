//! The `tessera` command line, as a library function so that tests can run it in-process
//! and check its exit code and output.

use crate::serve::{ServeOptions, run_node};
use crate::settings::NodeArgs;
use crate::sim::{SimOptions, run_sim};
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tessera_shared::config;

/// Tessera: an authoritative region server for MMO-style games.
#[derive(Parser, Debug)]
#[command(
    name = "tessera",
    version,
    about,
    after_help = "Examples:
  tessera serve                              a node on the embedded default world
  tessera serve --config config/             a node on a config directory
  tessera bots --count 200 --duration 30s    load-test the node running here
  tessera token --player ada                 a login token for the node running here
  tessera config check config/               validate a config directory
  tessera sim --ticks 600 --seed 7           the world headless, timed

Commands that talk to a node (bots, token, admin-key --dev) read its settings like the
node does: --config DIR (or TESSERA_CONFIG), TESSERA__SECTION__KEY overrides, and
--data-dir DIR; run them in the node's directory or pass those flags."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(missing_docs)] // clap uses the doc comments as help text.
enum Command {
    /// Run a node: every region of the world, ticking at the configured rate.
    ///
    /// Without --config it runs the embedded default world (no Redis, no MongoDB needed),
    /// its data (dev certificate, dev secrets, embedded store) in ./data.
    #[command(after_help = "Examples:
  tessera serve
  tessera serve --config config/ --data-dir /var/lib/tessera
  TESSERA__NET__QUIC_LISTEN=0.0.0.0:4433 tessera serve --config /etc/tessera")]
    Serve {
        #[command(flatten)]
        node: NodeArgs,
        /// Stop after this many ticks (default: run until killed).
        #[arg(long)]
        ticks: Option<u64>,
        /// Seed of the regions' random number generators.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Run the world headless and unpaced with scripted players; print tick timings,
    /// entity counts and the final world hash.
    #[command(after_help = "Examples:
  tessera sim --ticks 600 --seed 7
  tessera sim --config my-config/ --players 1000 --threads 1")]
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
    #[command(after_help = "Examples:
  tessera sim-cluster --seeds 1000
  tessera sim-cluster --seed 6774            replay one seed, every event printed")]
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
    /// Mint a login token for a player name, signed with the node's HS256 secret
    /// (`[auth] key_file`, or the dev secret in the node's data dir).
    #[command(after_help = "Examples:
  tessera token --player ada
  tessera token --player ada --ttl-s 600 --data-dir /var/lib/tessera/data")]
    Token {
        /// The player's display name; the player id is derived from it.
        #[arg(long)]
        player: String,
        #[command(flatten)]
        node: NodeArgs,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl_s: u64,
    },
    /// Make an admin API key: print the key (give it to its holder) and its entry for
    /// `[admin] keys_file` (which holds only the key's hash). With `--dev`, print the
    /// dev admin key of the node's data dir instead (dev mode only).
    #[command(after_help = "Examples:
  tessera admin-key --name ops --role admin
  tessera admin-key --dev
  curl -H \"Authorization: Bearer $(tessera admin-key --dev)\" 127.0.0.1:8080/v1/regions")]
    AdminKey {
        /// Who holds it (shown in the audit log): 1 to 64 of A-Z a-z 0-9 _ . -
        #[arg(long, default_value = "operator")]
        name: String,
        /// `viewer`, `orchestrator` or `admin`.
        #[arg(long, default_value = "viewer", value_parser = parse_role)]
        role: crate::admin::keys::Role,
        /// Print the dev admin key of the node's data dir.
        #[arg(long)]
        dev: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Run many QUIC clients against a running node and print a summary.
    ///
    /// Run it where the node runs (it reads the node's settings: the QUIC address and
    /// the data dir holding the dev certificate to pin and the dev token secret), or
    /// point it there with --config, --data-dir and --addr.
    #[command(after_help = "Examples:
  tessera bots --count 200 --duration 30s
  tessera bots --count 1000 --ramp 20s --regions spread --duration 2m
  tessera bots --json --duration 10s > bots.json
  tessera bots --addr 10.0.0.5:4433 --data-dir /srv/tessera/data")]
    Bots {
        /// How many bots, 1 to 5000.
        #[arg(long, default_value_t = 200)]
        count: usize,
        /// The node's QUIC address. Default: `[net] quic_listen` of the node's settings
        /// (on loopback if the node listens on every address).
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
        /// How long they play: `30s`, `2m`, `500ms`, or seconds.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        duration: std::time::Duration,
        /// Start the bots evenly over this long instead of all at once.
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        ramp: std::time::Duration,
        /// Where new bots start: `first` (the first region) or `spread` (round robin over
        /// the world's regions).
        #[arg(long, default_value = "first", value_parser = parse_spread)]
        regions: crate::bots::Spread,
        /// Print the summary as one JSON object (for CI and scripts).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Balance tools for designers.
    Balance {
        #[command(subcommand)]
        command: BalanceCommand,
    },
}

#[derive(Subcommand, Debug)]
#[allow(missing_docs)]
enum ConfigCommand {
    /// Validate a config directory: print every error (file:line:col) and exit 1, or a
    /// summary and exit 0.
    #[command(after_help = "Example:
  tessera config check config/")]
    Check {
        /// The directory holding tessera.toml, world.toml and balance.toml.
        #[arg(default_value = "config")]
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
#[allow(missing_docs)]
enum BalanceCommand {
    /// What a balance means in play, from the server's own formulas: for each pair of
    /// archetypes that can fight, damage per hit, damage per second, hits and time to
    /// kill (cooldowns and regen included); and deaths and kills by archetype over a
    /// seeded headless sim. With --against, both configs and the difference, changed
    /// rows marked with *.
    #[command(after_help = "Examples:
  tessera balance report --config config/
  tessera balance report --config config/ --against /tmp/wolf-buff/
  tessera balance report --against other/ --ticks 6000 --seed 7 --json")]
    Report {
        /// Config directory. Default: the embedded default world.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A second config directory to compare with.
        #[arg(long)]
        against: Option<PathBuf>,
        /// Seed of the sim (regions and scripted players).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Ticks of the sim.
        #[arg(long, default_value_t = crate::balance_report::TICKS_DEFAULT)]
        ticks: u64,
        /// Scripted players in the sim.
        #[arg(long, default_value_t = crate::balance_report::PLAYERS_DEFAULT)]
        players: usize,
        /// Print JSON instead of text tables.
        #[arg(long)]
        json: bool,
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
        // The reader went away (`| head`): nothing more to say, and nobody to say it to.
        Err(e)
            if e.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
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
        } if !dir.is_dir() => {
            writeln!(
                err,
                "{}: no such directory; give the directory holding tessera.toml, world.toml \
                 and balance.toml (the repository's is config/)",
                dir.display()
            )?;
            Ok(ExitCode::FAILURE)
        }
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
        Command::Balance {
            command:
                BalanceCommand::Report {
                    config,
                    against,
                    seed,
                    ticks,
                    players,
                    json,
                },
        } => {
            let options = crate::balance_report::ReportOptions {
                seed,
                ticks,
                players,
            };
            let comparison = crate::balance_report::run(
                config.as_deref(),
                against.as_deref(),
                &options,
                crate::settings::load_config,
            )?;
            if json {
                writeln!(out, "{:#}", comparison.to_json())?;
            } else {
                write!(out, "{comparison}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Sim {
            ticks,
            seed,
            players,
            config,
            threads,
        } => {
            let config = Arc::new(crate::settings::load_config(config.as_deref())?);
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
        Command::Serve { node, ticks, seed } => {
            let settings = node.resolve()?;
            run_node(
                settings.config,
                &ServeOptions {
                    ticks,
                    seed,
                    config_dir: settings.config_dir,
                },
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bots {
            count,
            addr,
            duration,
            ramp,
            regions,
            json,
            node,
        } => {
            let settings = node.resolve()?;
            let node_config = &settings.config.node;
            let cert = settings.node_file(crate::net::tls::DEV_CERT_FILE, "dev certificate")?;
            let cert =
                std::fs::read(&cert).with_context(|| format!("reading {}", cert.display()))?;
            if node_config.auth.key_file.is_none() {
                settings.node_file(crate::auth::DEV_SECRET_FILE, "dev token secret")?;
            }
            let secret = crate::auth::signing_secret(node_config)?;
            anyhow::ensure!(
                (1..=crate::bots::BOTS_MAX).contains(&count),
                "--count {count}: between 1 and {}",
                crate::bots::BOTS_MAX
            );
            let options = crate::bots::BotsOptions {
                count,
                addr: addr.unwrap_or_else(|| {
                    crate::settings::local_address(settings.config.node.quic_listen)
                }),
                duration,
                ramp,
                spread: regions,
                regions: settings.config.world.regions.iter().map(|r| r.id).collect(),
                cert,
                secret,
                issuer: node_config.auth.issuer.clone(),
                audience: node_config.auth.audience.clone(),
                progress: if json {
                    crate::bots::Progress::None
                } else if std::io::stderr().is_terminal() {
                    crate::bots::Progress::Bar
                } else {
                    crate::bots::Progress::Lines
                },
                state_budget_kbit_per_s: Some(node_config.state_budget.kbit_per_s),
                trade: true,
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the bots' runtime")?;
            let report = runtime.block_on(crate::bots::run_bots(&options))?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                writeln!(out, "{report}")?;
            }
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
            node,
        } => {
            if dev {
                let settings = node.resolve()?;
                let config = &settings.config;
                anyhow::ensure!(
                    config.node.mode == config::NodeMode::Dev
                        && config.node.admin.keys_file.is_none(),
                    "--dev: the config names an [admin] keys_file or is in production mode; there is no dev admin key"
                );
                let path =
                    settings.node_file(crate::admin::keys::DEV_ADMIN_KEY_FILE, "dev admin key")?;
                let key = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                writeln!(out, "{}", key.trim())?;
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
            node,
            ttl_s,
        } => {
            let settings = node.resolve()?;
            let config = &settings.config;
            if config.node.auth.key_file.is_none() {
                settings.node_file(crate::auth::DEV_SECRET_FILE, "dev token secret")?;
            }
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
/// (with the current span's fields) if `TESSERA_LOG_FORMAT=json`. Colours only on a
/// terminal, and never with `NO_COLOR` set (<https://no-color.org>): a log file or a
/// pipe gets plain text.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if std::env::var("TESSERA_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().with_current_span(true).init();
    } else {
        builder.init();
    }
}

fn parse_spread(text: &str) -> Result<crate::bots::Spread, String> {
    match text {
        "first" => Ok(crate::bots::Spread::First),
        "spread" => Ok(crate::bots::Spread::RoundRobin),
        other => Err(format!("{other:?}: expected first or spread")),
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
