# shellcheck shell=bash
# What bench/boot's probes (not tests: each runs inside one L1 as
# tests/nested/run's script) share: their start, and the micro kernel's
# boot under smolvm and QEMU -M microvm, the same machine on both.

PROBE_MARKER=SMOLVM-GUEST-UP
PROBE_CMDLINE="console=ttyS0 quiet panic=-1 smolvm.end=reboot"
# The L1's TSC (QEMU-TCG's EPYC model) in kHz: guest TSC / this = ms.
PROBE_TSC_KHZ=2793523

# probe_begin RESULTS NAME: the run's parameters read, bench/lib.sh loaded
# (bench_ms_to, bench_settle, BENCH_MEDIAN_AWK), the summary emptied and
# out=RESULTS/NAME made.
probe_begin() {
    results=$1
    # shellcheck source=/dev/null
    . "$results/params.sh"
    # shellcheck source=../lib.sh
    . "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
    out=$results/$2
    mkdir -p "$out"
    : > "$results/summary"
}

# micro_commands CMDLINE [MEM]: smolvm_micro and qemu_micro, the two
# command lines that boot the micro kernel and its initrd (MEM, 256M), one
# vCPU, the kernel's command line CMDLINE.
micro_commands() {
    local cmdline=$1 mem=${2:-256M}
    smolvm_micro=("$SMOLVM" run --cpus 1 --kernel "$MICRO_KERNEL" --initrd "$INITRD_MICRO"
        --mem "$mem" --virtio-discovery cmdline --cmdline "$cmdline")
    qemu_micro=(qemu-system-x86_64 -M "microvm,acpi=off" -accel kvm -cpu host -m "$mem" -smp 1
        -nodefaults -no-user-config -nographic -no-reboot -serial stdio
        -kernel "$MICRO_KERNEL" -initrd "$INITRD_MICRO" -append "$cmdline")
}

# guest_ms LOG: the guest's own ms at its marker (the TSC the test init
# prints; 0 without one).
guest_ms() {
    local tsc
    tsc=$(tr -d '\r' < "$1" | sed -n "s/.*$PROBE_MARKER tsc=\([0-9]*\).*/\1/p" | tail -n 1)
    echo $((${tsc:-0} / PROBE_TSC_KHZ))
}
