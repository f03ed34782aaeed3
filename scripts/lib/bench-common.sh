# shellcheck shell=bash
# Shared pieces of the server benchmarks (scripts/bench.sh, bench-http.sh, bench-peers.sh,
# bench-runtime.sh, ...). Sourced, never run: the caller sets `set -euo pipefail` and
# `LC_ALL=C`, then calls `bench_init NAME` once before anything else here.
#
# The servers compared (the one table: name -> binary, driver, what it is; see PEERS_ALL below)
#   PEERS_ALL                the names, in the order the reports list them
#   PEER_BIN[NAME], PEER_DRIVER[NAME], PEER_WHAT[NAME]
#                            binary in $BIN; the ringcore driver it must run on (ringcore only);
#                            one Markdown line on what it is, for the docs' server tables
#   pick_servers LIST REQUIRED...
#                            SERVERS=(REQUIRED..., then the other names of LIST in its order),
#                            every name checked against PEERS_ALL (exit 2 on an unknown one)
#   peer_start NAME CORES ADDR [N]
#                            start NAME pinned to CORES (`taskset -c CORES`, e.g. 0 or 0-3;
#                            `--addr ADDR --cores N`, N 1 unless given),
#                            log in $WORK/NAME.log; sets SRV_PID. Its first start also checks
#                            three pipelined requests and, for ringcore, the driver it runs on
#   peers_json               the selected SERVERS' table as a JSON array (for bench_report)
#   raise_limits NOFILE      RLIMIT_NOFILE to NOFILE and RLIMIT_MEMLOCK to 8 MiB (glommio) if
#                            they are lower and may be raised
#
#   bench_init NAME          T0, WORK (a temporary folder, removed at exit), traps; log/die
#                            messages are prefixed with NAME
#   log MSG / die MSG        progress on stderr / message and exit 1
#   need_cpus N              die unless the machine has N CPUs
#   ensure_wrk               apt-get install wrk if it is missing
#   budget_start; check_budget S
#                            the measurement budget ($BUDGET seconds, counted from
#                            budget_start): die if the next step (S seconds) would overrun it
#   start_server NAME LOG CMD...
#                            run CMD in the background (output to LOG), wait for "listening on"
#                            in LOG; sets SRV_PID. Every PID started is killed at exit.
#   try_start_server LOG CMD...
#                            the same, but a CMD that does not start is killed and the status
#                            is 1 (start_server dies instead)
#   start_bg CMD...          run CMD in the background, remembered for the exit cleanup; sets
#                            BG_PID
#   stop_server NAME PID STOPS
#                            SIGTERM, wait up to 5 s, then SIGKILL; appends "NAME RC" (and
#                            "NAME killed") to the file STOPS
#   forget PID               a reaped PID: never signal that number again
#   cpu_ns PID               on-CPU ns of all threads of PID (schedstat field 1, summed)
#   rss_kib PID              VmRSS in KiB
#   wrk_run CORE SECONDS ARGS...
#                            `wrk -t1 -dSECONDS ARGS` on CORE under `timeout`; wrk's output on
#                            stdout, wrk's own CPU seconds (user + system) into $WORK/wrk.cpu
#   wrk_requests, wrk_rps, wrk_pct_us PCT, wrk_max_us, wrk_errors
#                            read a wrk --latency output on stdin
#   check_pipelining NAME PORT PATH
#                            three requests in two writes must get three "Hello, World!"s
#   median, to_us            filters: median of numbers / wrk latency (1.2ms) -> us
#   ratio A B                A / B to 2 decimals
#   paired SERVER BASE COL FILE
#                            median over repetitions of SERVER's column COL over BASE's in the
#                            same repetition (FILE: "server rep ..." lines), 3 decimals
#   col SERVER COL FILE      median of SERVER's column COL in FILE
#   machine_md               "- kernel: ..., CPUs: ..., model: ..." and "- client: `wrk ...`"
#   update_doc NAME REPORT DOC
#                            put REPORT between <!-- NAME:begin --> and <!-- NAME:end --> in
#                            DOC (appended with the markers when they are missing)

bench_init() {
    BENCH_NAME=$1
    T0=$(date +%s)
    STARTED=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    WORK=$(mktemp -d "/tmp/$BENCH_NAME.XXXXXX")
}

