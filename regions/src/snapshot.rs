//! Region snapshots: a region's durable state, cut into square blocks of grid cells
//! ("snapshot cells") so that a flush rewrites only the cells that changed.
//!
//! What is saved: every NPC, in the snapshot cell of its position, and in [`META_CELL`]
//! the region-wide state that decides the future: tick, random stream position, id
//! counters, spawn bookkeeping and the recently applied handoffs. Player avatars are not:
//! a player's state belongs to the player store, and a restored region starts without
//! players (they come back by logging in, from their last durable save).
//!
//! The guarantee, tested: applying a region's [`SnapshotDelta`]s in order to an empty map
//! gives cells from which [`crate::Region::restore`] builds a region with the same
//! [`crate::Region::world_hash`] as the original at the last capture, as long as no player
//! was in it then (avatars and what they see are the only state left out).
//!
//! Dirty tracking costs nothing per tick. A capture has two halves: on the tick's thread,
//! [`crate::Region::capture_records`] walks the NPCs once, copying each with whether it
//! changed since the last capture (bevy's change ticks); anywhere else,
//! [`SnapshotEncoder::encode`] marks a cell dirty if one of its NPCs changed or its
//! membership changed (a fingerprint of the ids in it), and encodes only dirty cells.
//!
//! The encoding is little-endian, fixed width, versioned by its first byte
//! ([`FORMAT_VERSION`]), and decoded with every length and value checked: a corrupt
//! payload is a [`SnapshotError`], never a panic.

use std::collections::BTreeMap;
use tessera_shared::ids::NetId;
use tessera_shared::math::{Aabb, Vec2};

use crate::components::{AttackCooldown, Brain, Identity, Npc, Position, Velocity};

/// The first byte of every payload.
pub const FORMAT_VERSION: u8 = 1;
/// The cell index of the region-wide state.
pub const META_CELL: u32 = u32::MAX;
/// Snapshot cells are the smallest block of whole grid cells at least this wide: large
/// enough that a store document holds dozens of entities, small enough that a handful
/// of active players dirty a small part of the region.
pub const CELL_EDGE_M_MIN: f32 = 64.0;
/// Most snapshot cells a region is cut into (blocks grow beyond [`CELL_EDGE_M_MIN`] until
/// the region fits), so that one commit of every cell plus the meta cell stays within the
/// stores' per-commit limit of 65,536.
pub const SNAPSHOT_CELLS_MAX: u32 = 65_535;
/// Bytes of one encoded NPC.
pub const NPC_BYTES: usize = 58;

/// What one capture produced: the cells that changed since the previous capture.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotDelta {
    /// The region's tick at the capture.
    pub tick: u64,
    /// Changed cells, in index order, [`META_CELL`] last. `None` means the cell is now
    /// empty and its stored copy is to be deleted.
    pub cells: Vec<(u32, Option<Vec<u8>>)>,
}

impl SnapshotDelta {
    /// Payload bytes in the delta.
    pub fn bytes(&self) -> usize {
        self.cells
            .iter()
            .map(|(_, data)| data.as_ref().map_or(0, Vec::len))
            .sum()
    }
}

/// Applies `delta` to `cells`, as a store does: written cells replace, `None` deletes.
pub fn apply_delta(cells: &mut BTreeMap<u32, Vec<u8>>, delta: SnapshotDelta) {
    for (cell, data) in delta.cells {
        match data {
            Some(data) => cells.insert(cell, data),
            None => cells.remove(&cell),
        };
    }
}

/// Why stored cells could not be restored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// There is no [`META_CELL`].
    #[error("the snapshot has no region state (meta cell)")]
    MissingMeta,
    /// A payload of another format version.
    #[error("cell {cell}: format version {found}, this build reads {FORMAT_VERSION}")]
    Format {
        /// The cell.
        cell: u32,
        /// The version byte found.
        found: u8,
    },
    /// A payload that does not decode.
    #[error("cell {cell}: {what}")]
    Corrupt {
        /// The cell.
        cell: u32,
        /// What is wrong.
        what: String,
    },
}

