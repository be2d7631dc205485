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
results=$1
# shellcheck source=/dev/null
. "$results/params.sh"
# shellcheck source=../lib.sh
. "$(dirname "$(realpath "$0")")/../lib.sh" # bench_ms_to, bench_settle
out=$results/probe-initcalls
mkdir -p "$out"
: > "$results/summary"
rounds=${PROBE_RUNS:-2}
CMDLINE="console=ttyS0 quiet panic=-1 smolvm.end=reboot initcall_debug log_buf_len=1M smolvm.test=dmesg ${PROBE_EXTRA:-}"
smolvm_micro=("$SMOLVM" run --cpus 1 --kernel "$MICRO_KERNEL" --initrd "$INITRD_MICRO" --mem 256M
    --virtio-discovery cmdline --cmdline "$CMDLINE")
qemu_micro=(qemu-system-x86_64 -M "microvm,acpi=off" -accel kvm -cpu host -m 256M -smp 1
    -nodefaults -no-user-config -nographic -no-reboot -serial stdio -kernel "$MICRO_KERNEL"
    -initrd "$INITRD_MICRO" -append "$CMDLINE")
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
