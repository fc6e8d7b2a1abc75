//! The player directory: one [`Profile`] per player who ever logged in (name, level,
//! first and last login, presence, bans and mutes) and their [`Session`] history, for
//! operators to find players by what they know of them ([`PlayerQuery`]: filters, a sort,
//! cursor pagination, the total count).
//!
//! Nodes keep it current with [`PresenceUpdate`]s: a login, a heartbeat with every
//! periodic player save ([`PresenceUpdate::Seen`]), a departure, a level gained. A player
//! is online while its profile names a node *and* that node has seen it within
//! [`PRESENCE_TTL_S`]: a node that dies without saying goodbye leaves profiles that turn
//! offline on their own. Bans and mutes are copied onto the profile by the stores'
//! `set_sanction`, in the same call that stores them.
//!
//! Both stores answer queries from indexes: MongoDB's (`player_directory`, indexes created
//! at start: see [`crate::mongo`]) and, in the embedded store, ordered in-memory indexes
//! over the profiles, loaded from the redb file at open and kept beside every write.

pub(crate) mod embedded;
pub(crate) mod mongo;

use std::cmp::Ordering;
use std::future::Future;

use serde::{Deserialize, Serialize};
use tessera_shared::ids::{PlayerId, RegionId};

use crate::snapshot::StoreError;

/// How long after its node last saw it an online player still counts as online, in
/// seconds: three periodic saves (a node sees each of its players every 30 s).
pub const PRESENCE_TTL_S: u64 = 90;
/// Most players one page lists.
pub const PAGE_LEN_MAX: usize = 500;
/// Players a page lists when the query does not say.
pub const PAGE_LEN_DEFAULT: usize = 50;
/// Most sessions a read of a player's history returns (newest first).
pub const SESSIONS_READ_MAX: usize = 100;
/// Longest name prefix a query may filter by, in bytes.
pub const NAME_PREFIX_BYTES_MAX: usize = 64;
/// Longest name or node name stored on a profile, in bytes (longer ones are cut at a
/// character boundary).
pub const NAME_BYTES_MAX: usize = 64;
/// Most profiles one import writes.
pub const IMPORT_LEN_MAX: usize = 10_000;
/// `*_until_unix_s` of a ban or mute without end.
pub const FOREVER: u64 = i64::MAX as u64;

/// A player as the directory knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The player.
    pub player: PlayerId,
    /// Display name (from its login token; empty if the token had none).
    pub name: String,
    /// Level (the economy's).
    pub level: u32,
    /// First login, seconds since the Unix epoch (0: never logged in).
    pub first_login_unix_s: u64,
    /// Latest login.
    pub last_login_unix_s: u64,
    /// When its node last saw it in the world.
    pub last_seen_unix_s: u64,
    /// The node of its session, while it has one (see [`Profile::is_online`]).
    pub node: Option<String>,
    /// Its region there, as of `last_seen_unix_s`.
    pub region: Option<RegionId>,
    /// Banned until then (0: not banned; [`FOREVER`]: for good).
    pub banned_until_unix_s: u64,
    /// Muted until then (0: not muted; [`FOREVER`]: for good).
    pub muted_until_unix_s: u64,
}

impl Profile {
    /// A profile with nothing known yet but its id.
    pub fn new(player: PlayerId) -> Profile {
        Profile {
            player,
            name: String::new(),
            level: 1,
            first_login_unix_s: 0,
            last_login_unix_s: 0,
            last_seen_unix_s: 0,
            node: None,
            region: None,
            banned_until_unix_s: 0,
            muted_until_unix_s: 0,
        }
    }

    /// Whether it has a session that its node saw within [`PRESENCE_TTL_S`].
    pub fn is_online(&self, now_unix_s: u64) -> bool {
        self.node.is_some() && self.last_seen_unix_s >= online_cutoff(now_unix_s)
    }

    /// Whether a ban is in force at `now_unix_s`.
    pub fn is_banned(&self, now_unix_s: u64) -> bool {
        self.banned_until_unix_s > now_unix_s
    }

    /// Whether a mute is in force at `now_unix_s`.
    pub fn is_muted(&self, now_unix_s: u64) -> bool {
        self.muted_until_unix_s > now_unix_s
    }

    /// The name, lower-cased: what name prefixes are matched against.
    pub fn name_key(&self) -> String {
        self.name.to_lowercase()
    }

