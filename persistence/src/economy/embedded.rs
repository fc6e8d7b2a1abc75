//! The economy in the embedded store: each transaction is one redb write transaction
//! (redb has one writer at a time, so transactions never conflict), the ledger keyed by
//! (player, key) so that the idempotency check is one lookup.

use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tessera_shared::config::BalanceConfig;
use tessera_shared::ids::PlayerId;
use tessera_shared::protocol::codec;

use super::*;
use crate::embedded::EmbeddedStore;
use crate::snapshot::{SCHEMA_VERSION, StoreError, upgrade};

/// player -> (schema_version, bincode of [`PlayerEconomy`])
pub(crate) const ECONOMY: TableDefinition<u64, (u32, &[u8])> =
    TableDefinition::new("economy_players");
/// (shop, item) -> (stock, since_ms)
pub(crate) const STOCK: TableDefinition<(&str, &str), (u32, u64)> =
    TableDefinition::new("shop_stock");
/// (player, key) -> (schema_version, bincode of [`LedgerEntry`])
pub(crate) const LEDGER: TableDefinition<(u64, &str), (u32, &[u8])> =
    TableDefinition::new("economy_ledger");
/// (other player of a trade, player, key) -> (): a player's trades as the other side.
pub(crate) const LEDGER_OTHER: TableDefinition<(u64, u64, &str), ()> =
    TableDefinition::new("economy_ledger_other");

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    codec::encode(value, ECONOMY_DOC_BYTES_MAX)
        .map_err(|e| StoreError::Invalid(format!("economy document: {e}")))
}

fn decode<T: DeserializeOwned>(version: u32, bytes: &[u8]) -> Result<T, StoreError> {
    let bytes = upgrade(version, bytes.to_vec())?;
    codec::decode(&bytes, ECONOMY_DOC_BYTES_MAX)
        .map_err(|e| StoreError::Corrupt(format!("economy document: {e}")))
}

fn read_player(
    table: &impl ReadableTable<u64, (u32, &'static [u8])>,
    player: PlayerId,
) -> Result<Option<PlayerEconomy>, StoreError> {
    match table.get(player.0).map_err(unavailable)? {
        Some(v) => {
            let (version, bytes) = v.value();
            decode(version, bytes).map(Some)
        }
        None => Ok(None),
    }
}

fn read_entry(
    table: &impl ReadableTable<(u64, &'static str), (u32, &'static [u8])>,
    player: PlayerId,
    key: &str,
) -> Result<Option<LedgerEntry>, StoreError> {
    match table.get((player.0, key)).map_err(unavailable)? {
        Some(v) => {
            let (version, bytes) = v.value();
            decode(version, bytes).map(Some)
        }
        None => Ok(None),
    }
}

/// Creates the economy's tables (at open).
pub(crate) fn create_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(ECONOMY).map_err(unavailable)?;
    txn.open_table(STOCK).map_err(unavailable)?;
    txn.open_table(LEDGER).map_err(unavailable)?;
    txn.open_table(LEDGER_OTHER).map_err(unavailable)?;
    Ok(())
}

/// Runs `tx` in one write transaction.
fn apply(
    db: &redb::Database,
    balance: &BalanceConfig,
    tx: &EconomyTx,
) -> Result<TxOutcome, StoreError> {
    let txn = db.begin_write().map_err(unavailable)?;
    let outcome = {
        let mut players = txn.open_table(ECONOMY).map_err(unavailable)?;
        let mut stocks = txn.open_table(STOCK).map_err(unavailable)?;
        let mut ledger = txn.open_table(LEDGER).map_err(unavailable)?;
        let mut others = txn.open_table(LEDGER_OTHER).map_err(unavailable)?;
        if is_valid_key(&tx.key)
            && let Some(earlier) = read_entry(&ledger, tx.player, &tx.key)?
        {
            return Ok(TxOutcome::Duplicate(earlier));
        }
        let touches = tx.kind.touches(tx.player);
        let entry = match touches.entry {
            Some((player, key)) => read_entry(&ledger, player, key)?,
            None => None,
        };
        let stock_at = stock_key(tx, entry.as_ref());
        let stock = match &stock_at {
            Some((shop, item)) => stocks
                .get((shop.as_str(), item.as_str()))
                .map_err(unavailable)?
                .map(|v| {
                    let (stock, since_ms) = v.value();
                    ShopStock { stock, since_ms }
                }),
            None => None,
        };
        let reads = Reads {
            player: read_player(&players, tx.player)?,
            other: match touches.other {
                Some(other) => read_player(&players, other)?,
                None => None,
            },
            stock,
            entry,
        };
        match plan(balance, tx, reads) {
            Err(refusal) => TxOutcome::Refused(refusal),
            Ok(w) => {
                players
                    .insert(tx.player.0, (SCHEMA_VERSION, encode(&w.player)?.as_slice()))
                    .map_err(unavailable)?;
                if let Some((other, state)) = &w.other {
                    players
                        .insert(other.0, (SCHEMA_VERSION, encode(state)?.as_slice()))
                        .map_err(unavailable)?;
                }
                // Listed in the other player's ledger too (a trade, an offer to it).
                if let Some(other) = w.entry.other {
                    others
                        .insert((other.0, tx.player.0, tx.key.as_str()), ())
                        .map_err(unavailable)?;
                }
                if let Some((shop, item, s)) = &w.stock {
                    stocks
                        .insert((shop.as_str(), item.as_str()), (s.stock, s.since_ms))
                        .map_err(unavailable)?;
                }
                if let Some((owner, key)) = &w.closes {
                    let mut closed = read_entry(&ledger, *owner, key)?
                        .ok_or_else(|| StoreError::Corrupt("a closed entry vanished".into()))?;
                    closed.closed_by = Some(closer(tx));
                    ledger
                        .insert(
                            (owner.0, key.as_str()),
                            (SCHEMA_VERSION, encode(&closed)?.as_slice()),
                        )
                        .map_err(unavailable)?;
                }
                ledger
                    .insert(
                        (tx.player.0, tx.key.as_str()),
                        (SCHEMA_VERSION, encode(&w.entry)?.as_slice()),
                    )
                    .map_err(unavailable)?;
                TxOutcome::Applied(w.entry)
            }
        }
    };
    if matches!(outcome, TxOutcome::Applied(_)) {
        txn.commit().map_err(unavailable)?;
    }
    // A refusal writes nothing: the transaction is dropped (aborted).
    Ok(outcome)
}

