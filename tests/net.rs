//! The serving node over real QUIC on loopback: login, refusals with their codes, one
//! session per player, states flowing, malformed input disconnecting only its sender.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tessera::shared::client::{Client, ClientConfig, ClientError, ConnectionState};
use tessera::shared::config::Config;
use tessera::shared::ids::{NetId, RegionId};
use tessera::shared::math::Vec2;
use tessera::shared::protocol::messages::{ControlS2c, ErrorCode, KickReason};
use tessera::shared::protocol::quantize::dequantize_position;
use tessera_server::auth::{self, Claims};
use tessera_server::serve::{RunningNode, ServeOptions};

/// A running node that is shut down, and its data dir removed, on drop.
pub(crate) struct TestNode {
    pub(crate) node: Option<RunningNode>,
    /// Its dev JWT secret, to mint login tokens.
    pub(crate) secret: Vec<u8>,
    pub(crate) dir: std::path::PathBuf,
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start() -> TestNode {
    start_with(|_| {})
}

pub(crate) fn start_with(tweak: impl FnOnce(&mut Config)) -> TestNode {
    let dir = std::env::temp_dir().join(crate::util::unique("tessera-net-test"));
    let node = start_node(&dir, 1, tweak);
    let secret = auth::dev_secret(&dir).unwrap();
    TestNode {
        node: Some(node),
        secret,
        dir,
    }
}

/// A node on a free loopback port with its (dev) credentials in `dir`.
pub(crate) fn start_node(
    dir: &std::path::Path,
    seed: u64,
    tweak: impl FnOnce(&mut Config),
) -> RunningNode {
    let mut config = Config::embedded_default();
    config.node.data_dir = dir.to_path_buf();
    config.node.quic_listen = "127.0.0.1:0".parse().unwrap();
    config.node.admin_listen = "127.0.0.1:0".parse().unwrap();
    config.node.sim_threads = 1;
    tweak(&mut config);
    RunningNode::start_configured(
        Arc::new(config),
        &ServeOptions {
            ticks: None,
            seed,
            config_dir: None,
        },
    )
    .expect("node starts")
}

/// Gives the node of data dir `to` the dev credentials of the node of `from` (as a
/// cluster's nodes share their configured certificate and secrets).
pub(crate) fn share_credentials(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    let (cert, key) = tessera_server::net::tls::dev_cert_paths(from);
    for file in [cert, key] {
        std::fs::copy(&file, to.join(file.file_name().unwrap())).unwrap();
    }
    for file in [
        auth::DEV_SECRET_FILE,
        auth::DEV_TICKET_SECRET_FILE,
        tessera_server::admin::keys::DEV_ADMIN_KEY_FILE,
    ] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
}

/// The client side runs on its own runtime: the node owns another one.
pub(crate) fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn now() -> u64 {
    auth::unix_now_s()
}

pub(crate) fn claims(name: &str) -> Claims {
    auth::dev_claims(name, now(), 600)
}

pub(crate) fn client_config(node: &TestNode, token: String) -> ClientConfig {
    let running = node.node.as_ref().unwrap();
    ClientConfig::new(running.addr, "localhost", running.cert_der.clone(), token)
}

pub(crate) async fn login(node: &TestNode, name: &str) -> Result<Client, ClientError> {
    Client::connect(&client_config(
        node,
        auth::mint(&node.secret, &claims(name)),
    ))
    .await
}

/// The client's next state, which must arrive (valid) within 5 s; `what` names the
/// expectation in the failure message.
async fn state_within_5s(
    client: &mut Client,
    what: &str,
) -> tessera::shared::protocol::delta::Snapshot {
    match tokio::time::timeout(Duration::from_secs(5), client.next_state()).await {
        Ok(Ok(snapshot)) => snapshot,
        Ok(Err(e)) => panic!("{what}: the session failed: {e}"),
        Err(_) => panic!("{what}: no state within 5 s"),
    }
}

fn refusal(result: Result<Client, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Refused(e)) => e.code,
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, got a session"),
    }
}

#[test]
fn login_works_and_states_flow() {
    let node = start();
    client_runtime().block_on(async {
        let mut client = login(&node, "ada").await.expect("login");
        assert_eq!(client.welcome().player, auth::dev_player_id("ada"));
        let mut last_tick = 0;
        for _ in 0..10 {
            client.send_input(Vec2::new(0.1, 0.0), None).unwrap();
            let snapshot = state_within_5s(&mut client, "a state within 5 s").await;
            assert!(snapshot.tick > last_tick, "states must advance");
            last_tick = snapshot.tick;
        }
        tokio::time::timeout(Duration::from_secs(5), client.logout())
            .await
            .expect("logout answered")
            .expect("Bye");
    });
}

#[test]
fn bad_tokens_are_refused_with_their_codes() {
    let node = start();
    client_runtime().block_on(async {
        let wrong_key = auth::mint(b"ffffffffffffffffffffffffffffffff", &claims("eve"));
        let expired = auth::mint(
            &node.secret,
            &Claims {
                exp: now() - 3_600,
                ..claims("eve")
            },
        );
        let wrong_aud = auth::mint(
            &node.secret,
            &Claims {
                aud: "other-game".into(),
                ..claims("eve")
            },
        );
        let cases = [
            (wrong_key, ErrorCode::BadToken),
            (expired, ErrorCode::TokenExpired),
            (wrong_aud, ErrorCode::WrongAudience),
            ("not a token at all".to_string(), ErrorCode::BadToken),
        ];
        for (token, code) in cases {
            assert_eq!(
                refusal(Client::connect(&client_config(&node, token)).await),
                code
            );
        }
        // The node still serves honest clients.
        login(&node, "ada").await.expect("login after refusals");
    });
}

#[test]
fn a_second_login_kicks_the_first() {
    let node = start();
    client_runtime().block_on(async {
        let mut first = login(&node, "ada").await.unwrap();
        let _second = login(&node, "ada").await.unwrap();
        let kicked = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match first.next_control().await {
                    Err(ClientError::Kicked(k)) => return k.reason,
                    Ok(_) => continue,
                    Err(e) => panic!("connection ended without a kick: {e}"),
                }
            }
        })
        .await
        .expect("kicked within 5 s");
        assert_eq!(kicked, KickReason::LoggedInElsewhere);
        // A kick is final: the client does not fight back for its session.
        assert_eq!(first.state(), ConnectionState::Failed);
    });
}

