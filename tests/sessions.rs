//! Logins and logouts: applied in order within a tick, never lost, bounded per tick.

use tessera::regions::io::{
    Join, SESSION_EVENTS_PER_TICK_MAX, SavedPlayer, SessionEvent, TickInput,
};
use tessera::shared::ids::{NetId, PlayerId};
use tessera::shared::math::Vec2;

use crate::util::{join_at, quiet_config, region};

fn join(player: PlayerId, saved: Option<SavedPlayer>) -> SessionEvent {
    SessionEvent::Join(Join { player, saved })
}

#[test]
fn join_then_leave_in_one_tick_leaves_no_ghost() {
    let (config, _) = quiet_config();
    let centre = config.world.regions[0].bounds.center();
    let mut region = region(config);
    let p = PlayerId(1);
    let mut input = TickInput::default();
    let saved = SavedPlayer {
        position: centre,
        health: 42.0,
    };
    input
        .sessions
        .extend([join(p, Some(saved)), SessionEvent::Leave(p)]);
    let out = region.step(input);
    assert_eq!(out.departed, vec![(p, saved)]);
    assert_eq!(region.counts().players, 0);
    assert_eq!(region.position_of(NetId::of_player(p)), None);
}

#[test]
fn leave_then_join_in_one_tick_is_a_reconnect() {
    let (config, _) = quiet_config();
    let centre = config.world.regions[0].bounds.center();
    let mut region = region(config);
    let p = PlayerId(1);
    join_at(&mut region, p, centre);
    let mut input = TickInput::default();
    input
        .sessions
        .extend([SessionEvent::Leave(p), join(p, None)]);
    let out = region.step(input);
    assert_eq!(out.departed.len(), 1);
    assert!(out.refused_joins.is_empty());
    assert_eq!(region.counts().players, 1);
}

#[test]
fn a_logout_for_a_player_not_here_is_reported() {
    let (config, _) = quiet_config();
    let mut region = region(config);
    let mut input = TickInput::default();
    input.sessions.push(SessionEvent::Leave(PlayerId(77)));
    assert_eq!(region.step(input).leaves_not_found, vec![PlayerId(77)]);
}

#[test]
fn session_events_over_the_limit_wait_for_the_next_tick() {
    let (mut config, _) = quiet_config();
    config.world.limits.players_per_region_max = 10_000;
    let mut region = region(config);
    let n = SESSION_EVENTS_PER_TICK_MAX + 10;
    let mut input = TickInput::default();
    input
        .sessions
        .extend((0..n as u64).map(|i| join(PlayerId(i + 1), None)));
    let out = region.step(input);
    assert_eq!(out.deferred_sessions.len(), 10);
    let deferred = out.deferred_sessions.clone();
    assert_eq!(region.counts().players, SESSION_EVENTS_PER_TICK_MAX);
    region.step(TickInput {
        sessions: deferred,
        ..TickInput::default()
    });
    assert_eq!(region.counts().players, n);
}

#[test]
fn a_player_saved_dead_comes_back_at_the_spawn_point() {
    let (config, _) = quiet_config();
    let def = config.world.regions[0].clone();
    let max_health = config.balance.archetypes[config.balance.player_archetype].max_health;
    let mut region = region(config);
    let p = PlayerId(3);
    let mut input = TickInput::default();
    let corner = def.bounds.min + Vec2::new(5.0, 5.0);
    input.sessions.push(join(
        p,
        Some(SavedPlayer {
            position: corner,
            health: 0.0,
        }),
    ));
    region.step(input);
    assert_eq!(
        region.position_of(NetId::of_player(p)),
        Some(def.spawn_point)
    );
    assert_eq!(region.health_of(NetId::of_player(p)), Some(max_health));
}
