//! The economy's decisions: each kind's rules, and by proptest that any interleaving of
//! transactions conserves coins and items (holdings and stock reconcile with the ledger)
//! and that a refused transaction changes nothing.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tessera_shared::config::{BalanceConfig, Config};

use super::*;

fn balance() -> BalanceConfig {
    Config::embedded_default().balance.clone()
}

/// The stores' semantics in memory: the reference the real stores are tested against.
#[derive(Default)]
struct Model {
    players: BTreeMap<PlayerId, PlayerEconomy>,
    stocks: BTreeMap<(String, String), ShopStock>,
    ledger: BTreeMap<(PlayerId, String), LedgerEntry>,
}

impl Model {
    fn apply(&mut self, balance: &BalanceConfig, tx: &EconomyTx) -> TxOutcome {
        if let Some(e) = self.ledger.get(&(tx.player, tx.key.clone())) {
            return TxOutcome::Duplicate(e.clone());
        }
        let touches = tx.kind.touches(tx.player);
        let entry = touches
            .entry
            .and_then(|(p, k)| self.ledger.get(&(p, k.to_owned())).cloned());
        let stock_key = stock_key(tx, entry.as_ref());
        let reads = Reads {
            player: self.players.get(&tx.player).cloned(),
            other: touches.other.and_then(|o| self.players.get(&o).cloned()),
            stock: stock_key.as_ref().and_then(|k| self.stocks.get(k).copied()),
            entry,
        };
        match plan(balance, tx, reads) {
            Err(refusal) => TxOutcome::Refused(refusal),
            Ok(w) => {
                self.players.insert(tx.player, w.player);
                if let Some((other, state)) = w.other {
                    self.players.insert(other, state);
                }
                if let Some((shop, item, stock)) = w.stock {
                    self.stocks.insert((shop, item), stock);
                }
                if let Some(closed) = w.closes {
                    let e = self.ledger.get_mut(&closed).expect("read above");
                    e.closed_by = Some(closer(tx));
                }
                self.ledger
                    .insert((tx.player, tx.key.clone()), w.entry.clone());
                TxOutcome::Applied(w.entry)
            }
        }
    }

    fn mismatches(&self, balance: &BalanceConfig) -> Vec<Mismatch> {
        reconcile(
            self.ledger.values(),
            &self.players,
            &self.stocks,
            |shop, item| initial_stock(balance, shop, item),
        )
    }
}

fn initial_stock(balance: &BalanceConfig, shop: &str, item: &str) -> u32 {
    let shop = &balance.shops[balance.shop_index(shop).expect("a shop")];
    let item = balance.item_index(item).expect("an item");
    shop.goods
        .iter()
        .find(|g| g.item == item)
        .expect("sold")
        .stock_max
}

fn tx(player: u64, key: &str, kind: TxKind) -> EconomyTx {
    EconomyTx {
        player: PlayerId(player),
        key: key.to_owned(),
        kind,
        at_ms: 1_000_000,
    }
}

fn applied(outcome: TxOutcome) -> LedgerEntry {
    match outcome {
        TxOutcome::Applied(e) => e,
        other => panic!("expected applied, got {other:?}"),
    }
}

fn refused(outcome: TxOutcome) -> Refusal {
    match outcome {
        TxOutcome::Refused(r) => r,
        other => panic!("expected refused, got {other:?}"),
    }
}

fn buy(item: &str, count: u32) -> TxKind {
    TxKind::Purchase {
        shop: "general_store".into(),
        item: item.into(),
        count,
    }
}

#[test]
fn the_starter_kit_is_delivered_once_whatever_the_key() {
    let b = balance();
    let mut m = Model::default();
    let e = applied(m.apply(&b, &tx(1, "kit", TxKind::StarterKit)));
    assert_eq!(e.coins, 50);
    assert_eq!(e.items["health_potion"], 3);
    assert!(
        matches!(m.apply(&b, &tx(1, "kit", TxKind::StarterKit)), TxOutcome::Duplicate(d) if d == e)
    );
    assert_eq!(
        refused(m.apply(&b, &tx(1, "kit-2", TxKind::StarterKit))),
        Refusal::AlreadyDelivered
    );
    assert_eq!(m.players[&PlayerId(1)].holdings.coins, 50);
    assert!(m.mismatches(&b).is_empty());
}

