//! The player economy: wallets, inventories, experience, shop stock and the ledger, changed
//! only by transactions.
//!
//! A transaction ([`EconomyTx`]) names its player, an idempotency key and what it does
//! ([`TxKind`]: a kill's loot and XP, the starter kit, a purchase, a refund, a trade offer
//! and its acceptance or cancellation, a direct trade, an admin grant or revocation). A store runs it in one of its own transactions (a redb write
//! transaction; a MongoDB multi-document transaction with majority write concern):
//!
//! 1. if the ledger already holds the key for that player, the earlier outcome is the
//!    answer ([`TxOutcome::Duplicate`]): a retried request is applied once;
//! 2. it reads what the transaction touches ([`TxKind::touches`]: one or two players, a
//!    shop's stock of one item, the ledger entry a refund reverses or an acceptance takes
//!    up);
//! 3. [`plan`] (pure, here) decides: the new states and one [`LedgerEntry`], or a
//!    [`Refusal`] that changes nothing;
//! 4. it writes the states and appends the entry, all or nothing.
//!
//! Everything that decides is in this module and has no IO, so that both stores decide
//! alike and the property tests cover the decisions (`tests.rs`: any interleaving of
//! transactions conserves coins and items, reconciled against the ledger).
//!
//! Conservation: coins and items enter only through kills, starter kits, admin grants
//! and shop restocks, and leave only through purchases (coins) and admin revocations, each
//! recorded in its ledger entry; trades and purchases move the rest. So every player's
//! holdings and every shop's stock equal the sum of their ledger deltas ([`reconcile`]).

pub(crate) mod embedded;
pub(crate) mod mongo;
mod plan;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tessera_shared::config::BalanceConfig;
use tessera_shared::ids::PlayerId;

use crate::snapshot::StoreError;

pub use mongo::TX_ATTEMPTS_MAX;
pub use plan::{plan, shop_stock_now};

/// A store of the economy. Implementations: the embedded store (one redb write
/// transaction per economy transaction) and MongoDB (one multi-document transaction with
/// majority write concern, retried on transient errors). The same conformance tests run
/// against both (`tests/economy_store.rs`).
pub trait EconomyStore: Send + Sync {
    /// Runs `tx` under `balance`, atomically: applied, a duplicate of an applied key, or
    /// refused. `Err` only when the store failed; then nothing or everything was applied
    /// (retrying with the same key is safe).
    fn apply_tx(
        &self,
        balance: Arc<BalanceConfig>,
        tx: &EconomyTx,
    ) -> impl Future<Output = Result<TxOutcome, StoreError>> + Send;

    /// A player's economy (`None`: no transaction yet).
    fn economy_of(
        &self,
        player: PlayerId,
    ) -> impl Future<Output = Result<Option<PlayerEconomy>, StoreError>> + Send;

