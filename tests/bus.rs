//! The event bus contract, run against both implementations: the in-process bus always,
//! Redis when the test services are up (`./scripts/test.sh` starts a real Redis and
//! exports `TESSERA_TEST_REDIS_URL`).

use std::time::Duration;

use tessera::persistence::bus::*;
use tessera::persistence::local_bus::LocalBus;
use tessera::persistence::redis_bus::RedisBus;
use tessera::shared::ids::RegionId;

use crate::private_redis::PrivateRedis;
use crate::util::{fresh_region, runtime, services};

/// Reclaim at once and dead-letter after 3 deliveries, so the tests need no waiting.
fn quick() -> BusConfig {
    BusConfig {
        reclaim_idle: Duration::ZERO,
        deliveries_max: 3,
        ..BusConfig::default()
    }
}

async fn redis(test: &str, config: BusConfig) -> Option<RedisBus> {
    let url = services::redis_url(test)?;
    Some(
        RedisBus::connect(&url, config)
            .await
            .expect("Redis reachable"),
    )
}

fn mail(to: RegionId, lane: Lane, key: &str) -> Mail {
    Mail {
        to,
        lane,
        key: key.into(),
        payload: format!("payload of {key}").into_bytes(),
    }
}

async fn send(bus: &impl EventBus, mail: Vec<Mail>) {
    let published = bus
        .publish(&Batch {
            mail,
            ghosts: Vec::new(),
        })
        .await
        .unwrap();
    assert!(published.refused.is_empty());
}

/// Runs `check` against the in-process bus, then against Redis when it is up.
fn both<F, Fut>(test: &str, config: BusConfig, check: F)
where
    F: Fn(BusDyn) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    runtime().block_on(async {
        check(BusDyn::Local(LocalBus::new(config))).await;
        if let Some(bus) = redis(test, config).await {
            check(BusDyn::Redis(Box::new(bus))).await;
        }
    });
}

/// Either implementation, for running one check against both.
#[derive(Clone, Debug)]
enum BusDyn {
    Local(LocalBus),
    Redis(Box<RedisBus>),
}

impl EventBus for BusDyn {
    async fn publish(&self, batch: &Batch) -> Result<Published, BusError> {
        match self {
            BusDyn::Local(b) => b.publish(batch).await,
            BusDyn::Redis(b) => b.publish(batch).await,
        }
    }
    async fn receive(&self, r: RegionId, c: &str, max: usize) -> Result<Vec<Delivery>, BusError> {
        match self {
            BusDyn::Local(b) => b.receive(r, c, max).await,
            BusDyn::Redis(b) => b.receive(r, c, max).await,
        }
    }
    async fn ack(&self, r: RegionId, d: &[Delivery]) -> Result<(), BusError> {
        match self {
            BusDyn::Local(b) => b.ack(r, d).await,
            BusDyn::Redis(b) => b.ack(r, d).await,
        }
    }
    async fn pending(&self, r: RegionId) -> Result<u64, BusError> {
        match self {
            BusDyn::Local(b) => b.pending(r).await,
            BusDyn::Redis(b) => b.pending(r).await,
        }
    }
    async fn dead_letters(&self, r: RegionId, max: usize) -> Result<Vec<DeadLetter>, BusError> {
        match self {
            BusDyn::Local(b) => b.dead_letters(r, max).await,
            BusDyn::Redis(b) => b.dead_letters(r, max).await,
        }
    }
    async fn dead_letter_count(&self, r: RegionId) -> Result<u64, BusError> {
        match self {
            BusDyn::Local(b) => b.dead_letter_count(r).await,
            BusDyn::Redis(b) => b.dead_letter_count(r).await,
        }
    }
    async fn subscribe_ghosts(&self, regions: &[RegionId]) -> Result<GhostFeed, BusError> {
        match self {
            BusDyn::Local(b) => b.subscribe_ghosts(regions).await,
            BusDyn::Redis(b) => b.subscribe_ghosts(regions).await,
        }
    }
    async fn publish_chat(&self, payloads: &[Vec<u8>]) -> Result<(), BusError> {
        match self {
            BusDyn::Local(b) => b.publish_chat(payloads).await,
            BusDyn::Redis(b) => b.publish_chat(payloads).await,
        }
    }
    async fn subscribe_chat(&self) -> Result<ChatFeed, BusError> {
        match self {
            BusDyn::Local(b) => b.subscribe_chat().await,
            BusDyn::Redis(b) => b.subscribe_chat().await,
        }
    }
}

