#!/usr/bin/env bash
# Issue 12 goals 3 and 4 on a machine of 16 cores or more: ringcore-http against its peers with
# the load generator on 8 cores of its own, so that the generator is no longer the limit (on
# the 2-core machine it is, see docs/benchmarks.md), at 1, 2, 4 and 8 server cores.
#
#   scripts/bench-peers-16core.sh --bin bench-bin      # prebuilt static binaries (how it runs
#                                                      # on a borrowed machine); about 6 min
#
# Options: --bin DIR (the binaries; without it: cargo build --release), --out-dir DIR
# (bench-results/peers-16core), --doc FILE (docs/bench-peers-16core.md), --dur S (2), --warm S
# (0.5), --reps N (1), --ks "1 2 4 8" (server core counts), --client-core LIST (8-15;
# the last CPU with --allow-small), --gen-cores N (8; 1 with --allow-small), --multi-servers "LIST" (the servers at k > 1: bare rc_uring tokio_ct
# hyper_ct axum), --extra-servers "LIST" (servers outside PEERS_ALL to add at every k, e.g.
# rc_uring_ss), --budget S (420: a server core count whose runs would start after this
# many seconds is skipped and listed as skipped, so the script ends by itself), --allow-small
# (run on fewer than 16 CPUs: a smoke test of the script, not a measurement).
#
# Per server core count k (the server on cores 0..k-1 with `--cores k`, the generator on
# --client-core), one scripts/bench-peers.sh run:
#   k = 1: every peer that starts on this machine, closed loop at 64 and 256 connections, then
#          the open loop over 64 connections at 20/40/60/80% of the best non-ringcore peer's
#          closed-loop maximum (goal 3);
#   k > 1: bare, rc_uring, tokio_ct, hyper_ct, axum (--multi-servers), closed loop at 256
#          connections, then the open loop over 256 connections at 20/60/80% of the best peer's maximum at that k
#          (20/40% from 8 server cores on: 8 generator cores are saturated near 1M/s).
# The doc is rewritten after each k, so a run stopped early still leaves what it measured.
# Then the scaling table (goal 4): each server's closed-loop answers/s at 256 connections per k,
# as a share of k times its own 1-core figure, with the generator's busy share: a row whose
# generator was over 70% busy measures the generator, not the server.
# A server whose binary does not start here (no io_uring, say) is left out, and the doc says
# why. Only 127.0.0.1; every run is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C
# shellcheck source=scripts/lib/bench-common.sh
. scripts/lib/bench-common.sh

PREBUILT=""
OUT_DIR=bench-results/peers-16core
DOC=docs/bench-peers-16core.md
DUR=2
WARM=0.5
REPS=1
KS="1 2 4 8"
CLIENT_CORE=""
GEN_CORES=""
BUDGET=420
ALLOW_SMALL=0
MULTI_SERVERS="bare rc_uring tokio_ct hyper_ct axum"
EXTRA_SERVERS=""
CMDLINE="scripts/bench-peers-16core.sh $*"
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) PREBUILT="$2"; shift ;;
        --out-dir) OUT_DIR="$2"; shift ;;
        --doc) DOC="$2"; shift ;;
        --dur) DUR="$2"; shift ;;
        --warm) WARM="$2"; shift ;;
        --reps) REPS="$2"; shift ;;
        --ks) KS="$2"; shift ;;
        --client-core) CLIENT_CORE="$2"; shift ;;
        --gen-cores) GEN_CORES="$2"; shift ;;
        --budget) BUDGET="$2"; shift ;;
        --multi-servers) MULTI_SERVERS="$2"; shift ;;
        --extra-servers) EXTRA_SERVERS="$2"; shift ;;
        --allow-small) ALLOW_SMALL=1 ;;
        -h | --help) sed -n '2,31p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

bench_init bench-peers-16core
if [ "$ALLOW_SMALL" = 1 ]; then
    # A smoke test of the script: the generator on the last CPU unless told.
    [ -n "$CLIENT_CORE" ] || CLIENT_CORE=$(($(nproc) - 1))
    [ -n "$GEN_CORES" ] || GEN_CORES=1
