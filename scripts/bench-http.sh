#!/usr/bin/env bash
# HTTP server benchmark, GET /plaintext on one pinned core, closed loop with wrk: CPU per request
# of ringcore-http (examples/hello) on the io_uring driver (rc_uring) and on the epoll driver
# (rc_epoll) side by side with its peers (issue 12): the bare io_uring loop (bare, the floor),
# tokio current-thread (tokio_ct), may_minihttp (may), hyper 1 on current-thread tokio
# (hyper_ct), actix-web with one worker (actix), axum on tokio multi-thread (axum), monoio and
# glommio. The servers, their binaries and how each is started: the one table in
# scripts/lib/bench-common.sh. Writes the generated part of docs/bench-http.md (between
# <!-- bench-http.sh:begin --> and <!-- bench-http.sh:end -->; the rest of the file is kept)
# and docs/bench-http-cpu.svg (bench_report cpu-plot: CPU per request over the bare loop's,
# per server and workload).
#
#   scripts/bench-http.sh            # default: 10 s runs, 5 reps, 2 s warm-up (about 33 min)
#   scripts/bench-http.sh --quick    # 2 s runs, 2 reps, 1 s warm-up (about 4 min)
#   scripts/bench-http.sh --quick --servers "rc_uring hyper_ct"   # a subset (bare is always run)
#
# Options: --servers "a b ..." (a subset of bare tokio_ct may hyper_ct actix axum rc_uring
# rc_epoll monoio glommio, run in this order after bare; default all; also rc_uring_ss,
# bare_hp and tokio_ct_hp, named only here: scripts/lib/bench-common.sh), --dur S, --reps N,
# --warm S, --depth N (pipelining depth, default 16), --port P, --out FILE (default
# docs/bench-http.md), --svg FILE (default --out with .md replaced by -cpu.svg), --server-core C
# (default 0), --client-core C (default 1), --budget S (seconds the measurements may take after
# the build: default 2300, quick 330; the script stops past it).
#
# Workloads: wrk -t1 with 64 connections, 256 connections, and 64 connections pipelining DEPTH
# requests per write (scripts/wrk-pipeline.lua). Each server alone on the server core
# (taskset + --cores 1, the first core of its mask), wrk alone on the client core; for each
# repetition and workload the servers run back to back (A B C ... A B C ...), each run a fresh
# server, a short warm-up, then the measured run: wrk's requests/s and the server's CPU time
# (sum over its threads of /proc/PID/task/*/schedstat field 1) -> CPU ns per request.
# Only 127.0.0.1; every run is bounded by `timeout`; only the PIDs started here are killed.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C
# shellcheck source=scripts/lib/bench-common.sh
. scripts/lib/bench-common.sh

MODE=default
PICK=""
SVG=""
DUR=10
REPS=5
WARM=2
DEPTH=16
PORT=18490
OUT=docs/bench-http.md
SERVER_CORE=0
CLIENT_CORE=1
BUDGET=2300
CMDLINE="scripts/bench-http.sh $*"

# shellcheck disable=SC2034 # BUDGET is read by check_budget (scripts/lib/bench-common.sh)
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) MODE=quick; DUR=2; REPS=2; WARM=1; BUDGET=330 ;;
        --servers) PICK="$2"; shift ;;
        --svg) SVG="$2"; shift ;;
        --dur) DUR="$2"; shift ;;
        --reps) REPS="$2"; shift ;;
        --warm) WARM="$2"; shift ;;
        --depth) DEPTH="$2"; shift ;;
        --port) PORT="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        --budget) BUDGET="$2"; shift ;;
        --server-core) SERVER_CORE="$2"; shift ;;
        --client-core) CLIENT_CORE="$2"; shift ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# The servers and how each starts: scripts/lib/bench-common.sh (PEERS_ALL, peer_start).
# Every ratio is to bare's figure of the same repetition, so bare is always run.
pick_servers "${PICK:-$PEERS_ALL}" bare
[ -n "$SVG" ] || SVG="${OUT%.md}-cpu.svg"
WORKLOADS=(c64 c256 "p$DEPTH")
declare -A WL_WHAT=([c64]="64 connections" [c256]="256 connections"
    ["p$DEPTH"]="64 connections, pipelining depth $DEPTH")