#[test]
fn a_purchase_takes_coins_and_stock_and_gives_the_item_or_changes_nothing() {
    let b = balance();
    let mut m = Model::default();
    applied(m.apply(&b, &tx(1, "kit", TxKind::StarterKit)));
    // 50 coins; potions cost 12.
    let e = applied(m.apply(&b, &tx(1, "p1", buy("health_potion", 4))));
    assert_eq!((e.coins, e.stock, e.price), (-48, -4, 12));
    let p = &m.players[&PlayerId(1)];
    assert_eq!(
        (p.holdings.coins, p.holdings.items["health_potion"]),
        (2, 7)
    );
    let before = (m.players.clone(), m.stocks.clone(), m.ledger.len());
    assert_eq!(
        refused(m.apply(&b, &tx(1, "p2", buy("health_potion", 1)))),
        Refusal::InsufficientCoins {
            needed: 12,
            held: 2
        }
    );
    assert_eq!(
        refused(m.apply(&b, &tx(1, "p3", buy("wolf_pelt", 1)))),
        Refusal::NotSold {
            shop: "general_store".into(),
            item: "wolf_pelt".into()
        }
    );
    assert_eq!(
        refused(m.apply(&b, &tx(1, "p4", buy("health_potion", 0)))),
        Refusal::BadAmount("0 units; 1 to 1000000".into())
    );
    assert_eq!(
        refused(m.apply(&b, &tx(1, "bad key!", buy("bread", 1)))),
        Refusal::BadKey
    );
    assert_eq!(
        (m.players.clone(), m.stocks.clone(), m.ledger.len()),
        before,
        "refusals change nothing"
    );
    // Out of stock: 200 potions, 4 sold, at the same instant (no restock).
    let rich = Holdings {
        coins: 100_000,
        items: BTreeMap::new(),
    };
    applied(m.apply(&b, &tx(2, "g", TxKind::Grant(rich))));
    assert_eq!(
        refused(m.apply(&b, &tx(2, "p", buy("health_potion", 197)))),
        Refusal::OutOfStock {
            item: "health_potion".into(),
            needed: 197,
            stock: 196
        }
    );
    assert!(m.mismatches(&b).is_empty());
}

#[test]
fn a_refund_restores_exactly_what_was_taken_once() {
    let b = balance();
    let mut m = Model::default();
    applied(m.apply(&b, &tx(1, "kit", TxKind::StarterKit)));
    let bought = applied(m.apply(&b, &tx(1, "p1", buy("bread", 10))));
    assert_eq!(bought.coins, -30, "bread at 150% of 2");
    let refund = TxKind::Refund {
        purchase: "p1".into(),
    };
    let e = applied(m.apply(&b, &tx(1, "r1", refund.clone())));
    assert_eq!((e.coins, e.stock, e.items["bread"]), (30, 10, -10));
    let p = &m.players[&PlayerId(1)];
    assert_eq!((p.holdings.coins, p.holdings.items["bread"]), (50, 5));
    assert_eq!(
        refused(m.apply(&b, &tx(1, "r2", refund.clone()))),
        Refusal::AlreadyRefunded("1:r1".into())
    );
    // Another player cannot refund it; a key that is no purchase is no refund.
    assert_eq!(
        refused(m.apply(&b, &tx(2, "r3", refund))),
        Refusal::NotRefundable("p1".into())
    );
    let kit = TxKind::Refund {
        purchase: "kit".into(),
    };
    assert_eq!(
        refused(m.apply(&b, &tx(1, "r4", kit))),
        Refusal::NotRefundable("kit".into())
    );
    assert_eq!(
        m.stocks[&("general_store".to_owned(), "bread".to_owned())].stock,
        500
    );
    assert!(m.mismatches(&b).is_empty());
}

#[test]
fn a_trade_moves_both_sides_or_nothing() {
    let b = balance();
    let mut m = Model::default();
    applied(m.apply(&b, &tx(1, "kit", TxKind::StarterKit)));
    applied(m.apply(&b, &tx(2, "kit", TxKind::StarterKit)));
    let trade = |give_coins, take_bread| TxKind::Trade {
        with: PlayerId(2),
        give: Holdings {
            coins: give_coins,
            items: BTreeMap::new(),
        },
        take: Holdings {
            coins: 0,
            items: BTreeMap::from([("bread".to_owned(), take_bread)]),
        },
    };
    let e = applied(m.apply(&b, &tx(1, "t1", trade(20, 5))));
    assert_eq!(
        (
            e.coins,
            e.other_coins,
            e.items["bread"],
            e.other_items["bread"]
        ),
        (-20, 20, 5, -5)
    );
    assert_eq!(m.players[&PlayerId(1)].holdings.items["bread"], 10);
    assert!(!m.players[&PlayerId(2)].holdings.items.contains_key("bread"));
    assert_eq!(
        refused(m.apply(&b, &tx(1, "t2", trade(1, 1)))),
        Refusal::InsufficientItems {
            item: "bread".into(),
            needed: 1,
            held: 0
        }
    );
    assert_eq!(
        refused(m.apply(
            &b,
            &tx(
                1,
                "t3",
                TxKind::Trade {
                    with: PlayerId(1),
                    give: Holdings {
                        coins: 1,
                        items: BTreeMap::new()
                    },
                    take: Holdings::default(),
                }
            )
        )),
        Refusal::SamePlayer
    );
    assert!(m.mismatches(&b).is_empty());
}

