#!/usr/bin/env bash
# Flash-sale on Redis, scaling out: buys/s of one hot item with the service's Redis store on
# ONE redis-server vs a 3-master Redis Cluster, and with the item in 1 vs 8 buckets (docs:
# docs/bench-flash-sale-cluster.md). Service instances run on one core each (--cores 1,
# pinned); every Redis is durable (appendonly yes, appendfsync as --redis-fsync).
#
#   scripts/bench-flash-sale-cluster.sh          # 10 s runs, 2 s warm-up, 5 rounds, closed loop
#   scripts/bench-flash-sale-cluster.sh --quick  # 2 s runs, 1 s warm-up, 1 round (~1 min)
#
# Options: --dur S, --warm S, --reps N (rounds), --rate R (buys/s offered per instance, open
# loop; 0, the default: closed loop, max throughput), --conns N (per instance, 64),
# --instances N (service instances, 1), --server-cores LIST (instance i on the i-th, cycling;
# default 0), --client-cores LIST (generator i on the i-th, cycling; default 1),
# --redis-cores LIST (the single server on the first, cluster master i on the i-th,
# cycling; default: the server cores), --stores "single cluster", --buckets "1 8",
# --redis-fsync always|everysec|no (always), --port P (instances on P, P+1, ..; 18560),
# --redis-port P (single server on P, masters on P+1..P+3, bus ports +10000; 18570),
# --wait-replicas N (passed to serve as --redis-wait-replicas; 0), --bin DIR (prebuilt
# binaries, no build), --load PATH, --doc FILE (also put the report between
# <!-- bench-flash-sale-cluster.sh:begin --> and <!-- bench-flash-sale-cluster.sh:end -->),
# --budget S.
#
# Steps: start the Redis setups once (the single server and/or 3 masters joined with
# `redis-cli --cluster create`). Then in each round every configuration (store x buckets) runs
# back to back (interleaved rounds: drift of the machine hits every configuration alike): fresh
# service instances on a fresh key prefix, PUT /items/hot with a stock of 10^9 (never sells
# out) in B buckets, one ringcore-load per instance POSTing /items/hot/buy with a new user per
# request, all at once. A run's buys/s is the 200s of all generators in the measured window
# over its length. Medians over rounds go to stdout and bench-results/flash-sale-cluster-DATE.md,
# with ratios (cluster / single, 8 buckets / 1 bucket) taken per round, then the median;
# every run to bench-results/flash-sale-cluster-DATE.jsonl.
# Only 127.0.0.1; every run is bounded by `timeout`; only the PIDs started here are signalled.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C
# shellcheck source=scripts/lib/bench-common.sh
. scripts/lib/bench-common.sh

MODE=full
DUR=10
WARM=2
REPS=5
RATE=0
CONNS=64
INSTANCES=1
SERVER_CORES=0
CLIENT_CORES=1
REDIS_CORES=""
STORES="single cluster"
BUCKETS="1 8"
REDIS_FSYNC=always
PORT=18560
REDIS_PORT=18570
WAIT_REPLICAS=0
PREBUILT=""
LOAD=""
DOC=""
BUDGET=3600
HOT_STOCK=1000000000
CMDLINE="scripts/bench-flash-sale-cluster.sh $*"

# shellcheck disable=SC2034 # BUDGET is read by check_budget (scripts/lib/bench-common.sh)
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) MODE=quick; DUR=2; WARM=1; REPS=1; BUDGET=300 ;;
        --dur) DUR="$2"; shift ;;
        --warm) WARM="$2"; shift ;;
        --reps) REPS="$2"; shift ;;
        --rate) RATE="$2"; shift ;;
        --conns) CONNS="$2"; shift ;;
        --instances) INSTANCES="$2"; shift ;;
        --server-cores) SERVER_CORES="$2"; shift ;;
        --client-cores) CLIENT_CORES="$2"; shift ;;
        --redis-cores) REDIS_CORES="$2"; shift ;;
        --stores) STORES="$2"; shift ;;
        --buckets) BUCKETS="$2"; shift ;;
        --redis-fsync) REDIS_FSYNC="$2"; shift ;;
        --port) PORT="$2"; shift ;;
        --redis-port) REDIS_PORT="$2"; shift ;;
        --wait-replicas) WAIT_REPLICAS="$2"; shift ;;
        --bin) PREBUILT="$2"; shift ;;
        --load) LOAD="$2"; shift ;;
        --doc) DOC="$2"; shift ;;
        --budget) BUDGET="$2"; shift ;;
        -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$REDIS_CORES" ] || REDIS_CORES=$SERVER_CORES
