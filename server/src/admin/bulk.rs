//! Bulk operations as jobs (role admin): `POST /v1/players/bulk` acts on up to
//! [`JOB_TARGETS_MAX`] players, given by id or by a directory filter, at most
//! [`BULK_PLAYERS_PER_S`] a second and [`BULK_PARTS_IN_FLIGHT`] at once, each audited on its own (`details`: the job) and
//! the job as a whole (`players.bulk`). `GET /v1/players/bulk/{key}` shows its progress,
//! `POST .../cancel` stops it. The job's key is its idempotency key: posting the same key
//! again returns the existing job. Jobs live in the store: a node restarted while one ran
//! reports it `interrupted`, with how far it got.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use tessera_persistence::SnapshotStore;
use tessera_persistence::audit::{AuditFilter, Sanction, SanctionRecord};
use tessera_persistence::directory::{DirectoryStore, PAGE_LEN_MAX, PlayerQuery, SortKey};
use tessera_persistence::economy::{EconomyStore, EconomyTx, Holdings, TxKind, TxOutcome};
use tessera_persistence::jobs::{JOB_TARGETS_MAX, JobRecord, JobState, JobStore, is_valid_key};
use tessera_shared::ids::{PlayerId, RegionId};

use super::audit::Entry;
use super::keys::Caller;
use super::{AdminState, ApiError, JsonBody, PathParam, reason};
use crate::economy::now_unix_ms;
use crate::node::AdminAction;

/// Largest body of `POST /v1/players/bulk`, in bytes: room for an id list of
/// [`JOB_TARGETS_MAX`] players (the other routes take at most `BODY_BYTES_MAX`).
pub const BULK_BODY_BYTES_MAX: usize = 2 * 1024 * 1024;
/// Players a job acts on per second at most.
pub const BULK_PLAYERS_PER_S: u32 = 200;
/// Parts of one job under way at once at most: each waits for a tick boundary and its
/// audit records, so one at a time would run a few players a second.
pub const BULK_PARTS_IN_FLIGHT: usize = 32;
/// Jobs running on one node at once at most.
pub const BULK_JOBS_RUNNING_MAX: usize = 4;
/// A job's progress is written after this many players (and at the end).
const PROGRESS_EVERY: u64 = 100;

/// What a job does to each player.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum BulkAction {
    /// End its session here (skipped if not on this node).
    Kick,
    /// Send it an operators' message (skipped if not connected here).
    Message { text: String },
    /// Ban it (for `duration_s`, or for good); its session here ends.
    Ban { duration_s: Option<u64> },
    /// Lift its ban.
    Unban,
    /// Move it to a safe spot of its region (skipped if not on this node).
    Teleport,
    /// Grant coins and items (one economy transaction per player, key `bulk:<job>`).
    Grant {
        #[serde(default)]
        coins: u64,
        #[serde(default)]
        items: BTreeMap<String, u32>,
    },
}

impl BulkAction {
    fn name(&self) -> &'static str {
        match self {
            BulkAction::Kick => "kick",
            BulkAction::Message { .. } => "message",
            BulkAction::Ban { .. } => "ban",
            BulkAction::Unban => "unban",
            BulkAction::Teleport => "teleport",
            BulkAction::Grant { .. } => "grant",
        }
    }

    /// The audit action of one player's part.
    fn audit_action(&self) -> &'static str {
        match self {
            BulkAction::Kick => "player.kick",
            BulkAction::Message { .. } => "player.message",
            BulkAction::Ban { .. } => "player.ban",
            BulkAction::Unban => "player.unban",
            BulkAction::Teleport => "player.teleport",
            BulkAction::Grant { .. } => "player.grant",
        }
    }
}

/// A directory filter (as `GET /v1/players` takes them, typed).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BulkFilter {
    online: Option<bool>,
    node: Option<String>,
    region: Option<u32>,
    name: Option<String>,
    level_min: Option<u32>,
    level_max: Option<u32>,
    last_login_from: Option<u64>,
    last_login_to: Option<u64>,
    banned: Option<bool>,
    muted: Option<bool>,
}

/// `POST /v1/players/bulk`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BulkBody {
    key: String,
    action: BulkAction,
    ids: Option<Vec<u64>>,
    filter: Option<BulkFilter>,
    reason: String,
}

/// The jobs this node runs: each one's cancel flag.
#[derive(Debug, Default)]
pub struct Jobs {
    running: Mutex<HashMap<String, Arc<AtomicBool>>>,
}

impl Jobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<AtomicBool>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(format!("the jobs cannot be read or written: {e}"), 2)
}

