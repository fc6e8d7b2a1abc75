use std::time::{Duration, Instant};

use tessera_regions::io::{EntityState, HandoffRecord};
use tessera_shared::ids::{HandoffId, NetId, PlayerId, RegionId};
use tessera_shared::math::Vec2;

use super::*;
use crate::types::{Claim, Lease};

const P: PlayerId = PlayerId(7);
const R1: RegionId = RegionId(1);
const R2: RegionId = RegionId(2);

/// Node "a" of a two-region world, holding region 1, with the start-up chatter (renews,
/// advertisement, directory, polls) drained.
fn ledger() -> (Ledger<u32>, Instant) {
    let now = Instant::now();
    let mut ledger = Ledger::new("a", vec![R1, R2], Timing::default(), 1, now);
    ledger.advertised_at(now);
    ledger.hold(lease(R1, now), true);
    ledger.handle_timeout(now);
    quiet(&mut ledger, now);
    (ledger, now)
}

/// Answers the routine reads (polls of the mail: none; the directory: empty).
fn quiet(ledger: &mut Ledger<u32>, now: Instant) {
    for action in drain(ledger) {
        match action {
            IoAction::Receive { op, .. } => ledger.handle(Answer::Receive(op, Ok(vec![])), now),
            IoAction::Directory { op, .. } => ledger.handle(Answer::Directory(op, Ok(vec![])), now),
            _ => {}
        }
    }
}

fn lease(region: RegionId, now: Instant) -> Lease {
    Lease {
        region,
        holder: "a".into(),
        epoch: 1,
        ttl: Duration::from_secs(3),
        sent_at: now,
    }
}

fn record(id: u64, from: RegionId, to: RegionId) -> HandoffRecord {
    HandoffRecord {
        id: HandoffId(id),
        from,
        to,
        tick: 1,
        entity: EntityState {
            id: NetId::of_player(P),
            archetype: 0,
            player: Some(P),
            position: Vec2::new(1.0, 1.0),
            velocity: Vec2::ZERO,
            health: 100.0,
            cooldown_ticks: 0,
            last_input_seq: 0,
        },
    }
}

fn drain(ledger: &mut Ledger<u32>) -> Vec<IoAction<u32>> {
    std::iter::from_fn(|| ledger.poll_io()).collect()
}

fn drivers(ledger: &mut Ledger<u32>) -> Vec<DriverAction> {
    std::iter::from_fn(|| ledger.poll_driver()).collect()
}

#[test]
fn a_departure_is_handed_over_then_published_then_redirected() {
    let (mut l, now) = ledger();
    l.bind(P, 5);
    l.depart(record(10, R1, R2), Some(Duration::from_secs(5)), now);
    assert!(l.is_moving(P));
    let io = drain(&mut l);
    let [IoAction::HandOver { op, moves, first }] = &io[..] else {
        panic!("one hand over, nothing published before it: {io:?}");
    };
    assert!(*first);
    assert_eq!(moves[0].1, Some(5), "from the avatar's claim");
    l.handle(Answer::HandOver(*op, Ok(vec![true])), now);
    let io = drain(&mut l);
    let Some(IoAction::Publish { op, mail }) = io
        .into_iter()
        .find(|a| matches!(a, IoAction::Publish { .. }))
    else {
        panic!("published once handed over");
    };
    assert_eq!(mail[0].key, "handoff-10");
    assert!(l.is_moving(P), "moving until the mail is out");
    l.tick(now);
    assert!(
        drivers(&mut l).is_empty(),
        "no redirect before the handoff is durable"
    );
    l.handle(Answer::Publish(op, Ok(vec![])), now);
    assert!(!l.is_moving(P));
    // The destination's address comes with the directory.
    l.handle_timeout(now + Duration::from_secs(1));
    let dir = drain(&mut l)
        .into_iter()
        .find_map(|a| match a {
            IoAction::Directory { op, .. } => Some(op),
            _ => None,
        })
        .expect("a directory read");
    l.handle(Answer::Directory(dir, Ok(vec![(R2, "b:1".into())])), now);
    l.tick(now);
    assert_eq!(
        drivers(&mut l),
        vec![DriverAction::Redirect {
            player: P,
            addr: "b:1".into(),
            region: R2
        }]
    );
    assert_eq!(l.stats().handoffs_out, 1);
}