/// What a restore did, beyond the errors it refuses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreStats {
    /// NPCs restored.
    pub npcs: usize,
    /// NPCs left out because the current config no longer fits them (an archetype that
    /// no longer exists, a position outside the region's current bounds) or because their
    /// id was already restored. Logged by the caller; the spawn tables refill.
    pub dropped: usize,
}

/// How a region is cut into snapshot cells.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CellLayout {
    origin: Vec2,
    edge_m: f32,
    cols: u32,
    rows: u32,
}

impl CellLayout {
    /// The layout for a region with `bounds` and grid cells of `grid_cell_m`.
    pub(crate) fn new(bounds: Aabb, grid_cell_m: f32) -> CellLayout {
        let size = bounds.max - bounds.min;
        let mut blocks = (CELL_EDGE_M_MIN / grid_cell_m).ceil().max(1.0);
        loop {
            let edge_m = blocks * grid_cell_m;
            let cols = (size.x / edge_m).ceil().max(1.0) as u32;
            let rows = (size.y / edge_m).ceil().max(1.0) as u32;
            if u64::from(cols) * u64::from(rows) <= u64::from(SNAPSHOT_CELLS_MAX) {
                return CellLayout {
                    origin: bounds.min,
                    edge_m,
                    cols,
                    rows,
                };
            }
            blocks *= 2.0;
        }
    }

    pub(crate) fn len(&self) -> usize {
        (self.cols * self.rows) as usize
    }

    /// The cell holding `p` (positions outside the bounds are clamped to the edge cells).
    pub(crate) fn cell_of(&self, p: Vec2) -> u32 {
        let col = (((p.x - self.origin.x) / self.edge_m) as u32).min(self.cols - 1);
        let row = (((p.y - self.origin.y) / self.edge_m) as u32).min(self.rows - 1);
        row * self.cols + col
    }
}

/// A splitmix64 finaliser: spreads ids so that a sum of them fingerprints a set.
fn mix(id: NetId) -> u64 {
    let mut z = id.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Per-cell accumulation during a capture.
#[derive(Clone, Copy, Debug, Default)]
struct CellScan {
    fingerprint: u64,
    count: u32,
    changed: bool,
}

impl CellScan {
    /// The membership fingerprint; 0 only for an empty cell.
    fn fingerprint(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            (self.fingerprint ^ u64::from(self.count).wrapping_mul(0xA24B_AED4_963E_E407)) | 1
        }
    }
}

/// What a capture took from the world, on the tick's thread: a copy of every NPC with
/// whether it changed since the previous capture, and the region-wide state. Cheap to
/// take (one walk over the NPCs, no encoding); [`SnapshotEncoder::encode`] turns it into
/// a [`SnapshotDelta`] anywhere, off the tick.
#[derive(Debug)]
pub struct SnapshotRecords {
    tick: u64,
    npcs: Vec<(NpcRecord, bool)>,
    meta: Vec<u8>,
}

impl SnapshotRecords {
    pub(crate) fn new(tick: u64, npcs: Vec<(NpcRecord, bool)>, meta: Vec<u8>) -> Self {
        SnapshotRecords { tick, npcs, meta }
    }

    /// The region's tick at the capture.
    pub fn tick(&self) -> u64 {
        self.tick
    }

    /// NPCs captured.
    pub fn len(&self) -> usize {
        self.npcs.len()
    }

    /// True if no NPC was captured.
    pub fn is_empty(&self) -> bool {
        self.npcs.is_empty()
    }
}

/// Turns one region's captures into deltas, remembering what the store holds (a
/// fingerprint per cell) to find the cells each capture must rewrite. One per region, fed
/// that region's captures in the order they were taken. Lives outside the world: it is
/// bookkeeping of the edge, not simulation state.
#[derive(Debug)]
pub struct SnapshotEncoder {
    layout: CellLayout,
    /// The fingerprint of each cell as last written; 0 for an empty (absent) cell.
    stored: Vec<u64>,
    /// Cells written by an earlier layout (the config's cell size changed) that the next
    /// capture deletes.
    foreign: Vec<u32>,
    scan: Vec<CellScan>,
}

