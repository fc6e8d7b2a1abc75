#!/usr/bin/env bash
# Runs every fuzz target for RUNS inputs each (default 1,000,000) and prints the counts.
# Needs a nightly toolchain (libFuzzer instrumentation); installs cargo-fuzz if missing.
# The config target starts from the shipped config files as its seed corpus.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
RUNS="${RUNS:-1000000}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p corpus/config_files
if [ ! -e corpus/config_files/shipped ]; then
    { cat ../config/tessera.toml; printf '\0'; cat ../config/world.toml; printf '\0'; cat ../config/balance.toml; } \
        > corpus/config_files/shipped
fi
status=0
for target in protocol_datagram protocol_control state_block config_files cluster_wire; do
    echo "== $target: $RUNS runs"
    log="target/fuzz-$target.log"
    mkdir -p target
    if cargo +nightly fuzz run "$target" -- -runs="$RUNS" -max_len=4096 > "$log" 2>&1; then
        grep -a -E "^Done [0-9]+ runs" "$log"
    else
        echo "FAILED: see fuzz/$log and fuzz/artifacts/$target/"
        grep -a -E "panicked|ERROR|SUMMARY" "$log" | head -20
        status=1
    fi
done
exit "$status"
