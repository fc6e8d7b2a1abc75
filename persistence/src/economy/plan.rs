//! [`plan`]: what a transaction does to the states it reads, decided without IO.

use std::collections::BTreeMap;

use tessera_shared::config::{BalanceConfig, ShopGood};
use tessera_shared::ids::PlayerId;

use super::{
    COINS_MAX, EconomyTx, Holdings, LedgerEntry, OFFER_TTL_MAX_MS, OfferTerms, PlayerEconomy,
    Reads, Refusal, ShopStock, TX_ITEM_COUNT_MAX, TX_ITEM_KINDS_MAX, TxKind, Writes, XP_TOTAL_MAX,
    is_valid_key,
};

/// Milliseconds per minute, the unit of `restock_per_min`.
const MS_PER_MIN: u64 = 60_000;

/// Decides `tx` against `reads` under `balance`: the writes of the applied transaction, or
/// why it changes nothing. Pure: the same inputs give the same answer.
pub fn plan(balance: &BalanceConfig, tx: &EconomyTx, reads: Reads) -> Result<Writes, Refusal> {
    if !is_valid_key(&tx.key) {
        return Err(Refusal::BadKey);
    }
    let mut player = reads.player.unwrap_or_default();
    let mut entry = LedgerEntry::of(tx);
    let mut writes_other = None;
    let mut writes_stock = None;
    let mut closes = None;
    match &tx.kind {
        TxKind::Kill {
            coins,
            items,
            target_level,
        } => {
            check_lines(items)?;
            let room = COINS_MAX - player.holdings.coins;
            let kept = (*coins).min(room);
            player.holdings.coins += kept;
            entry.coins = signed(kept);
            entry.lost_coins = coins - kept;
            for (item, n) in items {
                let fits = units_that_fit(balance, &player.holdings.items, item).min(*n);
                if fits > 0 {
                    *player.holdings.items.entry(item.clone()).or_default() += fits;
                    *entry.items.entry(item.clone()).or_default() += i64::from(fits);
                }
                if fits < *n {
                    *entry.lost_items.entry(item.clone()).or_default() += n - fits;
                }
            }
            let level_before = player.level;
            let xp = balance.progression.kill_xp(player.level, *target_level);
            // Bounded so that stores keeping signed 64-bit integers hold it.
            player.xp = player.xp.saturating_add(xp).min(XP_TOTAL_MAX);
            player.level = level_for(balance, player.xp).max(player.level);
            player.kills = player.kills.saturating_add(1);
            entry.xp = xp;
            entry.levels = player.level - level_before;
        }
        TxKind::StarterKit => {
            if player.kit_delivered {
                return Err(Refusal::AlreadyDelivered);
            }
            let kit = &balance.economy;
            let mut grant = Holdings {
                coins: u64::from(kit.starter_coins),
                items: BTreeMap::new(),
            };
            for s in &kit.starter_items {
                grant
                    .items
                    .insert(balance.items[s.item].id.clone(), s.count);
            }
            credit(balance, &mut player.holdings, &grant)?;
            player.kit_delivered = true;
            set_deltas(
                &mut entry.coins,
                &mut entry.items,
                &grant,
                &Holdings::default(),
            );
        }
        TxKind::Purchase { shop, item, count } => {
            let (good, stored) = good_of(balance, shop, item, reads.stock)?;
            if *count == 0 || *count > TX_ITEM_COUNT_MAX {
                return Err(Refusal::BadAmount(format!(
                    "{count} units; 1 to {TX_ITEM_COUNT_MAX}"
                )));
            }
            let (now, restocked) = shop_stock_now(stored, good, tx.at_ms);
            if now.stock < *count {
                return Err(Refusal::OutOfStock {
                    item: item.clone(),
                    needed: *count,
                    stock: now.stock,
                });
            }
            // At most 10^9 coins (price 10^9 at 1000%... capped by u32 prices) times 10^6.
            let cost = good.price.saturating_mul(u64::from(*count));
            if player.holdings.coins < cost {
                return Err(Refusal::InsufficientCoins {
                    needed: cost,
                    held: player.holdings.coins,
                });
            }
            player.holdings.coins -= cost;
            let bought = Holdings {
                coins: 0,
                items: BTreeMap::from([(item.clone(), *count)]),
            };
            credit(balance, &mut player.holdings, &bought)?;
            entry.coins = -signed(cost);
            entry.items.insert(item.clone(), i64::from(*count));
            entry.shop = Some((shop.clone(), item.clone()));
            entry.restocked = restocked;
            entry.stock = -i64::from(*count);
            entry.price = good.price;
            writes_stock = Some((
                shop.clone(),
                item.clone(),
                ShopStock {
                    stock: now.stock - count,
                    since_ms: now.since_ms,
                },
            ));
        }
        TxKind::Refund { purchase } => {
            let bought = reads
                .entry
                .filter(|p| p.player == tx.player && p.kind == "purchase")
                .ok_or_else(|| Refusal::NotRefundable(purchase.clone()))?;
            if let Some(by) = bought.closed_by {
                return Err(Refusal::AlreadyRefunded(by));
            }
            let (shop, item) = bought
                .shop
                .clone()
                .ok_or_else(|| Refusal::NotRefundable(purchase.clone()))?;
            let count = u32::try_from(-bought.stock).unwrap_or(0);
            let paid = u64::try_from(-bought.coins).unwrap_or(0);
            let returned = Holdings {
                coins: 0,
                items: BTreeMap::from([(item.clone(), count)]),
            };
            debit(&mut player.holdings, &returned)?;
            credit(
                balance,
                &mut player.holdings,
                &Holdings {
                    coins: paid,
                    items: BTreeMap::new(),
                },
            )?;
            // The shop takes the units back even if the item or the shop left the
            // balance since, or the stock is full: exactly what was taken is restored.
            let (now, restocked) = match good_of(balance, &shop, &item, reads.stock) {
                Ok((good, stored)) => shop_stock_now(stored, good, tx.at_ms),
                Err(_) => (
                    reads.stock.unwrap_or(ShopStock {
                        stock: 0,
                        since_ms: tx.at_ms,
                    }),
                    0,
                ),
            };
            entry.coins = signed(paid);
            entry.items.insert(item.clone(), -i64::from(count));
            entry.shop = Some((shop.clone(), item.clone()));
            entry.restocked = restocked;
            entry.stock = i64::from(count);
            entry.refund_of = Some(purchase.clone());
            writes_stock = Some((
                shop,
                item,
                ShopStock {
                    stock: now.stock.saturating_add(count),
                    since_ms: now.since_ms,
                },
            ));
            closes = Some((tx.player, purchase.clone()));
        }
        TxKind::Offer {
            with,
            give,
            take,
            ttl_ms,
        } => {
            check_terms(tx.player, *with, give, take)?;
            if !(1..=OFFER_TTL_MAX_MS).contains(ttl_ms) {
                return Err(Refusal::BadAmount(format!(
                    "an offer open {ttl_ms} ms; 1 to {OFFER_TTL_MAX_MS}"
                )));
            }
            // Checked now so that a hopeless offer is refused at once; the acceptance
            // checks again.
            debit(&mut player.holdings.clone(), give)?;
            entry.other = Some(*with);
            entry.offer = Some(OfferTerms {
                with: *with,
                give: give.clone(),
                take: take.clone(),
                open_until_ms: tx.at_ms.saturating_add(*ttl_ms),
            });
        }
        TxKind::Accept { from, offer } => {
            let terms = open_offer(&reads.entry, *from, offer, tx.at_ms)?;
            if terms.with != tx.player {
                return Err(Refusal::OfferNotOpen(offer.clone()));
            }
            // The offering side gives `give` and takes `take`; this player the reverse.
            let mut other = reads.other.unwrap_or_default();
            trade(balance, &mut player, &mut other, &terms.take, &terms.give)?;
            set_deltas(&mut entry.coins, &mut entry.items, &terms.give, &terms.take);
            set_deltas(
                &mut entry.other_coins,
                &mut entry.other_items,
                &terms.take,
                &terms.give,
            );
            entry.other = Some(*from);
            writes_other = Some((*from, other));
            closes = Some((*from, offer.clone()));
        }
        TxKind::Cancel { offer } => {
            open_offer(&reads.entry, tx.player, offer, tx.at_ms)?;
            closes = Some((tx.player, offer.clone()));
        }
        TxKind::Trade { with, give, take } => {
            check_terms(tx.player, *with, give, take)?;
            let mut other = reads.other.unwrap_or_default();
            trade(balance, &mut player, &mut other, give, take)?;
            set_deltas(&mut entry.coins, &mut entry.items, take, give);
            set_deltas(&mut entry.other_coins, &mut entry.other_items, give, take);
            entry.other = Some(*with);
            writes_other = Some((*with, other));
        }
        TxKind::Grant(grant) => {
            check_holdings(grant)?;
            credit(balance, &mut player.holdings, grant)?;
            set_deltas(
                &mut entry.coins,
                &mut entry.items,
                grant,
                &Holdings::default(),
            );
        }
        TxKind::Revoke(revoked) => {
            check_holdings(revoked)?;
            debit(&mut player.holdings, revoked)?;
            set_deltas(
                &mut entry.coins,
                &mut entry.items,
                &Holdings::default(),
                revoked,
            );
        }
    }
    Ok(Writes {
        player,
        other: writes_other,
        stock: writes_stock,
        closes,
        entry,
    })
}

