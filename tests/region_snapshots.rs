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

const PLAYERS: usize = 40;

/// Inputs for every bot: a random walk, attacking whatever it saw enter its view.
fn inputs(bots: &mut ScriptedPlayers, tick: u64, out: &TickOutput) -> TickInput {
    let mut input = TickInput::default();
    let targets: Vec<NetId> = out
        .interest
        .observers
        .iter()
        .flat_map(|d| out.interest.entered(d).iter().map(|v| v.id))
        .collect();
    for idx in 0..bots.len() {
        let mut i: PlayerInput = bots.input(idx, tick, 0.4, None, &[], 0.0);
        i.attack = targets
            .get((idx + tick as usize) % targets.len().max(1))
            .copied();
        input.inputs.push(i);
    }
    input
}

/// The default world's first region, busy for `ticks` ticks with bots that walk, fight
/// and die, capturing every `every` ticks into `stored` (as a store would apply them);
/// then the bots log out and one last capture is taken.
fn busy_region(
    ticks: u64,
    every: u64,
    stored: &mut BTreeMap<u32, Vec<u8>>,
) -> (Region, Vec<SnapshotDelta>) {
    let config = Arc::new(Config::embedded_default());
    let def = config.world.regions[0].clone();
    let mut region = Region::new(&def, config, 11).unwrap();
    let mut bots = ScriptedPlayers::new(PLAYERS, 1, 11);
    let mut input = TickInput::default();
    input.sessions = bots
        .players()
        .map(|player| {
            SessionEvent::Join(Join {
                player,
                saved: None,
            })
        })
        .collect();
    let mut deltas = Vec::new();
    for tick in 1..=ticks {
        let out = region.step(input);
        input = inputs(&mut bots, tick, out);
        if tick % every == 0 {
            let delta = region.capture_snapshot();
            apply_delta(stored, delta.clone());
            deltas.push(delta);
        }
    }
    let mut leave = TickInput::default();
    leave.sessions = bots.players().map(SessionEvent::Leave).collect();
    region.step(leave);
    region.step(TickInput::default());
    assert_eq!(region.counts().players, 0);
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
