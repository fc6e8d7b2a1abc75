//! Delta-encoded state: what a client sees at a tick, sent relative to a state it has
//! acknowledged, so that unchanged entities cost nothing and a moving one a few bytes.
//!
//! Both sides hold [`Snapshot`]s: the entities visible to the client at a tick, quantized,
//! sorted by id. The server ([`DeltaEncoder`]) encodes the current snapshot against the
//! newest one the client acked (or against nothing: a keyframe); the client
//! ([`DeltaDecoder`]) rebuilds it from the same baseline. The block format is in
//! PROTOCOL.md, "State block"; all integers are [`super::varint`]s.

use std::cmp::Reverse;
use std::collections::VecDeque;

use super::codec::DecodeError;
use super::limits::{BASELINES_MAX, STATE_ENTITIES_MAX};
use super::messages::StateS2c;
use super::varint::{ONE_BYTE_VARINT_END, Reader, write_u64, zigzag};
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
    let mut scratch = EncodeScratch::default();
    scratch.encode(baseline, current);
    scratch.write_block(out);
}

/// The sections of a block being written, whose counts come first on the wire. Reusable:
/// keep one per encoding thread (not per client), and encoding allocates nothing once warm.
#[derive(Debug, Default)]
pub struct EncodeScratch {
    n_removed: u64,
    n_updated: u64,
    n_added: u64,
    removed: Vec<u8>,
    updated: Vec<u8>,
    added: Vec<u8>,
}

impl EncodeScratch {
    /// Fills the sections with the changes from `baseline` to `current` (both sorted by
    /// id), in one merge pass.
    fn encode(&mut self, baseline: &[WireEntity], current: &[WireEntity]) {
        debug_assert!(current.windows(2).all(|w| w[0].id < w[1].id));
        debug_assert!(baseline.windows(2).all(|w| w[0].id < w[1].id));
        let mut removed = Section::new(&mut self.removed);
        let mut added = Section::new(&mut self.added);
        let mut updated = Updates::new(&mut self.updated, baseline.len().min(current.len()));
        // Removed and updated entries are baseline indices, each written as the gap from
        // the previous one of its section plus one; added ids likewise from the previous
        // added id.
        let (mut next_removed, mut next_updated, mut next_id) = (0usize, 0usize, 0u64);
        let (mut i, mut j) = (0, 0);
        loop {
            // The common case: a run of entities in both, in the same order (most of a view
            // from one tick to the next), compared field by field in one pass with no merge
            // step per entity.
            let mut run = 0;
            for (b, c) in baseline[i..].iter().zip(&current[j..]) {
                if b.id != c.id {
                    break;
                }
                updated.write(i + run, &mut next_updated, b, c);
                run += 1;
            }
            i += run;
            j += run;
            match (baseline.get(i), current.get(j)) {
                (Some(b), Some(c)) if b.id < c.id => {
                    removed.write(&[(i - next_removed) as u64]);
                    next_removed = i + 1;
                    i += 1;
                }
                (Some(_), Some(c)) => {
                    next_id = write_added(&mut added, next_id, c);
                    j += 1;
                }
                _ => break,
            }
        }
        for idx in i..baseline.len() {
            removed.write(&[(idx - next_removed) as u64]);
            next_removed = idx + 1;
        }
        for c in &current[j..] {
            next_id = write_added(&mut added, next_id, c);
        }
        (self.n_removed, self.n_added) = (removed.n, added.n);
        self.n_updated = updated.finish();
    }

    /// The sections as (count, bytes), in wire order.
    fn sections(&self) -> [(u64, &[u8]); 3] {
        [
            (self.n_removed, &self.removed),
            (self.n_updated, &self.updated),
            (self.n_added, &self.added),
        ]
    }

    /// Length of the block [`EncodeScratch::write_block`] writes.
    fn block_len(&self) -> usize {
        self.sections()
            .iter()
            .map(|(count, bytes)| varint_len(*count) + bytes.len())
            .sum()
    }

    /// Appends the block: each section's count, then its bytes.
    fn write_block(&self, out: &mut Vec<u8>) {
        out.reserve(self.block_len());
        for (count, section) in self.sections() {
            write_u64(out, count);
            out.extend_from_slice(section);
        }
    }
}

