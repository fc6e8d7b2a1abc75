//! A uniform grid over a region's bounds, rebuilt wholesale with a stable counting sort
//! ([`SpatialGrid::rebuild`]) or edited in place ([`SpatialGrid::splice`] and
//! [`SpatialGrid::set_position`], in `splice.rs`: what the region's index uses).
//!
//! Why a grid and not a tree: a counting sort into fixed cells is a few linear passes over
//! flat arrays with no allocation once warm (PERFORMANCE.md goal 2: >= 10x faster to
//! rebuild than an rstar R-tree), and an edit is a merge of flat arrays. Items of one cell
//! are contiguous, and so are the items of a run of cells in one row, so a query walks one
//! slice per row of cells.
//!
//! Determinism: the sort is stable, so items of a cell keep insertion order and every query
//! visits items in the same order for the same inputs (row by row, cell by cell, then
//! insertion order; after splices, the splices' key order).
//!
//! Layout: structure of arrays. Positions and values are sorted into separate arrays, so a
//! query's distance tests stream through 8 bytes per item and touch a value only on a hit,
//! and the rebuild's scatter (random writes, the bulk of its cost) moves `8 + size_of::<T>()`
//! bytes per item instead of a padded tuple.
//!
//! Memory: two `u32`s per cell plus one (`cell_start` has a sentinel; the counts and write
//! cursors), and per item a `Vec2` and a `T` in the sorted storage and the same again in
//! the staging buffers of a rebuild or a splice (kept between calls), one `u32` cell index
//! and one `u32` slot (where each inserted item went).

use tessera_shared::math::{Aabb, Vec2};

/// The largest grid [`SpatialGrid::new`] accepts, in cells: 4,194,304 cells is 16 MiB of
/// `u32` cell offsets (a 2048 m region at 1 m cells).
pub const GRID_CELLS_MAX: usize = 4_194_304;

/// The most items one [`SpatialGrid::rebuild`] accepts: cell offsets are `u32`.
pub const GRID_ITEMS_MAX: usize = u32::MAX as usize;

/// Relative slack added to a radius query's reach before it is turned into a cell range, so
/// that the range covers every item whose rounded `distance_squared` passes the test (the
/// rounding error of `c - r`, `dx * dx + dy * dy` and `r * r` is a few ulps, about 1.2e-7
/// each; 1e-6 is ~8 ulps). It only ever adds cells to scan, never results.
const QUERY_REACH_SLACK_REL: f32 = 1e-6;

/// Absolute slack for the same purpose: below ~2.6e-23 a squared difference underflows to 0.
const QUERY_REACH_SLACK_ABS: f32 = 1e-18;

/// Why a [`SpatialGrid`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GridError {
    /// The cell count `cells_x * cells_y` is above [`GRID_CELLS_MAX`].
    #[error(
        "grid would have {cells_x} x {cells_y} cells (region {width_m} x {height_m} m, \
         cell_size_m {cell_size_m}), more than the limit of {cells_max} cells; \
         use a larger cell_size_m"
    )]
    TooManyCells {
        /// Cells along x (saturated at `u64::MAX`).
        cells_x: u64,
        /// Cells along y (saturated at `u64::MAX`).
        cells_y: u64,
        /// Region width.
        width_m: f64,
        /// Region height.
        height_m: f64,
        /// The requested cell size.
        cell_size_m: f32,
        /// [`GRID_CELLS_MAX`].
        cells_max: usize,
    },
    /// The cell size is zero, negative, subnormal, infinite or NaN.
    #[error("cell_size_m must be a finite number > 0 (and not subnormal), got {cell_size_m}")]
    InvalidCellSize {
        /// The rejected cell size.
        cell_size_m: f32,
    },
    /// The bounds are not finite or are empty on an axis.
    #[error("grid bounds must be finite with min < max on both axes, got {bounds:?}")]
    InvalidBounds {
        /// The rejected bounds.
        bounds: Aabb,
    },
}

