//! Tests of the grid: queries against brute force, and rebuilds and splices against a
//! fresh sort.

use super::*;
use proptest::prelude::*;

fn region(w: f32, h: f32) -> Aabb {
    Aabb::new(Vec2::ZERO, Vec2::new(w, h))
}

fn radius_ids(g: &SpatialGrid<u32>, c: Vec2, r: f32) -> Vec<u32> {
    let mut out = Vec::new();
    g.for_each_in_radius(c, r, |_, id| out.push(id));
    out.sort_unstable();
    out
}

fn box_ids(g: &SpatialGrid<u32>, b: Aabb) -> Vec<u32> {
    let mut out = Vec::new();
    g.for_each_in_box(b, |_, id| out.push(id));
    out.sort_unstable();
    out
}

fn brute_radius(pts: &[Vec2], c: Vec2, r: f32) -> Vec<u32> {
    (0u32..)
        .zip(pts)
        .filter(|(_, p)| p.distance_squared(c) <= r * r)
        .map(|(i, _)| i)
        .collect()
}

fn brute_box(pts: &[Vec2], b: Aabb) -> Vec<u32> {
    (0u32..)
        .zip(pts)
        .filter(|(_, p)| b.contains(**p))
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn constructor_rejects_bad_input() {
    let b = region(100.0, 100.0);
    for cell in [0.0, -1.0, f32::NAN, f32::INFINITY, 1e-40] {
        assert!(
            matches!(
                SpatialGrid::<u32>::new(b, cell),
                Err(GridError::InvalidCellSize { .. })
            ),
            "{cell}"
        );
    }
    let e = SpatialGrid::<u32>::new(region(1e6, 1e6), 0.1).unwrap_err();
    assert!(matches!(e, GridError::TooManyCells { .. }), "{e}");
    assert!(e.to_string().contains("cell_size_m 0.1"), "{e}");
    // Exactly at the limit is fine, one more row is not.
    assert!(SpatialGrid::<u32>::new(region(2048.0, 2048.0), 1.0).is_ok());
    assert!(SpatialGrid::<u32>::new(region(2048.0, 2049.0), 1.0).is_err());
    // Width overflows f32.
    let huge = Aabb::new(Vec2::new(-3e38, 0.0), Vec2::new(3e38, 1.0));
    assert!(matches!(
        SpatialGrid::<u32>::new(huge, 1e30),
        Err(GridError::TooManyCells { .. })
    ));
    for bad in [
        Aabb::new(Vec2::ZERO, Vec2::ZERO),
        Aabb::new(Vec2::new(5.0, 0.0), Vec2::new(1.0, 10.0)),
        Aabb::new(Vec2::ZERO, Vec2::new(f32::INFINITY, 1.0)),
        Aabb::new(Vec2::new(f32::NAN, 0.0), Vec2::new(1.0, 1.0)),
    ] {
        assert!(
            matches!(
                SpatialGrid::<u32>::new(bad, 1.0),
                Err(GridError::InvalidBounds { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn dims_round_up() {
    let g = SpatialGrid::<u32>::new(region(100.0, 33.0), 16.0).unwrap();
    assert_eq!(g.dims(), (7, 3));
    assert_eq!(g.cell_size_m(), 16.0);
    assert_eq!(g.cell_of(Vec2::new(99.9, 32.9)), (6, 2));
    assert_eq!(g.cell_of(Vec2::new(-5.0, 1e9)), (0, 2));
    assert_eq!(g.cell_of(Vec2::new(f32::NAN, f32::NAN)), (0, 0));
}

#[test]
fn empty_grid_queries_are_empty() {
    let mut g = SpatialGrid::<u32>::new(region(100.0, 100.0), 10.0).unwrap();
    assert!(g.is_empty());
    assert!(radius_ids(&g, Vec2::new(50.0, 50.0), 1e3).is_empty());
    assert!(box_ids(&g, region(100.0, 100.0)).is_empty());
    g.rebuild([(Vec2::new(1.0, 1.0), 7)]);
    assert_eq!(g.len(), 1);
    g.rebuild([]);
    assert!(g.is_empty());
    assert!(radius_ids(&g, Vec2::new(1.0, 1.0), f32::INFINITY).is_empty());
    assert!(g.cell_items(0, 0).0.is_empty());
}

#[test]
fn rebuild_replaces_contents() {
    let mut g = SpatialGrid::<u32>::new(region(100.0, 100.0), 10.0).unwrap();
    g.rebuild((0..50).map(|i| (Vec2::new(i as f32 * 2.0, 5.0), i)));
    assert_eq!(g.len(), 50);
    g.rebuild((100..110).map(|i| (Vec2::new(50.0, (i - 100) as f32 * 9.0), i)));
    assert_eq!(g.len(), 10);
    assert_eq!(
        box_ids(&g, region(100.0, 100.0)),
        (100..110).collect::<Vec<_>>()
    );
    assert_eq!(
        radius_ids(&g, Vec2::new(50.0, 50.0), 200.0),
        (100..110).collect::<Vec<_>>()
    );
    // Growing again after shrinking.
    g.rebuild((0..200).map(|i| (Vec2::new((i % 100) as f32, 1.0), i)));
    assert_eq!(
        box_ids(&g, region(100.0, 100.0)),
        (0..200).collect::<Vec<_>>()
    );
}

#[test]
fn cells_keep_insertion_order_and_out_of_range_is_empty() {
    let mut g = SpatialGrid::<u32>::new(region(40.0, 40.0), 10.0).unwrap();
    let pts = [
        (15.0, 15.0),
        (1.0, 1.0),
        (12.0, 19.0),
        (-50.0, -50.0),
        (11.0, 11.0),
    ];
    g.rebuild((0u32..).zip(pts).map(|(i, (x, y))| (Vec2::new(x, y), i)));
    let ids = |cx, cy| g.cell_items(cx, cy).1.to_vec();
    assert_eq!(ids(1, 1), [0, 2, 4]);
    assert_eq!(ids(0, 0), [1, 3]);
    assert!(g.cell_items(4, 0).1.is_empty());
    assert!(g.cell_items(0, u32::MAX).1.is_empty());
    // Visiting order is deterministic: row by row, cell by cell, insertion order.
    let mut seen = Vec::new();
    g.for_each_in_radius(Vec2::new(10.0, 10.0), 100.0, |_, id| seen.push(id));
    assert_eq!(seen, [1, 3, 0, 2, 4]);
}

#[test]
fn nan_positions_do_not_panic_and_never_match() {
    let mut g = SpatialGrid::<u32>::new(region(40.0, 40.0), 10.0).unwrap();
    g.rebuild([
        (Vec2::new(f32::NAN, f32::NAN), 0),
        (Vec2::new(f32::NAN, 25.0), 1),
        (Vec2::new(5.0, 5.0), 2),
    ]);
    assert_eq!(g.len(), 3);
    assert_eq!(g.cell_items(0, 0).0.len(), 2);
    assert_eq!(radius_ids(&g, Vec2::new(0.0, 0.0), f32::INFINITY), [2]);
    assert_eq!(
        box_ids(
            &g,
            Aabb::new(Vec2::new(-1e30, -1e30), Vec2::new(1e30, 1e30))
        ),
        [2]
    );
    assert!(radius_ids(&g, Vec2::new(f32::NAN, 0.0), 10.0).is_empty());
    assert!(radius_ids(&g, Vec2::new(5.0, 5.0), f32::NAN).is_empty());
}

#[test]
fn panicking_iterator_keeps_previous_contents() {
    let mut g = SpatialGrid::<u32>::new(region(40.0, 40.0), 10.0).unwrap();
    g.rebuild([(Vec2::new(5.0, 5.0), 1), (Vec2::new(35.0, 35.0), 2)]);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        g.rebuild((0..10).map(|i| {
            assert!(i < 5, "boom");
            (Vec2::new(20.0, 20.0), 100 + i)
        }));
    }));
    assert!(r.is_err());
    assert_eq!(box_ids(&g, region(40.0, 40.0)), [1, 2]);
}

/// Compares everything a reader sees, slots included, with a grid sorted afresh.
fn assert_same_as_fresh(g: &SpatialGrid<u32>, items: &[(Vec2, u32)]) {
    let mut fresh = SpatialGrid::new(g.bounds(), g.cell_size_m()).unwrap();
    fresh.rebuild(items.iter().copied());
    let bits = |ps: &[Vec2]| {
        ps.iter()
            .map(|p| (p.x.to_bits(), p.y.to_bits()))
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(g.positions()), bits(fresh.positions()));
    assert_eq!(g.values(), fresh.values());
    assert_eq!(g.inserted_slots(), fresh.inserted_slots());
    assert!(g.cell_ranges().eq(fresh.cell_ranges()));
}

#[test]
fn rebuilds_match_a_fresh_sort() {
    let mut g = SpatialGrid::<u32>::new(region(40.0, 40.0), 10.0).unwrap();
    let mut items: Vec<(Vec2, u32)> = (0..20)
        .map(|i| {
            (
                Vec2::new((i * 7 % 40) as f32 + 0.5, (i * 3 % 40) as f32 + 0.5),
                i,
            )
        })
        .collect();
    g.rebuild(items.iter().copied());
    assert_same_as_fresh(&g, &items);
    // Nudged within their cells, one value changed.
    for (p, _) in &mut items {
        p.x += 0.25;
    }
    items[3].1 = 99;
    g.rebuild(items.iter().copied());
    assert_same_as_fresh(&g, &items);
    // One item crosses into another cell.
    items[5].0.x = (items[5].0.x + 10.0) % 40.0;
    g.rebuild(items.iter().copied());
    assert_same_as_fresh(&g, &items);
    // One fewer item.
    items.pop();
    g.rebuild(items.iter().copied());
    assert_same_as_fresh(&g, &items);
    // A panicking rebuild leaves the contents as they were; the next one is whole.
    let before = g.values().to_vec();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        g.rebuild(
            items
                .iter()
                .copied()
                .inspect(|&(_, id)| assert!(id < 5, "boom")),
        );
    }));
    assert!(r.is_err());
    assert_eq!(g.values(), &before[..]);
    g.rebuild(items.iter().copied());
    assert_same_as_fresh(&g, &items);
}

fn coord() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -150.0f32..650.0,
        // Exact cell edges and the region edges.
        2 => (-4i32..40).prop_map(|k| k as f32 * 16.0),
    ]
}

