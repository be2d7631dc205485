#!/bin/sh
# /init of the L1 guest: the QEMU-TCG Linux that gives the nested tier a real
# /dev/kvm. It shares the host's tree read-only and a results folder writable,
# then runs one host script inside a chroot of the host tree, so smolvm and its
# test guests run from exactly the files the host built.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

arg() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
script=$(arg smolvm.script)

# Dependency order from modules.dep; the L1 has no modprobe database.
for m in irqbypass kvm ccp kvm-amd virtio_ring virtio virtio_pci_modern_dev \
         virtio_pci_legacy_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p; do
    insmod /modules/$m.ko 2>/dev/null || echo "l1: insmod $m failed"
done

mkdir -p /host
# The host tree is read-only and does not change while L1 runs: cached
# loosely, each binary and library crosses 9p once, not on every exec.
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose host /host ||
    echo "l1: no host share"
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
ln -sf /proc/self/fd /host/dev/fd
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts devpts /host/dev/pts
# Sockets and scratch files cannot live on 9p: give the chroot tmpfs for them.
# /tmp is covered only when the script does not live there itself.
mount -t tmpfs -o size=2g run /host/run
mkdir -p /host/run/tmp /host/run/home /host/run/l1-results
case "$script" in /tmp/*) ;; *) mount -t tmpfs -o size=2g tmp /host/tmp ;; esac
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 results /host/run/l1-results \
    || echo "l1: no results share"

if [ -c /dev/kvm ]; then echo "l1: /dev/kvm ready"; else echo "l1: no /dev/kvm"; fi
echo "l1: running $script"
out=/host/run/l1-results
chroot /host /bin/sh -c "cd / && export HOME=/run/home TMPDIR=/run/tmp SMOLVM_IN_L1=1 && \
    /bin/bash '$script' /run/l1-results" > $out/l1.log 2>&1
echo "$?" > $out/l1.rc
sync
echo "l1: done"
poweroff -f
