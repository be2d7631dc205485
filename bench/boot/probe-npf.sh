#!/bin/bash
# Probe (not a test): how each VMM's guest RAM is mapped during a micro
# kernel boot (issue 25): the L1's THP settings; for smolvm and QEMU
# -M microvm, booting the same micro kernel and initrd, the nested page
# faults (kvm:kvm_page_fault) and exits up to the init's first line, and
# at that line KVM's 4 KiB / 2 MiB entries, its fixed faults and the
# VMM's AnonHugePages. Rows alternate. RESULTS/probe-npf/rows.txt.
# usage (inside the L1): SCENARIOS=boot_bench tests/nested/run bench/boot/probe-npf.sh
set -u
here=$(dirname "$(realpath "$0")")
# shellcheck source=probe-lib.sh
. "$here/probe-lib.sh"
probe_begin "$1" probe-npf
# shellcheck source=../ram/mapping.sh
. "$here/../ram/mapping.sh" # ram_mapping
# No smolvm.end=reboot: the guest stays up after its marker (the micro
# kernel halts) while its mapping is read, then it is killed.
micro_commands "console=ttyS0 quiet panic=-1" "${PROBE_MEM:-256M}"
{
    echo "thp enabled: $(cat /sys/kernel/mm/transparent_hugepage/enabled)"
    echo "thp defrag: $(cat /sys/kernel/mm/transparent_hugepage/defrag)"
    echo "khugepaged defrag: $(cat /sys/kernel/mm/transparent_hugepage/khugepaged/defrag 2> /dev/null)"
    echo "kernel: $(uname -r)"
    grep -i -E 'MemFree|MemAvailable|AnonHuge' /proc/meminfo
    grep -E 'thp_fault_alloc|thp_fault_fallback ' /proc/vmstat
} > "$out/rows.txt"
# row WHO N: one boot under perf stat; at the marker, the mapping; killed.
row() {
    local who=$1 n=$2 cmd log=$out/$1-$2.log pid start ms="" map vmm
    if [ "$who" = smolvm ]; then cmd=("${smolvm_micro[@]}"); else cmd=("${qemu_micro[@]}"); fi
    bench_settle
    local before_vmstat
    before_vmstat=$(grep -E 'thp_fault_alloc|thp_fault_fallback ' /proc/vmstat | tr '\n' ' ')
    start=${EPOCHREALTIME/./}
    perf stat -x, -o "$out/$who-$n.stat" -e kvm:kvm_page_fault -e kvm:kvm_exit -e page-faults \
        -- "${cmd[@]}" < /dev/null > "$log" 2>&1 &
    pid=$!
    for _ in $(seq 1 1200); do
        grep -q "$PROBE_MARKER" "$log" 2> /dev/null && { ms=$(((${EPOCHREALTIME/./} - start) / 1000)); break; }
        sleep 0.05
    done
    map=$(ram_mapping "$pid")
    vmm=$(vm_pid "$pid")
    grep -E '^[0-9a-f]+-' "/proc/$vmm/smaps" > /dev/null 2>&1 &&
        awk '/^[0-9a-f]+-[0-9a-f]+ / { range = $1 } /^Size:/ { size = $2 }
             /^AnonHugePages:/ && size >= 65536 { print range, "size_kb=" size, "huge_kb=" $2 }' \
            "/proc/$vmm/smaps" > "$out/$who-$n.smaps"
    kill -9 "$vmm" 2> /dev/null
    timeout 30 tail --pid="$pid" -f /dev/null
    wait "$pid" 2> /dev/null
    echo "$who $n: ${ms:-timeout} ms; $map; npf=$(awk -F, '/kvm_page_fault/ { print $1 }' "$out/$who-$n.stat") exits=$(awk -F, '/kvm_exit/ { print $1 }' "$out/$who-$n.stat") host_pf=$(awk -F, '/page-faults/ { print $1 }' "$out/$who-$n.stat"); vmstat before: $before_vmstat after: $(grep -E 'thp_fault_alloc|thp_fault_fallback ' /proc/vmstat | tr '\n' ' ')" >> "$out/rows.txt"
}
cat "$MICRO_KERNEL" "$INITRD_MICRO" > /dev/null
for n in 1 2 3; do
    row smolvm "$n"
    row qemu "$n"
done
echo "PASS probe-npf" >> "$results/summary"
