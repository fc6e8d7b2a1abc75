//! Helpers shared by the test modules.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera::regions::Region;
use tessera::regions::io::{Join, SavedPlayer, SessionEvent, TickInput};
use tessera::shared::config::{Archetype, Config, RegionDef};
use tessera::shared::ids::PlayerId;
use tessera::shared::math::Vec2;

/// The embedded default config with no NPC population and one extra archetype, `statue`:
/// never moves, never attacks, never heals; handy for placing exact test fixtures.
pub(crate) fn quiet_config() -> (Config, u16) {
    let mut config = Config::embedded_default();
    for table in &mut config.balance.spawn_tables {
        for entry in &mut table.entries {
            entry.count = 0;
        }
    }
    let mut statue: Archetype = config.balance.archetypes[0].clone();
    statue.name = "statue".into();
    statue.hostile = false;
    statue.speed_mps = 0.0;
    statue.wander_radius_m = 0.0;
    statue.aggro_radius_m = 0.0;
    statue.regen_per_s = 0.0;
    config.balance.archetypes.push(statue);
    let statue_idx = (config.balance.archetypes.len() - 1) as u16;
    (config, statue_idx)
}

/// The first region of `config`.
pub(crate) fn first_region(config: &Config) -> RegionDef {
    config.world.regions[0].clone()
}

/// A region of `config` (the first one), stepped once so that it is initialised.
pub(crate) fn region(config: Config) -> Region {
    let config = Arc::new(config);
    let def = first_region(&config);
    let mut region = Region::new(&def, config, 1).expect("valid test region");
    region.step(TickInput::default());
    region
}

/// Joins `player` at `position` (with full health) and steps one tick.
pub(crate) fn join_at(region: &mut Region, player: PlayerId, position: Vec2) {
    let mut input = TickInput::default();
    input.sessions.push(SessionEvent::Join(Join {
        player,
        saved: Some(SavedPlayer {
            position,
            health: 100.0,
        }),
    }));
    let out = region.step(input);
    assert!(
        out.refused_joins.is_empty(),
        "join refused: {:?}",
        out.refused_joins
    );
}

/// `prefix_PID_N`: a name no other test of this run (or a concurrent run) uses, for temp
/// dirs and databases.
pub(crate) fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A region id no other test of this run (or an earlier run against the same Redis)
/// uses, for tests that share a service.
pub(crate) fn fresh_region() -> tessera::shared::ids::RegionId {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(7_919) ^ N.fetch_add(1, Ordering::Relaxed);
    tessera::shared::ids::RegionId(seed % tessera::shared::ids::RegionId::MAX)
}

/// A player id no other test of this run (or an earlier run against the same Redis) uses,
/// for tests that share a service.
pub(crate) fn fresh_player() -> tessera::shared::ids::PlayerId {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let seed = nanos ^ (u64::from(std::process::id()) << 40);
    tessera::shared::ids::PlayerId(
        seed.wrapping_add(N.fetch_add(1, Ordering::Relaxed)) % tessera::shared::ids::PlayerId::MAX,
    )
}

/// A two-worker tokio runtime for tests of async stores and buses.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The test services (`./scripts/test.sh` starts them and exports their URIs).
pub(crate) mod services {
    /// Whether this run is CI, where a missing service is a failure, never a skip.
    pub(crate) fn in_ci() -> bool {
        std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
    }

    fn service(var: &str, what: &str, test: &str) -> Option<String> {
        match std::env::var(var) {
            Ok(value) if !value.is_empty() => Some(value),
            _ if in_ci() => panic!(
                "{test}: CI is set but {var} is not: run the suite with ./scripts/test.sh, \
                 which starts {what}"
            ),
            _ => {
                eprintln!(
                    "SKIPPED {test}: {var} is not set (run ./scripts/test.sh to start {what})"
                );
                None
            }
        }
    }

    /// The MongoDB URI, or `None` (the test skips, saying so) outside CI.
    pub(crate) fn mongo_uri(test: &str) -> Option<String> {
        service("TESSERA_TEST_MONGO_URI", "a MongoDB-wire server", test)
    }

    /// The MongoDB-wire server's binary, for tests that run (and stop) one of their own, or
    /// `None` (the test skips, saying so) outside CI.
    pub(crate) fn mongo_bin(test: &str) -> Option<String> {
        service("TESSERA_TEST_MONGO_BIN", "a MongoDB-wire server", test)
    }

    /// The Redis URL, or `None` (the test skips, saying so) outside CI.
    pub(crate) fn redis_url(test: &str) -> Option<String> {
        service("TESSERA_TEST_REDIS_URL", "Redis", test)
    }
}

/// Set in the environment of a re-executed test binary that is to be a node.
const NODE_PROCESS: &str = "TESSERA_TEST_NODE_PROCESS";

/// Not a test: the entry point of the node processes tests start (the kill test, the JSON log test), by running
/// this test binary again with [`NODE_PROCESS`] set (the `tessera` binary belongs to
/// another package, so cargo does not build it for these tests). Without the variable it
/// returns at once.
#[test]
fn node_process() {
    if std::env::var_os(NODE_PROCESS).is_none() {
        return;
    }
    tessera_server::cli::init_tracing();
    let code = tessera_server::cli::run(
        ["tessera", "serve"],
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    std::process::exit(if code == std::process::ExitCode::SUCCESS {
        0
    } else {
        1
    });
}

/// This test binary, re-executed as `tessera serve` (see [`node_process`]) on data dir
/// `dir` with free ports, its stderr piped (read it with [`Log`]).
pub(crate) fn node_command(dir: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "util::node_process", "--nocapture"])
        .env(NODE_PROCESS, "1")
        .env("TESSERA__NODE__DATA_DIR", dir)
        .env("TESSERA__NET__QUIC_LISTEN", "127.0.0.1:0")
        .env("TESSERA__NET__ADMIN_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    command
}

/// A child's stderr, line by line, read on a thread of its own.
pub(crate) struct Log {
    lines: std::sync::mpsc::Receiver<String>,
}

impl Log {
    pub(crate) fn of(child: &mut std::process::Child) -> Log {
        use std::io::BufRead;
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Log { lines }
    }

    /// The first `found` of a line within `timeout`.
    pub(crate) fn find<T>(
        &self,
        timeout: Duration,
        mut found: impl FnMut(&str) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            if let Some(value) = found(&line) {
                return Some(value);
            }
        }
    }
}