/// One section of a block: its entries' bytes and their count.
struct Section<'a> {
    bytes: &'a mut Vec<u8>,
    n: u64,
}

impl<'a> Section<'a> {
    fn new(bytes: &'a mut Vec<u8>) -> Self {
        bytes.clear();
        Section { bytes, n: 0 }
    }

    /// One entry of `values`, each a varint.
    fn write(&mut self, values: &[u64]) {
        self.n += 1;
        for &v in values {
            write_u64(self.bytes, v);
        }
    }
}

/// Writes the added entity `c`, whose id is at least `next_id`; returns the next
/// `next_id`.
fn write_added(added: &mut Section<'_>, next_id: u64, c: &WireEntity) -> u64 {
    added.write(&[
        c.id.0 - next_id,
        u64::from(c.archetype),
        zigzag(i64::from(c.position[0])),
        zigzag(i64::from(c.position[1])),
        u64::from(c.health),
    ]);
    // An id of u64::MAX can only be last, as ids are strictly increasing.
    c.id.0.saturating_add(1)
}

/// Builds a client's next view from its previous one.
pub trait ViewBuilder: Sized {
    /// Fills `next` (empty) with the next view, sorted by id, from `prev` (sorted by id).
    fn build(self, prev: &[WireEntity], next: &mut Vec<WireEntity>);

    /// Like [`ViewBuilder::build`], for a view about to be encoded against `baseline`
    /// (`None`: a keyframe, which replaces whatever view the client has). `prev_sent`
    /// says whether `prev` went to this connection (the client may show it: a keyframe
    /// that left some of it out would make those entities vanish) or not (a new
    /// connection, or a view kept while the client was away: the client has none of it).
    /// The encoder calls this one. `price(view)` encodes a candidate view and returns the
    /// bytes of its block, so that a builder that sends less than it could (a byte
    /// budget) can check what a view costs; if it prices any, the last view it prices
    /// must be the one it leaves in `next` (the encoder keeps that encoding instead of
    /// encoding again).
    fn build_priced(
        self,
        prev: &[WireEntity],
        prev_sent: bool,
        baseline: Option<&[WireEntity]>,
        next: &mut Vec<WireEntity>,
        price: &mut dyn FnMut(&[WireEntity]) -> usize,
    ) {
        let _ = (prev_sent, baseline, price);
        self.build(prev, next);
    }
}

/// Bytes the update from `b` to `c` (same id) takes in a block when it follows the
/// previous update closely (a gap below 16 entities, as in a view that changes much): 0
/// if they are equal. An estimate for a sender choosing what fits a budget.
#[inline]
pub fn update_bytes(b: &WireEntity, c: &WireEntity) -> usize {
    let fields = [
        zigzag(i64::from(c.position[0]) - i64::from(b.position[0])),
        zigzag(i64::from(c.position[1]) - i64::from(b.position[1])),
        zigzag(i64::from(c.health) - i64::from(b.health)),
        if b.archetype == c.archetype {
            0
        } else {
            u64::from(c.archetype)
        },
    ];
    if fields == [0; 4] {
        return 0;
    }
    1 + fields
        .iter()
        .filter(|&&v| v != 0)
        .map(|&v| varint_len(v))
        .sum::<usize>()
}

/// Bytes `c` takes in a block's added section, `gap` ids after the previous added
/// entity (or after 0).
#[inline]
pub fn added_bytes(gap: u64, c: &WireEntity) -> usize {
    varint_len(gap)
        + varint_len(u64::from(c.archetype))
        + varint_len(zigzag(i64::from(c.position[0])))
        + varint_len(zigzag(i64::from(c.position[1])))
        + varint_len(u64::from(c.health))
}

/// A [`ViewBuilder`] that replaces the view by the given entities (sorted by id).
#[derive(Clone, Copy, Debug)]
pub struct Replace<'a>(pub &'a [WireEntity]);

impl ViewBuilder for Replace<'_> {
    fn build(self, _prev: &[WireEntity], next: &mut Vec<WireEntity>) {
        next.extend_from_slice(self.0);
    }
}

