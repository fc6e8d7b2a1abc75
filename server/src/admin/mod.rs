//! The admin HTTP API (axum), on `[net] admin_listen`: for orchestrators (region load,
//! region control), operators (player actions, balance reload, the audit log) and
//! monitoring (`/metrics`, `/healthz`, `/livez`, `/readyz`).
//!
//! Every `/v1` route and `/metrics` needs an API key (`Authorization: Bearer <key>`,
//! [`keys`]) whose role is at least the route's; the probes answer anyone (orchestrators
//! and load balancers call them without credentials). Errors are JSON ([`ApiError`]).
//! Request bodies are JSON of at most [`BODY_BYTES_MAX`] bytes; a malformed one is refused
//! with the path of the offending field. Mutations name a `reason` and go to the audit
//! log before they are answered. The routes and their roles are in `openapi.json` (served
//! at `/v1/openapi.json`), which is the contract.

mod audit;
mod error;
pub mod health;
pub mod keys;
pub mod metrics;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tessera_persistence::SnapshotStore;
use tessera_shared::ids::PlayerId;

use crate::node::status::{self, StatusBoard};
pub use audit::Audit;
pub use error::ApiError;
use health::Health;
use keys::{ApiKeys, Caller, Role};
use metrics::NodeMetrics;

use crate::node::{AdminAction, NodeHandle};

/// Largest request body, in bytes (a larger one is refused with 413 unread).
pub const BODY_BYTES_MAX: usize = 64 * 1024;
/// Longest `reason` of a mutation, in bytes.
pub const REASON_BYTES_MAX: usize = 512;

/// The OpenAPI document of this API (checked in; tests hold the routes to it).
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// What the handlers work with.
#[derive(Debug)]
pub struct AdminState {
    /// Accepted API keys.
    pub keys: ApiKeys,
    /// `[node] name`.
    pub node_name: String,
    /// The QUIC endpoint's address.
    pub quic_addr: String,
    /// `"mongodb"` or `"embedded"`.
    pub store_kind: &'static str,
    /// Commands to the tick driver.
    pub node: NodeHandle,
    /// What the driver publishes.
    pub board: Arc<StatusBoard>,
    /// Health checks.
    pub health: Arc<Health>,
    /// Metrics.
    pub metrics: Arc<NodeMetrics>,
    /// The audit log.
    pub audit: Arc<audit::Audit>,
    /// Balance reloads.
    pub reloader: Arc<crate::reload::Reloader>,
    /// Region assignment, release and transfer.
    pub regions: Arc<crate::control::RegionControl>,
    /// The store (bans).
    pub store: tessera_persistence::node_store::NodeStore,
}

/// The routes. Each group checks its role before anything of the request is read.
pub fn router(state: Arc<AdminState>) -> Router {
    let viewer = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/v1/node", get(node_info))
        .route("/v1/regions", get(regions))
        .route("/v1/audit", get(audit::read))
        .route("/v1/placement", get(placement));
    let orchestrator = Router::new()
        .route(
            "/v1/regions/{region}",
            axum::routing::put(assign_region).delete(release_region),
        )
        .route("/v1/regions/{region}/transfer", post(transfer_region));
    let admin = Router::new()
        .route("/v1/players/{player}/kick", post(kick))
        .route("/v1/players/{player}/teleport", post(teleport))
        .route("/v1/players/{player}/message", post(message))
        .route("/v1/players/{player}/ban", post(ban).delete(unban))
        .route("/v1/config/reload", post(reload_balance));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/v1/openapi.json", get(openapi))
        .merge(requiring(Role::Viewer, viewer, &state))
        .merge(requiring(Role::Orchestrator, orchestrator, &state))
        .merge(requiring(Role::Admin, admin, &state))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(state)
}

/// `routes`, each refusing a caller below `role` (401 or 403) and handing the others'
/// [`Caller`] to the handler as an extension.
fn requiring(
    role: Role,
    routes: Router<Arc<AdminState>>,
    state: &Arc<AdminState>,
) -> Router<Arc<AdminState>> {
    routes.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        move |State(state): State<Arc<AdminState>>, mut request: Request, next: Next| async move {
            let caller = authorize(&state, request.headers(), role)?;
            request.extensions_mut().insert(caller);
            Ok::<_, ApiError>(next.run(request).await)
        },
    ))
}

/// Serves the API on `listener` until the runtime stops.
pub fn spawn(listener: tokio::net::TcpListener, state: Arc<AdminState>) {
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(state)).await {
            tracing::error!(error = %e, "the admin API stopped");
        }
    });
}

/// The caller behind the request's key, if its role is at least `role`.
fn authorize(state: &AdminState, headers: &HeaderMap, role: Role) -> Result<Caller, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "missing header Authorization: Bearer <API key>",
        ));
    };
    let key = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthorized("Authorization must be \"Bearer <API key>\""))?;
    let caller = state
        .keys
        .caller(key.trim())
        .ok_or_else(|| ApiError::unauthorized("unknown API key"))?;
    if caller.role < role {
        return Err(ApiError::forbidden(format!(
            "this needs the role {:?} or above; the key {:?} has {:?}",
            role.name(),
            caller.name,
            caller.role.name()
        )));
    }
    Ok(caller.clone())
}

