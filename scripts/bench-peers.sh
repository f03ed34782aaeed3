#!/usr/bin/env bash
# ringcore-http against its peers (issue 12): GET /plaintext on one pinned server core, load on
# another, every figure also as a ratio to the bare io_uring loop (naive_uring) of the same rep.
# Writes the tables into docs/bench-peers.md (between its bench-peers markers) and keeps every
# run, the report and the timelines in the output directory.
#
#   scripts/bench-peers.sh                # 3 reps, 5 s runs, 1 s warm-up (about 25 min)
#   scripts/bench-peers.sh --quick        # 1 rep, 2 s runs (about 5 min)
#   scripts/bench-peers.sh --timeline     # also one latency timeline per server at the highest load
#
# Options: --reps N, --dur S, --warm S, --fracs "0.2 0.4 0.6 0.8", --rates "5000 10000" (absolute
# offered rates instead of fractions; then no peer is needed besides bare), --servers "bare rc_uring ..."
# (a subset, in this order; bare is always run), --server-core C (0; a list such as 0-3 with
# --server-cores), --server-cores K (1: the server's threads, workers or executors), --client-core
# C (1; a list such as 8-15 with --gen-cores), --gen-cores N (1: ringcore-load's cores),
# --phases "c64 c256 pipe16" (the closed-loop and pipelined phases to run; wrk only for pipe16),
# --open-conns N (64: the open loop's connections; its rates are fractions of the cN phase's
# maximum, so cN must be in --phases), --port P (18560), --out-dir DIR (bench-results/peers),
# --doc FILE (docs/bench-peers.md), --doc-marker NAME (bench-peers: the doc's section markers),
# --no-doc (leave the doc alone), --bin DIR (prebuilt binaries, e.g. target/debug for a smoke).
# scripts/bench-peers-16core.sh runs it at 1, 2, 4 and 8 server cores on a 16-core machine.
#
# Steps; every run is a fresh server pinned with taskset to the server core(s) (`--cores K`:
# K threads, workers or executors; 1 by default), the client pinned to the client core(s), the
# servers interleaved within each rep (A B C ... A B C ...), medians over reps of per-rep
# ratios to `bare`:
# (a) closed loop, ringcore-load --rate 0 at each cN of --phases (64 and 256 connections by
#     default): answers/s and server CPU per answer (sum of /proc/PID/task/*/schedstat field 1
#     over the run / every answer);
# (b) pipelined x16: wrk -t1 -c64 -s scripts/wrk-pipeline.lua (16 requests per write); CPU
#     per answer from wrk's request count (wrk counts single responses);
# (c) open loop at each fraction of the best peer's (neither rc_* nor bare, bare_hp) closed-loop maximum
#     at --open-conns connections (median over reps), or at the --rates given, the same
#     absolute rates for every server: p50/p99/p99.9
#     from the scheduled send time and server CPU per answer. With --timeline, rep 1's run at
#     the highest load writes timeline-SERVER.csv (ringcore-load --timeline; one request
#     in N kept so that a run has at most 200,000 lines) and timeline-SERVER.txt
#     (scripts/timeline-report.py) into the output directory.
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
FRACS="0.2 0.4 0.6 0.8"
RATES=""
SERVER_CORE=0
SERVER_CORES=1
CLIENT_CORE=1
GEN_CORES=1
PHASES="c64 c256 pipe16"
OPEN_CONNS=64
MARKER=bench-peers
PORT=18560
OUT_DIR=bench-results/peers
DOC=docs/bench-peers.md
WRITE_DOC=1
TIMELINE=0
PREBUILT=""
PICK="$PEERS_ALL"
CMDLINE="scripts/bench-peers.sh $*"

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) MODE=quick; REPS=1; DUR=2 ;;
        --timeline) TIMELINE=1 ;;
        --reps) REPS="$2"; shift ;;
        --dur) DUR="$2"; shift ;;
        --warm) WARM="$2"; shift ;;
        --fracs) FRACS="$2"; shift ;;
        --rates) RATES="$2"; shift ;;
        --servers) PICK="$2"; shift ;;
        --server-core) SERVER_CORE="$2"; shift ;;
        --server-cores) SERVER_CORES="$2"; shift ;;
        --client-core) CLIENT_CORE="$2"; shift ;;
        --gen-cores) GEN_CORES="$2"; shift ;;
        --phases) PHASES="$2"; shift ;;
        --open-conns) OPEN_CONNS="$2"; shift ;;
        --doc-marker) MARKER="$2"; shift ;;
        --port) PORT="$2"; shift ;;
        --out-dir) OUT_DIR="$2"; shift ;;
        --doc) DOC="$2"; shift ;;
        --no-doc) WRITE_DOC=0 ;;
        --bin) PREBUILT="$2"; shift ;;
        -h | --help) sed -n '2,36p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# The servers and how each starts: scripts/lib/bench-common.sh (PEERS_ALL, peer_start).
