#!/bin/bash
# Inside a KVM host: the ramtouch guest (tests/nested/guest-init.sh) booted
# RUNS times by each VMM, smolvm and QEMU -M microvm (and kvmtool when
# KVMTOOL names an lkvm), 512 MiB of RAM, 1 vCPU, the same kernel, initrd
# and command line, no device used. Rounds alternate which VMM boots first
# (the first VM in a fresh L1 was seen slower). RESULTS/times.tsv: the
# guest's seconds per step, and first-touch = fill - refill (what the
# pages' first touch alone costs). RESULTS/mapping.tsv: per boot, what
# the fill changed in how KVM maps the guest's RAM (bench/ram/mapping.sh).
set -u
here=$(dirname "$(realpath "$0")")
# shellcheck source=mapping.sh
. "$here/mapping.sh"
results=$1
# shellcheck source=/dev/null
. "$results/params.sh"
MB=${RAM_BENCH_MB:-128}
CMDLINE="console=ttyS0 quiet panic=-1 smolvm.test=ramtouch ramtouch.mb=$MB"
out=$results/times.tsv
: > "$out"
printf 'vmm\tround\t2m_mib\t4k_mib\tnpt_faults\tvcpu_ticks\tother_ticks\tsteal_ticks\n' \
    > "$results/mapping.tsv"

# boot_one VMM ROUND COMMAND...: one boot, its console in
# RESULTS/console-VMM-ROUND.log.
boot_one() {
    local vmm=$1 round=$2 fd pid line step seconds before='' after='' steal=0 fill='' refill=''
    shift 2
    exec {fd}< <(exec "$@" < /dev/null 2>&1)
    pid=$!
    while IFS= read -r -t 300 -u "$fd" line; do
        line=${line%$'\r'}
        printf '%s\n' "$line" >> "$results/console-$vmm-$round.log"
        case $line in
            *"RAMTOUCH-AT before"*) before=$(ram_mapping "$pid") ;;
            *"RAMTOUCH-AT filled"*) after=$(ram_mapping "$pid") ;;
            *"BENCH-STEAL fill "*) steal=${line##* } ;;
            *"BENCH "[a-z]*)
                read -r step seconds <<< "${line##*BENCH }"
                printf '%s\t%s\t%s\n' "$vmm" "$step" "$seconds" >> "$out"
                case $step in fill) fill=$seconds ;; refill) refill=$seconds ;; esac ;;
            *RAMTOUCH-DONE*) break ;;
        esac
    done
    # kvmtool does not end at the guest's poweroff: a VMM still there
    # 30 s after the guest's last line is ended.
    for _ in $(seq 1 30); do kill -0 "$pid" 2> /dev/null || break; sleep 1; done
    kill "$pid" 2> /dev/null
    exec {fd}<&-
    wait "$pid" 2> /dev/null
    [ -n "$fill" ] && [ -n "$refill" ] &&
        printf '%s\tfirst-touch\t%s\n' "$vmm" "$(awk -v a="$fill" -v b="$refill" 'BEGIN { printf "%.2f", a - b }')" >> "$out"
    if [ -n "$before" ] && [ -n "$after" ]; then
        # (pages_2m counts 2 MiB entries: MiB is twice that; 256 4 KiB ones a MiB.)
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$vmm" "$round" \
            "$(mapping_growth "$before" "$after" pages_2m | awk '{ print $1 == "?" ? "?" : $1 * 2 }')" \
            "$(mapping_growth "$before" "$after" pages_4k 256)" \
            "$(mapping_growth "$before" "$after" pf_fixed)" \
            "$(mapping_growth "$before" "$after" vcpu_ticks)" \
            "$(mapping_growth "$before" "$after" other_ticks)" "$steal" >> "$results/mapping.tsv"
    fi
}

smolvm_boot() {
    boot_one smolvm "$1" "$SMOLVM" run --kernel "$KERNEL" --initrd "$INITRD" --mem 512M \
        --cmdline "$CMDLINE"
}
qemu_boot() {
    # (debug-threads: its vCPU thread named, for mapping.tsv's split)
    boot_one qemu-microvm "$1" qemu-system-x86_64 -M microvm -accel kvm -cpu host -m 512M \
        -smp 1 -name ramtouch,debug-threads=on -nodefaults -no-user-config -nographic -no-reboot -serial stdio \
        -kernel "$KERNEL" -initrd "$INITRD" -append "$CMDLINE"
}

for i in $(seq 1 "${RUNS:-3}"); do
    if [ $((i % 2)) = 1 ]; then
        smolvm_boot "$i"
        qemu_boot "$i"
    else
        qemu_boot "$i"
        smolvm_boot "$i"
    fi
    [ -z "${KVMTOOL:-}" ] || boot_one kvmtool "$i" "$KVMTOOL" run --nodefaults \
        --network mode=none -k "$KERNEL" -i "$INITRD" -m 512 -c 1 -p "$CMDLINE"
done