/// Checks the terms of a trade: two players, bounded amounts, something moving.
fn check_terms(
    player: PlayerId,
    with: PlayerId,
    give: &Holdings,
    take: &Holdings,
) -> Result<(), Refusal> {
    if with == player {
        return Err(Refusal::SamePlayer);
    }
    check_holdings(give)?;
    check_holdings(take)?;
    if give.coins == 0 && give.items.is_empty() && take.coins == 0 && take.items.is_empty() {
        return Err(Refusal::BadAmount("an empty trade".to_owned()));
    }
    Ok(())
}

/// Moves `give` from `player` to `other` and `take` from `other` to `player`, or nothing.
fn trade(
    balance: &BalanceConfig,
    player: &mut PlayerEconomy,
    other: &mut PlayerEconomy,
    give: &Holdings,
    take: &Holdings,
) -> Result<(), Refusal> {
    debit(&mut player.holdings, give)?;
    debit(&mut other.holdings, take)?;
    credit(balance, &mut player.holdings, take)?;
    credit(balance, &mut other.holdings, give)
}

/// The terms of `from`'s offer `key` (its ledger entry, read as `entry`) if it is open at
/// `now_ms`: made, neither accepted nor withdrawn, not expired.
fn open_offer(
    entry: &Option<LedgerEntry>,
    from: PlayerId,
    key: &str,
    now_ms: u64,
) -> Result<OfferTerms, Refusal> {
    let not_open = || Refusal::OfferNotOpen(key.to_owned());
    let entry = entry
        .as_ref()
        .filter(|e| e.player == from && e.kind == "offer" && e.closed_by.is_none())
        .ok_or_else(not_open)?;
    let terms = entry.offer.clone().ok_or_else(not_open)?;
    if now_ms > terms.open_until_ms {
        return Err(not_open());
    }
    Ok(terms)
}