pick_servers "$PICK" bare
if [ -z "$RATES" ] && [ -n "$FRACS" ]; then
    peer=""
    for name in "${SERVERS[@]}"; do
        case $name in rc_* | bare | bare_hp) ;; *) peer=$name ;; esac
    done
    [ -n "$peer" ] || { echo "--fracs needs a peer besides bare and rc_* in --servers to take the rates from (or --rates)" >&2; exit 2; }
fi
[[ $DUR =~ ^[1-9][0-9]*$ ]] || { echo "--dur: whole seconds (wrk's -d), got $DUR" >&2; exit 2; }
[[ $REPS =~ ^[1-9][0-9]*$ ]] || { echo "--reps: a positive number, got $REPS" >&2; exit 2; }
[[ $WARM =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "--warm: seconds, got $WARM" >&2; exit 2; }
for p in $PHASES; do
    case $p in c[1-9]*) [[ $p =~ ^c[0-9]+$ ]] || { echo "--phases: unknown phase $p" >&2; exit 2; } ;;
        pipe16) ;; *) echo "--phases: unknown phase $p (c<conns> or pipe16)" >&2; exit 2 ;; esac
done
if [ -n "$RATES" ]; then
    for r in $RATES; do
        [[ $r =~ ^[1-9][0-9]*$ ]] || { echo "--rates: whole requests per second, got $r" >&2; exit 2; }
    done
else
    [[ " $PHASES " == *" c$OPEN_CONNS "* ]] || { echo "--open-conns $OPEN_CONNS needs c$OPEN_CONNS in --phases (or --rates)" >&2; exit 2; }
fi
[[ $SERVER_CORES =~ ^[1-9][0-9]*$ ]] || { echo "--server-cores: a positive number, got $SERVER_CORES" >&2; exit 2; }
[[ $GEN_CORES =~ ^[1-9][0-9]*$ ]] || { echo "--gen-cores: a positive number, got $GEN_CORES" >&2; exit 2; }
# Bound of one ringcore-load run: warm-up + run + its drain (2 s timeout) + start-up slack.
LOAD_TIMEOUT=$(awk -v d="$DUR" -v w="$WARM" 'BEGIN {printf "%d", d + w + 30}')
ADDR="127.0.0.1:$PORT"
URL="http://$ADDR/plaintext"

bench_init bench-peers
need_cpus 2
[[ " $PHASES " != *" pipe16 "* ]] || ensure_wrk
command -v python3 >/dev/null || die "needs python3"
if [ -n "$PREBUILT" ]; then
    BIN="$PREBUILT"
else
    log "building release binaries"
    cargo build --release -q -p hello -p ringcore-benches
    BIN="${CARGO_TARGET_DIR:-target}/release"
fi
for name in "${SERVERS[@]}"; do
    [ -x "$BIN/${PEER_BIN[$name]}" ] || die "missing $BIN/${PEER_BIN[$name]}"
done
raise_limits 4096
[ -x "$BIN/ringcore-load" ] || die "missing $BIN/ringcore-load"
mkdir -p "$OUT_DIR"
RUNS="$OUT_DIR/runs.txt"
: >"$RUNS"
: >"$WORK/stops"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# record NAME PHASE REP RATE ACHIEVED ANSWERS CPU_NS P50 P99 P999 ERRORS CLIENT_BUSY: one line in
# runs.txt.
record() {
    echo "$*" >>"$RUNS"
    log "$2 rep $3 $1: $*"
}

