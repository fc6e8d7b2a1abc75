//! A player's economy over the admin API: wallet, inventory, level and ledger (role
//! viewer); grants and revocations of coins and items (role admin), each an economy
//! transaction with the caller's idempotency key, audited with what was asked.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use tessera_persistence::audit::AuditFilter;
use tessera_persistence::economy::{
    EconomyStore, EconomyTx, Holdings, LEDGER_READ_MAX, LedgerEntry, PlayerEconomy, TxKind,
    TxOutcome, is_valid_key,
};
use tessera_persistence::leaderboard::{Board, Standing, TOP_MAX};

use super::audit::Entry;
use super::keys::Caller;
use super::{AdminState, ApiError, JsonBody, PathParam, player_id, reason};
use crate::economy::now_unix_ms;

/// `GET /v1/players/{player}/economy`: a player without any transaction yet has the
/// starting state (no coins, no items, level 1).
pub(super) async fn economy(
    State(state): State<Arc<AdminState>>,
    PathParam(player): PathParam,
) -> Result<Json<Value>, ApiError> {
    let player = player_id(&player)?;
    let found = state
        .store
        .economy_of(player)
        .await
        .map_err(|e| ApiError::unavailable(format!("the economy cannot be read: {e}"), 5))?;
    let PlayerEconomy {
        holdings,
        xp,
        level,
        kills,
        kit_delivered,
    } = found.unwrap_or_default();
    Ok(Json(json!({
        "player": player.0,
        "coins": holdings.coins,
        "items": holdings.items,
        "xp": xp,
        "level": level,
        "kills": kills,
        "starter_kit_delivered": kit_delivered,
    })))
}

/// `GET /v1/players/{player}/ledger?limit=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LedgerQuery {
    limit: Option<String>,
}

pub(super) async fn ledger(
    State(state): State<Arc<AdminState>>,
    PathParam(player): PathParam,
    query: Result<Query<LedgerQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let player = player_id(&player)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = super::limit_param(query.limit.as_deref(), 100, LEDGER_READ_MAX)?;
    let entries = state
        .store
        .ledger_of(player, limit)
        .await
        .map_err(|e| ApiError::unavailable(format!("the ledger cannot be read: {e}"), 5))?;
    let entries: Vec<Value> = entries.iter().map(entry_json).collect();
    Ok(Json(json!({ "player": player.0, "entries": entries })))
}

/// The board a path names, or 404 naming the boards.
fn board_of(name: &str) -> Result<Board, ApiError> {
    Board::named(name).ok_or_else(|| {
        let names: Vec<&str> = Board::ALL.iter().map(|b| b.name()).collect();
        ApiError::not_found(format!(
            "no leaderboard {name:?}; there are: {}",
            names.join(", ")
        ))
    })
}

fn standing_json(s: &Standing) -> Value {
    json!({ "rank": s.rank, "player": s.player.0, "score": s.score })
}

/// `GET /v1/leaderboards/{board}?limit=`: the top of a board (1 to [`TOP_MAX`], default
/// 10).
pub(super) async fn leaderboard(
    State(state): State<Arc<AdminState>>,
    PathParam(board): PathParam,
    query: Result<Query<LedgerQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let board = board_of(&board)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = super::limit_param(query.limit.as_deref(), 10, TOP_MAX)?;
    let top = state
        .economy
        .leaderboards()
        .top(board, limit)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string(), 2))?;
    let top: Vec<Value> = top.iter().map(standing_json).collect();
    Ok(Json(json!({ "board": board.name(), "top": top })))
}

/// `GET /v1/leaderboards/{board}/players/{player}`: a player's rank and score, 404 if
/// it is not on the board.
pub(super) async fn standing(
    State(state): State<Arc<AdminState>>,
    axum::extract::Path((board, player)): axum::extract::Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let board = board_of(&board)?;
    let player = player_id(&player)?;
    let standing = state
        .economy
        .leaderboards()
        .standing(board, player)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string(), 2))?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "player {} is not on the {} leaderboard",
                player.0,
                board.name()
            ))
        })?;
    let mut answer = standing_json(&standing);
    answer["board"] = board.name().into();
    Ok(Json(answer))
}