case "$REDIS_FSYNC" in always|everysec|no) ;; *) echo "--redis-fsync: always, everysec or no" >&2; exit 2 ;; esac
IFS=, read -r -a SCORES <<<"$SERVER_CORES"
IFS=, read -r -a CCORES <<<"$CLIENT_CORES"
IFS=, read -r -a RCORES <<<"$REDIS_CORES"
read -r -a STORE_LIST <<<"$STORES"
read -r -a BUCKET_LIST <<<"$BUCKETS"

bench_init bench-flash-sale-cluster
command -v curl >/dev/null 2>&1 || die "needs curl"
command -v redis-server >/dev/null 2>&1 || die "needs redis-server (apt-get install redis-server)"
command -v redis-cli >/dev/null 2>&1 || die "needs redis-cli (apt-get install redis-tools)"
need_cpus 2
[ "$INSTANCES" -ge 1 ] || die "--instances: at least 1"
for s in "${STORE_LIST[@]}"; do
    case "$s" in single|cluster) ;; *) die "unknown store $s (single, cluster)" ;; esac
done
for b in "${BUCKET_LIST[@]}"; do
    [ "$b" -ge 1 ] && [ "$b" -le 64 ] || die "buckets must be 1..64, not $b"
done
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RUN_ID=$(printf '%s-%d' "$STAMP" $$)
SRC_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
SRC_DIRTY=$(git status --porcelain -- runtime http examples benches 2>/dev/null | wc -l)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- build
if [ -n "$PREBUILT" ]; then
    BIN="$PREBUILT"
    log "using prebuilt binaries in $BIN"
else
    log "building release binaries"
    cargo build --release -q -p flash-sale -p ringcore-benches --bin ringcore-load
    BIN="${CARGO_TARGET_DIR:-target}/release"
fi
for b in flash-sale ringcore-load; do
    [ -x "$BIN/$b" ] || die "missing $BIN/$b"
done
GENERATOR=ringcore-load
if [ -z "$LOAD" ]; then LOAD="$BIN/ringcore-load"; else GENERATOR="$LOAD"; fi
[ -x "$LOAD" ] || die "missing load generator $LOAD"
mkdir -p bench-results
OUT_MD="bench-results/flash-sale-cluster-$STAMP.md"
OUT_JSONL="bench-results/flash-sale-cluster-$STAMP.jsonl"
: >"$OUT_JSONL"
budget_start

# ---------------------------------------------------------------- helpers
# http ADDR METHOD PATH [BODY] -> "STATUS BODY" (one line)
http() {
    local out
    out=$(curl -sS -m 5 -X "$2" -H 'Content-Type: application/json' ${4:+--data-binary "$4"} \
        -w '\n%{http_code}' "http://$1$3" 2>&1) || { echo "000 $out" | tr '\n' ' '; return 0; }
    printf '%s %s\n' "$(tail -n1 <<<"$out")" "$(sed '$d' <<<"$out" | tr -d '\n')"
}
stat_snap() { grep '^cpu' /proc/stat >"$1"; }
steal_pct() {
    awk 'FNR == NR && $1 == "cpu" {for (i = 2; i <= 9; i++) a[i] = $i; next}
         $1 == "cpu" {t = 0; for (i = 2; i <= 9; i++) t += $i - a[i]; printf "%.2f", (t > 0 ? 100 * ($9 - a[9]) / t : 0)}' "$1" "$2"
}
core_of() { # index list... -> the index-th of the list, cycling
    local i=$1
    shift
    local list=("$@")
    echo "${list[$((i % ${#list[@]}))]}"
}
wait_port() { # port pid what
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        kill -0 "$2" 2>/dev/null || break
        sleep 0.05
    done
    die "$3 did not start (port $1)"
}

