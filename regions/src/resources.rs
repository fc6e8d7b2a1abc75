//! Resources every feature may read: the clock, the seeded RNG, the frozen config, the
//! region's own definition and the id indices.

use bevy_ecs::prelude::*;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::HashMap;
use std::sync::Arc;
use tessera_shared::config::{Archetype, Config, RegionDef};
use tessera_shared::ids::{HandoffId, NetId, PlayerId, RegionId};
use tessera_shared::math::{Aabb, Vec2};

/// The simulation clock. The tick reads no wall clock: this is the only time there is.
#[derive(Resource, Clone, Copy, Debug)]
pub struct TickClock {
    /// Number of the tick being simulated (the first tick is 1).
    pub tick: u64,
    /// Ticks per second.
    pub tick_hz: u32,
    /// Seconds per tick, `1 / tick_hz`.
    pub dt_s: f32,
}

impl TickClock {
    /// A clock before its first tick.
    pub fn new(tick_hz: u32) -> TickClock {
        TickClock {
            tick: 0,
            tick_hz,
            dt_s: 1.0 / tick_hz as f32,
        }
    }

    /// Whole ticks covering `ms` milliseconds, rounded up. Integer arithmetic: `1 / hz`
    /// in `f32` is inexact at most rates and would add a tick.
    pub fn ticks_for_ms(&self, ms: u32) -> u64 {
        (u64::from(ms) * u64::from(self.tick_hz)).div_ceil(1000)
    }
}

/// The region's deterministic random number generator (ChaCha8: portable, reproducible
/// across platforms and versions of rand_chacha). Seeded from the run seed and region id.
#[derive(Resource, Clone, Debug)]
pub struct SimRng(ChaCha8Rng);