/// The stock of `good` at `now_ms`, restocked from `stored` (`None`: the shop opens now,
/// full), and the units restocked. Restocking adds `restock_per_min` units a minute up to
/// `stock_max`; the time of a partial unit carries over (`since_ms` moves by whole
/// units), and a full shop accumulates nothing.
pub fn shop_stock_now(stored: Option<ShopStock>, good: &ShopGood, now_ms: u64) -> (ShopStock, u32) {
    let Some(s) = stored else {
        return (
            ShopStock {
                stock: good.stock_max,
                since_ms: now_ms,
            },
            0,
        );
    };
    let rate = u64::from(good.restock_per_min);
    if s.stock >= good.stock_max || rate == 0 {
        return (
            ShopStock {
                stock: s.stock,
                since_ms: now_ms.max(s.since_ms),
            },
            0,
        );
    }
    let elapsed = now_ms.saturating_sub(s.since_ms);
    let units = elapsed.saturating_mul(rate) / MS_PER_MIN;
    let room = u64::from(good.stock_max - s.stock);
    if units >= room {
        return (
            ShopStock {
                stock: good.stock_max,
                since_ms: now_ms.max(s.since_ms),
            },
            good.stock_max - s.stock,
        );
    }
    // units < room <= u32::MAX.
    let added = units as u32;
    (
        ShopStock {
            stock: s.stock + added,
            since_ms: s.since_ms + units * MS_PER_MIN / rate,
        },
        added,
    )
}

