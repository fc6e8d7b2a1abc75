//! Region snapshots from the simulation: incremental captures add up to the region, and a
//! region restored from them continues exactly as the original would.

use std::collections::BTreeMap;
use std::sync::Arc;
use tessera::regions::Region;
use tessera::regions::io::{Join, PlayerInput, SessionEvent, TickInput};
use tessera::regions::scripted::ScriptedPlayers;
use tessera::regions::snapshot::{META_CELL, SnapshotDelta, SnapshotError, apply_delta};
use tessera::regions::{RegionError, TickOutput};
use tessera::shared::config::Config;
use tessera::shared::ids::NetId;

use crate::util::{Log, node_command, runtime, services};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const PLAYERS: usize = 40;

/// Inputs for every bot: a random walk, attacking whatever it saw enter its view.
fn inputs(bots: &mut ScriptedPlayers, tick: u64, out: &TickOutput) -> TickInput {
    let mut input = TickInput::default();
    let targets: Vec<NetId> = out
        .interest
        .observers
        .iter()
        .flat_map(|d| out.interest.entered(d).map(|v| v.id))
        .collect();
    for idx in 0..bots.len() {
        let mut i: PlayerInput = bots.input(idx, tick, 0.4, None, std::iter::empty(), 0.0);
        i.attack = targets
            .get((idx + tick as usize) % targets.len().max(1))
            .copied();
        input.inputs.push(i);
    }
    input
}

/// Every bot joins (a fresh avatar at the spawn point).
fn joins(bots: &ScriptedPlayers) -> TickInput {
    TickInput {
        sessions: bots
            .players()
            .map(|player| {
                SessionEvent::Join(Join {
                    player,
                    saved: None,
                })
            })
            .collect(),
        ..TickInput::default()
    }
}

/// The default world's first region with bots that walk, fight and die.
struct Busy {
    region: Region,
    bots: ScriptedPlayers,
    input: TickInput,
}

impl Busy {
    fn new() -> Busy {
        let config = Arc::new(Config::embedded_default());
        let def = config.world.regions[0].clone();
        let region = Region::new(&def, config, 11).unwrap();
        let bots = ScriptedPlayers::new(PLAYERS, 1, 11);
        let input = joins(&bots);
        Busy {
            region,
            bots,
            input,
        }
    }

    fn step(&mut self) {
        let out = self.region.step(std::mem::take(&mut self.input));
        self.input = inputs(&mut self.bots, out.tick, out);
    }

    /// The bots log out.
    fn empty(mut self) -> Region {
        let leave = TickInput {
            sessions: self.bots.players().map(SessionEvent::Leave).collect(),
            ..TickInput::default()
        };
        self.region.step(leave);
        self.region.step(TickInput::default());
        assert_eq!(self.region.counts().players, 0);
        self.region
    }
}

/// A busy region for `ticks` ticks, capturing every `every` ticks into `stored` (as a
/// store would apply them); then the bots log out and one last capture is taken.
fn busy_region(
    ticks: u64,
    every: u64,
    stored: &mut BTreeMap<u32, Vec<u8>>,
) -> (Region, Vec<SnapshotDelta>) {
    let mut busy = Busy::new();
    let mut deltas = Vec::new();
    for tick in 1..=ticks {
        busy.step();
        if tick % every == 0 {
            let delta = busy.region.capture_snapshot();
            apply_delta(stored, delta.clone());
            deltas.push(delta);
        }
    }
    let mut region = busy.empty();
    let delta = region.capture_snapshot();
    apply_delta(stored, delta.clone());
    deltas.push(delta);
    (region, deltas)
}

#[test]
fn a_region_restored_from_its_incremental_snapshots_continues_identically() {
    let mut stored = BTreeMap::new();
    let (mut original, deltas) = busy_region(400, 25, &mut stored);
    // The captures must have been incremental for this to test dirty tracking: the later
    // ones wrote a fraction of the cells.
    let first = deltas[0].cells.len();
    let later: usize =
        deltas[1..].iter().map(|d| d.cells.len()).sum::<usize>() / (deltas.len() - 1);
    assert!(
        later < first,
        "later captures wrote {later} cells on average, the first {first}"
    );
    assert!(original.counts().entities > 100);

    let config = Arc::new(Config::embedded_default());
    let def = config.world.regions[0].clone();
    let (mut restored, stats) = Region::restore(&def, config, &stored).unwrap();
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.npcs, original.counts().entities);
    assert_eq!(restored.tick(), original.tick());
    assert_eq!(restored.world_hash(), original.world_hash());
    for tick in 0..300 {
        original.step(TickInput::default());
        restored.step(TickInput::default());
        assert_eq!(
            restored.world_hash(),
            original.world_hash(),
            "diverged {} ticks after the restore",
            tick + 1
        );
    }
}

