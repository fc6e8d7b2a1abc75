//! The live feed under watch (issue 18's bench): one node on the embedded default (NPCs,
//! the embedded store) in this process with `BOTS` bots from `tessera bots` moving and
//! fighting, in rounds that alternate a phase nobody watches ("quiet") with a phase in
//! which `SUBSCRIBERS` WebSocket subscribers read every topic of `GET /v1/feed` and one
//! more subscriber stalls (a 4 KiB receive buffer, never read) ("watched"). In both
//! phases the game publishes `GAME_EVENTS_PER_S` events of its own (1 KiB, topic `game`,
//! through `RunningNode::feed`), so that there is traffic to fall behind on.
//!
//! Printed: per round and pooled, the median of the one-second windows' tick p99 of each
//! phase and their ratio watched / quiet (the goal: the feed does not slow the tick;
//! each round's ratio shows this machine's noise); every event's delivery latency over all
//! subscribers (its `at_ms` to its arrival: p50, p99, max; goal p99 < 1 s); events
//! received per subscriber; and whether the stalled subscriber was dropped, and when.
//!
//! `FEED_BENCH_BOTS` (default 100), `FEED_BENCH_SUBSCRIBERS` (100), `FEED_BENCH_SECS` (per
//! phase, 15), `FEED_BENCH_ROUNDS` (2) and `FEED_BENCH_GAME_EVENTS_PER_S` (200) change the
//! run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tessera::shared::config::Config;
use tessera_server::admin::keys::dev_admin_key;
use tessera_server::bots::{BotsOptions, run_bots};
use tessera_server::economy::now_unix_ms;
use tessera_server::feed::Topic;
use tessera_server::node::status::percentile;
use tessera_server::serve::{RunningNode, ServeOptions};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Windows skipped at the start of each phase (logins, the first states).
const WARMUP: Duration = Duration::from_secs(3);

fn env(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// A subscriber of every topic; `recv_buffer` set: one that never reads.
async fn subscribe(
    addr: SocketAddr,
    key: &str,
    recv_buffer: Option<u32>,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let mut request = format!("ws://{addr}/v1/feed")
        .into_client_request()
        .expect("a request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("a header"),
    );
    let socket = TcpSocket::new_v4().expect("a socket");
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes).expect("a buffer size");
    }
    let stream = socket.connect(addr).await.expect("connected");
    tokio_tungstenite::client_async(request, stream)
        .await
        .expect("subscribed")
        .0
}

/// What the subscribers of one watched phase saw.
#[derive(Default)]
struct Watched {
    /// Every event's delivery latency, ms.
    latencies: Vec<f64>,
    /// Events per subscriber.
    received: Vec<u64>,
    /// Subscribers whose feed ended before the phase did.
    ended_early: usize,
    /// When the stalled subscriber was dropped, after the phase began.
    stalled_dropped_after: Option<Duration>,
}

/// One phase of `secs`: bots playing, the game publishing, and (watched) subscribers.
fn phase(
    node: &RunningNode,
    dir: &std::path::Path,
    n: Setup,
    watched: bool,
) -> (Vec<f64>, Watched) {
    let options =
        BotsOptions::dev(n.bots, node.addr, Duration::from_secs(n.secs), dir).expect("bots");
    let bots_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let bots = std::thread::spawn(move || bots_runtime.block_on(run_bots(&options)));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let done = Arc::new(AtomicBool::new(false));
    let feed = node.feed.clone();
    let slow_before = feed.stats().slow_subscribers.load(Ordering::Relaxed);
    let started = Instant::now();
    // The game's own events.
    let game = {
        let (feed, done) = (feed.clone(), done.clone());
        let padding = "x".repeat(1_000);
        runtime.spawn(async move {
            let mut ticker =
                tokio::time::interval(Duration::from_secs(1) / n.game_events_per_s as u32);
            let mut i = 0u64;
            while !done.load(Ordering::Relaxed) {
                ticker.tick().await;
                feed.publish(
                    Topic::Game,
                    None,
                    serde_json::json!({ "i": i, "padding": padding }),
                );
                i += 1;
            }
        })
    };
    let subscribers = watched.then(|| {
        let key = dev_admin_key(dir).expect("the dev admin key");
        let addr = node.admin_addr;
        runtime.block_on(async {
            let stalled = subscribe(addr, &key, Some(4_096)).await;
            let mut readers = Vec::new();
            for _ in 0..n.subscribers {
                let mut socket = subscribe(addr, &key, None).await;
                let done = done.clone();
                readers.push(tokio::spawn(async move {
                    let (mut latencies, mut received, mut ended) = (Vec::new(), 0u64, false);
                    while !done.load(Ordering::Relaxed) {
                        match tokio::time::timeout(Duration::from_millis(200), socket.next()).await
                        {
                            Ok(Some(Ok(Message::Text(text)))) => {
                                let now = now_unix_ms();
                                // `"at_ms":<digits>`: no need to parse the whole event.
                                let at = text
                                    .split("\"at_ms\":")
                                    .nth(1)
                                    .and_then(|rest| {
                                        rest.split(|c: char| !c.is_ascii_digit()).next()
                                    })
                                    .and_then(|d| d.parse::<u64>().ok());
                                if let Some(at) = at {
                                    latencies.push(now.saturating_sub(at) as f64);
                                }
                                received += 1;
                            }
                            Ok(Some(Ok(_))) | Err(_) => {}
                            Ok(None | Some(Err(_))) => {
                                ended = true;
                                break;
                            }
                        }
                    }
                    (latencies, received, ended)
                }));
            }
            (stalled, readers)
        })
    });
    let mut windows = Vec::new();
    let mut last_tick = 0;
    let mut stalled_dropped_after = None;
    while !bots.is_finished() {
        std::thread::sleep(Duration::from_millis(1_000));
        let status = node.board.status();
        if started.elapsed() > WARMUP && status.tick != last_tick && status.players > 0 {
            windows.push(status.tick_p99_ms);
        }
        last_tick = status.tick;
        if stalled_dropped_after.is_none()
            && feed.stats().slow_subscribers.load(Ordering::Relaxed) > slow_before
        {
            stalled_dropped_after = Some(started.elapsed());
        }
    }
    bots.join()
        .expect("the bots' thread")
        .expect("the bots ran");
    // A stalled subscriber not dropped yet: up to 10 s more (the subscribers read on).
    let deadline = Instant::now() + Duration::from_secs(10);
    while watched && stalled_dropped_after.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        if feed.stats().slow_subscribers.load(Ordering::Relaxed) > slow_before {
            stalled_dropped_after = Some(started.elapsed());
        }
    }
    done.store(true, Ordering::Relaxed);
    let mut seen = Watched {
        stalled_dropped_after,
        ..Watched::default()
    };
    if let Some((stalled, readers)) = subscribers {
        runtime.block_on(async {
            for reader in readers {
                let (latencies, received, ended) = reader.await.expect("a reader");
                seen.latencies.extend(latencies);
                seen.received.push(received);
                seen.ended_early += usize::from(ended);
            }
        });
        drop(stalled);
    }
    runtime.block_on(game).expect("the game's events");
    (windows, seen)
}

