#!/usr/bin/env bash
# Instructions per request of ringcore-http's `hello`, counted by callgrind (deterministic, so it
# needs no quiet machine): the server runs under valgrind on one core and a client sends
# GET /plaintext; two runs (the second about three times the first) and the difference of their
# totals over the difference of their answers cancel the start-up and shutdown. The figure
# counts user-space instructions only (not the kernel).
# Shapes:
#   CONNSxDEPTH  a Python client on CONNS connections, DEPTH requests per write, ROUNDS rounds:
#                8x16 (pipelined), 8x1 (one at a time), 1x1 (one connection, one request at a
#                time: every request is a loop turn of its own);
#   CONNS@RATE   `ringcore-load` on CONNS connections at RATE requests/s, open loop (2 s, then
#                5 s, after 1 s of warm-up), or in the closed loop with RATE 0: 16@10000 is
#                low load (under valgrind the core is idle between requests, as at 20% load
#                natively), 64@0 many connections each with a request in flight.
#
#   scripts/callgrind-http.sh                      # target/release/hello, epoll driver, every shape
#   scripts/callgrind-http.sh --bin PATH --rounds 300     # another build (e.g. of an older commit)
#   scripts/callgrind-http.sh --shapes "1x1"              # one shape
#   scripts/callgrind-http.sh --driver io_uring --shapes "4x16 64@0 16@10000"
#   scripts/callgrind-http.sh --browser                   # requests with a browser's fields
#   scripts/callgrind-http.sh --path /governed            # another route of `hello` (its
#                                                         # governance layers' cost per request)
#   scripts/callgrind-http.sh --cache --shapes "64x1"     # also simulated cache misses
#   scripts/callgrind-http.sh --footprint --driver io_uring --shapes "16@10000"   # code lines
#
# --footprint also prints the code footprint per request: the distinct 64-byte lines of code
# the second run executed at least half as often as it answered (scripts/lib/code-footprint.py),
# and the functions with the most of them. At low load a core meets each request with its L1
# code cache (32 KiB) mostly refilled by the kernel's path, so this count, not only the
# instructions, is what a request's wake-up costs in code fetches. Any server binary of
# scripts/lib/bench-common.sh can be measured the same way (`--bin target/release/tokio_ct`;
# BENCH_HTTPARSE=1 in the environment for its httparse variant).
#
# --cache runs cachegrind with a simulated cache (32 KiB 8-way L1 for data and code, 256 KiB
# LL) and prints, next to the instructions, the L1 data misses (reads and writes) and the L1
# code misses per request: with many connections (64x1), about the cache lines of each
# connection's own state a request touches (the kernel, which evicts them between a
# connection's turns on a real core, is not simulated). The figure moves by a few misses
# when the compiler lays a future out anew, so compare builds, not single changes.
#
# Needs valgrind (apt-get install valgrind), curl and python3; the `@` shapes need
# target/release/ringcore-load. Only 127.0.0.1; bounded by `timeout`. The driver is epoll
# unless --driver says io_uring (valgrind 3.19 follows the ring on kernel 6.x as the server
# uses it: multishot receives, provided buffers, no SQPOLL); the HTTP code above the driver
# is the same. The `@` shapes' closed loop (RATE 0) batches as valgrind's pace allows, so its
# count moves by a few tens of instructions between runs; the others by a few.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/hello
DRIVER=epoll
ROUNDS=100
PORT=18181
URLPATH=/plaintext
SHAPES="8x16 8x1 1x1"
FIELDS=plain
CACHE=0
FOOTPRINT=0
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN="$2"; shift ;;
        --rounds) ROUNDS="$2"; shift ;;
        --port) PORT="$2"; shift ;;
        --path) URLPATH="$2"; shift ;;
        --shapes) SHAPES="$2"; shift ;;
        --driver) DRIVER="$2"; shift ;;
        --browser) FIELDS=browser ;;
        --cache) CACHE=1 ;;
        --footprint) FOOTPRINT=1 ;;
        -h|--help) sed -n 2,47p "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
command -v valgrind >/dev/null || { echo "valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
[ -x "$BIN" ] || cargo build --release -p hello
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

if [ "$CACHE" = 1 ]; then
    TOOL=(--tool=cachegrind --cache-sim=yes --I1=32768,8,64 --D1=32768,8,64 --LL=262144,8,64
        --cachegrind-out-file="$OUT/cg.out")
else
    TOOL=(--tool=callgrind --callgrind-out-file="$OUT/cg.out")
    [ "$FOOTPRINT" = 1 ] && TOOL+=(--dump-instr=yes)
fi
[ "$CACHE$FOOTPRINT" = 11 ] && { echo "--cache and --footprint: one at a time" >&2; exit 2; }

case "$DRIVER" in epoll|io_uring) ;; *) echo "--driver: epoll or io_uring, not $DRIVER" >&2; exit 2 ;; esac

