//! Interest management: hysteresis between the enter and leave radii, and the diffs.

use tessera::regions::io::{Teleport, TickInput, TickOutput};
use tessera::shared::ids::{NetId, PlayerId};
use tessera::shared::math::Vec2;

use crate::util::{join_at, quiet_config, region};

const P: PlayerId = PlayerId(1);

fn diff_of(out: &TickOutput) -> (Vec<NetId>, Vec<NetId>, Vec<NetId>) {
    let diff = out
        .interest
        .observers
        .iter()
        .find(|d| d.player == P)
        .expect("the player observes");
    let ids = |v: tessera::regions::io::Views| v.map(|e| e.id).collect();
    (
        ids(out.interest.entered(diff)),
        ids(out.interest.changed(diff)),
        out.interest.left_ids(diff).to_vec(),
    )
}

#[test]
fn visibility_has_hysteresis_between_enter_and_leave_radius() {
    let (config, statue) = quiet_config();
    let interest = config.world.interest;
    let (enter, leave) = (interest.enter_radius_m, interest.leave_radius_m);
    assert!(
        leave > enter + 2.0,
        "the shipped config needs a hysteresis band"
    );
    let centre = config.world.regions[0].bounds.center();
    let mut region = region(config);
    let npc = region.spawn_npc(statue, centre).unwrap();
    let teleport_to = |region: &mut tessera::regions::Region, distance: f32| {
        let mut input = TickInput::default();
        input.teleports.push(Teleport {
            player: P,
            to: centre + Vec2::new(distance, 0.0),
        });
        diff_of(region.step(input))
    };

    // Joining inside the enter radius: the statue enters.
    join_at(&mut region, P, centre + Vec2::new(enter - 1.0, 0.0));
    let (entered, _, _) = diff_of(region.output());
    assert_eq!(entered, vec![npc]);

    // Inside the band (enter < d < leave): still visible, nothing left, nothing changed.
    let (entered, changed, left) = teleport_to(&mut region, (enter + leave) / 2.0);
    assert!(entered.is_empty() && left.is_empty() && changed.is_empty());

    // Past the leave radius: it leaves.
    let (_, _, left) = teleport_to(&mut region, leave + 1.0);
    assert_eq!(left, vec![npc]);

    // Back into the band: not visible again (it must come within the enter radius).
    let (entered, _, _) = teleport_to(&mut region, (enter + leave) / 2.0);
    assert!(entered.is_empty());

    // Within the enter radius: enters again.
    let (entered, _, _) = teleport_to(&mut region, enter - 1.0);
    assert_eq!(entered, vec![npc]);
}

#[test]
fn unchanged_entities_cost_nothing_and_changes_are_reported() {
    let (config, statue) = quiet_config();
    let centre = config.world.regions[0].bounds.center();
    let mut region = region(config);
    let npc = region
        .spawn_npc(statue, centre + Vec2::new(2.0, 0.0))
        .unwrap();
    join_at(&mut region, P, centre);
    let (_, changed, _) = diff_of(region.step(TickInput::default()));
    assert!(changed.is_empty(), "a still statue must not be resent");
    // Hit it: its health changes, so it is reported as changed.
    let mut input = TickInput::default();
    input.inputs.push(tessera::regions::io::PlayerInput {
        player: P,
        seq: 1,
        move_m: Vec2::ZERO,
        attack: Some(npc),
    });
    let out = region.step(input);
    assert!(
        out.events.iter().any(|e| match e {
            tessera::regions::io::GameEvent::Damage { target, .. } => *target == npc,
            _ => false,
        }),
        "the attack should land: {:?}",
        out.stats
    );
    let (_, changed, _) = diff_of(out);
    assert_eq!(changed, vec![npc]);
}

#[test]
fn the_visible_set_is_capped_to_the_nearest() {
    let (mut config, statue) = quiet_config();
    config.world.interest.visible_entities_max = 10;
    let centre = config.world.regions[0].bounds.center();
    let mut region = region(config);
    let mut near = Vec::new();
    for i in 0..40 {
        let id = region
            .spawn_npc(statue, centre + Vec2::new(1.0 + i as f32, 0.5))
            .unwrap();
        if i < 10 {
            near.push(id);
        }
    }
    join_at(&mut region, P, centre);
    let (mut entered, _, _) = diff_of(region.output());
    entered.sort();
    near.sort();
    assert_eq!(entered, near);
}

#[test]
fn a_member_that_leaves_the_region_is_reported_at_once_at_any_refresh_phase() {
    use tessera::regions::interest::INTEREST_REFRESH_TICKS;
    let (config, _) = quiet_config();
    let centre = config.world.regions[0].bounds.center();
    let mut region = region(config);
    join_at(&mut region, P, centre);
    let other = PlayerId(2);
    // Try the departure at every phase of the observer's refresh cycle.
    for _ in 0..INTEREST_REFRESH_TICKS {
        join_at(&mut region, other, centre + Vec2::new(5.0, 0.0));
        for _ in 0..INTEREST_REFRESH_TICKS {
            region.step(TickInput::default());
        }
        let mut input = TickInput::default();
        input
            .sessions
            .push(tessera::regions::io::SessionEvent::Leave(other));
        let out = region.step(input);
        let (_, _, left) = diff_of(out);
        assert_eq!(left, vec![NetId::of_player(other)], "tick {}", out.tick);
    }
}

#[test]
fn every_diff_is_sorted_by_id_as_consumers_merge_it() {
    // The default world's NPCs wander near ten walking players: entries, changes and
    // departures every tick, at every refresh phase.
    let config = tessera::shared::config::Config::embedded_default();
    let centre = config.world.regions[0].spawn_point;
    let mut region = region(config);
    for p in 1..=10u64 {
        join_at(
            &mut region,
            PlayerId(p),
            centre + Vec2::new(p as f32 * 7.0, 0.0),
        );
    }
    let (mut entered_seen, mut changed_seen, mut left_seen) = (0, 0, 0);
    for tick in 0..200u32 {
        let mut input = TickInput::default();
        for p in 1..=10u64 {
            let dir = if (tick / 50 + p as u32).is_multiple_of(2) {
                0.3
            } else {
                -0.3
            };
            input.inputs.push(tessera::regions::io::PlayerInput {
                player: PlayerId(p),
                seq: tick + 10,
                move_m: Vec2::new(dir, 0.1),
                attack: None,
            });
        }
        let out = region.step(input);
        for diff in &out.interest.observers {
            let sorted = |ids: &[NetId]| ids.windows(2).all(|w| w[0] < w[1]);
            let ids = |v: tessera::regions::io::Views| -> Vec<NetId> { v.map(|e| e.id).collect() };
            let (entered, changed) = (
                ids(out.interest.entered(diff)),
                ids(out.interest.changed(diff)),
            );
            let left = out.interest.left_ids(diff);
            assert!(sorted(&entered), "entered not sorted at tick {tick}");
            assert!(sorted(&changed), "changed not sorted at tick {tick}");
            assert!(sorted(left), "left not sorted at tick {tick}");
            entered_seen += entered.len();
            changed_seen += changed.len();
            left_seen += left.len();
        }
    }
    assert!(
        entered_seen > 0 && changed_seen > 0 && left_seen > 0,
        "the scenario must exercise all three lists: {entered_seen} {changed_seen} {left_seen}"
    );
}
