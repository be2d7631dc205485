#!/bin/sh
# /init of the L1 guest: the QEMU-TCG Linux that gives the nested tier a real
# /dev/kvm. It shares the host's tree read-only and a results folder writable,
# then runs one host script with the host tree as its root, so smolvm and its
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
# A cgroup v2 whose cpu, memory and pids controllers are given to its
# children, as a host that delegates them: --cpu-quota and --mem-limit
# take effect here (scenario jail: jail-limits).
mount -t cgroup2 cgroup2 /host/sys/fs/cgroup &&
    echo "+cpu +memory +pids" > /host/sys/fs/cgroup/cgroup.subtree_control ||
    echo "l1: no cgroup v2 with cpu, memory and pids"
mount -t devtmpfs dev /host/dev
ln -sf /proc/self/fd /host/dev/fd
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts devpts /host/dev/pts
# Sockets and scratch files cannot live on 9p: give the chroot tmpfs for them.
# /tmp is covered only when the script does not live there itself. The
# whole tier's scratch (disks, bundles, caches, instances) lives in /run:
# 2 GiB ran out in the last scenarios of a full run.
mount -t tmpfs -o size=5g run /host/run
mkdir -p /host/run/tmp /host/run/home /host/run/l1-results
case "$script" in /tmp/*) ;; *) mount -t tmpfs -o size=2g tmp /host/tmp ;; esac
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 results /host/run/l1-results \
    || echo "l1: no results share"
# The kernel's text symbols (fixed: nokaslr), for the host to name where a
# wedged L1's vCPU stopped (tests/nested/l1-monitor.py).
grep -i ' t ' /proc/kallsyms > /host/run/l1-results/l1-kallsyms 2>/dev/null || true

# Once a minute a line on the console, not in the results (the host's stall
# watchdog must not take it for progress): a wedged L1 falls silent; a
# smolvm older than any scenario's timeout shows where its threads wait.
heartbeat() {
    local up pid started age
    while sleep 60; do
        up=$(cut -d. -f1 /proc/uptime)
        echo "l1: heartbeat ${up}s, load $(cut -d' ' -f1-3 /proc/loadavg)," \
            "$(grep MemAvailable /proc/meminfo | tr -s ' ')"
        for pid in $(pidof smolvm); do
            # A smolvm that ended since pidof has no stat: an empty start
            # time in $((...)) once ended this whole loop (bash leaves on an
            # arithmetic error), and a silent heartbeat reads as a wedged L1.
            started=$(cut -d' ' -f22 "/proc/$pid/stat" 2>/dev/null)
            case "$started" in '' | *[!0-9]*) continue ;; esac
            age=$((up - started / 100))
            [ "$age" -gt 200 ] || continue
            echo "l1: smolvm $pid running ${age}s: $(tr '\0' ' ' < /proc/$pid/cmdline)"
            for t in /proc/$pid/task/*; do
                echo "l1:   thread ${t##*/} $(cat $t/comm) $(grep State $t/status) in $(cat $t/wchan)"
                sed 's/^/l1:     /' $t/stack
            done
        done
    done
}
heartbeat &

if [ -c /dev/kvm ]; then echo "l1: /dev/kvm ready"; else echo "l1: no /dev/kvm"; fi
echo "l1: running $script"
out=/host/run/l1-results
# Not a plain chroot: Linux refuses a user namespace to a chrooted process
# (a root that is not its mount namespace's), and --jail needs one. As
# switch_root does, the host tree with its mounts is moved onto / -- in a
# mount namespace of the script's own, so this init keeps the initramfs
# (and /host, to write l1.rc) -- and the script's root is the namespace's.
# The initramfs cannot be pivot_root'ed away; its files stay (switch_root
# would delete them, and this init runs from them).
in_host="cd / && export HOME=/run/home TMPDIR=/run/tmp SMOLVM_IN_L1=1 && \
    /bin/bash '$script' /run/l1-results"
unshare -m --propagation private /bin/sh -c \
    'cd /host && mount --move /host / && exec chroot . /bin/sh -c "$0"' "$in_host" \
    > $out/l1.log 2>&1
echo "$?" > $out/l1.rc
sync
echo "l1: done"
poweroff -f
