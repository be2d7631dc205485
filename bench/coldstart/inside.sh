#!/bin/bash
# Runs where KVM works: see run. Writes RESULTS/times.tsv and facts.txt.
set -u
results=$1
# shellcheck source=../lib.sh
. "$(dirname "$(realpath "$0")")/../lib.sh" # bench_ms_to, BENCH_MEDIAN_AWK
# shellcheck source=/dev/null
. "$results/params.sh"
RUNS=${RUNS:-5}
CMDLINE="console=ttyS0 quiet panic=-1 smolvm.test=echo"
# In the nested L1, bundles and caches live on ext4 on the virtio disk run
# gives it, so that a start after dropping the page cache reads them from a
# disk, as after a host's reboot (the L1's tmpfs would keep them in RAM).
if [ -n "${SMOLVM_IN_L1:-}" ] && modprobe -a -q virtio_blk ext4 2>/dev/null; then
    for i in $(seq 1 50); do [ -b /dev/vda ] && break; sleep 0.1; done
    mkdir -p /run/tmp/disk
    mkfs.ext4 -q -F /dev/vda && mount /dev/vda /run/tmp/disk && TMPDIR=/run/tmp/disk
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/smolvm-coldstart.XXXXXX")
export XDG_RUNTIME_DIR=$work/run XDG_DATA_HOME=$work/data XDG_CACHE_HOME=$work/cache
mkdir -m 0700 -p "$XDG_RUNTIME_DIR" "$XDG_DATA_HOME" "$XDG_CACHE_HOME"
out=$results/times.tsv facts=$results/facts.txt
: > "$out"
: > "$facts"
echo "bundles and caches on: $(df --output=source,fstype "$work" | tail -n 1)" >> "$facts"

# ms_to LABEL METRIC MARKER COMMAND...: launch to MARKER on the console, the
# guest's input line "go" waiting on stdin from the start.
ms_to() {
    local label=$1 metric=$2 marker=$3 ms
    shift 3
    : > "$work/last.log"
    BENCH_LOG=$work/last.log bench_ms_to ms "$marker" "$@" <<< go
    echo -e "$label\t$metric\t$ms" | tee -a "$out"
}

# save_at_ready MEM BUNDLE: boots, waits for the ready line, saves.
save_at_ready() {
    local fifo=$work/fifo log=$work/boot.log pid i t0 t1
    rm -f "$fifo"; mkfifo "$fifo"
    "$SMOLVM" run --name bench --mem "$1" --kernel "$KERNEL" --initrd "$INITRD" \
        --cmdline "$CMDLINE" < "$fifo" > "$log" 2>&1 &
    pid=$!
    exec 7> "$fifo"
    for i in $(seq 1 300); do grep -q SMOLVM-GUEST-UP "$log" && break; sleep 0.5; done
    sleep 1
    t0=${EPOCHREALTIME/./}
    "$SMOLVM" save bench -o "$2" > /dev/null
    t1=${EPOCHREALTIME/./}
    wait "$pid"
    exec 7>&-
    echo "mem $1: bundle $(($(stat -c %s "$2") >> 10)) KiB, saved in $(((t1 - t0) / 1000)) ms" >> "$facts"
}

# The floor under every start: launching smolvm itself (exec, the dynamic
# loader, exit), here where the host tree is shared into L1.
t0=${EPOCHREALTIME/./}
for i in 1 2 3 4 5; do "$SMOLVM" --version > /dev/null; done
echo "smolvm --version (launch and exit): $(((${EPOCHREALTIME/./} - t0) / 5000)) ms each" >> "$facts"

for mem in ${MEMS:-256M 2G}; do
    bundle=$work/ready-$mem.smolmachine
    save_at_ready "$mem" "$bundle"
    rm -rf "$XDG_CACHE_HOME/smolvm/memory"
    ms_to smolvm "start-first-$mem" GUEST-GOT=go "$SMOLVM" start "$bundle" --name s --trace-boot --trace-until GUEST-GOT=go --json
    echo "first start $mem trace: $(grep -o '"events".*' "$work/last.log")" >> "$facts"
    # The unpacked cache is sparse: its blocks are the RAM the guest had
    # touched (not zero) when saved, what the bundle's size follows.
    echo "mem $mem: RAM touched at the save $(du -sm "$XDG_CACHE_HOME/smolvm/memory" | cut -f1) MiB" >> "$facts"
    for i in $(seq 1 "$RUNS"); do
        for mode in copy map lazy decompress; do
            ms_to smolvm "start-$mode-$mem" GUEST-GOT=go "$SMOLVM" start "$bundle" --name s \
                --memory "$mode" --trace-boot --trace-until GUEST-GOT=go --json
            [ "$i" = 1 ] && echo "$mode start $mem trace: $(grep -o '"events".*' "$work/last.log")" >> "$facts"
        done
        # With the page cache dropped (after a reboot, or among many
        # bundles), where fetching the working set at once should pay most.
        for mode in map lazy; do
            sync
            echo 3 > /proc/sys/vm/drop_caches
            ms_to smolvm "start-$mode-cold-$mem" GUEST-GOT=go "$SMOLVM" start "$bundle" --name s \
                --memory "$mode" --trace-boot --trace-until GUEST-GOT=go --json
        done
        # Killed at its ready line: the guest, booting, misses the input
        # line (the 8250 driver's start clears the receive FIFO).
        BENCH_KILL_AT_MARKER=1 ms_to smolvm "boot-$mem" SMOLVM-GUEST-UP "$SMOLVM" run --mem "$mem" --kernel "$KERNEL" \
            --initrd "$INITRD" --cmdline "$CMDLINE"
    done
done
awk -F'\t' -v mems="${MEMS:-256M 2G}" "$BENCH_MEDIAN_AWK"'{ v[$2] = v[$2] " " $3 }
    END {
        for (k in v) med[k] = median(v[k])
        n = split(mems, sizes, " ")
        for (i = 1; i <= n; i++) {
            x = sizes[i]
            if (med["boot-" x] > 0)
                printf "mem %s: start (map + working set, the default) %.0f ms vs cold boot %.0f ms: ratio %.3f (target <= 0.05); first start (unpacks, records the working set) %.0f ms; --memory lazy %.0f ms (map/lazy %.2f), copy %.0f ms, decompress %.0f ms\n",
                    x, med["start-map-" x], med["boot-" x], med["start-map-" x] / med["boot-" x],
                    med["start-first-" x], med["start-lazy-" x], med["start-map-" x] / med["start-lazy-" x],
                    med["start-copy-" x], med["start-decompress-" x]
        }
        for (i = 1; i <= n; i++)
            if (med["start-lazy-cold-" sizes[i]] > 0)
                printf "mem %s, page cache dropped before each start: map + working set %.0f ms vs lazy %.0f ms: ratio %.2f\n",
                    sizes[i], med["start-map-cold-" sizes[i]], med["start-lazy-cold-" sizes[i]],
                    med["start-map-cold-" sizes[i]] / med["start-lazy-cold-" sizes[i]]
        if (med["start-map-256M"] > 0 && med["start-map-2G"] > 0)
            printf "start 2G / start 256M: %.2f (flat is 1.0)\n", med["start-map-2G"] / med["start-map-256M"]
    }' "$out" >> "$facts"
rm -rf "$work"
