#!/usr/bin/env bash
# permessage-deflate benchmark (issue 13): ours (ws-server --mode echo
# --runtime tokio --threads 1 --deflate: level 6, windows of 15 bits,
# context takeover) against yawc (echo-yawc: the Rust crate with
# permessage-deflate, on tokio, at level 6, window 15, takeover, UTF-8
# checked). ws-load offers permessage-deflate with client_no_context_takeover
# and sends pre-compressed JSON: chat messages of 200 B to 2 KiB (10
# connections x 16 in flight) and a 64 KiB JSON document (4 x 2), plus the
# chat messages uncompressed (no offer) for what compression costs. The
# runner and its flags: bench/compare.sh.
#
# Usage: bench/deflate.sh [--reps N] [--duration S] [--server-quota PCT] [--no-build] [--out FILE]
# Report: bench/results/deflate.md (raw JSON lines beside it, deflate-raw-*.jsonl).
set -euo pipefail
source "$(dirname "$0")/compare.sh"

NAME=deflate
TITLE="permessage-deflate benchmark: ours against yawc"
ABOUT="Ours: \`ws-server --mode echo --runtime tokio --threads 1 --deflate\`; theirs: \`echo-yawc\` (yawc 0.5,
tokio current-thread, hyper upgrade, compression level 6, window 15, context takeover, UTF-8 checked); both
inflate every message and compress every echo with flate2 on zlib-rs. ws-load offers
\`permessage-deflate; client_no_context_takeover\`, replays messages compressed once before the run, and counts
echoes without inflating them."
SERVERS=(
  "ours|target/release/ws-server --addr 127.0.0.1:PORT --mode echo --runtime tokio --threads 1 --deflate"
  "yawc|target/release/echo-yawc --addr 127.0.0.1:PORT"
)
SCENARIOS=(
  "chat JSON 10x16, deflate|ws|--connections 10 --in-flight 16 --payload chat --deflate"
  "64 KiB JSON 4x2, deflate|ws|--connections 4 --in-flight 2 --payload json --size 65536 --deflate"
  "chat JSON 10x16, plain|ws|--connections 10 --in-flight 16 --payload chat"
)
LOAD_ARGS=""
compare_main "$@"