# start_redis NAME PORT CORE [ARGS...] -> BG_PID; durable, files in $WORK/NAME
start_redis() {
    local name=$1 port=$2 core=$3 dir="$WORK/$1"
    shift 3
    mkdir -p "$dir"
    start_bg taskset -c "$core" redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' \
        --appendonly yes --appendfsync "$REDIS_FSYNC" --daemonize no --logfile "$dir/redis.log" "$@"
    wait_port "$port" "$BG_PID" "redis-server $name"
}

SINGLE_PIDS=()
CLUSTER_PIDS=()
for s in "${STORE_LIST[@]}"; do
    case "$s" in
        single)
            start_redis single "$REDIS_PORT" "${RCORES[0]}"
            SINGLE_PIDS=("$BG_PID")
            log "single redis-server on port $REDIS_PORT, core ${RCORES[0]}" ;;
        cluster)
            nodes=()
            for i in 0 1 2; do
                p=$((REDIS_PORT + 1 + i))
                start_redis "master$i" "$p" "$(core_of "$i" "${RCORES[@]}")" --cluster-enabled yes \
                    --cluster-config-file nodes.conf --cluster-node-timeout 5000
                CLUSTER_PIDS+=("$BG_PID")
                nodes+=("127.0.0.1:$p")
            done
            redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$WORK/cluster-create.log" 2>&1 ||
                { cat "$WORK/cluster-create.log" >&2; die "redis-cli --cluster create failed"; }
            for i in 0 1 2; do
                ok=0
                for _ in $(seq 200); do
                    if redis-cli -p $((REDIS_PORT + 1 + i)) CLUSTER INFO | grep -q cluster_state:ok; then ok=1; break; fi
                    sleep 0.05
                done
                [ "$ok" = 1 ] || die "cluster node $((REDIS_PORT + 1 + i)) not cluster_state:ok in 10 s"
            done
            log "3-master cluster on ports $((REDIS_PORT + 1))-$((REDIS_PORT + 3)), cores $REDIS_CORES" ;;
    esac
done
store_url() {
    case "$1" in
        single) echo "redis://127.0.0.1:$REDIS_PORT" ;;
        cluster) echo "redis-cluster://127.0.0.1:$((REDIS_PORT + 1)),127.0.0.1:$((REDIS_PORT + 2)),127.0.0.1:$((REDIS_PORT + 3))" ;;
    esac
}
redis_pids() {
    case "$1" in
        single) echo "${SINGLE_PIDS[*]}" ;;
        cluster) echo "${CLUSTER_PIDS[*]}" ;;
    esac
}
cpu_sum() { local s=0 p; for p in "$@"; do s=$((s + $(cpu_ns "$p"))); done; echo "$s"; }

