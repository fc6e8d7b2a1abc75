//! The player directory over the admin API (role viewer): `GET /v1/players` lists players
//! by filters with a sort, cursor pagination and the total count; `GET /v1/players/{id}`
//! shows one: profile, presence and region, the position of its last save, its sessions,
//! bans and mutes, its audit entries, and its wallet, inventory and level.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tessera_persistence::SnapshotStore;
use tessera_persistence::audit::{AuditFilter, Sanction};
use tessera_persistence::directory::*;
use tessera_persistence::economy::EconomyStore;
use tessera_persistence::node_store::NodeStore;
use tessera_shared::ids::{PlayerId, RegionId};

use super::{AdminState, ApiError, PathParam, player_id};
use crate::auth::unix_now_s;

/// Sessions a player's details show, newest first.
pub const DETAILS_SESSIONS: usize = 20;
/// Audit entries a player's details show, newest first.
pub const DETAILS_AUDIT: usize = 20;

/// `GET /v1/players?...`: every parameter as text, checked here so that each refusal
/// names its parameter; an unknown one is refused too.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    online: Option<String>,
    node: Option<String>,
    region: Option<String>,
    name: Option<String>,
    level_min: Option<String>,
    level_max: Option<String>,
    last_login_from: Option<String>,
    last_login_to: Option<String>,
    banned: Option<String>,
    muted: Option<String>,
    sort: Option<String>,
    order: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

fn bool_param(field: &str, text: Option<&String>) -> Result<Option<bool>, ApiError> {
    text.map(|t| match t.as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "{field}: must be true or false, got {t:?}"
        ))),
    })
    .transpose()
}

fn int_param<T: std::str::FromStr + std::fmt::Display + PartialOrd>(
    field: &str,
    text: Option<&String>,
    range: std::ops::RangeInclusive<T>,
) -> Result<Option<T>, ApiError> {
    text.map(|t| {
        t.parse::<T>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{field}: must be an integer from {} to {}, got {t:?}",
                    range.start(),
                    range.end()
                ))
            })
    })
    .transpose()
}

impl ListQuery {
    /// The store's query; or a 400 naming the parameter.
    pub fn check(&self) -> Result<PlayerQuery, ApiError> {
        let sort = match &self.sort {
            None => SortKey::Id,
            Some(s) => SortKey::parse(s).ok_or_else(|| {
                let names: Vec<&str> = SortKey::ALL.iter().map(|(n, _)| *n).collect();
                ApiError::bad_request(format!(
                    "sort: must be one of {}, got {s:?}",
                    names.join(", ")
                ))
            })?,
        };
        let descending = match self.order.as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(o) => {
                return Err(ApiError::bad_request(format!(
                    "order: must be asc or desc, got {o:?}"
                )));
            }
        };
        if let Some(node) = &self.node
            && (node.is_empty() || node.len() > NAME_BYTES_MAX)
        {
            return Err(ApiError::bad_request(format!(
                "node: must be a node name of 1 to {NAME_BYTES_MAX} bytes"
            )));
        }
        let after = self
            .cursor
            .as_deref()
            .map(|c| {
                Cursor::decode(c).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "cursor: must be a previous page's next_cursor, got {c:?}"
                    ))
                })
            })
            .transpose()?;
        let query = PlayerQuery {
            online: bool_param("online", self.online.as_ref())?,
            node: self.node.clone(),
            region: int_param("region", self.region.as_ref(), 0..=RegionId::MAX)?.map(RegionId),
            name_prefix: self.name.clone(),
            level_min: int_param("level_min", self.level_min.as_ref(), 0..=u32::MAX)?,
            level_max: int_param("level_max", self.level_max.as_ref(), 0..=u32::MAX)?,
            last_login_from: int_param(
                "last_login_from",
                self.last_login_from.as_ref(),
                0..=FOREVER,
            )?,
            last_login_to: int_param("last_login_to", self.last_login_to.as_ref(), 0..=FOREVER)?,
            banned: bool_param("banned", self.banned.as_ref())?,
            muted: bool_param("muted", self.muted.as_ref())?,
            sort,
            descending,
            limit: int_param("limit", self.limit.as_ref(), 1..=PAGE_LEN_MAX)?
                .unwrap_or(PAGE_LEN_DEFAULT),
            after,
        };
        query
            .check()
            .map_err(|(field, why)| ApiError::bad_request(format!("{field}: {why}")))?;
        Ok(query)
    }
}

