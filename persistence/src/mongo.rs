//! The MongoDB snapshot store (production; sharded clusters included).
//!
//! Collections and shard keys (see `scripts/mongo-shard.js`):
//! - `regions`: one head document per region, `_id` = region id (shard key `_id`): the
//!   committed `epoch` and `tick` and the **manifest**, which version of each cell is
//!   current;
//! - `region_cells`: one document per written version of a cell, `_id` =
//!   `{r, c, e, t}` (region, cell, epoch, tick), with `region` (shard key) repeated;
//! - `players`: one document per player, `_id` = player id (shard key `_id`);
//! - the player directory's `player_directory` and `player_sessions`
//!   (`crate::directory`'s MongoDB half);
//! - the economy's `economy_players`, `shop_stock` and `economy_ledger`
//!   (`crate::economy`'s MongoDB half).
//!
//! A commit writes the dirty cells' new versions first (invisible: no manifest names
//! them), then swaps the head with a compare-and-set on the head it read (`epoch`, `tick`),
//! which is the single atomic step: a crash before it leaves the old snapshot, after it
//! the new one. Older versions of the rewritten cells are deleted afterwards (garbage is
//! harmless: loads read only what the manifest names). The compare-and-set is also the
//! fence: a writer whose epoch is older than the stored one matches nothing, its upsert
//! collides on `_id` (duplicate key, 11000), and it gets [`StoreError::StaleEpoch`].
//!
//! Every driver call is bounded: server selection and connection within
//! [`SELECTION_TIMEOUT`], and each operation runs as its own task timed out after
//! [`OPERATION_TIMEOUT`] (the driver's futures are not cancelled mid-operation).

use std::collections::BTreeMap;
use std::time::Duration;

use mongodb::bson::{Binary, Bson, Document, doc, spec::BinarySubtype};
use mongodb::options::{Acknowledgment, ClientOptions, WriteConcern};
use mongodb::{Client, Collection};
use tessera_shared::ids::{PlayerId, RegionId};

use crate::audit::{AuditFilter, AuditPage, AuditRecord, Sanction, SanctionRecord};
use crate::snapshot::*;

/// How long the driver may look for a usable server before an operation fails.
pub const SELECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one operation may take, selection included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// MongoDB's duplicate key error.
const DUPLICATE_KEY: i32 = 11000;

/// A MongoDB-backed [`SnapshotStore`].
#[derive(Clone, Debug)]
pub struct MongoStore {
    db: mongodb::Database,
    heads: Collection<Document>,
    cells: Collection<Document>,
    players: Collection<Document>,
    audit: Collection<Document>,
    bans: Collection<Document>,
    mutes: Collection<Document>,
    /// The economy's collections (`crate::economy`).
    pub(crate) economy: crate::economy::mongo::Collections,
    /// The player directory's collections (`crate::directory`).
    pub(crate) directory: crate::directory::mongo::Collections,
    jobs: Collection<Document>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

pub(crate) fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .is_some_and(|errors| errors.iter().all(|w| w.code == DUPLICATE_KEY)),
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// Runs `op` as its own task and gives up on it after [`OPERATION_TIMEOUT`].
pub(crate) async fn bounded<T: Send + 'static>(
    op: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    bounded_for(OPERATION_TIMEOUT, op).await
}

/// [`bounded`] with a timeout of its own.
pub(crate) async fn bounded_for<T: Send + 'static>(
    timeout: Duration,
    op: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, tokio::spawn(op)).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(unavailable(join)),
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer within {timeout:?}"
        ))),
    }
}

fn binary(data: &[u8]) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Generic,
        bytes: data.to_vec(),
    })
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("malformed {what}"))
}

/// The manifest entry of a cell: the version (epoch, tick) that is current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Version {
    epoch: u64,
    tick: u64,
}

/// A head document, decoded.
struct Head {
    epoch: u64,
    tick: u64,
    manifest: BTreeMap<u32, Version>,
}

fn u64_of(doc: &Document, key: &str) -> Result<u64, StoreError> {
    doc.get_i64(key)
        .ok()
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| corrupt(key))
}

fn schema_of(doc: &Document) -> Result<u32, StoreError> {
    doc.get_i32("schema_version")
        .ok()
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| corrupt("schema_version"))
}

