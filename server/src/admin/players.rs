//! Player actions (role admin): kick, teleport, message, ban and unban, each audited with
//! what exactly was asked (the message's text, the ban's duration, the destination).

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;
use tessera_persistence::SnapshotStore;
use tessera_persistence::audit::{AuditFilter, Sanction, SanctionRecord};

use super::audit::Entry;
use super::keys::Caller;
use super::{
    AdminState, ApiError, JsonBody, PathParam, ReasonBody, player_id, reason, run_on_driver,
};
use crate::node::AdminAction;

pub(super) async fn kick(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    PathParam(player): PathParam,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let player = player_id(&player)?;
    let reason = reason(body.reason)?;
    let entry = Entry {
        action: "player.kick",
        target: AuditFilter::player_target(player),
        reason: &reason,
        details: String::new(),
    };
    let action = AdminAction::Kick {
        player,
        reason: reason.clone(),
    };
    state
        .audit
        .run(&caller, entry, run_on_driver(&state, action))
        .await
        .map(Json)
}

/// The body of a teleport.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TeleportBody {
    x: f32,
    y: f32,
    reason: String,
}

pub(super) async fn teleport(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    PathParam(player): PathParam,
    JsonBody(body): JsonBody<TeleportBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let player = player_id(&player)?;
    let reason = reason(body.reason)?;
    let to = tessera_shared::math::Vec2::new(body.x, body.y);
    let entry = Entry {
        action: "player.teleport",
        target: AuditFilter::player_target(player),
        reason: &reason,
        details: format!("to: ({}, {})", body.x, body.y),
    };
    let action = AdminAction::Teleport { player, to };
    state
        .audit
        .run(&caller, entry, run_on_driver(&state, action))
        .await
        .map(Json)
}

/// The body of a message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MessageBody {
    text: String,
    reason: String,
}

pub(super) async fn message(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    PathParam(player): PathParam,
    JsonBody(body): JsonBody<MessageBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let player = player_id(&player)?;
    let reason = reason(body.reason)?;
    let limit = tessera_shared::protocol::limits::TEXT_BYTES_MAX;
    if body.text.is_empty() || body.text.len() > limit {
        return Err(ApiError::bad_request(format!(
            "text: must be 1 to {limit} bytes, got {}",
            body.text.len()
        )));
    }
    let entry = Entry {
        action: "player.message",
        target: AuditFilter::player_target(player),
        reason: &reason,
        details: format!("text: {:?}", body.text),
    };
    let action = AdminAction::Message {
        player,
        text: body.text,
    };
    state
        .audit
        .run(&caller, entry, run_on_driver(&state, action))
        .await
        .map(Json)
}

/// The body of a ban.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BanBody {
    reason: String,
    /// How long; absent: for good.
    duration_s: Option<u64>,
}

pub(super) async fn ban(
    state: State<Arc<AdminState>>,
    caller: Extension<Caller>,
    player: PathParam,
    body: JsonBody<BanBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    impose(Sanction::Ban, state, caller, player, body).await
}

pub(super) async fn mute(
    state: State<Arc<AdminState>>,
    caller: Extension<Caller>,
    player: PathParam,
    body: JsonBody<BanBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    impose(Sanction::Mute, state, caller, player, body).await
}

pub(super) async fn unban(
    state: State<Arc<AdminState>>,
    caller: Extension<Caller>,
    player: PathParam,
    body: JsonBody<ReasonBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    lift(Sanction::Ban, state, caller, player, body).await
}

pub(super) async fn unmute(
    state: State<Arc<AdminState>>,
    caller: Extension<Caller>,
    player: PathParam,
    body: JsonBody<ReasonBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    lift(Sanction::Mute, state, caller, player, body).await
}

/// Bans (the session on this node ends; logins are refused) or mutes (chat is refused)
/// a player, in the store the cluster shares; audited as `player.ban` or `player.mute`.
async fn impose(
    kind: Sanction,
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    PathParam(player): PathParam,
    JsonBody(body): JsonBody<BanBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let player = player_id(&player)?;
    let reason = reason(body.reason)?;
    if body.duration_s == Some(0) {
        return Err(ApiError::bad_request(
            "duration_s: at least 1 (absent: for good)",
        ));
    }
    let until_unix_s = body
        .duration_s
        .map(|d| crate::auth::unix_now_s().saturating_add(d));
    let record = SanctionRecord {
        player,
        until_unix_s,
        reason: reason.clone(),
    };
    let action = match kind {
        Sanction::Ban => "player.ban",
        Sanction::Mute => "player.mute",
    };
    let entry = Entry {
        action,
        target: AuditFilter::player_target(player),
        reason: &reason,
        details: match (body.duration_s, until_unix_s) {
            (Some(duration_s), Some(until)) => {
                format!("duration_s: {duration_s}; until_unix_s: {until}")
            }
            _ => "duration_s: none (for good)".into(),
        },
    };
    let imposing = async {
        state
            .store
            .set_sanction(kind, player, Some(&record))
            .await
            .map_err(|e| {
                ApiError::unavailable(format!("the {} could not be stored: {e}", kind.name()), 2)
            })?;
        let mut answer = serde_json::json!({ "player": player.0, "until_unix_s": until_unix_s });
        if kind == Sanction::Ban {
            // Online here: the session ends now (elsewhere, the next login is refused).
            let kick = AdminAction::Kick {
                player,
                reason: format!("banned: {reason}"),
            };
            answer["kicked"] = run_on_driver(&state, kick).await.is_ok().into();
        }
        Ok(answer)
    };
    state.audit.run(&caller, entry, imposing).await.map(Json)
}

/// Lifts a player's ban or mute; audited as `player.unban` or `player.unmute`.
async fn lift(
    kind: Sanction,
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    PathParam(player): PathParam,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let player = player_id(&player)?;
    let reason = reason(body.reason)?;
    let (action, flag) = match kind {
        Sanction::Ban => ("player.unban", "banned"),
        Sanction::Mute => ("player.unmute", "muted"),
    };
    let entry = Entry {
        action,
        target: AuditFilter::player_target(player),
        reason: &reason,
        details: String::new(),
    };
    let lifting = async {
        state
            .store
            .set_sanction(kind, player, None)
            .await
            .map_err(|e| {
                ApiError::unavailable(format!("the {} could not be lifted: {e}", kind.name()), 2)
            })?;
        Ok(serde_json::json!({ "player": player.0, flag: false }))
    };
    state.audit.run(&caller, entry, lifting).await.map(Json)
}
