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
#                        [--set broadcast|topics] [--interleave]
#   --quick           1 repetition, M x 0.2
#   --limit S         ws-load --duration-limit per run (default 60)
#   --scale F         multiply every scenario's M (messages per client) by F
#   --server-bin PATH benchmark this ws-server binary (e.g. one built from a
#                     clean worktree) instead of building target/release/ws-server
#   --note TEXT       a line for the report (e.g. which commit the server is)
#   --out FILE.md     write the report there instead (raw lines beside it)
#   --set topics      the topic scenarios (bench/topics.sh): 1,000 clients in
#                     10 rooms next to the plain broadcast to 100 clients;
#                     implies --interleave, a ratio table and results/topics.md
#   --interleave      per repetition and runtime, run every scenario back to
#                     back (default: one scenario after the other)
set -euo pipefail

CALLER=$(pwd)
CMDLINE="bench/fanout.sh $*"
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
SET=broadcast
INTERLEAVE=0
OUT_SET=0
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
        --out) REPORT=$(cd "$CALLER" && realpath -m "$2"); OUT_SET=1; shift ;;
        --no-build) BUILD=0 ;;
        --set) SET=$2; shift ;;
        --interleave) INTERLEAVE=1 ;;
        -h|--help) sed -n 2,26p "$0"; exit 0 ;;
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
RATIO=""
case "$SET" in
    broadcast)
        SCENARIOS=(
            "20c-20B|--connections 20 --size 20 --binary|75000"
            "100c-20B|--connections 100 --size 20 --binary|3000"
            "20c-1KiB|--connections 20 --size 1024 --binary|9000"
        )
        TITLE="Chat fan-out benchmark"
        ;;
    topics)
        # Topic fan-out: 1,000 clients in 10 rooms (client i in room r{i % 10},
        # 100 per room), so each message reaches the 100 clients of its room;
        # next to it the plain broadcast to 100 clients (the lobby, one room
        # of 100), and as a control 100 clients in one named room (r0): the
        # same fan-out as the plain broadcast through a named topic, so the
        # difference to the 1,000-client run is the connection count. All
        # 30 M deliveries when complete.
        SCENARIOS=(
            "1000c-10rooms-20B|--connections 1000 --rooms 10 --size 20 --binary|300"
            "100c-20B|--connections 100 --size 20 --binary|3000"
            "100c-1room-20B|--connections 100 --rooms 1 --size 20 --binary|3000"
        )
        RATIO="1000c-10rooms-20B/100c-20B,100c-1room-20B/100c-20B"
        INTERLEAVE=1
        TITLE="Topic fan-out benchmark"
        [ "$OUT_SET" = 1 ] || REPORT="$ROOT/bench/results/topics.md"
        ;;
    *) echo "unknown --set $SET (broadcast, topics)" >&2; exit 2 ;;
esac

# Every client is a socket in ws-load and one in the server (both inherit
# this shell's limit): raise the soft fd limit if the largest scenario needs it.
MAXC=0
for sc in "${SCENARIOS[@]}"; do
    IFS='|' read -r sname sargs _ <<< "$sc"
    [[ "$sname" =~ $SCEN ]] || continue
    c=$(sed -n 's/.*--connections \([0-9]*\).*/\1/p' <<< "$sargs")
    if [ "${c:-0}" -gt "$MAXC" ]; then MAXC=$c; fi
done
NEED=$((MAXC + 256))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$NEED" ]; then
    if ! ulimit -n "$NEED" 2>/dev/null; then
        echo "need $NEED open files for $MAXC clients; ulimit -n is $(ulimit -n) (hard $(ulimit -Hn))" >&2
        exit 1
    fi
fi

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

MODEL=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
MACHINE="$(nproc) CPUs${MODEL:+ ($MODEL)}, Linux $(uname -r), load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
echo "server: $SERVER_BIN"
echo "runtimes: $(for s in "${SERVERS[@]}"; do printf '%s ' "${s%%|*}"; done)"
echo "reps=$REPS limit=${LIMIT}s scale=$SCALE; raw results: $RAW"

# The scenarios selected by --scenarios, M scaled: name|ws-load args|M.
SEL=()
for sc in "${SCENARIOS[@]}"; do
    IFS='|' read -r sname sargs m <<< "$sc"
    [[ "$sname" =~ $SCEN ]] || continue
    m=$(python3 -c "print(max(1, round($m * $SCALE)))")
    SEL+=("$sname|$sargs|$m")
done

# run_one "name|args|M" REP "server|args": one server, one ws-load run, one
# raw line.
run_one() {
    local sname sargs m rep=$2 s=$3 name line hwm
    IFS='|' read -r sname sargs m <<< "$1"
    name=${s%%|*}
    if ! start_server "${s#*|}"; then
        echo "   $name: did not start, skipped" >&2
        stop_server
        return 0
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
        return 0
    fi
    echo "{\"scenario\":\"$sname\",\"server\":\"$name\",\"rep\":$rep,\"server_hwm_kib\":${hwm:-null},\"r\":$line}" >> "$RAW"
    python3 - "$line" "$sname" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
f = lambda x, spec: "?" if x is None else format(x, spec)
closed = ", ".join(f"{c} x{k}" for c, k in r["closed"].items()) or "0"
print(f"   {r['label']:<14} {sys.argv[2]:<18} {f(r['rate'], '>12,.0f')} deliveries/s  {r['deliveries']:>11,}/{r['expected']:,}"
      f"  missing {r['missing']:,}  order {r['order_violations']}  foreign {r.get('foreign', 0)}  closed {closed}"
      f"  server {f(r['server_cpu_ns_per_delivery'], '.0f')} ns/delivery  {r['elapsed_s']:.2f} s  end {r['end']}")
EOF
}

n=${#SERVERS[@]}
k=${#SEL[@]}
if [ "$INTERLEAVE" = 1 ]; then
    # Per repetition and runtime, every scenario back to back (the runtime
    # order and the scenario order both rotate), so ratios between
    # scenarios pair runs minutes apart at most.
    for rep in $(seq 1 "$REPS"); do
        echo "== repetition $rep"
        for i in $(seq 0 $((n - 1))); do
            s=${SERVERS[$(( (i + rep - 1) % n ))]}
            for j in $(seq 0 $((k - 1))); do
                run_one "${SEL[$(( (j + rep - 1) % k ))]}" "$rep" "$s"
            done
        done
    done
else
    for sc in "${SEL[@]}"; do
        IFS='|' read -r sname sargs m <<< "$sc"
        echo "== $sname ($sargs --messages $m)"
        for rep in $(seq 1 "$REPS"); do
            for i in $(seq 0 $((n - 1))); do
                run_one "$sc" "$rep" "${SERVERS[$(( (i + rep - 1) % n ))]}"
            done
        done
    done
fi

python3 "$ROOT/bench/summarize.py" --fanout "$RAW" \
    --title "$TITLE $STAMP (reps=$REPS, scale=$SCALE, quick=$QUICK)" \
    --note "Command: \`$CMDLINE\`"$'\n\n'"Machine: $MACHINE"$'\n\n'"Server binary: $SERVER_BIN${NOTE:+; $NOTE}" \
    ${RATIO:+--ratio "$RATIO"} \
    > "$REPORT"
cat "$REPORT"
echo
echo "written: $REPORT (raw: $RAW)"
