//! `tessera bots`: many QUIC clients against a node, for load and smoke tests. Each bot logs
//! in with a token signed like `tessera token`'s, wanders, chases the nearest creature it
//! sees within [`CHASE_RADIUS_M`] and attacks what it reaches, sending one input per tick.
//! Each bot also trades and chats ([`economy`]: purchases, refunds, trade offers to
//! players it sees, acceptances). At the end a summary: connected, failures by reason,
//! rates per client and in total, RTT over the run and state lag percentiles, and the
//! economy's figures (requests, applied per second, refusals by reason, coins held).
//!
//! Before starting the rest, the first bot logs in alone: if nothing answers at the
//! address, or the node does not present the certificate of the data dir, the command says
//! so once instead of reporting every bot's timeout.

pub mod economy;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tessera_shared::client::{Client, ClientConfig, ClientError};
use tessera_shared::ids::{PlayerId, RegionId};
use tessera_shared::math::Vec2;
use tessera_shared::protocol::messages::ControlS2c;
use tessera_shared::protocol::quantize::dequantize_position;

use self::economy::{EconomyFigures, EconomySummary, Trader};
use crate::auth;
use crate::node::status::percentile;

/// Most bots one command runs (each holds a UDP socket and a connection).
pub const BOTS_MAX: usize = 5_000;
/// Bots chase creatures closer than this.
pub const CHASE_RADIUS_M: f32 = 20.0;
/// Bots attack creatures closer than this (the default player's attack range).
pub const ATTACK_RADIUS_M: f32 = 2.5;
/// How long the first bot waits for the node before the command gives up.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often each bot samples its connection's RTT (the summary's percentiles are over
/// every sample of the run).
pub const RTT_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// RTT and lag samples kept per bot: a long run keeps its first ones.
const SAMPLES_PER_BOT_MAX: usize = 4_096;

/// Where new bots start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Spread {
    /// Where the node puts a new player: its first region.
    First,
    /// Bot `i` in the world's region `i mod n` (the token's start region).
    RoundRobin,
}

/// How the run shows its progress on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Nothing (e.g. `--json`).
    None,
    /// A bar redrawn in place (a terminal).
    Bar,
    /// A plain line every 5 s (a pipe or a log file).
    Lines,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct BotsOptions {
    /// How many bots, 1 to [`BOTS_MAX`].
    pub count: usize,
    /// The node's QUIC address.
    pub addr: SocketAddr,
    /// How long each bot plays, from its login.
    pub duration: Duration,
    /// Logins spread evenly over this long (zero: as fast as the handshakes go).
    pub ramp: Duration,
    /// Where new bots start.
    pub spread: Spread,
    /// The world's regions, for [`Spread::RoundRobin`].
    pub regions: Vec<RegionId>,
    /// The node's certificate (DER), pinned.
    pub cert: Vec<u8>,
    /// The HS256 secret tokens are signed with.
    pub secret: Vec<u8>,
    /// The tokens' issuer, as the node expects it.
    pub issuer: String,
    /// The tokens' audience, as the node expects it.
    pub audience: String,
    /// How progress is shown.
    pub progress: Progress,
    /// The node's state budget per client (`[net] state_kbit_per_s`), to compare the
    /// bytes received with; `None`: not known.
    pub state_budget_kbit_per_s: Option<u32>,
    /// Whether the bots trade and chat (their economy and chat requests); false: they
    /// only move and fight (a baseline for what trading costs the node).
    pub trade: bool,
}