#[test]
fn an_offer_is_accepted_once_by_the_player_it_names_while_open() {
    let b = balance();
    let mut m = Model::default();
    applied(m.apply(&b, &tx(1, "kit", TxKind::StarterKit)));
    applied(m.apply(&b, &tx(2, "kit", TxKind::StarterKit)));
    let offer = |ttl_ms| TxKind::Offer {
        with: PlayerId(2),
        give: Holdings {
            coins: 0,
            items: BTreeMap::from([("health_potion".to_owned(), 2)]),
        },
        take: Holdings {
            coins: 20,
            items: BTreeMap::new(),
        },
        ttl_ms,
    };
    let e = applied(m.apply(&b, &tx(1, "o1", offer(60_000))));
    assert_eq!(
        (e.coins, e.items.len(), e.other),
        (0, 0, Some(PlayerId(2))),
        "nothing moves yet"
    );
    let accept = |key| TxKind::Accept {
        from: PlayerId(1),
        offer: key,
    };
    // Only the player it names may accept.
    assert_eq!(
        refused(m.apply(&b, &tx(3, "a0", accept("o1".into())))),
        Refusal::OfferNotOpen("o1".into())
    );
    let e = applied(m.apply(&b, &tx(2, "a1", accept("o1".into()))));
    assert_eq!(
        (e.coins, e.items["health_potion"], e.other_coins),
        (-20, 2, 20)
    );
    assert_eq!(m.players[&PlayerId(1)].holdings.coins, 70);
    assert_eq!(m.players[&PlayerId(2)].holdings.items["health_potion"], 5);
    assert_eq!(
        m.ledger[&(PlayerId(1), "o1".to_owned())]
            .closed_by
            .as_deref(),
        Some("2:a1")
    );
    // Once.
    assert_eq!(
        refused(m.apply(&b, &tx(2, "a2", accept("o1".into())))),
        Refusal::OfferNotOpen("o1".into())
    );
    // Withdrawn: no longer open.
    let potions = |n| Holdings {
        coins: 0,
        items: BTreeMap::from([("health_potion".to_owned(), n)]),
    };
    applied(m.apply(&b, &tx(1, "g", TxKind::Grant(potions(10)))));
    applied(m.apply(&b, &tx(1, "o2", offer(60_000))));
    applied(m.apply(&b, &tx(1, "c2", TxKind::Cancel { offer: "o2".into() })));
    assert_eq!(
        refused(m.apply(&b, &tx(2, "a3", accept("o2".into())))),
        Refusal::OfferNotOpen("o2".into())
    );
    // Expired.
    applied(m.apply(&b, &tx(1, "o3", offer(1))));
    let late = EconomyTx {
        at_ms: 1_000_002,
        ..tx(2, "a4", accept("o3".into()))
    };
    assert_eq!(
        refused(m.apply(&b, &late)),
        Refusal::OfferNotOpen("o3".into())
    );
    // What the offering player no longer holds at the acceptance: nothing moves.
    applied(m.apply(&b, &tx(1, "o4", offer(60_000))));
    applied(m.apply(&b, &tx(1, "rv", TxKind::Revoke(potions(10)))));
    assert!(matches!(
        refused(m.apply(&b, &tx(2, "a5", accept("o4".into())))),
        Refusal::InsufficientItems { .. }
    ));
    // An offer of what one does not have is refused at once.
    let greedy = TxKind::Offer {
        with: PlayerId(2),
        give: Holdings {
            coins: 1_000,
            items: BTreeMap::new(),
        },
        take: Holdings::default(),
        ttl_ms: 1_000,
    };
    assert!(matches!(
        refused(m.apply(&b, &tx(1, "o5", greedy))),
        Refusal::InsufficientCoins { .. }
    ));
    assert!(m.mismatches(&b).is_empty());
}