    /// A player's ledger entries (as player or as the other side of a trade), newest
    /// first, at most `limit` (capped at [`LEDGER_READ_MAX`]).
    fn ledger_of(
        &self,
        player: PlayerId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<LedgerEntry>, StoreError>> + Send;

    /// Everything, for a reconciliation ([`reconcile`]): every player's economy, every
    /// shop stock and the whole ledger. Reads at most [`AUDIT_ENTRIES_MAX`] entries.
    fn economy_audit(&self) -> impl Future<Output = Result<EconomyAudit, StoreError>> + Send;
}

/// Most ledger entries one [`EconomyStore::ledger_of`] returns.
pub const LEDGER_READ_MAX: usize = 1_000;

/// Most players, stocks or ledger entries one [`EconomyStore::economy_audit`] reads.
pub const AUDIT_ENTRIES_MAX: usize = 1_000_000;

/// Largest stored economy document (a player's economy, a ledger entry), in bytes.
pub const ECONOMY_DOC_BYTES_MAX: usize = 64 * 1024;

/// Everything a store holds of the economy.
#[derive(Clone, Debug, Default)]
pub struct EconomyAudit {
    /// Every player's economy.
    pub players: BTreeMap<PlayerId, PlayerEconomy>,
    /// Every stored shop stock, by (shop, item).
    pub stocks: BTreeMap<(String, String), ShopStock>,
    /// The whole ledger.
    pub ledger: Vec<LedgerEntry>,
}

impl EconomyAudit {
    /// [`reconcile`] over this, shops starting at `balance`'s `stock_max`.
    pub fn mismatches(&self, balance: &BalanceConfig) -> Vec<Mismatch> {
        reconcile(&self.ledger, &self.players, &self.stocks, |shop, item| {
            let good = balance.shop_index(shop).and_then(|s| {
                let item = balance.item_index(item)?;
                balance.shops[s].goods.iter().find(|g| g.item == item)
            });
            good.map_or(0, |g| g.stock_max)
        })
    }
}

/// The (shop, item) whose stock `tx` reads: the one a purchase takes, or the one the
/// purchase a refund reverses took (`entry`, read first).
pub(crate) fn stock_key(tx: &EconomyTx, entry: Option<&LedgerEntry>) -> Option<(String, String)> {
    let touches = tx.kind.touches(tx.player);
    touches
        .stock
        .map(|(s, i)| (s.to_owned(), i.to_owned()))
        .or_else(|| match tx.kind {
            TxKind::Refund { .. } => entry.and_then(|p| p.shop.clone()),
            _ => None,
        })
}

/// Longest time a trade offer stays open, in milliseconds.
pub const OFFER_TTL_MAX_MS: u64 = 10 * 60 * 1000;

/// Most coins one wallet holds: far below `u64::MAX`, so that sums over many wallets
/// and ledger deltas (`i64`) never overflow.
pub const COINS_MAX: u64 = 1_000_000_000_000_000;

/// Longest idempotency key, in bytes.
pub const TX_KEY_BYTES_MAX: usize = 64;

/// Most item kinds one transaction names (a trade side, a grant, a kill's loot).
pub const TX_ITEM_KINDS_MAX: usize = 32;

/// Most units of one item one transaction moves.
pub const TX_ITEM_COUNT_MAX: u32 = 1_000_000;

/// Most XP one player accumulates (what signed 64-bit store fields hold).
pub const XP_TOTAL_MAX: u64 = i64::MAX as u64;

/// The level a new player starts at.
pub const START_LEVEL: u32 = 1;

/// Coins and items.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holdings {
    /// Coins, at most [`COINS_MAX`].
    pub coins: u64,
    /// Units by item id; no zero counts.
    pub items: BTreeMap<String, u32>,
}

/// One player's economy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerEconomy {
    /// Wallet and inventory. The inventory holds at most `[economy] inventory_slots`
    /// stacks: an item takes `ceil(count / stack_size)` slots.
    pub holdings: Holdings,
    /// Experience gained, all of it (also past the level cap).
    pub xp: u64,
    /// The level, from [`START_LEVEL`] to `[progression] level_cap`.
    pub level: u32,
    /// NPCs killed.
    pub kills: u64,
    /// Whether the starter kit was delivered (once per player, whatever the key).
    pub kit_delivered: bool,
}

impl Default for PlayerEconomy {
    fn default() -> Self {
        PlayerEconomy {
            holdings: Holdings::default(),
            xp: 0,
            level: START_LEVEL,
            kills: 0,
            kit_delivered: false,
        }
    }
}

/// A shop's stock of one item, as stored: the units left at `since_ms`. Restocking is
/// computed when it is read ([`shop_stock_now`]), not by a timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopStock {
    /// Units in stock at `since_ms`.
    pub stock: u32,
    /// When `stock` was last written or restocked (Unix ms).
    pub since_ms: u64,
}

/// One economy transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EconomyTx {
    /// Whose transaction (for a trade: the side that confirmed last).
    pub player: PlayerId,
    /// The idempotency key, unique per player: 1 to [`TX_KEY_BYTES_MAX`] bytes of
    /// `A-Z a-z 0-9 _ - . :`. Clients supply theirs; the node derives keys for what it
    /// commits itself (`kill:...`, `kit`).
    pub key: String,
    /// What it does.
    pub kind: TxKind,
    /// When it was asked for (Unix ms): restocking and the ledger use it.
    pub at_ms: u64,
}

