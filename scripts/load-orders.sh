#!/usr/bin/env bash
# Loopback load of the checkout (`make load-orders`; results: docs/performance.md, "Orders"):
# `shop all` (release, SQLite), one customer, one product with plenty of stock, then
# `wrk -s scripts/load/orders.lua` — POST /v1/orders, each with its own Idempotency-Key — for
# DURATION. Three runs, each on a fresh shop:
#   default         the default durability (db_synchronous: normal)
#   notifications-down   the producers' subscriber URL points at a closed port (events pile up)
#   full            db_synchronous: full for inventory, payments and orders
# Then the floor of `full`: the same number of commits per order, made by a bare program
# (`shop-loadtest commits`) on the same machine, fsync per commit.
# Knobs: DURATION (30s), CONNECTIONS (32), THREADS (2), PORT_BASE (18180), SKIP_BUILD=1, OUT (target/load).
set -euo pipefail
DURATION=${DURATION:-30s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
PORT_BASE=${PORT_BASE:-18180}
CARGO=${CARGO:-cargo}
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/target/load}
mkdir -p "$OUT"
command -v wrk >/dev/null || { echo "load-orders.sh: wrk is not installed (apt-get install -y wrk)" >&2; exit 1; }
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    "$CARGO" build --release --quiet -p shop -p shop-loadtest --bin shop --bin shop-loadtest
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SHOP=$TARGET_DIR/release/shop
LOADTEST=$TARGET_DIR/release/shop-loadtest
SHOP_PID=""
WORK=""
stop() {
    if [[ -n $SHOP_PID ]]; then kill "$SHOP_PID" 2>/dev/null || true; wait "$SHOP_PID" 2>/dev/null || true; SHOP_PID=""; fi
    if [[ -n $WORK ]]; then rm -rf "$WORK"; WORK=""; fi
}
trap stop EXIT
trap 'exit 130' INT TERM

port() { echo $((PORT_BASE + $1)); }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# run NAME [ENV=VALUE...]: a fresh shop, seeded, loaded; prints one result line.
run() {
    local name=$1; shift
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/shop-orders-load.XXXXXX")
    local i=1 env=()
    for svc in users catalog inventory payments orders notifications; do
        env+=("SHOP__${svc^^}__PORT=$(port $i)" "SHOP__${svc^^}__DATABASE_URL=sqlite://$WORK/$svc.db?mode=rwc")
        i=$((i + 1))
    done
    env "${env[@]}" "$@" RUST_LOG=warn SHOP__PROFILE=development SHOP__JWT_SECRET="load-$RANDOM-$RANDOM-$RANDOM-$RANDOM-$RANDOM" \
        "$SHOP" all >"$OUT/orders-$name.server.log" 2>&1 &
    SHOP_PID=$!
    for _ in $(seq 1 200); do
        curl -fs "http://127.0.0.1:$(port 5)/readyz" >/dev/null 2>&1 && curl -fs "http://127.0.0.1:$(port 6)/readyz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    local users=http://127.0.0.1:$(port 1)
    curl -fs "$users/v1/users" -H 'Content-Type: application/json' \
        -d '{"email":"load@example.com","password":"correct horse battery staple","display_name":"Load"}' >/dev/null
    local token admin product
    token=$(curl -fs "$users/v1/sessions" -H 'Content-Type: application/json' \
        -d '{"email":"load@example.com","password":"correct horse battery staple"}' | json '["access_token"]')
    admin=$(curl -fs "$users/v1/sessions" -H 'Content-Type: application/json' \
        -d '{"email":"admin@palisade.local","password":"palisade-admin-password"}' | json '["access_token"]')
    product=$(curl -fs "http://127.0.0.1:$(port 2)/v1/products" -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
        -d '{"sku":"LOAD-1","name":"Load","category":"load","price":{"amount":100,"currency":"EUR"}}' | json '["id"]')
    curl -fs -X PUT "http://127.0.0.1:$(port 3)/v1/stock/LOAD-1" -H "Authorization: Bearer $admin" \
        -H 'Content-Type: application/json' -H 'If-None-Match: *' -d '{"on_hand":100000000}' >/dev/null
    TOKEN=$token PRODUCT=$product RUN="$name-warmup" wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -s scripts/load/orders.lua "http://127.0.0.1:$(port 5)" >/dev/null 2>&1
    TOKEN=$token PRODUCT=$product RUN="$name" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s scripts/load/orders.lua \
        "http://127.0.0.1:$(port 5)" >"$OUT/orders-$name.wrk.txt" 2>"$OUT/orders-$name.wrk.err" || true
    curl -fs "http://127.0.0.1:$(port 5)/metrics" >"$OUT/orders-$name.metrics.txt" || true
    local rps p50 p99 errors
    rps=$(awk '/Requests\/sec/ {print $2}' "$OUT/orders-$name.wrk.txt")
    p50=$(awk '$1 == "50%" {print $2}' "$OUT/orders-$name.wrk.txt")
    p99=$(awk '$1 == "99%" {print $2}' "$OUT/orders-$name.wrk.txt")
    errors=$(awk '/Non-2xx/ {print $5} /Socket errors/ {print $0}' "$OUT/orders-$name.wrk.txt" | tr '\n' ' ')
    printf '%-20s %10s orders/s  p50 %-9s p99 %-9s errors: %s\n' "$name" "$rps" "$p50" "$p99" "${errors:-0}"
    python3 scripts/load/hops.py "$OUT/orders-$name.metrics.txt" >"$OUT/orders-$name.hops.txt" || true
    sed 's/^/    /' "$OUT/orders-$name.hops.txt"
    stop
}

echo "orders load: wrk -t$THREADS -c$CONNECTIONS -d$DURATION on $(nproc) cores ($(uname -m)); raw output in $OUT"
run default
run notifications-down \
    SHOP__USERS__EVENTS__SUBSCRIBERS__NOTIFICATIONS__URL=http://127.0.0.1:9 \
    SHOP__CATALOG__EVENTS__SUBSCRIBERS__NOTIFICATIONS__URL=http://127.0.0.1:9 \
    SHOP__PAYMENTS__EVENTS__SUBSCRIBERS__NOTIFICATIONS__URL=http://127.0.0.1:9 \
    SHOP__ORDERS__EVENTS__SUBSCRIBERS__NOTIFICATIONS__URL=http://127.0.0.1:9
run full SHOP__INVENTORY__DB_SYNCHRONOUS=full SHOP__PAYMENTS__DB_SYNCHRONOUS=full SHOP__ORDERS__DB_SYNCHRONOUS=full
for sync in normal full; do "$LOADTEST" commits "$sync" "${COMMITS_PER_ORDER:-12}" "${DURATION%s}" "$CONNECTIONS"; done
