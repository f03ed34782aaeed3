#!/usr/bin/env bash
# Flash-sale buy path, one pinned server core, open loop: the ringcore service
# (examples/flash-sale, embedded journal) vs the same service on tokio + axum
# (benches/src/bin/axum_flash_sale.rs, mutex state + group-commit writer task) and, when
# redis-server is installed, the ringcore service with its Redis store. Every buy is made
# durable before its 200 (fdatasync of a group commit; Redis: appendfsync as --redis-fsync).
# `floor` is the bare io_uring loop (benches' naive_uring) on the same core at the same rates:
# no HTTP parsing, no state, no journal, a fixed 200 to every request. It sells nothing (no
# stock check, no sold-out run); its CPU per request is what receiving and answering a request
# costs on this machine at that rate, below which no service that answers every buy as it
# arrives can go.
#
#   scripts/bench-flash-sale.sh            # 10 s runs, 2 s warm-up, 3 reps, rates 5000,10000,20000
#   scripts/bench-flash-sale.sh --quick    # 2 s runs, 1 s warm-up, 1 rep, rates 5000,10000 (~1 min)
#
# Options: --dur S, --warm S, --reps N, --rates R1,R2,.. (buys/s offered), --conns N (64),
# --depth D (1), --servers "ringcore ringcore-nowindow ringcore-direct axum floor ringcore-redis"
# (default: all six, the last only when redis-server is installed; `ringcore-nowindow` is the
# service with `--journal-commit-window 0`, `ringcore-direct` with `--journal-sync direct`),
# --no-redis, --soldout-stock N (1000), --soldout-rate R
# (2000), --port P, --redis-port P, --server-core C (0), --client-core C (1), --redis-core C
# (default: the server core), --redis-fsync always|everysec|no (always), --bin DIR (prebuilt
# binaries, no build), --data-root DIR (where the data dirs go; default: the script's temporary
# folder under /tmp. The report names its file system: on tmpfs a sync writes nothing to a
# disk, so such a run measures no durability cost), --load PATH (a generator with ringcore-load's command line and JSON),
# --doc FILE (also put the report between <!-- bench-flash-sale.sh:begin --> and
# <!-- bench-flash-sale.sh:end --> in FILE; the block is appended when the markers are
# missing), --budget S (seconds the measurements may take after the build).
#
# Steps: for each repetition, for each offered rate, the servers back to back (A B C A B C),
# each run a fresh server on a fresh data dir (Redis: a fresh key prefix): PUT /items/hot with
# a stock of 10^9 (never sells out: this measures the buy path), then ringcore-load POSTs
# /items/hot/buy with a new user per request ({"user":"u{n}"}) at the offered rate. Then, per
# repetition and server, the sold-out run: stock --soldout-stock, buys at --soldout-rate for
# --dur seconds; the server must report sold == stock and remaining == 0. The server's CPU time
# (schedstat, all threads) is read around each run. Medians over repetitions go to stdout and
# bench-results/flash-sale-DATE.md, every run to bench-results/flash-sale-DATE.jsonl.
# Only 127.0.0.1; every run is bounded by `timeout`; only the PIDs started here are signalled.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C
# shellcheck source=scripts/lib/bench-common.sh
. scripts/lib/bench-common.sh

MODE=full
DUR=10
WARM=2
REPS=3
RATES=5000,10000,20000
CONNS=64
DEPTH=1
SERVERS_OPT=""
NO_REDIS=0
SOLDOUT_STOCK=1000
SOLDOUT_RATE=2000
PORT=18540
REDIS_PORT=18541
SERVER_CORE=0
CLIENT_CORE=1
REDIS_CORE=""
REDIS_FSYNC=always
PREBUILT=""
LOAD=""
DOC=""
DATA_ROOT=""
BUDGET=1200
HOT_STOCK=1000000000
CMDLINE="scripts/bench-flash-sale.sh $*"

