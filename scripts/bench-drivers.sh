#!/usr/bin/env bash
# The two drivers side by side (issue 11): GET /plaintext on one pinned core, ringcore-http
# (examples/hello) on io_uring and on epoll, against tokio current-thread (tokio_ct, a
# hand-written readiness loop) and hyper 1 on current-thread tokio (hyper_ct). Writes
# docs/bench-drivers.md.
#
#   scripts/bench-drivers.sh            # 3 reps, 5 s runs, 1 s warm-up (about 6 min)
#   scripts/bench-drivers.sh --quick    # 1 rep, 3 s runs (about 2 min)
#
# Options: --reps N, --dur S, --warm S, --conns N (64), --fracs "0.2 0.6 0.8" (offered rates as
# fractions of tokio_ct's closed-loop maximum), --server-core C (0), --client-core C (1),
# --port P (18540), --out FILE (docs/bench-drivers.md), --bin DIR (prebuilt binaries).
#
# Steps, every run a fresh server pinned with taskset to the server core and ringcore-load
# pinned to the client core, servers interleaved (A B C D A B C D ...), medians over reps:
# (1) closed loop (--rate 0): answers/s and server CPU per answer (sum over the server's
# threads of /proc/PID/task/*/schedstat field 1, divided by the answers of the run);
# (2) open loop at each fraction of tokio_ct's maximum, the same absolute rate for every
# server: p50 / p99 / p99.9 from the scheduled send time, and server CPU per answer.
# Only 127.0.0.1; every run is bounded by `timeout`; only the PIDs started here are signalled.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C
# shellcheck source=scripts/lib/bench-common.sh
. scripts/lib/bench-common.sh

MODE=full
REPS=3
DUR=5
WARM=1
CONNS=64
FRACS="0.2 0.6 0.8"
SERVER_CORE=0
CLIENT_CORE=1
PORT=18540
OUT=docs/bench-drivers.md
PREBUILT=""
CMDLINE="scripts/bench-drivers.sh $*"

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) MODE=quick; REPS=1; DUR=3 ;;
        --reps) REPS="$2"; shift ;;
        --dur) DUR="$2"; shift ;;
        --warm) WARM="$2"; shift ;;
        --conns) CONNS="$2"; shift ;;
        --fracs) FRACS="$2"; shift ;;
        --server-core) SERVER_CORE="$2"; shift ;;
        --client-core) CLIENT_CORE="$2"; shift ;;
        --port) PORT="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        --bin) PREBUILT="$2"; shift ;;
        -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

SERVERS=(ringcore-io_uring ringcore-epoll tokio_ct hyper_ct)
declare -A BIN_OF=([ringcore-io_uring]=hello [ringcore-epoll]=hello [tokio_ct]=tokio_ct [hyper_ct]=hyper_ct)
declare -A DRIVER_OF=([ringcore-io_uring]=io_uring [ringcore-epoll]=epoll [tokio_ct]=auto [hyper_ct]=auto)
ADDR="127.0.0.1:$PORT"
URL="http://$ADDR/plaintext"

bench_init bench-drivers
need_cpus 2
if [ -n "$PREBUILT" ]; then
    BIN="$PREBUILT"
else
    log "building release binaries"
    cargo build --release -q -p hello -p ringcore-benches --bin hello --bin tokio_ct --bin hyper_ct --bin ringcore-load
    BIN="${CARGO_TARGET_DIR:-target}/release"
fi
for name in "${SERVERS[@]}"; do
    [ -x "$BIN/${BIN_OF[$name]}" ] || die "missing $BIN/${BIN_OF[$name]}"
done
[ -x "$BIN/ringcore-load" ] || die "missing $BIN/ringcore-load"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

