#!/bin/bash
# Probe (not a test): where the micro kernel's boot spends its guest time
# (issue 25). Inside one L1: each exit of one smolvm and one QEMU boot
# with the guest's RIP; the guest's part against its RAM (128-512 MiB);
# a cpu-clock profile of four boots under each VMM, the guest's samples
# named by the micro kernel's symbols (guest-functions.py). Files in
# RESULTS/probe: exits-VMM-named.txt, prof-VMM-guest.txt, mem.txt.
# usage (inside the L1): tests/nested/run bench/boot/probe-guest-time.sh
set -u
here=$(dirname "$(realpath "$0")")
# shellcheck source=probe-lib.sh
. "$here/probe-lib.sh"
probe_begin "$1" probe
summary=$results/summary
micro_commands "$PROBE_CMDLINE"
# warm-up: each file read once
cat "$MICRO_KERNEL" "$INITRD_MICRO" > /dev/null
# Each exit of one smolvm micro boot with the guest's RIP (to name the
# guest functions that cause them, on the host: nm of the micro kernel).
if command -v perf > /dev/null; then
    [ -d /sys/kernel/tracing/events/kvm ] || mount -t tracefs tracefs /sys/kernel/tracing 2> /dev/null
    for who in smolvm qemu; do
        if [ $who = smolvm ]; then cmd=("${smolvm_micro[@]}"); else cmd=("${qemu_micro[@]}"); fi
        bench_settle
        BENCH_KILL_AT_MARKER=1 BENCH_KILL_SIGNAL=INT BENCH_LOG=$out/exits-$who.out \
            bench_ms_to ms "$PROBE_MARKER" perf record -q -m 1024 -o "$out/$who.perf" -e kvm:kvm_exit -- "${cmd[@]}" < /dev/null
        perf script -i "$out/$who.perf" -F trace 2> /dev/null |
            sed -n 's/.*reason \([A-Za-z_0-9]*\).* rip \(0x[0-9a-f]*\) info1 \(0x[0-9a-f]*\) info2 \(0x[0-9a-f]*\).*/\1 \2 \3 \4/p' > "$out/exits-$who.txt"
        rm -f "$out/$who.perf"
    done
fi
ms= # set by bench_ms_to
# Does the guest's part grow with its RAM (struct pages, free lists)?
for round in 1 2; do
    for mem in 128M 256M 512M; do
        bench_settle
        micro_commands "$PROBE_CMDLINE" "$mem"
        BENCH_LOG=$out/mem-$mem-$round.log bench_ms_to ms "$PROBE_MARKER" \
            "${smolvm_micro[@]}" --trace-boot < /dev/null
        echo "mem $mem: $ms ms $(tr -d '\r' < "$out/mem-$mem-$round.log" | sed -n 's/.*SMOLVM-GUEST-UP tsc=\([0-9]*\).*/tsc \1/p') $(grep -o 'first_vcpu_entry *[0-9.]*' "$out/mem-$mem-$round.log" | tr -s ' ')" >> "$out/mem.txt"
    done
done
# Where the guest's time goes: the L1's cpu-clock samples taken while
# the vCPU was in guest mode carry the guest's RIP (KVM tells perf);
# several boots in one recording, each VMM.
if command -v perf > /dev/null; then
    micro_commands "$PROBE_CMDLINE"
    for who in smolvm qemu; do
        if [ $who = smolvm ]; then cmd=("${smolvm_micro[@]}"); else cmd=("${qemu_micro[@]}"); fi
        printf '#!/bin/bash\nfor i in 1 2 3 4; do timeout -k 5 60 "$@" < /dev/null > /dev/null 2>&1; done\n' > "$out/boots.sh"
        [ $who = qemu ] && printf '#!/bin/bash\nfor i in 1 2 3 4; do timeout -s KILL 3 "$@" < /dev/null > /dev/null 2>&1; done\n' > "$out/boots.sh"
        bench_settle
        perf record -q -e cpu-clock -F 2000 -a -o "$out/$who-prof.perf" -- bash "$out/boots.sh" "${cmd[@]}" > "$out/prof-$who.err" 2>&1
        "$here/guest-functions.py" samples "$out/$who-prof.perf" "$MICRO_KERNEL" 80 \
            > "$out/prof-$who-guest.txt" 2>> "$out/prof-$who.err"
        "$here/guest-functions.py" exits "$out/exits-$who.txt" "$MICRO_KERNEL" 80 \
            > "$out/exits-$who-named.txt" 2>> "$out/prof-$who.err"
    done
fi
echo "PASS probe-guest-time" >> "$summary"
