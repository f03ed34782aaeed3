#!/usr/bin/env bash
# HTTP/2 side by side: GET /plaintext over cleartext HTTP/2 (prior knowledge) on one pinned
# core, ringcore-http (examples/hello, which serves HTTP/2 with no code of its own) against
# hyper 1's HTTP/2 server on current-thread tokio with a local executor (benches hyper_h2),
# loaded by h2load. Writes docs/bench-h2.md.
#
#   scripts/bench-h2.sh            # 5 reps, 10 s runs (about 4 min)
#   scripts/bench-h2.sh --quick    # 1 rep, 2 s runs, 4 connections x 10 streams: a smoke
#                                  # test of the script; prints, writes no file unless --out
#
# Options: --reps N, --dur S, --conns N (16), --streams N (concurrent streams per
# connection, 100), --server-core C (0), --client-core C (1), --port P (18560),
# --out FILE (docs/bench-h2.md), --bin DIR (prebuilt binaries, e.g. target/release).
#
# Every run: a fresh server pinned with taskset to the server core, a short unmeasured
# warm-up (h2load -n), then the measured h2load run (-D S, one thread) pinned to the client
# core; servers interleaved (A B A B ...), medians over reps. Reported: requests/s, server
# CPU per request (sum over the server's threads of /proc/PID/task/*/schedstat field 1
# across the measured run, divided by the requests it completed), h2load's mean request
# time, and failed/errored requests (must be 0). Only 127.0.0.1; every run is bounded by
# `timeout`; only the PIDs started here are signalled. Needs h2load (Debian nghttp2-client).
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C
# shellcheck source=scripts/lib/bench-common.sh
. scripts/lib/bench-common.sh

MODE=full
REPS=5
DUR=10
CONNS=16
STREAMS=100
SERVER_CORE=0
CLIENT_CORE=1
PORT=18560
OUT=docs/bench-h2.md
OUT_SET=0
PREBUILT=""
CMDLINE="scripts/bench-h2.sh $*"

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) MODE=quick; REPS=1; DUR=2; CONNS=4; STREAMS=10 ;;
        --reps) REPS="$2"; shift ;;
        --dur) DUR="$2"; shift ;;
        --conns) CONNS="$2"; shift ;;
        --streams) STREAMS="$2"; shift ;;
        --server-core) SERVER_CORE="$2"; shift ;;
        --client-core) CLIENT_CORE="$2"; shift ;;
        --port) PORT="$2"; shift ;;
        --out) OUT="$2"; OUT_SET=1; shift ;;
        --bin) PREBUILT="$2"; shift ;;
        -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$MODE" = quick ] && [ "$OUT_SET" = 0 ]; then
    OUT=""
fi

SERVERS=(ringcore-h2 hyper_h2)
declare -A BIN_OF=([ringcore-h2]=hello [hyper_h2]=hyper_h2)
ADDR="127.0.0.1:$PORT"
URL="http://$ADDR/plaintext"

bench_init bench-h2
need_cpus 2
command -v h2load >/dev/null 2>&1 || die "needs h2load (apt-get install nghttp2-client)"
if [ -n "$PREBUILT" ]; then
    BIN="$PREBUILT"
else
    log "building release binaries"
    cargo build --release -q -p hello -p ringcore-benches --bin hello --bin hyper_h2
    BIN="${CARGO_TARGET_DIR:-target}/release"
fi
for name in "${SERVERS[@]}"; do
    [ -x "$BIN/${BIN_OF[$name]}" ] || die "missing $BIN/${BIN_OF[$name]}"
done
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# h2load_num FILE PREFIX WORD: the number before WORD on h2load's line starting with PREFIX.
h2load_num() {
    awk -v p="$2" -v w="$3" 'index($0, p) == 1 {
        for (i = 2; i <= NF; i++) { x = $i; sub(/,$/, "", x); if (x == w) { print $(i - 1); exit } }
    }' "$1"
}

