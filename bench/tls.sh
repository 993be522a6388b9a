#!/usr/bin/env bash
# wss:// benchmark (issue 12): ours (ws-server --mode echo --runtime tokio
# --threads 1 --tls-cert/--tls-key) against tokio-tungstenite with
# tokio-rustls (echo-tungstenite --tls-cert/--tls-key), both on the same
# certificate and the same rustls configuration (ring provider, TLS 1.3,
# the same suite negotiated), each server pinned to CPU 0 and ws-load to
# CPU 1. Scenarios: 10 connections x 1 KiB binary with 16 in flight, over
# wss and (for scale) over plain ws; TLS handshakes (4 concurrent loops of
# TCP connect, TLS handshake, upgrade, close) with server CPU per
# handshake. Interleaved: within a repetition every server runs each
# scenario back to back (order alternating per repetition); the report has
# medians and the median of per-repetition ratios.
#
# --server-quota PCT caps each server at PCT% of one CPU (a cgroup v1 CPU
# quota, 10 ms period; needs root and /sys/fs/cgroup/cpu). Without it the
# load generator, which does the same TLS work per message as the server
# plus masking, runs out of CPU near the faster server's rate and the ratio
# is capped by the client; with it both servers are the bottleneck and the
# rates compare the servers alone.
#
# Usage: bench/tls.sh [--reps N] [--duration S] [--server-quota PCT] [--no-build] [--out FILE]
# Report: bench/results/tls.md (raw JSON lines beside it, tls-raw-*.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
T="$ROOT/target/release"
REPS=5
DURATION=3
BUILD=1
OUT="$ROOT/bench/results/tls.md"
QUOTA=""
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --no-build) BUILD=0 ;;
    --out) OUT=$2; shift ;;
    --server-quota) QUOTA=$2; shift ;;
    -h|--help) sed -n 2,23p "$0"; exit 0 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
  shift
done
if [ "$BUILD" = 1 ]; then
  cargo build --release -q -p ws-bench --bins
  cargo build --release -q -p examples --bin ws-server
fi
CG=""
if [ -n "$QUOTA" ]; then
  CG=/sys/fs/cgroup/cpu/ws-bench-tls
  mkdir -p "$CG" || { echo "--server-quota needs a writable cgroup v1 cpu controller" >&2; exit 2; }
  echo 10000 > "$CG/cpu.cfs_period_us"
  echo $((QUOTA * 100)) > "$CG/cpu.cfs_quota_us"
fi
# Starts a server (pinned to CPU 0, inside the quota group when there is one).
start_server() {
  if [ -n "$CG" ]; then
    # shellcheck disable=SC2086
    sh -c 'echo $$ > "$1/cgroup.procs"; shift; exec taskset -c 0 "$@"' sh "$CG" $1 >/dev/null 2>&1 &
  else
    # shellcheck disable=SC2086
    taskset -c 0 $1 >/dev/null 2>&1 &
  fi
}
CERTS=$(mktemp -d)
trap 'rm -rf "$CERTS"; kill $(jobs -p) 2>/dev/null || true' EXIT
"$ROOT/tests/peers/make-test-ca.sh" "$CERTS"
RAW="$ROOT/bench/results/tls-raw-$(date -u +%Y%m%d-%H%M%S).jsonl"
: > "$RAW"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }

# name|command (PORT, CERT, KEY substituted); the plain variants without TLS.
SERVERS=(
  "ours|$T/ws-server --addr 127.0.0.1:PORT --mode echo --runtime tokio --threads 1"
  "tokio-tungstenite|$T/echo-tungstenite --addr 127.0.0.1:PORT"
)
# label|scheme|ws-load arguments
SCENARIOS=(
  "wss 10x1KiB x16|wss|--connections 10 --size 1024 --in-flight 16"
  "ws 10x1KiB x16|ws|--connections 10 --size 1024 --in-flight 16"
  "wss handshakes x4|wss|--handshakes --connections 4"
)