# shellcheck disable=SC2034 # BUDGET is read by check_budget (scripts/lib/bench-common.sh)
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) MODE=quick; DUR=2; WARM=1; REPS=1; RATES=5000,10000; BUDGET=240 ;;
        --dur) DUR="$2"; shift ;;
        --warm) WARM="$2"; shift ;;
        --reps) REPS="$2"; shift ;;
        --rates) RATES="$2"; shift ;;
        --conns) CONNS="$2"; shift ;;
        --depth) DEPTH="$2"; shift ;;
        --servers) SERVERS_OPT="$2"; shift ;;
        --no-redis) NO_REDIS=1 ;;
        --soldout-stock) SOLDOUT_STOCK="$2"; shift ;;
        --soldout-rate) SOLDOUT_RATE="$2"; shift ;;
        --port) PORT="$2"; shift ;;
        --redis-port) REDIS_PORT="$2"; shift ;;
        --server-core) SERVER_CORE="$2"; shift ;;
        --client-core) CLIENT_CORE="$2"; shift ;;
        --redis-core) REDIS_CORE="$2"; shift ;;
        --redis-fsync) REDIS_FSYNC="$2"; shift ;;
        --bin) PREBUILT="$2"; shift ;;
        --load) LOAD="$2"; shift ;;
        --doc) DOC="$2"; shift ;;
        --data-root) DATA_ROOT="$2"; shift ;;
        --budget) BUDGET="$2"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$REDIS_CORE" ] || REDIS_CORE=$SERVER_CORE
case "$REDIS_FSYNC" in always|everysec|no) ;; *) echo "--redis-fsync: always, everysec or no" >&2; exit 2 ;; esac

bench_init bench-flash-sale
if [ -n "$DATA_ROOT" ]; then
    mkdir -p "$DATA_ROOT"
    DATA_ROOT=$(mktemp -d "$DATA_ROOT/bench-flash-sale.XXXXXX")
    STARTED_DATA_ROOT=$DATA_ROOT
    trap 'bench_cleanup; rm -rf "$STARTED_DATA_ROOT"' EXIT
else
    DATA_ROOT=$WORK
fi
# findmnt names ext4 as such (stat -f says ext2/ext3 for every ext).
DATA_FS=$(findmnt -no FSTYPE -T "$DATA_ROOT" 2>/dev/null | head -n 1 || true)
[ -n "$DATA_FS" ] || DATA_FS=$(stat -f -c %T "$DATA_ROOT" 2>/dev/null || echo unknown)
case "$DATA_FS" in tmpfs | ramfs) log "WARNING: the data dirs (and Redis's) are on $DATA_FS: a sync writes nothing to a disk (--data-root picks another folder)" ;; esac
command -v curl >/dev/null 2>&1 || die "needs curl"
need_cpus 2
ADDR="127.0.0.1:$PORT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RUN_ID=$(printf '%s-%d' "$STAMP" $$)
SRC_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
SRC_DIRTY=$(git status --porcelain -- runtime http examples benches 2>/dev/null | wc -l)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

if [ -n "$SERVERS_OPT" ]; then
    read -r -a SERVERS <<<"$SERVERS_OPT"
else
    SERVERS=(ringcore ringcore-nowindow ringcore-direct axum floor)
    if [ "$NO_REDIS" = 0 ] && command -v redis-server >/dev/null 2>&1; then
        SERVERS+=(ringcore-redis)
    else
        log "redis-server not installed (or --no-redis): no ringcore-redis runs"
    fi
fi
NEED_REDIS=0
for s in "${SERVERS[@]}"; do
    case "$s" in
        ringcore|ringcore-nowindow|ringcore-direct|axum|floor) ;;
        ringcore-redis) NEED_REDIS=1 ;;
        *) die "unknown server $s (ringcore, ringcore-nowindow, ringcore-direct, axum, floor, ringcore-redis)" ;;
    esac
