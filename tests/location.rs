//! Player locations in Redis (one node at a time): claims, hand overs, releases, refreshes
//! and lapses against the real test Redis.

use std::time::Duration;

use tessera::persistence::lease::RedisLeases;
use tessera::persistence::location::{Claim, RedisLocations};
use tessera::shared::ids::PlayerId;

use crate::util::{fresh_player, runtime, services, unique};

#[test]
fn a_player_is_claimed_by_one_live_node_at_a_time() {
    let Some(url) = services::redis_url("location::claims") else {
        return;
    };
    runtime().block_on(async {
        let ttl = Duration::from_secs(10);
        let locations = RedisLocations::connect(&url, ttl).await.unwrap();
        let leases = RedisLeases::connect(&url).await.unwrap();
        let (a, b, c) = (unique("loc-a"), unique("loc-b"), unique("loc-c"));
        // A and B are live (they advertise an address); C never is.
        for node in [&a, &b] {
            leases
                .advertise(node, "127.0.0.1:1", Duration::from_secs(30))
                .await
                .unwrap();
        }
        let player = fresh_player();

        // Free: A takes it. A second login on A (session 2) takes it over.
        assert_eq!(
            locations.claim(player, &a, 1).await.unwrap(),
            Claim::Claimed
        );
        assert_eq!(
            locations.claim(player, &a, 2).await.unwrap(),
            Claim::Claimed
        );
        assert_eq!(locations.holder(player).await.unwrap(), Some(a.clone()));
        // B is refused while A lives, and told who holds it for how long.
        match locations.claim(player, &b, 7).await.unwrap() {
            Claim::HeldBy { node, ttl: left } => {
                assert_eq!(node, a);
                assert!(left > Duration::ZERO && left <= ttl, "{left:?}");
            }
            Claim::Claimed => panic!("B claimed a player A holds"),
        }
        // Session 1's late release leaves session 2's claim alone; session 2's frees it.
        assert!(!locations.release(player, &a, 1).await.unwrap());
        assert_eq!(locations.holder(player).await.unwrap(), Some(a.clone()));
        assert!(locations.release(player, &a, 2).await.unwrap());
        assert_eq!(locations.holder(player).await.unwrap(), None);

        // A hands the player over to B; then A (its avatar gone) can neither claim it
        // nor hand it over again, and C cannot hand over what it does not hold.
        assert_eq!(
            locations.claim(player, &a, 3).await.unwrap(),
            Claim::Claimed
        );
        assert!(locations.hand_over(player, &a, &b).await.unwrap());
        assert_eq!(locations.holder(player).await.unwrap(), Some(b.clone()));
        assert!(matches!(
            locations.claim(player, &a, 4).await.unwrap(),
            Claim::HeldBy { node, .. } if node == b
        ));
        assert!(!locations.hand_over(player, &a, &c).await.unwrap());
        assert!(!locations.hand_over(player, &c, &a).await.unwrap());
        // B's redirected login takes the handed-over key as its own.
        assert_eq!(
            locations.claim(player, &b, 9).await.unwrap(),
            Claim::Claimed
        );

        // A node that is not live (C's claim after B died: here C claims a key naming a
        // node that never advertised) takes the player over.
        let orphan = fresh_player();
        assert_eq!(
            locations.claim(orphan, &c, 1).await.unwrap(),
            Claim::Claimed
        );
        assert_eq!(
            locations.claim(orphan, &a, 5).await.unwrap(),
            Claim::Claimed,
            "a dead node's claim blocks nobody"
        );
        assert_eq!(locations.holder(orphan).await.unwrap(), Some(a.clone()));
    });
}

#[test]
fn keys_last_while_refreshed_and_lapse_after() {
    let Some(url) = services::redis_url("location::lapse") else {
        return;
    };
    runtime().block_on(async {
        let ttl = Duration::from_millis(600);
        let locations = RedisLocations::connect(&url, ttl).await.unwrap();
        let leases = RedisLeases::connect(&url).await.unwrap();
        let (a, b) = (unique("loc-a"), unique("loc-b"));
        leases
            .advertise(&a, "127.0.0.1:1", Duration::from_secs(30))
            .await
            .unwrap();
        let (mine, theirs, gone) = (fresh_player(), fresh_player(), fresh_player());
        assert_eq!(locations.claim(mine, &a, 1).await.unwrap(), Claim::Claimed);
        assert_eq!(
            locations.claim(theirs, &b, 1).await.unwrap(),
            Claim::Claimed
        );
        // A refreshes its own key only: B's and a missing one are left alone.
        for _ in 0..4 {
            tokio::time::sleep(ttl / 3).await;
            let extended = locations.refresh(&[mine, theirs, gone], &a).await.unwrap();
            assert_eq!(extended, 1);
        }
        assert_eq!(locations.holder(mine).await.unwrap(), Some(a.clone()));
        assert_eq!(
            locations.holder(theirs).await.unwrap(),
            None,
            "B's key, not refreshed, lapsed"
        );
        assert_eq!(locations.holder(gone).await.unwrap(), None);
        // Not refreshed any more (the avatar left without a logout): it lapses, and B
        // can claim the player though A is live.
        tokio::time::sleep(ttl + Duration::from_millis(200)).await;
        assert_eq!(locations.claim(mine, &b, 2).await.unwrap(), Claim::Claimed);
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
    });
}
