//! A client's view as the node keeps it: the entities it sees, in wire units, sorted by id.
//!
//! Each tick the view is rebuilt from the previous one (the newest snapshot the client's
//! [`tessera_shared::protocol::delta::DeltaEncoder`] holds) and the region's interest diff:
//! a merge by id, since the view and every list of the diff are sorted by id, with no
//! search per entity. The diff's entities are indices into the region's table of the
//! tick, quantized once per region ([`WireTable`]), not once per client that sees them.
//! Near a border with a region held by another node, that region's ghosts are merged in
//! afterwards; the region never reports them as left, so they are dropped from the previous
//! view and merged afresh every tick.

mod budget;

pub(crate) use budget::{BudgetLimits, BudgetScratch, Budgeted, ClientBudget};

use std::iter::Peekable;
use std::slice::Iter;

use rayon::prelude::*;
use tessera_regions::io::{EntityView, InterestOutput};
use tessera_shared::ids::NetId;
use tessera_shared::protocol::delta::{ViewBuilder, WireEntity};
use tessera_shared::protocol::quantize::{quantize_health, quantize_position};

/// A region's entities of one tick (`InterestOutput::entities`) in wire units, indexed
/// alike. Reused from tick to tick: bounded by the region's entities.
#[derive(Debug, Default)]
pub(crate) struct WireTable(Vec<WireEntity>);

impl WireTable {
    /// Quantizes `interest`'s entities (in parallel: a region may have thousands).
    pub(crate) fn fill(&mut self, interest: &InterestOutput) {
        self.0.clear();
        self.0.par_extend(interest.entities.par_iter().map(wire));
    }
}

/// One tick's changes to a client's view.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ViewChanges<'a> {
    /// Ids no longer visible, sorted.
    pub left: &'a [NetId],
    /// Entities that became visible: indices into `table`, sorted by id.
    pub entered: &'a [u32],
    /// Visible entities that changed: indices into `table`, sorted by id.
    pub changed: &'a [u32],
    /// The region's entities of the tick.
    pub table: &'a WireTable,
    /// The client's own avatar, which is part of its view (it reconciles against it)
    /// though the region's interest never lists an observer to itself.
    pub own: Option<WireEntity>,
}

/// The next view of one client, as a [`ViewBuilder`]: the previous view with the tick's
/// changes, ghosts dropped and merged afresh.
pub(crate) struct NextView<'a> {
    /// The region's diff for the client.
    pub changes: ViewChanges<'a>,
    /// Build from nothing rather than the previous view (the client's region changed).
    pub fresh: bool,
    /// The ghosts in the previous view (sorted by id), dropped from it; replaced by the
    /// ids of those merged now.
    pub ghost_ids: &'a mut Vec<NetId>,
    /// Ghosts within the client's reach (sorted by id), merged into the view.
    pub near_ghosts: &'a [WireEntity],
    /// The cap on the view (`visible_entities_max`): ghosts beyond it are left out.
    pub visible_max: usize,
}

impl ViewBuilder for NextView<'_> {
    fn build(self, prev: &[WireEntity], out: &mut Vec<WireEntity>) {
        let prev = if self.fresh { &[][..] } else { prev };
        if self.near_ghosts.is_empty() {
            rebuild(prev, self.ghost_ids, &self.changes, out);
            self.ghost_ids.clear();
        } else {
            let mut view = Vec::with_capacity(prev.len() + self.changes.entered.len() + 1);
            rebuild(prev, self.ghost_ids, &self.changes, &mut view);
            merge_ghosts(
                &view,
                self.near_ghosts,
                self.visible_max,
                out,
                self.ghost_ids,
            );
        }
    }
}