#[test]
fn a_refused_hand_over_ends_the_session_as_taken_over() {
    let (mut l, now) = ledger();
    l.bind(P, 5);
    l.depart(record(10, R1, R2), Some(Duration::from_secs(5)), now);
    let op = match &drain(&mut l)[..] {
        [IoAction::HandOver { op, .. }] => *op,
        other => panic!("{other:?}"),
    };
    l.handle(Answer::HandOver(op, Ok(vec![false])), now);
    assert!(!l.is_moving(P));
    assert!(
        drain(&mut l)
            .iter()
            .all(|a| !matches!(a, IoAction::Publish { .. }))
    );
    assert_eq!(
        drivers(&mut l),
        vec![DriverAction::EndSession {
            player: P,
            why: SessionEnd::TakenOver
        }]
    );
}

#[test]
fn a_failed_hand_over_is_retried_without_taking_a_lapsed_key() {
    let (mut l, now) = ledger();
    l.bind(P, 5);
    l.depart(record(10, R1, R2), None, now);
    let op = match &drain(&mut l)[..] {
        [IoAction::HandOver { op, .. }] => *op,
        other => panic!("{other:?}"),
    };
    l.handle(Answer::HandOver(op, Err("down".into())), now);
    assert!(drain(&mut l).is_empty(), "not before its backoff");
    l.handle_timeout(now + Duration::from_secs(3));
    let io = drain(&mut l);
    assert!(
        io.iter()
            .any(|a| matches!(a, IoAction::HandOver { first: false, .. })),
        "{io:?}"
    );
    assert!(l.is_moving(P));
}

#[test]
fn a_login_whose_session_left_after_its_claim_restamps_the_avatars_claim() {
    let (mut l, now) = ledger();
    l.bind(P, 4);
    l.begin_login(1, P, 9, false, now);
    let op = match &drain(&mut l)[..] {
        [IoAction::Claim { op, claim: 9, .. }] => *op,
        other => panic!("{other:?}"),
    };
    l.abandon_login(1, now);
    l.handle(Answer::Claim(op, Ok(Claim::Claimed)), now);
    assert!(l.poll_login().is_none(), "nobody waits for it");
    let io = drain(&mut l);
    assert!(
        matches!(&io[..], [IoAction::Claim { claim: 4, .. }]),
        "the key is restamped with the avatar's claim: {io:?}"
    );
    assert_eq!(l.stats().claims_repaired, 1);
}

#[test]
fn a_login_whose_session_left_releases_its_claim_if_nobody_is_here() {
    let (mut l, now) = ledger();
    l.begin_login(1, P, 9, false, now);
    let op = match &drain(&mut l)[..] {
        [IoAction::Claim { op, .. }] => *op,
        other => panic!("{other:?}"),
    };
    l.handle(Answer::Claim(op, Ok(Claim::Claimed)), now);
    assert_eq!(l.poll_login(), Some((1, Ok(()))));
    // Granted, but its session left before the driver joined it.
    l.join_skipped(P, 9, now);
    let io = drain(&mut l);
    assert!(
        matches!(&io[..], [IoAction::Release { claim: 9, .. }]),
        "{io:?}"
    );
}

#[test]
fn writes_to_one_players_key_go_one_at_a_time_in_order() {
    let (mut l, now) = ledger();
    l.bind(P, 4);
    l.depart(record(10, R1, R2), None, now);
    l.begin_login(1, P, 9, false, now);
    let io = drain(&mut l);
    assert!(
        matches!(&io[..], [IoAction::HandOver { .. }]),
        "the login's claim waits for the hand over: {io:?}"
    );
    let IoAction::HandOver { op, .. } = io[0] else {
        unreachable!()
    };
    l.handle(Answer::HandOver(op, Ok(vec![true])), now);
    let io = drain(&mut l);
    assert!(
        io.iter()
            .any(|a| matches!(a, IoAction::Claim { claim: 9, .. })),
        "{io:?}"
    );
}

