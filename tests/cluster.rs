//! Two nodes sharing one Redis and one MongoDB, each holding half of the world: players
//! walking back and forth over the border between them are handed off exactly once,
//! redirected, and continue with their state.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tessera::persistence::mongo::MongoStore;
use tessera::persistence::{PlayerRecord, SnapshotStore};
use tessera::regions::io::SavedPlayer;
use tessera::shared::client::{Client, ClientConfig, ClientError};
use tessera::shared::ids::RegionId;
use tessera::shared::math::Vec2;
use tessera::shared::protocol::messages::ErrorCode;
use tessera::shared::protocol::quantize::{dequantize_health, dequantize_position};
use tessera_server::auth;
use tessera_server::serve::RunningNode;

use crate::net::TestNode;

use crate::util::{services, unique};

/// Players in the test.
const BOTS: usize = 200;
/// How long they walk back and forth.
const PLAY: Duration = Duration::from_secs(60);
/// The border between region 1 (node A) and region 2 (node B) of the default world.
pub(crate) const BORDER_X: f32 = 1024.0;
/// Each bot turns this far past the border.
pub(crate) const TURN_M: f32 = 3.0;
/// Metres per tick (the player speed allows more).
pub(crate) const STEP_M: f32 = 0.25;

/// A node of the test cluster in `dir`, holding `regions`, with no NPCs (nothing kills
/// the players and sends them to a respawn point).
pub(crate) fn start(
    dir: std::path::PathBuf,
    regions: &[u32],
    redis: &str,
    mongo: &str,
    database: &str,
    name: &str,
) -> TestNode {
    let node = crate::net::start_node(&dir, 1, |config| {
        config.node.name = name.into();
        config.node.services.redis_url = Some(redis.into());
        config.node.services.mongodb_uri = Some(mongo.into());
        config.node.services.mongodb_database = database.into();
        config.node.cluster.regions = regions.iter().map(|&r| RegionId(r)).collect();
        for table in &mut config.balance.spawn_tables {
            for entry in &mut table.entries {
                entry.count = 0;
            }
        }
    });
    TestNode {
        node: Some(node),
        secret: auth::dev_secret(&dir).unwrap(),
        dir,
    }
}

/// What one bot saw.
#[derive(Debug, Default)]
struct Walk {
    crossings: u32,
    redirects: u64,
    /// Largest jump of the avatar's position between two consecutive states (across a
    /// redirect included): a handoff that lost or reset state shows here.
    max_jump_m: f32,
    /// Largest drop of the avatar's health between two states (nothing hurts it here).
    health_drop: f32,
}

/// Pairs run one at a time: they hold the leases of the same regions in the one test
/// Redis.
pub(crate) static ONE_PAIR_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Two nodes sharing the test Redis and a fresh MongoDB database: A holds regions 1 and
/// 3, B holds 2 and 4 (the default world's 2 x 2 grid; 1 and 2 meet at [`BORDER_X`]).
pub(crate) struct Pair {
    pub(crate) a: TestNode,
    pub(crate) b: TestNode,
    pub(crate) mongo: String,
    pub(crate) database: String,
    pub(crate) runtime: tokio::runtime::Runtime,
    _alone: std::sync::MutexGuard<'static, ()>,
}

