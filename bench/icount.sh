#!/usr/bin/env bash
# The performance guard: instruction counts (valgrind --tool=callgrind) of
# ws-core's decode and encode paths and of one in-memory server echo, per
# message, for 20 B, 1 KiB and 16 KiB (bench/src/bin/icount.rs), compared
# against the committed baseline bench/icount-baseline.txt. Instruction
# counts do not depend on the machine's load, so a regression fails here
# however noisy the host is; they do depend on the compiler, the valgrind
# version and the CPU features valgrind reports (SIMD paths), so the
# baseline is refreshed with --update after a toolchain change, on the
# machine type CI runs on (the header of the baseline says where it came from).
#
# Usage: bench/icount.sh [--update] [--tolerance PCT] [--only REGEX] [--no-build]
#   --update        rewrite the baseline with this run's counts
#   --tolerance P   allowed increase over the baseline, percent (default 3)
#   --only REGEX    only the scenarios matching REGEX (see `icount --list`)
#   --no-build      use target/release/icount as it is
# Exit status: 0 within tolerance, 1 a scenario regressed (or failed), 2 usage.
# Counts are written to target/icount/latest.txt; callgrind profiles to
# target/icount/<scenario>.out (callgrind_annotate them to see which
# function grew).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BASELINE="$ROOT/bench/icount-baseline.txt"
OUT="$ROOT/target/icount"
BIN="$ROOT/target/release/icount"
TOL=3
ONLY='.'
UPDATE=0
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --update) UPDATE=1 ;;
        --tolerance) TOL=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n 2,21p "$0"; exit 0 ;;
        *) echo "unknown flag $1" >&2; exit 2 ;;
    esac
    shift
done

if ! command -v valgrind >/dev/null; then
    echo "valgrind is not installed (apt-get install -y valgrind)" >&2
    exit 2
fi
if [ "$BUILD" = 1 ]; then
    cargo build --release -q -p ws-bench --bin icount
fi
mkdir -p "$OUT"
: > "$OUT/latest.txt"

status=0
for s in $("$BIN" --list); do
    [[ "$s" =~ $ONLY ]] || continue
    prof="$OUT/$s.out"
    log="$OUT/$s.log"
    # Bounded: the largest scenario takes a few seconds under callgrind.
    if ! timeout -k 5 120 valgrind --tool=callgrind --toggle-collect=icount_measured \
        --callgrind-out-file="$prof" "$BIN" "$s" > "$log" 2>&1; then
        tail -n 20 "$log" >&2
        echo "FAILED  $s (valgrind or the scenario failed; $log)" >&2
        status=1
        continue
    fi
    msgs=$(awk '/^messages / {print $2}' "$log")
    total=$(awk '/^summary:/ {print $2}' "$prof")
    if [ -z "$msgs" ] || [ -z "$total" ]; then
        echo "FAILED  $s (no count; $log)" >&2
        status=1
        continue
    fi
    awk -v s="$s" -v t="$total" -v m="$msgs" 'BEGIN { printf "%s %.1f\n", s, t / m }' >> "$OUT/latest.txt"
done

# Where counts are comparable: the compiler, valgrind, and the CPU (glibc
# picks its memcpy by CPU, and callgrind counts each byte a `rep movsb`
# moves, so the same code counts differently on another CPU model).
host="$(rustc --version), $(valgrind --version), $(uname -m), $(grep -m1 '^model name' /proc/cpuinfo | sed 's/.*: //')"

if [ "$UPDATE" = 1 ]; then
    {
        echo "# instructions per message (bench/icount.sh --update; compared with --tolerance, default 3%)"
        echo "# host: $host"
        echo "# made $(date -u +%Y-%m-%d)"
        cat "$OUT/latest.txt"
    } > "$BASELINE"
    echo "baseline written: $BASELINE"
    cat "$OUT/latest.txt"
    exit "$status"
fi

if [ ! -f "$BASELINE" ]; then
    echo "no baseline ($BASELINE): run bench/icount.sh --update" >&2
    exit 1
fi

base_host=$(sed -n 's/^# host: //p' "$BASELINE")
if [ "$base_host" != "$host" ]; then
    # Counts from another toolchain or CPU differ for reasons that are not
    # regressions: show them, but enforce only where the baseline was made.
    echo "icount: the baseline was made on '$base_host'," >&2
    echo "        this is '$host': counts shown, not enforced (bench/icount.sh --update here to enforce)" >&2
    ENFORCE=0
else
    ENFORCE=1
fi

# Compare: fail on any scenario above baseline * (1 + TOL/100); say so when
# one is well below (the baseline could be tightened with --update).
awk -v tol="$TOL" '
    NR == FNR { if ($1 !~ /^#/ && NF == 2) base[$1] = $2; next }
    {
        name = $1; now = $2
        if (!(name in base)) { printf "%-22s %12.1f   (not in the baseline)\n", name, now; next }
        ratio = now / base[name]
        verdict = "ok"
        if (ratio > 1 + tol / 100) { verdict = "REGRESSION"; bad = 1 }
        else if (ratio < 1 - tol / 100) { verdict = "faster (bench/icount.sh --update to keep it)" }
        printf "%-22s %12.1f  baseline %12.1f  %6.3fx  %s\n", name, now, base[name], ratio, verdict
    }
    END { exit bad }
' "$BASELINE" "$OUT/latest.txt" || { [ "$ENFORCE" = 0 ] || status=1; }

if [ "$status" != 0 ]; then
    echo "icount: instruction counts regressed more than ${TOL}% (or a scenario failed); profiles in $OUT" >&2
fi
exit "$status"