else
    need_cpus 16
fi
[ -n "$CLIENT_CORE" ] || CLIENT_CORE=8-15
[ -n "$GEN_CORES" ] || GEN_CORES=8
for k in $KS; do
    [[ $k =~ ^[1-9][0-9]*$ ]] || die "--ks: server core counts, got $k"
done
if [ -n "$PREBUILT" ]; then
    BIN="$PREBUILT"
else
    log "building release binaries"
    cargo build --release -q -p hello -p ringcore-benches
    BIN="${CARGO_TARGET_DIR:-target}/release"
fi
raise_limits 8192
mkdir -p "$OUT_DIR"
PORT=18600

# Which servers start here: each once on core 0 (peer_exec, as bench-peers.sh starts it), given
# 5 s to print "listening on" (and a ringcore server the driver it must run on).
AVAIL=()
SKIPPED=()
for name in $PEERS_ALL $EXTRA_SERVERS; do
    [ -n "${PEER_BIN[$name]:-}" ] || die "unknown server $name (scripts/lib/bench-common.sh)"
    logf="$WORK/probe-$name.log"
    PORT=$((PORT + 1))
    ok=0
    if try_start_server "$logf" peer_exec "$name" 0 "127.0.0.1:$PORT" 1; then
        peer_started_on_driver "$name" "$logf" && ok=1
        stop_server "$name" "$SRV_PID" "$WORK/probe-stops"
    fi
    if [ "$ok" = 1 ]; then
        AVAIL+=("$name")
    else
        SKIPPED+=("$name: $(head -c 300 "$logf" | tr '\n' ' ')")
        log "$name does not start here: $(head -2 "$logf")"
    fi
done
[[ " ${AVAIL[*]} " == *" bare "* ]] || die "the bare io_uring loop does not start here: ${SKIPPED[*]}"
log "servers that start: ${AVAIL[*]}"

have() { [[ " ${AVAIL[*]} " == *" $1 "* ]]; }
# The scaling table from each k's runs.txt (columns: name phase rep offered achieved answers
# cpu_ns p50 p99 p99.9 errors client_busy).
scaling() { # name
    local name=$1 k one rps busy cpu ans eff
    one=0
    # This run's 1-core figure only (an older run's k1 may lie in the same folder).
    if [[ " ${DONE_KS[*]} " == *" 1 "* ]]; then
        one=$(awk -v s="$name" '$1 == s && $2 == "c256" {print $5}' "$OUT_DIR/k1/runs.txt" | median)
        [[ $one =~ ^[0-9.]+$ ]] || one=0
    fi
    for k in "${DONE_KS[@]}"; do
        rps=$(awk -v s="$name" '$1 == s && $2 == "c256" {print $5}' "$OUT_DIR/k$k/runs.txt" | median)
        if [ -z "$rps" ] || [ "$rps" = nan ]; then continue; fi
        busy=$(awk -v s="$name" '$1 == s && $2 == "c256" {print $12}' "$OUT_DIR/k$k/runs.txt" | median)
        cpu=$(awk -v s="$name" '$1 == s && $2 == "c256" {print $7}' "$OUT_DIR/k$k/runs.txt" | median)
        ans=$(awk -v s="$name" '$1 == s && $2 == "c256" {print $6}' "$OUT_DIR/k$k/runs.txt" | median)
        eff=$(awk -v r="$rps" -v o="$one" -v k="$k" 'BEGIN {if (o + 0 > 0) printf "%.2f", r / (o * k); else print "-"}')
        echo "| $name | $k | $(printf '%.0f' "$rps") | $eff | $(awk -v c="$cpu" -v a="$ans" 'BEGIN {if (a > 0) printf "%.0f", c / a; else print "-"}') | $(busy_cell "$busy") |"
    done
}