impl BotsOptions {
    /// `count` bots for `duration` against the dev-mode node at `addr` whose data dir is
    /// `data_dir` (its dev certificate and dev token secret), starting in the first
    /// region, all at once, without progress.
    pub fn dev(
        count: usize,
        addr: SocketAddr,
        duration: Duration,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<BotsOptions> {
        use anyhow::Context;
        let cert_path = data_dir.join(crate::net::tls::DEV_CERT_FILE);
        let cert = std::fs::read(&cert_path)
            .with_context(|| format!("reading {}", cert_path.display()))?;
        Ok(BotsOptions {
            count,
            addr,
            duration,
            ramp: Duration::ZERO,
            spread: Spread::First,
            regions: Vec::new(),
            cert,
            secret: auth::dev_secret(data_dir)?,
            issuer: auth::DEV_ISSUER.into(),
            audience: auth::DEV_AUDIENCE.into(),
            progress: Progress::None,
            state_budget_kbit_per_s: None,
            trade: true,
        })
    }
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
    rtts: Vec<Duration>,
    lag_ticks: Vec<u64>,
    played: Duration,
    reconnects: u64,
    redirects: u64,
    /// The region its login joined.
    region: Option<RegionId>,
    /// Its economy requests and their answers.
    economy: EconomyFigures,
}

/// What a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct BotsReport {
    /// The node's address.
    pub addr: SocketAddr,
    /// Bots started.
    pub count: usize,
    /// Bots that logged in.
    pub connected: usize,
    /// Bots that failed to log in or lost their session.
    pub failed: usize,
    /// Every failure, counted by its reason, most frequent first.
    pub failures: Vec<FailureCount>,
    /// Seconds played, summed over the bots that played to the end.
    pub played_s: f64,
    /// Inputs sent per second, per client (averaged over the clients that played).
    pub inputs_per_s_per_client: f64,
    /// States received per second, per client.
    pub states_per_s_per_client: f64,
    /// UDP bytes received per second, per client.
    pub bytes_in_per_s_per_client: f64,
    /// UDP bytes sent per second, per client.
    pub bytes_out_per_s_per_client: f64,
    /// UDP bytes received per second by the client that received the most.
    pub bytes_in_per_s_max_client: f64,
    /// UDP bytes received per second by all clients together.
    pub bytes_in_per_s_total: f64,
    /// The node's state budget per client in kbit/s, when known: the bytes each client
    /// receives are states within it, events and QUIC's own overhead.
    pub state_budget_kbit_per_s: Option<u32>,
    /// UDP bytes sent per second by all clients together.
    pub bytes_out_per_s_total: f64,
    /// Round-trip time percentiles over every sample of the run (one per bot per
    /// [`RTT_SAMPLE_INTERVAL`]), in milliseconds.
    pub rtt_ms_p50: f64,
    /// 99th percentile.
    pub rtt_ms_p99: f64,
    /// How many ticks states arrived behind the node's clock (p50, p99).
    pub lag_ticks_p50: u64,
    /// 99th percentile.
    pub lag_ticks_p99: u64,
    /// Sessions resumed after a dropped connection, over all bots.
    pub reconnects: u64,
    /// Redirects to another node followed, over all bots.
    pub redirects: u64,
    /// Bots by the region their login joined (region id to bots).
    pub joined_regions: BTreeMap<u32, usize>,
    /// The bots' economy.
    pub economy: EconomySummary,
}

/// How many bots failed for one reason.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FailureCount {
    /// The error, as the client library reports it.
    pub reason: String,
    /// Bots that failed so.
    pub count: usize,
}

