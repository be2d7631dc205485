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
# shellcheck source=probe-lib.sh
. "$here/probe-lib.sh" # PROBE_WORK, probe_save_at
work=$PROBE_WORK
cost=$work/chunk-cost
TMPDIR=$work gcc -std=gnu11 -O2 -static -o "$cost" "$here/chunk-cost.c" -lzstd -lnettle ||
    { echo "FAIL probe-chunk-cost: chunk-cost.c does not build here" >> "$results/summary"; exit 0; }
probe_save_at "$work/tick.smolmachine" tick "TICK 10"
# A start unpacks the RAM into the cache (--memory map: whole, first).
BENCH_KILL_AT_MARKER=1 BENCH_KILL_SIGNAL=TERM bench_ms_to ms "TICK " "$SMOLVM" start "$work/tick.smolmachine" \
    --name s --memory map < "$work/quiet"
for ram in "$XDG_CACHE_HOME"/smolvm/memory/*.ram; do
    echo "tick guest's RAM ($(du -m "$ram" | cut -f1) MiB touched):" >> "$out"
    "$cost" "$ram" >> "$out" 2>&1
done
echo "the smolvm binary:" >> "$out"
"$cost" "$SMOLVM" >> "$out" 2>&1
probe_done
grep -q "^raw:" "$out" && echo "PASS probe-chunk-cost" >> "$results/summary" ||
    echo "FAIL probe-chunk-cost: no figures (see chunk-cost.txt)" >> "$results/summary"
