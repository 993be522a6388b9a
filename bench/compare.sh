# bench/compare.sh - the interleaved A/B runner behind bench/tls.sh and
# bench/deflate.sh (sourced, not run): ours against one peer echo server,
# each server pinned to CPU 0 and ws-load to CPU 1; within a repetition
# every server runs each scenario back to back (order alternating per
# repetition); the report has medians and the median of per-repetition
# ratios (these machines are noisy: ratios, not absolute rates).
#
# The sourcing script sets, before calling `compare_main "$@"`:
#   NAME      report and raw-file stem (bench/results/NAME.md, NAME-raw-*.jsonl)
#   TITLE     the report's heading
#   ABOUT     a paragraph on what the servers run with
#   SERVERS   ("ours|command" "peer|command"), PORT substituted
#   SCENARIOS ("label|scheme|ws-load arguments"), scheme ws or wss
#   and may define `prepare` (run once after the flags are read, e.g. make
#   certificates into $WORK) and `server_args SCHEME` (extra server flags).
#
# Flags: --reps N (5) --duration S (3) --server-quota PCT --no-build --out FILE
# --server-quota PCT caps each server at PCT% of one CPU (a cgroup v1 CPU
# quota, 10 ms period; needs root and /sys/fs/cgroup/cpu). Without it the
# load generator can run out of CPU near the faster server's rate (over TLS
# it does the same crypto per message as the server, plus masking) and the
# ratio is capped by the client; with it both servers are the bottleneck
# and the rates compare the servers alone.

compare_main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  ROOT=$(pwd)
  T="$ROOT/target/release"
  REPS=5 DURATION=3 BUILD=1 QUOTA=""
  OUT="$ROOT/bench/results/$NAME.md"
  while [ $# -gt 0 ]; do
    case "$1" in
      --reps) REPS=$2; shift ;;
      --duration) DURATION=$2; shift ;;
      --no-build) BUILD=0 ;;
      --out) OUT=$2; shift ;;
      --server-quota) QUOTA=$2; shift ;;
      -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
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
    CG=/sys/fs/cgroup/cpu/ws-bench-$NAME
    mkdir -p "$CG" || { echo "--server-quota needs a writable cgroup v1 cpu controller" >&2; exit 2; }
    echo 10000 > "$CG/cpu.cfs_period_us"
    echo $((QUOTA * 100)) > "$CG/cpu.cfs_quota_us"
  fi
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"; kill $(jobs -p) 2>/dev/null || true' EXIT
  if declare -F prepare >/dev/null; then prepare; fi
  RAW="$ROOT/bench/results/$NAME-raw-$(date -u +%Y%m%d-%H%M%S).jsonl"
  : > "$RAW"
  compare_run
  compare_report
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }

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

compare_run() {
  local rep sc sv slabel scheme sargs name cmd port pid line extra
  for rep in $(seq "$REPS"); do
    local order=("${SERVERS[@]}")
    if [ $((rep % 2)) = 0 ]; then order=("${SERVERS[1]}" "${SERVERS[0]}"); fi
    for sc in "${SCENARIOS[@]}"; do
      IFS='|' read -r slabel scheme sargs <<<"$sc"
      for sv in "${order[@]}"; do
        IFS='|' read -r name cmd <<<"$sv"
        port=$(free_port)
        cmd=${cmd//PORT/$port}
        extra=""
        if declare -F server_args >/dev/null; then extra=$(server_args "$scheme"); fi
        start_server "$cmd $extra"
        pid=$!
        wait_port "$port"
        # shellcheck disable=SC2086
        line=$(timeout 60 taskset -c 1 "$T/ws-load" --url "$scheme://127.0.0.1:$port/" $LOAD_ARGS \
          $sargs --duration "$DURATION" --warmup 0.5 --server-pid "$pid" --json --label "$name" | tail -n1 || true)
        kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
        if [ -n "$line" ]; then
          printf '%s\n' "${line%\}},\"rep\":$rep,\"scenario\":\"$slabel\"}" >> "$RAW"
          printf 'rep %s  %-24s %-18s %s\n' "$rep" "$slabel" "$name" "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.0f/s  server %s us/op  errors %s" % (d["rate"], d["server_cpu_us_per_op"], d["errors"]))' "$line")"
        fi
      done
    done
  done
}

compare_report() {
  local ours peer
  ours=${SERVERS[0]%%|*}
  peer=${SERVERS[1]%%|*}
  python3 - "$RAW" "$OUT" "$REPS" "$DURATION" "$QUOTA" "$NAME" "$ours" "$peer" "$TITLE" "$ABOUT" <<'PY'
import json, statistics, sys, platform, os, subprocess
raw, out, reps, dur, quota, name, ours, peer, title, about = sys.argv[1:11]
runs = [json.loads(l) for l in open(raw) if l.strip()]
scen = list(dict.fromkeys(r["scenario"] for r in runs))
def get(s, n, k):
    return {r["rep"]: r[k] for r in runs if r["scenario"] == s and r["label"] == n and r.get(k) is not None}
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")
wire = any(r.get("wire_in_per_payload") is not None for r in runs)
rows = []
for s in scen:
    a, b = get(s, ours, "rate"), get(s, peer, "rate")
    ca, cb = get(s, ours, "server_cpu_us_per_op"), get(s, peer, "server_cpu_us_per_op")
    ratio = med([a[k] / b[k] for k in a if k in b and b[k]])
    cratio = med([ca[k] / cb[k] for k in ca if k in cb and cb[k]])
    row = f"| {s} | {med(a.values()):,.0f} | {med(b.values()):,.0f} | **{ratio:.2f}x** | {med(ca.values()):.2f} | {med(cb.values()):.2f} | {cratio:.2f} |"
    if wire:
        wa, wb = get(s, ours, "wire_in_per_payload"), get(s, peer, "wire_in_per_payload")
        row += f" {med(wa.values()):.3f} | {med(wb.values()):.3f} |"
    rows.append(row)
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
qflag = f" --server-quota {quota}" if quota else ""
qnote = (f" Each server is capped at {quota}% of its CPU (cgroup CPU quota, 10 ms period), so the"
         " servers, not the load generator, are the bottleneck." if quota else
         " Without a server quota the load generator may be near its own CPU limit against the"
         " faster server: the rate ratio is then a floor.")
head = f"| scenario | {ours} | {peer} | {ours}/{peer} rate | {ours} us/op | {peer} us/op | CPU ratio ({ours}/{peer}) |"
sep = "|---|---|---|---|---|---|---|"
if wire:
    head += f" {ours} wire/payload | {peer} wire/payload |"
    sep += "---|---|"
with open(out, "w") as f:
    f.write(f"""# {title}

`bench/{name}.sh --reps {reps} --duration {dur}{qflag}` at {rev}, {platform.machine()}, {os.cpu_count()} CPUs (shared, noisy: compare
ratios, which are medians of per-repetition ratios of runs made back to back). Each server on CPU 0, the load
generator (`ws-load`) on CPU 1. {about} Rates are messages (or handshakes) per second; server CPU is
user+system time per message (or per handshake) in microseconds.{qnote}

{head}
{sep}
""")
    f.write("\n".join(rows) + "\n")
    if wire:
        f.write("\nwire/payload: bytes of the server's echo frames on the wire per payload byte (lower is better compression).\n")
    f.write(f"\nRaw runs: `{os.path.basename(raw)}`.\n")
print(open(out).read())
PY
}