/// One NPC's saved state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NpcRecord {
    pub(crate) identity: Identity,
    pub(crate) position: Vec2,
    pub(crate) velocity: Vec2,
    pub(crate) health: f32,
    pub(crate) cooldown: AttackCooldown,
    pub(crate) home: Vec2,
    pub(crate) brain: Brain,
    pub(crate) awake: bool,
    pub(crate) spawn_entry: Option<u16>,
}

impl SnapshotEncoder {
    pub(crate) fn new(layout: CellLayout) -> SnapshotEncoder {
        SnapshotEncoder {
            layout,
            stored: vec![0; layout.len()],
            foreign: Vec::new(),
            scan: vec![CellScan::default(); layout.len()],
        }
    }

    /// After a restore from `cells`: the next capture rewrites every cell (it captures
    /// everything as changed), and deletes stored cells that are empty now or do not
    /// exist in this layout.
    pub(crate) fn restored_from(&mut self, cells: impl Iterator<Item = u32>) {
        for cell in cells {
            match self.stored.get_mut(cell as usize) {
                // Any non-zero value: the content is unknown, so it differs.
                Some(stored) => *stored = 1,
                None if cell != META_CELL => self.foreign.push(cell),
                None => {}
            }
        }
    }

    /// The delta of `records` against what earlier deltas of this encoder wrote.
    pub fn encode(&mut self, records: SnapshotRecords) -> SnapshotDelta {
        let SnapshotRecords { tick, npcs, meta } = records;
        let layout = self.layout;
        self.scan.fill(CellScan::default());
        let cells_of: Vec<u32> = npcs
            .iter()
            .map(|(npc, _)| layout.cell_of(npc.position))
            .collect();
        for ((npc, changed), &cell) in npcs.iter().zip(&cells_of) {
            let scan = &mut self.scan[cell as usize];
            scan.fingerprint = scan.fingerprint.wrapping_add(mix(npc.identity.id));
            scan.count += 1;
            scan.changed |= *changed;
        }
        // Dirty: something in it changed, or its membership differs from what is stored.
        let dirty: Vec<bool> = self
            .scan
            .iter()
            .zip(&self.stored)
            .map(|(scan, &stored)| scan.changed || scan.fingerprint() != stored)
            .collect();

        // Counting sort of the dirty cells' NPCs (indices) by cell, then by id in a cell.
        let mut start = vec![0usize; layout.len() + 1];
        for (cell, scan) in self.scan.iter().enumerate() {
            start[cell + 1] = start[cell] + if dirty[cell] { scan.count as usize } else { 0 };
        }
        let mut order = vec![0u32; start[layout.len()]];
        let mut next = start.clone();
        for (i, &cell) in cells_of.iter().enumerate() {
            let cell = cell as usize;
            if dirty[cell] {
                order[next[cell]] = i as u32;
                next[cell] += 1;
            }
        }

        let mut cells: Vec<(u32, Option<Vec<u8>>)> =
            self.foreign.drain(..).map(|cell| (cell, None)).collect();
        for (cell, is_dirty) in dirty.iter().enumerate() {
            if !is_dirty {
                continue;
            }
            let fingerprint = self.scan[cell].fingerprint();
            self.stored[cell] = fingerprint;
            if fingerprint == 0 {
                cells.push((cell as u32, None));
                continue;
            }
            let slice = &mut order[start[cell]..start[cell + 1]];
            slice.sort_unstable_by_key(|&i| npcs[i as usize].0.identity.id);
            let mut out = Vec::with_capacity(5 + slice.len() * NPC_BYTES);
            out.push(FORMAT_VERSION);
            out.extend_from_slice(&(slice.len() as u32).to_le_bytes());
            for &i in slice.iter() {
                encode_npc(&mut out, &npcs[i as usize].0);
            }
            cells.push((cell as u32, Some(out)));
        }
        cells.sort_unstable_by_key(|(cell, _)| *cell);
        cells.push((META_CELL, Some(meta)));
        SnapshotDelta { tick, cells }
    }
}