#[test]
fn a_capture_with_nothing_changed_writes_only_the_region_state() {
    let mut stored = BTreeMap::new();
    let (mut region, _) = busy_region(60, 30, &mut stored);
    // No players: every NPC goes dormant within a few hundred ticks (it walks home first).
    for _ in 0..600 {
        region.step(TickInput::default());
    }
    region.capture_snapshot();
    region.step(TickInput::default());
    let delta = region.capture_snapshot();
    assert_eq!(
        delta.cells.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        vec![META_CELL],
        "{} cells rewritten",
        delta.cells.len()
    );
}

#[test]
fn a_restored_region_deletes_cells_it_no_longer_has() {
    let mut stored = BTreeMap::new();
    let (_, _) = busy_region(30, 30, &mut stored);
    // A cell written under another layout (the config's cell size changed since).
    stored.insert(900_000, stored.range(..META_CELL).next().unwrap().1.clone());
    let config = Arc::new(Config::embedded_default());
    let def = config.world.regions[0].clone();
    let (mut restored, stats) = Region::restore(&def, config, &stored).unwrap();
    // Its NPCs are the same ids as another cell's: restored once.
    assert!(stats.dropped > 0);
    let delta = restored.capture_snapshot();
    assert!(delta.cells.contains(&(900_000, None)));
    apply_delta(&mut stored, delta);
    assert!(!stored.contains_key(&900_000));
}

#[test]
fn corrupt_snapshots_are_refused_with_a_typed_error() {
    let mut stored = BTreeMap::new();
    busy_region(30, 30, &mut stored);
    let config = Arc::new(Config::embedded_default());
    let def = config.world.regions[0].clone();

    let mut no_meta = stored.clone();
    no_meta.remove(&META_CELL);
    assert!(matches!(
        Region::restore(&def, config.clone(), &no_meta),
        Err(RegionError::Snapshot(SnapshotError::MissingMeta))
    ));
    // Every truncation of the meta cell and of an NPC cell is an error, not a panic.
    let (&cell, npcs) = stored.range(..META_CELL).next().unwrap();
    for (key, bytes) in [
        (META_CELL, stored[&META_CELL].clone()),
        (cell, npcs.clone()),
    ] {
        for len in (0..bytes.len()).step_by(7) {
            let mut broken = stored.clone();
            broken.insert(key, bytes[..len].to_vec());
            assert!(
                matches!(
                    Region::restore(&def, config.clone(), &broken),
                    Err(RegionError::Snapshot(_))
                ),
                "cell {key} truncated to {len} bytes"
            );
        }
    }
}