#[test]
fn kills_level_up_and_lose_what_does_not_fit() {
    let b = balance();
    let mut m = Model::default();
    // Bandit masks stack by 5 and the inventory has 24 slots: 120 fit.
    let kill = |masks, target_level| TxKind::Kill {
        coins: 7,
        items: vec![("bandit_mask".to_owned(), masks)],
        target_level,
    };
    // kill_xp: max(1, 20 * target_level - 5 * max(0, level - target_level)).
    let e = applied(m.apply(&b, &tx(1, "kill:1", kill(130, 5))));
    assert_eq!(
        (e.items["bandit_mask"], e.lost_items["bandit_mask"]),
        (120, 10)
    );
    // Level 1 needs 50 * 1 * 2 = 100 XP to reach 2, level 2 needs 300 more.
    assert_eq!((e.xp, e.levels, m.players[&PlayerId(1)].level), (100, 1, 2));
    let e = applied(m.apply(&b, &tx(1, "kill:2", kill(1, 14))));
    assert_eq!((e.xp, e.levels, e.lost_items["bandit_mask"]), (280, 0, 1));
    // XP counts against the level the player has when the kill is applied: at level 2,
    // an NPC of level 1 gives 20 - 5.
    let e = applied(m.apply(&b, &tx(1, "kill:3", kill(1, 1))));
    assert_eq!((e.xp, e.levels), (15, 0));
    let e = applied(m.apply(&b, &tx(1, "kill:4", kill(1, 1))));
    assert_eq!((e.xp, e.levels), (15, 1));
    let p = &m.players[&PlayerId(1)];
    assert_eq!((p.level, p.xp, p.kills, p.holdings.coins), (3, 410, 4, 28));
    // Far past the cap: the level stops there, the XP counts.
    for n in 0..100 {
        applied(m.apply(&b, &tx(1, &format!("kill:big:{n}"), kill(1, 1000))));
    }
    let p = &m.players[&PlayerId(1)];
    assert_eq!(p.level, b.progression.level_cap);
    assert!(p.xp > 1_000_000);
    assert!(m.mismatches(&b).is_empty());
}

#[test]
fn restocking_refills_by_the_minute_up_to_the_maximum() {
    let b = balance();
    let shop = &b.shops[b.shop_index("general_store").unwrap()];
    let potion = shop.goods[0]; // 200 max, 20 a minute: one every 3 s.
    let (s, r) = shop_stock_now(
        Some(ShopStock {
            stock: 100,
            since_ms: 0,
        }),
        &potion,
        10_000,
    );
    assert_eq!(
        (s, r),
        (
            ShopStock {
                stock: 103,
                since_ms: 9_000
            },
            3
        ),
        "the partial unit carries over"
    );
    let (s, r) = shop_stock_now(Some(s), &potion, 12_000);
    assert_eq!((s.stock, r), (104, 1));
    let (s, r) = shop_stock_now(Some(s), &potion, 10_000_000);
    assert_eq!((s.stock, r), (200, 96));
    let (s, r) = shop_stock_now(None, &potion, 5);
    assert_eq!(
        (s, r),
        (
            ShopStock {
                stock: 200,
                since_ms: 5
            },
            0
        )
    );
    // A clock going backwards restocks nothing.
    let (s, r) = shop_stock_now(
        Some(ShopStock {
            stock: 1,
            since_ms: 50_000,
        }),
        &potion,
        10,
    );
    assert_eq!((s.stock, r), (1, 0));
}