ADDR="127.0.0.1:$PORT"
URL="http://$ADDR/plaintext"
PIPE_LUA="$PWD/scripts/wrk-pipeline.lua"
bench_init bench-http
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# What was measured: the commit, and how many files of the servers' crates differ from it.
SRC_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
SRC_DIRTY=$(git status --porcelain -- runtime http examples benches 2>/dev/null | wc -l)

# ---------------------------------------------------------------- prerequisites
need_cpus 2
ensure_wrk
[ -f "$PIPE_LUA" ] || die "missing $PIPE_LUA"
log "building release binaries"
cargo build --release -q -p hello -p ringcore-benches
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
BIN="$TARGET_DIR/release"
for name in "${SERVERS[@]}"; do
    [ -x "$BIN/${PEER_BIN[$name]}" ] || die "missing $BIN/${PEER_BIN[$name]}"
done
[ -x "$BIN/bench_report" ] || die "missing $BIN/bench_report"
raise_limits 1024

budget_start # the budget starts after the build

# ---------------------------------------------------------------- helpers
run_wrk() { # workload seconds -> wrk output on stdout
    case "$1" in
        c64) wrk_run "$CLIENT_CORE" "$2" -c64 --latency "$URL" ;;
        c256) wrk_run "$CLIENT_CORE" "$2" -c256 --latency "$URL" ;;
        p*) wrk_run "$CLIENT_CORE" "$2" -c64 --latency -s "$PIPE_LUA" "$URL" -- "$DEPTH" /plaintext ;;
    esac
}

response_bytes() { # one GET /plaintext on a fresh connection -> bytes of the response
    (
        exec 3<>"/dev/tcp/127.0.0.1/$PORT"
        printf 'GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n' >&3
        timeout 0.3 cat <&3 | wc -c
    ) || true
}

# ---------------------------------------------------------------- throughput
declare -A BYTES
for wl in "${WORKLOADS[@]}"; do
    echo "server rep rps requests cpu_ns ns_per_req busy_pct p50_us p99_us max_us errors wrk_busy_pct wall_ms" \
        >"$WORK/runs.$wl"
done
echo "server workload rep server_requests wrk_requests report" >"$WORK/hello-reports"
for rep in $(seq "$REPS"); do
    for wl in "${WORKLOADS[@]}"; do
        for name in "${SERVERS[@]}"; do
            check_budget $((DUR + WARM + 5))
            # The first start of each server checks pipelining (and ringcore's driver).
            peer_start "$name" "$SERVER_CORE" "$ADDR"
            pid=$SRV_PID
            [ -n "${BYTES[$name]:-}" ] || BYTES[$name]=$(response_bytes)
            wout=$(run_wrk "$wl" "$WARM") || die "wrk failed (warm-up, $wl, $name): $wout"
            wreqs=$(wrk_requests <<<"$wout")
            t0=$(date +%s%N)
            c0=$(cpu_ns "$pid")
            out=$(run_wrk "$wl" "$DUR") || die "wrk failed ($wl, $name): $out"
            c1=$(cpu_ns "$pid")
            t1=$(date +%s%N)
            wcpu=$(cat "$WORK/wrk.cpu")
            kill -0 "$pid" 2>/dev/null || die "$name died during the run"
            stop_server "$name" "$pid" "$WORK/stops"
            reqs=$(wrk_requests <<<"$out")
            rps=$(wrk_rps <<<"$out")
            p50=$(wrk_pct_us 50% <<<"$out")
            p99=$(wrk_pct_us 99% <<<"$out")
            max=$(wrk_max_us <<<"$out")
            errs=$(wrk_errors <<<"$out")
            { [ -n "$reqs" ] && [ "$reqs" -gt 0 ]; } || die "no requests parsed from wrk for $name: $out"
            cpu=$((c1 - c0))
            nspr=$(awk -v c="$cpu" -v r="$reqs" 'BEGIN {printf "%.0f", c / r}')
            # Busy: over the wall time between the two CPU reads (wrk's start, connects and exit
            # make it a little longer than --dur).
            wall=$(((t1 - t0) / 1000000))
            busy=$(awk -v c="$cpu" -v w="$wall" 'BEGIN {printf "%.1f", c / (w * 1e4)}')
            wbusy=$(awk -v c="$wcpu" -v w="$wall" 'BEGIN {printf "%.1f", c * 1e5 / w}')
            echo "$name $rep $rps $reqs $cpu $nspr $busy $p50 $p99 $max $errs $wbusy $wall" >>"$WORK/runs.$wl"
            if [ "${PEER_BIN[$name]}" = hello ]; then
                # hello's own count at its stop ("hello stopped: N connections, N requests, ...")
                rpt=$(sed -n 's/^hello stopped: //p' "$WORK/$name.log" | tr ' ' '_')
                sreqs=$(sed -n 's/^hello stopped: .*, \([0-9]*\) requests,.*/\1/p' "$WORK/$name.log")
                echo "$name $wl $rep ${sreqs:-nan} $((wreqs + reqs)) ${rpt:-none}" >>"$WORK/hello-reports"
            fi
            # Anything the server wrote besides its start and stop lines.
            grep -vE -e 'listening on' -e '^[a-z_]+ stopped(:|$)' "$WORK/$name.log" |
                sed "s/^/$wl rep $rep $name: /" >>"$WORK/server-stderr" || true
            log "rep $rep/$REPS $wl $name: $rps req/s, $nspr CPU ns/req, server ${busy}% busy, wrk ${wbusy}% busy, p99 ${p99}us, max ${max}us, errors $errs"
        done
    done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- clean stops
