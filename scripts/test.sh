#!/usr/bin/env bash
# Runs Tessera's whole test suite the way CI does, on a fresh Debian machine with only
# the Rust toolchain: formatting, lints, then every unit and integration test.
#
# Test services (Redis, and secantusd-rs as the MongoDB-wire server) are installed if
# missing (apt; the MongoDB-wire server is built once into ~/.cache/tessera, about 7
# minutes the first time), started on free loopback ports, and stopped when this script
# exits (scripts/services.sh). Tests that need them skip with a message under plain
# `cargo test`, and fail when CI is set.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# A clean clone builds everything once: incremental compilation's bookkeeping only costs
# time there (about a tenth of the build).
if [ -n "${CI:-}" ]; then
    export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
fi
JOBS="${TESSERA_TEST_JOBS:-2}"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (workspace, all targets, -D warnings)"
cargo clippy -j"$JOBS" --workspace --all-targets --locked -- -D warnings

echo "== test services"
# shellcheck source=scripts/services.sh
source scripts/services.sh
services_start
# promtool checks the node's /metrics output (tests/admin.rs); curl and jq run the
# orchestrator script (tests/region_control.rs); the console is tested in a headless
# Chromium (tests/console.rs).
apt_install promtool:prometheus curl:curl jq:jq chromium:chromium

echo "== cargo test (workspace)"
cargo test -j"$JOBS" --workspace --locked