/// Pushes into `out` the view `prev` (sorted by id) becomes with `changes`: without the
/// ids in `changes.left` and in `stale` (sorted), with the entered and changed entities and
/// the avatar in place (an entity of the same id replaced). Entered and changed never
/// share an id; if the avatar shares one with either, the avatar wins.
///
/// One pass over `prev`, fast where it matters: most of a moving crowd changes every
/// tick, and an entity whose id is below the next entered one, the avatar and the next
/// removed id costs one comparison with the next change.
pub(crate) fn rebuild(
    prev: &[WireEntity],
    stale: &[NetId],
    changes: &ViewChanges<'_>,
    out: &mut Vec<WireEntity>,
) {
    let table = &changes.table.0[..];
    // Exact: the buffer is kept as a snapshot, and doubling's slack would be paid by every
    // client for every snapshot it holds.
    out.reserve_exact(prev.len() + changes.entered.len() + 1);
    let mut m = Merge {
        table,
        changed: changes.changed,
        c: 0,
        entered: changes.entered,
        e: 0,
        own: changes.own,
        removals: Removals {
            left: changes.left.iter().peekable(),
            stale: stale.iter().peekable(),
        },
        removal: None,
    };
    m.removal = m.removals.next();
    let mut special = m.special();
    for old in prev {
        if special.is_none_or(|s| s > old.id) {
            match m.changed.get(m.c) {
                None => {
                    out.push(*old);
                    continue;
                }
                Some(&i) => {
                    let change = table[i as usize];
                    if change.id == old.id {
                        out.push(change);
                        m.c += 1;
                        continue;
                    }
                    if change.id > old.id {
                        out.push(*old);
                        continue;
                    }
                    // A change of an entity not in the view (not expected: changes are
                    // of members): inserted by the general step.
                }
            }
        }
        m.push_below(Some(old.id), out);
        let replacement = m.take_at(old.id);
        let removed = m.remove(old.id);
        match replacement {
            Some(new) => out.push(new),
            None if !removed => out.push(*old),
            None => {}
        }
        special = m.special();
    }
    m.push_below(None, out);
}

/// The state of [`rebuild`]'s general step.
struct Merge<'a> {
    table: &'a [WireEntity],
    changed: &'a [u32],
    /// Changes pushed so far.
    c: usize,
    entered: &'a [u32],
    /// Entered entities pushed so far.
    e: usize,
    own: Option<WireEntity>,
    removals: Removals<'a>,
    removal: Option<NetId>,
}

impl Merge<'_> {
    fn change(&self) -> Option<WireEntity> {
        self.changed.get(self.c).map(|&i| self.table[i as usize])
    }

    fn entered(&self) -> Option<WireEntity> {
        self.entered.get(self.e).map(|&i| self.table[i as usize])
    }

    /// The smallest id at which the fast path does not apply: the next entered entity,
    /// the avatar or the next removal.
    fn special(&self) -> Option<NetId> {
        [
            self.entered().map(|e| e.id),
            self.own.map(|e| e.id),
            self.removal,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Pushes, in id order, every change, entered entity and the avatar with an id below
    /// `bound` (all of them: `None`).
    fn push_below(&mut self, bound: Option<NetId>, out: &mut Vec<WireEntity>) {
        let below = |e: Option<WireEntity>| e.filter(|e| bound.is_none_or(|b| e.id < b));
        loop {
            let next = [below(self.change()), below(self.entered()), below(self.own)]
                .into_iter()
                .flatten()
                .map(|e| e.id)
                .min();
            let Some(id) = next else {
                return;
            };
            if let Some(new) = self.take_at(id) {
                out.push(new);
            }
        }
    }

    /// Takes the change, entered entity and avatar of id `id`: the one to push (the
    /// avatar over the change over the entered one), if any.
    fn take_at(&mut self, id: NetId) -> Option<WireEntity> {
        let mut new = None;
        if let Some(e) = self.entered().filter(|e| e.id == id) {
            new = Some(e);
            self.e += 1;
        }
        if let Some(c) = self.change().filter(|c| c.id == id) {
            new = Some(c);
            self.c += 1;
        }
        if let Some(own) = self.own.filter(|o| o.id == id) {
            new = Some(own);
            self.own = None;
        }
        new
    }

    /// Whether `id` is removed, consuming the removals up to it.
    fn remove(&mut self, id: NetId) -> bool {
        while self.removal.is_some_and(|r| r < id) {
            self.removal = self.removals.next();
        }
        let removed = self.removal == Some(id);
        if removed {
            self.removal = self.removals.next();
        }
        removed
    }
}

/// The ids of `left` and `stale` (each sorted) merged in increasing order.
struct Removals<'a> {
    left: Peekable<Iter<'a, NetId>>,
    stale: Peekable<Iter<'a, NetId>>,
}

