#!/bin/bash
# Runs where KVM works: see run. Writes RESULTS/times.tsv and facts.txt.
set -u
results=$1
# shellcheck source=../lib.sh
. "$(dirname "$(realpath "$0")")/../lib.sh" # bench_ms_to, BENCH_MEDIAN_AWK
# shellcheck source=/dev/null
. "$results/params.sh"
RUNS=${RUNS:-5}
BASE_CMDLINE="console=ttyS0 quiet panic=-1"
CMDLINE="$BASE_CMDLINE smolvm.test=echo"
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

# A stdin that never gives a line (held open on fd 8): the timer-driven
# guest's console input.
mkfifo "$work/quiet"
exec 8<> "$work/quiet"
splits=$results/splits.tsv
: > "$splits"

# ms_to LABEL METRIC MARKER COMMAND...: launch to MARKER on the console, the
# guest's input line "go" waiting on stdin from the start (INPUT=none: no
# input ever). With --trace-boot --json, the start's split goes to
# splits.tsv, each point from the launch: the launch itself is the figure
# less the time from smolvm's main() to the marker.
ms_to() {
    local label=$1 metric=$2 marker=$3 ms
    shift 3
    : > "$work/last.log"
    if [ "${INPUT:-go}" = none ]; then
        BENCH_LOG=$work/last.log bench_ms_to ms "$marker" "$@" < "$work/quiet"
    else
        BENCH_LOG=$work/last.log bench_ms_to ms "$marker" "$@" <<< go
    fi
    echo -e "$label\t$metric\t$ms" | tee -a "$out"
    grep -o '"events":{[^}]*}' "$work/last.log" | tail -n 1 | tr -d '"{}' | sed 's/^events://' |
        awk -v metric="$metric" -v total="$ms" -F, 'total ~ /^[0-9]+$/ {
            for (i = 1; i <= NF; i++) { split($i, kv, ":"); t[kv[1]] = kv[2] }
            if (!("marker_seen" in t) || !("memory_restored" in t)) exit
            launch = total - t["marker_seen"]
            printf "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\n", metric, launch, launch + t["memory_restored"],
                launch + t["first_vcpu_entry"], launch + t["first_serial_byte"], total
        }' >> "$splits"
}

# The L1's KVM tracepoints (tracefs), where there are: kvm_events LABEL
# MARKER COMMAND... runs one start more, untimed (tracing slows every
# exit), with kvm_page_fault (the guest's NPT faults: its first touch of
# each page, or of each huge page) and kvm_exit on, up to MARKER, and
# writes their counts to facts.txt: where the guest's time after its first
# entry goes.
tracing=
if [ -n "${SMOLVM_IN_L1:-}" ]; then
    tracing=/sys/kernel/tracing
    [ -d "$tracing/events/kvm" ] || mount -t tracefs nodev "$tracing" 2>/dev/null
    [ -d "$tracing/events/kvm/kvm_page_fault" ] || tracing=
fi
kvm_events() {
    local label=$1 marker=$2 ms e
    shift 2
    [ -n "$tracing" ] || return 0
    echo 0 > "$tracing/tracing_on"
    echo 16384 > "$tracing/buffer_size_kb"
    : > "$tracing/trace"
    for e in kvm_page_fault kvm_exit; do echo 1 > "$tracing/events/kvm/$e/enable"; done
    echo 1 > "$tracing/tracing_on"
    BENCH_KILL_AT_MARKER=1 BENCH_KILL_SIGNAL=TERM bench_ms_to ms "$marker" "$@"
    echo 0 > "$tracing/tracing_on"
    for e in kvm_page_fault kvm_exit; do echo 0 > "$tracing/events/kvm/$e/enable"; done
    echo "kvm events, $label (one untimed start, $ms ms traced): $(grep -c 'kvm_page_fault:' "$tracing/trace") NPT faults," \
        "$(grep -c 'kvm_exit:' "$tracing/trace") exits; by reason: $(grep -o 'kvm_exit: .*reason [A-Za-z_0-9]*' "$tracing/trace" |
            awk '{ n[$NF]++ } END { for (r in n) printf "%s %d ", r, n[r] }')" >> "$facts"
    : > "$tracing/trace"
}