#[test]
fn a_malformed_datagram_disconnects_only_its_sender() {
    let node = start();
    client_runtime().block_on(async {
        let mut bad = login(&node, "mallory").await.unwrap();
        let mut good = login(&node, "ada").await.unwrap();
        bad.connection()
            .unwrap()
            .send_datagram(vec![0xff, 0xfe, 0xfd, 0x00].into())
            .unwrap();
        let reason = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match bad.next_control().await {
                    Err(ClientError::Kicked(k)) => return Some(k.reason),
                    Ok(_) => continue,
                    // Closed before the frame was read: also a disconnect.
                    Err(_) => return None,
                }
            }
        })
        .await
        .expect("disconnected within 5 s");
        assert!(matches!(reason, Some(KickReason::ProtocolViolation) | None));
        // A violation ends the session for good: no automatic reconnect.
        assert_eq!(bad.state(), ConnectionState::Failed);
        // The other client keeps getting states.
        for _ in 0..5 {
            good.send_input(Vec2::ZERO, None).unwrap();
            state_within_5s(&mut good, "states keep flowing").await;
        }
    });
}

/// 60 times the default NPCs: 20,000 in a 1024 m region, a few hundred within view of
/// the spawn point.
fn crowd_around_spawn(config: &mut Config) {
    config.world.limits.entities_per_region_max = 50_000;
    for entry in &mut config.balance.spawn_tables[0].entries {
        entry.count *= 60;
    }
}

#[test]
fn a_crowded_view_arrives_whole_even_when_it_exceeds_a_datagram() {
    // 20,000 NPCs in a 1024 m region: a few hundred within view of the spawn point, so
    // the first (key)frame is several kilobytes and must go on a stream.
    let node = start_with(crowd_around_spawn);
    client_runtime().block_on(async {
        let mut client = login(&node, "ada").await.unwrap();
        let mut most = 0;
        for _ in 0..10 {
            client.send_input(Vec2::ZERO, None).unwrap();
            let snapshot = state_within_5s(&mut client, "a state within 5 s").await;
            most = most.max(snapshot.entities.len());
        }
        assert!(most > 100, "expected a crowd, saw {most} entities");
    });
}

#[test]
fn a_client_over_its_state_budget_gets_its_view_within_it_nearest_first() {
    // The crowd of the test above, and the smallest budget: 8 kbit/s is 50 bytes a tick,
    // a few entities' worth; a staleness bound long enough not to override it.
    let node = start_with(|config| {
        crowd_around_spawn(config);
        config.node.state_budget.kbit_per_s = 8;
        config.node.state_budget.staleness_ticks_max = 1_000;
    });
    client_runtime().block_on(async {
        let mut client = login(&node, "ada").await.unwrap();
        let avatar = client.welcome().entity;
        // Mean distance (wire units) from the avatar of the NPCs in a view.
        let mean_distance = |snapshot: &tessera::shared::protocol::delta::Snapshot| {
            let me = snapshot.entities.iter().find(|e| e.id == avatar).unwrap();
            let npcs: Vec<f64> = snapshot
                .entities
                .iter()
                .filter(|e| e.id != avatar)
                .map(|e| {
                    let dx = f64::from(e.position[0] - me.position[0]);
                    let dy = f64::from(e.position[1] - me.position[1]);
                    (dx * dx + dy * dy).sqrt()
                })
                .collect();
            (
                npcs.len(),
                npcs.iter().sum::<f64>() / npcs.len().max(1) as f64,
            )
        };
        client.send_input(Vec2::ZERO, None).unwrap();
        let first = state_within_5s(&mut client, "a first state").await;
        let (first_n, first_mean) = mean_distance(&first);
        let bytes_before = client.stats().bytes_in;
        let started = std::time::Instant::now();
        let mut last = first;
        while started.elapsed() < Duration::from_secs(5) {
            client.send_input(Vec2::ZERO, None).unwrap();
            last = state_within_5s(&mut client, "a state within 5 s").await;
        }
        let kbit_per_s = (client.stats().bytes_in - bytes_before) as f64 * 8.0
            / 1e3
            / started.elapsed().as_secs_f64();
        let (last_n, last_mean) = mean_distance(&last);
        assert!(
            last_n > 2 * first_n.max(1),
            "the view fills over ticks: {first_n} NPCs in the first state, {last_n} after 5 s"
        );
        assert!(
            first_mean < last_mean,
            "nearest first: mean distance {first_mean:.0} in the first state, {last_mean:.0} after"
        );
        // 8 kbit/s of states, plus QUIC's own bytes (headers, acks) for 20 datagrams a
        // second; without the budget the crowd's first state alone is several kilobytes.
        assert!(
            kbit_per_s < 8.0 + 16.0,
            "{kbit_per_s:.1} kbit/s received against a budget of 8"
        );
    });
}

#[test]
fn walking_across_a_region_border_keeps_the_session() {
    // Spawn 4 m west of the border between regions 1 and 2 (x = 1024 in the default world),
    // in a crowd of NPCs (ten times the default population), so that region 1's NPCs are
    // in view before the crossing.
    let node = start_with(|config| {
        let border = config.world.regions[0].bounds.max.x;
        config.world.regions[0].spawn_point.x = border - 4.0;
        for table in &mut config.balance.spawn_tables {
            for entry in &mut table.entries {
                entry.count *= 10;
            }
        }
    });
    // Region-minted ids carry their region above bit 40 (avatars have the top bit).
    let minted_by = |id: NetId, region: u64| id.0 >> 63 == 0 && id.0 >> 40 == region;
    client_runtime().block_on(async {
        let mut client = login(&node, "ada").await.unwrap();
        let avatar = client.welcome().entity;
        let mut max_x = 0.0f32;
        let mut seen_from_region_1 = 0;
        let mut last = Vec::new();
        for _ in 0..80 {
            client.send_input(Vec2::new(0.25, 0.0), None).unwrap();
            let snapshot =
                state_within_5s(&mut client, "states keep flowing across the border").await;
            if let Some(me) = snapshot.entities.iter().find(|e| e.id == avatar) {
                let x = tessera::shared::protocol::quantize::dequantize_position(me.position).x;
                max_x = max_x.max(x);
            }
            seen_from_region_1 += snapshot
                .entities
                .iter()
                .filter(|e| minted_by(e.id, 1))
                .count();
            last = snapshot.entities.clone();
        }
        assert!(
            max_x > 1026.0,
            "the avatar should be well inside region 2, got x = {max_x}"
        );
        // The view followed the avatar: region 1's NPCs were seen, and none is left in the
        // view from region 2 (each region shows only its own entities on one node).
        assert!(
            seen_from_region_1 > 0,
            "region 1's NPCs should be in view before the crossing"
        );
        let stale: Vec<_> = last.iter().filter(|e| minted_by(e.id, 1)).collect();
        assert!(
            stale.is_empty(),
            "entities of region 1 left in the view: {stale:?}"
        );
        assert!(
            last.iter().any(|e| minted_by(e.id, 2)),
            "region 2's NPCs in view"
        );
        // Still the same, working session: logout is acknowledged.
        client.logout().await.expect("Bye after crossing");
    });
}

