//! `world.toml`: the world's size and rate, the spatial grid, interest management, limits
//! and the region layout.

use toml::Spanned;
use toml::de::DeTable;

use super::balance::BalanceIndex;
use super::reader::{At, Item, SourceFile, Table};
use super::schema::{InterestConfig, RegionDef, WorldConfig, WorldLimits};
use super::spec::{Case, Section, Spec, Variants};
use super::suggest;
use super::{GRID_CELLS_MAX, NAME_CHARS_MAX, REGIONS_MAX, is_display_name};
use crate::ids::RegionId;
use crate::math::{Aabb, Vec2};

/// Largest world edge, in metres.
const WORLD_EDGE_M_MAX: f64 = 1_000_000.0;

/// Most columns (or rows) of a grid layout.
const GRID_EDGE_REGIONS_MAX: u32 = 4096;

/// `world.toml`.
pub(super) const FILE: Section = Section::of(
    "The shape of the world: size and tick rate, spatial grid, interest management, \
     per-region limits and the regions. Owned by level design. Units: metres (m), hertz \
     (Hz). The world is a plane, x east and y north, spanning [0, size_m.x) x [0, size_m.y).",
    &[
        Spec::table("world", &WORLD),
        Spec::table("grid", &GRID),
        Spec::table("interest", &INTEREST),
        Spec::table("limits", &LIMITS),
        Spec::table("regions", &REGIONS),
    ],
);

const WORLD: Section = Section::of(
    "The world's name, size and rate.",
    &[
        Spec::text(
            "name",
            "a world name such as \"default\"",
            "Shown in logs and the admin API. 1 to 64 characters, no control characters.",
        ),
        Spec::vec2("size_m", 1.0, WORLD_EDGE_M_MAX, "World extent in metres."),
        Spec::int("tick_hz", 1, 120, "Simulation rate in ticks per second."),
    ],
);

const GRID: Section = Section::of(
    "The spatial grid.",
    &[Spec::num(
        "cell_size_m",
        1.0,
        1024.0,
        "Edge of one spatial-grid cell (m), roughly the interest radius divided by 4 to 8. \
         A region may need at most 4_194_304 cells: ceil(width / cell_size_m) * \
         ceil(height / cell_size_m).",
    )],
);

const INTEREST: Section = Section::of(
    "What each player's client is told about.",
    &[
        Spec::num(
            "enter_radius_m",
            1.0,
            10_000.0,
            "An entity becomes visible when it comes this close (m).",
        ),
        Spec::num(
            "leave_radius_m",
            1.0,
            10_000.0,
            "A visible entity stays visible until it is farther than this (m); at least \
             enter_radius_m, so the band between the two stops flicker at the edge.",
        ),
        Spec::int(
            "visible_entities_max",
            1,
            65_536,
            "Most entities one player sees at once; when more qualify, the nearest are kept.",
        ),
        Spec::num(
            "wake_radius_m",
            0.0,
            10_000.0,
            "NPCs farther than this from every player sleep: no AI, no movement (m).",
        ),
    ],
);

const LIMITS: Section = Section::of(
    "Per-region bounds on work and memory. Each key is optional, with the default shown.",
    &[
        Spec::int_or(
            "entities_per_region_max",
            1,
            1_000_000,
            WorldLimits::DEFAULT.entities_per_region_max,
            "Spawns and handoffs beyond this many entities are refused.",
        ),
        Spec::int_or(
            "players_per_region_max",
            1,
            100_000,
            WorldLimits::DEFAULT.players_per_region_max,
            "Joins beyond this many players are refused.",
        ),
        Spec::int_or(
            "inputs_per_tick_max",
            1,
            1_000_000,
            WorldLimits::DEFAULT.inputs_per_tick_max,
            "Client inputs beyond this many in one tick are dropped and counted.",
        ),
        Spec::int_or(
            "handoffs_per_tick_max",
            1,
            100_000,
            WorldLimits::DEFAULT.handoffs_per_tick_max,
            "Incoming handoffs applied per tick; the rest wait for the next tick.",
        ),
    ],
);