done
[ "$NEED_REDIS" = 0 ] || command -v redis-server >/dev/null 2>&1 || die "ringcore-redis needs redis-server"

# ---------------------------------------------------------------- build
if [ -n "$PREBUILT" ]; then
    BIN="$PREBUILT"
    log "using prebuilt binaries in $BIN"
else
    log "building release binaries"
    cargo build --release -q -p flash-sale -p ringcore-benches
    BIN="${CARGO_TARGET_DIR:-target}/release"
fi
for b in flash-sale axum_flash_sale naive_uring ringcore-load; do
    [ -x "$BIN/$b" ] || die "missing $BIN/$b"
done
GENERATOR=ringcore-load
if [ -z "$LOAD" ]; then LOAD="$BIN/ringcore-load"; else GENERATOR="$LOAD"; fi
[ -x "$LOAD" ] || die "missing load generator $LOAD"
mkdir -p bench-results
OUT_MD="bench-results/flash-sale-$STAMP.md"
OUT_JSONL="bench-results/flash-sale-$STAMP.jsonl"
: >"$OUT_JSONL"
budget_start

# ---------------------------------------------------------------- helpers
# http METHOD PATH [BODY] -> "STATUS BODY" (one line)
http() {
    local out
    out=$(curl -sS -m 5 -X "$1" -H 'Content-Type: application/json' ${3:+--data-binary "$3"} \
        -w '\n%{http_code}' "http://$ADDR$2" 2>&1) || { echo "000 $out" | tr '\n' ' '; return 0; }
    printf '%s %s\n' "$(tail -n1 <<<"$out")" "$(sed '$d' <<<"$out" | tr -d '\n')"
}
stat_snap() { grep '^cpu' /proc/stat >"$1"; }
steal_pct() {
    awk 'FNR == NR && $1 == "cpu" {for (i = 2; i <= 9; i++) a[i] = $i; next}
         $1 == "cpu" {t = 0; for (i = 2; i <= 9; i++) t += $i - a[i]; printf "%.2f", (t > 0 ? 100 * ($9 - a[9]) / t : 0)}' "$1" "$2"
}

REDIS_PID=
start_redis() {
    local dir="$DATA_ROOT/redis"
    mkdir -p "$dir"
    start_bg taskset -c "$REDIS_CORE" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
        --dir "$dir" --save '' --appendonly yes --appendfsync "$REDIS_FSYNC" --protected-mode yes \
        --daemonize no --logfile "$WORK/redis.log"
    REDIS_PID=$BG_PID
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null; then
            log "redis-server $(redis-server --version | awk '{print $3}') on core $REDIS_CORE, appendfsync $REDIS_FSYNC"
            return 0
        fi
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.05
    done
    cat "$WORK/redis.log" >&2 || true
    die "redis-server did not start"
}

SEQ=0
# start_one NAME -> SRV_PID, a fresh data dir (or Redis prefix) per run
start_one() {
    SEQ=$((SEQ + 1))
    local dir="$DATA_ROOT/data-$SEQ"
    rm -rf "$DATA_ROOT"/data-*
    case "$1" in
        ringcore)
            start_server "$1" "$WORK/$1.log" taskset -c "$SERVER_CORE" "$BIN/flash-sale" serve \
                --addr "$ADDR" --cores 1 --data-dir "$dir" ;;
        ringcore-nowindow)
            start_server "$1" "$WORK/$1.log" taskset -c "$SERVER_CORE" "$BIN/flash-sale" serve \
                --addr "$ADDR" --cores 1 --data-dir "$dir" --journal-commit-window 0 ;;
        ringcore-direct)
            start_server "$1" "$WORK/$1.log" taskset -c "$SERVER_CORE" "$BIN/flash-sale" serve \
                --addr "$ADDR" --cores 1 --data-dir "$dir" --journal-sync direct ;;
        axum)
            start_server "$1" "$WORK/$1.log" taskset -c "$SERVER_CORE" "$BIN/axum_flash_sale" \
                --addr "$ADDR" --threads 1 --data-dir "$dir" ;;
        floor)
            start_server "$1" "$WORK/$1.log" taskset -c "$SERVER_CORE" "$BIN/naive_uring" \
                --addr "$ADDR" --cores 1 ;;
        ringcore-redis)
            # The service refuses a Redis that can lose acknowledged orders unless told.
            local lossy=()
            [ "$REDIS_FSYNC" = always ] || lossy=(--allow-redis-data-loss)
            start_server "$1" "$WORK/$1.log" taskset -c "$SERVER_CORE" "$BIN/flash-sale" serve \
                --addr "$ADDR" --cores 1 --data-dir "$dir" --store "redis://127.0.0.1:$REDIS_PORT" \
                --prefix "bench-$RUN_ID-$SEQ" "${lossy[@]}" ;;
    esac
}