/// A JSON request body, deserialized with the path of any offending field in the error.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::too_large(format!("the body is over {BODY_BYTES_MAX} bytes"))
                } else {
                    ApiError::bad_request(rejection.body_text())
                }
            })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." || path == "?" {
                "body".into()
            } else {
                path
            };
            ApiError::bad_request(format!("{path}: {}", e.inner()))
        })?;
        de.end()
            .map_err(|e| ApiError::bad_request(format!("body: {e}")))?;
        Ok(JsonBody(value))
    }
}

/// The body of a mutation: why (for the audit log).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: String,
}

/// Checks a mutation's `reason`.
fn reason(text: String) -> Result<String, ApiError> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.len() > REASON_BYTES_MAX {
        return Err(ApiError::bad_request(format!(
            "reason: must be 1 to {REASON_BYTES_MAX} bytes (it goes to the audit log), got {}",
            trimmed.len()
        )));
    }
    Ok(trimmed.to_owned())
}

/// Sends `action` to the driver and waits for its answer.
async fn run_on_driver(
    state: &AdminState,
    action: AdminAction,
) -> Result<serde_json::Value, ApiError> {
    Ok(state.node.ask(action).await?)
}

fn report(report: health::Report) -> Response {
    let status = if report.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

async fn healthz(State(state): State<Arc<AdminState>>) -> Response {
    report(state.health.health())
}

async fn livez(State(state): State<Arc<AdminState>>) -> Response {
    report(state.health.live())
}

async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    report(state.health.ready())
}

async fn metrics_text(State(state): State<Arc<AdminState>>) -> Response {
    let text = state.metrics.render();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

/// `GET /v1/node`.
#[derive(Serialize)]
struct NodeInfo {
    name: String,
    quic_addr: String,
    store: &'static str,
    uptime_s: u64,
    health: &'static str,
    tick: u64,
    tick_hz: u32,
    players: usize,
    entities: usize,
    tick_p50_ms: f64,
    tick_p99_ms: f64,
    regions: Vec<u32>,
}

async fn node_info(State(state): State<Arc<AdminState>>) -> Json<NodeInfo> {
    let status = state.board.status();
    Json(NodeInfo {
        name: state.node_name.clone(),
        quic_addr: state.quic_addr.clone(),
        store: state.store_kind,
        uptime_s: state.board.uptime().as_secs(),
        health: state.health.health().status,
        tick: status.tick,
        tick_hz: status.tick_hz,
        players: status.players,
        entities: status.entities,
        tick_p50_ms: status.tick_p50_ms,
        tick_p99_ms: status.tick_p99_ms,
        regions: status.regions.iter().map(|r| r.id).collect(),
    })
}

/// `GET /v1/regions`.
#[derive(Serialize)]
struct Regions {
    node: String,
    tick: u64,
    regions: Vec<status::RegionStatus>,
}

async fn regions(State(state): State<Arc<AdminState>>) -> Json<Regions> {
    let status = state.board.status();
    Json(Regions {
        node: state.node_name.clone(),
        tick: status.tick,
        regions: status.regions,
    })
}

fn player_id(text: &str) -> Result<PlayerId, ApiError> {
    text.parse::<u64>()
        .ok()
        .filter(|&id| id <= PlayerId::MAX)
        .map(PlayerId)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "player: must be an integer from 0 to {}, got {text:?}",
                PlayerId::MAX
            ))
        })
}

async fn kick(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(player): Path<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let player = player_id(&player)?;
    let reason = reason(body.reason)?;
    let target = format!("player:{}", player.0);
    let action = AdminAction::Kick {
        player,
        reason: reason.clone(),
    };
    state
        .audit
        .run(
            &caller,
            "player.kick",
            &target,
            &reason,
            run_on_driver(&state, action),
        )
        .await
        .map(Json)
}

/// The body of a teleport.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TeleportBody {
    x: f32,
    y: f32,
    reason: String,
}

async fn teleport(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(player): Path<String>,
    JsonBody(body): JsonBody<TeleportBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let player = player_id(&player)?;
    let reason = reason(body.reason)?;
    let to = tessera_shared::math::Vec2::new(body.x, body.y);
    let target = format!("player:{} to:({}, {})", player.0, body.x, body.y);
    let action = AdminAction::Teleport { player, to };
    state
        .audit
        .run(
            &caller,
            "player.teleport",
            &target,
            &reason,
            run_on_driver(&state, action),
        )
        .await
        .map(Json)
}

/// The body of a message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    text: String,
    reason: String,
}

async fn message(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(player): Path<String>,
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
    let target = format!("player:{}", player.0);
    let action = AdminAction::Message {
        player,
        text: body.text,
    };
    state
        .audit
        .run(
            &caller,
            "player.message",
            &target,
            &reason,
            run_on_driver(&state, action),
        )
        .await
        .map(Json)
}

/// The body of a ban.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BanBody {
    reason: String,
    /// How long; absent: for good.
    duration_s: Option<u64>,
}

