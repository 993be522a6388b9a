#!/usr/bin/env bash
# ci/autobahn.sh - run the Autobahn|TestSuite against our server and client, per runtime.
#
# For each runtime (default: tokio async-std smol blocking):
#   server-<rt>: ws-server --mode echo on a free 127.0.0.1 port, tested with
#                run-server-tests.sh (wstest fuzzingclient)
#   server-tls-<rt>: the same over wss:// (AUTOBAHN_TLS_RUNTIMES, default tokio)
#   client-<rt>: autobahn-client driven by run-client-tests.sh (wstest fuzzingserver)
# Reports: $AUTOBAHN_OUT/{server,client}-<rt>/ (index.html, index.json, wstest.log,
# run.log, ws-server.log). All runs are done even if one fails; exit 1 at the end
# if any failed.
#
# Environment:
#   AUTOBAHN_HARNESS     harness dir (default: <repo>/../shared/autobahn, then /work/shared/autobahn)
#   WS_BIN_DIR           dir with ws-server and autobahn-client (default <repo>/target/release)
#   AUTOBAHN_RUNTIMES    runtimes (default "tokio async-std smol blocking")
#   AUTOBAHN_SUITES      "server client" (default both)
#   AUTOBAHN_CASES       case patterns (default "*"), or deflate-quick / deflate-smoke (see below)
#   AUTOBAHN_OUT         report root (default <repo>/artifacts/autobahn)
#   AUTOBAHN_TIMEOUT, AUTOBAHN_STRICT, AUTOBAHN_EXCLUDE_CASES: passed to the harness
#                        (defaults here: 600 s per run, 1, none: all 517 cases)
#   AUTOBAHN_DEFLATE     1 (default): the servers accept and the client offers
#                        permessage-deflate (--deflate), which cases 12.* and 13.*
#                        need; 0 runs them without it (then exclude 12.*,13.*)
#   AUTOBAHN_TLS_RUNTIMES  runtimes whose server suite runs again over wss:// (default tokio)
#   AUTOBAHN_BUDGET      total seconds for all runs (default 2100); each run's timeout is
#                        capped by what is left, runs that no longer fit are marked FAIL
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

log() { printf '[ci/autobahn] %s\n' "$*"; }

# --- locate the harness ------------------------------------------------------
resolve_harness() {
  local top cand
  if [ -n "${AUTOBAHN_HARNESS:-}" ]; then
    [ -x "$AUTOBAHN_HARNESS/install.sh" ] || { log "AUTOBAHN_HARNESS=$AUTOBAHN_HARNESS has no install.sh" >&2; return 1; }
    (cd "$AUTOBAHN_HARNESS" && pwd); return 0
  fi
  top="$(git -C "$REPO" rev-parse --show-toplevel 2>/dev/null || echo "$REPO")"
  for cand in "$top/../shared/autobahn" "$REPO/../shared/autobahn" /work/shared/autobahn; do
    if [ -f "$cand/install.sh" ]; then (cd "$cand" && pwd); return 0; fi
  done
  log "Autobahn harness not found (set AUTOBAHN_HARNESS)" >&2
  return 1
}
HARNESS="$(resolve_harness)"
export AUTOBAHN_HARNESS="$HARNESS"

# install.sh reads the Debian mirror from the apt sources with a pipeline that fails
# under `set -o pipefail` when /etc/apt/sources.list does not exist (deb822-only
# machines such as this one), exiting 2 without a message. Work around it by
# passing the machine's own mirror explicitly.
if [ -z "${AUTOBAHN_DEBIAN_MIRROR:-}" ]; then
  mirror="$( { grep -hsE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources | sed -E 's/^[[:space:]]*URIs:[[:space:]]*//' | tr ' ' '\n'
               cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | grep -E '^[[:space:]]*deb[[:space:]]' | sed -E 's/\[[^]]*\]//' | awk '{print $2}'
             } | grep -E '/debian/?$' | head -n1 | sed -E 's#/$##' || true)"
  if [ -n "$mirror" ]; then export AUTOBAHN_DEBIAN_MIRROR="$mirror"; fi
fi

