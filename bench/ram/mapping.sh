# How a VMM's guest RAM is mapped, seen from the KVM host: sourced by
# bench/ram/inside.sh and the nested scenario ram_huge_pages.
# shellcheck shell=bash

# vm_pid ROOT: the process, ROOT or one of its descendants (a `timeout`
# wrapper's child, a jail's VMM), that made a KVM VM; ROOT when none did.
vm_pid() {
    local queue=("$1") p
    mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug 2> /dev/null
    while [ "${#queue[@]}" -gt 0 ]; do
        p=${queue[0]}
        queue=("${queue[@]:1}")
        if compgen -G "/sys/kernel/debug/kvm/$p-*" > /dev/null; then
            echo "$p"
            return
        fi
        mapfile -t -O "${#queue[@]}" queue < <(pgrep -P "$p")
    done
    echo "$1"
}

# ram_mapping PID: "pages_4k=N pages_2m=N pf_fixed=N anon_huge_kb=N
# vcpu_ticks=N other_ticks=N" for the VM that process PID (or one it
# started: vm_pid) made: KVM's own
# counts of the guest-physical pages it maps with 4 KiB and with 2 MiB
# entries and of the nested page faults it fixed (debugfs, kvm/PID-FD:
# mounted here when it is not), the huge pages backing the process, and
# the CPU time (clock ticks) of its vCPU threads and of all its others.
ram_mapping() {
    local pid dir f out=
    pid=$(vm_pid "$1")
    for dir in /sys/kernel/debug/kvm/"$pid"-*/; do
        [ -d "$dir" ] || continue
        for f in pages_4k pages_2m pf_fixed; do
            out="$out $f=$(cat "$dir/$f" 2> /dev/null || echo '?')"
        done
    done
    [ -n "$out" ] || out=" pages_4k=? pages_2m=? pf_fixed=?"
    out="$out anon_huge_kb=$(awk '/^AnonHugePages:/ { print $2 }' "/proc/$pid/smaps_rollup" 2> /dev/null)"
    # Threads' names: smolvm's vcpuN, QEMU's "CPU N/KVM", kvmtool's kvm-vcpu-N.
    out="$out $(cat /proc/"$pid"/task/*/stat 2> /dev/null | awk '{
            name = substr($0, index($0, "(") + 1); name = substr(name, 1, index(name, ")") - 1)
            rest = substr($0, index($0, ") ") + 2); split(rest, f, " ")
            if (tolower(name) ~ /cpu/) v += f[12] + f[13]; else o += f[12] + f[13]
        } END { printf "vcpu_ticks=%d other_ticks=%d", v, o }')"
    echo "${out# }"
}

# mapping_field LINE NAME: NAME's value in a ram_mapping line.
mapping_field() {
    tr ' ' '\n' <<< "$1" | sed -n "s/^$2=//p"
}

# mapping_growth BEFORE AFTER NAME [UNIT]: how much NAME grew from one
# ram_mapping line to the next, in UNITs of it (default 1; "?" unknown).
mapping_growth() {
    local a b
    a=$(mapping_field "$1" "$3")
    b=$(mapping_field "$2" "$3")
    case $a$b in
        '' | *[!0-9]*) echo '?' ;;
        *) echo $(((b - a) / ${4:-1})) ;;
    esac
}