/// A uniform grid of items `(position, T)` over fixed bounds, rebuilt wholesale by
/// [`SpatialGrid::rebuild`].
///
/// Positions outside the bounds are kept and go to the nearest edge cell, so queries stay
/// exact for them too (only slower if many pile up at an edge).
#[derive(Clone, Debug)]
pub struct SpatialGrid<T: Copy + PartialEq> {
    bounds: Aabb,
    cell_size_m: f32,
    /// `1 / cell_size_m`: a multiply per axis instead of a divide per item.
    cells_per_m: f32,
    cells_x: u32,
    cells_y: u32,
    /// `cell_start[c]..cell_start[c + 1]` is cell `c`'s range of slots in `positions` and
    /// `values`; the last entry is the item count. Cell `c` is `cy * cells_x + cx`, so one row's cells are one range.
    cell_start: Vec<u32>,
    /// All items' positions, sorted by cell, insertion order within a cell.
    positions: Vec<Vec2>,
    /// All items' values, in the same order as `positions`.
    values: Vec<T>,
    /// Per cell, its item count while staging, then the next slot to write while
    /// scattering (one array for both: the counts are consumed by the prefix sums).
    cell_cursor: Vec<u32>,
    /// Staging of a rebuild: its items in insertion order, with their cells, so that a
    /// panicking item iterator leaves the grid as it was.
    staged: Staged<T>,
    /// `slots[i]`: the slot of the `i`th item of the last rebuild; see
    /// [`SpatialGrid::inserted_slots`].
    slots: Vec<u32>,
    /// Buffers of [`SpatialGrid::splice`].
    splice: splice::SpliceScratch<T>,
}

/// One rebuild's items, in insertion order.
#[derive(Clone, Debug)]
struct Staged<T> {
    positions: Vec<Vec2>,
    values: Vec<T>,
    cells: Vec<u32>,
}

impl<T> Staged<T> {
    fn new() -> Self {
        Staged {
            positions: Vec::new(),
            values: Vec::new(),
            cells: Vec::new(),
        }
    }

    fn clear(&mut self) {
        self.positions.clear();
        self.values.clear();
        self.cells.clear();
    }
}

impl<T: Copy + PartialEq> SpatialGrid<T> {
    /// An empty grid of `ceil(width / cell_size_m) x ceil(height / cell_size_m)` cells.
    ///
    /// Errors if `cell_size_m` is not a normal positive number, if `bounds` is not finite or
    /// is empty, or if the grid would have more than [`GRID_CELLS_MAX`] cells.
    pub fn new(bounds: Aabb, cell_size_m: f32) -> Result<Self, GridError> {
        if !(cell_size_m.is_normal() && cell_size_m > 0.0) {
            return Err(GridError::InvalidCellSize { cell_size_m });
        }
        let finite = bounds.min.is_finite() && bounds.max.is_finite();
        if !(finite && bounds.min.x < bounds.max.x && bounds.min.y < bounds.max.y) {
            return Err(GridError::InvalidBounds { bounds });
        }
        // f64: the f32 width of a huge region can overflow, and the cell counts can too.
        let width_m = f64::from(bounds.max.x) - f64::from(bounds.min.x);
        let height_m = f64::from(bounds.max.y) - f64::from(bounds.min.y);
        let cells_x = (width_m / f64::from(cell_size_m)).ceil();
        let cells_y = (height_m / f64::from(cell_size_m)).ceil();
        if cells_x * cells_y > GRID_CELLS_MAX as f64 {
            return Err(GridError::TooManyCells {
                // Saturating casts: these are only reported.
                cells_x: cells_x as u64,
                cells_y: cells_y as u64,
                width_m,
                height_m,
                cell_size_m,
                cells_max: GRID_CELLS_MAX,
            });
        }
        let cells_x = cells_x as u32;
        let cells_y = cells_y as u32;
        assert!(cells_x >= 1 && cells_y >= 1);
        let n_cells = cells_x as usize * cells_y as usize;
        assert!(n_cells <= GRID_CELLS_MAX);
        let cells_per_m = 1.0 / cell_size_m;
        assert!(cells_per_m.is_finite() && cells_per_m > 0.0);
        Ok(SpatialGrid {
            bounds,
            cell_size_m,
            cells_per_m,
            cells_x,
            cells_y,
            cell_start: vec![0; n_cells + 1],
            positions: Vec::new(),
            values: Vec::new(),
            cell_cursor: vec![0; n_cells],
            staged: Staged::new(),
            slots: Vec::new(),
            splice: splice::SpliceScratch::new(),
        })
    }

