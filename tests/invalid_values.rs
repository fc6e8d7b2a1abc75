//! NaN and infinities are refused from every source: inputs, teleports, logins,
//! handoffs and scripted spawns. The region keeps running with its state intact.

use tessera::regions::RegionError;
use tessera::regions::io::{
    EntityState, HandoffRecord, Join, JoinRefusal, PlayerInput, SavedPlayer, SessionEvent,
    Teleport, TickInput,
};
use tessera::shared::ids::{HandoffId, NetId, PlayerId, RegionId};
use tessera::shared::math::Vec2;

use crate::util::{join_at, quiet_config, region};

const BAD: [f32; 3] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];

#[test]
fn non_finite_inputs_and_teleports_are_rejected() {
    let (config, _) = quiet_config();
    let centre = config.world.regions[0].bounds.center();
    let mut region = region(config);
    let p = PlayerId(1);
    join_at(&mut region, p, centre);
    let avatar = NetId::of_player(p);
    let mut seq = 0;
    for bad in BAD {
        for move_m in [Vec2::new(bad, 0.0), Vec2::new(0.0, bad)] {
            seq += 1;
            let mut input = TickInput::default();
            input.inputs.push(PlayerInput {
                player: p,
                seq,
                move_m,
                attack: None,
            });
            input.teleports.push(Teleport {
                player: p,
                to: Vec2::new(bad, 1.0),
            });
            let out = region.step(input);
            assert_eq!(out.stats.inputs_non_finite, 1);
            assert_eq!(out.stats.teleports_refused, 1);
            assert_eq!(region.position_of(avatar), Some(centre));
        }
    }
}

#[test]
fn non_finite_saved_state_is_refused_at_login() {
    let (config, _) = quiet_config();
    let mut region = region(config);
    for (i, bad) in BAD.into_iter().enumerate() {
        let player = PlayerId(10 + i as u64);
        let mut input = TickInput::default();
        input.sessions.push(SessionEvent::Join(Join {
            player,
            saved: Some(SavedPlayer {
                position: Vec2::new(1.0, bad),
                health: 10.0,
            }),
        }));
        let out = region.step(input);
        assert_eq!(out.refused_joins, vec![(player, JoinRefusal::InvalidState)]);
    }
    assert_eq!(region.counts().players, 0);
}

#[test]
fn non_finite_handoffs_are_refused() {
    let (config, _) = quiet_config();
    let def = config.world.regions[0].clone();
    let mut region = region(config);
    for (i, bad) in BAD.into_iter().enumerate() {
        let mut state = EntityState {
            id: NetId::of_player(PlayerId(i as u64)),
            archetype: 0,
            player: Some(PlayerId(i as u64)),
            position: def.bounds.center(),
            velocity: Vec2::ZERO,
            health: 10.0,
            cooldown_ticks: 0,
            last_input_seq: 0,
        };
        for field in 0..3 {
            let mut s = state;
            match field {
                0 => s.position.x = bad,
                1 => s.velocity.y = bad,
                _ => s.health = bad,
            }
            let mut input = TickInput::default();
            input.handoffs.push(HandoffRecord {
                id: HandoffId(i as u64 * 10 + field),
                from: RegionId(2),
                to: def.id,
                tick: 1,
                entity: s,
            });
            let out = region.step(input);
            assert_eq!(out.stats.handoffs_refused, 1, "field {field} = {bad}");
        }
        state.position = Vec2::new(bad, bad);
        assert!(!state.position.is_finite());
    }
    assert_eq!(region.counts().players, 0);
}

#[test]
fn non_finite_spawn_positions_are_errors() {
    let (config, statue) = quiet_config();
    let mut region = region(config);
    for bad in BAD {
        let err = region.spawn_npc(statue, Vec2::new(bad, 3.0)).unwrap_err();
        assert!(matches!(err, RegionError::InvalidPosition { .. }), "{err}");
    }
    let err = region.spawn_npc(9_999, Vec2::new(3.0, 3.0)).unwrap_err();
    assert!(matches!(err, RegionError::UnknownArchetype { .. }), "{err}");
}

#[test]
fn out_of_range_player_ids_are_refused_without_harm() {
    let (config, _) = quiet_config();
    let centre = config.world.regions[0].bounds.center();
    let mut region = region(config);
    // u64::MAX once overflowed the interest stagger; a top-bit id aliases PlayerId(5)'s
    // avatar id.
    for bad in [PlayerId(u64::MAX), PlayerId((1 << 63) | 5)] {
        let mut input = TickInput::default();
        input.sessions.push(SessionEvent::Join(Join {
            player: bad,
            saved: None,
        }));
        let out = region.step(input);
        assert_eq!(out.refused_joins, vec![(bad, JoinRefusal::InvalidPlayer)]);
    }
    join_at(&mut region, PlayerId(5), centre);
    for _ in 0..8 {
        region.step(TickInput::default());
    }
    assert_eq!(region.counts().players, 1);
}

#[test]
fn forged_handoffs_are_refused_and_health_is_capped() {
    let (config, statue) = quiet_config();
    let def = config.world.regions[0].clone();
    let max_health = config.balance.archetypes[config.balance.player_archetype].max_health;
    let mut region = region(config);
    let player = PlayerId(9);
    let honest = EntityState {
        id: NetId::of_player(player),
        archetype: 0,
        player: Some(player),
        position: def.bounds.center(),
        velocity: Vec2::ZERO,
        health: 10.0,
        cooldown_ticks: 0,
        last_input_seq: 0,
    };
    let forgeries = [
        EntityState {
            id: NetId::mint(def.id, 3).unwrap(),
            ..honest
        }, // a minted id
        EntityState {
            archetype: statue,
            ..honest
        }, // not a player archetype
        EntityState {
            player: None,
            ..honest
        }, // not a player
        EntityState {
            player: Some(PlayerId(u64::MAX)),
            ..honest
        }, // invalid player
    ];
    for (i, entity) in forgeries.into_iter().enumerate() {
        let mut input = TickInput::default();
        input.handoffs.push(HandoffRecord {
            id: HandoffId(500 + i as u64),
            from: RegionId(2),
            to: def.id,
            tick: 1,
            entity,
        });
        let out = region.step(input);
        assert_eq!(out.stats.handoffs_refused, 1, "forgery {i} accepted");
    }
    let mut input = TickInput::default();
    input.handoffs.push(HandoffRecord {
        id: HandoffId(600),
        from: RegionId(2),
        to: def.id,
        tick: 1,
        entity: EntityState {
            health: 1e30,
            ..honest
        },
    });
    assert_eq!(region.step(input).stats.handoffs_applied, 1);
    assert_eq!(region.health_of(NetId::of_player(player)), Some(max_health));
}