SEQ=0
# run_one STORE BUCKETS REP: fresh instances, PUT, the generators at once, GET; one JSON line
# per run into $OUT_JSONL, one line into $WORK/runs.txt
run_one() {
    local store=$1 b=$2 rep=$3 cfg="$1-b$2" i pids=() gpids=() c0 c1 r0 r1 put item
    local lossy=()
    [ "$REDIS_FSYNC" = always ] || lossy=(--allow-redis-data-loss)
    check_budget $((RUN_S + 15))
    SEQ=$((SEQ + 1))
    for i in $(seq 0 $((INSTANCES - 1))); do
        start_server "$cfg-$i" "$WORK/$cfg-$i.log" taskset -c "$(core_of "$i" "${SCORES[@]}")" \
            "$BIN/flash-sale" serve --addr "127.0.0.1:$((PORT + i))" --cores 1 \
            --store "$(store_url "$store")" --prefix "bench-$RUN_ID-$SEQ" \
            --redis-wait-replicas "$WAIT_REPLICAS" "${lossy[@]}"
        pids+=("$SRV_PID")
    done
    put=$(http "127.0.0.1:$PORT" PUT /items/hot "{\"stock\":$HOT_STOCK,\"buckets\":$b}")
    [ "${put%% *}" = 201 ] || die "$cfg: PUT /items/hot answered $put"
    read -r -a rp <<<"$(redis_pids "$store")"
    stat_snap "$WORK/stat0"
    c0=$(cpu_sum "${pids[@]}")
    r0=$(cpu_sum "${rp[@]}")
    for i in $(seq 0 $((INSTANCES - 1))); do
        rm -f "$WORK/gen-$i.json"
        taskset -c "$(core_of "$i" "${CCORES[@]}")" timeout $((RUN_S + 30)) "$LOAD" \
            --url "http://127.0.0.1:$((PORT + i))/items/hot/buy" --method POST \
            --body "{\"user\":\"g$i-u{n}\"}" --rate "$RATE" --conns "$CONNS" --duration "$DUR" \
            --warmup "$WARM" --cores 1 --json "$WORK/gen-$i.json" --no-progress \
            >"$WORK/gen-$i.out" 2>&1 &
        gpids+=("$!")
    done
    for i in "${!gpids[@]}"; do
        wait "${gpids[$i]}" || log "warning: $cfg: generator $i exited $? ($(tail -n1 "$WORK/gen-$i.out"))"
    done
    c1=$(cpu_sum "${pids[@]}")
    r1=$(cpu_sum "${rp[@]}")
    stat_snap "$WORK/stat1"
    for i in "${!pids[@]}"; do
        kill -0 "${pids[$i]}" 2>/dev/null || { cat "$WORK/$cfg-$i.log" >&2; die "$cfg: instance $i died"; }
    done
    sleep 0.25 # GET /items answers are cached for 100 ms per core
    item=$(http "127.0.0.1:$PORT" GET /items/hot)
    for i in "${!pids[@]}"; do stop_server "$cfg-$i" "${pids[$i]}" "$WORK/stops"; done
    local ok2=0 n5=0 errs=0 p50s=() p99s=() g n
    for i in $(seq 0 $((INSTANCES - 1))); do
        g="$WORK/gen-$i.json"
        [ -s "$g" ] || { cat "$WORK/gen-$i.out" >&2; die "$cfg: generator $i wrote no JSON"; }
        n=$(json_in status 2xx "$g"); ok2=$((ok2 + ${n:-0}))
        n=$(json_in status 5xx "$g"); n5=$((n5 + ${n:-0}))
        n=$(json_num errors "$g"); errs=$((errs + ${n:-0}))
        p50s+=("$(json_num p50 "$g")"); p99s+=("$(json_num p99 "$g")")
        printf '{"config":"%s","store":"%s","buckets":%d,"rep":%d,"instance":%d,"load":%s}\n' \
            "$cfg" "$store" "$b" "$rep" "$i" "$(tr -d '\n' <"$g")" >>"$OUT_JSONL"
    done
    local sold bps p50 p99 cpu_us rcpu_us steal
    sold=$(sed -n 's/.*"sold":\([0-9]*\).*/\1/p' <<<"$item")
    [ -n "$sold" ] || die "$cfg: GET /items/hot answered $item"
    [ "$sold" -ge "$ok2" ] || die "$cfg: $ok2 buys answered 200 but the item says sold $sold"
    bps=$(awk -v n="$ok2" -v d="$DUR" 'BEGIN {printf "%.0f", n / d}')
    p50=$(printf '%s\n' "${p50s[@]}" | sort -g | tail -n1)
    p99=$(printf '%s\n' "${p99s[@]}" | sort -g | tail -n1)
    cpu_us=$(awk -v c=$((c1 - c0)) -v n="$ok2" 'BEGIN {printf "%.1f", (n > 0 ? c / n / 1000 : 0)}')
    rcpu_us=$(awk -v c=$((r1 - r0)) -v n="$ok2" 'BEGIN {printf "%.1f", (n > 0 ? c / n / 1000 : 0)}')
    steal=$(steal_pct "$WORK/stat0" "$WORK/stat1")
    echo "$cfg $rep $bps $p50 $p99 $n5 $errs $sold $cpu_us $rcpu_us $steal" >>"$WORK/runs.txt"
    log "round $rep $cfg: $bps buys/s (200s), p50 $p50 p99 $p99 us (worst instance), 5xx $n5, errors $errs, sold $sold, service ${cpu_us} + redis ${rcpu_us} us CPU/buy, steal ${steal}%"
}

RUN_S=$(awk -v d="$DUR" -v w="$WARM" 'BEGIN {s = d + w; printf "%d", s == int(s) ? s : int(s) + 1}')
: >"$WORK/runs.txt"
: >"$WORK/stops"
CONFIGS=()
for s in "${STORE_LIST[@]}"; do
    for b in "${BUCKET_LIST[@]}"; do CONFIGS+=("$s $b"); done
