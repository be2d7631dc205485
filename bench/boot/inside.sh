#!/bin/bash
# Runs inside a KVM host (the L1 guest, or directly): boots the same kernel
# and initrd RUNS times with smolvm and with QEMU -M microvm, timing wall
# time from launch to the init's first line; with MICRO_KERNEL, smolvm's
# micro kernel too, under smolvm, QEMU -M microvm and kvmtool (when there),
# and one smolvm --trace-boot of it (RESULTS/micro-trace.txt: the split
# between VMM, kernel and init). The micro kernel's rows boot INITRD_MICRO
# (no modules), the stock kernel's INITRD (RESULTS/initrds.tsv: which, and
# their sizes). Writes RESULTS/times.tsv.
# With SMOLVM_BASELINE (another smolvm binary), that one's micro boots too;
# with MICRO_KERNEL_VARIANT (another micro kernel), that one under both VMMs.
# usage: inside.sh RESULTS_DIR   (RESULTS_DIR/params.sh as for the nested tier)
set -u
results=$1
# shellcheck source=../lib.sh
. "$(dirname "$(realpath "$0")")/../lib.sh" # bench_ms_to
# shellcheck source=/dev/null
. "$results/params.sh"
RUNS=${RUNS:-5}
MARKER=SMOLVM-GUEST-UP
CMDLINE="console=ttyS0 quiet panic=-1"
MICRO_CMDLINE="$CMDLINE smolvm.end=reboot"
# The micro kernel's rows (smolvm, QEMU, kvmtool alike) boot the initrd a
# micro appliance has: busybox and the init, no modules (INITRD_MICRO: the
# kernel has all it uses built in, and `image build --kernel micro` puts
# no modules in either). The stock kernel's row keeps INITRD, with the
# Debian modules it needs to find its virtio devices (4.4 MB of 6.4 MB,
# unpacked by the kernel before /init runs). (An older params.sh without
# INITRD_MICRO: the one initrd for all rows, as before.)
MICRO_INITRD=${INITRD_MICRO:-$INITRD}
out=$results/times.tsv
: > "$out"
printf 'stock\t%s\t%s\nmicro\t%s\t%s\n' "$INITRD" "$(stat -c %s "$INITRD")" \
    "$MICRO_INITRD" "$(stat -c %s "$MICRO_INITRD")" > "$results/initrds.tsv"

# time_to_marker LABEL METRIC COMMAND...: milliseconds from launch to MARKER
# (the console's lines kept in RESULTS/LABEL-METRIC.log).
time_to_marker() {
    local label=$1 metric=$2 ms
    shift 2
    bench_settle
    BENCH_LOG=$results/$label-$metric.log bench_ms_to ms "$MARKER" "$@" < /dev/null
    echo -e "$label\t$metric\t$ms" | tee -a "$out"
}

# (Ended at the marker, as QEMU's: kvmtool resets on the micro kernel's
# reboot through its i8042, not asked for here.)
kvmtool_micro=("${KVMTOOL:-}" run --nodefaults --network mode=none -k "${MICRO_BZIMAGE:-}"
    -i "$MICRO_INITRD" -m 256 -c 1 -p "$MICRO_CMDLINE")

# The micro kernel's boot under smolvm and under QEMU (QEMU's ended at the
# marker: after the micro kernel's reboot its guest was seen to spin until
# the 300 s timeout; the figure is the marker's).
# One vCPU, as QEMU's -smp 1 and kvmtool's -c 1 (smolvm's default, said).
# micro_args: all but the command line (the runs below that add to it).
micro_args=(--cpus 1 --kernel "${MICRO_KERNEL:-}" --initrd "$MICRO_INITRD" --mem 256M
    --virtio-discovery cmdline)
smolvm_micro=(run "${micro_args[@]}" --cmdline "$MICRO_CMDLINE")
qemu_micro=(qemu-system-x86_64 -M "microvm,acpi=off" -accel kvm -cpu host -m 256M -smp 1
    -nodefaults -no-user-config -nographic -no-reboot -serial stdio -kernel "${MICRO_KERNEL:-}"
    -initrd "$MICRO_INITRD" -append "$MICRO_CMDLINE")

