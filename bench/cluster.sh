#!/usr/bin/env bash
# Cluster fan-out benchmark (issue 14): the chat's broadcast on 1 node
# in-process (no backplane), 1 node through Redis (--backplane: every
# message also goes to the stream; the node skips its own entries) and 3
# nodes through Redis (clients spread round-robin; two thirds of each
# message's deliveries cross Redis). `ws-load --fanout --latency` drives it:
# N clients each send M numbered, time-stamped binary messages while
# reading, every client checks it got all N x M once and in per-sender
# order, and end-to-end latency (send to delivery, one process's clock) is
# sampled.
#
# Two runs per configuration and repetition:
#   flood  every client sends as fast as the nodes take it (deliveries/s;
#          its latency is queueing under saturation);
#   paced  every client sends --rate messages/s (latency below saturation).
#
# Everything on 127.0.0.1: a redis-server of its own (no persistence) on a
# free port, ws-server --runtime tokio --threads 1 per node, nothing pinned
# (3 nodes, Redis and ws-load share the machine's cores). Bounded: every
# ws-load run has --duration-limit and a `timeout` backstop; Redis and the
# nodes are stopped on exit. Raw JSON lines go to
# bench/results/cluster-raw-STAMP.jsonl, the table to bench/results/cluster.md.
#
# Usage: bench/cluster.sh [--reps N] [--clients N] [--messages M]
#                         [--rate R] [--paced-messages M] [--no-build]
set -euo pipefail

CMDLINE="bench/cluster.sh $*"
cd "$(dirname "$0")/.."
ROOT=$(pwd)
T="$ROOT/target/release"
REPORT="$ROOT/bench/results/cluster.md"

REPS=3
CLIENTS=30
MESSAGES=2000
RATE=100
PACED=300
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --reps) REPS=$2; shift ;;
        --clients) CLIENTS=$2; shift ;;
        --messages) MESSAGES=$2; shift ;;
        --rate) RATE=$2; shift ;;
        --paced-messages) PACED=$2; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n 2,26p "$0"; exit 0 ;;
        *) echo "unknown flag $1" >&2; exit 2 ;;
    esac
    shift
done

command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install -y redis-server)" >&2; exit 1; }
if [ "$BUILD" = 1 ]; then
    cargo build --release -q -p ws-bench --bin ws-load
    cargo build --release -q -p examples --bin ws-server
fi

STAMP=$(date +%Y%m%d-%H%M%S)
RAW="$ROOT/bench/results/cluster-raw-$STAMP.jsonl"
mkdir -p "$ROOT/bench/results"
: > "$RAW"
WORK=$(mktemp -d)
PIDS=()

