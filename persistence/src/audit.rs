//! The audit log: one record per admin mutation (who, role, action, target, reason,
//! details, result, when), written before the mutation is carried out and updated with
//! its outcome, in the node's store (MongoDB `audit_log`, or the embedded store). Read
//! newest first, a page at a time, optionally filtered ([`AuditFilter`]).

use crate::snapshot::StoreError;

/// Longest field of a record, in bytes.
pub const AUDIT_FIELD_BYTES_MAX: usize = 1024;
/// Most records one read returns.
pub const AUDIT_READ_MAX: usize = 500;
/// Most records one filtered read of the embedded store examines (newest first); a
/// read that stops there returns the matches so far and where to go on
/// ([`AuditPage::next_before`]). MongoDB answers from its indexes instead.
pub const AUDIT_SCAN_MAX: usize = 10_000;
/// The `result` of a record whose mutation has not completed (yet: or the node stopped
/// in between, which the record then shows).
pub const RESULT_STARTED: &str = "started";

/// One admin mutation (serialized as the admin API shows it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    /// Unique, and in time order as text: `<unix ms, 13 digits>-<node>-<sequence>`.
    pub id: String,
    /// When it was requested, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The node that carried it out.
    pub node: String,
    /// The API key's name.
    pub who: String,
    /// The key's role.
    pub role: String,
    /// What, e.g. `kick`, `region.assign`, `config.reload`.
    pub action: String,
    /// On what, e.g. `player:42`, `region:3`.
    pub target: String,
    /// Why, as the caller said.
    pub reason: String,
    /// What exactly was asked and done, beyond the target: a message's text, a ban's
    /// duration, a teleport's destination, a reload's changes (empty: nothing more).
    pub details: String,
    /// [`RESULT_STARTED`], then `ok` or `refused: <why>`.
    pub result: String,
}

impl AuditRecord {
    /// Makes the id from the time, node and a per-node sequence number.
    pub fn id_for(at_unix_ms: u64, node: &str, sequence: u64) -> String {
        format!("{at_unix_ms:013}-{node}-{sequence}")
    }

    /// Refuses records with a field over [`AUDIT_FIELD_BYTES_MAX`] or an empty id.
    pub fn check(&self) -> Result<(), StoreError> {
        let fields = [
            ("id", &self.id),
            ("node", &self.node),
            ("who", &self.who),
            ("role", &self.role),
            ("action", &self.action),
            ("target", &self.target),
            ("reason", &self.reason),
            ("details", &self.details),
            ("result", &self.result),
        ];
        if self.id.is_empty() {
            return Err(StoreError::Invalid("audit record without an id".into()));
        }
        for (name, value) in fields {
            if value.len() > AUDIT_FIELD_BYTES_MAX {
                return Err(StoreError::Invalid(format!(
                    "audit {name}: {} bytes; at most {AUDIT_FIELD_BYTES_MAX}",
                    value.len()
                )));
            }
        }
        Ok(())
    }
}

/// Which records a read returns (every field `None`: all).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only mutations of this player (target `player:<id>`).
    pub player: Option<tessera_shared::ids::PlayerId>,
    /// Only these actions, e.g. `player.ban` (empty: any).
    pub actions: Vec<String>,
    /// Only by the API key of this name (`who`).
    pub who: Option<String>,
}

impl AuditFilter {
    /// The target a player's records have (older records may add ` to:...` after it).
    pub fn player_target(player: tessera_shared::ids::PlayerId) -> String {
        format!("player:{}", player.0)
    }

    /// Whether `record` passes.
    pub fn matches(&self, record: &AuditRecord) -> bool {
        let player = self.player.is_none_or(|p| {
            let target = Self::player_target(p);
            record
                .target
                .strip_prefix(target.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
        });
        player
            && (self.actions.is_empty() || self.actions.contains(&record.action))
            && self.who.as_ref().is_none_or(|w| *w == record.who)
    }

    /// Whether it lets every record through.
    pub fn is_empty(&self) -> bool {
        *self == AuditFilter::default()
    }
}

/// One page of the audit log, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditPage {
    /// The records.
    pub records: Vec<AuditRecord>,
    /// Where the next (older) page starts: pass it as `before`. `None`: no older record
    /// matches.
    pub next_before: Option<String>,
}

/// What a [`SanctionRecord`] bars.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sanction {
    /// Logging in.
    Ban,
    /// Chatting (commands and the economy stay open).
    Mute,
}

impl Sanction {
    /// Its name in logs, audit records and store collections.
    pub fn name(self) -> &'static str {
        match self {
            Sanction::Ban => "ban",
            Sanction::Mute => "mute",
        }
    }
}

/// A ban or a mute: in force until `until_unix_s` (`None`: for good).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SanctionRecord {
    /// The player.
    pub player: tessera_shared::ids::PlayerId,
    /// When it ends, seconds since the Unix epoch (`None`: never).
    pub until_unix_s: Option<u64>,
    /// Why (shown to the player when a login is refused).
    pub reason: String,
}

impl SanctionRecord {
    /// Whether it is in force at `now_unix_s`.
    pub fn is_in_force(&self, now_unix_s: u64) -> bool {
        self.until_unix_s.is_none_or(|until| now_unix_s < until)
    }

    /// Refuses a reason over [`AUDIT_FIELD_BYTES_MAX`].
    pub fn check(&self) -> Result<(), StoreError> {
        if self.reason.len() > AUDIT_FIELD_BYTES_MAX {
            return Err(StoreError::Invalid(format!(
                "ban reason: {} bytes; at most {AUDIT_FIELD_BYTES_MAX}",
                self.reason.len()
            )));
        }
        Ok(())
    }
}
