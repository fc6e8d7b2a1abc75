//! Player locations (one node at a time, the latest handoff only): claims, hand overs,
//! acceptance of handoffs, adoption, releases, refreshes and lapses, against both
//! implementations: the in-process one (always; the cluster simulator's) and Redis's (when
//! the test services are up). One suite: the two must not drift apart.

use std::time::Duration;

use tessera::persistence::clock::Clock;
use tessera::persistence::lease::{LeaseStore, LocalLeases, RedisLeases};
use tessera::persistence::location::{Claim, LocalLocations, LocationStore, Move, RedisLocations};
use tessera::shared::ids::{HandoffId, PlayerId};

use crate::lease::Leases;
use crate::util::{fresh_player, fresh_region, runtime, services, unique};

/// Runs `check` against the in-process locations, then Redis's when it is up: each with
/// keys lasting `ttl` and the leases it reads liveness from, the `live` nodes advertising
/// an address (a hold counts only while its node is live).
fn both<F, Fut>(test: &str, ttl: Duration, live: &[&str], check: F)
where
    F: Fn(Locations, Leases) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    runtime().block_on(async {
        let leases = LocalLeases::default();
        let locations = LocalLocations::new(leases.clone(), ttl, Clock::system());
        let (locations, leases) = (Locations::Local(locations), Leases::Local(leases));
        advertise(&leases, live).await;
        check(locations, leases).await;
        if let Some(url) = services::redis_url(test) {
            let locations = RedisLocations::connect(&url, ttl).await.unwrap();
            let leases = Leases::Redis(RedisLeases::connect(&url).await.unwrap());
            advertise(&leases, live).await;
            check(Locations::Redis(locations), leases).await;
        }
    });
}

async fn advertise(leases: &Leases, live: &[&str]) {
    for node in live {
        leases
            .advertise(node, "127.0.0.1:1", Duration::from_secs(30))
            .await
            .unwrap();
    }
}

#[test]
fn a_player_is_claimed_by_one_live_node_at_a_time() {
    let ttl = Duration::from_secs(10);
    let (a, b, c) = (unique("loc-a"), unique("loc-b"), unique("loc-c"));
    // A and B are live (they advertise an address); C never is.
    both("location::claims", ttl, &[&a, &b], |locations, _leases| {
        let (a, b, c) = (a.clone(), b.clone(), c.clone());
        async move {
            let player = fresh_player();

            // Free: A takes it. A second login on A (session 2) takes it over.
            assert_eq!(claim(&locations, player, &a, 1).await, Claim::Claimed);
            assert_eq!(claim(&locations, player, &a, 2).await, Claim::Claimed);
            assert_eq!(locations.holder(player).await.unwrap(), Some(a.clone()));
            // B is refused while A lives, and told who holds it for how long.
            match claim(&locations, player, &b, 7).await {
                Claim::HeldBy { node, ttl: left } => {
                    assert_eq!(node, a);
                    assert!(left > Duration::ZERO && left <= ttl, "{left:?}");
                }
                other => panic!("B claimed a player A holds: {other:?}"),
            }
            // Session 1's late release leaves session 2's claim alone; session 2's frees it.
            assert!(!locations.release(player, &a, 1).await.unwrap());
            assert_eq!(locations.holder(player).await.unwrap(), Some(a.clone()));
            assert!(locations.release(player, &a, 2).await.unwrap());
            assert_eq!(locations.holder(player).await.unwrap(), None);

            // A node that is not live takes a player over from it (here a claim of C, which
            // never advertised).
            let orphan = fresh_player();
            assert_eq!(claim(&locations, orphan, &c, 1).await, Claim::Claimed);
            assert_eq!(
                claim(&locations, orphan, &a, 5).await,
                Claim::Claimed,
                "a dead node's claim blocks nobody"
            );
            assert_eq!(locations.holder(orphan).await.unwrap(), Some(a.clone()));
        }
    });
}

