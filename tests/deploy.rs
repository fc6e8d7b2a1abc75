//! The container image and the manifests that run it agree. The image itself is not
//! built here (the development machines have no Docker daemon); these checks catch the
//! drift that would break it: a toolchain older than the workspace needs, a port the
//! manifests use that the image does not expose, a root user.

use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `rust-version` of the workspace, e.g. `1.95`.
fn rust_version() -> String {
    let manifest = read("Cargo.toml");
    let line = manifest
        .lines()
        .find(|l| l.starts_with("rust-version"))
        .expect("rust-version in Cargo.toml");
    line.split('"').nth(1).expect("quoted version").to_owned()
}

#[test]
fn the_image_builds_with_the_workspace_toolchain_and_runs_unprivileged() {
    let dockerfile = read("Dockerfile");
    let build = dockerfile
        .lines()
        .find(|l| l.starts_with("FROM rust:"))
        .expect("a rust build stage");
    assert!(
        build.starts_with(&format!("FROM rust:{}", rust_version())),
        "the build stage's toolchain is not the workspace's rust-version: {build}"
    );
    assert!(
        dockerfile.contains("cargo build --release --locked -p tessera-server --bin tessera"),
        "the image does not build the tessera binary from the lock file"
    );
    let user = dockerfile
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("a USER line");
    let who = user["USER ".len()..].split(':').next().unwrap_or("");
    assert!(!["root", "0"].contains(&who), "runs as root: {user}");
    assert!(dockerfile.contains(r#"ENTRYPOINT ["/usr/local/bin/tessera"]"#));
}

#[test]
fn the_image_exposes_every_port_the_manifests_use() {
    let dockerfile = read("Dockerfile");
    let exposed: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(str::split_whitespace)
        .collect();
    let manifest = read("deploy/kubernetes/tessera.yaml");
    let mut checked = 0;
    for line in manifest.lines().filter(|l| l.contains("containerPort:")) {
        let port = line
            .split("containerPort:")
            .nth(1)
            .and_then(|rest| rest.split([',', '}']).next())
            .map(str::trim)
            .expect("a port number");
        let protocol = if line.contains("protocol: UDP") {
            "udp"
        } else {
            "tcp"
        };
        let wanted = format!("{port}/{protocol}");
        assert!(
            exposed.contains(&wanted.as_str()),
            "the manifest uses {wanted}; the image exposes {exposed:?}"
        );
        checked += 1;
    }
    assert!(checked >= 2, "no containerPort found in the manifest");
    // The manifests name the image the Dockerfile builds.
    assert!(manifest.contains("image: registry.example.com/tessera:latest"));
}