#[test]
fn a_login_waits_for_an_arriving_player_then_is_refused_past_its_wait() {
    let (mut l, now) = ledger();
    l.begin_login(1, P, 9, false, now);
    let mut at = now;
    loop {
        let io = drain(&mut l);
        let claim = io.iter().find_map(|a| match a {
            IoAction::Claim { op, .. } => Some(*op),
            _ => None,
        });
        if let Some(op) = claim {
            l.handle(Answer::Claim(op, Ok(Claim::Arriving { region: R1 })), at);
        }
        if let Some((login, outcome)) = l.poll_login() {
            assert_eq!(login, 1);
            assert!(matches!(outcome, Err(LoginRefusal::Unavailable(_))));
            assert!(at >= now + l.timing().arrival_wait);
            break;
        }
        at += Duration::from_millis(100);
        l.handle_timeout(at);
        assert!(at < now + Duration::from_secs(60), "the login never ended");
    }
}

#[test]
fn a_lease_not_renewed_is_lost_before_it_can_expire() {
    let (mut l, now) = ledger();
    let due = now + Duration::from_secs(1);
    l.handle_timeout(due);
    let op = drain(&mut l)
        .into_iter()
        .find_map(|a| match a {
            IoAction::Renew { op, .. } => Some(op),
            _ => None,
        })
        .expect("renewed a third of the way");
    l.handle(Answer::Renew(op, Err("down".into())), due);
    l.tick(now + Duration::from_millis(2_700));
    assert!(l.take_lost().is_empty(), "not yet");
    l.tick(now + Duration::from_millis(2_800));
    assert_eq!(l.take_lost(), vec![R1], "STOP_MARGIN before the deadline");
    assert!(l.active().is_empty());
}

/// Receives one delivery of `record` into region 1 and answers its check with `fresh`.
fn receive(l: &mut Ledger<u32>, record: &HandoffRecord, fresh: bool, now: Instant) {
    l.handle_timeout(now + l.timing().receive_poll);
    let op = drain(l)
        .into_iter()
        .find_map(|a| match a {
            IoAction::Receive { op, region: R1, .. } => Some(op),
            _ => None,
        })
        .expect("region 1 polled");
    let inbound = Inbound {
        payload: crate::wire::encode_handoff(record),
        delivery: 77,
    };
    l.handle(Answer::Receive(op, Ok(vec![inbound])), now);
    let op = match &drain(l)[..] {
        [IoAction::Accepts { op, .. }] => *op,
        other => panic!("{other:?}"),
    };
    l.handle(Answer::Accepts(op, Ok(vec![fresh])), now);
}

#[test]
fn a_stale_handoff_is_acknowledged_and_not_applied() {
    let (mut l, now) = ledger();
    receive(&mut l, &record(10, R2, R1), false, now);
    assert!(l.take_arrivals().is_empty());
    assert!(matches!(
        &drain(&mut l)[..],
        [IoAction::Ack { region: R1, deliveries }] if deliveries == &[77]
    ));
    assert_eq!(l.stats().handoffs_stale, 1);
}