#[derive(Clone, Copy)]
struct Setup {
    bots: usize,
    subscribers: usize,
    secs: u64,
    game_events_per_s: u64,
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that does not match skips.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"feed".contains(&a))
    {
        return;
    }
    let setup = Setup {
        bots: env("FEED_BENCH_BOTS", 100) as usize,
        subscribers: env("FEED_BENCH_SUBSCRIBERS", 100) as usize,
        secs: env("FEED_BENCH_SECS", 15),
        game_events_per_s: env("FEED_BENCH_GAME_EVENTS_PER_S", 200),
    };
    let rounds = env("FEED_BENCH_ROUNDS", 2);
    let dir = std::env::temp_dir().join(format!("tessera-bench-feed-{}", std::process::id()));
    let mut config = Config::embedded_default();
    config.node.data_dir = dir.clone();
    config.node.quic_listen = "127.0.0.1:0".parse().expect("address");
    config.node.admin_listen = "127.0.0.1:0".parse().expect("address");
    config.node.sim_threads = 1;
    let node = RunningNode::start_configured(
        Arc::new(config),
        &ServeOptions {
            ticks: None,
            seed: 1,
            config_dir: None,
        },
    )
    .expect("the node starts");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "feed: the embedded default, 1 simulation thread, {} bots, {} s per phase, {rounds} rounds of quiet then watched ({} subscribers of every topic and 1 stalled one), the game publishing {} events/s of 1 KiB in both; {cores} cores shared by the node, the bots and the subscribers; tick p99 per one-second window after {} s",
        setup.bots,
        setup.secs,
        setup.subscribers,
        setup.game_events_per_s,
        WARMUP.as_secs()
    );
    let (mut quiet_all, mut watched_all, mut latencies) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let (mut quiet, _) = phase(&node, &dir, setup, false);
        let (mut watched, seen) = phase(&node, &dir, setup, true);
        let (qm, wm) = (median(&mut quiet), median(&mut watched));
        let mut received = seen.received.clone();
        received.sort_unstable();
        println!(
            "feed/round {round}: quiet p99 median {qm:.2} ms ({} windows), watched {wm:.2} ms ({} windows): ratio {:.2}; events per subscriber {}..{}, {} feeds ended early; stalled subscriber {}",
            quiet.len(),
            watched.len(),
            wm / qm.max(f64::EPSILON),
            received.first().copied().unwrap_or(0),
            received.last().copied().unwrap_or(0),
            seen.ended_early,
            match seen.stalled_dropped_after {
                Some(after) => format!("dropped {:.0} s into the phase", after.as_secs_f64()),
                None => "NOT dropped".into(),
            }
        );
        quiet_all.extend(quiet);
        watched_all.extend(watched);
        latencies.extend(seen.latencies);
    }
    let (qm, wm) = (median(&mut quiet_all), median(&mut watched_all));
    latencies.sort_by(f64::total_cmp);
    println!(
        "feed/pooled: tick p99 median quiet {qm:.2} ms, watched {wm:.2} ms: watched / quiet = {:.2}; delivery over {} events: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (goal p99 < 1000 ms)",
        wm / qm.max(f64::EPSILON),
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(0.0),
    );
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}