# One boot of the micro kernel under each VMM first, not timed, and the
# stock kernel's files read: the first boot of a file in the L1 reads it
# over 9p (the host's tree) and warms the L1, and round 1 charged that to
# whoever booted it first (smolvm-micro, first: 2533 ms in round 1, then
# 1055 and 730; the baseline, second: 1806, then 1132 and 945).
cat "$KERNEL" "$INITRD" "$MICRO_INITRD" > /dev/null
if [ -n "${MICRO_KERNEL:-}" ]; then
    bench_ms_to ms "$MARKER" "$SMOLVM" "${smolvm_micro[@]}" < /dev/null
    [ -z "${SMOLVM_BASELINE:-}" ] ||
        bench_ms_to ms "$MARKER" "$SMOLVM_BASELINE" "${smolvm_micro[@]}" < /dev/null
    BENCH_KILL_AT_MARKER=1 bench_ms_to ms "$MARKER" "${qemu_micro[@]}" < /dev/null
    [ -z "${MICRO_BZIMAGE:-}" ] ||
        BENCH_KILL_AT_MARKER=1 bench_ms_to ms "$MARKER" "${kvmtool_micro[@]}" < /dev/null
fi

# The micro kernel's rows of a round, each a function (run in either order).
# The micro kernel has no ACPI: its devices on the command line, and it
# cannot power off (it would halt and the VMM wait): the init reboots.
row_smolvm_micro() {
    time_to_marker smolvm-micro boot-to-init "$SMOLVM" "${smolvm_micro[@]}"
}
# Another smolvm binary (SMOLVM_BASELINE: before a change), same boot.
row_baseline_micro() {
    time_to_marker smolvm-baseline-micro boot-to-init "$SMOLVM_BASELINE" "${smolvm_micro[@]}"
}
# The same boot with the stock row's initrd (Debian's modules in it,
# unused by the micro kernel): what those 4.4 MB cost it.
row_smolvm_micro_stock_initrd() {
    time_to_marker smolvm-micro-stock-initrd boot-to-init "$SMOLVM" run \
        "${micro_args[@]/#"$MICRO_INITRD"/$INITRD}" --cmdline "$MICRO_CMDLINE"
}
# The same devices as QEMU's guest here (a serial port only): smolvm
# adds a virtio-rng and a virtio-vsock by default.
row_smolvm_micro_same_devices() {
    time_to_marker smolvm-micro-same-devices boot-to-init "$SMOLVM" "${smolvm_micro[@]}" \
        --no-rng --no-vsock
}
row_qemu_micro() {
    BENCH_KILL_AT_MARKER=1 time_to_marker qemu-microvm-micro boot-to-init "${qemu_micro[@]}"
}
# Both with a serial port and a virtio-rng (QEMU's on virtio-mmio, on
# the command line by microvm itself): whether the rng's cost in
# smolvm's guest (its probe, the hwrng thread feeding the crng before
# /init) is the guest's, paid under QEMU too. (vsock under QEMU needs
# vhost in the L1: left out.)
row_smolvm_micro_rng() {
    time_to_marker smolvm-micro-rng boot-to-init "$SMOLVM" "${smolvm_micro[@]}" --no-vsock
}
row_qemu_micro_rng() {
    BENCH_KILL_AT_MARKER=1 time_to_marker qemu-microvm-micro-rng boot-to-init "${qemu_micro[@]}" \
        -device virtio-rng-device
}
# Another micro kernel (MICRO_KERNEL_VARIANT: a configuration being
# tried), under both VMMs, same devices as the cached one's runs.
# (Skipped while its file is not there yet: it may still be building.)
row_smolvm_micro_variant() {
    [ -s "$MICRO_KERNEL_VARIANT" ] || return 0
    time_to_marker smolvm-micro-variant boot-to-init "$SMOLVM" \
        "${smolvm_micro[@]/#"$MICRO_KERNEL"/$MICRO_KERNEL_VARIANT}"
}
row_qemu_micro_variant() {
    [ -s "$MICRO_KERNEL_VARIANT" ] || return 0
    BENCH_KILL_AT_MARKER=1 time_to_marker qemu-microvm-micro-variant boot-to-init \
        "${qemu_micro[@]/#"$MICRO_KERNEL"/$MICRO_KERNEL_VARIANT}"
}
# kvmtool (KVMTOOL, with the micro kernel's vmlinux wrapped as a
# bzImage: all it boots; its guest decompresses it). --nodefaults: the
# same command line as the others' (kvmtool would add its own options
# and root=/dev/vda); its console is the same 8250 at ttyS0; no network
# (QEMU's guest has none; the micro kernel has no PCI to find one on).
row_kvmtool_micro() {
    BENCH_KILL_AT_MARKER=1 time_to_marker kvmtool-micro boot-to-init "${kvmtool_micro[@]}"
}
# smolvm booting that bzImage as it is (--no-kernel-cache: its guest
# decompresses too) is the same file under both.
row_smolvm_micro_bzimage() {
    time_to_marker smolvm-micro-bzimage boot-to-init "$SMOLVM" run --no-kernel-cache \
        --kernel "$MICRO_BZIMAGE" --initrd "$MICRO_INITRD" --mem 256M --virtio-discovery cmdline \
        --cmdline "$MICRO_CMDLINE"
}
# round_order I N: the order of N rows in round I (their indexes, one a
# line), a Williams design: round I starts at row I - 1 and goes 0, +1, -1,
# +2, -2, ... from it, even rounds backwards. Each row takes each place
# about equally often and follows several other rows: with N = 9 and 9
# rounds, each place at most twice and at least 5 rows before each row.
# A row's place and the boot before it moved its time: forward/backward
# alternation left smolvm/QEMU at 0.45 in odd rounds and 0.66 in even
# ones; plain rotation (each round starting one row later) kept every row
# after the same row in every round (the virtio-rng row always after a
# QEMU killed at its marker).
round_order() {
    local i=$1 n=$2 lo=1 hi=$(($2 - 1)) step=() r
    [ "$n" -gt 0 ] || return 0
    step=(0)
    while [ "${#step[@]}" -lt "$n" ]; do
        step+=("$lo") && lo=$((lo + 1))
        [ "${#step[@]}" -lt "$n" ] && step+=("$hi") && hi=$((hi - 1))
    done
    for ((r = 0; r < n; r++)); do
        echo $(((i - 1 + step[i % 2 ? r : n - 1 - r]) % n))
    done
}
micro_rows=(row_smolvm_micro)
[ -z "${SMOLVM_BASELINE:-}" ] || micro_rows+=(row_baseline_micro)
micro_rows+=(row_smolvm_micro_stock_initrd row_smolvm_micro_same_devices row_qemu_micro
    row_smolvm_micro_rng row_qemu_micro_rng)
