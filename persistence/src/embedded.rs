//! The embedded snapshot store: one redb file in the node's data dir, no setup. The
//! default, and what tests run without services.
//!
//! A commit is one redb write transaction (copy-on-write B-trees, fsync on commit), so it
//! is atomic and durable by construction: the fence check, the cells and the head are
//! written together or not at all. redb is synchronous; each call runs on tokio's blocking
//! pool.

use std::path::Path;
use std::sync::{Arc, RwLock};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tessera_shared::ids::{PlayerId, RegionId};

use crate::audit::{AUDIT_SCAN_MAX, AuditFilter, AuditPage, AuditRecord, Sanction, SanctionRecord};
use crate::snapshot::*;

/// region -> (epoch, tick, schema_version)
const HEADS: TableDefinition<u32, (u64, u64, u32)> = TableDefinition::new("region_heads");
/// (region, cell) -> (schema_version, data)
const CELLS: TableDefinition<(u32, u32), (u32, &[u8])> = TableDefinition::new("region_cells");
/// player -> (schema_version, data)
const PLAYERS: TableDefinition<u64, (u32, &[u8])> = TableDefinition::new("players");

/// audit id -> (schema_version, at_unix_ms, node, who, role, action, target, reason,
/// result)
#[allow(clippy::type_complexity)]
const AUDIT: TableDefinition<&str, (u32, u64, &str, &str, &str, &str, &str, &str, &str)> =
    TableDefinition::new("audit_log");
/// audit id -> (schema_version, details): beside [`AUDIT`] rather than in it, so that
/// files written before records had details open unchanged (theirs read as empty).
const AUDIT_DETAILS: TableDefinition<&str, (u32, &str)> = TableDefinition::new("audit_details");

/// player -> (schema_version, until_unix_s (0: never), reason)
/// Bans and mutes by player: (schema version, until (0: for good), reason).
type SanctionTable = TableDefinition<'static, u64, (u32, u64, &'static str)>;
const BANS: SanctionTable = TableDefinition::new("bans");
const MUTES: SanctionTable = TableDefinition::new("mutes");

fn sanction_table(kind: Sanction) -> SanctionTable {
    match kind {
        Sanction::Ban => BANS,
        Sanction::Mute => MUTES,
    }
}

/// The file name in the data dir.
pub const FILE_NAME: &str = "snapshots.redb";

/// A redb-backed [`SnapshotStore`].
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    /// The player directory's profiles and indexes (`crate::directory::embedded`).
    pub(crate) directory: Arc<RwLock<crate::directory::embedded::Index>>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<EmbeddedStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(unavailable)?;
        let db = Database::create(data_dir.join(FILE_NAME)).map_err(unavailable)?;
        let txn = db.begin_write().map_err(unavailable)?;
        txn.open_table(HEADS).map_err(unavailable)?;
        txn.open_table(CELLS).map_err(unavailable)?;
        txn.open_table(PLAYERS).map_err(unavailable)?;
        txn.open_table(AUDIT).map_err(unavailable)?;
        txn.open_table(AUDIT_DETAILS).map_err(unavailable)?;
        txn.open_table(BANS).map_err(unavailable)?;
        crate::economy::embedded::create_tables(&txn)?;
        txn.open_table(crate::directory::embedded::PROFILES)
            .map_err(unavailable)?;
        txn.open_table(crate::directory::embedded::SESSIONS)
            .map_err(unavailable)?;
        txn.open_table(crate::jobs::EMBEDDED_TABLE)
            .map_err(unavailable)?;
        txn.commit().map_err(unavailable)?;
        let directory = crate::directory::embedded::Index::load(&db)?;
        Ok(EmbeddedStore {
            db: Arc::new(db),
            directory: Arc::new(RwLock::new(directory)),
        })
    }

    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(unavailable)?
    }

    /// Test hook: performs a commit up to the point just before it becomes visible, then
    /// "crashes" (the transaction is dropped). Proves atomicity in the conformance tests.
    #[doc(hidden)]
    pub async fn commit_crashing_before_publish(
        &self,
        commit: &RegionCommit,
    ) -> Result<(), StoreError> {
        let commit = commit.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            write_commit(&txn, &commit)?;
            drop(txn); // Aborted: as if the process died here.
            Ok(())
        })
        .await
    }
}

