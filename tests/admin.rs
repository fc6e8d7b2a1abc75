//! The admin HTTP API over real HTTP on loopback: keys and roles, JSON errors, body
//! limits, health, metrics, player actions, and the OpenAPI document as the contract.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use tessera::shared::client::{Client, ClientError};
use tessera::shared::protocol::messages::KickReason;
use tessera_server::admin::keys::{Role, new_key};

use crate::net::{TestNode, client_config, client_runtime, login, start_with};

/// One HTTP/1.1 exchange: (status, body). The request closes the connection, so the
/// response is everything until EOF.
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let (status, _, body) = http_with_head(addr, method, path, key, body);
    (status, body)
}

/// [`http`] from async code: the exchange blocks, so it runs on the blocking pool.
pub(crate) async fn http_async(
    addr: SocketAddr,
    method: &'static str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let (path, key, body) = (
        path.to_owned(),
        key.map(str::to_owned),
        body.map(str::to_owned),
    );
    tokio::task::spawn_blocking(move || http(addr, method, &path, key.as_deref(), body.as_deref()))
        .await
        .expect("the HTTP exchange does not panic")
}

/// Like [`http`], with the response's head (status line and headers) too.
pub(crate) fn http_with_head(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).expect("the admin API accepts connections");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: tessera\r\nConnection: close\r\n");
    if let Some(key) = key {
        request.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method != "GET" {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    // A refused oversized body may reset the connection after the answer was sent.
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, rest) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("an HTTP response, got {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line, got {head:?}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    (status, head.to_owned(), body)
}

fn dechunk(mut text: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = text.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        text = &rest[size + 2..];
    }
    out
}

pub(crate) fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON ({e}): {body}"))
}

/// The `error.code` of an error body.
fn code(body: &str) -> String {
    json(body)["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("an error body: {body}"))
        .to_owned()
}

/// The kick that ends `client`'s session, which must come within 5 s.
pub(crate) async fn kicked_within_5s(
    client: &mut tessera::shared::client::Client,
) -> tessera::shared::protocol::messages::KickedS2c {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match client.next_control().await {
                Err(ClientError::Kicked(k)) => return k,
                Ok(_) => continue,
                Err(e) => panic!("the session ended without a kick: {e}"),
            }
        }
    })
    .await
    .expect("kicked within 5 s")
}

