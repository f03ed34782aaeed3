#!/usr/bin/env bash
# Flash-sale start-up with a big journal: replay time and resident memory per order.
#
#   scripts/bench-flash-sale-startup.sh                 # 1,000,000 orders over 2 cores
#   scripts/bench-flash-sale-startup.sh --orders 200000 --cores 1
#
# Options: --orders N (1000000), --cores N (2: the orders go to journal-0..N-1 and the
# service runs on N cores), --items K (1000 items, the orders spread evenly), --bin PATH (a
# prebuilt flash-sale binary; default: cargo build --release), --port P (18090).
#
# Steps: python3 writes the journals (the real format: header, then length + CRC-32 +
# JSON payload per record; order ids shaped like the service's `<core>-<pid>.<ms>-0-<seq>`),
# plus one item `fresh` with stock left. Then, twice (an empty data dir, and the generated
# one): start `flash-sale serve`, time from the spawn to the first 200 answer to a buy of
# `fresh`, and read VmRSS from /proc/PID/status right after it. Memory per order =
# (RSS with the journal - RSS empty) / orders. Only 127.0.0.1; only the PIDs started here are
# signalled.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

ORDERS=1000000
CORES=2
ITEMS=1000
BIN=""
PORT=18090
while [ $# -gt 0 ]; do
    case "$1" in
        --orders) ORDERS=$2; shift 2 ;;
        --cores) CORES=$2; shift 2 ;;
        --items) ITEMS=$2; shift 2 ;;
        --bin) BIN=$2; shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
if [ -z "$BIN" ]; then
    cargo build --release -p flash-sale >&2
    BIN=target/release/flash-sale
fi

WORK=$(mktemp -d /tmp/flash-sale-startup.XXXXXX)
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/empty" "$WORK/full"
python3 - "$WORK/full" "$ORDERS" "$CORES" "$ITEMS" <<'EOF'
import json, struct, sys, zlib
out, orders, cores, items = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def rec(obj):
    p = json.dumps(obj, separators=(",", ":")).encode()
    return struct.pack("<II", len(p), zlib.crc32(p) & 0xffffffff) + p
header = b"RCJOURNL" + struct.pack("<II", 1, 0)
per_item = -(-orders // items)
files = [bytearray(header) for _ in range(cores)]
for i in range(items):
    files[i % cores] += rec({"t": "item", "item": f"item-{i}", "stock": per_item, "v": 1})
files[0] += rec({"t": "item", "item": "fresh", "stock": 10, "v": 1})
for n in range(orders):
    core = n % cores
    files[core] += rec({"t": "order", "order": f"{core}-3e8a.19a4b2c1f00-0-{n // cores + 1}",
                        "item": f"item-{n % items}", "user": f"user-{n}", "ts": 1700000000000 + n})
for core, data in enumerate(files):
    with open(f"{out}/journal-{core}.log", "wb") as f:
        f.write(data)
print(f"wrote {orders} orders, {sum(len(f) for f in files)} bytes over {cores} journal(s)", file=sys.stderr)
EOF

# Starts the service on $1, buys `fresh` once; prints "<seconds to first buy> <VmRSS kB>".
measure() {
    local dir=$1
    local start end rss
    start=$(date +%s.%N)
    "$BIN" serve --addr "127.0.0.1:$PORT" --cores "$CORES" --data-dir "$dir" >"$WORK/out" 2>"$WORK/err" &
    SERVER_PID=$!
    if [ "$dir" = "$WORK/empty" ]; then
        # No journal: create the item first (not timed as replay).
        for _ in $(seq 1 200); do
            curl -s -o /dev/null -X PUT "http://127.0.0.1:$PORT/items/fresh" -d '{"stock":10}' && break
            sleep 0.05
        done
    fi
    for _ in $(seq 1 2000); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$PORT/items/fresh/buy" \
            -d "{\"user\":\"first-$RANDOM\"}" || true)
        [ "$code" = "200" ] && break
        sleep 0.005
    done
    end=$(date +%s.%N)
    if [ "$code" != "200" ]; then
        echo "no buy served (last status $code); stderr:" >&2
        cat "$WORK/err" >&2
        kill "$SERVER_PID" 2>/dev/null || true
        exit 1
    fi
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status")
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=""
    echo "$(echo "$end - $start" | bc) $rss"
}

read -r t_empty rss_empty < <(measure "$WORK/empty")
read -r t_full rss_full < <(measure "$WORK/full")
grep -h "replayed" "$WORK/err" >&2 || true
per_order=$(( (rss_full - rss_empty) * 1024 / ORDERS ))
echo "orders: $ORDERS on $CORES core(s)"
echo "empty:  first buy after ${t_empty} s, VmRSS ${rss_empty} kB"
echo "full:   first buy after ${t_full} s, VmRSS ${rss_full} kB"
echo "memory per order: ${per_order} bytes"
