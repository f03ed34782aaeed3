#!/usr/bin/env bash
# Tail-latency benchmark, GET /plaintext on one pinned core, open loop, driven by ringcore-load:
# ringcore-http (examples/hello) on the io_uring driver (rc_uring) and on the epoll driver
# (rc_epoll) side by side with its peers (issue 12): the bare io_uring loop (bare, the floor),
# tokio current-thread (tokio_ct), may_minihttp (may), hyper 1 on current-thread tokio (hyper_ct),
# actix-web with one worker (actix), axum on tokio multi-thread (axum), monoio and glommio. The
# servers, their binaries and how each is started: the one table in scripts/lib/bench-common.sh.
# Writes bench-results/*.json and the generated part of docs/benchmarks.md (between
# <!-- bench.sh:begin --> and <!-- bench.sh:end -->) plus docs/bench-latency.svg and
# docs/bench-throughput-latency.svg (bench_report).
#
#   scripts/bench.sh            # full: 10 s runs, 2 s warm-up, 3 reps, 6 rates, 10000 idle conns (~45 min)
#   scripts/bench.sh --quick    # 2 s runs, 1 s warm-up, 1 rep (1 closed-loop), 5 rates, 2000 idle conns (~4.5 min)
#   scripts/bench.sh --quick --servers "rc_uring hyper_ct"   # a subset (tokio_ct is always run)
#
# Options: --servers "a b ..." (a subset of bare tokio_ct may hyper_ct actix axum rc_uring rc_epoll
# monoio glommio, run in this order after tokio_ct; default all), --dur S, --warm S, --reps N,
# --closed-reps N, --fracs "0.2 0.4 ..." (offered rates as
# fractions of tokio_ct's closed-loop maximum), --over X (the above-saturation rate: X times the
# highest closed-loop maximum, default 1.2), --conns N (64), --depth D (1), --idle N, --port P,
# --server-core C (0), --client-core C (1; a list or range such as 8-15 for a machine with more
# cores), --gen-shards N (generator shards, 1; one per client core is the usual choice),
# --bin DIR (prebuilt binaries: skip the build, e.g. static ones on a machine without cargo),
# --load PATH (a load generator with ringcore-load's
# command line and JSON; default: the one built here), --doc FILE (docs/benchmarks.md),
# --budget S (seconds the measurements may take after the build: default 3300, quick 360; the
# script stops past it).
#
# Steps: (1) closed loop (--rate 0) per server, interleaved, CLOSED_REPS times: max throughput;
# (2) for each repetition, for each offered rate (the same absolute rates for every server), the
# servers back to back (A B C ...), each a fresh server; (3) memory per idle connection of every
# server with idle_conns (any 200 `Hello, World!` on a kept-alive connection). Every run
# records the server's CPU time (schedstat), the generator core's busy time and the machine's
# steal time (/proc/stat). Only 127.0.0.1; every run is bounded by `timeout`; only the PIDs
# started here are signalled.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C
# shellcheck source=scripts/lib/bench-common.sh
. scripts/lib/bench-common.sh

MODE=full
DUR=10
WARM=2
REPS=3
CLOSED_REPS=3
FRACS="0.2 0.4 0.6 0.8 0.95"
OVER=1.2
CONNS=64
DEPTH=1
IDLE=10000
PORT=18520
SERVER_CORE=0
CLIENT_CORE=1
GEN_SHARDS=1
PREBUILT=""
LOAD=
DOC=docs/benchmarks.md
BUDGET=3300
PICK="$PEERS_ALL"
CMDLINE="scripts/bench.sh $*"

# shellcheck disable=SC2034 # BUDGET is read by check_budget (scripts/lib/bench-common.sh)
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) MODE=quick; DUR=2; WARM=1; REPS=1; CLOSED_REPS=1; FRACS="0.2 0.6 0.8 0.95"; IDLE=2000; BUDGET=360 ;;
        --servers) PICK="$2"; shift ;;
        --dur) DUR="$2"; shift ;;
        --warm) WARM="$2"; shift ;;
        --reps) REPS="$2"; shift ;;
        --closed-reps) CLOSED_REPS="$2"; shift ;;
        --fracs) FRACS="$2"; shift ;;
        --over) OVER="$2"; shift ;;
        --conns) CONNS="$2"; shift ;;
        --depth) DEPTH="$2"; shift ;;
        --idle) IDLE="$2"; shift ;;
        --port) PORT="$2"; shift ;;
        --server-core) SERVER_CORE="$2"; shift ;;
        --client-core) CLIENT_CORE="$2"; shift ;;
        --gen-shards) GEN_SHARDS="$2"; shift ;;
        --bin) PREBUILT="$2"; shift ;;
        --load) LOAD="$2"; shift ;;
        --doc) DOC="$2"; shift ;;
        --budget) BUDGET="$2"; shift ;;
        -h|--help) sed -n '2,35p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# The servers and how each starts: scripts/lib/bench-common.sh (PEERS_ALL, peer_start).
