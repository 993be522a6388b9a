#!/usr/bin/env bash
# Topic fan-out benchmark (issue 11): `ws-server --mode chat` with rooms.
# 1,000 clients in 10 rooms (`ws-load --fanout --rooms 10`: client i joins
# room r{i % 10}, 100 per room; each message reaches the 100 clients of its
# room) next to the plain broadcast to 100 clients (no room: each message
# reaches all 100), both 20 B binary, 30 M deliveries each when complete;
# and a control, 100 clients in one named room (`--rooms 1`): the plain
# broadcast's fan-out through a named topic.
# Interleaved: per repetition and runtime they run back to back, and the
# report has the ratios to the plain broadcast (deliveries/s, server
# ns/delivery) per runtime.
#
# This is bench/fanout.sh --set topics; every fanout.sh flag works (--quick,
# --reps, --only, --limit, --scale, --server-bin, --note, --out, --no-build).
# Report: bench/results/topics.md, raw JSON lines beside it (topics-raw-*.jsonl).
#
# Usage: bench/topics.sh [fanout.sh flags]
set -euo pipefail
exec "$(dirname "$0")/fanout.sh" --set topics "$@"
