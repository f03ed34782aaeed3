#!/usr/bin/env bash
# A profile-guided (PGO) build of an HTTP server binary: built once instrumented, trained on
# this machine under the request shapes the benchmarks use, then built again with the
# recorded profile (`-Cprofile-use`), so that LLVM lays the hot paths out together and
# inlines by what runs. Without a profile LLVM guesses: at `4f625f7`, `hello`'s busy
# connection loop, one state machine of 33 KiB, ran a request through 52 separate runs of hot
# code spread over 122 lines of it (docs/bench-http.md, "2026-12-03, seventh session").
#
#   scripts/pgo-build.sh                                   # hello -> target/pgo/hello
#   scripts/pgo-build.sh --package ringcore-benches --bin tokio_ct --env BENCH_HTTPARSE=1
#   scripts/pgo-build.sh --package P --bin B --path /health --server-args "serve"
#                               # any server that takes --addr and --cores and prints
#                               # "listening on" (scripts/lib/bench-common.sh)
#
# Options: --package P (hello), --bin B (the package's name), --env VAR=VALUE (the server's
# environment while training, repeatable), --path P (the GET the training sends, /plaintext),
# --server-args "ARGS" (before --addr and --cores; word-split), --secs S (each load phase,
# 3), --port P (18561), --server-core C (0), --client-core C (1), --out DIR (target/pgo).
# The binary lands in DIR/B, its profile in DIR/B.profdata; the two builds use their own
# target directories (DIR/gen, DIR/use), so target/release is left as it was.
#
# Training: the server on one core (`--cores 1`), once per driver (RINGCORE_DRIVER=io_uring,
# then epoll, so that neither driver's code is laid out as cold), each time under four
# `ringcore-load` runs of S seconds: one connection, one request at a time, closed loop (a
# loop turn per request, as at low load); 4 connections pipelining 16 deep, closed loop;
# 20,000/s on 64 connections and 5,000/s on 16, open loop. A profile only shows what the training ran:
# a service should be trained on its own requests (--path, or a load of its own: the
# recipe is the four steps below). The profile belongs to this source: build again after
# every change (a stale profile is used only where functions still match, and warns).
#
# Needs llvm-profdata of the toolchain's own LLVM (`rustup component add
# llvm-tools-preview`, installed here when missing) and two CPUs. Only 127.0.0.1;
# every load run is bounded by `timeout`; only the server PIDs started here are signalled.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/bench-common.sh
. scripts/lib/bench-common.sh
PACKAGE=hello
BIN=
ENVS=()
URL_PATH=/plaintext
SERVER_ARGS=
SECS=3
PORT=18561
SERVER_CORE=0
CLIENT_CORE=1
OUT=target/pgo
while [ $# -gt 0 ]; do
    case "$1" in
        --package) PACKAGE="$2"; shift ;;
        --bin) BIN="$2"; shift ;;
        --env) ENVS+=("$2"); shift ;;
        --path) URL_PATH="$2"; shift ;;
        --server-args) SERVER_ARGS="$2"; shift ;;
        --secs) SECS="$2"; shift ;;
        --port) PORT="$2"; shift ;;
        --server-core) SERVER_CORE="$2"; shift ;;
        --client-core) CLIENT_CORE="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
BIN=${BIN:-$PACKAGE}
bench_init pgo-build
need_cpus 2

# 1. llvm-profdata of the LLVM rustc was built with (a profile's format follows LLVM's).
host=$(rustc -vV | sed -n 's/^host: //p')
PROFDATA="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$PROFDATA" ]; then
    log "installing llvm-tools-preview (llvm-profdata)"
    rustup component add llvm-tools-preview >&2 || die "no llvm-profdata: rustup component add llvm-tools-preview failed"
fi
[ -x "$PROFDATA" ] || die "no llvm-profdata at $PROFDATA"
LOAD=target/release/ringcore-load
[ -x "$LOAD" ] || cargo build --release -q -p ringcore-benches --bin ringcore-load

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# 2. The instrumented build (its build scripts and proc macros write profiles of their own
#    into BUILD_PROF, which nothing reads).
log "instrumented build of $PACKAGE/$BIN"
CARGO_TARGET_DIR="$OUT/gen" RUSTFLAGS="-Cprofile-generate=$WORK/build-prof" \
    cargo build --release -q -p "$PACKAGE" --bin "$BIN"
GEN="$OUT/gen/release/$BIN"

# 3. Training: each run of the server writes its own profile (LLVM_PROFILE_FILE, %p: its
#    PID) when it exits, so it is stopped with SIGTERM and must exit by itself.
mkdir -p "$WORK/train"
for driver in io_uring epoll; do
    log "training on $driver"
    # shellcheck disable=SC2086 # --server-args is word-split on purpose
    start_server "$BIN" "$WORK/server.log" env ${ENVS[@]+"${ENVS[@]}"} RINGCORE_DRIVER=$driver \
        LLVM_PROFILE_FILE="$WORK/train/$driver-%p.profraw" taskset -c "$SERVER_CORE" \
        "$GEN" $SERVER_ARGS --addr "127.0.0.1:$PORT" --cores 1
    # connections, requests/s (0: the closed loop), requests outstanding per connection
    for shape in "1 0 1" "4 0 16" "64 20000 1" "16 5000 1"; do
        set -- $shape
        taskset -c "$CLIENT_CORE" timeout $((SECS + 30)) "$LOAD" --url "http://127.0.0.1:$PORT$URL_PATH" \
            --conns "$1" --rate "$2" --depth "$3" --duration "$SECS" --warmup 1 --cores 1 --no-progress \
            --json "$WORK/load.json" >/dev/null 2>&1 || die "the training run $shape failed"
        [ "$(json_in status_all 2xx "$WORK/load.json")" -gt 0 ] || die "no 2xx answers while training ($shape)"
        rm -f "$WORK/load.json"
    done
    stop_server "$BIN" "$SRV_PID" "$WORK/stops"
    grep -q "^$BIN 0$" "$WORK/stops" || die "$BIN did not exit cleanly on SIGTERM (its profile is written at exit): $(cat "$WORK/stops")"
    : >"$WORK/stops"
    ls "$WORK/train/$driver-"*.profraw >/dev/null 2>&1 || die "no profile written on $driver"
done

# 4. The merged profile, and the build that uses it.
"$PROFDATA" merge -o "$OUT/$BIN.profdata" "$WORK"/train/*.profraw
log "profile-guided build of $PACKAGE/$BIN"
CARGO_TARGET_DIR="$OUT/use" RUSTFLAGS="-Cprofile-use=$OUT/$BIN.profdata" \
    cargo build --release -q -p "$PACKAGE" --bin "$BIN"
cp "$OUT/use/release/$BIN" "$OUT/$BIN"
echo "$OUT/$BIN (profile: $OUT/$BIN.profdata)"
