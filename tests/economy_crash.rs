//! Issue 17's acceptance test: traders on a two-node cluster over the real Redis and
//! MongoDB-wire server buy, refund, offer trades to each other (across the nodes too) and
//! accept the offers made to them, every request under an idempotency key of its own,
//! while node A is killed with SIGKILL twice and restarted. A request whose answer is
//! lost (the session died with A, no answer in time, `Unavailable`) is sent again with
//! the same key, to whichever node holds the player now, until it is answered.
//!
//! Afterwards a checker reads MongoDB directly: the ledger reconciles with every
//! player's holdings and every shop's stock (no coin or item created or lost,
//! `EconomyAudit::mismatches`); every key a client was answered `Applied` or `Duplicate`
//! for is in the ledger exactly once, no key was answered `Applied` twice, a key only
//! ever refused is not in the ledger, and the ledger holds no client key that was never
//! sent.
//!
//! `ECONOMY_CRASH_SEED=<n>` repeats a run's kill times and the traders' choices (the seed
//! is printed); `ECONOMY_CRASH_TRADERS` (default 40) and `ECONOMY_CRASH_SECS` (default
//! 20) set the size: `scripts/economy-soak.sh` runs the acceptance size, 200 traders for
//! 60 s.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tessera::persistence::SnapshotStore;
use tessera::persistence::economy::EconomyStore;
use tessera::persistence::mongo::MongoStore;
use tessera::shared::client::Client;
use tessera::shared::config::Config;
use tessera::shared::ids::PlayerId;
use tessera::shared::math::Vec2;
use tessera::shared::protocol::messages::{
    ControlS2c, Goods, ItemCount, RefusalCode, TxOutcomeS2c,
};
use tessera_server::auth;

use crate::cluster::ONE_PAIR_AT_A_TIME;
use crate::crash::{Killed, Nodes, Rng, config_without_npcs, free_tcp_port, free_udp_port};
use crate::util::{Log, node_command, services, unique};

/// Traders by default (`ECONOMY_CRASH_TRADERS`).
const TRADERS: usize = 40;
/// Seconds of trading by default (`ECONOMY_CRASH_SECS`).
const SECS: u64 = 20;
/// Times node A is killed.
const KILLS: usize = 2;
/// A request not answered this long on a live session is sent again (same key).
const ANSWER_WAIT: Duration = Duration::from_secs(15);
/// A session that delivers no state this long is taken for dead (its node was killed):
/// the trader logs in again, wherever the player is now.
const SILENCE: Duration = Duration::from_secs(3);
/// How long a trade offer stays open.
const OFFER_TTL_MS: u32 = 30_000;
/// The shop of the default `balance.toml`.
const SHOP: &str = "general_store";
/// What a trader waits between two requests: from this, up to twice as long.
const PAUSE_MIN: Duration = Duration::from_millis(250);

/// What happened to one key.
#[derive(Debug, Default)]
struct KeyLog {
    /// Times it was sent.
    sends: u32,
    /// `Applied` answers.
    applied: u32,
    /// `Duplicate` answers.
    duplicates: u32,
    /// `Duplicate` answers to a key sent again, before any other answer to it was
    /// `Applied`: the first send was applied, its answer lost.
    duplicate_after_retry: bool,
    /// Refusals, by code (retryable ones included).
    refused: Vec<RefusalCode>,
    /// What happened when (seconds into the run), for a report.
    events: Vec<String>,
    /// Sends on the current session not answered yet. A send's answer may come after
    /// the key was settled by another's (a send again after [`ANSWER_WAIT`] while the
    /// first is still being committed): the trader waits for them all at the end, so that
    /// "only refused" means no send of the key was applied. Sends on a session that
    /// died are lost with it (their node was killed, or stops retrying for nobody).
    pending: u32,
    /// The last refusal's `retry_after_ms`.
    retry_after_ms: Option<u32>,
}

impl KeyLog {
    fn seen_applied(&self) -> bool {
        self.applied + self.duplicates > 0
    }
}

