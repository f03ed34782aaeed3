#!/usr/bin/env bash
# Flash-sale buys offered open loop above the service's capacity: what is answered, how fast
# the admitted buys are (latency from their scheduled send time), and whether the sale stays
# exact. The service (examples/flash-sale, embedded journal, one pinned core) is measured with
# its load shedding as shipped ("shed": CoDel on the in-core wait + shedding on saturation
# after --shed-grace, 30 ms) and with saturation shedding held off ("codel only":
# --shed-grace 600000), interleaved A B A B, every run a fresh server and data dir.
#
#   scripts/bench-overload.sh            # 3 reps, 5 s runs, factors 1.25,2,10 of capacity
#   scripts/bench-overload.sh --quick    # 1 rep, 3 s runs (~2 min)
#
# Options: --reps N, --dur S, --conns C (1000: one request at a time per connection, like a
# crowd of users), --factors F1,F2,.. (offered rate = F x capacity), --server-core C (0),
# --client-core C (1), --port P (18620), --bin DIR (prebuilt flash-sale and ringcore-load),
# --doc FILE (also put the report between <!-- bench-overload.sh:begin --> and
# <!-- bench-overload.sh:end --> in FILE), --budget S.
#
# Answer ceiling: a closed-loop run of `GET /nope` (404): the most requests the core can answer
# per second at all, refusals included (a refusal costs at least this much).
# Capacity: a closed-loop run (ringcore-load --rate 0, the same connections) against the
# service with saturation shedding held off: the 2xx answers per second. Offered rates above
# what the generator itself can send on its one core show as "achieved < offered".
# Only 127.0.0.1; every run is bounded by `timeout`; only the PIDs started here are signalled.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C
# shellcheck source=scripts/lib/bench-common.sh
. scripts/lib/bench-common.sh

MODE=full
REPS=3
DUR=5
CONNS=1000
FACTORS=1.25,2,10
SERVER_CORE=0
CLIENT_CORE=1
PORT=18620
PREBUILT=""
DOC=""
BUDGET=900
CMDLINE="scripts/bench-overload.sh $*"

# shellcheck disable=SC2034 # BUDGET is read by check_budget (scripts/lib/bench-common.sh)
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) MODE=quick; REPS=1; DUR=3; BUDGET=240 ;;
        --reps) REPS="$2"; shift ;;
        --dur) DUR="$2"; shift ;;
        --conns) CONNS="$2"; shift ;;
        --factors) FACTORS="$2"; shift ;;
        --server-core) SERVER_CORE="$2"; shift ;;
        --client-core) CLIENT_CORE="$2"; shift ;;
        --port) PORT="$2"; shift ;;
        --bin) PREBUILT="$2"; shift ;;
        --doc) DOC="$2"; shift ;;
        --budget) BUDGET="$2"; shift ;;
        -h | --help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

bench_init bench-overload
need_cpus 2
command -v curl >/dev/null || die "curl is needed"
if [ -n "$PREBUILT" ]; then
    BIN="$PREBUILT"
else
    log "building (release)"
    cargo build --release -q -p flash-sale -p ringcore-benches --bin flash-sale --bin ringcore-load
    BIN=target/release
fi
[ -x "$BIN/flash-sale" ] && [ -x "$BIN/ringcore-load" ] || die "no flash-sale / ringcore-load in $BIN"
# Up to CONNS client sockets plus the server's: raise the soft fd limit as far as allowed.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p bench-results
OUT_JSONL="bench-results/overload-$STAMP.jsonl"
OUT_MD="bench-results/overload-$STAMP.md"
: >"$OUT_JSONL"
RUNS="$WORK/runs.txt"
: >"$RUNS"
STOPS="$WORK/stops.txt"
: >"$STOPS"
URL="http://127.0.0.1:$PORT"

variant_args() { # variant -> serve arguments
    case "$1" in
        shed) echo "" ;;
        codel) echo "--shed-grace 600000" ;;
    esac
}

