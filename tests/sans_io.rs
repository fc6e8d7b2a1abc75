//! Architecture invariant: the simulation (`tessera-regions`), the shared vocabulary
//! (`tessera-shared`, default features) and the cluster protocol's core
//! (`tessera-cluster`) depend on no async runtime, network or database crate. Checked on the real dependency graph with `cargo tree`.

use std::process::Command;

const FORBIDDEN: &[&str] = &[
    "tokio",
    "quinn",
    "quinn-proto",
    "mongodb",
    "redis",
    "mio",
    "socket2",
    "axum",
    "hyper",
    "reqwest",
    "async-std",
];

fn normal_deps(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            package,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn regions_shared_and_the_cluster_core_depend_on_no_io_crates() {
    for package in ["tessera-regions", "tessera-shared", "tessera-cluster"] {
        let deps = normal_deps(package);
        assert!(
            deps.iter().any(|d| d == package),
            "{package} missing from its own tree: {deps:?}"
        );
        let bad: Vec<_> = deps
            .iter()
            .filter(|d| FORBIDDEN.contains(&d.as_str()))
            .collect();
        assert!(bad.is_empty(), "{package} depends on IO crates: {bad:?}");
    }
}
