#!/bin/bash
# Probe (not a test): one 64 KiB chunk's SHA-256 and decode CPU in this
# host or L1 (chunk-cost.c), stored as smolvm saves it (zstd level 1),
# with raw literals, and raw: over a saved tick guest's RAM (its memory
# cache, unpacked by a start) and over this smolvm binary. What storing a
# bundle's working set uncompressed would save a first start (issue 18).
# RESULTS/chunk-cost.txt.
# usage: SCENARIOS=x tests/nested/run bench/coldstart/probe-chunk-cost.sh
set -u
results=$1
# shellcheck source=/dev/null
. "$results/params.sh"
here=$(dirname "$(realpath "$0")")
# shellcheck source=../lib.sh
. "$here/../lib.sh" # bench_ms_to
: > "$results/summary"
out=$results/chunk-cost.txt
work=$(mktemp -d "${TMPDIR:-/tmp}/smolvm-probe.XXXXXX")
export XDG_RUNTIME_DIR=$work/run XDG_DATA_HOME=$work/data XDG_CACHE_HOME=$work/cache
mkdir -m 0700 -p "$XDG_RUNTIME_DIR" "$XDG_DATA_HOME" "$XDG_CACHE_HOME"
cost=$work/chunk-cost
TMPDIR=$work gcc -std=gnu11 -O2 -static -o "$cost" "$here/chunk-cost.c" -lzstd -lnettle ||
    { echo "FAIL probe-chunk-cost: chunk-cost.c does not build here" >> "$results/summary"; exit 0; }
mkfifo "$work/fifo" "$work/quiet"
exec 8<> "$work/quiet"
"$SMOLVM" run --name p --mem 256M --kernel "$KERNEL" --initrd "$INITRD" \
    --cmdline "console=ttyS0 quiet panic=-1 smolvm.test=tick" < "$work/fifo" > "$work/boot.log" 2>&1 &
pid=$!
exec 7> "$work/fifo"
for _ in $(seq 1 300); do grep -q "TICK 10" "$work/boot.log" && break; sleep 0.5; done
sleep 1
"$SMOLVM" save p -o "$work/tick.smolmachine" > /dev/null
timeout 60 tail --pid="$pid" -f /dev/null
exec 7>&-
# A start unpacks the RAM into the cache (--memory map: whole, first).
BENCH_KILL_AT_MARKER=1 BENCH_KILL_SIGNAL=TERM bench_ms_to ms "TICK " "$SMOLVM" start "$work/tick.smolmachine" \
    --name s --memory map < "$work/quiet"
for ram in "$XDG_CACHE_HOME"/smolvm/memory/*.ram; do
    echo "tick guest's RAM ($(du -m "$ram" | cut -f1) MiB touched):" >> "$out"
    "$cost" "$ram" >> "$out" 2>&1
done
echo "the smolvm binary:" >> "$out"
"$cost" "$SMOLVM" >> "$out" 2>&1
exec 8>&-
rm -rf "$work"
grep -q "^raw:" "$out" && echo "PASS probe-chunk-cost" >> "$results/summary" ||
    echo "FAIL probe-chunk-cost: no figures (see chunk-cost.txt)" >> "$results/summary"