# save_at MEM BUNDLE TEST MARKER [SMOLVM]: boots the test guest TEST (its
# console input never comes) with SMOLVM (default: this build), waits for
# MARKER and a second more, saves.
save_at() {
    local fifo=$work/fifo log=$work/boot.log pid i t0 t1 vmm=${5:-$SMOLVM}
    rm -f "$fifo"; mkfifo "$fifo"
    "$vmm" run --name bench --mem "$1" --kernel "$KERNEL" --initrd "$INITRD" \
        --cmdline "$BASE_CMDLINE smolvm.test=$3" < "$fifo" > "$log" 2>&1 &
    pid=$!
    exec 7> "$fifo"
    for i in $(seq 1 300); do grep -q "$4" "$log" && break; sleep 0.5; done
    sleep 1
    t0=${EPOCHREALTIME/./}
    "$vmm" save bench -o "$2" > /dev/null
    t1=${EPOCHREALTIME/./}
    wait "$pid"
    exec 7>&-
    echo "mem $1, $3 guest${5:+ (SMOLVM_BASELINE)}: bundle $(($(stat -c %s "$2") >> 10)) KiB, saved in $(((t1 - t0) / 1000)) ms" >> "$facts"
}

# first_starts MAP_METRIC SERVE_METRIC KNOWN_METRIC MARKER COMMAND...: a
# round's first starts: the memory cache (and working set) the later
# starts use is kept aside, and a first start that unpacks first (--memory
# map) and one served as touched (--memory serve) each start with none,
# as a freshly copied bundle's does; then (KNOWN_METRIC, unless -) one
# served with the later starts' working set known, their cache file
# still gone: what a first start could do with a working set carried in
# the bundle.
# prefill_per_chunk METRIC LOG: what one chunk of a start's prefill cost,
# from its trace: the wall time (prefill_us, on a few threads), and the
# threads' CPU making its pages present, reading, checking (SHA-256) and
# decoding it, each summed over the threads, divided by the chunks (µs).
prefill_per_chunk() {
    local n c v line
    n=$(grep -o '"prefilled_chunks":[0-9]*' "$2" | cut -d: -f2)
    [ -n "$n" ] && [ "$n" -gt 0 ] || return 0
    line="$1 prefill per chunk ($n chunks), us:"
    for c in prefill_us prefill_populate_cpu_us prefill_read_cpu_us prefill_hash_cpu_us prefill_decode_cpu_us; do
        v=$(grep -o "\"$c\":[0-9]*" "$2" | cut -d: -f2)
        line="$line ${c%_us} $((${v:-0} / n))"
    done
    echo "$line" >> "$facts"
}