fn decode_head(doc: &Document) -> Result<Head, StoreError> {
    let version = schema_of(doc)?;
    upgrade(version, Vec::new())?;
    let mut manifest = BTreeMap::new();
    for entry in doc.get_array("manifest").map_err(|_| corrupt("manifest"))? {
        let entry = entry
            .as_document()
            .ok_or_else(|| corrupt("manifest entry"))?;
        let cell = entry
            .get_i64("c")
            .ok()
            .and_then(|c| u32::try_from(c).ok())
            .ok_or_else(|| corrupt("manifest cell"))?;
        manifest.insert(
            cell,
            Version {
                epoch: u64_of(entry, "e")?,
                tick: u64_of(entry, "t")?,
            },
        );
    }
    Ok(Head {
        epoch: u64_of(doc, "epoch")?,
        tick: u64_of(doc, "tick")?,
        manifest,
    })
}

fn cell_id(region: RegionId, cell: u32, version: Version) -> Document {
    doc! {
        "r": i64::from(region.0),
        "c": i64::from(cell),
        "e": version.epoch as i64,
        "t": version.tick as i64,
    }
}

impl MongoStore {
    /// The collection of `kind`'s records.
    fn sanctions(&self, kind: Sanction) -> Collection<Document> {
        match kind {
            Sanction::Ban => self.bans.clone(),
            Sanction::Mute => self.mutes.clone(),
        }
    }