fn job_json(job: &JobRecord) -> Value {
    json!({
        "key": job.key,
        "node": job.node,
        "who": job.who,
        "reason": job.reason,
        "action": job.action,
        "params": serde_json::from_str::<Value>(&job.params).unwrap_or(Value::Null),
        "state": job.state,
        "total": job.targets.len(),
        "done": job.done,
        "failed": job.failed,
        "skipped": job.skipped,
        "created_unix_ms": job.created_unix_ms,
        "updated_unix_ms": job.updated_unix_ms,
    })
}

/// The players a filter selects, in id order (at most [`JOB_TARGETS_MAX`] + 1, to tell
/// too many).
async fn select(state: &AdminState, filter: BulkFilter) -> Result<Vec<u64>, ApiError> {
    let mut query = PlayerQuery {
        online: filter.online,
        node: filter.node,
        region: filter.region.map(RegionId),
        name_prefix: filter.name,
        level_min: filter.level_min,
        level_max: filter.level_max,
        last_login_from: filter.last_login_from,
        last_login_to: filter.last_login_to,
        banned: filter.banned,
        muted: filter.muted,
        sort: SortKey::Id,
        descending: false,
        limit: PAGE_LEN_MAX,
        after: None,
    };
    query
        .check()
        .map_err(|(field, why)| ApiError::bad_request(format!("filter.{field}: {why}")))?;
    let now = crate::auth::unix_now_s();
    let mut ids = Vec::new();
    loop {
        let page =
            state.store.list_players(&query, now).await.map_err(|e| {
                ApiError::unavailable(format!("the directory cannot be read: {e}"), 2)
            })?;
        ids.extend(page.players.iter().map(|p| p.player.0));
        match page.next {
            Some(next) if ids.len() <= JOB_TARGETS_MAX => query.after = Some(next),
            _ => return Ok(ids),
        }
    }
}

/// `POST /v1/players/bulk`: 201 with the new job, or 200 with the existing one of the key.
pub(super) async fn create(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<BulkBody>,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    let reason = reason(body.reason)?;
    if !is_valid_key(&body.key) {
        return Err(ApiError::bad_request(
            "key: must be 1 to 128 bytes of A-Z a-z 0-9 _ - . :",
        ));
    }
    if let Some(existing) = state.store.job(&body.key).await.map_err(unavailable)? {
        return Ok((axum::http::StatusCode::OK, Json(job_json(&existing))));
    }
    match &body.action {
        BulkAction::Message { text }
            if text.is_empty() || text.len() > tessera_shared::protocol::limits::TEXT_BYTES_MAX =>
        {
            return Err(ApiError::bad_request(format!(
                "action.text: must be 1 to {} bytes",
                tessera_shared::protocol::limits::TEXT_BYTES_MAX
            )));
        }
        BulkAction::Ban {
            duration_s: Some(0),
        } => {
            return Err(ApiError::bad_request(
                "action.duration_s: at least 1 (absent: for good)",
            ));
        }
        BulkAction::Grant { items, .. } => {
            let balance = &state.reloader.running().config.balance;
            if let Some(unknown) = items.keys().find(|i| balance.item_index(i).is_none()) {
                return Err(ApiError::bad_request(format!(
                    "action.items: no item {unknown:?} in balance.toml"
                )));
            }
        }
        _ => {}
    }
    let targets = match (body.ids, body.filter) {
        (Some(ids), None) => {
            if let Some(bad) = ids.iter().find(|&&id| id > PlayerId::MAX) {
                return Err(ApiError::bad_request(format!(
                    "ids: {bad} is not a player id"
                )));
            }
            ids
        }
        (None, Some(filter)) => select(&state, filter).await?,
        _ => {
            return Err(ApiError::bad_request(
                "ids or filter: exactly one of them names the players",
            ));
        }
    };
    if targets.len() > JOB_TARGETS_MAX {
        return Err(ApiError::bad_request(format!(
            "ids: more than {JOB_TARGETS_MAX} players in one job"
        )));
    }
    if state.jobs.lock().len() >= BULK_JOBS_RUNNING_MAX {
        return Err(ApiError::unavailable(
            format!("this node runs {BULK_JOBS_RUNNING_MAX} jobs already"),
            10,
        ));
    }
    let now = now_unix_ms();
    let params = match &body.action {
        BulkAction::Message { text } => json!({ "text": text }),
        BulkAction::Ban { duration_s } => json!({ "duration_s": duration_s }),
        BulkAction::Grant { coins, items } => json!({ "coins": coins, "items": items }),
        _ => json!({}),
    };
    let job = JobRecord {
        key: body.key.clone(),
        node: state.node_name.clone(),
        who: caller.name.clone(),
        reason: reason.clone(),
        action: body.action.name().into(),
        params: params.to_string(),
        targets,
        state: JobState::Running,
        done: 0,
        failed: 0,
        skipped: 0,
        created_unix_ms: now,
        updated_unix_ms: now,
    };
    let entry = Entry {
        action: "players.bulk",
        target: format!("job:{}", job.key),
        reason: &reason,
        details: format!(
            "action: {}; params: {}; players: {}",
            job.action,
            job.params,
            job.targets.len()
        ),
    };
    let creating = async {
        match state.store.create_job(&job).await.map_err(unavailable)? {
            // Created meanwhile by another request with the same key.
            Some(existing) => Ok((false, existing)),
            None => Ok((true, job.clone())),
        }
    };
    let (created, job) = state.audit.run(&caller, entry, creating).await?;
    if !created {
        return Ok((axum::http::StatusCode::OK, Json(job_json(&job))));
    }
    let cancel = Arc::new(AtomicBool::new(false));
    state.jobs.lock().insert(job.key.clone(), cancel.clone());
    tokio::spawn(run(state.clone(), caller, body.action, job.clone(), cancel));
    Ok((axum::http::StatusCode::CREATED, Json(job_json(&job))))
}

