//! The admin HTTP API (axum), on `[net] admin_listen`: for orchestrators (region load,
//! region control), operators (player actions, balance reload, the audit log) and
//! monitoring (`/metrics`, `/healthz`, `/livez`, `/readyz`).
//!
//! Every `/v1` route and `/metrics` needs an API key (`Authorization: Bearer <key>`,
//! [`keys`]) whose role is at least the route's; the probes answer anyone (orchestrators
//! and load balancers call them without credentials). Errors are JSON ([`ApiError`]).
//! Request bodies are JSON of at most [`BODY_BYTES_MAX`] bytes; a malformed one is refused
//! with the path of the offending field. Every error is JSON, an unknown route (404) and
//! a method a route does not take (405, with `Allow`) included. Mutations name a `reason`
//! and go to the audit log before they are answered. Durations in answers are rounded to
//! the microsecond ([`round_ms`]), config numbers to their shortest exact text. The routes
//! and their roles are in `openapi.json` (served at `/v1/openapi.json`), which is the
//! contract.

mod audit;
mod balance;
pub mod bulk;
mod console;
pub mod directory;
mod economy;
mod emergency;
mod error;
pub mod feed;
pub mod health;
pub mod keys;
mod map;
pub mod metrics;
mod players;

use std::sync::Arc;

use axum::extract::{
    DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Path, Request, State,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tessera_shared::ids::PlayerId;

use crate::node::status::{self, StatusBoard};
pub use audit::{Audit, Entry};
pub use balance::follow_reloads;
pub use bulk::{Jobs, interrupt_stale_jobs};
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
    /// This API's address.
    pub admin_addr: String,
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
    /// The economy's committer (grants update the leaderboards) and the leaderboards.
    pub economy: crate::economy::Economy,
    /// The live feed (`GET /v1/feed`).
    pub feed: crate::feed::Feed,
    /// The bulk jobs this node runs.
    pub jobs: bulk::Jobs,
}

/// The routes. Each group checks its role before anything of the request is read.
pub fn router(state: Arc<AdminState>) -> Router {
    let viewer = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/v1/node", get(node_info))
        .route("/v1/regions", get(regions))
        .route("/v1/audit", get(audit::read))
        .route("/v1/config/balance", get(balance::balance))
        .route("/v1/placement", get(placement))
        .route("/v1/map", get(map::map))
        .route("/v1/emergency/history", get(emergency::history))
        .route("/v1/players", get(directory::list))
        .route("/v1/players/bulk/{key}", get(bulk::status))
        .route("/v1/players/{player}", get(directory::details))
        .route("/v1/players/{player}/economy", get(economy::economy))
        .route("/v1/players/{player}/ledger", get(economy::ledger))
        .route("/v1/leaderboards/{board}", get(economy::leaderboard))
        .route(
            "/v1/leaderboards/{board}/players/{player}",
            get(economy::standing),
        );
    let orchestrator = Router::new()
        .route(
            "/v1/regions/{region}",
            axum::routing::put(assign_region).delete(release_region),
        )
        .route("/v1/regions/{region}/transfer", post(transfer_region));
    let admin = Router::new()
        .route("/v1/players/{player}/kick", post(players::kick))
        .route("/v1/players/{player}/grant", post(economy::grant))
        .route("/v1/players/{player}/revoke", post(economy::revoke))
        .route(
            "/v1/leaderboards/rebuild",
            post(economy::rebuild_leaderboards),
        )
        .route("/v1/players/{player}/teleport", post(players::teleport))
        .route("/v1/players/{player}/message", post(players::message))
        .route(
            "/v1/players/{player}/ban",
            post(players::ban).delete(players::unban),
        )
        .route(
            "/v1/players/{player}/mute",
            post(players::mute).delete(players::unmute),
        )
        .route("/v1/config/reload", post(balance::reload_balance))
        .route(
            "/v1/regions/{region}/freeze",
            post(emergency::freeze).delete(emergency::unfreeze),
        )
        .route("/v1/regions/{region}/evacuate", post(emergency::evacuate))
        .route("/v1/node/kick-all", post(emergency::kick_all))
        .route(
            "/v1/players/bulk",
            post(bulk::create).layer(DefaultBodyLimit::max(bulk::BULK_BODY_BYTES_MAX)),
        )
        .route("/v1/players/bulk/{key}/cancel", post(bulk::cancel));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/v1/openapi.json", get(openapi))
        .merge(console::routes())
        // Checks its key itself, before the upgrade (a browser cannot send the header).
        .route("/v1/feed", get(feed::feed))
        .merge(requiring(Role::Viewer, viewer, &state))
        .merge(requiring(Role::Orchestrator, orchestrator, &state))
        .merge(requiring(Role::Admin, admin, &state))
        // After every route: it is set on the routes there are.
        .method_not_allowed_fallback(method_not_allowed)
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
    authorize_key(state, key.trim(), role)
}

