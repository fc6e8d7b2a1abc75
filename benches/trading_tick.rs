//! What trading and chatting players cost the tick (issue 17's bench): one node on the
//! embedded default (NPCs, the embedded store) in this process, and `BOTS` bots from
//! `tessera bots` against it, in rounds that alternate bots that only move and fight
//! ("quiet") with bots that also trade and chat ("trading": purchases, refunds, trade
//! offers and acceptances, say, global chat and `/who`, about one request every 1.5 s
//! per bot).
//!
//! The node publishes its tick's p50 and p99 over each second; the bench keeps each
//! phase's one-second windows after a warm-up (`WARMUP`), and prints per phase the median
//! of the windows' p99 and their worst, and the ratio trading / quiet of each round and
//! pooled: the goal is at most 1.10. Each round's ratio shows this machine's noise.
//!
//! `TRADING_TICK_BOTS` (default 200), `TRADING_TICK_SECS` (per phase, default 15) and
//! `TRADING_TICK_ROUNDS` (default 2) change the run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera::shared::config::Config;
use tessera_server::bots::{BotsOptions, run_bots};
use tessera_server::serve::{RunningNode, ServeOptions};

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

/// One phase: `bots` bots for `secs`, trading or not; the one-second windows' tick p99s
/// after the warm-up, and what the bots reported.
fn phase(
    node: &RunningNode,
    dir: &std::path::Path,
    bots: usize,
    secs: u64,
    trade: bool,
) -> (Vec<f64>, String) {
    let mut options =
        BotsOptions::dev(bots, node.addr, Duration::from_secs(secs), dir).expect("bots");
    options.trade = trade;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let run = std::thread::spawn(move || runtime.block_on(run_bots(&options)));
    let started = Instant::now();
    let mut windows = Vec::new();
    let mut last_tick = 0;
    while !run.is_finished() {
        std::thread::sleep(Duration::from_millis(1_000));
        let status = node.board.status();
        if started.elapsed() > WARMUP && status.tick != last_tick && status.players > 0 {
            windows.push(status.tick_p99_ms);
        }
        last_tick = status.tick;
    }
    let report = run.join().expect("the bots' thread").expect("the bots ran");
    let e = &report.economy;
    let summary = format!(
        "{} connected, economy {} requests ({:.1} applied/s), chat {} sent, {} heard",
        report.connected, e.requests, e.applied_per_s, e.chat_sent, e.chat_heard
    );
    (windows, summary)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that does not match skips.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"trading_tick".contains(&a))
    {
        return;
    }
    let bots = env("TRADING_TICK_BOTS", 200) as usize;
    let secs = env("TRADING_TICK_SECS", 15);
    let rounds = env("TRADING_TICK_ROUNDS", 2);
    let dir = std::env::temp_dir().join(format!("tessera-bench-trading-{}", std::process::id()));
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
        "trading_tick: the embedded default (NPCs, embedded store), 1 simulation thread, {bots} bots in one process beside the node, {secs} s per phase after which the bots log out, {rounds} rounds of quiet then trading, {cores} cores shared by node and bots; tick p99 per one-second window after {} s",
        WARMUP.as_secs()
    );
    let (mut quiet_all, mut trading_all) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let (mut quiet, q) = phase(&node, &dir, bots, secs, false);
        let (mut trading, t) = phase(&node, &dir, bots, secs, true);
        let (qm, tm) = (median(&mut quiet), median(&mut trading));
        println!(
            "trading_tick/round {round}: quiet p99 median {qm:.2} ms (worst {:.2}, {} windows; {q}); trading p99 median {tm:.2} ms (worst {:.2}, {} windows; {t}); ratio {:.2}",
            quiet.last().copied().unwrap_or(0.0),
            quiet.len(),
            trading.last().copied().unwrap_or(0.0),
            trading.len(),
            tm / qm.max(f64::EPSILON),
        );
        quiet_all.extend(quiet);
        trading_all.extend(trading);
    }
    let (qm, tm) = (median(&mut quiet_all), median(&mut trading_all));
    println!(
        "trading_tick/pooled: quiet p99 median {qm:.2} ms, trading {tm:.2} ms: trading / quiet = {:.2} (goal <= 1.10)",
        tm / qm.max(f64::EPSILON)
    );
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}
