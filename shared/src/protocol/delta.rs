//! Delta-encoded state: what a client sees at a tick, sent relative to a state it has
//! acknowledged, so that unchanged entities cost nothing and a moving one a few bytes.
//!
//! Both sides hold [`Snapshot`]s: the entities visible to the client at a tick, quantized,
//! sorted by id. The server ([`DeltaEncoder`]) encodes the current snapshot against the
//! newest one the client acked (or against nothing: a keyframe); the client
//! ([`DeltaDecoder`]) rebuilds it from the same baseline. The block format is in
//! PROTOCOL.md, "State block"; all integers are [`super::varint`]s.

use std::collections::VecDeque;

use super::codec::DecodeError;
use super::limits::{BASELINES_MAX, STATE_ENTITIES_MAX};
use super::messages::StateS2c;
use super::varint::{Reader, write_i64, write_u64};
use crate::ids::NetId;

/// One entity as the wire carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WireEntity {
    /// Stable id.
    pub id: NetId,
    /// Archetype index.
    pub archetype: u16,
    /// Position in [`super::quantize::POSITION_UNITS_PER_M`] units.
    pub position: [i32; 2],
    /// Health in [`super::quantize::HEALTH_UNITS_PER_POINT`] units.
    pub health: u32,
}

/// The entities visible to one client at one tick, sorted by id, ids unique.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The tick.
    pub tick: u64,
    /// Sorted by id.
    pub entities: Vec<WireEntity>,
}

/// Field mask bits of an update (low four bits of its head).
const MASK_X: u64 = 1;
const MASK_Y: u64 = 2;
const MASK_HEALTH: u64 = 4;
const MASK_ARCHETYPE: u64 = 8;
const MASK_BITS: u32 = 4;
/// Smallest encoding of an added entity: five one-byte varints.
const ADDED_BYTES_MIN: usize = 5;

/// Appends the block that turns `baseline` into `current` (both sorted by id) to `out`.
pub fn encode_block(baseline: &[WireEntity], current: &[WireEntity], out: &mut Vec<u8>) {
    encode_block_with(baseline, current, &mut BlockScratch::default(), out);
}

/// The three sections of a block while it is being written (one merge pass fills all
/// three; their counts come first on the wire). Kept by [`DeltaEncoder`] so that encoding
/// allocates nothing once warm.
#[derive(Debug, Default)]
struct BlockScratch {
    removed: Vec<u8>,
    updated: Vec<u8>,
    added: Vec<u8>,
}

/// [`encode_block`] with reusable section buffers.
fn encode_block_with(
    baseline: &[WireEntity],
    current: &[WireEntity],
    scratch: &mut BlockScratch,
    out: &mut Vec<u8>,
) {
    debug_assert!(current.windows(2).all(|w| w[0].id < w[1].id));
    debug_assert!(baseline.windows(2).all(|w| w[0].id < w[1].id));
    let BlockScratch {
        removed,
        updated,
        added,
    } = scratch;
    removed.clear();
    updated.clear();
    added.clear();
    let (mut n_removed, mut n_updated, mut n_added) = (0u64, 0u64, 0u64);
    // Removed and updated entries are baseline indices, each written as the gap from the
    // previous one of its section plus one; added ids likewise from the previous added id.
    let (mut next_removed, mut next_updated, mut next_id) = (0usize, 0usize, 0u64);
    let (mut i, mut j) = (0, 0);
    while i < baseline.len() || j < current.len() {
        match (baseline.get(i), current.get(j)) {
            (Some(b), Some(c)) if b.id == c.id => {
                if b != c {
                    n_updated += 1;
                    write_update(updated, ((i - next_updated) as u64) << MASK_BITS, b, c);
                    next_updated = i + 1;
                }
                i += 1;
                j += 1;
            }
            (Some(b), c) if c.is_none_or(|c| b.id < c.id) => {
                n_removed += 1;
                write_u64(removed, (i - next_removed) as u64);
                next_removed = i + 1;
                i += 1;
            }
            (_, None) => unreachable!("loop condition and the arm above"),
            (_, Some(c)) => {
                n_added += 1;
                // An id of u64::MAX can only be last, as ids are strictly increasing.
                write_u64(added, c.id.0 - next_id);
                next_id = c.id.0.saturating_add(1);
                write_u64(added, u64::from(c.archetype));
                write_i64(added, i64::from(c.position[0]));
                write_i64(added, i64::from(c.position[1]));
                write_u64(added, u64::from(c.health));
                j += 1;
            }
        }
    }
    out.reserve(removed.len() + updated.len() + added.len() + 3 * 10);
    for (count, section) in [
        (n_removed, &*removed),
        (n_updated, updated),
        (n_added, added),
    ] {
        write_u64(out, count);
        out.extend_from_slice(section);
    }
}

