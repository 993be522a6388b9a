#!/usr/bin/env bash
# Syscalls per echoed message, ours (ws-server --runtime tokio --threads 1)
# next to the raw TCP echo (echo-raw), under the same bounded ws-load run:
# reads, bytes per read, writes and epoll waits per message. Counted with
# `perf stat` on the syscall tracepoints of the server process (cheap: the
# server runs at nearly full speed, unlike under strace) for a window inside
# the load run; messages in that window = ws-load's rate x the window.
# Needs perf with tracepoint access (perf_event_paranoid <= 2 as root).
#
# Usage: bench/syscalls.sh [--only REGEX] [--scenarios REGEX] [--no-build]
# Writes bench/results/syscalls.md.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
T="$ROOT/target/release"
ONLY='.'
SCEN='.'
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --only) ONLY=$2; shift ;;
        --scenarios) SCEN=$2; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n 2,11p "$0"; exit 0 ;;
        *) echo "unknown flag $1" >&2; exit 2 ;;
    esac
    shift
done
if [ "$BUILD" = 1 ]; then
    cargo build --release -q -p ws-bench --bins
    cargo build --release -q -p examples --bin ws-server
fi

SERVERS=(
    "ws-tokio|$T/ws-server --addr 127.0.0.1:PORT --mode echo --runtime tokio --threads 1"
    "raw|$T/echo-raw --addr 127.0.0.1:PORT"
)
# name|payload size|ws-load arguments
SCENARIOS=(
    "10c-16KiB-if1|16384|--connections 10 --size 16384 --in-flight 1 --binary"
    "10c-16KiB-if4|16384|--connections 10 --size 16384 --in-flight 4 --binary"
    "100c-1KiB-if16-bin|1024|--connections 100 --size 1024 --in-flight 16 --binary"
    "100c-20B-if16|20|--connections 100 --size 20 --in-flight 16 --binary"
    "100c-20B-if1|20|--connections 100 --size 20 --in-flight 1 --binary"
)
EVENTS=syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_futex

PORT=19500
SPID=""
cleanup() {
    if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then
        kill "$SPID" 2>/dev/null || true
        wait "$SPID" 2>/dev/null || true
    fi
    SPID=""
}
trap cleanup EXIT INT TERM

OUTMD="$ROOT/bench/results/syscalls.md"
mkdir -p "$ROOT/bench/results"
{
    echo "| scenario | server | msg/s | reads/msg | bytes/read | writes/msg | epoll waits/msg | futex/msg |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
} > "$OUTMD"

for sc in "${SCENARIOS[@]}"; do
    sname=${sc%%|*}; rest=${sc#*|}; size=${rest%%|*}; sargs=${rest#*|}
    [[ "$sname" =~ $SCEN ]] || continue
    for s in "${SERVERS[@]}"; do
        name=${s%%|*}
        [[ "$name" =~ $ONLY ]] || continue
        PORT=$((PORT + 1))
        cmd=${s#*|}; cmd=${cmd//PORT/$PORT}
        # shellcheck disable=SC2086
        taskset -c 0 $cmd >/dev/null 2>&1 &
        SPID=$!
        for _ in $(seq 1 100); do
            ss -ltnH "sport = :$PORT" 2>/dev/null | grep -q . && break
            sleep 0.05
        done
        load=$(mktemp); stat=$(mktemp)
        # shellcheck disable=SC2086
        timeout 30 taskset -c 1 "$T/ws-load" --url "ws://127.0.0.1:$PORT/" $sargs \
            --duration 3 --warmup 0.5 --json > "$load" 2>/dev/null &
        LPID=$!
        sleep 1
        # 1.5 s inside ws-load's 0.5..3.5 s window.
        timeout 10 perf stat -x, -e "$EVENTS" -p "$SPID" -- sleep 1.5 2> "$stat" || true
        wait "$LPID" || true
        cleanup
        python3 - "$sname" "$name" "$size" "$load" "$stat" >> "$OUTMD" <<'EOF'
import json, sys
sname, name, size, load, stat = sys.argv[1:6]
size = int(size)
line = [l for l in open(load) if l.startswith("{")]
if not line:
    print(f"| {sname} | {name} | no result | | | | | |")
    sys.exit()
rate = json.loads(line[-1])["rate"]
c = {}
for l in open(stat):
    f = l.strip().split(",")
    if len(f) > 2 and f[2].startswith("syscalls:sys_enter_"):
        try:
            c[f[2].removeprefix("syscalls:sys_enter_")] = float(f[0])
        except ValueError:
            pass
msgs = rate * 1.5
hdr = 6 if size < 126 else (8 if size < 65536 else 14)
reads = c.get("read", 0) + c.get("recvfrom", 0)
writes = c.get("write", 0) + c.get("writev", 0) + c.get("sendto", 0)
waits = c.get("epoll_wait", 0) + c.get("epoll_pwait", 0)
bpr = (size + hdr) * msgs / reads if reads else 0
print(f"| {sname} | {name} | {rate:,.0f} | {reads / msgs:.3f} | {bpr:,.0f} | {writes / msgs:.3f} | {waits / msgs:.3f} | {c.get('futex', 0) / msgs:.3f} |")
EOF
        tail -n 1 "$OUTMD"
        rm -f "$load" "$stat"
    done
done
echo "written: $OUTMD"