bench_cleanup() {
    local p
    for p in "${STARTED[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            kill -TERM "$p" 2>/dev/null || true
            sleep 0.2
            if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null || true; fi
        fi
    done
    [ -n "${WORK:-}" ] && rm -rf "$WORK"
}

forget() { # pid: reaped, so never signal that number again
    local p keep=()
    for p in "${STARTED[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    STARTED=("${keep[@]}")
}

log() { echo "[$(($(date +%s) - T0))s] $*" >&2; }
die() { echo "$BENCH_NAME: $*" >&2; exit 1; }

# A server entry `VAR=VALUE@BIN` (cpu-per-request.sh, perf-http.sh) runs BIN with VAR=VALUE in
# its environment: `bin_of` gives BIN, `env_of` the assignment (nothing for a plain path), and
# `check_bins ENTRY...` stops unless every BIN is an executable.
bin_of() { if [[ "$1" =~ ^[A-Za-z_][A-Za-z0-9_]*=[^@]*@(.+)$ ]]; then echo "${BASH_REMATCH[1]}"; else echo "$1"; fi; }
env_of() { if [[ "$1" =~ ^([A-Za-z_][A-Za-z0-9_]*=[^@]*)@.+$ ]]; then echo "${BASH_REMATCH[1]}"; fi; }
check_bins() {
    local b
    for b in "$@"; do [ -x "$(bin_of "$b")" ] || die "not an executable: $(bin_of "$b")"; done
}

need_cpus() {
    [ "$(nproc)" -ge "$1" ] || die "needs at least $1 CPUs (server and client on different cores)"
}

ensure_wrk() {
    command -v wrk >/dev/null 2>&1 && return 0
    log "installing wrk"
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null
    else
        sudo apt-get update -qq >/dev/null && sudo apt-get install -y -qq wrk >/dev/null
    fi
    command -v wrk >/dev/null 2>&1 || die "could not install wrk"
}

budget_start() { T1=$(date +%s); }
check_budget() { # seconds the next step may take
    local spent=$(($(date +%s) - T1))
    [ $((spent + $1)) -le "$BUDGET" ] || die "over the ${BUDGET} s budget ($spent s spent): use fewer --reps or a shorter --dur"
}

SRV_PID=
try_start_server() { # log cmd... -> sets SRV_PID; status 1 (the server stopped) if no start
    local logf=$1
    shift
    # Empty the log here, not in the child's redirection: a child not scheduled yet would
    # leave the previous run's "listening on" for the loop below to find.
    : >"$logf"
    "$@" >>"$logf" 2>&1 &
    SRV_PID=$!
    STARTED+=("$SRV_PID")
    for _ in $(seq 100); do
        grep -q "listening on" "$logf" 2>/dev/null && return 0
        kill -0 "$SRV_PID" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$SRV_PID" 2>/dev/null || true
    wait "$SRV_PID" 2>/dev/null || true
    forget "$SRV_PID"
    return 1
}

start_server() { # name log cmd... -> sets SRV_PID
    local name=$1 logf=$2
    shift 2
    try_start_server "$logf" "$@" && return 0
    cat "$logf" >&2
    die "$name did not start"
}

BG_PID=
start_bg() { # cmd... -> sets BG_PID
    "$@" &
    BG_PID=$!
    STARTED+=("$BG_PID")
}

stop_server() { # name pid stops-file
    local name=$1 pid=$2 stops=$3 rc=0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        echo "$name killed" >>"$stops"
    fi
    wait "$pid" || rc=$?
    forget "$pid"
    echo "$name $rc" >>"$stops"
}

cpu_ns() { # pid -> total on-CPU ns of all its threads
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'
}

