#!/usr/bin/env bash
# Multi-core scaling of the fixed-response HTTP servers: ringcore vs tokio current-thread per
# core (and the bare io_uring loop at 1 core), at 1, 2, 4, ... server cores.
#
# The server runs on cores [0, k) and the load client (rc_load, closed loop, pipelined) on the
# upper half of the machine, so the two never share a core. For each k the servers are
# interleaved (ringcore, tokio, ringcore, tokio, ...) and medians are reported, with the
# server's CPU time per request from /proc/PID/task/*/schedstat.
#
# Usage: scripts/bench-scaling.sh [--bin DIR] [--duration S] [--reps N] [--out FILE]
#   --bin DIR   directory holding ringcore_fixed, tokio_ct, naive_uring, rc_load
#               (default: build them with cargo --release into target/release)
# Needs at least 4 cores; meaningful from 8 up. On a 2-core machine use bench-runtime.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=""
DUR=4
REPS=2
OUT=docs/bench-scaling.md
CONNS=32
DEPTH=4
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --duration) DUR=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$BIN" ]; then
  cargo build --release -p ringcore-benches --bins
  BIN=target/release
fi
NCPU=$(nproc)
HALF=$((NCPU / 2))
if [ "$HALF" -lt 2 ]; then
  echo "bench-scaling needs at least 4 cores (this machine has $NCPU)" >&2
  exit 1
fi
CLIENT_CORES="$HALF-$((NCPU - 1))"
PORT=18080
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

cpu_ns() { # total CPU ns of all threads of PID
  local sum=0 f
  for f in /proc/"$1"/task/*/schedstat; do
    read -r ns _ < "$f" 2>/dev/null || continue
    sum=$((sum + ns))
  done
  echo "$sum"
}

run_one() { # server k -> prints "rps cpu_ns_per_req errors"
  local server=$1 k=$2 pid out before after reqs errs
  PORT=$((PORT + 1))
  taskset -c "0-$((k - 1))" "$BIN/$server" --addr "127.0.0.1:$PORT" --cores "$k" > /tmp/scaling-server.log 2>&1 &
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 100); do
    grep -q "listening on" /tmp/scaling-server.log && break
    sleep 0.05
  done
  before=$(cpu_ns "$pid")
  out=$(taskset -c "$CLIENT_CORES" "$BIN/rc_load" --addr "127.0.0.1:$PORT" --cores "$HALF" \
        --conns "$CONNS" --depth "$DEPTH" --duration "$DUR" --mode http)
  after=$(cpu_ns "$pid")
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  reqs=$(echo "$out" | sed -E 's/.*"requests":([0-9]+).*/\1/')
  errs=$(echo "$out" | sed -E 's/.*"errors":([0-9]+).*/\1/')
  local rps=$((reqs / DUR))
  local per=0
  [ "$reqs" -gt 0 ] && per=$(((after - before) / reqs))
  echo "$rps $per $errs"
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) {print 0} else if (NR%2) {print a[(NR+1)/2]} else {print int((a[NR/2]+a[NR/2+1])/2)}}'; }

KS=()
k=1
while [ "$k" -le "$HALF" ]; do KS+=("$k"); k=$((k * 2)); done

{
  echo "# Multi-core scaling"
  echo
  echo "Produced by \`scripts/bench-scaling.sh --duration $DUR --reps $REPS\` on $(date -u +%Y-%m-%d)."
  echo "Machine: $NCPU cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')),"
  echo "kernel $(uname -r). Server on cores 0..k-1, load client (\`rc_load\`, $CONNS connections per client"
  echo "core, pipelining depth $DEPTH, closed loop) on cores $CLIENT_CORES. Medians of $REPS interleaved runs;"
  echo "CPU/req is the server's CPU time (all threads, schedstat) divided by requests answered."
  echo
  echo "| server cores | ringcore req/s | tokio-ct req/s | ringcore / tokio | ringcore CPU ns/req | tokio CPU ns/req | errors |"
  echo "|---:|---:|---:|---:|---:|---:|---:|"
} > "$OUT.tmp"

for k in "${KS[@]}"; do
  R_RPS=(); R_CPU=(); T_RPS=(); T_CPU=(); ERRS=0
  for _ in $(seq 1 "$REPS"); do
    read -r rps cpu e < <(run_one ringcore_fixed "$k"); R_RPS+=("$rps"); R_CPU+=("$cpu"); ERRS=$((ERRS + e))
    read -r rps cpu e < <(run_one tokio_ct "$k"); T_RPS+=("$rps"); T_CPU+=("$cpu"); ERRS=$((ERRS + e))
  done
  r=$(printf '%s\n' "${R_RPS[@]}" | median); t=$(printf '%s\n' "${T_RPS[@]}" | median)
  rc=$(printf '%s\n' "${R_CPU[@]}" | median); tc=$(printf '%s\n' "${T_CPU[@]}" | median)
  ratio=$(awk -v a="$r" -v b="$t" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
  echo "| $k | $r | $t | $ratio | $rc | $tc | $ERRS |" | tee -a "$OUT.tmp"
done

N_RPS=(); N_CPU=()
for _ in $(seq 1 "$REPS"); do
  read -r rps cpu _ < <(run_one naive_uring 1); N_RPS+=("$rps"); N_CPU+=("$cpu")
done
{
  echo
  echo "Bare io_uring fixed-response loop (\`naive_uring\`, one core, no runtime):"
  echo "$(printf '%s\n' "${N_RPS[@]}" | median) req/s, $(printf '%s\n' "${N_CPU[@]}" | median) CPU ns/req."
} >> "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cat "$OUT"