    /// Replaces the contents with `items`: a stable counting sort into contiguous storage.
    ///
    /// Buffers are reused, so once they have grown to the item count a rebuild does not
    /// allocate. Positions outside the bounds go to the nearest edge cell. A NaN coordinate
    /// is put at the low edge of its axis (cell 0 if both are NaN); such an item is never
    /// returned by a radius query and never contained in a box, so it is inert (the
    /// simulation checks positions with `Vec2::is_finite` before they get here).
    ///
    /// If `items` panics, the grid keeps its previous contents (but not its
    /// [`SpatialGrid::inserted_slots`]).
    ///
    /// # Panics
    /// If there are more than [`GRID_ITEMS_MAX`] items.
    pub fn rebuild(&mut self, items: impl IntoIterator<Item = (Vec2, T)>) {
        // Pass 1, the only pass that runs caller code, touches only scratch buffers: it
        // stages the items with their cells and counts each cell's items.
        self.slots.clear();
        self.staged.clear();
        self.cell_cursor.fill(0);
        for (p, t) in items {
            let c = self.cell_idx(p);
            self.staged.cells.push(c);
            self.staged.positions.push(p);
            self.staged.values.push(t);
            self.cell_cursor[c as usize] += 1;
        }
        let n_items = self.staged.cells.len();
        assert!(
            n_items <= GRID_ITEMS_MAX,
            "{n_items} items, more than {GRID_ITEMS_MAX}"
        );
        self.sort();
        assert_eq!(self.cell_start[0], 0);
        assert_eq!(self.cell_start[self.cell_start.len() - 1] as usize, n_items);
        assert_eq!(self.positions.len(), n_items);
        assert_eq!(self.values.len(), n_items);
        assert_eq!(self.slots.len(), n_items);
    }

    /// The counting sort proper, from the counts pass 1 left in `cell_cursor`: exclusive
    /// prefix sums give each cell's start, then a forward scatter (which keeps insertion
    /// order within a cell) writes each item at its cell's cursor and records the slot.
    fn sort(&mut self) {
        let n_cells = self.cell_cursor.len();
        let mut sum = 0u32;
        for (start, cursor) in self.cell_start[..n_cells]
            .iter_mut()
            .zip(&mut self.cell_cursor)
        {
            let count = *cursor;
            *start = sum;
            *cursor = sum;
            sum += count;
        }
        self.cell_start[n_cells] = sum;
        let staged = &self.staged;
        let n_items = staged.positions.len();
        Self::fit(&mut self.positions, n_items, staged.positions.first());
        Self::fit(&mut self.values, n_items, staged.values.first());
        self.slots.resize(n_items, 0);
        // Slices held in locals: the compiler then keeps their bounds in registers instead
        // of reloading them after each store through `self`.
        let positions = &mut self.positions[..];
        let values = &mut self.values[..];
        let cursors = &mut self.cell_cursor[..];
        for (((&p, &t), &c), slot_out) in staged
            .positions
            .iter()
            .zip(&staged.values)
            .zip(&staged.cells)
            .zip(&mut self.slots)
        {
            let cursor = &mut cursors[c as usize];
            let slot = *cursor;
            *cursor += 1;
            positions[slot as usize] = p;
            values[slot as usize] = t;
            *slot_out = slot;
        }
    }

