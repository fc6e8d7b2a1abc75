//! The economy end to end: kills in the simulation grant loot to the killer; a login
//! delivers the starter kit once; operators read, grant and revoke over the admin API.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tessera::regions::io::{KillReward, PlayerInput, Teleport, TickInput};
use tessera::shared::config::Config;
use tessera::shared::ids::{NetId, PlayerId};
use tessera::shared::math::Vec2;

use crate::admin::{admin_addr, http, json, node_with_keys};
use crate::net::{client_runtime, login, start_with};
use crate::util::{first_region, join_at, region};
use tessera::shared::protocol::messages::{ControlS2c, EconomyS2c, RefusalCode, TxOutcomeS2c};

const P: PlayerId = PlayerId(1);

/// Joins P in the first region of the embedded default, walks up to the nearest hostile
/// NPC it sees (a teleport each tick onto its last position) and hits it until it dies.
/// Returns every kill reward of the run, and the id of the NPC attacked first.
fn hunt(ticks: u32) -> (Vec<KillReward>, Option<NetId>) {
    let config = Config::embedded_default().clone();
    let hostile: Vec<u16> = config
        .balance
        .archetypes
        .iter()
        .enumerate()
        .filter(|(_, a)| a.hostile)
        .map(|(i, _)| i as u16)
        .collect();
    let centre = first_region(&config).spawn_point;
    let mut region = region(config);
    join_at(&mut region, P, centre);
    let mut seen: BTreeMap<NetId, Vec2> = BTreeMap::new();
    let mut rewards = Vec::new();
    let mut first = None;
    let mut target: Option<NetId> = None;
    for seq in 1..=ticks {
        let mut input = TickInput::default();
        if let Some(t) = target
            && let Some(&at) = seen.get(&t)
        {
            input.teleports.push(Teleport { player: P, to: at });
        }
        input.inputs.push(PlayerInput {
            player: P,
            seq,
            move_m: Vec2::ZERO,
            attack: target,
        });
        let out = region.step(input);
        rewards.extend(out.kills.iter().cloned());
        for diff in &out.interest.observers {
            for v in out.interest.updated(diff) {
                if hostile.contains(&v.archetype) && v.health > 0.0 {
                    seen.insert(v.id, v.position);
                } else {
                    seen.remove(&v.id);
                }
            }
            for id in out.interest.left_ids(diff) {
                seen.remove(id);
            }
        }
        if target.is_some_and(|t| !seen.contains_key(&t)) {
            target = None;
        }
        if target.is_none() {
            target = seen.keys().next().copied();
            first = first.or(target);
        }
    }
    (rewards, first)
}

#[test]
fn a_kill_grants_the_killer_its_loot_the_same_every_run() {
    let (rewards, first) = hunt(600);
    let first = first.expect("a hostile NPC in sight");
    assert!(!rewards.is_empty(), "no kill in 600 ticks");
    let config = Config::embedded_default();
    for r in &rewards {
        assert_eq!(r.player, P);
        let archetype = &config.balance.archetypes[usize::from(r.archetype)];
        assert!(archetype.hostile);
        assert_eq!(r.target_level, archetype.level);
        // Every hostile archetype of the default drops coins with chance 1.
        assert!(r.coins > 0, "{r:?}");
    }
    assert_eq!(
        rewards[0].npc, first,
        "the first NPC attacked is the first killed"
    );
    // One reward per NPC.
    let mut npcs: Vec<NetId> = rewards.iter().map(|r| r.npc).collect();
    npcs.sort();
    npcs.dedup();
    assert_eq!(npcs.len(), rewards.len());
    // Deterministic: the same run drops the same loot.
    assert_eq!(hunt(600).0, rewards);
}

/// `GET /v1/players/{player}/economy` as JSON.
fn economy_of(addr: std::net::SocketAddr, key: &str, player: u64) -> serde_json::Value {
    let (status, body) = http(
        addr,
        "GET",
        &format!("/v1/players/{player}/economy"),
        Some(key),
        None,
    );
    assert_eq!(status, 200, "{body}");
    json(&body)
}

/// `POST /v1/players/{player}/{what}` with `body`: (status, JSON).
fn post(
    addr: std::net::SocketAddr,
    key: &str,
    player: u64,
    what: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let (status, body) = http(
        addr,
        "POST",
        &format!("/v1/players/{player}/{what}"),
        Some(key),
        Some(body),
    );
    (status, json(&body))
}

