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
//! Output per observer: entered, changed (visible, position or health changed since the
//! last tick), left (ids). Unchanged visible entities cost nothing. Entered and changed are
//! indices into one table of the tick's views, holding each entity once however many
//! observers see it: a crowd seen by a thousand observers is copied out once, and its
//! consumers can convert each entity once (the node quantizes the table, not the diffs).
//!
//! Membership (who is visible) is recomputed for each observer every
//! [`INTEREST_REFRESH_TICKS`] ticks, staggered so that a quarter of the observers refresh
//! on each tick, and at once after a server-side displacement or on arrival. On the other
//! ticks only the changes of the current members are reported, and members that left the
//! region (despawned, handed off) are reported as left at once. The hysteresis band makes
//! this safe: an entity enters or leaves view at most `INTEREST_REFRESH_TICKS - 1` ticks
//! late, at the edge of the radius.
//!
//! Cost: a refresh is one pass over the grid cells in reach plus one over the previous
//! set, with membership of the previous set an O(1) lookup in `Marks` (a stamp per grid
//! slot), not a sort and merge by id (sorting was 40% of a tick); a non-refresh tick is
//! one lookup per member in the index's placements (8 bytes per entity, which say both
//! where the member is and whether it changed), and only changed members touch more.

use bevy_ecs::prelude::*;
use tessera_shared::config::InterestConfig;
use tessera_shared::ids::NetId;
use tessera_shared::math::Vec2;

use crate::components::*;
use crate::grid::SpatialIndex;
use crate::io::{EntityView, ObserverDiff, TickOutput};
use crate::plugin::RegionPlugin;

/// Systems of this feature; last in the tick.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct InterestSystems;

/// Visibility per observer.
pub struct InterestPlugin;

/// How often (in ticks) each observer's visible set is recomputed from the grid. At 20 Hz,
/// 4 ticks is 200 ms of extra latency at the edge of view, for a quarter of the work.
pub const INTEREST_REFRESH_TICKS: u64 = 4;

/// An observer's visible set, at most `visible_entities_max` long, sorted by id (so that
/// every diff it produces is in id order and its consumer merges instead of searching).
#[derive(Component, Clone, Debug, Default)]
pub struct Observer {
    visible: Vec<(Entity, NetId)>,
    refresh_now: bool,
}

impl Observer {
    /// Recompute the visible set on the next tick rather than at the observer's turn
    /// (after a teleport or respawn, the neighbourhood is a different one).
    pub fn refresh_now(&mut self) {
        self.refresh_now = true;
    }

    /// The ids currently visible.
    pub fn visible_ids(&self) -> impl Iterator<Item = NetId> + '_ {
        self.visible.iter().map(|&(_, id)| id)
    }

    /// Number of entities currently visible.
    pub fn n_visible(&self) -> usize {
        self.visible.len()
    }
}

/// One stamp per grid slot: "in this observer's previous set" or "kept in its next set",
/// valid only when the stamp is the current one. A slot is one entity for the whole tick,
/// so no generation check is needed. As long as the grid's items, 4 bytes each.
#[derive(Default)]
struct Marks {
    marks: Vec<u32>,
    stamp: u32,
}

impl Marks {
    /// Sized for `n_slots` grid slots.
    fn fit(&mut self, n_slots: usize) {
        if self.marks.len() < n_slots {
            self.marks.resize(n_slots, 0);
        }
    }

    /// Two fresh stamps: (was visible, kept).
    fn next_stamps(&mut self) -> (u32, u32) {
        if self.stamp >= u32::MAX - 2 {
            // Wrapped: forget every mark rather than risk an old one matching.
            self.marks.fill(0);
            self.stamp = 0;
        }
        self.stamp += 2;
        (self.stamp - 1, self.stamp)
    }

    #[inline]
    fn set(&mut self, slot: usize, stamp: u32) {
        self.marks[slot] = stamp;
    }

    #[inline]
    fn is(&self, slot: usize, stamp: u32) -> bool {
        self.marks[slot] == stamp
    }
}

/// Scratch space reused across observers and ticks. Each list is bounded by
/// `visible_entities_max` (candidates by that plus one ring of cells).
#[derive(Default)]
pub struct InterestScratch {
    /// (distance squared, grid slot) of this observer's candidates.
    candidates: Vec<(f32, u32)>,
    next_visible: Vec<(Entity, NetId)>,
    /// Per member of the observer's previous set, its grid slot and whether it changed
    /// ([`GONE`]: no longer in the grid), looked up once per refresh.
    previous: Vec<(u32, bool)>,
    /// (id, entity, grid slot) of the candidates not visible before, sorted by id.
    entered: Vec<(NetId, Entity, u32)>,
    /// Grid slots of this observer's changed members.
    changed: Vec<u32>,
    marks: Marks,
    /// Per grid slot, whether some observer's diff refers to the entity this tick
    /// ([`WANTED`]), and then its index in `InterestOutput::entities` ([`NOT_INTERNED`]:
    /// not in the table), so each entity is copied out once per tick however many
    /// observers see it. As long as the grid's items.
    interned: Vec<u32>,
}

