#!/usr/bin/env bash
# CPU per request of HTTP server binaries side by side at one fixed open-loop rate (or in the
# closed loop, pipelined or not): each binary
# in turn (A B C A B C ..., a fresh server per run) on the server core, `ringcore-load` on the
# client core sending GET PATH over 64 connections at RATE requests/s; the server's CPU is the
# sum over its threads of /proc/PID/task/*/schedstat field 1 (kernel work on its threads
# included), read around the generator run (warm-up included), over the 2xx answers.
# For an A/B of two builds of one server (e.g. `hello` at two commits), or a server against
# the bare loop and tokio at low load, where a wake-up per request dominates.
#
#   scripts/cpu-per-request.sh --rate 53000 target/release/tokio_ct target/release/hello
#   scripts/cpu-per-request.sh --rate 53000 --rounds 5 /tmp/old/hello target/release/hello
#   scripts/cpu-per-request.sh --rate 0 --depth 16 /tmp/old/hello target/release/hello   # pipelined
#   scripts/cpu-per-request.sh target/release/tokio_ct BENCH_HTTPARSE=1@target/release/tokio_ct \
#       target/release/hello                      # VAR=VALUE@BIN: BIN with VAR set (one variable)
#
# Options: --rate R (requests/s, default 53000), --rounds N (3), --dur S (5), --warm S (1),
# --conns N (64), --depth D (requests outstanding per connection, 1; with --rate 0, the
# closed loop, D pipelined requests per connection), --path P (/plaintext), --port P
# (18551), --server-core C (0), --client-core C (1), --load PATH (default
# target/release/ringcore-load), --header 'NAME: VALUE' (an extra request field, repeatable),
# --browser (the fields a browser sends with each request: a head of 490 bytes, as
# `scripts/callgrind-http.sh --browser` sends). Each binary is started as
# `taskset -c CORE BIN --addr 127.0.0.1:PORT --cores 1` with RINGCORE_DRIVER as in the
# environment (io_uring when unset), and must print "listening on" (as every server of
# scripts/lib/bench-common.sh does). Prints one line per run and, per binary, the median, the
# lowest and highest round (the spread to read a difference against), the median over the
# first binary's, and the median of the user-space part (the CPU time split as the server's
# utime and stime clock ticks split: 10 ms ticks, so read it over runs of a few seconds; it
# is where one build differs from another, and less noisy than the kernel's part, which
# the loopback TCP path makes most of the total).
# Only 127.0.0.1; every generator run is bounded by `timeout`, each server is stopped (SIGTERM)
# after its run; only the PIDs started here are signalled.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/bench-common.sh
. scripts/lib/bench-common.sh
RATE=53000
ROUNDS=3
DUR=5
WARM=1
CONNS=64
DEPTH=1
URL_PATH=/plaintext
PORT=18551
SERVER_CORE=0
CLIENT_CORE=1
LOAD=target/release/ringcore-load
BINS=()
HEADERS=()
BROWSER_FIELDS=(
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    "Accept-Language: en-US,en;q=0.5"
    "Accept-Encoding: gzip, deflate, br, zstd"
    "Connection: keep-alive"
    "Cookie: session=4f2a9c1e8b7d6a5f3e2d1c0b9a8f7e6d; theme=dark"
    "Upgrade-Insecure-Requests: 1"
    "Sec-Fetch-Dest: document"
    "Sec-Fetch-Mode: navigate"
    "Sec-Fetch-Site: none"
    "Priority: u=0, i"
)
while [ $# -gt 0 ]; do
    case "$1" in
        --rate) RATE="$2"; shift ;;
        --rounds) ROUNDS="$2"; shift ;;
        --dur) DUR="$2"; shift ;;
        --warm) WARM="$2"; shift ;;
        --conns) CONNS="$2"; shift ;;
        --depth) DEPTH="$2"; shift ;;
        --path) URL_PATH="$2"; shift ;;
        --port) PORT="$2"; shift ;;
        --server-core) SERVER_CORE="$2"; shift ;;
        --client-core) CLIENT_CORE="$2"; shift ;;
        --load) LOAD="$2"; shift ;;
        --header) HEADERS+=(--header "$2"); shift ;;
        --browser) for h in "${BROWSER_FIELDS[@]}"; do HEADERS+=(--header "$h"); done ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
        *) BINS+=("$1") ;;
    esac
    shift
