#!/bin/bash
# Inside a KVM host: the guest's netbench (tests/nested/guest-init.sh,
# iperf3 in INITRD, the net scenario's initrd) against this host's iperf3
# server (both ways) and busybox httpd (a small /small, for latency) at
# 10.0.2.2: the NAT's gateway under smolvm --net user and QEMU -M microvm
# -netdev user; this host's end of a TAP (10.0.2.2/24, the guest
# 10.0.2.15 set statically) under smolvm --net tap and QEMU -netdev tap
# (metrics named tap-...). RESULTS/{throughput,latency}/times.tsv.
# NET_USER_MTUS (params.sh): more smolvm --net user boots in each round,
# one for each MTU listed (SMOLVM_NET_USER_MTU), metrics named uMTU-...
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
echo small > "$work/www/small"
busybox httpd -f -p "$port" -h "$work/www" & # loopback (the NAT's) and the TAP
httpd=$!
iperf3 -s -p $((port + 1)) > "$work/iperf3-server.log" 2>&1 & # one test at a time, both ways
iperf=$!

record() { # record VMM [METRIC-PREFIX] < console output
    tee -a "$results/consoles.log" |
        sed -n 's/.*BENCH \([A-Za-z0-9-]*\) \([0-9][0-9.]*\).*/\1\t\2/p' | sed "s/^/$1\t${2:-}/" |
        while IFS= read -r line; do
            case "$line" in
                *http-request-ms*) echo "$line" >> "$results/latency/times.tsv" ;;
                *) echo "$line" >> "$results/throughput/times.tsv" ;;
            esac
            echo "$line"
        done
}

QEMU=(qemu-system-x86_64 -M microvm -accel kvm -cpu host -m 512M -smp 1 -nodefaults
    -no-user-config -nographic -no-reboot -serial stdio -kernel "$KERNEL" -initrd "$INITRD")
for _ in $(seq 1 "${RUNS:-2}"); do
    timeout 600 "$SMOLVM" run --kernel "$KERNEL" --initrd "$INITRD" --mem 512M \
        --cmdline "$CMDLINE" --net user < /dev/null 2>&1 | record smolvm
    for mtu in ${NET_USER_MTUS:-}; do
        SMOLVM_NET_USER_MTU=$mtu timeout 600 "$SMOLVM" run --kernel "$KERNEL" --initrd "$INITRD" \
            --mem 512M --cmdline "$CMDLINE" --net user < /dev/null 2>&1 | record smolvm "u$mtu-"
    done
    timeout 600 "${QEMU[@]}" -append "$CMDLINE" \
        -netdev user,id=n0 -device virtio-net-device,netdev=n0 < /dev/null 2>&1 | record qemu-microvm
done
modprobe tun 2>/dev/null # the L1 loads no more than it boots with
if ip tuntap add smolbench0 mode tap && ip addr add 10.0.2.2/24 dev smolbench0 &&
    ip link set smolbench0 up; then
    for _ in $(seq 1 "${RUNS:-2}"); do
        timeout 600 "$SMOLVM" run --kernel "$KERNEL" --initrd "$INITRD" --mem 512M \
            --cmdline "$CMDLINE smolvm.ip=10.0.2.15/24" --net tap=smolbench0 < /dev/null 2>&1 |
            record smolvm tap-
        timeout 600 "${QEMU[@]}" -append "$CMDLINE smolvm.ip=10.0.2.15/24" \
            -netdev tap,id=n0,ifname=smolbench0,script=no,downscript=no \
            -device virtio-net-device,netdev=n0 < /dev/null 2>&1 | record qemu-microvm tap-
    done
else
    echo "bench/net: no TAP here; the tap figures are left out" >&2
fi
ip link del smolbench0 2>/dev/null
kill "$iperf" "$httpd" 2>/dev/null
rm -rf "$work"