#[test]
fn an_input_flood_is_dropped_and_counted_and_others_are_unaffected() {
    use tessera_server::net::session::INPUTS_PER_TICK_MAX;
    let node = start();
    let stats = node.node.as_ref().unwrap().stats.clone();
    client_runtime().block_on(async {
        let mut flooder = login(&node, "flooder").await.unwrap();
        let mut honest = login(&node, "ada").await.unwrap();
        let started = std::time::Instant::now();
        const FLOOD: u64 = 3_000;
        for _ in 0..FLOOD {
            // send_datagram drops locally when its buffer is full; pace a little so most
            // of the flood reaches the node.
            let _ = flooder.send_input(Vec2::new(0.01, 0.0), None);
            tokio::task::yield_now().await;
        }
        for _ in 0..10 {
            honest.send_input(Vec2::ZERO, None).unwrap();
            state_within_5s(&mut honest, "the honest client keeps getting states").await;
        }
        let elapsed_s = started.elapsed().as_secs_f64();
        let limited = stats
            .inputs_rate_limited
            .load(std::sync::atomic::Ordering::Relaxed);
        let accepted = stats
            .inputs_accepted
            .load(std::sync::atomic::Ordering::Relaxed);
        // The limit's own bound: one burst plus the rate over the elapsed time, for both
        // clients (the honest one sent 10).
        let rate = f64::from(20 * INPUTS_PER_TICK_MAX);
        let bound = 20.0 + rate * elapsed_s + 10.0;
        assert!(limited > 0, "nothing was rate limited");
        assert!(
            (accepted as f64) <= bound,
            "accepted {accepted} > {bound:.0} in {elapsed_s:.2} s"
        );
    });
}

#[test]
fn bots_connect_play_and_report() {
    let node = start();
    let options = tessera_server::bots::BotsOptions::dev(
        20,
        node.node.as_ref().unwrap().addr,
        Duration::from_secs(3),
        &node.dir,
    )
    .unwrap();
    let report = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(tessera_server::bots::run_bots(&options))
        .unwrap();
    assert_eq!(report.connected, 20, "{report}");
    assert_eq!(report.failed, 0, "{report}");
    assert!(
        report.states_per_s_per_client > 5.0 && report.inputs_per_s_per_client > 5.0,
        "{report}"
    );
    // The bots trade: their requests are answered (applied or refused, never lost), and
    // the summary says so.
    let e = &report.economy;
    let refused: u64 = e.refused.iter().map(|(_, n)| n).sum();
    assert!(e.requests > 0 && e.applied > 0, "{report}");
    assert!(e.applied + e.duplicates + refused <= e.requests, "{report}");
    assert!(report.to_string().contains("economy requests"), "{report}");
    // And chat: what they say is heard (bots start together, within `say` of each other).
    assert!(e.chat_sent > 0 && e.chat_heard > 0, "{report}");
    assert!(report.to_string().contains("chat and commands"), "{report}");
}