# tokio_ct's closed-loop maximum sets the offered rates, so it is always run.
pick_servers "$PICK" tokio_ct
ADDR="127.0.0.1:$PORT"
URL="http://$ADDR/plaintext"
bench_init bench
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
SRC_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
SRC_DIRTY=$(git status --porcelain -- runtime http examples benches 2>/dev/null | wc -l)

# ---------------------------------------------------------------- prerequisites
need_cpus 2
if [ -n "$PREBUILT" ]; then
    BIN="$PREBUILT"
    log "using prebuilt binaries in $BIN"
else
    log "building release binaries"
    cargo build --release -q -p hello -p ringcore-benches --bins
    TARGET_DIR="${CARGO_TARGET_DIR:-target}"
    BIN="$TARGET_DIR/release"
fi
for b in idle_conns bench_report; do
    [ -x "$BIN/$b" ] || die "missing $BIN/$b"
done
for name in "${SERVERS[@]}"; do
    [ -x "$BIN/${PEER_BIN[$name]}" ] || die "missing $BIN/${PEER_BIN[$name]}"
done
GENERATOR=ringcore-load
if [ -z "$LOAD" ]; then
    LOAD="$BIN/ringcore-load"
else
    GENERATOR="$LOAD"
fi
[ -x "$LOAD" ] || die "missing load generator $LOAD"
raise_limits $((IDLE + 1024))
mkdir -p bench-results
RESULTS="bench-results/bench-$(date -u +%Y%m%dT%H%M%SZ).json"
budget_start