[ -z "${MICRO_KERNEL_VARIANT:-}" ] || micro_rows+=(row_smolvm_micro_variant row_qemu_micro_variant)
[ -z "${MICRO_BZIMAGE:-}" ] || micro_rows+=(row_kvmtool_micro row_smolvm_micro_bzimage)

for i in $(seq 1 "$RUNS"); do
    time_to_marker smolvm boot-to-init "$SMOLVM" run --kernel "$KERNEL" --initrd "$INITRD" \
        --mem 256M --cmdline "$CMDLINE"
    # The seccomp filters' cost (issue 23): the same boot without them.
    time_to_marker smolvm boot-to-init-seccomp-off "$SMOLVM" run --seccomp=off --kernel "$KERNEL" \
        --initrd "$INITRD" --mem 256M --cmdline "$CMDLINE"
    time_to_marker qemu-microvm boot-to-init qemu-system-x86_64 -M microvm -accel kvm -cpu host \
        -m 256M -smp 1 -nodefaults -no-user-config -nographic -no-reboot -serial stdio \
        -kernel "$KERNEL" -initrd "$INITRD" -append "$CMDLINE"
    [ -n "${MICRO_KERNEL:-}" ] || continue
    for r in $(round_order "$i" "${#micro_rows[@]}"); do
        "${micro_rows[r]}"
    done
done
# Where each kernel's boot goes (without quiet: the kernel's lines are
# what the trace reads, so the console's cost is in the kernel's share);
# not timed, so bounded.
timeout -k 10 300 "$SMOLVM" run --kernel "$KERNEL" --initrd "$INITRD" --mem 256M \
    --cmdline "console=ttyS0 panic=-1" --trace-until "$MARKER" \
    < /dev/null > "$results/stock-trace.out" 2> "$results/stock-trace.txt"
if [ -n "${MICRO_KERNEL:-}" ]; then
    timeout -k 10 300 "$SMOLVM" run "${micro_args[@]}" \
        --cmdline "console=ttyS0 panic=-1 smolvm.end=reboot" --trace-until "$MARKER" < /dev/null > "$results/micro-trace.out" 2> "$results/micro-trace.txt"
fi
# The quiet boot as its kernel saw it, under smolvm and QEMU side by side:
# initcall_debug times each initcall, and the init prints the kernel's log
# after the marker (smolvm.test=dmesg), so the console's cost (tens of ms
# a line in an L1) is not in the times. Ended at the log's end (QEMU's
# guest may spin after the reboot). Not timed.
if [ -n "${MICRO_KERNEL:-}" ]; then
    profile_cmdline="$MICRO_CMDLINE initcall_debug log_buf_len=1M smolvm.test=dmesg"
    BENCH_KILL_AT_MARKER=1 BENCH_LOG=$results/micro-profile.out bench_ms_to ms DMESG-END \
        "$SMOLVM" run "${micro_args[@]}" --cmdline "$profile_cmdline" < /dev/null
    BENCH_KILL_AT_MARKER=1 BENCH_LOG=$results/qemu-micro-profile.out bench_ms_to ms DMESG-END \
        qemu-system-x86_64 -M microvm,acpi=off -accel kvm -cpu host -m 256M -smp 1 -nodefaults \
        -no-user-config -nographic -no-reboot -serial stdio -kernel "$MICRO_KERNEL" \
        -initrd "$MICRO_INITRD" -append "$profile_cmdline" < /dev/null