#[test]
fn a_handoff_moves_the_player_and_a_stale_one_is_refused() {
    let (a, b) = (unique("loc-a"), unique("loc-b"));
    both(
        "location::handoffs",
        Duration::from_secs(10),
        &[&a, &b],
        |locations, leases| {
            let (a, b) = (a.clone(), b.clone());
            async move {
                // A holds `home`, B holds `away`; the player crosses from home to away.
                let (home, away) = (fresh_region(), fresh_region());
                let mut held = Vec::new();
                for (region, node) in [(home, &a), (away, &b)] {
                    held.push(
                        leases
                            .acquire(region, node, Duration::from_secs(30), 1)
                            .await
                            .unwrap()
                            .expect("a fresh region is free"),
                    );
                }
                let player = fresh_player();
                let first = Move {
                    player,
                    from: home,
                    to: away,
                    handoff: HandoffId(41),
                };
                assert_eq!(claim(&locations, player, &a, 3).await, Claim::Claimed);
                // The avatar's claim is 3: a hand over for an older one (a login on A raced the
                // crossing and claimed since) keeps the key with that login.
                assert!(!hand_over(&locations, first, Some(2), &a, true).await);
                assert!(hand_over(&locations, first, Some(3), &a, true).await);
                // A retry of the same hand over succeeds and changes nothing.
                assert!(hand_over(&locations, first, Some(3), &a, false).await);
                assert_eq!(
                    locations.holder(player).await.unwrap(),
                    Some(format!("@{}", away.0))
                );
                // In flight: A (its avatar gone) cannot claim it back, it is on its way to B;
                // B's own login waits for it (arriving).
                assert!(matches!(
                    claim(&locations, player, &a, 4).await,
                    Claim::HeldBy { node, .. } if node == b
                ));
                assert_eq!(
                    claim(&locations, player, &b, 9).await,
                    Claim::Arriving { region: away }
                );
                // B receives it (the latest move) and the avatar walks straight back before B's
                // adoption ran: B hands the in-flight key over, and the late adoption is a no-op.
                assert_eq!(locations.accepts(&[first], &b).await.unwrap(), vec![true]);
                let second = Move {
                    player,
                    from: away,
                    to: home,
                    handoff: HandoffId(42),
                };
                assert!(hand_over(&locations, second, Some(0), &b, true).await);
                assert!(!locations.adopt(first, &b).await.unwrap());
                assert_eq!(locations.accepts(&[second], &a).await.unwrap(), vec![true]);
                assert!(locations.adopt(second, &a).await.unwrap());
                assert_eq!(locations.holder(player).await.unwrap(), Some(a.clone()));
                // The first handoff redelivered now (to B after a crash, or anywhere) is stale.
                assert_eq!(
                    locations.accepts(&[first, second], &b).await.unwrap(),
                    vec![false, false]
                );
                // Adopted, no login since: a redelivery to A (A applied it, crashed before
                // acknowledging, restarted) is still accepted. After a login on A it is not:
                // that login's avatar has the player.
                assert_eq!(locations.accepts(&[second], &a).await.unwrap(), vec![true]);
                assert_eq!(claim(&locations, player, &a, 12).await, Claim::Claimed);
                assert_eq!(
                    locations.accepts(&[second], &a).await.unwrap(),
                    vec![false],
                    "a redelivery after a login would make a second avatar"
                );
                // After a logout, nothing that moved the player before is accepted.
                assert!(locations.release(player, &a, 12).await.unwrap());
                assert_eq!(
                    locations.accepts(&[first, second], &a).await.unwrap(),
                    vec![false, false]
                );
                // A retried hand over does not take a key that lapsed meanwhile (the player may
                // have logged in elsewhere since); a first attempt does.
                assert!(!hand_over(&locations, first, None, &a, false).await);
                assert!(hand_over(&locations, first, None, &a, true).await);
                // In flight to a region nobody holds (B died): anyone may claim the player, and a
                // key taken from another holder names no earlier handoff as the latest move.
                leases.release(&held[1]).await.unwrap();
                assert_eq!(claim(&locations, player, &a, 13).await, Claim::Claimed);
                assert_eq!(
                    locations.accepts(&[first], &a).await.unwrap(),
                    vec![false],
                    "a handoff pending from before the claim would make a second avatar"
                );
            }
        },
    );
}