iowq_ns() { # pid -> on-CPU ns of its io_uring worker threads (comm iou-wrk-*)
    local t s=0 a
    for t in /proc/"$1"/task/*; do
        case "$(cat "$t/comm" 2>/dev/null)" in
            iou-wrk-*) read -r a _ <"$t/schedstat" 2>/dev/null && s=$((s + a)) ;;
        esac
    done
    echo "$s"
}

kthreads_ns() { # -> on-CPU ns of every kernel thread (children of kthreadd: kworkers, irq threads)
    local p s=0 a
    for p in $(ps -o pid= --ppid 2); do
        read -r a _ <"/proc/$p/schedstat" 2>/dev/null && s=$((s + a))
    done
    echo "$s"
}

rss_kib() { awk '/^VmRSS:/ {print $2}' /proc/"$1"/status; }

wrk_run() { # core seconds wrk-args... -> wrk output; wrk's CPU seconds into $WORK/wrk.cpu
    local core=$1 secs=$2 rc=0
    shift 2
    rm -f "$WORK/wrk.times"
    # `times` in the wrapper shell reports its reaped child's (wrk's) user and system time.
    # shellcheck disable=SC2016 # the inner script expands its own arguments
    taskset -c "$core" timeout $((secs + 20)) bash -c \
        'wrk "$@"; rc=$?; times >"$0"; exit $rc' "$WORK/wrk.times" -t1 -d"$secs"s "$@" || rc=$?
    awk 'NR == 2 {
            n = split($0, t, " "); s = 0
            for (i = 1; i <= n; i++) { split(t[i], p, "m"); sub(/s$/, "", p[2]); s += p[1] * 60 + p[2] }
            printf "%.3f\n", s
        }' "$WORK/wrk.times" >"$WORK/wrk.cpu" 2>/dev/null || echo nan >"$WORK/wrk.cpu"
    return "$rc"
}

wrk_requests() { awk '/requests in/ {print $1}'; }
wrk_rps() { awk '/^Requests\/sec:/ {print $2}'; }
wrk_pct_us() { awk -v p="$1" '$1 == p {print $2}' | to_us; } # pct: 50% 75% 90% 99%
wrk_max_us() { awk '$1 == "Latency" && NF >= 4 {print $4; exit}' | to_us; }
wrk_errors() {
    awk '/Socket errors:/ {gsub(/,/, ""); e += $4 + $6 + $8 + $10} /Non-2xx/ {e += $NF} END {print e + 0}'
}

check_pipelining() { # name port path: three requests in two writes must get three responses
    local name=$1 port=$2 path=$3 got
    got=$(
        exec 3<>"/dev/tcp/127.0.0.1/$port"
        printf 'GET %s HTTP/1.1\r\nHost: x\r\n\r\nGET %s HTTP/1.1\r\nHost: x\r\n\r\nGET %s HT' \
            "$path" "$path" "$path" >&3
        sleep 0.1
        printf 'TP/1.1\r\nHost: x\r\n\r\n' >&3
        timeout 1 cat <&3 | grep -c 'Hello, World!' || true
    )
    [ "$got" = 3 ] || die "$name answered $got of 3 pipelined requests"
}

median() { sort -g | awk '{a[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

# wrk latency "1.23ms" / "850.00us" / "1.02s" / "2.00m" -> microseconds
to_us() { awk '{v = $1; if (v ~ /us$/) {sub(/us$/, "", v); print v} else if (v ~ /ms$/) {sub(/ms$/, "", v); print v * 1000} else if (v ~ /m$/) {sub(/m$/, "", v); print v * 60000000} else if (v ~ /s$/) {sub(/s$/, "", v); print v * 1000000} else print "nan"}'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "nan"}'; }
# json_num KEY FILE: the number under "KEY" in a JSON file (the last, if the key recurs)
json_num() { tr -d ' \n' <"$2" | sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p"; }
# json_in OBJ KEY FILE: the number under "KEY" inside the JSON object "OBJ" of FILE
json_in() { tr -d ' \n' <"$3" | sed -n "s/.*\"$1\":{\([^}]*\)}.*/\1/p" | sed -n "s/.*\"$2\":\([-0-9.eE+]*\).*/\1/p"; }

# Median over reps of (server's figure / base server's figure in the same rep): the servers of
# one rep ran back to back, so this cancels most of the machine's drift between reps.
paired() { # server base column file
    awk -v a="$1" -v b="$2" -v c="$3" '$1 == a {x[$2] = $c} $1 == b {y[$2] = $c}
        END {for (r in x) if (y[r] > 0) print x[r] / y[r]}' "$4" | median |
        awk '{printf "%.3f", $1}'
}

col() { awk -v s="$1" -v c="$2" '$1 == s {print $c}' "$3" | median; }

machine_md() {
    local model wrkv
    model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
    wrkv=$( (wrk -v 2>&1 || true) | head -1)
    echo "- kernel: \`$(uname -r)\`, CPUs: $(nproc), model: $model"
    echo "- client: \`$wrkv\`"
}

