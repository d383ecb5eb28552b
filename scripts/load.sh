#!/usr/bin/env bash
# Loopback load test of the catalog against two bare baselines, side by side in one run
# (`make load`; results and how to read them: docs/performance.md).
#
#   1. hello          bare axum "Hello, World!"                      shop-loadtest hello
#   2. bare-sqlite    bare axum + sqlx, the catalog's SELECT by id    shop-loadtest bare-sqlite
#   3. catalog-nocache `shop catalog`, full stack, cache off           SHOP__CATALOG__CACHE__TTL_MS=0
#   4. catalog-cache  `shop catalog`, full stack, cache on (1 s TTL)
#
# Each server runs alone on 127.0.0.1, gets a short warm-up, then `wrk -t1 -c64 -d10s --latency`.
# 2 and 3/4 read the same row of the same SQLite file, created through the catalog's API.
# The `cpu us/req` column is the server's user+system CPU time (/proc/PID/stat) over the measured
# run divided by the requests wrk completed: steadier than req/s when other processes share the cores.
# Then the ratio the target is about (catalog-nocache / bare-sqlite) again in PAIRED rounds: both servers
# up at once, wrk against one then the other, ROUNDS times; the verdict is the median of the per-round
# ratios, so a burst of load from elsewhere on a shared machine hits both sides of a round alike.
# Each round also records the servers' CPU time per request (steadier than req/s on a shared machine).
# PAIR=bare-stack pairs bare-sqlite with the same handler behind the palisade server preset instead
# (the preset's HTTP cost, target >= 0.9); PAIR=catalog-nocache (default) is the catalog's target (>= 0.85).
# Knobs (environment): ROUNDS (9), ROUND_DURATION (4s), DURATION (10s), WARMUP (2s), CONNECTIONS (64), THREADS (1),
# PORT_BASE (18090; uses 5 ports from it), SKIP_BUILD=1, OUT (target/load: raw wrk output),
# BREAKDOWN=1 (also: bare handler + palisade stack, + the whole kit, catalog handlers without
# layers, and the catalog with RUST_LOG=warn — see crates/loadtest/src/breakdown.rs).
set -euo pipefail

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-9}
ROUND_DURATION=${ROUND_DURATION:-4s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
PORT_BASE=${PORT_BASE:-18090}
PAIR=${PAIR:-catalog-nocache}
case $PAIR in
    catalog-nocache) PAIR_TARGET=0.85 ;;
    bare-stack) PAIR_TARGET=0.90 ;;
    *) echo "load.sh: PAIR must be catalog-nocache or bare-stack" >&2; exit 1 ;;
esac
CARGO=${CARGO:-cargo}

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/target/load}

command -v wrk >/dev/null || {
    echo "load.sh: wrk is not installed (Debian/Ubuntu: sudo apt-get install -y wrk)" >&2
    exit 1
}
command -v curl >/dev/null || { echo "load.sh: curl is not installed" >&2; exit 1; }

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    "$CARGO" build --release --quiet -p shop -p shop-loadtest --bin shop --bin shop-loadtest
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SHOP=$TARGET_DIR/release/shop
LOADTEST=$TARGET_DIR/release/shop-loadtest

WORK=$(mktemp -d "${TMPDIR:-/tmp}/shop-load.XXXXXX")
mkdir -p "$OUT"
DB_URL="sqlite://$WORK/catalog.db?mode=rwc"
JWT_SECRET="load-test-secret-$RANDOM-$RANDOM-$RANDOM"
SERVER_PID=""