#[test]
fn keys_last_while_refreshed_and_lapse_after() {
    let ttl = Duration::from_millis(600);
    let (a, b) = (unique("loc-a"), unique("loc-b"));
    both("location::lapse", ttl, &[&a], |locations, _leases| {
        let (a, b) = (a.clone(), b.clone());
        async move {
            let (mine, theirs, gone) = (fresh_player(), fresh_player(), fresh_player());
            assert_eq!(claim(&locations, mine, &a, 1).await, Claim::Claimed);
            assert_eq!(claim(&locations, theirs, &b, 1).await, Claim::Claimed);
            // A handoff A received and deferred: A keeps its in-flight key alive too.
            let in_flight = Move {
                player: fresh_player(),
                from: fresh_region(),
                to: fresh_region(),
                handoff: HandoffId(7),
            };
            assert!(hand_over(&locations, in_flight, None, &b, true).await);
            // A refreshes its own keys only: B's and a missing one are left alone.
            for _ in 0..4 {
                tokio::time::sleep(ttl / 3).await;
                let extended = locations
                    .refresh(&[mine, theirs, gone], &[in_flight], &a)
                    .await
                    .unwrap();
                assert_eq!(extended, 2);
            }
            assert_eq!(locations.holder(mine).await.unwrap(), Some(a.clone()));
            assert_eq!(
                locations.holder(theirs).await.unwrap(),
                None,
                "B's key, not refreshed, lapsed"
            );
            assert_eq!(locations.holder(gone).await.unwrap(), None);
            assert_eq!(
                locations.accepts(&[in_flight], &a).await.unwrap(),
                vec![true],
                "the deferred handoff's key lapsed"
            );
            // Not refreshed any more (the avatar left without a logout): it lapses, and B
            // can claim the player though A is live.
            tokio::time::sleep(ttl + Duration::from_millis(200)).await;
            assert_eq!(claim(&locations, mine, &b, 2).await, Claim::Claimed);
            // A graceful stop releases every key naming the node, whatever the claim.
            let more: Vec<PlayerId> = (0..3).map(|_| fresh_player()).collect();
            for (i, &p) in more.iter().enumerate() {
                locations.claim(p, &a, i as u64).await.unwrap();
            }
            locations.release_all(&more, &a).await.unwrap();
            locations.release_all(&[mine], &a).await.unwrap();
            for &p in &more {
                assert_eq!(locations.holder(p).await.unwrap(), None);
            }
            assert_eq!(
                locations.holder(mine).await.unwrap(),
                Some(b),
                "another node's key is not released"
            );
        }
    });
}

/// `claim` of `player` for `node`'s session `session`.
async fn claim(locations: &Locations, player: PlayerId, node: &str, session: u64) -> Claim {
    locations.claim(player, node, session).await.unwrap()
}

/// Whether one move was handed over (`hand_over` of `m` alone).
async fn hand_over(
    locations: &Locations,
    m: Move,
    claim: Option<u64>,
    node: &str,
    first: bool,
) -> bool {
    let handed = locations
        .hand_over(&[(m, claim)], node, first)
        .await
        .unwrap();
    assert_eq!(handed.len(), 1, "one answer per move");
    handed[0]
}

/// Either implementation.
#[derive(Clone, Debug)]
enum Locations {
    Local(LocalLocations),
    Redis(RedisLocations),
}

/// Calls the same method on whichever implementation.
macro_rules! either {
    ($self:ident, $l:ident => $call:expr) => {
        match $self {
            Locations::Local($l) => $call.await,
            Locations::Redis($l) => $call.await,
        }
    };
}

impl LocationStore for Locations {
    async fn claim(
        &self,
        player: PlayerId,
        node: &str,
        claim: u64,
    ) -> Result<Claim, tessera::persistence::lease::LeaseError> {
        either!(self, l => l.claim(player, node, claim))
    }
    async fn hand_over(
        &self,
        moves: &[(Move, Option<u64>)],
        node: &str,
        first: bool,
    ) -> Result<Vec<bool>, tessera::persistence::lease::LeaseError> {
        either!(self, l => l.hand_over(moves, node, first))
    }
    async fn accepts(
        &self,
        moves: &[Move],
        node: &str,
    ) -> Result<Vec<bool>, tessera::persistence::lease::LeaseError> {
        either!(self, l => l.accepts(moves, node))
    }
    async fn adopt(
        &self,
        m: Move,
        node: &str,
    ) -> Result<bool, tessera::persistence::lease::LeaseError> {
        either!(self, l => l.adopt(m, node))
    }
    async fn release(
        &self,
        player: PlayerId,
        node: &str,
        claim: u64,
    ) -> Result<bool, tessera::persistence::lease::LeaseError> {
        either!(self, l => l.release(player, node, claim))
    }
    async fn release_all(
        &self,
        players: &[PlayerId],
        node: &str,
    ) -> Result<(), tessera::persistence::lease::LeaseError> {
        either!(self, l => l.release_all(players, node))
    }
    async fn refresh(
        &self,
        players: &[PlayerId],
        in_flight: &[Move],
        node: &str,
    ) -> Result<usize, tessera::persistence::lease::LeaseError> {
        either!(self, l => l.refresh(players, in_flight, node))
    }
    async fn holder(
        &self,
        player: PlayerId,
    ) -> Result<Option<String>, tessera::persistence::lease::LeaseError> {
        either!(self, l => l.holder(player))
    }
}