update_doc() { # name report doc
    local begin_m="<!-- $1:begin -->" end_m="<!-- $1:end -->" report=$2 doc=$3
    [ -f "$doc" ] || : >"$doc"
    if grep -qF "$begin_m" "$doc" && grep -qF "$end_m" "$doc"; then
        awk -v b="$begin_m" -v e="$end_m" -v f="$report" '
            $0 == b {print; while ((getline l < f) > 0) print l; skip = 1; next}
            $0 == e {skip = 0}
            !skip {print}' "$doc" >"$WORK/doc.new"
    else
        { cat "$doc"; echo; echo "$begin_m"; cat "$report"; echo "$end_m"; } >"$WORK/doc.new"
    fi
    cat "$WORK/doc.new" >"$doc"
    log "updated $doc"
}

# ---------------------------------------------------------------- the servers compared
# The one place that says which servers the benchmarks compare and how each is started. Every
# binary takes `--addr HOST:PORT --cores 1` (ringcore-cli's one grammar: `1` is the first core
# of the process's mask, i.e. the one core `taskset` allows), prints "listening on ADDR" once it
# accepts, and exits 0 on SIGTERM. Every one answers `GET /plaintext` with `Hello, World!` and
# answers pipelined requests in order.
PEERS_ALL="bare tokio_ct may hyper_ct actix axum rc_uring rc_epoll monoio glommio"
# Not in PEERS_ALL, named with --servers: rc_uring_ss, hello on io_uring with speculative sends
# on (RINGCORE_SPECULATIVE_SEND=1; off by default there), for A/B runs of that default; bare_hp
# and tokio_ct_hp, the bare loop and tokio_ct parsing every head with httparse
# (BENCH_HTTPARSE=1), the floor and the tokio baseline as issue 12 defines them.
declare -A PEER_BIN=([bare]=naive_uring [tokio_ct]=tokio_ct [may]=may_hello [hyper_ct]=hyper_ct
    [actix]=actix_hello [axum]=axum_hello [rc_uring]=hello [rc_epoll]=hello
    [monoio]=monoio_hello [glommio]=glommio_hello [rc_uring_ss]=hello
    [bare_hp]=naive_uring [tokio_ct_hp]=tokio_ct)
# RINGCORE_DRIVER for the ringcore servers (checked against the driver hello reports).
declare -A PEER_DRIVER=([rc_uring]=io_uring [rc_epoll]=epoll [rc_uring_ss]=io_uring)
# Further environment of a server (VAR=VALUE).
declare -A PEER_ENV=([rc_uring_ss]=RINGCORE_SPECULATIVE_SEND=1 [bare_hp]=BENCH_HTTPARSE=1
    [tokio_ct_hp]=BENCH_HTTPARSE=1)
# Markdown, backticks included (hence single quotes).
# shellcheck disable=SC2034,SC2016 # read by the scripts that source this file
declare -A PEER_WHAT=(
    [bare]='the bare loop straight on the `io-uring` crate, no runtime: multishot accept, multishot recv on a provided buffer ring, requests counted by `\r\n\r\n` (no HTTP parsing), the fixed 78-byte response (no `Date`), one send per receive. The floor'
    [tokio_ct]='one current-thread tokio runtime per core (`SO_REUSEPORT`), readiness + `try_read`, requests counted by `\r\n\r\n` (no HTTP parsing), the fixed 78-byte response: the strongest tokio setup'
    [may]='may_minihttp 0.1 (its own HTTP/1 server) on the `may` stackful-coroutine runtime, one worker; adds `Date` and `Server: M`'
    [hyper_ct]='hyper 1 HTTP/1 server on one current-thread tokio runtime (a `LocalSet` per core), `TCP_NODELAY`; hyper adds `Date`'
    [actix]='actix-web 4 (default features off), one worker; actix adds `Date`'
    [axum]='axum 0.8 on hyper 1 and tokio'"'"'s multi-thread runtime with one worker thread, `TCP_NODELAY`: what a tokio user writes; adds `Date`'
    [rc_uring]='ringcore-http'"'"'s `hello` (`examples/hello`) on the io_uring driver: the full stack, httparse-based strict parser, router, `async fn plaintext() -> &'"'"'static str`, per-core cached `Date`, `Server`'
    [rc_epoll]='the same `hello` on ringcore'"'"'s epoll driver'
    [rc_uring_ss]='the same `hello` on io_uring with speculative sends on (`RINGCORE_SPECULATIVE_SEND=1`: an answer goes out by one `send` call on the core, an op only on `EAGAIN`)'
    [bare_hp]='the bare loop parsing every request head with `httparse` (32 field slots) before its fixed answer (`BENCH_HTTPARSE=1`): the floor as issue 12 defines it ("httparse, fixed answer, no `Date`")'
    [tokio_ct_hp]='`tokio_ct` parsing every request head with `httparse` (32 field slots) before its fixed answer (`BENCH_HTTPARSE=1`): issue 12'"'"'s "tokio current-thread + httparse, fixed answer"'
    [monoio]='monoio 0.2 (io_uring driver), one runtime per core, a 4 KiB owned buffer per connection, httparse, the fixed 78-byte response'
    [glommio]='glommio 0.9, one `LocalExecutor` per core, a 4 KiB buffer per connection, httparse, the fixed 78-byte response'
)