/// Runs the bots to completion. Fails at once, with the reason, if the first bot cannot
/// log in.
pub async fn run_bots(options: &BotsOptions) -> anyhow::Result<BotsReport> {
    let count = options.count.clamp(1, BOTS_MAX);
    let config_of = |i: usize| {
        let start = match options.spread {
            Spread::First => None,
            Spread::RoundRobin => options
                .regions
                .get(i % options.regions.len().max(1))
                .copied(),
        };
        let mut config = ClientConfig::new(
            options.addr,
            "localhost",
            options.cert.clone(),
            token(options, &format!("bot-{i}"), start),
        );
        config.login_timeout = Duration::from_secs(10);
        config
    };
    let first = probe(options, config_of(0)).await?;
    let logged_in = Arc::new(AtomicUsize::new(1));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    let seed_of = |i: usize| i as u64;
    let (duration, trades) = (options.duration, options.trade);
    tasks.push(tokio::spawn(async move {
        play(first, Instant::now() + duration, seed_of(0), trades).await
    }));
    let mut progress = Shown::new(options.progress, count, options.ramp + duration);
    for i in 1..count {
        // Logins evenly over the ramp; without one, in bursts of 50: a thundering herd of
        // handshakes is its own test.
        let due = if options.ramp.is_zero() {
            (i % 50 == 0).then(|| Instant::now() + Duration::from_millis(20))
        } else {
            Some(started + options.ramp.mul_f64(i as f64 / count as f64))
        };
        if let Some(due) = due {
            tokio::time::sleep_until(due.into()).await;
        }
        progress.show(started, &logged_in);
        let config = config_of(i);
        let logged_in = logged_in.clone();
        tasks.push(tokio::spawn(async move {
            match Client::connect(&config).await {
                Ok(client) => {
                    logged_in.fetch_add(1, Ordering::Relaxed);
                    play(client, Instant::now() + duration, seed_of(i), trades).await
                }
                Err(e) => BotReport {
                    error: Some(e.to_string()),
                    ..BotReport::default()
                },
            }
        }));
    }
    while !tasks.iter().all(|t| t.is_finished()) {
        progress.show(started, &logged_in);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    progress.finish(&logged_in);
    let mut reports = Vec::with_capacity(count);
    for task in tasks {
        reports.push(task.await.unwrap_or_else(|e| BotReport {
            error: Some(format!("bot task failed: {e}")),
            ..BotReport::default()
        }));
    }
    let mut report = summarize(options.addr, count, &reports);
    report.state_budget_kbit_per_s = options.state_budget_kbit_per_s;
    Ok(report)
}

/// The first bot's login: the node is there, and it is the node whose data dir this is.
async fn probe(options: &BotsOptions, mut config: ClientConfig) -> anyhow::Result<Client> {
    config.login_timeout = PROBE_TIMEOUT;
    let addr = options.addr;
    match Client::connect(&config).await {
        Ok(client) => Ok(client),
        Err(ClientError::Timeout) => anyhow::bail!(
            "nothing answered at {addr} within {} s: is a node running there? \
             (`tessera serve` listens on [net] quic_listen; pass --addr, or --config naming \
             the node's config)",
            PROBE_TIMEOUT.as_secs()
        ),
        Err(ClientError::Connection(e)) if e.contains("certificate") => anyhow::bail!(
            "the node at {addr} does not present the dev certificate of this data dir ({e}): \
             run from the node's directory or pass --data-dir naming the node's"
        ),
        Err(e) => anyhow::bail!("the first bot could not log in at {addr}: {e}"),
    }
}

/// One progress line on stderr. A closed stderr (the reader of a pipe went away) loses the
/// line; the run and its summary go on (`eprintln!` would panic).
fn progress_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Progress on stderr, as a bar or as plain lines.
struct Shown {
    how: Progress,
    count: usize,
    bar: Option<indicatif::ProgressBar>,
    last_line: Option<Instant>,
}

impl Shown {
    /// Plain lines are this far apart.
    const LINE_INTERVAL: Duration = Duration::from_secs(5);

    fn new(how: Progress, count: usize, total: Duration) -> Shown {
        let bar = (how == Progress::Bar).then(|| {
            let bar = indicatif::ProgressBar::new(total.as_secs().max(1));
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} s  {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Shown {
            how,
            count,
            bar,
            last_line: None,
        }
    }

    fn show(&mut self, started: Instant, logged_in: &AtomicUsize) {
        let logged_in = logged_in.load(Ordering::Relaxed);
        match self.how {
            Progress::None => {}
            Progress::Bar => {
                if let Some(bar) = &self.bar {
                    bar.set_position(started.elapsed().as_secs());
                    bar.set_message(format!("{logged_in} of {} logged in", self.count));
                }
            }
            Progress::Lines => {
                if self
                    .last_line
                    .is_none_or(|at| at.elapsed() >= Self::LINE_INTERVAL)
                {
                    self.last_line = Some(Instant::now());
                    progress_line(format_args!(
                        "bots: {} s, {logged_in} of {} logged in",
                        started.elapsed().as_secs(),
                        self.count
                    ));
                }
            }
        }
    }

    fn finish(&self, logged_in: &AtomicUsize) {
        let message = format!(
            "{} of {} logged in",
            logged_in.load(Ordering::Relaxed),
            self.count
        );
        match self.how {
            Progress::Bar => {
                if let Some(bar) = &self.bar {
                    bar.finish_with_message(message);
                }
            }
            Progress::Lines => progress_line(format_args!("bots: done, {message}")),
            Progress::None => {}
        }
    }
}

fn token(options: &BotsOptions, name: &str, start: Option<RegionId>) -> String {
    let mut claims = auth::claims_for(
        name,
        &options.issuer,
        &options.audience,
        auth::unix_now_s(),
        options.duration.as_secs().saturating_add(3_600),
    );
    claims.region = start.map(|r| r.0);
    auth::mint(&options.secret, &claims)
}

/// One logged-in bot playing until `deadline`.
async fn play(mut client: Client, deadline: Instant, seed: u64, trades: bool) -> BotReport {
    let welcome = client.welcome().clone();
    let mut report = BotReport {
        connected: true,
        region: Some(welcome.region),
        ..BotReport::default()
    };
    let started = Instant::now();
    let mut sample = tokio::time::interval(RTT_SAMPLE_INTERVAL);
    let tick_hz = u32::from(welcome.tick_hz.max(1));
    let step_m = 6.0 / tick_hz as f32; // The default player speed.
    let mut interval = tokio::time::interval(Duration::from_secs(1) / tick_hz);
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut heading = Vec2::new(1.0, 0.0);
    let mut own = None;
    let mut target = None;
    let mut trader = Trader::new(seed, seed);
    let mut near: Vec<PlayerId> = Vec::new();
    let mut trade = tokio::time::interval(Duration::from_secs(1));
    if trades {
        let _ = client.get_economy();
    }
    while Instant::now() < deadline {
        tokio::select! {
            _ = trade.tick(), if trades => {
                // Answers and offers since the last second (the control queue holds 256).
                while let Some(message) = client.try_next_control() {
                    trader.on_control(&client, message);
                }
                trader.act(&client, &near);
            }
            _ = sample.tick() => {
                if let Some(connection) = client.connection()
                    && report.rtts.len() < SAMPLES_PER_BOT_MAX
                {
                    report.rtts.push(connection.rtt());
                }
            }
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
                    if report.lag_ticks.len() < SAMPLES_PER_BOT_MAX {
                        report.lag_ticks.push(expected.saturating_sub(snapshot.tick));
                    }
                    own = snapshot.entities.iter().find(|e| e.id == welcome.entity).map(|e| dequantize_position(e.position));
                    near.clear();
                    near.extend(
                        snapshot.entities.iter().filter_map(|e| e.id.player()).filter(|p| *p != welcome.player).take(16),
                    );
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
    // The coins it holds at the end: the last `Economy` of the run.
    if report.error.is_none() && client.get_economy().is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(message) = client.next_control().await {
                let last = matches!(message, ControlS2c::Economy(_));
                trader.on_control(&client, message);
                if last {
                    return;
                }
            }
        })
        .await;
    }
    report.economy = trader.figures;
    let stats = client.stats();
    report.bytes_in = stats.bytes_in;
    report.bytes_out = stats.bytes_out;
    report.reconnects = stats.reconnects;
    report.redirects = stats.redirects;
    if report.error.is_none() {
        let _ = tokio::time::timeout(Duration::from_secs(5), client.logout()).await;
    }
    report
}

fn summarize(addr: SocketAddr, count: usize, reports: &[BotReport]) -> BotsReport {
    let ok: Vec<&BotReport> = reports
        .iter()
        .filter(|r| r.connected && r.error.is_none())
        .collect();
    let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
    for error in reports.iter().filter_map(|r| r.error.as_deref()) {
        *by_reason.entry(error).or_default() += 1;
    }
    let mut failures: Vec<FailureCount> = by_reason
        .into_iter()
        .map(|(reason, count)| FailureCount {
            reason: reason.to_owned(),
            count,
        })
        .collect();
    failures.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    let played_s: f64 = ok.iter().map(|r| r.played.as_secs_f64()).sum();
    // Per client: each client's rate, averaged (played time weights it); in total: the
    // sum of the clients' rates.
    let per_client = |f: fn(&BotReport) -> u64| {
        if played_s > 0.0 {
            ok.iter().map(|r| f(r) as f64).sum::<f64>() / played_s
        } else {
            0.0
        }
    };
    let total = |f: fn(&BotReport) -> u64| {
        ok.iter()
            .filter(|r| !r.played.is_zero())
            .map(|r| f(r) as f64 / r.played.as_secs_f64())
            .sum::<f64>()
    };
    let mut rtts: Vec<Duration> = ok.iter().flat_map(|r| r.rtts.iter().copied()).collect();
    rtts.sort_unstable();
    let mut lags: Vec<u64> = ok
        .iter()
        .flat_map(|r| r.lag_ticks.iter().copied())
        .collect();
    lags.sort_unstable();
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    BotsReport {
        addr,
        count,
        connected: reports.iter().filter(|r| r.connected).count(),
        failed: reports.iter().filter(|r| r.error.is_some()).count(),
        failures,
        played_s,
        inputs_per_s_per_client: per_client(|r| r.inputs),
        states_per_s_per_client: per_client(|r| r.states),
        bytes_in_per_s_per_client: per_client(|r| r.bytes_in),
        bytes_out_per_s_per_client: per_client(|r| r.bytes_out),
        bytes_in_per_s_max_client: ok
            .iter()
            .filter(|r| !r.played.is_zero())
            .map(|r| r.bytes_in as f64 / r.played.as_secs_f64())
            .fold(0.0, f64::max),
        bytes_in_per_s_total: total(|r| r.bytes_in),
        state_budget_kbit_per_s: None,
        bytes_out_per_s_total: total(|r| r.bytes_out),
        rtt_ms_p50: ms(percentile(&rtts, 50.0)),
        rtt_ms_p99: ms(percentile(&rtts, 99.0)),
        lag_ticks_p50: percentile(&lags, 50.0),
        lag_ticks_p99: percentile(&lags, 99.0),
        reconnects: reports.iter().map(|r| r.reconnects).sum(),
        redirects: reports.iter().map(|r| r.redirects).sum(),
        economy: EconomySummary::of(ok.iter().map(|r| &r.economy), {
            // Wall time of the run: the longest any bot played.
            ok.iter()
                .map(|r| r.played.as_secs_f64())
                .fold(0.0, f64::max)
        }),
        joined_regions: reports.iter().filter_map(|r| r.region).fold(
            BTreeMap::new(),
            |mut by, region| {
                *by.entry(region.0).or_default() += 1;
                by
            },
        ),
    }
}

impl std::fmt::Display for BotsReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kbit = |bytes_per_s: f64| bytes_per_s * 8.0 / 1000.0;
        writeln!(f, "node                 {}", self.addr)?;
        writeln!(f, "bots                 {:>10}", self.count)?;
        writeln!(f, "connected            {:>10}", self.connected)?;
        writeln!(f, "failed               {:>10}", self.failed)?;
        writeln!(f, "reconnects           {:>10}", self.reconnects)?;
        writeln!(f, "redirects            {:>10}", self.redirects)?;
        let joined: Vec<String> = self
            .joined_regions
            .iter()
            .map(|(region, bots)| format!("{region}: {bots}"))
            .collect();
        writeln!(f, "joined regions       {}", joined.join(", "))?;
        writeln!(
            f,
            "inputs/s per client  {:>10.1}",
            self.inputs_per_s_per_client
        )?;
        writeln!(
            f,
            "states/s per client  {:>10.1}",
            self.states_per_s_per_client
        )?;
        writeln!(
            f,
            "in  per client       {:>10.1} kbit/s   all clients {:>10.1} kbit/s",
            kbit(self.bytes_in_per_s_per_client),
            kbit(self.bytes_in_per_s_total)
        )?;
        match self.state_budget_kbit_per_s {
            Some(budget) => writeln!(
                f,
                "in  budget           {budget:>10} kbit/s   most per client {:>6.1} kbit/s ({:.0}% of \
                 the node's state budget, UDP with events and QUIC overhead)",
                kbit(self.bytes_in_per_s_max_client),
                100.0 * kbit(self.bytes_in_per_s_max_client) / f64::from(budget.max(1))
            )?,
            None => writeln!(
                f,
                "in  most per client  {:>10.1} kbit/s",
                kbit(self.bytes_in_per_s_max_client)
            )?,
        }
        writeln!(
            f,
            "out per client       {:>10.1} kbit/s   all clients {:>10.1} kbit/s",
            kbit(self.bytes_out_per_s_per_client),
            kbit(self.bytes_out_per_s_total)
        )?;
        writeln!(
            f,
            "rtt p50 / p99        {:>7.2} ms / {:.2} ms (sampled every {} s over the run)",
            self.rtt_ms_p50,
            self.rtt_ms_p99,
            RTT_SAMPLE_INTERVAL.as_secs()
        )?;
        writeln!(
            f,
            "state lag p50 / p99  {:>7} / {} ticks",
            self.lag_ticks_p50, self.lag_ticks_p99
        )?;
        let e = &self.economy;
        writeln!(
            f,
            "economy requests     {:>10}   applied {} ({:.1}/s), duplicate {}, trades {}",
            e.requests, e.applied, e.applied_per_s, e.duplicates, e.trades
        )?;
        writeln!(
            f,
            "chat and commands    {:>10}   refused {}, messages heard {}",
            e.chat_sent, e.chat_refused, e.chat_heard
        )?;
        let refused: Vec<String> = e.refused.iter().map(|(c, n)| format!("{c} {n}")).collect();
        writeln!(
            f,
            "economy refused      {}",
            if refused.is_empty() {
                "none".to_owned()
            } else {
                refused.join(", ")
            }
        )?;
        write!(
            f,
            "coins held by bots   {:>10} when first told, {} at the end",
            e.coins_first, e.coins_last
        )?;
        for failure in &self.failures {
            write!(f, "\n  {:>6} x {}", failure.count, failure.reason)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bot(error: Option<&str>, bytes_in: u64, played_s: u64) -> BotReport {
        BotReport {
            connected: error.is_none(),
            error: error.map(str::to_owned),
            bytes_in,
            played: Duration::from_secs(played_s),
            rtts: vec![Duration::from_millis(played_s)],
            ..BotReport::default()
        }
    }

    #[test]
    fn the_summary_counts_every_failure_by_reason_and_separates_per_client_from_total() {
        let mut reports = vec![bot(None, 1_000, 10), bot(None, 3_000, 10)];
        for _ in 0..7 {
            reports.push(bot(Some("timed out"), 0, 0));
        }
        reports.push(bot(Some("refused: ServerFull: full"), 0, 0));
        let report = summarize("127.0.0.1:4433".parse().unwrap(), reports.len(), &reports);
        assert_eq!(report.failed, 8);
        assert_eq!(
            report.failures,
            vec![
                FailureCount {
                    reason: "timed out".into(),
                    count: 7
                },
                FailureCount {
                    reason: "refused: ServerFull: full".into(),
                    count: 1
                },
            ]
        );
        // 100 B/s and 300 B/s: 200 per client on average, 400 in total.
        assert_eq!(report.bytes_in_per_s_per_client, 200.0);
        assert_eq!(report.bytes_in_per_s_total, 400.0);
        assert_eq!(report.rtt_ms_p99, 10.0);
        let text = report.to_string();
        assert!(text.contains("7 x timed out"), "{text}");
        assert!(text.contains("all clients"), "{text}");
        assert_eq!(report.bytes_in_per_s_max_client, 300.0);
        let mut report = report;
        report.state_budget_kbit_per_s = Some(8);
        let text = report.to_string();
        assert!(
            text.contains("most per client    2.4 kbit/s (30% of the node's state budget"),
            "{text}"
        );
    }
}
