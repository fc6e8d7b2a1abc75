//! What the nodes share: the virtual clock, the seeded random source, the in-process
//! stores (bus, leases, locations; players and region snapshots in memory), and the queue
//! of operations in flight between the nodes and the stores.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tessera_cluster::{Answer, IoAction, LedgerStats};
use tessera_persistence::bus::{BusConfig, Delivery};
use tessera_persistence::clock::Clock;
use tessera_persistence::lease::LocalLeases;
use tessera_persistence::local_bus::LocalBus;
use tessera_persistence::location::LocalLocations;
use tessera_persistence::snapshot::check_fence;
use tessera_regions::io::SavedPlayer;
use tessera_regions::snapshot::SnapshotDelta;
use tessera_shared::config::{Config, ConfigSources, load_strs};
use tessera_shared::ids::{PlayerId, RegionId};

use crate::cluster::LOCATION_TTL;
use crate::players::SaveRequest;

/// SplitMix64: small, fast, and the same on every machine.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// Uniform in `lo..hi`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_micros() as u64;
        lo + Duration::from_micros(self.below(span.max(1)))
    }
}

/// The simulated world: a strip of four regions, 30 m wide each, no NPCs (only the
/// players move), at 10 Hz. Small enough that players cross a border every few seconds.
fn config() -> Config {
    let shipped = ConfigSources::embedded();
    let world = shipped
        .world
        .text
        .replace(
            "size_m = { x = 2048, y = 2048 }",
            "size_m = { x = 120, y = 32 }",
        )
        .replace("tick_hz = 20", "tick_hz = 10")
        .replace("columns = 2", "columns = 4")
        .replace("rows = 2", "rows = 1");
    let balance = without_npcs(shipped.balance.text);
    let sources = ConfigSources::new(shipped.tessera.text, &world, &balance);
    match load_strs(&sources, std::iter::empty()) {
        Ok(config) => config,
        Err(errors) => panic!("the simulator's world must load:\n{errors}"),
    }
}

