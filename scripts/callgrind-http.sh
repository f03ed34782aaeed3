#!/usr/bin/env bash
# Instructions per request of ringcore-http's `hello`, counted by callgrind (deterministic, so it
# needs no quiet machine): the server runs under valgrind on one core and a Python client sends
# GET /plaintext on 8 connections, DEPTH requests per write, ROUNDS rounds; two runs (N and 3N
# rounds) and the difference of their totals over the difference of their requests cancel the
# start-up and shutdown. The figure counts user-space instructions only (not the kernel).
#
#   scripts/callgrind-http.sh                      # target/release/hello, epoll driver, depth 16 and 1
#   scripts/callgrind-http.sh --bin PATH --rounds 100     # another build (e.g. of an older commit)
#
# Needs valgrind (apt-get install valgrind) and python3. Only 127.0.0.1; bounded by `timeout`.
# The epoll driver only: valgrind 3.19 does not follow io_uring's shared rings (the server
# never sees a completion under it), and the HTTP code above the driver is the same.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/hello
DRIVER=epoll
ROUNDS=100
PORT=18181
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN="$2"; shift ;;
        --rounds) ROUNDS="$2"; shift ;;
        --port) PORT="$2"; shift ;;
        -h|--help) sed -n 2,12p "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
command -v valgrind >/dev/null || { echo "valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
[ -x "$BIN" ] || cargo build --release -p hello
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

# total_instructions ROUNDS DEPTH
total() {
    local rounds=$1 depth=$2 pid n
    RINGCORE_DRIVER=$DRIVER timeout 300 valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" \
        "$BIN" --addr "127.0.0.1:$PORT" --cores 1 >"$OUT/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 150); do
        sleep 0.2
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    done
    n=$(timeout 300 python3 scripts/lib/pipeclient.py "$PORT" 8 "$rounds" "$depth")
    kill -INT "$pid"
    wait "$pid" || true
    callgrind_annotate "$OUT/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }'
    echo "$n" >"$OUT/requests"
}

for depth in 16 1; do
    r1=$((ROUNDS * (depth == 1 ? 10 : 1)))
    r2=$((r1 * 3))
    a=$(total "$r1" "$depth"); na=$(cat "$OUT/requests")
    b=$(total "$r2" "$depth"); nb=$(cat "$OUT/requests")
    echo "driver $DRIVER, depth $depth: $(( (b - a) / (nb - na) )) instructions per request ($na and $nb requests: $a and $b instructions)"
done