/// What a region's `spawn_table` must be.
const SPAWN_TABLE_EXPECTED: &str = "the name of a [spawn_tables.NAME] of balance.toml";

const REGIONS: Section = Section {
    doc: "How the world is cut into regions, each simulated on its own (at most 4096).",
    keys: &[
        Spec::choice(
            "layout",
            &["grid", "list"],
            "\"grid\": columns x rows equal regions tiling the world; \"list\": explicit \
             [[regions.region]] tables.",
        ),
        Spec::int(
            "columns",
            1,
            GRID_EDGE_REGIONS_MAX,
            "Number of regions along x (grid layout). columns * rows is at most 4096.",
        ),
        Spec::int(
            "rows",
            1,
            GRID_EDGE_REGIONS_MAX,
            "Number of regions along y (grid layout). columns * rows is at most 4096.",
        ),
        Spec::text(
            "spawn_table",
            SPAWN_TABLE_EXPECTED,
            "NPC population of every region (grid layout): a [spawn_tables.NAME] of \
             balance.toml, keeping at most [limits] entities_per_region_max NPCs.",
        ),
        Spec::tables(
            "region",
            &REGION,
            (1, REGIONS_MAX),
            "one [[regions.region]] table per region, with id, min, max and spawn_table",
            "The regions (list layout): inside the world, not overlapping; gaps are allowed \
             (no region simulates them).",
        ),
    ],
    variants: Some(Variants {
        key: "layout",
        cases: &[
            Case {
                value: "grid",
                doc: "columns x rows equal regions tiling the whole world. Ids run 1, 2, ... \
                      row by row from the region at (0, 0) eastwards, then northwards; \
                      players spawn at each region's centre.",
                keys: &["columns", "rows", "spawn_table"],
            },
            Case {
                value: "list",
                doc: "explicit regions, one [[regions.region]] table each.",
                keys: &["region"],
            },
        ],
    }),
};

const REGION: Section = Section::of(
    "One region of a list layout.",
    &[
        Spec::int("id", 1, RegionId::MAX, "Unique region id."),
        Spec::vec2(
            "min",
            0.0,
            WORLD_EDGE_M_MAX,
            "Inclusive corner (m), inside the world.",
        ),
        Spec::vec2(
            "max",
            0.0,
            WORLD_EDGE_M_MAX,
            "Exclusive corner (m), greater than min on both axes, inside the world.",
        ),
        Spec::text(
            "spawn_table",
            SPAWN_TABLE_EXPECTED,
            "NPC population: a [spawn_tables.NAME] of balance.toml.",
        ),
        Spec::vec2_opt(
            "spawn_point",
            0.0,
            WORLD_EDGE_M_MAX,
            "Where players spawn (m), inside the region. Default: the region's centre.",
        ),
    ],
);

impl WorldLimits {
    /// The values used for keys absent from `[limits]`.
    ///
    /// 200_000 entities and 2_000 players per region, 8_192 inputs and 1_024 handoffs per
    /// tick.
    pub const DEFAULT: WorldLimits = WorldLimits {
        entities_per_region_max: 200_000,
        players_per_region_max: 2_000,
        inputs_per_tick_max: 8_192,
        handoffs_per_tick_max: 1_024,
    };
}

