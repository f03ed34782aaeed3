#!/usr/bin/env bash
# Memory per idle keep-alive connection of the full HTTP stack: the `hello` example (router,
# middleware-free routes, metrics) on one core, N connections that each made one request and
# then stay open and idle.
#
#   scripts/bench-idle-http.sh                  # 10000 connections
#   scripts/bench-idle-http.sh --conns 2000 --bin target/release
#
# Steps: start `hello --cores 1` pinned to core 0; warm it with 4096 requests on one
# connection (each receive takes the next buffer of the core's provided-buffer ring, 1024 x
# 4 KiB by default, so the warm-up touches the whole ring: a fixed 4 MiB per core that would
# otherwise be counted against the first thousand connections); read VmRSS; python3 opens N
# connections, sends `GET /plaintext` on each, reads each answer, and holds them all; read
# VmRSS at N/2 and at N. KiB per idle connection = (held - warm) / N, and the slope from N/2
# to N (what one more connection costs; memory touched once by the first connections is not
# in it). The kernel's socket buffers are not in VmRSS; this is user-space memory.
# Only 127.0.0.1; only the PIDs started here are signalled.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

CONNS=10000
BIN=""
PORT=18630
while [ $# -gt 0 ]; do
    case "$1" in
        --conns) CONNS=$2; shift 2 ;;
        --bin) BIN=$2; shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
if [ -z "$BIN" ]; then
    cargo build --release -q -p hello >&2
    BIN=target/release
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -gt $((CONNS + 100)) ] || { echo "open-files limit $(ulimit -n) is below $CONNS connections" >&2; exit 1; }

LOG=$(mktemp)
taskset -c 0 "$BIN/hello" --addr "127.0.0.1:$PORT" --cores 1 >"$LOG" 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true; rm -f "$LOG"' EXIT
for _ in $(seq 100); do
    grep -q "listening on" "$LOG" && break
    sleep 0.05
done
grep -q "listening on" "$LOG" || { cat "$LOG" >&2; echo "hello did not start" >&2; exit 1; }
rss() { awk '/^VmRSS:/ {print $2}' /proc/"$PID"/status; }

python3 - "$PORT" "$CONNS" "$PID" <<'PY'
import os, socket, sys, time
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
REQ = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n"

def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

def answer(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("connection closed before the answer")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
    while len(body) < length:
        body += s.recv(4096)

warm = socket.create_connection(("127.0.0.1", port))
for _ in range(4096):
    warm.sendall(REQ)
    answer(warm)
time.sleep(0.5)
before = rss()
conns = []
deadline = time.time() + 120
half = None
for i in range(n):
    if i == n // 2:
        time.sleep(1.0)
        half = rss()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(REQ)
    answer(s)
    conns.append(s)
    if time.time() > deadline:
        raise SystemExit("too slow to open the connections")
time.sleep(1.0)
held = rss()
print(f"connections: {n}")
print(f"VmRSS warm: {before} KiB, holding: {held} KiB")
print(f"KiB per idle connection: {(held - before) / n:.2f}")
print(f"KiB per idle connection, slope from {n // 2} to {n}: {(held - half) / (n - n // 2):.2f}")
PY