/// A profile as the API shows it.
#[derive(Debug, Serialize)]
struct PlayerSummary {
    player: u64,
    name: String,
    level: u32,
    online: bool,
    /// While online: its node and region.
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<u32>,
    first_login_unix_s: u64,
    last_login_unix_s: u64,
    last_seen_unix_s: u64,
    banned: bool,
    muted: bool,
    /// Until when (absent: not banned; `null`: for good).
    #[serde(skip_serializing_if = "Option::is_none")]
    banned_until_unix_s: Option<Option<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    muted_until_unix_s: Option<Option<u64>>,
}

fn until(until: u64, now: u64) -> Option<Option<u64>> {
    (until > now).then_some((until != FOREVER).then_some(until))
}

impl PlayerSummary {
    fn of(p: Profile, now: u64) -> PlayerSummary {
        let (online, banned, muted) = (p.is_online(now), p.is_banned(now), p.is_muted(now));
        PlayerSummary {
            player: p.player.0,
            level: p.level,
            online,
            node: p.node.filter(|_| online),
            region: p.region.filter(|_| online).map(|r| r.0),
            first_login_unix_s: p.first_login_unix_s,
            last_login_unix_s: p.last_login_unix_s,
            last_seen_unix_s: p.last_seen_unix_s,
            banned,
            muted,
            banned_until_unix_s: until(p.banned_until_unix_s, now),
            muted_until_unix_s: until(p.muted_until_unix_s, now),
            name: p.name,
        }
    }
}

fn unreadable(e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(format!("the player directory cannot be read: {e}"), 2)
}

/// `GET /v1/players`.
pub(super) async fn list(
    State(state): State<Arc<AdminState>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let query = query.check()?;
    list_page(&state.store, &query, unix_now_s())
        .await
        .map(Json)
}

/// The page `query` asks for at `now`, as `GET /v1/players` answers it (the handler's
/// work after the checks: the bench measures it).
pub async fn list_page(
    store: &NodeStore,
    query: &PlayerQuery,
    now: u64,
) -> Result<Value, ApiError> {
    let page = store.list_players(query, now).await.map_err(unreadable)?;
    let players: Vec<PlayerSummary> = page
        .players
        .into_iter()
        .map(|p| PlayerSummary::of(p, now))
        .collect();
    Ok(json!({
        "players": players,
        "total": page.total,
        "next_cursor": page.next.map(|c| c.encode()),
    }))
}

/// `GET /v1/players/{player}`: 404 for a player the directory has never seen.
pub(super) async fn details(
    State(state): State<Arc<AdminState>>,
    PathParam(player): PathParam,
) -> Result<Json<Value>, ApiError> {
    let player = player_id(&player)?;
    player_details(&state.store, player, unix_now_s())
        .await
        .map(Json)
}

/// One player's details at `now`, as `GET /v1/players/{player}` answers them.
pub async fn player_details(
    store: &NodeStore,
    player: PlayerId,
    now: u64,
) -> Result<Value, ApiError> {
    let audit_filter = AuditFilter {
        player: Some(player),
        ..AuditFilter::default()
    };
    // Independent reads, at once.
    let (profile, sessions, ban, mute, audit, economy, saved) = tokio::join!(
        store.profile_of(player),
        store.sessions_of(player, DETAILS_SESSIONS),
        store.sanction_of(Sanction::Ban, player),
        store.sanction_of(Sanction::Mute, player),
        store.read_audit(DETAILS_AUDIT, None, &audit_filter),
        store.economy_of(player),
        store.load_player(player),
    );
    let Some(profile) = profile.map_err(unreadable)? else {
        return Err(ApiError::not_found(format!(
            "player {}: not in the directory (it never logged in)",
            player.0
        )));
    };
    let economy = economy.map_err(unreadable)?.unwrap_or_default();
    let position = saved
        .map_err(unreadable)?
        .and_then(|record| crate::players::decode(&record.data).ok())
        .map(|s| json!({ "x": s.position.x, "y": s.position.y, "health": s.health }));
    let sanction = |record: Option<tessera_persistence::audit::SanctionRecord>| {
        record.map(|r| {
            json!({
                "reason": r.reason,
                "until_unix_s": r.until_unix_s,
                "in_force": r.is_in_force(now),
            })
        })
    };
    Ok(json!({
        "profile": PlayerSummary::of(profile, now),
        "saved_position": position,
        "sessions": sessions.map_err(unreadable)?,
        "ban": sanction(ban.map_err(unreadable)?),
        "mute": sanction(mute.map_err(unreadable)?),
        "audit": audit.map_err(unreadable)?.records,
        "economy": {
            "coins": economy.holdings.coins,
            "items": economy.holdings.items,
            "xp": economy.xp,
            "level": economy.level,
            "kills": economy.kills,
        },
    }))
}