/// Reads `world.toml`. `index` describes balance.toml's spawn tables; `None` when that
/// file did not parse (spawn-table names are then not checked).
pub(super) fn read(
    file: &SourceFile<'_>,
    doc: &Spanned<DeTable<'_>>,
    index: Option<&BalanceIndex>,
) -> Option<WorldConfig> {
    let mut root = Table::root(file, &FILE, doc);

    let (name, size_m, tick_hz) = match root.table("world") {
        Some(mut t) => {
            let name = t
                .text("name")
                .and_then(|(name, at)| {
                    if is_display_name(name) {
                        Some(name.to_owned())
                    } else {
                        file.error(
                            at,
                            format!(
                                "name must be 1 to {NAME_CHARS_MAX} characters without control characters, got {name:?}"
                            ),
                        );
                        None
                    }
                });
            let size_m = t.vec2("size_m").map(|(v, _)| v);
            let tick_hz = t.int("tick_hz");
            t.finish();
            (name, size_m, tick_hz)
        }
        None => (None, None, None),
    };

    let cell_size_m = root.table("grid").and_then(|mut t| {
        let cell = t.num_at("cell_size_m");
        t.finish();
        cell
    });

    let interest = root.table("interest").and_then(|mut t| {
        let enter = t.num("enter_radius_m");
        let leave = t.num_at("leave_radius_m");
        let visible = t.int("visible_entities_max");
        let wake = t.num("wake_radius_m");
        t.finish();
        let (enter, (leave, leave_at)) = (enter?, leave?);
        if leave < enter {
            file.error(
                leave_at,
                format!("leave_radius_m must be at least enter_radius_m ({enter}), got {leave}"),
            );
            return None;
        }
        Some(InterestConfig {
            enter_radius_m: enter,
            leave_radius_m: leave,
            visible_entities_max: visible?,
            wake_radius_m: wake?,
        })
    });

    let limits = root.table("limits").and_then(|mut t| {
        let entities = t.int("entities_per_region_max");
        let players = t.int("players_per_region_max");
        let inputs = t.int("inputs_per_tick_max");
        let handoffs = t.int("handoffs_per_tick_max");
        t.finish();
        Some(WorldLimits {
            entities_per_region_max: entities?,
            players_per_region_max: players?,
            inputs_per_tick_max: inputs?,
            handoffs_per_tick_max: handoffs?,
        })
    });

    let ctx = RegionCtx {
        file,
        size_m,
        cell_size_m,
        index,
        entities_max: limits.map(|l| l.entities_per_region_max),
    };
    let regions = root.table("regions").and_then(|t| read_regions(&ctx, t));
    root.finish();

    Some(WorldConfig {
        name: name?,
        size_m: size_m?,
        tick_hz: tick_hz?,
        cell_size_m: cell_size_m?.0,
        interest: interest?,
        limits: limits?,
        regions: regions?,
    })
}

/// What region checks need from the rest of the configuration; `None` fields failed to
/// load (their error is already reported) and the checks using them are skipped.
struct RegionCtx<'a> {
    file: &'a SourceFile<'a>,
    size_m: Option<Vec2>,
    cell_size_m: Option<(f32, At<'a>)>,
    index: Option<&'a BalanceIndex>,
    entities_max: Option<u32>,
}

/// A region as read, before the cross-region checks.
struct Candidate<'a> {
    id: u32,
    id_at: At<'a>,
    bounds: Aabb,
    spawn_point: Vec2,
    spawn_table: Option<usize>,
}

