//! `GET /v1/feed`: the live feed over WebSocket (role viewer), and the task that publishes
//! the node's metrics and health changes to it.
//!
//! The key is checked before the upgrade: `Authorization: Bearer <key>`, or, for browsers
//! (which cannot set headers on a WebSocket), the subprotocol `bearer.<key>` offered beside
//! `tessera-feed.v1`, the one the server selects. `?topics=a,b` and `?region=N` filter
//! (`metrics` events carry no region and pass a region filter only if they are the
//! region's own). Each event is one JSON text message ([`FeedEvent`]). A subscriber that
//! falls [`FEED_QUEUE_LEN_MAX`] events behind is closed with code 1008 and the reason;
//! one that takes nothing for [`FEED_SEND_TIMEOUT`] is dropped. At most
//! [`FEED_SUBSCRIBERS_MAX`] subscribers per node.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::SinkExt;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::keys::Role;
use super::{AdminState, ApiError};
use crate::admin::health::Health;
use crate::feed::{FEED_QUEUE_LEN_MAX, Feed, FeedEvent, METRICS_PERIOD, Published, Topic};
use crate::node::status::StatusBoard;

/// Subscribers of one node at most.
pub const FEED_SUBSCRIBERS_MAX: usize = 256;
/// How long one event may take to be taken by a subscriber before it is dropped.
pub const FEED_SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// Events written to a subscriber in one go at most (those waiting when it is its turn).
const SEND_BATCH_MAX: usize = 64;
/// The subprotocol the server speaks.
pub const FEED_PROTOCOL: &str = "tessera-feed.v1";
/// The prefix of the subprotocol that carries a key.
const KEY_PROTOCOL_PREFIX: &str = "bearer.";

/// `?topics=&region=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FeedQuery {
    topics: Option<String>,
    region: Option<String>,
}

/// Which events a subscriber takes.
#[derive(Clone, Debug, Default)]
struct Filter {
    /// Empty: all.
    topics: HashSet<Topic>,
    region: Option<u32>,
}

impl Filter {
    fn parse(query: FeedQuery) -> Result<Filter, ApiError> {
        let mut topics = HashSet::new();
        for name in query.topics.iter().flat_map(|t| t.split(',')) {
            let topic = Topic::parse(name.trim()).ok_or_else(|| {
                let names: Vec<&str> = Topic::ALL.iter().map(|(n, _)| *n).collect();
                ApiError::bad_request(format!(
                    "topics: {name:?} is not one of {}",
                    names.join(", ")
                ))
            })?;
            topics.insert(topic);
        }
        let region = query
            .region
            .map(|r| {
                r.parse::<u32>().map_err(|_| {
                    ApiError::bad_request(format!("region: must be a region id, got {r:?}"))
                })
            })
            .transpose()?;
        Ok(Filter { topics, region })
    }

    fn passes(&self, event: &FeedEvent) -> bool {
        (self.topics.is_empty() || self.topics.contains(&event.topic))
            && self.region.is_none_or(|r| event.region == Some(r))
    }
}

/// The key of a WebSocket request: the bearer header, or the `bearer.<key>` subprotocol.
fn key_of(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        return value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|k| k.trim().to_owned());
    }
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| {
            p.trim()
                .strip_prefix(KEY_PROTOCOL_PREFIX)
                .map(str::to_owned)
        })
}

/// `GET /v1/feed`.
pub(super) async fn feed(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    query: Result<Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
    upgrade: Result<WebSocketUpgrade, rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let key = key_of(&headers).ok_or_else(|| {
        ApiError::unauthorized(
            "missing key: Authorization: Bearer <API key>, or the subprotocol bearer.<API key>",
        )
    })?;
    let caller = super::authorize_key(&state, &key, Role::Viewer)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let filter = Filter::parse(query)?;
    let upgrade = upgrade.map_err(|e| {
        ApiError::bad_request(format!(
            "a WebSocket upgrade is needed here: {}",
            e.body_text()
        ))
    })?;
    let stats = state.feed.stats().clone();
    if stats.subscribers.load(Ordering::Relaxed) >= FEED_SUBSCRIBERS_MAX {
        return Err(ApiError::unavailable(
            format!("this node has {FEED_SUBSCRIBERS_MAX} feed subscribers already"),
            5,
        ));
    }
    let events = state.feed.subscribe();
    tracing::info!(who = %caller.name, "feed subscriber connected");
    Ok(upgrade
        .protocols([FEED_PROTOCOL])
        .on_upgrade(move |socket| async move {
            stats.subscribers.fetch_add(1, Ordering::Relaxed);
            let slow = serve(socket, events, filter).await;
            if slow {
                stats.slow_subscribers.fetch_add(1, Ordering::Relaxed);
            }
            stats.subscribers.fetch_sub(1, Ordering::Relaxed);
        })
        .into_response())
}

