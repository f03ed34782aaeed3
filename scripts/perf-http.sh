#!/usr/bin/env bash
# Where an HTTP server's CPU goes at one open-loop rate, kernel included: `perf record -e
# cpu-clock -g` of the server while `ringcore-load` sends GET PATH over CONNS connections at
# RATE requests/s (or in the closed loop with RATE 0), each binary in turn on the server core,
# the generator on the client core. Prints, per binary, the answers, the samples, and the
# symbols with the most samples (self time, kernel and user space); with --symbol NAME also
# the call chains that end in NAME. For the question "what does this server's kernel do that
# the other's does not" (cpu-per-request.sh says how much, this says where).
#
#   scripts/perf-http.sh target/release/tokio_ct target/release/hello
#   scripts/perf-http.sh --symbol __pv_queued_spin_lock_slowpath target/release/hello
#   scripts/perf-http.sh target/release/hello RINGCORE_DRIVER=epoll@target/release/hello
#
# Options: --rate R (53000), --conns N (64), --secs S (seconds recorded, 5, after 2 s of
# load), --top N (symbols printed, 25), --symbol NAME, --port P (18561), --server-core C (0),
# --client-core C (1), --load PATH (target/release/ringcore-load). VAR=VALUE@BIN runs BIN
# with VAR set (one variable), as in cpu-per-request.sh. The profiles stay in
# bench-results/perf-http-*.data for `perf report -i`.
# Needs perf (apt-get install linux-perf) with kernel.perf_event_paranoid <= 2 as root, or
# -1 otherwise. Only 127.0.0.1; every run is bounded by `timeout`, each server stopped
# (SIGTERM) after its run; only the PIDs started here are signalled.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/bench-common.sh
. scripts/lib/bench-common.sh
RATE=53000
CONNS=64
SECS=5
TOP=25
SYMBOL=
PORT=18561
SERVER_CORE=0
CLIENT_CORE=1
LOAD=target/release/ringcore-load
BINS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rate) RATE="$2"; shift ;;
        --conns) CONNS="$2"; shift ;;
        --secs) SECS="$2"; shift ;;
        --top) TOP="$2"; shift ;;
        --symbol) SYMBOL="$2"; shift ;;
        --port) PORT="$2"; shift ;;
        --server-core) SERVER_CORE="$2"; shift ;;
        --client-core) CLIENT_CORE="$2"; shift ;;
        --load) LOAD="$2"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
        *) BINS+=("$1") ;;
    esac
    shift
done
[ "${#BINS[@]}" -gt 0 ] || { echo "name at least one server binary (see --help)" >&2; exit 2; }
command -v perf >/dev/null || { echo "perf is missing (apt-get install linux-perf)" >&2; exit 1; }
bench_init perf-http
need_cpus 2
[ -x "$LOAD" ] || cargo build --release -q -p ringcore-benches --bin ringcore-load
check_bins "${BINS[@]}"
export RINGCORE_DRIVER="${RINGCORE_DRIVER:-io_uring}"
mkdir -p bench-results
stamp=$(date -u +%Y%m%dT%H%M%SZ)

for i in "${!BINS[@]}"; do
    bin=${BINS[$i]}
    assign=$(env_of "$bin")
    start_server "$bin" "$WORK/server.log" env ${assign:+"$assign"} taskset -c "$SERVER_CORE" \
        "$(bin_of "$bin")" --addr "127.0.0.1:$PORT" --cores 1
    taskset -c "$CLIENT_CORE" timeout $((SECS + 30)) "$LOAD" \
        --url "http://127.0.0.1:$PORT/plaintext" --rate "$RATE" --conns "$CONNS" \
        --duration $((SECS + 3)) --warmup 1 --cores 1 --json "$WORK/gen.json" --no-progress \
        >/dev/null 2>&1 &
    gen=$!
    sleep 2
    data="bench-results/perf-http-$stamp-$i.data"
    timeout $((SECS + 30)) perf record -q -e cpu-clock -F 10000 -g -p "$SRV_PID" -o "$data" \
        -- sleep "$SECS" >/dev/null 2>&1 || true
    wait "$gen" || true
    stop_server "$bin" "$SRV_PID" "$WORK/stops"
    n=$(json_in status_all 2xx "$WORK/gen.json")
    [ -n "$n" ] && [ "$n" -gt 0 ] || die "$bin: no 2xx answers"
    samples=$(perf report -i "$data" --stdio --no-children --sort sym 2>/dev/null | sed -n 's/^# Samples: \([^ ]*\) .*/\1/p' | head -1)
    echo "== $bin @ $RATE/s, $CONNS connections: $n answers, $samples samples in $SECS s ($data)"
    perf report -i "$data" --stdio --no-children --sort sym -g none 2>/dev/null |
        grep -E '^ +[0-9.]+%' | head -n "$TOP" || true
    if [ -n "$SYMBOL" ]; then
        echo "-- call chains ending in $SYMBOL:"
        perf report -i "$data" --stdio --no-children --sort sym -S "$SYMBOL" -G 2>/dev/null |
            grep -vE '^#|^$' | head -40 || echo "   (no samples in $SYMBOL)"
    fi
    rm -f "$WORK/gen.json"
done
