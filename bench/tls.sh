#!/usr/bin/env bash
# wss:// benchmark (issue 12): ours (ws-server --mode echo --runtime tokio
# --threads 1 --tls-cert/--tls-key) against tokio-tungstenite with
# tokio-rustls (echo-tungstenite --tls-cert/--tls-key), both on the same
# certificate and the same rustls configuration (ring provider, TLS 1.3,
# the same suite negotiated). Scenarios: 10 connections x 1 KiB binary with
# 16 in flight, over wss and (for scale) over plain ws; TLS handshakes (4
# concurrent loops of TCP connect, TLS handshake, upgrade, close) with
# server CPU per handshake. The runner and its flags: bench/compare.sh.
#
# Usage: bench/tls.sh [--reps N] [--duration S] [--server-quota PCT] [--no-build] [--out FILE]
# Report: bench/results/tls.md (raw JSON lines beside it, tls-raw-*.jsonl).
set -euo pipefail
source "$(dirname "$0")/compare.sh"

NAME=tls
TITLE="wss:// benchmark: ours against tokio-tungstenite + tokio-rustls"
ABOUT="Ours: \`ws-server --mode echo --runtime tokio --threads 1\`; theirs: \`echo-tungstenite\`, tokio
current-thread, \`accept_async\` over \`tokio_rustls::TlsAcceptor\`; both with the same rustls \`ServerConfig\`
(ring provider, TLS 1.3, same certificate); ws-load is a rustls client."
SERVERS=(
  "ours|target/release/ws-server --addr 127.0.0.1:PORT --mode echo --runtime tokio --threads 1"
  "tokio-tungstenite|target/release/echo-tungstenite --addr 127.0.0.1:PORT"
)
SCENARIOS=(
  "wss 10x1KiB x16|wss|--connections 10 --size 1024 --in-flight 16"
  "ws 10x1KiB x16|ws|--connections 10 --size 1024 --in-flight 16"
  "wss handshakes x4|wss|--handshakes --connections 4"
)
prepare() {
  "$ROOT/tests/peers/make-test-ca.sh" "$WORK"
  LOAD_ARGS="--ca $WORK/ca.pem"
}
server_args() {
  if [ "$1" = wss ]; then echo "--tls-cert $WORK/server.pem --tls-key $WORK/server.key"; fi
}
compare_main "$@"
