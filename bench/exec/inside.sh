#!/bin/bash
# Runs inside a KVM host (the L1 guest, or directly): an appliance with the
# guest agent, booted cold to its first exec RUNS times, saved once, started
# from the bundle to its first exec RUNS times, and 100 exec round trips.
# Writes RESULTS/times.tsv ("smolvm<TAB>metric<TAB>ms").
# usage: inside.sh RESULTS_DIR   (RESULTS_DIR/params.sh as for the nested tier)
set -u
results=$1
# shellcheck source=/dev/null
. "$results/params.sh"
RUNS=${RUNS:-5}
work=$(mktemp -d "${TMPDIR:-/tmp}/smolvm-bench-exec.XXXXXX")
export XDG_RUNTIME_DIR=$work/run XDG_DATA_HOME=$work/data XDG_CACHE_HOME=$work/cache
mkdir -m 0700 -p "$XDG_RUNTIME_DIR" "$XDG_DATA_HOME" "$XDG_CACHE_HOME"
out=$results/times.tsv
: > "$out"
ms() { echo $((${EPOCHREALTIME/./} / 1000)); }
record() { echo -e "smolvm\t$1\t$2" | tee -a "$out"; }

"$SMOLVM" image build -o "$work/app" > /dev/null
for i in $(seq 1 "$RUNS"); do
    t0=$(ms)
    "$SMOLVM" run --detach --name "cold$i" --mem 256M "$work/app" > /dev/null &&
        "$SMOLVM" exec --wait 300 "cold$i" -- true && record cold-boot-to-exec $(($(ms) - t0))
    if [ "$i" = 1 ]; then
        for j in $(seq 1 100); do
            t0=$(ms)
            "$SMOLVM" exec cold1 -- true && record exec-round-trip $(($(ms) - t0))
        done
        "$SMOLVM" save cold1 -o "$work/idle.smolmachine" > /dev/null
    else
        "$SMOLVM" stop "cold$i" > /dev/null
    fi
done
for i in $(seq 1 "$RUNS"); do
    t0=$(ms)
    "$SMOLVM" start "$work/idle.smolmachine" --detach --name "warm$i" > /dev/null &&
        "$SMOLVM" exec "warm$i" -- true && record start-to-exec $(($(ms) - t0))
    "$SMOLVM" stop "warm$i" > /dev/null
done
rm -rf "$work"