/// The good `item` of shop `shop`, and the stored stock (passed through).
fn good_of<'b>(
    balance: &'b BalanceConfig,
    shop: &str,
    item: &str,
    stored: Option<ShopStock>,
) -> Result<(&'b ShopGood, Option<ShopStock>), Refusal> {
    let s = balance
        .shop_index(shop)
        .map(|i| &balance.shops[i])
        .ok_or_else(|| Refusal::UnknownShop(shop.to_owned()))?;
    let index = balance
        .item_index(item)
        .ok_or_else(|| Refusal::UnknownItem(item.to_owned()))?;
    let good = s
        .goods
        .iter()
        .find(|g| g.item == index)
        .ok_or_else(|| Refusal::NotSold {
            shop: shop.to_owned(),
            item: item.to_owned(),
        })?;
    Ok((good, stored))
}

/// The level `xp` reaches: each level needs `xp_to_next` more, up to the cap.
fn level_for(balance: &BalanceConfig, xp: u64) -> u32 {
    let p = &balance.progression;
    let mut level = super::START_LEVEL;
    let mut needed: u64 = 0;
    while level < p.level_cap {
        needed = needed.saturating_add(p.xp_to_next(level));
        if xp < needed {
            break;
        }
        level += 1;
    }
    level
}

/// The stack size of `item`; 1 for an item the balance no longer has (it still takes a
/// slot per unit: never more room than it had).
fn stack_size(balance: &BalanceConfig, item: &str) -> u64 {
    balance
        .item_index(item)
        .map_or(1, |i| u64::from(balance.items[i].stack_size))
}

/// Inventory slots `items` take.
fn slots_used(balance: &BalanceConfig, items: &BTreeMap<String, u32>) -> u64 {
    items
        .iter()
        .map(|(item, &n)| u64::from(n).div_ceil(stack_size(balance, item)))
        .sum()
}

/// How many more units of `item` fit `items` (0 for an item the balance does not have).
fn units_that_fit(balance: &BalanceConfig, items: &BTreeMap<String, u32>, item: &str) -> u32 {
    let Some(index) = balance.item_index(item) else {
        return 0;
    };
    let stack = u64::from(balance.items[index].stack_size);
    let have = u64::from(items.get(item).copied().unwrap_or(0));
    let others = slots_used(balance, items) - have.div_ceil(stack);
    let slots = u64::from(balance.economy.inventory_slots);
    let room = slots.saturating_sub(others) * stack;
    u32::try_from(room.saturating_sub(have)).unwrap_or(u32::MAX)
}