stop_server() {
    if [[ -n $SERVER_PID ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
cleanup() {
    stop_server
    if [[ -n ${BARE_PID:-} ]]; then kill "$BARE_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME PORT CMD... : starts a server in the background, logs in $OUT/NAME.server.log.
start() {
    local name=$1 port=$2
    shift 2
    if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
        echo "load.sh: port $port is already in use (set PORT_BASE)" >&2
        exit 1
    fi
    "$@" >"$OUT/$name.server.log" 2>&1 &
    SERVER_PID=$!
}

# wait_ok URL : until URL answers 200 (10 s at most).
wait_ok() {
    for _ in $(seq 100); do
        if [[ $(curl -s -o /dev/null -w '%{http_code}' "$1") == 200 ]]; then return 0; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "load.sh: $1 never answered 200; server log:" >&2
    tail -n 20 "$OUT"/*.server.log >&2
    exit 1
}

catalog() { # catalog PORT TTL_MS [RUST_LOG]
    exec env -u CONFIG_PATH RUST_LOG="${3:-${RUST_LOG:-info}}" \
        SHOP__JWT_SECRET="$JWT_SECRET" SHOP__CATALOG__HOST=127.0.0.1 SHOP__CATALOG__PORT="$1" \
        SHOP__CATALOG__DATABASE_URL="$DB_URL" SHOP__CATALOG__CACHE__TTL_MS="$2" \
        "$SHOP" catalog
}

# to_ms VALUE : wrk latency (850.00us, 1.23ms, 1.01s) in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.2f", n }'
}

ROWS=()
# measure NAME URL : warm-up, then the measured run; appends "name rps p50 p99 load" to ROWS.
measure() {
    local name=$1 url=$2 raw=$OUT/$1.wrk.txt
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "$url" >/dev/null
    local load cpu0 cpu1
    load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?")
    cpu0=$(cpu_ticks "$SERVER_PID")
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$url" >"$raw"
    cpu1=$(cpu_ticks "$SERVER_PID")
    if grep -q "Non-2xx or 3xx responses" "$raw"; then
        echo "load.sh: $name answered errors:" >&2
        cat "$raw" >&2
        exit 1
    fi
    local rps p50 p99 requests cpu
    rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$raw")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$raw")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$raw")")
    requests=$(awk '/requests in/ { print $1 }' "$raw")
    cpu=$(awk -v d=$((cpu1 - cpu0)) -v hz="$(getconf CLK_TCK)" -v n="$requests" 'BEGIN { printf "%.0f", d * 1e6 / hz / n }')
    ROWS+=("$name $rps $p50 $p99 $cpu $load")
    printf '  %-17s %8s req/s  p50 %6s ms  p99 %6s ms  cpu %4s us/req  load %s\n' \
        "$name" "$rps" "$p50" "$p99" "$cpu" "$load" >&2
}

# cpu_ticks PID : user + system CPU time of PID, in clock ticks.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

P_HELLO=$PORT_BASE
P_BARE=$((PORT_BASE + 1))
P_NOCACHE=$((PORT_BASE + 2))
P_CACHE=$((PORT_BASE + 3))
P_BREAKDOWN=$((PORT_BASE + 4))

echo "load.sh: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null), wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency (warm-up $WARMUP)" >&2

# Seed one product through the catalog's API (this also applies its migrations to the file).
start catalog-seed "$P_NOCACHE" catalog "$P_NOCACHE" 0
wait_ok "http://127.0.0.1:$P_NOCACHE/readyz"
ID=$(SHOP__JWT_SECRET="$JWT_SECRET" "$LOADTEST" seed "http://127.0.0.1:$P_NOCACHE")
PRODUCT_PATH=/v1/products/$ID
stop_server
echo "load.sh: seeded product $ID" >&2

start hello "$P_HELLO" "$LOADTEST" hello "127.0.0.1:$P_HELLO"
wait_ok "http://127.0.0.1:$P_HELLO/"
measure hello "http://127.0.0.1:$P_HELLO/"
stop_server

start bare-sqlite "$P_BARE" "$LOADTEST" bare-sqlite "127.0.0.1:$P_BARE" "$DB_URL"
wait_ok "http://127.0.0.1:$P_BARE$PRODUCT_PATH"
measure bare-sqlite "http://127.0.0.1:$P_BARE$PRODUCT_PATH"
stop_server

start catalog-nocache "$P_NOCACHE" catalog "$P_NOCACHE" 0
wait_ok "http://127.0.0.1:$P_NOCACHE$PRODUCT_PATH"
measure catalog-nocache "http://127.0.0.1:$P_NOCACHE$PRODUCT_PATH"
stop_server

start catalog-cache "$P_CACHE" catalog "$P_CACHE" 1000
wait_ok "http://127.0.0.1:$P_CACHE$PRODUCT_PATH"
measure catalog-cache "http://127.0.0.1:$P_CACHE$PRODUCT_PATH"
stop_server

# Paired rounds: bare-sqlite and catalog-nocache up together, measured alternately.
start bare-sqlite-paired "$P_BARE" "$LOADTEST" bare-sqlite "127.0.0.1:$P_BARE" "$DB_URL"
BARE_PID=$SERVER_PID
wait_ok "http://127.0.0.1:$P_BARE$PRODUCT_PATH"
if [[ $PAIR == bare-stack ]]; then
    start bare-stack-paired "$P_NOCACHE" "$LOADTEST" breakdown bare-stack "127.0.0.1:$P_NOCACHE" "$DB_URL"
else
    start catalog-nocache-paired "$P_NOCACHE" catalog "$P_NOCACHE" 0
fi
wait_ok "http://127.0.0.1:$P_NOCACHE$PRODUCT_PATH"
# one_run URL PID : "req/s cpu-us-per-request" of one wrk run of ROUND_DURATION against the server PID.
one_run() {
    local out cpu0 cpu1
    cpu0=$(cpu_ticks "$2")
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$ROUND_DURATION" "$1")
    cpu1=$(cpu_ticks "$2")
    awk -v d=$((cpu1 - cpu0)) -v hz="$(getconf CLK_TCK)" '
        /^Requests\/sec:/ { rps = $2 } /requests in/ { n = $1 }
        END { printf "%.0f %.1f\n", rps, d * 1e6 / hz / n }' <<<"$out"
}
RATIOS=()
CPU_RATIOS=()
for round in $(seq "$ROUNDS"); do
    [[ $round == 1 ]] && for url in "http://127.0.0.1:$P_BARE$PRODUCT_PATH" "http://127.0.0.1:$P_NOCACHE$PRODUCT_PATH"; do
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "$url" >/dev/null
    done
    read -r bare_rps bare_cpu < <(one_run "http://127.0.0.1:$P_BARE$PRODUCT_PATH" "$BARE_PID")
    read -r catalog_rps catalog_cpu < <(one_run "http://127.0.0.1:$P_NOCACHE$PRODUCT_PATH" "$SERVER_PID")
    ratio=$(awk -v b="$bare_rps" -v c="$catalog_rps" 'BEGIN { printf "%.3f", c / b }')
    cpu_ratio=$(awk -v b="$bare_cpu" -v c="$catalog_cpu" 'BEGIN { printf "%.3f", b / c }')
    RATIOS+=("$ratio")
    CPU_RATIOS+=("$cpu_ratio")
    printf "  round %d: bare-sqlite %6s req/s %5s cpu us/req  $PAIR %6s req/s %5s cpu us/req  ratio %s (cpu %s)\n" \
        "$round" "$bare_rps" "$bare_cpu" "$catalog_rps" "$catalog_cpu" "$ratio" "$cpu_ratio" >&2
done
stop_server
kill "$BARE_PID" 2>/dev/null || true
wait "$BARE_PID" 2>/dev/null || true
BARE_PID=""
median() { sort -n | awk '{ v[NR] = $1 } END { printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
CPU_PAIRED=$(printf '%s\n' "${CPU_RATIOS[@]}" | median)
PAIRED=$(printf '%s\n' "${RATIOS[@]}" | median)

if [[ ${BREAKDOWN:-0} == 1 ]]; then
    for variant in bare-stack bare-kit catalog-handlers; do
        start "$variant" "$P_BREAKDOWN" "$LOADTEST" breakdown "$variant" "127.0.0.1:$P_BREAKDOWN" "$DB_URL"
        wait_ok "http://127.0.0.1:$P_BREAKDOWN$PRODUCT_PATH"
        measure "$variant" "http://127.0.0.1:$P_BREAKDOWN$PRODUCT_PATH"
        stop_server
    done
    start catalog-nocache-warn "$P_BREAKDOWN" catalog "$P_BREAKDOWN" 0 warn
    wait_ok "http://127.0.0.1:$P_BREAKDOWN$PRODUCT_PATH"
    measure catalog-nocache-warn "http://127.0.0.1:$P_BREAKDOWN$PRODUCT_PATH"
    stop_server
fi

# The table (stdout), Markdown so it pastes into docs/performance.md.
printf '%s\n' "${ROWS[@]}" | awk -v date="$(date -u +%Y-%m-%dT%H:%MZ)" -v pair="$PAIR" -v target="$PAIR_TARGET" -v paired="$PAIRED" -v cpu_paired="$CPU_PAIRED" -v rounds="$ROUNDS" -v ratios="${RATIOS[*]}" '
    { name[NR] = $1; rps[$1] = $2; p50[$1] = $3; p99[$1] = $4; cpu[$1] = $5; load[$1] = $6 }
    END {
        print "| server (" date ") | req/s | p50 ms | p99 ms | cpu us/req | load avg |"
        print "|---|---:|---:|---:|---:|---:|"
        for (i = 1; i <= NR; i++) {
            n = name[i]
            printf "| %s | %d | %.2f | %.2f | %d | %s |\n", n, rps[n], p50[n], p99[n], cpu[n], load[n]
        }
        ratio = rps["catalog-nocache"] / rps["bare-sqlite"]
        print ""
        printf "catalog-nocache / bare-sqlite, the runs above = %.2f\n", ratio
        verdict = (paired >= target) ? "met" : "NOT met"
        printf "%s / bare-sqlite, median of %d paired rounds (%s) = %.2f (target >= %s: %s)\n", pair, rounds, ratios, paired, target, verdict
        printf "  the same rounds in server CPU per request (bare / %s): median %.2f\n", pair, cpu_paired
        verdict = (rps["catalog-cache"] >= 10000) ? "met" : "NOT met"
        printf "catalog-cache = %d req/s (target >= 10000: %s)\n", rps["catalog-cache"], verdict
    }'
echo "load.sh: raw wrk output and server logs in $OUT" >&2
