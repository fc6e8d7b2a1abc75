use std::sync::Arc;

use tessera_shared::config::Config;
use tessera_shared::ids::PlayerId;
use tessera_shared::protocol::messages::{ControlS2c, EventS2c};
use tokio::sync::oneshot;

use super::*;

/// A session's control queue reserves room for 32 items at a time (tokio's block), per
/// session: its items stay as small as a state's `Bytes` and a tag.
#[test]
fn outbox_items_are_small() {
    assert!(
        std::mem::size_of::<Outgoing>() <= 40,
        "{}",
        std::mem::size_of::<Outgoing>()
    );
}

/// A driver at 1 Hz (so the linger is [`RESUME_LINGER`] in ticks) and a logged-in
/// player on session 1.
fn driver_with_player(player: PlayerId) -> (Driver, NodeHandle, SessionInbox) {
    let mut config = Config::embedded_default();
    config.world.tick_hz = 1;
    let (mut driver, node) = Driver::new(Arc::new(config), 1).unwrap();
    let (outbox, outbox_rx) = session_outbox();
    let (reply, mut joined) = oneshot::channel();
    node.try_send(Command::Join {
        player,
        name: String::new(),
        session: 1,
        outbox,
        saved: None,
        arriving: None,
        start: None,
        reply,
    })
    .unwrap();
    driver.tick();
    assert!(matches!(joined.try_recv(), Ok(Ok(_))));
    assert_eq!(driver.local().counts().0, 1);
    (driver, node, outbox_rx)
}

const LINGER_TICKS: u64 = crate::auth::TICKET_TTL_S;

#[test]
fn a_detached_avatar_waits_for_its_resume_then_leaves() {
    let player = PlayerId(7);
    let (mut driver, node, _outbox) = driver_with_player(player);
    node.try_send(Command::Detach { player, session: 1 })
        .unwrap();
    for _ in 0..LINGER_TICKS - 1 {
        driver.tick();
    }
    assert_eq!(driver.local().counts().0, 1, "still waiting for a resume");
    driver.tick();
    driver.tick();
    assert_eq!(driver.local().counts().0, 0, "gone after the linger");
    assert_eq!(driver.stats.counters.resume_expired, 1);
}

#[test]
fn departed_players_are_saved_and_a_logout_waits_for_its_save() {
    let player = PlayerId(7);
    let (mut driver, node, _outbox) = driver_with_player(player);
    let (saves, mut queue) = mpsc::channel(4);
    driver.save_players_to(saves);
    // A dropped connection whose client never comes back: saved, nobody waits.
    node.try_send(Command::Detach { player, session: 1 })
        .unwrap();
    for _ in 0..LINGER_TICKS + 2 {
        driver.tick();
    }
    // Its departure is the last save of it (periodic ones may come before).
    let mut last = None;
    while let Ok(request) = queue.try_recv() {
        last = Some(request);
    }
    let saved = last.expect("the expired avatar's state is saved");
    assert_eq!(saved.player, player);
    assert!(saved.done.is_none());
    assert!(saved.state.health > 0.0);
    assert_eq!(driver.local().counts().0, 0, "and it left the world");
    // A logout: its reply rides with the save, answered by whoever writes it.
    let other = PlayerId(8);
    let (outbox, _states) = session_outbox();
    let (reply, _joined) = oneshot::channel();
    node.try_send(Command::Join {
        player: other,
        name: String::new(),
        session: 2,
        outbox,
        saved: None,
        arriving: None,
        start: None,
        reply,
    })
    .unwrap();
    driver.tick();
    let (done, mut answer) = oneshot::channel();
    node.try_send(Command::Leave {
        player: other,
        session: 2,
        reply: Some(done),
    })
    .unwrap();
    driver.tick();
    let save = std::iter::from_fn(|| queue.try_recv().ok())
        .find(|r| r.done.is_some())
        .expect("the logout's state is saved");
    assert_eq!(save.player, other);
    assert!(
        answer.try_recv().is_err(),
        "not answered before the save is durable"
    );
    save.done.expect("the logout waits").send(Ok(())).unwrap();
    assert_eq!(answer.try_recv().unwrap(), Ok(()));
}

#[test]
fn every_player_is_saved_once_per_interval() {
    let player = PlayerId(7);
    let (mut driver, _node, _outbox) = driver_with_player(player);
    let (saves, mut queue) = mpsc::channel(64);
    driver.save_players_to(saves);
    let interval = PLAYER_SAVE_INTERVAL.as_secs(); // ticks at 1 Hz
    for _ in 0..interval * 3 {
        driver.tick();
    }
    let mut saved = 0;
    while let Ok(request) = queue.try_recv() {
        assert_eq!(request.player, player);
        saved += 1;
    }
    assert_eq!(saved, 3);
}

