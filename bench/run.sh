#!/usr/bin/env bash
# Echo-server comparison: ours (examples' ws-server, every runtime) against
# tokio-tungstenite, fastwebsockets, tokio-websockets and a raw-TCP framer.
#
# Every server is pinned to CPU 0 and the load generator to CPU 1; within
# each repetition all servers run one after another (the order rotates per
# repetition), so a noisy neighbour hits everybody alike. Results are
# medians over repetitions and, for ratios, medians of per-repetition
# ratios (paired), written to bench/results/latest.md.
#
# Usage: bench/run.sh [--quick] [--reps N] [--duration S] [--warmup S]
#                     [--idle-conns N] [--only REGEX] [--scenarios REGEX]
#                     [--no-build] [--no-idle]
#        bench/run.sh --fanout [fanout.sh flags]   (the chat fan-out benchmark,
#                     bench/fanout.sh: results in bench/results/fanout.md)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
T="$ROOT/target/release"
OUT="$ROOT/bench/results"
mkdir -p "$OUT"

REPS=3
DURATION=3
WARMUP=0.5
IDLE_CONNS=10000
IDLE_HOLD=2
BURST_SIZE=262144
BURST_CONNS=1000
ONLY='.'
SCEN='.'
BUILD=1
IDLE=1
QUICK=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; REPS=1; DURATION=1; WARMUP=0.3; IDLE_CONNS=2000; IDLE_HOLD=1; BURST_CONNS=200 ;;
        --reps) REPS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --warmup) WARMUP=$2; shift ;;
        --idle-conns) IDLE_CONNS=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --scenarios) SCEN=$2; shift ;;
        --no-build) BUILD=0 ;;
        --no-idle) IDLE=0 ;;
        --fanout) shift; cd "$OLDPWD"; exec "$ROOT/bench/fanout.sh" "$@" ;;
        -h|--help) sed -n 2,15p "$0"; exit 0 ;;
        *) echo "unknown flag $1" >&2; exit 2 ;;
    esac
    shift
done

# 10,000 idle connections need ~10,000 descriptors on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" -lt $((IDLE_CONNS + 100)) ]; then
    echo "ulimit -n is $(ulimit -n): lowering --idle-conns" >&2
    IDLE_CONNS=$(( $(ulimit -n) - 200 ))
fi

if [ "$BUILD" = 1 ]; then
    cargo build --release -q -p ws-bench --bins
    # Ours is optional: skip gracefully if the examples crate does not
    # (yet) provide the ws-server binary.
    cargo build --release -q -p examples --bin ws-server 2>/dev/null ||
        echo "note: ws-server did not build; benchmarking peers only" >&2
fi

# name|command (PORT is substituted)
SERVERS=()
if [ -x "$T/ws-server" ]; then
    for r in tokio async-std smol blocking; do
        SERVERS+=("ws-$r|$T/ws-server --addr 127.0.0.1:PORT --mode echo --runtime $r --threads 1")
    done
else
    echo "note: $T/ws-server not found; benchmarking peers only" >&2
fi
SERVERS+=(
    "tokio-tungstenite|$T/echo-tungstenite --addr 127.0.0.1:PORT"
    "fastwebsockets|$T/echo-fastwebsockets --addr 127.0.0.1:PORT"
    "tokio-websockets|$T/echo-tokio-websockets --addr 127.0.0.1:PORT"
    "raw|$T/echo-raw --addr 127.0.0.1:PORT"
)
FILTERED=()
for s in "${SERVERS[@]}"; do
    if [[ "${s%%|*}" =~ $ONLY ]]; then FILTERED+=("$s"); fi
done
SERVERS=("${FILTERED[@]}")

# name|ws-load arguments
SCENARIOS=(
    "100c-20B-if1|--connections 100 --size 20 --in-flight 1 --binary"
    "100c-20B-if16|--connections 100 --size 20 --in-flight 16 --binary"
    "100c-1KiB-if16-bin|--connections 100 --size 1024 --in-flight 16 --binary"
    "100c-1KiB-if16-text|--connections 100 --size 1024 --in-flight 16 --text"
    "10c-16KiB-if4|--connections 10 --size 16384 --in-flight 4 --binary"
    "1c-1MiB-if2|--connections 1 --size 1048576 --in-flight 2 --binary"
    "handshakes-10c|--connections 10 --handshakes"
)

STAMP=$(date +%Y%m%d-%H%M%S)
RAW="$OUT/raw-$STAMP.jsonl"
: > "$RAW"
PORT=19000
SPID=""

cleanup() {
    if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then
        kill "$SPID" 2>/dev/null || true
        wait "$SPID" 2>/dev/null || true
    fi
}
trap cleanup EXIT INT TERM

