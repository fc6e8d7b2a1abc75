//! The economy in MongoDB: each transaction is one multi-document transaction (majority
//! read and write concern) over
//! - `economy_players`: `_id` = player id, the [`PlayerEconomy`] fields;
//! - `shop_stock`: `_id` = `{ s: shop, i: item }`, `stock` and `since_ms`;
//! - `economy_ledger`: `_id` = `{ p: player, k: key }` (the idempotency key's uniqueness is
//!   the `_id`'s), the [`LedgerEntry`] fields, indexed by `player` and by `other`, newest
//!   first (`at_ms`).
//!
//! Two transactions that write the same document conflict: the server aborts one with a
//! `TransientTransactionError`, which is retried from its reads (at most
//! [`TX_ATTEMPTS_MAX`] times, with a short jittered pause); a commit whose result is
//! unknown is committed again. Everything runs within the store's operation timeout: a
//! transaction either commits whole or not at all, and the caller may retry with the same
//! key.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use mongodb::bson::{self, Bson, Document, doc};
use mongodb::error::{Error, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT};
use mongodb::options::{Acknowledgment, ReadConcern, WriteConcern};
use mongodb::{ClientSession, Collection, IndexModel};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tessera_shared::config::BalanceConfig;
use tessera_shared::ids::PlayerId;

use super::*;
use crate::mongo::{MongoStore, OPERATION_TIMEOUT, bounded, bounded_for};
use crate::snapshot::StoreError;

/// Most attempts of one transaction that keeps conflicting with others.
pub const TX_ATTEMPTS_MAX: u32 = 50;

/// The first pause before another attempt.
const RETRY_PAUSE_MIN: Duration = Duration::from_millis(1);

/// The longest pause between two attempts.
const RETRY_PAUSE_MAX: Duration = Duration::from_millis(100);

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn to_doc<T: Serialize>(value: &T) -> Result<Document, StoreError> {
    bson::to_document(value).map_err(|e| StoreError::Invalid(format!("economy document: {e}")))
}

fn from_doc<T: DeserializeOwned>(mut doc: Document) -> Result<T, StoreError> {
    doc.remove("_id");
    bson::from_document(doc).map_err(|e| StoreError::Corrupt(format!("economy document: {e}")))
}

fn entry_id(player: PlayerId, key: &str) -> Document {
    doc! { "p": player.0 as i64, "k": key }
}

fn stock_id(shop: &str, item: &str) -> Document {
    doc! { "s": shop, "i": item }
}

/// The economy's collections.
#[derive(Clone, Debug)]
pub(crate) struct Collections {
    players: Collection<Document>,
    stock: Collection<Document>,
    ledger: Collection<Document>,
}

impl Collections {
    /// The collections of `db`, with the ledger's indexes created.
    pub(crate) async fn open(db: &mongodb::Database) -> Result<Collections, StoreError> {
        let c = Collections {
            players: db.collection("economy_players"),
            stock: db.collection("shop_stock"),
            ledger: db.collection("economy_ledger"),
        };
        let ledger = c.ledger.clone();
        bounded(async move {
            let by = |field: &str| {
                IndexModel::builder()
                    .keys(doc! { field: 1, "at_ms": -1 })
                    .build()
            };
            ledger
                .create_indexes([by("player"), by("other")])
                .await
                .map_err(unavailable)?;
            Ok(())
        })
        .await?;
        Ok(c)
    }
}

/// The outcome of one attempt: done, or a conflict to retry.
enum Attempt {
    Done(Box<TxOutcome>),
    Conflict(Error),
}