/// Why a key was sent again.
#[derive(Debug, Default, Clone, Copy)]
struct Resends {
    /// The session died (no states, or the client failed or reconnected).
    dead_session: u64,
    /// No answer within [`ANSWER_WAIT`] on a live session.
    timeout: u64,
    /// Refused `Unavailable`.
    unavailable: u64,
    /// Refused `RateLimited`.
    rate_limited: u64,
}

/// One trader's record.
#[derive(Debug, Default)]
struct TraderLog {
    keys: BTreeMap<String, KeyLog>,
    resends: Resends,
    /// Logins after the first.
    logins_again: u64,
    /// Longest time from a key's first send to its final answer.
    longest: Duration,
}

/// What the traders share: where to log in, who is who, and the offers made to each (the
/// game's own channel: a node tells only the sessions it holds).
struct Market {
    nodes: Nodes,
    names: Vec<String>,
    ids: Vec<PlayerId>,
    offers: Vec<Mutex<VecDeque<(PlayerId, String)>>>,
    stop: AtomicBool,
    began: Instant,
}

/// A request of a trader, by kind.
#[derive(Clone, Debug)]
enum Request {
    Buy { item: &'static str, count: u32 },
    Refund { purchase: String },
    Offer { to: usize, give: Goods, take: Goods },
    Accept { from: PlayerId, offer: String },
    Cancel { offer: String },
}

fn goods(coins: u64, item: Option<(&str, u32)>) -> Goods {
    Goods {
        coins,
        items: item
            .map(|(item, count)| ItemCount {
                item: item.into(),
                count,
            })
            .into_iter()
            .collect(),
    }
}

impl Request {
    fn send(&self, client: &Client, key: &str, market: &Market) -> bool {
        let sent = match self {
            Request::Buy { item, count } => client.buy(key, SHOP, item, *count),
            Request::Refund { purchase } => client.refund(key, purchase),
            Request::Offer { to, give, take } => client.trade_offer(
                key,
                market.ids[*to],
                give.clone(),
                take.clone(),
                OFFER_TTL_MS,
            ),
            Request::Accept { from, offer } => client.trade_accept(key, *from, offer),
            Request::Cancel { offer } => client.trade_cancel(key, offer),
        };
        sent.is_ok()
    }
}

/// A trader's session: its client, and when it last delivered a state.
struct Session {
    client: Client,
    last_state: Instant,
    /// The client's reconnects and redirects when the current key was sent.
    moves: u64,
}

impl Session {
    async fn open(market: &Market, me: usize) -> Result<Session, String> {
        // Players of regions 1 and 3 are A's (0), of 2 and 4 B's (1).
        let client = market.nodes.connect_from(me % 2, &market.names[me]).await?;
        Ok(Session {
            client,
            last_state: Instant::now(),
            moves: 0,
        })
    }

    fn moves(&self) -> u64 {
        let stats = self.client.stats();
        stats.reconnects + stats.redirects
    }