fn put_f32(out: &mut Vec<u8>, v: f32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_vec2(out: &mut Vec<u8>, v: Vec2) {
    put_f32(out, v.x);
    put_f32(out, v.y);
}

fn encode_npc(out: &mut Vec<u8>, npc: &NpcRecord) {
    let at = out.len();
    out.extend_from_slice(&npc.identity.id.0.to_le_bytes());
    out.extend_from_slice(&npc.identity.archetype.to_le_bytes());
    put_vec2(out, npc.position);
    put_vec2(out, npc.velocity);
    put_f32(out, npc.health);
    out.extend_from_slice(&npc.cooldown.ready_tick.to_le_bytes());
    put_vec2(out, npc.home);
    out.push(u8::from(npc.awake));
    out.extend_from_slice(&npc.spawn_entry.map_or(u16::MAX, |e| e).to_le_bytes());
    match npc.brain {
        Brain::Idle { until_tick } => {
            out.push(0);
            out.extend_from_slice(&until_tick.to_le_bytes());
        }
        Brain::Wander { to } => {
            out.push(1);
            put_vec2(out, to);
        }
        Brain::Chase { target } => {
            out.push(2);
            out.extend_from_slice(&target.0.to_le_bytes());
        }
        Brain::Return => {
            out.push(3);
            out.extend_from_slice(&[0; 8]);
        }
    }
    debug_assert_eq!(out.len() - at, NPC_BYTES);
}

/// A bounds-checked little-endian reader over one cell's payload.
pub(crate) struct Reader<'a> {
    cell: u32,
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `bytes` of `cell`, past its checked version byte.
    pub(crate) fn new(cell: u32, bytes: &'a [u8]) -> Result<Reader<'a>, SnapshotError> {
        let mut reader = Reader { cell, bytes };
        match reader.array::<1>()? {
            [FORMAT_VERSION] => Ok(reader),
            [found] => Err(SnapshotError::Format { cell, found }),
        }
    }

    pub(crate) fn corrupt(&self, what: impl Into<String>) -> SnapshotError {
        SnapshotError::Corrupt {
            cell: self.cell,
            what: what.into(),
        }
    }

    pub(crate) fn array_of<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        self.array()
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let Some((head, rest)) = self.bytes.split_first_chunk::<N>() else {
            return Err(self.corrupt("truncated"));
        };
        self.bytes = rest;
        Ok(*head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, SnapshotError> {
        self.array().map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, SnapshotError> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, SnapshotError> {
        self.array().map(u64::from_le_bytes)
    }

    pub(crate) fn u128(&mut self) -> Result<u128, SnapshotError> {
        self.array().map(u128::from_le_bytes)
    }

    pub(crate) fn f32(&mut self) -> Result<f32, SnapshotError> {
        let v = f32::from_le_bytes(self.array()?);
        if v.is_finite() {
            Ok(v)
        } else {
            Err(self.corrupt("a number is not finite"))
        }
    }

    pub(crate) fn vec2(&mut self) -> Result<Vec2, SnapshotError> {
        Ok(Vec2::new(self.f32()?, self.f32()?))
    }

    /// A count of items of at least `item_bytes` each: never more than the bytes left
    /// could hold, so a forged count cannot make the caller allocate.
    pub(crate) fn count(&mut self, item_bytes: usize) -> Result<usize, SnapshotError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(item_bytes) > self.bytes.len() {
            return Err(self.corrupt(format!("{n} items do not fit the payload")));
        }
        Ok(n)
    }

    /// Fails unless everything was read.
    pub(crate) fn finish(self) -> Result<(), SnapshotError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.corrupt(format!("{} trailing bytes", self.bytes.len())))
        }
    }
}

