//! Bulk jobs: an operator's action over many players, as a [`JobRecord`] in the store so
//! that its progress outlives the node running it (a restarted node reports the jobs it
//! was running as interrupted, with how far they got). A job's key is its id and its
//! idempotency key: creating a job under an existing key returns the existing job.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::snapshot::StoreError;

/// Longest job key, in bytes.
pub const JOB_KEY_BYTES_MAX: usize = 128;
/// Most players one job acts on.
pub const JOB_TARGETS_MAX: usize = 100_000;
/// Longest stored job (its targets included), in bytes.
pub const JOB_BYTES_MAX: usize = 16 * JOB_TARGETS_MAX + 64 * 1024;

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Acting on its players.
    Running,
    /// Every player was acted on (some may have failed or been skipped).
    Done,
    /// An operator cancelled it; the players after `done + failed + skipped` were not
    /// acted on.
    Cancelled,
    /// Its node stopped while it ran; the players after `done + failed + skipped` were
    /// not acted on.
    Interrupted,
}

impl JobState {
    /// Whether the job still runs.
    pub fn is_running(self) -> bool {
        self == JobState::Running
    }
}

/// A bulk job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Its key (the caller's): id and idempotency key.
    pub key: String,
    /// The node running it.
    pub node: String,
    /// The API key that created it.
    pub who: String,
    /// Why, as the caller said.
    pub reason: String,
    /// The action (`kick`, `message`, `ban`, `unban`, `teleport`, `grant`).
    pub action: String,
    /// The action's parameters, as JSON.
    pub params: String,
    /// The players, in the order they are acted on.
    pub targets: Vec<u64>,
    /// Where it is.
    pub state: JobState,
    /// Players acted on.
    pub done: u64,
    /// Players the action failed for.
    pub failed: u64,
    /// Players it did not apply to (not on this node, for a kick or a message).
    pub skipped: u64,
    /// When it was created, Unix ms.
    pub created_unix_ms: u64,
    /// When its progress was last written, Unix ms.
    pub updated_unix_ms: u64,
}

impl JobRecord {
    /// Players handled so far (acted on, failed or skipped).
    pub fn handled(&self) -> u64 {
        self.done + self.failed + self.skipped
    }

    /// Refuses a key or a record over the limits.
    pub fn check(&self) -> Result<(), StoreError> {
        if !is_valid_key(&self.key) {
            return Err(StoreError::Invalid(format!(
                "job key: 1 to {JOB_KEY_BYTES_MAX} bytes of A-Z a-z 0-9 _ - . :"
            )));
        }
        if self.targets.len() > JOB_TARGETS_MAX {
            return Err(StoreError::Invalid(format!(
                "{} players in one job; at most {JOB_TARGETS_MAX}",
                self.targets.len()
            )));
        }
        Ok(())
    }
}

