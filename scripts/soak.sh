#!/usr/bin/env bash
# A long soak of the deterministic cluster simulator (tessera sim-cluster): SEEDS seeds
# (default 10000) from FIRST (default 1), split over JOBS processes (default: one per
# core), on a release build. Prints each process's summary, every violation with its seed,
# and the total rate. A violation replays with `tessera sim-cluster --seed N` (its events
# printed). Exits non-zero if any seed broke an invariant.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS="${SEEDS:-10000}"
FIRST="${FIRST:-1}"
JOBS="${JOBS:-$(nproc)}"
echo "== building (release)"
cargo build --release --locked -p tessera-server -j"$JOBS" --quiet
bin=target/release/tessera
logs="$(mktemp -d "${TMPDIR:-/tmp}/tessera-soak.XXXXXX")"
per=$(( (SEEDS + JOBS - 1) / JOBS ))
end_seed=$(( FIRST + SEEDS ))
echo "== $SEEDS seeds from $FIRST over $JOBS processes (logs in $logs)"
started=$(date +%s.%N)
pids=()
for ((j = 0; j < JOBS; j++)); do
    from=$(( FIRST + j * per ))
    n=$(( end_seed - from < per ? end_seed - from : per ))
    [ "$n" -gt 0 ] || continue
    "$bin" sim-cluster --from "$from" --seeds "$n" --keep-going \
        > "$logs/summary.$j" 2> "$logs/violations.$j" &
    pids+=("$!")
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done
finished=$(date +%s.%N)
cat "$logs"/summary.*
grep -h "^seed " "$logs"/violations.* || true
awk -v n="$SEEDS" -v a="$started" -v b="$finished" -v j="$JOBS" \
    'BEGIN { printf "== %d seeds in %.1f s: %.1f seeds/s over %d processes\n", n, b - a, n / (b - a), j }'
if [ "$status" = 0 ]; then
    echo "== 0 violations"
else
    echo "== VIOLATIONS: replay each with: $bin sim-cluster --seed N"
fi
exit "$status"