/// One step of a random history.
#[derive(Clone, Debug)]
enum Step {
    Kit(u64),
    Kill(u64, u64, usize, u32, u32),
    Buy(u64, usize, u32),
    Refund(u64, usize),
    Trade(u64, u64, u64, usize, u32),
    Offer(u64, u64, u64, usize, u32, u64),
    Accept(u64, u64, usize),
    Cancel(u64, usize),
    Grant(u64, u64, usize, u32),
    Revoke(u64, u64, usize, u32),
    /// Replays an earlier transaction (a retry).
    Replay(usize),
    /// Time passes (restocking).
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    let p = 1..4u64;
    prop_oneof![
        p.clone().prop_map(Step::Kit),
        (p.clone(), 0..200u64, 0..5usize, 1..200u32, 1..40u32)
            .prop_map(|(a, b, c, d, e)| Step::Kill(a, b, c, d, e)),
        (p.clone(), 0..2usize, 1..300u32).prop_map(|(a, b, c)| Step::Buy(a, b, c)),
        (p.clone(), 0..40usize).prop_map(|(a, b)| Step::Refund(a, b)),
        (p.clone(), p.clone(), 0..100u64, 0..5usize, 0..30u32)
            .prop_map(|(a, b, c, d, e)| Step::Trade(a, b, c, d, e)),
        (p.clone(), 0..1000u64, 0..5usize, 1..100u32)
            .prop_map(|(a, b, c, d)| Step::Grant(a, b, c, d)),
        (p.clone(), 0..100u64, 0..5usize, 1..50u32)
            .prop_map(|(a, b, c, d)| Step::Revoke(a, b, c, d)),
        (
            p.clone(),
            p.clone(),
            0..100u64,
            0..5usize,
            1..30u32,
            1..200_000u64
        )
            .prop_map(|(a, b, c, d, e, f)| Step::Offer(a, b, c, d, e, f)),
        (p.clone(), p.clone(), 0..40usize).prop_map(|(a, b, c)| Step::Accept(a, b, c)),
        (p.clone(), 0..40usize).prop_map(|(a, b)| Step::Cancel(a, b)),
        (0..40usize).prop_map(Step::Replay),
        (0..120_000u64).prop_map(Step::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_interleaving_conserves_coins_and_items(steps in prop::collection::vec(step(), 1..80)) {
        let b = balance();
        let ids: Vec<String> = b.items.iter().map(|i| i.id.clone()).collect();
        let goods = ["health_potion", "bread"];
        let mut m = Model::default();
        let mut done: Vec<EconomyTx> = Vec::new();
        let mut now = 1_000_000u64;
        for (n, s) in steps.into_iter().enumerate() {
            let key = format!("k{n}");
            let one = |id: usize, count: u32| BTreeMap::from([(ids[id % ids.len()].clone(), count)]);
            let t = match s {
                Step::Wait(ms) => { now += ms; continue; }
                Step::Replay(i) => match done.get(i) { Some(t) => t.clone(), None => continue },
                Step::Kit(p) => tx(p, &key, TxKind::StarterKit),
                Step::Kill(p, coins, item, count, target_level) => tx(p, &key, TxKind::Kill {
                    coins, items: vec![(ids[item % ids.len()].clone(), count)], target_level,
                }),
                Step::Buy(p, good, count) => tx(p, &key, buy(goods[good], count)),
                Step::Refund(p, i) => tx(p, &key, TxKind::Refund { purchase: format!("k{i}") }),
                Step::Trade(a, b2, coins, item, count) => {
                    let take = if count == 0 { BTreeMap::new() } else { one(item, count) };
                    tx(a, &key, TxKind::Trade {
                        with: PlayerId(b2),
                        give: Holdings { coins, items: BTreeMap::new() },
                        take: Holdings { coins: 0, items: take },
                    })
                }
                Step::Offer(a, b2, coins, item, count, ttl_ms) => tx(a, &key, TxKind::Offer {
                    with: PlayerId(b2),
                    give: Holdings { coins, items: BTreeMap::new() },
                    take: Holdings { coins: 0, items: one(item, count) },
                    ttl_ms,
                }),
                Step::Accept(p, from, i) => tx(p, &key, TxKind::Accept { from: PlayerId(from), offer: format!("k{i}") }),
                Step::Cancel(p, i) => tx(p, &key, TxKind::Cancel { offer: format!("k{i}") }),
                Step::Grant(p, coins, item, count) => tx(p, &key, TxKind::Grant(Holdings { coins, items: one(item, count) })),
                Step::Revoke(p, coins, item, count) => tx(p, &key, TxKind::Revoke(Holdings { coins, items: one(item, count) })),
            };
            let t = EconomyTx { at_ms: now, ..t };
            let before = (m.players.clone(), m.stocks.clone(), m.ledger.clone());
            match m.apply(&b, &t) {
                TxOutcome::Applied(_) => done.push(t),
                TxOutcome::Duplicate(_) | TxOutcome::Refused(_) => {
                    prop_assert_eq!(&before.0, &m.players);
                    prop_assert_eq!(&before.1, &m.stocks);
                    prop_assert_eq!(&before.2, &m.ledger);
                }
            }
            let mismatches = m.mismatches(&b);
            prop_assert!(mismatches.is_empty(), "{:?}", mismatches);
            for p in m.players.values() {
                prop_assert!(p.holdings.coins <= COINS_MAX);
                let slots: u64 = p.holdings.items.iter().map(|(i, &n)| {
                    u64::from(n).div_ceil(u64::from(b.items[b.item_index(i).unwrap()].stack_size))
                }).sum();
                prop_assert!(slots <= u64::from(b.economy.inventory_slots));
                prop_assert!(p.holdings.items.values().all(|&n| n > 0));
            }
        }
    }
}