/// What a transaction does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxKind {
    /// A kill of an NPC of `target_level`: its loot, rolled by the simulation, and the XP
    /// `[progression] kill_xp` gives at the player's level when it is applied. Items that
    /// do not fit the inventory and coins past [`COINS_MAX`] are lost, and recorded as
    /// lost.
    Kill {
        /// Coins dropped.
        coins: u64,
        /// Items dropped, by id.
        items: Vec<(String, u32)>,
        /// The level of the NPC killed.
        target_level: u32,
    },
    /// The configured starter kit, once per player.
    StarterKit,
    /// `count` of `item` from `shop`, at the shop's price.
    Purchase {
        /// A shop id.
        shop: String,
        /// An item id the shop sells.
        item: String,
        /// How many, at least 1.
        count: u32,
    },
    /// Reverses a purchase of the same player, by its key: exactly what was taken is
    /// restored (coins paid back, items back to the shop), once.
    Refund {
        /// The purchase's key.
        purchase: String,
    },
    /// Offers `with` a trade, open for `ttl_ms`: accepted, `give` moves from `player` to
    /// `with` and `take` from `with` to `player`. Nothing moves now (what `player` gives
    /// is checked now, and again at the acceptance).
    Offer {
        /// Who may accept it.
        with: PlayerId,
        /// What `player` gives.
        give: Holdings,
        /// What `player` receives.
        take: Holdings,
        /// How long it stays open, 1 to [`OFFER_TTL_MAX_MS`].
        ttl_ms: u64,
    },
    /// Accepts the open offer `offer` (its key) that `from` made to `player`: both sides
    /// move at once, or nothing does.
    Accept {
        /// Who made the offer.
        from: PlayerId,
        /// The offer's key.
        offer: String,
    },
    /// Withdraws `player`'s own open offer `offer` (its key).
    Cancel {
        /// The offer's key.
        offer: String,
    },
    /// A trade both players confirmed at once (no offer): `give` moves from `player` to
    /// `with`, `take` from `with` to `player`.
    Trade {
        /// The other player.
        with: PlayerId,
        /// What `player` gives.
        give: Holdings,
        /// What `player` receives.
        take: Holdings,
    },
    /// An operator's grant (audited by the admin API).
    Grant(Holdings),
    /// An operator's revocation: refused unless the player holds all of it.
    Revoke(Holdings),
}

impl TxKind {
    /// The ledger's name of the kind.
    pub fn name(&self) -> &'static str {
        match self {
            TxKind::Kill { .. } => "kill",
            TxKind::StarterKit => "starter_kit",
            TxKind::Purchase { .. } => "purchase",
            TxKind::Refund { .. } => "refund",
            TxKind::Offer { .. } => "offer",
            TxKind::Accept { .. } => "accept",
            TxKind::Cancel { .. } => "cancel",
            TxKind::Trade { .. } => "trade",
            TxKind::Grant(_) => "grant",
            TxKind::Revoke(_) => "revoke",
        }
    }

    /// What a store must read for [`plan`].
    pub fn touches(&self, player: PlayerId) -> Touches<'_> {
        let none = Touches::default();
        match self {
            TxKind::Purchase { shop, item, .. } => Touches {
                stock: Some((shop, item)),
                ..none
            },
            TxKind::Refund { purchase } => Touches {
                entry: Some((player, purchase)),
                ..none
            },
            TxKind::Trade { with, .. } => Touches {
                other: Some(*with),
                ..none
            },
            TxKind::Accept { from, offer } => Touches {
                other: Some(*from),
                entry: Some((*from, offer)),
                ..none
            },
            TxKind::Cancel { offer } => Touches {
                entry: Some((player, offer)),
                ..none
            },
            _ => none,
        }
    }
}

/// What a transaction reads besides its player's economy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Touches<'a> {
    /// The other player of a trade.
    pub other: Option<PlayerId>,
    /// The (shop, item) whose stock a purchase takes.
    pub stock: Option<(&'a str, &'a str)>,
    /// The ledger entry (player, key) a refund reverses (a purchase: a refund then also
    /// reads that shop's stock, named by the entry), an acceptance takes up or a
    /// cancellation withdraws (an offer).
    pub entry: Option<(PlayerId, &'a str)>,
}

/// What [`plan`] reads: the current states (`None`: never written).
#[derive(Clone, Debug, Default)]
pub struct Reads {
    /// The player's economy.
    pub player: Option<PlayerEconomy>,
    /// The other player's, for a trade.
    pub other: Option<PlayerEconomy>,
    /// The shop's stock of the item, for a purchase or a refund.
    pub stock: Option<ShopStock>,
    /// The ledger entry [`Touches::entry`] names.
    pub entry: Option<LedgerEntry>,
}

/// What a store writes for an applied transaction, all together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Writes {
    /// The player's new economy.
    pub player: PlayerEconomy,
    /// The other player's, for a trade.
    pub other: Option<(PlayerId, PlayerEconomy)>,
    /// The shop's new stock of one item: (shop, item, stock).
    pub stock: Option<(String, String, ShopStock)>,
    /// A ledger entry this transaction closes (a purchase refunded, an offer accepted or
    /// withdrawn): (its player, its key); its `closed_by` is set to this
    /// transaction's [`closer`].
    pub closes: Option<(PlayerId, String)>,
    /// The ledger entry to append.
    pub entry: LedgerEntry,
}

