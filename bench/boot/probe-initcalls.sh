#!/bin/bash
# Probe (not a test): where the micro kernel's own boot goes, by its log.
# Boots it quietly with initcall_debug (KERN_DEBUG lines: kept in the log
# buffer, not printed, so the console costs nothing) under smolvm and QEMU
# -M microvm, PROBE_RUNS times each (default 2), rows interleaved, and has
# the test init print the log (smolvm.test=dmesg). PROBE_EXTRA: more
# command-line options for every boot. RESULTS/probe-initcalls/ROW.N.log:
# each boot's console; bench/boot/initcalls-report reads them.
# usage (inside the L1): SCENARIOS=boot_bench tests/nested/run bench/boot/probe-initcalls.sh
set -u
# shellcheck source=probe-lib.sh
. "$(dirname "$(realpath "$0")")/probe-lib.sh"
probe_begin "$1" probe-initcalls
rounds=${PROBE_RUNS:-2}
micro_commands "$PROBE_CMDLINE initcall_debug log_buf_len=1M smolvm.test=dmesg ${PROBE_EXTRA:-}"
# row LABEL N: one boot to the end of the printed log (QEMU killed there:
# its guest spins after the micro kernel's reboot).
row() {
    local label=$1 n=$2 ms cmd kill=
    case $label in
    smolvm-micro) cmd=("${smolvm_micro[@]}") ;;
    qemu-micro) cmd=("${qemu_micro[@]}") kill=1 ;;
    esac
    bench_settle
    BENCH_KILL_AT_MARKER=$kill BENCH_LOG=$out/$label.$n.log bench_ms_to ms DMESG-END "${cmd[@]}" < /dev/null
    echo "$label $n $ms" >> "$out/times.txt"
}
cat "$MICRO_KERNEL" "$INITRD_MICRO" > /dev/null
for ((i = 0; i < rounds; i++)); do
    if ((i % 2)); then row qemu-micro "$i"; row smolvm-micro "$i"
    else row smolvm-micro "$i"; row qemu-micro "$i"; fi
done
if grep -q DMESG-END "$out"/smolvm-micro.0.log; then
    echo "PASS probe-initcalls" >> "$results/summary"
else
    echo "FAIL probe-initcalls: no log printed" >> "$results/summary"
fi
