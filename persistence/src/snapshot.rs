//! The snapshot store contract: what every implementation guarantees, in one place.
//!
//! A region's state is stored per grid cell. A [`RegionCommit`] rewrites only the cells
//! that changed (dirty cells) and is **atomic**: a crash at any point leaves either the
//! previous snapshot or the new one visible, never a mix. Each commit carries the writer's
//! lease **epoch**; a commit with an epoch older than the stored one is rejected
//! ([`StoreError::StaleEpoch`]), so a node that lost its lease cannot overwrite its
//! successor. Every stored document carries [`SCHEMA_VERSION`]; older documents are
//! upgraded on load by [`upgrade`], newer ones are refused.
//!
//! The shard keys: region documents are keyed and queried by region id, player documents
//! by player id. Payloads are opaque bytes to the store (the simulation's own encoding).

use std::collections::BTreeMap;
use std::future::Future;

use tessera_shared::ids::{PlayerId, RegionId};

use crate::audit::{AuditFilter, AuditPage, AuditRecord, Sanction, SanctionRecord};

/// The schema version written on every document.
pub const SCHEMA_VERSION: u32 = 1;
/// Largest payload of one cell or one player, in bytes (MongoDB's document limit is 16 MiB;
/// a cell is a few kilobytes).
pub const PAYLOAD_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Most cells one commit may write (a region has at most 65,536 grid cells).
pub const CELLS_PER_COMMIT_MAX: usize = 65_536;

/// One cell's new content in a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellWrite {
    /// The cell's index in the region's grid.
    pub cell: u32,
    /// Its encoded content, or `None` if the cell is now empty (removed from the snapshot).
    pub data: Option<Vec<u8>>,
}

/// A snapshot commit: the dirty cells of `region` at `tick`, written under `epoch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionCommit {
    /// The region.
    pub region: RegionId,
    /// The writer's lease epoch.
    pub epoch: u64,
    /// The tick the snapshot is of; must be newer than the stored one for the same epoch.
    pub tick: u64,
    /// The cells that changed since the previous commit.
    pub cells: Vec<CellWrite>,
}

/// A region's last committed snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionSnapshot {
    /// The region.
    pub region: RegionId,
    /// The epoch of the commit.
    pub epoch: u64,
    /// The tick of the commit.
    pub tick: u64,
    /// Every non-empty cell, by index.
    pub cells: BTreeMap<u32, Vec<u8>>,
}

/// A player's saved state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlayerRecord {
    /// The player.
    pub player: PlayerId,
    /// The encoded state (position, health, stats, inventory).
    pub data: Vec<u8>,
}

/// Why a store operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stored snapshot was written under a newer epoch: this writer lost the region.
    #[error("stale epoch {attempted}: the region is held under epoch {stored}")]
    StaleEpoch {
        /// The epoch of the stored snapshot.
        stored: u64,
        /// The epoch of the refused commit.
        attempted: u64,
    },
    /// The commit is not newer than the stored snapshot of the same epoch.
    #[error("tick {attempted} is not after the stored tick {stored}")]
    StaleTick {
        /// The tick of the stored snapshot.
        stored: u64,
        /// The tick of the refused commit.
        attempted: u64,
    },
    /// A document was written by a newer Tessera.
    #[error("schema version {found} is newer than this build's {SCHEMA_VERSION}")]
    NewerSchema {
        /// The version found.
        found: u32,
    },
    /// The request breaks a limit (payload size, cell count).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Stored data does not decode.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The store cannot be reached or failed; retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A transaction kept conflicting with others on the same documents; retry later
    /// (with the same idempotency key). The store itself works.
    #[error("contended: {0}")]
    Contended(String),
}

