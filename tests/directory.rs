//! The player directory's store contract (`tessera_persistence::directory`), run against
//! both stores: the embedded one always, MongoDB when the test services are up. Lists are
//! held to the plain reference, `PlayerQuery::page_of` over every profile.

use tessera::persistence::audit::{Sanction, SanctionRecord};
use tessera::persistence::directory::*;
use tessera::persistence::embedded::EmbeddedStore;
use tessera::persistence::mongo::MongoStore;
use tessera::persistence::snapshot::SnapshotStore;
use tessera::shared::ids::{PlayerId, RegionId};

use crate::util::{runtime, services, unique};

const NOW: u64 = 1_800_000_000;

fn login(player: u64, node: &str, region: u32, at_s: u64) -> PresenceUpdate {
    PresenceUpdate::Login {
        player: PlayerId(player),
        name: Some(format!("Hero{player}")),
        level: 4,
        node: node.into(),
        region: RegionId(region),
        at_ms: at_s * 1000,
    }
}

async fn check_presence_sessions_and_sanctions<S: DirectoryStore + SnapshotStore>(store: &S) {
    let p = PlayerId(5);
    let updates = [
        login(5, "node-a", 1, NOW - 100),
        PresenceUpdate::Seen {
            player: p,
            node: "node-a".into(),
            region: RegionId(2),
            at_ms: (NOW - 50) * 1000,
        },
        PresenceUpdate::Level {
            player: p,
            level: 6,
        },
    ];
    store.record_presence(&updates).await.unwrap();
    // Applied again (a retry after an unknown outcome): nothing more.
    store.record_presence(&updates).await.unwrap();
    let profile = store.profile_of(p).await.unwrap().unwrap();
    assert_eq!(profile.name, "Hero5");
    assert_eq!(profile.level, 6);
    assert_eq!(profile.first_login_unix_s, NOW - 100);
    assert_eq!(profile.region, Some(RegionId(2)));
    assert!(profile.is_online(NOW));
    assert!(!profile.is_online(NOW - 50 + PRESENCE_TTL_S + 1));
    assert_eq!(store.sessions_of(p, 10).await.unwrap().len(), 1);

    // It moves to node b; a's goodbye comes late and leaves it online there.
    store
        .record_presence(&[
            login(5, "node-b", 3, NOW - 40),
            PresenceUpdate::Left {
                player: p,
                node: "node-a".into(),
                since_ms: (NOW - 100) * 1000,
                at_ms: (NOW - 39) * 1000,
            },
        ])
        .await
        .unwrap();
    let profile = store.profile_of(p).await.unwrap().unwrap();
    assert_eq!(profile.node.as_deref(), Some("node-b"));
    assert_eq!(profile.first_login_unix_s, NOW - 100);
    assert_eq!(profile.last_login_unix_s, NOW - 40);
    let sessions = store.sessions_of(p, 10).await.unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(
        (sessions[0].node.as_str(), sessions[0].logout_unix_ms),
        ("node-b", None)
    );
    assert_eq!(
        (sessions[1].node.as_str(), sessions[1].logout_unix_ms),
        ("node-a", Some((NOW - 39) * 1000))
    );
    assert_eq!(store.sessions_of(p, 1).await.unwrap().len(), 1);
    store
        .record_presence(&[PresenceUpdate::Left {
            player: p,
            node: "node-b".into(),
            since_ms: (NOW - 40) * 1000,
            at_ms: (NOW - 10) * 1000,
        }])
        .await
        .unwrap();
    let profile = store.profile_of(p).await.unwrap().unwrap();
    assert!(!profile.is_online(NOW));
    assert_eq!((profile.node, profile.region), (None, None));

    // Sanctions show on the profile, of a player never seen too.
    let ban = SanctionRecord {
        player: p,
        until_unix_s: Some(NOW + 60),
        reason: "spam".into(),
    };
    store
        .set_sanction(Sanction::Ban, p, Some(&ban))
        .await
        .unwrap();
    let mute = SanctionRecord {
        player: PlayerId(6),
        until_unix_s: None,
        reason: "abuse".into(),
    };
    store
        .set_sanction(Sanction::Mute, PlayerId(6), Some(&mute))
        .await
        .unwrap();
    let banned = store.profile_of(p).await.unwrap().unwrap();
    assert!(banned.is_banned(NOW) && !banned.is_banned(NOW + 60));
    let muted = store.profile_of(PlayerId(6)).await.unwrap().unwrap();
    assert!(muted.is_muted(NOW * 2)); // For good.
    assert_eq!(muted.first_login_unix_s, 0);
    store.set_sanction(Sanction::Ban, p, None).await.unwrap();
    assert!(!store.profile_of(p).await.unwrap().unwrap().is_banned(NOW));
    // Its first login, after the mute made its profile.
    store
        .record_presence(&[login(6, "node-a", 1, NOW)])
        .await
        .unwrap();
    let muted = store.profile_of(PlayerId(6)).await.unwrap().unwrap();
    assert_eq!(muted.first_login_unix_s, NOW);
    assert!(muted.is_muted(NOW));
    assert_eq!(store.profile_of(PlayerId(7)).await.unwrap(), None);
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` varied profiles: names sharing prefixes (some upper-case, some not ASCII), levels,
/// logins, presence on two nodes (some stale), bans and mutes.
pub(crate) fn profiles(n: u64, seed: u64) -> Vec<Profile> {
    let mut rng = Rng(seed | 1);
    let stems = ["ann", "Anna", "bob", "Björn", "zed", "Ænid", "an"];
    (0..n)
        .map(|i| {
            let mut p = Profile::new(PlayerId(1 + i * 3));
            p.name = format!(
                "{}{}",
                stems[rng.below(stems.len() as u64) as usize],
                rng.below(50)
            );
            p.level = 1 + rng.below(60) as u32;
            p.first_login_unix_s = NOW - 1_000_000 + rng.below(1_000);
            p.last_login_unix_s = NOW - rng.below(100_000);
            p.last_seen_unix_s = p.last_login_unix_s;
            if rng.below(4) == 0 {
                p.node = Some(["node-a", "node-b"][rng.below(2) as usize].into());
                p.region = Some(RegionId(1 + rng.below(4) as u32));
                p.last_seen_unix_s = NOW - rng.below(2 * PRESENCE_TTL_S);
            }
            match rng.below(10) {
                0 => p.banned_until_unix_s = NOW + 100,
                1 => p.banned_until_unix_s = NOW - 100,
                2 => p.banned_until_unix_s = FOREVER,
                _ => {}
            }
            if rng.below(8) == 0 {
                p.muted_until_unix_s = NOW + 5;
            }
            p
        })
        .collect()
}

/// A random query (without a cursor).
fn query(rng: &mut Rng) -> PlayerQuery {
    let maybe = |rng: &mut Rng| rng.below(3) == 0;
    let flag = |rng: &mut Rng| match rng.below(4) {
        0 => Some(true),
        1 => Some(false),
        _ => None,
    };
    let level_min = maybe(rng).then(|| 1 + rng.below(40) as u32);
    PlayerQuery {
        online: flag(rng),
        node: (rng.below(6) == 0).then(|| "node-a".into()),
        region: (rng.below(6) == 0).then(|| RegionId(1 + rng.below(4) as u32)),
        name_prefix: maybe(rng)
            .then(|| ["a", "AN", "ann", "b", "æ", "Bj", "zed1", "q"][rng.below(8) as usize].into()),
        level_min,
        level_max: maybe(rng).then(|| level_min.unwrap_or(1) + rng.below(30) as u32),
        last_login_from: maybe(rng).then_some(NOW - 60_000),
        last_login_to: maybe(rng).then_some(NOW - 20_000),
        banned: flag(rng),
        muted: flag(rng),
        sort: SortKey::ALL[rng.below(4) as usize].1,
        descending: rng.below(2) == 0,
        limit: [1, 7, 50, 500][rng.below(4) as usize],
        after: None,
    }
}

/// Lists pages of random queries, each page equal to the reference's.
async fn check_lists_match_the_reference<S: DirectoryStore>(store: &S, all: &[Profile]) {
    let mut rng = Rng(0x5eed);
    let mut pages = 0;
    for _ in 0..60 {
        let mut q = query(&mut rng);
        // At most 4 pages of each: the later ones are cursors like the first.
        for _ in 0..4 {
            let expected = q.page_of(all, NOW);
            let page = store.list_players(&q, NOW).await.unwrap();
            assert_eq!(page, expected, "{q:?}");
            pages += 1;
            let Some(next) = page.next else { break };
            q.after = Some(Cursor::decode(&next.encode()).unwrap());
        }
    }
    assert!(pages > 100, "{pages} pages");
    // Every player in pages of 500, once each.
    let mut q = PlayerQuery {
        limit: PAGE_LEN_MAX,
        ..PlayerQuery::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = store.list_players(&q, NOW).await.unwrap();
        assert_eq!(page.total, all.len() as u64);
        seen.extend(page.players.iter().map(|p| p.player));
        let Some(next) = page.next else { break };
        q.after = Some(next);
    }
    let mut ids: Vec<PlayerId> = all.iter().map(|p| p.player).collect();
    ids.sort();
    assert_eq!(seen, ids);
}

async fn import(store: &impl DirectoryStore, all: &[Profile]) {
    for chunk in all.chunks(IMPORT_LEN_MAX) {
        store.import_profiles(chunk).await.unwrap();
    }
}

#[test]
fn embedded_presence_sessions_and_sanctions() {
    let dir = std::env::temp_dir().join(unique("tessera-directory"));
    let store = EmbeddedStore::open(&dir).unwrap();
    runtime().block_on(check_presence_sessions_and_sanctions(&store));
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn mongo_presence_sessions_and_sanctions() {
    runtime().block_on(async {
        let Some(uri) = services::mongo_uri("mongo_presence_sessions_and_sanctions") else {
            return;
        };
        let store = MongoStore::connect(&uri, &unique("tessera_test"))
            .await
            .unwrap();
        check_presence_sessions_and_sanctions(&store).await;
    });
}

/// The embedded store's in-memory indexes answer like the reference, and again after a
/// reopen (loaded from the file).
#[test]
fn embedded_lists_match_the_reference_and_survive_a_reopen() {
    let dir = std::env::temp_dir().join(unique("tessera-directory-list"));
    let all = profiles(3_000, 7);
    runtime().block_on(async {
        let store = EmbeddedStore::open(&dir).unwrap();
        import(&store, &all).await;
        check_lists_match_the_reference(&store, &all).await;
        drop(store);
        let store = EmbeddedStore::open(&dir).unwrap();
        check_lists_match_the_reference(&store, &all).await;
    });
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn mongo_lists_match_the_reference() {
    runtime().block_on(async {
        let Some(uri) = services::mongo_uri("mongo_lists_match_the_reference") else {
            return;
        };
        let store = MongoStore::connect(&uri, &unique("tessera_test"))
            .await
            .unwrap();
        let all = profiles(3_000, 7);
        import(&store, &all).await;
        check_lists_match_the_reference(&store, &all).await;
        // Every kind of list is answered from an index: never a collection scan (the
        // server's plan; a selective filter's index may come with a top-k sort of its
        // matches, bounded by the page).
        let mut rng = Rng(0x91a7);
        for _ in 0..40 {
            let q = query(&mut rng);
            let plan = store.plan_of_list(&q, NOW).await.unwrap();
            assert!(
                plan.iter().any(|s| s.starts_with("IXSCAN"))
                    && !plan.iter().any(|s| s == "COLLSCAN"),
                "{q:?}: {plan:?}"
            );
        }
    });
}

/// `GET` `path` with `key`, from a blocking thread: (status, JSON body).
fn get(addr: std::net::SocketAddr, path: &str, key: &str) -> (u16, serde_json::Value) {
    let (status, body) = crate::admin::http(addr, "GET", path, Some(key), None);
    (status, crate::admin::json(&body))
}

/// Polls `path` until `done` holds of its body (within 5 s).
fn get_until(
    addr: std::net::SocketAddr,
    path: &str,
    key: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (status, body) = get(addr, path, key);
        assert_eq!(status, 200, "{path}: {body}");
        if done(&body) {
            return body;
        }
        assert!(std::time::Instant::now() < deadline, "{path}: {body}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Players who log in are listed online with their node and region, found by name,
/// sorted and paged; their details show the session, closed at logout; bans show; wrong
/// parameters are 400s naming them.
#[test]
fn the_admin_api_lists_and_details_the_players_who_play() {
    use crate::admin::{admin_addr, http, node_with_keys};
    let (node, [viewer, _, admin]) = node_with_keys();
    let addr = admin_addr(&node);
    let runtime = crate::net::client_runtime();
    let ada = runtime.block_on(crate::net::login(&node, "ada")).unwrap();
    let bob = runtime.block_on(crate::net::login(&node, "Bob")).unwrap();
    let (ada_id, bob_id) = (ada.welcome().player.0, bob.welcome().player.0);
    let online = get_until(addr, "/v1/players?online=true", &viewer, |b| {
        b["total"] == 2
    });
    let (_, info) = get(addr, "/v1/node", &viewer);
    let node_name = info["name"].as_str().unwrap().to_owned();
    for p in online["players"].as_array().unwrap() {
        assert_eq!(p["node"], node_name, "{p}");
        assert!(p["region"].is_u64(), "{p}");
        assert_eq!(p["level"], 1);
    }
    let (_, found) = get(addr, "/v1/players?name=AD", &viewer);
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["players"][0]["player"], ada_id);
    assert_eq!(found["players"][0]["name"], "ada");
    // By name, descending, one a page: Bob, then ada, then no more.
    let (_, first) = get(addr, "/v1/players?sort=name&order=desc&limit=1", &viewer);
    assert_eq!(first["players"][0]["player"], bob_id, "{first}");
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (_, second) = get(
        addr,
        &format!("/v1/players?sort=name&order=desc&limit=1&cursor={cursor}"),
        &viewer,
    );
    assert_eq!(second["players"][0]["player"], ada_id, "{second}");
    assert_eq!(second["total"], 2);
    assert!(second["next_cursor"].is_null(), "{second}");

    // Ada logs out: offline, her session closed.
    runtime.block_on(ada.logout()).unwrap();
    let details = get_until(addr, &format!("/v1/players/{ada_id}"), &viewer, |b| {
        b["sessions"][0]["logout_unix_ms"].is_u64()
    });
    assert_eq!(details["profile"]["online"], false, "{details}");
    assert_eq!(details["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(details["sessions"][0]["node"], node_name);
    assert!(details["economy"]["level"].is_u64(), "{details}");
    assert!(details["saved_position"]["x"].is_number(), "{details}");
    let (_, offline) = get(addr, "/v1/players?online=false", &viewer);
    assert_eq!(offline["total"], 1, "{offline}");

    // Bob is banned: the list shows it, and the details with the audit entry.
    let (status, body) = http(
        addr,
        "POST",
        &format!("/v1/players/{bob_id}/ban"),
        Some(&admin),
        Some(r#"{"reason": "botting"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let (_, banned) = get(addr, "/v1/players?banned=true", &viewer);
    assert_eq!(banned["total"], 1, "{banned}");
    assert_eq!(banned["players"][0]["player"], bob_id);
    assert!(banned["players"][0]["banned_until_unix_s"].is_null());
    let (_, bob_details) = get(addr, &format!("/v1/players/{bob_id}"), &viewer);
    assert_eq!(bob_details["ban"]["reason"], "botting", "{bob_details}");
    assert_eq!(bob_details["audit"][0]["action"], "player.ban");
    drop(bob);

    for (query, field) in [
        ("level_min=x", "level_min:"),
        ("level_min=5&level_max=2", "level_min:"),
        ("online=yes", "online:"),
        ("sort=height", "sort:"),
        ("order=up", "order:"),
        ("limit=0", "limit:"),
        ("limit=501", "limit:"),
        ("cursor=nonsense", "cursor:"),
        ("sort=level&cursor=id..5", "cursor:"),
        ("region=-1", "region:"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = get(addr, &format!("/v1/players?{query}"), &viewer);
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "{query}: {body}");
        assert!(message.contains(field), "{query}: {message}");
    }
    let (status, body) = get(addr, "/v1/players/123456789", &viewer);
    assert_eq!(status, 404, "{body}");
}