/// One attempt of `tx` in a new transaction on `session`; not committed past `deadline`
/// (aborted instead).
async fn attempt(
    c: &Collections,
    session: &mut ClientSession,
    balance: &BalanceConfig,
    tx: &EconomyTx,
    deadline: tokio::time::Instant,
) -> Result<Attempt, StoreError> {
    let majority = WriteConcern::builder()
        .w(Acknowledgment::Majority)
        .journal(true)
        .build();
    session
        .start_transaction()
        .read_concern(ReadConcern::majority())
        .write_concern(majority)
        .await
        .map_err(unavailable)?;
    let result = attempt_in(c, session, balance, tx).await;
    match result {
        Ok(Ok(TxOutcome::Applied(_))) if tokio::time::Instant::now() >= deadline => {
            // Too late to commit: the caller is told the store did not answer, and may try
            // again; this attempt must then never commit behind its back.
            let _ = session.abort_transaction().await;
            Err(StoreError::Unavailable(format!(
                "no commit within {OPERATION_TIMEOUT:?}"
            )))
        }
        Ok(Ok(TxOutcome::Applied(entry))) => loop {
            match session.commit_transaction().await {
                Ok(()) => return Ok(Attempt::Done(Box::new(TxOutcome::Applied(entry)))),
                Err(e) if e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT) => continue,
                Err(e) if e.contains_label(TRANSIENT_TRANSACTION_ERROR) => {
                    return Ok(Attempt::Conflict(e));
                }
                Err(e) => return Err(unavailable(e)),
            }
        },
        Ok(outcome) => {
            // Nothing was written: a duplicate, a refusal, or a document that did not
            // decode or encode.
            let _ = session.abort_transaction().await;
            outcome.map(|o| Attempt::Done(Box::new(o)))
        }
        Err(e) => {
            let _ = session.abort_transaction().await;
            if e.contains_label(TRANSIENT_TRANSACTION_ERROR) || is_conflict(&e) {
                Ok(Attempt::Conflict(e))
            } else {
                Err(unavailable(e))
            }
        }
    }
}

