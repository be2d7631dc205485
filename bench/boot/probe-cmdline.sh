#!/bin/bash
# Probe (not a test): what one kernel command-line option (PROBE_OPTION,
# default noreplace-smp) does to the micro kernel's boot under smolvm and
# QEMU -M microvm, and to the stock kernel's under smolvm: the rows
# interleaved, each round in a rotated order, from a settled L1; the wall
# time to the marker and the guest's TSC there (ms since the vCPU's
# creation). RESULTS/probe-cmdline/times.tsv: row, ms, guest ms.
# usage (inside the L1): SCENARIOS=boot_bench tests/nested/run bench/boot/probe-cmdline.sh
set -u
# shellcheck source=probe-lib.sh
. "$(dirname "$(realpath "$0")")/probe-lib.sh"
probe_begin "$1" probe-cmdline
option=${PROBE_OPTION:-noreplace-smp}
rounds=${PROBE_RUNS:-7}
smolvm_stock=("$SMOLVM" run --kernel "$KERNEL" --initrd "$INITRD" --mem 256M --cmdline)
# row LABEL: one boot (QEMU's ended at the marker: its guest spins after
# the micro kernel's reboot), appended to times.tsv.
row() {
    local label=$1 ms cmd kill=
    case $label in *+opt) micro_commands "$PROBE_CMDLINE $option" ;; *) micro_commands "$PROBE_CMDLINE" ;; esac
    case $label in
    smolvm-micro*) cmd=("${smolvm_micro[@]}") ;;
    qemu-micro*) cmd=("${qemu_micro[@]}") kill=1 ;;
    smolvm-stock) cmd=("${smolvm_stock[@]}" "console=ttyS0 panic=-1 quiet") ;;
    smolvm-stock+opt) cmd=("${smolvm_stock[@]}" "console=ttyS0 panic=-1 quiet $option") ;;
    esac
    bench_settle
    BENCH_KILL_AT_MARKER=$kill BENCH_LOG=$out/$label.log bench_ms_to ms "$PROBE_MARKER" "${cmd[@]}" < /dev/null
    printf '%s\t%s\t%s\n' "$label" "$ms" "$(guest_ms "$out/$label.log")" >> "$out/times.tsv"
}
rows=(smolvm-micro smolvm-micro+opt qemu-micro qemu-micro+opt)
cat "$MICRO_KERNEL" "$INITRD_MICRO" "$KERNEL" "$INITRD" > /dev/null
row smolvm-micro
row qemu-micro
: > "$out/times.tsv"
for ((i = 0; i < rounds; i++)); do
    for ((j = 0; j < ${#rows[@]}; j++)); do
        # odd rounds backwards: each row after each other one
        if ((i % 2)); then row "${rows[(i + ${#rows[@]} - j) % ${#rows[@]}]}"; else row "${rows[(i + j) % ${#rows[@]}]}"; fi
    done
done
for ((i = 0; i < 3; i++)); do
    row smolvm-stock
    row smolvm-stock+opt
done
echo "PASS probe-cmdline" >> "$results/summary"