async fn ban(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(player): Path<String>,
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
    let record = tessera_persistence::audit::BanRecord {
        player,
        until_unix_s,
        reason: reason.clone(),
    };
    let target = format!("player:{}", player.0);
    let banning = async {
        state
            .store
            .set_ban(player, Some(&record))
            .await
            .map_err(|e| ApiError::unavailable(format!("the ban could not be stored: {e}"), 2))?;
        // Online here: the session ends now (elsewhere, the next login is refused).
        let kick = AdminAction::Kick {
            player,
            reason: format!("banned: {reason}"),
        };
        let kicked = run_on_driver(&state, kick).await.is_ok();
        Ok(
            serde_json::json!({ "player": player.0, "until_unix_s": until_unix_s, "kicked": kicked }),
        )
    };
    state
        .audit
        .run(&caller, "player.ban", &target, &reason, banning)
        .await
        .map(Json)
}

async fn unban(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(player): Path<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let player = player_id(&player)?;
    let reason = reason(body.reason)?;
    let target = format!("player:{}", player.0);
    let lifting =
        async {
            state.store.set_ban(player, None).await.map_err(|e| {
                ApiError::unavailable(format!("the ban could not be lifted: {e}"), 2)
            })?;
            Ok(serde_json::json!({ "player": player.0, "banned": false }))
        };
    state
        .audit
        .run(&caller, "player.unban", &target, &reason, lifting)
        .await
        .map(Json)
}

async fn reload_balance(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let reason = reason(body.reason)?;
    state
        .audit
        .run(&caller, "config.reload", "balance.toml", &reason, async {
            Ok(state.reloader.reload().await?)
        })
        .await
        .map(Json)
}

async fn placement(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<crate::placement::Placement>, ApiError> {
    let status = state.board.status();
    let local = crate::placement::NodeLoad {
        node: state.node_name.clone(),
        admin_addr: String::new(),
        quic_addr: state.quic_addr.clone(),
        regions: status
            .regions
            .iter()
            .map(crate::placement::RegionLoad::from)
            .collect(),
    };
    Ok(state.regions.placement(local).await.map(Json)?)
}

fn region_id(text: &str) -> Result<tessera_shared::ids::RegionId, ApiError> {
    text.parse::<u32>()
        .ok()
        .filter(|&id| id <= tessera_shared::ids::RegionId::MAX)
        .map(tessera_shared::ids::RegionId)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "region: must be an integer from 0 to {}, got {text:?}",
                tessera_shared::ids::RegionId::MAX
            ))
        })
}

async fn assign_region(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(region): Path<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let region = region_id(&region)?;
    let action = state.regions.assign(region);
    audited_on_region(
        &state,
        &caller,
        "region.assign",
        region,
        None,
        body.reason,
        action,
    )
    .await
}

async fn release_region(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(region): Path<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let region = region_id(&region)?;
    let action = state.regions.release(region, None);
    audited_on_region(
        &state,
        &caller,
        "region.release",
        region,
        None,
        body.reason,
        action,
    )
    .await
}

/// The body of a transfer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    to: String,
    reason: String,
}

async fn transfer_region(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    Path(region): Path<String>,
    JsonBody(body): JsonBody<TransferBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let region = region_id(&region)?;
    if body.to.is_empty() || body.to.len() > 64 {
        return Err(ApiError::bad_request(
            "to: a node name of 1 to 64 characters",
        ));
    }
    let action = state.regions.release(region, Some(body.to.clone()));
    let to = Some(body.to.as_str());
    audited_on_region(
        &state,
        &caller,
        "region.transfer",
        region,
        to,
        body.reason,
        action,
    )
    .await
}

/// Runs `action` on `region` (to node `to`) under the audit log, once `reason` checks.
async fn audited_on_region(
    state: &AdminState,
    caller: &Caller,
    name: &str,
    region: tessera_shared::ids::RegionId,
    to: Option<&str>,
    reason_text: String,
    action: impl std::future::Future<Output = Result<serde_json::Value, crate::node::ActionError>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let reason = reason(reason_text)?;
    let action = async move { Ok(action.await?) };
    let target = match to {
        Some(to) => format!("region:{} to:{to}", region.0),
        None => format!("region:{}", region.0),
    };
    state
        .audit
        .run(caller, name, &target, &reason, action)
        .await
        .map(Json)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {} {}; see /v1/openapi.json",
        request.method(),
        request.uri().path()
    ))
}

/// Reloads on every notice of the balance file's watch, audited as `file-watch`.
pub async fn follow_reloads(
    mut notices: tokio::sync::mpsc::Receiver<()>,
    reloader: Arc<crate::reload::Reloader>,
    audit: Arc<Audit>,
) {
    let watcher = Caller {
        name: "file-watch".into(),
        role: Role::Admin,
    };
    while notices.recv().await.is_some() {
        if !reloader.changed_on_disk() {
            continue; // Rewritten with the same content, or touched: nothing to reload.
        }
        let reload = async { Ok(reloader.reload().await?) };
        let _ = audit
            .run(
                &watcher,
                "config.reload",
                "balance.toml",
                "the file changed",
                reload,
            )
            .await;
    }
}
