//! The deterministic cluster simulator: several nodes in one process, on one virtual clock,
//! with everything real but the IO edges, replayable from a seed (FoundationDB's
//! simulation testing, TigerBeetle's VOPR).
//!
//! Each node is a real [`Driver`](crate::node::Driver) stepping real regions, joined to a
//! real [`Ledger`](tessera_cluster::Ledger). What a production node does over the network
//! the simulator does itself, at moments a seeded random source picks:
//! - the ledgers' IO actions run against the in-process stores
//!   ([`LocalBus`](tessera_persistence::local_bus::LocalBus),
//!   [`LocalLeases`](tessera_persistence::lease::LocalLeases),
//!   [`LocalLocations`](tessera_persistence::location::LocalLocations), all on the
//!   virtual clock), through the same glue as production
//!   ([`crate::cluster::io`]), each delayed (reordering them), some failed before they
//!   run, some run with their answer lost;
//! - player saves and loads go to an in-memory player store, region snapshots to an
//!   in-memory snapshot store behind the real epoch fence
//!   ([`check_fence`](tessera_persistence::snapshot::check_fence));
//! - scripted players ([`clients`]) log in (claim, load, join, as `net::session` does),
//!   walk across borders, follow redirects, log out, drop their connection, give up on
//!   slow logins, and log in on other nodes;
//! - faults ([`nodes`]): a node killed (losing everything not durable) and restarted,
//!   paused past its leases and resumed, and an orchestrator that gives every unheld
//!   region to a live node.
//!
//! After every step the invariants of RELIABILITY.md are checked ([`checks`]): a node
//! steps only regions whose lease it holds; each player is in the world at most once
//! (exactly once at rest, on the node its client is connected to); no acknowledged logout
//! is lost; snapshots never go backwards and no stale epoch is accepted; no handoff is
//! applied twice. A violation returns the seed, the virtual time and the last events;
//! running the seed again replays the identical run (the trace hash says so).

mod checks;
mod clients;
mod nodes;
mod world;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub use world::{Rng, without_npcs};

use clients::Client;
use nodes::SimNode;
use world::World;

/// What a run simulates.
#[derive(Clone, Debug)]
pub struct Options {
    /// The seed: every random choice of the run comes from it.
    pub seed: u64,
    /// Nodes (none: 2 to 5, from the seed).
    pub nodes: Option<usize>,
    /// Scripted players.
    pub players: usize,
    /// Virtual time with faults.
    pub chaos: Duration,
    /// Virtual time after it, without faults, for everything to settle: then every player
    /// must be in the world exactly once.
    pub settle: Duration,
    /// Whether to inject faults (kills, pauses, failed and slow IO).
    pub faults: bool,
    /// Print every event to stderr as it happens (`CLUSTER_SIM_TRACE=1`).
    pub trace: bool,
}

impl Options {
    /// The defaults for `seed`: 12 players, 40 s of faults, 50 s to settle.
    pub fn new(seed: u64) -> Options {
        Options {
            seed,
            nodes: None,
            players: 12,
            chaos: Duration::from_secs(40),
            settle: Duration::from_secs(50),
            faults: true,
            trace: std::env::var_os("CLUSTER_SIM_TRACE").is_some(),
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// Nodes.
    pub nodes: usize,
    /// Node ticks.
    pub ticks: u64,
    /// Handoffs between nodes (published), and stale ones refused.
    pub handoffs: u64,
    /// Stale handoffs refused.
    pub stale: u64,
    /// Logins that joined.
    pub logins: u64,
    /// Logouts acknowledged (their state durable).
    pub logouts: u64,
    /// Nodes killed.
    pub kills: u64,
    /// Nodes paused past their leases.
    pub pauses: u64,
    /// IO operations carried out, and failed.
    pub io: u64,
    /// IO operations failed (before or after they ran).
    pub io_failed: u64,
    /// Snapshot commits refused by the epoch fence.
    pub fenced: u64,
    /// A hash of every event: two runs of one seed have the same.
    pub trace: u64,
}

/// An invariant broken.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The seed that reproduces it.
    pub seed: u64,
    /// Virtual time into the run.
    pub at: Duration,
    /// What broke.
    pub what: String,
    /// The last events before it.
    pub recent: Vec<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "seed {} at {:.3} s: {}",
            self.seed,
            self.at.as_secs_f64(),
            self.what
        )?;
        writeln!(f, "last events:")?;
        for event in &self.recent {
            writeln!(f, "  {event}")?;
        }
        write!(
            f,
            "replay: tessera sim-cluster --seed {} (or CLUSTER_SIM_SEED={} cargo test cluster_sim)",
            self.seed, self.seed
        )
    }
}

