#!/usr/bin/env bash
# Issue 17's acceptance run of the economy under crashes, at full size: TRADERS traders
# (default 200) buying, refunding, offering and accepting trades for SECS seconds
# (default 60) across a two-node cluster while node A is killed with SIGKILL twice, against
# a real Redis and the MongoDB-wire test server (started here, stopped on exit, see
# scripts/services.sh). Prints the figures (requests, applied, duplicates after retries,
# refusals by reason, time A took to serve again) and the checker's verdict. SEED repeats
# a run (its seed is printed). Exits non-zero if the ledger does not reconcile or a retried
# request was applied twice. CI runs the same test at a bounded size (40 traders, 20 s).
set -euo pipefail
cd "$(dirname "$0")/.."
export ECONOMY_CRASH_TRADERS="${TRADERS:-200}"
export ECONOMY_CRASH_SECS="${SECS:-60}"
if [ -n "${SEED:-}" ]; then
    export ECONOMY_CRASH_SEED="$SEED"
fi
JOBS="${JOBS:-2}"
# shellcheck source=scripts/services.sh
source scripts/services.sh
services_start
echo "== $ECONOMY_CRASH_TRADERS traders for $ECONOMY_CRASH_SECS s, node A killed twice"
CI=true cargo test -j"$JOBS" --locked --test main -- economy_crash --nocapture --test-threads 1