# One run: variant rate(0 = closed loop) tag. Appends
# "variant tag offered achieved 2xx 4xx 5xx errors unfinished adm_p50 adm_p99 all_p99 sold 2xx_all sold_ok"
# to $RUNS and the generator's JSON (with the variant) to $OUT_JSONL.
run_one() {
    local variant=$1 rate=$2 tag=$3 dir json item extra
    dir="$WORK/data-$variant-$tag"
    rm -rf "$dir"
    # shellcheck disable=SC2046 # the variant's arguments split on purpose
    start_server "flash-sale" "$WORK/server.log" taskset -c "$SERVER_CORE" "$BIN/flash-sale" serve \
        --addr "127.0.0.1:$PORT" --cores 1 --data-dir "$dir" --user-rate 1000 $(variant_args "$variant")
    local pid=$SRV_PID
    curl -sf -X PUT "$URL/items/hot" -d '{"stock":1000000000}' >/dev/null || die "PUT /items/hot failed"
    json="$WORK/run.json"
    # Lost requests are part of what an overload run measures (they are in the JSON): only a
    # run with no answer at all fails (--max-error-rate 100%).
    extra=(--duration "$DUR" --warmup 1)
    timeout $((DUR + 40)) taskset -c "$CLIENT_CORE" "$BIN/ringcore-load" --url "$URL/items/hot/buy" \
        --method POST --body '{"user":"u{n}"}' --content-type application/json --rate "$rate" \
        --conns "$CONNS" --depth 1 --no-progress --timeout-ms 10000 --json "$json" "${extra[@]}" \
        --max-error-rate 100% \
        >"$WORK/load.out" 2>&1 || die "ringcore-load failed: $(tail -3 "$WORK/load.out")"
    item=$(curl -sf "$URL/items/hot") || die "GET /items/hot failed"
    stop_server "flash-sale-$variant" "$pid" "$STOPS"
    python3 - "$json" "$variant" "$tag" "$item" "$RUNS" "$OUT_JSONL" <<'PY'
import json, sys
path, variant, tag, item, runs, jsonl = sys.argv[1:7]
r = json.load(open(path))
it = json.loads(item)
s, a = r["status"], r["status_all"]
# Every 2xx answer is an order; a buy answered after the generator's timeout may be sold
# without a 2xx seen, never the other way round.
sold_ok = int(it["sold"] <= it["stock"] and it["sold"] >= a["2xx"])
line = [variant, tag, r["target_rate"], r["achieved_rate"], s["2xx"], s["4xx"], s["5xx"],
        r["errors"], r["unfinished"], r["latency_admitted_us"]["p50"],
        r["latency_admitted_us"]["p99"], r["latency_us"]["p99"], it["sold"], a["2xx"], sold_ok]
open(runs, "a").write(" ".join(str(x) for x in line) + "\n")
r["variant"] = variant
open(jsonl, "a").write(json.dumps(r) + "\n")
PY
}

# The answer ceiling: closed loop, the same connections, `GET /nope` (answered 404 by the
# router: parse, route, a short answer). No refusal can cost less, so the core can answer at
# most this many requests per second, buys and refusals together: offered rates above it
# queue in the kernel and the generator whatever the service sheds.
run_ceiling() {
    local dir="$WORK/data-ceiling" json="$WORK/ceiling.json"
    rm -rf "$dir"
    start_server "flash-sale" "$WORK/server.log" taskset -c "$SERVER_CORE" "$BIN/flash-sale" serve \
        --addr "127.0.0.1:$PORT" --cores 1 --data-dir "$dir"
    local pid=$SRV_PID
    timeout $((DUR + 40)) taskset -c "$CLIENT_CORE" "$BIN/ringcore-load" --url "$URL/nope" \
        --rate 0 --conns "$CONNS" --depth 1 --no-progress --timeout-ms 10000 --json "$json" \
        --duration "$DUR" --warmup 1 --max-error-rate 100% >"$WORK/load.out" 2>&1 ||
        die "ringcore-load failed: $(tail -3 "$WORK/load.out")"
    stop_server "flash-sale-ceiling" "$pid" "$STOPS"
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%.0f" % (r["status"]["4xx"] / float(sys.argv[2])))' "$json" "$DUR"
}

budget_start
log "answer ceiling: closed loop, $CONNS connections, GET /nope (404)"
check_budget $((DUR + 15))
CEILING=$(run_ceiling)
log "answer ceiling: $CEILING answers/s"
log "capacity: closed loop, $CONNS connections, saturation shedding held off"
check_budget $((DUR + 15))
run_one codel 0 capacity
CAPACITY=$(awk '$2 == "capacity" {printf "%.0f", $5 / '"$DUR"'}' "$RUNS")
[ "${CAPACITY:-0}" -gt 0 ] || die "capacity run answered no buy"
log "capacity: $CAPACITY buys/s"