# start_server "cmd with PORT": sets SPID and PORT; waits until it listens.
start_server() {
    PORT=$((PORT + 1))
    [ "$PORT" -gt 29000 ] && PORT=19001
    local cmd=${1//PORT/$PORT}
    # shellcheck disable=SC2086
    taskset -c 0 $cmd >/dev/null 2>&1 &
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

echo "servers: $(for s in "${SERVERS[@]}"; do printf '%s ' "${s%%|*}"; done)"
echo "reps=$REPS duration=${DURATION}s warmup=${WARMUP}s; raw results: $RAW"

for sc in "${SCENARIOS[@]}"; do
    sname=${sc%%|*}
    sargs=${sc#*|}
    [[ "$sname" =~ $SCEN ]] || continue
    echo "== $sname"
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
            # shellcheck disable=SC2086
            line=$(timeout $(( ${DURATION%.*} + 30 )) taskset -c 1 "$T/ws-load" \
                --url "ws://127.0.0.1:$PORT/" $sargs --duration "$DURATION" \
                --warmup "$WARMUP" --server-pid "$SPID" --label "$name" --json 2>/dev/null |
                grep '^{' || true)
            stop_server
            if [ -z "$line" ]; then
                echo "   $name: no result" >&2
                continue
            fi
            echo "{\"scenario\":\"$sname\",\"server\":\"$name\",\"rep\":$rep,\"r\":$line}" >> "$RAW"
            python3 - "$line" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
u = "hs/s" if r["mode"] == "handshakes" else "msg/s"
cpu = r["server_cpu_us_per_op"]
cpu = f"{cpu:.2f} us/op" if cpu is not None else "?"
print(f"   {r['label']:<18} {r['rate']:>12,.0f} {u}  {r['mb_per_s']:>9.1f} MB/s  p50 {r['p50_us']:>8.1f} us  p99 {r['p99_us']:>8.1f} us  server {cpu}  errors {r['errors']}")
EOF
        done
    done
done

if [ "$IDLE" = 1 ]; then
    echo "== idle memory: $IDLE_CONNS connections, then a ${BURST_SIZE} B burst on $BURST_CONNS of them"
    for s in "${SERVERS[@]}"; do
        name=${s%%|*}
        if ! start_server "${s#*|}"; then
            echo "   $name: did not start, skipped" >&2
            stop_server
            continue
        fi
        sleep 0.2
        rss0=$(awk '/^VmRSS/ {print $2}' "/proc/$SPID/status")
        log=$(mktemp)
        taskset -c 1 timeout 120 "$T/ws-load" --url "ws://127.0.0.1:$PORT/" \
            --idle "$IDLE_CONNS" --hold "$IDLE_HOLD" --burst-size "$BURST_SIZE" \
            --burst-conns "$BURST_CONNS" > "$log" 2>/dev/null &
        LPID=$!
        rss1=""; rss2=""; ready=""
        for _ in $(seq 1 1200); do
            if [ -z "$rss1" ] && grep -q '^READY' "$log"; then
                ready=$(grep '^READY' "$log" | awk '{print $2}')
                sleep 0.3
                rss1=$(awk '/^VmRSS/ {print $2}' "/proc/$SPID/status")
            fi
            if grep -q '^BURST-DONE' "$log"; then
                # ws-core frees buffers grown by a burst after 1 s of idleness
                # (IDLE_SHRINK_DELAY); measure every server after the same settle.
                sleep "${BURST_SETTLE:-2}"
                rss2=$(awk '/^VmRSS/ {print $2}' "/proc/$SPID/status")
                break
            fi
            if ! kill -0 "$LPID" 2>/dev/null; then break; fi
            sleep 0.1
        done
        wait "$LPID" 2>/dev/null || true
        rm -f "$log"
        stop_server
        echo "   $name: idle RSS ${rss0} KiB -> ${rss1:-?} KiB with ${ready:-0} connections -> ${rss2:-?} KiB after burst"
        echo "{\"scenario\":\"idle\",\"server\":\"$name\",\"rep\":1,\"r\":{\"connections\":${ready:-0},\"rss0_kib\":${rss0:-null},\"rss_idle_kib\":${rss1:-null},\"rss_after_burst_kib\":${rss2:-null},\"burst_size\":$BURST_SIZE,\"burst_conns\":$BURST_CONNS}}" >> "$RAW"
    done
fi

python3 "$ROOT/bench/summarize.py" "$RAW" \
    --title "Echo benchmark $STAMP (reps=$REPS, ${DURATION}s windows, quick=$QUICK)" \
    > "$OUT/latest.md"
cat "$OUT/latest.md"
echo
echo "written: $OUT/latest.md (raw: $RAW)"