done
[ "${#BINS[@]}" -gt 0 ] || { echo "name at least one server binary (see --help)" >&2; exit 2; }
bench_init cpu-per-request
need_cpus 2
[ -x "$LOAD" ] || cargo build --release -q -p ringcore-benches --bin ringcore-load
# utime and stime of PID, in clock ticks (/proc/PID/stat fields 14 and 15, after the
# parenthesised command name, which may hold spaces).
ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12, $13 }'; }
check_bins "${BINS[@]}"
export RINGCORE_DRIVER="${RINGCORE_DRIVER:-io_uring}"

for round in $(seq "$ROUNDS"); do
    for i in "${!BINS[@]}"; do
        bin=${BINS[$i]}
        # `env` and `taskset` exec the server: $SRV_PID is its PID.
        assign=$(env_of "$bin")
        start_server "$bin" "$WORK/server.log" env ${assign:+"$assign"} taskset -c "$SERVER_CORE" \
            "$(bin_of "$bin")" --addr "127.0.0.1:$PORT" --cores 1
        c0=$(cpu_ns "$SRV_PID")
        t0=$(ticks "$SRV_PID")
        taskset -c "$CLIENT_CORE" timeout $((DUR + WARM + 20)) "$LOAD" \
            --url "http://127.0.0.1:$PORT$URL_PATH" --rate "$RATE" --conns "$CONNS" --depth "$DEPTH" \
            --duration "$DUR" --warmup "$WARM" --cores 1 --json "$WORK/gen.json" --no-progress \
            ${HEADERS[@]+"${HEADERS[@]}"} >/dev/null 2>&1 || true
        c1=$(cpu_ns "$SRV_PID")
        t1=$(ticks "$SRV_PID")
        stop_server "$bin" "$SRV_PID" "$WORK/stops"
        n=$(json_in status_all 2xx "$WORK/gen.json")
        p99=$(tr -d ' \n' <"$WORK/gen.json" | sed -n 's/.*"p99":\([0-9.]*\).*/\1/p')
        [ -n "$n" ] && [ "$n" -gt 0 ] || die "$bin: no 2xx answers"
        ns=$(awk -v c=$((c1 - c0)) -v n="$n" 'BEGIN {printf "%.0f", c / n}')
        echo "$ns" >>"$WORK/cpu.$i"
        # The user-space part: the CPU time split as the clock ticks of utime and stime split it.
        user=$(echo "$t0 $t1" | awk -v ns="$ns" '{ u = $3 - $1; s = $4 - $2; printf "%.0f", (u + s > 0) ? ns * u / (u + s) : 0 }')
        echo "$user" >>"$WORK/user.$i"
        echo "round $round $bin @ $RATE/s: $n answers, $ns ns CPU per answer ($user in user space), p99 ${p99} us"
        rm -f "$WORK/gen.json"
    done
done
echo "medians over $ROUNDS rounds (ns CPU per answer at $RATE/s, driver $RINGCORE_DRIVER), the rounds' range, the median over the first binary's, and the median user-space part:"
first=$(median <"$WORK/cpu.0")
for i in "${!BINS[@]}"; do
    m=$(median <"$WORK/cpu.$i")
    range=$(sort -n "$WORK/cpu.$i" | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo ".." hi }')
    echo "  ${BINS[$i]}: $m ($range) $(awk -v m="$m" -v f="$first" 'BEGIN { if (f > 0) printf "%.3f", m / f }'), user $(median <"$WORK/user.$i")"
done