write_doc() {
    {
        echo "# ringcore-http against its peers on 16 cores (issue 12, goals 3 and 4)"
        echo
        echo "Generated by \`$CMDLINE\` on $(date -u +%Y-%m-%dT%H:%MZ) in $(($(date +%s) - T0)) s."
        echo
        echo "- machine: \`nproc\` $(nproc), kernel \`$(uname -r)\`, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
        if [ -f "$BIN/BUILD_INFO" ]; then echo "- binaries: $(cat "$BIN/BUILD_INFO")"; fi
        echo "- server on cores 0..k-1 (\`--cores k\`), generator (ringcore-load \`--cores $GEN_CORES\`) on cores $CLIENT_CORE; $REPS rep(s) of $DUR s after $WARM s of warm-up; every run a fresh server"
        echo "- servers that did not start here: $([ ${#SKIPPED[@]} -eq 0 ] && echo none || printf '%s; ' "${SKIPPED[@]}")"
        [ ${#LEFT_KS[@]} -eq 0 ] || echo "- server core counts skipped (budget of $BUDGET s spent): ${LEFT_KS[*]}"
        echo "- the servers: docs/bench-peers.md; the method: scripts/bench-peers.sh --help"
        echo
        echo "### Scaling (goal 4): closed loop, 256 connections"
        echo
        echo "\"of linear\": answers/s over k times the same server's 1-core figure. \"†\": the generator's cores were over ${BUSY_WARN}% busy, so that row measures the generator, not the server."
        echo
        echo "| server | server cores | answers/s | of linear | server CPU ns/answer | generator busy |"
        echo "|---|---:|---:|---:|---:|---:|"
        # Each name once, though it may be in both lists.
        # shellcheck disable=SC2086 # the lists are words
        for name in $(printf '%s\n' $MULTI_SERVERS $EXTRA_SERVERS | awk '!seen[$0]++'); do
            if have "$name"; then scaling "$name"; fi
        done
        for k in "${DONE_KS[@]}"; do
            echo
            echo "### $k server core(s)"
            echo
            sed 's/^### /#### /' "$OUT_DIR/k$k/report.md"
        done
    } >"$OUT_DIR/report.md"
    update_doc bench-peers-16core "$OUT_DIR/report.md" "$DOC"
}

DONE_KS=()
LEFT_KS=()
for k in $KS; do
    elapsed=$(($(date +%s) - T0))
    if [ "$elapsed" -ge "$BUDGET" ]; then
        LEFT_KS+=("$k")
        log "k=$k skipped: $elapsed s of the $BUDGET s budget spent"
        continue
    fi
    if [ "$k" = 1 ]; then
        servers="${AVAIL[*]}"
        extra=(--phases "c64 c256" --open-conns 64 --fracs "0.2 0.4 0.6 0.8")
    else
        servers=""
        for s in $MULTI_SERVERS $EXTRA_SERVERS; do
            if have "$s"; then servers="$servers $s"; fi
        done
        fracs="0.2 0.6 0.8"
        [ "$k" -lt 8 ] || fracs="0.2 0.4"
        extra=(--phases c256 --open-conns 256 --fracs "$fracs")
    fi
    log "k=$k: $servers"
    scripts/bench-peers.sh --bin "$BIN" --servers "$servers" --server-core "0-$((k - 1))" \
        --server-cores "$k" --client-core "$CLIENT_CORE" --gen-cores "$GEN_CORES" --reps "$REPS" \
        --dur "$DUR" --warm "$WARM" --out-dir "$OUT_DIR/k$k" --no-doc --port "$((18700 + k))" \
        "${extra[@]}" >"$OUT_DIR/k$k.log" 2>&1 || { tail -5 "$OUT_DIR/k$k.log" >&2; die "bench-peers.sh failed at k=$k"; }
    DONE_KS+=("$k")
    write_doc
    log "k=$k done: $DOC rewritten"
done
# Once more: the skipped k (if any) go into the doc, which a run that skipped every k writes
# here for the first time.
write_doc
[ ${#DONE_KS[@]} -gt 0 ] || die "no server core count ran within the budget of $BUDGET s (see $DOC)"
log "wrote $DOC; every run in $OUT_DIR/k*/runs.txt"
