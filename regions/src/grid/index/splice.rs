//! Incremental edits of a [`SpatialGrid`]: an item moved within its cell is rewritten in
//! place ([`SpatialGrid::set_position`]), and items that leave, arrive or change cell are
//! spliced in one merge ([`SpatialGrid::splice`]), so that a tick in which a few hundred
//! of 100k items cross a cell costs a copy of the arrays instead of a counting sort.
//!
//! Order: a spliced grid keeps each cell's items in the order of a caller-given key (for
//! the region's index, the entity index). Edits never depend on the order they are made
//! in, so the layout is a function of the set of items alone: the same as inserting them
//! all at once into an empty grid.

use super::*;

/// An item waiting to be spliced in: its cell, its key, and the slot of the grid before
/// the splice that it goes in front of.
#[derive(Clone, Copy, Debug)]
pub(super) struct Arrival<T> {
    cell: u32,
    key: u32,
    before_slot: u32,
    position: Vec2,
    value: T,
}

/// Buffers of [`SpatialGrid::splice`], kept between splices so that, once grown, a splice
/// does not allocate. Each is bounded by the item count.
#[derive(Clone, Debug)]
pub(super) struct SpliceScratch<T> {
    /// The items to insert, sorted by (cell, key).
    arrivals: Vec<Arrival<T>>,
    /// The slots to remove with their cells, sorted.
    departures: Vec<(u32, u32)>,
    /// The cells whose items changed in the last splice, ascending.
    touched: Vec<u32>,
    /// The next layout's positions and values (swapped with the grid's at the end).
    positions: Vec<Vec2>,
    values: Vec<T>,
}

