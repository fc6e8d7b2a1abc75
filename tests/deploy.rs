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

/// The metrics `text` queries: every `tessera_*` name, histogram suffixes removed.
fn queried_metrics(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("tessera_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
            .collect();
        rest = &rest[at + name.len()..];
        let name = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name)
            .to_owned();
        names.insert(name);
    }
    names
}

/// The Prometheus alert rules pass `promtool check rules` and their unit tests
/// (`promtool test rules`: each alert fires on what it is for, not on a healthy node), and
/// they and the Grafana dashboard query only metrics a node exports.
#[test]
fn alert_rules_pass_promtool_and_they_and_the_dashboard_query_exported_metrics() {
    let rules = read("deploy/prometheus/alerts.yml");
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/tessera.json")).expect("the dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("a target's expr").to_owned())
        .collect();
    assert!(exprs.len() >= 10, "the dashboard has its panels");
    let exported: std::collections::BTreeSet<&str> =
        tessera_server::admin::metrics::metric_names().collect();
    for (what, text) in [
        ("alerts.yml", rules.clone()),
        ("tessera.json", exprs.join("\n")),
    ] {
        let queried = queried_metrics(&text);
        assert!(!queried.is_empty(), "{what} queries metrics");
        for name in queried {
            assert!(
                exported.contains(name.as_str()),
                "{what} queries {name}, which no node exports"
            );
        }
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    for args in [
        &["check", "rules", "alerts.yml"][..],
        &["test", "rules", "alerts.test.yml"],
    ] {
        let output = match std::process::Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
        {
            Ok(output) => output,
            Err(e) if crate::util::services::in_ci() => {
                panic!("CI is set but promtool cannot run ({e}): run ./scripts/test.sh")
            }
            Err(_) => {
                println!(
                    "SKIPPED promtool {}: promtool not installed (./scripts/test.sh installs it)",
                    args.join(" ")
                );
                return;
            }
        };
        assert!(
            output.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
