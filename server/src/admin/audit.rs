//! Every mutation of the admin API goes through [`Audit::run`]: its record is durable in
//! the store (as `started`) before the mutation is carried out, and updated with the
//! outcome before the caller is answered. If the record cannot be written, the mutation
//! is refused: nothing happens unaudited. `GET /v1/audit` reads the log, newest first,
//! filtered by player, action and key name.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use tessera_persistence::SnapshotStore;
use tessera_persistence::audit::{
    AUDIT_FIELD_BYTES_MAX, AUDIT_READ_MAX, AuditFilter, AuditRecord, RESULT_STARTED,
};
use tessera_persistence::node_store::NodeStore;

use super::keys::Caller;
use super::{AdminState, ApiError};

/// Every action the audit log records, as `action` of its records (and the values
/// `GET /v1/audit?action=` takes).
pub(super) const ACTIONS: [&str; 20] = [
    "player.kick",
    "player.teleport",
    "player.message",
    "player.ban",
    "player.unban",
    "player.mute",
    "player.unmute",
    "player.grant",
    "player.revoke",
    "region.assign",
    "region.release",
    "region.transfer",
    "region.freeze",
    "region.unfreeze",
    "region.evacuate",
    "node.kick_all",
    "players.bulk",
    "players.bulk_cancel",
    "config.reload",
    "leaderboards.rebuild",
];

/// Longest `before` of a read, in bytes (an id is far shorter).
const BEFORE_BYTES_MAX: usize = 256;

/// What one mutation is, for its audit record.
#[derive(Debug)]
pub struct Entry<'a> {
    /// One of [`ACTIONS`].
    pub action: &'a str,
    /// On what: `player:<id>`, `region:<id>`, `balance.toml`.
    pub target: String,
    /// Why, as the caller said.
    pub reason: &'a str,
    /// What exactly was asked, beyond the target (a message's text, a ban's duration);
    /// empty: nothing more. Cut to fit the record.
    pub details: String,
}

/// The node's audit log.
#[derive(Debug)]
pub struct Audit {
    store: NodeStore,
    node: String,
    sequence: AtomicU64,
    /// Where each mutation's outcome is published (`admin` topic; reloads `reload`).
    feed: Option<crate::feed::Feed>,
}

impl Audit {
    /// The audit log of node `node`, in `store`, each outcome published to `feed`.
    pub fn new(store: NodeStore, node: String, feed: Option<crate::feed::Feed>) -> Audit {
        Audit {
            store,
            node,
            sequence: AtomicU64::new(0),
            feed,
        }
    }

    /// Records the mutation `entry` by `caller`, runs it, and records its outcome;
    /// returns the outcome. Refused (503) if the record cannot be written first.
    pub async fn run<T>(
        &self,
        caller: &Caller,
        entry: Entry<'_>,
        mutation: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        self.run_noting(caller, entry, mutation, |_| None).await
    }

    /// Like [`Audit::run`], and `noted` adds what the outcome says to the record's
    /// details (a reload's changes).
    pub async fn run_noting<T>(
        &self,
        caller: &Caller,
        entry: Entry<'_>,
        mutation: impl Future<Output = Result<T, ApiError>>,
        noted: impl FnOnce(&T) -> Option<String>,
    ) -> Result<T, ApiError> {
        debug_assert!(ACTIONS.contains(&entry.action), "{}", entry.action);
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
            action: entry.action.into(),
            target: entry.target,
            reason: entry.reason.into(),
            details: fit(entry.details),
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
        if let Some(more) = outcome.as_ref().ok().and_then(noted) {
            record.details = fit(if record.details.is_empty() {
                more
            } else {
                format!("{}; {more}", record.details)
            });
        }
        // Fields are cut to fit, so only an unavailable store fails here.
        record.result = fit(record.result);
        if let Err(e) = self.store.write_audit(&record).await {
            // The mutation happened and its `started` record is durable: the log shows it
            // was attempted; only the outcome is missing.
            tracing::error!(id = %record.id, error = %e, "audit outcome not written");
        }
        if let Some(feed) = &self.feed {
            let topic = if record.action == "config.reload" {
                crate::feed::Topic::Reload
            } else {
                crate::feed::Topic::Admin
            };
            let region = record
                .target
                .strip_prefix("region:")
                .and_then(|r| r.parse().ok());
            feed.publish(
                topic,
                region,
                serde_json::to_value(&record).unwrap_or_default(),
            );
        }
        tracing::info!(
            who = %record.who,
            role = %record.role,
            action = %record.action,
            target = %record.target,
            reason = %record.reason,
            details = %record.details,
            result = %record.result,
            "admin mutation"
        );
        outcome
    }
}

