#!/usr/bin/env bash
# Speculative sends on, off and the default (Builder::speculative_send, RINGCORE_SPECULATIVE_SEND;
# the default is on with epoll and, on io_uring, on while the core is quiet), on both drivers,
# against tokio_ct: GET /plaintext, `hello --cores 1` pinned to one core,
# ringcore-load on another, 64 connections, servers interleaved, medians of server CPU per
# answer (schedstat over the run / every answer). Prints a table; writes nothing else.
#
#   scripts/bench-speculative-send.sh [REPS] [DUR] [RATE] [BINDIR]
#       REPS 3, DUR 5 s, RATE 0 (closed loop; e.g. 22000 for an open loop at that rate),
#       BINDIR target/release (built here if missing: hello, tokio_ct, ringcore-load).
#   OLD=DIR scripts/bench-speculative-send.sh ...   also runs DIR/hello (an older build) on
#       both drivers as uring-old / epoll-old.
# Only 127.0.0.1; every run is bounded by `timeout`; only the PIDs started here are signalled.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-3}
DUR=${2:-5}
RATE=${3:-0}
BIN=${4:-target/release}
OLD=${OLD:-}
# The default is what uring-auto measures: no override from the caller's environment.
unset RINGCORE_SPECULATIVE_SEND
PORT=18700
SERVER_CORE=0
CLIENT_CORE=1
if [ ! -x "$BIN/hello" ] || [ ! -x "$BIN/tokio_ct" ] || [ ! -x "$BIN/ringcore-load" ]; then
    cargo build --release -q -p hello -p ringcore-benches --bin hello --bin tokio_ct --bin ringcore-load
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cpu_ns() {
    local t=0 a
    for f in /proc/"$1"/task/*/schedstat; do
        read -r a _ _ <"$f" || true
        t=$((t + a))
    done
    echo "$t"
}
run() { # NAME ENV... -- started with `env`
    local name=$1 pid c0 c1 ans
    shift
    env "$@" >"$WORK/srv.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/plaintext" && break
        sleep 0.1
    done
    c0=$(cpu_ns "$pid")
    timeout $((DUR + 30)) taskset -c "$CLIENT_CORE" "$BIN/ringcore-load" \
        --url "http://127.0.0.1:$PORT/plaintext" --rate "$RATE" --conns 64 --duration "$DUR" \
        --warmup 1 --no-progress --json "$WORK/gen.json" >/dev/null 2>&1 || true
    c1=$(cpu_ns "$pid")
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    ans=$(python3 -c 'import json,sys; a=json.load(open(sys.argv[1]))["status_all"]; print(sum(a.values()))' "$WORK/gen.json")
    echo "$name $(((c1 - c0) / ans)) $ans" | tee -a "$WORK/runs.txt"
}
: >"$WORK/runs.txt"
HELLO=(taskset -c "$SERVER_CORE" "$BIN/hello" --addr "127.0.0.1:$PORT" --cores 1)
for _ in $(seq "$REPS"); do
    run uring-spec1 RINGCORE_DRIVER=io_uring RINGCORE_SPECULATIVE_SEND=1 "${HELLO[@]}"
    run uring-auto RINGCORE_DRIVER=io_uring "${HELLO[@]}"
    run uring-spec0 RINGCORE_DRIVER=io_uring RINGCORE_SPECULATIVE_SEND=0 "${HELLO[@]}"
    run epoll-spec1 RINGCORE_DRIVER=epoll RINGCORE_SPECULATIVE_SEND=1 "${HELLO[@]}"
    run epoll-spec0 RINGCORE_DRIVER=epoll RINGCORE_SPECULATIVE_SEND=0 "${HELLO[@]}"
    if [ -n "$OLD" ]; then
        run uring-old RINGCORE_DRIVER=io_uring taskset -c "$SERVER_CORE" "$OLD/hello" --addr "127.0.0.1:$PORT" --cores 1
        run epoll-old RINGCORE_DRIVER=epoll taskset -c "$SERVER_CORE" "$OLD/hello" --addr "127.0.0.1:$PORT" --cores 1
    fi
    run tokio_ct taskset -c "$SERVER_CORE" "$BIN/tokio_ct" --addr "127.0.0.1:$PORT" --cores 1
done
echo "== median server CPU ns per answer (rate $RATE, $REPS reps of $DUR s), and vs tokio_ct"
tok=$(awk '$1=="tokio_ct" {print $2}' "$WORK/runs.txt" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
for n in uring-spec1 uring-auto uring-spec0 epoll-spec1 epoll-spec0 uring-old epoll-old tokio_ct; do
    awk -v n="$n" '$1==n {print $2}' "$WORK/runs.txt" | sort -n |
        awk -v n="$n" -v t="$tok" '{a[NR]=$1} END {if (NR) printf "%-12s %6d  %.2f\n", n, a[int((NR+1)/2)], a[int((NR+1)/2)]/t}'
done
