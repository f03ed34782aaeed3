#!/usr/bin/env bash
# Syscalls and CPU of flash-sale's durable buy path, per journal write path, counted over a
# fixed number of sequential buys (one record per group commit, so per buy = per batch).
# Not a timing benchmark: it counts calls and CPU ticks, which a busy machine does not change
# much; `scripts/bench-flash-sale.sh` measures latency and CPU under load.
#
#   scripts/journal-syscalls.sh [BUYS] [BINARY]     (defaults: 3000, target/debug/flash-sale)
#
# For each driver (io_uring, epoll) and each write path
#   append    --journal-prealloc 0 --journal-sync fdatasync  (the path before preallocation)
#   fdatasync preallocated space, write + fdatasync per batch
#   dsync     preallocated space, one RWF_DSYNC write per batch (the default)
# it starts `flash-sale serve --cores 1` on a fresh data dir under $TMPDIR, makes BUYS buys
# over one keep-alive connection, and prints the server's CPU per buy (utime and stime from
# /proc/PID/stat, which include the io_uring workers, also those that exited), the disk's
# write requests, sectors written and cache flushes per buy (/proc/diskstats: the file
# system's journal commits show here, not in the process's CPU), and, from a second run of
# 300 buys under `strace -c -f`, the file syscalls per buy.
set -euo pipefail
BUYS=${1:-3000}
BIN=${2:-target/debug/flash-sale}
TICK=$(getconf CLK_TCK)
command -v strace >/dev/null || { echo "needs strace" >&2; exit 1; }

buyer() { # PORT N PREFIX
  python3 - "$@" <<'PY'
import http.client, json, sys
port, n, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
for i in range(n):
    c.request("POST", "/items/gift/buy", json.dumps({"user": f"{prefix}-{i}"}),
              {"Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    if r.status != 200:
        sys.exit(f"buy {i}: {r.status}")
PY
}

start() { # DIR ARGS... ; sets PID PORT
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$BIN" serve --addr "127.0.0.1:$PORT" --cores 1 --data-dir "$1" --user-rate 1000 "${@:2}" \
    >"$1.out" 2>&1 &
  PID=$!
  for _ in $(seq 100); do grep -q "listening on" "$1.out" 2>/dev/null && break; sleep 0.1; done
  curl -sf -X PUT "http://127.0.0.1:$PORT/items/gift" -d "{\"stock\": $((BUYS * 4))}" >/dev/null
  buyer "$PORT" 20 warm
}

cpu() { awk '{print $14, $15}' "/proc/$PID/stat"; }
# Device-wide write requests, sectors written and cache flushes of the data dir's disk
# (/proc/diskstats; other I/O on the disk during the run adds to them).
DEV=$(basename "$(findmnt -n -o SOURCE -T "${TMPDIR:-/tmp}")")
disk() { awk -v d="$DEV" '$3 == d {print $8, $10, $(NF-1)}' /proc/diskstats; }

printf '%-8s %-10s %10s %10s %7s %8s %7s   %s\n' driver path "utime/buy" "stime/buy" \
  "dev-wr" "sectors" "flushes" "file syscalls per buy (strace -c -f, 300 buys)"
for driver in io_uring epoll; do
  for path in append fdatasync dsync; do
    case $path in
      append) args=(--journal-prealloc 0 --journal-sync fdatasync) ;;
      fdatasync) args=(--journal-sync fdatasync) ;;
      dsync) args=(--journal-sync dsync) ;;
    esac
    dir=$(mktemp -d); export RINGCORE_DRIVER=$driver
    start "$dir/data" "${args[@]}"
    read -r u0 s0 < <(cpu); read -r w0 x0 f0 < <(disk)
    buyer "$PORT" "$BUYS" cpu
    read -r u1 s1 < <(cpu); read -r w1 x1 f1 < <(disk)
    strace -c -f -p "$PID" -o "$dir/strace" -e trace=pwrite64,pwritev2,fdatasync,fsync,io_uring_enter,ftruncate 2>/dev/null &
    SPID=$!; sleep 1
    buyer "$PORT" 300 strace
    kill -INT "$SPID"; wait "$SPID" 2>/dev/null || true
    kill -TERM "$PID"; wait "$PID" 2>/dev/null || true
    calls=$(awk '$NF ~ /^(pwrite64|pwritev2|fdatasync|fsync|io_uring_enter|ftruncate)$/ {printf "%s %.2f  ", $NF, $4/300}' "$dir/strace")
    printf '%-8s %-10s %8.1fus %8.1fus %7.2f %8.1f %7.2f   %s\n' "$driver" "$path" \
      "$(echo "($u1-$u0)*1000000/$TICK/$BUYS" | bc -l)" "$(echo "($s1-$s0)*1000000/$TICK/$BUYS" | bc -l)" \
      "$(echo "($w1-$w0)/$BUYS" | bc -l)" "$(echo "($x1-$x0)/$BUYS" | bc -l)" "$(echo "($f1-$f0)/$BUYS" | bc -l)" "$calls"
    rm -rf "$dir"
  done
done
