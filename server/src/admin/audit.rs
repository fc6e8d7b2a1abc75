//! Every mutation of the admin API goes through [`Audit::run`]: its record is durable in
//! the store (as `started`) before the mutation is carried out, and updated with the
//! outcome before the caller is answered. If the record cannot be written, the mutation
//! is refused: nothing happens unaudited.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use tessera_persistence::SnapshotStore;
use tessera_persistence::audit::{AUDIT_READ_MAX, AuditRecord, RESULT_STARTED};
use tessera_persistence::node_store::NodeStore;

use super::keys::Caller;
use super::{AdminState, ApiError};

/// The node's audit log.
#[derive(Debug)]
pub struct Audit {
    store: NodeStore,
    node: String,
    sequence: AtomicU64,
}

impl Audit {
    /// The audit log of node `node`, in `store`.
    pub fn new(store: NodeStore, node: String) -> Audit {
        Audit {
            store,
            node,
            sequence: AtomicU64::new(0),
        }
    }

    /// Records the mutation `action` on `target` by `caller` for `reason`, runs it, and
    /// records its outcome; returns the outcome. Refused (503) if the record cannot be
    /// written first.
    pub async fn run<T>(
        &self,
        caller: &Caller,
        action: &str,
        target: &str,
        reason: &str,
        mutation: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let at_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let mut record = AuditRecord {
            id: AuditRecord::id_for(at_unix_ms, &self.node, sequence),
            at_unix_ms,
            node: self.node.clone(),
            who: caller.name.clone(),
            role: caller.role.name().into(),
            action: action.into(),
            target: target.into(),
            reason: reason.into(),
            result: RESULT_STARTED.into(),
        };
        self.store.write_audit(&record).await.map_err(|e| {
            ApiError::unavailable(
                format!("the audit log cannot be written ({e}); nothing was done"),
                5,
            )
        })?;
        let outcome = mutation.await;
        record.result = match &outcome {
            Ok(_) => "ok".into(),
            Err(e) => format!("refused: {e}"),
        };
        if let Err(e) = self.store.write_audit(&record).await {
            // The mutation happened and its `started` record is durable: the log shows it
            // was attempted; only the outcome is missing.
            tracing::error!(id = %record.id, error = %e, "audit outcome not written");
        }
        tracing::info!(
            who = %record.who,
            role = %record.role,
            action = %record.action,
            target = %record.target,
            reason = %record.reason,
            result = %record.result,
            "admin mutation"
        );
        outcome
    }
}

/// `GET /v1/audit?limit=&before=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    limit: Option<usize>,
    before: Option<String>,
}

#[derive(Serialize)]
pub(super) struct AuditPage {
    records: Vec<AuditRecord>,
    /// Pass as `before` for the next (older) page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<String>,
}

pub(super) async fn read(
    State(state): State<std::sync::Arc<AdminState>>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > AUDIT_READ_MAX {
        return Err(ApiError::bad_request(format!(
            "limit: must be 1 to {AUDIT_READ_MAX}, got {limit}"
        )));
    }
    let records = state
        .audit
        .store
        .read_audit(limit, query.before.as_deref())
        .await
        .map_err(|e| ApiError::unavailable(format!("the audit log cannot be read: {e}"), 5))?;
    let next_before = (records.len() == limit)
        .then(|| records.last().map(|r| r.id.clone()))
        .flatten();
    Ok(Json(AuditPage {
        records,
        next_before,
    }))
}