#[test]
fn a_login_delivers_the_starter_kit_once_and_operators_grant_and_revoke() {
    let (node, [viewer, _, admin]) = node_with_keys();
    let addr = admin_addr(&node);
    let rt = client_runtime();
    let player = rt.block_on(async {
        let client = login(&node, "ada").await.unwrap();
        let player = client.welcome().player.0;
        client.logout().await.unwrap();
        player
    });
    // The kit is committed after the login is answered: wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let state = loop {
        let state = economy_of(addr, &viewer, player);
        if state["starter_kit_delivered"] == true {
            break state;
        }
        assert!(
            Instant::now() < deadline,
            "no starter kit within 10 s: {state}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let kit = &Config::embedded_default().balance.economy;
    assert_eq!(state["coins"], u64::from(kit.starter_coins));
    assert_eq!(state["items"]["health_potion"], 3);
    assert_eq!(
        (state["level"].as_u64(), state["xp"].as_u64()),
        (Some(1), Some(0))
    );
    // A second login: no second kit.
    rt.block_on(async { login(&node, "ada").await.unwrap().logout().await.unwrap() });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        economy_of(addr, &viewer, player)["coins"],
        u64::from(kit.starter_coins)
    );

    // Grants: applied once per key.
    let grant = r#"{"key": "comp-1", "coins": 100, "items": {"wolf_pelt": 2}, "reason": "outage compensation"}"#;
    let (status, body) = post(addr, &admin, player, "grant", grant);
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("applied")),
        "{body}"
    );
    let (status, again) = post(addr, &admin, player, "grant", grant);
    assert_eq!(
        (status, again["outcome"].as_str()),
        (200, Some("duplicate")),
        "{again}"
    );
    assert_eq!(again["entry"], body["entry"]);
    let state = economy_of(addr, &viewer, player);
    assert_eq!(state["coins"], u64::from(kit.starter_coins) + 100);
    assert_eq!(state["items"]["wolf_pelt"], 2);
    // Revocations: refused (409) unless the player holds it all; then applied.
    let (status, body) = post(
        addr,
        &admin,
        player,
        "revoke",
        r#"{"key": "r-1", "coins": 1000000, "reason": "fraud"}"#,
    );
    assert_eq!(status, 409, "{body}");
    let (status, body) = post(
        addr,
        &admin,
        player,
        "revoke",
        r#"{"key": "r-2", "items": {"wolf_pelt": 2}, "reason": "duplicated by a bug"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        economy_of(addr, &viewer, player)["items"]
            .get("wolf_pelt")
            .is_none()
    );
    // Bad requests name their field.
    for (body, field) in [
        (
            r#"{"key": "x", "items": {"sword": 1}, "reason": "r"}"#,
            "items",
        ),
        (r#"{"key": "bad key", "coins": 1, "reason": "r"}"#, "key"),
    ] {
        let (status, answer) = post(addr, &admin, player, "grant", body);
        assert_eq!(status, 400, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{message}");
    }
    // Viewers cannot grant.
    let (status, _) = post(addr, &viewer, player, "grant", grant);
    assert_eq!(status, 403);
    // The ledger, newest first: revoke, grant, kit (the refused revocation is not there).
    let (status, body) = http(
        addr,
        "GET",
        &format!("/v1/players/{player}/ledger?limit=10"),
        Some(&viewer),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let kinds: Vec<String> = json(&body)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["revoke", "grant", "starter_kit"]);
    // Every grant and revocation is audited, the refused one too.
    let (_, body) = http(
        addr,
        "GET",
        "/v1/audit?action=player.revoke",
        Some(&viewer),
        None,
    );
    let records = json(&body)["records"].as_array().unwrap().clone();
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(
        records[1]["result"]
            .as_str()
            .unwrap()
            .starts_with("refused"),
        "{records:?}"
    );
    assert!(
        records[1]["details"]
            .as_str()
            .unwrap()
            .contains("coins: 1000000")
    );
    let (_, metrics) = http(addr, "GET", "/metrics", Some(&viewer), None);
    assert!(
        metrics.contains(r#"tessera_economy_transactions_total{result="applied"}"#),
        "{metrics}"
    );
}

/// The next `TxResult` or `Economy` the client gets (other control messages skipped),
/// within 10 s.
async fn next_answer(client: &mut tessera::shared::client::Client) -> ControlS2c {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match client.next_control().await.expect("the session goes on") {
                m @ (ControlS2c::TxResult(_) | ControlS2c::Economy(_)) => return m,
                _ => continue,
            }
        }
    })
    .await
    .expect("an answer within 10 s")
}