/// One update: its head (the index gap, already shifted, with the field mask), then the
/// changed fields.
fn write_update(out: &mut Vec<u8>, gap_shifted: u64, b: &WireEntity, c: &WireEntity) {
    let mut mask = 0;
    if b.position[0] != c.position[0] {
        mask |= MASK_X;
    }
    if b.position[1] != c.position[1] {
        mask |= MASK_Y;
    }
    if b.health != c.health {
        mask |= MASK_HEALTH;
    }
    if b.archetype != c.archetype {
        mask |= MASK_ARCHETYPE;
    }
    write_u64(out, gap_shifted | mask);
    if mask & MASK_X != 0 {
        write_i64(out, i64::from(c.position[0]) - i64::from(b.position[0]));
    }
    if mask & MASK_Y != 0 {
        write_i64(out, i64::from(c.position[1]) - i64::from(b.position[1]));
    }
    if mask & MASK_HEALTH != 0 {
        write_i64(out, i64::from(c.health) - i64::from(b.health));
    }
    if mask & MASK_ARCHETYPE != 0 {
        write_u64(out, u64::from(c.archetype));
    }
}

/// Rebuilds into `out` the entities that `block` describes relative to `baseline`.
/// Validates everything: indices in range and increasing, ids increasing and not already
/// present, values in range, no trailing bytes, at most [`STATE_ENTITIES_MAX`] entities.
pub fn decode_block(
    baseline: &[WireEntity],
    block: &[u8],
    out: &mut Vec<WireEntity>,
) -> Result<(), DecodeError> {
    let mut r = Reader::new(block);
    out.clear();
    // Removals and updates index the baseline, so its length bounds their counts; the
    // baseline is the receiver's own earlier snapshot, itself bounded.
    let mut keep = vec![true; baseline.len()];
    let mut next = 0usize;
    for _ in 0..r.count(baseline.len())? {
        let idx = next
            .checked_add(usize::try_from(r.u64()?).map_err(|_| DecodeError::OutOfRange)?)
            .filter(|&idx| idx < baseline.len())
            .ok_or(DecodeError::Inconsistent("removed index out of range"))?;
        keep[idx] = false;
        next = idx + 1;
    }
    let mut kept: Vec<WireEntity> = Vec::with_capacity(baseline.len());
    let mut updates = Vec::new();
    next = 0;
    for _ in 0..r.count(baseline.len())? {
        let head = r.u64()?;
        let mask = head & ((1 << MASK_BITS) - 1);
        let idx = next
            .checked_add(usize::try_from(head >> MASK_BITS).map_err(|_| DecodeError::OutOfRange)?)
            .filter(|&idx| idx < baseline.len())
            .ok_or(DecodeError::Inconsistent("updated index out of range"))?;
        if mask == 0 || !keep[idx] {
            return Err(DecodeError::Inconsistent(
                "empty update or update of a removed entity",
            ));
        }
        next = idx + 1;
        let mut e = baseline[idx];
        if mask & MASK_X != 0 {
            e.position[0] = add_i32(e.position[0], r.i64()?)?;
        }
        if mask & MASK_Y != 0 {
            e.position[1] = add_i32(e.position[1], r.i64()?)?;
        }
        if mask & MASK_HEALTH != 0 {
            let h = i64::from(e.health)
                .checked_add(r.i64()?)
                .ok_or(DecodeError::OutOfRange)?;
            e.health = u32::try_from(h).map_err(|_| DecodeError::OutOfRange)?;
        }
        if mask & MASK_ARCHETYPE != 0 {
            e.archetype = u16::try_from(r.u64()?).map_err(|_| DecodeError::OutOfRange)?;
        }
        updates.push((idx, e));
    }
    let mut updates = updates.into_iter().peekable();
    for (idx, b) in baseline.iter().enumerate() {
        match updates.peek() {
            Some(&(u, e)) if u == idx => {
                kept.push(e);
                updates.next();
            }
            _ if keep[idx] => kept.push(*b),
            _ => {}
        }
    }
    let n_added = r.count(STATE_ENTITIES_MAX.saturating_sub(kept.len()))?;
    // Each added entity takes at least ADDED_BYTES_MIN bytes: refuse counts the block
    // cannot hold before reserving memory for them.
    if n_added > r.remaining() / ADDED_BYTES_MIN {
        return Err(DecodeError::Truncated);
    }
    let mut added = Vec::with_capacity(n_added);
    let mut next_id = Some(0u64);
    for _ in 0..n_added {
        let gap = r.u64()?;
        let id = next_id
            .and_then(|n| n.checked_add(gap))
            .ok_or(DecodeError::Inconsistent(
                "entity ids out of order or overflowing",
            ))?;
        next_id = id.checked_add(1);
        let archetype = u16::try_from(r.u64()?).map_err(|_| DecodeError::OutOfRange)?;
        let position = [r.i32()?, r.i32()?];
        let health = r.u32()?;
        added.push(WireEntity {
            id: NetId(id),
            archetype,
            position,
            health,
        });
    }
    if r.remaining() != 0 {
        return Err(DecodeError::TrailingBytes);
    }
    // Merge the kept (sorted) and the added (sorted) lists; a duplicate id is an error.
    let (mut i, mut j) = (0, 0);
    while i < kept.len() || j < added.len() {
        let take_kept = match (kept.get(i), added.get(j)) {
            (Some(k), Some(a)) if k.id == a.id => {
                return Err(DecodeError::Inconsistent("added entity already present"));
            }
            (Some(k), Some(a)) => k.id < a.id,
            (Some(_), None) => true,
            _ => false,
        };
        if take_kept {
            out.push(kept[i]);
            i += 1;
        } else {
            out.push(added[j]);
            j += 1;
        }
    }
    Ok(())
}