first_starts() {
    local map_metric=$1 serve_metric=$2 known_metric=$3 marker=$4
    shift 4
    rm -rf "$work/memory-kept"
    mv "$XDG_CACHE_HOME/smolvm/memory" "$work/memory-kept"
    rm -rf "$XDG_CACHE_HOME/smolvm/memory"
    ms_to smolvm "$map_metric" "$marker" "$@" --memory map
    rm -rf "$XDG_CACHE_HOME/smolvm/memory"
    ms_to smolvm "$serve_metric" "$marker" "$@" --memory serve
    echo "$serve_metric round trace: $(grep -o '"counts".*' "$work/last.log")" >> "$facts"
    rm -rf "$XDG_CACHE_HOME/smolvm/memory"
    if [ "$known_metric" != - ]; then
        mkdir -p "$XDG_CACHE_HOME/smolvm/memory"
        cp "$work"/memory-kept/*.ws "$XDG_CACHE_HOME/smolvm/memory/" 2>/dev/null
        ms_to smolvm "$known_metric" "$marker" "$@" --memory serve
        echo "$known_metric round trace: $(grep -o '"counts".*' "$work/last.log")" >> "$facts"
        prefill_per_chunk "$known_metric" "$work/last.log"
        rm -rf "$XDG_CACHE_HOME/smolvm/memory"
    fi
    mv "$work/memory-kept" "$XDG_CACHE_HOME/smolvm/memory"
}

# carried_first METRIC MARKER SAVE_AFTER BUNDLE OPTION...: the first start
# of a bundle that carries a working set (a fresh copy's, issue 18): BUNDLE
# is started (a later start; run after the round's later starts, so the
# exact set of its RAM they recorded is there and this start, never fed its
# input, records none: run before them, in a first round, it did), and once
# SAVE_AFTER shows on its console (- : after 2 s; the input-driven guest
# prints nothing before its input) it is saved to a new bundle, which
# carries that set; the new bundle's first start (no memory cache at all,
# the later starts' kept aside) decodes the set's chunks before the guest
# runs, and is timed to MARKER (stdin: ms_to's). The saved RAM is a
# little later than the set's, as a user's re-saved VM is.
carried_first() {
    local metric=$1 marker=$2 save_after=$3 bundle=$4 copy=$work/carried.smolmachine log=$work/carried.log pid
    shift 4
    rm -f "$copy"
    "$SMOLVM" start "$bundle" --name carry < "$work/quiet" > "$log" 2>&1 &
    pid=$!
    if [ "$save_after" = - ]; then
        sleep 2
    else
        for _ in $(seq 1 100); do grep -q "$save_after" "$log" && break; sleep 0.1; done
    fi
    "$SMOLVM" save carry -o "$copy" > /dev/null || echo "$metric: the save failed" >> "$facts"
    timeout 60 tail --pid="$pid" -f /dev/null
    wait "$pid" 2> /dev/null
    [ -f "$copy" ] || return 0
    rm -rf "$work/memory-kept"
    mv "$XDG_CACHE_HOME/smolvm/memory" "$work/memory-kept"
    ms_to smolvm "$metric" "$marker" "$SMOLVM" start "$copy" "$@"
    echo "$metric round trace: $(grep -o '"counts".*' "$work/last.log")" >> "$facts"
    prefill_per_chunk "$metric" "$work/last.log"
    rm -rf "$XDG_CACHE_HOME/smolvm/memory"
    mv "$work/memory-kept" "$XDG_CACHE_HOME/smolvm/memory"
    rm -f "$copy"
}

# The floor under every start: launching a program and its exit. Against
# a trivial static program (busybox true), from the tree shared into the
# L1 (9p: every page of the binary read through it) and from a copy on
# the local disk, as a user's installed binary is; the starts below run
# that copy.
launch_ms() {
    local t0=${EPOCHREALTIME/./} i
    for i in 1 2 3 4 5; do "$@" > /dev/null; done
    echo $(((${EPOCHREALTIME/./} - t0) / 5000))
}
cp "$SMOLVM" "$work/smolvm"
busybox=$(command -v busybox || true)
[ -z "$busybox" ] || cp "$busybox" "$work/busybox"
echo "launch and exit (ms each): smolvm --version $(launch_ms "$SMOLVM" --version) from the shared tree," \
    "$(launch_ms "$work/smolvm" --version) from the local disk${busybox:+; busybox true $(launch_ms "$busybox" true) shared, $(launch_ms "$work/busybox" true) local}" >> "$facts"
SMOLVM=$work/smolvm
# The L1 is QEMU-TCG (7.2), whose translated code is keyed by virtual
# address: a position-independent program placed afresh each launch (ASLR)
# has all the code it runs translated again, every launch (in an L1,
# smolvm --version took 23 ms with ASLR, 10 without; a later start ~45 ms
# more). Hardware runs no translator: these rows (NAME-noaslr) time the
# later starts with the L1's ASLR off beside the usual ones, to tell
# smolvm's own time from the emulator's. Only in the L1 (its sysctl).
# Each is timed after one start more the same way (NAME-noaslr-warmup):
# the translations of one start outlive the next only while the
# emulator's code buffer is not flushed, and the other starts fill it.
aslr_sysctl=/proc/sys/kernel/randomize_va_space
without_aslr() {
    local was
    [ -n "${SMOLVM_IN_L1:-}" ] && was=$(cat "$aslr_sysctl" 2>/dev/null) && echo 0 > "$aslr_sysctl" 2>/dev/null || return 0
    "$@"
    echo "$was" > "$aslr_sysctl"
}
# noaslr_ms_to LABEL METRIC MARKER COMMAND...: ms_to with ASLR off, twice
# (METRIC-warmup, then METRIC).
noaslr_ms_to() {
    local label=$1 metric=$2
    shift 2
    without_aslr ms_to "$label" "$metric-warmup" "$@"
    without_aslr ms_to "$label" "$metric" "$@"
}
launch_without_aslr=$(without_aslr launch_ms "$SMOLVM" --version)
[ -z "$launch_without_aslr" ] || echo "launch and exit with the L1's ASLR off (ms each): smolvm --version $launch_without_aslr from the local disk" >> "$facts"
# Another smolvm (SMOLVM_BASELINE: before a change) times the later starts
# too, alternated with this one's, from a local copy as well.
# Its first starts start a bundle it saved itself (it may not read this
# build's format), in the same rounds, which of the two goes first
# alternating round by round.
baseline=
if [ -n "${SMOLVM_BASELINE:-}" ]; then
    cp "$SMOLVM_BASELINE" "$work/smolvm-baseline" && baseline=$work/smolvm-baseline
fi
# rounds_first_starts ROUND PREFIX MARKER THIS_BUNDLE BASELINE_BUNDLE
# OPTION...: this build's first starts of THIS_BUNDLE (PREFIX-first-map-MEM,
# PREFIX-first-MEM) and, with a baseline, the baseline's of its own
# (...-baseline-MEM), odd rounds this build first, even ones the baseline.
rounds_first_starts() {
    local round=$1 prefix=$2 marker=$3 this=$4 base=$5 order=this who
    shift 5
    [ -z "$baseline" ] || { [ $((round % 2)) = 1 ] && order="this baseline" || order="baseline this"; }
    for who in $order; do
        if [ "$who" = this ]; then
            first_starts "$prefix-first-map-$mem" "$prefix-first-$mem" "$prefix-first-known-$mem" "$marker" "$SMOLVM" start "$this" "$@"
        else
            first_starts "$prefix-first-map-baseline-$mem" "$prefix-first-baseline-$mem" - "$marker" "$baseline" start "$base" "$@"
        fi
    done
}

# baseline_first ROUND: whether the baseline's later start goes before this
# build's in ROUND (even rounds): the one that goes second may find the
# emulator's translations of the bundle's guest made by the first (in a
# run with the baseline always second, it was 1.09-1.21x faster).
baseline_first() {
    [ -n "$baseline" ] && [ $(($1 % 2)) = 0 ]
}

# baseline_map_start: the baseline's later start of the input-driven
# guest's bundle (the round's $bundle), from a cache of its own
# (baseline_cache): the working set it prefetches is the one the baseline
# recorded, not this build's.
baseline_map_start() {
    XDG_CACHE_HOME=$work/baseline-cache ms_to smolvm "start-map-baseline-$mem" GUEST-GOT=go \
        "$baseline" start "$bundle" --name s --memory map --trace-boot --trace-until GUEST-GOT=go --json
}

# baseline_cache: the baseline's own memory cache and working set of
# $bundle (a served first start, then one that records the set), untimed.
baseline_cache() {
    local mode
    rm -rf "$work/baseline-cache"
    mkdir -m 0700 -p "$work/baseline-cache"
    for mode in serve map; do
        XDG_CACHE_HOME=$work/baseline-cache timeout 60 "$baseline" start "$bundle" --name s \
            --memory "$mode" <<< go > /dev/null 2>&1
    done
}

for mem in ${MEMS:-256M 2G}; do
    # The timer-driven guest: a line every 20 ms, saved mid-count; a start
    # is timed to its next line. First start (no memory cache; unpacked
    # first, and served as touched), then later ones, and its cold boot to
    # its first line.
    tick=$work/tick-$mem.smolmachine
    save_at "$mem" "$tick" tick "TICK 10"
    [ -z "$baseline" ] || save_at "$mem" "$tick.baseline" tick "TICK 10" "$baseline"
    # This guest never ends: each timed start is stopped (SIGTERM) at its
    # line. A first start that unpacks first (--memory map), then one
    # served as touched (--memory serve).
    rm -rf "$XDG_CACHE_HOME/smolvm/memory"
    INPUT=none BENCH_KILL_AT_MARKER=1 BENCH_KILL_SIGNAL=TERM ms_to smolvm "tick-first-map-$mem" "TICK " "$SMOLVM" start "$tick" --name s --memory map --trace-boot --trace-until "TICK " --json
    rm -rf "$XDG_CACHE_HOME/smolvm/memory"
    INPUT=none BENCH_KILL_AT_MARKER=1 BENCH_KILL_SIGNAL=TERM ms_to smolvm "tick-first-$mem" "TICK " "$SMOLVM" start "$tick" --name s --memory serve --trace-boot --trace-until "TICK " --json
    echo "tick first start $mem trace: $(grep -o '"events".*' "$work/last.log")" >> "$facts"
    # Not counted, each stopped by SIGTERM a few seconds in: the served
    # start above left the memory cache and a provisional working set (its
    # faulted chunks), so the first maps the cache, every page faulted in
    # as touched, and records the working set at the guest's first line;
    # the second prefetches it.
    for i in 1 2; do
        "$SMOLVM" start "$tick" --name s < "$work/quiet" > /dev/null 2>&1 &
        sleep 5
        kill -TERM $! && wait $!
    done
    for i in $(seq 1 "$RUNS"); do
        INPUT=none BENCH_KILL_AT_MARKER=1 BENCH_KILL_SIGNAL=TERM rounds_first_starts "$i" tick "TICK " "$tick" "$tick.baseline" --name s --trace-boot --trace-until "TICK " --json
        ! baseline_first "$i" || INPUT=none BENCH_KILL_AT_MARKER=1 BENCH_KILL_SIGNAL=TERM ms_to smolvm "tick-start-baseline-$mem" "TICK " "$baseline" start "$tick" --name s --trace-boot --trace-until "TICK " --json
        INPUT=none BENCH_KILL_AT_MARKER=1 BENCH_KILL_SIGNAL=TERM ms_to smolvm "tick-start-$mem" "TICK " "$SMOLVM" start "$tick" --name s --trace-boot --trace-until "TICK " --json
        [ "$i" = 1 ] && echo "tick start $mem trace: $(grep -o '"events".*' "$work/last.log")" >> "$facts"
        [ -z "$baseline" ] || baseline_first "$i" || INPUT=none BENCH_KILL_AT_MARKER=1 BENCH_KILL_SIGNAL=TERM ms_to smolvm "tick-start-baseline-$mem" "TICK " "$baseline" start "$tick" --name s --trace-boot --trace-until "TICK " --json
        INPUT=none BENCH_KILL_AT_MARKER=1 BENCH_KILL_SIGNAL=TERM noaslr_ms_to smolvm "tick-start-noaslr-$mem" "TICK " "$SMOLVM" start "$tick" --name s --trace-boot --trace-until "TICK " --json
        # Against every page faulted in as touched (no working set).
        INPUT=none BENCH_KILL_AT_MARKER=1 BENCH_KILL_SIGNAL=TERM ms_to smolvm "tick-start-lazy-$mem" "TICK " "$SMOLVM" start "$tick" --name s --memory lazy --trace-boot --trace-until "TICK " --json
        INPUT=none BENCH_KILL_AT_MARKER=1 BENCH_KILL_SIGNAL=TERM carried_first "tick-first-carried-$mem" "TICK " "TICK " "$tick" --name s --trace-boot --trace-until "TICK " --json
        INPUT=none BENCH_KILL_AT_MARKER=1 ms_to smolvm "tick-boot-$mem" "TICK 1" "$SMOLVM" run --mem "$mem" --kernel "$KERNEL" \
            --initrd "$INITRD" --cmdline "$BASE_CMDLINE smolvm.test=tick"
    done
    kvm_events "tick start $mem" "TICK " "$SMOLVM" start "$tick" --name s < "$work/quiet"
    [ -z "$baseline" ] || kvm_events "tick start $mem, baseline" "TICK " "$baseline" start "$tick" --name s < "$work/quiet"
    rm -f "$tick" "$tick.baseline"

    bundle=$work/ready-$mem.smolmachine
    save_at "$mem" "$bundle" echo SMOLVM-GUEST-UP
    [ -z "$baseline" ] || save_at "$mem" "$bundle.baseline" echo SMOLVM-GUEST-UP "$baseline"
    # A first start that unpacks every chunk before the guest runs
    # (--memory map), then one served as touched (--memory serve).
    rm -rf "$XDG_CACHE_HOME/smolvm/memory"
    ms_to smolvm "start-first-map-$mem" GUEST-GOT=go "$SMOLVM" start "$bundle" --name s --memory map --trace-boot --trace-until GUEST-GOT=go --json
    rm -rf "$XDG_CACHE_HOME/smolvm/memory"
    ms_to smolvm "start-first-$mem" GUEST-GOT=go "$SMOLVM" start "$bundle" --name s --memory serve --trace-boot --trace-until GUEST-GOT=go --json
    echo "first start $mem trace: $(grep -o '"events".*' "$work/last.log")" >> "$facts"
    # The unpacked cache is sparse: its blocks are the RAM the guest had
    # touched (not zero) when saved, what the bundle's size follows.
    echo "mem $mem: RAM touched at the save $(du -sm "$XDG_CACHE_HOME/smolvm/memory" | cut -f1) MiB" >> "$facts"
    # Not counted, as for the timer-driven guest: the served start above
    # left a provisional working set, so the next start that maps the
    # cache records the exact one (up to the guest's answer). Without it,
    # round 1's later start (--memory map) was that recording start, with
    # no set to prefetch: a later start only in name.
    timeout 60 "$SMOLVM" start "$bundle" --name s --memory map <<< go > /dev/null 2>&1
    [ -z "$baseline" ] || baseline_cache
    for i in $(seq 1 "$RUNS"); do
        rounds_first_starts "$i" start GUEST-GOT=go "$bundle" "$bundle.baseline" --name s --trace-boot --trace-until GUEST-GOT=go --json
        for mode in copy map lazy decompress; do
            # The baseline's later start beside this build's, the two in
            # the same place in the round (after the copy start, which
            # leaves the L1 freeing its RAM), which goes first alternated.
            [ "$mode" != map ] || ! baseline_first "$i" || baseline_map_start
            ms_to smolvm "start-$mode-$mem" GUEST-GOT=go "$SMOLVM" start "$bundle" --name s \
                --memory "$mode" --trace-boot --trace-until GUEST-GOT=go --json
            [ "$i" = 1 ] && echo "$mode start $mem trace: $(grep -o '"events".*' "$work/last.log")" >> "$facts"
            [ "$mode" != map ] || [ -z "$baseline" ] || baseline_first "$i" || baseline_map_start
        done
        noaslr_ms_to smolvm "start-map-noaslr-$mem" GUEST-GOT=go "$SMOLVM" start "$bundle" --name s \
            --memory map --trace-boot --trace-until GUEST-GOT=go --json
        carried_first "start-first-carried-$mem" GUEST-GOT=go - "$bundle" --name s --trace-boot --trace-until GUEST-GOT=go --json
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
    kvm_events "input-driven start $mem" GUEST-GOT=go "$SMOLVM" start "$bundle" --name s <<< go
    [ -z "$baseline" ] || XDG_CACHE_HOME=$work/baseline-cache kvm_events "input-driven start $mem, baseline" GUEST-GOT=go "$baseline" start "$bundle" --name s <<< go
done
awk -F'\t' -v mems="${MEMS:-256M 2G}" "$BENCH_MEDIAN_AWK"'{ v[$2] = v[$2] " " $3 }
    END {
        for (k in v) med[k] = median(v[k])
        n = split(mems, sizes, " ")
        for (i = 1; i <= n; i++) {
            x = sizes[i]
            if (med["boot-" x] > 0)
                printf "mem %s: start (map + working set, the default) %.0f ms vs cold boot %.0f ms: ratio %.3f (target <= 0.05; --memory lazy: %.3f); first start served as touched (--memory serve) %.0f ms, unpacking first (--memory map) %.0f ms; --memory lazy %.0f ms (map/lazy %.2f), copy %.0f ms, decompress %.0f ms\n",
                    x, med["start-map-" x], med["boot-" x], med["start-map-" x] / med["boot-" x],
                    med["start-lazy-" x] / med["boot-" x],
                    med["start-first-" x], med["start-first-map-" x], med["start-lazy-" x], med["start-map-" x] / med["start-lazy-" x],
                    med["start-copy-" x], med["start-decompress-" x]
        }
        for (i = 1; i <= n; i++)
            if (med["start-lazy-cold-" sizes[i]] > 0)
                printf "mem %s, page cache dropped before each start: map + working set %.0f ms vs lazy %.0f ms: ratio %.2f\n",
                    sizes[i], med["start-map-cold-" sizes[i]], med["start-lazy-cold-" sizes[i]],
                    med["start-map-cold-" sizes[i]] / med["start-lazy-cold-" sizes[i]]
        for (i = 1; i <= n; i++) {
            x = sizes[i]
            if (med["tick-boot-" x] > 0)
                printf "mem %s, timer-driven guest: start %.0f ms vs cold boot %.0f ms: ratio %.3f (target <= 0.05); --memory lazy %.0f ms (ratio %.3f; start/lazy %.2f); first start unpacking first (--memory map) %.0f ms: %.2f of a later start; served as touched (--memory serve) %.0f ms: %.2f (target <= 2)\n",
                    x, med["tick-start-" x], med["tick-boot-" x], med["tick-start-" x] / med["tick-boot-" x],
                    med["tick-start-lazy-" x], med["tick-start-lazy-" x] / med["tick-boot-" x],
                    med["tick-start-" x] / med["tick-start-lazy-" x],
                    med["tick-first-map-" x], med["tick-first-map-" x] / med["tick-start-" x],
                    med["tick-first-" x], med["tick-first-" x] / med["tick-start-" x]
            if (med["start-map-" x] > 0)
                printf "mem %s, input-driven guest: first start served / later start %.2f (target <= 2; unpacking first: %.2f)\n",
                    x, med["start-first-" x] / med["start-map-" x], med["start-first-map-" x] / med["start-map-" x]
        }
        for (i = 1; i <= n; i++) {
            x = sizes[i]
            if (med["tick-start-baseline-" x] > 0 && med["start-map-baseline-" x] > 0)
                printf "mem %s, later start, this build vs SMOLVM_BASELINE: timer-driven %.0f vs %.0f ms (%.3f), input-driven %.0f vs %.0f ms (%.3f)\n",
                    x, med["tick-start-" x], med["tick-start-baseline-" x], med["tick-start-" x] / med["tick-start-baseline-" x],
                    med["start-map-" x], med["start-map-baseline-" x], med["start-map-" x] / med["start-map-baseline-" x]
            if (med["start-first-map-baseline-" x] > 0 && med["tick-first-map-baseline-" x] > 0)
                printf "mem %s, first start, this build vs SMOLVM_BASELINE (each its own bundle): unpacking first: input-driven %.0f vs %.0f ms (%.3f), timer-driven %.0f vs %.0f ms (%.3f); served: input-driven %.0f vs %.0f ms (%.3f), timer-driven %.0f vs %.0f ms (%.3f)\n",
                    x, med["start-first-map-" x], med["start-first-map-baseline-" x], med["start-first-map-" x] / med["start-first-map-baseline-" x],
                    med["tick-first-map-" x], med["tick-first-map-baseline-" x], med["tick-first-map-" x] / med["tick-first-map-baseline-" x],
                    med["start-first-" x], med["start-first-baseline-" x], med["start-first-" x] / med["start-first-baseline-" x],
                    med["tick-first-" x], med["tick-first-baseline-" x], med["tick-first-" x] / med["tick-first-baseline-" x]
        }
        if (med["start-map-256M"] > 0 && med["start-map-2G"] > 0)
            printf "start 2G / start 256M: %.2f (flat is 1.0)\n", med["start-map-2G"] / med["start-map-256M"]
        for (i = 1; i <= n; i++) {
            x = sizes[i]
            rounds("input-driven later/cold", "start-map-" x, "boot-" x, x)
            rounds("timer-driven later/cold", "tick-start-" x, "tick-boot-" x, x)
            rounds("input-driven later, ASLR off in the L1/cold", "start-map-noaslr-" x, "boot-" x, x)
            rounds("timer-driven later, ASLR off in the L1/cold", "tick-start-noaslr-" x, "tick-boot-" x, x)
            rounds("input-driven later (SMOLVM_BASELINE)/cold", "start-map-baseline-" x, "boot-" x, x)
            rounds("timer-driven later (SMOLVM_BASELINE)/cold", "tick-start-baseline-" x, "tick-boot-" x, x)
            rounds("input-driven first (unpacking first)/later", "start-first-map-" x, "start-map-" x, x)
            rounds("input-driven first (served)/later", "start-first-" x, "start-map-" x, x)
            rounds("timer-driven first (unpacking first)/later", "tick-first-map-" x, "tick-start-" x, x)
            rounds("timer-driven first (served)/later", "tick-first-" x, "tick-start-" x, x)
            rounds("input-driven first (served, working set known)/later", "start-first-known-" x, "start-map-" x, x)
            rounds("timer-driven first (served, working set known)/later", "tick-first-known-" x, "tick-start-" x, x)
            rounds("input-driven first of a re-saved copy (carried working set)/later", "start-first-carried-" x, "start-map-" x, x)
            rounds("timer-driven first of a re-saved copy (carried working set)/later", "tick-first-carried-" x, "tick-start-" x, x)
            rounds("input-driven later, this build/SMOLVM_BASELINE (alternated)", "start-map-" x, "start-map-baseline-" x, x)
            rounds("timer-driven later, this build/SMOLVM_BASELINE (alternated)", "tick-start-" x, "tick-start-baseline-" x, x)
            rounds("input-driven first (unpacking first), this build/SMOLVM_BASELINE", "start-first-map-" x, "start-first-map-baseline-" x, x)
            rounds("input-driven first (served), this build/SMOLVM_BASELINE", "start-first-" x, "start-first-baseline-" x, x)
            rounds("timer-driven first (unpacking first), this build/SMOLVM_BASELINE", "tick-first-map-" x, "tick-first-map-baseline-" x, x)
            rounds("timer-driven first (served), this build/SMOLVM_BASELINE", "tick-first-" x, "tick-first-baseline-" x, x)
            rounds("input-driven first (unpacking first)/later, SMOLVM_BASELINE", "start-first-map-baseline-" x, "start-map-baseline-" x, x)
            rounds("timer-driven first (unpacking first)/later, SMOLVM_BASELINE", "tick-first-map-baseline-" x, "tick-start-baseline-" x, x)
        }
    }
    # A ratio round by round (the rows last of each, in order: a first
    # start before the rounds is left out), and the median of those.
    function rounds(what, top, bottom, x,   a, b, na, nb, k, list) {
        na = split(v[top], a, " ")
        nb = split(v[bottom], b, " ")
        for (k = 0; k < na && k < nb; k++)
            if (b[nb - k] > 0) {
                list = sprintf("%.3f", a[na - k] / b[nb - k]) " " list
            }
        if (list != "")
            printf "mem %s, %s per round: %s(median %.3f)\n", x, what, list, median(list)
    }' "$out" >> "$facts"
# Each start's split, medians, in ms from the launch.
awk -F'\t' "$BENCH_MEDIAN_AWK"'{ for (c = 2; c <= 6; c++) v[$1, c] = v[$1, c] " " $c; seen[$1] = 1 }
    END {
        for (m in seen)
            printf "split %s (ms from launch): launched %.0f, memory restored %.0f, first vCPU entry %.0f, first guest output %.0f, the line %.0f\n",
                m, median(v[m, 2]), median(v[m, 3]), median(v[m, 4]), median(v[m, 5]), median(v[m, 6])
    }' "$splits" | sort >> "$facts"
exec 8>&-
rm -rf "$work"