/// Whether `key` may name a job.
pub fn is_valid_key(key: &str) -> bool {
    (1..=JOB_KEY_BYTES_MAX).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// The jobs' store contract; the embedded store and MongoDB implement it.
pub trait JobStore: Send + Sync {
    /// Stores `job` unless a job with its key exists: then that one is returned, and
    /// nothing is written.
    fn create_job(
        &self,
        job: &JobRecord,
    ) -> impl Future<Output = Result<Option<JobRecord>, StoreError>> + Send;

    /// Writes a job's progress and state (its other fields stay as created).
    fn update_job(&self, job: &JobRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The job of this key.
    fn job(&self, key: &str) -> impl Future<Output = Result<Option<JobRecord>, StoreError>> + Send;

    /// Marks every job `node` was running as interrupted (at its restart); returns them.
    fn interrupt_jobs(
        &self,
        node: &str,
        at_unix_ms: u64,
    ) -> impl Future<Output = Result<Vec<JobRecord>, StoreError>> + Send;
}

mod embedded {
    use redb::{ReadableDatabase, ReadableTable, TableDefinition};
    use tessera_shared::protocol::codec;

    use super::*;
    use crate::embedded::EmbeddedStore;
    use crate::snapshot::{SCHEMA_VERSION, upgrade};

    /// key -> (schema_version, bincode of [`JobRecord`])
    pub(crate) const JOBS: TableDefinition<&str, (u32, &[u8])> = TableDefinition::new("bulk_jobs");

    fn unavailable(e: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable(e.to_string())
    }

    fn decode(version: u32, bytes: &[u8]) -> Result<JobRecord, StoreError> {
        let bytes = upgrade(version, bytes.to_vec())?;
        codec::decode(&bytes, JOB_BYTES_MAX)
            .map_err(|e| StoreError::Corrupt(format!("bulk job: {e}")))
    }

    fn put(txn: &redb::WriteTransaction, job: &JobRecord) -> Result<(), StoreError> {
        let bytes = codec::encode(job, JOB_BYTES_MAX)
            .map_err(|e| StoreError::Invalid(format!("bulk job: {e}")))?;
        let mut table = txn.open_table(JOBS).map_err(unavailable)?;
        table
            .insert(job.key.as_str(), (SCHEMA_VERSION, bytes.as_slice()))
            .map_err(unavailable)?;
        Ok(())
    }

    fn get(
        table: &impl ReadableTable<&'static str, (u32, &'static [u8])>,
        key: &str,
    ) -> Result<Option<JobRecord>, StoreError> {
        match table.get(key).map_err(unavailable)? {
            Some(v) => {
                let (version, bytes) = v.value();
                decode(version, bytes).map(Some)
            }
            None => Ok(None),
        }
    }

    impl JobStore for EmbeddedStore {
        async fn create_job(&self, job: &JobRecord) -> Result<Option<JobRecord>, StoreError> {
            job.check()?;
            let job = job.clone();
            self.blocking(move |db| {
                let txn = db.begin_write().map_err(unavailable)?;
                let existing = get(&txn.open_table(JOBS).map_err(unavailable)?, &job.key)?;
                if existing.is_some() {
                    return Ok(existing);
                }
                put(&txn, &job)?;
                txn.commit().map_err(unavailable)?;
                Ok(None)
            })
            .await
        }

        async fn update_job(&self, job: &JobRecord) -> Result<(), StoreError> {
            let job = job.clone();
            self.blocking(move |db| {
                let txn = db.begin_write().map_err(unavailable)?;
                let stored = get(&txn.open_table(JOBS).map_err(unavailable)?, &job.key)?;
                let Some(mut stored) = stored else {
                    return Err(StoreError::Invalid(format!("no bulk job {:?}", job.key)));
                };
                (stored.state, stored.done, stored.failed, stored.skipped) =
                    (job.state, job.done, job.failed, job.skipped);
                stored.updated_unix_ms = job.updated_unix_ms;
                put(&txn, &stored)?;
                txn.commit().map_err(unavailable)
            })
            .await
        }

        async fn job(&self, key: &str) -> Result<Option<JobRecord>, StoreError> {
            let key = key.to_owned();
            self.blocking(move |db| {
                let txn = db.begin_read().map_err(unavailable)?;
                get(&txn.open_table(JOBS).map_err(unavailable)?, &key)
            })
            .await
        }

        async fn interrupt_jobs(
            &self,
            node: &str,
            at_unix_ms: u64,
        ) -> Result<Vec<JobRecord>, StoreError> {
            let node = node.to_owned();
            self.blocking(move |db| {
                let txn = db.begin_write().map_err(unavailable)?;
                let mut interrupted = Vec::new();
                {
                    let table = txn.open_table(JOBS).map_err(unavailable)?;
                    for entry in table.iter().map_err(unavailable)? {
                        let (_, value) = entry.map_err(unavailable)?;
                        let (version, bytes) = value.value();
                        let job = decode(version, bytes)?;
                        if job.node == node && job.state.is_running() {
                            interrupted.push(job);
                        }
                    }
                }
                for job in &mut interrupted {
                    job.state = JobState::Interrupted;
                    job.updated_unix_ms = at_unix_ms;
                    put(&txn, job)?;
                }
                txn.commit().map_err(unavailable)?;
                Ok(interrupted)
            })
            .await
        }
    }
}

pub(crate) use embedded::JOBS as EMBEDDED_TABLE;

mod mongo {
    use futures_util::TryStreamExt;
    use mongodb::bson::{self, Document, doc};

    use super::*;
    use crate::mongo::{MongoStore, bounded, is_duplicate_key};

    fn unavailable(e: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable(e.to_string())
    }

    fn from_doc(mut doc: Document) -> Result<JobRecord, StoreError> {
        doc.remove("_id");
        bson::from_document(doc).map_err(|e| StoreError::Corrupt(format!("bulk job: {e}")))
    }

    fn state_name(state: JobState) -> String {
        bson::to_bson(&state)
            .ok()
            .and_then(|b| b.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    impl JobStore for MongoStore {
        async fn create_job(&self, job: &JobRecord) -> Result<Option<JobRecord>, StoreError> {
            job.check()?;
            let mut doc = bson::to_document(job)
                .map_err(|e| StoreError::Invalid(format!("bulk job: {e}")))?;
            doc.insert("_id", job.key.as_str());
            let (jobs, key) = (self.jobs().clone(), job.key.clone());
            bounded(async move {
                match jobs.insert_one(doc).await {
                    Ok(_) => Ok(None),
                    Err(e) if is_duplicate_key(&e) => {
                        let found = jobs
                            .find_one(doc! { "_id": &key })
                            .await
                            .map_err(unavailable)?;
                        found.map(from_doc).transpose()
                    }
                    Err(e) => Err(unavailable(e)),
                }
            })
            .await
        }

        async fn update_job(&self, job: &JobRecord) -> Result<(), StoreError> {
            let jobs = self.jobs().clone();
            let (key, set) = (
                job.key.clone(),
                doc! {
                    "state": state_name(job.state),
                    "done": job.done as i64,
                    "failed": job.failed as i64,
                    "skipped": job.skipped as i64,
                    "updated_unix_ms": job.updated_unix_ms as i64,
                },
            );
            bounded(async move {
                jobs.update_one(doc! { "_id": key }, doc! { "$set": set })
                    .await
                    .map_err(unavailable)?;
                Ok(())
            })
            .await
        }

        async fn job(&self, key: &str) -> Result<Option<JobRecord>, StoreError> {
            let (jobs, key) = (self.jobs().clone(), key.to_owned());
            let found = bounded(async move {
                jobs.find_one(doc! { "_id": key })
                    .await
                    .map_err(unavailable)
            })
            .await?;
            found.map(from_doc).transpose()
        }

        async fn interrupt_jobs(
            &self,
            node: &str,
            at_unix_ms: u64,
        ) -> Result<Vec<JobRecord>, StoreError> {
            let jobs = self.jobs().clone();
            let running = doc! { "node": node, "state": state_name(JobState::Running) };
            let docs = bounded(async move {
                let found: Vec<Document> = jobs
                    .find(running.clone())
                    .await
                    .map_err(unavailable)?
                    .try_collect()
                    .await
                    .map_err(unavailable)?;
                jobs.update_many(
                    running,
                    doc! { "$set": {
                        "state": state_name(JobState::Interrupted),
                        "updated_unix_ms": at_unix_ms as i64,
                    } },
                )
                .await
                .map_err(unavailable)?;
                Ok(found)
            })
            .await?;
            docs.into_iter()
                .map(|doc| {
                    from_doc(doc).map(|mut job| {
                        job.state = JobState::Interrupted;
                        job.updated_unix_ms = at_unix_ms;
                        job
                    })
                })
                .collect()
        }
    }
}