    /// Applies `update` (which must be about this player).
    pub fn apply(&mut self, update: &PresenceUpdate) {
        match update {
            PresenceUpdate::Login {
                name,
                level,
                node,
                region,
                at_ms,
                ..
            } => {
                let at = at_ms / 1000;
                if let Some(name) = name {
                    self.name = cut(name);
                }
                self.level = *level;
                if self.first_login_unix_s == 0 {
                    self.first_login_unix_s = at;
                }
                self.last_login_unix_s = at;
                self.last_seen_unix_s = at;
                self.node = Some(cut(node));
                self.region = Some(*region);
            }
            PresenceUpdate::Seen {
                node,
                region,
                at_ms,
                ..
            } => {
                self.last_seen_unix_s = at_ms / 1000;
                self.node = Some(cut(node));
                self.region = Some(*region);
            }
            PresenceUpdate::Left { node, at_ms, .. } => {
                // Only the node of its session ends it: a late goodbye from a node it left
                // for another does not take it offline there.
                if self.node.as_deref() == Some(cut(node).as_str()) {
                    self.node = None;
                    self.region = None;
                    self.last_seen_unix_s = at_ms / 1000;
                }
            }
            PresenceUpdate::Level { level, .. } => self.level = *level,
        }
    }
}

/// The oldest `last_seen_unix_s` of an online player at `now_unix_s`.
pub fn online_cutoff(now_unix_s: u64) -> u64 {
    now_unix_s.saturating_sub(PRESENCE_TTL_S)
}

/// `s` cut to at most [`NAME_BYTES_MAX`] bytes, at a character boundary.
pub fn cut(s: &str) -> String {
    let mut end = s.len().min(NAME_BYTES_MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// One session of a player on one node: from its login there to its departure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The player.
    pub player: PlayerId,
    /// When it logged in, Unix ms (with the player, the session's key).
    pub login_unix_ms: u64,
    /// When it left (`None`: still on, or its node stopped without saying).
    pub logout_unix_ms: Option<u64>,
    /// The node.
    pub node: String,
    /// The region it entered the world in.
    pub region: RegionId,
}

/// What a node tells the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PresenceUpdate {
    /// A player entered the world on `node` (a new session: not a resume).
    Login {
        /// Who.
        player: PlayerId,
        /// Its display name (`None`: unchanged; an avatar that arrived from another
        /// node brings none).
        name: Option<String>,
        /// Its level (the node's directory writer reads it from the economy).
        level: u32,
        /// Where.
        node: String,
        /// Its region.
        region: RegionId,
        /// When, Unix ms (the session's key).
        at_ms: u64,
    },
    /// The node still has the player, in `region` (sent with each periodic save and when
    /// it crosses into another region).
    Seen {
        /// Who.
        player: PlayerId,
        /// Where.
        node: String,
        /// Its region.
        region: RegionId,
        /// When, Unix ms.
        at_ms: u64,
    },
    /// The player left the world on `node` (logout, kick, lost connection, redirect).
    Left {
        /// Who.
        player: PlayerId,
        /// Where.
        node: String,
        /// The session's login time (its key).
        since_ms: u64,
        /// When, Unix ms.
        at_ms: u64,
    },
    /// The player's level changed.
    Level {
        /// Who.
        player: PlayerId,
        /// Its new level.
        level: u32,
    },
}

impl PresenceUpdate {
    /// Whom it is about.
    pub fn player(&self) -> PlayerId {
        match self {
            PresenceUpdate::Login { player, .. }
            | PresenceUpdate::Seen { player, .. }
            | PresenceUpdate::Left { player, .. }
            | PresenceUpdate::Level { player, .. } => *player,
        }
    }
}

/// What a list is sorted by (then by player id, which makes the order total).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortKey {
    /// Player id.
    #[default]
    Id,
    /// Name, lower-cased.
    Name,
    /// Level.
    Level,
    /// Latest login.
    LastLogin,
}

impl SortKey {
    /// Every key, by name.
    pub const ALL: [(&'static str, SortKey); 4] = [
        ("id", SortKey::Id),
        ("name", SortKey::Name),
        ("level", SortKey::Level),
        ("last_login", SortKey::LastLogin),
    ];

    /// Its name in queries and cursors.
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Id => "id",
            SortKey::Name => "name",
            SortKey::Level => "level",
            SortKey::LastLogin => "last_login",
        }
    }

    /// The key by name.
    pub fn parse(s: &str) -> Option<SortKey> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|&(_, k)| k)
    }
}

/// A profile's place in an order: its sort value, then its id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SortValue {
    /// By id: nothing before the id.
    Id,
    /// By name: the lower-cased name.
    Name(String),
    /// By level or last login.
    Number(u64),
}

impl SortValue {
    /// `profile`'s value under `key`.
    pub fn of(key: SortKey, profile: &Profile) -> SortValue {
        match key {
            SortKey::Id => SortValue::Id,
            SortKey::Name => SortValue::Name(profile.name_key()),
            SortKey::Level => SortValue::Number(u64::from(profile.level)),
            SortKey::LastLogin => SortValue::Number(profile.last_login_unix_s),
        }
    }
}