fn point() -> impl Strategy<Value = Vec2> {
    (coord(), coord()).prop_map(|(x, y)| Vec2::new(x, y))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn successive_rebuilds_match_a_fresh_sort(
        start in prop::collection::vec(point(), 0..200),
        steps in prop::collection::vec(
            prop::collection::vec((-2.0f32..2.0, -2.0f32..2.0, 0u32..4), 0..200), 1..6),
    ) {
        let mut g = SpatialGrid::new(region(500.0, 500.0), 16.0).unwrap();
        let mut items: Vec<(Vec2, u32)> = (0u32..).zip(start).map(|(i, p)| (p, i)).collect();
        g.rebuild(items.iter().copied());
        for step in steps {
            // Small moves (most stay in their cell), some values changed.
            for ((p, v), &(dx, dy, bump)) in items.iter_mut().zip(&step) {
                *p = Vec2::new(p.x + dx, p.y + dy);
                if bump == 0 {
                    *v += 1;
                }
            }
            g.rebuild(items.iter().copied());
            assert_same_as_fresh(&g, &items);
        }
    }

    #[test]
    fn queries_match_brute_force(
        min in (-100.0f32..100.0, -100.0f32..100.0),
        size in (0.5f32..500.0, 0.5f32..500.0),
        cell_size_m in prop_oneof![0.5f32..64.0, Just(16.0f32), 100.0f32..1000.0],
        pts in prop::collection::vec(point(), 0..300),
        circles in prop::collection::vec((point(), prop_oneof![
            8 => 0.0f32..200.0, 1 => Just(0.0f32), 1 => -50.0f32..0.0]), 1..20),
        boxes in prop::collection::vec((point(), point()), 1..20),
    ) {
        let bounds = Aabb::new(
            Vec2::new(min.0, min.1),
            Vec2::new(min.0 + size.0, min.1 + size.1),
        );
        let mut g = SpatialGrid::new(bounds, cell_size_m).unwrap();
        // Insert some junk first to check that a rebuild forgets it.
        g.rebuild((0..50u32).map(|i| (Vec2::new(i as f32, i as f32), 10_000 + i)));
        g.rebuild((0u32..).zip(&pts).map(|(i, &p)| (p, i)));
        prop_assert_eq!(g.len(), pts.len());
        let (w, h) = g.dims();
        let n_in_cells: usize =
            (0..h).flat_map(|cy| (0..w).map(move |cx| (cx, cy)))
                .map(|(cx, cy)| g.cell_items(cx, cy).0.len()).sum();
        prop_assert_eq!(n_in_cells, pts.len());
        for &(c, r) in &circles {
            prop_assert_eq!(radius_ids(&g, c, r), brute_radius(&pts, c, r), "{:?} {}", c, r);
        }
        // Centred on an item, radius equal to the distance to another one: boundary cases.
        for pair in pts.windows(2) {
            let r = pair[0].distance_squared(pair[1]).sqrt();
            prop_assert_eq!(radius_ids(&g, pair[0], r), brute_radius(&pts, pair[0], r));
        }
        for &(a, b) in &boxes {
            let bx = Aabb::new(a, b);
            prop_assert_eq!(box_ids(&g, bx), brute_box(&pts, bx), "{:?}", bx);
            if let Some(&p) = pts.first() {
                // A box whose min edge is exactly an item position.
                let bx = Aabb::new(p, Vec2::new(p.x + 20.0, p.y + 20.0));
                prop_assert_eq!(box_ids(&g, bx), brute_box(&pts, bx));
            }
        }
    }
}