/// A write conflict or a concurrent insert of the same ledger key: the other transaction
/// won, this one retries from its reads (and then finds its key, or the new state). Also
/// `InternalError` (code 1) before the commit: the MongoDB-wire test server
/// (secantusd-rs) reports some conflicts between concurrent transactions so
/// (`WT_ERROR`); nothing was committed, so another attempt is safe.
fn is_conflict(e: &Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    const INTERNAL_ERROR: i32 = 1;
    const WRITE_CONFLICT: i32 = 112;
    const DUPLICATE_KEY: i32 = 11000;
    match e.kind.as_ref() {
        ErrorKind::Command(c) => {
            c.code == WRITE_CONFLICT || c.code == DUPLICATE_KEY || c.code == INTERNAL_ERROR
        }
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// The reads, the decision and the writes of one attempt, inside its transaction.
async fn attempt_in(
    c: &Collections,
    session: &mut ClientSession,
    balance: &BalanceConfig,
    tx: &EconomyTx,
) -> Result<Result<TxOutcome, StoreError>, Error> {
    let find_entry = async |session: &mut ClientSession, player: PlayerId, key: &str| {
        c.ledger
            .find_one(doc! { "_id": entry_id(player, key) })
            .session(session)
            .await
    };
    let find_player = async |session: &mut ClientSession, player: PlayerId| {
        c.players
            .find_one(doc! { "_id": player.0 as i64 })
            .session(session)
            .await
    };
    if is_valid_key(&tx.key)
        && let Some(earlier) = find_entry(session, tx.player, &tx.key).await?
    {
        return Ok(from_doc(earlier).map(TxOutcome::Duplicate));
    }
    let touches = tx.kind.touches(tx.player);
    let entry = match touches.entry {
        Some((player, key)) => find_entry(session, player, key).await?,
        None => None,
    };
    let entry: Option<LedgerEntry> = match entry.map(from_doc).transpose() {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let stock_at = stock_key(tx, entry.as_ref());
    let stock = match &stock_at {
        Some((shop, item)) => c
            .stock
            .find_one(doc! { "_id": stock_id(shop, item) })
            .session(&mut *session)
            .await?
            .map(|d| ShopStock {
                stock: d
                    .get_i64("stock")
                    .ok()
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(0),
                since_ms: d
                    .get_i64("since_ms")
                    .ok()
                    .and_then(|v| u64::try_from(v).ok())
                    .unwrap_or(0),
            }),
        None => None,
    };
    let player = find_player(session, tx.player).await?;
    let other = match touches.other {
        Some(other) => find_player(session, other).await?,
        None => None,
    };
    let decoded = (|| {
        Ok::<_, StoreError>(Reads {
            player: player.map(from_doc).transpose()?,
            other: other.map(from_doc).transpose()?,
            stock,
            entry,
        })
    })();
    let reads = match decoded {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let w = match plan(balance, tx, reads) {
        Err(refusal) => return Ok(Ok(TxOutcome::Refused(refusal))),
        Ok(w) => w,
    };
    let docs = (|| {
        let mut player = to_doc(&w.player)?;
        player.insert("_id", tx.player.0 as i64);
        let other = match &w.other {
            Some((id, state)) => {
                let mut d = to_doc(state)?;
                d.insert("_id", id.0 as i64);
                Some(d)
            }
            None => None,
        };
        let mut entry = to_doc(&w.entry)?;
        entry.insert("_id", entry_id(tx.player, &tx.key));
        Ok::<_, StoreError>((player, other, entry))
    })();
    let (player_doc, other_doc, entry_doc) = match docs {
        Ok(d) => d,
        Err(e) => return Ok(Err(e)),
    };
    // Documents are written in one order (players by id, then the stock, then the
    // ledger) so that two transactions never wait on each other's locks in a cycle on a
    // server that makes a conflicting write wait rather than fail.
    let mut players = vec![(tx.player, player_doc)];
    if let (Some((id, _)), Some(d)) = (&w.other, other_doc) {
        players.push((*id, d));
    }
    players.sort_by_key(|(id, _)| *id);
    for (id, d) in players {
        c.players
            .replace_one(doc! { "_id": id.0 as i64 }, d)
            .upsert(true)
            .session(&mut *session)
            .await?;
    }
    if let Some((shop, item, s)) = &w.stock {
        c.stock
            .replace_one(
                doc! { "_id": stock_id(shop, item) },
                doc! {
                    "_id": stock_id(shop, item),
                    "stock": i64::from(s.stock),
                    "since_ms": s.since_ms as i64,
                },
            )
            .upsert(true)
            .session(&mut *session)
            .await?;
    }
    if let Some((owner, key)) = &w.closes {
        c.ledger
            .update_one(
                doc! { "_id": entry_id(*owner, key) },
                doc! { "$set": { "closed_by": Bson::String(closer(tx)) } },
            )
            .session(&mut *session)
            .await?;
    }
    c.ledger
        .insert_one(entry_doc)
        .session(&mut *session)
        .await?;
    Ok(Ok(TxOutcome::Applied(w.entry)))
}

impl EconomyStore for MongoStore {
    async fn apply_tx(
        &self,
        balance: Arc<BalanceConfig>,
        tx: &EconomyTx,
    ) -> Result<TxOutcome, StoreError> {
        let c = self.economy.clone();
        let client = self.client().clone();
        let tx = tx.clone();
        // The transaction stops before its commit once OPERATION_TIMEOUT has passed, and
        // is waited for until then and a commit's answer: `bounded` alone would return at
        // the timeout and leave the transaction running, so that it could commit after the
        // caller had been told it failed, beside the caller's next attempt of the same key
        // (which might be refused: a client told "refused" whose key was applied). Only a
        // commit the server never answers outlasts the guard (twice the timeout).
        let deadline = tokio::time::Instant::now() + OPERATION_TIMEOUT;
        bounded_for(OPERATION_TIMEOUT * 2, async move {
            let mut session = client.start_session().await.map_err(unavailable)?;
            // Spread the retries of transactions that keep meeting: exponential with
            // jitter, from RETRY_PAUSE_MIN to RETRY_PAUSE_MAX.
            let mut pauses = ExponentialBuilder::default()
                .with_min_delay(RETRY_PAUSE_MIN)
                .with_max_delay(RETRY_PAUSE_MAX)
                .with_jitter()
                .with_max_times(TX_ATTEMPTS_MAX as usize)
                .build();
            loop {
                if tokio::time::Instant::now() >= deadline {
                    return Err(StoreError::Unavailable(format!(
                        "no commit within {OPERATION_TIMEOUT:?}"
                    )));
                }
                let conflict = match attempt(&c, &mut session, &balance, &tx, deadline).await? {
                    Attempt::Done(outcome) => return Ok(*outcome),
                    Attempt::Conflict(e) => e,
                };
                let Some(pause) = pauses.next() else {
                    return Err(StoreError::Contended(format!(
                        "the transaction conflicted {} times, last: {conflict}",
                        TX_ATTEMPTS_MAX + 1
                    )));
                };
                tokio::time::sleep(pause).await;
            }
        })
        .await
    }

    async fn economy_of(&self, player: PlayerId) -> Result<Option<PlayerEconomy>, StoreError> {
        let players = self.economy.players.clone();
        bounded(async move {
            let found = players
                .find_one(doc! { "_id": player.0 as i64 })
                .await
                .map_err(unavailable)?;
            found.map(from_doc).transpose()
        })
        .await
    }

    async fn ledger_of(
        &self,
        player: PlayerId,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let limit = limit.min(LEDGER_READ_MAX);
        let ledger = self.economy.ledger.clone();
        bounded(async move {
            use futures_util::TryStreamExt;
            let id = player.0 as i64;
            let cursor = ledger
                .find(doc! { "$or": [{ "player": id }, { "other": id }] })
                .sort(doc! { "at_ms": -1, "_id.k": -1 })
                .limit(limit as i64)
                .await
                .map_err(unavailable)?;
            let docs: Vec<Document> = cursor.try_collect().await.map_err(unavailable)?;
            docs.into_iter().map(from_doc).collect()
        })
        .await
    }

    async fn economy_audit(&self) -> Result<EconomyAudit, StoreError> {
        let c = self.economy.clone();
        bounded(async move {
            use futures_util::TryStreamExt;
            let mut audit = EconomyAudit::default();
            let docs: Vec<Document> = c
                .players
                .find(doc! {})
                .limit(AUDIT_ENTRIES_MAX as i64)
                .await
                .map_err(unavailable)?
                .try_collect()
                .await
                .map_err(unavailable)?;
            for d in docs {
                let id = d
                    .get_i64("_id")
                    .ok()
                    .and_then(|v| u64::try_from(v).ok())
                    .ok_or_else(|| StoreError::Corrupt("economy player id".into()))?;
                audit.players.insert(PlayerId(id), from_doc(d)?);
            }
            let docs: Vec<Document> = c
                .stock
                .find(doc! {})
                .limit(AUDIT_ENTRIES_MAX as i64)
                .await
                .map_err(unavailable)?
                .try_collect()
                .await
                .map_err(unavailable)?;
            for d in docs {
                let id = d
                    .get_document("_id")
                    .map_err(|_| StoreError::Corrupt("shop stock id".into()))?;
                let (Ok(shop), Ok(item)) = (id.get_str("s"), id.get_str("i")) else {
                    return Err(StoreError::Corrupt("shop stock id".into()));
                };
                let stock = d.get_i64("stock").ok().and_then(|v| u32::try_from(v).ok());
                let since = d
                    .get_i64("since_ms")
                    .ok()
                    .and_then(|v| u64::try_from(v).ok());
                let (Some(stock), Some(since_ms)) = (stock, since) else {
                    return Err(StoreError::Corrupt("shop stock".into()));
                };
                audit.stocks.insert(
                    (shop.to_owned(), item.to_owned()),
                    ShopStock { stock, since_ms },
                );
            }
            let docs: Vec<Document> = c
                .ledger
                .find(doc! {})
                .limit(AUDIT_ENTRIES_MAX as i64)
                .await
                .map_err(unavailable)?
                .try_collect()
                .await
                .map_err(unavailable)?;
            audit.ledger = docs.into_iter().map(from_doc).collect::<Result<_, _>>()?;
            Ok(audit)
        })
        .await
    }
}