export AUTOBAHN_TIMEOUT="${AUTOBAHN_TIMEOUT:-600}"
RUN_TIMEOUT="$AUTOBAHN_TIMEOUT"
BUDGET="${AUTOBAHN_BUDGET:-2100}"
export AUTOBAHN_STRICT="${AUTOBAHN_STRICT:-1}"
export AUTOBAHN_EXCLUDE_CASES="${AUTOBAHN_EXCLUDE_CASES-}"
DEFLATE_FLAG=()
if [ "${AUTOBAHN_DEFLATE:-1}" = "1" ]; then DEFLATE_FLAG=(--deflate); fi
RUNTIMES="${AUTOBAHN_RUNTIMES:-tokio async-std smol blocking}"
SUITES="${AUTOBAHN_SUITES:-server client}"
CASES="${AUTOBAHN_CASES:-*}"
# `deflate-quick`: cases of every 12.*/13.* group (all 12 offer/answer
# combinations), each with 1000 messages of 16 B to 8 KiB, and of 8 KiB in
# 256-byte fragments: 84 of the 216, about 2-4 minutes a run. The others
# send 1000 messages of 16 to 128 KiB (some in 256-byte fragments), which
# takes wstest (Python 2, the bottleneck) from 15 s to several minutes per
# case on two cores. Listed by id: a wstest pattern with `*` is matched as a
# prefix (12.*.1 would also take 12.1.10-18).
# `deflate-smoke`: the same 12 groups, each with its smallest messages
# (16 B) and its fragmented ones (8 KiB in 256-byte fragments): 24 cases,
# for the runtimes whose deflate path is the same ws-core codec behind a
# different adapter.
if [ "$CASES" = "deflate-smoke" ]; then
  CASES=""
  for g in 12.1 12.2 12.3 12.4 12.5 13.1 13.2 13.3 13.4 13.5 13.6 13.7; do
    for c in 1 11; do CASES="$CASES${CASES:+,}$g.$c"; done
  done
fi
if [ "$CASES" = "deflate-quick" ]; then
  CASES=""
  for g in 12.1 12.2 12.3 12.4 12.5 13.1 13.2 13.3 13.4 13.5 13.6 13.7; do
    for c in 1 2 3 4 5 6 11; do CASES="$CASES${CASES:+,}$g.$c"; done
  done