/// `balance.toml`'s text with every spawn table's counts at 0: a world where only players
/// move (the simulator's, and the crash test's). Only spawn entries (`{ archetype = ..,
/// count = N }`) change; other counts (the starter kit's items) keep their values.
pub fn without_npcs(balance: &str) -> String {
    balance
        .lines()
        .map(|line| match line.find("count = ") {
            Some(at) if line.contains("archetype = ") => {
                let rest = &line[at + "count = ".len()..];
                let digits = rest.chars().take_while(char::is_ascii_digit).count();
                format!("{}count = 0{}", &line[..at], &rest[digits..])
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// How an operation fares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fault {
    /// It runs, its answer arrives.
    None,
    /// It fails before it runs (the store never sees it).
    Fail,
    /// It runs, and its answer is lost (the caller sees a failure).
    Lost,
}

/// Something in flight: scheduled for a moment of virtual time.
#[derive(Debug)]
pub(super) enum Item {
    /// A ledger's IO action reaches the stores (it left its process: it gets there even if
    /// the process dies or freezes meanwhile).
    Exec {
        node: usize,
        incarnation: u64,
        action: IoAction<Delivery>,
        fault: Fault,
    },
    /// Work inside a node's process: lost if the process dies, held while it is paused.
    Process {
        node: usize,
        incarnation: u64,
        work: Work,
    },
}

/// Work inside a node's process.
#[derive(Debug)]
pub(super) enum Work {
    /// An IO answer reaches the ledger.
    Answer(Answer<Delivery>),
    /// A player save is written (the node's writer, in order).
    Save(SaveRequest),
    /// A login's load of its player is read.
    Load { token: u64, player: PlayerId },
    /// A region snapshot commit is sent to the store (the node's writer, in order).
    Commit {
        region: RegionId,
        epoch: u64,
        delta: SnapshotDelta,
    },
}

/// A region's committed snapshot.
#[derive(Debug, Default)]
pub(super) struct Stored {
    pub(super) epoch: u64,
    pub(super) tick: u64,
    pub(super) cells: BTreeMap<u32, Vec<u8>>,
}

pub(super) struct World {
    pub(super) rng: Rng,
    pub(super) clock: Clock,
    start: Instant,
    pub(super) config: Arc<Config>,
    pub(super) bus: LocalBus,
    pub(super) leases: LocalLeases,
    pub(super) locations: LocalLocations,
    pub(super) snapshots: BTreeMap<RegionId, Stored>,
    /// Durable player states.
    pub(super) players: BTreeMap<PlayerId, SavedPlayer>,
    /// The state each player's last logout save wrote (for acknowledged logouts).
    pub(super) logout_saves: BTreeMap<PlayerId, SavedPlayer>,
    /// Load results, by token.
    pub(super) loads: BTreeMap<u64, Option<SavedPlayer>>,
    next_token: u64,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    items: BTreeMap<u64, Item>,
    next_seq: u64,
    /// Whether IO is slowed and failed at random.
    pub(super) faults: bool,
    trace: u64,
    /// What ledgers of killed incarnations counted.
    pub(super) retired: LedgerStats,
    /// Commits the fence refused.
    pub(super) fenced: u64,
}

impl World {
    pub(super) fn new(rng: Rng) -> World {
        let start = Instant::now();
        let clock = Clock::manual(start);
        let leases = LocalLeases::with_clock(clock.clone());
        let locations = LocalLocations::new(leases.clone(), LOCATION_TTL, clock.clone());
        // Redelivered after 5 s unacknowledged (production: 30 s): more duplicates.
        let bus_config = BusConfig {
            reclaim_idle: Duration::from_secs(5),
            ..BusConfig::default()
        };
        World {
            rng,
            clock: clock.clone(),
            start,
            config: Arc::new(config()),
            bus: LocalBus::with_clock(bus_config, clock),
            leases,
            locations,
            snapshots: BTreeMap::new(),
            players: BTreeMap::new(),
            logout_saves: BTreeMap::new(),
            loads: BTreeMap::new(),
            next_token: 1,
            queue: BinaryHeap::new(),
            items: BTreeMap::new(),
            next_seq: 0,
            faults: true,
            trace: 0xcbf2_9ce4_8422_2325,
            retired: LedgerStats::default(),
            fenced: 0,
        }
    }

    pub(super) fn now(&self) -> Instant {
        self.clock.now()
    }

    pub(super) fn elapsed(&self) -> Duration {
        self.now() - self.start
    }

    pub(super) fn advance(&mut self, by: Duration) -> Instant {
        self.clock.advance(by);
        self.now()
    }

    /// Schedules `item` at `at`.
    pub(super) fn schedule(&mut self, at: Instant, item: Item) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Reverse((at, seq)));
        self.items.insert(seq, item);
    }

    /// The next item due at `now`, if any (in order of time, then scheduling).
    pub(super) fn due(&mut self, now: Instant) -> Option<Item> {
        let Reverse((at, seq)) = *self.queue.peek()?;
        if at > now {
            return None;
        }
        self.queue.pop();
        self.items.remove(&seq)
    }

    /// A network and store delay: mostly short, sometimes long (with faults on).
    pub(super) fn latency(&mut self) -> Duration {
        let ms = Duration::from_millis;
        if !self.faults {
            return self.rng.between(ms(1), ms(6));
        }
        match self.rng.below(100) {
            0..=84 => self.rng.between(ms(1), ms(10)),
            85..=97 => self.rng.between(ms(10), ms(250)),
            _ => self.rng.between(ms(250), ms(2_500)),
        }
    }

    /// How an operation fares (with faults on: 3 % fail before running, 2 % run and lose
    /// their answer).
    pub(super) fn fault(&mut self) -> Fault {
        if !self.faults {
            return Fault::None;
        }
        match self.rng.below(100) {
            0..=2 => Fault::Fail,
            3..=4 => Fault::Lost,
            _ => Fault::None,
        }
    }

    pub(super) fn token(&mut self) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        token
    }

    /// Commits `delta` of `region` under `epoch` behind the epoch fence: `Err` if fenced.
    pub(super) fn commit(
        &mut self,
        region: RegionId,
        epoch: u64,
        delta: SnapshotDelta,
    ) -> Result<(), String> {
        let stored = self.snapshots.entry(region).or_default();
        if let Err(e) = check_fence(stored.epoch, stored.tick, epoch, delta.tick) {
            self.fenced += 1;
            return Err(e.to_string());
        }
        stored.epoch = epoch;
        stored.tick = delta.tick;
        tessera_regions::snapshot::apply_delta(&mut stored.cells, delta);
        Ok(())
    }

    /// Mixes `event` into the trace hash (FNV-1a).
    pub(super) fn hash_event(&mut self, event: &str) {
        for byte in event.bytes().chain(std::iter::once(0)) {
            self.trace ^= u64::from(byte);
            self.trace = self.trace.wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub(super) fn trace(&self) -> u64 {
        self.trace
    }
}

/// Runs a future of an in-process store to completion: they never wait on anything, so
/// one poll finishes them.
pub(super) fn at_once<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("an in-process store waited on something"),
    }
}

/// The answer of `action` had it failed, or `None` for an action without one.
pub(super) fn failed(action: &IoAction<Delivery>) -> Option<Answer<Delivery>> {
    let e = || "simulated failure".to_owned();
    Some(match action {
        IoAction::Claim { op, .. } => Answer::Claim(*op, Err(e())),
        IoAction::HandOver { op, .. } => Answer::HandOver(*op, Err(e())),
        IoAction::Publish { op, .. } => Answer::Publish(*op, Err(e())),
        IoAction::Receive { op, .. } => Answer::Receive(*op, Err(e())),
        IoAction::Accepts { op, .. } => Answer::Accepts(*op, Err(e())),
        IoAction::Adopt { op, .. } => Answer::Adopt(*op, Err(e())),
        IoAction::Renew { op, .. } => Answer::Renew(*op, Err(e())),
        IoAction::Directory { op, .. } => Answer::Directory(*op, Err(e())),
        IoAction::Release { op, .. }
        | IoAction::Refresh { op, .. }
        | IoAction::Advertise { op, .. } => Answer::Done(*op, Err(e())),
        IoAction::Ack { .. } | IoAction::ReleaseLease { .. } => return None,
    })
}