/// One applied transaction, append-only (but for the refund mark of a purchase).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Whose.
    pub player: PlayerId,
    /// Its idempotency key (unique per player).
    pub key: String,
    /// [`TxKind::name`].
    pub kind: String,
    /// When (Unix ms).
    pub at_ms: u64,
    /// The player's coins change.
    pub coins: i64,
    /// The player's item changes, by id (no zeros).
    pub items: BTreeMap<String, i64>,
    /// XP gained.
    pub xp: u64,
    /// Levels gained.
    pub levels: u32,
    /// The other player of a trade, and their changes.
    pub other: Option<PlayerId>,
    /// The other player's coins change.
    pub other_coins: i64,
    /// The other player's item changes.
    pub other_items: BTreeMap<String, i64>,
    /// The (shop, item) whose stock changed.
    pub shop: Option<(String, String)>,
    /// Units restocked before the purchase (created by the shop).
    pub restocked: u32,
    /// The stock's change (negative: sold).
    pub stock: i64,
    /// The unit price paid, for a purchase.
    pub price: u64,
    /// What a kill's loot could not fit (inventory full, wallet full): dropped, never held.
    pub lost_coins: u64,
    /// Items lost the same way.
    pub lost_items: BTreeMap<String, u32>,
    /// The purchase a refund reversed.
    pub refund_of: Option<String>,
    /// An offer's terms.
    pub offer: Option<OfferTerms>,
    /// For a purchase, the refund that reversed it; for an offer, the acceptance or
    /// withdrawal that closed it: `<player id>:<key>` ([`closer`]).
    pub closed_by: Option<String>,
}

impl LedgerEntry {
    /// The entry of `tx` before its changes are recorded.
    fn of(tx: &EconomyTx) -> LedgerEntry {
        LedgerEntry {
            player: tx.player,
            key: tx.key.clone(),
            kind: tx.kind.name().to_owned(),
            at_ms: tx.at_ms,
            coins: 0,
            items: BTreeMap::new(),
            xp: 0,
            levels: 0,
            other: None,
            other_coins: 0,
            other_items: BTreeMap::new(),
            shop: None,
            restocked: 0,
            stock: 0,
            price: 0,
            lost_coins: 0,
            lost_items: BTreeMap::new(),
            refund_of: None,
            offer: None,
            closed_by: None,
        }
    }
}

/// What a trade offer proposes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferTerms {
    /// Who may accept it.
    pub with: PlayerId,
    /// What the offering player gives.
    pub give: Holdings,
    /// What it receives.
    pub take: Holdings,
    /// Until when it may be accepted (Unix ms).
    pub open_until_ms: u64,
}

/// How an entry's `closed_by` names the transaction that closed it.
pub fn closer(tx: &EconomyTx) -> String {
    format!("{}:{}", tx.player.0, tx.key)
}

/// A store's answer to a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxOutcome {
    /// Applied now.
    Applied(LedgerEntry),
    /// The key was applied before: the earlier entry, nothing changed now.
    Duplicate(LedgerEntry),
    /// Refused: nothing changed.
    Refused(Refusal),
}