#[test]
fn region_snapshots_wait_out_a_mongodb_outage_and_flush_after_it_with_no_loss() {
    use tessera::persistence::mongo::MongoStore;
    use tessera::persistence::node_store::NodeStore;
    use tessera::persistence::{SnapshotStore, StoreError};
    use tessera::shared::ids::RegionId;
    use tessera_server::snapshots::Snapshots;

    let Some(bin) = services::mongo_bin("region_snapshots::mongodb_outage") else {
        return;
    };
    let mut mongo = crate::private_mongo::PrivateMongo::start(&bin);
    let rt = runtime();
    let store = rt.block_on(async {
        NodeStore::mongo(MongoStore::connect(&mongo.uri(), "outage").await.unwrap())
    });
    let region = RegionId(1);
    let snapshots = {
        let _guard = rt.enter();
        Snapshots::start(store, BTreeMap::from([(region, 1)]), Vec::new())
    };
    let mut busy = Busy::new();
    let mut expected = BTreeMap::new();
    let capture = |busy: &mut Busy, expected: &mut BTreeMap<u32, Vec<u8>>| {
        let delta = busy.region.capture_snapshot();
        apply_delta(expected, delta.clone());
        snapshots.offer(region, delta);
    };
    for _ in 0..50 {
        busy.step();
    }
    capture(&mut busy, &mut expected);
    assert!(
        snapshots.flush_blocking(Duration::from_secs(30)),
        "first commit"
    );
    let full_bytes: usize = expected.values().map(Vec::len).sum();

    mongo.kill();
    // The region keeps ticking and capturing; offers never wait on the store.
    let tick_at_kill = busy.region.tick();
    for round in 1..=12 {
        for _ in 0..25 {
            busy.step();
        }
        capture(&mut busy, &mut expected);
        if round == 6 {
            // Let the writer find the store down.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !snapshots.stats.degraded.load(Ordering::Relaxed) {
                assert!(Instant::now() < deadline, "never reported degraded");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    assert_eq!(busy.region.tick(), tick_at_kill + 300);
    assert!(!snapshots.is_flushed());
    assert!(snapshots.stats.degraded.load(Ordering::Relaxed));
    // Twelve captures wait merged: bounded by the region's state, not by the outage.
    let waiting = snapshots.stats.outbox_bytes.load(Ordering::Relaxed);
    assert!(waiting > 0);
    assert!(
        waiting <= full_bytes * 2,
        "{waiting} bytes waiting for a region of {full_bytes}"
    );
    eprintln!(
        "region_snapshots::mongodb_outage: {waiting} bytes waiting after 12 captures (region state {full_bytes} bytes)"
    );

    mongo.restart();
    assert!(
        snapshots.flush_blocking(Duration::from_secs(60)),
        "not flushed after MongoDB came back"
    );
    assert!(!snapshots.stats.degraded.load(Ordering::Relaxed));
    let loaded = rt.block_on(async {
        let store = MongoStore::connect(&mongo.uri(), "outage").await.unwrap();
        store.load(region).await
    });
    let loaded: Result<_, StoreError> = loaded;
    let loaded = loaded.unwrap().expect("a snapshot");
    assert_eq!(loaded.tick, busy.region.tick());
    // 0 loss: exactly what the captures added up to, every cell.
    let differing: Vec<_> = expected
        .keys()
        .chain(loaded.cells.keys())
        .filter(|c| loaded.cells.get(c) != expected.get(c))
        .collect();
    assert!(
        differing.is_empty(),
        "cells {differing:?} differ from the captures ({} stored, {} expected)",
        loaded.cells.len(),
        expected.len()
    );
}

/// A region restored from a snapshot rewinds its handoff counter; with the new holding's
/// epoch its handoff ids still differ from every id the previous holding minted after
/// that snapshot (which the receivers' dedup would otherwise drop as already applied).
#[test]
fn a_restored_region_under_a_new_epoch_never_reissues_a_handoff_id() {
    let config = Arc::new(Config::embedded_default());
    let def = config.world.regions[0].clone();
    let to = config.world.regions[1].id;
    let mut busy = Busy::new();
    busy.region.set_epoch(1);
    for _ in 0..20 {
        busy.step();
    }
    let mut stored = BTreeMap::new();
    apply_delta(&mut stored, busy.region.capture_snapshot());
    // The first holding hands its players off after the snapshot, then dies.
    let first: Vec<_> = busy.region.evacuate(to).iter().map(|h| h.id).collect();
    assert_eq!(first.len(), PLAYERS);
    // Its successors restore the snapshot and the same players come back and leave again.
    let rejoin = |epoch: u64| {
        let (mut region, _) = Region::restore(&def, config.clone(), &stored).unwrap();
        region.set_epoch(epoch);
        region.step(joins(&busy.bots));
        region.evacuate(to).iter().map(|h| h.id).collect::<Vec<_>>()
    };
    let same_epoch = rejoin(1);
    assert_eq!(same_epoch.len(), PLAYERS);
    assert!(
        same_epoch.iter().any(|id| first.contains(id)),
        "the counter alone repeats ids (what the epoch is for)"
    );
    let next_epoch = rejoin(2);
    assert_eq!(next_epoch.len(), PLAYERS);
    assert!(
        next_epoch.iter().all(|id| !first.contains(id)),
        "{next_epoch:?} reissues one of {first:?}"
    );
}

#[test]
fn a_node_killed_with_sigkill_comes_back_from_its_last_committed_snapshot() {
    let dir = std::env::temp_dir().join(crate::util::unique("tessera-kill9"));
    let start = || {
        node_command(&dir)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .env("TESSERA__PERSISTENCE__SNAPSHOT_INTERVAL_S", "1")
            .spawn()
            .expect("tessera starts")
    };
    let mut node = start();
    let log = Log::of(&mut node);
    // A status line that reports committed snapshots.
    let committed = log.find(Duration::from_secs(60), |line| {
        field(line, "snapshot_tick").filter(|&tick| tick > 0)
    });
    node.kill().unwrap(); // SIGKILL: no shutdown flush.
    node.wait().unwrap();
    let committed = committed.expect("no committed snapshot reported within 60 s");

    let mut node = start();
    let log = Log::of(&mut node);
    let restored = log.find(Duration::from_secs(60), |line| {
        line.contains("regions restored from snapshots")
            .then(|| line.to_owned())
    });
    node.kill().unwrap();
    node.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let restored = restored.expect("no restore reported within 60 s");
    let regions = Config::embedded_default().world.regions.len() as u64;
    assert_eq!(field(&restored, "restored"), Some(regions), "{restored}");
    // At least as new as the last commit it reported before the kill.
    let tick = field(&restored, "tick").unwrap();
    assert!(
        tick >= committed,
        "restored at tick {tick}, committed {committed}: {restored}"
    );
    assert!(field(&restored, "npcs").unwrap() > 0, "{restored}");
}

/// The number in ` key=123` of a log line.
fn field(line: &str, key: &str) -> Option<u64> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}
