#!/bin/bash
# Inside a KVM host: sequential disk throughput measured by the same guest
# (Debian kernel, busybox dd) on virtio-blk under smolvm and under QEMU
# -M microvm, each with a fresh 128 MiB raw image. RESULTS/times.tsv.
set -u
results=$1
# shellcheck source=/dev/null
. "$results/params.sh"
CMDLINE="console=ttyS0 quiet panic=-1 smolvm.test=blkbench"
work=$(mktemp -d "${TMPDIR:-/tmp}/blkbench.XXXXXX")
out=$results/times.tsv
: > "$out"

record() { # record VMM < console output
    sed -n 's/.*BENCH \([A-Za-z0-9-]*\) \([0-9.]*\).*/\1\t\2/p' | sed "s/^/$1\t/" | tee -a "$out"
}

for i in $(seq 1 "${RUNS:-2}"); do
    truncate -s 128M "$work/disk.raw"
    timeout 600 "$SMOLVM" run --kernel "$KERNEL" --initrd "$INITRD" --mem 512M \
        --cmdline "$CMDLINE" --disk "$work/disk.raw" < /dev/null 2>&1 | record smolvm
    rm -f "$work/disk.raw"
    truncate -s 128M "$work/disk.raw"
    timeout 600 qemu-system-x86_64 -M microvm -accel kvm -cpu host -m 512M -smp 1 \
        -nodefaults -no-user-config -nographic -no-reboot -serial stdio \
        -kernel "$KERNEL" -initrd "$INITRD" -append "$CMDLINE" \
        -drive id=d0,file="$work/disk.raw",format=raw,if=none,cache=writeback \
        -device virtio-blk-device,drive=d0 < /dev/null 2>&1 | record qemu-microvm
    rm -f "$work/disk.raw"
done
rm -rf "$work"