# run_one NAME PHASE REP RATE STOCK: fresh server, PUT the stock, one generator run, then
# GET the item; one JSON line into $OUT_JSONL, one line into $WORK/runs.txt
run_one() {
    local name=$1 phase=$2 rep=$3 rate=$4 stock=$5 warm=$WARM pid c0 c1 r0 r1 t0 t1 rc=0 put item
    [ "$phase" = soldout ] && warm=0
    check_budget $((RUN_S + 8))
    start_one "$name"
    pid=$SRV_PID
    if [ "$name" != floor ]; then
        put=$(http PUT /items/hot "{\"stock\":$stock}")
        [ "${put%% *}" = 201 ] || die "$name: PUT /items/hot answered $put"
    fi
    rm -f "$WORK/gen.json"
    stat_snap "$WORK/stat0"
    c0=$(cpu_ns "$pid")
    w0=$(iowq_ns "$pid")
    k0=$(kthreads_ns)
    r0=0; [ -n "$REDIS_PID" ] && r0=$(cpu_ns "$REDIS_PID")
    t0=$(date +%s%N)
    taskset -c "$CLIENT_CORE" timeout $((RUN_S + 30)) "$LOAD" --url "http://$ADDR/items/hot/buy" \
        --method POST --body '{"user":"u{n}"}' --rate "$rate" --conns "$CONNS" --depth "$DEPTH" \
        --duration "$DUR" --warmup "$warm" --cores 1 --json "$WORK/gen.json" --no-progress \
        >"$WORK/gen.out" 2>&1 || rc=$?
    c1=$(cpu_ns "$pid")
    w1=$(iowq_ns "$pid")
    k1=$(kthreads_ns)
    r1=0; [ -n "$REDIS_PID" ] && r1=$(cpu_ns "$REDIS_PID")
    t1=$(date +%s%N)
    stat_snap "$WORK/stat1"
    kill -0 "$pid" 2>/dev/null || { cat "$WORK/$name.log" >&2; die "$name died during the run"; }
    # The ringcore service caches GET /items answers for 100 ms per core.
    sleep 0.25
    # The floor keeps no items: it answers 200 to anything.
    item='{"sold":0}'
    [ "$name" = floor ] || item=$(http GET /items/hot)
    stop_server "$name" "$pid" "$WORK/stops"
    [ -s "$WORK/gen.json" ] || { cat "$WORK/gen.out" >&2; die "generator wrote no JSON (rc $rc) for $name at $rate"; }
    local g="$WORK/gen.json" ach p50 p99 p999 ok4 ok2 ok5 errs all2 all4 all5 unf sold rem cpu_us rcpu_us wcpu_us kcpu_us steal
    ach=$(json_num achieved_rate "$g")
    p50=$(json_num p50 "$g"); p99=$(json_num p99 "$g"); p999=$(json_num p99_9 "$g")
    errs=$(json_num errors "$g"); unf=$(json_num unfinished "$g")
    ok2=$(json_in status 2xx "$g"); ok4=$(json_in status 4xx "$g"); ok5=$(json_in status 5xx "$g")
    all2=$(json_in status_all 2xx "$g"); all4=$(json_in status_all 4xx "$g"); all5=$(json_in status_all 5xx "$g")
    sold=$(sed -n 's/.*"sold":\([0-9]*\).*/\1/p' <<<"$item")
    [ "$name" != floor ] || sold=null
    rem=$(sed -n 's/.*"remaining":\([0-9]*\).*/\1/p' <<<"$item")
    [ -n "$sold" ] || die "$name: GET /items/hot answered $item"
    # Server CPU per buy answered in the window (warm-up excluded from the answers, not from
    # the CPU: the CPU is read around the whole generator run, so divide by every answer).
    cpu_us=$(awk -v c=$((c1 - c0)) -v n="$((all2 + all4 + all5))" 'BEGIN {printf "%.1f", (n > 0 ? c / n / 1000 : 0)}')
    rcpu_us=$(awk -v c=$((r1 - r0)) -v n="$((all2 + all4 + all5))" 'BEGIN {printf "%.1f", (n > 0 ? c / n / 1000 : 0)}')
    # Of the server's CPU, what its io_uring worker threads (the kernel's io-wq, running the
    # ops the ring cannot complete without blocking) spent.
    wcpu_us=$(awk -v c=$((w1 - w0)) -v n="$((all2 + all4 + all5))" 'BEGIN {printf "%.1f", (n > 0 ? c / n / 1000 : 0)}')
    # What every kernel thread of the machine spent meanwhile (kworkers run the completion
    # of a direct write's data sync, for one): not the server's, but caused by it in part.
    kcpu_us=$(awk -v c=$((k1 - k0)) -v n="$((all2 + all4 + all5))" 'BEGIN {printf "%.1f", (n > 0 ? c / n / 1000 : 0)}')
    steal=$(steal_pct "$WORK/stat0" "$WORK/stat1")
    printf '{"server":"%s","phase":"%s","rep":%d,"rate":%s,"stock":%s,"sold":%s,"remaining":%s,"server_cpu_ns":%s,"iowq_cpu_ns":%s,"kthreads_cpu_ns":%s,"redis_cpu_ns":%s,"wall_ns":%s,"steal_pct":%s,"load":%s}\n' \
        "$name" "$phase" "$rep" "$rate" "$stock" "$sold" "${rem:-null}" "$((c1 - c0))" "$((w1 - w0))" "$((k1 - k0))" "$((r1 - r0))" "$((t1 - t0))" \
        "$steal" "$(tr -d '\n' <"$g")" >>"$OUT_JSONL"
    echo "$name $phase $rep $rate $ach $p50 $p99 $p999 $ok2 $ok4 $ok5 $errs $unf $all2 $all4 $sold ${rem:-nan} $cpu_us $rcpu_us $steal $all5 $wcpu_us $kcpu_us" >>"$WORK/runs.txt"
    log "$phase rep $rep $name @ $rate/s: achieved $ach/s, p50 $p50 p99 $p99 p99.9 $p999 us, 2xx $ok2 4xx $ok4 5xx $ok5 errors $errs, sold $sold, server ${cpu_us} us/buy (io_uring workers ${wcpu_us}; kernel threads ${kcpu_us}), steal ${steal}%"
    if [ "$phase" = soldout ]; then
        if [ "$sold" != "$stock" ] || [ "${rem:-x}" != 0 ]; then
            die "$name sold $sold of $stock (remaining ${rem:-?})"
        fi
        [ "$all2" = "$stock" ] || log "warning: $name: the generator saw $all2 200s for $stock units sold (lost responses: errors $errs)"
    fi
}

