#!/bin/bash
# Probe (not a test): where smolvm's own part of a micro kernel boot goes
# (issue 25): the wall time of `smolvm --version` (a launch alone), each
# boot's wall time against smolvm's --trace-boot (its clock starts in
# main) and the guest's TSC at the marker, and one cpu-clock profile of
# smolvm's process (user and the L1's kernel) over four boots, by symbol.
# RESULTS/probe-vmm/: rows.txt, prof-*.txt.
# usage (inside the L1): SCENARIOS=boot_bench tests/nested/run bench/boot/probe-vmm-time.sh
set -u
# shellcheck source=probe-lib.sh
. "$(dirname "$(realpath "$0")")/probe-lib.sh"
probe_begin "$1" probe-vmm
micro_commands "$PROBE_CMDLINE"
cat "$MICRO_KERNEL" "$INITRD_MICRO" "$SMOLVM" > /dev/null
ms=
for n in 1 2 3 4 5; do
    bench_settle
    bench_ms_to ms "smolvm" "$SMOLVM" --version < /dev/null
    echo "version $n: $ms ms" >> "$out/rows.txt"
done
for n in 1 2 3 4 5; do
    bench_settle
    BENCH_LOG=$out/boot-$n.log bench_ms_to ms "$PROBE_MARKER" "${smolvm_micro[@]}" --trace-boot < /dev/null
    echo "boot $n: $ms ms; guest $(guest_ms "$out/boot-$n.log") ms; $(grep -E '^(inputs_read|hypervisor_ready|guest_memory_mapped|devices_created|kernel_loaded|first_vcpu_entry|first_serial_byte|marker_seen) ' "$out/boot-$n.log" | awk '{ printf "%s %s; ", $1, $2 }')" >> "$out/rows.txt"
done
if command -v perf > /dev/null; then
    printf '#!/bin/bash\nfor i in 1 2 3 4; do timeout -k 5 60 "$@" < /dev/null > /dev/null 2>&1; done\n' > "$out/boots.sh"
    bench_settle
    perf record -q -e cpu-clock -F 4000 -a -g -o "$out/prof.perf" -- bash "$out/boots.sh" "${smolvm_micro[@]}" > "$out/prof.err" 2>&1
    perf report -i "$out/prof.perf" --no-children --sort comm,dso,sym --stdio 2> /dev/null |
        grep -v '^$' | grep -E '^ +[0-9]' | head -150 > "$out/prof-flat.txt"
    perf report -i "$out/prof.perf" --no-children --comm smolvm,vcpu0 --sort sym --stdio -G 2> /dev/null |
        head -600 > "$out/prof-smolvm-callers.txt"
    perf report -i "$out/prof.perf" --no-children --sort comm --stdio 2> /dev/null |
        grep -E '^ +[0-9]' > "$out/prof-comm.txt"
fi
echo "PASS probe-vmm-time" >> "$results/summary"