/// `tessera bots` as a user runs it: its address and data dir from the flags, bots
/// spread over the regions by their tokens' start region, the summary as JSON.
#[test]
fn the_bots_command_spreads_bots_over_the_regions_and_prints_json() {
    let node = start();
    let addr = node.node.as_ref().unwrap().addr.to_string();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let args = [
        "tessera",
        "bots",
        "--count",
        "8",
        "--duration",
        "2s",
        "--ramp",
        "1s",
        "--regions",
        "spread",
        "--json",
        "--addr",
        &addr,
        "--data-dir",
    ];
    let code = tessera_server::cli::run(
        args.iter().copied().chain([node.dir.to_str().unwrap()]),
        &mut out,
        &mut err,
    );
    let (out, err) = (
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    );
    assert_eq!(code, std::process::ExitCode::SUCCESS, "{out}\n{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(report["connected"], 8, "{out}");
    assert_eq!(report["failed"], 0, "{out}");
    // The embedded default world has 4 regions, all on this node: 2 bots each.
    let joined = report["joined_regions"]
        .as_object()
        .expect("joined_regions");
    assert_eq!(joined.len(), 4, "{out}");
    assert!(joined.values().all(|bots| bots == 2), "{out}");
    assert!(report["rtt_ms_p99"].as_f64().unwrap() > 0.0, "{out}");
}

/// The avatar's x coordinate in the next state that shows it.
async fn own_x(client: &mut Client) -> f32 {
    own_tick_and_x(client, 0).await.1
}

/// Walks east for 40 ticks at 0.25 m a tick (about 10 m); the x coordinate afterwards.
async fn walk_east(client: &mut Client) -> f32 {
    for _ in 0..40 {
        let _ = client.send_input(Vec2::new(0.25, 0.0), None);
        client.next_state().await.unwrap();
    }
    own_x(client).await
}

/// The tick and the avatar's x coordinate of the first state of tick `tick_min` or later
/// that shows the avatar (sending zero moves meanwhile).
async fn own_tick_and_x(client: &mut Client, tick_min: u64) -> (u64, f32) {
    loop {
        client.send_input(Vec2::ZERO, None).ok();
        let snapshot = state_within_5s(client, "a state within 5 s").await;
        let avatar = client.welcome().entity;
        if snapshot.tick < tick_min {
            continue;
        }
        if let Some(me) = snapshot.entities.iter().find(|e| e.id == avatar) {
            return (snapshot.tick, dequantize_position(me.position).x);
        }
    }
}

#[test]
fn a_dropped_connection_resumes_the_same_avatar_with_its_ticket() {
    let node = start();
    let stats = node.node.as_ref().unwrap().stats.clone();
    client_runtime().block_on(async {
        let mut client = login(&node, "ada").await.unwrap();
        let spawn_x = own_x(&mut client).await;
        let walked_x = walk_east(&mut client).await;
        assert!(walked_x > spawn_x + 3.0, "{spawn_x} -> {walked_x}");
        let first = client.connection().unwrap();
        // The network drops the connection (from the node's side, a vanished client).
        first.close(0u32.into(), b"simulated network loss");
        let resumed_x = own_x(&mut client).await;
        assert_eq!(client.state(), ConnectionState::Connected);
        assert_eq!(client.stats().reconnects, 1);
        assert_eq!(stats.resumes.load(Ordering::Relaxed), 1);
        assert_ne!(client.connection().unwrap().stable_id(), first.stable_id());
        // Same avatar, where it was: not respawned.
        assert!(
            (resumed_x - walked_x).abs() < 1.0,
            "walked to {walked_x}, resumed at {resumed_x} (spawn {spawn_x})"
        );
        client.logout().await.expect("Bye on the resumed session");
    });
}

#[test]
fn a_saved_resume_ticket_continues_the_player_and_bad_tickets_are_refused() {
    use tessera_server::auth::{Ticket, TicketKeys, TicketKind};
    let node = start();
    let ticket_secret = auth::generated_secret(&node.dir, auth::DEV_TICKET_SECRET_FILE).unwrap();
    client_runtime().block_on(async {
        let first = login(&node, "ada").await.unwrap();
        let ticket = first.welcome().resume_ticket.clone();
        assert!(!ticket.is_empty() && ticket.len() <= 512);
        // A restarted game client presents the saved ticket, with no valid token at all.
        let mut config = client_config(&node, String::new());
        config.resume_ticket = Some(ticket);
        let resumed = Client::connect(&config)
            .await
            .expect("resume with the ticket");
        assert_eq!(resumed.welcome().player, auth::dev_player_id("ada"));

        let player = auth::dev_player_id("eve");
        let other_cluster = TicketKeys::new(b"ffffffffffffffffffffffffffffffff").unwrap();
        let ours = TicketKeys::new(&ticket_secret).unwrap();
        let resume = Ticket {
            player,
            kind: TicketKind::Resume,
            region: None,
            name: "eve".into(),
            session_began_ms: 0,
        };
        let cases = [
            b"garbage".to_vec(),
            vec![0xff; 513],
            other_cluster.issue(resume.clone(), now()),
            ours.issue(resume.clone(), now() - 3_600),
        ];
        for ticket in cases {
            let mut config = client_config(&node, auth::mint(&node.secret, &claims("eve")));
            config.resume_ticket = Some(ticket);
            assert_eq!(
                refusal(Client::connect(&config).await),
                ErrorCode::BadTicket
            );
        }
        // A valid token does not excuse a bad ticket, and the node is unharmed.
        login(&node, "eve").await.expect("plain login still works");
    });
}

#[test]
fn a_redirect_moves_the_session_to_the_named_node() {
    // Two nodes of one cluster: each its own data dir, sharing the dev certificate, token
    // secret and ticket secret (as a cluster's nodes share their configured ones).
    let a = start();
    let b_dir = a.dir.with_extension("b");
    share_credentials(&a.dir, &b_dir);
    let b = start_node(&b_dir, 2, |_| {});
    client_runtime().block_on(async {
        let mut client = login(&a, "ada").await.unwrap();
        client.next_state().await.unwrap();
        let node_a = a.node.as_ref().unwrap();
        node_a
            .redirect(client.welcome().player, b.addr.to_string(), RegionId(2))
            .unwrap();
        let redirect = tokio::time::timeout(Duration::from_secs(5), client.next_control())
            .await
            .expect("a redirect within 5 s")
            .expect("the session goes on");
        let ControlS2c::Redirect(redirect) = redirect else {
            panic!("expected a Redirect, got {redirect:?}");
        };
        assert_eq!(redirect.addr, b.addr.to_string());
        // States now come from B, to the same player.
        state_within_5s(&mut client, "states from B").await;
        assert_eq!(client.connection().unwrap().remote_address(), b.addr);
        assert_eq!(client.welcome().player, auth::dev_player_id("ada"));
        assert_eq!(client.stats().redirects, 1);
        assert_eq!(b.stats.redirect_logins.load(Ordering::Relaxed), 1);
        client.logout().await.expect("Bye from B");
    });
    b.shutdown();
    let _ = std::fs::remove_dir_all(&b_dir);
}

#[test]
fn a_production_node_uses_its_configured_credentials() {
    use base64::Engine;
    let pem = |label: &str, der: &[u8]| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    };
    let dir = std::env::temp_dir().join(format!("tessera-prod-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["game.example".into()]).unwrap();
    let files = [
        (
            "cert.pem",
            pem("CERTIFICATE", generated.cert.der()).into_bytes(),
        ),
        (
            "key.pem",
            pem("PRIVATE KEY", &generated.signing_key.serialize_der()).into_bytes(),
        ),
        ("jwt", b"production-secret-of-32-bytes!!!".to_vec()),
        ("tickets", b"ticket-secret-of-at-least-32-b!!".to_vec()),
        (
            "admin-keys.toml",
            tessera_server::admin::keys::new_key("ops", tessera_server::admin::keys::Role::Admin)
                .unwrap()
                .1
                .into_bytes(),
        ),
    ];
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let node = start_node(&dir, 1, |config| {
        config.node.mode = tessera::shared::config::NodeMode::Production;
        config.node.auth.issuer = "https://login.example".into();
        config.node.auth.audience = "my-game".into();
        config.node.auth.key_file = Some(dir.join("jwt"));
        config.node.auth.ticket_secret_file = Some(dir.join("tickets"));
        config.node.tls.cert_file = Some(dir.join("cert.pem"));
        config.node.tls.key_file = Some(dir.join("key.pem"));
        config.node.admin.keys_file = Some(dir.join("admin-keys.toml"));
    });
    // No dev credentials were generated.
    assert!(!dir.join(auth::DEV_SECRET_FILE).exists());
    assert!(
        !dir.join(tessera_server::admin::keys::DEV_ADMIN_KEY_FILE)
            .exists()
    );
    assert!(!dir.join("dev-cert.der").exists());
    assert_eq!(node.cert_der, generated.cert.der().to_vec());
    client_runtime().block_on(async {
        let token = |iss: &str| {
            auth::mint(
                b"production-secret-of-32-bytes!!!",
                &auth::claims_for("ada", iss, "my-game", now(), 600),
            )
        };
        let config =
            |token| ClientConfig::new(node.addr, "game.example", node.cert_der.clone(), token);
        let client = Client::connect(&config(token("https://login.example")))
            .await
            .expect("a token of the configured issuer, audience and secret logs in");
        assert_eq!(client.welcome().player, auth::dev_player_id("ada"));
        assert_eq!(
            refusal(Client::connect(&config(token("tessera-dev"))).await),
            ErrorCode::WrongAudience
        );
    });
    node.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unread_events_never_stall_states() {
    // Every NPC hostile, reaching 50 m and striking every tick: the player's client gets
    // tens of Damage events per tick, and this test never reads them.
    let node = start_with(|config| {
        let player = config.balance.player_archetype;
        for (i, archetype) in config.balance.archetypes.iter_mut().enumerate() {
            if i == player {
                archetype.max_health = 1e9;
                continue;
            }
            archetype.hostile = true;
            archetype.aggro_radius_m = 50.0;
            archetype.leash_radius_m = 100.0;
            archetype.attack_range_m = 50.0;
            archetype.attack_cooldown_ms = 0;
        }
        for entry in &mut config.balance.spawn_tables[0].entries {
            entry.count *= 10;
        }
    });
    client_runtime().block_on(async {
        let mut client = login(&node, "ada").await.unwrap();
        let mut states = 0;
        while client.stats().events_dropped == 0 || states < 20 {
            let _ = client.send_input(Vec2::ZERO, None);
            state_within_5s(&mut client, "states flow while events pile up unread").await;
            states += 1;
            assert!(
                states < 600,
                "no event was ever dropped: {:?}",
                client.stats()
            );
        }
        assert_eq!(client.state(), ConnectionState::Connected);
    });
}

#[test]
fn a_malformed_control_frame_disconnects_only_its_sender() {
    use tessera::shared::protocol::PROTOCOL_VERSION;
    use tessera::shared::protocol::io::{read_frame, write_frame};
    use tessera::shared::protocol::messages::{ControlC2s, HelloC2s};
    let node = start();
    let stats = node.node.as_ref().unwrap().stats.clone();
    client_runtime().block_on(async {
        let mut good = login(&node, "ada").await.unwrap();
        // Mallory speaks the protocol by hand: a valid login, then a frame whose header is
        // fine but whose body is no ControlC2s.
        let config = client_config(&node, auth::mint(&node.secret, &claims("mallory")));
        let endpoint = tessera::shared::client::endpoint(&config).unwrap();
        let connection = endpoint
            .connect(config.server, &config.server_name)
            .unwrap()
            .await
            .unwrap();
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        let hello = ControlC2s::Hello(HelloC2s {
            protocol_version: PROTOCOL_VERSION,
            token: config.token.clone(),
            ticket: None,
        });
        write_frame(&mut send, &hello).await.unwrap();
        let welcome = read_frame::<ControlS2c>(&mut recv).await.unwrap();
        assert!(matches!(welcome, ControlS2c::Welcome(_)), "{welcome:?}");
        // Length 3, then variant index 0xff: no such message.
        send.write_all(&[3, 0, 0, 0, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        // The control stream still works: the node says why before closing.
        let kicked = read_frame::<ControlS2c>(&mut recv).await.unwrap();
        assert!(
            matches!(&kicked, ControlS2c::Kicked(k) if k.reason == KickReason::ProtocolViolation),
            "{kicked:?}"
        );
        let closed = tokio::time::timeout(Duration::from_secs(5), connection.closed())
            .await
            .expect("disconnected within 5 s");
        match closed {
            quinn::ConnectionError::ApplicationClosed(close) => assert_eq!(
                close.error_code,
                tessera::shared::protocol::close_code::PROTOCOL_VIOLATION.into()
            ),
            other => panic!("expected an application close, got {other}"),
        }
        assert_eq!(stats.violations.load(Ordering::Relaxed), 1);
        // The other client keeps getting states: the node kept ticking.
        let before = state_within_5s(&mut good, "a state").await.tick;
        for _ in 0..5 {
            good.send_input(Vec2::ZERO, None).unwrap();
            state_within_5s(&mut good, "states keep flowing").await;
        }
        let after = state_within_5s(&mut good, "a state").await.tick;
        assert!(after > before + 4, "ticks {before} -> {after}");
    });
}

#[test]
fn replayed_input_datagrams_are_ignored() {
    use tessera::shared::protocol::codec::encode_datagram;
    use tessera::shared::protocol::messages::{InputC2s, InputFrame};
    use tessera::shared::protocol::quantize::quantize_move;
    let node = start();
    client_runtime().block_on(async {
        let mut client = login(&node, "ada").await.unwrap();
        let (start_tick, start_x) = own_tick_and_x(&mut client, 0).await;
        // One input moving 0.25 m east (under the 0.33 m a tick allows), captured and
        // replayed 10 times over several ticks. Were each applied, the avatar would walk
        // 2.5 m.
        let input = InputC2s {
            seq: 1_000,
            ack_tick: 0,
            frames: vec![InputFrame {
                move_q: quantize_move(Vec2::new(0.25, 0.0)),
                attack: None,
            }],
        };
        let datagram = bytes::Bytes::from(encode_datagram(&input).unwrap());
        let connection = client.connection().unwrap();
        for _ in 0..10 {
            connection.send_datagram(datagram.clone()).unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        // A state from well after the last replay (20 ticks: 1 s at 20 Hz; the replays
        // took 0.3 s). The client's own zero moves carry lower sequence numbers: ignored.
        let (_, end_x) = own_tick_and_x(&mut client, start_tick + 20).await;
        let walked = end_x - start_x;
        assert!(
            (0.2..0.4).contains(&walked),
            "one input applied means about 0.25 m, walked {walked} m"
        );
    });
}

#[test]
fn logouts_and_graceful_stops_are_durable_and_the_next_login_continues_there() {
    let dir = std::env::temp_dir().join(crate::util::unique("tessera-net-durable"));
    let first = start_node(&dir, 1, |_| {});
    let secret = auth::dev_secret(&dir).unwrap();
    let config = |node: &RunningNode| {
        ClientConfig::new(
            node.addr,
            "localhost",
            node.cert_der.clone(),
            auth::mint(&secret, &claims("ada")),
        )
    };
    let runtime = client_runtime();
    let (spawn_x, walked_x) = runtime.block_on(async {
        let mut client = Client::connect(&config(&first)).await.unwrap();
        let spawn_x = own_x(&mut client).await;
        let walked_x = walk_east(&mut client).await;
        assert!(walked_x > spawn_x + 3.0, "{spawn_x} -> {walked_x}");
        client.logout().await.expect("Bye: the state is saved");
        (spawn_x, walked_x)
    });
    // The node goes away entirely; a new one on the same data dir takes over.
    first.shutdown();
    let second = start_node(&dir, 1, |_| {});
    let (resumed_x, walked_on_x) = runtime.block_on(async {
        let mut client = Client::connect(&config(&second)).await.unwrap();
        let resumed_x = own_x(&mut client).await;
        (resumed_x, walk_east(&mut client).await)
    });
    assert!(
        (resumed_x - walked_x).abs() < 1.0,
        "logged out at {walked_x}, back at {resumed_x} (spawn {spawn_x})"
    );
    // Stopped gracefully with the player still connected: its state is saved too.
    second.shutdown();
    let third = start_node(&dir, 1, |_| {});
    let back_x = runtime.block_on(async {
        let mut client = Client::connect(&config(&third)).await.unwrap();
        own_x(&mut client).await
    });
    third.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        walked_on_x > resumed_x + 3.0 && (back_x - walked_on_x).abs() < 1.0,
        "walked on to {walked_on_x}, back after the shutdown at {back_x}"
    );
}

#[test]
fn nodes_sharing_mongodb_continue_each_others_players() {
    let Some(uri) = crate::util::services::mongo_uri("net::shared_mongodb") else {
        return;
    };
    let database = format!("tessera_net_{}", std::process::id());
    let with_mongo = |config: &mut Config| {
        config.node.services.mongodb_uri = Some(uri.clone());
        config.node.services.mongodb_database = database.clone();
    };
    let a = start_with(with_mongo);
    let b_dir = a.dir.with_extension("b");
    share_credentials(&a.dir, &b_dir);
    let b = start_node(&b_dir, 2, with_mongo);
    client_runtime().block_on(async {
        let mut client = login(&a, "ada").await.unwrap();
        let spawn_x = own_x(&mut client).await;
        let walked_x = walk_east(&mut client).await;
        assert!(walked_x > spawn_x + 3.0, "{spawn_x} -> {walked_x}");
        client.logout().await.expect("Bye from A: saved in MongoDB");
        let config = ClientConfig::new(
            b.addr,
            "localhost",
            b.cert_der.clone(),
            auth::mint(&a.secret, &claims("ada")),
        );
        let mut client = Client::connect(&config).await.unwrap();
        let on_b = own_x(&mut client).await;
        assert!(
            (on_b - walked_x).abs() < 1.0,
            "left A at {walked_x}, came to B at {on_b} (spawn {spawn_x})"
        );
    });
    b.shutdown();
    let _ = std::fs::remove_dir_all(&b_dir);
}

#[test]
fn a_logout_while_mongodb_is_down_is_saved_when_it_returns() {
    let Some(bin) = crate::util::services::mongo_bin("net::mongodb_outage") else {
        return;
    };
    let mut mongo = crate::private_mongo::PrivateMongo::start(&bin);
    let uri = mongo.uri();
    let node = start_with(|config| config.node.services.mongodb_uri = Some(uri.clone()));
    let runtime = client_runtime();
    let walked_x = runtime.block_on(async {
        let mut client = login(&node, "ada").await.unwrap();
        let walked_x = walk_east(&mut client).await;
        // MongoDB dies; the player logs out; MongoDB is back 2 s later.
        mongo.kill();
        let logout = tokio::spawn(client.logout());
        tokio::time::sleep(Duration::from_secs(2)).await;
        mongo.restart();
        let answer = tokio::time::timeout(Duration::from_secs(15), logout)
            .await
            .expect("the logout is answered")
            .unwrap();
        answer.expect("Bye once the save is durable, after MongoDB returned");
        walked_x
    });
    // A fresh login (any node sharing the store) continues where the player logged out.
    let back_x = runtime.block_on(async {
        let mut client = login(&node, "ada").await.unwrap();
        own_x(&mut client).await
    });
    assert!(
        (back_x - walked_x).abs() < 1.0,
        "logged out at {walked_x} during the outage, back at {back_x}"
    );
}

/// A hand-made connection to `node` (the Rust client's TLS and transport settings), its
/// control stream open.
async fn raw_connection(
    node: &TestNode,
) -> (quinn::Connection, quinn::SendStream, quinn::RecvStream) {
    let config = client_config(node, String::new());
    let endpoint = tessera::shared::client::endpoint(&config).unwrap();
    let connection = endpoint
        .connect(config.server, &config.server_name)
        .unwrap()
        .await
        .unwrap();
    let (send, recv) = connection.open_bi().await.unwrap();
    (connection, send, recv)
}

/// The application close code `connection` ends with (within 5 s).
async fn close_code_of(connection: &quinn::Connection) -> u64 {
    match tokio::time::timeout(Duration::from_secs(5), connection.closed())
        .await
        .expect("closed within 5 s")
    {
        quinn::ConnectionError::ApplicationClosed(close) => close.error_code.into_inner(),
        other => panic!("expected an application close, got {other}"),
    }
}

/// PROTOCOL.md section 6, rule 9: a violation before login (a first frame that is not
/// `Hello`, an unknown message type, a header announcing more than a frame may hold) is
/// answered `Error { Malformed }` and close code 4 (not 2, not after the 2 s grace).
#[test]
fn violations_before_login_get_malformed_then_close_code_4() {
    use tessera::shared::protocol::close_code::PROTOCOL_VIOLATION;
    use tessera::shared::protocol::codec::encode_frame;
    use tessera::shared::protocol::io::read_frame;
    use tessera::shared::protocol::messages::ControlC2s;
    let node = start();
    let stats = node.node.as_ref().unwrap().stats.clone();
    client_runtime().block_on(async {
        let logout_first = encode_frame(&ControlC2s::Logout).unwrap();
        let unknown_type = vec![1, 0, 0, 0, 0x7f];
        let oversized_header = (1u32 << 20).to_le_bytes().to_vec();
        for (what, bytes) in [
            ("Logout first", logout_first),
            ("unknown type", unknown_type),
            ("oversized header", oversized_header),
        ] {
            let (connection, mut send, mut recv) = raw_connection(&node).await;
            send.write_all(&bytes).await.unwrap();
            let answer = read_frame::<ControlS2c>(&mut recv).await.unwrap();
            assert!(
                matches!(&answer, ControlS2c::Error(e) if e.code == ErrorCode::Malformed),
                "{what}: {answer:?}"
            );
            assert_eq!(
                close_code_of(&connection).await,
                u64::from(PROTOCOL_VIOLATION),
                "{what}"
            );
        }
        assert_eq!(stats.violations.load(Ordering::Relaxed), 3);
    });
}

/// PROTOCOL.md section 6, rule 9: after login, a second `Hello` or a malformed input
/// datagram gets `Kicked { ProtocolViolation }` on the control stream, then close code 4.
#[test]
fn violations_after_login_are_kicked_with_a_reason() {
    use tessera::shared::protocol::close_code::PROTOCOL_VIOLATION;
    use tessera::shared::protocol::io::{read_frame, write_frame};
    use tessera::shared::protocol::messages::{ControlC2s, HelloC2s};
    let node = start();
    client_runtime().block_on(async {
        for second_hello in [true, false] {
            let (connection, mut send, mut recv) = raw_connection(&node).await;
            let hello = ControlC2s::Hello(HelloC2s {
                protocol_version: tessera::shared::protocol::PROTOCOL_VERSION,
                token: auth::mint(&node.secret, &claims("mallory")),
                ticket: None,
            });
            write_frame(&mut send, &hello).await.unwrap();
            let welcome = read_frame::<ControlS2c>(&mut recv).await.unwrap();
            assert!(matches!(welcome, ControlS2c::Welcome(_)), "{welcome:?}");
            if second_hello {
                write_frame(&mut send, &hello).await.unwrap();
            } else {
                connection
                    .send_datagram(bytes::Bytes::from_static(&[0xff; 8]))
                    .unwrap();
            }
            let kicked = loop {
                match read_frame::<ControlS2c>(&mut recv).await.unwrap() {
                    ControlS2c::Event(_) => continue,
                    other => break other,
                }
            };
            assert!(
                matches!(&kicked, ControlS2c::Kicked(k) if k.reason == KickReason::ProtocolViolation),
                "second Hello {second_hello}: {kicked:?}"
            );
            assert_eq!(
                close_code_of(&connection).await,
                u64::from(PROTOCOL_VIOLATION)
            );
        }
    });
}

/// PROTOCOL.md section 3: input sequence numbers are per connection. After a resume the
/// client starts again at 1 and its inputs move the avatar (the node used to keep the old
/// connection's newest number and drop them all).
#[test]
fn input_sequence_numbers_start_over_on_each_connection() {
    let node = start();
    client_runtime().block_on(async {
        let mut client = login(&node, "ada").await.unwrap();
        let spawn_x = own_x(&mut client).await;
        let walked_x = walk_east(&mut client).await;
        assert!(walked_x > spawn_x + 3.0, "{spawn_x} -> {walked_x}");
        client
            .connection()
            .unwrap()
            .close(0u32.into(), b"simulated network loss");
        let resumed_x = own_x(&mut client).await;
        assert_eq!(client.stats().reconnects, 1);
        let walked_again_x = walk_east(&mut client).await;
        assert!(
            walked_again_x > resumed_x + 3.0,
            "inputs after the resume (seq from 1) must move the avatar: {resumed_x} -> {walked_again_x}"
        );
    });
}

/// PROTOCOL.md section 1: a client must advertise QUIC datagrams (RFC 9221
/// `max_datagram_frame_size`). One that does not is refused at login with
/// `UnsupportedTransport` and a message saying what to send, instead of logging in and
/// never receiving a state.
#[test]
fn a_client_without_quic_datagrams_is_refused_with_a_clear_error() {
    use tessera::shared::protocol::io::{read_frame, write_frame};
    use tessera::shared::protocol::messages::{ControlC2s, HelloC2s};
    let node = start();
    client_runtime().block_on(async {
        let config = client_config(&node, auth::mint(&node.secret, &claims("ada")));
        let mut quic = tessera::shared::client::quic_client_config(&config).unwrap();
        let mut transport = quinn::TransportConfig::default();
        transport.datagram_receive_buffer_size(None); // No max_datagram_frame_size.
        quic.transport_config(Arc::new(transport));
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let connection = endpoint
            .connect_with(quic, config.server, &config.server_name)
            .unwrap()
            .await
            .unwrap();
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        let hello = ControlC2s::Hello(HelloC2s {
            protocol_version: tessera::shared::protocol::PROTOCOL_VERSION,
            token: config.token.clone(),
            ticket: None,
        });
        write_frame(&mut send, &hello).await.unwrap();
        match read_frame::<ControlS2c>(&mut recv).await.unwrap() {
            ControlS2c::Error(e) => {
                assert_eq!(e.code, ErrorCode::UnsupportedTransport);
                assert!(
                    e.message.contains("max_datagram_frame_size"),
                    "{}",
                    e.message
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(
            close_code_of(&connection).await,
            u64::from(tessera::shared::protocol::close_code::REFUSED)
        );
    });
}

/// PROTOCOL.md section 3: `Welcome` names the archetypes by number (balance.toml's names
/// sorted by their bytes), and the states use those numbers.
#[test]
fn welcome_names_the_archetypes_the_states_number() {
    let node = start();
    client_runtime().block_on(async {
        let mut client = login(&node, "ada").await.unwrap();
        let config = Config::embedded_default();
        let mut names: Vec<String> = config
            .balance
            .archetypes
            .iter()
            .map(|a| a.name.clone())
            .collect();
        names.sort();
        assert_eq!(client.welcome().archetypes, names);
        let snapshot = state_within_5s(&mut client, "a state").await;
        let avatar = client.welcome().entity;
        let me = snapshot.entities.iter().find(|e| e.id == avatar).unwrap();
        let player_archetype = &config.balance.archetypes[config.balance.player_archetype].name;
        assert_eq!(
            &client.welcome().archetypes[usize::from(me.archetype)],
            player_archetype
        );
        assert!(
            snapshot
                .entities
                .iter()
                .all(|e| usize::from(e.archetype) < names.len())
        );
    });
}

/// PROTOCOL.md section 3: a session gets a fresh resume ticket every 10 s (tickets live
/// 30 s), and the newest one resumes the session.
#[test]
fn a_session_gets_a_fresh_resume_ticket_that_resumes_it() {
    use tessera::shared::protocol::io::{read_frame, write_frame};
    use tessera::shared::protocol::limits::RESUME_TICKET_REFRESH_S;
    use tessera::shared::protocol::messages::{ControlC2s, HelloC2s};
    let node = start();
    client_runtime().block_on(async {
        let (connection, mut send, mut recv) = raw_connection(&node).await;
        let hello = |token: String, ticket| {
            ControlC2s::Hello(HelloC2s {
                protocol_version: tessera::shared::protocol::PROTOCOL_VERSION,
                token,
                ticket,
            })
        };
        let token = auth::mint(&node.secret, &claims("ada"));
        write_frame(&mut send, &hello(token, None)).await.unwrap();
        let ControlS2c::Welcome(welcome) = read_frame::<ControlS2c>(&mut recv).await.unwrap()
        else {
            panic!("expected Welcome");
        };
        let wait = Duration::from_secs(RESUME_TICKET_REFRESH_S + 5);
        let fresh = tokio::time::timeout(wait, async {
            loop {
                if let ControlS2c::ResumeTicket(t) = read_frame(&mut recv).await.unwrap() {
                    return t;
                }
            }
        })
        .await
        .expect("a fresh ticket");
        assert_ne!(fresh, welcome.resume_ticket);
        connection.close(0u32.into(), b"simulated network loss");
        let (_again, mut send, mut recv) = raw_connection(&node).await;
        write_frame(&mut send, &hello(String::new(), Some(fresh)))
            .await
            .unwrap();
        match read_frame::<ControlS2c>(&mut recv).await.unwrap() {
            ControlS2c::Welcome(resumed) => assert_eq!(resumed.entity, welcome.entity),
            other => panic!("expected Welcome, got {other:?}"),
        }
    });
}

/// PROTOCOL.md section 1: the pinned certificate is checked against the server name: a
/// name the certificate does not carry fails the handshake.
#[test]
fn a_wrong_server_name_fails_the_handshake() {
    let node = start();
    client_runtime().block_on(async {
        let mut config = client_config(&node, auth::mint(&node.secret, &claims("ada")));
        config.server_name = "wrong.example".into();
        match Client::connect(&config).await {
            Err(ClientError::Connection(e)) => {
                assert!(e.to_lowercase().contains("certificate"), "{e}")
            }
            Err(other) => panic!("expected a handshake failure, got {other}"),
            Ok(_) => panic!("a wrong server name was accepted"),
        }
        config.server_name = "127.0.0.1".into();
        Client::connect(&config)
            .await
            .expect("the certificate's IP name");
    });
}

/// PROTOCOL.md section 7, `LOGIN_TIMEOUT`: a connection that never sends `Hello` is
/// closed with code 1 once the 5 s are over.
#[test]
fn a_client_that_never_says_hello_is_closed_with_code_1() {
    let node = start();
    client_runtime().block_on(async {
        let (connection, _send, _recv) = raw_connection(&node).await;
        let code = match tokio::time::timeout(Duration::from_secs(15), connection.closed())
            .await
            .expect("closed by the node")
        {
            quinn::ConnectionError::ApplicationClosed(close) => close.error_code.into_inner(),
            other => panic!("expected an application close, got {other}"),
        };
        assert_eq!(
            code,
            u64::from(tessera::shared::protocol::close_code::LOGIN_TIMEOUT)
        );
    });
}

/// PROTOCOL.md section 7, `[net] login_burst_per_address`: back-to-back logins from one
/// address beyond the burst are refused with `RateLimited` and a time to retry, before
/// their tokens are checked, and counted; after that time a login succeeds.
#[test]
fn logins_over_the_per_address_burst_are_rate_limited_until_their_retry_time() {
    const BURST: u32 = 5;
    let node = start_with(|config| {
        config.node.login_limit = tessera::shared::config::LoginLimitConfig {
            per_s: 1,
            burst: BURST,
            loopback: true, // The test's clients are all on 127.0.0.1.
        };
    });
    let stats = node.node.as_ref().unwrap().stats.clone();
    client_runtime().block_on(async {
        let mut sessions = Vec::new();
        let mut refusals = Vec::new();
        for i in 0..30 {
            match login(&node, &format!("p{i}")).await {
                Ok(client) => sessions.push(client),
                Err(ClientError::Refused(e)) => refusals.push(e),
                Err(other) => panic!("login {i}: expected a session or a refusal, got {other}"),
            }
        }
        // The burst is whole at the start; the bucket then refills at 1 a second, far
        // slower than loopback logins follow each other.
        assert!(
            sessions.len() >= BURST as usize,
            "{} logged in",
            sessions.len()
        );
        assert!(!refusals.is_empty(), "none of 30 logins was limited");
        for e in &refusals {
            assert_eq!(e.code, ErrorCode::RateLimited, "{e:?}");
            let ms = e.retry_after_ms.expect("a time to retry");
            assert!((1..=1_000).contains(&ms), "retry after {ms} ms");
        }
        // A refusal comes before the token is looked at: a bad one is limited too.
        let bad = Client::connect(&client_config(&node, "not a token".into())).await;
        let Err(ClientError::Refused(e)) = bad else {
            panic!("expected a refusal")
        };
        assert_eq!(e.code, ErrorCode::RateLimited);
        let limited = refusals.len() as u64 + 1;
        assert_eq!(stats.logins_rate_limited.load(Ordering::Relaxed), limited);
        // Waiting as told, the next login gets in.
        tokio::time::sleep(Duration::from_millis(e.retry_after_ms.unwrap().into())).await;
        let late = login(&node, "patient").await;
        assert!(late.is_ok(), "after the wait: {:?}", late.err());
        assert_eq!(stats.logins_rate_limited.load(Ordering::Relaxed), limited);
    });
}

/// A server that stops reading the control stream as it ends a session (as nodes before
/// this one did) makes the client's next request fail before its `Kicked` frame is read:
/// the client still reads the frame still on its way, ends the session, and does not
/// come back with its resume ticket. The server is scripted, to order the race.
#[test]
fn a_request_failing_as_the_server_kicks_still_ends_the_session_with_the_kick() {
    use tessera::shared::ids::PlayerId;
    use tessera::shared::protocol::io::{read_frame, write_frame};
    use tessera::shared::protocol::messages::{ControlC2s, KickedS2c, WelcomeS2c};
    use tessera_server::net::tls;
    let dir = std::env::temp_dir().join(crate::util::unique("tessera-scripted"));
    let identity = tls::dev_identity(&dir).unwrap();
    let cert = identity.chain[0].to_vec();
    client_runtime().block_on(async {
        let server = quinn::Endpoint::server(
            tls::server_config(identity).unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        let addr = server.local_addr().unwrap();
        let script = async {
            let connection = server.accept().await.unwrap().await.unwrap();
            let (mut send, mut recv) = connection.accept_bi().await.unwrap();
            let hello = read_frame::<ControlC2s>(&mut recv).await.unwrap();
            assert!(matches!(hello, ControlC2s::Hello(_)), "{hello:?}");
            let welcome = WelcomeS2c {
                session: 1,
                player: PlayerId(7),
                entity: NetId::of_player(PlayerId(7)),
                region: RegionId(1),
                tick: 1,
                tick_hz: 20,
                resume_ticket: b"a resume ticket".to_vec(),
                archetypes: Vec::new(),
            };
            write_frame(&mut send, &ControlS2c::Welcome(welcome))
                .await
                .unwrap();
            // The session ends: the server stops reading first, the frame follows.
            recv.stop(0u32.into()).unwrap();
            tokio::time::sleep(Duration::from_millis(400)).await;
            let kicked = KickedS2c {
                reason: KickReason::Admin,
                message: "maintenance".into(),
            };
            // (Fails if the client already left.)
            let _ = write_frame(&mut send, &ControlS2c::Kicked(kicked)).await;
            let _ = send.finish();
            connection.closed().await;
            // A client that took the failed request for a dropped connection resumes.
            tokio::time::timeout(Duration::from_secs(3), server.accept())
                .await
                .is_ok()
        };
        let client = async {
            let config = ClientConfig::new(addr, "localhost", cert, "a token".into());
            let mut client = Client::connect(&config).await.unwrap();
            // Written once the stop has arrived: the write fails.
            tokio::time::sleep(Duration::from_millis(200)).await;
            client.get_economy().unwrap();
            let ended = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    match client.next_control().await {
                        Ok(_) => continue,
                        Err(e) => break e,
                    }
                }
            });
            ended.await.map_err(|_| "no end within 5 s".to_string())
        };
        let (came_back, ended) = tokio::join!(script, client);
        assert!(!came_back, "the kicked client connected again");
        match ended {
            Ok(ClientError::Kicked(kicked)) => assert_eq!(kicked.message, "maintenance"),
            other => panic!("the session should end with the kick, not {other:?}"),
        }
    });
}