#[test]
fn chat_reaches_every_subscriber_in_order_and_over_limit_is_refused() {
    both("bus::chat", BusConfig::default(), |bus| async move {
        let mut first = bus.subscribe_chat().await.unwrap();
        let mut second = bus.subscribe_chat().await.unwrap();
        let payloads: Vec<Vec<u8>> = (0..50u8).map(|n| vec![n; 1 + n as usize]).collect();
        bus.publish_chat(&payloads[..20]).await.unwrap();
        bus.publish_chat(&payloads[20..]).await.unwrap();
        for feed in [&mut first, &mut second] {
            let mut got = Vec::new();
            while got.len() < payloads.len() {
                let frame = tokio::time::timeout(Duration::from_secs(5), feed.recv())
                    .await
                    .expect("chat within 5 s")
                    .expect("the feed goes on");
                if got.is_empty() {
                    assert_eq!(frame.gap, 0);
                }
                // Other tests' messages share the channel (the Redis one): keep ours.
                if frame.payload.first().is_some_and(|&b| b < 50)
                    && frame.payload.len() == 1 + frame.payload[0] as usize
                {
                    got.push(frame.payload);
                }
            }
            assert_eq!(got, payloads, "{bus:?}: every message, in order");
        }
        let huge = vec![vec![0u8; tessera::persistence::bus::CHAT_BYTES_MAX + 1]];
        assert!(matches!(
            bus.publish_chat(&huge).await,
            Err(BusError::TooLarge { .. })
        ));
    });
}

#[test]
fn mail_arrives_high_lane_first_and_leaves_when_acknowledged() {
    both("bus::lanes", BusConfig::default(), |bus| async move {
        let region = fresh_region();
        send(
            &bus,
            vec![
                mail(region, Lane::Low, "l1"),
                mail(region, Lane::Normal, "n1"),
                mail(region, Lane::High, "h1"),
                mail(region, Lane::High, "h2"),
            ],
        )
        .await;
        let got = bus.receive(region, "node-a", 100).await.unwrap();
        let keys: Vec<&str> = got.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["h1", "h2", "n1", "l1"], "{bus:?}");
        assert!(got.iter().all(|d| d.deliveries == 1 && d.region == region));
        assert_eq!(got[0].payload, b"payload of h1");
        assert_eq!(bus.pending(region).await.unwrap(), 4);
        // Not reclaimed before the idle time (30 s by default): nothing more to read.
        assert!(bus.receive(region, "node-a", 100).await.unwrap().is_empty());
        bus.ack(region, &got).await.unwrap();
        assert_eq!(bus.pending(region).await.unwrap(), 0);
        // Another region's mail is its own.
        assert!(
            bus.receive(fresh_region(), "node-a", 100)
                .await
                .unwrap()
                .is_empty()
        );
    });
}

#[test]
fn a_receive_takes_at_most_what_was_asked_and_leaves_the_rest() {
    both("bus::max", BusConfig::default(), |bus| async move {
        let region = fresh_region();
        let all: Vec<Mail> = (0..10)
            .map(|i| mail(region, Lane::Normal, &format!("m{i}")))
            .collect();
        send(&bus, all).await;
        let first = bus.receive(region, "node-a", 4).await.unwrap();
        let rest = bus.receive(region, "node-a", 100).await.unwrap();
        assert_eq!((first.len(), rest.len()), (4, 6), "{bus:?}");
        assert_eq!(rest[0].key, "m4");
    });
}