/// Where a page ended: the last listed player's place. Opaque text to API callers
/// ([`Cursor::encode`], [`Cursor::decode`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The order it is a place in.
    pub sort: SortKey,
    /// The last listed player's sort value.
    pub value: SortValue,
    /// The last listed player.
    pub player: PlayerId,
}

impl Cursor {
    /// The cursor after `profile` in an order by `sort`.
    pub fn after(sort: SortKey, profile: &Profile) -> Cursor {
        Cursor {
            sort,
            value: SortValue::of(sort, profile),
            player: profile.player,
        }
    }

    /// As text: `<sort>.<value>.<player>`, a name's value in hex.
    pub fn encode(&self) -> String {
        let value = match &self.value {
            SortValue::Id => String::new(),
            SortValue::Name(name) => name.bytes().map(|b| format!("{b:02x}")).collect(),
            SortValue::Number(n) => n.to_string(),
        };
        format!("{}.{value}.{}", self.sort.name(), self.player.0)
    }

    /// Reads text [`Cursor::encode`] made; `None` for anything else.
    pub fn decode(text: &str) -> Option<Cursor> {
        let mut parts = text.split('.');
        let (sort, value, player) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let sort = SortKey::parse(sort)?;
        let player = PlayerId(player.parse().ok()?);
        let value = match sort {
            SortKey::Id if value.is_empty() => SortValue::Id,
            SortKey::Id => return None,
            SortKey::Name => {
                if value.len() % 2 != 0 || value.len() > 2 * 4 * NAME_BYTES_MAX {
                    return None;
                }
                let bytes = (0..value.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(value.get(i..i + 2)?, 16).ok())
                    .collect::<Option<Vec<u8>>>()?;
                SortValue::Name(String::from_utf8(bytes).ok()?)
            }
            SortKey::Level | SortKey::LastLogin => SortValue::Number(value.parse().ok()?),
        };
        Some(Cursor {
            sort,
            value,
            player,
        })
    }
}

/// Which players to list, in what order, from where. Every filter is optional; those
/// given must all hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlayerQuery {
    /// Online (true) or not (false).
    pub online: Option<bool>,
    /// Online on this node.
    pub node: Option<String>,
    /// Online in this region.
    pub region: Option<RegionId>,
    /// The name starts with this, ignoring case.
    pub name_prefix: Option<String>,
    /// Level at least this.
    pub level_min: Option<u32>,
    /// Level at most this.
    pub level_max: Option<u32>,
    /// Latest login at or after this (Unix s).
    pub last_login_from: Option<u64>,
    /// Latest login at or before this (Unix s).
    pub last_login_to: Option<u64>,
    /// Banned (true) or not (false) now.
    pub banned: Option<bool>,
    /// Muted (true) or not (false) now.
    pub muted: Option<bool>,
    /// The order.
    pub sort: SortKey,
    /// Largest first.
    pub descending: bool,
    /// Most players on the page (1 to [`PAGE_LEN_MAX`]).
    pub limit: usize,
    /// The players after this place (the previous page's [`PlayerPage::next`]).
    pub after: Option<Cursor>,
}