impl EconomyStore for EmbeddedStore {
    async fn apply_tx(
        &self,
        balance: Arc<BalanceConfig>,
        tx: &EconomyTx,
    ) -> Result<TxOutcome, StoreError> {
        let tx = tx.clone();
        self.blocking(move |db| apply(db, &balance, &tx)).await
    }

    async fn economy_of(&self, player: PlayerId) -> Result<Option<PlayerEconomy>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let players = txn.open_table(ECONOMY).map_err(unavailable)?;
            read_player(&players, player)
        })
        .await
    }

    async fn ledger_of(
        &self,
        player: PlayerId,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let limit = limit.min(LEDGER_READ_MAX);
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let ledger = txn.open_table(LEDGER).map_err(unavailable)?;
            let others = txn.open_table(LEDGER_OTHER).map_err(unavailable)?;
            let mut entries = Vec::new();
            // Keys sort by text, not time: read them all, newest first after.
            let own = ledger
                .range((player.0, "")..(player.0.saturating_add(1), ""))
                .map_err(unavailable)?;
            for row in own {
                let (_, v) = row.map_err(unavailable)?;
                let (version, bytes) = v.value();
                entries.push(decode::<LedgerEntry>(version, bytes)?);
            }
            let theirs = others
                .range((player.0, 0, "")..(player.0.saturating_add(1), 0, ""))
                .map_err(unavailable)?;
            for row in theirs {
                let (k, _) = row.map_err(unavailable)?;
                let (_, by, key) = k.value();
                if let Some(e) = read_entry(&ledger, PlayerId(by), key)? {
                    entries.push(e);
                }
            }
            entries.sort_by(|a, b| b.at_ms.cmp(&a.at_ms).then_with(|| b.key.cmp(&a.key)));
            entries.truncate(limit);
            Ok(entries)
        })
        .await
    }

    async fn economy_audit(&self) -> Result<EconomyAudit, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let mut audit = EconomyAudit::default();
            let players = txn.open_table(ECONOMY).map_err(unavailable)?;
            for row in players.iter().map_err(unavailable)?.take(AUDIT_ENTRIES_MAX) {
                let (k, v) = row.map_err(unavailable)?;
                let (version, bytes) = v.value();
                audit
                    .players
                    .insert(PlayerId(k.value()), decode(version, bytes)?);
            }
            let stocks = txn.open_table(STOCK).map_err(unavailable)?;
            for row in stocks.iter().map_err(unavailable)?.take(AUDIT_ENTRIES_MAX) {
                let (k, v) = row.map_err(unavailable)?;
                let (shop, item) = k.value();
                let (stock, since_ms) = v.value();
                audit.stocks.insert(
                    (shop.to_owned(), item.to_owned()),
                    ShopStock { stock, since_ms },
                );
            }
            let ledger = txn.open_table(LEDGER).map_err(unavailable)?;
            for row in ledger.iter().map_err(unavailable)?.take(AUDIT_ENTRIES_MAX) {
                let (_, v) = row.map_err(unavailable)?;
                let (version, bytes) = v.value();
                audit.ledger.push(decode(version, bytes)?);
            }
            Ok(audit)
        })
        .await
    }
}