/// The crash test's flake: a client gave up on a login (its connect timed out) while
/// the node still waited on the player's location; its next attempt logged in on a new
/// session. The abandoned login, applied late, took the player over and kicked the
/// live session with `LoggedInElsewhere`.
#[test]
fn a_login_whose_client_left_does_not_take_the_player_over() {
    let player = PlayerId(7);
    let (mut driver, node, mut live) = driver_with_player(player);
    let (outbox, _states) = session_outbox();
    let (reply, joined) = oneshot::channel();
    drop(joined); // The session gave up and ended.
    node.try_send(Command::Join {
        player,
        name: String::new(),
        session: 2,
        outbox,
        saved: None,
        arriving: None,
        start: None,
        reply,
    })
    .unwrap();
    driver.tick();
    driver.tick();
    while let Some(out) = live.try_recv() {
        assert!(
            !matches!(out, Outgoing::Kick(_)),
            "the live session was kicked by an abandoned login"
        );
    }
    assert_eq!(driver.clients[&player].session, 1);
    assert_eq!(driver.stats.counters.logins_abandoned, 1);
    assert_eq!(driver.local().counts().0, 1);
}

#[test]
fn a_resume_within_the_linger_keeps_the_avatar() {
    let player = PlayerId(7);
    let (mut driver, node, _outbox) = driver_with_player(player);
    node.try_send(Command::Detach { player, session: 1 })
        .unwrap();
    driver.tick();
    let (outbox, mut states) = session_outbox();
    let (reply, _joined) = oneshot::channel();
    node.try_send(Command::Join {
        player,
        name: String::new(),
        session: 2,
        outbox,
        saved: None,
        arriving: None,
        start: None,
        reply,
    })
    .unwrap();
    for _ in 0..LINGER_TICKS + 2 {
        driver.tick();
    }
    assert_eq!(driver.local().counts().0, 1);
    assert_eq!(
        (
            driver.stats.counters.resumed,
            driver.stats.counters.resume_expired
        ),
        (1, 0)
    );
    // The resumed session gets states again; a stale detach of it is ignored.
    assert!(matches!(states.try_recv(), Some(Outgoing::Datagram(_))));
    node.try_send(Command::Detach { player, session: 1 })
        .unwrap();
    for _ in 0..LINGER_TICKS + 2 {
        driver.tick();
    }
    assert_eq!(driver.local().counts().0, 1);
}

/// Two logins of one player in one tick (two devices, both granted on this node): the
/// second takes the first over before either joins. Before, both joins reached the region,
/// which refused the second as "already in the world", and the refusal (kept per player)
/// refused both: an avatar nobody held. Found by the cluster simulator.
#[test]
fn a_second_login_in_the_same_tick_takes_the_first_over_before_it_joins() {
    let mut config = Config::embedded_default();
    config.world.tick_hz = 1;
    let (mut driver, node) = Driver::new(Arc::new(config), 1).unwrap();
    let player = PlayerId(9);
    let mut replies = Vec::new();
    let mut outboxes = Vec::new();
    for session in [1, 2] {
        let (outbox, states) = session_outbox();
        let (reply, joined) = oneshot::channel();
        node.try_send(Command::Join {
            player,
            name: String::new(),
            session,
            outbox,
            saved: None,
            arriving: None,
            start: None,
            reply,
        })
        .unwrap();
        replies.push(joined);
        outboxes.push(states);
    }
    driver.tick();
    assert!(
        matches!(replies[0].try_recv(), Ok(Err(_))),
        "the first is refused"
    );
    assert!(
        matches!(replies[1].try_recv(), Ok(Ok(_))),
        "the second joins"
    );
    assert_eq!(driver.local().counts().0, 1, "one avatar");
    assert!(driver.avatars_without_views().is_empty());
    assert!(driver.views_without_avatars().is_empty());
    driver.tick();
    assert!(matches!(
        outboxes[1].try_recv(),
        Some(Outgoing::Datagram(_))
    ));
}

/// The newest state in `outbox`.
fn newest_state(outbox: &mut SessionInbox) -> tessera_shared::protocol::messages::StateS2c {
    let mut newest = None;
    while let Some(out) = outbox.try_recv() {
        if let Outgoing::Datagram(bytes) = out {
            newest = Some(tessera_shared::protocol::codec::decode_datagram(&bytes).unwrap());
        }
    }
    newest.expect("a state")
}

fn input_acking(ack_tick: u64, seq: u32) -> tessera_shared::protocol::messages::InputC2s {
    use tessera_shared::protocol::messages::{InputC2s, InputFrame};
    InputC2s {
        seq,
        ack_tick,
        frames: vec![InputFrame {
            move_q: [0, 0],
            attack: None,
        }],
    }
}

/// PROTOCOL.md section 3: ticks are per node. An ack of a tick this node has not reached
/// (a client keeping another node's tick across a redirect) is ignored: it must not
/// discard the baselines, or every later state would be a keyframe.
#[test]
fn an_ack_of_a_tick_the_node_has_not_reached_is_ignored() {
    let player = PlayerId(7);
    let (mut driver, node, mut outbox) = driver_with_player(player);
    driver.tick();
    let first = newest_state(&mut outbox);
    let input = |ack, seq| Command::Input {
        player,
        session: 1,
        input: input_acking(ack, seq),
    };
    node.try_send(input(first.tick, 1)).unwrap();
    driver.tick();
    let second = newest_state(&mut outbox);
    assert_eq!(second.baseline_tick, first.tick, "a delta against the ack");
    node.try_send(input(second.tick + 1_000_000, 2)).unwrap();
    driver.tick();
    node.try_send(input(second.tick, 3)).unwrap();
    driver.tick();
    let fourth = newest_state(&mut outbox);
    assert_eq!(
        fourth.baseline_tick, second.tick,
        "still deltas after an ack from another node"
    );
}