/// Compares a spliced grid with one sorted afresh from `items` in id order, which is the
/// order a splice keeps within a cell (the key is the value itself).
fn assert_same_as_sorted_by_id(
    g: &SpatialGrid<u32>,
    items: &std::collections::BTreeMap<u32, Vec2>,
) {
    let mut fresh = SpatialGrid::new(g.bounds(), g.cell_size_m()).unwrap();
    fresh.rebuild(items.iter().map(|(&id, &p)| (p, id)));
    let bits = |ps: &[Vec2]| {
        ps.iter()
            .map(|p| (p.x.to_bits(), p.y.to_bits()))
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(g.positions()), bits(fresh.positions()));
    assert_eq!(g.values(), fresh.values());
    assert!(g.cell_ranges().eq(fresh.cell_ranges()));
    for slot in 0..g.len() {
        assert_eq!(g.cell_of_slot(slot), g.cell_index(g.positions()[slot]));
    }
}

#[test]
fn splice_inserts_in_key_order_and_lists_the_touched_cells() {
    let mut g = SpatialGrid::<u32>::new(region(40.0, 40.0), 10.0).unwrap();
    let at = |x: f32, y: f32| Vec2::new(x, y);
    g.splice(
        &[],
        [(at(1.0, 1.0), 7), (at(2.0, 2.0), 3), (at(35.0, 35.0), 5)],
        |&v| v,
    );
    assert_eq!(g.values(), &[3, 7, 5]);
    assert_eq!(g.touched_cells(), &[0, 15]);
    // 7 leaves cell 0 for cell 1, 4 arrives in cell 0 between... nothing: after 3.
    g.splice(&[1], [(at(12.0, 1.0), 7), (at(3.0, 3.0), 4)], |&v| v);
    assert_eq!(g.values(), &[3, 4, 7, 5]);
    assert_eq!(g.touched_cells(), &[0, 1]);
    assert_eq!(g.slots_of_cell(0), 0..2);
    assert_eq!(g.slots_of_cell(1), 2..3);
    assert_eq!(g.slots_of_cell(15), 3..4);
    assert_eq!(g.cell_of_slot(3), 15);
    g.set_position(0, at(9.0, 9.0));
    assert_eq!(g.positions()[0], at(9.0, 9.0));
    // Everything out.
    g.splice(&[3, 0, 2, 1], [], |&v| v);
    assert!(g.is_empty());
    assert!(g.cell_ranges().all(|r| r.is_empty()));
    // A rebuild after splices sorts afresh.
    g.rebuild([(at(1.0, 1.0), 1)]);
    assert_eq!(g.values(), &[1]);
    assert_eq!(g.inserted_slots(), &[0]);
}

