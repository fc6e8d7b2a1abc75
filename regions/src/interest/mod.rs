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
//! set, with membership of the previous set an O(1) lookup in `Marks` (a stamp per entity
//! index), not a sort and merge by id (sorting was 40% of a tick); a non-refresh tick is
//! one lookup per member.

use bevy_ecs::prelude::*;
use tessera_shared::config::InterestConfig;
use tessera_shared::ids::NetId;
use tessera_shared::math::Vec2;

use crate::components::*;
use crate::grid::{GridItem, SpatialIndex};
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

/// One stamp per entity index: "in this observer's previous set" or "kept in its next
/// set", valid only when the stamp is the current one and the entity (index and
/// generation) matches, so a reused index never aliases a despawned entity. Grows to the
/// highest entity index in the region (bounded by `entities_per_region_max` plus bevy's
/// free list), 12 bytes each.
#[derive(Default)]
struct Marks {
    marks: Vec<(u32, Option<Entity>)>,
    stamp: u32,
}

impl Marks {
    /// Two fresh stamps: (was visible, kept).
    fn next_stamps(&mut self) -> (u32, u32) {
        if self.stamp >= u32::MAX - 2 {
            // Wrapped: forget every mark rather than risk an old one matching.
            self.marks.iter_mut().for_each(|m| *m = (0, None));
            self.stamp = 0;
        }
        self.stamp += 2;
        (self.stamp - 1, self.stamp)
    }

    fn set(&mut self, entity: Entity, stamp: u32) {
        let idx = entity.index_u32() as usize;
        if idx >= self.marks.len() {
            self.marks.resize(idx + 1, (0, None));
        }
        self.marks[idx] = (stamp, Some(entity));
    }

    fn is(&self, entity: Entity, stamp: u32) -> bool {
        self.marks
            .get(entity.index_u32() as usize)
            .is_some_and(|&(s, e)| s == stamp && e == Some(entity))
    }
}

/// Scratch space reused across observers and ticks. Each list is bounded by
/// `visible_entities_max` (candidates by that plus one ring of cells).
#[derive(Default)]
pub struct InterestScratch {
    /// (distance squared, index into the grid's items) of this observer's candidates.
    candidates: Vec<(f32, u32)>,
    next_visible: Vec<(Entity, NetId)>,
    /// (id, entity, grid slot) of the candidates not visible before, sorted by id.
    entered: Vec<(NetId, Entity, u32)>,
    /// Indices into the output's entity table of this observer's changed members.
    changed: Vec<u32>,
    marks: Marks,
    /// Per grid slot, the entity's index in this tick's `InterestOutput::entities`
    /// ([`NOT_INTERNED`]: not there yet), so each entity is copied out once per tick
    /// however many observers see it. As long as the grid's items.
    interned: Vec<u32>,
}

/// `InterestScratch::interned` of a slot whose entity is not in the table.
const NOT_INTERNED: u32 = u32::MAX;

/// The index of the entity in grid `slot` in this tick's entity table, adding it on first
/// use.
fn intern(
    interned: &mut [u32],
    entities: &mut Vec<EntityView>,
    items: &[(Vec2, GridItem)],
    slot: usize,
) -> u32 {
    if interned[slot] == NOT_INTERNED {
        // The table is bounded by the grid's items, which fit u32 (GRID_ITEMS_MAX).
        interned[slot] = entities.len() as u32;
        let (pos, item) = &items[slot];
        entities.push(view(*pos, item));
    }
    interned[slot]
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
    mut observers: Query<(&Identity, &Position, &Player, &mut Observer)>,
) {
    let interest = config.0.world.interest;
    let cap = interest.visible_entities_max as usize;
    let items = index.grid.items();
    let InterestScratch {
        candidates,
        next_visible,
        entered,
        changed,
        marks,
        interned,
    } = &mut *scratch;
    interned.clear();
    interned.resize(items.len(), NOT_INTERNED);
    let out = &mut output.interest;
    for (identity, position, player, mut observer) in &mut observers {
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
        next_visible.clear();
        if refresh {
            let (was, kept) = marks.next_stamps();
            for &(entity, _) in &observer.visible {
                marks.set(entity, was);
            }
            collect_candidates(
                &index,
                identity.id,
                position.0,
                interest,
                marks,
                was,
                candidates,
            );
            debug_assert!(candidates.len() <= cap);
            entered.clear();
            for &(_, slot) in candidates.iter() {
                let (_, item) = &items[slot as usize];
                if marks.is(item.entity, was) {
                    marks.set(item.entity, kept);
                } else {
                    entered.push((item.id, item.entity, slot));
                }
            }
            // Ids are unique: the order is total.
            entered.sort_unstable_by_key(|&(id, _, _)| id);
            for &(_, _, slot) in entered.iter() {
                let idx = intern(interned, &mut out.entities, items, slot as usize);
                out.members.push(idx);
            }
            // The kept members (in id order already) merged with the entered ones, so
            // the visible set stays sorted; changes and departures follow in id order.
            let mut entering = entered.iter().peekable();
            for &(entity, id) in &observer.visible {
                while let Some(&&(new_id, new_entity, _)) = entering.peek()
                    && new_id < id
                {
                    next_visible.push((new_entity, new_id));
                    entering.next();
                }
                if !marks.is(entity, kept) {
                    out.left.push(id);
                    continue;
                }
                if let Some(slot) = index.slot(entity)
                    && items[slot].1.changed
                {
                    changed.push(intern(interned, &mut out.entities, items, slot));
                }
                next_visible.push((entity, id));
            }
            next_visible.extend(entering.map(|&(id, entity, _)| (entity, id)));
        } else {
            // Nothing enters between refreshes: changes go straight to the output.
            for &(entity, id) in &observer.visible {
                match index.slot(entity) {
                    Some(slot) => {
                        if items[slot].1.changed {
                            let idx = intern(interned, &mut out.entities, items, slot);
                            out.members.push(idx);
                        }
                        next_visible.push((entity, id));
                    }
                    None => out.left.push(id),
                }
            }
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
/// visible to the observer, until the ring in which the cap is reached (keeping the
/// nearest of that ring) or the leave radius.
fn collect_candidates(
    index: &SpatialIndex,
    self_id: NetId,
    center: Vec2,
    interest: InterestConfig,
    marks: &Marks,
    was: u32,
    candidates: &mut Vec<(f32, u32)>,
) {
    let grid = &index.grid;
    let items = grid.items();
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
        for slot in grid.cell_range(x as u32, y as u32) {
            let (pos, item) = &items[slot];
            let d2 = pos.distance_squared(center);
            if d2 > leave2 || item.id == self_id {
                continue;
            }
            if d2 > enter2 && !marks.is(item.entity, was) {
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
            // broken by grid slot, itself deterministic).
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
