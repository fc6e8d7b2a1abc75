//! The directory in the embedded store: profiles and sessions in redb tables, and the
//! profiles again in memory with one ordered index per sort key ([`Index`]), loaded at
//! open and updated after each committed write under the same lock. A list walks the
//! index of its order from the cursor, testing the filters, until the page is full; the
//! total count tests every profile (about a millisecond per 100,000).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tessera_shared::ids::PlayerId;
use tessera_shared::protocol::codec;

use super::*;
use crate::audit::Sanction;
use crate::embedded::EmbeddedStore;
use crate::snapshot::{SCHEMA_VERSION, upgrade};

/// player -> (schema_version, bincode of [`Profile`])
pub(crate) const PROFILES: TableDefinition<u64, (u32, &[u8])> =
    TableDefinition::new("player_directory");
/// (player, login_unix_ms) -> (schema_version, bincode of [`Session`])
pub(crate) const SESSIONS: TableDefinition<(u64, u64), (u32, &[u8])> =
    TableDefinition::new("player_sessions");

/// Largest stored profile or session, in bytes.
const RECORD_BYTES_MAX: usize = 1024;

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    codec::encode(value, RECORD_BYTES_MAX)
        .map_err(|e| StoreError::Invalid(format!("directory record: {e}")))
}

fn decode<T: DeserializeOwned>(version: u32, bytes: &[u8]) -> Result<T, StoreError> {
    let bytes = upgrade(version, bytes.to_vec())?;
    codec::decode(&bytes, RECORD_BYTES_MAX)
        .map_err(|e| StoreError::Corrupt(format!("directory record: {e}")))
}

/// The profiles in memory, by id and by each sort key.
#[derive(Debug, Default)]
pub(crate) struct Index {
    profiles: BTreeMap<u64, Profile>,
    by_name: BTreeSet<(String, u64)>,
    by_level: BTreeSet<(u32, u64)>,
    by_login: BTreeSet<(u64, u64)>,
}

impl Index {
    /// Reads every stored profile.
    pub(crate) fn load(db: &redb::Database) -> Result<Index, StoreError> {
        let txn = db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(PROFILES).map_err(unavailable)?;
        let mut index = Index::default();
        for entry in table.iter().map_err(unavailable)? {
            let (_, value) = entry.map_err(unavailable)?;
            let (version, bytes) = value.value();
            index.insert(decode(version, bytes)?);
        }
        Ok(index)
    }

    fn insert(&mut self, profile: Profile) {
        let id = profile.player.0;
        if let Some(old) = self.profiles.remove(&id) {
            self.by_name.remove(&(old.name_key(), id));
            self.by_level.remove(&(old.level, id));
            self.by_login.remove(&(old.last_login_unix_s, id));
        }
        self.by_name.insert((profile.name_key(), id));
        self.by_level.insert((profile.level, id));
        self.by_login.insert((profile.last_login_unix_s, id));
        self.profiles.insert(id, profile);
    }

    /// The profile of `player`, or a new one.
    fn get_or_new(&self, player: PlayerId) -> Profile {
        self.profiles
            .get(&player.0)
            .cloned()
            .unwrap_or_else(|| Profile::new(player))
    }

