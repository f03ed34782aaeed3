#!/usr/bin/env bash
# Server-level runtime benchmark: naive io_uring loop vs ringcore vs tokio (current-thread),
# the same fixed-response HTTP/1.1 server on each. Writes docs/bench-runtime.md.
#
#   scripts/bench-runtime.sh            # default: 10 s runs, 5 reps, 10000 idle connections
#   scripts/bench-runtime.sh --quick    # 3 s runs, 2 reps, 2000 idle connections (< 3 min)
#
# Options: --dur S, --reps N, --idle N, --port P, --out FILE (default docs/bench-runtime.md),
# --server-core C (default 0), --client-core C (default 1), --budget S (seconds the
# measurements may take after the build: default 900, quick 170; the script stops past it).
#
# Throughput: each server alone on one core (taskset + --cores), wrk alone on another
# (-t1 -c64), servers interleaved A B C A B C; per run: wrk's requests/s and the server's CPU
# time (sum over its threads of /proc/PID/task/*/schedstat field 1) -> CPU ns per request.
# Memory: VmRSS of a warmed-up server before and while it holds N idle keep-alive connections.
# Only 127.0.0.1; every run is bounded by `timeout`; only the PIDs started here are killed.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C
# shellcheck source=scripts/lib/bench-common.sh
. scripts/lib/bench-common.sh

MODE=default
DUR=10
REPS=5
IDLE=10000
WARM=1
HOLD_MAX=60
PORT=18480
OUT=docs/bench-runtime.md
SERVER_CORE=0
CLIENT_CORE=1
CONNS=64
BUDGET=900 # seconds for the measurements (after the build); the script stops past it
CMDLINE="scripts/bench-runtime.sh $*"

# shellcheck disable=SC2034 # BUDGET is read by check_budget (scripts/lib/bench-common.sh)
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) MODE=quick; DUR=3; REPS=2; IDLE=2000; BUDGET=170 ;;
        --dur) DUR="$2"; shift ;;
        --reps) REPS="$2"; shift ;;
        --idle) IDLE="$2"; shift ;;
        --port) PORT="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        --budget) BUDGET="$2"; shift ;;
        --server-core) SERVER_CORE="$2"; shift ;;
        --client-core) CLIENT_CORE="$2"; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

SERVERS=(naive ringcore tokio_ct)
declare -A BIN_OF=([naive]=naive_uring [ringcore]=ringcore_fixed [tokio_ct]=tokio_ct)
ADDR="127.0.0.1:$PORT"
CORE_ARG="$SERVER_CORE,"
URL="http://$ADDR/"
bench_init bench-runtime

# ---------------------------------------------------------------- prerequisites
need_cpus 2
ensure_wrk
log "building release binaries"
cargo build --release -q -p ringcore-benches --bins
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
BIN="$TARGET_DIR/release"
for b in naive_uring ringcore_fixed tokio_ct idle_conns; do
    [ -x "$BIN/$b" ] || die "missing $BIN/$b"
done

budget_start # the budget starts after the build