    /// Resizes `v` to `n` items without caring what they hold: every slot is overwritten by
    /// the scatter, which is a permutation.
    fn fit<U: Copy>(v: &mut Vec<U>, n: usize, filler: Option<&U>) {
        if v.len() > n {
            v.truncate(n);
        } else if let Some(&first) = filler {
            v.resize(n, first);
        }
    }

    /// Where each item of the last rebuild went: `inserted_slots()[i]` is the slot (index
    /// into [`SpatialGrid::positions`] and [`SpatialGrid::values`]) of the `i`th item
    /// passed to [`SpatialGrid::rebuild`]; empty after a splice.
    pub fn inserted_slots(&self) -> &[u32] {
        &self.slots
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// True if the grid holds no items.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Calls `f` for exactly the items with `pos.distance_squared(center) <= radius * radius`
    /// (so a negative radius acts as its absolute value, and a NaN radius or center matches
    /// nothing), in deterministic order. Does not allocate.
    pub fn for_each_in_radius(&self, center: Vec2, radius: f32, mut f: impl FnMut(Vec2, T)) {
        self.for_each_slot_in_radius(center, radius, |_, p, t| f(p, *t));
    }

    /// [`SpatialGrid::for_each_in_radius`], also passing each item's slot (its index in
    /// [`SpatialGrid::positions`] and [`SpatialGrid::values`], valid until the next
    /// rebuild) and the value by reference.
    pub fn for_each_slot_in_radius(
        &self,
        center: Vec2,
        radius: f32,
        mut f: impl FnMut(usize, Vec2, &T),
    ) {
        let radius_sq = radius * radius;
        let Some(((cx0, cy0), (cx1, cy1))) = self.cells_in_radius(center, radius) else {
            return;
        };
        self.for_each_row_range(cx0, cy0, cx1, cy1, |range| {
            let start = range.start;
            for (i, p) in self.positions[range].iter().enumerate() {
                if p.distance_squared(center) <= radius_sq {
                    let slot = start + i;
                    f(slot, *p, &self.values[slot]);
                }
            }
        });
    }

    /// The cells `(cx0, cy0)..=(cx1, cy1)` a radius query around `center` scans: a
    /// conservative cover of every item with `pos.distance_squared(center) <= radius *
    /// radius` (all cells for an infinite squared radius); `None` for a NaN radius.
    /// Callers that walk cells themselves (to skip some) use this to visit exactly what
    /// [`SpatialGrid::for_each_slot_in_radius`] would.
    pub fn cells_in_radius(&self, center: Vec2, radius: f32) -> Option<((u32, u32), (u32, u32))> {
        let radius_sq = radius * radius;
        let reach = radius.abs();
        if reach.is_nan() {
            return None;
        }
        Some(if radius_sq.is_finite() {
            // Grow the reach by the rounding slack so the cell range is conservative.
            let reach_x = reach + (center.x.abs() + reach) * QUERY_REACH_SLACK_REL;
            let reach_y = reach + (center.y.abs() + reach) * QUERY_REACH_SLACK_REL;
            let reach_x = reach_x + QUERY_REACH_SLACK_ABS;
            let reach_y = reach_y + QUERY_REACH_SLACK_ABS;
            (
                self.cell_of(Vec2::new(center.x - reach_x, center.y - reach_y)),
                self.cell_of(Vec2::new(center.x + reach_x, center.y + reach_y)),
            )
        } else {
            // An infinite squared radius matches items at any finite distance, even ones
            // the f32 reach cannot express: scan everything.
            ((0, 0), (self.cells_x - 1, self.cells_y - 1))
        })
    }

    /// The slot range of every cell, in cell order (`cy * cells_x + cx`).
    pub fn cell_ranges(&self) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        self.cell_start
            .windows(2)
            .map(|w| w[0] as usize..w[1] as usize)
    }

