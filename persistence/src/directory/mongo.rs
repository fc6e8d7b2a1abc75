//! The directory in MongoDB:
//! - `player_directory`: `_id` = player id (shard key `_id`), the [`Profile`] fields, the
//!   name again lower-cased (`name_lc`) for prefix matches and sorting, and presence as
//!   one field (`online_until`: `seen` plus [`PRESENCE_TTL_S`] while it has a node, 0
//!   otherwise), so that "online" is one range on one index; indexed by every sort key
//!   (each with `_id`, which makes cursors exact), by presence (with node and region) and
//!   by sanctions;
//! - `player_sessions`: `_id` = `{ p: player, t: login ms }`, indexed by `player`, newest
//!   first.
//!
//! A list is two queries on the same filter: the page (sorted, from the cursor, one more
//! than asked to know whether another page follows) and `count_documents`; without a
//! filter, the count is the collection's (`estimated_document_count`, from its metadata:
//! counting 100,000 documents one by one takes longer than the whole page budget). Writes
//! are upserts of the fields they change, the others set on insert; a departure's is
//! conditional on the node of the session.

use futures_util::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::{Collection, IndexModel};
use tessera_shared::ids::{PlayerId, RegionId};

use super::*;
use crate::audit::Sanction;
use crate::mongo::{MongoStore, bounded};
use crate::snapshot::SCHEMA_VERSION;

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// As MongoDB stores it: every value here is far below 2^63.
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn uint(doc: &Document, key: &str) -> u64 {
    doc.get_i64(key).map_or(0, |n| n.max(0) as u64)
}

/// The directory's collections.
#[derive(Clone, Debug)]
pub(crate) struct Collections {
    profiles: Collection<Document>,
    sessions: Collection<Document>,
}

impl Collections {
    /// The collections of `db`, with their indexes created.
    pub(crate) async fn open(db: &mongodb::Database) -> Result<Collections, StoreError> {
        let c = Collections {
            profiles: db.collection("player_directory"),
            sessions: db.collection("player_sessions"),
        };
        let (profiles, sessions) = (c.profiles.clone(), c.sessions.clone());
        bounded(async move {
            let index = |keys: Document| IndexModel::builder().keys(keys).build();
            profiles
                .create_indexes([
                    index(doc! { "name_lc": 1, "_id": 1 }),
                    index(doc! { "level": 1, "_id": 1 }),
                    index(doc! { "last_login": 1, "_id": 1 }),
                    index(doc! { "online_until": 1 }),
                    index(doc! { "node": 1, "online_until": 1 }),
                    index(doc! { "region": 1, "online_until": 1 }),
                    index(doc! { "banned_until": 1 }),
                    index(doc! { "muted_until": 1 }),
                ])
                .await
                .map_err(unavailable)?;
            sessions
                .create_index(index(doc! { "player": 1, "login": -1 }))
                .await
                .map_err(unavailable)?;
            Ok(())
        })
        .await?;
        Ok(c)
    }
}

/// A profile as a document.
fn to_doc(p: &Profile) -> Document {
    doc! {
        "_id": int(p.player.0),
        "schema_version": i64::from(SCHEMA_VERSION),
        "name": &p.name,
        "name_lc": p.name_key(),
        "level": i64::from(p.level),
        "first_login": int(p.first_login_unix_s),
        "last_login": int(p.last_login_unix_s),
        "seen": int(p.last_seen_unix_s),
        "online_until": if p.node.is_some() { online_until(p.last_seen_unix_s) } else { 0 },
        "node": p.node.as_deref().map_or(Bson::Null, Bson::from),
        "region": p.region.map_or(Bson::Null, |r| Bson::Int64(i64::from(r.0))),
        "banned_until": int(p.banned_until_unix_s),
        "muted_until": int(p.muted_until_unix_s),
    }
}

fn from_doc(doc: &Document) -> Result<Profile, StoreError> {
    let player = doc
        .get_i64("_id")
        .ok()
        .and_then(|id| u64::try_from(id).ok())
        .ok_or_else(|| StoreError::Corrupt("profile without a player id".into()))?;
    if let Ok(version) = doc.get_i64("schema_version") {
        crate::snapshot::upgrade(u32::try_from(version).unwrap_or(u32::MAX), Vec::new())?;
    }
    Ok(Profile {
        player: PlayerId(player),
        name: doc.get_str("name").unwrap_or_default().to_owned(),
        level: u32::try_from(uint(doc, "level")).unwrap_or(u32::MAX).max(1),
        first_login_unix_s: uint(doc, "first_login"),
        last_login_unix_s: uint(doc, "last_login"),
        last_seen_unix_s: uint(doc, "seen"),
        node: doc.get_str("node").ok().map(str::to_owned),
        region: doc
            .get_i64("region")
            .ok()
            .and_then(|r| u32::try_from(r).ok())
            .map(RegionId),
        banned_until_unix_s: uint(doc, "banned_until"),
        muted_until_unix_s: uint(doc, "muted_until"),
    })
}

