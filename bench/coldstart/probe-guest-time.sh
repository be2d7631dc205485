#!/bin/bash
# Probe (not a test): what a restored guest does between its first vCPU
# entry and its first output (issue 18). For the timer-driven guest (a
# line every 20 ms, saved mid-count) and the input-driven one (saved at
# its ready line, answering a line on stdin), a later start (memory cache
# and working set made by two starts before) is traced with every KVM
# event of the L1 (exits and their reasons, MSR writes such as the
# TSC deadline, LAPIC accesses, injected interrupts, port I/O, NPT faults,
# kvmclock updates) and the scheduler's switches, from the launch
# (a trace_marker line) to the marker. RESULTS/probe-guest/NAME-N.trace
# and .log (the start's --trace-boot --json); RESULTS/probe-guest/summary.txt:
# each traced start's first entry and first byte out (ms from the launch)
# and the exits between them by reason (npf: the guest's NPT faults).
# usage: SCENARIOS=x tests/nested/run bench/coldstart/probe-guest-time.sh
set -u
results=$1
# shellcheck source=/dev/null
. "$results/params.sh"
here=$(dirname "$(realpath "$0")")
# shellcheck source=../lib.sh
. "$here/../lib.sh" # bench_ms_to
out=$results/probe-guest
mkdir -p "$out"
: > "$results/summary"
# shellcheck source=probe-lib.sh
. "$here/probe-lib.sh" # PROBE_WORK, probe_save_at
work=$PROBE_WORK
cp "$SMOLVM" "$work/smolvm"
SMOLVM=$work/smolvm
tracing=/sys/kernel/tracing
[ -d "$tracing/events/kvm" ] || mount -t tracefs nodev "$tracing" 2> /dev/null

# start_to NAME MARKER INPUT COMMAND...: one start to MARKER (stdin: INPUT
# as a line, or none), stopped by SIGTERM there.
start_to() {
    local name=$1 marker=$2 input=$3 ms
    shift 3
    : > "$out/$name.log"
    if [ "$input" = none ]; then
        BENCH_LOG=$out/$name.log BENCH_KILL_AT_MARKER=1 BENCH_KILL_SIGNAL=TERM bench_ms_to ms "$marker" "$@" < "$work/quiet"
    else
        BENCH_LOG=$out/$name.log BENCH_KILL_AT_MARKER=1 BENCH_KILL_SIGNAL=TERM bench_ms_to ms "$marker" "$@" <<< "$input"
    fi
    echo "$name: $ms ms" >> "$out/times.txt"
}

# traced NAME MARKER INPUT COMMAND...: start_to with every KVM event and
# the scheduler's switches and wake-ups traced.
traced() {
    local name=$1 e
    echo 0 > "$tracing/tracing_on"
    echo 65536 > "$tracing/buffer_size_kb"
    : > "$tracing/trace"
    echo 1 > "$tracing/events/kvm/enable"
    for e in sched_switch sched_wakeup; do echo 1 > "$tracing/events/sched/$e/enable"; done
    echo 1 > "$tracing/tracing_on"
    echo "LAUNCH $name" > "$tracing/trace_marker"
    start_to "$@"
    echo "MARKER-SEEN $name" > "$tracing/trace_marker"
    echo 0 > "$tracing/tracing_on"
    echo 0 > "$tracing/events/kvm/enable"
    for e in sched_switch sched_wakeup; do echo 0 > "$tracing/events/sched/$e/enable"; done
    cp "$tracing/trace" "$out/$name.trace"
    : > "$tracing/trace"
    echo "$name: $(awk "$SPLIT_AWK" "$out/$name.trace")" >> "$out/summary.txt"
}

# From a trace of one start (the trace_marker LAUNCH line first): the
# first vCPU entry and the guest's first byte to the UART (THR, port
# 0x3f8), in ms from the launch, and the exits between them by reason.
# shellcheck disable=SC2016
SPLIT_AWK='
{
    ts = ""
    for (i = 1; i <= NF; i++)
        if ($i ~ /^[0-9]+\.[0-9]+:$/) { ts = substr($i, 1, length($i) - 1) * 1000; ev = $(i + 1); break }
    if (ts == "") next
    if (ev == "tracing_mark_write:" && launch == "") launch = ts
    if (launch == "" || out != "") next
    if (ev == "kvm_entry:" && entry == "") entry = ts
    if (entry == "") next
    if (ev == "kvm_pio:" && /pio_write at 0x3f8 /) { out = ts; next }
    if (ev == "kvm_exit:") { r = $0; sub(/.*reason /, "", r); sub(/ .*/, "", r); exits[r]++; total++ }
}
END {
    if (entry == "" || out == "") { print "no first entry or no output traced"; exit }
    line = sprintf("first vCPU entry %.1f ms from the launch, first byte out %.1f (+%.1f ms): %d exits,", entry - launch, out - launch, out - entry, total)
    for (r in exits) line = line sprintf(" %s %d", r, exits[r])
    print line
}'


# guest NAME TEST SAVE_MARKER MARKER INPUT: save, make the cache and the
# working set, then time three later starts, the middle one traced.
guest() {
    local name=$1 test=$2 save_marker=$3 marker=$4 input=$5 bundle=$work/$1.smolmachine n
    probe_save_at "$bundle" "$test" "$save_marker"
    rm -rf "$XDG_CACHE_HOME/smolvm/memory"
    start_to "$name-first" "$marker" "$input" "$SMOLVM" start "$bundle" --name s --trace-boot --json
    start_to "$name-second" "$marker" "$input" "$SMOLVM" start "$bundle" --name s --trace-boot --json
    for n in 1 2 3; do
        start_to "$name-later-$n" "$marker" "$input" "$SMOLVM" start "$bundle" --name s --trace-boot --trace-until "$marker" --json
        traced "$name-traced-$n" "$marker" "$input" "$SMOLVM" start "$bundle" --name s --trace-boot --trace-until "$marker" --json
    done
    rm -f "$bundle"
}

guest tick tick "TICK 10" "TICK " none
guest input echo SMOLVM-GUEST-UP GUEST-GOT=go go
probe_done
echo "PASS probe-guest-time" >> "$results/summary"