/// A node with one key per role; returns it and the keys (viewer, orchestrator, admin).
pub(crate) fn node_with_keys() -> (TestNode, [String; 3]) {
    let dir = std::env::temp_dir().join(crate::util::unique("tessera-admin-keys"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut file = String::new();
    let mut keys = Vec::new();
    for role in [Role::Viewer, Role::Orchestrator, Role::Admin] {
        let (key, entry) = new_key(&format!("test-{}", role.name()), role).unwrap();
        file.push_str(&entry);
        keys.push(key);
    }
    let path = dir.join("keys.toml");
    std::fs::write(&path, file).unwrap();
    let node = start_with(|config| config.node.admin.keys_file = Some(path));
    (node, keys.try_into().unwrap())
}

pub(crate) fn admin_addr(node: &TestNode) -> SocketAddr {
    node.node.as_ref().unwrap().admin_addr
}

#[test]
fn keys_roles_bodies_and_sizes_are_checked_with_json_errors() {
    let (node, [viewer, orchestrator, admin]) = node_with_keys();
    let addr = admin_addr(&node);
    // No key, an unknown key: 401.
    let (status, body) = http(addr, "GET", "/v1/node", None, None);
    assert_eq!(
        (status, code(&body).as_str()),
        (401, "unauthorized"),
        "{body}"
    );
    let (status, body) = http(addr, "GET", "/v1/node", Some("not-a-key"), None);
    assert_eq!(
        (status, code(&body).as_str()),
        (401, "unauthorized"),
        "{body}"
    );
    assert_eq!(json(&body)["error"]["retryable"], false);
    // A viewer reads, but may not act: 403 before the body is even looked at.
    let (status, body) = http(addr, "GET", "/v1/node", Some(&viewer), None);
    assert_eq!(status, 200, "{body}");
    assert!(json(&body)["name"].is_string(), "{body}");
    let kick = "/v1/players/1/kick";
    for key in [&viewer, &orchestrator] {
        let (status, body) = http(addr, "POST", kick, Some(key), Some("{not json"));
        assert_eq!((status, code(&body).as_str()), (403, "forbidden"), "{body}");
        assert!(
            json(&body)["error"]["message"]
                .as_str()
                .unwrap()
                .contains("admin")
        );
    }
    // Malformed JSON: 400, naming the field.
    for (bad, field) in [
        (r#"{"reason": 5}"#, "reason"),
        (r#"{}"#, "reason"),
        (r#"{"reason": "x", "extra": 1}"#, "extra"),
        (r#"{"reason": "   "}"#, "reason"),
        ("{not json", "body"),
    ] {
        let (status, body) = http(addr, "POST", kick, Some(&admin), Some(bad));
        assert_eq!(
            (status, code(&body).as_str()),
            (400, "bad_request"),
            "{bad}: {body}"
        );
        let message = json(&body)["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains(field), "{bad}: {message}");
    }
    let (status, body) = http(
        addr,
        "POST",
        "/v1/players/x/kick",
        Some(&admin),
        Some(r#"{"reason":"r"}"#),
    );
    assert_eq!(
        (status, code(&body).as_str()),
        (400, "bad_request"),
        "{body}"
    );
    // Oversized: 413.
    let big = format!(r#"{{"reason": "{}"}}"#, "x".repeat(100_000));
    let (status, body) = http(addr, "POST", kick, Some(&admin), Some(&big));
    assert_eq!(
        (status, code(&body).as_str()),
        (413, "payload_too_large"),
        "{body}"
    );
    // Well-formed, but nobody to kick: 404. An unknown route: 404 too.
    let (status, body) = http(
        addr,
        "POST",
        kick,
        Some(&admin),
        Some(r#"{"reason": "test"}"#),
    );
    assert_eq!((status, code(&body).as_str()), (404, "not_found"), "{body}");
    let (status, body) = http(addr, "GET", "/v1/nothing", Some(&admin), None);
    assert_eq!((status, code(&body).as_str()), (404, "not_found"), "{body}");
}

/// The value of header `name` in a response head.
fn header_of(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

#[test]
fn every_error_is_json_a_wrong_method_and_an_unknown_route_included() {
    let (node, [viewer, _, admin]) = node_with_keys();
    let addr = admin_addr(&node);
    // A route that exists, with a method it does not take: 405, JSON, with Allow. With
    // or without a key (nothing is run, so nothing needs one).
    for key in [None, Some(viewer.as_str()), Some(admin.as_str())] {
        let (status, head, body) = http_with_head(addr, "GET", "/v1/regions/1", key, None);
        assert_eq!(
            (status, code(&body).as_str()),
            (405, "method_not_allowed"),
            "{head}\n{body}"
        );
        let allow = header_of(&head, "allow").unwrap_or_else(|| panic!("Allow in {head}"));
        assert!(allow.contains("PUT") && allow.contains("DELETE"), "{allow}");
        let error = &json(&body)["error"];
        assert_eq!(error["retryable"], false);
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains("GET") && message.contains("PUT, DELETE"),
            "{message}"
        );
    }
    for (method, path, allowed) in [
        ("PATCH", "/v1/node", "GET"),
        ("POST", "/healthz", "GET"),
        ("DELETE", "/v1/config/balance", "GET"),
        ("GET", "/v1/config/reload", "POST"),
        ("PUT", "/v1/players/7/kick", "POST"),
    ] {
        let (status, head, body) = http_with_head(addr, method, path, Some(&admin), Some("{}"));
        assert_eq!(
            (status, code(&body).as_str()),
            (405, "method_not_allowed"),
            "{method} {path}: {body}"
        );
        assert!(
            header_of(&head, "allow").is_some_and(|a| a.contains(allowed)),
            "{method} {path}: {head}"
        );
        assert!(
            header_of(&head, "content-type").is_some_and(|t| t.contains("application/json")),
            "{head}"
        );
    }
    // No such route, whatever the method: 404, JSON.
    for (method, path) in [
        ("GET", "/nothing"),
        ("DELETE", "/v1/regions/1/x"),
        ("GET", "/"),
    ] {
        let (status, body) = http(addr, method, path, Some(&admin), None);
        assert_eq!(
            (status, code(&body).as_str()),
            (404, "not_found"),
            "{method} {path}: {body}"
        );
    }
    // A path parameter that does not decode: 400, JSON.
    let (status, body) = http(
        addr,
        "POST",
        "/v1/players/%FF/kick",
        Some(&admin),
        Some(r#"{"reason": "r"}"#),
    );
    assert_eq!(
        (status, code(&body).as_str()),
        (400, "bad_request"),
        "{body}"
    );
}

#[test]
fn the_openapi_document_lists_every_route_with_its_role() {
    let (node, [viewer, orchestrator, admin]) = node_with_keys();
    let addr = admin_addr(&node);
    let (status, body) = http(addr, "GET", "/v1/openapi.json", None, None);
    assert_eq!(status, 200);
    let doc = json(&body);
    let key_of = |role: &str| match role {
        "viewer" => None,
        "orchestrator" => Some(&viewer),
        "admin" => Some(&orchestrator),
        other => panic!("unknown role {other}"),
    };
    let mut checked = 0;
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let concrete = path
                .replace("{player}", "1")
                .replace("{region}", "1")
                .replace("{board}", "xp")
                .replace("{key}", "job-1");
            let method = method.to_ascii_uppercase();
            let role = operation["x-tessera-role"].as_str();
            // The route exists: without a key it answers 401 (or, unprotected, not 404).
            let (status, body) = http(addr, &method, &concrete, None, Some("{}"));
            match role {
                Some(_) => assert_eq!(status, 401, "{method} {path}: {body}"),
                None => assert_ne!(status, 404, "{method} {path}: {body}"),
            }
            // The role it documents is the one enforced: the role below is refused.
            if let Some(below) = role.and_then(key_of) {
                let (status, body) = http(addr, &method, &concrete, Some(below), Some("{}"));
                assert_eq!(status, 403, "{method} {path} with the role below: {body}");
            }
            if let Some(role) = role {
                let key = match role {
                    "viewer" => &viewer,
                    "orchestrator" => &orchestrator,
                    _ => &admin,
                };
                let (status, body) = http(addr, &method, &concrete, Some(key), Some("{}"));
                assert!(
                    status != 401 && status != 403 && status != 404
                        || body.contains("not on this node")
                        || body.contains("no region")
                        || body.contains("not in the directory")
                        || body.contains("no bulk job")
                        || body.contains("is not on the xp leaderboard"),
                    "{method} {path} with its role: {status} {body}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 6, "{checked} operations");
}

#[test]
fn health_and_metrics_report_the_running_node() {
    let (node, [viewer, ..]) = node_with_keys();
    let addr = admin_addr(&node);
    // The driver publishes its status within a second or two of starting.
    let deadline = Instant::now() + Duration::from_secs(10);
    let regions = loop {
        let (status, body) = http(addr, "GET", "/v1/regions", Some(&viewer), None);
        assert_eq!(status, 200, "{body}");
        let regions = json(&body)["regions"].as_array().unwrap().clone();
        if !regions.is_empty() || Instant::now() > deadline {
            break regions;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(regions.len(), 4, "the default world's regions");
    assert!(regions.iter().all(|r| r["entities"].as_u64().unwrap() > 0));
    assert!(
        regions
            .iter()
            .all(|r| r["tick_p99_ms"].as_f64().unwrap() > 0.0)
    );
    // Durations to the microsecond, not `0.045748000000000004`.
    let (_, node_body) = http(addr, "GET", "/v1/node", Some(&viewer), None);
    let node_info = json(&node_body);
    let mut durations: Vec<&Value> = vec![&node_info["tick_p50_ms"], &node_info["tick_p99_ms"]];
    for r in &regions {
        durations.extend([&r["tick_p50_ms"], &r["tick_p99_ms"]]);
    }
    for ms in durations {
        let text = ms.to_string();
        let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
        assert!(
            ms.is_number() && decimals <= 3,
            "{text} in {node_body} / {regions:?}"
        );
    }
    for path in ["/healthz", "/livez", "/readyz"] {
        let (status, body) = http(addr, "GET", path, None, None);
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(json(&body)["status"], "ok", "{path}: {body}");
    }
    let (status, _) = http(addr, "GET", "/metrics", None, None);
    assert_eq!(status, 401, "metrics need a key");
    let (status, text) = http(addr, "GET", "/metrics", Some(&viewer), None);
    assert_eq!(status, 200);
    for expected in [
        "# TYPE tessera_region_tick_duration_seconds histogram",
        "tessera_region_tick_duration_seconds_bucket{region=\"1\",le=",
        "tessera_node_tick_duration_seconds_count",
        "tessera_region_entities{region=\"2\"}",
        "tessera_inputs_dropped_total{reason=\"rate_limited\"}",
        "# HELP tessera_snapshot_age_seconds",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    promtool_check(&text);
}

/// `promtool check metrics` on `text`, where promtool is installed (the test script
/// installs it; under CI it must be there).
pub(crate) fn promtool_check(text: &str) {
    let mut child = match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if crate::util::services::in_ci() => {
            panic!("CI is set but promtool cannot run ({e}): run ./scripts/test.sh")
        }
        Err(_) => {
            eprintln!(
                "SKIPPED promtool check: promtool not installed (./scripts/test.sh installs it)"
            );
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{report}"
    );
    // Lint findings (names, units, help) count as failures here too.
    assert!(
        report.trim().is_empty(),
        "promtool check metrics:\n{report}"
    );
}

/// A client that missed its kick (its connection dropped first, so the `Kicked` frame had
/// nowhere to go) reconnects with its resume ticket: it is answered with the kick, not let
/// back in. Its token logs it in again, and that new session resumes as usual.
#[test]
fn a_kick_the_client_missed_answers_its_resume_ticket_but_the_token_logs_it_in_again() {
    let (node, [_, _, admin]) = node_with_keys();
    let addr = admin_addr(&node);
    client_runtime().block_on(async {
        let client = login(&node, "ada").await.unwrap();
        let player = client.welcome().player;
        let ticket = client.welcome().resume_ticket.clone();
        // The game client vanishes without a logout: the avatar waits for a resume.
        drop(client);
        let path = format!("/v1/players/{}/kick", player.0);
        let (status, body) = http_async(
            addr,
            "POST",
            &path,
            Some(&admin),
            Some(r#"{"reason": "gold duping"}"#),
        )
        .await;
        assert_eq!(status, 200, "{body}");

        let token = tessera_server::auth::mint(&node.secret, &crate::net::claims("ada"));
        let mut config = client_config(&node, token.clone());
        config.resume_ticket = Some(ticket);
        match Client::connect(&config).await {
            Err(ClientError::Kicked(kicked)) => {
                assert_eq!(kicked.reason, KickReason::Admin);
                assert_eq!(kicked.message, "gold duping");
            }
            Err(e) => panic!("the resume should be answered with the kick, got {e}"),
            Ok(_) => panic!("a kicked session was resumed"),
        }
        assert_eq!(node.node.as_ref().unwrap().board.status().players, 0);

        // The player logs in again with its token: a new session, whose own ticket resumes
        // it after a drop.
        let again = Client::connect(&client_config(&node, token))
            .await
            .expect("a login with the token after a kick");
        assert_eq!(again.welcome().player, player);
        let ticket = again.welcome().resume_ticket.clone();
        drop(again);
        let mut config = client_config(&node, String::new());
        config.resume_ticket = Some(ticket);
        let resumed = Client::connect(&config)
            .await
            .expect("the new session's ticket resumes it");
        assert_eq!(resumed.welcome().player, player);
        resumed.logout().await.expect("Bye");
    });
    let metrics = http(addr, "GET", "/metrics", Some(&admin), None).1;
    assert!(
        metrics.contains("tessera_kicked_resumes_total 1\n"),
        "the refused resume is counted"
    );
}

#[test]
fn an_admin_kick_ends_the_session_and_is_audited() {
    let (node, [viewer, _, admin]) = node_with_keys();
    let addr = admin_addr(&node);
    let player = client_runtime().block_on(async {
        let mut client = login(&node, "ada").await.unwrap();
        let player = client.welcome().player.0;
        let path = format!("/v1/players/{player}/kick");
        let (status, body) = http_async(
            addr,
            "POST",
            &path,
            Some(&admin),
            Some(r#"{"reason": "cheating, case 17"}"#),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(json(&body)["kicked"], true);
        let kicked = kicked_within_5s(&mut client).await;
        assert_eq!(kicked.reason, KickReason::Admin);
        assert_eq!(kicked.message, "cheating, case 17");
        player
    });
    // The avatar left the world.
    let deadline = Instant::now() + Duration::from_secs(5);
    while node.node.as_ref().unwrap().board.status().players > 0 {
        assert!(Instant::now() < deadline, "the kicked avatar should leave");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Kicking again is refused: nobody to kick. Both are in the audit log, newest first.
    let (status, _) = http(
        addr,
        "POST",
        &format!("/v1/players/{player}/kick"),
        Some(&admin),
        Some(r#"{"reason": "again"}"#),
    );
    assert_eq!(status, 404);
    let (status, body) = http(addr, "GET", "/v1/audit?limit=10", Some(&viewer), None);
    assert_eq!(status, 200, "{body}");
    let records = json(&body)["records"].as_array().unwrap().clone();
    assert_eq!(records.len(), 2, "{body}");
    let target = format!("player:{player}");
    for (record, reason, result) in [
        (&records[0], "again", "refused: 404"),
        (&records[1], "cheating, case 17", "ok"),
    ] {
        assert_eq!(record["who"], "test-admin", "{record}");
        assert_eq!(record["role"], "admin");
        assert_eq!(record["action"], "player.kick");
        assert_eq!(record["target"], target.as_str());
        assert_eq!(record["reason"], reason);
        assert!(
            record["result"].as_str().unwrap().starts_with(result),
            "{record}"
        );
    }
    let (status, body) = http(addr, "GET", "/v1/audit?limit=0", Some(&viewer), None);
    assert_eq!(
        (status, code(&body).as_str()),
        (400, "bad_request"),
        "{body}"
    );
}

#[test]
fn healthz_turns_unhealthy_within_5_s_of_losing_mongodb_and_healthy_after_it_is_back() {
    let Some(bin) = crate::util::services::mongo_bin("admin::healthz_mongodb_outage") else {
        return;
    };
    let mut mongo = crate::private_mongo::PrivateMongo::start(&bin);
    let uri = mongo.uri();
    let node = start_with(|config| {
        config.node.services.mongodb_uri = Some(uri);
        config.node.services.mongodb_database = crate::util::unique("health").replace('-', "_");
    });
    let addr = admin_addr(&node);
    let healthz = || {
        let (status, body) = http(addr, "GET", "/healthz", None, None);
        (status, json(&body))
    };
    // Up: the first probe answers within a second or two.
    let deadline = Instant::now() + Duration::from_secs(10);
    while healthz().0 != 200 {
        assert!(
            Instant::now() < deadline,
            "healthy once MongoDB answers: {:?}",
            healthz()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    mongo.kill();
    let killed = Instant::now();
    let (status, report) = loop {
        let (status, report) = healthz();
        if status != 200 {
            break (status, report);
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "still ok 10 s after the kill"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let noticed = killed.elapsed();
    eprintln!("healthz: 503 {noticed:?} after MongoDB was killed: {report}");
    assert!(noticed <= Duration::from_secs(5), "took {noticed:?}");
    assert_eq!(status, 503);
    assert_eq!(report["status"], "degraded", "alive but degraded: {report}");
    assert_eq!(report["checks"]["mongodb"]["ok"], false, "{report}");
    // Play goes on: alive and ready.
    assert_eq!(http(addr, "GET", "/livez", None, None).0, 200);
    assert_eq!(http(addr, "GET", "/readyz", None, None).0, 200);
    mongo.restart();
    let restarted = Instant::now();
    while healthz().0 != 200 {
        assert!(
            restarted.elapsed() < Duration::from_secs(15),
            "healthy again after the restart: {:?}",
            healthz()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "healthz: 200 {:?} after MongoDB restarted",
        restarted.elapsed()
    );
}

#[test]
fn operators_teleport_message_and_ban_players() {
    use tessera::shared::protocol::messages::{ControlS2c, ErrorCode, EventS2c};
    let (node, [viewer, _, admin]) = node_with_keys();
    let addr = admin_addr(&node);
    let admin = admin.as_str();
    let post = move |path: String, body: String| async move {
        http_async(addr, "POST", &path, Some(admin), Some(&body)).await
    };
    let player = client_runtime().block_on(async {
        let mut client = login(&node, "ada").await.unwrap();
        let player = client.welcome().player.0;
        let me = client.welcome().entity;
        // Teleport within the region: the avatar is there a tick later.
        let to = (300.5f32, 400.25f32);
        let (status, body) = post(
            format!("/v1/players/{player}/teleport"),
            format!(
                r#"{{"x": {}, "y": {}, "reason": "stuck in a wall"}}"#,
                to.0, to.1
            ),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let _ = client.send_input(tessera::shared::math::Vec2::ZERO, None);
            let state = client.next_state().await.unwrap();
            let here = state
                .entities
                .iter()
                .find(|e| e.id == me)
                .map(|e| tessera::shared::protocol::quantize::dequantize_position(e.position));
            if here.is_some_and(|p| (p.x - to.0).abs() < 0.1 && (p.y - to.1).abs() < 0.1) {
                break;
            }
            assert!(Instant::now() < deadline, "teleported within 5 s: {here:?}");
        }
        // Outside the player's region: refused, nothing moves.
        let (status, body) = post(
            format!("/v1/players/{player}/teleport"),
            r#"{"x": 1500, "y": 10, "reason": "elsewhere"}"#.into(),
        )
        .await;
        assert_eq!(
            (status, code(&body).as_str()),
            (422, "unprocessable"),
            "{body}"
        );
        // A message arrives as an event.
        let (status, body) = post(
            format!("/v1/players/{player}/message"),
            r#"{"text": "Server restarts in 5 minutes", "reason": "maintenance"}"#.into(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let text = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let ControlS2c::Event(EventS2c::Message { text }) =
                    client.next_control().await.unwrap()
                {
                    return text;
                }
            }
        })
        .await
        .expect("the message within 5 s");
        assert_eq!(text, "Server restarts in 5 minutes");
        // A ban for an hour: the session ends, the next login is refused with the reason.
        let (status, body) = post(
            format!("/v1/players/{player}/ban"),
            r#"{"reason": "botting", "duration_s": 3600}"#.into(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(json(&body)["kicked"], true);
        let kicked = kicked_within_5s(&mut client).await;
        assert_eq!(kicked.reason, KickReason::Admin);
        assert!(kicked.message.contains("botting"));
        match login(&node, "ada").await {
            Err(ClientError::Refused(e)) => {
                assert_eq!(e.code, ErrorCode::Banned);
                assert!(
                    e.message.contains("botting") && e.message.contains("more seconds"),
                    "{}",
                    e.message
                );
            }
            other => panic!(
                "a banned login must be refused: {:?}",
                other.map(|c| c.welcome().player)
            ),
        }
        // Lifted: the login works again.
        let (status, _) = http_async(
            addr,
            "DELETE",
            &format!("/v1/players/{player}/ban"),
            Some(admin),
            Some(r#"{"reason": "appeal"}"#),
        )
        .await;
        assert_eq!(status, 200);
        login(&node, "ada").await.expect("unbanned");
        player
    });
    audit_is_filtered_and_detailed(addr, &viewer, player);
}

/// The audit log of [`operators_teleport_message_and_ban_players`]: filtered by player,
/// action and key, with each action's details; wrong parameters are refused by name.
fn audit_is_filtered_and_detailed(addr: SocketAddr, viewer: &str, player: u64) {
    let records = |query: &str| -> Vec<Value> {
        let (status, body) = http(
            addr,
            "GET",
            &format!("/v1/audit?{query}"),
            Some(viewer),
            None,
        );
        assert_eq!(status, 200, "{query}: {body}");
        json(&body)["records"].as_array().unwrap().clone()
    };
    let actions = |records: &[Value]| -> Vec<String> {
        records
            .iter()
            .map(|r| r["action"].as_str().unwrap().to_owned())
            .collect()
    };
    let mine = records(&format!("player={player}"));
    assert_eq!(
        actions(&mine),
        [
            "player.unban",
            "player.ban",
            "player.message",
            "player.teleport",
            "player.teleport"
        ],
        "{mine:?}"
    );
    assert!(
        mine.iter()
            .all(|r| r["target"] == format!("player:{player}").as_str()),
        "{mine:?}"
    );
    assert!(records(&format!("player={}", player + 1)).is_empty());
    // Details: what exactly was asked.
    let message = records("action=player.message");
    assert_eq!(message.len(), 1, "{message:?}");
    assert_eq!(
        message[0]["details"], "text: \"Server restarts in 5 minutes\"",
        "{message:?}"
    );
    let ban = records(&format!("action=player.ban&player={player}&key=test-admin"));
    assert_eq!(ban.len(), 1, "{ban:?}");
    let details = ban[0]["details"].as_str().unwrap();
    assert!(
        details.starts_with("duration_s: 3600; until_unix_s: "),
        "{details}"
    );
    let teleports = records("action=player.teleport&limit=1");
    assert_eq!(teleports.len(), 1, "the limit holds under a filter");
    assert_eq!(teleports[0]["details"], "to: (1500, 10)", "{teleports:?}");
    assert_eq!(records("key=test-admin").len(), 5);
    assert!(records("key=someone-else").is_empty());
    // Wrong parameters: 400, naming the parameter.
    for (query, name) in [
        ("player=ada", "player"),
        ("action=kick", "action"),
        ("key=a%20b", "key"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = http(
            addr,
            "GET",
            &format!("/v1/audit?{query}"),
            Some(viewer),
            None,
        );
        assert_eq!(
            (status, code(&body).as_str()),
            (400, "bad_request"),
            "{query}: {body}"
        );
        let message = json(&body)["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains(name), "{query}: {message}");
    }
}

/// With `TESSERA_LOG_FORMAT=json`, a session's events carry its `session` span: the
/// session number, the remote address, and the player once logged in.
#[test]
fn json_logs_carry_the_session_span_with_its_player() {
    use crate::util::{Log, node_command};
    let dir = std::env::temp_dir().join(crate::util::unique("tessera-json-logs"));
    let mut node = node_command(&dir)
        .env("TESSERA_LOG_FORMAT", "json")
        .env("RUST_LOG", "tessera_server=debug")
        .spawn()
        .expect("tessera starts");
    let log = Log::of(&mut node);
    let json_line = |line: &str| serde_json::from_str::<Value>(line).ok();
    let running = log.find(Duration::from_secs(60), |line| {
        json_line(line).filter(|v| v["fields"]["message"] == "node running")
    });
    let Some(running) = running else {
        node.kill().unwrap();
        panic!("no JSON \"node running\" line within 60 s");
    };
    let addr: SocketAddr = running["fields"]["addr"].as_str().unwrap().parse().unwrap();
    let report = client_runtime()
        .block_on(tessera_server::bots::run_bots(
            &tessera_server::bots::BotsOptions::dev(1, addr, Duration::from_secs(1), &dir).unwrap(),
        ))
        .unwrap();
    assert_eq!(report.connected, 1, "{report}");
    let ended = log.find(Duration::from_secs(10), |line| {
        json_line(line).filter(|v| v["fields"]["message"] == "session ended")
    });
    node.kill().unwrap();
    node.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let ended = ended.expect("no \"session ended\" line within 10 s");
    let span = &ended["span"];
    assert_eq!(span["name"], "session", "{ended}");
    assert_eq!(span["session"], 1, "{ended}");
    assert!(
        span["player"].as_str().is_some_and(|p| p.starts_with('p')),
        "{ended}"
    );
    assert!(
        span["remote"]
            .as_str()
            .is_some_and(|r| r.starts_with("127.0.0.1:")),
        "{ended}"
    );
}