# whole seconds of one generator run (--dur and --warm may be fractions)
RUN_S=$(awk -v d="$DUR" -v w="$WARM" 'BEGIN {s = d + w; printf "%d", s == int(s) ? s : int(s) + 1}')
: >"$WORK/runs.txt"
: >"$WORK/stops"
IFS=, read -r -a RATE_LIST <<<"$RATES"
[ "${#RATE_LIST[@]}" -gt 0 ] || die "--rates: no rate"
[ "$NEED_REDIS" = 0 ] || start_redis

# ---------------------------------------------------------------- 1. buy path at fixed rates
for rep in $(seq "$REPS"); do
    for rate in "${RATE_LIST[@]}"; do
        for name in "${SERVERS[@]}"; do
            run_one "$name" buy "$rep" "$rate" "$HOT_STOCK"
        done
    done
done
# ---------------------------------------------------------------- 2. sold out
for rep in $(seq "$REPS"); do
    for name in "${SERVERS[@]}"; do
        [ "$name" = floor ] || run_one "$name" soldout "$rep" "$SOLDOUT_RATE" "$SOLDOUT_STOCK"
    done
done
if [ -n "$REDIS_PID" ]; then
    stop_server redis-server "$REDIS_PID" "$WORK/stops"
    REDIS_PID=
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
unclean=$(awk '$2 != 0' "$WORK/stops" | sort | uniq -c || true)
if [ -z "$unclean" ]; then
    STOPS="every server exited 0 on SIGTERM"