/// Checks the fence and writes the commit's cells and head inside `txn`.
fn write_commit(txn: &redb::WriteTransaction, commit: &RegionCommit) -> Result<(), StoreError> {
    let region = commit.region.0;
    let mut heads = txn.open_table(HEADS).map_err(unavailable)?;
    if let Some(head) = heads.get(region).map_err(unavailable)? {
        let (epoch, tick, _) = head.value();
        check_fence(epoch, tick, commit.epoch, commit.tick)?;
    }
    let mut cells = txn.open_table(CELLS).map_err(unavailable)?;
    for write in &commit.cells {
        match &write.data {
            Some(data) => {
                cells
                    .insert((region, write.cell), (SCHEMA_VERSION, data.as_slice()))
                    .map_err(unavailable)?;
            }
            None => {
                cells.remove((region, write.cell)).map_err(unavailable)?;
            }
        }
    }
    heads
        .insert(region, (commit.epoch, commit.tick, SCHEMA_VERSION))
        .map_err(unavailable)?;
    Ok(())
}

impl SnapshotStore for EmbeddedStore {
    async fn commit(&self, commit: &RegionCommit) -> Result<(), StoreError> {
        check_commit(commit)?;
        let commit = commit.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            write_commit(&txn, &commit)?;
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn load(&self, region: RegionId) -> Result<Option<RegionSnapshot>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let heads = txn.open_table(HEADS).map_err(unavailable)?;
            let Some(head) = heads.get(region.0).map_err(unavailable)? else {
                return Ok(None);
            };
            let (epoch, tick, version) = head.value();
            upgrade(version, Vec::new())?;
            let cells_table = txn.open_table(CELLS).map_err(unavailable)?;
            let mut cells = std::collections::BTreeMap::new();
            for entry in cells_table
                .range((region.0, 0)..=(region.0, u32::MAX))
                .map_err(unavailable)?
            {
                let (key, value) = entry.map_err(unavailable)?;
                let (version, data) = value.value();
                cells.insert(key.value().1, upgrade(version, data.to_vec())?);
            }
            Ok(Some(RegionSnapshot {
                region,
                epoch,
                tick,
                cells,
            }))
        })
        .await
    }

    async fn save_player(&self, record: &PlayerRecord) -> Result<(), StoreError> {
        check_payload(&record.data)?;
        let record = record.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut players = txn.open_table(PLAYERS).map_err(unavailable)?;
                players
                    .insert(record.player.0, (SCHEMA_VERSION, record.data.as_slice()))
                    .map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn load_player(&self, player: PlayerId) -> Result<Option<PlayerRecord>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let players = txn.open_table(PLAYERS).map_err(unavailable)?;
            let Some(value) = players.get(player.0).map_err(unavailable)? else {
                return Ok(None);
            };
            let (version, data) = value.value();
            Ok(Some(PlayerRecord {
                player,
                data: upgrade(version, data.to_vec())?,
            }))
        })
        .await
    }

    async fn write_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        record.check()?;
        let r = record.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut audit = txn.open_table(AUDIT).map_err(unavailable)?;
                audit
                    .insert(
                        r.id.as_str(),
                        (
                            SCHEMA_VERSION,
                            r.at_unix_ms,
                            r.node.as_str(),
                            r.who.as_str(),
                            r.role.as_str(),
                            r.action.as_str(),
                            r.target.as_str(),
                            r.reason.as_str(),
                            r.result.as_str(),
                        ),
                    )
                    .map_err(unavailable)?;
                let mut details = txn.open_table(AUDIT_DETAILS).map_err(unavailable)?;
                if r.details.is_empty() {
                    details.remove(r.id.as_str()).map_err(unavailable)?;
                } else {
                    details
                        .insert(r.id.as_str(), (SCHEMA_VERSION, r.details.as_str()))
                        .map_err(unavailable)?;
                }
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn set_sanction(
        &self,
        kind: Sanction,
        player: PlayerId,
        record: Option<&SanctionRecord>,
    ) -> Result<(), StoreError> {
        if let Some(record) = record {
            record.check()?;
        }
        let record = record.cloned();
        // The profile shows it too, written in the same transaction.
        self.write_directory(move |index, txn| {
            {
                let mut table = txn.open_table(sanction_table(kind)).map_err(unavailable)?;
                match &record {
                    Some(record) => {
                        let until = record.until_unix_s.unwrap_or(0);
                        table
                            .insert(player.0, (SCHEMA_VERSION, until, record.reason.as_str()))
                            .map_err(unavailable)?;
                    }
                    None => {
                        table.remove(player.0).map_err(unavailable)?;
                    }
                }
            }
            let until = record
                .as_ref()
                .map_or(0, |r| r.until_unix_s.unwrap_or(crate::directory::FOREVER));
            let profile =
                crate::directory::embedded::note_sanction(index, txn, kind, player, until)?;
            Ok(vec![profile])
        })
        .await
    }

    async fn sanction_of(
        &self,
        kind: Sanction,
        player: PlayerId,
    ) -> Result<Option<SanctionRecord>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = match txn.open_table(sanction_table(kind)) {
                Ok(table) => table,
                // Never written (a store from before mutes): nobody has one.
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(unavailable(e)),
            };
            let Some(value) = table.get(player.0).map_err(unavailable)? else {
                return Ok(None);
            };
            let (_schema, until, reason) = value.value();
            Ok(Some(SanctionRecord {
                player,
                until_unix_s: (until != 0).then_some(until),
                reason: reason.to_owned(),
            }))
        })
        .await
    }

    async fn read_audit(
        &self,
        limit: usize,
        before: Option<&str>,
        filter: &AuditFilter,
    ) -> Result<AuditPage, StoreError> {
        let limit = limit.min(crate::audit::AUDIT_READ_MAX);
        let before = before.map(str::to_owned);
        let filter = filter.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let audit = txn.open_table(AUDIT).map_err(unavailable)?;
            // `open` creates it in files from before details were kept.
            let details = txn.open_table(AUDIT_DETAILS).map_err(unavailable)?;
            let range = match &before {
                Some(before) => audit.range::<&str>(..before.as_str()),
                None => audit.range::<&str>(..),
            }
            .map_err(unavailable)?;
            let mut page = AuditPage {
                records: Vec::with_capacity(limit),
                next_before: None,
            };
            // The oldest record examined so far: `before` of the next page.
            let mut examined_last: Option<String> = None;
            for (examined, entry) in range.rev().enumerate() {
                // Another (older) record exists: say where to go on, if this page is done.
                if page.records.len() == limit || examined == AUDIT_SCAN_MAX {
                    // A full page, or bounded work per read.
                    page.next_before = examined_last;
                    break;
                }
                let (id, value) = entry.map_err(unavailable)?;
                examined_last = Some(id.value().to_owned());
                let (_schema, at_unix_ms, node, who, role, action, target, reason, result) =
                    value.value();
                let mut record = AuditRecord {
                    id: id.value().to_owned(),
                    at_unix_ms,
                    node: node.to_owned(),
                    who: who.to_owned(),
                    role: role.to_owned(),
                    action: action.to_owned(),
                    target: target.to_owned(),
                    reason: reason.to_owned(),
                    details: String::new(),
                    result: result.to_owned(),
                };
                if !filter.matches(&record) {
                    continue;
                }
                if let Some(value) = details.get(record.id.as_str()).map_err(unavailable)? {
                    record.details = value.value().1.to_owned();
                }
                page.records.push(record);
            }
            Ok(page)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A filtered read examines at most `AUDIT_SCAN_MAX` records and says where to go on.
    #[test]
    fn a_filtered_audit_read_is_bounded_and_resumable() {
        let dir = std::env::temp_dir().join(format!("tessera-audit-scan-{}", std::process::id()));
        let store = EmbeddedStore::open(&dir).unwrap();
        // The one match is the oldest, behind more records than one read examines.
        let n = AUDIT_SCAN_MAX + 5;
        {
            let txn = store.db.begin_write().unwrap();
            {
                let mut audit = txn.open_table(AUDIT).unwrap();
                for seq in 0..n as u64 {
                    let id = AuditRecord::id_for(1_000 + seq, "n", seq);
                    let who = if seq == 0 { "needle" } else { "hay" };
                    let value = (
                        SCHEMA_VERSION,
                        0,
                        "n",
                        who,
                        "admin",
                        "player.kick",
                        "",
                        "",
                        "ok",
                    );
                    audit.insert(id.as_str(), value).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let filter = AuditFilter {
            who: Some("needle".into()),
            ..AuditFilter::default()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let first = runtime
            .block_on(store.read_audit(10, None, &filter))
            .unwrap();
        assert!(first.records.is_empty());
        // The oldest examined (`before` excludes it): records 5 and up of 0..n.
        let oldest_examined = AuditRecord::id_for(1_000 + 5, "n", 5);
        assert_eq!(first.next_before.as_deref(), Some(oldest_examined.as_str()));
        let second = runtime
            .block_on(store.read_audit(10, first.next_before.as_deref(), &filter))
            .unwrap();
        assert_eq!(second.records.len(), 1);
        assert_eq!(second.records[0].who, "needle");
        assert_eq!(second.next_before, None);
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}
