#!/usr/bin/env bash
# TLS on one pinned core (issue 14): ringcore-http (examples/hello --tls-cert/--tls-key)
# against hyper 1 + tokio-rustls on current-thread tokio (benches' hyper_tls), both on rustls
# 0.23 with the `ring` provider and the same certificate. Writes the figures into
# docs/bench-tls.md (between its bench-tls markers).
#
#   scripts/bench-tls.sh            # 3 reps, 5 s runs (about 2 min after the build)
#   scripts/bench-tls.sh --quick    # 1 rep, 2 s runs: proves the script works, figures are noise
#
# Options: --reps N, --dur S, --conns N (64, keep-alive phase), --parallel N (4 `openssl s_time`
# clients in the handshake phases), --server-core C (0), --client-core C (1), --port P (18560),
# --out FILE (docs/bench-tls.md), --bin DIR (prebuilt hello and hyper_tls, e.g. target/debug
# for a smoke run without a release build).
#
# Phases, every run a fresh server pinned with taskset to the server core, clients pinned to
# the client core, servers interleaved (A B A B ...), medians over reps:
#   new    full handshakes: `openssl s_time -new -www /plaintext`, a new TLS connection (no
#          session reuse) per GET, --parallel processes at once;
#   reuse  resumed handshakes: `openssl s_time -reuse` (after its first full handshake every
#          connection resumes the session; the share resumed, counted from s_time's `r`
#          marks, is in the table);
#   keep   `GET /plaintext` over --conns keep-alive TLS connections: `wrk -t1 -c CONNS`.
# Server CPU: the sum over the server's threads of /proc/PID/task/*/schedstat field 1 across
# the run, divided by the connections (new, reuse) or requests (keep) of the run.
# Certificates: a self-signed ECDSA P-256 certificate for 127.0.0.1/localhost made with the
# openssl CLI at run time. Only 127.0.0.1; every run bounded by `timeout`; only the PIDs
# started here are signalled.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C
# shellcheck source=scripts/lib/bench-common.sh
. scripts/lib/bench-common.sh

MODE=full
REPS=3
DUR=5
CONNS=64
PARALLEL=4
SERVER_CORE=0
CLIENT_CORE=1
PORT=18560
OUT=docs/bench-tls.md
PREBUILT=""
CMDLINE="scripts/bench-tls.sh $*"

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) MODE=quick; REPS=1; DUR=2 ;;
        --reps) REPS="$2"; shift ;;
        --dur) DUR="$2"; shift ;;
        --conns) CONNS="$2"; shift ;;
        --parallel) PARALLEL="$2"; shift ;;
        --server-core) SERVER_CORE="$2"; shift ;;
        --client-core) CLIENT_CORE="$2"; shift ;;
        --port) PORT="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        --bin) PREBUILT="$2"; shift ;;
        -h | --help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

SERVERS=(ringcore hyper_tls)
declare -A BIN_OF=([ringcore]=hello [hyper_tls]=hyper_tls)
ADDR="127.0.0.1:$PORT"
URL="https://$ADDR/plaintext"
PHASES=(new reuse keep)

bench_init bench-tls
need_cpus 2
ensure_wrk
command -v openssl >/dev/null 2>&1 || die "needs the openssl CLI (Debian package openssl)"
command -v curl >/dev/null 2>&1 || die "needs curl (Debian package curl)"
if [ -n "$PREBUILT" ]; then
    BIN="$PREBUILT"
else
    log "building release binaries"
    cargo build --release -q -p hello -p ringcore-benches --bin hello --bin hyper_tls
    BIN="${CARGO_TARGET_DIR:-target}/release"
fi
for name in "${SERVERS[@]}"; do
    [ -x "$BIN/${BIN_OF[$name]}" ] || die "missing $BIN/${BIN_OF[$name]}"
done
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

log "making a self-signed ECDSA P-256 certificate"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>"$WORK/openssl.err" ||
    die "openssl could not make the certificate: $(cat "$WORK/openssl.err")"

start() { # name -> SRV_PID, checked with a verified GET
    local name=$1 got
    start_server "$name" "$WORK/$name.log" taskset -c "$SERVER_CORE" "$BIN/${BIN_OF[$name]}" \
        --addr "$ADDR" --cores 1 --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem"
    got=$(curl -s --max-time 5 --cacert "$WORK/cert.pem" "$URL" || true)
    [ "$got" = "Hello, World!" ] || die "$name over TLS answered ${got:-nothing} (log: $(head -3 "$WORK/$name.log"))"
}

# s_time_group MODE -> "connections resumed" (on stdout) of --parallel s_time processes over DUR seconds
s_time_group() {
    local mode=$1 i pids=() rc=0
    for i in $(seq "$PARALLEL"); do
        taskset -c "$CLIENT_CORE" timeout $((DUR + 20)) openssl s_time -connect "$ADDR" "-$mode" \
            -time "$DUR" -www /plaintext >"$WORK/st.$i" 2>&1 &
        pids+=("$!")
        STARTED+=("$!")
    done
    for i in "${pids[@]}"; do
        wait "$i" || rc=$?
        forget "$i"
    done
    [ "$rc" = 0 ] || die "openssl s_time failed (rc $rc): $(tail -3 "$WORK/st.1")"
    # The `-reuse` part of s_time's output follows "Now timing with session id reuse."; with
    # `-new` there is only the first part. Count its connections and its `r` marks.
    awk -v mode="$mode" '
        /^Now timing with session id reuse/ {part = 1; next}
        (mode == "new" && part == 0) || (mode == "reuse" && part == 1) {
            if ($2 == "connections" && $3 == "in" && $0 ~ /real seconds/) n += $1
            else if ($0 ~ /^[*rt3]+$/) r += gsub(/r/, "")
        }
        END {printf "%d %d\n", n, r}' "$WORK"/st.[0-9]*
    rm -f "$WORK"/st.[0-9]*
}