    /// Player ids in `query`'s order from its cursor on.
    fn walk<'a>(&'a self, query: &PlayerQuery) -> Box<dyn Iterator<Item = u64> + 'a> {
        fn from<'a, K: Ord + Clone + 'a>(
            set: &'a BTreeSet<(K, u64)>,
            after: Option<(K, u64)>,
            descending: bool,
        ) -> Box<dyn Iterator<Item = u64> + 'a> {
            let ids = |(_, id): &(K, u64)| *id;
            match (after, descending) {
                (None, false) => Box::new(set.iter().map(ids)),
                (None, true) => Box::new(set.iter().rev().map(ids)),
                (Some(a), false) => {
                    Box::new(set.range((Bound::Excluded(a), Bound::Unbounded)).map(ids))
                }
                (Some(a), true) => Box::new(
                    set.range((Bound::Unbounded, Bound::Excluded(a)))
                        .rev()
                        .map(ids),
                ),
            }
        }
        let after = query.after.as_ref();
        let player = after.map_or(0, |a| a.player.0);
        let number = |a: &Cursor| match a.value {
            SortValue::Number(n) => n,
            _ => 0,
        };
        match query.sort {
            SortKey::Id => {
                let keys = self.profiles.keys().copied();
                match (after, query.descending) {
                    (None, false) => Box::new(keys),
                    (None, true) => Box::new(keys.rev()),
                    (Some(_), false) => Box::new(
                        self.profiles
                            .range((Bound::Excluded(player), Bound::Unbounded))
                            .map(|(id, _)| *id),
                    ),
                    (Some(_), true) => {
                        Box::new(self.profiles.range(..player).rev().map(|(id, _)| *id))
                    }
                }
            }
            SortKey::Name => {
                let after = after.map(|a| match &a.value {
                    SortValue::Name(name) => (name.clone(), player),
                    _ => (String::new(), player),
                });
                from(&self.by_name, after, query.descending)
            }
            SortKey::Level => {
                let after = after.map(|a| (u32::try_from(number(a)).unwrap_or(u32::MAX), player));
                from(&self.by_level, after, query.descending)
            }
            SortKey::LastLogin => {
                let after = after.map(|a| (number(a), player));
                from(&self.by_login, after, query.descending)
            }
        }
    }

    fn page(&self, query: &PlayerQuery, now_unix_s: u64) -> PlayerPage {
        let lower = query.name_prefix.as_ref().map(|p| p.to_lowercase());
        let query = PlayerQuery {
            name_prefix: lower,
            ..query.clone()
        };
        let total = self
            .profiles
            .values()
            .filter(|p| query.matches(p, now_unix_s))
            .count() as u64;
        let mut players = Vec::with_capacity(query.limit);
        let mut more = false;
        for id in self.walk(&query) {
            let profile = &self.profiles[&id];
            if !query.matches(profile, now_unix_s) {
                continue;
            }
            if players.len() == query.limit {
                more = true;
                break;
            }
            players.push(profile.clone());
        }
        PlayerPage::new(&query, players, total, more)
    }
}

fn read(index: &RwLock<Index>) -> RwLockReadGuard<'_, Index> {
    index.read().unwrap_or_else(|p| p.into_inner())
}

fn write(index: &RwLock<Index>) -> RwLockWriteGuard<'_, Index> {
    index.write().unwrap_or_else(|p| p.into_inner())
}

fn put_profile(txn: &redb::WriteTransaction, profile: &Profile) -> Result<(), StoreError> {
    let mut table = txn.open_table(PROFILES).map_err(unavailable)?;
    table
        .insert(
            profile.player.0,
            (SCHEMA_VERSION, encode(profile)?.as_slice()),
        )
        .map_err(unavailable)?;
    Ok(())
}

/// Copies a ban or mute (`until_unix_s`, 0 when lifted) onto the player's profile in
/// `txn`; the caller puts the returned profile into the index once `txn` committed.
pub(crate) fn note_sanction(
    index: &Index,
    txn: &redb::WriteTransaction,
    kind: Sanction,
    player: PlayerId,
    until_unix_s: u64,
) -> Result<Profile, StoreError> {
    let mut profile = index.get_or_new(player);
    match kind {
        Sanction::Ban => profile.banned_until_unix_s = until_unix_s,
        Sanction::Mute => profile.muted_until_unix_s = until_unix_s,
    }
    put_profile(txn, &profile)?;
    Ok(profile)
}

