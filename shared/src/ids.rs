//! Identifiers that cross crate and process boundaries.
//!
//! They are plain newtypes over integers so that they are `Copy`, hash cheaply, sort
//! deterministically and encode to fixed sizes on the wire and in storage.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// A region of the world, unique within a world definition (`world.toml`).
    RegionId(u32),
    "r"
);
id_type!(
    /// A player account. Stable across sessions, regions and nodes.
    PlayerId(u64),
    "p"
);
id_type!(
    /// A simulated entity's network-visible id: stable for the entity's whole life, across
    /// regions (a handed-off entity keeps it), never reused within a world run.
    NetId(u64),
    "e"
);
id_type!(
    /// Identifies one border crossing. Applying the same handoff twice is a no-op.
    HandoffId(u64),
    "h"
);

impl RegionId {
    /// The largest valid region id, 2^23 - 1: region ids fill the bits of a [`NetId`]
    /// above its 40-bit sequence and below the player-avatar bit, so that ids minted by
    /// different regions never collide.
    pub const MAX: u32 = (1 << 23) - 1;
}

impl PlayerId {
    /// The largest valid player id, 2^63 - 1 (the top bit marks avatars in [`NetId`]).
    /// Ids above it are refused wherever they enter.
    pub const MAX: u64 = (1 << 63) - 1;

    /// True if the id is in the valid range `0..=PlayerId::MAX`.
    pub fn is_valid(self) -> bool {
        self.0 <= Self::MAX
    }
}

impl NetId {
    /// Number of low bits of a [`NetId`] that count entities within their origin region.
    pub const SEQUENCE_BITS: u32 = 40;

    /// The id of the `sequence`-th entity created by region `region`.
    ///
    /// Regions mint ids independently and without coordination: the region id in the
    /// high bits keeps them disjoint. Returns `None` once a region has minted 2^40 ids, or
    /// for a region id above [`RegionId::MAX`].
    pub fn mint(region: RegionId, sequence: u64) -> Option<NetId> {
        if sequence >= 1 << Self::SEQUENCE_BITS || region.0 > RegionId::MAX {
            return None;
        }
        Some(NetId(
            (u64::from(region.0) << Self::SEQUENCE_BITS) | sequence,
        ))
    }

    /// The id a player's avatar carries: players are not minted by a region, their avatar
    /// follows them between regions and sessions. The top bit marks player avatars, so
    /// this is one-to-one only for valid ids ([`PlayerId::is_valid`]); callers check that
    /// first.
    pub fn of_player(player: PlayerId) -> NetId {
        debug_assert!(player.is_valid(), "{player} is out of range");
        NetId(player.0 | (1 << 63))
    }

    /// The player whose avatar this is ([`NetId::of_player`]), or `None` for an entity a
    /// region minted.
    pub fn player(self) -> Option<PlayerId> {
        (self.0 >> 63 == 1).then_some(PlayerId(self.0 & !(1 << 63)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_are_disjoint_across_regions_and_from_players() {
        let a = NetId::mint(RegionId(1), 5).unwrap();
        let b = NetId::mint(RegionId(2), 5).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, NetId::of_player(PlayerId(5)));
        assert_eq!(NetId::of_player(PlayerId(5)).player(), Some(PlayerId(5)));
        assert_eq!(
            NetId::of_player(PlayerId(PlayerId::MAX)).player(),
            Some(PlayerId(PlayerId::MAX))
        );
        assert_eq!(a.player(), None);
        assert!(NetId::mint(RegionId(1), 1 << 40).is_none());
        assert!(NetId::mint(RegionId(RegionId::MAX + 1), 0).is_none());
        // The largest region's ids stay below the avatar bit.
        let top = NetId::mint(RegionId(RegionId::MAX), (1 << 40) - 1).unwrap();
        assert!(top.0 < 1 << 63);
        assert!(!PlayerId(1 << 63).is_valid() && PlayerId(PlayerId::MAX).is_valid());
    }
}