#[test]
#[should_panic(expected = "departs twice")]
fn splice_refuses_a_slot_departing_twice() {
    let mut g = SpatialGrid::<u32>::new(region(40.0, 40.0), 10.0).unwrap();
    g.splice(&[], [(Vec2::new(1.0, 1.0), 1)], |&v| v);
    g.splice(&[0, 0], [], |&v| v);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Items move (within and across cells), leave and arrive over several splices; the
    /// grid always equals a fresh sort in id order, and cells not listed as touched keep
    /// their items.
    #[test]
    fn splices_match_a_fresh_sort_in_key_order(
        start in prop::collection::vec(point(), 0..150),
        steps in prop::collection::vec(
            prop::collection::vec((0u32..200, -20.0f32..20.0, -20.0f32..20.0, 0u32..8), 0..60),
            1..6),
    ) {
        let mut g = SpatialGrid::<u32>::new(region(500.0, 500.0), 16.0).unwrap();
        let mut items: std::collections::BTreeMap<u32, Vec2> =
            (0u32..).zip(start).collect();
        g.splice(&[], items.iter().map(|(&id, &p)| (p, id)), |&v| v);
        assert_same_as_sorted_by_id(&g, &items);
        for step in steps {
            let before: Vec<(std::ops::Range<usize>, Vec<u32>)> = (0..g.dims().0 * g.dims().1)
                .map(|c| (g.slots_of_cell(c), g.values()[g.slots_of_cell(c)].to_vec()))
                .collect();
            let slot_of = |g: &SpatialGrid<u32>, id: u32| g.values().iter().position(|&v| v == id);
            let mut departures = Vec::new();
            let mut arrivals = Vec::new();
            let mut edited = std::collections::BTreeSet::new();
            for (id, dx, dy, action) in step {
                if !edited.insert(id) {
                    continue;
                }
                match (items.get(&id).copied(), action) {
                    // Leaves.
                    (Some(_), 0) => {
                        departures.push(slot_of(&g, id).unwrap() as u32);
                        items.remove(&id);
                    }
                    // Moves: in place if it stays in its cell.
                    (Some(p), _) => {
                        let to = Vec2::new(p.x + dx, p.y + dy);
                        let slot = slot_of(&g, id).unwrap();
                        if g.cell_index(to) == g.cell_of_slot(slot) {
                            g.set_position(slot, to);
                        } else {
                            departures.push(slot as u32);
                            arrivals.push((to, id));
                        }
                        items.insert(id, to);
                    }
                    // Arrives.
                    (None, _) => {
                        let to = Vec2::new(250.0 + dx * 12.0, 250.0 + dy * 12.0);
                        arrivals.push((to, id));
                        items.insert(id, to);
                    }
                }
            }
            g.splice(&departures, arrivals, |&v| v);
            assert_same_as_sorted_by_id(&g, &items);
            for (cell, (_, was)) in (0u32..).zip(&before) {
                if g.touched_cells().binary_search(&cell).is_err() {
                    prop_assert_eq!(&g.values()[g.slots_of_cell(cell)], &was[..]);
                }
            }
        }
    }
}
