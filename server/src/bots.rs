//! `tessera bots`: many QUIC clients against a node, for load and smoke tests. Each bot logs
//! in with a dev token, wanders, chases the nearest creature it sees within
//! [`CHASE_RADIUS_M`] and attacks what it reaches, sending one input per tick. At the end
//! a summary: connected, failed, rates per client, RTT and state lag percentiles.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tessera_shared::client::{Client, ClientConfig, ClientError};
use tessera_shared::math::Vec2;
use tessera_shared::protocol::quantize::dequantize_position;

use crate::auth;
use crate::sim::percentile;

/// Most bots one command runs (each holds a UDP socket and a connection).
pub const BOTS_MAX: usize = 5_000;
/// Bots chase creatures closer than this.
pub const CHASE_RADIUS_M: f32 = 20.0;
/// Bots attack creatures closer than this (the default player's attack range).
pub const ATTACK_RADIUS_M: f32 = 2.5;

/// What to run.
#[derive(Clone, Debug)]
pub struct BotsOptions {
    /// How many bots, 1 to [`BOTS_MAX`].
    pub count: usize,
    /// The node's QUIC address.
    pub addr: SocketAddr,
    /// How long they play.
    pub duration: Duration,
    /// The node's data dir (dev certificate to pin, dev secret to mint tokens).
    pub data_dir: PathBuf,
    /// Show a progress bar.
    pub progress: bool,
}