#[test]
fn a_poison_event_reaches_dead_letters_after_exactly_n_deliveries() {
    both("bus::poison", quick(), |bus| async move {
        let region = fresh_region();
        send(
            &bus,
            vec![
                mail(region, Lane::High, "poison"),
                mail(region, Lane::High, "fine"),
            ],
        )
        .await;
        let mut deliveries_seen = Vec::new();
        for _ in 0..10 {
            let got = bus.receive(region, "node-a", 100).await.unwrap();
            for d in &got {
                if d.key == "poison" {
                    // The handler fails on it every time: never acknowledged.
                    deliveries_seen.push(d.deliveries);
                } else {
                    bus.ack(region, std::slice::from_ref(d)).await.unwrap();
                }
            }
        }
        assert_eq!(deliveries_seen, [1, 2, 3], "{bus:?}");
        let dead = bus.dead_letters(region, 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(bus.dead_letter_count(region).await.unwrap(), 1);
        assert_eq!((dead[0].key.as_str(), dead[0].deliveries), ("poison", 3));
        assert_eq!(dead[0].lane, Lane::High);
        assert_eq!(dead[0].payload, b"payload of poison");
        assert_eq!(
            bus.pending(region).await.unwrap(),
            0,
            "the pending list drains"
        );
    });
}

#[test]
fn a_redelivered_or_resent_handoff_is_applied_once() {
    both("bus::idempotent", quick(), |bus| async move {
        let region = fresh_region();
        let handoff = mail(region, Lane::High, "handoff-77");
        send(&bus, vec![handoff.clone()]).await;
        // The receiver crashes before its ack: the handoff is delivered again.
        let first = bus.receive(region, "node-a", 10).await.unwrap();
        let again = bus.receive(region, "node-b", 10).await.unwrap();
        assert_eq!((first.len(), again.len()), (1, 1), "{bus:?}");
        assert_eq!(again[0].deliveries, 2);
        // The sender, unsure its send went through, sends it again.
        send(&bus, vec![handoff.clone()]).await;
        bus.ack(region, &again).await.unwrap();
        // Both the stale first delivery and the resend: never delivered again.
        for _ in 0..3 {
            let later = bus.receive(region, "node-a", 10).await.unwrap();
            assert!(later.is_empty(), "delivered after its ack: {later:?}");
        }
        assert_eq!(bus.pending(region).await.unwrap(), 0);
    });
}

#[test]
fn oversized_keys_and_payloads_are_refused_before_sending() {
    both("bus::limits", BusConfig::default(), |bus| async move {
        let region = fresh_region();
        let mut big = mail(region, Lane::Low, "k");
        big.payload = vec![0; MAIL_BYTES_MAX + 1];
        let long_key = mail(region, Lane::Low, &"k".repeat(KEY_BYTES_MAX + 1));
        for bad in [big, long_key] {
            let result = bus
                .publish(&Batch {
                    mail: vec![bad],
                    ghosts: vec![],
                })
                .await;
            assert!(
                matches!(result, Err(BusError::TooLarge { .. })),
                "{result:?}"
            );
        }
        assert!(bus.receive(region, "node-a", 10).await.unwrap().is_empty());
    });
}

#[test]
fn ghosts_arrive_in_order_and_a_subscriber_that_falls_behind_sees_the_gap() {
    both("bus::ghosts", BusConfig::default(), |bus| async move {
        let (watched, other) = (fresh_region(), fresh_region());
        let mut feed = bus.subscribe_ghosts(&[watched]).await.unwrap();
        let ghosts = |n: usize| Batch {
            mail: vec![],
            ghosts: vec![
                GhostUpdate {
                    region: watched,
                    payload: format!("tick {n}").into_bytes(),
                },
                GhostUpdate {
                    region: other,
                    payload: b"not watched".to_vec(),
                },
            ],
        };
        for n in 1..=3 {
            bus.publish(&ghosts(n)).await.unwrap();
        }
        for n in 1..=3u64 {
            let ghost = next_ghost(&mut feed).await;
            assert_eq!(
                (ghost.region, ghost.seq, ghost.gap),
                (watched, n, 0),
                "{bus:?}"
            );
            assert_eq!(ghost.payload, format!("tick {n}").into_bytes());
        }
        // The reader stops reading while far more than its queue holds is published.
        let burst = GHOST_QUEUE_LEN_MAX + 500;
        for n in 0..burst {
            bus.publish(&ghosts(4 + n)).await.unwrap();
        }
        // Read what the queue kept, then one message published after it: the gaps add
        // up to exactly what was dropped, wherever in the burst the drops fell.
        let mut missed = 0;
        let mut read = 0u64;
        while let Ok(Some(ghost)) =
            tokio::time::timeout(Duration::from_millis(500), feed.recv()).await
        {
            missed += ghost.gap;
            read += 1;
        }
        bus.publish(&ghosts(9_999)).await.unwrap();
        let after = next_ghost(&mut feed).await;
        missed += after.gap;
        assert_eq!(after.seq, 3 + burst as u64 + 1, "{bus:?}");
        assert_eq!(
            read + missed,
            burst as u64,
            "every message read or counted missed"
        );
        // How many were dropped depends on how far the subscriber's socket got ahead of
        // the queue; that some were, and that each is accounted for, does not.
        assert!(missed > 0, "a burst past the queue must show a gap");
        // Reading again, nothing more is missed.
        bus.publish(&ghosts(10_000)).await.unwrap();
        assert_eq!(next_ghost(&mut feed).await.gap, 0);
    });
}

async fn next_ghost(feed: &mut GhostFeed) -> Ghost {
    tokio::time::timeout(Duration::from_secs(5), feed.recv())
        .await
        .expect("a ghost within 5 s")
        .expect("the feed is open")
}

#[test]
fn a_stalled_redis_fails_calls_within_5_s_instead_of_hanging() {
    // A private Redis, so that stopping it disturbs no other test.
    let Some(_url) = services::redis_url("bus::stalled") else {
        return;
    };
    let server =
        PrivateRedis::start().expect("redis-server on PATH (scripts/services.sh installs it)");
    runtime().block_on(async {
        let bus = RedisBus::connect(&server.url(), BusConfig::default())
            .await
            .unwrap();
        let region = fresh_region();
        send(&bus, vec![mail(region, Lane::High, "before")]).await;
        server.signal("STOP");
        let started = std::time::Instant::now();
        let publish = bus
            .publish(&Batch {
                mail: vec![mail(region, Lane::High, "during")],
                ghosts: vec![],
            })
            .await;
        let publish_took = started.elapsed();
        let started = std::time::Instant::now();
        let receive = bus.receive(region, "node-a", 10).await;
        let receive_took = started.elapsed();
        // A third failure in a row opens the bus's circuit breaker: from then on calls
        // fail at once, without waiting on Redis.
        let third = bus.pending(region).await;
        assert!(bus.breaker().is_open(), "{third:?}");
        let refused = bus.receive(region, "node-a", 10).await;
        server.signal("CONT");
        assert!(
            publish.is_err() && receive.is_err() && third.is_err(),
            "{publish:?} {receive:?} {third:?}"
        );
        assert!(
            matches!(&refused, Err(BusError::Unavailable(m)) if m.starts_with("circuit open")),
            "{refused:?}"
        );
        // The promise is a bound, not a speed: each call gives up within 5 s.
        assert!(
            publish_took < Duration::from_secs(5),
            "publish took {publish_took:?}"
        );
        assert!(
            receive_took < Duration::from_secs(5),
            "receive took {receive_took:?}"
        );
        eprintln!(
            "bus::stalled: against a stopped Redis, publish failed in {publish_took:?}, \
             receive in {receive_took:?}"
        );
        // Once Redis runs again the bus works again (after the breaker's probe), with
        // what it held.
        let mut got = Vec::new();
        let deadline = std::time::Instant::now()
            + tessera::persistence::breaker::OPEN_MAX
            + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(delivered) = bus.receive(region, "node-a", 10).await {
                got.extend(delivered);
                if !got.is_empty() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(got.iter().any(|d| d.key == "before"), "{got:?}");
    });
}