impl EmbeddedStore {
    /// Runs `f` in a write transaction with the directory's index locked, then puts the
    /// profiles it returns into the index once the transaction committed.
    pub(crate) async fn write_directory(
        &self,
        f: impl FnOnce(&Index, &redb::WriteTransaction) -> Result<Vec<Profile>, StoreError>
        + Send
        + 'static,
    ) -> Result<(), StoreError> {
        let index = self.directory.clone();
        self.blocking(move |db| {
            let mut index = write(&index);
            let txn = db.begin_write().map_err(unavailable)?;
            let changed = f(&index, &txn)?;
            txn.commit().map_err(unavailable)?;
            for profile in changed {
                index.insert(profile);
            }
            Ok(())
        })
        .await
    }
}

impl DirectoryStore for EmbeddedStore {
    async fn record_presence(&self, updates: &[PresenceUpdate]) -> Result<(), StoreError> {
        let updates = updates.to_vec();
        self.write_directory(move |index, txn| {
            let mut changed: BTreeMap<u64, Profile> = BTreeMap::new();
            let mut sessions = txn.open_table(SESSIONS).map_err(unavailable)?;
            for update in &updates {
                let player = update.player();
                let profile = changed
                    .entry(player.0)
                    .or_insert_with(|| index.get_or_new(player));
                profile.apply(update);
                match update {
                    PresenceUpdate::Login {
                        node,
                        region,
                        at_ms,
                        ..
                    } => {
                        let key = (player.0, *at_ms);
                        if sessions.get(key).map_err(unavailable)?.is_none() {
                            let session = Session {
                                player,
                                login_unix_ms: *at_ms,
                                logout_unix_ms: None,
                                node: cut(node),
                                region: *region,
                            };
                            sessions
                                .insert(key, (SCHEMA_VERSION, encode(&session)?.as_slice()))
                                .map_err(unavailable)?;
                        }
                    }
                    PresenceUpdate::Left {
                        since_ms, at_ms, ..
                    } => {
                        let key = (player.0, *since_ms);
                        let stored = match sessions.get(key).map_err(unavailable)? {
                            Some(v) => {
                                let (version, bytes) = v.value();
                                Some(decode::<Session>(version, bytes)?)
                            }
                            None => None,
                        };
                        if let Some(mut session) = stored.filter(|s| s.logout_unix_ms.is_none()) {
                            session.logout_unix_ms = Some(*at_ms);
                            sessions
                                .insert(key, (SCHEMA_VERSION, encode(&session)?.as_slice()))
                                .map_err(unavailable)?;
                        }
                    }
                    PresenceUpdate::Seen { .. } | PresenceUpdate::Level { .. } => {}
                }
            }
            for profile in changed.values() {
                put_profile(txn, profile)?;
            }
            Ok(changed.into_values().collect())
        })
        .await
    }

    async fn list_players(
        &self,
        query: &PlayerQuery,
        now_unix_s: u64,
    ) -> Result<PlayerPage, StoreError> {
        query.check_in_store()?;
        let (index, query) = (self.directory.clone(), query.clone());
        self.blocking(move |_| Ok(read(&index).page(&query, now_unix_s)))
            .await
    }

    async fn profile_of(&self, player: PlayerId) -> Result<Option<Profile>, StoreError> {
        Ok(read(&self.directory).profiles.get(&player.0).cloned())
    }

    async fn sessions_of(
        &self,
        player: PlayerId,
        limit: usize,
    ) -> Result<Vec<Session>, StoreError> {
        let limit = limit.min(SESSIONS_READ_MAX);
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(SESSIONS).map_err(unavailable)?;
            let mut sessions = Vec::with_capacity(limit);
            for entry in table
                .range((player.0, 0)..=(player.0, u64::MAX))
                .map_err(unavailable)?
                .rev()
                .take(limit)
            {
                let (_, value) = entry.map_err(unavailable)?;
                let (version, bytes) = value.value();
                sessions.push(decode(version, bytes)?);
            }
            Ok(sessions)
        })
        .await
    }

    async fn import_profiles(&self, profiles: &[Profile]) -> Result<(), StoreError> {
        check_import(profiles)?;
        let profiles = profiles.to_vec();
        self.write_directory(move |_, txn| {
            for profile in &profiles {
                put_profile(txn, profile)?;
            }
            Ok(profiles)
        })
        .await
    }
}