/// Decodes the NPCs of one cell payload.
pub(crate) fn decode_npcs(cell: u32, bytes: &[u8]) -> Result<Vec<NpcRecord>, SnapshotError> {
    let mut r = Reader::new(cell, bytes)?;
    let n = r.count(NPC_BYTES)?;
    let mut npcs = Vec::with_capacity(n);
    for _ in 0..n {
        let identity = Identity {
            id: NetId(r.u64()?),
            archetype: r.u16()?,
        };
        let position = r.vec2()?;
        let velocity = r.vec2()?;
        let health = r.f32()?;
        let cooldown = AttackCooldown {
            ready_tick: r.u64()?,
        };
        let home = r.vec2()?;
        let awake = match r.u8()? {
            0 => false,
            1 => true,
            other => return Err(r.corrupt(format!("awake flag {other}"))),
        };
        let spawn_entry = match r.u16()? {
            u16::MAX => None,
            entry => Some(entry),
        };
        let brain = match r.u8()? {
            0 => Brain::Idle {
                until_tick: r.u64()?,
            },
            1 => Brain::Wander { to: r.vec2()? },
            2 => Brain::Chase {
                target: NetId(r.u64()?),
            },
            3 => {
                r.u64()?;
                Brain::Return
            }
            other => return Err(r.corrupt(format!("brain tag {other}"))),
        };
        npcs.push(NpcRecord {
            identity,
            position,
            velocity,
            health,
            cooldown,
            home,
            brain,
            awake,
            spawn_entry,
        });
    }
    r.finish()?;
    Ok(npcs)
}

/// The components of a restored NPC.
pub(crate) fn npc_components(
    npc: &NpcRecord,
) -> (
    Identity,
    Position,
    Velocity,
    crate::components::Health,
    AttackCooldown,
    Npc,
) {
    (
        npc.identity,
        Position(npc.position),
        Velocity(npc.velocity),
        crate::components::Health(npc.health),
        npc.cooldown,
        Npc {
            home: npc.home,
            brain: npc.brain,
            awake: npc.awake,
            spawn_entry: npc.spawn_entry,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_cover_the_region_within_the_cell_limit() {
        let region = Aabb::new(Vec2::ZERO, Vec2::new(1024.0, 512.0));
        let layout = CellLayout::new(region, 16.0);
        assert_eq!((layout.edge_m, layout.cols, layout.rows), (64.0, 16, 8));
        assert_eq!(layout.cell_of(Vec2::new(0.0, 0.0)), 0);
        assert_eq!(layout.cell_of(Vec2::new(1023.9, 511.9)), 127);
        // A huge region of tiny grid cells gets bigger blocks, never too many.
        let huge = Aabb::new(Vec2::ZERO, Vec2::new(100_000.0, 100_000.0));
        let layout = CellLayout::new(huge, 1.0);
        assert!(layout.len() <= SNAPSHOT_CELLS_MAX as usize);
        assert_eq!(
            layout.cell_of(Vec2::new(99_999.0, 99_999.0)) as usize,
            layout.len() - 1
        );
    }

    #[test]
    fn corrupt_payloads_are_errors_not_panics() {
        let npc = NpcRecord {
            identity: Identity {
                id: NetId(7),
                archetype: 1,
            },
            position: Vec2::new(1.0, 2.0),
            velocity: Vec2::ZERO,
            health: 5.0,
            cooldown: AttackCooldown { ready_tick: 3 },
            home: Vec2::new(1.0, 2.0),
            brain: Brain::Chase { target: NetId(9) },
            awake: true,
            spawn_entry: Some(2),
        };
        let mut good = vec![FORMAT_VERSION];
        good.extend_from_slice(&1u32.to_le_bytes());
        encode_npc(&mut good, &npc);
        let back = decode_npcs(0, &good).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].brain, npc.brain);
        // Every truncation, a forged count, a bad version, a NaN: all typed errors.
        for len in 0..good.len() {
            assert!(decode_npcs(0, &good[..len]).is_err(), "truncated to {len}");
        }
        let mut forged = good.clone();
        forged[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_npcs(0, &forged),
            Err(SnapshotError::Corrupt { .. })
        ));
        let mut version = good.clone();
        version[0] = 9;
        assert!(matches!(
            decode_npcs(3, &version),
            Err(SnapshotError::Format { cell: 3, found: 9 })
        ));
        let mut nan = good.clone();
        nan[15..19].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(decode_npcs(0, &nan).is_err());
        let mut trailing = good;
        trailing.push(0);
        assert!(decode_npcs(0, &trailing).is_err());
    }
}
