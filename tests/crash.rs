//! RELIABILITY test 2: a node of a two-node cluster killed with SIGKILL at random moments,
//! again and again (mid-flush: it commits snapshots every second; mid-handoff: players
//! keep crossing the border to the other node), while other players log out. No
//! acknowledged logout is lost, the region snapshots never go backwards, every player ends
//! in exactly one region, and the node's time back to serving is printed.
//!
//! `CRASH_SEED=<n>` repeats a run's kill times (the seed is printed).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tessera::persistence::SnapshotStore;
use tessera::persistence::mongo::MongoStore;
use tessera::shared::client::{Client, ClientConfig, ClientError};
use tessera::shared::ids::RegionId;
use tessera::shared::math::Vec2;
use tessera::shared::protocol::quantize::dequantize_position;
use tessera_server::auth;

use crate::cluster::{BORDER_X, ONE_PAIR_AT_A_TIME, STEP_M, TURN_M};
use crate::util::{Log, node_command, services, unique};

/// Times node A is killed.
const ROUNDS: usize = 6;
/// Players walking back and forth over the border between A and B all along.
const WALKERS: usize = 16;
/// Players that log in on A, stand still and log out, per round.
const LOGGERS_PER_ROUND: usize = 4;
/// A round lasts this long at least, and up to twice as long, before the kill.
const ROUND_MIN: Duration = Duration::from_millis(1_500);

/// xorshift64*: the kill times, from the printed seed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Node A's config directory: the repository's, without NPCs (nothing but the test moves
/// the players).
pub(crate) fn config_without_npcs(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for file in ["tessera.toml", "world.toml", "balance.toml"] {
        let text = std::fs::read_to_string(source.join(file)).unwrap();
        let text = if file == "balance.toml" {
            tessera_server::cluster_sim::without_npcs(&text)
        } else {
            text
        };
        std::fs::write(dir.join(file), text).unwrap();
    }
}