impl PlayerQuery {
    /// Refuses a query no store should run: the field at fault and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(1..=PAGE_LEN_MAX).contains(&self.limit) {
            return Err(("limit", format!("must be 1 to {PAGE_LEN_MAX}")));
        }
        if let Some(prefix) = &self.name_prefix
            && (prefix.is_empty() || prefix.len() > NAME_PREFIX_BYTES_MAX)
        {
            return Err((
                "name",
                format!("must be 1 to {NAME_PREFIX_BYTES_MAX} bytes"),
            ));
        }
        if let (Some(lo), Some(hi)) = (self.level_min, self.level_max)
            && lo > hi
        {
            return Err(("level_min", format!("{lo} is above level_max {hi}")));
        }
        if let (Some(lo), Some(hi)) = (self.last_login_from, self.last_login_to)
            && lo > hi
        {
            return Err((
                "last_login_from",
                format!("{lo} is after last_login_to {hi}"),
            ));
        }
        if let Some(after) = &self.after
            && after.sort != self.sort
        {
            return Err((
                "cursor",
                format!(
                    "it is from a list sorted by {}, this one is by {}",
                    after.sort.name(),
                    self.sort.name()
                ),
            ));
        }
        Ok(())
    }

    /// [`PlayerQuery::check`] as a store's refusal.
    pub(crate) fn check_in_store(&self) -> Result<(), StoreError> {
        self.check()
            .map_err(|(field, why)| StoreError::Invalid(format!("{field}: {why}")))
    }

    /// Whether `profile` passes every filter at `now_unix_s` (the cursor aside).
    pub fn matches(&self, profile: &Profile, now_unix_s: u64) -> bool {
        let online = profile.is_online(now_unix_s);
        self.online.is_none_or(|o| o == online)
            && self
                .node
                .as_ref()
                .is_none_or(|n| online && profile.node.as_ref() == Some(n))
            && self
                .region
                .is_none_or(|r| online && profile.region == Some(r))
            && self
                .name_prefix
                .as_ref()
                .is_none_or(|p| profile.name_key().starts_with(&p.to_lowercase()))
            && self.level_min.is_none_or(|l| profile.level >= l)
            && self.level_max.is_none_or(|l| profile.level <= l)
            && self
                .last_login_from
                .is_none_or(|t| profile.last_login_unix_s >= t)
            && self
                .last_login_to
                .is_none_or(|t| profile.last_login_unix_s <= t)
            && self
                .banned
                .is_none_or(|b| b == profile.is_banned(now_unix_s))
            && self.muted.is_none_or(|m| m == profile.is_muted(now_unix_s))
    }

    /// `a` against `b` in this query's order.
    pub fn compare(&self, a: &Profile, b: &Profile) -> Ordering {
        let order = (SortValue::of(self.sort, a), a.player.0)
            .cmp(&(SortValue::of(self.sort, b), b.player.0));
        if self.descending {
            order.reverse()
        } else {
            order
        }
    }

    /// Whether `profile` comes after the cursor in this query's order (all do without
    /// one).
    pub fn is_after_cursor(&self, profile: &Profile) -> bool {
        let Some(after) = &self.after else {
            return true;
        };
        let order = (SortValue::of(self.sort, profile), profile.player.0)
            .cmp(&(after.value.clone(), after.player.0));
        if self.descending {
            order == Ordering::Less
        } else {
            order == Ordering::Greater
        }
    }

    /// The page of `candidates` (any order) this query asks for: what a store must
    /// answer, written plainly (the embedded store's index walk and MongoDB's queries are
    /// held to it in the tests).
    pub fn page_of<'a>(
        &self,
        candidates: impl IntoIterator<Item = &'a Profile>,
        now_unix_s: u64,
    ) -> PlayerPage {
        let matching: Vec<&Profile> = candidates
            .into_iter()
            .filter(|p| self.matches(p, now_unix_s))
            .collect();
        let total = matching.len() as u64;
        let mut after: Vec<&Profile> = matching
            .into_iter()
            .filter(|p| self.is_after_cursor(p))
            .collect();
        after.sort_by(|a, b| self.compare(a, b));
        let more = after.len() > self.limit;
        after.truncate(self.limit);
        PlayerPage::new(self, after.into_iter().cloned().collect(), total, more)
    }
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlayerPage {
    /// The players, in the query's order.
    pub players: Vec<Profile>,
    /// How many players pass the filters, on every page.
    pub total: u64,
    /// Where the next page starts; `None` on the last.
    pub next: Option<Cursor>,
}

impl PlayerPage {
    /// The page of `players`, with a cursor after the last if `more` follow.
    pub fn new(query: &PlayerQuery, players: Vec<Profile>, total: u64, more: bool) -> Self {
        let next = players
            .last()
            .filter(|_| more)
            .map(|p| Cursor::after(query.sort, p));
        PlayerPage {
            players,
            total,
            next,
        }
    }
}

/// The player directory's store contract. Implementations: the embedded store and
/// MongoDB (and [`crate::node_store::NodeStore`] over either); the same tests run
/// against both.
pub trait DirectoryStore: Send + Sync {
    /// Applies `updates` in order (a login also opens a [`Session`], a departure closes
    /// it). Durable once this returns `Ok`; applying the same updates again changes
    /// nothing more.
    fn record_presence(
        &self,
        updates: &[PresenceUpdate],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The page of players `query` asks for, with the total count, at `now_unix_s`.
    /// The query must pass [`PlayerQuery::check`].
    fn list_players(
        &self,
        query: &PlayerQuery,
        now_unix_s: u64,
    ) -> impl Future<Output = Result<PlayerPage, StoreError>> + Send;

    /// The player's profile, if it ever logged in (or was sanctioned).
    fn profile_of(
        &self,
        player: PlayerId,
    ) -> impl Future<Output = Result<Option<Profile>, StoreError>> + Send;

    /// The player's newest sessions, newest first, at most `limit` (capped at
    /// [`SESSIONS_READ_MAX`]).
    fn sessions_of(
        &self,
        player: PlayerId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Session>, StoreError>> + Send;

    /// Writes `profiles` as they are, replacing those of the same players (a migration
    /// from another system; benches). At most [`IMPORT_LEN_MAX`] at once.
    fn import_profiles(
        &self,
        profiles: &[Profile],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Refuses an import over [`IMPORT_LEN_MAX`] profiles.
pub(crate) fn check_import(profiles: &[Profile]) -> Result<(), StoreError> {
    if profiles.len() > IMPORT_LEN_MAX {
        return Err(StoreError::Invalid(format!(
            "{} profiles in one import; at most {IMPORT_LEN_MAX}",
            profiles.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
