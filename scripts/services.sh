# shellcheck shell=bash
# Test services for Tessera: a real Redis and a real MongoDB-wire server (secantusd-rs),
# installed if missing, started on free loopback ports, stopped on exit.
#
# Source it, then call `services_start`; it exports
#     TESSERA_TEST_REDIS_URL   redis://127.0.0.1:PORT/
#     TESSERA_TEST_MONGO_URI   mongodb://127.0.0.1:PORT/?directConnection=true
# and installs an EXIT trap that stops both. Idempotent: installs only what is missing,
# caches the MongoDB-wire server build in $TESSERA_CACHE_DIR (default ~/.cache/tessera).
#
# Why secantusd-rs: no genuine mongod installs from the package registries these machines
# reach; secantusd-rs (crate secantus-mdb, GPL-2.0, run as an external server and never
# linked) speaks the wire protocol faithfully, transactions and unique indexes included.

SECANTUS_VERSION="0.5.3-beta.196"
TESSERA_CACHE_DIR="${TESSERA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tessera}"
SERVICES_DIR=""

# Runs a command as root (directly, or through sudo when available).
as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "error: need root (or sudo) to run: $*" >&2
        return 1
    fi
}

# Installs the Debian packages given if their commands are missing.
apt_install() {
    local missing=()
    local pair cmd pkg
    for pair in "$@"; do
        cmd="${pair%%:*}"
        pkg="${pair##*:}"
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ "${#missing[@]}" = 0 ] && return 0
    echo "== installing ${missing[*]} (apt)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Builds secantusd-rs once into the cache and prints its path (and nothing else on
# stdout: callers capture it).
secantus_bin() {
    local root="$TESSERA_CACHE_DIR/secantus-$SECANTUS_VERSION"
    local bin="$root/bin/secantusd-rs"
    if [ ! -x "$bin" ]; then
        apt_install cmake:cmake cc:build-essential >&2
        echo "== building secantusd-rs $SECANTUS_VERSION into $root (once; about 7 minutes on 2 cores)" >&2
        cargo install --locked secantus-mdb --version "$SECANTUS_VERSION" --root "$root" \
            --ignore-rust-version --quiet >&2
    fi
    echo "$bin"
}

# A TCP port on 127.0.0.1 that nothing listens on.
free_port() {
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "error: no free port found" >&2
    return 1
}

# Waits until something accepts TCP connections on 127.0.0.1:$1 (at most $2 seconds).
wait_port() {
    local deadline=$((SECONDS + $2))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

services_stop() {
    [ -n "$SERVICES_DIR" ] || return 0
    local pidfile
    for pidfile in "$SERVICES_DIR"/*.pid; do
        [ -f "$pidfile" ] || continue
        kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    # secantusd-rs takes about 2 s to stop cleanly.
    for pidfile in "$SERVICES_DIR"/*.pid; do
        [ -f "$pidfile" ] || continue
        for _ in $(seq 1 50); do
            kill -0 "$(cat "$pidfile")" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$(cat "$pidfile")" 2>/dev/null || true
    done
    rm -rf "$SERVICES_DIR"
    SERVICES_DIR=""
}

services_start() {
    apt_install redis-server:redis-server redis-cli:redis-tools
    local mongo_bin
    mongo_bin="$(secantus_bin)"
    SERVICES_DIR="$(mktemp -d -t tessera-services.XXXXXX)"
    trap services_stop EXIT

    local redis_port mongo_port
    redis_port="$(free_port)"
    redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
        --daemonize yes --pidfile "$SERVICES_DIR/redis.pid" --logfile "$SERVICES_DIR/redis.log"
    for _ in $(seq 1 100); do
        [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] && break
        sleep 0.1
    done
    [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] || {
        echo "error: redis-server did not start; log:" >&2
        cat "$SERVICES_DIR/redis.log" >&2
        return 1
    }

    mongo_port="$(free_port)"
    mkdir -p "$SERVICES_DIR/mongo"
    "$mongo_bin" --host 127.0.0.1 --port "$mongo_port" --storage-path "$SERVICES_DIR/mongo" \
        --cache-size 256M --log-file-max 16MB >"$SERVICES_DIR/mongo.log" 2>&1 &
    echo $! >"$SERVICES_DIR/mongo.pid"
    wait_port "$mongo_port" 30 || {
        echo "error: secantusd-rs did not start; log:" >&2
        tail -50 "$SERVICES_DIR/mongo.log" >&2
        return 1
    }

    export TESSERA_TEST_REDIS_URL="redis://127.0.0.1:$redis_port/"
    export TESSERA_TEST_MONGO_URI="mongodb://127.0.0.1:$mongo_port/?directConnection=true"
    # For tests that stop and restart a service (outage tests).
    export TESSERA_TEST_SERVICES_DIR="$SERVICES_DIR"
    export TESSERA_TEST_MONGO_BIN="$mongo_bin"
    echo "== services: redis $TESSERA_TEST_REDIS_URL, mongodb-wire $TESSERA_TEST_MONGO_URI"
}