fn outcome_of(answer: ControlS2c, key: &str) -> TxOutcomeS2c {
    match answer {
        ControlS2c::TxResult(r) if r.key == key => r.outcome,
        other => panic!("expected the result of {key:?}, got {other:?}"),
    }
}

fn economy(answer: ControlS2c) -> EconomyS2c {
    match answer {
        ControlS2c::Economy(e) => e,
        other => panic!("expected Economy, got {other:?}"),
    }
}

fn count_of(e: &EconomyS2c, item: &str) -> u32 {
    e.items
        .iter()
        .find(|i| i.item == item)
        .map_or(0, |i| i.count)
}

#[test]
fn a_client_buys_and_refunds_over_the_control_stream_once_per_key() {
    let node = start_with(|_| {});
    client_runtime().block_on(async {
        let mut client = login(&node, "bea").await.unwrap();
        // The starter kit is committed after the login: ask until it is there.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            client.get_economy().unwrap();
            let e = economy(next_answer(&mut client).await);
            if e.coins == 50 {
                assert_eq!((count_of(&e, "health_potion"), e.level), (3, 1));
                break;
            }
            assert!(Instant::now() < deadline, "no starter kit: {e:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // A potion costs 12.
        client
            .buy("b-1", "general_store", "health_potion", 1)
            .unwrap();
        assert_eq!(
            outcome_of(next_answer(&mut client).await, "b-1"),
            TxOutcomeS2c::Applied
        );
        let e = economy(next_answer(&mut client).await);
        assert_eq!((e.coins, count_of(&e, "health_potion")), (38, 4));
        // The same key again: applied once.
        client
            .buy("b-1", "general_store", "health_potion", 1)
            .unwrap();
        assert_eq!(
            outcome_of(next_answer(&mut client).await, "b-1"),
            TxOutcomeS2c::Duplicate
        );
        // Too dear, not sold, a bad key: refused, with a code.
        for (key, shop, item, count, code) in [
            (
                "b-2",
                "general_store",
                "health_potion",
                10,
                RefusalCode::InsufficientCoins,
            ),
            ("b-3", "general_store", "wolf_pelt", 1, RefusalCode::NotSold),
            ("b-4", "nowhere", "bread", 1, RefusalCode::UnknownShop),
            (
                "bad key",
                "general_store",
                "bread",
                1,
                RefusalCode::BadRequest,
            ),
        ] {
            client.buy(key, shop, item, count).unwrap();
            match outcome_of(next_answer(&mut client).await, key) {
                TxOutcomeS2c::Refused(r) => assert_eq!(r.code, code, "{key}: {}", r.message),
                other => panic!("{key}: {other:?}"),
            }
        }
        // A refund gives back exactly what was paid, once.
        client.refund("r-1", "b-1").unwrap();
        assert_eq!(
            outcome_of(next_answer(&mut client).await, "r-1"),
            TxOutcomeS2c::Applied
        );
        let e = economy(next_answer(&mut client).await);
        assert_eq!((e.coins, count_of(&e, "health_potion")), (50, 3));
        client.refund("r-2", "b-1").unwrap();
        match outcome_of(next_answer(&mut client).await, "r-2") {
            TxOutcomeS2c::Refused(r) => assert_eq!(r.code, RefusalCode::AlreadyRefunded),
            other => panic!("{other:?}"),
        }
        // Past the rate limit (a burst of 10, then 5 a second): refused, not dropped, and
        // the session goes on.
        let (mut answered, mut limited) = (0, 0);
        for _ in 0..12 {
            client.get_economy().unwrap();
        }
        while answered + limited < 12 {
            match next_answer(&mut client).await {
                ControlS2c::Economy(_) => answered += 1,
                ControlS2c::TxResult(r) => match r.outcome {
                    TxOutcomeS2c::Refused(r) if r.code == RefusalCode::RateLimited => {
                        assert!(r.retry_after_ms.is_some());
                        limited += 1;
                    }
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            }
        }
        assert!(limited > 0, "12 requests at once: some refused");
        client.logout().await.unwrap();
    });
}

/// Waits until `client`'s economy shows the starter kit's coins.
async fn kit_delivered(client: &mut tessera::shared::client::Client) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        client.get_economy().unwrap();
        if economy(next_answer(client).await).coins >= 50 {
            return;
        }
        assert!(Instant::now() < deadline, "no starter kit");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[test]
fn two_players_trade_by_offer_and_acceptance() {
    use tessera::shared::protocol::messages::{Goods, ItemCount};
    let node = start_with(|_| {});
    client_runtime().block_on(async {
        let mut ada = login(&node, "ada").await.unwrap();
        let mut bo = login(&node, "bo").await.unwrap();
        let (ada_id, bo_id) = (ada.welcome().player, bo.welcome().player);
        kit_delivered(&mut ada).await;
        kit_delivered(&mut bo).await;
        // Ada offers Bo 4 bread for 7 coins.
        let give = Goods {
            coins: 0,
            items: vec![ItemCount {
                item: "bread".into(),
                count: 4,
            }],
        };
        let take = Goods {
            coins: 7,
            items: vec![],
        };
        ada.trade_offer("o-1", bo_id, give.clone(), take.clone(), 60_000)
            .unwrap();
        assert_eq!(
            outcome_of(next_answer(&mut ada).await, "o-1"),
            TxOutcomeS2c::Applied
        );
        let e = economy(next_answer(&mut ada).await);
        assert_eq!(
            (e.coins, count_of(&e, "bread")),
            (50, 5),
            "nothing moved yet"
        );
        // Bo hears of it, and accepts.
        let offered = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let ControlS2c::TradeOffered(o) = bo.next_control().await.unwrap() {
                    return o;
                }
            }
        })
        .await
        .expect("Bo is told of the offer");
        assert_eq!((offered.from, offered.offer.as_str()), (ada_id, "o-1"));
        assert_eq!((offered.give, offered.take), (give, take));
        bo.trade_accept("a-1", ada_id, "o-1").unwrap();
        assert_eq!(
            outcome_of(next_answer(&mut bo).await, "a-1"),
            TxOutcomeS2c::Applied
        );
        let e = economy(next_answer(&mut bo).await);
        assert_eq!((e.coins, count_of(&e, "bread")), (43, 9));
        ada.get_economy().unwrap();
        let e = economy(next_answer(&mut ada).await);
        assert_eq!((e.coins, count_of(&e, "bread")), (57, 1));
        // Accepted once; a withdrawn offer cannot be accepted.
        bo.trade_accept("a-2", ada_id, "o-1").unwrap();
        match outcome_of(next_answer(&mut bo).await, "a-2") {
            TxOutcomeS2c::Refused(r) => assert_eq!(r.code, RefusalCode::OfferNotOpen),
            other => panic!("{other:?}"),
        }
        let coins = Goods {
            coins: 1,
            items: vec![],
        };
        ada.trade_offer("o-2", bo_id, coins, Goods::default(), 60_000)
            .unwrap();
        assert_eq!(
            outcome_of(next_answer(&mut ada).await, "o-2"),
            TxOutcomeS2c::Applied
        );
        economy(next_answer(&mut ada).await);
        ada.trade_cancel("c-2", "o-2").unwrap();
        assert_eq!(
            outcome_of(next_answer(&mut ada).await, "c-2"),
            TxOutcomeS2c::Applied
        );
        economy(next_answer(&mut ada).await);
        bo.trade_accept("a-3", ada_id, "o-2").unwrap();
        match outcome_of(next_answer(&mut bo).await, "a-3") {
            TxOutcomeS2c::Refused(r) => assert_eq!(r.code, RefusalCode::OfferNotOpen),
            other => panic!("{other:?}"),
        }
        // A trade with oneself is a bad request.
        ada.trade_offer(
            "o-3",
            ada_id,
            Goods {
                coins: 1,
                items: vec![],
            },
            Goods::default(),
            1_000,
        )
        .unwrap();
        match outcome_of(next_answer(&mut ada).await, "o-3") {
            TxOutcomeS2c::Refused(r) => assert_eq!(r.code, RefusalCode::BadRequest),
            other => panic!("{other:?}"),
        }
        ada.logout().await.unwrap();
        bo.logout().await.unwrap();
    });
}