/// `text` cut to [`AUDIT_FIELD_BYTES_MAX`] bytes at a character boundary, marked `...`
/// where cut.
fn fit(text: String) -> String {
    if text.len() <= AUDIT_FIELD_BYTES_MAX {
        return text;
    }
    let mut end = AUDIT_FIELD_BYTES_MAX - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// `GET /v1/audit?limit=&before=&player=&action=&key=`. Values are taken as text and
/// checked here, so that every refusal names its parameter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    limit: Option<String>,
    before: Option<String>,
    player: Option<String>,
    action: Option<String>,
    key: Option<String>,
}

impl AuditQuery {
    /// The page size and the filter; or a 400 naming the parameter.
    fn check(self) -> Result<(usize, Option<String>, AuditFilter), ApiError> {
        let limit = super::limit_param(self.limit.as_deref(), 100, AUDIT_READ_MAX)?;
        if let Some(before) = &self.before
            && (before.is_empty() || before.len() > BEFORE_BYTES_MAX)
        {
            return Err(ApiError::bad_request(format!(
                "before: must be a record id (a previous page's next_before) of 1 to {BEFORE_BYTES_MAX} bytes, got {} bytes",
                before.len()
            )));
        }
        let player = self.player.as_deref().map(super::player_id).transpose()?;
        if let Some(action) = &self.action
            && !ACTIONS.contains(&action.as_str())
        {
            return Err(ApiError::bad_request(format!(
                "action: must be one of {}, got {action:?}",
                ACTIONS.join(", ")
            )));
        }
        if let Some(key) = &self.key
            && !super::keys::is_valid_name(key)
        {
            return Err(ApiError::bad_request(format!(
                "key: must be an API key's name (1 to 64 characters of A-Z a-z 0-9 _ . -), got {key:?}"
            )));
        }
        let filter = AuditFilter {
            player,
            actions: self.action.into_iter().collect(),
            who: self.key,
        };
        Ok((limit, self.before, filter))
    }
}

#[derive(Serialize)]
pub(super) struct Page {
    records: Vec<AuditRecord>,
    /// Pass as `before` for the next (older) page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<String>,
}

pub(super) async fn read(
    State(state): State<std::sync::Arc<AdminState>>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (limit, before, filter) = query.check()?;
    let page = state
        .audit
        .store
        .read_audit(limit, before.as_deref(), &filter)
        .await
        .map_err(|e| ApiError::unavailable(format!("the audit log cannot be read: {e}"), 5))?;
    Ok(Json(Page {
        records: page.records,
        next_before: page.next_before,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_fields_are_cut_at_a_character_boundary() {
        assert_eq!(fit("short".into()), "short");
        let long = "é".repeat(AUDIT_FIELD_BYTES_MAX);
        let cut = fit(long);
        assert!(cut.len() <= AUDIT_FIELD_BYTES_MAX, "{}", cut.len());
        assert!(cut.ends_with("..."));
    }

    #[test]
    fn every_query_parameter_is_checked_by_name() {
        let query = |limit: Option<&str>,
                     player: Option<&str>,
                     action: Option<&str>,
                     key: Option<&str>| AuditQuery {
            limit: limit.map(Into::into),
            before: None,
            player: player.map(Into::into),
            action: action.map(Into::into),
            key: key.map(Into::into),
        };
        for (q, name) in [
            (query(Some("0"), None, None, None), "limit"),
            (query(Some("x"), None, None, None), "limit"),
            (query(None, Some("-1"), None, None), "player"),
            (query(None, None, Some("kick"), None), "action"),
            (query(None, None, None, Some("a b")), "key"),
        ] {
            let e = q.check().unwrap_err();
            assert!(e.message.starts_with(&format!("{name}:")), "{e}");
        }
        let (limit, _, filter) = query(Some("5"), Some("42"), Some("player.ban"), Some("ops"))
            .check()
            .unwrap();
        assert_eq!(limit, 5);
        assert_eq!(filter.player, Some(tessera_shared::ids::PlayerId(42)));
        assert_eq!(filter.actions, ["player.ban"]);
        assert_eq!(filter.who.as_deref(), Some("ops"));
    }
}