impl StoreError {
    /// Whether retrying the same request later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Contended(_))
    }

    /// Whether the store itself failed (what the circuit breaker counts): not a refusal,
    /// not contention between transactions.
    pub fn is_outage(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// A snapshot store. Implementations: [`crate::mongo::MongoStore`] (production) and
/// [`crate::embedded::EmbeddedStore`] (the default; no setup). The same conformance tests
/// run against both.
pub trait SnapshotStore: Send + Sync {
    /// Commits `commit` atomically, or refuses it (stale epoch or tick, limits).
    fn commit(&self, commit: &RegionCommit) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The region's last committed snapshot, if any.
    fn load(
        &self,
        region: RegionId,
    ) -> impl Future<Output = Result<Option<RegionSnapshot>, StoreError>> + Send;

    /// Saves a player; durable once this returns `Ok`.
    fn save_player(
        &self,
        record: &PlayerRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A player's last save, if any.
    fn load_player(
        &self,
        player: PlayerId,
    ) -> impl Future<Output = Result<Option<PlayerRecord>, StoreError>> + Send;

    /// Writes an audit record, replacing the one with the same id (its outcome); durable
    /// once this returns `Ok`.
    fn write_audit(
        &self,
        record: &AuditRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Bans or mutes a player (`kind`; replacing an earlier one of that kind), or lifts
    /// it (`record` `None`).
    fn set_sanction(
        &self,
        kind: Sanction,
        player: PlayerId,
        record: Option<&SanctionRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The player's ban or mute (`kind`), if any (in force or not: see
    /// [`SanctionRecord::is_in_force`]).
    fn sanction_of(
        &self,
        kind: Sanction,
        player: PlayerId,
    ) -> impl Future<Output = Result<Option<SanctionRecord>, StoreError>> + Send;

    /// The newest audit records that pass `filter`, with an id below `before` (all:
    /// `None`), newest first, at most `limit` (capped at
    /// [`crate::audit::AUDIT_READ_MAX`]). A filtered read examines a bounded number of
    /// records ([`crate::audit::AUDIT_SCAN_MAX`]), so a page may hold fewer than `limit`
    /// with more to come: go on from [`AuditPage::next_before`] until it is `None`.
    fn read_audit(
        &self,
        limit: usize,
        before: Option<&str>,
        filter: &AuditFilter,
    ) -> impl Future<Output = Result<AuditPage, StoreError>> + Send;
}

/// Checks a commit against the limits, before any write.
pub(crate) fn check_commit(commit: &RegionCommit) -> Result<(), StoreError> {
    if commit.region.0 > RegionId::MAX {
        return Err(StoreError::Invalid(format!(
            "region id {} out of range",
            commit.region.0
        )));
    }
    if commit.cells.len() > CELLS_PER_COMMIT_MAX {
        return Err(StoreError::Invalid(format!(
            "{} cells in one commit; at most {CELLS_PER_COMMIT_MAX}",
            commit.cells.len()
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(commit.cells.len());
    for write in &commit.cells {
        if !seen.insert(write.cell) {
            return Err(StoreError::Invalid(format!(
                "cell {} written twice",
                write.cell
            )));
        }
        check_payload(write.data.as_deref().unwrap_or_default())?;
    }
    Ok(())
}

pub(crate) fn check_payload(data: &[u8]) -> Result<(), StoreError> {
    if data.len() > PAYLOAD_BYTES_MAX {
        return Err(StoreError::Invalid(format!(
            "payload of {} bytes; at most {PAYLOAD_BYTES_MAX}",
            data.len()
        )));
    }
    Ok(())
}

/// Whether a commit of (`epoch`, `tick`) may replace a stored (`stored_epoch`,
/// `stored_tick`): a newer epoch always, the same epoch only with a newer tick.
pub fn check_fence(
    stored_epoch: u64,
    stored_tick: u64,
    epoch: u64,
    tick: u64,
) -> Result<(), StoreError> {
    if epoch < stored_epoch {
        return Err(StoreError::StaleEpoch {
            stored: stored_epoch,
            attempted: epoch,
        });
    }
    if epoch == stored_epoch && tick <= stored_tick {
        return Err(StoreError::StaleTick {
            stored: stored_tick,
            attempted: tick,
        });
    }
    Ok(())
}

/// The migration hook: brings a payload written under schema `version` up to
/// [`SCHEMA_VERSION`]. Each future version adds one step here (`1 => 2`, `2 => 3`, ...),
/// applied in order on load; a version newer than this build is refused.
pub fn upgrade(version: u32, data: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    match version {
        SCHEMA_VERSION => Ok(data),
        found if found > SCHEMA_VERSION => Err(StoreError::NewerSchema { found }),
        // Version 0 never existed: a document without a version is corrupt.
        other => Err(StoreError::Corrupt(format!(
            "unknown schema version {other}"
        ))),
    }
}