/// Adds `h` to `to`, refusing (and leaving `to` as it was) past [`COINS_MAX`], the
/// inventory's slots, or for an item the balance does not have.
fn credit(balance: &BalanceConfig, to: &mut Holdings, h: &Holdings) -> Result<(), Refusal> {
    let coins = to.coins.checked_add(h.coins).filter(|&c| c <= COINS_MAX);
    let Some(coins) = coins else {
        return Err(Refusal::WalletFull);
    };
    let mut items = to.items.clone();
    for (item, &n) in &h.items {
        if balance.item_index(item).is_none() {
            return Err(Refusal::UnknownItem(item.clone()));
        }
        let held = items.entry(item.clone()).or_default();
        *held = held.checked_add(n).ok_or(Refusal::InventoryFull {
            needed: u64::MAX,
            slots: balance.economy.inventory_slots,
        })?;
    }
    let needed = slots_used(balance, &items);
    if needed > u64::from(balance.economy.inventory_slots) {
        return Err(Refusal::InventoryFull {
            needed,
            slots: balance.economy.inventory_slots,
        });
    }
    to.coins = coins;
    to.items = items;
    Ok(())
}

/// Takes `h` from `from`, refusing (and leaving `from` as it was) if it holds less.
fn debit(from: &mut Holdings, h: &Holdings) -> Result<(), Refusal> {
    if from.coins < h.coins {
        return Err(Refusal::InsufficientCoins {
            needed: h.coins,
            held: from.coins,
        });
    }
    for (item, &n) in &h.items {
        let held = from.items.get(item).copied().unwrap_or(0);
        if held < n {
            return Err(Refusal::InsufficientItems {
                item: item.clone(),
                needed: n,
                held,
            });
        }
    }
    from.coins -= h.coins;
    for (item, &n) in &h.items {
        if let Some(held) = from.items.get_mut(item) {
            *held -= n;
            if *held == 0 {
                from.items.remove(item);
            }
        }
    }
    Ok(())
}

/// The ledger's deltas of receiving `gained` and giving `lost`.
fn set_deltas(
    coins: &mut i64,
    items: &mut BTreeMap<String, i64>,
    gained: &Holdings,
    lost: &Holdings,
) {
    *coins = signed(gained.coins) - signed(lost.coins);
    for (item, &n) in &gained.items {
        *items.entry(item.clone()).or_default() += i64::from(n);
    }
    for (item, &n) in &lost.items {
        *items.entry(item.clone()).or_default() -= i64::from(n);
    }
    items.retain(|_, d| *d != 0);
}

/// Coins as a ledger delta: every amount that reaches here is at most [`COINS_MAX`].
fn signed(coins: u64) -> i64 {
    i64::try_from(coins.min(COINS_MAX)).unwrap_or(i64::MAX)
}

/// Checks the loot lines of a kill: few kinds, each count 1 to [`TX_ITEM_COUNT_MAX`].
fn check_lines(items: &[(String, u32)]) -> Result<(), Refusal> {
    if items.len() > TX_ITEM_KINDS_MAX {
        return Err(Refusal::BadAmount(format!(
            "{} item kinds; at most {TX_ITEM_KINDS_MAX}",
            items.len()
        )));
    }
    if let Some((item, n)) = items
        .iter()
        .find(|(_, n)| *n == 0 || *n > TX_ITEM_COUNT_MAX)
    {
        return Err(Refusal::BadAmount(format!(
            "{n} {item}; 1 to {TX_ITEM_COUNT_MAX} per item"
        )));
    }
    Ok(())
}

/// Checks holdings a request names: coins within [`COINS_MAX`], few kinds, counts 1 to
/// [`TX_ITEM_COUNT_MAX`].
fn check_holdings(h: &Holdings) -> Result<(), Refusal> {
    if h.coins > COINS_MAX {
        return Err(Refusal::BadAmount(format!(
            "{} coins; at most {COINS_MAX}",
            h.coins
        )));
    }
    if h.items.len() > TX_ITEM_KINDS_MAX {
        return Err(Refusal::BadAmount(format!(
            "{} item kinds; at most {TX_ITEM_KINDS_MAX}",
            h.items.len()
        )));
    }
    if let Some((item, n)) = h
        .items
        .iter()
        .find(|(_, n)| **n == 0 || **n > TX_ITEM_COUNT_MAX)
    {
        return Err(Refusal::BadAmount(format!(
            "{n} {item}; 1 to {TX_ITEM_COUNT_MAX} per item"
        )));
    }
    Ok(())
}