fi
BIN_DIR="${WS_BIN_DIR:-target/release}"
case "$BIN_DIR" in /*) ;; *) BIN_DIR="$REPO/$BIN_DIR" ;; esac
OUT="${AUTOBAHN_OUT:-$REPO/artifacts/autobahn}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

log "harness: $HARNESS"
log "binaries: $BIN_DIR   runtimes: $RUNTIMES   suites: $SUITES"
log "cases: $CASES   excluded: ${AUTOBAHN_EXCLUDE_CASES:-none}   strict: $AUTOBAHN_STRICT   timeout/run: ${AUTOBAHN_TIMEOUT}s"

t0=$(date +%s)
"$HARNESS/install.sh"
log "install.sh done in $(( $(date +%s) - t0 ))s"

# --- helpers -----------------------------------------------------------------
USED_PORTS=" "
free_port() {
  local p i
  for i in $(seq 50); do
    p="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
    case "$USED_PORTS" in *" $p "*) continue ;; esac
    USED_PORTS="$USED_PORTS$p "
    echo "$p"; return 0
  done
  return 1
}

port_open() {
  python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),1).close()' "$1" 2>/dev/null
}

SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ]; then
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      kill -TERM "$SERVER_PID" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
trap stop_server EXIT
trap 'stop_server; exit 130' INT TERM

RESULTS=()
FAILED=()

record() { # name rc seconds dir
  local name="$1" rc="$2" secs="$3" dir="$4" verdict
  if [ "$rc" -eq 0 ]; then verdict="PASS"; else verdict="FAIL (exit $rc)"; FAILED+=("$name"); fi
  RESULTS+=("$(printf '%-22s %-16s %5ss  %s' "$name" "$verdict" "$secs" "$dir")")
}

run_server_suite() { # runtime [tls]
  local rt="$1" tls="${2:-}" name="server-$1" dir port rc=0 t scheme=ws
  if [ -n "$tls" ]; then name="server-tls-$rt"; scheme=wss; fi
  dir="$OUT/$name"; mkdir -p "$dir"
  port="$(free_port)"
  log "=== $name: ws-server --mode echo --runtime $rt on $scheme://127.0.0.1:$port ==="
  t=$(date +%s)
  local cmd
  if [ "$rt" = "core-loop" ]; then
    # ws-core driven by the hand-written non-blocking loop, no runtime at all.
    cmd=("$BIN_DIR/ws-core-loop" --addr "127.0.0.1:$port" "${DEFLATE_FLAG[@]}")
  else
    cmd=("$BIN_DIR/ws-server" --addr "127.0.0.1:$port" --mode echo --runtime "$rt" "${DEFLATE_FLAG[@]}")
  fi
  if [ -n "$tls" ]; then
    # A fresh test CA and leaf for this run (wstest does not verify it).
    "$REPO/tests/peers/make-test-ca.sh" "$dir/certs"
    cmd+=(--tls-cert "$dir/certs/server.pem" --tls-key "$dir/certs/server.key")
  fi
  if [ ! -x "${cmd[0]}" ]; then
    log "missing ${cmd[0]}"; record "$name" 2 0 "$dir"; return
  fi
  "${cmd[@]}" >"$dir/ws-server.log" 2>&1 &
  SERVER_PID=$!
  AUTOBAHN_AGENT="ws-$rt" AUTOBAHN_QUIET=1 AUTOBAHN_WAIT=30 \
    "$HARNESS/run-server-tests.sh" "$scheme://127.0.0.1:$port" "$CASES" "$dir" 2>&1 | tee "$dir/run.log" || rc=$?
  if [ -n "$SERVER_PID" ] && ! kill -0 "$SERVER_PID" 2>/dev/null; then
    local src=0; wait "$SERVER_PID" 2>/dev/null || src=$?
    SERVER_PID=""
    log "ws-server ($rt) exited during the run with status $src - see $dir/ws-server.log"
    tail -n 20 "$dir/ws-server.log" || true
    [ "$rc" -ne 0 ] || rc=4
  fi
  stop_server
  record "$name" "$rc" "$(( $(date +%s) - t ))" "$dir"
}

run_client_suite() {
  local rt="$1" name="client-$1" dir port rc=0 t
  dir="$OUT/$name"; mkdir -p "$dir"
  port="$(free_port)"
  log "=== $name: autobahn-client --runtime $rt against wstest on 127.0.0.1:$port ==="
  t=$(date +%s)
  if [ ! -x "$BIN_DIR/autobahn-client" ]; then
    log "missing $BIN_DIR/autobahn-client"; record "$name" 2 0 "$dir"; return
  fi
  AUTOBAHN_EXPECT_AGENT="ws-$rt" \
    "$HARNESS/run-client-tests.sh" "$port" "$CASES" "$dir" -- \
      "$BIN_DIR/autobahn-client" --url "ws://127.0.0.1:$port" --agent "ws-$rt" --runtime "$rt" "${DEFLATE_FLAG[@]}" \
      2>&1 | tee "$dir/run.log" || rc=$?
  record "$name" "$rc" "$(( $(date +%s) - t ))" "$dir"
}

for rt in $RUNTIMES; do
  for suite in $SUITES; do
    left=$(( BUDGET - ($(date +%s) - t0) ))
    if [ "$left" -lt 60 ]; then
      log "=== $suite-$rt: not run, AUTOBAHN_BUDGET=${BUDGET}s used up"
      record "$suite-$rt" 5 0 "(budget exhausted)"
      continue
    fi
    if [ "$RUN_TIMEOUT" = "0" ] || [ "$RUN_TIMEOUT" -gt "$left" ]; then export AUTOBAHN_TIMEOUT="$left"; else export AUTOBAHN_TIMEOUT="$RUN_TIMEOUT"; fi
    case "$suite" in
      server) run_server_suite "$rt" ;;
      client) run_client_suite "$rt" ;;
      *) log "unknown suite '$suite'"; exit 2 ;;
    esac
  done
done

# The sans-IO core in a hand-written loop, as a ninth (server-only) run.
if [ "${AUTOBAHN_CORE_LOOP:-1}" = "1" ] && [[ " $SUITES " == *" server "* ]] && [ "$CASES" = "*" ] || [ "${AUTOBAHN_CORE_LOOP:-1}" = "force" ]; then
  left=$(( BUDGET - ($(date +%s) - t0) ))
  if [ "$left" -ge 60 ]; then
    export AUTOBAHN_TIMEOUT="$left"
    run_server_suite core-loop
  fi
fi

# The server suite once more over wss:// (TLS in ws-core's server::tls), on
# AUTOBAHN_TLS_RUNTIMES (default tokio; "" to skip).
if [[ " $SUITES " == *" server "* ]]; then
  for rt in ${AUTOBAHN_TLS_RUNTIMES-tokio}; do
    left=$(( BUDGET - ($(date +%s) - t0) ))
    if [ "$left" -lt 60 ]; then
      log "=== server-tls-$rt: not run, AUTOBAHN_BUDGET=${BUDGET}s used up"
      record "server-tls-$rt" 5 0 "(budget exhausted)"
      continue
    fi
    if [ "$RUN_TIMEOUT" = "0" ] || [ "$RUN_TIMEOUT" -gt "$left" ]; then export AUTOBAHN_TIMEOUT="$left"; else export AUTOBAHN_TIMEOUT="$RUN_TIMEOUT"; fi
    run_server_suite "$rt" tls
  done
fi

{
  echo "Autobahn results (strict=$AUTOBAHN_STRICT, excluded: ${AUTOBAHN_EXCLUDE_CASES:-none}, cases: $CASES)"
  printf '%s\n' "${RESULTS[@]}"
} | tee "$OUT/summary.txt"
log "total $(( $(date +%s) - t0 ))s"
if [ "${#FAILED[@]}" -gt 0 ]; then
  log "FAILED runs: ${FAILED[*]}"
  exit 1
fi
log "all Autobahn runs passed"
