#!/usr/bin/env bash
# Instructions per request of ringcore-http's `hello`, counted by callgrind (deterministic, so it
# needs no quiet machine): the server runs under valgrind on one core and a Python client sends
# GET /plaintext on CONNS connections, DEPTH requests per write, ROUNDS rounds; two runs (N and 3N
# rounds) and the difference of their totals over the difference of their requests cancel the
# start-up and shutdown. The figure counts user-space instructions only (not the kernel).
# Shapes (CONNSxDEPTH): 8x16 (pipelined), 8x1 (one at a time), 1x1 (one connection, one request
# at a time: low load, where every request is a loop turn of its own).
#
#   scripts/callgrind-http.sh                      # target/release/hello, epoll driver, every shape
#   scripts/callgrind-http.sh --bin PATH --rounds 300     # another build (e.g. of an older commit)
#   scripts/callgrind-http.sh --shapes "1x1"              # one shape
#   scripts/callgrind-http.sh --browser                   # requests with a browser's fields
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
SHAPES="8x16 8x1 1x1"
FIELDS=plain
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN="$2"; shift ;;
        --rounds) ROUNDS="$2"; shift ;;
        --port) PORT="$2"; shift ;;
        --shapes) SHAPES="$2"; shift ;;
        --browser) FIELDS=browser ;;
        -h|--help) sed -n 2,17p "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
command -v valgrind >/dev/null || { echo "valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
[ -x "$BIN" ] || cargo build --release -p hello
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

# total_instructions CONNS ROUNDS DEPTH
total() {
    local conns=$1 rounds=$2 depth=$3 pid n
    RINGCORE_DRIVER=$DRIVER timeout 300 valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" \
        "$BIN" --addr "127.0.0.1:$PORT" --cores 1 >"$OUT/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 150); do
        sleep 0.2
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    done
    n=$(timeout 300 python3 scripts/lib/pipeclient.py "$PORT" "$conns" "$rounds" "$depth" /plaintext "$FIELDS")
    kill -INT "$pid"
    wait "$pid" || true
    callgrind_annotate "$OUT/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }'
    echo "$n" >"$OUT/requests"
}

for shape in $SHAPES; do
    conns=${shape%x*}
    depth=${shape#*x}
    case "$conns$depth" in *[!0-9]*|"") echo "bad shape $shape (CONNSxDEPTH, e.g. 8x16)" >&2; exit 2 ;; esac
    # About the same number of requests in every shape.
    r1=$((ROUNDS * 128 / (conns * depth)))
    r2=$((r1 * 3))
    a=$(total "$conns" "$r1" "$depth"); na=$(cat "$OUT/requests")
    b=$(total "$conns" "$r2" "$depth"); nb=$(cat "$OUT/requests")
    echo "driver $DRIVER, $conns connection(s), depth $depth, $FIELDS fields: $(( (b - a) / (nb - na) )) instructions per request ($na and $nb requests: $a and $b instructions)"
done