# ---------------------------------------------------------------- helpers
stat_snap() { grep '^cpu' /proc/stat >"$1"; }
# steal % over all CPUs, and busy % of one core, between two snapshots
steal_pct() {
    awk 'FNR == NR && $1 == "cpu" {for (i = 2; i <= 9; i++) a[i] = $i; next}
         $1 == "cpu" {t = 0; for (i = 2; i <= 9; i++) t += $i - a[i]; printf "%.3f", (t > 0 ? 100 * ($9 - a[9]) / t : 0)}' "$1" "$2"
}
# busy % averaged over the cores of a taskset-style list ("1", "8-15", "2,4-5")
core_busy_pct() {
    local set="" part
    for part in ${3//,/ }; do
        if [[ $part == *-* ]]; then set+=" $(seq -s ' ' "${part%-*}" "${part#*-}")"; else set+=" $part"; fi
    done
    awk -v set="$set" 'BEGIN {n = split(set, l, " "); for (k = 1; k <= n; k++) want["cpu" l[k]] = 1}
         FNR == NR && ($1 in want) {for (i = 2; i <= 9; i++) a[$1, i] = $i; next}
         ($1 in want) {for (i = 2; i <= 9; i++) t += $i - a[$1, i]; idle += ($5 - a[$1, 5]) + ($6 - a[$1, 6])}
         END {printf "%.1f", (t > 0 ? 100 * (t - idle) / t : 0)}' "$1" "$2"
}

# run_one NAME PHASE REP FRAC RATE: fresh server, one generator run, one JSON line into runs.jsonl
run_one() {
    local name=$1 phase=$2 rep=$3 frac=$4 rate=$5 pid c0 c1 t0 t1 rc=0
    check_budget $((RUN_S + 6))
    peer_start "$name" "$SERVER_CORE" "$ADDR"
    pid=$SRV_PID
    rm -f "$WORK/gen.json"
    stat_snap "$WORK/stat0"
    c0=$(cpu_ns "$pid")
    t0=$(date +%s%N)
    taskset -c "$CLIENT_CORE" timeout $((RUN_S + 30)) "$LOAD" --url "$URL" --rate "$rate" \
        --conns "$CONNS" --depth "$DEPTH" --duration "$DUR" --warmup "$WARM" --cores "$GEN_SHARDS" \
        --json "$WORK/gen.json" --no-progress >"$WORK/gen.out" 2>&1 || rc=$?
    c1=$(cpu_ns "$pid")
    t1=$(date +%s%N)
    stat_snap "$WORK/stat1"
    kill -0 "$pid" 2>/dev/null || die "$name died during the run"
    stop_server "$name" "$pid" "$WORK/stops"
    [ -s "$WORK/gen.json" ] || { cat "$WORK/gen.out" >&2; die "generator wrote no JSON (rc $rc) for $name at $rate"; }
    local cpu=$((c1 - c0)) wall=$((t1 - t0)) busy steal gbusy ach p99
    busy=$(awk -v c="$cpu" -v w="$wall" 'BEGIN {printf "%.1f", 100 * c / w}')
    steal=$(steal_pct "$WORK/stat0" "$WORK/stat1")
    gbusy=$(core_busy_pct "$WORK/stat0" "$WORK/stat1" "$CLIENT_CORE")
    printf '{"server":"%s","phase":"%s","rep":%d,"frac":%s,"server_cpu_ns":%s,"wall_ns":%s,"server_busy_pct":%s,"gen_core_busy_pct":%s,"steal_pct":%s,"load":%s}\n' \
        "$name" "$phase" "$rep" "$frac" "$cpu" "$wall" "$busy" "$gbusy" "$steal" "$(tr -d '\n' <"$WORK/gen.json")" >>"$WORK/runs.jsonl"
    ach=$(json_num achieved_rate "$WORK/gen.json")
    p99=$(json_num p99 "$WORK/gen.json")
    echo "$name $phase $rep $rate $ach" >>"$WORK/runs.txt"
    log "$phase rep $rep $name @ $rate: achieved $ach req/s, p99 ${p99} us, server ${busy}% busy, generator core ${gbusy}%, steal ${steal}%"
}

# whole seconds of one generator run (--dur and --warm may be fractions)
RUN_S=$(awk -v d="$DUR" -v w="$WARM" 'BEGIN {s = d + w; printf "%d", s == int(s) ? s : int(s) + 1}')
: >"$WORK/runs.jsonl"
: >"$WORK/runs.txt"

# ---------------------------------------------------------------- 1. closed loop
for rep in $(seq "$CLOSED_REPS"); do
    for name in "${SERVERS[@]}"; do
        run_one "$name" closed "$rep" null 0
    done
done
closed_max() { awk -v s="$1" '$1 == s && $2 == "closed" {print $5}' "$WORK/runs.txt" | median; }
TOKIO_MAX=$(closed_max tokio_ct)
TOP_MAX=$(for s in "${SERVERS[@]}"; do closed_max "$s"; done | sort -g | tail -1)
if ! [[ "$TOKIO_MAX" =~ ^[0-9.]+$ ]] || ! awk -v m="$TOKIO_MAX" 'BEGIN {exit !(m > 0)}'; then
    die "no closed-loop maximum for tokio_ct ($TOKIO_MAX)"
fi
RATES=()
FRAC_OF=()
for f in $FRACS; do
    RATES+=("$(awk -v m="$TOKIO_MAX" -v f="$f" 'BEGIN {printf "%.0f", m * f}')")
    FRAC_OF+=("$f")
done
RATES+=("$(awk -v m="$TOP_MAX" -v o="$OVER" 'BEGIN {printf "%.0f", m * o}')")
FRAC_OF+=("$(awk -v m="$TOP_MAX" -v t="$TOKIO_MAX" -v o="$OVER" 'BEGIN {printf "%.3f", m * o / t}')")
log "tokio_ct max $TOKIO_MAX req/s, highest max $TOP_MAX: offered rates ${RATES[*]}"

# ---------------------------------------------------------------- 2. open-loop sweep
for rep in $(seq "$REPS"); do
    for i in "${!RATES[@]}"; do
        for name in "${SERVERS[@]}"; do
            run_one "$name" sweep "$rep" "${FRAC_OF[$i]}" "${RATES[$i]}"
        done
    done
done

# ---------------------------------------------------------------- 3. memory per idle connection
: >"$WORK/idle.jsonl"
IDLE_SKIPPED=()
HOLD=3
for b in "${SERVERS[@]}"; do
    check_budget 40
    peer_start "$b" "$SERVER_CORE" "$ADDR"
    pid=$SRV_PID
    taskset -c "$CLIENT_CORE" timeout 20 "$LOAD" --url "$URL" --rate 0 --conns "$CONNS" --duration 1 \
        --warmup 0 --cores 1 --no-progress >/dev/null 2>&1 || true
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
    if [ "$ok" = 1 ]; then
        n=$(awk '/^ready/ {print $2}' "$WORK/idle.out")
        sleep 0.5
        held=$(rss_kib "$pid")
        per=$(awk -v h="$held" -v w="$warm" -v n="$n" 'BEGIN {printf "%.3f", (h - w) / n}')
        printf '{"server":"%s","binary":"%s","conns":%s,"warm_kib":%s,"held_kib":%s,"kib_per_conn":%s}\n' \
            "$b" "${PEER_BIN[$b]}" "$n" "$warm" "$held" "$per" >>"$WORK/idle.jsonl"
        log "$b: VmRSS warm $warm KiB, holding $n idle conns $held KiB -> $per KiB/conn"
    else
        log "idle_conns failed against $b: $(tail -1 "$WORK/idle.err")"
        IDLE_SKIPPED+=("$b: idle_conns failed ($(tail -1 "$WORK/idle.err" | sed 's/\\/\\\\/g; s/"/\\"/g'))")
    fi
    kill -TERM "$ipid" 2>/dev/null || true
    wait "$ipid" || true
    forget "$ipid"
    stop_server "$b" "$pid" "$WORK/stops"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- results + report
unclean=$(awk '$2 != 0' "$WORK/stops" | sort | uniq -c || true)
[ -z "$unclean" ] || log "NOT every server exited 0 on SIGTERM: $(echo "$unclean" | tr '\n' ';')"
jstr() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }
crate_v() { awk -v n="$1" '$0 == "name = \"" n "\"" {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock; }
CRATES=""
for c in tokio axum hyper glommio monoio may_minihttp actix-web io-uring httparse; do CRATES+="$c $(crate_v "$c"), "; done
CRATES=${CRATES%, }
MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
{
    printf '{"meta":{'
    printf '"mode":"%s","cmdline":"%s","date":"%s","elapsed_s":%d,' "$MODE" "$(jstr "$CMDLINE")" "$(date -u +%Y-%m-%dT%H:%MZ)" $(($(date +%s) - T0))
    printf '"kernel":"%s","cpu_model":"%s","cpus":%d,"rustc":"%s","crates":"%s",' "$(uname -r)" "$(jstr "$MODEL")" "$(nproc)" "$(rustc -V 2>/dev/null || echo "prebuilt binaries")" "$CRATES"
    printf '"commit":"%s","dirty":%d,"load_before":"%s","load_after":"%s",' "$SRC_REV" "$SRC_DIRTY" "$LOAD_BEFORE" "$LOAD_AFTER"
    printf '"generator":"%s","dur":%s,"warm":%s,"reps":%s,"closed_reps":%s,"conns":%s,"depth":%s,' "$(jstr "$GENERATOR")" "$DUR" "$WARM" "$REPS" "$CLOSED_REPS" "$CONNS" "$DEPTH"
    printf '"server_core":%s,"client_core":"%s","gen_shards":%s,"tokio_max":%s,"rates":[%s],"results_file":"%s"},' "$SERVER_CORE" "$CLIENT_CORE" "$GEN_SHARDS" "$TOKIO_MAX" "$(IFS=,; echo "${RATES[*]}")" "$RESULTS"
    printf '"servers":["%s"],' "$(printf '%s","' "${SERVERS[@]}" | sed 's/","$//')"
    printf '"peers":%s,' "$(peers_json)"
    printf '"runs":[%s],' "$(paste -sd, "$WORK/runs.jsonl")"
    printf '"idle":[%s],' "$(paste -sd, "$WORK/idle.jsonl")"
    printf '"idle_skipped":[%s]}\n' "$(if [ ${#IDLE_SKIPPED[@]} -gt 0 ]; then printf '"%s",' "${IDLE_SKIPPED[@]}" | sed 's/,$//'; fi)"
} >"$RESULTS"
"$BIN/bench_report" --results "$RESULTS" --doc "$DOC" --svg-dir "$(dirname "$DOC")"
log "wrote $RESULTS and $DOC in $(($(date +%s) - T0)) s"