/// The caller holding `key`, if its role is at least `role`.
fn authorize_key(state: &AdminState, key: &str, role: Role) -> Result<Caller, ApiError> {
    let caller = state
        .keys
        .caller(key)
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

/// A path parameter, as text (checked by its handler); one that does not decode is a 400
/// like every other malformed request.
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(text)| PathParam(text))
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
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
        tick_p50_ms: round_ms(status.tick_p50_ms),
        tick_p99_ms: round_ms(status.tick_p99_ms),
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
    let regions = status
        .regions
        .into_iter()
        .map(|r| status::RegionStatus {
            tick_p50_ms: round_ms(r.tick_p50_ms),
            tick_p99_ms: round_ms(r.tick_p99_ms),
            ..r
        })
        .collect();
    Json(Regions {
        node: state.node_name.clone(),
        tick: status.tick,
        regions,
    })
}

/// `ms` rounded to the microsecond: a duration measured with an `Instant` has no more
/// meaning than that, and `0.045748000000000004` reads as noise.
pub fn round_ms(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// A page's `limit` parameter: 1 to `max`, `default` when absent; or a 400 naming it.
fn limit_param(text: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    let Some(text) = text else {
        return Ok(default);
    };
    text.parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "limit: must be an integer from 1 to {max}, got {text:?}"
            ))
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

async fn placement(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<crate::placement::Placement>, ApiError> {
    let mut placement = state.regions.placement(local_report(&state)).await?;
    for plan in &mut placement.nodes {
        plan.cost_ms = round_ms(plan.cost_ms);
    }
    Ok(Json(placement))
}

/// This node's report as of the driver's last status (what it publishes to the cluster).
fn local_report(state: &AdminState) -> crate::placement::NodeLoad {
    crate::placement::NodeLoad::of(
        &state.node_name,
        &state.board,
        &state.admin_addr,
        &state.quic_addr,
    )
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
    PathParam(region): PathParam,
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
    PathParam(region): PathParam,
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
    PathParam(region): PathParam,
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
    let entry = Entry {
        action: name,
        target: format!("region:{}", region.0),
        reason: &reason,
        details: to.map(|to| format!("to: {to}")).unwrap_or_default(),
    };
    state.audit.run(caller, entry, action).await.map(Json)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {} {}; see /v1/openapi.json",
        request.method(),
        request.uri().path()
    ))
}

/// A route that exists, asked with a method it does not take (axum adds `Allow`).
async fn method_not_allowed(request: Request) -> ApiError {
    let path = request.uri().path();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(path, MatchedPath::as_str);
    let methods = documented_methods(route);
    let takes = if methods.is_empty() {
        "see the Allow header".to_owned()
    } else {
        format!("{route} takes {}", methods.join(", "))
    };
    ApiError::method_not_allowed(format!(
        "{} is not allowed on {path}; {takes} (see /v1/openapi.json)",
        request.method()
    ))
}

/// The methods `openapi.json` documents for the route `route` (a template such as
/// `/v1/regions/{region}`), upper case.
fn documented_methods(route: &str) -> Vec<String> {
    static DOC: std::sync::LazyLock<serde_json::Value> =
        std::sync::LazyLock::new(|| serde_json::from_str(OPENAPI_JSON).unwrap_or_default());
    const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];
    DOC["paths"][route]
        .as_object()
        .map(|operations| {
            operations
                .keys()
                .filter(|m| METHODS.contains(&m.as_str()))
                .map(|m| m.to_ascii_uppercase())
                .collect()
        })
        .unwrap_or_default()
}
