#!/bin/bash
# Boot one L1 Linux under QEMU TCG (-cpu EPYC,+svm) whose kvm-amd gives a real
# /dev/kvm, and run SCRIPT inside it (chrooted into this host's tree, shared
# read-only). SCRIPT gets a writable results folder as $1 (RESULTS_DIR seen
# from inside); its output and exit
# code come back as RESULTS/l1.log and RESULTS/l1.rc.
#
# usage: l1.sh SCRIPT RESULTS_DIR
# env:   SMOLVM_CACHE  where the L1 initrd is cached (default ~/.cache/smolvm-ci)
#        L1_TIMEOUT    seconds before the L1 is killed (default 3000: the
#                      whole tier takes 30-40 min of one L1; a hung L1 is
#                      caught sooner by L1_STALL and L1_SILENT)
#        L1_STALL      seconds without new output in RESULTS before the L1 is
#                      taken for hung and killed (default 420)
#        L1_SILENT seconds without the L1's heartbeat (its console) before it
#                      is taken for wedged and killed (default 200)
#        L1_KICK       seconds between the key events that wake an L1 QEMU
#                      left halted with an interrupt pending (default 3)
#        L1_SMP        vCPUs of the L1 (default 1: multi-threaded TCG with
#                      nested SVM locks up the L1 kernel, under QEMU 10.0
#                      as under 7.2: a soft lockup of CPU#1, then a wedge,
#                      seen again December 2026)
#        L1_DISK       a raw image the L1 sees as a virtio disk (/dev/vda,
#                      host page cache bypassed): files whose page cache a
#                      script drops must come back from a disk, not tmpfs
#        L1_QEMU=system  the system's QEMU as the emulator, not the one
#                      tools/l1-qemu.sh unpacked (see there why)
set -euo pipefail

script=$(realpath "$1")
results=$(realpath "$2")
here=$(dirname "$(realpath "$0")")
cache=${SMOLVM_CACHE:-$HOME/.cache/smolvm-ci}
kver=$(ls /lib/modules | sort -V | tail -n 1)
kernel=/boot/vmlinuz-$kver
mkdir -p "$cache" "$results"
rm -f "$results/l1.log" "$results/l1.rc"

l1_initrd() {
    local key out stage
    key=$(cat "$here/l1-init.sh" "$here/l1.sh" /bin/busybox "$kernel" | sha256sum | cut -c1-16)
    out=$cache/l1-$key.cpio
    if [ ! -s "$out" ]; then
        stage=$(mktemp -d)
        mkdir -p "$stage"/{bin,sbin,proc,sys,dev,modules,etc}
        cp /bin/busybox "$stage/bin/busybox"
        for applet in $(/bin/busybox --list); do
            [ "$applet" = busybox ] || ln -sf busybox "$stage/bin/$applet"
        done
        for m in irqbypass kvm ccp kvm-amd virtio_ring virtio virtio_pci_modern_dev \
                 virtio_pci_legacy_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p; do
            find "/lib/modules/$kver" -name "$m.ko" -exec cp {} "$stage/modules/" \;
        done
        install -m 0755 "$here/l1-init.sh" "$stage/init"
        (cd "$stage" && find . | cpio -o -H newc --quiet) > "$out.tmp"
        mv "$out.tmp" "$out"
        rm -rf "$stage"
    fi
    echo "$out"
}