/// `GET /v1/players/bulk/{key}`.
pub(super) async fn status(
    State(state): State<Arc<AdminState>>,
    PathParam(key): PathParam,
) -> Result<Json<Value>, ApiError> {
    match state.store.job(&key).await.map_err(unavailable)? {
        Some(job) => Ok(Json(job_json(&job))),
        None => Err(ApiError::not_found(format!("no bulk job {key:?}"))),
    }
}

/// `POST /v1/players/bulk/{key}/cancel`.
pub(super) async fn cancel(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    PathParam(key): PathParam,
    JsonBody(body): JsonBody<super::ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    let reason = reason(body.reason)?;
    let entry = Entry {
        action: "players.bulk_cancel",
        target: format!("job:{key}"),
        reason: &reason,
        details: String::new(),
    };
    let cancelling = async {
        let flag = state.jobs.lock().get(&key).cloned();
        match flag {
            Some(flag) => {
                flag.store(true, Ordering::Relaxed);
                Ok(json!({ "key": key, "cancelling": true }))
            }
            None => match state.store.job(&key).await.map_err(unavailable)? {
                None => Err(ApiError::not_found(format!("no bulk job {key:?}"))),
                Some(job) if job.state.is_running() => Err(ApiError::conflict(format!(
                    "job {key:?} runs on node {}: cancel it there",
                    job.node
                ))),
                Some(job) => Err(ApiError::conflict(format!(
                    "job {key:?} is {} already",
                    serde_json::to_value(job.state).unwrap_or_default()
                ))),
            },
        }
    };
    state.audit.run(&caller, entry, cancelling).await.map(Json)
}

/// What one player's part came to.
enum Outcome {
    Done,
    Failed,
    Skipped,
}

/// Runs `job` from where it is to its end or its cancellation.
async fn run(
    state: Arc<AdminState>,
    caller: Caller,
    action: BulkAction,
    mut job: JobRecord,
    cancel: Arc<AtomicBool>,
) {
    use futures_util::StreamExt;
    let pace = Duration::from_secs(1) / BULK_PLAYERS_PER_S;
    let mut next = tokio::time::Instant::now();
    let mut written = Instant::now();
    let targets = job.targets[job.handled() as usize..].to_vec();
    let (key, why) = (job.key.clone(), job.reason.clone());
    let part = Part {
        state: &state,
        caller: &caller,
        key: &key,
        reason: &why,
        action: &action,
    };
    // Parts start at the pace, at most BULK_PARTS_IN_FLIGHT at once (each waits for a
    // tick and its audit records), and are counted in order: what a job has handled is a
    // prefix of its targets. A cancel starts no more parts; those started finish.
    let parts = futures_util::stream::iter(targets)
        .then(|player| {
            let start = next;
            next += pace;
            async move {
                tokio::time::sleep_until(start).await;
                PlayerId(player)
            }
        })
        .take_while(|_| std::future::ready(!cancel.load(Ordering::Relaxed)))
        .map(|player| part.act(player))
        .buffered(BULK_PARTS_IN_FLIGHT);
    let mut parts = std::pin::pin!(parts);
    while let Some(outcome) = parts.next().await {
        match outcome {
            Outcome::Done => job.done += 1,
            Outcome::Failed => job.failed += 1,
            Outcome::Skipped => job.skipped += 1,
        }
        if job.handled().is_multiple_of(PROGRESS_EVERY)
            || written.elapsed() > Duration::from_secs(1)
        {
            job.updated_unix_ms = now_unix_ms();
            if let Err(e) = state.store.update_job(&job).await {
                tracing::warn!(job = %job.key, error = %e, "bulk job progress not written");
            }
            written = Instant::now();
        }
    }
    if job.handled() < job.targets.len() as u64 {
        job.state = JobState::Cancelled;
    }
    if job.state.is_running() {
        job.state = JobState::Done;
    }
    job.updated_unix_ms = now_unix_ms();
    if let Err(e) = state.store.update_job(&job).await {
        tracing::error!(job = %job.key, error = %e, "bulk job's end not written");
    }
    tracing::info!(job = %job.key, state = ?job.state, done = job.done, failed = job.failed, skipped = job.skipped, "bulk job ended");
    state.jobs.lock().remove(&job.key);
}