/// An upsert of `set` on the player's profile, every other field set to a new profile's
/// value if the profile is new.
fn upsert(player: PlayerId, set: Document) -> (Document, Document) {
    let mut defaults = to_doc(&Profile::new(player));
    defaults.remove("_id");
    for key in set.keys() {
        defaults.remove(key);
    }
    let update = if defaults.is_empty() {
        doc! { "$set": set }
    } else {
        doc! { "$set": set, "$setOnInsert": defaults }
    };
    (doc! { "_id": int(player.0) }, update)
}

/// `online_until` of a player its node saw at `seen_unix_s`.
fn online_until(seen_unix_s: u64) -> i64 {
    int(seen_unix_s.saturating_add(PRESENCE_TTL_S))
}

fn session_id(player: PlayerId, login_ms: u64) -> Document {
    doc! { "p": int(player.0), "t": int(login_ms) }
}

/// The smallest string after every string that starts with `prefix`, if there is one.
fn after_prefix(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The field a sort key orders by.
fn sort_field(key: SortKey) -> Option<&'static str> {
    match key {
        SortKey::Id => None,
        SortKey::Name => Some("name_lc"),
        SortKey::Level => Some("level"),
        SortKey::LastLogin => Some("last_login"),
    }
}

/// The filter of `query`'s filters at `now_unix_s` (its cursor aside). The conditions
/// most players meet (offline, not banned, not muted) come last: a planner that takes the
/// first indexable condition (the MongoDB-wire test server does) then walks a narrow
/// index range; MongoDB plans by cost whatever the order.
fn filter_of(query: &PlayerQuery, now_unix_s: u64) -> Vec<Document> {
    let now = int(now_unix_s);
    let mut all = Vec::new();
    let mut broad = Vec::new();
    match query.online {
        Some(true) => all.push(doc! { "online_until": { "$gte": now } }),
        Some(false) => broad.push(doc! { "online_until": { "$lt": now } }),
        None => {}
    }
    if let Some(node) = &query.node {
        all.push(doc! { "node": node, "online_until": { "$gte": now } });
    }
    if let Some(region) = query.region {
        all.push(doc! { "region": i64::from(region.0), "online_until": { "$gte": now } });
    }
    if let Some(prefix) = &query.name_prefix {
        let prefix = prefix.to_lowercase();
        let mut range = doc! { "$gte": &prefix };
        if let Some(end) = after_prefix(&prefix) {
            range.insert("$lt", end);
        }
        all.push(doc! { "name_lc": range });
    }
    let mut range = |field: &str, lo: Option<i64>, hi: Option<i64>| {
        let mut r = Document::new();
        if let Some(lo) = lo {
            r.insert("$gte", lo);
        }
        if let Some(hi) = hi {
            r.insert("$lte", hi);
        }
        if !r.is_empty() {
            all.push(doc! { field: r });
        }
    };
    range(
        "level",
        query.level_min.map(i64::from),
        query.level_max.map(i64::from),
    );
    range(
        "last_login",
        query.last_login_from.map(int),
        query.last_login_to.map(int),
    );
    for (field, wanted) in [("banned_until", query.banned), ("muted_until", query.muted)] {
        match wanted {
            Some(true) => all.push(doc! { field: { "$gt": now } }),
            Some(false) => broad.push(doc! { field: { "$lte": now } }),
            None => {}
        }
    }
    all.append(&mut broad);
    all
}

/// The filter of the players after `cursor` in `query`'s order.
fn after_cursor(query: &PlayerQuery, cursor: &Cursor) -> Document {
    let (op, id) = (
        if query.descending { "$lt" } else { "$gt" },
        int(cursor.player.0),
    );
    let value = match &cursor.value {
        SortValue::Id => return doc! { "_id": { op: id } },
        SortValue::Name(name) => Bson::from(name.as_str()),
        SortValue::Number(n) => Bson::Int64(int(*n)),
    };
    let field = sort_field(query.sort).unwrap_or("_id");
    doc! { "$or": [ { field: { op: value.clone() } }, { field: value, "_id": { op: id } } ] }
}

