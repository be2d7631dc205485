#!/bin/bash
# Inside a KVM host: the fsbench guest (tests/nested/guest-init.sh) on a
# fresh share, under smolvm (virtio-fs) and QEMU -M microvm (9p).
# RESULTS/times.tsv.
set -u
# smolvm says at exit where its virtio-fs requests spent their time
# (per opcode: console-smolvm.log).
export SMOLVM_FS_STATS=1
results=$1
# shellcheck source=/dev/null
. "$results/params.sh"
CMDLINE="console=ttyS0 quiet panic=-1 smolvm.test=fsbench fsbench.mb=$FS_BENCH_MB"
work=$(mktemp -d "${TMPDIR:-/tmp}/fsbench.XXXXXX")
out=$results/times.tsv
: > "$out"

record() { # record VMM < console output
    tee -a "$results/console-$1.log" |
        sed -n 's/.*BENCH \([A-Za-z0-9-]*\) \([0-9.]*\).*/\1\t\2/p' | sed "s/^/$1\t/" | tee -a "$out"
}

fresh_share() {
    rm -rf "$work/share"
    mkdir -p "$work/share/x"
    cp "$results/tree.tar" "$work/share/"
}

for i in $(seq 1 "${RUNS:-1}"); do
    fresh_share
    timeout 1800 "$SMOLVM" run --kernel "$KERNEL" --initrd "$INITRD" --mem 512M \
        --cmdline "$CMDLINE fsbench.fs=virtiofs" --share "$work/share:bench" < /dev/null 2>&1 |
        record smolvm
    fresh_share
    timeout 1800 qemu-system-x86_64 -M microvm -accel kvm -cpu host -m 512M -smp 1 \
        -nodefaults -no-user-config -nographic -no-reboot -serial stdio \
        -kernel "$KERNEL" -initrd "$INITRD" -append "$CMDLINE fsbench.fs=9p" \
        -fsdev local,id=f0,path="$work/share",security_model=none \
        -device virtio-9p-device,fsdev=f0,mount_tag=bench < /dev/null 2>&1 | record qemu-microvm
done
rm -rf "$work"