/// `base + delta` if it fits `i32`. Deltas come from the network: a hostile one near
/// `i64::MAX` must be an error, not an overflow (found by the `state_block` fuzz target).
fn add_i32(base: i32, delta: i64) -> Result<i32, DecodeError> {
    i64::from(base)
        .checked_add(delta)
        .and_then(|v| i32::try_from(v).ok())
        .ok_or(DecodeError::OutOfRange)
}

/// The server's side, one per client: remembers the snapshots sent since the last one the
/// client acknowledged, and encodes each new one against the newest acknowledged. Once
/// warm it allocates nothing: section buffers are reused and the entity list of a dropped
/// snapshot holds the next one.
#[derive(Debug, Default)]
pub struct DeltaEncoder {
    /// Sent snapshots not yet superseded by an ack, oldest first; at most
    /// [`BASELINES_MAX`] (older ones are dropped: an ack for them gets a keyframe).
    sent: VecDeque<Snapshot>,
    /// A dropped snapshot's entity list, to copy the next snapshot into.
    spare: Vec<WireEntity>,
    scratch: BlockScratch,
    block: Vec<u8>,
}

impl DeltaEncoder {
    /// Encodes `current` (sorted by id) for a client whose newest applied state is
    /// `ack_tick` (0: none).
    pub fn encode(&mut self, current: Snapshot, ack_tick: u64) -> StateS2c {
        let tick = current.tick;
        let baseline_tick = self.encode_block_for(&current.entities, ack_tick);
        self.remember(current);
        StateS2c {
            tick,
            baseline_tick,
            block: self.block.clone(),
        }
    }

