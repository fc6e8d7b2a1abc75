#!/usr/bin/env bash
# Runs Tessera's whole test suite the way CI does, on a fresh Debian machine with only
# the Rust toolchain: formatting, lints, then every unit and integration test.
#
# Test services (Redis, a MongoDB-wire server) are installed, started on free loopback
# ports and stopped again by this script once persistence lands (see TESTING notes in
# README.md); tests that need them skip with a message under plain `cargo test`, and fail
# when CI is set.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
JOBS="${TESSERA_TEST_JOBS:-2}"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (workspace, all targets, -D warnings)"
cargo clippy -j"$JOBS" --workspace --all-targets --locked -- -D warnings

echo "== cargo test (workspace)"
cargo test -j"$JOBS" --workspace --locked
