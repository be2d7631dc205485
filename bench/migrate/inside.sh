#!/bin/bash
# Runs inside a KVM host (the L1 guest, or directly): the counter guest
# migrated 2 x RUNS times from process to process over loopback TCP,
# warm and live (--live) in turn. Writes
# RESULTS/times.tsv ("smolvm<TAB>metric<TAB>ms").
# usage: inside.sh RESULTS_DIR   (RESULTS_DIR/params.sh as for the nested tier)
set -u
results=$1
# shellcheck source=/dev/null
. "$results/params.sh"
RUNS=${RUNS:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/smolvm-bench-migrate.XXXXXX")
export XDG_RUNTIME_DIR=$work/run XDG_DATA_HOME=$work/data XDG_CACHE_HOME=$work/cache
mkdir -m 0700 -p "$XDG_RUNTIME_DIR" "$XDG_DATA_HOME" "$XDG_CACHE_HOME"
out=$results/times.tsv
: > "$out"
record() { echo -e "smolvm\t$1\t$2" | tee -a "$out"; }

# stamped NAME COMMAND...: COMMAND's output, each line prefixed with the
# wall clock in microseconds, into $work/NAME.out; stdin held by a fifo.
stamped() {
    local name=$1
    shift
    mkfifo "$work/$name.in"
    ("$@" < "$work/$name.in" 2> "$work/$name.err" | while IFS= read -r line; do
        echo "${EPOCHREALTIME/./} $line"
    done > "$work/$name.out") &
    sleep 0.2
    exec {hold}> "$work/$name.in"
    eval "hold_$name=$hold"
}
count_time() { # count_time NAME first|last: the stamp of that COUNT line
    if [ "$2" = first ]; then grep -a ' COUNT ' "$work/$1.out" | head -n 1
    else grep -a ' COUNT ' "$work/$1.out" | tail -n 1; fi | cut -d' ' -f1
}
wait_count() { # wait_count NAME: until it prints a count
    for _ in $(seq 1 300); do grep -q -a ' COUNT ' "$work/$1.out" 2>/dev/null && return 0; sleep 0.2; done
    return 1
}

mkfs.ext4 -q -F "$work/disk.ext4" 32M
stamped vm0 "$SMOLVM" run --name vm0 --mem "$MIGRATE_MEM" --console virtio --kernel "$KERNEL" \
    --initrd "$INITRD" --disk "$work/disk.ext4" --cmdline "console=ttyS0 quiet smolvm.test=counter"
wait_count vm0
sleep 5 # settled: idle but for the count
ip link set lo up 2>/dev/null || busybox ip link set lo up 2>/dev/null
field() { sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p" "$2" | head -n 1; }
last=0
for i in $(seq 1 $((2 * RUNS))); do
    port=$((47100 + i)) kind=warm flags=
    [ $((i % 2)) = 0 ] && kind=live flags=--live
    stamped "vm$i" "$SMOLVM" receive --listen "tcp:127.0.0.1:$port" --name "vm$i"
    sleep 1
    # shellcheck disable=SC2086
    "$SMOLVM" migrate "vm$((i - 1))" --to "tcp:127.0.0.1:$port" $flags --json > "$work/m$i.json" ||
        { cat "$work/m$i.json" "$work/vm$i.err"; break; }
    last=$i
    wait_count "vm$i"
    record "total-$kind" "$(field seconds "$work/m$i.json" | awk '{printf "%d", $1 * 1000}')"
    record "downtime-vmm-$kind" "$(field downtime_ms "$work/m$i.json" | awk '{printf "%d", $1}')"
    record "downtime-console-$kind" $((($(count_time "vm$i" first) - $(count_time "vm$((i - 1))" last)) / 1000))
    sleep 3
done
cat "$work"/m*.json > "$results/migrations.json" 2>/dev/null
"$SMOLVM" stop "vm$last" > /dev/null 2>&1
rm -rf "$work"