    /// Encodes `entities` into `self.block` against the acked baseline (dropping older
    /// ones) and returns the baseline's tick (0: keyframe).
    fn encode_block_for(&mut self, entities: &[WireEntity], ack_tick: u64) -> u64 {
        // Snapshots older than the acked one will never be needed again.
        while self.sent.front().is_some_and(|s| s.tick < ack_tick) {
            let dropped = self.sent.pop_front().expect("checked non-empty");
            self.spare = dropped.entities;
        }
        let baseline = self
            .sent
            .iter()
            .find(|s| s.tick == ack_tick && ack_tick != 0);
        self.block.clear();
        let (baseline, tick) = match baseline {
            Some(b) => (&b.entities[..], b.tick),
            None => (&[][..], 0),
        };
        encode_block_with(baseline, entities, &mut self.scratch, &mut self.block);
        tick
    }

    fn remember(&mut self, current: Snapshot) {
        if self.sent.len() == BASELINES_MAX {
            self.sent.pop_front();
        }
        self.sent.push_back(current);
    }

    /// Like [`DeltaEncoder::encode`], but writes the encoded `StateS2c` message (exactly
    /// the bytes `codec::encode` would produce) into `out`, without building the message,
    /// and copies `entities` (sorted by id) rather than taking them.
    pub fn encode_message_into(
        &mut self,
        tick: u64,
        entities: &[WireEntity],
        ack_tick: u64,
        out: &mut Vec<u8>,
    ) {
        let baseline_tick = self.encode_block_for(entities, ack_tick);
        // StateS2c's bincode layout: tick, baseline_tick, then the block as a byte vector
        // (its length, then its bytes).
        out.clear();
        out.reserve(self.block.len() + 3 * 9);
        write_u64(out, tick);
        write_u64(out, baseline_tick);
        write_u64(out, self.block.len() as u64);
        out.extend_from_slice(&self.block);
        let mut copy = std::mem::take(&mut self.spare);
        copy.clear();
        copy.extend_from_slice(entities);
        self.remember(Snapshot {
            tick,
            entities: copy,
        });
    }

    /// Snapshots held (memory: their entity count times 24 bytes).
    pub fn n_held(&self) -> usize {
        self.sent.len()
    }
}

/// The client's side: the newest received snapshots, to decode deltas against.
#[derive(Debug, Default)]
pub struct DeltaDecoder {
    received: VecDeque<Snapshot>,
}

impl DeltaDecoder {
    /// Applies `state`. Returns the new snapshot, or `None` if `state` is not newer than
    /// the newest one applied (datagrams may be reordered or duplicated).
    pub fn apply(&mut self, state: &StateS2c) -> Result<Option<&Snapshot>, DecodeError> {
        if state.tick <= self.newest_tick() {
            return Ok(None);
        }
        let baseline: &[WireEntity] = if state.baseline_tick == 0 {
            &[]
        } else {
            &self
                .received
                .iter()
                .find(|s| s.tick == state.baseline_tick)
                .ok_or(DecodeError::UnknownBaseline(state.baseline_tick))?
                .entities
        };
        let mut entities = Vec::new();
        decode_block(baseline, &state.block, &mut entities)?;
        if self.received.len() == BASELINES_MAX {
            self.received.pop_front();
        }
        self.received.push_back(Snapshot {
            tick: state.tick,
            entities,
        });
        Ok(self.received.back())
    }

    /// The tick to acknowledge: the newest applied (0 before any).
    pub fn newest_tick(&self) -> u64 {
        self.received.back().map_or(0, |s| s.tick)
    }
}
