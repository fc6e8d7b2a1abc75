//! Errors of the region API. Operating errors (bad definitions, full regions, bad values
//! from outside) are returned; broken internal invariants are assertions.

use crate::grid::GridError;
use tessera_shared::ids::RegionId;
use tessera_shared::math::Vec2;

/// Why a region could not be created or a request on it was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegionError {
    /// The region's definition does not fit its grid.
    #[error("region {region}: {source}")]
    Grid {
        /// The region.
        region: RegionId,
        /// What the grid refused.
        #[source]
        source: GridError,
    },
    /// The region is not part of the configured world.
    #[error("region {0} is not defined in world.toml")]
    UnknownRegion(RegionId),
    /// An archetype index outside `balance.toml`'s archetypes.
    #[error("archetype index {index} does not exist ({count} archetypes configured)")]
    UnknownArchetype {
        /// The index given.
        index: u16,
        /// How many there are.
        count: usize,
    },
    /// A position that is NaN, infinite, or outside the region.
    #[error("position ({}, {}) is not finite or lies outside region {region}", .position.x, .position.y)]
    InvalidPosition {
        /// The region.
        region: RegionId,
        /// The position given.
        position: Vec2,
    },
    /// `entities_per_region_max` reached.
    #[error("region {region} is full ({max} entities)")]
    Full {
        /// The region.
        region: RegionId,
        /// The configured limit.
        max: u32,
    },
    /// A stored snapshot does not decode.
    #[error("snapshot: {0}")]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// The region minted all 2^40 entity ids it may.
    #[error("region {0} has exhausted its entity ids")]
    IdsExhausted(RegionId),
}