impl Iterator for Removals<'_> {
    type Item = NetId;

    fn next(&mut self) -> Option<NetId> {
        match (self.left.peek(), self.stale.peek()) {
            (Some(l), Some(s)) if s < l => self.stale.next().copied(),
            (Some(_), _) => self.left.next().copied(),
            (None, _) => self.stale.next().copied(),
        }
    }
}

/// Pushes `view` and the `ghosts` not in it (both sorted by id) merged by id into `out`,
/// at most `max` entities (ghosts are the ones left out); the ids of the ghosts taken go
/// to `taken` (cleared first), sorted.
pub(crate) fn merge_ghosts(
    view: &[WireEntity],
    ghosts: &[WireEntity],
    max: usize,
    out: &mut Vec<WireEntity>,
    taken: &mut Vec<NetId>,
) {
    taken.clear();
    let mut room = max.saturating_sub(view.len());
    let mut ghosts = ghosts.iter().peekable();
    let mut take_ghost = |ghost: &WireEntity, out: &mut Vec<WireEntity>| {
        if room > 0 {
            out.push(*ghost);
            taken.push(ghost.id);
            room -= 1;
        }
    };
    for entity in view {
        while let Some(ghost) = ghosts.next_if(|g| g.id < entity.id) {
            take_ghost(ghost, out);
        }
        ghosts.next_if(|g| g.id == entity.id); // The region's own view wins.
        out.push(*entity);
    }
    for ghost in ghosts {
        take_ghost(ghost, out);
    }
}

/// Pushes into `out` the ids of `dead` (sorted, unique) that `view` (sorted by id) shows:
/// the deaths a client saw happen. Cost `O(min(k log n, n + k))` for `k` deaths and a view
/// of `n`: a few deaths (the usual tick) are binary-searched, each in what is left of the
/// view after the previous one; many are merged in one pass.
pub(crate) fn deaths_in_view(view: &[WireEntity], dead: &[NetId], out: &mut Vec<NetId>) {
    if dead.len().saturating_mul(8) < view.len() {
        let mut rest = view;
        for &id in dead {
            match rest.binary_search_by_key(&id, |e| e.id) {
                Ok(i) => {
                    out.push(id);
                    rest = &rest[i + 1..];
                }
                Err(i) => rest = &rest[i..],
            }
        }
    } else {
        let mut view = view.iter().peekable();
        for &id in dead {
            while view.next_if(|e| e.id < id).is_some() {}
            if view.next_if(|e| e.id == id).is_some() {
                out.push(id);
            }
        }
    }
}