#[test]
fn an_arrival_is_acknowledged_once_applied_and_its_key_adopted() {
    let (mut l, now) = ledger();
    let r = record(10, R2, R1);
    receive(&mut l, &r, true, now);
    // Held long enough for the refresh below (no renewals in this test).
    l.hold(
        Lease {
            ttl: Duration::from_secs(60),
            ..lease(R1, now)
        },
        true,
    );
    l.advertised_at(now + Duration::from_secs(30));
    l.await_arrival(9, P, now);
    assert_eq!(l.take_arrivals(), vec![r]);
    // Deferred by its region: not acknowledged, its key kept alive.
    l.settle_arrivals(&|_| true, &|_| true, &|_| false, now);
    assert!(
        drain(&mut l)
            .iter()
            .all(|a| !matches!(a, IoAction::Ack { .. }))
    );
    l.handle_timeout(now + Duration::from_secs(6));
    assert!(drain(&mut l).iter().any(|a| matches!(
        a,
        IoAction::Refresh { in_flight, .. } if in_flight.len() == 1
    )));
    // Applied.
    let arrived = l.settle_arrivals(&|_| false, &|_| true, &|_| true, now);
    assert_eq!(arrived, vec![(P, R1)]);
    let io = drain(&mut l);
    assert!(
        io.iter().any(|a| matches!(a, IoAction::Ack { .. })),
        "{io:?}"
    );
    assert!(
        io.iter().any(|a| matches!(a, IoAction::Adopt { .. })),
        "{io:?}"
    );
    assert_eq!(drivers(&mut l), vec![DriverAction::JoinNow { session: 9 }]);
}

#[test]
fn a_node_whose_address_lapses_stops_stepping_before_others_may_take_its_players() {
    let (mut l, now) = ledger();
    // Leases renewed all along, but no advertisement gets through.
    let mut at = now;
    while at < now + Duration::from_secs(6) {
        at += Duration::from_millis(100);
        l.handle_timeout(at);
        for action in drain(&mut l) {
            match action {
                IoAction::Renew { op, lease } => {
                    let renewed = Lease {
                        sent_at: at,
                        ..lease
                    };
                    l.handle(Answer::Renew(op, Ok(Some(renewed))), at);
                }
                IoAction::Advertise { op, .. } => {
                    l.handle(Answer::Done(op, Err("down".into())), at)
                }
                IoAction::Receive { op, .. } => l.handle(Answer::Receive(op, Ok(vec![])), at),
                IoAction::Directory { op, .. } => l.handle(Answer::Directory(op, Ok(vec![])), at),
                _ => {}
            }
        }
        l.tick(at);
        if !l.take_lost().is_empty() {
            let deadline = l.live_until().expect("advertised at start");
            assert!(at + crate::STOP_MARGIN >= deadline, "not before it must");
            assert!(at < deadline, "stopped before its address lapsed");
            return;
        }
    }
    panic!("still stepping with its address lapsed");
}

/// A check of an arrival holds only for the holding that made it: a region lost and
/// taken again (the node paused past its lease) must check its mail again, or a player
/// who logged in elsewhere meanwhile would get a second avatar. Found by the simulator.
#[test]
fn an_arrival_checked_under_a_lost_holding_waits_for_a_new_check() {
    let (mut l, now) = ledger();
    let at = now + l.timing().receive_poll;
    l.handle_timeout(at);
    let op = drain(&mut l)
        .into_iter()
        .find_map(|a| match a {
            IoAction::Receive { op, region: R1, .. } => Some(op),
            _ => None,
        })
        .expect("region 1 polled");
    let inbound = Inbound {
        payload: crate::wire::encode_handoff(&record(10, R2, R1)),
        delivery: 77,
    };
    l.handle(Answer::Receive(op, Ok(vec![inbound])), at);
    let check = match &drain(&mut l)[..] {
        [IoAction::Accepts { op, .. }] => *op,
        other => panic!("{other:?}"),
    };
    // The lease lapses before the answer, and the region is taken again.
    let later = now + Duration::from_millis(2_800);
    l.tick(later);
    assert_eq!(l.take_lost(), vec![R1]);
    l.hold(
        Lease {
            epoch: 2,
            ..lease(R1, later)
        },
        true,
    );
    l.handle(Answer::Accepts(check, Ok(vec![true])), later);
    assert!(
        l.take_arrivals().is_empty(),
        "checked under epoch 1, applied under epoch 2"
    );
}