/// Joins `player` on `session` (at `at`, or the spawn point) and returns its outbox.
fn join_at(
    driver: &mut Driver,
    node: &NodeHandle,
    player: PlayerId,
    session: u64,
    at: Option<tessera_shared::math::Vec2>,
) -> SessionInbox {
    let (outbox, outbox_rx) = session_outbox();
    let (reply, mut joined) = oneshot::channel();
    node.try_send(Command::Join {
        player,
        name: String::new(),
        session,
        outbox,
        saved: at.map(|position| tessera_regions::io::SavedPlayer {
            position,
            health: 100.0,
        }),
        arriving: None,
        start: None,
        reply,
    })
    .unwrap();
    driver.tick();
    assert!(matches!(joined.try_recv(), Ok(Ok(_))));
    outbox_rx
}

/// The events in `outbox`, states skipped.
fn events(outbox: &mut SessionInbox) -> Vec<EventS2c> {
    std::iter::from_fn(|| outbox.try_recv())
        .filter_map(|out| match out {
            Outgoing::Control(message) => match *message {
                ControlS2c::Event(event) => Some(event),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// PROTOCOL.md section 6 rule 5: an NPC's death goes to its killer and to every client
/// whose view showed it, once each and after the tick's damage, and to nobody else.
/// Before, a bystander only saw the NPC vanish from its states at health above 0.
#[test]
fn a_client_next_to_an_npc_another_player_kills_receives_the_death() {
    let mut config = Config::embedded_default();
    config.world.tick_hz = 1;
    // One hit kills, from anywhere near.
    let adventurer = &mut config.balance.archetypes[config.balance.player_archetype];
    adventurer.attack = 1_000_000.0;
    adventurer.attack_range_m = 100.0;
    let boar = config
        .balance
        .archetypes
        .iter()
        .position(|a| a.name == "boar")
        .expect("the shipped balance has boars");
    let region = config.world.regions[0].id;
    let spawn = config.world.regions[0].spawn_point;
    let (mut driver, node) = Driver::new(Arc::new(config), 1).unwrap();
    let (killer, bystander, far) = (PlayerId(1), PlayerId(2), PlayerId(3));
    let mut killer_out = join_at(&mut driver, &node, killer, 1, None);
    let mut bystander_out = join_at(&mut driver, &node, bystander, 2, None);
    let far_at = spawn + tessera_shared::math::Vec2::new(300.0, 300.0);
    let mut far_out = join_at(&mut driver, &node, far, 3, Some(far_at));
    let npc = driver
        .local_mut()
        .region_mut(region)
        .unwrap()
        .spawn_npc(boar as u16, spawn)
        .unwrap();
    // Until every observer's membership has been refreshed (staggered over 4 ticks).
    for _ in 0..8 {
        driver.tick();
    }
    let shows = |driver: &Driver, p: PlayerId| {
        driver.clients[&p]
            .encoder
            .view()
            .iter()
            .any(|e| e.id == npc)
    };
    assert!(shows(&driver, bystander), "the bystander sees the boar");
    assert!(!shows(&driver, far), "the far player does not");
    for out in [&mut killer_out, &mut bystander_out, &mut far_out] {
        events(out);
    }
    node.try_send(Command::Input {
        player: killer,
        session: 1,
        input: tessera_shared::protocol::messages::InputC2s {
            seq: 1,
            ack_tick: 0,
            frames: vec![tessera_shared::protocol::messages::InputFrame {
                move_q: [0, 0],
                attack: Some(npc),
            }],
        },
    })
    .unwrap();
    driver.tick();
    assert!(
        driver
            .local()
            .region(region)
            .unwrap()
            .health_of(npc)
            .is_none(),
        "the boar died"
    );
    let death = EventS2c::Death { entity: npc };
    let killer_events = events(&mut killer_out);
    let hit = killer_events
        .iter()
        .position(|e| matches!(e, EventS2c::Damage { target, .. } if *target == npc));
    let died = killer_events.iter().position(|e| *e == death);
    assert!(
        hit.is_some() && hit < died,
        "the hit comes before the death: {killer_events:?}"
    );
    assert_eq!(
        killer_events.iter().filter(|e| **e == death).count(),
        1,
        "the killer hears of it once: {killer_events:?}"
    );
    assert_eq!(killer_events.last(), Some(&death));
    assert_eq!(
        events(&mut bystander_out),
        std::slice::from_ref(&death),
        "the bystander too"
    );
    assert_eq!(events(&mut far_out), [], "nobody who did not see it");
    assert!(!shows(&driver, bystander), "and it left the views");
    assert!(driver.clients.values().all(|v| v.deaths.is_empty()));
}