    /// Calls `f` for exactly the items with `bounds.contains(pos)`, in deterministic order.
    /// Does not allocate.
    pub fn for_each_in_box(&self, bounds: Aabb, mut f: impl FnMut(Vec2, T)) {
        // Also rejects NaN: `contains` would be false for every item.
        if !(bounds.min.x < bounds.max.x && bounds.min.y < bounds.max.y) {
            return;
        }
        // The cell mapping is monotonic, so min..=max cells cover every contained position.
        let (cx0, cy0) = self.cell_of(bounds.min);
        let (cx1, cy1) = self.cell_of(bounds.max);
        self.for_each_row_range(cx0, cy0, cx1, cy1, |range| {
            let start = range.start;
            for (i, &p) in self.positions[range].iter().enumerate() {
                if bounds.contains(p) {
                    f(p, self.values[start + i]);
                }
            }
        });
    }

    /// The cell `(cx, cy)` holding position `p`, clamped to the grid (NaN goes to 0).
    #[inline]
    pub fn cell_of(&self, p: Vec2) -> (u32, u32) {
        // `as u32` saturates (negative and NaN to 0), then `min` clamps the high side: the
        // mapping is monotonic in each coordinate, which is what makes queries exact.
        let cx = ((p.x - self.bounds.min.x) * self.cells_per_m) as u32;
        let cy = ((p.y - self.bounds.min.y) * self.cells_per_m) as u32;
        (cx.min(self.cells_x - 1), cy.min(self.cells_y - 1))
    }

    /// Cells along x and y.
    pub fn dims(&self) -> (u32, u32) {
        (self.cells_x, self.cells_y)
    }

    /// The cell edge length.
    pub fn cell_size_m(&self) -> f32 {
        self.cell_size_m
    }

    /// The bounds the grid was built over.
    pub fn bounds(&self) -> Aabb {
        self.bounds
    }

    /// The positions and values of cell `(cx, cy)`'s items in insertion order; empty for a
    /// cell outside the grid.
    pub fn cell_items(&self, cx: u32, cy: u32) -> (&[Vec2], &[T]) {
        let range = self.cell_range(cx, cy);
        (&self.positions[range.clone()], &self.values[range])
    }

    /// The slots (indices into [`SpatialGrid::positions`] and [`SpatialGrid::values`]) of
    /// one cell's items (empty for a cell out
    /// of range). Valid until the next rebuild.
    pub fn cell_range(&self, cx: u32, cy: u32) -> std::ops::Range<usize> {
        if cx >= self.cells_x || cy >= self.cells_y {
            return 0..0;
        }
        let c = cy as usize * self.cells_x as usize + cx as usize;
        self.cell_start[c] as usize..self.cell_start[c + 1] as usize
    }

    /// All items' positions, sorted by cell (row-major), insertion order within a cell.
    pub fn positions(&self) -> &[Vec2] {
        &self.positions
    }

    /// All items' values, in the order of [`SpatialGrid::positions`].
    pub fn values(&self) -> &[T] {
        &self.values
    }

    #[inline]
    fn cell_idx(&self, p: Vec2) -> u32 {
        let (cx, cy) = self.cell_of(p);
        // Cannot overflow: cy < cells_y, cx < cells_x and cells_x * cells_y <= GRID_CELLS_MAX.
        cy * self.cells_x + cx
    }

    /// Calls `f` with the slot range of each row of cells `cx0..=cx1` (contiguous in
    /// the sorted arrays, since cells are stored row-major), rows `cy0..=cy1`.
    fn for_each_row_range(
        &self,
        cx0: u32,
        cy0: u32,
        cx1: u32,
        cy1: u32,
        mut f: impl FnMut(std::ops::Range<usize>),
    ) {
        debug_assert!(cx0 <= cx1 && cx1 < self.cells_x);
        debug_assert!(cy0 <= cy1 && cy1 < self.cells_y);
        let cells_x = self.cells_x as usize;
        for cy in cy0 as usize..=cy1 as usize {
            let row = cy * cells_x;
            let lo = self.cell_start[row + cx0 as usize] as usize;
            let hi = self.cell_start[row + cx1 as usize + 1] as usize;
            f(lo..hi);
        }
    }
}

mod splice;

#[cfg(test)]
mod tests;
