//! Authoritative movement: no accepted move exceeds the speed cap; server-side
//! displacements are exempt and cause no false positive; replays are ignored.

use proptest::prelude::*;
use tessera::regions::inputs::move_cap_m;
use tessera::regions::io::{PlayerInput, Teleport, TickInput};
use tessera::shared::ids::{NetId, PlayerId};
use tessera::shared::math::Vec2;

use crate::util::{join_at, quiet_config, region};

const P: PlayerId = PlayerId(1);

#[derive(Clone, Debug)]
enum Step {
    /// Inputs arriving in one tick: (dx, dy) in metres.
    Inputs(Vec<(f32, f32)>),
    /// A server-side teleport by this offset from the region centre.
    Teleport(f32, f32),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => prop::collection::vec((-5.0f32..5.0, -5.0f32..5.0), 0..4).prop_map(Step::Inputs),
        1 => (-200.0f32..200.0, -200.0f32..200.0).prop_map(|(x, y)| Step::Teleport(x, y)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn no_accepted_move_exceeds_the_cap(steps in prop::collection::vec(step(), 1..40)) {
        let (config, _) = quiet_config();
        let arch = &config.balance.archetypes[config.balance.player_archetype];
        let dt = 1.0 / config.world.tick_hz as f32;
        let cap = move_cap_m(arch.speed_mps, dt, config.balance.movement.speed_tolerance);
        let centre = config.world.regions[0].bounds.center();
        let mut region = region(config);
        join_at(&mut region, P, centre);
        let avatar = NetId::of_player(P);
        let mut seq = 0;
        for step in steps {
            let before = region.position_of(avatar).unwrap();
            let mut input = TickInput::default();
            match step {
                Step::Inputs(moves) => {
                    let total: f32 = moves.iter().map(|&(x, y)| Vec2::new(x, y).length()).sum();
                    for (x, y) in moves {
                        seq += 1;
                        input.inputs.push(PlayerInput { player: P, seq, move_m: Vec2::new(x, y), attack: None });
                    }
                    let clamped = region.step(input).stats.moves_clamped;
                    let moved = region.position_of(avatar).unwrap() - before;
                    // Slack: one part in 10^5 of the cap, plus the f32 rounding of two
                    // positions near this one (an ulp at 512 m is 61 micrometres).
                    let ulp = before.x.abs().max(before.y.abs()) * f32::EPSILON;
                    prop_assert!(moved.length() <= cap * (1.0 + 1e-5) + 2.0 * ulp,
                        "moved {} > cap {}", moved.length(), cap);
                    // Honest moves (within the cap in total) are never clamped.
                    if total <= cap * 0.999 {
                        prop_assert_eq!(clamped, 0);
                    }
                }
                Step::Teleport(x, y) => {
                    let to = centre + Vec2::new(x, y);
                    input.teleports.push(Teleport { player: P, to });
                    // An honest move in the same tick as the teleport is still honest.
                    seq += 1;
                    input.inputs.push(PlayerInput { player: P, seq, move_m: Vec2::new(cap * 0.5, 0.0), attack: None });
                    let stats = region.step(input).stats;
                    prop_assert_eq!(stats.teleports_refused, 0);
                    prop_assert_eq!(stats.moves_clamped, 0, "teleport caused a false positive");
                    let at = region.position_of(avatar).unwrap();
                    prop_assert!((at - (to + Vec2::new(cap * 0.5, 0.0))).length() < 1e-3);
                }
            }
        }
    }
}

#[test]
fn replayed_and_old_sequence_numbers_are_ignored() {
    let (config, _) = quiet_config();
    let centre = config.world.regions[0].bounds.center();
    let mut region = region(config);
    join_at(&mut region, P, centre);
    let avatar = NetId::of_player(P);
    let input = |seq, dx| PlayerInput {
        player: P,
        seq,
        move_m: Vec2::new(dx, 0.0),
        attack: None,
    };
    let mut tick = TickInput::default();
    tick.inputs
        .extend([input(5, 0.1), input(5, 0.1), input(4, 0.1)]);
    let out = region.step(tick);
    assert_eq!(out.stats.inputs_applied, 1);
    assert_eq!(out.stats.inputs_stale, 2);
    let x = region.position_of(avatar).unwrap().x;
    assert!((x - (centre.x + 0.1)).abs() < 1e-4);

    let mut tick = TickInput::default();
    tick.inputs.push(input(5, 0.1)); // Replayed in a later tick.
    let out = region.step(tick);
    assert_eq!(out.stats.inputs_stale, 1);
    assert_eq!(region.position_of(avatar).unwrap().x, x);
}

#[test]
fn inputs_over_the_per_tick_limit_are_dropped_and_counted() {
    let (mut config, _) = quiet_config();
    config.world.limits.inputs_per_tick_max = 3;
    let centre = config.world.regions[0].bounds.center();
    let mut region = region(config);
    join_at(&mut region, P, centre);
    let mut tick = TickInput::default();
    for seq in 1..=10 {
        tick.inputs.push(PlayerInput {
            player: P,
            seq,
            move_m: Vec2::ZERO,
            attack: None,
        });
    }
    let out = region.step(tick);
    assert_eq!(out.stats.inputs_applied, 3);
    assert_eq!(out.stats.inputs_over_limit, 7);
}
