#!/usr/bin/env bash
# A minimal orchestrator loop for a Tessera cluster: every INTERVAL seconds, ask any node
# for a placement suggestion (GET /v1/placement) and apply it: assign the regions nobody
# holds (PUT /v1/regions/{id} on the suggested node) and carry out at most MOVES_MAX
# transfers (POST /v1/regions/{id}/transfer on the current holder). Every node must
# accept the key (one keys file for the cluster) and its admin API must be reachable at
# the address it publishes ([net] admin_listen).
#
#   TESSERA_ADMIN=http://10.0.0.5:8080 TESSERA_KEY=... deploy/orchestrator.sh [--once]
#
# Environment: TESSERA_ADMIN (any node's admin API), TESSERA_KEY (a key with the role
# orchestrator), INTERVAL (seconds, default 30), MOVES_MAX (per round, default 1: a move
# redirects the region's players, so move little at a time). Needs curl and jq.
set -euo pipefail

: "${TESSERA_ADMIN:?set TESSERA_ADMIN to the admin API of a node, e.g. http://127.0.0.1:8080}"
: "${TESSERA_KEY:?set TESSERA_KEY to an API key with the role orchestrator}"
INTERVAL="${INTERVAL:-30}"
MOVES_MAX="${MOVES_MAX:-1}"
once=false
[ "${1:-}" = "--once" ] && once=true

api() { # method url [json body]
    curl --silent --show-error --max-time 30 --request "$1" \
        --header "Authorization: Bearer $TESSERA_KEY" \
        --header "Content-Type: application/json" \
        ${3:+--data "$3"} "$2"
}

round() {
    local placement
    if ! placement="$(api GET "$TESSERA_ADMIN/v1/placement")"; then
        echo "orchestrator: placement unavailable; retrying next round" >&2
        return 0
    fi
    if [ "$(jq -r 'has("error")' <<<"$placement")" = true ]; then
        echo "orchestrator: $(jq -c .error <<<"$placement")" >&2
        return 0
    fi
    # Admin address of each node, by name.
    local -A admin_of
    while IFS=$'\t' read -r node addr; do
        admin_of["$node"]="http://$addr"
    done < <(jq -r '.nodes[] | [.node, .admin_addr] | @tsv' <<<"$placement")

    local region from to answer
    while IFS=$'\t' read -r region to; do
        answer="$(api PUT "${admin_of[$to]}/v1/regions/$region" \
            '{"reason": "orchestrator: unassigned region"}' || true)"
        echo "orchestrator: assign region $region to $to: $answer"
    done < <(jq -r '.unassigned[] | [.region, .to] | @tsv' <<<"$placement")

    local moved=0
    while IFS=$'\t' read -r region from to; do
        [ "$moved" -ge "$MOVES_MAX" ] && break
        answer="$(api POST "${admin_of[$from]}/v1/regions/$region/transfer" \
            "{\"to\": \"$to\", \"reason\": \"orchestrator: rebalance\"}" || true)"
        echo "orchestrator: transfer region $region from $from to $to: $answer"
        moved=$((moved + 1))
    done < <(jq -r '.moves[] | [.region, .from, .to] | @tsv' <<<"$placement")
}

while true; do
    round
    $once && exit 0
    sleep "$INTERVAL"
done
