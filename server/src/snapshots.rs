//! Region snapshots at the node's edge: loading each region's last committed snapshot at
//! start, and committing the regions' captures to the store without the tick ever
//! waiting on it.
//!
//! The driver captures every region every `[persistence] snapshot_interval_s` (the cheap
//! half: a copy of the NPCs) and [`Snapshots::offer_records`] them; one encoder thread
//! turns each region's captures, in order, into deltas of the changed cells (the costly
//! half, off the tick; [`ENCODE_JOBS_MAX`] captures wait for it, beyond which the driver
//! skips a capture rather than lose one) and [`Snapshots::offer`]s them. The outbox merges them per region and cell (a newer
//! write of a cell replaces the older one), so it holds at most one pending commit per
//! region with at most one payload per cell: it is bounded by the regions' own state,
//! however long the store is down, and nothing is ever dropped. One writer task commits
//! what is pending, region by region; while the store is unavailable it puts the commit
//! back under anything newer and retries with capped backoff ([`RETRY_DELAY_MIN`] to
//! [`RETRY_DELAY_MAX`]), and the node reports degraded. A commit refused for a stale epoch
//! means another node holds the region now: its pending state is discarded and the region
//! is counted as fenced.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tessera_persistence::node_store::NodeStore;
use tessera_persistence::{CellWrite, RegionCommit, RegionSnapshot, SnapshotStore, StoreError};
use tessera_regions::snapshot::{SnapshotDelta, SnapshotEncoder, SnapshotRecords};
use tessera_shared::ids::RegionId;
use tokio::sync::Notify;

/// First delay before retrying commits while the store is unavailable.
pub const RETRY_DELAY_MIN: Duration = Duration::from_millis(200);
/// Longest delay between retries while the store is unavailable.
pub const RETRY_DELAY_MAX: Duration = Duration::from_secs(5);
/// How long a node keeps trying to load its regions' snapshots at start before giving up
/// (it must not start a region afresh over a snapshot it could not read).
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Region captures waiting for the encoder thread.
pub const ENCODE_JOBS_MAX: usize = 64;

/// Counters and state of the writer.
#[derive(Debug, Default)]
pub struct SnapshotStats {
    /// Commits made durable.
    pub committed: AtomicU64,
    /// The tick of the newest durable commit (of any region).
    pub committed_tick: AtomicU64,
    /// Commits refused for good: a stale epoch (the region is held elsewhere) or invalid.
    pub refused: AtomicU64,
    /// Payload bytes waiting in the outbox.
    pub outbox_bytes: AtomicUsize,
    /// Set while commits wait for an unavailable store (health reports it).
    pub degraded: AtomicBool,
    /// How long the last durable commit took, in milliseconds.
    pub last_commit_ms: AtomicU64,
}

/// A region's not yet durable state: merged deltas under the epoch the node holds it with.
#[derive(Debug)]
struct Pending {
    epoch: u64,
    tick: u64,
    cells: BTreeMap<u32, Option<Vec<u8>>>,
}

impl Pending {
    fn bytes(&self) -> usize {
        self.cells
            .values()
            .map(|d| d.as_ref().map_or(0, Vec::len))
            .sum()
    }
}

#[derive(Debug, Default)]
struct Outbox {
    pending: BTreeMap<RegionId, Pending>,
    /// Regions whose commit the writer is making.
    in_flight: BTreeSet<RegionId>,
    /// Regions another node holds now (a commit was refused for a stale epoch).
    fenced: HashSet<RegionId>,
}

/// The node's snapshot writer: the outbox the driver offers captures to, and one task
/// that commits them.
#[derive(Debug, Clone)]
pub struct Snapshots {
    outbox: Arc<Mutex<Outbox>>,
    wake: Arc<Notify>,
    /// The epoch each held region is committed under (regions come and go at run time).
    epochs: Arc<Mutex<BTreeMap<RegionId, u64>>>,
    /// Work for the encoder thread (none if it could not start).
    jobs: Option<crossbeam_channel::Sender<EncodeJob>>,
    /// Captures handed over and not yet in the outbox.
    encoding: Arc<AtomicUsize>,
    /// Counters.
    pub stats: Arc<SnapshotStats>,
}