initrd=$(l1_initrd)
disk=()
[ -z "${L1_DISK:-}" ] || disk=(-drive "file=$L1_DISK,format=raw,if=virtio,cache=none")
# no_timer_check: on a loaded host TCG's timer can miss the L1 kernel's
# 10-tick check of the I/O APIC timer, which then panics ("IO-APIC + timer
# doesn't work") before any scenario runs.
# nice -n L1_NICE (default -10, when allowed): the L1 is the instrument
# benchmarks measure with, and builds beside it on a 2-core host once made
# both VMMs' figures swing 5-10x within one run; the L1 runs ahead of them.
nice=()
[ "$(id -u)" -ne 0 ] || nice=(nice -n "${L1_NICE:--10}")
mapfile -t emulator < <("$here/../../tools/l1-qemu.sh" path)
[ -z "${emulator[1]:-}" ] || emulator+=(-L "${emulator[1]}")
unset 'emulator[1]'
"${emulator[0]}" --version | head -n 1 > "$results/l1-emulator.txt"
# QEMU's monitor, asked what a wedged L1 is doing before it is killed.
monitor_dir=$(mktemp -d)
trap 'rm -rf "$monitor_dir"' EXIT
"${nice[@]}" timeout "${L1_TIMEOUT:-3000}" "${emulator[@]}" \
    -M q35 -accel tcg,thread=multi -cpu EPYC,+svm -m 10240 -smp "${L1_SMP:-1}" \
    -nographic -no-reboot -nodefaults -serial stdio \
    -kernel "$kernel" -initrd "$initrd" \
    -append "console=ttyS0 quiet panic=-1 no_timer_check nokaslr smolvm.script=$script" \
    -monitor "unix:$monitor_dir/monitor,server=on,wait=off" \
    -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
    -virtfs local,path="$results",mount_tag=results,security_model=none,multidevs=remap \
    "${disk[@]}" \
    < /dev/null 2>"$results/qemu-l1.err" > "$results/l1-serial.log" &
qemu=$!
# QEMU 7.2's TCG can leave the L1 halted with its timer interrupt pending
# in the APIC, for good (see l1-monitor.py): a key event every few seconds
# has QEMU deliver it. Wedged L1s cost CI three L1s in one run.
"$here/l1-monitor.py" kick "$monitor_dir/monitor" "${L1_KICK:-3}" &
kicker=$!
# A hung L1 must not eat CI's time: no file the scenarios write in RESULTS
# changing for L1_STALL seconds ends it (the L1's own console log does not
# count: a locked-up L1 kernel keeps printing there).
# A wedged L1 (its kernel stopped: no heartbeat, once a minute from
# l1-init.sh, on its console) is known sooner by that silence: L1_SILENT
# seconds (default 200) without a heartbeat, counted from the L1's start.
stall=${L1_STALL:-420} silent=${L1_SILENT:-200}
last=$(date +%s) beat_at=$(date +%s) beats=0 longest_gap=0
while kill -0 "$qemu" 2>/dev/null; do
    sleep 5
    now=$(date +%s)
    newest=$(find "$results" -type f ! -name l1-serial.log ! -name qemu-l1.err \
        -printf '%T@\n' | sort -n | tail -n 1)
    [ -n "$newest" ] && [ "${newest%.*}" -gt "$last" ] && last=${newest%.*}
    n=$(grep -a -c "^l1: heartbeat" "$results/l1-serial.log" 2>/dev/null || true)
    if [ "${n:-0}" -gt "$beats" ]; then
        [ "$beats" -eq 0 ] || [ $((now - beat_at)) -le "$longest_gap" ] || longest_gap=$((now - beat_at))
        beats=$n beat_at=$now
    fi
    if [ $((now - last)) -gt "$stall" ]; then
        echo "l1: no progress for ${stall}s; killing the L1 guest" >&2
    elif [ $((now - beat_at)) -gt "$silent" ]; then
        echo "l1: no heartbeat for ${silent}s (wedged); killing the L1 guest" >&2
        # Seen at random scenarios, with nothing on the L1's console: where
        # its vCPU is, and whether it spins or waits, are the clues.
        timeout 60 "$here/l1-monitor.py" facts "$monitor_dir/monitor" "$(pgrep -P "$qemu" | head -n 1)" \
            "$results/l1-kallsyms" > "$results/l1-wedge.txt" 2>&1 || true
        echo "l1: what the wedged L1 was doing: $(grep -m1 'RIP is' "$results/l1-wedge.txt" 2>/dev/null)" >&2
    else
        continue
    fi
    kill "$qemu" 2>/dev/null
    break
done
wait "$qemu" 2>/dev/null || true
kill "$kicker" 2>/dev/null || true
grep -v -e "Unhandled WRMSR" -e "^$" -e "^l1: heartbeat" "$results/l1-serial.log" || true
grep "^l1: heartbeat" "$results/l1-serial.log" | tail -n 1 || true
# Once a minute when all is well; a gap near L1_SILENT is a near-wedge.
echo "l1: $beats heartbeats, the longest gap between two ${longest_gap}s"

if [ ! -f "$results/l1.rc" ]; then
    echo "l1: the L1 guest did not finish (timeout or crash)" >&2
    exit 1
fi
exit "$(cat "$results/l1.rc")"