impl<T> SpliceScratch<T> {
    pub(super) fn new() -> Self {
        SpliceScratch {
            arrivals: Vec::new(),
            departures: Vec::new(),
            touched: Vec::new(),
            positions: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl<T: Copy + PartialEq> SpatialGrid<T> {
    /// The cell (`cy * cells_x + cx`) that holds `slot`.
    ///
    /// # Panics
    /// If `slot` is not below [`SpatialGrid::len`].
    pub fn cell_of_slot(&self, slot: usize) -> u32 {
        assert!(slot < self.len(), "slot {slot} of {}", self.len());
        // The last cell starting at or before the slot: empty cells that start there too
        // come before it.
        (self
            .cell_start
            .partition_point(|&start| start as usize <= slot)
            - 1) as u32
    }

    /// Moves the item in `slot` to `position`, which must be in the same cell (checked in
    /// debug builds): no slot changes.
    pub fn set_position(&mut self, slot: usize, position: Vec2) {
        debug_assert_eq!(self.cell_of_slot(slot), self.cell_idx(position));
        self.positions[slot] = position;
    }

    /// Removes the items in slots `departures` and inserts `arrivals`, each into the cell of
    /// its position in front of the first item of that cell whose `key` is greater. If every
    /// cell's items were in `key` order before, they are after, and the layout is the same
    /// whatever the order of `departures` and `arrivals`. [`SpatialGrid::touched_cells`]
    /// then lists the cells whose items changed; the slots of the items after the first
    /// edit move.
    ///
    /// One pass over the items (a copy of the unchanged runs between the edits) plus one
    /// over the cells' starts, and a sort of the arrivals.
    ///
    /// # Panics
    /// If a departure is not a slot of the grid or is listed twice, or if the grid would
    /// hold more than [`GRID_ITEMS_MAX`] items.
    pub fn splice(
        &mut self,
        departures: &[u32],
        arrivals: impl IntoIterator<Item = (Vec2, T)>,
        key: impl Fn(&T) -> u32,
    ) {
        let mut scratch = std::mem::replace(&mut self.splice, SpliceScratch::new());
        let n_old = self.len();
        scratch.departures.clear();
        scratch.departures.extend(
            departures
                .iter()
                .map(|&slot| (slot, self.cell_of_slot(slot as usize))),
        );
        scratch.departures.sort_unstable();
        assert!(
            scratch.departures.windows(2).all(|w| w[0].0 < w[1].0),
            "a slot departs twice"
        );
        scratch.arrivals.clear();
        scratch
            .arrivals
            .extend(arrivals.into_iter().map(|(position, value)| Arrival {
                cell: self.cell_idx(position),
                key: key(&value),
                before_slot: 0,
                position,
                value,
            }));
        let n_new = n_old + scratch.arrivals.len() - scratch.departures.len();
        assert!(
            n_new <= GRID_ITEMS_MAX,
            "{n_new} items, more than {GRID_ITEMS_MAX}"
        );
        scratch.arrivals.sort_unstable_by_key(|a| (a.cell, a.key));
        for arrival in &mut scratch.arrivals {
            let start = self.cell_start[arrival.cell as usize] as usize;
            let end = self.cell_start[arrival.cell as usize + 1] as usize;
            let ahead = self.values[start..end].partition_point(|v| key(v) < arrival.key);
            // Below GRID_ITEMS_MAX, which fits u32.
            arrival.before_slot = (start + ahead) as u32;
        }
        self.shift_cell_starts(&mut scratch);
        Self::merge(&mut scratch, &self.positions, &self.values);
        std::mem::swap(&mut self.positions, &mut scratch.positions);
        std::mem::swap(&mut self.values, &mut scratch.values);
        debug_assert_eq!(self.positions.len(), n_new);
        debug_assert_eq!(self.cell_start[self.cell_start.len() - 1] as usize, n_new);
        self.splice = scratch;
        // The last rebuild's slots are gone.
        self.slots.clear();
    }

    /// The cells whose items changed in the last [`SpatialGrid::splice`], ascending.
    pub fn touched_cells(&self) -> &[u32] {
        &self.splice.touched
    }

    /// Lists the touched cells and moves every cell's start by the arrivals minus the
    /// departures of the cells before it.
    fn shift_cell_starts(&mut self, scratch: &mut SpliceScratch<T>) {
        let SpliceScratch {
            arrivals,
            departures,
            touched,
            ..
        } = scratch;
        touched.clear();
        let mut shift = 0i64;
        let mut next_cell = 0usize;
        let (mut a, mut d) = (0usize, 0usize);
        while a < arrivals.len() || d < departures.len() {
            let cell = match (arrivals.get(a), departures.get(d)) {
                (Some(arr), Some(&(_, dep))) => arr.cell.min(dep),
                (Some(arr), None) => arr.cell,
                (None, Some(&(_, dep))) => dep,
                (None, None) => unreachable!(),
            };
            let mut delta = 0i64;
            while a < arrivals.len() && arrivals[a].cell == cell {
                delta += 1;
                a += 1;
            }
            while d < departures.len() && departures[d].1 == cell {
                delta -= 1;
                d += 1;
            }
            touched.push(cell);
            Self::add_to_starts(&mut self.cell_start[next_cell..=cell as usize], shift);
            next_cell = cell as usize + 1;
            shift += delta;
        }
        Self::add_to_starts(&mut self.cell_start[next_cell..], shift);
    }

    fn add_to_starts(starts: &mut [u32], shift: i64) {
        if shift != 0 {
            for start in starts {
                // Within 0..=GRID_ITEMS_MAX: the starts of the layout after the splice.
                *start = (i64::from(*start) + shift) as u32;
            }
        }
    }

    /// Writes the next layout into the scratch buffers: the runs of unchanged items of
    /// `positions` and `values`, with the arrivals in front of their slots and without the
    /// departures.
    fn merge(scratch: &mut SpliceScratch<T>, positions: &[Vec2], values: &[T]) {
        let n_old = positions.len();
        debug_assert_eq!(values.len(), n_old);
        scratch.positions.clear();
        scratch.values.clear();
        let copy_run = |scratch: &mut SpliceScratch<T>, run: std::ops::Range<usize>| {
            scratch.positions.extend_from_slice(&positions[run.clone()]);
            scratch.values.extend_from_slice(&values[run]);
        };
        let (mut a, mut d) = (0usize, 0usize);
        let mut from = 0usize;
        loop {
            let next_arrival = scratch.arrivals.get(a).map(|x| x.before_slot as usize);
            let next_departure = scratch.departures.get(d).map(|&(slot, _)| slot as usize);
            match (next_arrival, next_departure) {
                // An arrival in front of a departing slot goes first: either way, the same.
                (Some(at), dep) if dep.is_none_or(|dep| at <= dep) => {
                    copy_run(scratch, from..at);
                    from = at;
                    let arrival = scratch.arrivals[a];
                    scratch.positions.push(arrival.position);
                    scratch.values.push(arrival.value);
                    a += 1;
                }
                (_, Some(dep)) => {
                    copy_run(scratch, from..dep);
                    from = dep + 1;
                    d += 1;
                }
                // Neither left (an arrival always passes the test above when no departure is).
                _ => break,
            }
        }
        copy_run(scratch, from..n_old);
    }
}

impl<T: Copy + PartialEq> SpatialGrid<T> {
    /// The cell (`cy * cells_x + cx`) that holds position `p`, clamped to the grid like
    /// [`SpatialGrid::cell_of`].
    #[inline]
    pub fn cell_index(&self, p: Vec2) -> u32 {
        self.cell_idx(p)
    }

    /// The slots of cell `cell`'s items (`cy * cells_x + cx`).
    ///
    /// # Panics
    /// If there is no such cell.
    #[inline]
    pub fn slots_of_cell(&self, cell: u32) -> std::ops::Range<usize> {
        let c = cell as usize;
        self.cell_start[c] as usize..self.cell_start[c + 1] as usize
    }
}
