//! Bus publishing, PERFORMANCE.md goal 7: pipelined publishing >= 4x unpipelined, <= 1
//! Redis round trip per region per tick.
//!
//! A node with `REGIONS` regions publishes, each tick, one ghost update (`GHOST_BYTES` B) and
//! `MAIL_PER_REGION` mails per region. Pipelined: the whole tick is one `Batch`, one round
//! trip. Baseline in the same run: the same items, one round trip each. Runs against
//! `TESSERA_TEST_REDIS_URL` if set, else a private `redis-server` it starts on a free
//! loopback port; skips (saying so) when neither is available.

use std::time::{Duration, Instant};

use tessera::persistence::bus::{Batch, BusConfig, EventBus, GhostUpdate, Lane, Mail};
use tessera::persistence::redis_bus::RedisBus;
use tessera::shared::ids::RegionId;

#[path = "../tests/private_redis.rs"]
mod private_redis;
use private_redis::PrivateRedis;

const REGIONS: u32 = 16;
const MAIL_PER_REGION: usize = 2;
const GHOST_BYTES: usize = 1_024;
const TICKS: usize = 200;

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that does not match skips.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"bus".contains(&a))
    {
        return;
    }
    let (url, _server) = match std::env::var("TESSERA_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => match PrivateRedis::start() {
            Some(server) => (server.url(), Some(server)),
            None => {
                println!("bus: skipped: no TESSERA_TEST_REDIS_URL and no redis-server on PATH");
                return;
            }
        },
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let bus = RedisBus::connect(&url, BusConfig::default())
            .await
            .expect("Redis reachable");
        let base = 8_000_000 + std::process::id() % 100_000;
        let batch = |tick: usize| Batch {
            mail: (0..REGIONS)
                .flat_map(|r| {
                    (0..MAIL_PER_REGION).map(move |m| Mail {
                        to: RegionId(base + (r + 1) % REGIONS),
                        lane: Lane::Normal,
                        key: format!("t{tick}-r{r}-m{m}"),
                        payload: vec![7; 200],
                    })
                })
                .collect(),
            ghosts: (0..REGIONS)
                .map(|r| GhostUpdate {
                    region: RegionId(base + r),
                    payload: vec![1; GHOST_BYTES],
                })
                .collect(),
        };
        let items = REGIONS as usize * (MAIL_PER_REGION + 1);
        // Warm up both paths (connections, script cache).
        for tick in 0..10 {
            bus.publish(&batch(tick)).await.expect("publish");
        }
        let mut pipelined = Vec::with_capacity(TICKS);
        let mut one_by_one = Vec::with_capacity(TICKS);
        for tick in 0..TICKS {
            // Alternate the two so that drift in the machine affects both alike.
            let b = batch(1_000 + tick);
            let started = Instant::now();
            bus.publish(&b).await.expect("publish");
            pipelined.push(started.elapsed());
            let b = batch(100_000 + tick);
            let started = Instant::now();
            for mail in b.mail {
                let single = Batch {
                    mail: vec![mail],
                    ghosts: vec![],
                };
                bus.publish(&single).await.expect("publish");
            }
            for ghost in b.ghosts {
                let single = Batch {
                    mail: vec![],
                    ghosts: vec![ghost],
                };
                bus.publish(&single).await.expect("publish");
            }
            one_by_one.push(started.elapsed());
        }
        pipelined.sort_unstable();
        one_by_one.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let p = |v: &[Duration], q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        println!(
            "bus: {REGIONS} regions, {items} items per tick ({MAIL_PER_REGION} mails of 200 B and \
             one {GHOST_BYTES} B ghost update per region), {TICKS} ticks, Redis at {url}"
        );
        println!(
            "  pipelined (1 round trip per tick):      p50 {:.3} ms  p99 {:.3} ms",
            ms(p(&pipelined, 0.5)),
            ms(p(&pipelined, 0.99))
        );
        println!(
            "  one by one ({items} round trips per tick): p50 {:.3} ms  p99 {:.3} ms",
            ms(p(&one_by_one, 0.5)),
            ms(p(&one_by_one, 0.99))
        );
        println!(
            "  speed-up pipelined vs one by one (p50): {:.1}x",
            p(&one_by_one, 0.5).as_secs_f64() / p(&pipelined, 0.5).as_secs_f64()
        );
        // Leave Redis as found: the mail streams written here.
        let mut cleanup = redis::pipe();
        for r in 0..REGIONS {
            for lane in ["high", "normal", "low"] {
                cleanup.del(format!("tessera:{{r{}}}:mail:{lane}", base + r));
            }
        }
        let mut connection = tessera::persistence::redis_bus::connection(&url)
            .await
            .expect("Redis reachable");
        let _: Result<(), _> = cleanup.query_async(&mut connection).await;
    });
}