stop_all() {
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    PIDS=()
}
cleanup() {
    stop_all
    if [ -n "${RPID:-}" ]; then
        kill "$RPID" 2>/dev/null || true
        wait "$RPID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$WORK" --daemonize no >"$WORK/redis.log" 2>&1 &
RPID=$!
for _ in $(seq 1 100); do
    if redis-cli -p "$RPORT" ping 2>/dev/null | grep -q PONG; then break; fi
    sleep 0.05
done

# start_nodes K STREAM|-: starts K ws-server nodes (through Redis on
# STREAM, or without a backplane for -); sets ADDRS (host:port each) and
# PIDS.
start_nodes() {
    local k=$1 stream=$2 i port extra
    ADDRS=()
    for i in $(seq 1 "$k"); do
        port=$(free_port)
        extra=()
        if [ "$stream" != - ]; then
            extra=(--backplane "redis://127.0.0.1:$RPORT/" --node-id "n$i" --stream "$stream")
        fi
        "$T/ws-server" --addr "127.0.0.1:$port" --runtime tokio --threads 1 "${extra[@]}" \
            >/dev/null 2>"$WORK/node$i.log" &
        PIDS+=($!)
        ADDRS+=("127.0.0.1:$port")
    done
    for i in $(seq 1 "$k"); do
        for _ in $(seq 1 100); do
            if ss -ltnH "sport = :${ADDRS[$((i - 1))]##*:}" | grep -q .; then break; fi
            sleep 0.05
        done
        if [ "$stream" != - ]; then
            for _ in $(seq 1 100); do
                if grep -q "joined stream" "$WORK/node$i.log"; then break; fi
                sleep 0.05
            done
        fi
    done
}

# run CONFIG K STREAM KIND REP: one configuration, one ws-load run.
run() {
    local config=$1 k=$2 stream=$3 kind=$4 rep=$5 nodes line args
    start_nodes "$k" "$stream"
    nodes=$(IFS=,; echo "${ADDRS[*]:1}")
    if [ "$kind" = flood ]; then
        args=(--messages "$MESSAGES")
    else
        args=(--messages "$PACED" --rate "$RATE")
    fi
    line=$(timeout 120 "$T/ws-load" --fanout --latency --binary --size 32 \
        --url "ws://${ADDRS[0]}/ws" ${nodes:+--nodes "$nodes"} \
        --connections "$CLIENTS" "${args[@]}" --duration-limit 60 --stall 5 \
        --label "$config" --json 2>/dev/null | grep '^{' || true)
    stop_all
    if [ -z "$line" ]; then
        echo "   $config $kind: no result" >&2
        return 0
    fi
    echo "{\"config\":\"$config\",\"kind\":\"$kind\",\"rep\":$rep,\"r\":$line}" >> "$RAW"
    python3 - "$line" "$config" "$kind" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
f = lambda x, spec: "?" if x is None else format(x, spec)
print(f"   {sys.argv[2]:<12} {sys.argv[3]:<6} {f(r['rate'], '>12,.0f')} deliveries/s  {r['deliveries']:>10,}/{r['expected']:,}"
      f"  order {r['order_violations']}  closed {r['closed_total']}  p50 {f(r['lat_p50_us'], '.0f')} us"
      f"  p99 {f(r['lat_p99_us'], '.0f')} us  {r['elapsed_s']:.2f} s  end {r['end']}")
EOF
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "clients=$CLIENTS flood M=$MESSAGES paced M=$PACED at $RATE/s, reps=$REPS; load $LOAD_START; raw: $RAW"
for rep in $(seq 1 "$REPS"); do
    echo "== repetition $rep"
    for kind in flood paced; do
        run "1-inproc" 1 - "$kind" "$rep"
        run "1-redis" 1 "bench:$STAMP:$rep:$kind:1" "$kind" "$rep"
        run "3-redis" 3 "bench:$STAMP:$rep:$kind:3" "$kind" "$rep"
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

MODEL=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
python3 - "$RAW" "$CMDLINE" "$(nproc) CPUs${MODEL:+ ($MODEL)}, Linux $(uname -r)" "$LOAD_START" "$LOAD_END" \
    "$CLIENTS" "$MESSAGES" "$PACED" "$RATE" > "$REPORT" <<'EOF'
import json, statistics, sys
raw, cmd, machine, l0, l1, n, m, pm, rate = sys.argv[1:]
rows = [json.loads(l) for l in open(raw)]
out = []
out.append(f"# Cluster fan-out benchmark ({raw.rsplit('/', 1)[-1]})\n")
out.append(f"Command: `{cmd}`\n")
out.append(f"Machine: {machine}; load average (1/5/15 min) {l0} at the start, {l1} at the end.\n")
out.append(f"{n} chat clients, `ws-load --fanout --latency --binary --size 32`; every message goes to all {n} "
           f"(sender included): flood = {m} messages per client as fast as the nodes take them, "
           f"paced = {pm} per client at {rate}/s. Nodes: `ws-server --runtime tokio --threads 1`, "
           "unpinned, sharing the cores with Redis (no persistence) and ws-load. Latency: from the "
           "sender queueing the message to a client reading it (one clock), a sample of up to 50,000 "
           "deliveries per client. Medians over repetitions; complete = deliveries / expected over all "
           "repetitions (every run also checks per-sender order: `order` counts violations).\n")
out.append("| configuration | run | deliveries/s | p50 latency ms | p99 latency ms | complete | order | reps |")
out.append("|---|---|---|---|---|---|---|---|")
for kind in ["flood", "paced"]:
    for config in ["1-inproc", "1-redis", "3-redis"]:
        rs = [x["r"] for x in rows if x["config"] == config and x["kind"] == kind]
        if not rs:
            continue
        med = lambda k: statistics.median([r[k] for r in rs if r.get(k) is not None] or [float("nan")])
        got = sum(r["deliveries"] for r in rs)
        exp = sum(r["expected"] for r in rs)
        order = sum(r["order_violations"] for r in rs)
        name = {"1-inproc": "1 node, in-process", "1-redis": "1 node through Redis", "3-redis": "3 nodes through Redis"}[config]
        out.append(f"| {name} | {kind} | {med('rate'):,.0f} | {med('lat_p50_us')/1e3:.2f} | {med('lat_p99_us')/1e3:.2f} "
                   f"| {got:,}/{exp:,} | {order} | {len(rs)} |")
print("\n".join(out))
EOF
cat "$REPORT"
echo
echo "written: $REPORT (raw: $RAW)"