/// `InterestScratch::interned` of a slot whose entity is not in the table.
const NOT_INTERNED: u32 = u32::MAX;

/// `InterestScratch::interned` of a slot whose entity a diff refers to, before the table
/// is written.
const WANTED: u32 = u32::MAX - 1;

/// `InterestScratch::previous` of a member that left the grid (despawned, handed off).
const GONE: u32 = u32::MAX;

/// Marks the entity in grid `slot` for this tick's entity table and returns the slot,
/// which the diffs hold until [`intern_wanted`] turns it into an index into the table.
#[inline]
fn want(interned: &mut [u32], slot: usize) -> u32 {
    interned[slot] = WANTED;
    // Grid slots fit u32: the grid refuses more than GRID_ITEMS_MAX items.
    slot as u32
}

/// Writes the view of every wanted entity into the table, in slot order (the grid's
/// arrays read front to back, where interning at first reference read them at random: a
/// cache miss per entity, a third of interest's time), then turns the slots in `members`
/// into indices into the table.
fn intern_wanted(
    interned: &mut [u32],
    index: &SpatialIndex,
    entities: &mut Vec<EntityView>,
    members: &mut [u32],
) {
    for (slot, interned) in interned.iter_mut().enumerate() {
        if *interned == WANTED {
            // The table is bounded by the grid's items, which fit u32 (GRID_ITEMS_MAX).
            *interned = entities.len() as u32;
            entities.push(view(index, slot));
        }
    }
    for member in members {
        *member = interned[*member as usize];
    }
}

impl RegionPlugin for InterestPlugin {
    fn build(&self, _world: &mut World, schedule: &mut Schedule) {
        schedule.add_systems(update_interest.in_set(InterestSystems));
    }
}

/// Updates every observer's visible set (refreshing membership where due) and writes the
/// diffs to the tick output.
pub fn update_interest(
    config: Res<crate::resources::SimConfig>,
    clock: Res<crate::resources::TickClock>,
    index: Res<SpatialIndex>,
    mut output: ResMut<TickOutput>,
    mut scratch: Local<InterestScratch>,
    mut observers: Query<(Entity, &Position, &Player, &mut Observer)>,
) {
    if observers.is_empty() {
        // Nothing to see, and no per-slot table to reset and scan (a dormant region).
        return;
    }
    let interest = config.0.world.interest;
    let cap = interest.visible_entities_max as usize;
    let n_slots = index.grid.len();
    let InterestScratch {
        candidates,
        next_visible,
        previous,
        entered,
        changed,
        marks,
        interned,
    } = &mut *scratch;
    interned.clear();
    interned.resize(n_slots, NOT_INTERNED);
    marks.fit(n_slots);
    let out = &mut output.interest;
    // Until the end, the diffs' members are grid slots (see `want`).
    let members_start = out.members.len();
    for (entity, position, player, mut observer) in &mut observers {
        let observer = &mut *observer;
        let refresh = observer.refresh_now
            || observer.visible.is_empty()
            // Modulo before adding: player ids are untrusted and may be near u64::MAX.
            || (clock.tick % INTEREST_REFRESH_TICKS + player.player.0 % INTEREST_REFRESH_TICKS)
                .is_multiple_of(INTEREST_REFRESH_TICKS);
        observer.refresh_now = false;
        let entered_start = out.members.len();
        let left_start = out.left.len();
        changed.clear();
        if refresh {
            next_visible.clear();
            let (was, kept) = marks.next_stamps();
            previous.clear();
            for &(member, _) in &observer.visible {
                let placement = index.placement(member);
                if let Some((slot, _)) = placement {
                    marks.set(slot, was);
                }
                previous.push(placement.map_or((GONE, false), |(slot, c)| (slot as u32, c)));
            }
            // The observer's own slot; usize::MAX (no slot) if it is not in the grid.
            let own_slot = index.slot(entity).unwrap_or(usize::MAX);
            collect_candidates(
                &index, own_slot, position.0, interest, marks, was, candidates,
            );
            debug_assert!(candidates.len() <= cap);
            entered.clear();
            for &(_, slot) in candidates.iter() {
                if marks.is(slot as usize, was) {
                    marks.set(slot as usize, kept);
                } else {
                    let entry = index.entry_at(slot as usize);
                    entered.push((entry.id, entry.entity, slot));
                }
            }
            // Ids are unique: the order is total.
            entered.sort_unstable_by_key(|&(id, _, _)| id);
            for &(_, _, slot) in entered.iter() {
                out.members.push(want(interned, slot as usize));
            }
            // The kept members (in id order already) merged with the entered ones, so
            // the visible set stays sorted; changes and departures follow in id order.
            let mut entering = entered.iter().peekable();
            for (&(member, id), &(slot, is_changed)) in observer.visible.iter().zip(previous.iter())
            {
                while let Some(&&(new_id, new_entity, _)) = entering.peek()
                    && new_id < id
                {
                    next_visible.push((new_entity, new_id));
                    entering.next();
                }
                if slot == GONE || !marks.is(slot as usize, kept) {
                    out.left.push(id);
                    continue;
                }
                if is_changed {
                    changed.push(want(interned, slot as usize));
                }
                next_visible.push((member, id));
            }
            next_visible.extend(entering.map(|&(id, entity, _)| (entity, id)));
            // Copied into the observer's own buffer, sized to fit: swapping the scratch in
            // would hand every observer the capacity of the largest set any had (twice its
            // own after doubling), memory held per player.
            let visible = &mut observer.visible;
            visible.clear();
            if visible.capacity() > 2 * next_visible.len() {
                visible.shrink_to(next_visible.len());
            }
            visible.reserve_exact(next_visible.len());
            visible.extend_from_slice(next_visible);
        } else {
            // Nothing enters between refreshes: changes go straight to the output, and
            // the members that left the grid are dropped in place (most ticks, none is,
            // and the set is not rewritten). Only a changed member's slot is looked up.
            observer
                .visible
                .retain(|&(member, id)| match index.changed_flag(member) {
                    Some(is_changed) => {
                        if is_changed && let Some((slot, _)) = index.placement(member) {
                            out.members.push(want(interned, slot));
                        }
                        true
                    }
                    None => {
                        out.left.push(id);
                        false
                    }
                });
        }
        let entered_end = if refresh {
            out.members.len()
        } else {
            entered_start
        };
        out.members.extend_from_slice(changed);
        out.observers.push(ObserverDiff {
            player: player.player,
            entered: entered_start..entered_end,
            changed: entered_end..out.members.len(),
            left: left_start..out.left.len(),
        });
    }
    intern_wanted(
        interned,
        &index,
        &mut out.entities,
        &mut out.members[members_start..],
    );
}

