#!/usr/bin/env bash
# Server heap per connection (PERFORMANCE.md goal 6: <= 64 KiB), measured with heaptrack
# on the release binary and the embedded default world, node and bots on this machine:
#
#   peak heap of a node with N bots connected for DURATION, minus the same node idle,
#   divided by the bots that connected; and the marginal cost between N/2 and N bots,
#   which leaves out what the first player allocates once (grids, scratch, thread pools).
#   heaptrack slows the node down a lot: at a few hundred bots some may time out
#   connecting; the figures count only the bots that connected, and say how many.
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
        awk '/^connected / { print $2 }' "$WORK/bots-$bots.log" >"$WORK/connected-$bots"
    else
        echo 0 >"$WORK/connected-$bots"
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
python3 - "$idle" "$half" "$full" "$N" "$(cat "$WORK/connected-$((N / 2))")" "$(cat "$WORK/connected-$N")" <<'EOF'
import sys
idle, half, full, n, n_half, n_full = (int(x) for x in sys.argv[1:])
kib = 1024
if n_half == 0 or n_full <= n_half:
    sys.exit(f"conn-memory: too few bots connected ({n_half} of {n // 2}, {n_full} of {n})")
print(f"conn-memory: release build, embedded default world, {n} bots on this machine")
print(f"  connected: {n_half} of {n // 2}, {n_full} of {n}")
print(f"  peak heap: idle {idle / kib / kib:.2f} MiB, {n_half} bots {half / kib / kib:.2f} MiB, {n_full} bots {full / kib / kib:.2f} MiB")
print(f"  per connection (vs idle):     {(full - idle) / n_full / kib:.1f} KiB   (goal <= 64 KiB)")
print(f"  per connection (marginal):    {(full - half) / (n_full - n_half) / kib:.1f} KiB")
EOF