pick_servers() { # "list" required... -> SERVERS
    local s
    SERVERS=("${@:2}")
    for s in $1; do
        [ -n "${PEER_BIN[$s]:-}" ] || { echo "unknown server $s (known: $PEERS_ALL rc_uring_ss bare_hp tokio_ct_hp)" >&2; exit 2; }
        [[ " ${SERVERS[*]} " == *" $s "* ]] || SERVERS+=("$s")
    done
}

declare -A PEER_CHECKED=()
peer_exec() { # name cores addr n: becomes the server (exec: the caller's $! is its PID)
    local name=$1 core=$2 addr=$3 n=$4
    # shellcheck disable=SC2086 # PEER_ENV is one VAR=VALUE word or none
    exec env RINGCORE_DRIVER="${PEER_DRIVER[$name]:-auto}" ${PEER_ENV[$name]:-} \
        taskset -c "$core" "$BIN/${PEER_BIN[$name]}" --addr "$addr" --cores "$n"
}

peer_started_on_driver() { # name log: a ringcore server logged the driver it must run on
    [ -z "${PEER_DRIVER[$1]:-}" ] || grep -q "driver: ${PEER_DRIVER[$1]}" "$2"
}

peer_start() { # name cores addr [n] -> SRV_PID
    local name=$1 core=$2 addr=$3 n=${4:-1}
    start_server "$name" "$WORK/$name.log" peer_exec "$name" "$core" "$addr" "$n"    [ -z "${PEER_CHECKED[$name]:-}" ] || return 0
    check_pipelining "$name" "${addr##*:}" /plaintext
    peer_started_on_driver "$name" "$WORK/$name.log" ||
        die "$name did not start on ${PEER_DRIVER[$name]}: $(head -3 "$WORK/$name.log")"
    PEER_CHECKED[$name]=1
}

peers_json() { # the selected SERVERS -> [{"name", "binary", "driver", "what"}, ...]
    local s sep="" esc
    printf '['
    for s in "${SERVERS[@]}"; do
        esc=$(printf '%s' "${PEER_WHAT[$s]}" | sed 's/\\/\\\\/g; s/"/\\"/g')
        printf '%s{"name":"%s","binary":"%s","driver":"%s","what":"%s"}' "$sep" "$s" \
            "${PEER_BIN[$s]}" "${PEER_DRIVER[$s]:-}" "$esc"
        sep=,
    done
    printf ']'
}

raise_limits() { # nofile
    if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$1" ]; then
        ulimit -n "$1" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    fi
    # glommio locks memory for its rings (at least 512 KiB of RLIMIT_MEMLOCK).
    if [ "$(ulimit -l)" != unlimited ] && [ "$(ulimit -l)" -lt 8192 ]; then
        ulimit -l 8192 2>/dev/null || log "warning: RLIMIT_MEMLOCK is $(ulimit -l) KiB; glommio may not start"
    fi
}

# ringcore-load's own warning threshold for its busy share (report.rs GENERATOR_BUSY_WARN), in
# percent: above it the latencies include the generator's own queueing.
BUSY_WARN=70

# busy_cell PERCENT: a "client busy" table cell, marked "†" above BUSY_WARN.
busy_cell() {
    awk -v b="$1" -v w="$BUSY_WARN" 'BEGIN {printf "%.0f%%%s", b, (b > w ? " †" : "")}'
}