for rep in $(seq "$REPS"); do
  order=("${SERVERS[@]}")
  if [ $((rep % 2)) = 0 ]; then order=("${SERVERS[1]}" "${SERVERS[0]}"); fi
  for sc in "${SCENARIOS[@]}"; do
    IFS='|' read -r slabel scheme sargs <<<"$sc"
    for sv in "${order[@]}"; do
      IFS='|' read -r name cmd <<<"$sv"
      port=$(free_port)
      cmd=${cmd//PORT/$port}
      if [ "$scheme" = wss ]; then cmd="$cmd --tls-cert $CERTS/server.pem --tls-key $CERTS/server.key"; fi
      start_server "$cmd"
      pid=$!
      wait_port "$port"
      # shellcheck disable=SC2086
      line=$(timeout 60 taskset -c 1 "$T/ws-load" --url "$scheme://127.0.0.1:$port/" --ca "$CERTS/ca.pem" \
        $sargs --duration "$DURATION" --warmup 0.5 --server-pid "$pid" --json --label "$name" | tail -n1 || true)
      kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
      if [ -n "$line" ]; then
        printf '%s\n' "${line%\}},\"rep\":$rep,\"scenario\":\"$slabel\"}" >> "$RAW"
        printf 'rep %s  %-18s %-18s %s\n' "$rep" "$slabel" "$name" "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.0f/s  server %s us/op  errors %s" % (d["rate"], d["server_cpu_us_per_op"], d["errors"]))' "$line")"
      fi
    done
  done
done

python3 - "$RAW" "$OUT" "$REPS" "$DURATION" "$QUOTA" <<'PY'
import json, statistics, sys, platform, os, subprocess
raw, out, reps, dur, quota = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
qflag = f" --server-quota {quota}" if quota else ""
qnote = (f" Each server is capped at {quota}% of its CPU (cgroup CPU quota, 10 ms period), so the"
         " servers, not the load generator, are the bottleneck." if quota else
         " Without a server quota the load generator (same TLS work per message as the server, plus"
         " masking) is near its own CPU limit against the faster server: the rate ratio is a floor.")
runs = [json.loads(l) for l in open(raw) if l.strip()]
scen = list(dict.fromkeys(r["scenario"] for r in runs))
def get(s, n, k):
    return {r["rep"]: r[k] for r in runs if r["scenario"] == s and r["label"] == n and r[k] is not None}
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")
rows = []
for s in scen:
    a, b = get(s, "ours", "rate"), get(s, "tokio-tungstenite", "rate")
    ca, cb = get(s, "ours", "server_cpu_us_per_op"), get(s, "tokio-tungstenite", "server_cpu_us_per_op")
    ratio = med([a[k] / b[k] for k in a if k in b and b[k]])
    cratio = med([ca[k] / cb[k] for k in ca if k in cb and cb[k]])
    rows.append(f"| {s} | {med(a.values()):,.0f} | {med(b.values()):,.0f} | **{ratio:.2f}x** | {med(ca.values()):.2f} | {med(cb.values()):.2f} | {cratio:.2f} |")
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
with open(out, "w") as f:
    f.write(f"""# wss:// benchmark: ours against tokio-tungstenite + tokio-rustls

`bench/tls.sh --reps {reps} --duration {dur}{qflag}` at {rev}, {platform.machine()}, {os.cpu_count()} CPUs (shared, noisy: compare
ratios, which are medians of per-repetition ratios of runs made back to back). Each server on one
CPU (ours: `ws-server --mode echo --runtime tokio --threads 1`; theirs: `echo-tungstenite`, tokio
current-thread, `accept_async` over `tokio_rustls::TlsAcceptor`), both with the same rustls
`ServerConfig` (ring provider, TLS 1.3, same certificate), the load generator (`ws-load`, rustls
client) on the other CPU. Rates are messages (or handshakes) per second; server CPU is user+system
time per message (or per handshake) in microseconds.{qnote}

| scenario | ours | tokio-tungstenite | ours/theirs rate | ours us/op | theirs us/op | CPU ratio (ours/theirs) |
|---|---|---|---|---|---|---|
""")
    f.write("\n".join(rows) + "\n")
    f.write(f"\nRaw runs: `{os.path.basename(raw)}`.\n")
print(open(out).read())
PY
