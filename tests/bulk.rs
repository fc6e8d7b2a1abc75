//! Bulk jobs over the admin API: a message job and a kick job over every online bot
//! complete with each player's part audited, a job cancelled halfway stops there, the
//! same key returns the same job, and a node restarted while a job ran reports it
//! interrupted with how far it got.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tessera_server::admin::keys::dev_admin_key;
use tessera_server::bots::{BotsOptions, run_bots};

use crate::admin::{http, json as parse};
use crate::net::{TestNode, start_with};

/// Bots the message and kick jobs act on (`BULK_TEST_BOTS`; the issue's figure is 1,000).
fn bots() -> usize {
    std::env::var("BULK_TEST_BOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

fn call(node: &TestNode, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let key = dev_admin_key(&node.dir).unwrap();
    let addr = node.node.as_ref().unwrap().admin_addr;
    let body = body.map(Value::to_string);
    let (status, text) = http(addr, method, path, Some(&key), body.as_deref());
    (status, parse(&text))
}

/// Prints how long a finished job took, from its creation to its last update.
fn took(what: &str, job: &Value) {
    let ms = |field: &str| job[field].as_u64().unwrap_or_default();
    let players = ms("done") + ms("failed") + ms("skipped");
    let took_ms = ms("updated_unix_ms").saturating_sub(ms("created_unix_ms"));
    eprintln!("bulk {what} job: {players} players in {took_ms} ms");
}

/// Polls the job until `done` holds of it (within `within`).
fn job_until(node: &TestNode, key: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, job) = call(node, "GET", &format!("/v1/players/bulk/{key}"), None);
        assert_eq!(status, 200, "{job}");
        if done(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "{job}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts job `key`, unbanning players 1 to `players` (one store write each, no client
/// needed), and waits until it has done at least `done` of them.
fn unban_job_under_way(node: &TestNode, key: &str, players: u64, done: u64) {
    let ids: Vec<u64> = (1..=players).collect();
    let job = json!({
        "key": key,
        "action": { "kind": "unban" },
        "ids": ids,
        "reason": "amnesty",
    });
    let (status, answer) = call(node, "POST", "/v1/players/bulk", Some(&job));
    assert_eq!(status, 201, "{answer}");
    job_until(node, key, Duration::from_secs(30), |j| {
        j["done"].as_u64() >= Some(done)
    });
}

/// Every audit record of `action` whose details name the job `key`.
fn audited(node: &TestNode, action: &str, key: &str) -> usize {
    let mut count = 0;
    let mut before: Option<String> = None;
    loop {
        let path = match &before {
            Some(b) => format!("/v1/audit?action={action}&limit=500&before={b}"),
            None => format!("/v1/audit?action={action}&limit=500"),
        };
        let (status, page) = call(node, "GET", &path, None);
        assert_eq!(status, 200, "{page}");
        count += page["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["details"] == format!("bulk job: {key}") && r["result"] == "ok")
            .count();
        match page["next_before"].as_str() {
            Some(b) => before = Some(b.to_owned()),
            None => return count,
        }
    }
}

#[test]
fn jobs_message_and_kick_every_online_bot_and_a_cancelled_one_stops() {
    let n = bots();
    let node = start_with(|_| {});
    let running = node.node.as_ref().unwrap();
    // Online for as long as the logins and both jobs take; logins spread over 20 ms each
    // (a herd of 1,000 handshakes at once is the bots command's own test).
    let mut options = BotsOptions::dev(
        n,
        running.addr,
        Duration::from_secs(120 + n as u64 / 5),
        &node.dir,
    )
    .unwrap();
    options.ramp = Duration::from_millis(20 * n as u64);
    // Bots that move and fight over every region, without trading or chatting: what is
    // measured is the jobs; a thousand trading bots in one region load two cores alone.
    options.trade = false;
    options.spread = tessera_server::bots::Spread::RoundRobin;
    options.regions = tessera::shared::config::Config::embedded_default()
        .world
        .regions
        .iter()
        .map(|r| r.id)
        .collect();
    let bots = std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
            .block_on(run_bots(&options))
    });
    // Every bot online in the directory.
    let deadline = Instant::now() + Duration::from_secs(30 + n as u64 / 10);
    loop {
        let (_, page) = call(&node, "GET", "/v1/players?online=true&limit=1", None);
        if page["total"] == n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} bots online: {} in the world, the directory says {}",
            running.board.status().players,
            page["total"]
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let message = json!({
        "key": "welcome-1",
        "action": { "kind": "message", "text": "Server restarts in 10 minutes" },
        "filter": { "online": true },
        "reason": "maintenance notice",
    });
    let (status, job) = call(&node, "POST", "/v1/players/bulk", Some(&message));
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["total"], n);
    // The same key again: the same job, not a second one.
    let (status, again) = call(&node, "POST", "/v1/players/bulk", Some(&message));
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["created_unix_ms"], job["created_unix_ms"]);
    // Each part waits for a tick boundary and two durable audit writes; 32 at once at
    // most 200 a second.
    let within = Duration::from_secs(30 + n as u64 / 4);
    let job = job_until(&node, "welcome-1", within, |j| j["state"] != "running");
    assert_eq!(
        (&job["state"], &job["done"], &job["failed"], &job["skipped"]),
        (&json!("done"), &json!(n), &json!(0), &json!(0)),
        "{job}"
    );
    took("message", &job);

    let kick = json!({
        "key": "kick-all-bots",
        "action": { "kind": "kick" },
        "filter": { "online": true },
        "reason": "maintenance",
    });
    let (status, job) = call(&node, "POST", "/v1/players/bulk", Some(&kick));
    assert_eq!(status, 201, "{job}");
    let job = job_until(&node, "kick-all-bots", within, |j| j["state"] != "running");
    assert_eq!(
        (&job["done"], &job["failed"]),
        (&json!(n), &json!(0)),
        "{job}"
    );
    took("kick", &job);
    let deadline = Instant::now() + Duration::from_secs(10);
    while running.board.status().players > 0 {
        if Instant::now() > deadline {
            let (_, online) = call(&node, "GET", "/v1/players?online=true", None);
            panic!(
                "every kicked bot left: {:?}; online: {online}",
                running.board.status()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let report = bots.join().unwrap().unwrap();
    assert!(report.connected >= n, "{report:?}");
    // Each player's part is audited, with the job named.
    assert_eq!(audited(&node, "player.message", "welcome-1"), n);
    assert_eq!(audited(&node, "player.kick", "kick-all-bots"), n);

    // Cancelled halfway: it stops there.
    unban_job_under_way(&node, "amnesty", 2_000, 200);
    let (status, body) = call(
        &node,
        "POST",
        "/v1/players/bulk/amnesty/cancel",
        Some(&json!({ "reason": "wrong list" })),
    );
    assert_eq!(status, 200, "{body}");
    let job = job_until(&node, "amnesty", Duration::from_secs(10), |j| {
        j["state"] != "running"
    });
    assert_eq!(job["state"], "cancelled", "{job}");
    let handled = job["done"].as_u64().unwrap();
    assert!((200..2_000).contains(&handled), "{job}");
    std::thread::sleep(Duration::from_millis(500));
    let (_, later) = call(&node, "GET", "/v1/players/bulk/amnesty", None);
    assert_eq!(later["done"], handled, "nothing after the cancel");

    // Refusals name the field.
    for (body, field) in [
        (
            json!({ "key": "x", "action": { "kind": "kick" }, "reason": "r" }),
            "ids or filter",
        ),
        (
            json!({ "key": "bad key", "action": { "kind": "kick" }, "ids": [1], "reason": "r" }),
            "key",
        ),
        (
            json!({ "key": "y", "action": { "kind": "dance" }, "ids": [1], "reason": "r" }),
            "action",
        ),
        (
            json!({ "key": "z", "action": { "kind": "kick" }, "filter": { "level_min": 5, "level_max": 1 }, "reason": "r" }),
            "filter.level_min",
        ),
    ] {
        let (status, answer) = call(&node, "POST", "/v1/players/bulk", Some(&body));
        assert_eq!(status, 400, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{message}");
    }
}

#[test]
fn a_restarted_node_reports_its_job_interrupted() {
    let mut node = start_with(|_| {});
    unban_job_under_way(&node, "long-job", 20_000, 150);
    // Stopped, and started again on the same data.
    node.node.take().unwrap().shutdown();
    node.node = Some(crate::net::start_node(&node.dir.clone(), 1, |_| {}));
    let restarted = node;
    let (status, job) = call(&restarted, "GET", "/v1/players/bulk/long-job", None);
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["state"], "interrupted", "{job}");
    let done = job["done"].as_u64().unwrap();
    assert!((100..20_000).contains(&done), "{job}");
}

/// The jobs' store contract, in both stores.
async fn check_job_store<S: tessera::persistence::jobs::JobStore>(store: &S) {
    use tessera::persistence::jobs::{JobRecord, JobState};
    let job = JobRecord {
        key: "job-1".into(),
        node: "node-a".into(),
        who: "ops".into(),
        reason: "why".into(),
        action: "kick".into(),
        params: "{}".into(),
        targets: (1..=1_000).collect(),
        state: JobState::Running,
        done: 0,
        failed: 0,
        skipped: 0,
        created_unix_ms: 1,
        updated_unix_ms: 1,
    };
    assert_eq!(store.create_job(&job).await.unwrap(), None);
    let other = JobRecord {
        node: "node-b".into(),
        key: "job-2".into(),
        ..job.clone()
    };
    assert_eq!(store.create_job(&other).await.unwrap(), None);
    // The same key: the stored job back, nothing written.
    let again = JobRecord {
        reason: "another".into(),
        ..job.clone()
    };
    assert_eq!(store.create_job(&again).await.unwrap(), Some(job.clone()));
    let progressed = JobRecord {
        done: 300,
        failed: 2,
        skipped: 5,
        updated_unix_ms: 9,
        reason: "not written by an update".into(),
        ..job.clone()
    };
    store.update_job(&progressed).await.unwrap();
    let stored = store.job("job-1").await.unwrap().unwrap();
    assert_eq!(
        (
            stored.done,
            stored.failed,
            stored.skipped,
            stored.updated_unix_ms
        ),
        (300, 2, 5, 9)
    );
    assert_eq!(stored.reason, "why");
    assert_eq!(stored.targets.len(), 1_000);
    // node-a restarts: its running job is interrupted, node-b's is not.
    let interrupted = store.interrupt_jobs("node-a", 20).await.unwrap();
    assert_eq!(interrupted.len(), 1);
    assert_eq!(interrupted[0].key, "job-1");
    let stored = store.job("job-1").await.unwrap().unwrap();
    assert_eq!((stored.state, stored.done), (JobState::Interrupted, 300));
    let other = store.job("job-2").await.unwrap().unwrap();
    assert_eq!(other.state, JobState::Running);
    assert_eq!(store.job("nope").await.unwrap(), None);
    let bad = JobRecord {
        key: "no spaces".into(),
        ..job
    };
    assert!(store.create_job(&bad).await.is_err());
}

#[test]
fn jobs_are_stored_once_per_key_and_interrupted_per_node() {
    let dir = std::env::temp_dir().join(crate::util::unique("tessera-jobs"));
    crate::util::runtime().block_on(async {
        let embedded = tessera::persistence::embedded::EmbeddedStore::open(&dir).unwrap();
        check_job_store(&embedded).await;
        let test = "jobs_are_stored_once_per_key_and_interrupted_per_node";
        if let Some(uri) = crate::util::services::mongo_uri(test) {
            let mongo = tessera::persistence::mongo::MongoStore::connect(
                &uri,
                &crate::util::unique("tessera_test"),
            )
            .await
            .unwrap();
            check_job_store(&mongo).await;
        }
    });
    let _ = std::fs::remove_dir_all(dir);
}