impl SimRng {
    /// A generator for `region` in a run seeded with `seed`.
    pub fn new(seed: u64, region: RegionId) -> SimRng {
        let mixed = seed ^ (u64::from(region.0)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        SimRng(ChaCha8Rng::seed_from_u64(mixed))
    }

    /// Uniform in `[0, 1)`, with 24 bits of precision (exactly representable in f32).
    pub fn unit_f32(&mut self) -> f32 {
        (self.0.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Uniform in `[lo, hi)`.
    pub fn range_f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit_f32()
    }

    /// Uniform point in `bounds`.
    pub fn point_in(&mut self, bounds: &Aabb) -> Vec2 {
        let p = Vec2::new(
            self.range_f32(bounds.min.x, bounds.max.x),
            self.range_f32(bounds.min.y, bounds.max.y),
        );
        // Rounding can land exactly on the exclusive max edge.
        bounds.clamp(p)
    }

    /// Uniform in `[0, n)`; `n` must be > 0.
    pub fn below(&mut self, n: u32) -> u32 {
        debug_assert!(n > 0);
        ((u64::from(self.0.next_u32()) * u64::from(n)) >> 32) as u32
    }

    /// The generator's complete state: seed, stream and position in it.
    pub(crate) fn state(&self) -> ([u8; 32], u64, u128) {
        (
            self.0.get_seed(),
            self.0.get_stream(),
            self.0.get_word_pos(),
        )
    }

    /// The generator in a state [`SimRng::state`] returned.
    pub(crate) fn from_state(seed: [u8; 32], stream: u64, word_pos: u128) -> SimRng {
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_stream(stream);
        rng.set_word_pos(word_pos);
        SimRng(rng)
    }

    /// Where the stream is, for the world hash (two runs that drew differently differ).
    pub fn word_pos(&self) -> u128 {
        self.0.get_word_pos()
    }
}

/// The frozen configuration, shared read-only across regions and threads.
#[derive(Resource, Clone, Debug)]
pub struct SimConfig(pub Arc<Config>);

impl SimConfig {
    /// The archetype at `idx`. Indices come from validated config or from
    /// [`crate::Region`]'s checked entry points, so an out-of-range index is a bug.
    pub fn archetype(&self, idx: u16) -> &Archetype {
        &self.0.balance.archetypes[usize::from(idx)]
    }
}

/// This region's definition and the world it belongs to.
#[derive(Resource, Clone, Debug)]
pub struct RegionInfo {
    /// The region's id, bounds, spawn point and spawn table.
    pub def: RegionDef,
    /// The whole world's extent: `[0, size_m)`.
    pub world_bounds: Aabb,
}

/// Id lookups. Used for lookups only: iteration order of a `HashMap` is not deterministic,
/// so no system may iterate these to decide what happens.
#[derive(Resource, Default, Debug)]
pub struct Directory {
    /// Every live entity by network id.
    pub by_net_id: HashMap<NetId, Entity>,
    /// Every player avatar by player id.
    pub by_player: HashMap<PlayerId, Entity>,
}

impl Directory {
    /// True if one more player avatar fits under `limits`.
    pub fn has_room_for_player(&self, limits: &tessera_shared::config::WorldLimits) -> bool {
        self.by_player.len() < limits.players_per_region_max as usize
            && self.by_net_id.len() < limits.entities_per_region_max as usize
    }
}

/// Low bits of a handoff id's 40-bit sequence that count the handoffs of one holding;
/// the bits above them are the holding's epoch (see [`Mint::handoff`]).
pub const HANDOFF_COUNTER_BITS: u32 = 24;

/// Counters for minting ids: part of the region's state (a snapshot carries them), and
/// the epoch of the current holding (which it does not: each holding sets its own).
#[derive(Resource, Clone, Copy, Debug, Default)]
pub struct Mint {
    /// Next entity sequence number for [`NetId::mint`].
    pub next_entity_seq: u64,
    /// Next handoff sequence number.
    pub next_handoff_seq: u64,
    /// The fencing epoch of the holding simulating the region (0 until set).
    pub epoch: u64,
}

impl Mint {
    /// A fresh entity id, or `None` once the region's 2^40 ids are spent.
    pub fn entity(&mut self, region: RegionId) -> Option<NetId> {
        let id = NetId::mint(region, self.next_entity_seq)?;
        self.next_entity_seq += 1;
        Some(id)
    }

    /// A fresh handoff id, in the layout of [`NetId::mint`] with a sequence made of the
    /// holding's epoch (16 bits, above) and a counter ([`HANDOFF_COUNTER_BITS`], below).
    ///
    /// Handoffs are deduplicated by id (the bus's done keys, the receiver's
    /// `AppliedHandoffs`), so an id must not come back within that window. The counter
    /// alone would: a region restored from a snapshot rewinds it and would reissue the
    /// ids its previous holding minted after that snapshot, and their receivers would
    /// drop the new crossings as duplicates. The epoch differs between holdings (a lease's
    /// is strictly greater than any before it), so ids repeat only after 2^24 crossings of
    /// one holding or 2^16 holdings, far beyond any dedup window.
    pub fn handoff(&mut self, region: RegionId) -> HandoffId {
        const EPOCH_BITS: u32 = NetId::SEQUENCE_BITS - HANDOFF_COUNTER_BITS;
        let counter = self.next_handoff_seq & ((1 << HANDOFF_COUNTER_BITS) - 1);
        let epoch = self.epoch & ((1 << EPOCH_BITS) - 1);
        self.next_handoff_seq += 1;
        let id = NetId::mint(region, epoch << HANDOFF_COUNTER_BITS | counter)
            .expect("region ids are validated by the config");
        HandoffId(id.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handoff_ids_carry_the_epoch_above_the_counter_in_the_region_layout() {
        let region = RegionId(3);
        let mut mint = Mint {
            epoch: 5,
            ..Mint::default()
        };
        let a = mint.handoff(region);
        let b = mint.handoff(region);
        assert_eq!(b.0, a.0 + 1);
        assert_eq!(a.0 >> NetId::SEQUENCE_BITS, 3, "the region's id space");
        assert_eq!((a.0 >> HANDOFF_COUNTER_BITS) & 0xffff, 5);
        // The same counter under another epoch is another id.
        let mut next = Mint {
            epoch: 6,
            next_handoff_seq: 0,
            ..mint
        };
        assert_ne!(next.handoff(region), a);
    }

    #[test]
    fn ticks_for_ms_is_exact_at_every_rate() {
        for (hz, ms, ticks) in [
            (20, 1000, 20),
            (25, 1000, 25),
            (50, 1000, 50),
            (100, 1000, 100),
            (20, 800, 16),
            (30, 100, 3),
            (60, 1, 1),
            (20, 0, 0),
        ] {
            assert_eq!(
                TickClock::new(hz).ticks_for_ms(ms),
                ticks,
                "{ms} ms at {hz} Hz"
            );
        }
    }
}