    /// Reads states and control messages for up to `wait`: every `TxResult` goes to
    /// `log`. `Err` when the session is dead.
    async fn pump(
        &mut self,
        began: Instant,
        wait: Duration,
        log: &mut TraderLog,
    ) -> Result<(), ()> {
        match tokio::time::timeout(wait, self.client.next_state()).await {
            Ok(Ok(_)) => self.last_state = Instant::now(),
            Ok(Err(_)) => return Err(()),
            Err(_) => {}
        }
        while let Some(message) = self.client.try_next_control() {
            if let ControlS2c::TxResult(r) = message {
                let Some(k) = log.keys.get_mut(&r.key) else {
                    continue;
                };
                k.events.push(format!(
                    "{:.3}: {:?}",
                    began.elapsed().as_secs_f64(),
                    r.outcome
                ));
                k.pending = k.pending.saturating_sub(1);
                match r.outcome {
                    TxOutcomeS2c::Applied => k.applied += 1,
                    TxOutcomeS2c::Duplicate => {
                        if k.applied == 0 && k.sends > 1 {
                            k.duplicate_after_retry = true;
                        }
                        k.duplicates += 1;
                    }
                    TxOutcomeS2c::Refused(refusal) => {
                        k.retry_after_ms = refusal.retry_after_ms;
                        k.refused.push(refusal.code);
                    }
                }
            }
        }
        if self.last_state.elapsed() > SILENCE {
            return Err(());
        }
        Ok(())
    }
}

/// How a key ended: applied (or a duplicate of an applied send), or refused for good.
enum Final {
    Applied,
    Refused,
}

/// Sends `request` under `key` until it has a final answer: sent again, same key, when the
/// session dies (to wherever the player is logged in again), when no answer comes within
/// [`ANSWER_WAIT`], and after `Unavailable` or `RateLimited`.
async fn resolve(
    market: &Market,
    me: usize,
    session: &mut Session,
    request: &Request,
    key: &str,
    log: &mut TraderLog,
) -> Result<Final, String> {
    let first_sent = Instant::now();
    let outcome = resolve_from(market, me, session, request, key, log).await;
    log.longest = log.longest.max(first_sent.elapsed());
    outcome
}

async fn resolve_from(
    market: &Market,
    me: usize,
    session: &mut Session,
    request: &Request,
    key: &str,
    log: &mut TraderLog,
) -> Result<Final, String> {
    loop {
        let refused_before = log.keys.get(key).map_or(0, |k| k.refused.len());
        let k = log.keys.entry(key.to_owned()).or_default();
        k.sends += 1;
        k.pending += 1;
        k.events.push(format!(
            "{:.3}: sent on session {}",
            market.began.elapsed().as_secs_f64(),
            session.client.welcome().session
        ));
        session.moves = session.moves();
        let sent_at = Instant::now();
        let mut dead = !request.send(&session.client, key, market);
        let mut retry_after = None;
        while !dead {
            if session
                .pump(market.began, Duration::from_millis(100), log)
                .await
                .is_err()
                || session.moves() != session.moves
            {
                dead = true;
                break;
            }
            let k = &log.keys[key];
            if k.applied + k.duplicates > 0 {
                return Ok(Final::Applied);
            }
            if k.refused.len() > refused_before {
                match k.refused.last() {
                    Some(RefusalCode::Unavailable) => {
                        log.resends.unavailable += 1;
                        retry_after = Some(Duration::from_millis(500));
                    }
                    Some(RefusalCode::RateLimited) => {
                        log.resends.rate_limited += 1;
                        retry_after = Some(Duration::from_millis(u64::from(
                            k.retry_after_ms.unwrap_or(300),
                        )));
                    }
                    _ => return Ok(Final::Refused),
                }
                break;
            }
            if sent_at.elapsed() > ANSWER_WAIT {
                log.resends.timeout += 1;
                break;
            }
        }
        if dead {
            log.resends.dead_session += 1;
            log.logins_again += 1;
            lost_with_session(log);
            *session = Session::open(market, me).await?;
        }
        if let Some(wait) = retry_after {
            let until = Instant::now() + wait;
            while Instant::now() < until {
                if session
                    .pump(market.began, Duration::from_millis(100), log)
                    .await
                    .is_err()
                {
                    break; // found dead at the next send
                }
            }
        }
    }
}

/// The session died: the answers its sends were waiting for will not come.
fn lost_with_session(log: &mut TraderLog) {
    for k in log.keys.values_mut() {
        k.pending = 0;
    }
}

/// One trader until the market stops: buys, refunds its purchases, offers trades to the
/// others and accepts those made to it. Returns its record.
async fn trade(market: Arc<Market>, me: usize, seed: u64) -> Result<TraderLog, String> {
    let mut rng = Rng(seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(me as u64)
        | 1);
    let mut log = TraderLog::default();
    let mut session = Session::open(&market, me).await?;
    let mut purchases: Vec<String> = Vec::new();
    let mut offers: Vec<String> = Vec::new();
    let mut n = 0u64;
    while !market.stop.load(Ordering::Relaxed) {
        let roll = rng.below(100);
        let offered = if roll < 80 {
            market.offers[me].lock().unwrap().pop_front()
        } else {
            None
        };
        let request = match offered {
            Some((from, offer)) => Request::Accept { from, offer },
            None => match roll {
                0..30 => Request::Buy {
                    item: "bread",
                    count: 1 + rng.below(3) as u32,
                },
                30..40 => Request::Buy {
                    item: "health_potion",
                    count: 1,
                },
                40..55 if !purchases.is_empty() => {
                    let i = rng.below(purchases.len() as u64) as usize;
                    Request::Refund {
                        purchase: purchases.swap_remove(i),
                    }
                }
                90..100 if !offers.is_empty() => {
                    let i = rng.below(offers.len() as u64) as usize;
                    Request::Cancel {
                        offer: offers.swap_remove(i),
                    }
                }
                _ => {
                    let others = market.ids.len() as u64 - 1;
                    let to = (me + 1 + rng.below(others) as usize) % market.ids.len();
                    let (give, take) = match rng.below(4) {
                        0 => (goods(0, Some(("bread", 1))), goods(2, None)),
                        1 => (goods(3, None), goods(0, Some(("bread", 1)))),
                        2 => (goods(0, Some(("health_potion", 1))), goods(10, None)),
                        _ => (goods(5, None), goods(0, Some(("health_potion", 1)))),
                    };
                    Request::Offer { to, give, take }
                }
            },
        };
        n += 1;
        let key = format!("t{me}-{n}");
        let outcome = resolve(&market, me, &mut session, &request, &key, &mut log).await?;
        if let Final::Applied = outcome {
            match request {
                Request::Buy { .. } => purchases.push(key),
                Request::Offer { to, .. } => {
                    market.offers[to]
                        .lock()
                        .unwrap()
                        .push_back((market.ids[me], key.clone()));
                    offers.push(key);
                }
                _ => {}
            }
        }
        let pause = PAUSE_MIN + Duration::from_millis(rng.below(PAUSE_MIN.as_millis() as u64));
        let until = Instant::now() + pause;
        while Instant::now() < until {
            if session
                .pump(market.began, Duration::from_millis(100), &mut log)
                .await
                .is_err()
            {
                break; // found dead at the next send
            }
        }
    }
    // Every send on the live session is answered before the count (a key sent again
    // while its first send was still being committed): the committer retries for up to
    // 120 s.
    let until = Instant::now() + Duration::from_secs(150);
    while log.keys.values().any(|k| k.pending > 0) {
        if Instant::now() > until {
            return Err(format!(
                "{}: sends never answered: {:?}",
                market.names[me],
                log.keys
                    .iter()
                    .filter(|(_, k)| k.pending > 0)
                    .map(|(key, _)| key)
                    .collect::<Vec<_>>()
            ));
        }
        if session
            .pump(market.began, Duration::from_millis(100), &mut log)
            .await
            .is_err()
            || session.moves() != session.moves
        {
            lost_with_session(&mut log);
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), session.client.logout()).await;
    Ok(log)
}

fn env_or<T: std::str::FromStr>(var: &str, default: T) -> T {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn traders_lose_and_duplicate_nothing_while_a_node_is_killed() {
    let test = "economy_crash::traders_across_two_nodes_with_kill_9";
    let (Some(redis), Some(mongo)) = (services::redis_url(test), services::mongo_uri(test)) else {
        return;
    };
    let _alone = ONE_PAIR_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let traders: usize = env_or("ECONOMY_CRASH_TRADERS", TRADERS).max(2);
    let secs: u64 = env_or("ECONOMY_CRASH_SECS", SECS).max(4);
    let seed = std::env::var("ECONOMY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
        | 1;
    eprintln!(
        "{test}: seed {seed} (ECONOMY_CRASH_SEED={seed} repeats the kill times and the traders' choices), {traders} traders for {secs} s"
    );
    let mut rng = Rng(seed);

    let database = unique("tessera_econcrash");
    let b_dir = std::env::temp_dir().join(unique("tessera-econcrash-b"));
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
    // Trader i stands in region 1 + i % 4 (1 and 3: node A; 2 and 4: node B), on a grid
    // 100 m apart, away from the borders: nobody moves to another node by walking.
    let names: Vec<String> = (0..traders).map(|_| unique("ec-trader")).collect();
    save(
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let spot = i / 4;
                let (x, y) = (
                    60.0 + 100.0 * (spot % 9) as f32,
                    60.0 + 100.0 * (spot / 9 % 9) as f32,
                );
                let (dx, dy) = [(0.0, 0.0), (1024.0, 0.0), (0.0, 1024.0), (1024.0, 1024.0)][i % 4];
                (name.clone(), Vec2::new(x + dx, y + dy))
            })
            .collect(),
    );
    let market = Arc::new(Market {
        nodes: nodes.clone(),
        ids: names.iter().map(|n| auth::dev_player_id(n)).collect(),
        names,
        offers: (0..traders).map(|_| Mutex::new(VecDeque::new())).collect(),
        stop: AtomicBool::new(false),
        began: Instant::now(),
    });

    // A serves; the traders start; A is killed twice at seeded moments and restarted.
    let mut back_serving: Vec<Duration> = Vec::new();
    let start_a = |back_serving: &mut Vec<Duration>| {
        let started = Instant::now();
        let mut a = spawn_a();
        let log = Log::of(&mut a.0);
        log.find(Duration::from_secs(60), |line| {
            line.contains("node running").then_some(())
        })
        .expect("node A runs within 60 s");
        let probe = unique("ec-probe");
        save(vec![(probe.clone(), Vec2::new(500.0, 500.0))]);
        runtime.block_on(async {
            let client = nodes.connect_from(0, &probe).await.expect("A serves again");
            back_serving.push(started.elapsed());
            let _ = client.logout().await;
        });
        (a, log)
    };
    let (mut a, mut _a_log) = start_a(&mut back_serving);
    let play = Duration::from_secs(secs);
    // One kill in each half of the run, 10% to 90% of the half into it (the first may land
    // in the traders' logins); `ECONOMY_CRASH_KILLS_MS=a,b` sets them instead.
    let kills_at: Vec<Duration> = match std::env::var("ECONOMY_CRASH_KILLS_MS") {
        Ok(list) => list
            .split(',')
            .map(|ms| Duration::from_millis(ms.trim().parse().expect("ECONOMY_CRASH_KILLS_MS")))
            .collect(),
        Err(_) => (0..KILLS)
            .map(|k| {
                let half = play / KILLS as u32;
                half * k as u32 + half * (10 + rng.below(81) as u32) / 100
            })
            .collect(),
    };
    let began = Instant::now();
    let tasks: Vec<_> = (0..traders)
        .map(|me| runtime.spawn(trade(market.clone(), me, seed)))
        .collect();
    for (k, at) in kills_at.iter().enumerate() {
        if let Some(wait) = at.checked_sub(began.elapsed()) {
            std::thread::sleep(wait);
        }
        drop(a); // SIGKILL, whatever it was committing.
        eprintln!(
            "{test}: kill {}: A killed {:?} into the run ({:.3} s on the traders' clock)",
            k + 1,
            began.elapsed(),
            market.began.elapsed().as_secs_f64()
        );
        (a, _a_log) = start_a(&mut back_serving);
        eprintln!(
            "{test}: kill {}: A back serving after {:?}",
            k + 1,
            back_serving.last().unwrap()
        );
    }
    if let Some(wait) = play.checked_sub(began.elapsed()) {
        std::thread::sleep(wait);
    }
    market.stop.store(true, Ordering::Relaxed);
    let logs: Vec<TraderLog> = runtime.block_on(async {
        let mut logs = Vec::new();
        for task in tasks {
            logs.push(task.await.expect("trader task").expect("a trader got lost"));
        }
        logs
    });
    let traded_for = began.elapsed();

    // The checker: MongoDB as the nodes left it.
    let balance = Config::embedded_default().balance;
    let audit = runtime.block_on(store.economy_audit()).unwrap();
    let mismatches = audit.mismatches(&balance);
    let mut in_ledger: BTreeMap<(PlayerId, String), u32> = BTreeMap::new();
    for entry in &audit.ledger {
        *in_ledger
            .entry((entry.player, entry.key.clone()))
            .or_default() += 1;
    }
    let mut problems: Vec<String> = mismatches.iter().map(|m| m.0.clone()).collect();
    let (mut keys, mut sends, mut applied, mut dup_after_retry) = (0u64, 0u64, 0u64, 0u64);
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    let mut resends = Resends::default();
    let mut logins_again = 0;
    let mut longest = Duration::ZERO;
    for (me, log) in logs.iter().enumerate() {
        let player = market.ids[me];
        logins_again += log.logins_again;
        longest = longest.max(log.longest);
        resends.dead_session += log.resends.dead_session;
        resends.timeout += log.resends.timeout;
        resends.unavailable += log.resends.unavailable;
        resends.rate_limited += log.resends.rate_limited;
        for (key, k) in &log.keys {
            keys += 1;
            sends += u64::from(k.sends);
            let stored = in_ledger
                .get(&(player, format!("client:{key}")))
                .copied()
                .unwrap_or(0);
            if k.applied > 1 {
                problems.push(format!(
                    "{player} key {key}: answered Applied {} times",
                    k.applied
                ));
            }
            if k.seen_applied() {
                applied += 1;
                dup_after_retry += u64::from(k.duplicate_after_retry);
                if stored != 1 {
                    problems.push(format!(
                        "{player} key {key}: answered applied ({k:?}), {stored} ledger entries"
                    ));
                }
            } else {
                if stored != 0 {
                    let entry = audit
                        .ledger
                        .iter()
                        .find(|e| e.player == player && e.key == format!("client:{key}"));
                    problems.push(format!(
                        "{player} key {key}: only refused ({k:?}), yet {stored} ledger entries: {entry:?}"
                    ));
                }
                if let Some(code) = k.refused.last() {
                    *refused.entry(format!("{code:?}")).or_default() += 1;
                }
            }
        }
    }
    // No client key in the ledger that its player never sent.
    let sent_by: BTreeMap<PlayerId, &TraderLog> =
        market.ids.iter().copied().zip(logs.iter()).collect();
    let mut client_entries = 0u64;
    for (player, key) in in_ledger.keys() {
        let Some(key) = key.strip_prefix("client:") else {
            continue;
        };
        client_entries += 1;
        if !sent_by
            .get(player)
            .is_some_and(|log| log.keys.contains_key(key))
        {
            problems.push(format!("{player}: ledger entry {key} was never sent"));
        }
    }
    let kinds = audit
        .ledger
        .iter()
        .fold(BTreeMap::<&str, u64>::new(), |mut kinds, e| {
            *kinds.entry(e.kind.as_str()).or_default() += 1;
            kinds
        });
    let coins: u64 = audit.players.values().map(|p| p.holdings.coins).sum();
    let mut serving = back_serving[1..].to_vec();
    serving.sort();
    eprintln!(
        "{test}: {traders} traders for {traded_for:?}, {} kills of A survived (back serving after {:?}, first start {:?})",
        kills_at.len(),
        serving,
        back_serving[0]
    );
    eprintln!(
        "{test}: {keys} requests ({:.1}/s), {sends} sends; resent after a dead session {}, no answer in {ANSWER_WAIT:?} {}, Unavailable {}, RateLimited {}; {logins_again} logins again; longest wait for a final answer {longest:?}",
        keys as f64 / traded_for.as_secs_f64(),
        resends.dead_session,
        resends.timeout,
        resends.unavailable,
        resends.rate_limited,
    );
    eprintln!(
        "{test}: {applied} applied ({dup_after_retry} answered Duplicate after a retry: applied once, the first answer lost), refused by reason {refused:?}"
    );
    eprintln!(
        "{test}: checker: {} ledger entries {kinds:?}, {client_entries} of them client keys; {} players hold {coins} coins; {} mismatches, {} problems",
        audit.ledger.len(),
        audit.players.len(),
        mismatches.len(),
        problems.len()
    );
    for problem in problems.iter().take(20) {
        eprintln!("{test}: PROBLEM {problem}");
    }
    assert!(
        problems.is_empty(),
        "{} problems, first: {:?}",
        problems.len(),
        problems.first()
    );
    assert!(applied > 0, "nothing was applied");
    assert!(
        kinds.get("accept").is_some_and(|&n| n > 0),
        "no trade was accepted: {kinds:?}"
    );
    assert_eq!(back_serving.len(), kills_at.len() + 1);
    drop(a);
    drop(b);
    for dir in [&a_dir, &config_dir] {
        let _ = std::fs::remove_dir_all(dir);
    }
}
