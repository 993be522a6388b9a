#!/usr/bin/env bash
# Chat fan-out benchmark: the examples' ws-server in chat mode, on every
# runtime, against `ws-load --fanout`: N clients each send M numbered
# messages as fast as the server takes them while reading; every message is
# broadcast to all N, so a complete run is N x N x M deliveries.
#
# The server is pinned to CPU 0 and ws-load to CPU 1 (as run.sh). Within each
# repetition every runtime runs back to back (the order rotates). Results go
# to bench/results/fanout.md, raw JSON lines beside it (fanout-raw-*.jsonl).
#
# Usage: bench/fanout.sh [--quick] [--reps N] [--limit S] [--only REGEX]
#                        [--scenarios REGEX] [--scale F] [--server-bin PATH]
#                        [--note TEXT] [--out FILE.md] [--no-build]
#   --quick           1 repetition, M x 0.2
#   --limit S         ws-load --duration-limit per run (default 60)
#   --scale F         multiply every scenario's M (messages per client) by F
#   --server-bin PATH benchmark this ws-server binary (e.g. one built from a
#                     clean worktree) instead of building target/release/ws-server
#   --note TEXT       a line for the report (e.g. which commit the server is)
#   --out FILE.md     write the report there instead (raw lines beside it)
set -euo pipefail

CALLER=$(pwd)
cd "$(dirname "$0")/.."
ROOT=$(pwd)
T="$ROOT/target/release"
REPORT="$ROOT/bench/results/fanout.md"

REPS=3
LIMIT=60
SCALE=1
ONLY='.'
SCEN='.'
BUILD=1
QUICK=0
SERVER_BIN=""
NOTE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; REPS=1; SCALE=0.2 ;;
        --reps) REPS=$2; shift ;;
        --limit) LIMIT=$2; shift ;;
        --scale) SCALE=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --scenarios) SCEN=$2; shift ;;
        --server-bin) SERVER_BIN=$(cd "$CALLER" && realpath -m "$2"); shift ;;
        --note) NOTE=$2; shift ;;
        --out) REPORT=$(cd "$CALLER" && realpath -m "$2"); shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n 2,20p "$0"; exit 0 ;;
        *) echo "unknown flag $1" >&2; exit 2 ;;
    esac
    shift
done

if [ "$BUILD" = 1 ]; then
    cargo build --release -q -p ws-bench --bin ws-load
    if [ -z "$SERVER_BIN" ] && ! cargo build --release -q -p examples --bin ws-server; then
        echo "ws-server did not build; build it elsewhere (e.g. a clean git worktree) and pass --server-bin" >&2
        exit 1
    fi
fi
SERVER_BIN=${SERVER_BIN:-$T/ws-server}
if [ ! -x "$SERVER_BIN" ]; then
    echo "no ws-server at $SERVER_BIN" >&2
    exit 1
fi

# name|server arguments (PORT is substituted)
SERVERS=()
for r in tokio async-std smol blocking; do
    if [[ "ws-$r" =~ $ONLY ]]; then
        SERVERS+=("ws-$r|--addr 127.0.0.1:PORT --mode chat --runtime $r --threads 1")
    fi
done

# name|ws-load arguments|M (--messages, scaled by --scale). M is sized for
# ~2-3 s per run on tokio once the server applies backpressure (about 10 M
# deliveries/s at 20 B, 1 M at 1 KiB on the 2-core machine this was written on).
SCENARIOS=(
    "20c-20B|--connections 20 --size 20 --binary|75000"
    "100c-20B|--connections 100 --size 20 --binary|3000"
    "20c-1KiB|--connections 20 --size 1024 --binary|9000"
)

mkdir -p "$(dirname "$REPORT")"
STAMP=$(date +%Y%m%d-%H%M%S)
RAW="${REPORT%.md}-raw-$STAMP.jsonl"
: > "$RAW"
PORT=29100
SPID=""

cleanup() {
    if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then
        kill "$SPID" 2>/dev/null || true
        wait "$SPID" 2>/dev/null || true
    fi
}
trap cleanup EXIT INT TERM

# start_server "args with PORT": sets SPID and PORT; waits until it listens.
start_server() {
    PORT=$((PORT + 1))
    [ "$PORT" -gt 29900 ] && PORT=29101
    local args=${1//PORT/$PORT}
    # shellcheck disable=SC2086
    taskset -c 0 "$SERVER_BIN" $args >/dev/null 2>&1 &
    SPID=$!
    for _ in $(seq 1 100); do
        if ss -ltnH "sport = :$PORT" 2>/dev/null | grep -q .; then return 0; fi
        if ! kill -0 "$SPID" 2>/dev/null; then return 1; fi
        sleep 0.05
    done
    return 1
}

stop_server() {
    cleanup
    SPID=""
}

echo "server: $SERVER_BIN"
echo "runtimes: $(for s in "${SERVERS[@]}"; do printf '%s ' "${s%%|*}"; done)"
echo "reps=$REPS limit=${LIMIT}s scale=$SCALE; raw results: $RAW"

for sc in "${SCENARIOS[@]}"; do
    IFS='|' read -r sname sargs m <<< "$sc"
    [[ "$sname" =~ $SCEN ]] || continue
    m=$(python3 -c "print(max(1, round($m * $SCALE)))")
    echo "== $sname ($sargs --messages $m)"
    n=${#SERVERS[@]}
    for rep in $(seq 1 "$REPS"); do
        for i in $(seq 0 $((n - 1))); do
            s=${SERVERS[$(( (i + rep - 1) % n ))]}
            name=${s%%|*}
            if ! start_server "${s#*|}"; then
                echo "   $name: did not start, skipped" >&2
                stop_server
                continue
            fi
            # ws-load bounds itself (--duration-limit, --stall, connect
            # timeouts); `timeout` is the backstop.
            # shellcheck disable=SC2086
            line=$(timeout $(( ${LIMIT%.*} + 60 )) taskset -c 1 "$T/ws-load" --fanout \
                --url "ws://127.0.0.1:$PORT/ws" $sargs --messages "$m" \
                --duration-limit "$LIMIT" --server-pid "$SPID" --label "$name" --json 2>/dev/null |
                grep '^{' || true)
            hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$SPID/status" 2>/dev/null || true)
            stop_server
            if [ -z "$line" ]; then
                echo "   $name: no result" >&2
                continue
            fi
            echo "{\"scenario\":\"$sname\",\"server\":\"$name\",\"rep\":$rep,\"server_hwm_kib\":${hwm:-null},\"r\":$line}" >> "$RAW"
            python3 - "$line" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
f = lambda x, spec: "?" if x is None else format(x, spec)
closed = ", ".join(f"{c} x{k}" for c, k in r["closed"].items()) or "0"
print(f"   {r['label']:<14} {f(r['rate'], '>12,.0f')} deliveries/s  {r['deliveries']:>11,}/{r['expected']:,}"
      f"  missing {r['missing']:,}  order {r['order_violations']}  closed {closed}"
      f"  server {f(r['server_cpu_ns_per_delivery'], '.0f')} ns/delivery  {r['elapsed_s']:.2f} s  end {r['end']}")
EOF
        done
    done
done

python3 "$ROOT/bench/summarize.py" --fanout "$RAW" \
    --title "Chat fan-out benchmark $STAMP (reps=$REPS, scale=$SCALE, quick=$QUICK)" \
    --note "server binary: $SERVER_BIN${NOTE:+; $NOTE}" \
    > "$REPORT"
cat "$REPORT"
echo
echo "written: $REPORT (raw: $RAW)"