    /// Connects to `uri` and uses `database`. Fails within [`SELECTION_TIMEOUT`] plus
    /// [`OPERATION_TIMEOUT`] if no server answers.
    pub async fn connect(uri: &str, database: &str) -> Result<MongoStore, StoreError> {
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| StoreError::Invalid(format!("MongoDB URI: {e}")))?;
        options.server_selection_timeout = Some(SELECTION_TIMEOUT);
        options.connect_timeout = Some(SELECTION_TIMEOUT);
        options.app_name = Some("tessera".into());
        // An acknowledged commit or save must survive a crash of the server: journaled,
        // on a majority of a replica set, unless the URI asks for something else.
        options.write_concern.get_or_insert_with(|| {
            WriteConcern::builder()
                .w(Acknowledgment::Majority)
                .journal(true)
                .build()
        });
        let client = Client::with_options(options).map_err(unavailable)?;
        let db = client.database(database);
        let economy = crate::economy::mongo::Collections::open(&db).await?;
        let directory = crate::directory::mongo::Collections::open(&db).await?;
        let store = MongoStore {
            db: db.clone(),
            heads: db.collection("regions"),
            cells: db.collection("region_cells"),
            players: db.collection("players"),
            audit: db.collection("audit_log"),
            bans: db.collection("bans"),
            mutes: db.collection("mutes"),
            economy,
            directory,
            jobs: db.collection("bulk_jobs"),
        };
        let cells = store.cells.clone();
        let audit = store.audit.clone();
        bounded(async move {
            cells
                .create_index(
                    mongodb::IndexModel::builder()
                        .keys(doc! { "region": 1, "cell": 1 })
                        .build(),
                )
                .await
                .map_err(unavailable)?;
            // A filtered read of the audit log walks one of these, newest first, not
            // the whole log.
            let by = |field: &str| {
                mongodb::IndexModel::builder()
                    .keys(doc! { field: 1, "_id": -1 })
                    .build()
            };
            audit
                .create_indexes([by("target"), by("action"), by("who")])
                .await
                .map_err(unavailable)?;
            Ok(())
        })
        .await?;
        Ok(store)
    }

    /// The database.
    pub(crate) fn db(&self) -> &mongodb::Database {
        &self.db
    }

    /// The bulk jobs (`crate::jobs`), `_id` the job's key.
    pub(crate) fn jobs(&self) -> &Collection<Document> {
        &self.jobs
    }

    /// The driver's client (sessions and transactions start from it).
    pub(crate) fn client(&self) -> &Client {
        self.db.client()
    }

    /// Asks the server whether it answers (a `ping` command, bounded like every call).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let db = self.db.clone();
        bounded(async move {
            db.run_command(doc! { "ping": 1 })
                .await
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn read_head(&self, region: RegionId) -> Result<Option<Document>, StoreError> {
        let heads = self.heads.clone();
        bounded(async move {
            heads
                .find_one(doc! { "_id": i64::from(region.0) })
                .await
                .map_err(unavailable)
        })
        .await
    }

    /// Phase 1 of a commit: the new cell versions, invisible until the head names them.
    async fn write_cells(&self, commit: &RegionCommit) -> Result<(), StoreError> {
        let version = Version {
            epoch: commit.epoch,
            tick: commit.tick,
        };
        let docs: Vec<Document> = commit
            .cells
            .iter()
            .filter_map(|w| {
                let data = w.data.as_ref()?;
                Some(doc! {
                    "_id": cell_id(commit.region, w.cell, version),
                    "region": i64::from(commit.region.0),
                    "cell": i64::from(w.cell),
                    "schema_version": SCHEMA_VERSION as i32,
                    "data": binary(data),
                })
            })
            .collect();
        if docs.is_empty() {
            return Ok(());
        }
        let cells = self.cells.clone();
        bounded(async move {
            match cells.insert_many(docs).ordered(false).await {
                Ok(_) => Ok(()),
                // A retried commit: those versions are already there, identical.
                Err(e) if is_duplicate_key(&e) => Ok(()),
                Err(e) => Err(unavailable(e)),
            }
        })
        .await
    }

    /// Test hook: phase 1 only, as if the node died before the head swap.
    #[doc(hidden)]
    pub async fn commit_crashing_before_publish(
        &self,
        commit: &RegionCommit,
    ) -> Result<(), StoreError> {
        check_commit(commit)?;
        self.write_cells(commit).await
    }
}

impl SnapshotStore for MongoStore {
    async fn commit(&self, commit: &RegionCommit) -> Result<(), StoreError> {
        check_commit(commit)?;
        let region = commit.region;
        let stored = self.read_head(region).await?;
        let head = stored.as_ref().map(decode_head).transpose()?;
        if let Some(head) = &head {
            check_fence(head.epoch, head.tick, commit.epoch, commit.tick)?;
        }
        self.write_cells(commit).await?;

        let version = Version {
            epoch: commit.epoch,
            tick: commit.tick,
        };
        let mut manifest = head
            .as_ref()
            .map(|h| h.manifest.clone())
            .unwrap_or_default();
        for write in &commit.cells {
            match write.data {
                Some(_) => manifest.insert(write.cell, version),
                None => manifest.remove(&write.cell),
            };
        }
        let manifest: Vec<Bson> = manifest
            .iter()
            .map(|(&cell, v)| {
                Bson::Document(
                    doc! { "c": i64::from(cell), "e": v.epoch as i64, "t": v.tick as i64 },
                )
            })
            .collect();
        // Compare-and-set on the head we read (or its absence).
        let filter = match &head {
            Some(h) => doc! {
                "_id": i64::from(region.0),
                "epoch": h.epoch as i64,
                "tick": h.tick as i64,
            },
            None => doc! { "_id": i64::from(region.0), "epoch": { "$exists": false } },
        };
        let update = doc! { "$set": {
            "epoch": commit.epoch as i64,
            "tick": commit.tick as i64,
            "schema_version": SCHEMA_VERSION as i32,
            "manifest": manifest,
        }};
        let heads = self.heads.clone();
        let swapped = bounded(async move {
            match heads.update_one(filter, update).upsert(true).await {
                Ok(_) => Ok(true),
                Err(e) if is_duplicate_key(&e) => Ok(false),
                Err(e) => Err(unavailable(e)),
            }
        })
        .await?;
        if !swapped {
            // Someone committed in between: newer epoch (we are fenced out) or, which a
            // lease forbids, a concurrent writer of our epoch.
            let now = self.read_head(region).await?;
            let now = now.as_ref().map(decode_head).transpose()?;
            return Err(match now {
                Some(h) => check_fence(h.epoch, h.tick, commit.epoch, commit.tick)
                    .err()
                    .unwrap_or_else(|| {
                        StoreError::Unavailable("concurrent commit of the same epoch".into())
                    }),
                None => StoreError::Unavailable("head vanished during commit".into()),
            });
        }

        // Garbage: older versions of the rewritten cells. Best effort.
        let rewritten: Vec<i64> = commit.cells.iter().map(|w| i64::from(w.cell)).collect();
        let cells = self.cells.clone();
        let filter = doc! {
            "region": i64::from(region.0),
            "cell": { "$in": rewritten },
            "$or": [
                { "_id.e": { "$ne": commit.epoch as i64 } },
                { "_id.t": { "$ne": commit.tick as i64 } },
            ],
        };
        if let Err(e) = bounded(async move {
            cells.delete_many(filter).await.map_err(unavailable)?;
            Ok(())
        })
        .await
        {
            tracing::warn!(region = region.0, error = %e, "could not delete old cell versions; they are ignored");
        }
        Ok(())
    }

    async fn load(&self, region: RegionId) -> Result<Option<RegionSnapshot>, StoreError> {
        let Some(head) = self.read_head(region).await? else {
            return Ok(None);
        };
        let head = decode_head(&head)?;
        let cells = self.cells.clone();
        let docs: Vec<Document> = bounded(async move {
            use futures_util::TryStreamExt;
            cells
                .find(doc! { "region": i64::from(region.0) })
                .await
                .map_err(unavailable)?
                .try_collect()
                .await
                .map_err(unavailable)
        })
        .await?;
        let mut out = BTreeMap::new();
        for doc in docs {
            let id = doc.get_document("_id").map_err(|_| corrupt("cell _id"))?;
            let cell = id
                .get_i64("c")
                .ok()
                .and_then(|c| u32::try_from(c).ok())
                .ok_or_else(|| corrupt("cell index"))?;
            let version = Version {
                epoch: u64_of(id, "e")?,
                tick: u64_of(id, "t")?,
            };
            if head.manifest.get(&cell) != Some(&version) {
                continue; // Garbage from a crashed or superseded commit.
            }
            let schema = schema_of(&doc)?;
            let data = doc
                .get_binary_generic("data")
                .map_err(|_| corrupt("cell data"))?;
            out.insert(cell, upgrade(schema, data.clone())?);
        }
        if out.len() != head.manifest.len() {
            return Err(StoreError::Corrupt(format!(
                "region {}: the manifest names {} cells, {} found",
                region.0,
                head.manifest.len(),
                out.len()
            )));
        }
        Ok(Some(RegionSnapshot {
            region,
            epoch: head.epoch,
            tick: head.tick,
            cells: out,
        }))
    }

    async fn save_player(&self, record: &PlayerRecord) -> Result<(), StoreError> {
        check_payload(&record.data)?;
        let player = i64::try_from(record.player.0)
            .map_err(|_| StoreError::Invalid("player id out of range".into()))?;
        let replacement = doc! {
            "_id": player,
            "schema_version": SCHEMA_VERSION as i32,
            "data": binary(&record.data),
        };
        let players = self.players.clone();
        bounded(async move {
            players
                .replace_one(doc! { "_id": player }, replacement)
                .upsert(true)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn load_player(&self, player: PlayerId) -> Result<Option<PlayerRecord>, StoreError> {
        let id = i64::try_from(player.0)
            .map_err(|_| StoreError::Invalid("player id out of range".into()))?;
        let players = self.players.clone();
        let doc = bounded(async move {
            players
                .find_one(doc! { "_id": id })
                .await
                .map_err(unavailable)
        })
        .await?;
        let Some(doc) = doc else { return Ok(None) };
        let schema = schema_of(&doc)?;
        let data = doc
            .get_binary_generic("data")
            .map_err(|_| corrupt("player data"))?;
        Ok(Some(PlayerRecord {
            player,
            data: upgrade(schema, data.clone())?,
        }))
    }

    async fn write_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        record.check()?;
        let r = record;
        let doc = doc! {
            "_id": &r.id,
            "schema_version": i64::from(SCHEMA_VERSION),
            "at_unix_ms": i64::try_from(r.at_unix_ms).unwrap_or(i64::MAX),
            "node": &r.node,
            "who": &r.who,
            "role": &r.role,
            "action": &r.action,
            "target": &r.target,
            "reason": &r.reason,
            "details": &r.details,
            "result": &r.result,
        };
        let audit = self.audit.clone();
        let id = r.id.clone();
        bounded(async move {
            audit
                .replace_one(doc! { "_id": id }, doc)
                .upsert(true)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn set_sanction(
        &self,
        kind: Sanction,
        player: PlayerId,
        record: Option<&SanctionRecord>,
    ) -> Result<(), StoreError> {
        let id = i64::try_from(player.0)
            .map_err(|_| StoreError::Invalid("player id out of range".into()))?;
        let collection = self.sanctions(kind);
        // The profile shows it too (written first: a profile that says banned with no
        // ban behind it is put right by the retry the failure asks for).
        let until = record.map_or(0, |r| r.until_unix_s.unwrap_or(crate::directory::FOREVER));
        if let Some(record) = record {
            record.check()?;
        }
        self.note_sanction(kind, player, until).await?;
        match record {
            Some(record) => {
                let doc = doc! {
                    "_id": id,
                    "schema_version": i64::from(SCHEMA_VERSION),
                    "until_unix_s": record.until_unix_s.map(|u| i64::try_from(u).unwrap_or(i64::MAX)),
                    "reason": &record.reason,
                };
                bounded(async move {
                    collection
                        .replace_one(doc! { "_id": id }, doc)
                        .upsert(true)
                        .await
                        .map_err(unavailable)?;
                    Ok(())
                })
                .await
            }
            None => {
                bounded(async move {
                    collection
                        .delete_one(doc! { "_id": id })
                        .await
                        .map_err(unavailable)?;
                    Ok(())
                })
                .await
            }
        }
    }

    async fn sanction_of(
        &self,
        kind: Sanction,
        player: PlayerId,
    ) -> Result<Option<SanctionRecord>, StoreError> {
        let id = i64::try_from(player.0)
            .map_err(|_| StoreError::Invalid("player id out of range".into()))?;
        let collection = self.sanctions(kind);
        let doc = bounded(async move {
            collection
                .find_one(doc! { "_id": id })
                .await
                .map_err(unavailable)
        })
        .await?;
        let Some(doc) = doc else { return Ok(None) };
        Ok(Some(SanctionRecord {
            player,
            until_unix_s: doc.get_i64("until_unix_s").ok().map(|u| u.max(0) as u64),
            reason: doc
                .get_str("reason")
                .map_err(|_| corrupt(kind.name()))?
                .to_owned(),
        }))
    }

    async fn read_audit(
        &self,
        limit: usize,
        before: Option<&str>,
        filter: &AuditFilter,
    ) -> Result<AuditPage, StoreError> {
        let limit = limit.min(crate::audit::AUDIT_READ_MAX);
        let mut query = Document::new();
        if let Some(before) = before {
            query.insert("_id", doc! { "$lt": before });
        }
        if let Some(player) = filter.player {
            // Exactly the player's target, or (older records) it followed by a space.
            let target = AuditFilter::player_target(player);
            query.insert(
                "$or",
                vec![
                    doc! { "target": &target },
                    doc! { "target": { "$regex": format!("^{target} ") } },
                ],
            );
        }
        match filter.actions.as_slice() {
            [] => {}
            [action] => {
                query.insert("action", action.as_str());
            }
            actions => {
                query.insert("action", doc! { "$in": actions });
            }
        }
        if let Some(who) = &filter.who {
            query.insert("who", who.as_str());
        }
        let audit = self.audit.clone();
        let docs: Vec<Document> = bounded(async move {
            use futures_util::TryStreamExt;
            audit
                .find(query)
                .sort(doc! { "_id": -1 })
                .limit(limit as i64)
                .await
                .map_err(unavailable)?
                .try_collect()
                .await
                .map_err(unavailable)
        })
        .await?;
        let records = docs
            .iter()
            .map(|d| {
                let text = |key: &str| {
                    d.get_str(key)
                        .map(str::to_owned)
                        .map_err(|_| corrupt("audit record"))
                };
                Ok(AuditRecord {
                    id: text("_id")?,
                    at_unix_ms: d
                        .get_i64("at_unix_ms")
                        .map_err(|_| corrupt("audit record"))?
                        as u64,
                    node: text("node")?,
                    who: text("who")?,
                    role: text("role")?,
                    action: text("action")?,
                    target: text("target")?,
                    reason: text("reason")?,
                    // Absent in records from before details were kept.
                    details: d.get_str("details").unwrap_or_default().to_owned(),
                    result: text("result")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let next_before = (records.len() == limit)
            .then(|| records.last().map(|r| r.id.clone()))
            .flatten();
        Ok(AuditPage {
            records,
            next_before,
        })
    }
}
