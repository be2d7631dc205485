#!/bin/bash
# Inside a KVM host: the guest's netbench (tests/nested/guest-init.sh)
# against this host's busybox httpd (a 16 MiB /big, a small /small) and nc
# listener at the NAT's gateway, under smolvm --net user and under QEMU
# -M microvm -netdev user. RESULTS/{throughput,latency}/times.tsv.
set -u
results=$1
# shellcheck source=/dev/null
. "$results/params.sh"
port=18090
CMDLINE="console=ttyS0 quiet panic=-1 smolvm.test=netbench smolvm.port=$port"
work=$(mktemp -d "${TMPDIR:-/tmp}/netbench.XXXXXX")
mkdir -p "$results/throughput" "$results/latency" "$work/www"
: > "$results/throughput/times.tsv"
: > "$results/latency/times.tsv"
ip link set lo up 2>/dev/null || busybox ip link set lo up
head -c $((16 << 20)) /dev/zero > "$work/www/big"
echo small > "$work/www/small"
busybox httpd -f -p "127.0.0.1:$port" -h "$work/www" &
httpd=$!
(while true; do busybox nc -l -p $((port + 1)) > /dev/null; done) &
sink=$!

record() { # record VMM < console output
    sed -n 's/.*BENCH \([A-Za-z0-9-]*\) \([0-9.]*\).*/\1\t\2/p' | sed "s/^/$1\t/" |
        while IFS= read -r line; do
            case "$line" in
                *http-request-ms*) echo "$line" >> "$results/latency/times.tsv" ;;
                *) echo "$line" >> "$results/throughput/times.tsv" ;;
            esac
            echo "$line"
        done
}

for _ in $(seq 1 "${RUNS:-2}"); do
    timeout 600 "$SMOLVM" run --kernel "$KERNEL" --initrd "$INITRD" --mem 512M \
        --cmdline "$CMDLINE" --net user < /dev/null 2>&1 | record smolvm
    timeout 600 qemu-system-x86_64 -M microvm -accel kvm -cpu host -m 512M -smp 1 \
        -nodefaults -no-user-config -nographic -no-reboot -serial stdio \
        -kernel "$KERNEL" -initrd "$INITRD" -append "$CMDLINE" \
        -netdev user,id=n0 -device virtio-net-device,netdev=n0 < /dev/null 2>&1 | record qemu-microvm
done
kill "$sink" "$httpd" 2>/dev/null
busybox nc 127.0.0.1 $((port + 1)) < /dev/null 2>/dev/null # ends the listener left waiting
rm -rf "$work"