/// Bytes of `v` as a [`super::varint`] (bincode's varint: 1 byte below 251, then a tag
/// and 2, 4 or 8 bytes).
#[inline]
fn varint_len(v: u64) -> usize {
    match v {
        0..=250 => 1,
        251..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// The updated section being written. Most updates are a few one-byte fields, stored
/// into room made in advance (`at` is the end of what is written) with no capacity check
/// per byte, which costs a fraction of growing a vector byte by byte.
struct Updates<'a> {
    bytes: &'a mut Vec<u8>,
    at: usize,
    n: u64,
}

/// Bytes of an update whose values are all one-byte varints: head and up to three fields.
const SHORT_UPDATE_BYTES_MAX: usize = 4;
/// Gaps below this make a one-byte head with any mask of the three fields (15 << 4 | 7
/// is 247, below the varint's 251).
const SHORT_GAP_END: u64 = 16;

impl<'a> Updates<'a> {
    /// Room for `n_short` short updates.
    fn new(bytes: &'a mut Vec<u8>, n_short: usize) -> Self {
        bytes.clear();
        bytes.resize(SHORT_UPDATE_BYTES_MAX * (n_short + 1), 0);
        Updates { bytes, at: 0, n: 0 }
    }

    /// The update of baseline entity `idx` from `b` to `c` (same id), if they differ: its
    /// head (the gap from `next`, the index after the previous update, and the field
    /// mask), then the changed fields. `next` becomes `idx + 1`.
    #[inline(always)]
    fn write(&mut self, idx: usize, next: &mut usize, b: &WireEntity, c: &WireEntity) {
        let zx = zigzag(i64::from(c.position[0]) - i64::from(b.position[0]));
        let zy = zigzag(i64::from(c.position[1]) - i64::from(b.position[1]));
        let zh = zigzag(i64::from(c.health) - i64::from(b.health));
        let same_archetype = b.archetype == c.archetype;
        if zx | zy | zh == 0 && same_archetype {
            return; // Unchanged: costs nothing.
        }
        let gap = (idx - *next) as u64;
        *next = idx + 1;
        self.n += 1;
        let at = self.at;
        if (zx | zy | zh) < ONE_BYTE_VARINT_END
            && gap < SHORT_GAP_END
            && same_archetype
            && let Some(room) = self.bytes.get_mut(at..at + SHORT_UPDATE_BYTES_MAX)
        {
            // A short one (a step of a moving crowd): every value one byte, written
            // without a branch per field. Each field goes to the next free byte, which
            // moves on only if the field is present, so an absent one is overwritten by
            // the next (or left past the end).
            let (x, y, h) = (
                usize::from(zx != 0),
                usize::from(zy != 0),
                usize::from(zh != 0),
            );
            let mask = (x as u64 * MASK_X) | (y as u64 * MASK_Y) | (h as u64 * MASK_HEALTH);
            room[0] = (gap << MASK_BITS | mask) as u8;
            room[1] = zx as u8;
            room[1 + x] = zy as u8;
            room[1 + x + y] = zh as u8;
            self.at = at + 1 + x + y + h;
            return;
        }
        // A long one (a big move, a change of health or archetype, or a long gap):
        // appended after what is written, then room made again for the short ones.
        let room = self.bytes.len() - at;
        self.bytes.truncate(at);
        let archetype = (!same_archetype).then_some(c.archetype);
        let mask = (u64::from(zx != 0) * MASK_X)
            | (u64::from(zy != 0) * MASK_Y)
            | (u64::from(zh != 0) * MASK_HEALTH)
            | (u64::from(archetype.is_some()) * MASK_ARCHETYPE);
        write_u64(self.bytes, gap << MASK_BITS | mask);
        for value in [zx, zy, zh] {
            if value != 0 {
                write_u64(self.bytes, value);
            }
        }
        if let Some(archetype) = archetype {
            write_u64(self.bytes, u64::from(archetype));
        }
        self.at = self.bytes.len();
        self.bytes
            .resize(self.at + room.max(SHORT_UPDATE_BYTES_MAX), 0);
    }

    /// Ends the section (dropping the room left); returns its count.
    fn finish(self) -> u64 {
        self.bytes.truncate(self.at);
        self.n
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

/// The server's side, one per client: the client's view (the newest snapshot) and the
/// snapshots sent since the last one the client acknowledged, so that each new state is
/// encoded against the newest acknowledged one.
///
/// The next view is built from the previous one by a [`ViewBuilder`] (the tick's
/// changes), into the buffer of a snapshot the ack made obsolete, then merged against the
/// baseline into the block, so that once warm it allocates nothing and a client costs its
/// held snapshots only: at most [`SNAPSHOTS_HELD_MAX`] (the acknowledged one, those in
/// flight, the view) times the visible entities times 24 bytes, whatever its latency.
#[derive(Debug, Default)]
pub struct DeltaEncoder {
    /// Oldest first, the view last; at most [`SNAPSHOTS_HELD_MAX`]. All but the view were
    /// sent; the view too if `view_sent`.
    held: VecDeque<Snapshot>,
    /// Whether the view was sent (so that it may be acknowledged and used as a baseline).
    view_sent: bool,
    /// The tick of the held snapshot the client acknowledged, the baseline (0: none).
    /// Older ones are dropped; it stays the baseline until the client acknowledges a newer
    /// one this encoder still holds, even if its newest ack is of one thinned out.
    acked: u64,
}

/// Snapshots a [`DeltaEncoder`] holds per client at most, the view included: the
/// acknowledged one, three in flight and the view. With more states in flight than that
/// (a round trip over about 150 ms at 20 Hz), those in flight are thinned (see
/// `DeltaEncoder::release`: the one whose going leaves the smallest gap goes), so that
/// acks keep finding one: the baseline is then up to
/// about half the round trip older than the client's newest state (deltas a little
/// larger; no keyframes up to a round trip of 20 ticks, 1 s at 20 Hz), and a client costs
/// the node the same memory whatever its latency (at the 256-entity cap, 6 KiB a
/// snapshot). Clients keep [`BASELINES_MAX`] snapshots, so any held one they acked
/// decodes.
pub const SNAPSHOTS_HELD_MAX: usize = 5;

impl DeltaEncoder {
    /// Encodes `current` (sorted by id) for a client whose newest applied state is
    /// `ack_tick` (0: none).
    pub fn encode(&mut self, current: Snapshot, ack_tick: u64) -> StateS2c {
        let mut scratch = EncodeScratch::default();
        let baseline_tick = self.advance(
            current.tick,
            ack_tick,
            Replace(&current.entities),
            &mut scratch,
        );
        let mut block = Vec::new();
        scratch.write_block(&mut block);
        StateS2c {
            tick: current.tick,
            baseline_tick,
            block,
        }
    }

    /// Builds the view for `tick` from the previous one with `build`, encodes it against
    /// the snapshot the client acknowledged with `ack_tick` (0: none; unknown: a
    /// keyframe), and writes the `StateS2c` message (exactly the bytes `codec::encode`
    /// would produce) into `out`.
    pub fn encode_next_into(
        &mut self,
        tick: u64,
        ack_tick: u64,
        build: impl ViewBuilder,
        scratch: &mut EncodeScratch,
        out: &mut Vec<u8>,
    ) {
        let baseline_tick = self.advance(tick, ack_tick, build, scratch);
        // StateS2c's bincode layout: tick, baseline_tick, then the block as a byte vector
        // (its length, then its bytes).
        let block_len = scratch.block_len();
        out.clear();
        // Exactly: a buffer as long as its capacity becomes `Bytes` without another
        // allocation (one per client per tick otherwise).
        out.reserve_exact(
            varint_len(tick) + varint_len(baseline_tick) + varint_len(block_len as u64) + block_len,
        );
        write_u64(out, tick);
        write_u64(out, baseline_tick);
        write_u64(out, block_len as u64);
        scratch.write_block(out);
    }

    /// Builds the view for `tick` like [`DeltaEncoder::encode_next_into`] without sending
    /// it (a client away, its view kept current for its return): nothing is encoded and
    /// no baseline is kept.
    pub fn update_view(&mut self, tick: u64, build: impl ViewBuilder) {
        let mut next = match self.held.len() {
            0 | 1 => Vec::new(),
            _ => self.held.pop_front().expect("checked").entities,
        };
        next.clear();
        build.build(self.view(), &mut next);
        self.held.clear();
        self.held.push_back(Snapshot {
            tick,
            entities: next,
        });
        self.view_sent = false;
        self.acked = 0;
    }

    /// Forgets every snapshot sent (a new connection knows none of them: its first state
    /// is a keyframe), keeping the view.
    pub fn forget_sent(&mut self) {
        while self.held.len() > 1 {
            self.held.pop_front();
        }
        self.view_sent = false;
        self.acked = 0;
    }

    /// The client's view: the newest snapshot's entities, sorted by id.
    pub fn view(&self) -> &[WireEntity] {
        self.held.back().map_or(&[], |s| &s.entities)
    }

    /// Snapshots held, the view included (memory: their entity count times 24 bytes).
    pub fn n_held(&self) -> usize {
        self.held.len()
    }

    /// Builds the next view, encodes it into `scratch` and makes it the view. Returns the
    /// baseline's tick (0: keyframe).
    fn advance(
        &mut self,
        tick: u64,
        ack_tick: u64,
        build: impl ViewBuilder,
        scratch: &mut EncodeScratch,
    ) -> u64 {
        let free = self.release(tick, ack_tick);
        let mut next = free.unwrap_or_default();
        next.clear();
        let baseline = self
            .held
            .front()
            .filter(|s| self.acked != 0 && s.tick == self.acked);
        let prev = self.held.back().map_or(&[][..], |s| &s.entities);
        let (entities, baseline_tick) = match baseline {
            Some(b) => (&b.entities[..], b.tick),
            None => (&[][..], 0),
        };
        let mut priced = false;
        build.build_priced(
            prev,
            self.view_sent,
            baseline.map(|b| &b.entities[..]),
            &mut next,
            &mut |view| {
                scratch.encode(entities, view);
                priced = true;
                scratch.block_len()
            },
        );
        if priced {
            debug_assert_eq!(
                {
                    let mut check = EncodeScratch::default();
                    check.encode(entities, &next);
                    check.block_len()
                },
                scratch.block_len(),
                "the last view priced is the view built"
            );
        } else {
            scratch.encode(entities, &next);
        }
        if !self.view_sent {
            self.held.pop_back(); // Never sent: no client can acknowledge it.
        }
        self.held.push_back(Snapshot {
            tick,
            entities: next,
        });
        self.view_sent = true;
        debug_assert!(self.held.len() <= SNAPSHOTS_HELD_MAX);
        baseline_tick
    }

    /// Takes in the client's newest ack and lets go of the snapshots no longer needed,
    /// leaving room for the view of `tick`. Returns the buffer of one let go, to reuse.
    ///
    /// Kept: the view (the next one is built from it), the baseline (the newest snapshot
    /// held that the client acknowledged, while the client still keeps it) and those in
    /// flight (sent after the client's newest ack). Over [`SNAPSHOTS_HELD_MAX`], the one in
    /// flight whose neighbours are closest goes, so that those kept stay spread out.
    fn release(&mut self, tick: u64, ack_tick: u64) -> Option<Vec<WireEntity>> {
        let n_sent = self.held.len().saturating_sub(usize::from(!self.view_sent));
        if ack_tick > self.acked && self.held.iter().take(n_sent).any(|s| s.tick == ack_tick) {
            self.acked = ack_tick;
        }
        // A client keeps its newest BASELINES_MAX states, and gets at most one a tick.
        let kept_by_client = |t: u64| tick.saturating_sub(t) < BASELINES_MAX as u64;
        if self.acked != 0 && !kept_by_client(self.acked) {
            self.acked = 0;
        }
        let mut free = None;
        let mut i = 0;
        while i + 1 < self.held.len() {
            let t = self.held[i].tick;
            let in_flight = t > self.acked && t > ack_tick && kept_by_client(t);
            if t == self.acked || in_flight {
                i += 1;
            } else {
                free = self.held.remove(i).map(|s| s.entities);
            }
        }
        // The view is replaced if it was not sent; otherwise it stays, in flight.
        let room = SNAPSHOTS_HELD_MAX - usize::from(self.view_sent);
        while self.held.len() > room {
            let first = usize::from(self.acked != 0);
            // The baseline gets as old as the round trip plus the gap between the snapshots
            // kept: the one going is the one whose going leaves the smallest gap (of equal
            // ones, the newest); without a baseline, the oldest stays (acked soonest).
            let Some(victim) = (first..self.held.len() - 1).min_by_key(|&i| {
                let gap = match i {
                    0 => u64::MAX,
                    _ => self.held[i + 1].tick - self.held[i - 1].tick,
                };
                (gap, Reverse(i))
            }) else {
                break;
            };
            free = self.held.remove(victim).map(|s| s.entities);
        }
        free
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