IFS=, read -r -a FACTOR_LIST <<<"$FACTORS"
for rep in $(seq "$REPS"); do
    for f in "${FACTOR_LIST[@]}"; do
        rate=$(awk -v c="$CAPACITY" -v f="$f" 'BEGIN {printf "%.0f", c * f}')
        for variant in shed codel; do
            check_budget $((DUR + 15))
            log "rep $rep: ${f}x = $rate buys/s, $variant"
            run_one "$variant" "$rate" "x$f"
        done
    done
done

fmt_ms() { awk '{if ($1 == "nan") print "nan"; else printf "%.1f", $1 / 1000}'; }
med() { # variant tag column
    awk -v v="$1" -v t="$2" -v c="$3" '$1 == v && $2 == t {print $c}' "$RUNS" | median
}
REPORT="$WORK/report.md"
{
    echo "## Overload: flash-sale buys above capacity (\`scripts/bench-overload.sh\`)"
    echo
    echo "Generated by \`$CMDLINE\` on $(date -u +%Y-%m-%d) ($MODE mode, commit \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`)."
    echo
    echo "- machine: \`nproc\` $(nproc), kernel \`$(uname -r)\`; load average $(cut -d' ' -f1-3 /proc/loadavg) after"
    echo "- service on core $SERVER_CORE (\`--cores 1\`, embedded journal), \`ringcore-load\` on core $CLIENT_CORE: open loop, $CONNS connections, one request at a time per connection, $DUR s measured after 1 s warm-up, a new user per buy; $REPS repetition(s), variants interleaved, medians"
    echo "- capacity: $CAPACITY buys/s (closed loop, saturation shedding held off)"
    echo "- answer ceiling: $CEILING answers/s of \`GET /nope\` (404, closed loop, the same connections): no refusal costs less, so at most $(awk -v a="$CEILING" -v c="$CAPACITY" 'BEGIN {printf "%.1f", a / c}')x capacity can be answered at all on this core; above it, requests queue in the kernel and the generator whatever is shed"
    echo "- admitted: every answer but 429 and 5xx; latency from the scheduled send time (queueing in the generator, the kernel and the service included)"
    echo
    echo "| offered | variant | answered/s | 2xx | 5xx | lost | admitted p50 ms | admitted p99 ms | all p99 ms | sold == orders |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
    for f in "${FACTOR_LIST[@]}"; do
        for variant in shed codel; do
            name=$([ "$variant" = shed ] && echo "shed (as shipped)" || echo "codel only")
            lost=$(awk -v v="$variant" -v t="x$f" '$1 == v && $2 == t {print $8 + $9}' "$RUNS" | median)
            ok=$(awk -v v="$variant" -v t="x$f" '$1 == v && $2 == t {n++; s += $15} END {print (s == n) ? "yes" : "NO"}' "$RUNS")
            echo "| ${f}x ($(med "$variant" "x$f" 3 | awk '{printf "%.0f", $1}')/s) | $name | $(med "$variant" "x$f" 4 | awk '{printf "%.0f", $1}') | $(med "$variant" "x$f" 5) | $(med "$variant" "x$f" 7) | $lost | $(med "$variant" "x$f" 10 | fmt_ms) | $(med "$variant" "x$f" 11 | fmt_ms) | $(med "$variant" "x$f" 12 | fmt_ms) | $ok |"
        done
    done
    echo
    echo "lost: requests due in the window that got no answer (errors + unfinished when the run's drain ended). sold == orders: \`sold\` (GET /items/hot) is at most the stock and at least the 2xx answers of the whole run. Every run: \`$OUT_JSONL\`."
} >"$REPORT"
cp "$REPORT" "$OUT_MD"
cat "$REPORT"
if grep -q killed "$STOPS"; then
    log "a server had to be killed: $(grep killed "$STOPS" | tr '\n' ' ')"
fi
if [ -n "$DOC" ]; then
    update_doc bench-overload.sh "$REPORT" "$DOC"
fi
log "wrote $OUT_MD and $OUT_JSONL in $(($(date +%s) - T0)) s"