/// Leaderboards over the admin API and the control stream, on a node of its own (in
/// process): a grant moves a player up, a client reads the top and its own standing,
/// `/top` says it for people, bad boards and limits are refused, a rebuild from the
/// store gives the same boards.
#[test]
fn leaderboards_rank_players_over_the_api_and_the_control_stream() {
    use tessera::shared::protocol::messages::LeaderboardKind;
    let (node, [viewer, _, admin]) = node_with_keys();
    let addr = admin_addr(&node);
    let rt = client_runtime();
    let top = |query: &str| {
        let (status, body) = http(
            addr,
            "GET",
            &format!("/v1/leaderboards/{query}"),
            Some(&viewer),
            None,
        );
        (status, json(&body))
    };
    rt.block_on(async {
        let mut ada = login(&node, "ada").await.unwrap();
        let mut bo = login(&node, "bo").await.unwrap();
        kit_delivered(&mut ada).await;
        kit_delivered(&mut bo).await;
        let (ada_id, bo_id) = (ada.welcome().player, bo.welcome().player);
        // Bo is granted 100 coins: first on the coins board (the kits gave 50 each).
        let grant = r#"{"key": "lb-1", "coins": 100, "reason": "test"}"#;
        let (admin2, bo_raw) = (admin.clone(), bo_id.0);
        let (status, body) =
            tokio::task::spawn_blocking(move || post(addr, &admin2, bo_raw, "grant", grant))
                .await
                .unwrap();
        assert_eq!(status, 200, "{body}");
        ada.get_leaderboard(LeaderboardKind::Coins, 10).unwrap();
        let board = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let ControlS2c::Leaderboard(b) = ada.next_control().await.unwrap() {
                    return b;
                }
            }
        })
        .await
        .expect("a leaderboard within 10 s");
        let order: Vec<_> = board
            .top
            .iter()
            .map(|s| (s.rank, s.player, s.score))
            .collect();
        assert_eq!(order, [(1, bo_id, 150), (2, ada_id, 50)]);
        assert_eq!(board.you.map(|s| (s.rank, s.score)), Some((2, 50)));
        ada.command(7, "/top coins").unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let ControlS2c::Reply(r) = ada.next_control().await.unwrap() {
                    return r;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(reply.refused, None);
        assert_eq!(
            reply.text,
            "top coins: 1. bo 150, 2. ada 50; you: 2. with 50"
        );
    });
    let (status, body) = top("coins?limit=1");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["top"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["top"][0]["score"], 150);
    let ada = tessera_server::auth::dev_player_id("ada").0;
    let (status, body) = top(&format!("xp/players/{ada}"));
    assert_eq!(
        (status, body["rank"].as_u64().is_some()),
        (200, true),
        "{body}"
    );
    for (query, status) in [
        ("gold", 404),
        ("coins?limit=0", 400),
        ("coins?limit=101", 400),
        ("xp/players/424242", 404),
    ] {
        assert_eq!(top(query).0, status, "{query}");
    }
    let (status, body) = http(
        addr,
        "POST",
        "/v1/leaderboards/rebuild",
        Some(&admin),
        Some(r#"{"reason": "test"}"#),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["players"], 2);
    assert_eq!(
        top("coins").1["top"][0]["score"],
        150,
        "the same after a rebuild"
    );
}

/// The Redis leaderboards rank as the in-process ones: the same updates, the same tops
/// and standings, and a rebuild replaces a board whole.
#[test]
fn redis_leaderboards_rank_as_the_in_process_ones() {
    use tessera::persistence::economy::PlayerEconomy;
    use tessera::persistence::leaderboard::{Board, Leaderboards};
    let Some(url) =
        crate::util::services::redis_url("redis_leaderboards_rank_as_the_in_process_ones")
    else {
        return;
    };
    crate::util::runtime().block_on(async {
        let commands = tessera::persistence::redis_bus::connection(&url)
            .await
            .unwrap();
        let redis = Leaderboards::redis_under(commands, &crate::util::unique("test-leaderboard"));
        let local = Leaderboards::local();
        let economy = |xp, coins| {
            let mut e = PlayerEconomy {
                xp,
                ..PlayerEconomy::default()
            };
            e.holdings.coins = coins;
            e
        };
        let players: std::collections::BTreeMap<PlayerId, PlayerEconomy> = (1..=30)
            .map(|p| (PlayerId(p), economy(p % 7 * 100, 1_000 - p)))
            .collect();
        for boards in [&redis, &local] {
            boards.rebuild(&players).await.unwrap();
            boards
                .record(&[(PlayerId(5), economy(10_000, 0))])
                .await
                .unwrap();
        }
        for board in Board::ALL {
            assert_eq!(
                redis.top(board, 100).await.unwrap(),
                local.top(board, 100).await.unwrap(),
                "{board:?}"
            );
            for p in [1, 5, 30, 31] {
                assert_eq!(
                    redis.standing(board, PlayerId(p)).await.unwrap(),
                    local.standing(board, PlayerId(p)).await.unwrap(),
                    "{board:?} {p}"
                );
            }
        }
        let first = redis.top(Board::Xp, 1).await.unwrap();
        assert_eq!((first[0].player, first[0].score), (PlayerId(5), 10_000));
        let one = std::collections::BTreeMap::from([(PlayerId(99), economy(1, 1))]);
        redis.rebuild(&one).await.unwrap();
        assert_eq!(redis.top(Board::Coins, 100).await.unwrap().len(), 1);
    });
}