/// `view` in wire units.
pub(crate) fn wire(view: &EntityView) -> WireEntity {
    WireEntity {
        id: view.id,
        archetype: view.archetype,
        // Positions are finite and inside the world (the region guarantees it).
        position: quantize_position(view.position).unwrap_or([0, 0]),
        health: quantize_health(view.health),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn e(id: u64, x: i32) -> WireEntity {
        WireEntity {
            id: NetId(id),
            archetype: 0,
            position: [x, 0],
            health: 1,
        }
    }

    fn ids(v: &[WireEntity]) -> Vec<u64> {
        v.iter().map(|e| e.id.0).collect()
    }

    #[test]
    fn ghosts_merge_by_id_without_duplicates_and_within_the_cap() {
        let view = [e(2, 0), e(5, 0), e(9, 0)];
        let ghosts = [e(1, 0), e(5, 1), e(7, 0), e(12, 0)];
        let (mut merged, mut taken) = (Vec::new(), Vec::new());
        merge_ghosts(&view, &ghosts, 100, &mut merged, &mut taken);
        assert_eq!(
            ids(&merged),
            [1, 2, 5, 7, 9, 12],
            "the region's entity 5 wins"
        );
        assert_eq!(merged[2].position[0], 0);
        assert_eq!(taken, [NetId(1), NetId(7), NetId(12)]);
        merged.clear();
        merge_ghosts(&view, &ghosts, 4, &mut merged, &mut taken);
        assert_eq!(ids(&merged), [1, 2, 5, 9]);
        assert_eq!(taken, [NetId(1)]);
        merged.clear();
        merge_ghosts(&view, &ghosts, 2, &mut merged, &mut taken);
        assert_eq!(ids(&merged), [2, 5, 9]);
        assert!(taken.is_empty());
    }

    /// Sorted unique ids from arbitrary ones.
    fn sorted(ids: Vec<u64>) -> Vec<u64> {
        let mut ids = ids;
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    proptest! {
        /// The deaths found in a view are exactly those whose id it holds, in order,
        /// whichever way (search or merge) the sizes pick.
        #[test]
        fn deaths_in_view_are_the_dead_ids_the_view_holds(
            view in prop::collection::vec(0u64..300, 0..120).prop_map(sorted),
            dead in prop::collection::vec(0u64..300, 0..60).prop_map(sorted),
        ) {
            let view: Vec<WireEntity> = view.into_iter().map(|id| e(id, 0)).collect();
            let dead: Vec<NetId> = dead.into_iter().map(NetId).collect();
            let expected: Vec<NetId> = dead
                .iter()
                .copied()
                .filter(|id| view.iter().any(|e| e.id == *id))
                .collect();
            let mut found = Vec::new();
            deaths_in_view(&view, &dead, &mut found);
            prop_assert_eq!(found, expected);
        }

        /// The merge equals applying the same changes to a map.
        #[test]
        fn rebuild_equals_applying_the_changes_one_by_one(
            prev in prop::collection::vec(0u64..200, 0..80).prop_map(sorted),
            left in prop::collection::vec(0u64..200, 0..20).prop_map(sorted),
            stale in prop::collection::vec(0u64..200, 0..10).prop_map(sorted),
            updated in prop::collection::vec((0u64..200, any::<bool>()), 0..80),
            own in prop::option::of(0u64..200),
            x in 1i32..1000,
        ) {
            let prev: Vec<WireEntity> = prev.into_iter().map(|id| e(id, 0)).collect();
            // Entered and changed are disjoint and sorted; the table holds them in
            // another order, as the region's table does.
            // The avatar may share an id with one of them: it wins.
            let updated: BTreeMap<u64, bool> = updated.into_iter().collect();
            let table: Vec<WireEntity> = updated.keys().rev().map(|&id| e(id, x)).collect();
            let index = |id: u64| table.iter().position(|t| t.id.0 == id).unwrap() as u32;
            let entered: Vec<u32> = updated.iter().filter(|u| *u.1).map(|u| index(*u.0)).collect();
            let changed: Vec<u32> = updated.iter().filter(|u| !*u.1).map(|u| index(*u.0)).collect();
            let left: Vec<NetId> = left.into_iter().map(NetId).collect();
            let stale: Vec<NetId> = stale.into_iter().map(NetId).collect();
            let own = own.map(|id| e(id, -x));

            let mut expected: BTreeMap<NetId, WireEntity> = prev.iter().map(|e| (e.id, *e)).collect();
            for id in left.iter().chain(&stale) {
                expected.remove(id);
            }
            for t in &table {
                expected.insert(t.id, *t);
            }
            if let Some(own) = own {
                expected.insert(own.id, own);
            }

            let table = WireTable(table);
            let changes = ViewChanges { left: &left, entered: &entered, changed: &changed, table: &table, own };
            let mut next = Vec::new();
            rebuild(&prev, &stale, &changes, &mut next);
            prop_assert_eq!(next, expected.into_values().collect::<Vec<_>>());
        }
    }
}