# load_run NAME PHASE REP RATE CONNS [TIMELINE_CSV]: one ringcore-load run against a fresh server.
load_run() {
    local name=$1 phase=$2 rep=$3 rate=$4 conns=$5 tl=${6:-} pid c0 c1 rc=0 extra=()
    peer_start "$name" "$SERVER_CORE" "$ADDR" "$SERVER_CORES"
    pid=$SRV_PID
    if [ -n "$tl" ]; then
        local every
        every=$(awk -v r="$rate" -v d="$DUR" 'BEGIN {n = int(r * d / 200000) + 1; print n}')
        extra=(--timeline "$tl" --timeline-every "$every")
    fi
    rm -f "$WORK/gen.json"
    c0=$(cpu_ns "$pid")
    timeout "$LOAD_TIMEOUT" taskset -c "$CLIENT_CORE" "$BIN/ringcore-load" --url "$URL" \
        --rate "$rate" --conns "$conns" --duration "$DUR" --warmup "$WARM" --cores "$GEN_CORES" --json "$WORK/gen.json" \
        --no-progress --max-error-rate 100% "${extra[@]}" >"$WORK/gen.out" 2>&1 || rc=$?
    c1=$(cpu_ns "$pid")
    kill -0 "$pid" 2>/dev/null || die "$name died during the run"
    stop_server "$name" "$pid" "$WORK/stops"
    [ -s "$WORK/gen.json" ] || die "ringcore-load wrote no JSON (rc $rc) for $name: $(tail -3 "$WORK/gen.out")"
    # Every answer of the run (warm-up and drain too) against the server's CPU over the run.
    local fields
    fields=$(python3 -c 'import json, sys
j = json.load(open(sys.argv[1])); l = j["latency_us"]
print("%.0f %d" % (j["achieved_rate"], sum(j["status_all"].values())), sys.argv[2], l["p50"], l["p99"], l["p99_9"], j["errors"], "%.0f" % (100 * j["generator_busy"]))' \
        "$WORK/gen.json" "$((c1 - c0))")
    # shellcheck disable=SC2086 # fields is seven numbers
    record "$name" "$phase" "$rep" "$rate" $fields
}

# wrk_pipe NAME REP: wrk -t1 -c64, 16 requests per write, against a fresh server.
wrk_pipe() {
    local name=$1 rep=$2 pid c0 c1 rc=0 n rps
    peer_start "$name" "$SERVER_CORE" "$ADDR" "$SERVER_CORES"
    pid=$SRV_PID
    c0=$(cpu_ns "$pid")
    wrk_run "$CLIENT_CORE" "$DUR" -c64 --latency -s scripts/wrk-pipeline.lua "http://$ADDR" -- 16 \
        >"$WORK/wrk.out" 2>&1 || rc=$?
    c1=$(cpu_ns "$pid")
    kill -0 "$pid" 2>/dev/null || die "$name died during the wrk run"
    stop_server "$name" "$pid" "$WORK/stops"
    n=$(wrk_requests <"$WORK/wrk.out")
    rps=$(wrk_rps <"$WORK/wrk.out")
    { [ -n "$n" ] && [ "$n" -gt 0 ]; } || die "wrk (rc $rc) got no answers from $name: $(tail -3 "$WORK/wrk.out")"
    record "$name" pipe16 "$rep" 0 "${rps%.*}" "$n" "$((c1 - c0))" - - - "$(wrk_errors <"$WORK/wrk.out")" -
}

# Columns of runs.txt: 1 name 2 phase 3 rep 4 offered 5 achieved/s 6 answers 7 cpu_ns 8 p50 9 p99
# 10 p99.9 11 errors 12 client busy % (ringcore-load's generator_busy; latencies in µs; "-" for
# wrk).
for rep in $(seq "$REPS"); do
    for name in "${SERVERS[@]}"; do
        for p in $PHASES; do
            if [ "$p" = pipe16 ]; then wrk_pipe "$name" "$rep"; else load_run "$name" "$p" "$rep" 0 "${p#c}"; fi
        done
    done
done

# Per-run CPU ns per answer as a new column 13, then medians and paired ratios to bare.
awk '{printf "%s %.1f\n", $0, ($6 > 0 ? $7 / $6 : 0)}' "$RUNS" >"$WORK/runs13.txt"
med() { # name phase column
    awk -v s="$1" -v p="$2" -v c="$3" '$1 == s && $2 == p {print $c}' "$WORK/runs13.txt" | median
}
vs_bare() { # name phase column: median over reps of (name / bare) in the same rep
    awk -v s="$1" -v p="$2" -v c="$3" '$2 == p && $1 == s {x[$3] = $c} $2 == p && $1 == "bare" {y[$3] = $c}
        END {for (r in x) if (y[r] > 0) print x[r] / y[r]}' "$WORK/runs13.txt" | median | awk '{printf "%.2f", $1}'
}
BEST=none
BEST_MAX=0
[ -n "$RATES" ] || for name in "${SERVERS[@]}"; do
    # The peers only: not ringcore itself, and not the bare loop (with or without httparse: the floor).
    case $name in rc_* | bare | bare_hp) continue ;; esac
    m=$(med "$name" "c$OPEN_CONNS" 5)
    if awk -v a="$m" -v b="$BEST_MAX" 'BEGIN {exit !(a + 0 > b + 0)}'; then BEST=$name; BEST_MAX=$m; fi