# run_one NAME PHASE REP -> appends "name phase rep count wall_s cpu_ns resumed p50_us p99_us errors"
run_one() {
    local name=$1 phase=$2 rep=$3 pid c0 c1 t0 t1 count resumed=0 p50=nan p99=nan errors=0 out
    start "$name"
    pid=$SRV_PID
    c0=$(cpu_ns "$pid")
    t0=$(date +%s.%N)
    case "$phase" in
        new | reuse)
            s_time_group "$phase" >"$WORK/st.count"
            read -r count resumed <"$WORK/st.count"
            ;;
        keep)
            out=$(wrk_run "$CLIENT_CORE" "$DUR" -c "$CONNS" --latency "$URL") ||
                die "wrk failed against $name: $out"
            count=$(echo "$out" | wrk_requests)
            p50=$(echo "$out" | wrk_pct_us 50%)
            p99=$(echo "$out" | wrk_pct_us 99%)
            errors=$(echo "$out" | wrk_errors)
            ;;
    esac
    t1=$(date +%s.%N)
    c1=$(cpu_ns "$pid")
    kill -0 "$pid" 2>/dev/null || die "$name died during the run"
    stop_server "$name" "$pid" "$WORK/stops"
    [ "${count:-0}" -gt 0 ] || die "$name: no connections or requests counted in phase $phase"
    printf '%s %s %s %s %s %s %s %s %s %s\n' "$name" "$phase" "$rep" "$count" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')" "$((c1 - c0))" \
        "$resumed" "$p50" "$p99" "$errors" >>"$WORK/runs.txt"
    log "$phase rep $rep $name: $(tail -1 "$WORK/runs.txt")"
}

budget_start
: >"$WORK/runs.txt"
for rep in $(seq "$REPS"); do
    for phase in "${PHASES[@]}"; do
        for name in "${SERVERS[@]}"; do
            run_one "$name" "$phase" "$rep"
        done
    done
done

med() { # name phase column
    awk -v s="$1" -v p="$2" -v c="$3" '$1 == s && $2 == p {print $c}' "$WORK/runs.txt" | median
}
per_s() { # name phase -> median over reps of count / wall seconds
    awk -v s="$1" -v p="$2" '$1 == s && $2 == p && $5 > 0 {printf "%.0f\n", $4 / $5}' "$WORK/runs.txt" | median
}
cpu_per() { # name phase -> median over reps of server CPU ns per connection or request
    awk -v s="$1" -v p="$2" '$1 == s && $2 == p && $4 > 0 {printf "%.0f\n", $6 / $4}' "$WORK/runs.txt" | median
}
resumed_pct() { # name -> median share of resumed connections in the reuse phase, %
    awk -v s="$1" '$1 == s && $2 == "reuse" && $4 > 0 {printf "%.1f\n", 100 * $7 / $4}' "$WORK/runs.txt" | median
}

{
    echo "Generated by \`$CMDLINE\` on $(date -u +%Y-%m-%d) ($MODE mode, commit \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`)."
    echo
    echo "- machine: \`nproc\` $(nproc), kernel \`$(uname -r)\`; load average $LOAD_BEFORE before, $(cut -d' ' -f1-3 /proc/loadavg) after"
    echo "- binaries: \`$BIN\`; server on core $SERVER_CORE, clients on core $CLIENT_CORE; $REPS repetition(s) of ${DUR} s, servers interleaved, medians"
    echo "- clients: \`$(openssl version)\` \`s_time\` × $PARALLEL (handshakes), \`$( (wrk -v 2>&1 || true) | head -1)\` with $CONNS connections (keep-alive)"
    echo
    echo "| phase | server | per second | server CPU per connection or request (µs) | vs hyper_tls | resumed | p50 µs | p99 µs | errors |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    for phase in "${PHASES[@]}"; do
        base=$(cpu_per hyper_tls "$phase")
        for name in "${SERVERS[@]}"; do
            c=$(cpu_per "$name" "$phase")
            res=-
            [ "$phase" = reuse ] && res="$(resumed_pct "$name")%"
            echo "| $phase | $name | $(per_s "$name" "$phase") | $(awk -v c="$c" 'BEGIN {printf "%.1f", c / 1000}') | $(ratio "$c" "$base") | $res | $(med "$name" "$phase" 8) | $(med "$name" "$phase" 9) | $(med "$name" "$phase" 10) |"
        done
    done
    echo
    echo "Every run (name phase rep count wall_s server_cpu_ns resumed p50_us p99_us errors):"
    echo
    echo '```'
    cat "$WORK/runs.txt"
    echo '```'
} >"$WORK/report.md"
cat "$WORK/report.md"
update_doc bench-tls "$WORK/report.md" "$OUT"
