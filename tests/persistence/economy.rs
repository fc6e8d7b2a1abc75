//! The economy store contract (`tessera::persistence::economy`), run against both
//! implementations like the snapshot store's: the embedded redb store always, MongoDB
//! (multi-document transactions) when the test services are up.

use std::collections::BTreeMap;
use std::sync::Arc;

use tessera::persistence::economy::*;
use tessera::shared::config::{BalanceConfig, Config};

use super::*;

fn balance() -> Arc<BalanceConfig> {
    Arc::new(Config::embedded_default().balance.clone())
}

fn tx(player: u64, key: &str, kind: TxKind) -> EconomyTx {
    EconomyTx {
        player: PlayerId(player),
        key: key.to_owned(),
        kind,
        at_ms: 1_000_000,
    }
}

fn buy(item: &str, count: u32) -> TxKind {
    TxKind::Purchase {
        shop: "general_store".into(),
        item: item.into(),
        count,
    }
}

async fn apply<S: EconomyStore>(store: &S, t: &EconomyTx) -> TxOutcome {
    store
        .apply_tx(balance(), t)
        .await
        .expect("the store answers")
}

async fn check_transactions_apply_refuse_and_reconcile<S: EconomyStore>(store: &S) {
    let b = balance();
    let p = PlayerId(7);
    assert_eq!(store.economy_of(p).await.unwrap(), None);
    let TxOutcome::Applied(kit) = apply(store, &tx(7, "kit", TxKind::StarterKit)).await else {
        panic!("the kit is delivered");
    };
    // A retry is the same entry, nothing changed.
    assert_eq!(
        apply(store, &tx(7, "kit", TxKind::StarterKit)).await,
        TxOutcome::Duplicate(kit.clone())
    );
    assert_eq!(
        apply(store, &tx(7, "kit-again", TxKind::StarterKit)).await,
        TxOutcome::Refused(Refusal::AlreadyDelivered)
    );
    let TxOutcome::Applied(bought) = apply(store, &tx(7, "buy-1", buy("bread", 4))).await else {
        panic!("bread is bought");
    };
    assert_eq!((bought.coins, bought.stock), (-12, -4));
    // Refusals write nothing: not the wallet, not the stock, not the ledger.
    let before = store.economy_audit().await.unwrap();
    for (key, kind, want) in [
        (
            "buy-2",
            buy("health_potion", 4),
            Refusal::InsufficientCoins {
                needed: 48,
                held: 38,
            },
        ),
        (
            "buy-3",
            buy("bread", 501),
            Refusal::OutOfStock {
                item: "bread".into(),
                needed: 501,
                stock: 496,
            },
        ),
        (
            "refund-x",
            TxKind::Refund {
                purchase: "kit".into(),
            },
            Refusal::NotRefundable("kit".into()),
        ),
    ] {
        assert_eq!(
            apply(store, &tx(7, key, kind)).await,
            TxOutcome::Refused(want)
        );
    }
    let after = store.economy_audit().await.unwrap();
    assert_eq!(before.players, after.players);
    assert_eq!(before.stocks, after.stocks);
    assert_eq!(before.ledger.len(), after.ledger.len());
    // A refund restores exactly what was taken, once.
    let refund = TxKind::Refund {
        purchase: "buy-1".into(),
    };
    let TxOutcome::Applied(back) = apply(store, &tx(7, "refund-1", refund.clone())).await else {
        panic!("the purchase is refunded");
    };
    assert_eq!((back.coins, back.stock, back.items["bread"]), (12, 4, -4));
    assert_eq!(
        apply(store, &tx(7, "refund-2", refund)).await,
        TxOutcome::Refused(Refusal::AlreadyRefunded("7:refund-1".into()))
    );
    // A trade with a second player moves both sides.
    apply(store, &tx(8, "kit", TxKind::StarterKit)).await;
    let trade = TxKind::Trade {
        with: PlayerId(8),
        give: Holdings {
            coins: 10,
            items: BTreeMap::new(),
        },
        take: Holdings {
            coins: 0,
            items: BTreeMap::from([("bread".to_owned(), 5)]),
        },
    };
    assert!(matches!(
        apply(store, &tx(7, "trade-1", trade)).await,
        TxOutcome::Applied(_)
    ));
    let mine = store.economy_of(p).await.unwrap().unwrap();
    assert_eq!(
        (mine.holdings.coins, mine.holdings.items["bread"]),
        (40, 10)
    );
    let theirs = store.economy_of(PlayerId(8)).await.unwrap().unwrap();
    assert_eq!(theirs.holdings.coins, 60);
    assert!(!theirs.holdings.items.contains_key("bread"));
    // The ledger, newest first, includes the trade on both sides.
    let ledger = store.ledger_of(PlayerId(8), 10).await.unwrap();
    let keys: Vec<&str> = ledger.iter().map(|e| e.key.as_str()).collect();
    assert!(
        keys.contains(&"trade-1") && keys.contains(&"kit"),
        "{keys:?}"
    );
    let ledger = store.ledger_of(p, 2).await.unwrap();
    assert_eq!(ledger.len(), 2);
    let audit = store.economy_audit().await.unwrap();
    assert!(
        audit.mismatches(&b).is_empty(),
        "{:?}",
        audit.mismatches(&b)
    );
    // Two kits, the purchase, its refund and the trade.
    assert_eq!(audit.ledger.len(), 5);
    // An offer, accepted by the player it names: both sides move then, once.
    let offer = TxKind::Offer {
        with: PlayerId(8),
        give: Holdings {
            coins: 0,
            items: BTreeMap::from([("bread".to_owned(), 2)]),
        },
        take: Holdings {
            coins: 6,
            items: BTreeMap::new(),
        },
        ttl_ms: 60_000,
    };
    assert!(matches!(
        apply(store, &tx(7, "offer-1", offer)).await,
        TxOutcome::Applied(_)
    ));
    let offers: Vec<String> = store
        .ledger_of(PlayerId(8), 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "offer")
        .map(|e| e.key)
        .collect();
    assert_eq!(
        offers,
        ["offer-1"],
        "an offer is on the ledger of the player it names"
    );
    let accept = TxKind::Accept {
        from: p,
        offer: "offer-1".into(),
    };
    assert!(matches!(
        apply(store, &tx(8, "accept-1", accept.clone())).await,
        TxOutcome::Applied(_)
    ));
    assert_eq!(
        apply(store, &tx(8, "accept-2", accept)).await,
        TxOutcome::Refused(Refusal::OfferNotOpen("offer-1".into()))
    );
    let mine = store.economy_of(p).await.unwrap().unwrap();
    assert_eq!((mine.holdings.coins, mine.holdings.items["bread"]), (46, 8));
    let audit = store.economy_audit().await.unwrap();
    assert!(
        audit.mismatches(&b).is_empty(),
        "{:?}",
        audit.mismatches(&b)
    );
    assert_eq!(audit.ledger.len(), 7, "and the offer and its acceptance");
}