done
# The open loop's loads: LABELS (the phase names in runs.txt) and their offered RATE_OF.
LABELS=()
declare -A RATE_OF=() SHOW=()
if [ -n "$RATES" ]; then
    for r in $RATES; do
        LABELS+=("r$r"); RATE_OF[r$r]=$r; SHOW[r$r]="$r/s"
    done
else
    awk -v m="$BEST_MAX" 'BEGIN {exit !(m + 0 > 0)}' || die "no peer's closed-loop maximum to take the open loop's rates from (--servers needs a peer besides bare and rc_*, or --rates)"
    log "best peer: $BEST at $BEST_MAX answers/s"
    for f in $FRACS; do
        LABELS+=("f$f")
        RATE_OF[f$f]=$(awk -v m="$BEST_MAX" -v f="$f" 'BEGIN {printf "%.0f", m * f}')
        SHOW[f$f]=$(awk -v f="$f" 'BEGIN {printf "%.0f%%", f * 100}')
    done
fi
TOP=""
for l in "${LABELS[@]}"; do
    [ -n "$TOP" ] || TOP=$l
    if [ "${RATE_OF[$l]}" -gt "${RATE_OF[$TOP]}" ]; then TOP=$l; fi
done
for rep in $(seq "$REPS"); do
    for l in "${LABELS[@]}"; do
        for name in "${SERVERS[@]}"; do
            tl=""
            if [ "$TIMELINE" = 1 ] && [ "$rep" = 1 ] && [ "$l" = "$TOP" ]; then
                tl="$OUT_DIR/timeline-$name.csv"
            fi
            load_run "$name" "$l" "$rep" "${RATE_OF[$l]}" "$OPEN_CONNS" "$tl"
            if [ -n "$tl" ]; then
                timeout 120 python3 scripts/timeline-report.py "$tl" >"$OUT_DIR/timeline-$name.txt" ||
                    log "timeline-report failed for $name"
            fi
        done
    done
done
awk '{printf "%s %.1f\n", $0, ($6 > 0 ? $7 / $6 : 0)}' "$RUNS" >"$WORK/runs13.txt"