/// The filter of a page (the filters and the cursor) and its sort.
fn page_of(query: &PlayerQuery, mut filters: Vec<Document>) -> (Vec<Document>, Document) {
    if let Some(cursor) = &query.after {
        filters.push(after_cursor(query, cursor));
    }
    let direction = if query.descending { -1 } else { 1 };
    let mut sort = Document::new();
    if let Some(field) = sort_field(query.sort) {
        sort.insert(field, direction);
    }
    sort.insert("_id", direction);
    (filters, sort)
}

fn and(filters: Vec<Document>) -> Document {
    if filters.is_empty() {
        Document::new()
    } else {
        doc! { "$and": filters }
    }
}

impl DirectoryStore for MongoStore {
    async fn record_presence(&self, updates: &[PresenceUpdate]) -> Result<(), StoreError> {
        let c = self.directory.clone();
        let updates = updates.to_vec();
        bounded(async move {
            for update in &updates {
                write_update(&c, update).await.map_err(unavailable)?;
            }
            Ok(())
        })
        .await
    }

    async fn list_players(
        &self,
        query: &PlayerQuery,
        now_unix_s: u64,
    ) -> Result<PlayerPage, StoreError> {
        query.check_in_store()?;
        let profiles = self.directory.profiles.clone();
        let query = query.clone();
        bounded(async move {
            let filters = filter_of(&query, now_unix_s);
            let (paged, sort) = page_of(&query, filters.clone());
            let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
            let find = async {
                profiles
                    .find(and(paged))
                    .sort(sort)
                    .limit(limit + 1)
                    .await?
                    .try_collect::<Vec<Document>>()
                    .await
            };
            let count = async {
                if filters.is_empty() {
                    profiles.estimated_document_count().await
                } else {
                    profiles.count_documents(and(filters)).await
                }
            };
            let (docs, total) = tokio::try_join!(find, count).map_err(unavailable)?;
            let mut players = docs.iter().map(from_doc).collect::<Result<Vec<_>, _>>()?;
            let more = players.len() > query.limit;
            players.truncate(query.limit);
            Ok(PlayerPage::new(&query, players, total, more))
        })
        .await
    }

    async fn profile_of(&self, player: PlayerId) -> Result<Option<Profile>, StoreError> {
        let profiles = self.directory.profiles.clone();
        let doc = bounded(async move {
            profiles
                .find_one(doc! { "_id": int(player.0) })
                .await
                .map_err(unavailable)
        })
        .await?;
        doc.as_ref().map(from_doc).transpose()
    }

    async fn sessions_of(
        &self,
        player: PlayerId,
        limit: usize,
    ) -> Result<Vec<Session>, StoreError> {
        let limit = limit.min(SESSIONS_READ_MAX);
        let sessions = self.directory.sessions.clone();
        let docs = bounded(async move {
            sessions
                .find(doc! { "player": int(player.0) })
                .sort(doc! { "login": -1 })
                .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                .await
                .map_err(unavailable)?
                .try_collect::<Vec<Document>>()
                .await
                .map_err(unavailable)
        })
        .await?;
        Ok(docs
            .iter()
            .map(|d| Session {
                player,
                login_unix_ms: uint(d, "login"),
                logout_unix_ms: d.get_i64("logout").ok().map(|t| t.max(0) as u64),
                node: d.get_str("node").unwrap_or_default().to_owned(),
                region: RegionId(u32::try_from(uint(d, "region")).unwrap_or(u32::MAX)),
            })
            .collect())
    }

