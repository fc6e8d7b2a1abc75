//! Emergency actions (role admin): freeze and unfreeze a region, evacuate a region to
//! another, kick everyone off this node; mutes are `POST /v1/players/{id}/mute`. Each is
//! audited with its reason, and `GET /v1/emergency/history` (role viewer) reads them
//! back, newest first.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::Value;
use tessera_persistence::SnapshotStore;
use tessera_persistence::audit::{AUDIT_READ_MAX, AuditFilter};
use tessera_shared::ids::RegionId;

use super::audit::Entry;
use super::keys::Caller;
use super::{AdminState, ApiError, JsonBody, PathParam, ReasonBody, reason, region_id};
use crate::node::AdminAction;

/// The audit actions `GET /v1/emergency/history` lists.
pub(super) const EMERGENCY_ACTIONS: [&str; 6] = [
    "region.freeze",
    "region.unfreeze",
    "region.evacuate",
    "node.kick_all",
    "player.mute",
    "player.unmute",
];

/// Runs `action` on the driver, audited as `name` on `target` with `details`.
async fn audited(
    state: &AdminState,
    caller: &Caller,
    (name, target, details): (&'static str, String, String),
    reason_text: String,
    action: AdminAction,
) -> Result<Json<Value>, ApiError> {
    let reason = reason(reason_text)?;
    let entry = Entry {
        action: name,
        target,
        reason: &reason,
        details,
    };
    state
        .audit
        .run(caller, entry, super::run_on_driver(state, action))
        .await
        .map(Json)
}

fn region_target(region: RegionId) -> String {
    format!("region:{}", region.0)
}

/// `POST /v1/regions/{region}/freeze`.
pub(super) async fn freeze(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    PathParam(region): PathParam,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    let region = region_id(&region)?;
    let action = AdminAction::Freeze {
        region,
        reason: body.reason.trim().to_owned(),
    };
    let what = ("region.freeze", region_target(region), String::new());
    audited(&state, &caller, what, body.reason, action).await
}

/// `DELETE /v1/regions/{region}/freeze`.
pub(super) async fn unfreeze(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    PathParam(region): PathParam,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    let region = region_id(&region)?;
    let what = ("region.unfreeze", region_target(region), String::new());
    audited(
        &state,
        &caller,
        what,
        body.reason,
        AdminAction::Unfreeze { region },
    )
    .await
}

/// The body of an evacuation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EvacuateBody {
    to: u32,
    reason: String,
}

/// `POST /v1/regions/{region}/evacuate`.
pub(super) async fn evacuate(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    PathParam(region): PathParam,
    JsonBody(body): JsonBody<EvacuateBody>,
) -> Result<Json<Value>, ApiError> {
    let from = region_id(&region)?;
    let to = region_id(&body.to.to_string())
        .map_err(|_| ApiError::bad_request(format!("to: not a region id: {}", body.to)))?;
    let action = AdminAction::Evacuate {
        from,
        to,
        reason: body.reason.trim().to_owned(),
    };
    let what = (
        "region.evacuate",
        region_target(from),
        format!("to: region {}", to.0),
    );
    audited(&state, &caller, what, body.reason, action).await
}

/// `POST /v1/node/kick-all`.
pub(super) async fn kick_all(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    let action = AdminAction::KickAll {
        reason: body.reason.trim().to_owned(),
    };
    let what = (
        "node.kick_all",
        format!("node:{}", state.node_name),
        String::new(),
    );
    audited(&state, &caller, what, body.reason, action).await
}

/// `GET /v1/emergency/history?limit=&before=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    limit: Option<String>,
    before: Option<String>,
}

/// `GET /v1/emergency/history`: the emergency actions of the audit log (every node's,
/// in the shared store), newest first.
pub(super) async fn history(
    State(state): State<Arc<AdminState>>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = super::limit_param(query.limit.as_deref(), 100, AUDIT_READ_MAX)?;
    let filter = AuditFilter {
        actions: EMERGENCY_ACTIONS.iter().map(|a| (*a).to_owned()).collect(),
        ..AuditFilter::default()
    };
    let page = state
        .store
        .read_audit(limit, query.before.as_deref(), &filter)
        .await
        .map_err(|e| ApiError::unavailable(format!("the audit log cannot be read: {e}"), 5))?;
    Ok(Json(serde_json::json!({
        "records": page.records,
        "next_before": page.next_before,
    })))
}