{
    echo "Generated by \`$CMDLINE\` on $(date -u +%Y-%m-%d) ($MODE mode, commit \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`)."
    echo
    echo "- machine: \`nproc\` $(nproc), kernel \`$(uname -r)\`, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo); load average $LOAD_BEFORE before, $(cut -d' ' -f1-3 /proc/loadavg) after"
    echo "- server on core(s) $SERVER_CORE (\`--cores $SERVER_CORES\`), client (ringcore-load \`--cores $GEN_CORES\`) on core(s) $CLIENT_CORE; $REPS rep(s) of ${DUR} s (ringcore-load after ${WARM} s warm-up), servers interleaved in each rep, medians; \"vs bare\" is the median over reps of the ratio to \`bare\` in the same rep"
    echo "- CPU per answer: the server's on-CPU time over the run (all threads, schedstat) / every answer of the run (ringcore-load: warm-up and drain included; wrk: its request count)"
    echo
    echo "### Closed loop (ringcore-load --rate 0)$([[ " $PHASES " != *" pipe16 "* ]] || echo " and pipelined x16 (wrk -t1 -c64)")"
    echo
    head="| server"
    rule="|---"
    for p in $PHASES; do
        head="$head | answers/s, ${p#c} | CPU ns/answer, ${p#c} | vs bare"
        rule="$rule|---:|---:|---:"
    done
    echo "${head//pipe16/x16} |"
    echo "$rule|"
    for name in "${SERVERS[@]}"; do
        row="| $name"
        for p in $PHASES; do
            row="$row | $(med "$name" "$p" 5 | awk '{printf "%.0f", $1}') | $(med "$name" "$p" 13 | awk '{printf "%.0f", $1}') | $(vs_bare "$name" "$p" 13)"
        done
        echo "$row |"
    done
    echo
    if [ -n "$RATES" ]; then
        echo "### Open loop, $OPEN_CONNS connections, at the offered rates given"
    else
        echo "### Open loop, $OPEN_CONNS connections, at fractions of $BEST's closed-loop maximum ($(printf '%.0f' "$BEST_MAX")/s)"
    fi
    echo
    echo "\"*\": the server answered under 99% of the offered rate, so its latencies measure its backlog."
    echo
    echo "\"†\": the client core was over ${BUSY_WARN}% busy (ringcore-load's \`generator_busy\`): the latencies include the generator's own queueing, so they do not rank the servers."
    echo
    echo "| load | server | achieved/s | p50 µs | p99 µs | p99.9 µs | CPU ns/answer | vs bare | errors | client busy |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for l in "${LABELS[@]}"; do
        for name in "${SERVERS[@]}"; do
            # A "*" marks a server that fell behind the offered rate (its latencies are the queue).
            echo "| ${SHOW[$l]} | $name | $(med "$name" "$l" 5 | awk -v r="$(med "$name" "$l" 4)" '{printf "%.0f%s", $1, ($1 < 0.99 * r ? "*" : "")}') | $(med "$name" "$l" 8) | $(med "$name" "$l" 9) | $(med "$name" "$l" 10) | $(med "$name" "$l" 13 | awk '{printf "%.0f", $1}') | $(vs_bare "$name" "$l" 13) | $(med "$name" "$l" 11) | $(busy_cell "$(med "$name" "$l" 12)") |"
        done
    done
    if [ "$TIMELINE" = 1 ]; then
        echo
        echo "### Timelines at ${SHOW[$TOP]} (rep 1; CSVs in \`$OUT_DIR\`)"
        for name in "${SERVERS[@]}"; do
            [ -f "$OUT_DIR/timeline-$name.txt" ] || continue
            echo
            echo "$name:"
            echo
            echo '```'
            head -12 "$OUT_DIR/timeline-$name.txt"
            echo '```'
        done
    fi
    echo
    echo "Server exits: $(sort "$WORK/stops" | uniq -c | awk '{printf "%s%s %s x%s", sep, $2, $3, $1; sep = ", "}')"
    echo
    echo "Every run (name phase rep offered achieved/s answers cpu_ns p50 p99 p99.9 errors client_busy_% cpu_ns/answer):"
    echo
    echo '```'
    cat "$WORK/runs13.txt"
    echo '```'
} >"$OUT_DIR/report.md"
cat "$OUT_DIR/report.md"
if [ "$WRITE_DOC" = 1 ]; then
    update_doc "$MARKER" "$OUT_DIR/report.md" "$DOC"
fi
log "runs, report and timelines in $OUT_DIR"
