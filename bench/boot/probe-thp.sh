#!/bin/bash
# Probe (not a test): what the L1's transparent huge pages do to a micro
# kernel boot (issue 25). In this L1 a boot's guest RAM is backed by 2 MiB
# pages (probe-npf.sh: KVM maps all of it with 2 MiB entries), and the
# L1's clear_page of those pages is 10-13% of all samples of a boot
# (probe-vmm-time.sh). Rows: smolvm and QEMU -M microvm booting the same
# micro kernel with the L1's THP "always" and "never", interleaved, from
# a settled L1; wall time to the marker and the guest's TSC there.
# RESULTS/probe-thp/times.tsv: mode, row, ms, guest ms.
# usage (inside the L1): SCENARIOS=boot_bench tests/nested/run bench/boot/probe-thp.sh
set -u
# shellcheck source=probe-lib.sh
. "$(dirname "$(realpath "$0")")/probe-lib.sh"
probe_begin "$1" probe-thp
rounds=${PROBE_RUNS:-5}
thp=/sys/kernel/mm/transparent_hugepage/enabled
micro_commands "$PROBE_CMDLINE"
row() {
    local mode=$1 who=$2 ms kill='' cmd
    if [ "$who" = smolvm ]; then cmd=("${smolvm_micro[@]}"); else cmd=("${qemu_micro[@]}") kill=1; fi
    echo "$mode" > "$thp"
    bench_settle
    BENCH_KILL_AT_MARKER=$kill BENCH_LOG=$out/$mode-$who.log bench_ms_to ms "$PROBE_MARKER" "${cmd[@]}" < /dev/null
    printf '%s\t%s\t%s\t%s\n' "$mode" "$who" "$ms" "$(guest_ms "$out/$mode-$who.log")" >> "$out/times.tsv"
}
before=$(sed 's/.*\[\(.*\)\].*/\1/' "$thp")
cat "$MICRO_KERNEL" "$INITRD_MICRO" > /dev/null
ms=
bench_ms_to ms "$PROBE_MARKER" "${smolvm_micro[@]}" < /dev/null
BENCH_KILL_AT_MARKER=1 bench_ms_to ms "$PROBE_MARKER" "${qemu_micro[@]}" < /dev/null
: > "$out/times.tsv"
rows=("always smolvm" "never smolvm" "always qemu" "never qemu")
for ((i = 0; i < rounds; i++)); do
    for ((j = 0; j < ${#rows[@]}; j++)); do
        if ((i % 2)); then k=$(((i + ${#rows[@]} - j) % ${#rows[@]})); else k=$(((i + j) % ${#rows[@]})); fi
        # shellcheck disable=SC2086
        row ${rows[k]}
    done
done
echo "$before" > "$thp"
awk -F'\t' "$BENCH_MEDIAN_AWK"'
    { w[$1 " " $2] = w[$1 " " $2] " " $3; g[$1 " " $2] = g[$1 " " $2] " " $4 }
    END { for (k in w) printf "%-14s wall %7.1f guest %7.1f   (%s |%s)\n", k, median(w[k]), median(g[k]), w[k], g[k] }' \
    "$out/times.tsv" | sort > "$out/summary.txt"
echo "PASS probe-thp" >> "$results/summary"