# The answers of a `ringcore-load` run (every 2xx, warm-up included) on CONNS connections at
# RATE for SECS seconds, or nothing if it failed.
# load_answers CONNS RATE SECS
load_answers() {
    local conns=$1 rate=$2 secs=$3
    timeout 120 target/release/ringcore-load --url "http://127.0.0.1:$PORT$URLPATH" \
        --conns "$conns" --rate "$rate" --duration "$secs" --warmup 1 --timeout-ms 10000 \
        --no-progress --json "$OUT/load.json" >"$OUT/load.log" 2>&1 || return 0
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["status_all"]["2xx"])' "$OUT/load.json"
}

# The totals of a run: "instructions D1-misses I1-misses" (the misses with --cache only).
# total CONNS ROUNDS DEPTH (the Python client) or total CONNS SECS @RATE (ringcore-load)
total() {
    local conns=$1 rounds=$2 depth=$3 pid n
    RINGCORE_DRIVER=$DRIVER timeout 600 valgrind "${TOOL[@]}" \
        "$BIN" --addr "127.0.0.1:$PORT" --cores 1 >"$OUT/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 150); do
        sleep 0.2
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    done
    # The server is stopped whether or not the client got every answer.
    case "$depth" in
        @*) n=$(load_answers "$conns" "${depth#@}" "$rounds") ;;
        *) n=$(timeout 300 python3 scripts/lib/pipeclient.py "$PORT" "$conns" "$rounds" "$depth" "$URLPATH" "$FIELDS") || n= ;;
    esac
    kill -INT "$pid" 2>/dev/null || true
    # Under valgrind the io_uring driver's park may miss the signal's wake-up: a request
    # wakes it (bounded; the signal has been taken by then).
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || break
        curl -s -m 1 -o /dev/null "http://127.0.0.1:$PORT/plaintext" || true
        sleep 1
    done
    wait "$pid" || true
    [ -n "$n" ] || { echo "the client did not get every answer; the server said:" >&2; tail -5 "$OUT/server.log" >&2; exit 1; }
    if [ "$CACHE" = 1 ]; then
        # Ir I1mr ILmr Dr D1mr DLmr Dw D1mw DLmw
        cg_annotate "$OUT/cg.out" 2>/dev/null | sed 's/([^)]*)//g; s/,//g' |
            awk '/PROGRAM TOTALS/ && !done { print $1, $5 + $8, $2; done = 1 }'
    else
        callgrind_annotate "$OUT/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done { gsub(",", "", $1); print $1, 0, 0; done = 1 }'
    fi
    echo "$n" >"$OUT/requests"
}

for shape in $SHAPES; do
    case "$shape" in
        *@*)
            # ringcore-load: 2 s and 5 s (each after 1 s of warm-up).
            conns=${shape%@*}
            depth=@${shape#*@}
            case "$conns${depth#@}" in *[!0-9]*|"") echo "bad shape $shape (CONNS@RATE, e.g. 16@10000)" >&2; exit 2 ;; esac
            [ -x target/release/ringcore-load ] || cargo build --release -p ringcore-benches --bin ringcore-load
            [ "$FIELDS" = plain ] || { echo "--browser: only the CONNSxDEPTH shapes" >&2; exit 2; }
            r1=2
            r2=5
            what="$conns connection(s), ${depth#@} requests/s"
            [ "$depth" = @0 ] && what="$conns connection(s), closed loop"
            ;;
        *)
            conns=${shape%x*}
            depth=${shape#*x}
            case "$conns$depth" in *[!0-9]*|"") echo "bad shape $shape (CONNSxDEPTH, e.g. 8x16)" >&2; exit 2 ;; esac
            # About the same number of requests in every shape.
            r1=$((ROUNDS * 128 / (conns * depth)))
            r2=$((r1 * 3))
            what="$conns connection(s), depth $depth"
            ;;
    esac
    total "$conns" "$r1" "$depth" >"$OUT/totals"
    read -r a da ia <"$OUT/totals"
    na=$(cat "$OUT/requests")
    total "$conns" "$r2" "$depth" >"$OUT/totals"
    read -r b db ib <"$OUT/totals"
    nb=$(cat "$OUT/requests")
    line="driver $DRIVER, $what, $FIELDS fields: $(( (b - a) / (nb - na) )) instructions per request"
    if [ "$CACHE" = 1 ]; then
        line+=", $(awk -v d=$((db - da)) -v i=$((ib - ia)) -v n=$((nb - na)) 'BEGIN { printf "%.1f L1 data misses, %.1f L1 code misses", d / n, i / n }') per request"
    fi
    echo "$line ($na and $nb requests: $a and $b instructions)"
    if [ "$FOOTPRINT" = 1 ]; then
        printf '  footprint of the second run: '
        python3 scripts/lib/code-footprint.py "$OUT/cg.out" "$nb" 8
    fi
done
