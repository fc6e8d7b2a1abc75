#!/usr/bin/env bash
# Server heap per connection (PERFORMANCE.md goal 6: <= 64 KiB), measured with heaptrack
# on the release binary and the embedded default world, node and bots on this machine:
#
#   peak heap of a node with N bots connected for DURATION, minus the same node idle,
#   divided by N; and the marginal cost, (peak with N - peak with N/2) / (N/2), which
#   leaves out what the first player allocates once (grids, scratch, thread pools).
#
# Usage: scripts/conn-memory.sh [N=200] [DURATION=20s]. Installs heaptrack (apt) if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/services.sh
source scripts/services.sh

N="${1:-200}"
DURATION="${2:-20s}"
apt_install heaptrack:heaptrack heaptrack_print:heaptrack
cargo build --release -j2 -p tessera-server --quiet
BIN="$PWD/target/release/tessera"
WORK="$(mktemp -d -t tessera-conn-memory.XXXXXX)"
trap 'pkill -INT -f "$BIN serve" 2>/dev/null || true; rm -rf "$WORK"' EXIT
cd "$WORK"

# Peak heap (bytes) of a node serving $1 bots for $DURATION.
peak_with() {
    local bots="$1" out="$WORK/heap-$1"
    heaptrack -o "$out" "$BIN" serve >"$WORK/node-$bots.log" 2>&1 &
    sleep 8 # Start, certificate and secret generated into ./data.
    if [ "$bots" -gt 0 ]; then
        "$BIN" bots --count "$bots" --duration "$DURATION" >"$WORK/bots-$bots.log" 2>&1
        grep -E "^(connected|failed) " "$WORK/bots-$bots.log" >&2
    else
        sleep "${DURATION%s}"
    fi
    pkill -INT -f "$BIN serve"
    wait
    heaptrack_print -f "$out.zst" --print-peaks 0 --print-allocators 0 --print-temporary 0 \
        --print-leaks 0 2>/dev/null | awk '/peak heap memory consumption/ { print $5 }' |
        python3 -c '
import sys
v = sys.stdin.read().strip()
units = {"K": 1e3, "M": 1e6, "G": 1e9}
print(int(float(v[:-1]) * units[v[-1]]) if v[-1] in units else int(float(v)))'
}

idle="$(peak_with 0)"
half="$(peak_with $((N / 2)))"
full="$(peak_with "$N")"
python3 - "$idle" "$half" "$full" "$N" <<'EOF'
import sys
idle, half, full, n = (int(x) for x in sys.argv[1:])
kib = 1024
print(f"conn-memory: release build, embedded default world, {n} bots on this machine")
print(f"  peak heap: idle {idle / kib / kib:.2f} MiB, {n // 2} bots {half / kib / kib:.2f} MiB, {n} bots {full / kib / kib:.2f} MiB")
print(f"  per connection (vs idle):     {(full - idle) / n / kib:.1f} KiB   (goal <= 64 KiB)")
print(f"  per connection (marginal):    {(full - half) / (n - n // 2) / kib:.1f} KiB")
EOF