/// Sends `events` that pass `filter` until the subscriber leaves or is too slow
/// (`true`).
async fn serve(
    mut socket: WebSocket,
    mut events: tokio::sync::broadcast::Receiver<Arc<Published>>,
    filter: Filter,
) -> bool {
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(first) => {
                    // This one and those already waiting, in one write.
                    let mut batch = vec![first];
                    while batch.len() < SEND_BATCH_MAX {
                        match events.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    let sending = async {
                        for published in batch.iter().filter(|p| filter.passes(&p.event)) {
                            socket.feed(Message::Text(published.json.clone())).await?;
                        }
                        socket.flush().await
                    };
                    match tokio::time::timeout(FEED_SEND_TIMEOUT, sending).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return false,
                        // Takes nothing: dropped without a close frame (it would not be read).
                        Err(_) => return true,
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    let close = CloseFrame {
                        code: axum::extract::ws::close_code::POLICY,
                        reason: format!(
                            "too slow: {missed} events missed (more than {FEED_QUEUE_LEN_MAX} behind); reconnect"
                        )
                        .into(),
                    };
                    let _ = tokio::time::timeout(
                        FEED_SEND_TIMEOUT,
                        socket.send(Message::Close(Some(close))),
                    )
                    .await;
                    return true;
                }
                Err(RecvError::Closed) => return false,
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return false,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Publishes the node's and its regions' load every [`METRICS_PERIOD`], and an alert
/// whenever its health verdict or a check changes.
pub fn spawn_reporter(feed: Feed, board: Arc<StatusBoard>, health: Arc<Health>) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(METRICS_PERIOD);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last: Option<(String, Vec<(String, bool)>)> = None;
        loop {
            ticker.tick().await;
            let report = health.health();
            let checks: Vec<(String, bool)> = report
                .checks
                .iter()
                .map(|(name, check)| ((*name).to_owned(), check.ok))
                .collect();
            let now = (report.status.to_owned(), checks);
            if last.as_ref() != Some(&now) {
                // The first report is an alert only if something is wrong.
                if last.is_some() || now.0 != "ok" {
                    feed.publish(
                        Topic::Alert,
                        None,
                        json!({
                            "status": report.status,
                            "failing": report.checks.iter().filter(|(_, c)| !c.ok).map(|(n, c)| json!({ "check": n, "detail": c.detail })).collect::<Vec<_>>(),
                        }),
                    );
                }
                last = Some(now);
            }
            if !feed.is_watched() {
                continue;
            }
            let status = board.status();
            feed.publish(
                Topic::Metrics,
                None,
                json!({
                    "tick": status.tick,
                    "players": status.players,
                    "entities": status.entities,
                    "tick_p50_ms": super::round_ms(status.tick_p50_ms),
                    "tick_p99_ms": super::round_ms(status.tick_p99_ms),
                    "regions": status.regions.iter().map(|r| r.id).collect::<Vec<_>>(),
                }),
            );
            for region in &status.regions {
                feed.publish(
                    Topic::Metrics,
                    Some(region.id),
                    json!({
                        "players": region.players,
                        "entities": region.entities,
                        "tick_p99_ms": super::round_ms(region.tick_p99_ms),
                        "frozen": region.frozen,
                    }),
                );
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(topic: Topic, region: Option<u32>) -> FeedEvent {
        FeedEvent {
            topic,
            node: "n".into(),
            region,
            at_ms: 0,
            data: json!({}),
        }
    }

    #[test]
    fn filters_take_topics_and_a_region_and_name_what_is_wrong() {
        let parse = |topics: Option<&str>, region: Option<&str>| {
            Filter::parse(FeedQuery {
                topics: topics.map(str::to_owned),
                region: region.map(str::to_owned),
            })
        };
        let all = parse(None, None).unwrap();
        assert!(all.passes(&event(Topic::Metrics, None)));
        let some = parse(Some("session,death"), Some("3")).unwrap();
        assert!(some.passes(&event(Topic::Death, Some(3))));
        assert!(!some.passes(&event(Topic::Death, Some(4))));
        assert!(!some.passes(&event(Topic::Session, None)));
        assert!(!some.passes(&event(Topic::Admin, Some(3))));
        let e = parse(Some("session,gossip"), None).unwrap_err();
        assert!(e.message.starts_with("topics:"), "{e}");
        let e = parse(None, Some("x")).unwrap_err();
        assert!(e.message.starts_with("region:"), "{e}");
    }

    #[test]
    fn the_key_comes_from_the_header_or_the_subprotocol() {
        let mut headers = HeaderMap::new();
        assert_eq!(key_of(&headers), None);
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            "tessera-feed.v1, bearer.abc123".parse().unwrap(),
        );
        assert_eq!(key_of(&headers).as_deref(), Some("abc123"));
        headers.insert(header::AUTHORIZATION, "Bearer xyz".parse().unwrap());
        assert_eq!(key_of(&headers).as_deref(), Some("xyz"));
    }
}
