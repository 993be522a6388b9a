#!/usr/bin/env bash
# bench/tls-profile.sh MODE WHO [SECS] - one bounded wss echo run (10
# connections x 1 KiB, 16 in flight, for SECS seconds, default 8) against
# one server run under a profiler, for per-message costs that do not depend
# on a noisy machine. MODE: callgrind (valgrind --tool=callgrind, output
# WHO.cg), strace (strace -c -f, output WHO.strace) or none. WHO: ours
# (target/release/ws-server --mode echo --runtime tokio --threads 1) or
# theirs (target/release/echo-tungstenite). Outputs and ws-load's JSON line
# (WHO.json) go to the current directory. Normalise instruction counts by
# the Ir of `_aesni_ctr32_ghash_6x` (the same bytes per message for both).
set -euo pipefail
mode=${1:?MODE}; who=${2:?WHO}; dur=${3:-8}
T="$(cd "$(dirname "$0")/.." && pwd)/target/release"
pki=$(mktemp -d); trap 'rm -rf "$pki"' EXIT
"$(dirname "$0")/../tests/peers/make-test-ca.sh" "$pki"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
case $who in
  theirs) cmd=("$T/echo-tungstenite" --addr "127.0.0.1:$port") ;;
  ours) cmd=("$T/ws-server" --addr "127.0.0.1:$port" --mode echo --runtime tokio --threads 1) ;;
  *) echo "WHO: ours or theirs" >&2; exit 2 ;;
esac
cmd+=(--tls-cert "$pki/server.pem" --tls-key "$pki/server.key")
case $mode in
  callgrind) pre=(valgrind --tool=callgrind "--callgrind-out-file=$who.cg") ;;
  strace) pre=(strace -c -f -o "$who.strace") ;;
  none) pre=() ;;
  *) echo "MODE: callgrind, strace or none" >&2; exit 2 ;;
esac
"${pre[@]}" "${cmd[@]}" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 200); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
timeout $((dur + 60)) "$T/ws-load" --url "wss://127.0.0.1:$port/" --ca "$pki/ca.pem" --connections 10 --size 1024 \
  --in-flight 16 --duration "$dur" --warmup 0 --json --label "$who" | tail -n1 > "$who.json" || true
sleep 0.5
for c in $(pgrep -P "$pid" || true); do kill -INT "$c"; done
kill -INT "$pid" 2>/dev/null || true
sleep 1
for c in $(pgrep -P "$pid" || true); do kill "$c"; done
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
cat "$who.json"