impl Snapshots {
    /// The writer over `store`, committing each region under its epoch in `epochs` (the
    /// epoch the node holds it with), spawned on the current runtime; with an encoder
    /// thread for the regions in `encoders` (see [`Snapshots::offer_records`]).
    pub fn start(
        store: NodeStore,
        epochs: BTreeMap<RegionId, u64>,
        encoders: Vec<(RegionId, SnapshotEncoder)>,
    ) -> Snapshots {
        let (jobs, queue) = crossbeam_channel::bounded(ENCODE_JOBS_MAX);
        let mut snapshots = Snapshots {
            outbox: Arc::default(),
            wake: Arc::new(Notify::new()),
            epochs: Arc::new(Mutex::new(epochs)),
            jobs: None,
            encoding: Arc::default(),
            stats: Arc::default(),
        };
        tokio::spawn(write_snapshots(store, snapshots.clone()));
        let encoder = snapshots.clone();
        let spawned = std::thread::Builder::new()
            .name("tessera-snapshots".into())
            .spawn(move || encode_captures(encoder, encoders.into_iter().collect(), queue));
        match spawned {
            Ok(_) => snapshots.jobs = Some(jobs),
            Err(e) => {
                tracing::error!(error = %e, "no snapshot encoder thread: regions are not persisted")
            }
        }
        snapshots
    }

    /// Starts persisting `region` (taken at run time) under `epoch`, with its encoder.
    pub async fn add_region(&self, region: RegionId, epoch: u64, encoder: SnapshotEncoder) {
        self.epochs
            .lock()
            .expect("epochs lock")
            .insert(region, epoch);
        self.outbox
            .lock()
            .expect("outbox lock")
            .fenced
            .remove(&region);
        self.send_job(EncodeJob::Add(region, Box::new(encoder)))
            .await;
    }

    /// Stops persisting `region` (given up: call once its last capture is durable,
    /// [`Snapshots::is_region_flushed`]).
    pub async fn remove_region(&self, region: RegionId) {
        self.epochs.lock().expect("epochs lock").remove(&region);
        self.send_job(EncodeJob::Remove(region)).await;
    }