impl Outcome {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Outcome) {
        self.nodes += other.nodes;
        self.ticks += other.ticks;
        self.handoffs += other.handoffs;
        self.stale += other.stale;
        self.logins += other.logins;
        self.logouts += other.logouts;
        self.kills += other.kills;
        self.pauses += other.pauses;
        self.io += other.io;
        self.io_failed += other.io_failed;
        self.fenced += other.fenced;
    }
}

/// Many runs: how many, how fast, their totals and their violations.
#[derive(Clone, Debug, Default)]
pub struct Soak {
    /// Seeds run.
    pub seeds: u64,
    /// Wall-clock time they took.
    pub elapsed: Duration,
    /// Their counts, added up.
    pub totals: Outcome,
    /// Every violation found.
    pub violations: Vec<Violation>,
}

impl std::fmt::Display for Soak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let t = &self.totals;
        write!(
            f,
            "{} seeds in {secs:.1} s ({:.2} seeds/s), {} violations; {} node ticks, {} handoffs between nodes ({} stale refused), {} logins, {} acknowledged logouts, {} kills, {} pauses, {} IO operations ({} failed), {} snapshot commits fenced",
            self.seeds,
            self.seeds as f64 / secs,
            self.violations.len(),
            t.ticks,
            t.handoffs,
            t.stale,
            t.logins,
            t.logouts,
            t.kills,
            t.pauses,
            t.io,
            t.io_failed,
            t.fenced,
        )
    }
}

/// Runs `base` for each of `seeds`, calling `each` after every run; stops at the first
/// violation if `stop` says so.
pub fn soak(
    seeds: impl IntoIterator<Item = u64>,
    base: &Options,
    stop: bool,
    mut each: impl FnMut(&Result<Outcome, Violation>),
) -> Soak {
    let started = Instant::now();
    let mut soak = Soak::default();
    for seed in seeds {
        let result = run(&Options {
            seed,
            ..base.clone()
        });
        soak.seeds += 1;
        each(&result);
        match result {
            Ok(outcome) => soak.totals.add(&outcome),
            Err(violation) => {
                soak.violations.push(violation);
                if stop {
                    break;
                }
            }
        }
    }
    soak.elapsed = started.elapsed();
    soak
}

/// The simulation step: every node's ledger, IO and clients move at most this far apart.
const STEP: Duration = Duration::from_millis(5);
/// Events kept for a violation's report.
const RECENT_MAX: usize = 60;

/// Runs one simulation (on one thread: the nodes' parallel steps run inline, which is
/// faster for regions this small and keeps the run on one core).
pub fn run(options: &Options) -> Result<Outcome, Violation> {
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .thread_name(|_| "tessera-sim-cluster".into())
        .build();
    let mut sim = Sim::new(options);
    // The caller's log subscriber follows the run onto the pool's thread.
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    match one_thread {
        Ok(pool) => pool.install(|| tracing::dispatcher::with_default(&dispatch, || sim.run())),
        Err(_) => sim.run(),
    }
}

/// A run in progress.
struct Sim {
    options: Options,
    world: World,
    nodes: Vec<SimNode>,
    clients: Vec<Client>,
    outcome: Outcome,
    recent: VecDeque<String>,
    /// Each handoff applied, by the holding (region, epoch) that applied it.
    applied: std::collections::BTreeMap<
        tessera_shared::ids::HandoffId,
        (tessera_shared::ids::RegionId, u64),
    >,
}