/// Why a transaction changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Refusal {
    /// The key is empty, too long or has other characters.
    #[error("the idempotency key must be 1 to {TX_KEY_BYTES_MAX} bytes of A-Z a-z 0-9 _ - . :")]
    BadKey,
    /// A count of 0 or over [`TX_ITEM_COUNT_MAX`], too many item kinds, an empty trade.
    #[error("bad amount: {0}")]
    BadAmount(String),
    /// No such shop.
    #[error("no shop {0:?}")]
    UnknownShop(String),
    /// No such item.
    #[error("no item {0:?}")]
    UnknownItem(String),
    /// The shop does not sell the item.
    #[error("shop {shop:?} does not sell {item:?}")]
    NotSold {
        /// The shop.
        shop: String,
        /// The item.
        item: String,
    },
    /// Too few coins.
    #[error("{needed} coins needed, {held} held")]
    InsufficientCoins {
        /// What the transaction needs.
        needed: u64,
        /// What the payer holds.
        held: u64,
    },
    /// Too few units of an item.
    #[error("{needed} {item} needed, {held} held")]
    InsufficientItems {
        /// The item.
        item: String,
        /// What the transaction needs.
        needed: u32,
        /// What the giver holds.
        held: u32,
    },
    /// The shop has too few in stock.
    #[error("{item} out of stock: {needed} wanted, {stock} left")]
    OutOfStock {
        /// The item.
        item: String,
        /// What the purchase wants.
        needed: u32,
        /// What the shop holds now.
        stock: u32,
    },
    /// The receiver's inventory has no room.
    #[error("the inventory has no room: {needed} slots needed, {slots} in all")]
    InventoryFull {
        /// Slots the result would take.
        needed: u64,
        /// Slots the inventory has.
        slots: u32,
    },
    /// The receiver's wallet would pass [`COINS_MAX`].
    #[error("the wallet would pass {COINS_MAX} coins")]
    WalletFull,
    /// No purchase of this player with that key.
    #[error("no purchase {0:?} of this player to refund")]
    NotRefundable(String),
    /// The purchase was refunded already (by the refund with this key).
    #[error("already refunded by {0:?}")]
    AlreadyRefunded(String),
    /// No open offer with that key to this player (never made, accepted, withdrawn or
    /// expired).
    #[error("no open offer {0:?} to accept or withdraw")]
    OfferNotOpen(String),
    /// The starter kit was delivered already.
    #[error("the starter kit was delivered already")]
    AlreadyDelivered,
    /// A trade with oneself.
    #[error("a trade needs two players")]
    SamePlayer,
}

/// Whether `key` is a valid idempotency key.
pub fn is_valid_key(key: &str) -> bool {
    (1..=TX_KEY_BYTES_MAX).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// A mismatch between the ledger and the states, found by [`reconcile`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch(pub String);

/// Checks that every player's holdings and every shop stock equal what the ledger says
/// they received and gave, starting from nothing (players) and `stock_max` (shops, given
/// by `initial_stock`). Returns every mismatch.
pub fn reconcile<'a>(
    ledger: impl IntoIterator<Item = &'a LedgerEntry>,
    players: &BTreeMap<PlayerId, PlayerEconomy>,
    stocks: &BTreeMap<(String, String), ShopStock>,
    initial_stock: impl Fn(&str, &str) -> u32,
) -> Vec<Mismatch> {
    let mut coins: BTreeMap<PlayerId, i128> = BTreeMap::new();
    let mut items: BTreeMap<(PlayerId, String), i128> = BTreeMap::new();
    let mut stock: BTreeMap<(String, String), i128> = BTreeMap::new();
    for e in ledger {
        *coins.entry(e.player).or_default() += i128::from(e.coins);
        for (item, d) in &e.items {
            *items.entry((e.player, item.clone())).or_default() += i128::from(*d);
        }
        if let Some(other) = e.other {
            *coins.entry(other).or_default() += i128::from(e.other_coins);
            for (item, d) in &e.other_items {
                *items.entry((other, item.clone())).or_default() += i128::from(*d);
            }
        }
        if let Some(key) = &e.shop {
            *stock.entry(key.clone()).or_default() += i128::from(e.restocked) + i128::from(e.stock);
        }
    }
    let mut out = Vec::new();
    for (player, state) in players {
        let want = coins.get(player).copied().unwrap_or(0);
        if i128::from(state.holdings.coins) != want {
            out.push(Mismatch(format!(
                "{player}: {} coins held, the ledger says {want}",
                state.holdings.coins
            )));
        }
        for (item, &n) in &state.holdings.items {
            let want = items.get(&(*player, item.clone())).copied().unwrap_or(0);
            if i128::from(n) != want {
                out.push(Mismatch(format!(
                    "{player}: {n} {item} held, the ledger says {want}"
                )));
            }
        }
    }
    for ((player, item), &want) in &items {
        let held = players
            .get(player)
            .and_then(|p| p.holdings.items.get(item))
            .copied()
            .unwrap_or(0);
        if want != i128::from(held) && held == 0 {
            out.push(Mismatch(format!(
                "{player}: no {item} held, the ledger says {want}"
            )));
        }
    }
    for ((shop, item), s) in stocks {
        let want = i128::from(initial_stock(shop, item))
            + stock
                .get(&(shop.clone(), item.clone()))
                .copied()
                .unwrap_or(0);
        if i128::from(s.stock) != want {
            out.push(Mismatch(format!(
                "shop {shop}: {} {item} in stock, the ledger says {want}",
                s.stock
            )));
        }
    }
    out
}