/// One bot's figures.
#[derive(Clone, Debug, Default)]
struct BotReport {
    connected: bool,
    error: Option<String>,
    inputs: u64,
    states: u64,
    bytes_in: u64,
    bytes_out: u64,
    rtt: Duration,
    lag_ticks: Vec<u64>,
    played: Duration,
    reconnects: u64,
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct BotsReport {
    /// Bots started.
    pub count: usize,
    /// Bots that logged in.
    pub connected: usize,
    /// Bots that failed to log in or lost their session.
    pub failed: usize,
    /// First few failure reasons.
    pub failures: Vec<String>,
    /// Per connected client, averages.
    pub inputs_per_s: f64,
    /// States received per second per client.
    pub states_per_s: f64,
    /// Bytes received per second per client (UDP payload, all streams and datagrams).
    pub bytes_in_per_s: f64,
    /// Bytes sent per second per client.
    pub bytes_out_per_s: f64,
    /// Round-trip time percentiles over clients.
    pub rtt_p50: Duration,
    /// 99th percentile.
    pub rtt_p99: Duration,
    /// How many ticks states arrived behind the node's clock (p50, p99).
    pub lag_ticks_p50: u64,
    /// 99th percentile.
    pub lag_ticks_p99: u64,
    /// Sessions resumed after a dropped connection, over all bots.
    pub reconnects: u64,
}

/// Runs the bots to completion.
pub async fn run_bots(options: &BotsOptions) -> anyhow::Result<BotsReport> {
    let count = options.count.clamp(1, BOTS_MAX);
    let (cert, secret) = crate::serve::dev_credentials(&options.data_dir)?;
    let bar = options.progress.then(|| {
        let bar = indicatif::ProgressBar::new(options.duration.as_secs().max(1));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} s  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let connected = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + options.duration;
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let mut config = ClientConfig::new(
            options.addr,
            "localhost",
            cert.clone(),
            token(&secret, &format!("bot-{i}")),
        );
        config.login_timeout = Duration::from_secs(10);
        let connected = connected.clone();
        tasks.push(tokio::spawn(async move {
            run_bot(config, deadline, i as u64, connected).await
        }));
        // Spread logins: a thundering herd of handshakes is its own test.
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    if let Some(bar) = &bar {
        while Instant::now() < deadline {
            let elapsed = options.duration.saturating_sub(deadline - Instant::now());
            bar.set_position(elapsed.as_secs());
            bar.set_message(format!(
                "{} of {count} connected",
                connected.load(Ordering::Relaxed)
            ));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bar.finish_with_message(format!(
            "{} of {count} connected",
            connected.load(Ordering::Relaxed)
        ));
    }
    let mut reports = Vec::with_capacity(count);
    for task in tasks {
        reports.push(task.await.unwrap_or_else(|e| BotReport {
            error: Some(format!("bot task failed: {e}")),
            ..BotReport::default()
        }));
    }
    Ok(summarize(count, &reports))
}

fn token(secret: &[u8], name: &str) -> String {
    auth::mint(secret, &auth::dev_claims(name, auth::unix_now_s(), 3_600))
}

async fn run_bot(
    config: ClientConfig,
    deadline: Instant,
    seed: u64,
    connected: Arc<AtomicUsize>,
) -> BotReport {
    let mut report = BotReport::default();
    let mut client = match Client::connect(&config).await {
        Ok(client) => client,
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    report.connected = true;
    connected.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let welcome = client.welcome().clone();
    let tick_hz = u32::from(welcome.tick_hz.max(1));
    let step_m = 6.0 / tick_hz as f32; // The default player speed.
    let mut interval = tokio::time::interval(Duration::from_secs(1) / tick_hz);
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut heading = Vec2::new(1.0, 0.0);
    let mut own = None;
    let mut target = None;
    while Instant::now() < deadline {
        tokio::select! {
            _ = interval.tick() => {
                // Wander: a new heading now and then; chase a target if there is one.
                rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
                if rng.is_multiple_of(40) {
                    let x = (rng >> 16) as u16 as f32 / 32768.0 - 1.0;
                    let y = (rng >> 32) as u16 as f32 / 32768.0 - 1.0;
                    let len = (x * x + y * y).sqrt();
                    if len > 0.1 { heading = Vec2::new(x / len, y / len); }
                }
                let (move_m, attack) = match (own, target) {
                    (Some(me), Some((id, at))) => {
                        let to: Vec2 = at - me;
                        let d = to.length();
                        let step = if d > ATTACK_RADIUS_M * 0.8 { to * (step_m.min(d) / d) } else { Vec2::ZERO };
                        (step, (d <= ATTACK_RADIUS_M).then_some(id))
                    }
                    _ => (heading * step_m, None),
                };
                match client.send_input(move_m, attack) {
                    Ok(()) => report.inputs += 1,
                    // Reconnecting: this input is lost, the bot carries on.
                    Err(ClientError::NotConnected) => {}
                    Err(e) => {
                        report.error = Some(e.to_string());
                        break;
                    }
                }
            }
            state = client.next_state() => match state {
                Ok(snapshot) => {
                    report.states += 1;
                    let expected = welcome.tick + (started.elapsed().as_secs_f64() * f64::from(tick_hz)) as u64;
                    report.lag_ticks.push(expected.saturating_sub(snapshot.tick));
                    own = snapshot.entities.iter().find(|e| e.id == welcome.entity).map(|e| dequantize_position(e.position));
                    target = own.and_then(|me| {
                        snapshot
                            .entities
                            .iter()
                            .filter(|e| e.id != welcome.entity && e.health > 0 && e.id.0 >> 63 == 0)
                            .map(|e| (e.id, dequantize_position(e.position)))
                            .filter(|(_, at)| at.distance_squared(me) <= CHASE_RADIUS_M * CHASE_RADIUS_M)
                            .min_by(|a, b| a.1.distance_squared(me).total_cmp(&b.1.distance_squared(me)))
                    });
                }
                Err(e) => {
                    report.error = Some(e.to_string());
                    break;
                }
            },
        }
    }
    report.played = started.elapsed();
    let stats = client.stats();
    report.bytes_in = stats.bytes_in;
    report.bytes_out = stats.bytes_out;
    report.reconnects = stats.reconnects;
    report.rtt = client.connection().map_or(Duration::ZERO, |c| c.rtt());
    if report.error.is_none() {
        let _ = tokio::time::timeout(Duration::from_secs(5), client.logout()).await;
    }
    report
}

fn summarize(count: usize, reports: &[BotReport]) -> BotsReport {
    let ok: Vec<&BotReport> = reports
        .iter()
        .filter(|r| r.connected && r.error.is_none())
        .collect();
    let failures: Vec<String> = reports
        .iter()
        .filter_map(|r| r.error.clone())
        .take(5)
        .collect();
    let per_s = |f: fn(&BotReport) -> u64| {
        let total_s: f64 = ok.iter().map(|r| r.played.as_secs_f64()).sum();
        if total_s > 0.0 {
            ok.iter().map(|r| f(r) as f64).sum::<f64>() / total_s
        } else {
            0.0
        }
    };
    let mut rtts: Vec<Duration> = ok.iter().map(|r| r.rtt).collect();
    rtts.sort_unstable();
    let mut lags: Vec<u64> = ok
        .iter()
        .flat_map(|r| r.lag_ticks.iter().copied())
        .collect();
    lags.sort_unstable();
    BotsReport {
        count,
        connected: reports.iter().filter(|r| r.connected).count(),
        failed: reports.iter().filter(|r| r.error.is_some()).count(),
        failures,
        inputs_per_s: per_s(|r| r.inputs),
        states_per_s: per_s(|r| r.states),
        bytes_in_per_s: per_s(|r| r.bytes_in),
        bytes_out_per_s: per_s(|r| r.bytes_out),
        rtt_p50: percentile(&rtts, 50.0),
        rtt_p99: percentile(&rtts, 99.0),
        lag_ticks_p50: percentile(&lags, 50.0),
        lag_ticks_p99: percentile(&lags, 99.0),
        reconnects: reports.iter().map(|r| r.reconnects).sum(),
    }
}

impl std::fmt::Display for BotsReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "bots             {:>10}", self.count)?;
        writeln!(f, "connected        {:>10}", self.connected)?;
        writeln!(f, "failed           {:>10}", self.failed)?;
        writeln!(f, "reconnects       {:>10}", self.reconnects)?;
        writeln!(f, "inputs/s/client  {:>10.1}", self.inputs_per_s)?;
        writeln!(f, "states/s/client  {:>10.1}", self.states_per_s)?;
        writeln!(
            f,
            "bytes/s in       {:>10.0}  ({:.1} kbit/s per client)",
            self.bytes_in_per_s,
            self.bytes_in_per_s * 8.0 / 1000.0
        )?;
        writeln!(
            f,
            "bytes/s out      {:>10.0}  ({:.1} kbit/s per client)",
            self.bytes_out_per_s,
            self.bytes_out_per_s * 8.0 / 1000.0
        )?;
        writeln!(
            f,
            "rtt p50 / p99    {:>7.2} ms / {:.2} ms",
            self.rtt_p50.as_secs_f64() * 1e3,
            self.rtt_p99.as_secs_f64() * 1e3
        )?;
        write!(
            f,
            "state lag p50/99 {:>7} / {} ticks",
            self.lag_ticks_p50, self.lag_ticks_p99
        )?;
        for failure in &self.failures {
            write!(f, "\n  failure: {failure}")?;
        }
        Ok(())
    }
}