fi
# The timed (quiet) boot's split: VMM until the first vCPU entry (the
# trace), then the kernel until it ran /init and the init until it printed
# the marker, by the kernel's clock: the init prints the kernel's log after
# the marker (smolvm.test=dmesg; not in the time to the marker).
if [ -n "${MICRO_KERNEL:-}" ]; then
    timeout -k 10 300 "$SMOLVM" run "${micro_args[@]}" --cmdline "$MICRO_CMDLINE smolvm.test=dmesg" \
        --trace-until "$MARKER" \
        < /dev/null > "$results/micro-quiet-trace.out" 2> "$results/micro-quiet-trace.txt"
fi
# Each VMM's exits on the micro kernel's quiet boot (the timed one), by
# reason, I/O port and MMIO page: kvm's tracepoints through perf, where
# perf is (not timed). RESULTS/LABEL-exits.txt, most frequent first.
exits_of() {
    local label=$1 data=$results/$1.perf ms
    shift
    [ -d /sys/kernel/tracing/events/kvm ] || mount -t tracefs tracefs /sys/kernel/tracing 2> /dev/null
    # Up to the marker only: QEMU's guest was seen to spin after the micro
    # kernel's reboot until killed (a 750 MB recording). perf stops the VMM
    # on SIGINT.
    BENCH_KILL_AT_MARKER=1 BENCH_KILL_SIGNAL=INT BENCH_LOG=$results/$label-exits.out \
        bench_ms_to ms "$MARKER" perf record -q -m 1024 -o "$data" -e kvm:kvm_exit \
        -e kvm:kvm_pio -e kvm:kvm_mmio -e kvm:kvm_userspace_exit -e kvm:kvm_msr -- "$@" \
        < /dev/null
    perf script -i "$data" -F event,trace 2> /dev/null | awk '
        { e = $1; sub(/^kvm:/, "", e); sub(/:$/, "", e) }
        e == "kvm_exit" { for (i = 2; i < NF; i++) if ($i == "reason") k = "exit " $(i + 1) }
        e == "kvm_pio" { k = $2 " " $4 }
        e == "kvm_mmio" { k = "mmio " $3 " " substr($7, 1, length($7) - 3) "xxx" }
        e == "kvm_userspace_exit" { k = "to-vmm " $3 }
        e == "kvm_msr" { k = $2 " " $3 }
        { n[k]++; if (e == "kvm_exit") total++ }
        END { printf "%8d exits in all\n", total; for (k in n) printf "%8d %s\n", n[k], k }' |
        sort -rn > "$results/$label-exits.txt"
    rm -f "$data"
}
if [ -n "${MICRO_KERNEL:-}" ] && command -v perf > /dev/null; then
    exits_of smolvm-micro "$SMOLVM" "${smolvm_micro[@]}"
    exits_of qemu-microvm-micro "${qemu_micro[@]}"
    [ -z "${MICRO_BZIMAGE:-}" ] || exits_of kvmtool-micro "${kvmtool_micro[@]}"
    # smolvm's own system calls on that boot, each with its time (strace -r
    # -T: where the VMM's share goes; the guest's exits to smolvm show as
    # KVM_RUN returns). Slowed by strace: for the proportions.
    if command -v strace > /dev/null; then
        timeout -k 10 300 strace -f -r -T -o "$results/smolvm-micro.strace" "$SMOLVM" \
            "${smolvm_micro[@]}" < /dev/null > /dev/null 2>&1
    fi
    # QEMU's guest timeline without quiet, beside smolvm's micro-trace.out
    # (bounded tighter: it may spin after the reboot, as above).
    timeout -k 10 120 qemu-system-x86_64 -M microvm,acpi=off -accel kvm -cpu host \
        -m 256M -smp 1 -nodefaults -no-user-config -nographic -no-reboot -serial stdio \
        -kernel "$MICRO_KERNEL" -initrd "$MICRO_INITRD" -append "console=ttyS0 panic=-1 smolvm.end=reboot" \
        < /dev/null > "$results/qemu-micro-trace.out" 2>&1
    # kvmtool's likewise (its guest decompresses before the kernel's first
    # timestamp; the wall time to the marker, last, shows what comes before).
    if [ -n "${MICRO_BZIMAGE:-}" ]; then
        BENCH_KILL_AT_MARKER=1 BENCH_LOG=$results/kvmtool-micro-trace.out bench_ms_to ms \
            "$MARKER" "${kvmtool_micro[@]/ quiet/}" < /dev/null
        echo "wall time to $MARKER: $ms ms" >> "$results/kvmtool-micro-trace.out"
    fi
fi