/// `POST /v1/leaderboards/rebuild`: every board rebuilt from the store's economies
/// (audited).
pub(super) async fn rebuild_leaderboards(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<super::ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    let reason = reason(body.reason)?;
    let entry = Entry {
        action: "leaderboards.rebuild",
        target: "leaderboards".into(),
        reason: &reason,
        details: String::new(),
    };
    let economy = state.economy.clone();
    let rebuilding = async move {
        let audit =
            economy.store().economy_audit().await.map_err(|e| {
                ApiError::unavailable(format!("the economy cannot be read: {e}"), 5)
            })?;
        let players = economy
            .leaderboards()
            .rebuild(&audit.players)
            .await
            .map_err(|e| ApiError::unavailable(e.to_string(), 2))?;
        Ok(json!({ "players": players }))
    };
    state.audit.run(&caller, entry, rebuilding).await.map(Json)
}

/// The body of a grant or a revocation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HoldingsBody {
    /// The idempotency key: the same key again is the same grant, applied once.
    key: String,
    #[serde(default)]
    coins: u64,
    #[serde(default)]
    items: BTreeMap<String, u32>,
    reason: String,
}

pub(super) async fn grant(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    PathParam(player): PathParam,
    JsonBody(body): JsonBody<HoldingsBody>,
) -> Result<Json<Value>, ApiError> {
    change(state, caller, player, body, true).await
}

pub(super) async fn revoke(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    PathParam(player): PathParam,
    JsonBody(body): JsonBody<HoldingsBody>,
) -> Result<Json<Value>, ApiError> {
    change(state, caller, player, body, false).await
}

async fn change(
    state: Arc<AdminState>,
    caller: Caller,
    player: String,
    body: HoldingsBody,
    grant: bool,
) -> Result<Json<Value>, ApiError> {
    let player = player_id(&player)?;
    let reason = reason(body.reason)?;
    if !is_valid_key(&body.key) {
        return Err(ApiError::bad_request(format!(
            "key: must be 1 to 64 bytes of A-Z a-z 0-9 _ - . :, got {:?}",
            body.key
        )));
    }
    let balance = Arc::new(state.reloader.running().config.balance.clone());
    if let Some(unknown) = body.items.keys().find(|i| balance.item_index(i).is_none()) {
        return Err(ApiError::bad_request(format!(
            "items: no item {unknown:?} in balance.toml"
        )));
    }
    let holdings = Holdings {
        coins: body.coins,
        items: body.items,
    };
    let entry = Entry {
        action: if grant {
            "player.grant"
        } else {
            "player.revoke"
        },
        target: AuditFilter::player_target(player),
        reason: &reason,
        details: format!(
            "key: {}, coins: {}, items: {:?}",
            body.key, holdings.coins, holdings.items
        ),
    };
    let tx = EconomyTx {
        player,
        key: format!("admin:{}", body.key),
        kind: if grant {
            TxKind::Grant(holdings)
        } else {
            TxKind::Revoke(holdings)
        },
        at_ms: now_unix_ms(),
    };
    let store = state.store.clone();
    let economy = state.economy.clone();
    let apply = async move {
        let outcome = store
            .apply_tx(balance, &tx)
            .await
            .map_err(|e| ApiError::unavailable(format!("the economy cannot be changed: {e}"), 5))?;
        match outcome {
            TxOutcome::Applied(e) => {
                economy.applied(&tx).await;
                Ok(json!({ "outcome": "applied", "entry": entry_json(&e) }))
            }
            TxOutcome::Duplicate(e) => {
                Ok(json!({ "outcome": "duplicate", "entry": entry_json(&e) }))
            }
            TxOutcome::Refused(why) => Err(ApiError::conflict(format!("refused: {why}"))),
        }
    };
    state.audit.run(&caller, entry, apply).await.map(Json)
}

/// A ledger entry as JSON, zero and empty fields left out.
fn entry_json(e: &LedgerEntry) -> Value {
    let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.retain(|_, field| match field {
            Value::Null => false,
            Value::Number(n) => n.as_u64() != Some(0) && n.as_i64() != Some(0),
            Value::Object(o) => !o.is_empty(),
            _ => true,
        });
        map.insert("player".into(), json!(e.player.0));
        if let Some(other) = e.other {
            map.insert("other".into(), json!(other.0));
        }
    }
    v
}