/// A node process, killed with SIGKILL when dropped (also when the test fails: a node left
/// running would hold its regions' leases against the next test).
pub(crate) struct Killed(pub(crate) std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where the test's clients go: node A (index 0) and node B (1), by name.
#[derive(Clone)]
pub(crate) struct Nodes {
    pub(crate) addrs: [SocketAddr; 2],
    pub(crate) names: [String; 2],
    pub(crate) cert: Vec<u8>,
    pub(crate) secret: Vec<u8>,
}

impl Nodes {
    pub(crate) fn login(&self, node: usize, player: &str) -> ClientConfig {
        let token = auth::mint(
            &self.secret,
            &auth::dev_claims(player, auth::unix_now_s(), 600),
        );
        ClientConfig::new(self.addrs[node], "localhost", self.cert.clone(), token)
    }

    /// Logs `player` in on whichever node takes it (a refusal names the holder), trying
    /// for up to 60 s: A may be down, and a player it held is refused elsewhere until its
    /// hold ends.
    async fn connect(&self, player: &str) -> Result<Client, String> {
        self.connect_from(0, player).await
    }

    /// [`Nodes::connect`], trying node `node` (0: A, 1: B) first.
    pub(crate) async fn connect_from(&self, node: usize, player: &str) -> Result<Client, String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut node = node;
        let mut last = String::new();
        while Instant::now() < deadline {
            match tokio::time::timeout(
                Duration::from_secs(3),
                Client::connect(&self.login(node, player)),
            )
            .await
            {
                Ok(Ok(client)) => return Ok(client),
                Ok(Err(ClientError::Refused(e))) => {
                    last = format!("{e:?}");
                    node = match self
                        .names
                        .iter()
                        .position(|n| e.message.contains(n.as_str()))
                    {
                        Some(holder) => holder,
                        None => 1 - node,
                    };
                }
                Ok(Err(e)) => {
                    last = e.to_string();
                    node = 1 - node;
                }
                Err(_) => {
                    last = "connect timed out".into();
                    node = 1 - node;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!("{player} found no node within 60 s: {last}"))
    }
}

/// Walks east and west over the border until `stop`, logging in again wherever it can
/// when a session dies; returns the live client, standing still, and the redirects (node
/// to node handoffs) its sessions followed.
async fn roam(
    nodes: Nodes,
    player: String,
    stop: Arc<AtomicBool>,
) -> Result<(Client, u64), String> {
    let mut east = true;
    let mut redirects = 0;
    loop {
        let mut client = nodes.connect(&player).await?;
        let avatar = client.welcome().entity;
        loop {
            if stop.load(Ordering::Relaxed) {
                redirects += client.stats().redirects;
                return Ok((client, redirects));
            }
            let step = if east { STEP_M } else { -STEP_M };
            let _ = client.send_input(Vec2::new(step, 0.0), None);
            let Ok(Ok(state)) =
                tokio::time::timeout(Duration::from_secs(3), client.next_state()).await
            else {
                // The session died (its node was killed): log in again.
                redirects += client.stats().redirects;
                break;
            };
            if let Some(me) = state.entities.iter().find(|e| e.id == avatar) {
                let x = dequantize_position(me.position).x;
                if east && x > BORDER_X + TURN_M {
                    east = false;
                } else if !east && x < BORDER_X - TURN_M {
                    east = true;
                }
            }
        }
    }
}

/// Logs `player` in, stands still until three states agree on where it is, and logs out:
/// the position, if the logout was acknowledged (`Bye`: durable).
async fn log_out_at_rest(nodes: Nodes, player: String, after: Duration) -> Option<Vec2> {
    tokio::time::sleep(after).await;
    let mut client = tokio::time::timeout(
        Duration::from_secs(3),
        Client::connect(&nodes.login(0, &player)),
    )
    .await
    .ok()?
    .ok()?;
    let avatar = client.welcome().entity;
    let mut seen: Vec<Vec2> = Vec::new();
    while seen.len() < 3 || seen[seen.len() - 3..].windows(2).any(|w| w[0] != w[1]) {
        let _ = client.send_input(Vec2::ZERO, None);
        let state = tokio::time::timeout(Duration::from_secs(2), client.next_state())
            .await
            .ok()?
            .ok()?;
        if let Some(me) = state.entities.iter().find(|e| e.id == avatar) {
            seen.push(dequantize_position(me.position));
        }
    }
    client.logout().await.ok()?;
    seen.last().copied()
}

#[test]
fn a_node_killed_at_random_moments_loses_no_acknowledged_state() {
    let test = "crash::kill_9_many_times";
    let (Some(redis), Some(mongo)) = (services::redis_url(test), services::mongo_uri(test)) else {
        return;
    };
    let _alone = ONE_PAIR_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
        | 1;
    eprintln!("{test}: seed {seed} (CRASH_SEED={seed} repeats the kill times)");
    let mut rng = Rng(seed);

    let database = unique("tessera_crash");
    let b_dir = std::env::temp_dir().join(unique("tessera-crash-b"));
    let a_dir = b_dir.with_extension("a");
    let config_dir = b_dir.with_extension("config");
    let b_name = unique("node-b");
    let b = crate::cluster::start(b_dir.clone(), &[2, 4], &redis, &mongo, &database, &b_name);
    crate::net::share_credentials(&b_dir, &a_dir);
    config_without_npcs(&config_dir);
    let a_name = unique("node-a");
    let a_addr: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let a_admin = format!("127.0.0.1:{}", free_tcp_port());
    let spawn_a = || {
        let mut command = node_command(&a_dir);
        command
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .env("TESSERA_CONFIG", &config_dir)
            .env("TESSERA__NODE__NAME", &a_name)
            .env("TESSERA__NODE__DATA_DIR", &a_dir)
            .env("TESSERA__NET__QUIC_LISTEN", a_addr.to_string())
            .env("TESSERA__NET__ADMIN_LISTEN", &a_admin)
            .env("TESSERA__SERVICES__REDIS_URL", &redis)
            .env("TESSERA__SERVICES__MONGODB_URI", &mongo)
            .env("TESSERA__SERVICES__MONGODB_DATABASE", &database)
            .env("TESSERA__CLUSTER__REGIONS", "[1, 3]")
            .env("TESSERA__PERSISTENCE__SNAPSHOT_INTERVAL_S", "1");
        Killed(command.spawn().expect("node A starts"))
    };
    let b_node = b.node.as_ref().unwrap();
    let nodes = Nodes {
        addrs: [a_addr, b_node.addr],
        names: [a_name.clone(), b_name.clone()],
        cert: b_node.cert_der.clone(),
        secret: b.secret.clone(),
    };
    let runtime = crate::util::runtime();
    let store = runtime
        .block_on(MongoStore::connect(&mongo, &database))
        .unwrap();
    let walkers: Vec<String> = (0..WALKERS).map(|i| format!("crash-walker-{i}")).collect();
    // The walkers start just west of the border, in region 1 (node A).
    let save = |players: Vec<(String, Vec2)>| {
        runtime.block_on(async {
            for (name, position) in players {
                let record = tessera::persistence::PlayerRecord {
                    player: auth::dev_player_id(&name),
                    data: tessera_server::players::encode(&tessera::regions::io::SavedPlayer {
                        position,
                        health: 100.0,
                    }),
                };
                store.save_player(&record).await.unwrap();
            }
        });
    };
    save(
        walkers
            .iter()
            .enumerate()
            .map(|(i, name)| {
                (
                    name.clone(),
                    Vec2::new(BORDER_X - 2.0, 200.0 + 8.0 * i as f32),
                )
            })
            .collect(),
    );

    let stop = Arc::new(AtomicBool::new(false));
    let mut roamers = Vec::new();
    let mut acknowledged: Vec<(String, Vec2)> = Vec::new();
    let mut back_serving: Vec<Duration> = Vec::new();
    let mut versions: [(u64, u64); 2] = [(0, 0); 2];
    let mut snapshots_seen = 0;
    for round in 0..=ROUNDS {
        let started = Instant::now();
        let mut a = spawn_a();
        let log = Log::of(&mut a.0);
        log.find(Duration::from_secs(60), |line| {
            line.contains("node running").then_some(())
        })
        .expect("node A runs within 60 s");
        // Back serving: a login on A answered.
        let probe = unique("crash-probe");
        save(vec![(probe.clone(), Vec2::new(500.0, 500.0))]);
        runtime.block_on(async {
            let client = nodes.connect(&probe).await.expect("A serves again");
            back_serving.push(started.elapsed());
            let _ = client.logout().await;
        });
        if round == 0 {
            for name in &walkers {
                roamers.push(runtime.spawn(roam(nodes.clone(), name.clone(), stop.clone())));
            }
        }
        if round == ROUNDS {
            // The last start stays up for the count.
            runtime.block_on(settle_and_count(
                &nodes, &b, roamers, stop, &a_admin, &a_dir,
            ));
            drop(a);
            break;
        }
        // This round's loggers, at random places in region 1, each starting at a random
        // moment of the round: some logouts land just before the kill, some are cut off.
        let play = ROUND_MIN + Duration::from_millis(rng.below(ROUND_MIN.as_millis() as u64 * 3));
        let loggers: Vec<(String, Vec2)> = (0..LOGGERS_PER_ROUND)
            .map(|_| {
                let at = Vec2::new(100.0 + rng.below(800) as f32, 100.0 + rng.below(800) as f32);
                (unique("crash-logger"), at)
            })
            .collect();
        save(loggers.clone());
        let logging: Vec<_> = loggers
            .iter()
            .map(|(name, _)| {
                let after = Duration::from_millis(rng.below(play.as_millis() as u64));
                runtime.spawn(log_out_at_rest(nodes.clone(), name.clone(), after))
            })
            .collect();
        std::thread::sleep(play);
        drop(a); // SIGKILL: whatever it was doing (flushing, handing off).
        eprintln!("{test}: round {round}: killed A after {play:?}");
        runtime.block_on(async {
            for (task, (name, _)) in logging.into_iter().zip(&loggers) {
                if let Ok(Some(at)) = task.await {
                    acknowledged.push((name.clone(), at));
                }
            }
            // The committed snapshots of A's regions never go backwards.
            for (i, region) in [1, 3].into_iter().enumerate() {
                if let Some(snapshot) = store.load(RegionId(region)).await.unwrap() {
                    let now = (snapshot.epoch, snapshot.tick);
                    assert!(
                        now.0 >= versions[i].0 && now.1 >= versions[i].1,
                        "region {region}'s snapshot went back from {:?} to {now:?}",
                        versions[i]
                    );
                    versions[i] = now;
                    snapshots_seen += 1;
                }
            }
        });
    }
    // Every acknowledged logout is durable, exactly where the player stood.
    runtime.block_on(async {
        for (name, at) in &acknowledged {
            let record = store
                .load_player(auth::dev_player_id(name))
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{name}'s acknowledged logout is lost"));
            let state = tessera_server::players::decode(&record.data).unwrap();
            assert!(
                state.position.distance_squared(*at) < 0.01,
                "{name} logged out at {at:?}, saved at {:?}",
                state.position
            );
        }
    });
    let mut serving = back_serving.clone();
    serving.sort();
    eprintln!(
        "{test}: {ROUNDS} kills, {} acknowledged logouts all durable, snapshots of regions 1 and 3 read {snapshots_seen} times never backwards (last {versions:?}), back serving after a start: median {:?}, max {:?}",
        acknowledged.len(),
        serving[serving.len() / 2],
        serving[serving.len() - 1],
    );
    assert!(
        !acknowledged.is_empty(),
        "no logout was acknowledged in {ROUNDS} rounds"
    );
    eprintln!(
        "{test}: {} of {} logouts acknowledged (the others were cut off by a kill)",
        acknowledged.len(),
        ROUNDS * LOGGERS_PER_ROUND
    );
    drop(b);
    for dir in [&a_dir, &config_dir] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Stops the walkers (each standing still, logged in somewhere), checks that every one is
/// in exactly one region (as many avatars on A and B as walkers), then logs them out.
async fn settle_and_count(
    nodes: &Nodes,
    b: &crate::net::TestNode,
    roamers: Vec<tokio::task::JoinHandle<Result<(Client, u64), String>>>,
    stop: Arc<AtomicBool>,
    a_admin: &str,
    a_dir: &std::path::Path,
) {
    // Let them walk on a bit with A back, then stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut clients = Vec::new();
    let mut redirects = 0;
    for roamer in roamers {
        let (client, followed) = roamer
            .await
            .expect("walker task")
            .expect("a walker got lost");
        clients.push(client);
        redirects += followed;
    }
    // A publishes its status every second: wait for two.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let key = std::fs::read_to_string(a_dir.join(tessera_server::admin::keys::DEV_ADMIN_KEY_FILE))
        .unwrap();
    let admin: SocketAddr = a_admin.parse().unwrap();
    let (status, body) =
        crate::admin::http_async(admin, "GET", "/v1/node", Some(key.trim()), None).await;
    assert_eq!(status, 200, "{body}");
    let on_a = serde_json::from_str::<serde_json::Value>(&body).unwrap()["players"]
        .as_u64()
        .unwrap() as usize;
    let on_b = b
        .node
        .as_ref()
        .unwrap()
        .gauges
        .players
        .load(Ordering::Relaxed);
    eprintln!(
        "crash: {redirects} handoffs between the nodes followed; at rest {on_a} walkers on A + {on_b} on B ({} connected to A)",
        clients
            .iter()
            .filter(|c| c
                .connection()
                .is_some_and(|c| c.remote_address() == nodes.addrs[0]))
            .count()
    );
    assert!(redirects > 0, "no walker crossed to the other node");
    assert_eq!(
        on_a + on_b,
        WALKERS,
        "avatars at rest: {on_a} on A, {on_b} on B"
    );
    for client in clients {
        client.logout().await.expect("an acknowledged logout");
    }
}