fn read_regions<'a>(ctx: &RegionCtx<'a>, mut t: Table<'a>) -> Option<Vec<RegionDef>> {
    let Some((layout, _)) = t.choice("layout") else {
        // Without a layout the allowed keys are unknown.
        t.accept_all();
        t.finish();
        return None;
    };
    let is_grid = layout == "grid";
    let candidates = if is_grid {
        read_grid(ctx, &mut t)
    } else {
        read_list(ctx, &mut t)
    };
    t.finish();
    let candidates = candidates?;
    check_regions(ctx, &candidates, is_grid)?;
    let mut regions = candidates
        .into_iter()
        .map(|c| {
            Some(RegionDef {
                id: RegionId(c.id),
                bounds: c.bounds,
                spawn_point: c.spawn_point,
                spawn_table: c.spawn_table?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    regions.sort_by_key(|r| r.id);
    Some(regions)
}

/// `layout = "grid"`: `columns` x `rows` equal regions tiling the world, ids row-major
/// from the region at the origin, spawn points at the centres.
fn read_grid<'a>(ctx: &RegionCtx<'a>, t: &mut Table<'a>) -> Option<Vec<Candidate<'a>>> {
    let columns = t.int("columns");
    let rows = t.int("rows");
    let spawn_table = t
        .text("spawn_table")
        .and_then(|(name, at)| spawn_table(ctx, name, at));
    let (columns, rows) = (columns?, rows?);
    let n_regions = u64::from(columns) * u64::from(rows);
    if n_regions > REGIONS_MAX as u64 {
        ctx.file.error(
            t.at,
            format!("columns * rows = {n_regions} regions; at most {REGIONS_MAX} are allowed"),
        );
        return None;
    }
    let size = ctx.size_m?;
    // Edges come from one formula so that neighbours share them exactly.
    let edge =
        |extent: f32, i: u32, n: u32| (f64::from(extent) * f64::from(i) / f64::from(n)) as f32;
    let mut candidates = Vec::new();
    for row in 0..rows {
        for col in 0..columns {
            let bounds = Aabb::new(
                Vec2::new(edge(size.x, col, columns), edge(size.y, row, rows)),
                Vec2::new(edge(size.x, col + 1, columns), edge(size.y, row + 1, rows)),
            );
            candidates.push(Candidate {
                id: row * columns + col + 1,
                id_at: t.at,
                bounds,
                spawn_point: bounds.center(),
                spawn_table,
            });
        }
    }
    Some(candidates)
}

/// `layout = "list"`: explicit `[[regions.region]]` tables.
fn read_list<'a>(ctx: &RegionCtx<'a>, t: &mut Table<'a>) -> Option<Vec<Candidate<'a>>> {
    let (array, array_at) = t.array("region")?;
    if array.is_empty() || array.len() > REGIONS_MAX {
        ctx.file.error(
            array_at,
            format!(
                "a list layout needs 1 to {REGIONS_MAX} regions, got {}",
                array.len()
            ),
        );
        return None;
    }
    let mut candidates = Vec::new();
    let mut ok = true;
    for (i, value) in array.iter().enumerate() {
        let label = format!("[[regions.region]] #{}", i + 1);
        let item = Item::from_spanned(value);
        let Some(mut r) = t.element("region", label, item) else {
            ok = false;
            continue;
        };
        match read_list_region(ctx, &mut r) {
            Some(c) => candidates.push(c),
            None => ok = false,
        }
        r.finish();
    }
    ok.then_some(candidates)
}

fn read_list_region<'a>(ctx: &RegionCtx<'a>, r: &mut Table<'a>) -> Option<Candidate<'a>> {
    let id = r.int_at("id");
    let min = r.vec2("min");
    let max = r.vec2("max");
    let spawn_table = r
        .text("spawn_table")
        .and_then(|(name, at)| spawn_table(ctx, name, at));
    let spawn_point = r.vec2_opt("spawn_point");
    let ((id, id_at), (min, min_at), (max, max_at)) = (id?, min?, max?);
    let bounds = Aabb::new(min, max);
    if !(min.x < max.x && min.y < max.y) {
        ctx.file.error(
            min_at,
            format!(
                "region {id} is empty: max must be greater than min on both axes, got min {} and max {}",
                show(min),
                show(max)
            ),
        );
        return None;
    }
    if let Some(size) = ctx.size_m
        && !(max.x <= size.x && max.y <= size.y)
    {
        ctx.file.error(
            max_at,
            format!(
                "region {id} extends outside the world: max is {}, the world spans [0, {}) x [0, {})",
                show(max),
                size.x,
                size.y
            ),
        );
        return None;
    }
    let spawn_point = match spawn_point? {
        Some((p, at)) => {
            if !bounds.contains(p) {
                ctx.file.error(
                    at,
                    format!(
                        "spawn_point {} of region {id} must lie inside its bounds [{}, {}) x [{}, {})",
                        show(p),
                        min.x,
                        max.x,
                        min.y,
                        max.y
                    ),
                );
                return None;
            }
            p
        }
        None => bounds.center(),
    };
    Some(Candidate {
        id,
        id_at,
        bounds,
        spawn_point,
        spawn_table,
    })
}

/// Resolves a spawn-table name against balance.toml. `None` both on error and when
/// balance.toml did not parse.
fn spawn_table(ctx: &RegionCtx<'_>, name: &str, at: At<'_>) -> Option<usize> {
    let index = ctx.index?;
    let Some(i) = index.spawn_tables.iter().position(|(n, _)| n == name) else {
        let defined: Vec<&str> = index.spawn_tables.iter().map(|(n, _)| n.as_str()).collect();
        ctx.file.error(
            at,
            format!(
                "unknown spawn table {name:?}; balance.toml defines: {}{}",
                if defined.is_empty() {
                    "none".to_owned()
                } else {
                    defined.join(", ")
                },
                suggest::did_you_mean(name, defined.iter().copied())
            ),
        );
        return None;
    };
    let n_npcs = index.spawn_tables.get(i).map_or(0, |(_, n)| *n);
    if let Some(max) = ctx.entities_max
        && n_npcs > u64::from(max)
    {
        ctx.file.error(
            at,
            format!(
                "spawn table {name:?} keeps {n_npcs} NPCs per region, more than [limits] entities_per_region_max = {max}"
            ),
        );
        return None;
    }
    Some(i)
}

/// Unique ids, pairwise disjoint bounds (both hold by construction for a grid layout) and
/// bounded grid memory.
fn check_regions(ctx: &RegionCtx<'_>, candidates: &[Candidate<'_>], is_grid: bool) -> Option<()> {
    let mut ok = true;
    let line_of = |at: At<'_>| match at {
        At::Offset(o) => ctx.file.position(o).0,
        At::Env(_) => 0,
    };
    for (i, c) in candidates.iter().enumerate().filter(|_| !is_grid) {
        for earlier in candidates.iter().take(i) {
            if earlier.id == c.id {
                ctx.file.error(
                    c.id_at,
                    format!(
                        "duplicate region id {} (first defined on line {})",
                        c.id,
                        line_of(earlier.id_at)
                    ),
                );
                ok = false;
            } else if earlier.bounds.overlaps(&c.bounds) {
                ctx.file.error(
                    c.id_at,
                    format!(
                        "region {} [{}, {}) x [{}, {}) overlaps region {} (line {}); regions must be disjoint",
                        c.id,
                        c.bounds.min.x,
                        c.bounds.max.x,
                        c.bounds.min.y,
                        c.bounds.max.y,
                        earlier.id,
                        line_of(earlier.id_at)
                    ),
                );
                ok = false;
            }
        }
    }
    if let Some((cell, cell_at)) = ctx.cell_size_m {
        for c in candidates {
            let size = c.bounds.size();
            let cells_x = (f64::from(size.x) / f64::from(cell)).ceil();
            let cells_y = (f64::from(size.y) / f64::from(cell)).ceil();
            let n_cells = cells_x * cells_y;
            if n_cells > GRID_CELLS_MAX as f64 {
                ctx.file.error(
                    if is_grid { cell_at } else { c.id_at },
                    format!(
                        "region {} needs {cells_x} x {cells_y} = {n_cells} grid cells of {cell} m, more than {GRID_CELLS_MAX}; use a larger [grid] cell_size_m or smaller regions",
                        c.id
                    ),
                );
                ok = false;
                if is_grid {
                    // A grid's regions are all alike: report once, at cell_size_m.
                    break;
                }
            }
        }
    }
    ok.then_some(())
}

fn show(v: Vec2) -> String {
    format!("({}, {})", v.x, v.y)
}