/// What every part of a job shares.
struct Part<'a> {
    state: &'a AdminState,
    caller: &'a Caller,
    /// The job's key.
    key: &'a str,
    /// The job's reason.
    reason: &'a str,
    action: &'a BulkAction,
}

impl Part<'_> {
    /// One player's part, audited as its own mutation.
    async fn act(&self, player: PlayerId) -> Outcome {
        let Part {
            state,
            caller,
            key,
            reason,
            action,
        } = *self;
        let entry = Entry {
            action: action.audit_action(),
            target: AuditFilter::player_target(player),
            reason,
            details: format!("bulk job: {key}"),
        };
        let on_driver = |a: AdminAction| async { state.node.ask(a).await };
        let doing = async {
            match action {
                BulkAction::Kick => on_driver(AdminAction::Kick {
                    player,
                    reason: reason.to_owned(),
                })
                .await
                .map_err(ApiError::from),
                BulkAction::Message { text } => on_driver(AdminAction::Message {
                    player,
                    text: text.clone(),
                })
                .await
                .map_err(ApiError::from),
                BulkAction::Teleport => on_driver(AdminAction::Rescue { player })
                    .await
                    .map_err(ApiError::from),
                BulkAction::Ban { duration_s } => {
                    let record = SanctionRecord {
                        player,
                        until_unix_s: duration_s
                            .map(|d| crate::auth::unix_now_s().saturating_add(d)),
                        reason: reason.to_owned(),
                    };
                    state
                        .store
                        .set_sanction(Sanction::Ban, player, Some(&record))
                        .await
                        .map_err(|e| {
                            ApiError::unavailable(format!("the ban could not be stored: {e}"), 2)
                        })?;
                    let kicked = on_driver(AdminAction::Kick {
                        player,
                        reason: format!("banned: {reason}"),
                    })
                    .await
                    .is_ok();
                    Ok(json!({ "player": player.0, "kicked": kicked }))
                }
                BulkAction::Unban => {
                    state
                        .store
                        .set_sanction(Sanction::Ban, player, None)
                        .await
                        .map_err(|e| {
                            ApiError::unavailable(format!("the ban could not be lifted: {e}"), 2)
                        })?;
                    Ok(json!({ "player": player.0, "banned": false }))
                }
                BulkAction::Grant { coins, items } => {
                    let balance = Arc::new(state.reloader.running().config.balance.clone());
                    let tx = EconomyTx {
                        player,
                        key: format!("bulk:{key}"),
                        kind: TxKind::Grant(Holdings {
                            coins: *coins,
                            items: items.clone(),
                        }),
                        at_ms: now_unix_ms(),
                    };
                    match state.store.apply_tx(balance, &tx).await {
                        Ok(TxOutcome::Applied(_)) => {
                            state.economy.applied(&tx).await;
                            Ok(json!({ "outcome": "applied" }))
                        }
                        Ok(TxOutcome::Duplicate(_)) => Ok(json!({ "outcome": "duplicate" })),
                        Ok(TxOutcome::Refused(why)) => {
                            Err(ApiError::conflict(format!("refused: {why}")))
                        }
                        Err(e) => Err(ApiError::unavailable(
                            format!("the economy cannot be changed: {e}"),
                            5,
                        )),
                    }
                }
            }
        };
        match state.audit.run(caller, entry, doing).await {
            Ok(_) => Outcome::Done,
            Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => Outcome::Skipped,
            Err(_) => Outcome::Failed,
        }
    }
}

/// At a node's start: the jobs it was running when it stopped are reported interrupted.
pub async fn interrupt_stale_jobs(state: &AdminState) {
    match state
        .store
        .interrupt_jobs(&state.node_name, now_unix_ms())
        .await
    {
        Ok(jobs) => {
            for job in jobs {
                tracing::warn!(job = %job.key, done = job.done, total = job.targets.len(), "bulk job interrupted by the node's stop");
            }
        }
        Err(e) => tracing::warn!(error = %e, "interrupted bulk jobs not marked"),
    }
}