done
for rep in $(seq "$REPS"); do
    for c in "${CONFIGS[@]}"; do
        # shellcheck disable=SC2086 # "store buckets"
        run_one $c "$rep"
    done
done
for p in "${SINGLE_PIDS[@]}" "${CLUSTER_PIDS[@]}"; do
    [ -n "$p" ] && stop_server redis-server "$p" "$WORK/stops"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
unclean=$(awk '$2 != 0' "$WORK/stops" | sort | uniq -c || true)
if [ -z "$unclean" ]; then
    STOPS="every process exited 0 on SIGTERM"
else
    STOPS="NOT every process exited 0 on SIGTERM: $(echo "$unclean" | tr '\n' ';')"
fi

# ---------------------------------------------------------------- report
MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
REPORT="$WORK/report.md"
{
    echo "## Flash sale on Redis: one server vs a 3-master cluster, 1 vs 8 buckets (\`scripts/bench-flash-sale-cluster.sh\`)"
    echo
    echo "Generated by \`$CMDLINE\` on $(date -u +%Y-%m-%d) ($MODE mode, commit \`$SRC_REV\`$([ "$SRC_DIRTY" = 0 ] || echo ", $SRC_DIRTY files changed"))."
    echo
    echo "- machine: \`nproc\` $(nproc), kernel \`$(uname -r)\`, $MODEL; load average $LOAD_BEFORE before, $LOAD_AFTER after"
    echo "- $INSTANCES service instance(s), one core each (\`--cores 1\`, cores $SERVER_CORES), generators on cores $CLIENT_CORES, Redis on cores $REDIS_CORES (appendfsync $REDIS_FSYNC; \`--redis-wait-replicas $WAIT_REPLICAS\`)"
    echo "- generator: \`$GENERATOR\`, $([ "$RATE" = 0 ] && echo "closed loop" || echo "open loop at $RATE buys/s per instance"), $CONNS connections per instance, $DUR s measured after $WARM s warm-up; a new user per request"
    echo "- one hot item, stock $HOT_STOCK (never sells out) in B buckets; $REPS round(s), configurations interleaved in each; medians over rounds; $STOPS"
    echo
    echo "| configuration | buys/s (200s) | p50 µs | p99 µs | 5xx | errors | service CPU µs/buy | Redis CPU µs/buy | steal % |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for c in "${CONFIGS[@]}"; do
        read -r s b <<<"$c"
        k="$s-b$b"
        echo "| $s Redis, $b bucket(s) | $(col "$k" 3 "$WORK/runs.txt") | $(col "$k" 4 "$WORK/runs.txt") | $(col "$k" 5 "$WORK/runs.txt") | $(col "$k" 6 "$WORK/runs.txt") | $(col "$k" 7 "$WORK/runs.txt") | $(col "$k" 9 "$WORK/runs.txt") | $(col "$k" 10 "$WORK/runs.txt") | $(col "$k" 11 "$WORK/runs.txt") |"
    done
    echo
    echo "Ratios of buys/s, each taken within one round and then the median over rounds:"
    echo
    echo "| ratio | value |"
    echo "|---|---:|"
    for b in "${BUCKET_LIST[@]}"; do
        if [[ " ${STORE_LIST[*]} " == *" single "* && " ${STORE_LIST[*]} " == *" cluster "* ]]; then
            echo "| cluster / single, $b bucket(s) | $(paired "cluster-b$b" "single-b$b" 3 "$WORK/runs.txt") |"
        fi
    done
    first=${BUCKET_LIST[0]}
    for s in "${STORE_LIST[@]}"; do
        for b in "${BUCKET_LIST[@]:1}"; do
            echo "| $b / $first bucket(s), $s Redis | $(paired "$s-b$b" "$s-b$first" 3 "$WORK/runs.txt") |"
        done
    done
    echo
    echo "p50/p99: the worst instance's. Service and Redis CPU: on-CPU time of all their threads (schedstat) over the whole generator run, per 200. Every run: \`$OUT_JSONL\`."
} >"$REPORT"
cp "$REPORT" "$OUT_MD"
cat "$REPORT"
if [ -n "$DOC" ]; then
    update_doc bench-flash-sale-cluster.sh "$REPORT" "$DOC"
fi
log "wrote $OUT_MD and $OUT_JSONL in $(($(date +%s) - T0)) s"