# Servers and idle_conns each need IDLE fds and then some.
NOFILE=$((IDLE + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$NOFILE" ]; then
    ulimit -n "$NOFILE" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi

# ---------------------------------------------------------------- helpers
start_one() { # name -> sets SRV_PID
    # One core id alone is written as a list (`3,`): a bare `3` is a count (the first 3 cores).
    start_server "$1" "$WORK/$1.log" taskset -c "$SERVER_CORE" "$BIN/${BIN_OF[$1]}" \
        --addr "$ADDR" --cores "$CORE_ARG"
}

run_wrk() { # seconds -> wrk output on stdout
    wrk_run "$CLIENT_CORE" "$1" -c"$CONNS" --latency "$URL"
}

# ---------------------------------------------------------------- throughput
echo "server rep rps requests cpu_ns ns_per_req busy_pct p99_us errors" >"$WORK/runs"
for rep in $(seq "$REPS"); do
    for name in "${SERVERS[@]}"; do
        check_budget $((DUR + WARM + 5))
        start_one "$name"
        pid=$SRV_PID
        [ "$rep" = 1 ] && check_pipelining "$name" "$PORT" /
        run_wrk "$WARM" >/dev/null
        c0=$(cpu_ns "$pid")
        out=$(run_wrk "$DUR")
        c1=$(cpu_ns "$pid")
        kill -0 "$pid" 2>/dev/null || die "$name died during the run"
        stop_server "$name" "$pid" "$WORK/stops"
        reqs=$(wrk_requests <<<"$out")
        rps=$(wrk_rps <<<"$out")
        p99=$(wrk_pct_us 99% <<<"$out")
        errs=$(wrk_errors <<<"$out")
        [ -n "$reqs" ] && [ "$reqs" -gt 0 ] || die "no requests parsed from wrk for $name: $out"
        cpu=$((c1 - c0))
        nspr=$(awk -v c="$cpu" -v r="$reqs" 'BEGIN {printf "%.0f", c / r}')
        busy=$(awk -v c="$cpu" -v d="$DUR" 'BEGIN {printf "%.1f", c / (d * 1e7)}')
        echo "$name $rep $rps $reqs $cpu $nspr $busy $p99 $errs" >>"$WORK/runs"
        log "rep $rep/$REPS $name: $rps req/s, $nspr CPU ns/req, server core ${busy}% busy, p99 ${p99}us, errors $errs"
    done
done

declare -A RPS NSPR BUSY P99 ERRS
for name in "${SERVERS[@]}"; do
    RPS[$name]=$(col "$name" 3 "$WORK/runs")
    NSPR[$name]=$(col "$name" 6 "$WORK/runs")
    BUSY[$name]=$(col "$name" 7 "$WORK/runs")
    P99[$name]=$(col "$name" 8 "$WORK/runs")
    ERRS[$name]=$(awk -v s="$name" '$1 == s {e += $9} END {print e + 0}' "$WORK/runs")
done

# ---------------------------------------------------------------- memory per idle connection
HOLD=$(( HOLD_MAX ))
echo "server cold_kib warm_kib held_kib kib_per_conn conns" >"$WORK/mem"
for name in "${SERVERS[@]}"; do
    check_budget 15
    start_one "$name"
    pid=$SRV_PID
    cold=$(rss_kib "$pid")
    # Warm-up: touches the receive buffers and allocator arenas a loaded server uses anyway.
    run_wrk "$WARM" >/dev/null
    sleep 0.3
    warm=$(rss_kib "$pid")
    start_bg taskset -c "$CLIENT_CORE" timeout $((HOLD + 90)) "$BIN/idle_conns" --addr "$ADDR" \
        --conns "$IDLE" --hold "$HOLD" --timeout 60 >"$WORK/idle.out" 2>"$WORK/idle.err"
    ipid=$BG_PID
    ok=0
    for _ in $(seq 1200); do
        if grep -q '^ready' "$WORK/idle.out"; then ok=1; break; fi
        kill -0 "$ipid" 2>/dev/null || break
        sleep 0.05
    done
    [ "$ok" = 1 ] || { cat "$WORK/idle.err" >&2; die "idle_conns failed against $name"; }
    n=$(awk '/^ready/ {print $2}' "$WORK/idle.out")
    sleep 0.5
    held=$(rss_kib "$pid")
    kill -TERM "$ipid" 2>/dev/null || true
    wait "$ipid" || true
    forget "$ipid"
    stop_server "$name" "$pid" "$WORK/stops"
    per=$(awk -v h="$held" -v w="$warm" -v n="$n" 'BEGIN {printf "%.2f", (h - w) / n}')
    echo "$name $cold $warm $held $per $n" >>"$WORK/mem"
    log "$name: VmRSS cold $cold KiB, warm $warm KiB, with $n idle conns $held KiB -> $per KiB/conn"
done
memcol() { awk -v s="$1" -v c="$2" '$1 == s {print $c}' "$WORK/mem"; }

# ---------------------------------------------------------------- clean stops
unclean=$(awk '$2 != 0' "$WORK/stops" | sort | uniq -c || true)
STOPS="every server exited 0 on SIGTERM, $(wc -l <"$WORK/stops") stops"
[ -z "$unclean" ] || STOPS="NOT all clean: $(echo "$unclean" | tr '\n' ';')"
log "$STOPS"

# ---------------------------------------------------------------- report
ELAPSED=$(($(date +%s) - T0))
BUSY_RANGE=$(awk 'NR > 1 {if (min == "" || $7 < min) min = $7; if ($7 > max) max = $7} END {printf "%.0f-%.0f%%", min, max}' "$WORK/runs")
RPS_RANGE=$(awk 'NR > 1 {if (min == "" || $3 < min) min = $3; if ($3 > max) max = $3} END {printf "%.0fk-%.0fk", min / 1000, max / 1000}' "$WORK/runs")
{
cat <<EOF
# Runtime benchmark: naive io_uring vs ringcore vs tokio

The same fixed-response HTTP/1.1 server three ways, in \`benches/src/bin/\`:

| server | binary | what |
|---|---|---|
| naive | \`naive_uring\` | straight on the \`io-uring\` crate, no runtime: multishot accept, multishot receive on a provided buffer ring, one \`submit_and_wait(1)\` per loop turn. The floor. |
| ringcore | \`ringcore_fixed\` | \`ringcore-runtime\`: \`TcpListener::accept_stream\`, one task per connection, \`recv\` + \`write_all\`. |
| tokio_ct | \`tokio_ct\` | one current-thread tokio runtime per core (epoll), \`SO_REUSEPORT\`, readiness + \`try_read\` into a per-thread scratch buffer, \`write_all\`. |

All three count one request per \`\\r\\n\\r\\n\` (pipelining allowed; the shared
\`ringcore_benches::RequestCounter\`), answer each with the same 78-byte response, send all
answers to one read in one write from a static buffer, set \`TCP_NODELAY\`, and run one
thread on the one core they are given.

## Method

- **Throughput and CPU.** Each server runs alone on core $SERVER_CORE (\`taskset -c $SERVER_CORE\`,
  \`--cores $CORE_ARG\`); \`wrk -t1 -c$CONNS -d${DUR}s --latency\` runs alone on core $CLIENT_CORE. Each
  run starts a fresh server, warms it with a ${WARM} s wrk run, then measures. Servers are
  interleaved (naive, ringcore, tokio_ct, naive, ...) for $REPS repetitions so drift on the
  machine hits all three alike; the table gives medians.
- **Why CPU per request, not only requests/s.** On this machine one wrk thread saturates
  near 120-140k req/s (up to about 170k when the VM is quiet), before or at about the point
  where a good server does: requests/s then mostly measures wrk, and the servers look alike
  while one may burn more CPU per request than another. So each run also reads the server's
  CPU time (sum over its threads of the first field of \`/proc/PID/task/*/schedstat\`,
  on-CPU nanoseconds, which includes the kernel's TCP and loopback work done on those
  threads) before and after the measured wrk run, and divides it by the requests wrk
  completed. "core busy" is that CPU time over the run's wall time; in this run the servers'
  cores were $BUSY_RANGE busy at $RPS_RANGE req/s.
- **Reading the CPU figure.** A server that is less busy handles fewer requests per wake-up
  and so pays more syscalls per request: compare CPU/request between runs at similar req/s
  and core busy. The machine is a shared 2-core VM; the per-run table below shows the spread,
  and differences of a few percent are within it.
- **Memory per idle connection.** Fresh server, ${WARM} s wrk warm-up (so receive buffers and
  allocator arenas any loaded server has are already counted), VmRSS read; then
  \`idle_conns\` opens $IDLE keep-alive connections, makes one request on each, and holds them;
  VmRSS read again while they are held. KiB per idle connection = (held - warm) / connections.
  This is user-space memory only; the kernel's socket memory is the same for all three.
  tokio_ct's warm figure is lower because it has no receive buffer ring (one 4 KiB scratch
  buffer per thread); the per-connection figure subtracts the warm figure, so it is not
  affected.
- **Clean stop.** Every server is stopped with SIGTERM and must exit 0. This run: $STOPS.

## Machine

$(machine_md)
- $(if [ "$MODE" = quick ]; then echo "mode: **quick** (--quick: ${DUR} s runs, $REPS reps, $IDLE idle connections)"; else echo "mode: ${DUR} s runs, $REPS reps, $IDLE idle connections"; fi)
- generated $(date -u +%Y-%m-%dT%H:%MZ) in ${ELAPSED} s by:

\`\`\`sh
$CMDLINE
\`\`\`

The default mode (\`scripts/bench-runtime.sh\`: 10 s runs, 5 reps, 10000 idle connections)
takes about 3 minutes; \`--quick\` about 1 (both after the release build; quick mode stops itself past 170 s).

## Results

Medians over $REPS runs each. Ratios are paired: in each repetition, the server's figure over
naive's (or tokio_ct's) from the same repetition, then the median over repetitions. CPU
ns/request: lower is better; below 1.000 vs tokio_ct means cheaper than tokio.
$(if [ "$REPS" -lt 5 ]; then printf '\n%s\n%s\n' \
    "With $REPS repetitions of ${DUR} s one disturbed run moves a median: this is a smoke test of" \
    "the set-up, and ratios of a few percent need the default mode (5 x 10 s)."; fi)

| server | req/s | CPU ns/request | core busy | p99 latency | ns/req vs naive | ns/req vs tokio_ct | req/s vs naive | req/s vs tokio_ct | errors |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
for name in "${SERVERS[@]}"; do
    printf '| %s | %.0f | %.0f | %.1f%% | %.0f us | %s | %s | %s | %s | %s |\n' "$name" "${RPS[$name]}" \
        "${NSPR[$name]}" "${BUSY[$name]}" "${P99[$name]}" \
        "$(paired "$name" naive 6 "$WORK/runs")" "$(paired "$name" tokio_ct 6 "$WORK/runs")" \
        "$(paired "$name" naive 3 "$WORK/runs")" "$(paired "$name" tokio_ct 3 "$WORK/runs")" "${ERRS[$name]}"
done
cat <<EOF

Memory, $IDLE idle keep-alive connections (VmRSS, KiB):

| server | cold | after warm-up | holding connections | KiB per idle connection | vs naive | vs tokio_ct |
|---|---:|---:|---:|---:|---:|---:|
EOF
for name in "${SERVERS[@]}"; do
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$(memcol "$name" 2)" "$(memcol "$name" 3)" \
        "$(memcol "$name" 4)" "$(memcol "$name" 5)" \
        "$(ratio "$(memcol "$name" 5)" "$(memcol naive 5)")" "$(ratio "$(memcol "$name" 5)" "$(memcol tokio_ct 5)")"
done
cat <<EOF

Every run (CPU in ns; busy = server CPU / wall time):

| server | rep | req/s | requests | server CPU ns | ns/request | core busy % | p99 us | errors |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
tail -n +2 "$WORK/runs" |
    awk '{printf "| %s | %s | %.0f | %s | %s | %s | %s | %.0f | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9}'
} >"$WORK/report.md"

mkdir -p "$(dirname "$OUT")"
cp "$WORK/report.md" "$OUT"
log "wrote $OUT"
sed -n '/^## Results/,$p' "$OUT"