unclean=$(awk '$2 != 0' "$WORK/stops" | sort | uniq -c || true)
STOPS="every server exited 0 on SIGTERM, $(wc -l <"$WORK/stops") stops"
[ -z "$unclean" ] || STOPS="NOT all clean: $(echo "$unclean" | tr '\n' ';')"
log "$STOPS"

# ---------------------------------------------------------------- report
ELAPSED=$(($(date +%s) - T0))
range() { # column file... -> "min-max" over every run
    awk -v c="$1" 'FNR > 1 {if (min == "" || $c < min) min = $c; if ($c > max) max = $c}
        END {printf "%.0f-%.0f", min, max}' "${@:2}"
}
UNPIPED=("$WORK/runs.c64" "$WORK/runs.c256")
PIPED="$WORK/runs.p$DEPTH"
others=("${SERVERS[@]:1}")
# The plot's data: CPU per request over bare's, paired medians, per workload and server; kept in
# bench-results/ (gitignored) so the plot can be redrawn.
mkdir -p bench-results
RATIOS="bench-results/bench-http-$(date -u +%Y%m%dT%H%M%SZ)-cpu.txt"
{
    echo "# workload server cpu_per_request_over_bare (scripts/bench-http.sh, $MODE mode)"
    for wl in "${WORKLOADS[@]}"; do
        for name in "${SERVERS[@]}"; do
            echo "$wl $name $(paired "$name" bare 6 "$WORK/runs.$wl")"
        done
    done
} >"$RATIOS"
mkdir -p "$(dirname "$SVG")"
"$BIN/bench_report" cpu-plot --data "$RATIOS" --svg "$SVG" \
    --title "GET /plaintext, one server core: CPU per request over the bare loop's ($MODE run)" >/dev/null ||
    die "bench_report cpu-plot failed"