fn view(index: &SpatialIndex, slot: usize) -> EntityView {
    let item = &index.grid.values()[slot];
    let entry = index.entry(item);
    EntityView {
        id: entry.id,
        archetype: item.archetype,
        position: index.grid.positions()[slot],
        health: entry.health,
    }
}

/// Walks the grid in rings of cells around `center`, collecting entities that are (still)
/// visible to the observer, until the ring in which the cap is reached (keeping the
/// nearest of that ring) or the leave radius.
fn collect_candidates(
    index: &SpatialIndex,
    own_slot: usize,
    center: Vec2,
    interest: InterestConfig,
    marks: &Marks,
    was: u32,
    candidates: &mut Vec<(f32, u32)>,
) {
    let grid = &index.grid;
    let positions = grid.positions();
    let cap = interest.visible_entities_max as usize;
    let enter2 = interest.enter_radius_m * interest.enter_radius_m;
    let leave2 = interest.leave_radius_m * interest.leave_radius_m;
    candidates.clear();
    let (w, h) = grid.dims();
    let (cx, cy) = grid.cell_of(center);
    let (cx, cy, w, h) = (i64::from(cx), i64::from(cy), i64::from(w), i64::from(h));
    let rings = (interest.leave_radius_m / grid.cell_size_m()).ceil() as i64;
    let visit = |x: i64, y: i64, candidates: &mut Vec<(f32, u32)>| {
        if x < 0 || y < 0 || x >= w || y >= h {
            return;
        }
        let range = grid.cell_range(x as u32, y as u32);
        let start = range.start;
        for (i, pos) in positions[range].iter().enumerate() {
            let d2 = pos.distance_squared(center);
            if d2 > leave2 {
                continue;
            }
            let slot = start + i;
            if slot == own_slot || (d2 > enter2 && !marks.is(slot, was)) {
                continue;
            }
            // Grid slots fit u32: the grid refuses more than GRID_ITEMS_MAX items.
            candidates.push((d2, slot as u32));
        }
    };
    for k in 0..=rings {
        let ring_start = candidates.len();
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
            // Inner rings are kept whole; from this ring, the nearest that fit (ties
            // broken by grid slot: by cell, then entity index, so by which entities are
            // where, not by the order the ECS iterates them in).
            let ring = &mut candidates[ring_start..];
            let room = cap - ring_start;
            if room < ring.len() {
                ring.select_nth_unstable_by(room, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            }
            candidates.truncate(cap);
            break;
        }
    }
}