json_num() { tr -d ' \n' <"$2" | sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p" | head -1; }

# run_one NAME PHASE REP RATE -> appends "name phase rep rate achieved answers cpu_ns p50 p99 p999 errors
# client_busy_%" (the last is ringcore-load's generator_busy)
run_one() {
    local name=$1 phase=$2 rep=$3 rate=$4 pid c0 c1 rc=0 answers
    start_server "$name" "$WORK/$name.log" env RINGCORE_DRIVER="${DRIVER_OF[$name]}" \
        taskset -c "$SERVER_CORE" "$BIN/${BIN_OF[$name]}" --addr "$ADDR" --cores 1
    pid=$SRV_PID
    if [ "$phase" = closed ] && [ "$rep" = 1 ]; then
        grep -q "driver: ${DRIVER_OF[$name]}" "$WORK/$name.log" || [ "${DRIVER_OF[$name]}" = auto ] ||
            die "$name did not start on ${DRIVER_OF[$name]}: $(head -3 "$WORK/$name.log")"
    fi
    rm -f "$WORK/gen.json"
    c0=$(cpu_ns "$pid")
    timeout $((DUR + WARM + 30)) taskset -c "$CLIENT_CORE" "$BIN/ringcore-load" --url "$URL" \
        --rate "$rate" --conns "$CONNS" --duration "$DUR" --warmup "$WARM" --json "$WORK/gen.json" \
        --no-progress >"$WORK/gen.out" 2>&1 || rc=$?
    c1=$(cpu_ns "$pid")
    kill -0 "$pid" 2>/dev/null || die "$name died during the run"
    stop_server "$name" "$pid" "$WORK/stops"
    [ -s "$WORK/gen.json" ] || die "ringcore-load wrote no JSON (rc $rc) for $name: $(tail -3 "$WORK/gen.out")"
    # Every answer of the run (warm-up and drain too) against the server's CPU of the run.
    answers=$(python3 -c 'import json,sys; a=json.load(open(sys.argv[1]))["status_all"]; print(sum(a.values()))' "$WORK/gen.json")
    printf '%s %s %s %s %s %s %s %s %s %s\n' "$name" "$phase" "$rep" "$rate" \
        "$(json_num achieved_rate "$WORK/gen.json")" "$answers" "$((c1 - c0))" \
        "$(python3 -c 'import json,sys; l=json.load(open(sys.argv[1]))["latency_us"]; print(l["p50"], l["p99"], l["p99_9"])' "$WORK/gen.json")" \
        "$(json_num errors "$WORK/gen.json")" \
        "$(python3 -c 'import json,sys; print("%.0f" % (100 * json.load(open(sys.argv[1]))["generator_busy"]))' "$WORK/gen.json")" >>"$WORK/runs.txt"
    log "$phase rep $rep $name @ $rate: $(tail -1 "$WORK/runs.txt")"
}

: >"$WORK/runs.txt"
for rep in $(seq "$REPS"); do
    for name in "${SERVERS[@]}"; do
        run_one "$name" closed "$rep" 0
    done
done
med() { # name phase column
    awk -v s="$1" -v p="$2" -v c="$3" '$1 == s && $2 == p {print $c}' "$WORK/runs.txt" | median
}
cpu_per() { # name phase -> median over reps of server CPU ns per answer
    awk -v s="$1" -v p="$2" '$1 == s && $2 == p && $6 > 0 {printf "%.0f\n", $7 / $6}' "$WORK/runs.txt" | median
}
TOKIO_MAX=$(med tokio_ct closed 5)
awk -v m="$TOKIO_MAX" 'BEGIN {exit !(m > 0)}' || die "tokio_ct's closed-loop maximum is $TOKIO_MAX"
for rep in $(seq "$REPS"); do
    for f in $FRACS; do
        rate=$(awk -v m="$TOKIO_MAX" -v f="$f" 'BEGIN {printf "%.0f", m * f}')
        for name in "${SERVERS[@]}"; do
            run_one "$name" "f$f" "$rep" "$rate"
        done
    done
done

{
    echo "# The two drivers: ringcore-http on io_uring and on epoll, against tokio and hyper"
    echo
    echo "Generated by \`$CMDLINE\` on $(date -u +%Y-%m-%d) ($MODE mode, commit \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`)."
    echo
    echo "- machine: \`nproc\` $(nproc), kernel \`$(uname -r)\`; load average $LOAD_BEFORE before, $(cut -d' ' -f1-3 /proc/loadavg) after"
    echo "- \`GET /plaintext\`, server on core $SERVER_CORE (\`--cores 1\`), \`ringcore-load\` on core $CLIENT_CORE, $CONNS connections, one request at a time per connection; $REPS repetition(s) of ${DUR} s after ${WARM} s warm-up, servers interleaved, medians"
    echo "- servers: \`hello\` with \`RINGCORE_DRIVER=io_uring\` and \`=epoll\` (the full ringcore-http stack: parser, router, \`Date\`, \`Server\`), \`tokio_ct\` (hand-written current-thread tokio readiness loop, no HTTP parsing, fixed response), \`hyper_ct\` (hyper 1's HTTP/1 server on current-thread tokio, \`Date\` added by hyper)"
    echo "- CPU per answer: the server's on-CPU time over the run (all threads, schedstat) / every answer of the run; latency from the scheduled send time (open loop)"
    echo
    echo "## Closed loop"
    echo
    echo "| server | answers/s | server CPU per answer (ns) | vs tokio_ct |"
    echo "|---|---:|---:|---:|"
    tk=$(cpu_per tokio_ct closed)
    for name in "${SERVERS[@]}"; do
        c=$(cpu_per "$name" closed)
        echo "| $name | $(med "$name" closed 5 | awk '{printf "%.0f", $1}') | $c | $(ratio "$c" "$tk") |"
    done
    echo
    echo "## Open loop (rates as fractions of tokio_ct's closed-loop maximum, $(printf '%.0f' "$TOKIO_MAX")/s)"
    echo
    echo "\"client busy\": how busy the load generator's core was (ringcore-load's \`generator_busy\`, median over reps); above ${BUSY_WARN}% (\"†\") the latencies include its own queueing and do not rank the servers (docs/benchmarks.md)."
    echo
    echo "| load | server | achieved/s | p50 µs | p99 µs | p99.9 µs | server CPU per answer (ns) | vs tokio_ct | errors | client busy |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for f in $FRACS; do
        tk=$(cpu_per tokio_ct "f$f")
        for name in "${SERVERS[@]}"; do
            c=$(cpu_per "$name" "f$f")
            echo "| $(awk -v f="$f" 'BEGIN {printf "%.0f%%", f * 100}') | $name | $(med "$name" "f$f" 5 | awk '{printf "%.0f", $1}') | $(med "$name" "f$f" 8) | $(med "$name" "f$f" 9) | $(med "$name" "f$f" 10) | $c | $(ratio "$c" "$tk") | $(med "$name" "f$f" 11) | $(busy_cell "$(med "$name" "f$f" 12)") |"
        done
    done
    echo
    echo "Every run (name phase rep offered achieved answers cpu_ns p50 p99 p99.9 errors client_busy_%):"
    echo
    echo '```'
    cat "$WORK/runs.txt"
    echo '```'
} >"$WORK/report.md"
cp "$WORK/report.md" "$OUT"
cat "$WORK/report.md"
log "wrote $OUT"