impl Pair {
    /// The pair, or `None` (skipped, saying so) without the services outside CI.
    pub(crate) fn start(test: &str) -> Option<Pair> {
        let (Some(redis), Some(mongo)) = (services::redis_url(test), services::mongo_uri(test))
        else {
            return None;
        };
        // A test that failed holding it poisons it; the next one may still run.
        let alone = ONE_PAIR_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let database = unique("tessera_cluster");
        let a_dir = std::env::temp_dir().join(unique("tessera-cluster-a"));
        let a = start(
            a_dir.clone(),
            &[1, 3],
            &redis,
            &mongo,
            &database,
            &unique("node-a"),
        );
        let b_dir = a_dir.with_extension("b");
        crate::net::share_credentials(&a_dir, &b_dir);
        let b = start(b_dir, &[2, 4], &redis, &mongo, &database, &unique("node-b"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Some(Pair {
            a,
            b,
            mongo,
            database,
            runtime,
            _alone: alone,
        })
    }

    pub(crate) fn a(&self) -> &RunningNode {
        self.a.node.as_ref().unwrap()
    }

    pub(crate) fn b(&self) -> &RunningNode {
        self.b.node.as_ref().unwrap()
    }

    /// Saves each named player at its position with full health, as if it had logged
    /// out there.
    pub(crate) fn save_at(&self, players: impl IntoIterator<Item = (String, Vec2)>) {
        self.runtime.block_on(async {
            let store = MongoStore::connect(&self.mongo, &self.database)
                .await
                .unwrap();
            for (name, position) in players {
                let state = SavedPlayer {
                    position,
                    health: 100.0,
                };
                let record = PlayerRecord {
                    player: auth::dev_player_id(&name),
                    data: tessera_server::players::encode(&state),
                };
                store.save_player(&record).await.unwrap();
            }
        });
    }

    /// A client config for `name` logging in on `node`.
    pub(crate) fn login(&self, node: &RunningNode, name: &str) -> ClientConfig {
        ClientConfig::new(
            node.addr,
            "localhost",
            node.cert_der.clone(),
            auth::mint(
                &self.a.secret,
                &auth::dev_claims(name, auth::unix_now_s(), 600),
            ),
        )
    }
}

#[test]
fn players_crossing_between_two_nodes_are_handed_off_exactly_once() {
    let Some(pair) = Pair::start("cluster::two_nodes") else {
        return;
    };
    let (a_node, b_node) = (pair.a(), pair.b());
    let names: Vec<String> = (0..BOTS).map(|i| format!("walker-{i}")).collect();
    // Every player starts just west of the border, in region 1 (node A).
    pair.save_at(names.iter().enumerate().map(|(i, name)| {
        (
            name.clone(),
            Vec2::new(BORDER_X - 4.0, 100.0 + 4.0 * i as f32),
        )
    }));
    let runtime = &pair.runtime;

    // The bots walk, then wait (at `walked`) while the world is counted, then log out.
    let walked = Arc::new(tokio::sync::Barrier::new(BOTS + 1));
    let counted = Arc::new(tokio::sync::Barrier::new(BOTS + 1));
    let logged_out = Arc::new(AtomicU64::new(0));
    let (a_gauges, b_gauges) = (a_node.gauges.clone(), b_node.gauges.clone());
    let (walks, at_rest) = runtime.block_on(async {
        let mut tasks = Vec::new();
        for name in &names {
            let config = pair.login(a_node, name);
            let (logged_out, walked, counted) =
                (logged_out.clone(), walked.clone(), counted.clone());
            let name = name.clone();
            tasks.push(tokio::spawn(async move {
                // A bot that fails still meets the others at both barriers (or nobody
                // would get past them) and reports why.
                let played = match Client::connect(&config).await {
                    Ok(mut client) => walk(&mut client).await.map(|walk| (client, walk)),
                    Err(e) => Err(format!("login on node A: {e}")),
                };
                walked.wait().await;
                counted.wait().await;
                let (client, walk) = played.map_err(|e| format!("{name}: {e}"))?;
                if client.logout().await.is_ok() {
                    logged_out.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<Walk, String>(walk)
            }));
        }
        walked.wait().await;
        // Nobody moves: after a few ticks, every avatar is in exactly one region.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let at_rest = (
            a_gauges.players.load(Ordering::Relaxed),
            b_gauges.players.load(Ordering::Relaxed),
        );
        counted.wait().await;
        let mut walks = Vec::new();
        for task in tasks {
            walks.push(task.await.expect("bot task"));
        }
        (walks, at_rest)
    });
    let failures: Vec<&String> = walks.iter().filter_map(|w| w.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {BOTS} bots failed, first: {}",
        failures.len(),
        failures[0]
    );
    let walks: Vec<Walk> = walks.into_iter().flatten().collect();

    let crossings: u32 = walks.iter().map(|w| w.crossings).sum();
    let redirects: u64 = walks.iter().map(|w| w.redirects).sum();
    let max_jump = walks.iter().map(|w| w.max_jump_m).fold(0.0, f32::max);
    let health_drop = walks.iter().map(|w| w.health_drop).fold(0.0, f32::max);
    eprintln!(
        "cluster::two_nodes: {BOTS} players, {crossings} border crossings, {redirects} redirects, largest position jump {max_jump:.2} m, largest health drop {health_drop}, at rest {} on A + {} on B",
        at_rest.0, at_rest.1
    );
    assert!(
        walks.iter().all(|w| w.crossings >= 10),
        "some players crossed fewer than 10 times: {:?}",
        walks.iter().map(|w| w.crossings).min()
    );
    assert!(
        redirects >= u64::from(crossings) * 9 / 10,
        "{redirects} redirects for {crossings} crossings"
    );
    assert!(
        max_jump < 2.0,
        "a player's position jumped {max_jump} m across a handoff"
    );
    assert_eq!(health_drop, 0.0, "health lost across handoffs");
    // Every player in exactly one region: as many avatars as players, each bot's session
    // showing its own.
    assert_eq!(at_rest.0 + at_rest.1, BOTS, "avatars at rest: {at_rest:?}");
    // 0 lost: every logout was acknowledged (durable), and no avatar stayed behind.
    assert_eq!(logged_out.load(Ordering::Relaxed), BOTS as u64);
    let deadline = Instant::now() + Duration::from_secs(10);
    while a_node.gauges.players.load(Ordering::Relaxed)
        + b_node.gauges.players.load(Ordering::Relaxed)
        > 0
    {
        assert!(
            Instant::now() < deadline,
            "avatars left in the world after every logout"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Each player's durable state is where it last walked, near the border.
    runtime.block_on(async {
        let store = MongoStore::connect(&pair.mongo, &pair.database)
            .await
            .unwrap();
        for name in &names {
            let record = store
                .load_player(auth::dev_player_id(name))
                .await
                .unwrap()
                .expect("a save");
            let state = tessera_server::players::decode(&record.data).unwrap();
            assert!(
                (state.position.x - BORDER_X).abs() < 30.0,
                "{name} saved at {:?}",
                state.position
            );
        }
    });
}

/// Walks east and west over the border for [`PLAY`], turning [`TURN_M`] past it,
/// following redirects; `Err` if the session fails or falls silent for 5 s.
async fn walk(client: &mut Client) -> Result<Walk, String> {
    let started = Instant::now();
    let mut walk = Walk::default();
    let mut last: Option<(Vec2, f32)> = None;
    let mut east = true;
    while started.elapsed() < PLAY {
        let step = if east { STEP_M } else { -STEP_M };
        let _ = client.send_input(Vec2::new(step, 0.0), None);
        let state = match tokio::time::timeout(Duration::from_secs(5), client.next_state()).await {
            Ok(Ok(state)) => state,
            Ok(Err(e)) => return Err(format!("the session failed: {e}")),
            Err(_) => {
                return Err(format!(
                    "no state within 5 s after {:?} (state {:?})",
                    started.elapsed(),
                    client.state()
                ));
            }
        };
        let avatar = client.welcome().entity;
        let Some(me) = state.entities.iter().find(|e| e.id == avatar) else {
            continue;
        };
        let position = dequantize_position(me.position);
        let health = dequantize_health(me.health);
        if let Some((prev, prev_health)) = last {
            walk.max_jump_m = walk.max_jump_m.max(prev.distance_squared(position).sqrt());
            walk.health_drop = walk.health_drop.max(prev_health - health);
            if (prev.x < BORDER_X) != (position.x < BORDER_X) {
                walk.crossings += 1;
            }
        }
        if east && position.x > BORDER_X + TURN_M {
            east = false;
        } else if !east && position.x < BORDER_X - TURN_M {
            east = true;
        }
        last = Some((position, health));
    }
    walk.redirects = client.stats().redirects;
    Ok(walk)
}

#[test]
fn entities_near_the_border_are_visible_from_the_other_node_as_read_only_ghosts() {
    let Some(pair) = Pair::start("cluster::ghosts") else {
        return;
    };
    // A watcher on A and a neighbour on B, 1.5 m apart across the border.
    pair.save_at([
        ("watcher".to_owned(), Vec2::new(BORDER_X - 1.0, 500.0)),
        ("neighbour".to_owned(), Vec2::new(BORDER_X + 0.5, 500.0)),
    ]);
    pair.runtime.block_on(async {
        let mut watcher = Client::connect(&pair.login(pair.a(), "watcher"))
            .await
            .unwrap();
        let mut neighbour = Client::connect(&pair.login(pair.b(), "neighbour"))
            .await
            .unwrap();
        let ghost_id = neighbour.welcome().entity;
        // The watcher sees the neighbour, where it stands, though it lives on node B.
        let deadline = Instant::now() + Duration::from_secs(10);
        let seen = loop {
            assert!(
                Instant::now() < deadline,
                "the ghost never showed within 10 s"
            );
            let _ = watcher.send_input(Vec2::ZERO, Some(ghost_id));
            let _ = neighbour.send_input(Vec2::ZERO, None);
            let state = tokio::time::timeout(Duration::from_secs(5), watcher.next_state())
                .await
                .expect("a state")
                .expect("the session lives");
            if let Some(ghost) = state.entities.iter().find(|e| e.id == ghost_id) {
                break dequantize_position(ghost.position);
            }
        };
        assert!(
            seen.distance_squared(Vec2::new(BORDER_X + 0.5, 500.0)) < 0.25,
            "ghost at {seen:?}"
        );
        // Read-only: the watcher has been attacking the ghost, in reach, all along; it
        // is not in the watcher's world, so nothing happened to the neighbour.
        for _ in 0..20 {
            let _ = watcher.send_input(Vec2::ZERO, Some(ghost_id));
            let _ = neighbour.send_input(Vec2::ZERO, None);
            let _ = watcher.next_state().await;
        }
        let own = loop {
            let state = neighbour.next_state().await.unwrap();
            if let Some(me) = state.entities.iter().find(|e| e.id == ghost_id) {
                break dequantize_health(me.health);
            }
        };
        assert_eq!(own, 100.0, "the neighbour was hurt through a ghost");
        assert_eq!(
            pair.a().gauges.players.load(Ordering::Relaxed),
            1,
            "the ghost is no avatar on A"
        );
    });
}

#[test]
fn a_player_is_in_the_world_on_one_node_at_a_time() {
    let Some(pair) = Pair::start("cluster::one_node_at_a_time") else {
        return;
    };
    let name = unique("roamer");
    pair.save_at([(name.clone(), Vec2::new(BORDER_X - 2.0, 700.0))]);
    let refusal = |result: Result<Client, ClientError>| match result {
        Err(ClientError::Refused(e)) => e,
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("a second avatar: the login was accepted"),
    };
    let avatars = |pair: &Pair| {
        (
            pair.a().gauges.players.load(Ordering::Relaxed),
            pair.b().gauges.players.load(Ordering::Relaxed),
        )
    };
    pair.runtime.block_on(async {
        let mut client = Client::connect(&pair.login(pair.a(), &name)).await.unwrap();
        let resume_on_a = client.welcome().resume_ticket.clone();
        // A login on B while A holds the player: refused, naming A, with a time to retry.
        let e = refusal(Client::connect(&pair.login(pair.b(), &name)).await);
        assert_eq!(e.code, ErrorCode::RegionUnavailable, "{e:?}");
        assert!(e.message.contains("node-a_"), "{}", e.message);
        assert!(e.retry_after_ms.is_some_and(|ms| ms >= 1_000), "{e:?}");

        // Walk east into region 2, held by B: the client follows the redirect.
        let deadline = Instant::now() + Duration::from_secs(20);
        let avatar = client.welcome().entity;
        loop {
            assert!(Instant::now() < deadline, "not on B within 20 s");
            let _ = client.send_input(Vec2::new(STEP_M, 0.0), None);
            let state = tokio::time::timeout(Duration::from_secs(5), client.next_state())
                .await
                .expect("a state")
                .expect("the session lives");
            let east = state
                .entities
                .iter()
                .find(|e| e.id == avatar)
                .is_some_and(|me| dequantize_position(me.position).x > BORDER_X + 1.0);
            if east && client.stats().redirects == 1 {
                break;
            }
        }
        // The exploit: ignore the redirect and log in on A again, with the token or the
        // old session's resume ticket. Refused: the player is on B.
        let e = refusal(Client::connect(&pair.login(pair.a(), &name)).await);
        assert_eq!(e.code, ErrorCode::RegionUnavailable, "{e:?}");
        assert!(e.message.contains("node-b_"), "{}", e.message);
        let mut resume = pair.login(pair.a(), &name);
        resume.resume_ticket = Some(resume_on_a);
        let e = refusal(Client::connect(&resume).await);
        assert_eq!(e.code, ErrorCode::RegionUnavailable, "{e:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(avatars(&pair), (0, 1), "avatars on A and B");

        // A logout releases the player: a login on A works at once.
        client.logout().await.unwrap();
        let back = Client::connect(&pair.login(pair.a(), &name)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(avatars(&pair), (1, 0), "avatars on A and B");
        back.logout().await.unwrap();
    });
}