# run_one NAME REP -> appends "name rep req_per_s done failed cpu_ns mean_request_us"
run_one() {
    local name=$1 rep=$2 pid c0 c1 rc=0 rps done failed mean
    start_server "$name" "$WORK/$name.log" taskset -c "$SERVER_CORE" "$BIN/${BIN_OF[$name]}" \
        --addr "$ADDR" --cores 1
    pid=$SRV_PID
    # Warm-up, not measured: connections, caches, the server's first allocations.
    timeout 30 taskset -c "$CLIENT_CORE" h2load -n $((CONNS * STREAMS * 4)) -c "$CONNS" \
        -m "$STREAMS" -t 1 "$URL" >"$WORK/warm.out" 2>&1 ||
        die "warm-up h2load failed against $name: $(tail -3 "$WORK/warm.out")"
    c0=$(cpu_ns "$pid")
    timeout $((DUR + 30)) taskset -c "$CLIENT_CORE" h2load -D "$DUR" -c "$CONNS" -m "$STREAMS" \
        -t 1 "$URL" >"$WORK/h2load.out" 2>&1 || rc=$?
    c1=$(cpu_ns "$pid")
    kill -0 "$pid" 2>/dev/null || die "$name died during the run"
    stop_server "$name" "$pid" "$WORK/stops"
    [ "$rc" = 0 ] || die "h2load failed (rc $rc) against $name: $(tail -3 "$WORK/h2load.out")"
    rps=$(awk '/^finished in/ {for (i = 1; i <= NF; i++) if ($(i + 1) ~ /^req\/s/) {print $i; exit}}' "$WORK/h2load.out")
    done=$(h2load_num "$WORK/h2load.out" "requests:" done)
    failed=$(($(h2load_num "$WORK/h2load.out" "requests:" failed) + $(h2load_num "$WORK/h2load.out" "requests:" errored)))
    # "time for request:  min  max  mean  sd  +/- sd", with units (us, ms, s).
    mean=$(awk '/^time for request:/ {print $6; exit}' "$WORK/h2load.out" | to_us)
    [ -n "$rps" ] && [ -n "$done" ] || die "could not read h2load's output for $name: $(cat "$WORK/h2load.out")"
    printf '%s %s %s %s %s %s %s\n' "$name" "$rep" "$rps" "$done" "$failed" "$((c1 - c0))" "$mean" \
        >>"$WORK/runs.txt"
    log "rep $rep $name: $(tail -1 "$WORK/runs.txt")"
}

: >"$WORK/runs.txt"
for rep in $(seq "$REPS"); do
    for name in "${SERVERS[@]}"; do
        run_one "$name" "$rep"
    done
done
med() { # name column
    awk -v s="$1" -v c="$2" '$1 == s {print $c}' "$WORK/runs.txt" | median
}
cpu_per() { # name -> median over reps of server CPU ns per request
    awk -v s="$1" '$1 == s && $4 > 0 {printf "%.0f\n", $6 / $4}' "$WORK/runs.txt" | median
}

{
    echo "# HTTP/2: ringcore-http against hyper's HTTP/2 server, one core each"
    echo
    echo "Generated by \`$CMDLINE\` on $(date -u +%Y-%m-%d) ($MODE mode, commit \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`)."
    echo
    echo "- machine: \`nproc\` $(nproc), kernel \`$(uname -r)\`; load average $LOAD_BEFORE before, $(cut -d' ' -f1-3 /proc/loadavg) after"
    echo "- \`GET /plaintext\` over cleartext HTTP/2 (prior knowledge), server on core $SERVER_CORE (\`--cores 1\`), \`h2load -t 1 -c $CONNS -m $STREAMS -D $DUR\` on core $CLIENT_CORE after an unmeasured warm-up; $REPS repetition(s), servers interleaved, medians"
    echo "- servers: \`hello\` (ringcore-http: hyper's HTTP/2 over ringcore's I/O adapter, the request re-parsed by ringcore's parser, the router, \`Date\`, \`Server\`), \`hyper_h2\` (hyper 1's HTTP/2 on current-thread tokio, a \`LocalSet\` executor, \`Date\` added by hyper)"
    echo "- CPU per request: the server's on-CPU time over the measured run (all threads, schedstat) / the requests h2load completed in it"
    echo
    echo "| server | requests/s | server CPU per request (ns) | vs hyper_h2 | mean request time (µs) | failed |"
    echo "|---|---:|---:|---:|---:|---:|"
    hy=$(cpu_per hyper_h2)
    for name in "${SERVERS[@]}"; do
        c=$(cpu_per "$name")
        echo "| $name | $(med "$name" 3 | awk '{printf "%.0f", $1}') | $c | $(ratio "$c" "$hy") | $(med "$name" 7 | awk '{printf "%.0f", $1}') | $(med "$name" 5) |"
    done
    echo
    echo "Every run (name rep req/s done failed cpu_ns mean_request_us):"
    echo
    echo '```'
    cat "$WORK/runs.txt"
    echo '```'
} >"$WORK/report.md"
cat "$WORK/report.md"
if [ -n "$OUT" ]; then
    cp "$WORK/report.md" "$OUT"
    log "wrote $OUT"
fi