    /// Queues a job the encoder must not miss, waiting for room.
    async fn send_job(&self, mut job: EncodeJob) {
        let Some(jobs) = &self.jobs else { return };
        loop {
            match jobs.try_send(job) {
                Ok(()) => return,
                Err(crossbeam_channel::TrySendError::Full(back)) => {
                    job = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => return,
            }
        }
    }

    /// Whether `region`'s captures are all durable (nothing of it queued, encoding or
    /// being committed).
    pub fn is_region_flushed(&self, region: RegionId) -> bool {
        let outbox = self.outbox.lock().expect("outbox lock");
        !outbox.pending.contains_key(&region)
            && !outbox.in_flight.contains(&region)
            && self.encoding.load(Ordering::Relaxed) == 0
    }

    /// Waits (async) up to `timeout` for `region`'s captures to be durable.
    pub async fn flush_region(&self, region: RegionId, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.is_region_flushed(region) {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Whether `n` more captures fit the encoder's queue.
    pub fn has_room_for(&self, n: usize) -> bool {
        self.jobs
            .as_ref()
            .is_some_and(|jobs| jobs.len() + n <= ENCODE_JOBS_MAX)
    }

    /// Hands a region's capture to the encoder thread (check
    /// [`Snapshots::has_room_for`] first: a capture that does not fit is dropped, logged,
    /// and its changes are lost to the dirty tracking).
    pub fn offer_records(&self, region: RegionId, records: SnapshotRecords) {
        let Some(jobs) = &self.jobs else {
            return;
        };
        self.encoding.fetch_add(1, Ordering::Relaxed);
        if jobs.try_send(EncodeJob::Encode(region, records)).is_err() {
            self.encoding.fetch_sub(1, Ordering::Relaxed);
            tracing::error!(
                region = region.0,
                "snapshot capture dropped: the encoder queue is full"
            );
        }
    }

    /// Queues `delta` of `region` for commit. Never blocks on the store and never drops:
    /// the delta is merged into the region's pending commit.
    pub fn offer(&self, region: RegionId, delta: SnapshotDelta) {
        let Some(epoch) = self
            .epochs
            .lock()
            .expect("epochs lock")
            .get(&region)
            .copied()
        else {
            tracing::error!(
                region = region.0,
                "snapshot of a region this node does not hold"
            );
            return;
        };
        let mut outbox = self.outbox.lock().expect("outbox lock");
        if outbox.fenced.contains(&region) {
            return;
        }
        let pending = outbox.pending.entry(region).or_insert_with(|| Pending {
            epoch,
            tick: delta.tick,
            cells: BTreeMap::new(),
        });
        pending.tick = pending.tick.max(delta.tick);
        pending.cells.extend(delta.cells);
        self.update_bytes(&outbox);
        drop(outbox);
        self.wake.notify_one();
    }

    fn update_bytes(&self, outbox: &Outbox) {
        let bytes = outbox.pending.values().map(Pending::bytes).sum();
        self.stats.outbox_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Whether nothing waits in the outbox or is being committed.
    pub fn is_flushed(&self) -> bool {
        let outbox = self.outbox.lock().expect("outbox lock");
        outbox.pending.is_empty()
            && outbox.in_flight.is_empty()
            && self.encoding.load(Ordering::Relaxed) == 0
    }

    /// Blocks (a thread outside the runtime) until everything offered is durable, or
    /// `timeout` passes. Returns whether it all was.
    pub fn flush_blocking(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.is_flushed() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Takes the pending commits out, marking them in flight.
    fn take(&self) -> BTreeMap<RegionId, Pending> {
        let mut outbox = self.outbox.lock().expect("outbox lock");
        let taken = std::mem::take(&mut outbox.pending);
        outbox.in_flight.extend(taken.keys().copied());
        taken
    }

    /// One region's commit is done with: `back` is put under anything newer (a retryable
    /// failure), `fenced` marks the region lost.
    fn done(&self, region: RegionId, back: Option<Pending>, fenced: bool) {
        let mut outbox = self.outbox.lock().expect("outbox lock");
        outbox.in_flight.remove(&region);
        if fenced {
            outbox.fenced.insert(region);
            outbox.pending.remove(&region);
        } else if let Some(mut older) = back {
            if let Some(newer) = outbox.pending.remove(&region) {
                older.tick = older.tick.max(newer.tick);
                older.cells.extend(newer.cells);
            }
            outbox.pending.insert(region, older);
        }
        self.update_bytes(&outbox);
    }
}

/// Work for the encoder thread, in order.
enum EncodeJob {
    /// A region's capture, to encode into a delta for the outbox.
    Encode(RegionId, SnapshotRecords),
    /// A region taken at run time, with its encoder.
    Add(RegionId, Box<SnapshotEncoder>),
    /// A region given up.
    Remove(RegionId),
}

/// The encoder thread: each region's captures, in order, into deltas for the outbox.
fn encode_captures(
    snapshots: Snapshots,
    mut encoders: std::collections::HashMap<RegionId, SnapshotEncoder>,
    queue: crossbeam_channel::Receiver<EncodeJob>,
) {
    for job in queue {
        match job {
            EncodeJob::Encode(region, records) => {
                if let Some(encoder) = encoders.get_mut(&region) {
                    snapshots.offer(region, encoder.encode(records));
                }
                snapshots.encoding.fetch_sub(1, Ordering::Relaxed);
            }
            EncodeJob::Add(region, encoder) => {
                encoders.insert(region, *encoder);
            }
            EncodeJob::Remove(region) => {
                encoders.remove(&region);
            }
        }
    }
}

/// Whether a commit of `tick` is durable after `outcome`: it succeeded, or exactly this
/// epoch and tick is already stored (an earlier attempt of this very commit landed but its
/// answer was lost; only this node writes under its epoch, in tick order).
fn landed(outcome: &Result<(), StoreError>, tick: u64) -> bool {
    match outcome {
        Ok(()) => true,
        Err(StoreError::StaleTick { stored, attempted }) => *stored == tick && *attempted == tick,
        Err(_) => false,
    }
}

/// The writer task: commits whatever is pending, retrying through outages.
async fn write_snapshots(store: NodeStore, snapshots: Snapshots) {
    let mut delays = crate::players::store_backoff(RETRY_DELAY_MIN, RETRY_DELAY_MAX);
    loop {
        let pending = snapshots.take();
        if pending.is_empty() {
            snapshots.wake.notified().await;
            continue;
        }
        let mut unavailable = false;
        for (region, commit) in pending {
            if unavailable {
                // Do not wait out a timeout per region once the store is known down.
                snapshots.done(region, Some(commit), false);
                continue;
            }
            let request = RegionCommit {
                region,
                epoch: commit.epoch,
                tick: commit.tick,
                cells: commit
                    .cells
                    .iter()
                    .map(|(&cell, data)| CellWrite {
                        cell,
                        data: data.clone(),
                    })
                    .collect(),
            };
            let started = std::time::Instant::now();
            let outcome = store.commit(&request).await;
            if landed(&outcome, commit.tick) {
                // The store answers: not degraded, before the commit counts as done (so
                // that nobody sees everything flushed and the node still degraded).
                snapshots.stats.degraded.store(false, Ordering::Relaxed);
                snapshots.stats.committed.fetch_add(1, Ordering::Relaxed);
                snapshots
                    .stats
                    .last_commit_ms
                    .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                snapshots
                    .stats
                    .committed_tick
                    .fetch_max(commit.tick, Ordering::Relaxed);
                snapshots.done(region, None, false);
                continue;
            }
            match outcome {
                Err(e) if e.is_retryable() => {
                    tracing::warn!(region = region.0, error = %e, "snapshot commit failed; retrying");
                    unavailable = true;
                    snapshots.done(region, Some(commit), false);
                }
                // An older epoch, or another writer under ours: the region is not ours.
                Err(e @ (StoreError::StaleEpoch { .. } | StoreError::StaleTick { .. })) => {
                    tracing::error!(region = region.0, error = %e, "region fenced: another node holds it; its snapshots stop here");
                    snapshots.stats.refused.fetch_add(1, Ordering::Relaxed);
                    snapshots.done(region, None, true);
                }
                other => {
                    tracing::error!(region = region.0, outcome = ?other, "snapshot commit refused");
                    snapshots.stats.refused.fetch_add(1, Ordering::Relaxed);
                    snapshots.done(region, None, false);
                }
            }
        }
        snapshots
            .stats
            .degraded
            .store(unavailable, Ordering::Relaxed);
        if unavailable {
            tokio::time::sleep(delays.next().unwrap_or(RETRY_DELAY_MAX)).await;
        } else {
            delays = crate::players::store_backoff(RETRY_DELAY_MIN, RETRY_DELAY_MAX);
        }
    }
}

/// Loads the last committed snapshot of each of `regions`, retrying an unavailable store
/// with backoff for up to `timeout`. A snapshot that cannot be read is an error: a region
/// started afresh would overwrite it.
pub async fn load_all(
    store: &NodeStore,
    regions: impl IntoIterator<Item = RegionId>,
    timeout: Duration,
) -> Result<BTreeMap<RegionId, RegionSnapshot>, StoreError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut loaded = BTreeMap::new();
    for region in regions {
        let mut delays = crate::players::store_backoff(RETRY_DELAY_MIN, RETRY_DELAY_MAX);
        let snapshot = loop {
            match store.load(region).await {
                Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                    tracing::warn!(region = region.0, error = %e, "loading the region's snapshot; retrying");
                    tokio::time::sleep(delays.next().unwrap_or(RETRY_DELAY_MAX)).await;
                }
                other => break other?,
            }
        };
        if let Some(snapshot) = snapshot {
            loaded.insert(region, snapshot);
        }
    }
    Ok(loaded)
}