/// Many concurrent deliveries of the same starter kit, half with the same key and half
/// with keys of their own: exactly one kit.
async fn check_concurrent_kit_deliveries_give_one_kit<S: EconomyStore + Clone + 'static>(
    a: &S,
    b: &S,
    n: usize,
) {
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let key = if i % 4 < 2 {
            "kit".to_owned()
        } else {
            format!("kit-{i}")
        };
        tasks.push(tokio::spawn(async move {
            // A caller retries what the store could not answer, with the same key.
            loop {
                match store
                    .apply_tx(balance(), &tx(9, &key, TxKind::StarterKit))
                    .await
                {
                    Ok(outcome) => return outcome,
                    Err(e) if e.is_retryable() => tokio::task::yield_now().await,
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    let mut applied = 0;
    for t in tasks {
        match t.await.unwrap() {
            TxOutcome::Applied(_) => applied += 1,
            TxOutcome::Duplicate(_) | TxOutcome::Refused(Refusal::AlreadyDelivered) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(applied, 1);
    let state = a.economy_of(PlayerId(9)).await.unwrap().unwrap();
    assert_eq!(state.holdings.coins, 50);
    assert_eq!(state.holdings.items["health_potion"], 3);
    let audit = a.economy_audit().await.unwrap();
    assert_eq!(audit.ledger.len(), 1);
}

/// Concurrent purchases and trades among a few players conserve coins and items.
async fn check_concurrent_transactions_conserve<S: EconomyStore + Clone + 'static>(a: &S, b: &S) {
    for p in 1..=4 {
        apply(a, &tx(p, "kit", TxKind::StarterKit)).await;
        apply(
            a,
            &tx(
                p,
                "grant",
                TxKind::Grant(Holdings {
                    coins: 1_000,
                    items: BTreeMap::new(),
                }),
            ),
        )
        .await;
    }
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let p = i % 4 + 1;
        let kind = match i % 3 {
            0 => buy(
                if i % 2 == 0 { "bread" } else { "health_potion" },
                (i % 7 + 1) as u32,
            ),
            1 => TxKind::Trade {
                with: PlayerId((p % 4) + 1),
                give: Holdings {
                    coins: i % 50,
                    items: BTreeMap::new(),
                },
                take: Holdings {
                    coins: 0,
                    items: BTreeMap::from([("bread".to_owned(), 1)]),
                },
            },
            _ => TxKind::Refund {
                purchase: format!("t{}", i - 2),
            },
        };
        let t = tx(p, &format!("t{i}"), kind);
        tasks.push(tokio::spawn(async move {
            loop {
                match store.apply_tx(balance(), &t).await {
                    Ok(outcome) => return outcome,
                    Err(e) if e.is_retryable() => tokio::task::yield_now().await,
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    // Keys are unique here: a duplicate is the task's own earlier attempt, which the
    // store applied though the caller saw no answer (a timeout) and retried.
    let mut applied = 0;
    for t in tasks {
        if let TxOutcome::Applied(_) | TxOutcome::Duplicate(_) = t.await.unwrap() {
            applied += 1;
        }
    }
    assert!(applied > 50, "{applied} of 200 applied");
    let audit = a.economy_audit().await.unwrap();
    let b = balance();
    assert!(
        audit.mismatches(&b).is_empty(),
        "{:?}",
        audit.mismatches(&b)
    );
    assert_eq!(audit.ledger.len(), 8 + applied);
}

conformance! {
    economy_transactions_apply_refuse_and_reconcile => |a, b| check_transactions_apply_refuse_and_reconcile(&a);
    economy_concurrent_kit_deliveries_give_one_kit => |a, b| check_concurrent_kit_deliveries_give_one_kit(&a, &b, 1_000);
    economy_concurrent_transactions_conserve => |a, b| check_concurrent_transactions_conserve(&a, &b);
}

/// MongoDB: a transaction the store gave up on (no answer in time: here a write waits on
/// a document another client's open transaction holds, like one a killed node left) is
/// never committed afterwards. Before, the attempt went on detached after the timeout
/// and committed once the document was free, while its caller, told "no answer", had
/// tried the key again and could have been refused.
#[test]
fn economy_mongo_a_transaction_given_up_never_commits_later() {
    use mongodb::bson::{Document, doc};
    let test = "persistence::economy_mongo_given_up_never_commits";
    let Some(uri) = services::mongo_uri(test) else {
        return;
    };
    crate::util::runtime().block_on(async {
        let db = unique("tessera_test");
        let store = MongoStore::connect(&uri, &db).await.unwrap();
        let grant = |key: &str| {
            tx(
                7,
                key,
                TxKind::Grant(Holdings {
                    coins: 5,
                    items: BTreeMap::new(),
                }),
            )
        };
        assert!(matches!(
            apply(&store, &grant("g0")).await,
            TxOutcome::Applied(_)
        ));
        // Another client holds player 7's document in an open transaction.
        let raw = mongodb::Client::with_uri_str(&uri).await.unwrap();
        let players = raw.database(&db).collection::<Document>("economy_players");
        let mut holder = raw.start_session().await.unwrap();
        holder.start_transaction().await.unwrap();
        players
            .update_one(doc! { "_id": 7i64 }, doc! { "$set": { "held": true } })
            .session(&mut holder)
            .await
            .unwrap();
        let given_up = store.apply_tx(balance(), &grant("g1")).await;
        assert!(given_up.is_err(), "{given_up:?}");
        // The document is free again; the attempt given up must not commit now.
        holder.abort_transaction().await.unwrap();
        tokio::time::sleep(tessera::persistence::mongo::OPERATION_TIMEOUT * 2).await;
        let ledger = store.ledger_of(PlayerId(7), 10).await.unwrap();
        assert!(
            ledger.iter().all(|e| e.key != "g1"),
            "a transaction reported as failed was committed later: {ledger:?}"
        );
        // Sent again, it is applied, once.
        assert!(matches!(
            apply(&store, &grant("g1")).await,
            TxOutcome::Applied(_)
        ));
        assert!(matches!(
            apply(&store, &grant("g1")).await,
            TxOutcome::Duplicate(_)
        ));
        let audit = store.economy_audit().await.unwrap();
        assert!(audit.mismatches(&balance()).is_empty());
    });
}
