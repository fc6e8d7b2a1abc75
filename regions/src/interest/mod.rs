//! Interest management: what each player sees, and what changed in it this tick.
//!
//! An entity becomes visible to an observer when it comes within `enter_radius_m`, and
//! stays visible until it is farther than `leave_radius_m` (the hysteresis band stops
//! entities at the edge from flickering in and out). When more than
//! `visible_entities_max` qualify, the nearest are kept: the grid is walked in rings of
//! cells outward from the observer and the walk stops one ring after the cap is reached,
//! so "nearest" is exact to within about one cell width and a dense crowd costs no more
//! than a sparse one.
//!
//! Output per observer: entered (full view), changed (visible, position or health changed
//! since the last tick), left (ids). Unchanged visible entities cost nothing.

use bevy_ecs::prelude::*;
use tessera_shared::ids::NetId;
use tessera_shared::math::Vec2;

use crate::components::*;
use crate::grid::{GridItem, SpatialIndex};
use crate::io::{EntityView, ObserverDiff, TickOutput};
use crate::plugin::RegionPlugin;
use crate::resources::SimConfig;

/// Systems of this feature; last in the tick.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct InterestSystems;

/// Visibility per observer.
pub struct InterestPlugin;

/// An observer's visible set, sorted by id. At most `visible_entities_max` long.
#[derive(Component, Clone, Debug, Default)]
pub struct Observer {
    visible: Vec<NetId>,
}

impl Observer {
    /// The ids currently visible, sorted.
    pub fn visible(&self) -> &[NetId] {
        &self.visible
    }
}

/// Scratch space reused across observers and ticks.
#[derive(Default)]
pub struct InterestScratch {
    /// (distance squared, item) of this observer's candidates.
    candidates: Vec<(f32, Vec2, GridItem)>,
    next_visible: Vec<NetId>,
    changed: Vec<EntityView>,
}

impl RegionPlugin for InterestPlugin {
    fn build(&self, _world: &mut World, schedule: &mut Schedule) {
        schedule.add_systems(update_interest.in_set(InterestSystems));
    }
}

/// Recomputes every observer's visible set and writes the diffs to the tick output.
pub fn update_interest(
    config: Res<SimConfig>,
    index: Res<SpatialIndex>,
    mut output: ResMut<TickOutput>,
    mut scratch: Local<InterestScratch>,
    mut observers: Query<(&Identity, &Position, &Player, &mut Observer)>,
) {
    let interest = config.0.world.interest;
    let cap = interest.visible_entities_max as usize;
    let InterestScratch {
        candidates,
        next_visible,
        changed,
    } = &mut *scratch;
    let out = &mut output.interest;
    for (identity, position, player, mut observer) in &mut observers {
        collect_candidates(
            &index,
            identity.id,
            position.0,
            &observer,
            interest,
            candidates,
        );
        if candidates.len() > cap {
            candidates
                .select_nth_unstable_by(cap, |a, b| a.0.total_cmp(&b.0).then(a.2.id.cmp(&b.2.id)));
            candidates.truncate(cap);
        }
        candidates.sort_unstable_by_key(|c| c.2.id);

        // Merge the old and new sorted sets.
        let entered_start = out.views.len();
        let left_start = out.left.len();
        changed.clear();
        let old = &observer.visible;
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < candidates.len() {
            let old_id = old.get(i).copied();
            let new = candidates.get(j);
            match (old_id, new) {
                (Some(o), Some(&(_, pos, item))) if o == item.id => {
                    if item.changed {
                        changed.push(view(pos, &item));
                    }
                    i += 1;
                    j += 1;
                }
                (Some(o), Some(&(_, _, item))) if o < item.id => {
                    out.left.push(o);
                    i += 1;
                }
                (Some(o), None) => {
                    out.left.push(o);
                    i += 1;
                }
                (_, Some(&(_, pos, item))) => {
                    out.views.push(view(pos, &item));
                    j += 1;
                }
                (None, None) => unreachable!("loop condition"),
            }
        }
        let entered_end = out.views.len();
        out.views.extend_from_slice(changed);
        let changed_end = out.views.len();
        out.observers.push(ObserverDiff {
            player: player.player,
            entered: entered_start..entered_end,
            changed: entered_end..changed_end,
            left: left_start..out.left.len(),
        });

        next_visible.clear();
        next_visible.extend(candidates.iter().map(|c| c.2.id));
        debug_assert!(next_visible.is_sorted());
        std::mem::swap(&mut observer.visible, next_visible);
    }
}

fn view(position: Vec2, item: &GridItem) -> EntityView {
    EntityView {
        id: item.id,
        archetype: item.archetype,
        position,
        health: item.health,
    }
}

/// Walks the grid in rings of cells around `center`, collecting entities that are (still)
/// visible to the observer, until one ring past the cap or the leave radius.
fn collect_candidates(
    index: &SpatialIndex,
    self_id: NetId,
    center: Vec2,
    observer: &Observer,
    interest: tessera_shared::config::InterestConfig,
    candidates: &mut Vec<(f32, Vec2, GridItem)>,
) {
    let grid = &index.0;
    let cap = interest.visible_entities_max as usize;
    let enter2 = interest.enter_radius_m * interest.enter_radius_m;
    let leave2 = interest.leave_radius_m * interest.leave_radius_m;
    candidates.clear();
    let (w, h) = grid.dims();
    let (cx, cy) = grid.cell_of(center);
    let (cx, cy, w, h) = (i64::from(cx), i64::from(cy), i64::from(w), i64::from(h));
    let rings = (interest.leave_radius_m / grid.cell_size_m()).ceil() as i64;
    let mut extra_ring_done = false;
    let visit = |x: i64, y: i64, candidates: &mut Vec<(f32, Vec2, GridItem)>| {
        if x < 0 || y < 0 || x >= w || y >= h {
            return;
        }
        for &(pos, item) in grid.cell_items(x as u32, y as u32) {
            let d2 = pos.distance_squared(center);
            if item.id == self_id || d2 > leave2 {
                continue;
            }
            if d2 > enter2 && observer.visible.binary_search(&item.id).is_err() {
                continue;
            }
            candidates.push((d2, pos, item));
        }
    };
    for k in 0..=rings {
        if k == 0 {
            visit(cx, cy, candidates);
        } else {
            for x in cx - k..=cx + k {
                visit(x, cy - k, candidates);
                visit(x, cy + k, candidates);
            }
            for y in cy - k + 1..cy + k {
                visit(cx - k, y, candidates);
                visit(cx + k, y, candidates);
            }
        }
        if candidates.len() >= cap {
            if extra_ring_done {
                break;
            }
            extra_ring_done = true;
        }
    }
}