else
    STOPS="NOT every server exited 0 on SIGTERM: $(echo "$unclean" | tr '\n' ';')"
fi

# ---------------------------------------------------------------- report
# median of column C over the reps of (server, phase, rate)
med() { awk -v s="$1" -v p="$2" -v r="$3" -v c="$4" '$1 == s && $2 == p && $4 == r {print $c}' "$WORK/runs.txt" | median; }
fmt0() { awk -v v="$1" 'BEGIN {if (v == "nan") print "nan"; else printf "%.0f", v}'; }
label() {
    case "$1" in
        ringcore) echo "ringcore (embedded journal)" ;;
        ringcore-nowindow) echo "ringcore (embedded journal, no batch window)" ;;
        ringcore-direct) echo "ringcore (embedded journal, O_DIRECT)" ;;
        axum) echo "axum + tokio (mutex + journal task)" ;;
        ringcore-redis) echo "ringcore + Redis (appendfsync $REDIS_FSYNC)" ;;
        floor) echo "floor: the bare io_uring loop (no HTTP, no journal)" ;;
    esac
}
crate_v() { awk -v n="$1" '$0 == "name = \"" n "\"" {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock; }
MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
REPORT="$WORK/report.md"
{
    echo "## Flash sale: the buy path (\`scripts/bench-flash-sale.sh\`)"
    echo
    echo "Generated by \`$CMDLINE\` on $(date -u +%Y-%m-%d) ($MODE mode, commit \`$SRC_REV\`$([ "$SRC_DIRTY" = 0 ] || echo ", $SRC_DIRTY files changed"))."
    echo
    echo "- machine: \`nproc\` $(nproc), kernel \`$(uname -r)\`, $MODEL; load average $LOAD_BEFORE before, $LOAD_AFTER after"
    echo "- server on core $SERVER_CORE (\`taskset\`, one core: \`--cores 1\` / \`--threads 1\`), generator on core $CLIENT_CORE$([ "$NEED_REDIS" = 0 ] || echo ", redis-server on core $REDIS_CORE")"
    echo "- generator: \`$GENERATOR\`, open loop, $CONNS connections, depth $DEPTH, $DUR s measured after $WARM s warm-up, latency from the scheduled send time; each request \`POST /items/hot/buy\` with a new user (\`{\"user\":\"u{n}\"}\`)"
    echo "- data dirs (Redis's too) on \`$DATA_FS\`$(case "$DATA_FS" in tmpfs | ramfs) echo " (**no disk: a sync costs nothing here, so this run measures no durability cost**)" ;; esac)"
    echo "- every run a fresh server and data dir; stock $HOT_STOCK (never sells out); $REPS repetition(s), servers interleaved; medians over repetitions"
    echo "- crates: tokio $(crate_v tokio), axum $(crate_v axum), hyper $(crate_v hyper); $(rustc -V 2>/dev/null || echo "prebuilt binaries"); $STOPS"
    echo
    echo "| offered buys/s | server | achieved/s | p50 µs | p99 µs | p99.9 µs | 200s | 4xx | 5xx | errors | server CPU µs/buy | of it, io_uring workers | kernel threads µs/buy | steal % |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for rate in "${RATE_LIST[@]}"; do
        for name in "${SERVERS[@]}"; do
            cpu=$(med "$name" buy "$rate" 18)
            [ "$name" = ringcore-redis ] && cpu="$cpu + redis $(med "$name" buy "$rate" 19)"
            echo "| $rate | $(label "$name") | $(fmt0 "$(med "$name" buy "$rate" 5)") | $(med "$name" buy "$rate" 6) | $(med "$name" buy "$rate" 7) | $(med "$name" buy "$rate" 8) | $(med "$name" buy "$rate" 9) | $(med "$name" buy "$rate" 10) | $(med "$name" buy "$rate" 11) | $(med "$name" buy "$rate" 12) | $cpu | $(med "$name" buy "$rate" 22) | $(med "$name" buy "$rate" 23) | $(med "$name" buy "$rate" 20) |"
        done
    done
    echo
    echo "200s, 4xx, 5xx: answers to the buys scheduled in the measured window; errors: requests lost (timeouts, resets). Server CPU: the server's on-CPU time over the whole generator run (all threads, schedstat) per buy answered; of it, io_uring workers: the part spent by the server's \`iou-wrk\` threads (the kernel's io-wq, which runs the ring ops that cannot complete without blocking, such as a buffered \`RWF_DSYNC\` write); kernel threads: what every kernel thread of the machine (kworkers, IRQ threads) spent meanwhile, per buy: not the server's CPU, but where a direct write's data sync completes (in a kworker) on a device without FUA."
    echo
    echo "**Sold out:** stock $SOLDOUT_STOCK, $SOLDOUT_RATE buys/s of new users for $DUR s (no warm-up); every server must end with sold = $SOLDOUT_STOCK, remaining = 0."
    echo
    echo "| server | buys sent | 200 (sold) | 409 (sold out) | 5xx | errors | sold (GET /items/hot) | remaining | p50 µs | p99 µs |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for name in "${SERVERS[@]}"; do
        [ "$name" != floor ] || continue
        sent=$(awk -v s="$name" '$1 == s && $2 == "soldout" {print $14 + $15 + $21 + $12}' "$WORK/runs.txt" | median)
        echo "| $(label "$name") | $(fmt0 "$sent") | $(med "$name" soldout "$SOLDOUT_RATE" 14) | $(med "$name" soldout "$SOLDOUT_RATE" 15) | $(med "$name" soldout "$SOLDOUT_RATE" 21) | $(med "$name" soldout "$SOLDOUT_RATE" 12) | $(med "$name" soldout "$SOLDOUT_RATE" 16) | $(med "$name" soldout "$SOLDOUT_RATE" 17) | $(med "$name" soldout "$SOLDOUT_RATE" 6) | $(med "$name" soldout "$SOLDOUT_RATE" 7) |"
    done
    echo
    echo "Every run: \`$OUT_JSONL\`."
} >"$REPORT"
cp "$REPORT" "$OUT_MD"
cat "$REPORT"
if [ -n "$DOC" ]; then
    update_doc bench-flash-sale.sh "$REPORT" "$DOC"
fi
log "wrote $OUT_MD and $OUT_JSONL in $(($(date +%s) - T0)) s"