# The SVG's path as the doc links it (relative to the doc's folder when it is in there).
SVG_LINK=$SVG
[ "$(dirname "$SVG")" != "$(dirname "$OUT")" ] || SVG_LINK=$(basename "$SVG")
{
cat <<EOF
# HTTP benchmark: CPU per request of ringcore-http and its peers

\`GET /plaintext\` (\`Hello, World!\`) on one pinned server core, closed loop with wrk, every
figure also as a ratio to the bare io_uring loop of the same repetition. Generated by
\`scripts/bench-http.sh\`: the servers are the one table of \`scripts/lib/bench-common.sh\`,
each started the same way (\`taskset -c $SERVER_CORE BINARY --addr $ADDR --cores 1\`; the ringcore
ones with \`RINGCORE_DRIVER\` set and checked in the start-up line). Response bytes were read
from one answer of each server in this run.

| server | binary | what | response bytes |
|---|---|---|---:|
$(for name in "${SERVERS[@]}"; do
    b="\`${PEER_BIN[$name]}\`"
    [ -z "${PEER_DRIVER[$name]:-}" ] || b+=" (\`RINGCORE_DRIVER=${PEER_DRIVER[$name]}\`)"
    echo "| $name | $b | ${PEER_WHAT[$name]} | ${BYTES[$name]:-?} |"
done)

The responses are not byte-identical: bare, tokio_ct, monoio and glommio (and bare_hp and
tokio_ct_hp, where named) send the fixed 78-byte answer (\`Content-Length\`,
\`Content-Type: text/plain\`, no \`Date\`); the others add a \`Date\` (and ringcore and may a
\`Server\`). bare and tokio_ct skip HTTP parsing and routing altogether (they count
\`\\r\\n\\r\\n\`; bare_hp and tokio_ct_hp frame with httparse instead): a server's ratio to
bare is the whole price of its HTTP stack, parsing, routing, the handler and the larger
response.

![CPU per request over the bare loop's]($SVG_LINK)

The plot's figures (the "CPU ns/req vs bare" columns below): \`$RATIOS\` (gitignored); redraw
with \`bench_report cpu-plot --data FILE --svg FILE\`.

## Method

- **Placement.** Each server runs alone on core $SERVER_CORE (\`taskset -c $SERVER_CORE\` and
  \`--cores 1\`: one core, the first of the process's mask, for every binary: one thread,
  worker or executor); wrk runs alone on core $CLIENT_CORE with one thread (\`-t1\`).
- **Workloads.** \`c64\`: \`wrk -t1 -c64 -d${DUR}s --latency $URL\`; \`c256\`: the same with
  \`-c256\`; \`p$DEPTH\`: \`-c64\` with \`-s scripts/wrk-pipeline.lua $URL -- $DEPTH /plaintext\`,
  i.e. $DEPTH requests per write on each connection, the next batch once all $DEPTH answers are
  in (wrk's and TechEmpower's pipelining).
- **Runs.** Every run starts a fresh server, warms it with a ${WARM} s run of
  the same workload, then measures for ${DUR} s. For each of $REPS repetitions, for each
  workload, the servers run back to back (${SERVERS[*]}, then again), so drift on the shared
  machine hits all alike. Before its first run each server must answer three
  \`GET /plaintext\` pipelined in two writes with three \`Hello, World!\`.
- **CPU per request.** The server's CPU time is the sum over its threads of the first field of
  \`/proc/PID/task/*/schedstat\` (on-CPU ns, including the kernel's TCP and loopback work done
  on those threads), read before and after the measured run, divided by the requests wrk
  completed in it. "core busy" is that CPU time over the wall time between the two reads
  (wrk's start-up, connects and exit make that a little longer than ${DUR} s: "wall ms" in the
  per-run table). "wrk busy" is wrk's own user + system time (from the shell's \`times\`
  around wrk) over the same wall time.
- **Ratios.** "vs bare" ratios are paired: in each repetition the server's figure over bare's
  from the same repetition and workload, then the median over the repetitions. The
  per-repetition ratios are listed too; the plot shows the paired medians of CPU per request.
- **Clean stop.** Every server is stopped with SIGTERM and must exit 0. This run: $STOPS.

## Reading the figures

- **CPU/request ranks the servers; requests/s mostly measures wrk.** Unpipelined, one wrk
  thread saturates its own core near 120-170k req/s on this machine (the wrk busy column,
  $(range 12 "${UNPIPED[@]}")% here), at or before the point where a good server does: the
  servers' req/s then look alike while one burns more CPU per request than another. In these
  runs the server cores were $(range 7 "${UNPIPED[@]}")% busy unpipelined at
  $(awk 'FNR > 1 {if (min == "" || $3 < min) min = $3; if ($3 > max) max = $3} END {printf "%.0fk-%.0fk", min / 1000, max / 1000}' "${UNPIPED[@]}") req/s.
- **A less busy server pays more per request.** It handles fewer requests per wake-up and so
  more syscalls per request: compare CPU/request between servers at similar req/s and core
  busy.
- **Pipelined, wrk needs about a tenth of the CPU per request**, so a server can be the
  bottleneck: one whose core is near 100% busy is (its req/s is its capacity, and CPU/request
  about its inverse); one well below 100% busy while wrk's core is full is still waiting on
  wrk. Here the server cores were $(range 7 "$PIPED")% busy pipelined, wrk's $(range 12 "$PIPED")%.
- **Latency under pipelining** is wrk's per-batch figure and its percentiles are unreliable
  with a Lua \`request()\` (wrk 4.1 prints 99% below 90% or as 0); read only the unpipelined
  latencies.
- **Noise.** The machine is a shared 2-core VM (load average $LOAD_BEFORE before, $LOAD_AFTER
  after, other sessions' work included); the per-run table shows the spread. Differences of a
  few percent are within it. A run in which both the server's and wrk's cores were well under
  100% busy shared its cores with other work: its requests/s say nothing about the server
  and its CPU/request is inflated (colder caches, fewer requests per wake-up); the
  repetitions with wrk near 100% busy are the clean ones.
$(if [ "$MODE" = quick ]; then printf -- '- **This is a quick run** (%s repetitions of %s s)%s: its figures are indicative only; one\n  disturbed run moves a median. Ratios of a few percent need the default mode (5 x 10 s) on a\n  quiet machine.\n' "$REPS" "$DUR" "$(if [ "$(nproc)" -le 2 ]; then echo " on a shared $(nproc)-core VM"; fi)"; fi)
$(awk -v l="${LOAD_BEFORE%% *}" -v c="$(nproc)" 'BEGIN {if (l >= 0.5 * c) printf "- **This machine was busy with other work** (load average %s on %d CPUs before the run):\n  the figures say as much about that work as about the servers.\n", l, c}')
$(if [ "$MODE" = quick ]; then :; elif [ "$REPS" -lt 5 ]; then printf -- '- **This is a %s-repetition run** of %s s: one disturbed run moves a median. Ratios of a\n  few percent need the default mode (5 x 10 s).\n' "$REPS" "$DUR"; fi)

## Machine

$(machine_md)
- servers built from commit \`$SRC_REV\`$(if [ "$SRC_DIRTY" -gt 0 ]; then echo " plus uncommitted changes under runtime/, http/, examples/, benches/ ($SRC_DIRTY entries of \`git status\`)"; fi)
- $(if [ "$MODE" = quick ]; then echo "mode: **quick** (--quick: ${DUR} s runs, $REPS reps, ${WARM} s warm-up)"; else echo "mode: ${DUR} s runs, $REPS reps, ${WARM} s warm-up"; fi)
- generated $(date -u +%Y-%m-%dT%H:%MZ) in ${ELAPSED} s by:

\`\`\`sh
$CMDLINE
\`\`\`

With all ten servers the default mode (\`scripts/bench-http.sh\`: 10 s runs, 5 reps, 2 s
warm-up, 150 runs) takes about 33 minutes; \`--quick\` (2 s, 2 reps, 1 s warm-up, 60 runs)
about 4 (both after the release build; each stops itself past its budget, 2300 s and 330 s).
\`--servers "..."\` runs fewer.

## Results

Medians over $REPS runs each. CPU ns/request: lower is better. Ratios vs bare: paired
medians (see Method); above 1 means more CPU per request, or more requests/s, than the bare
loop.
EOF
for wl in "${WORKLOADS[@]}"; do
    f="$WORK/runs.$wl"
    echo
    echo "### $wl: ${WL_WHAT[$wl]}"
    echo
    echo "| server | req/s | CPU ns/request | CPU ns/req vs bare | req/s vs bare | core busy | wrk busy | p50 | p99 | max latency | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for name in "${SERVERS[@]}"; do
        errs=$(awk -v s="$name" '$1 == s {e += $11} END {print e + 0}' "$f")
        if [ "$wl" = "p$DEPTH" ]; then
            lat="- | - | $(col "$name" 10 "$f" | awk '{printf "%.0f us", $1}')"
        else
            lat=$(printf '%.0f us | %.0f us | %.0f us' "$(col "$name" 8 "$f")" "$(col "$name" 9 "$f")" \
                "$(col "$name" 10 "$f")")
        fi
        printf '| %s | %.0f | %.0f | %s | %s | %.1f%% | %.1f%% | %s | %s |\n' "$name" \
            "$(col "$name" 3 "$f")" "$(col "$name" 6 "$f")" \
            "$(paired "$name" bare 6 "$f")" "$(paired "$name" bare 3 "$f")" \
            "$(col "$name" 7 "$f")" "$(col "$name" 12 "$f")" "$lat" "$errs"
    done
done
# per_rep TITLE COLUMN: one table, a row per workload and repetition, a column per server.
per_rep() {
    local hdr="| workload | rep |" sep="|---|---:|" name wl f rep line
    for name in "${others[@]}"; do hdr+=" $name |"; sep+="---:|"; done
    printf '\n%s\n\n%s\n%s\n' "$1" "$hdr" "$sep"
    for wl in "${WORKLOADS[@]}"; do
        f="$WORK/runs.$wl"
        for rep in $(seq "$REPS"); do
            line="| $wl | $rep |"
            for name in "${others[@]}"; do
                line+=" $(awk -v a="$name" -v r="$rep" -v c="$2" '$1 == "bare" && $2 == r {b = $c}
                    $1 == a && $2 == r {x = $c} END {if (b > 0) printf "%.3f", x / b; else print "nan"}' "$f") |"
            done
            echo "$line"
        done
    done
}
printf '\n### Ratios to bare in each repetition\n'
per_rep "CPU ns/request over bare's in the same repetition:" 6
per_rep "Requests/s over bare's in the same repetition:" 3
cat <<EOF

### ringcore-http's own count

\`hello\` prints its totals when it stops (\`hello stopped: N connections, N requests, N refused
at the limit, N cut at shutdown\`). "wrk" is what wrk counted in the warm-up plus the measured
run; the difference is requests still in flight when wrk stopped (at most one batch per
connection), plus the few answered after wrk's clock ran out.

| server | workload | rep | hello's report | hello requests | wrk requests | difference |
|---|---|---:|---|---:|---:|---:|
EOF
tail -n +2 "$WORK/hello-reports" | awk '{r = $6; gsub(/_/, " ", r)
    d = ($4 ~ /^[0-9]+$/) ? $4 - $5 : "nan"
    printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, r, $4, $5, d}'
if [ -s "$WORK/server-stderr" ]; then
    printf '\nOther lines the servers printed:\n\n```\n'
    head -50 "$WORK/server-stderr"
    printf '```\n'
else
    printf '\nNo server printed anything besides its start and stop lines.\n'
fi
cat <<EOF

### Every run

CPU in ns; busy = CPU time / wall time; latencies in us (pipelined: per batch, unreliable).

| workload | server | rep | req/s | requests | server CPU ns | ns/request | wall ms | core busy % | wrk busy % | p50 | p99 | max | errors |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
for wl in "${WORKLOADS[@]}"; do
    tail -n +2 "$WORK/runs.$wl" | awk -v w="$wl" '{printf "| %s | %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %.0f | %.0f | %.0f | %s |\n",
        w, $1, $2, $3, $4, $5, $6, $13, $7, $12, $8, $9, $10, $11}'
done
} >"$WORK/report.md"

mkdir -p "$(dirname "$OUT")"
update_doc bench-http.sh "$WORK/report.md" "$OUT"
log "wrote $OUT and $SVG"
sed -n '/^## Results/,/^### Ratios to bare/p' "$WORK/report.md"