impl Sim {
    fn new(options: &Options) -> Sim {
        let mut rng = Rng::new(options.seed);
        let n_nodes = options.nodes.unwrap_or_else(|| 2 + rng.below(4) as usize);
        let world = World::new(rng);
        let nodes = (0..n_nodes).map(|i| SimNode::new(i, &world)).collect();
        let clients = (0..options.players)
            .map(|i| Client::new(i, &world))
            .collect();
        Sim {
            options: options.clone(),
            world,
            nodes,
            clients,
            outcome: Outcome {
                seed: options.seed,
                nodes: n_nodes,
                ..Outcome::default()
            },
            recent: VecDeque::with_capacity(RECENT_MAX),
            applied: std::collections::BTreeMap::new(),
        }
    }

    fn run(&mut self) -> Result<Outcome, Violation> {
        let end = self.options.chaos + self.options.settle;
        while self.world.elapsed() < end {
            let settling = self.world.elapsed() >= self.options.chaos;
            let now = self.world.advance(STEP);
            self.step(now, settling)
                .map_err(|what| self.violation(what))?;
        }
        self.check_at_rest().map_err(|what| self.violation(what))?;
        self.outcome.trace = self.world.trace();
        for node in &self.nodes {
            if let Some(stats) = node.ledger_stats() {
                self.outcome.handoffs += stats.handoffs_out;
                self.outcome.stale += stats.handoffs_stale;
            }
        }
        self.outcome.handoffs += self.world.retired.handoffs_out;
        self.outcome.stale += self.world.retired.handoffs_stale;
        for client in &self.clients {
            self.outcome.logins += client.logins;
            self.outcome.logouts += client.logouts;
        }
        Ok(self.outcome.clone())
    }

    /// One step of virtual time: faults, the orchestrator, IO, node ticks, clients, checks.
    fn step(&mut self, now: Instant, settling: bool) -> Result<(), String> {
        if self.options.faults && !settling {
            self.inject_faults(now);
        } else if settling {
            self.heal(now);
        }
        self.orchestrate(now);
        self.run_io(now)?;
        let mut ticked = false;
        for i in 0..self.nodes.len() {
            if self.nodes[i].tick_due(now) {
                let applied = self.nodes[i].tick(&mut self.world, now);
                self.outcome.ticks += 1;
                for &(region, epoch, id) in &applied {
                    self.note(format!(
                        "n{i} region {} (epoch {epoch}) applied handoff {} (from region {}, epoch {})",
                        region.0,
                        id.0,
                        id.0 >> 40,
                        (id.0 >> 24) & 0xffff
                    ));
                }
                self.check_node_tick(i, now, &applied)?;
                ticked = true;
            }
            self.nodes[i].pump(&mut self.world, now);
        }
        for c in 0..self.clients.len() {
            let events = self.clients[c].step(&mut self.nodes, &mut self.world, now, settling)?;
            for event in events {
                self.note(event);
            }
        }
        // Avatars appear only at a tick (and lapsing leases only take regions away).
        if ticked {
            self.check_once(now)?;
        }
        Ok(())
    }

    /// Records an event in the trace and the recent list.
    fn note(&mut self, event: String) {
        self.world.hash_event(&event);
        if self.options.trace {
            eprintln!("{:9.3} {event}", self.world.elapsed().as_secs_f64());
        }
        if self.recent.len() == RECENT_MAX {
            self.recent.pop_front();
        }
        self.recent.push_back(format!(
            "{:9.3} {event}",
            self.world.elapsed().as_secs_f64()
        ));
    }

    fn violation(&self, what: String) -> Violation {
        Violation {
            seed: self.options.seed,
            at: self.world.elapsed(),
            what,
            recent: self.recent.iter().cloned().collect(),
        }
    }
}
