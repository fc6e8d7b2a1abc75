//! Architecture invariant: the server crate is in layers, and no module imports one above
//! it (so there is no import circle). Checked on the source: every `crate::<module>` path
//! in `server/src` is an edge of the module graph.
//!
//! From the top: the entry points (`serve`, `cli`, `bots`), the faces (`admin`, `net`),
//! the services (`control`, `reload`, `placement`, `sim`, `cluster_sim`,
//! `balance_report`, `chat`), the tick driver
//! (`node`), the edges (`cluster`, `directory`, `economy`, `feed`, `players`, `snapshots`)
//! and the leaves (`auth`,
//! `local`, `map`, `views`). A module may use its own layer (without a circle) and those below.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, top first.
const LAYERS: &[&[&str]] = &[
    &["main", "lib", "serve", "cli", "bots", "settings"],
    &["admin", "net"],
    &[
        "control",
        "reload",
        "placement",
        "sim",
        "cluster_sim",
        "balance_report",
        "chat",
    ],
    &["node"],
    &[
        "cluster",
        "directory",
        "economy",
        "feed",
        "players",
        "snapshots",
    ],
    &["auth", "local", "map", "views"],
];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&module))
        .unwrap_or_else(|| panic!("module {module} is in no layer: add it to LAYERS"))
}

/// Top-level module -> the top-level modules its files name with `crate::`.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap();
            let top = relative
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let edges = graph.entry(top.clone()).or_default();
            for (at, _) in text.match_indices("crate::") {
                let name: String = text[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != top && name != "tessera_server" {
                    edges.insert(name);
                }
            }
        }
    }
    graph
}

#[test]
fn the_server_is_in_layers_without_import_circles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("server/src");
    let graph = graph(&src);
    let mut upward = Vec::new();
    for (module, uses) in &graph {
        for used in uses {
            if !graph.contains_key(used) {
                continue; // Not a module (a crate-level item re-exported, say).
            }
            if layer_of(used) < layer_of(module) {
                upward.push(format!("{module} -> {used}"));
            }
        }
    }
    assert!(upward.is_empty(), "imports of a layer above: {upward:?}");
    // Within a layer: no circle (a depth-first search for a back edge).
    fn visit<'a>(
        module: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(module) {
            return;
        }
        if let Some(at) = path.iter().position(|m| *m == module) {
            panic!(
                "import circle: {}",
                path[at..].join(" -> ") + " -> " + module
            );
        }
        path.push(module);
        for used in graph.get(module).into_iter().flatten() {
            if graph.contains_key(used) {
                visit(used, graph, path, done);
            }
        }
        path.pop();
        done.insert(module);
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        visit(module, &graph, &mut Vec::new(), &mut done);
    }
}

#[test]
fn no_server_file_is_over_800_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("server/src");
    let mut long = Vec::new();
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let lines = std::fs::read_to_string(&path).unwrap().lines().count();
                if lines > 800 {
                    long.push(format!("{}: {lines}", path.display()));
                }
            }
        }
    }
    assert!(long.is_empty(), "split these: {long:?}");
}