    async fn import_profiles(&self, profiles: &[Profile]) -> Result<(), StoreError> {
        check_import(profiles)?;
        if profiles.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = profiles.iter().map(|p| int(p.player.0)).collect();
        let docs: Vec<Document> = profiles.iter().map(to_doc).collect();
        let collection = self.directory.profiles.clone();
        bounded(async move {
            collection
                .delete_many(doc! { "_id": { "$in": ids } })
                .await
                .map_err(unavailable)?;
            collection.insert_many(docs).await.map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}

/// Writes one update.
async fn write_update(c: &Collections, update: &PresenceUpdate) -> mongodb::error::Result<()> {
    match update {
        PresenceUpdate::Login {
            player,
            name,
            level,
            node,
            region,
            at_ms,
        } => {
            let at = int(at_ms / 1000);
            let mut set = doc! {
                "level": i64::from(*level),
                "last_login": at,
                "seen": at,
                "online_until": online_until(at_ms / 1000),
                "node": cut(node),
                "region": i64::from(region.0),
            };
            if let Some(name) = name {
                let name = cut(name);
                set.insert("name_lc", name.to_lowercase());
                set.insert("name", name);
            }
            let (filter, change) = upsert(*player, set);
            c.profiles.update_one(filter, change).upsert(true).await?;
            // The first login of a profile that existed already (a sanction made it).
            c.profiles
                .update_one(
                    doc! { "_id": int(player.0), "first_login": 0_i64 },
                    doc! { "$set": { "first_login": at } },
                )
                .await?;
            let session = doc! {
                "_id": session_id(*player, *at_ms),
                "player": int(player.0),
                "login": int(*at_ms),
                "logout": Bson::Null,
                "node": cut(node),
                "region": i64::from(region.0),
            };
            match c.sessions.insert_one(session).await {
                Err(e) if crate::mongo::is_duplicate_key(&e) => {} // Written before.
                other => {
                    other?;
                }
            }
        }
        PresenceUpdate::Seen {
            player,
            node,
            region,
            at_ms,
        } => {
            let set = doc! {
                "seen": int(at_ms / 1000),
                "online_until": online_until(at_ms / 1000),
                "node": cut(node),
                "region": i64::from(region.0),
            };
            let (filter, change) = upsert(*player, set);
            c.profiles.update_one(filter, change).upsert(true).await?;
        }
        PresenceUpdate::Left {
            player,
            node,
            since_ms,
            at_ms,
        } => {
            c.profiles
                .update_one(
                    doc! { "_id": int(player.0), "node": cut(node) },
                    doc! { "$set": { "node": Bson::Null, "region": Bson::Null, "seen": int(at_ms / 1000), "online_until": 0_i64 } },
                )
                .await?;
            c.sessions
                .update_one(
                    doc! { "_id": session_id(*player, *since_ms), "logout": Bson::Null },
                    doc! { "$set": { "logout": int(*at_ms) } },
                )
                .await?;
        }
        PresenceUpdate::Level { player, level } => {
            let (filter, change) = upsert(*player, doc! { "level": i64::from(*level) });
            c.profiles.update_one(filter, change).upsert(true).await?;
        }
    }
    Ok(())
}

impl MongoStore {
    /// The stages of the server's winning plan for the page `query` asks for (its
    /// `explain`), outermost first, each with the index it scans: what tests check to know
    /// that every list is answered from an index (`IXSCAN`), never a collection scan.
    pub async fn plan_of_list(
        &self,
        query: &PlayerQuery,
        now_unix_s: u64,
    ) -> Result<Vec<String>, StoreError> {
        let (filter, sort) = page_of(query, filter_of(query, now_unix_s));
        let command = doc! {
            "explain": {
                "find": self.directory.profiles.name(),
                "filter": and(filter),
                "sort": sort,
                "limit": i64::try_from(query.limit).unwrap_or(i64::MAX) + 1,
            },
            "verbosity": "queryPlanner",
        };
        let db = self.db().clone();
        let answer =
            bounded(async move { db.run_command(command).await.map_err(unavailable) }).await?;
        let mut stages = Vec::new();
        let mut stage = answer
            .get_document("queryPlanner")
            .and_then(|p| p.get_document("winningPlan"))
            .ok();
        while let Some(s) = stage {
            let name = s.get_str("stage").unwrap_or("?");
            stages.push(match s.get_str("indexName") {
                Ok(index) => format!("{name} {index}"),
                Err(_) => name.to_owned(),
            });
            stage = s.get_document("inputStage").ok();
        }
        Ok(stages)
    }

    /// Copies a ban or mute (`until_unix_s`, 0 when lifted) onto the player's profile.
    pub(crate) async fn note_sanction(
        &self,
        kind: Sanction,
        player: PlayerId,
        until_unix_s: u64,
    ) -> Result<(), StoreError> {
        let field = match kind {
            Sanction::Ban => "banned_until",
            Sanction::Mute => "muted_until",
        };
        let (filter, change) = upsert(player, doc! { field: int(until_unix_s) });
        let profiles = self.directory.profiles.clone();
        bounded(async move {
            profiles
                .update_one(filter, change)
                .upsert(true)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}
