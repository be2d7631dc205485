#!/bin/bash
# The nested-KVM scenarios: real Linux guests under smolvm. Runs wherever
# /dev/kvm works (inside the L1 guest, or directly on a KVM host).
# usage: scenarios.sh RESULTS_DIR   (RESULTS_DIR/params.sh says where things are)
# Prints "PASS name" / "FAIL name: why" lines, also kept in RESULTS_DIR/summary.
set -u
results=$1
# shellcheck source=/dev/null
. "$results/params.sh"
: "${SMOLVM:?}" "${SMOLVM_ASAN:=$SMOLVM}" "${KERNEL:?}" "${INITRD:?}" "${VMLINUX:=}"
: "${INITRD_NET:=$INITRD}" "${DNS_ANSWER:=}"
work=$(mktemp -d "${TMPDIR:-/tmp}/smolvm-nested.XXXXXX")
summary=$results/summary
# Control sockets and instance files of the VMs under test stay in $work.
export XDG_RUNTIME_DIR=$work/run XDG_DATA_HOME=$work/data
mkdir -m 0700 -p "$XDG_RUNTIME_DIR" "$XDG_DATA_HOME"
: > "$summary"
BOOT_TIMEOUT=${BOOT_TIMEOUT:-180}
# SMOLVM_TEST_JAIL=1: every run, start and receive gets --jail (docs/security.md),
# through a wrapper; NAME+jail in SCENARIOS: that scenario only (its
# checks say "[jail]"). The jail's own scenarios use the binaries as built.
real_smolvm=$SMOLVM real_smolvm_asan=$SMOLVM_ASAN
for bin in SMOLVM SMOLVM_ASAN; do
    printf '#!/bin/sh\ncase "$1" in run|start|receive) verb=$1; shift; exec %s "$verb" --jail "$@";; esac\nexec %s "$@"\n' \
        "${!bin}" "${!bin}" > "$work/$bin-jailed"
    chmod +x "$work/$bin-jailed"
done
jailed= # " [jail]" while the binaries are the wrappers
use_jail() { # use_jail yes|no
    if [ "$1" = yes ]; then
        SMOLVM=$work/SMOLVM-jailed SMOLVM_ASAN=$work/SMOLVM_ASAN-jailed jailed=" [jail]"
    else
        SMOLVM=$real_smolvm SMOLVM_ASAN=$real_smolvm_asan jailed=
    fi
}
[ -z "${SMOLVM_TEST_JAIL:-}" ] || use_jail yes
GUEST_CMDLINE="console=ttyS0 panic=-1 quiet"

pass() { echo "PASS $1$jailed" | tee -a "$summary"; }
fail() { echo "FAIL $1$jailed: $2" | tee -a "$summary"; }

# boot NAME [smolvm run options...]: console output in $work/NAME.out,
# stderr in $work/NAME.err, exit code in $rc.
boot() {
    local name=$1
    shift
    timeout -k 10 "$BOOT_TIMEOUT" "$SMOLVM" run "$@" < /dev/null > "$work/$name.out" 2> "$work/$name.err"
    rc=$?
    cp "$work/$name.out" "$work/$name.err" "$results/" 2>/dev/null
}

expect() { # expect NAME CONDITION-DESCRIPTION COMMAND...
    local name=$1 what=$2
    shift 2
    # rc: the last boot's, unset in a scenario that boots nothing itself
    # (set -u would end the whole L1 on the failure it is reporting).
    if "$@"; then pass "$name"; else fail "$name" "$what (rc=${rc:-none}; see $name.out/.err)"; fi
}

has() { grep -q -- "$2" "$work/$1.out"; }

scenario_boot_and_trace() {
    boot boot --kernel "$KERNEL" --initrd "$INITRD" --cmdline "$GUEST_CMDLINE" \
        --trace-until SMOLVM-GUEST-UP --json
    expect boot-to-init "guest init's token on the console" has boot SMOLVM-GUEST-UP
    expect poweroff-exits-0 "poweroff -f ends smolvm with 0" test "$rc" -eq 0
    expect trace-boot-json "JSON trace with the marker time" \
        grep -q '"marker_seen":[0-9.]*.*"marker":"SMOLVM-GUEST-UP"' "$work/boot.err"
    # The VM the check before any work makes is the one the guest runs in
    # (hv/kvm.c): one KVM_CREATE_VM a run, as strace counts them. Jailed
    # too: the VMM is a child, which cannot use its parent's VM, and the
    # parent makes none (hv_check_elsewhere(); it made one, 2-14 ms, before).
    local vms=1
    if command -v strace > /dev/null; then
        timeout -k 10 "$BOOT_TIMEOUT" strace -f -e trace=ioctl -o "$work/boot-ioctls.txt" "$SMOLVM" run \
            --kernel "$KERNEL" --initrd "$INITRD" --cmdline "$GUEST_CMDLINE" < /dev/null > "$work/boot-strace.out" 2>&1
        rc=$?
        cp "$work/boot-ioctls.txt" "$results/" 2>/dev/null
        expect one-vm-a-run "a run makes $vms VM(s) and boots (KVM_CREATE_VM; see boot-ioctls.txt)" \
            eval 'test "$(grep -c "KVM_CREATE_VM" "$work/boot-ioctls.txt")" -eq "$vms" && grep -q SMOLVM-GUEST-UP "$work/boot-strace.out"'
    fi
}

scenario_two_cpus() {
    boot cpus2 --cpus 2 --mem 512M --kernel "$KERNEL" --initrd "$INITRD" \
        --cmdline "$GUEST_CMDLINE smolvm.test=cpus"
    expect two-vcpus "guest sees 2 CPUs" has cpus2 "GUEST-CPUS=2"
}

scenario_reboot() {
    boot reboot --kernel "$KERNEL" --initrd "$INITRD" --cmdline "$GUEST_CMDLINE smolvm.test=reboot"
    expect reboot-exits-0 "reboot -f ends smolvm with 0" \
        eval 'test "$rc" -eq 0 && has reboot SMOLVM-GUEST-UP'
}

scenario_panic() {
    boot panic --kernel "$KERNEL" --initrd "$INITRD" --cmdline "$GUEST_CMDLINE smolvm.test=panic"
    expect panic-ends-vm "a panic with panic=-1 ends smolvm" \
        eval 'test "$rc" -eq 0 && has panic "Kernel panic"'
}

scenario_pvh() {
    if [ -z "$VMLINUX" ]; then
        fail pvh-vmlinux "no vmlinux extracted"
        return
    fi
    boot pvh --kernel "$VMLINUX" --initrd "$INITRD" --cmdline "$GUEST_CMDLINE"
    expect pvh-vmlinux "the ELF vmlinux boots (Linux's: through its 64-bit entry, startup_64)" \
        eval 'test "$rc" -eq 0 && has pvh SMOLVM-GUEST-UP'
    # The same vmlinux with no e_entry (zeroed in the ELF header): not
    # startup_64 among its loaded bytes, so through its PVH note, as any
    # ELF kernel that is not Linux's (src/arch/x86/elf.c).
    local pvh_only=$work/vmlinux-pvh-only
    cp "$VMLINUX" "$pvh_only"
    head -c 8 /dev/zero | dd of="$pvh_only" bs=1 seek=24 conv=notrunc status=none
    boot pvh-entry --kernel "$pvh_only" --initrd "$INITRD" --cmdline "$GUEST_CMDLINE"
    rm -f "$pvh_only"
    expect pvh-entry "an ELF vmlinux without a 64-bit entry boots through its PVH entry" \
        eval 'test "$rc" -eq 0 && has pvh-entry SMOLVM-GUEST-UP'
}

# background NAME VERB ARGS...: smolvm VERB in the background, its stdin a
# fifo held open on fd 7 (type with `echo ... >&7`), pid in $bg_pid.
background() {
    local name=$1 fifo=$work/$1.fifo
    shift
    rm -f "$fifo"
    mkfifo "$fifo"
    timeout -k 10 "$BOOT_TIMEOUT" "$SMOLVM" "$@" < "$fifo" > "$work/$name.out" 2> "$work/$name.err" &
    bg_pid=$!
    exec 7> "$fifo"
}

# wait_for NAME TEXT: until TEXT is on NAME's console (or the timeout).
wait_for() {
    local i
    for i in $(seq 1 "$BOOT_TIMEOUT"); do
        grep -q -- "$2" "$work/$1.out" && return 0
        kill -0 "$bg_pid" 2>/dev/null || return 1
        sleep 1
    done
    return 1
}

# wait_for_line NAME TEXT: as wait_for, but blocked in a read (tail -F
# follows the console file, woken by inotify) rather than a grep and a
# sleep forked each second: for a benchmark, whose timed start that poll
# would take the L1's one CPU from. Whole lines only: TEXT on a line not
# ended yet is seen once its newline comes. Bounded by $bg_pid's own
# timeout (background()): tail --pid ends with it.
wait_for_line() {
    local lines=$work/$1.lines follower found
    rm -f "$lines"
    mkfifo "$lines"
    tail -n +1 -F --pid="$bg_pid" "$work/$1.out" > "$lines" 2> /dev/null &
    follower=$!
    grep -q -m1 -- "$2" < "$lines"
    found=$?
    kill "$follower" 2> /dev/null # when grep found the line first
    wait "$follower" 2> /dev/null
    rm -f "$lines"
    return "$found"
}

# line_watch NAME TEXT: before NAME is started (background), a reader of
# its console blocked until TEXT is on a whole line; line_seen NAME waits
# for it (false: not within BOOT_TIMEOUT). For a benchmark's timed start:
# wait_for_line forks its rm, mkfifo, tail and grep just after the start
# is launched, and they took ~45 ms of the L1's one CPU from the window
# timed (an ftrace of the L1: bench/jail/cpu-report, December 2026).
line_watch() {
    local lines=$work/$1.lines
    rm -f "$lines"
    mkfifo "$lines"
    : > "$work/$1.out"
    tail -n +1 -F "$work/$1.out" > "$lines" 2> /dev/null &
    line_follower=$!
    timeout -k 5 "$BOOT_TIMEOUT" grep -q -m1 -- "$2" < "$lines" &
    line_reader=$!
}

line_seen() {
    local found
    wait "$line_reader"
    found=$?
    kill "$line_follower" 2> /dev/null
    wait "$line_follower" 2> /dev/null
    rm -f "$work/$1.lines"
    return "$found"
}

finish() { # finish NAME: waits for the background smolvm; rc and logs
    wait "$bg_pid"
    rc=$?
    exec 7>&-
    cp "$work/$1.out" "$work/$1.err" "$results/" 2>/dev/null
}

# A line typed on the host reaches the guest's shell and its answer comes
# back: the 8250's receive path and interrupts, end to end.
# type_line NAME MARKER LINE [smolvm run args]: boots, waits for MARKER on
# the console, types LINE on smolvm's stdin, waits for the guest to end.
type_line() {
    local name=$1 marker=$2 line=$3 fifo=$work/$1.fifo out=$work/$1.out i pid
    shift 3
    mkfifo "$fifo"
    timeout -k 10 "$BOOT_TIMEOUT" "$SMOLVM" run "$@" < "$fifo" > "$out" 2> "$work/$name.err" &
    pid=$!
    exec 7> "$fifo"
    for i in $(seq 1 "$BOOT_TIMEOUT"); do
        grep -q "$marker" "$out" && break
        sleep 1
    done
    sleep 1
    echo "$line" >&7
    wait "$pid"
    rc=$?
    exec 7>&-
    cp "$out" "$work/$name.err" "$results/" 2>/dev/null
}

# A line typed on the host reaches the guest's shell and its answer comes
# back: the 8250's receive path and interrupts, end to end.
scenario_serial_input() {
    type_line echo SMOLVM-GUEST-UP hello-from-host --kernel "$KERNEL" --initrd "$INITRD" \
        --cmdline "$GUEST_CMDLINE smolvm.test=echo"
    expect serial-input "guest read the host's line" has echo "GUEST-GOT=hello-from-host"
}

# The same over virtio-console: hvc0 in both directions.
scenario_virtio_console() {
    type_line hvc GUEST-HVC-READY hello-over-hvc --console virtio --kernel "$KERNEL" \
        --initrd "$INITRD" --cmdline "$GUEST_CMDLINE smolvm.test=hvc"
    expect virtio-console "hvc0 carried a line both ways" has hvc "GUEST-HVC-GOT=hello-over-hvc"
}

# virtio-mmio devices found through the ACPI DSDT by Debian's stock kernel
# (virtio_mmio as a module), judged by its drivers, debugfs and e2fsck.
scenario_virtio_disks() {
    local a=$work/a.raw b=$work/b.ext4 c=$work/c.raw sum_before
    head -c $((16 << 20)) /dev/zero > "$a"
    printf HOSTDATA | dd of="$a" conv=notrunc 2> /dev/null
    head -c $((4 << 20)) /dev/urandom | dd of="$a" bs=1M seek=8 conv=notrunc 2> /dev/null
    mkfs.ext4 -q -F "$b" 32M
    head -c $((1 << 20)) /dev/urandom > "$c"
    sum_before=$(sha256sum < "$c")
    boot virtio --kernel "$KERNEL" --initrd "$INITRD" --cmdline "$GUEST_CMDLINE smolvm.test=virtio" \
        --disk "$a,id=disk-a" --disk "$b" --disk "$c,ro"
    expect virtio-blk-read "guest read the host's bytes from vda" has virtio "GUEST-VDA=HOSTDATA"
    expect virtio-blk-get-id "guest sees the disk's id as its serial" has virtio "GUEST-VDA-SERIAL=disk-a"
    expect virtio-blk-write "guest's write reached the image at 1 MiB" eval \
        'has virtio GUEST-VDA-WRITE-OK && [ "$(dd if="$a" bs=512 skip=2048 count=1 2>/dev/null | head -c 10)" = GUESTWROTE ]'
    expect virtio-blk-discard "the guest's discard punched 4 MiB out of the image: zeros, blocks freed" eval \
        'has virtio GUEST-DISCARD-OK && cmp -s -n $((4 << 20)) -i $((8 << 20)):0 "$a" /dev/zero &&
         [ "$(du -k "$a" | cut -f1)" -le $((12 << 10)) ]'
    expect virtio-blk-ext4 "ext4 written by the guest reads back in debugfs, e2fsck clean" eval \
        'has virtio GUEST-EXT4-OK && [ "$(debugfs -R "cat /hello.txt" "$b" 2>/dev/null)" = ext4-from-guest ] &&
         [ "$(debugfs -R "cat /dir/numbers" "$b" 2>/dev/null | wc -l)" = 20000 ] && e2fsck -fn "$b" > /dev/null 2>&1'
    expect virtio-blk-read-only "write to a ro disk fails in the guest, image unchanged" eval \
        'has virtio GUEST-RO-WRITE-FAILED && [ "$(sha256sum < "$c")" = "$sum_before" ]'
    expect virtio-rng "guest read 1 MiB from virtio_rng" has virtio "GUEST-RNG=virtio_rng.0 1048576"
    expect virtio-clean-exit "no device broke, smolvm exited 0" eval \
        'test "$rc" -eq 0 && ! grep -q "needs reset" "$work/virtio.err"'
}

# Two vCPUs doing I/O on one disk at once; the host checks the bytes.
# --virtio-discovery cmdline: each device as virtio_mmio.device=<size>@<base>:<irq>
# on the guest's command line and none in the DSDT. Debian's 6.1 kernel is
# built without CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES, so here the judge is
# the guest itself: the entries reach its command line, the init hands
# them to virtio_mmio as module parameters (which this kernel reports it
# does not know), and no device is found twice or through ACPI.
scenario_cmdline_discovery() {
    local a=$work/cd-a.raw b=$work/cd-b.raw
    truncate -s 16M "$a" "$b"
    printf HOSTDATA | dd of="$a" conv=notrunc 2> /dev/null
    boot cmdline-discovery --kernel "$KERNEL" --initrd "$INITRD" --virtio-discovery cmdline \
        --cmdline "console=ttyS0 panic=-1 smolvm.test=virtio" --disk "$a" --disk "$b,ro"
    # Found (a kernel with the option), or refused by name and not found
    # another way (Debian's).
    expect virtio-cmdline-entries "four devices (rng, two disks, vsock) on the guest's command line, handed to virtio_mmio, none from ACPI" \
        eval 'test "$rc" -eq 0 && test "$(grep -a "Kernel command line:" "$work/cmdline-discovery.out" | grep -o "virtio_mmio.device=0x[0-9a-f]*@0x[0-9a-f]*:[0-9]*" | sort -u | wc -l)" -eq 4 && { has cmdline-discovery GUEST-VDA=HOSTDATA || { has cmdline-discovery "virtio_mmio: unknown parameter .device." && has cmdline-discovery "GUEST-RNG=none 0"; }; }'
    # A kernel built with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES (tiny-kernel.sh)
    # takes every device from the command line, and they work: smolvm adds
    # acpi=noirq, so the kernel numbers IRQs by the MP table (IRQ N = GSI
    # N) while ACPI still powers it off.
    if [ -z "${TINY_KERNEL:-}" ]; then
        fail virtio-cmdline-discovery "no small kernel was built (tests/nested/tiny-kernel.sh)"
        return
    fi
    dd if=/dev/zero of="$a" bs=512 seek=2048 count=1 conv=notrunc 2> /dev/null
    boot cmdline-tiny --kernel "$TINY_KERNEL" --initrd "$INITRD" --virtio-discovery cmdline \
        --cmdline "console=ttyS0 panic=-1 smolvm.test=virtio" --disk "$a" --disk "$b,ro"
    expect virtio-cmdline-discovery "a kernel with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES registers all three devices from the command line, reads and writes the disk, reads 1 MiB from the rng, powers off" \
        eval 'test "$rc" -eq 0 && test "$(grep -a -c "virtio-mmio: Registering device virtio-mmio.[0-2] at 0xd000[0-2]000-0xd000[0-2]fff, IRQ [0-9]*" "$work/cmdline-tiny.out")" -eq 3 &&
            has cmdline-tiny GUEST-VDA=HOSTDATA && has cmdline-tiny GUEST-VDA-WRITE-OK &&
            [ "$(dd if="$a" bs=512 skip=2048 count=1 2> /dev/null | head -c 10)" = GUESTWROTE ] &&
            has cmdline-tiny "GUEST-RNG=virtio_rng.0 1048576"'
    # Without ACPI at all the MP table is all the kernel has: both vCPUs,
    # the I/O APIC and its pins come from there.
    boot mptable-tiny --cpus 2 --kernel "$TINY_KERNEL" --initrd "$INITRD" --virtio-discovery cmdline \
        --cmdline "console=ttyS0 panic=-1 acpi=off smolvm.test=virtio smolvm.end=reboot" \
        --disk "$a" --disk "$b,ro"
    expect mptable-no-acpi "with acpi=off the kernel finds 2 CPUs and the I/O APIC in the MP table; the devices work" \
        eval 'test "$rc" -eq 0 && has mptable-tiny "Intel MultiProcessor Specification v1.4" &&
            has mptable-tiny "smp: Brought up 1 node, 2 CPUs" && has mptable-tiny GUEST-VDA=HOSTDATA &&
            has mptable-tiny "GUEST-RNG=virtio_rng.0 1048576"'
}

scenario_smp_io() {
    local d=$work/smp.raw sums
    head -c $((16 << 20)) /dev/zero > "$d"
    boot smpio --cpus 2 --mem 512M --kernel "$KERNEL" --initrd "$INITRD" \
        --cmdline "$GUEST_CMDLINE smolvm.test=smp-io" --disk "$d"
    sums=$(sed -n 's/.*GUEST-SMP-IO-OK \([0-9a-f]*\) \([0-9a-f]*\).*/\1 \2/p' "$work/smpio.out")
    expect virtio-blk-two-vcpus "both vCPUs' writes read back in the guest and on the host" eval \
        '[ -n "$sums" ] && [ "$(head -c $((4 << 20)) "$d" | md5sum | cut -c1-32) $(tail -c +$(((4 << 20) + 1)) "$d" | head -c $((4 << 20)) | md5sum | cut -c1-32)" = "$sums" ]'
}

# bad_input NAME EXPECTED_RC [smolvm run args...]: one line on stderr, the
# right exit code, no sanitizer report, for both builds.
# The flagship: a running guest saved into a .smolmachine and resumed from
# it in a new smolvm process, its RAM (a token only the guest knew), its
# pending console read and its virtio disk carried over.
scenario_snapshot() {
    local bundle=$work/snap.smolmachine disk=$work/snap.raw token ps_out
    printf SNAPDISK > "$disk"
    truncate -s 16M "$disk"
    background snap-run run --name snap-a --kernel "$KERNEL" --initrd "$INITRD" \
        --disk "$disk" --cmdline "$GUEST_CMDLINE smolvm.test=snap"
    if ! wait_for snap-run GUEST-SNAP-READY; then
        finish snap-run
        fail snapshot-save "the guest never got ready (see snap-run.out/.err)"
        return
    fi
    sleep 1
    token=$(sed -n 's/.*GUEST-SNAP-READY token=\([0-9a-f-]*\).*/\1/p' "$work/snap-run.out" | head -n 1)
    ps_out=$("$SMOLVM" ps --json 2>&1)
    expect control-ps "ps --json lists the VM as running" \
        eval 'echo "$ps_out" | grep -q "\"name\": \"snap-a\"" && echo "$ps_out" | grep -q running'
    expect control-pause-resume "pause, then resume, answer ok" \
        eval '"$SMOLVM" pause snap-a && "$SMOLVM" ps | grep -q "snap-a.*paused" && "$SMOLVM" resume snap-a'
    "$SMOLVM" save snap-a -o "$bundle" > "$work/snap-save.out" 2>&1
    rc=$?
    cp "$work/snap-save.out" "$results/" 2>/dev/null
    expect snapshot-save "save writes the bundle" test "$rc" -eq 0 -a -s "$bundle"
    finish snap-run
    expect snapshot-save-ends-vm "the saved VM ends with 0" test "$rc" -eq 0
    background snap-start start "$bundle" --name snap-b --trace-boot --json
    sleep 2
    echo hello-after-restore >&7
    wait_for snap-start GUEST-SNAP-WRITE-OK
    "$SMOLVM" stop snap-b --force 2>/dev/null
    finish snap-start
    expect snapshot-resume "the restored guest read the line with its saved token" \
        has snap-start "GUEST-SNAP-GOT=hello-after-restore token=$token disk=SNAPDISK"
    expect snapshot-no-reboot "the restored guest did not boot again" \
        eval '! has snap-start SMOLVM-GUEST-UP'
    expect snapshot-disk-after-restore "the restored guest wrote its disk" \
        has snap-start GUEST-SNAP-WRITE-OK
    expect snapshot-trace "start traces state_restored" \
        grep -q '"state_restored":' "$work/snap-start.err"
    background snap-start2 start "$bundle" --name snap-c
    sleep 2
    echo hello-again >&7
    wait_for snap-start2 GUEST-SNAP-WRITE-OK
    finish snap-start2
    expect vmgenid-bound "Linux's vmgenid driver took our ACPI device" \
        has snap-run "GUEST-VMGENID-DEVICES=1"
    expect vmgenid-notified "each restore raised the GED interrupt once" \
        eval 'has snap-start "GUEST-GED-IRQS=1" && has snap-start2 "GUEST-GED-IRQS=1"'
    expect clones-differ "two starts of one bundle draw different random numbers" \
        eval 'a=$(grep -a -o "GUEST-RANDOM=[0-9a-f]*" "$work/snap-start.out"); b=$(grep -a -o "GUEST-RANDOM=[0-9a-f]*" "$work/snap-start2.out"); test -n "$a" -a -n "$b" -a "$a" != "$b"'
    head -c 100000 "$bundle" > "$work/snap-short.smolmachine"
    "$SMOLVM" start "$work/snap-short.smolmachine" < /dev/null > /dev/null 2> "$work/snap-short.err"
    rc=$?
    expect snapshot-truncated "a truncated bundle: exit 1, one line" \
        eval 'test "$rc" -eq 1 && test "$(wc -l < "$work/snap-short.err")" -eq 1 && grep -q truncated "$work/snap-short.err"'
}

# Anywhere in a line: the tty's echo of "quit" can land inside one.
# The guest's tty can echo a "quit" into a COUNT line ("COUNqT 38 ...
# daute=...i41t"): its letters are dropped before parsing.
counted_lines() { tr -d 'qui' < "$work/$1.out"; }
# Only whole counts ("COUNT N "): a VM that moved mid-line leaves its
# source's output ending in "COUNT " or "COUNT 7" (its rest printed on the
# destination, joined_first_count()), which was taken for a last count of
# '' (nested migrate-live-tcp [jail]: "last , first 80") or 7.
counts() { counted_lines "$1" | grep -a -o 'COUNT [0-9][0-9]* ' | cut -d' ' -f2; }
first_count() { counts "$1" | head -n 1; }
last_count() { counts "$1" | tail -n 1; }
date_at() { counted_lines "$1" | grep -a "COUNT $2 " | sed -n 's/.*date=\([0-9]*\).*/\1/p' | head -n 1; }
# count_or_next DISK LAST: the disk holds the last count the console showed,
# or the next one: the guest writes a count before printing it, and a
# "quit" its tty echoed can mangle that last line (seen: "quCitOUN").
count_or_next() { [ -n "$1" ] && [ -n "$2" ] && { [ "$1" = "$2" ] || [ "$1" = "$(($2 + 1))" ]; }; }
disk_counter() { debugfs -R 'cat /counter' "$1" 2>/dev/null | tr -d '\n'; }
# instance_raw NAME: the instance's disk 0 (a qcow2 overlay on the cached
# base; a received VM's, a raw copy of its own) flattened by qemu-img, for
# debugfs and e2fsck.
instance_raw() {
    local disk=$XDG_DATA_HOME/smolvm/instances/$1/disk.0.qcow2
    [ -f "$disk" ] || disk=${disk%.qcow2}
    qemu-img convert -O raw "$disk" "$work/$1.raw" && echo "$work/$1.raw"
}

# quit_counter NAME: asks the counter guest to stop (clean unmount) and
# waits for its smolvm to end.
quit_counter() {
    local i
    # Again until it is seen: busybox's `read -t` can drop a line that
    # lands as its timeout fires (the guest's tty echoed such a line).
    for i in $(seq 1 30); do
        # In a subshell: a smolvm that already ended (a start refused)
        # leaves the fifo without a reader, and SIGPIPE would end this
        # script, not just the echo.
        (echo quit >&7) 2>/dev/null
        for _ in 1 2 3 4 5 6; do
            grep -q GUEST-COUNTER-CLEAN "$work/$1.out" && break 2
            kill -0 "$bg_pid" 2>/dev/null || break 2
            sleep 0.5
        done
    done
    finish "$1"
}

# start_counter NAME BUNDLE AFTER [OPTION...]: starts BUNDLE (with the
# start OPTIONs), lets it count AFTER more times, quits it. Its instance disk ends up in $XDG_DATA_HOME.
start_counter() {
    local name=$1 first
    background "$name" start "$2" --name "$name" --trace-boot --json "${@:4}"
    wait_for "$name" 'COUNT '
    first=$(first_count "$name")
    wait_for "$name" "COUNT $((first + $3)) "
    quit_counter "$name"
}

# A bundle's first start (a fresh copy, its memory cache empty) by default
# (--memory serve) runs the guest while its RAM is served as touched
# (userfaultfd): the timer-driven
# guest goes on from its saved count, the trace counts the chunks it
# faulted in, the cache is whole after it, and a second start (mapping the
# cache) goes on from the same count.
ticks() { grep -a -o 'TICK [0-9]*' "$work/$1.out" | cut -d' ' -f2; }
# tick_saved NAME BUNDLE: the tick guest booted as NAME, saved into BUNDLE
# 20 lines on; $saved: its last count before the save.
tick_saved() {
    background "$1-run" run --name "$1" --kernel "$KERNEL" --initrd "$INITRD" \
        --cmdline "$GUEST_CMDLINE smolvm.test=tick"
    wait_for "$1-run" "TICK 20"
    "$SMOLVM" save "$1" -o "$2" > "$work/$1-save.out" 2>&1
    finish "$1-run"
    # The last whole line: the save may cut the line after it (seen:
    # "TICK 2" saved, "5" the resumed guest's first output).
    saved=$(ticks "$1-run" | tail -n 2 | head -n 1)
}
scenario_first_start_served() {
    local bundle=$work/tick.smolmachine copy=$work/tick-copy.smolmachine cache=$work/tick-cache
    local saved first1 first2 i
    mkdir -m 0700 -p "$cache"
    tick_saved tick "$bundle"
    cp "$bundle" "$copy"
    # The guest never ends: stopped (SIGTERM) 20 lines on, which also
    # finishes the first start's memory cache.
    for i in 1 2; do
        XDG_CACHE_HOME=$cache background "tick-$i" start "$copy" --name "tick-$i" --trace-boot --json
        wait_for "tick-$i" "TICK $((saved + 20))"
        kill -TERM "$bg_pid"
        finish "tick-$i"
    done
    first1=$(ticks tick-1 | head -n 1) first2=$(ticks tick-2 | head -n 1)
    echo "saved at $saved; first start's first line $first1, second's $first2" > "$work/tick.facts"
    cp "$work/tick.facts" "$results/"
    expect first-start-served-resumes "the first start's first line is the one after the saved count (tick.facts)" \
        eval 'test -n "$saved" && test -n "$first1" && test "$first1" -gt "$saved" && test "$first1" -le $((saved + 2)) && ticks tick-1 | grep -qx $((saved + 20))'
    expect first-start-served-by-faults "by default the first start's trace counts chunks placed as the guest touched them" \
        grep -q '"faulted_chunks":[1-9]' "$work/tick-1.err"
    expect first-start-fills-cache "the memory cache is whole after the first start (one .ram, no .tmp)" \
        eval 'test "$(ls "$cache/smolvm/memory" | grep -c "\.ram$")" = 1 && ! ls "$cache/smolvm/memory" | grep -q tmp'
    expect second-start-maps-cache "the second start maps the cache (no faults served) and goes on from the same count" \
        eval 'test "$first2" = "$first1" && ! grep -q faulted_chunks "$work/tick-2.err"'
    # A first start that finds the working set the second start recorded
    # (its cache file gone) decodes the chunks holding it into place before
    # the guest runs; the rest is served as touched.
    rm -f "$cache"/smolvm/memory/*.ram
    XDG_CACHE_HOME=$cache background tick-known start "$copy" --name tick-known --trace-boot --json
    wait_for tick-known "TICK $((saved + 20))"
    kill -TERM "$bg_pid"
    finish tick-known
    expect first-start-known-working-set "a first start with a working set known decodes its chunks before the guest runs and goes on from the same count" \
        eval 'test "$(ticks tick-known | head -n 1)" = "$first1" && ticks tick-known | grep -qx $((saved + 20)) && grep -q "\"prefilled_chunks\":[1-9]" "$work/tick-known.err"'
    # --memory map unpacks the whole cache before the guest runs.
    rm -rf "$cache/smolvm/memory"
    XDG_CACHE_HOME=$cache background tick-map start "$copy" --name tick-map --memory map --trace-boot --json
    wait_for tick-map "TICK $((saved + 5))"
    kill -TERM "$bg_pid"
    finish tick-map
    expect first-start-map-unpacks "with --memory map the first start serves no faults and goes on from the saved count" \
        eval 'test "$(ticks tick-map | head -n 1)" = "$first1" && ! grep -q faulted_chunks "$work/tick-map.err" && grep -q "\"state_restored\":" "$work/tick-map.err"'
    rm -rf "$cache" "$copy"
    first_start_ended_mid_serve TERM "$bundle" "$saved"
    first_start_ended_mid_serve KILL "$bundle" "$saved"
}

# A VM started from a bundle whose later start recorded its working set,
# saved, carries that set in the new bundle (section workingset, read from
# the bundle's table); a first start of the new bundle with no cache at all
# decodes those chunks before the guest runs (as a later start would find
# them) and goes on from the saved count. A bundle saved from a boot
# carries none.
scenario_bundled_working_set() {
    local bundle=$work/ws.smolmachine resaved=$work/ws-resaved.smolmachine
    local cache=$work/ws-cache fresh=$work/ws-fresh saved i
    mkdir -m 0700 -p "$cache" "$fresh"
    tick_saved ws "$bundle"
    # The first start (served) leaves a provisional set; the second maps
    # the cache and records the exact one at its first line; saved again
    # 20 lines on.
    for i in 1 2; do
        XDG_CACHE_HOME=$cache background "ws-$i" start "$bundle" --name "ws-$i"
        wait_for "ws-$i" "TICK $((saved + 20))"
        [ "$i" = 1 ] || "$SMOLVM" save "ws-$i" -o "$resaved" > "$work/ws-resave.out" 2>&1
        kill -TERM "$bg_pid"
        finish "ws-$i"
    done
    saved=$(ticks ws-2 | tail -n 2 | head -n 1)
    expect bundled-working-set-saved "a save of a VM whose start recorded its working set carries it (a boot's save does not)" \
        eval 'head -c 4096 "$resaved" | grep -qa workingset && ! head -c 4096 "$bundle" | grep -qa workingset'
    XDG_CACHE_HOME=$fresh background ws-first start "$resaved" --name ws-first --trace-boot --json
    wait_for ws-first "TICK $((saved + 5))"
    kill -TERM "$bg_pid"
    finish ws-first
    # Up to 3 on: the save can cut a line anywhere, even after its "T"
    # (seen in CI: the saving start's output ended "TICK 56\r\nT", the
    # first start's began "ICK 57", so ticks saw 55 56 | 58).
    expect bundled-working-set-prefilled "a first start of that bundle decodes the set's chunks before the guest runs and goes on from the saved count" \
        eval 'test -n "$saved" && test "$(ticks ws-first | head -n 1)" -gt "$saved" && test "$(ticks ws-first | head -n 1)" -le $((saved + 3)) && grep -q "\"prefilled_chunks\":[1-9]" "$work/ws-first.err"'
    rm -rf "$cache" "$fresh" "$bundle" "$resaved"
}

runs() { case "$(ps -o stat= -p "$1" 2>/dev/null)" in "" | Z*) return 1 ;; esac; }

# first_start_ended_mid_serve SIG BUNDLE SAVED: a first start (served, the
# fill still behind the guest) sent SIG right after its first line ends
# within 30 s (SIGKILL to smolvm itself, not to its timeout wrapper).
# Under --jail smolvm is two processes, the relay the user sees and the
# VMM below it: SIG goes to the first, and both must end.
first_start_ended_mid_serve() {
    local sig=$1 copy=$work/tick-$1.smolmachine cache=$work/tick-cache-$1 vmm all t filled p left
    cp "$2" "$copy"
    mkdir -m 0700 -p "$cache"
    XDG_CACHE_HOME=$cache background "tick-$sig" start "$copy" --name "tick-$sig" --memory serve --trace-boot --json
    wait_for "tick-$sig" "TICK $(($3 + 1))"
    all=$(smolvm_procs "$bg_pid" | tr '\n' ' ')
    vmm=${all%% *}
    filled=$(ls "$cache/smolvm/memory" 2>/dev/null | grep -c '\.ram$')
    [ -n "$vmm" ] && kill "-$sig" $vmm
    for t in $(seq 1 30); do
        left=
        for p in $all; do runs "$p" && left="$left $p"; done
        [ -z "$left" ] && break
        sleep 1
    done
    echo "SIG$sig at the first line (cache whole then: $filled): smolvm processes $all; left:${left:- none} $(for p in $left; do ps -o pid,stat,wchan:30 -p "$p" | tail -n +2; done)" \
        >> "$work/tick-ends.facts"
    expect "first-start-ends-on-sig$sig" "smolvm (pids ${all:-none}) ended within 30 s of SIG$sig to ${vmm:-none} mid-serve (tick-ends.facts)" \
        eval 'test -n "$vmm" && test -z "$left"'
    for p in $left; do kill -KILL "$p" 2>/dev/null; done
    finish "tick-$sig"
    cp "$work/tick-ends.facts" "$results/" 2>/dev/null
    rm -rf "$copy" "$cache"
}

# A first start (served) of the counter bundle with one stored chunk
# changed, one the guest did not touch in a first start of the same bundle
# (its provisional working set) and past 40% of the stored chunks: the
# fill comes to it after the guest has run and written its disk (a touch
# of it by the guest would be the same failure, sooner):
# the VM stops the normal way -- exit 1, one line "smolvm: start: ...
# memory chunk N ...", its vCPUs joined, its disk flushed and closed. The
# instance's qcow2 overlay checks clean: a VMM that ended with _exit left
# the clusters its writes had set aside leaked.
scenario_first_start_corrupt_chunk() {
    local bundle=$work/counter.smolmachine copy=$work/corrupt.smolmachine cache=$work/corrupt-cache
    local chunk saved overlay=$XDG_DATA_HOME/smolvm/instances/corrupt/disk.0.qcow2 t
    if [ ! -s "$bundle" ]; then
        save_counter_bundle
        quit_counter cnt
    fi
    cp "$bundle" "$copy"
    mkdir -m 0700 -p "$cache"
    XDG_CACHE_HOME=$cache background corrupt-probe start "$copy" --name corrupt-probe
    wait_for corrupt-probe 'COUNT '
    sleep 5 # the fill done: the chunks the guest faulted in written down
    kill -TERM "$bg_pid"
    finish corrupt-probe
    chunk=$(python3 "$(dirname "$(realpath "$0")")/corrupt-chunk.py" "$copy" 0.4 "$cache"/smolvm/memory/*.ws)
    rm -rf "$cache" "$XDG_DATA_HOME/smolvm/instances/corrupt-probe"
    mkdir -m 0700 -p "$cache"
    XDG_CACHE_HOME=$cache background corrupt start "$copy" --name corrupt
    for t in $(seq 1 120); do
        kill -0 "$bg_pid" 2>/dev/null || break
        sleep 1
    done
    kill -TERM "$bg_pid" 2>/dev/null # (a VM still running after 120 s fails below)
    finish corrupt
    qemu-img check "$overlay" > "$work/corrupt-check.txt" 2>&1
    local checked=$? left
    left=$(find "$XDG_RUNTIME_DIR" -name 'corrupt*' | tr '\n' ' ')
    {
        echo "left in the runtime folder: ${left:-nothing}"
        echo "chunk $chunk changed; exit $rc after ~${t}s; counts $(first_count corrupt)..$(last_count corrupt)"
        echo "stderr:"
        cat "$work/corrupt.err"
        echo "qemu-img check (exit $checked):"
        cat "$work/corrupt-check.txt"
    } > "$results/first-start-corrupt.txt"
    expect first-start-corrupt-chunk-stops "a served start meeting a corrupt chunk ends: exit 1, one line 'smolvm: start: ... memory chunk $chunk ...' (first-start-corrupt.txt)" \
        eval 'test "$rc" -eq 1 && test "$(wc -l < "$work/corrupt.err")" -eq 1 && grep -q "^smolvm: start: .*memory chunk $chunk\b" "$work/corrupt.err"'
    expect first-start-corrupt-chunk-disk-closed "the guest wrote its disk before, and the instance's overlay checks clean (no leaked clusters: closed, not cut off)" \
        eval 'test -n "$(last_count corrupt)" && test "$checked" -eq 0'
    expect first-start-corrupt-chunk-cleans-up "and it ended as a VM that stops: its control and console sockets removed (an _exit left them)" \
        test -z "$left"
    rm -rf "$cache" "$copy"
}

# The issue's own test: a 2-vCPU guest with virtio-blk and virtio-console
# counting in RAM and on disk is saved with --resume mid-I/O; the bundle is
# started twice; each start continues from the saved count with the saved
# disk, neither sees the other's writes, every disk checks clean, the
# bundle is never written, and the guest's clock moved on over the gap.
# The counter guest (2 vCPUs, virtio-blk and virtio-console) saved with
# --resume mid-count to $work/counter.smolmachine, still running as cnt;
# the save's exit status in rc.
save_counter_bundle() {
    local disk=$work/counter.ext4
    mkfs.ext4 -q -F "$disk" 32M
    background cnt run --name cnt --cpus 2 --mem 512M --console virtio --kernel "$KERNEL" \
        --initrd "$INITRD" --disk "$disk" --cmdline "$GUEST_CMDLINE smolvm.test=counter"
    wait_for cnt 'COUNT 20 '
    "$SMOLVM" save cnt -o "$work/counter.smolmachine" --resume > "$work/cnt-save.out" 2>&1
    rc=$?
}

scenario_snapshot_counter() {
    local disk=$work/counter.ext4 bundle=$work/counter.smolmachine saved sum1 sum2 d0 d1 f1 f2 r1 r2 c1 h1
    save_counter_bundle
    saved=$(last_count cnt)
    expect snapshot-save-resume "save --resume writes the bundle" test "$rc" -eq 0 -a -s "$bundle"
    wait_for cnt "COUNT $((saved + 10)) "
    quit_counter cnt
    expect snapshot-resume-keeps-running "the saved VM counted on and unmounted cleanly" \
        eval 'test "$rc" -eq 0 && test "$(last_count cnt)" -ge $((saved + 10)) && e2fsck -fn "$disk" > /dev/null 2>&1'
    sum1=$(sha256sum < "$bundle")
    sleep 5 # the guest's clock must move over this gap
    # Unpacked first (--memory map): its working set is the exact one,
    # which the second start prefetches (a served start's is the chunks
    # it faulted in, which the next start records again instead).
    start_counter cnt1 "$bundle" 30 --memory map
    r1=$(instance_raw cnt1) # the first start's disk before the second runs
    c1=$(disk_counter "$r1") h1=$(sha256sum < "$r1")
    start_counter cnt2 "$bundle" 10
    sum2=$(sha256sum < "$bundle")
    f1=$(first_count cnt1) f2=$(first_count cnt2)
    expect snapshot-continues-count "each start goes on from the saved count ($saved)" \
        eval 'test "$f1" -gt 0 && test "$f1" -le $((saved + 2)) && test "$f1" -ge $((saved - 2)) && test "$f1" = "$f2"'
    expect snapshot-not-rebooted "no start booted again" \
        eval '! has cnt1 SMOLVM-GUEST-UP && ! has cnt2 SMOLVM-GUEST-UP'
    local prefetched
    prefetched=$(grep -a -o '"prefetched_pages":[0-9]*' "$work/cnt2.err" | cut -d: -f2)
    expect snapshot-working-set "the first start recorded its working set, the second faulted ${prefetched:-no} pages in before running (and went on from the same count)" \
        eval '! grep -q prefetched_pages "$work/cnt1.err" && test "${prefetched:-0}" -gt 100'
    # COUNT f1 can be a line the guest queued before the save and the
    # restored console sends out: the first count made after the start is
    # f1 + 1, and the original printed f1 before the save.
    d0=$(date_at cnt "$f1") d1=$(date_at cnt1 "$((f1 + 1))")
    expect snapshot-clock-moves-on "the restored guest's clock covers the gap (${d0:-?} -> ${d1:-?})" \
        eval 'test -n "$d0" && test -n "$d1" && test $((d1 - d0)) -ge 4'
    local o1=$XDG_DATA_HOME/smolvm/instances/cnt1/disk.0.qcow2 o2=$XDG_DATA_HOME/smolvm/instances/cnt2/disk.0.qcow2
    expect snapshot-disks-are-deltas "instances write qcow2 deltas on one cached base (qemu-img check clean, each < 4 MiB of a 32 MiB disk)" \
        eval 'qemu-img check -q "$o1" && qemu-img check -q "$o2" && test "$(du -k "$o1" | cut -f1)" -lt 4096 && test "$(du -k "$o2" | cut -f1)" -lt 4096 && b1=$(qemu-img info --output=json "$o1" | grep -o "\"backing-filename\": \"[^\"]*\"") && test -n "$b1" && test "$b1" = "$(qemu-img info --output=json "$o2" | grep -o "\"backing-filename\": \"[^\"]*\"")"'
    r1=$(instance_raw cnt1) r2=$(instance_raw cnt2)
    # The second start leaves the first's disk byte for byte as it was
    # (whatever counts the two reached: quitting can take a few more).
    {
        echo "first start: last count $(last_count cnt1), its disk $c1 before the second start, $(disk_counter "$r1") after"
        echo "first start's flattened disk: $h1 before, $(sha256sum < "$r1") after"
        echo "second start: last count $(last_count cnt2), its disk $(disk_counter "$r2")"
        qemu-img info "$XDG_DATA_HOME/smolvm/instances/cnt1/disk.0.qcow2" | grep -i backing
        qemu-img info "$XDG_DATA_HOME/smolvm/instances/cnt2/disk.0.qcow2" | grep -i backing
    } > "$results/snapshot-disks-separate.txt" 2>&1
    expect snapshot-disks-separate "each start wrote its own disk (see snapshot-disks-separate.txt)" \
        eval 'count_or_next "$c1" "$(last_count cnt1)" && test "$(sha256sum < "$r1")" = "$h1" && count_or_next "$(disk_counter "$r2")" "$(last_count cnt2)"'
    expect snapshot-disks-clean "e2fsck -fn: both instance disks clean" \
        eval 'e2fsck -fn "$r1" > /dev/null 2>&1 && e2fsck -fn "$r2" > /dev/null 2>&1'
    expect snapshot-bundle-unchanged "starting never writes the bundle" test "$sum1" = "$sum2"
    cp "$work/cnt-save.out" "$results/" 2>/dev/null
    # A VM started from a bundle, saved again: its disk is an overlay on the
    # disk cache (named like a layer, but not one), and the new bundle
    # starts where the second save left it.
    local again=$work/counter-again.smolmachine resaved save_rc
    background cnt3 start "$bundle" --name cnt3
    wait_for cnt3 'COUNT '
    "$SMOLVM" save cnt3 -o "$again" > "$work/cnt3-save.out" 2>&1
    save_rc=$?
    finish cnt3
    resaved=$(last_count cnt3)
    cp "$work/cnt3-save.out" "$results/" 2>/dev/null
    start_counter cnt4 "$again" 5
    f1=$(first_count cnt4)
    expect snapshot-saved-again "a started VM saves again (exit $save_rc) and that bundle goes on from its count ($resaved -> ${f1:-none})" \
        eval 'test "$save_rc" -eq 0 && test -n "$f1" && test "$f1" -ge $((resaved - 2)) && test "$f1" -le $((resaved + 2))'
}

# receiver NAME FD ARGS...: `smolvm receive ARGS` in the background, its
# console in $work/NAME.out, its stdin a fifo held open on fd FD (3-9);
# pid in $recv_pid (smolvm's own: no timeout wrapper, so a kill reaches it;
# scenario_migrate ends what is left).
receiver() {
    local name=$1 fd=$2 fifo=$work/$1.fifo
    shift 2
    rm -f "$fifo"
    mkfifo "$fifo"
    "$SMOLVM" receive --name "$name" "$@" < "$fifo" > "$work/$name.out" 2> "$work/$name.err" &
    recv_pid=$!
    eval "exec $fd> \"$fifo\""
}

# until_listening ADDRESS: a unix socket there, or a TCP port listening.
until_listening() {
    local i port
    for i in $(seq 1 60); do
        case $1 in
        unix:*) test -S "${1#unix:}" && return 0 ;;
        tcp:*) port=$(printf '%04X' "${1##*:}")
            grep -q ":$port 00000000:0000 0A" /proc/net/tcp && return 0 ;;
        esac
        sleep 0.5
    done
    return 1
}

# moved SOURCE SOURCE_PID DEST DEST_PID: after a migration, waits for the
# source's smolvm to end (its code in src_rc), then for the destination to
# count 3 more; the source's last count in $last, the destination's first
# in $first.
# joined_first_count FROM TO: the first count on TO's console, with the
# line the guest was writing at the pause made whole again: FROM's
# unfinished last line ("C") and TO's first ("OUNT 49 ...") are one line,
# split by the migration (seen in CI). A FROM line that already holds a
# whole count is not joined: TO's own first count is what is checked.
joined_first_count() {
    local partial=
    if [ -s "$work/$1.out" ] && [ -n "$(tail -c 1 "$work/$1.out" | tr -d '\n')" ]; then
        partial=$(tail -n 1 "$work/$1.out" | tr -d 'qui')
        if printf '%s' "$partial" | grep -aqE 'COUNT [0-9]+ '; then partial=; fi
    fi
    { printf '%s' "$partial"; counted_lines "$2"; } | grep -a -o 'COUNT [0-9]*' | head -n 1 |
        cut -d' ' -f2
}

moved() {
    wait "$2"
    src_rc=$?
    cp "$work/$1.out" "$work/$1.err" "$results/" 2>/dev/null
    last=$(last_count "$1")
    bg_pid=$4
    wait_for "$3" 'COUNT '
    first=$(joined_first_count "$1" "$3")
    wait_for "$3" "COUNT $((first + 3)) "
}

# migrate SOURCE ADDRESS OUT [options]: smolvm migrate, its exit code in rc.
migrate_to() {
    local from=$1 to=$2 out=$3
    shift 3
    timeout -k 10 "$BOOT_TIMEOUT" "$SMOLVM" migrate "$from" --to "$to" "$@" > "$work/$out.mig" 2>&1
    rc=$?
    cp "$work/$out.mig" "$results/" 2>/dev/null
}

# huge_share PID: the percentage of the resident memory of PID and the
# smolvm processes below it (a jailed VMM) that is in transparent huge
# pages; empty when /proc says nothing.
huge_share() {
    local p rss=0 huge=0 v
    for p in "$1" $(smolvm_procs "$1"); do
        v=$(awk '/^Rss:/ { r = $2 } /^AnonHugePages:/ { h = $2 } END { print r + 0, h + 0 }' \
            "/proc/$p/smaps_rollup" 2>/dev/null) || continue
        rss=$((rss + ${v% *})) huge=$((huge + ${v#* }))
    done
    [ "$rss" -gt 0 ] && echo $((huge * 100 / rss))
}

# Migration between smolvm processes in this L1 (issue 24): the counter
# guest (RAM and disk) goes warm over a unix socket (RAM in one round while
# it runs, a short pause) and back live over
# loopback TCP, each time continuing at the next count; a receiver killed
# mid-transfer leaves the source counting, with one line, and nothing on
# the destination's side; the attempt after it succeeds.
scenario_migrate() {
    local disk=$work/mig.ext4 src before after first last cut=tcp:127.0.0.1:47011
    local sock=unix:$work/mig.sock back=tcp:127.0.0.1:47012 src_pid dst_pid src_rc pids=
    local BOOT_TIMEOUT=900 # three migrations of one guest under TCG
    ip link set lo up 2>/dev/null || busybox ip link set lo up
    mkfs.ext4 -q -F "$disk" 32M
    background mig run --name mig --cpus 2 --mem 256M --console virtio --kernel "$KERNEL" \
        --initrd "$INITRD" --disk "$disk" --cmdline "$GUEST_CMDLINE smolvm.test=counter"
    src_pid=$bg_pid
    wait_for mig 'COUNT 8 '
    # 1. The link cut: the receiver killed while the VM is on its way.
    receiver migcut 8 --listen "$cut"
    pids="$pids $recv_pid"
    until_listening "$cut"
    migrate_to mig "$cut" migcut --max-bandwidth 1M &
    local mig_pid=$!
    sleep 3
    kill -9 "$recv_pid"
    wait "$mig_pid"
    before=$(last_count mig)
    wait_for mig "COUNT $((before + 3)) "
    after=$(last_count mig)
    expect migrate-cut-source-runs "receiver killed mid-migration: migrate fails with one line, the source counts on ($before -> $after; see migcut.mig)" \
        eval 'test "$(wc -l < "$work/migcut.mig")" -eq 1 && grep -q "smolvm: migrate: " "$work/migcut.mig" && test "$after" -ge $((before + 3))'
    expect migrate-cut-nothing-kept "the killed receiver left no instance folder and no received bundle" \
        eval '! test -e "$XDG_DATA_HOME/smolvm/instances/migcut" && ! ls "$XDG_DATA_HOME/smolvm/migrate/" 2>/dev/null | grep -q .'
    exec 8>&-
    # 2. Again, over a unix socket: the VM goes, the source ends with 0.
    receiver migdst 8 --listen "$sock"
    dst_pid=$recv_pid
    pids="$pids $recv_pid"
    until_listening "$sock"
    migrate_to mig "$sock" migdst --json
    expect migrate-unix "migrate over a unix socket exits 0 with its figures, the source's teardown apart (see migdst.mig)" \
        eval 'test "$rc" -eq 0 && grep -q "\"downtime_ms\"" "$work/migdst.mig" && grep -q "\"wind_down_ms\"" "$work/migdst.mig"'
    # Warm sends RAM once while the VM runs (one round), so the pause is
    # what changed since, not all of RAM compressed (4.1 s here before).
    local warm_ms
    warm_ms=$(tail -n 1 "$work/migdst.mig" | sed -n 's/.*"downtime_ms":\([0-9]*\).*/\1/p')
    expect migrate-warm-short-pause "warm: RAM went in one round while the VM ran, the pause took ${warm_ms:-?} ms (under 2500; see migdst.mig)" \
        eval 'test "$(tail -n 1 "$work/migdst.mig" | grep -o "\"round\":[0-9]*" | wc -l)" -eq 1 && test -n "$warm_ms" && test "$warm_ms" -lt 2500'
    moved mig "$src_pid" migdst "$dst_pid"
    exec 7>&-
    expect migrate-source-stops "the source smolvm ended with 0 once the VM ran on the destination" test "$src_rc" -eq 0
    expect migrate-continues-count "the destination goes on at the next count (source's last $last, destination's first ${first:-none})" \
        eval 'test -n "$first" && test "$first" -ge "$last" && test "$first" -le $((last + 1)) && ! has migdst SMOLVM-GUEST-UP'
    # Jailed, the killed receiver's folder had a temporary name
    # (.migcut.receiving-PID); this receive removed it (its receiver gone),
    # and its own took its name as the VM arrived.
    expect migrate-cut-swept "no temporary folder of a receiver is left, the received VM's folder has its name (see instances.txt)" \
        eval 'ls -a "$XDG_DATA_HOME/smolvm/instances/" > "$results/instances.txt" 2>&1; ! grep -q "\.receiving-" "$results/instances.txt" && { test -z "$jailed" || grep -qx migdst "$results/instances.txt"; }'
    # 3. And back, live, over loopback TCP into a third process.
    receiver migback 9 --listen "$back"
    pids="$pids $recv_pid"
    until_listening "$back"
    migrate_to migdst "$back" migback --live --max-downtime 500 --json
    if [ "$rc" -ne 0 ]; then # the source runs on: do not wait for it to end
        fail migrate-live-tcp "live over loopback TCP: migrate failed (see migback.mig, migback.err)"
        cp "$work/migback.out" "$work/migback.err" "$results/" 2>/dev/null
        for p in $pids; do kill -9 "$p" 2>/dev/null; done
        exec 7>&- 8>&- 9>&-
        return
    fi
    moved migdst "$dst_pid" migback "$recv_pid"
    exec 8>&-
    # The RAM that came lies in huge pages, as the source's did: in 4 KiB
    # pages the guest took a nested page fault for each page it touched
    # after the hand-over (bench/migrate: 537 before its first line, 31 in
    # huge pages), and only 3-22% of the destination's memory was huge.
    local huge
    huge=$(huge_share "$recv_pid")
    expect migrate-ram-huge "the destination's RAM is in huge pages: ${huge:-?}% of its resident memory (50 or more; unless this host has none)" \
        eval 'grep -q "\[never\]" /sys/kernel/mm/transparent_hugepage/enabled || test "${huge:-0}" -ge 50'
    expect migrate-live-tcp "live over loopback TCP: pre-copy rounds, then the count goes on (last $last, first ${first:-none}; see migback.mig)" \
        eval 'test "$rc" -eq 0 && grep -q "\"rounds\":\[{\"round\":1" "$work/migback.mig" && test -n "$first" && test "$first" -ge "$last" && test "$first" -le $((last + 1))'
    exec 7>&9 9>&-
    quit_counter migback
    local raw
    raw=$(instance_raw migback)
    expect migrate-disk-clean "the disk that moved twice checks clean and holds the guest's last count" \
        eval 'test "$rc" -eq 0 && e2fsck -fn "$raw" > /dev/null 2>&1 && test "$(disk_counter "$raw")" -ge "$first"'
    for p in $pids; do kill -9 "$p" 2>/dev/null; done
    exec 8>&- 9>&-
}

# Migration of a jailed VM (issue 23): the source runs under --jail with
# --net none (its own network namespace and root: it could dial nothing),
# the receivers under receive --jail. smolvm migrate connects and passes
# the link over the control socket. Warm over a unix socket (a path
# outside the source's jail), then live over TCP into a second jailed
# receiver; each time the count goes on there. Every thread of the
# source's processes (the relay outside the jail, the VMM) shows Seccomp: 2.
scenario_migrate_jailed() {
    local sock=unix:$work/migj.sock back=tcp:127.0.0.1:47041 src_pid dst_pid src_rc first last
    local pids= p ps_out procs bad n vmm_threads BOOT_TIMEOUT=900 SMOLVM=$real_smolvm
    ip link set lo up 2>/dev/null || busybox ip link set lo up
    background migj run --jail --net none --name migj --cpus 2 --mem 256M --kernel "$KERNEL" \
        --initrd "$INITRD" --cmdline "$GUEST_CMDLINE smolvm.test=counter"
    src_pid=$bg_pid
    wait_for migj 'COUNT 5 '
    ps_out=$("$SMOLVM" ps --json 2>&1)
    echo "$ps_out" > "$results/migj-ps.txt"
    expect migrate-jailed-source "the source counts, jailed in its own network namespace (see migj-ps.txt)" \
        eval 'has migj "COUNT 5 " && echo "$ps_out" | grep -qF "\"confinement\": \"jail (user, mount, pid, ipc, net ns)\""'
    seccomp_tree "$src_pid" "$results/migj-threads.txt"
    expect migrate-jailed-seccomp "every thread of the jailed source's smolvm processes (${procs:-none}: relay and VMM) shows Seccomp: 2 (not:${bad:- none}; see migj-threads.txt)" \
        eval 'test "$(echo $procs | wc -w)" -ge 2 && test "$vmm_threads" -ge 3 && test -z "$bad"'
    # 1. Warm, over a unix socket, into a jailed receiver.
    receiver migjdst 8 --listen "$sock" --jail
    dst_pid=$recv_pid
    pids="$pids $recv_pid"
    until_listening "$sock"
    migrate_to migj "$sock" migjdst --json
    if [ "$rc" -ne 0 ]; then
        fail migrate-jailed-unix "migrate of the jailed VM failed (see migjdst.mig, migj.err, migjdst.err)"
        cp "$work/migjdst.err" "$work/migj.err" "$results/" 2>/dev/null
        "$SMOLVM" stop migj --force > /dev/null 2>&1
        for p in $pids; do kill -9 "$p" 2>/dev/null; done
        exec 7>&- 8>&-
        return
    fi
    moved migj "$src_pid" migjdst "$dst_pid"
    exec 7>&-
    ps_out=$("$SMOLVM" ps --json 2>&1)
    echo "$ps_out" > "$results/migjdst-ps.txt"
    expect migrate-jailed-unix "the jailed VM moved over a unix socket into a jailed receiver and counts on there (source's last $last, destination's first ${first:-none}; source exit $src_rc; see migjdst.mig, migjdst-ps.txt)" \
        eval 'test "$src_rc" -eq 0 && test -n "$first" && test "$first" -ge "$last" && test "$first" -le $((last + 1)) && ! has migjdst SMOLVM-GUEST-UP && echo "$ps_out" | grep -q "\"confinement\": \"jail ("'
    # 2. Live, over loopback TCP, from that jailed receiver into another,
    # which says where its time went (stderr).
    SMOLVM_MIGRATE_STATS=1 receiver migjback 9 --listen "$back" --jail
    pids="$pids $recv_pid"
    until_listening "$back"
    migrate_to migjdst "$back" migjback --live --max-downtime 500 --json
    if [ "$rc" -ne 0 ]; then
        fail migrate-jailed-live-tcp "live over TCP from a jailed receiver: migrate failed (see migjback.mig, migjback.err)"
        cp "$work/migjback.out" "$work/migjback.err" "$work/migjdst.err" "$results/" 2>/dev/null
        for p in $pids; do kill -9 "$p" 2>/dev/null; done
        exec 8>&- 9>&-
        return
    fi
    moved migjdst "$dst_pid" migjback "$recv_pid"
    exec 8>&-
    expect migrate-jailed-live-tcp "live over TCP from one jailed receiver to another: rounds, then the count goes on (last $last, first ${first:-none}; see migjback.mig)" \
        eval 'test "$rc" -eq 0 && grep -q "\"rounds\":\[{\"round\":1" "$work/migjback.mig" && test -n "$first" && test "$first" -ge "$last" && test "$first" -le $((last + 1))'
    # A VM without disks is built whole from its config while the rounds
    # run: the pause only loads its state (its devices made in the pause
    # were half or more of it).
    expect migrate-devices-ahead "the receiver made the VM's devices before the pause (see migjback.err)" \
        grep -q "its devices before the pause" "$work/migjback.err"
    exec 7>&9 9>&-
    quit_counter migjback
    cp "$work/migjback.out" "$work/migjback.err" "$results/" 2>/dev/null
    for p in $pids; do kill -9 "$p" 2>/dev/null; done
    exec 7>&-
}

# cut_and_count POINT PORT: a live migration of the counter guest "cuts"
# (the test build's hook cutting the link at POINT: 10, 50 or final) to a
# receiver on PORT: migrate fails with one line, the receiver with one,
# the source counts on, the destination keeps nothing. (Not "name": the
# checks run inside expect, whose own "name" would hide it.)
cut_and_count() {
    local point=$1 to=tcp:127.0.0.1:$2 cut=cut$1 before after recv_rc
    echo "$point" > "$cut_plan"
    receiver "$cut" 8 --listen "$to"
    until_listening "$to"
    migrate_to cuts "$to" "$cut" --live --max-bandwidth 32M
    wait "$recv_pid"
    recv_rc=$?
    exec 8>&-
    cp "$work/$cut.err" "$results/" 2>/dev/null
    before=$(last_count cuts)
    wait_for cuts "COUNT $((before + 3)) "
    after=$(last_count cuts)
    expect "migrate-cut-$point" "link cut at $point: migrate exits 1 with one line, the receiver too, the source counts on ($before -> $after; see $cut.mig, $cut.err)" \
        eval 'test "$rc" -eq 1 && test "$(grep -vc "^round [0-9]*:" "$work/$cut.mig")" -eq 1 && grep -q "smolvm: migrate: .*link" "$work/$cut.mig" && test "$recv_rc" -eq 1 && test "$(wc -l < "$work/$cut.err")" -eq 1 && test "$after" -ge $((before + 3))'
    expect "migrate-cut-$point-nothing-kept" "link cut at $point: no instance folder, nothing in the scratch folder" \
        eval '! test -e "$XDG_DATA_HOME/smolvm/instances/$cut" && ! ls "$XDG_DATA_HOME/smolvm/migrate/" 2>/dev/null | grep -q .'
}

# Live migration under load (issue 24). The counter guest (a test build
# of smolvm, whose hook cuts the link where $SMOLVM_TEST_MIGRATE_CUT's file
# says) has its link cut at 10% and 50% of round 0 and in the final
# stop-and-copy: each time it counts on, nothing is kept; then it goes.
# A guest dirtying up to 64 MiB/s of RAM (and writing its disk without
# pause) goes live under a 100M cap with auto-converge: it converges
# (fewer rounds than the limit), counts on there, and its disk checks clean.
scenario_migrate_load() {
    local disk=$work/cuts.ext4 ddisk=$work/dirt.ext4 point port=47020 src_pid src_rc first last
    local ok=tcp:127.0.0.1:47030 dirt_to=tcp:127.0.0.1:47031 BOOT_TIMEOUT=900 raw
    # The hook's plan (cut_and_count writes it) where the VMM reads it,
    # jailed too: in its own runtime folder, which its jail holds.
    local cut_plan=$XDG_RUNTIME_DIR/smolvm/cuts.vm/cut-plan
    mkdir -m 0700 -p "$XDG_RUNTIME_DIR/smolvm" "${cut_plan%/*}"
    ip link set lo up 2>/dev/null || busybox ip link set lo up
    if [ "$SMOLVM_ASAN" = "$SMOLVM" ]; then
        fail migrate-cut "no test build (build-asan) to pull the cut hook"
    else
        mkfs.ext4 -q -F "$disk" 32M
        SMOLVM=$SMOLVM_ASAN SMOLVM_TEST_MIGRATE_CUT=$cut_plan background cuts run --name cuts \
            --cpus 2 --mem 256M --console virtio --kernel "$KERNEL" --initrd "$INITRD" \
            --disk "$disk" --cmdline "$GUEST_CMDLINE smolvm.test=counter"
        src_pid=$bg_pid
        wait_for cuts 'COUNT 5 '
        for point in 10 50 final; do
            cut_and_count "$point" $((port++))
        done
        rm -f "$cut_plan"
        receiver cutok 8 --listen "$ok"
        local ok_pid=$recv_pid
        until_listening "$ok"
        migrate_to cuts "$ok" cutok --live --json
        if [ "$rc" -eq 0 ]; then
            moved cuts "$src_pid" cutok "$ok_pid"
            exec 7>&-
            expect migrate-after-cuts "after three cuts a live migration goes and the count goes on (last $last, first ${first:-none}; see cutok.mig)" \
                eval 'test "$src_rc" -eq 0 && test -n "$first" && test "$first" -ge "$last" && test "$first" -le $((last + 1))'
        else
            fail migrate-after-cuts "after three cuts the live migration failed (see cutok.mig, cutok.err)"
            cp "$work/cutok.err" "$results/" 2>/dev/null
        fi
        kill -9 "$src_pid" "$ok_pid" 2>/dev/null
        exec 7>&- 8>&-
        rm -f "$disk"
    fi
    # The dirtier, under a cap.
    mkfs.ext4 -q -F "$ddisk" 64M
    background dirt run --name dirt --cpus 2 --mem 256M --console virtio --kernel "$KERNEL" \
        --initrd "$INITRD" --disk "$ddisk" --cmdline "$GUEST_CMDLINE smolvm.test=dirtier"
    src_pid=$bg_pid
    wait_for dirt 'COUNT 5 '
    for _ in $(seq 1 120); do [ "$(grep -c DIRTIED "$work/dirt.out")" -ge 2 ] && break; sleep 1; done
    receiver dirtdst 9 --listen "$dirt_to"
    local dst_pid=$recv_pid
    until_listening "$dirt_to"
    migrate_to dirt "$dirt_to" dirtdst --live --max-bandwidth 100M --json
    grep -a DIRTIED "$work/dirt.out" > "$results/dirt-rates.txt"
    if [ "$rc" -ne 0 ]; then
        fail migrate-dirtier "the dirtying guest did not move (see dirtdst.mig, dirtdst.err)"
        cp "$work/dirtdst.err" "$results/" 2>/dev/null
        kill -9 "$src_pid" "$dst_pid" 2>/dev/null
        exec 7>&- 9>&-
        rm -f "$ddisk"
        return
    fi
    moved dirt "$src_pid" dirtdst "$dst_pid"
    local rounds live_rounds
    # The answer (the last line) lists the rounds; each was on stderr as it ended.
    rounds=$(tail -n 1 "$work/dirtdst.mig" | grep -o '"round":[0-9]*' | wc -l)
    live_rounds=$(grep -c '^{"round":' "$work/dirtdst.mig")
    expect migrate-dirtier-converges "a guest dirtying up to 64 MiB/s (see dirt-rates.txt) converges under a 100M cap: $rounds rounds (limit 30), each shown as it ended ($live_rounds), the count goes on (last $last, first ${first:-none}; see dirtdst.mig)" \
        eval 'test "$src_rc" -eq 0 && test "$rounds" -ge 1 && test "$rounds" -lt 30 && test "$live_rounds" -eq "$rounds" && test -n "$first" && test "$first" -ge "$last" && test "$first" -le $((last + 1))'
    exec 7>&9 9>&-
    quit_counter dirtdst
    raw=$(instance_raw dirtdst)
    expect migrate-blk-writes-clean "migrated while writing its disk: e2fsck clean, the guest's last count on it" \
        eval 'grep -q GUEST-COUNTER-CLEAN "$work/dirtdst.out" && e2fsck -fn "$raw" > "$work/dirt-fsck.out" 2>&1 && test "$(disk_counter "$raw")" -ge "$first"'
    cp "$work/dirt-fsck.out" "$results/" 2>/dev/null
    kill -9 "$src_pid" "$dst_pid" 2>/dev/null
    exec 7>&- 9>&-
    rm -f "$ddisk" "$raw"
}

# Layers by hash (issue 24): a store instance over a base layer holding
# 8 MiB of random bytes (incompressible) moves to a receiver whose store
# and cache are empty (the base goes: bytes_a), then on to one whose store
# has that layer since the create (OFFER/HAVE: it stays; bytes_b at least
# 4 MiB fewer: RAM goes raw, and what the guest touched between the two
# moves may differ by a few MiB), the count going on each time.
scenario_migrate_layers() {
    local base=$work/lay-base.ext4 seed=$work/lay-seed src_pid a_pid b_pid first last
    local to_a=tcp:127.0.0.1:47040 to_b=tcp:127.0.0.1:47041 bytes_a bytes_b BOOT_TIMEOUT=900
    ip link set lo up 2>/dev/null || busybox ip link set lo up
    mkdir -p "$seed" && head -c 8M /dev/urandom > "$seed/random"
    mkfs.ext4 -q -F -d "$seed" "$base" 32M
    "$SMOLVM" create lay --from "$base" --cpus 2 --mem 256M --kernel "$KERNEL" --initrd "$INITRD" \
        --cmdline "$GUEST_CMDLINE smolvm.test=counter" > "$work/lay-create.out" 2>&1
    background lay start lay
    src_pid=$bg_pid
    wait_for lay 'COUNT 5 '
    mkdir -m 0700 -p "$work/lay-a/data" "$work/lay-a/cache"
    XDG_DATA_HOME=$work/lay-a/data XDG_CACHE_HOME=$work/lay-a/cache receiver laya 8 --listen "$to_a"
    a_pid=$recv_pid
    until_listening "$to_a"
    migrate_to lay "$to_a" laya --json
    bytes_a=$(sed -n 's/.*"bytes":\([0-9]*\).*/\1/p' "$work/laya.mig" | tail -n 1)
    if [ "$rc" -ne 0 ]; then
        fail migrate-layers "to an empty store: migrate failed (see lay-create.out, laya.mig, laya.err)"
        cp "$work/laya.err" "$work/lay-create.out" "$results/" 2>/dev/null
        kill -9 "$src_pid" "$a_pid" 2>/dev/null
        exec 7>&- 8>&-
        return
    fi
    moved lay "$src_pid" laya "$a_pid"
    exec 7>&8 8>&-
    receiver layb 9 --listen "$to_b"
    b_pid=$recv_pid
    until_listening "$to_b"
    migrate_to laya "$to_b" layb --json
    bytes_b=$(sed -n 's/.*"bytes":\([0-9]*\).*/\1/p' "$work/layb.mig" | tail -n 1)
    [ "$rc" -eq 0 ] && moved laya "$a_pid" layb "$b_pid"
    cp "$work/layb.err" "$results/" 2>/dev/null
    expect migrate-layers "a layer the destination's store has is not sent: ${bytes_a:-?} bytes to an empty store, ${bytes_b:-?} to one with the 8 MiB base; the count goes on (last $last, first ${first:-none}; see laya.mig, layb.mig)" \
        eval 'test "$rc" -eq 0 && test "$bytes_a" -ge 8388608 && test "$bytes_b" -le $((bytes_a - 4194304)) && test -n "$first" && test "$first" -ge "$last" && test "$first" -le $((last + 1))'
    kill -9 "$src_pid" "$a_pid" "$b_pid" 2>/dev/null
    exec 7>&- 8>&- 9>&-
    rm -rf "$seed" "$base" "$work/lay-a"
}

# Bundles saved by older smolvm binaries still start (issue 18): for each
# COMMIT=PATH in COMPAT_SMOLVM (tests/nested/compat-commits, built on the
# host by compat-build.sh), that binary saves the counter guest mid-count
# (virtio-rng, -blk and -console: three windows, their records unversioned
# before issue 18) and this one starts the bundle: the guest goes on from
# its saved count without booting again. One save, one start per commit.
scenario_compat_bundles() {
    local entry commit old disk bundle saved first
    if [ -z "${COMPAT_SMOLVM:-}" ]; then
        fail compat-bundles "no older smolvm to save with (see compat-build.log)"
        return
    fi
    for entry in $COMPAT_SMOLVM; do
        commit=${entry%%=*} old=${entry#*=}
        commit=${commit:0:12}
        disk=$work/compat-$commit.ext4 bundle=$work/compat-$commit.smolmachine
        mkfs.ext4 -q -F "$disk" 32M
        # The older binary runs as built, never through the --jail wrapper
        # (SMOLVM_TEST_JAIL): it predates --jail, and what is checked is its
        # bundle; this tree's start of that bundle (start_counter) is jailed.
        SMOLVM=$old background "compat-save-$commit" run --name "compat-$commit" \
            --console virtio --kernel "$KERNEL" --initrd "$INITRD" --disk "$disk" \
            --cmdline "$GUEST_CMDLINE smolvm.test=counter"
        wait_for "compat-save-$commit" 'COUNT 10 '
        "$old" save "compat-$commit" -o "$bundle" > "$work/compat-save-$commit.cmd" 2>&1
        rc=$?
        finish "compat-save-$commit"
        saved=$(last_count "compat-save-$commit")
        if [ "$rc" -ne 0 ] || [ ! -s "$bundle" ]; then
            fail "compat-bundle-$commit" "smolvm $commit did not save (see compat-save-$commit.out/.err)"
            continue
        fi
        start_counter "compat-start-$commit" "$bundle" 5
        first=$(first_count "compat-start-$commit")
        expect "compat-bundle-$commit" "a bundle smolvm $commit saved at COUNT ${saved:-?} starts and counts on from it (first count ${first:-none}; see compat-start-$commit.err)" \
            eval 'test -n "$first" && test -n "$saved" && test "$first" -ge $((saved - 2)) && test "$first" -le $((saved + 2)) && test "$(last_count "compat-start-$commit")" -ge $((first + 5)) && ! has "compat-start-$commit" SMOLVM-GUEST-UP'
    done
}

# save --no-memory of a guest writing its disk (the counter, syncing every
# 100 ms): the save pauses the VM while it reads the disk, so the bundle's
# disk is one point in time (clean after the journal replay a boot does,
# its counter a count the guest wrote), and the VM counts on with --resume.
# Then a save that fails (-o names a folder: the write fails at its end)
# leaves the VM running, not paused, and says so.
scenario_save_disk_consistent() {
    local disk=$work/nomem.ext4 bundle=$work/nomem.smolmachine top layer flat saved state save_rc
    mkfs.ext4 -q -F "$disk" 256M
    background nomem run --name nomem --kernel "$KERNEL" --initrd "$INITRD" --disk "$disk" \
        --cmdline "$GUEST_CMDLINE smolvm.test=counter"
    wait_for nomem 'COUNT 20 '
    "$SMOLVM" save nomem -o "$bundle" --no-memory --resume > "$work/nomem-save.out" 2>&1
    save_rc=$?
    # The count the console showed when the save returned; the disk may hold
    # the next one (the guest writes and syncs a count before printing it,
    # and the pause can fall between), so the bound below is saved + 1 — the
    # line "COUNT c" then proves the guest wrote it (seen red: disk 25, 24).
    saved=$(last_count nomem)
    wait_for nomem "COUNT $((saved + 10)) "
    rc=$save_rc
    expect save-no-memory-resumes "save --no-memory --resume writes the bundle, the guest counts on" \
        eval 'test "$rc" -eq 0 && test -s "$bundle" && has nomem "COUNT $((saved + 10)) "'
    mkdir -p "$work/a-folder"
    "$SMOLVM" save nomem -o "$work/a-folder" > "$work/nomem-fail.out" 2>&1
    rc=$?
    state=$("$SMOLVM" ps --json | grep -A3 '"name": "nomem"' | grep -o '"state": "[a-z]*"')
    local failed_at
    failed_at=$(last_count nomem)
    expect save-failed-runs-on "a failed save: exit 1, one line saying the VM runs on; ps says running; it counts on" \
        eval 'test "$rc" -eq 1 && test "$(wc -l < "$work/nomem-fail.out")" -eq 1 && grep -q "runs on" "$work/nomem-fail.out" && test "$state" = "\"state\": \"running\"" && wait_for nomem "COUNT $((failed_at + 5)) "'
    quit_counter nomem
    "$SMOLVM" create nomem-copy --from "$bundle" > /dev/null 2>&1
    top=$("$SMOLVM" ls --json | grep -A8 '"name": "nomem-copy"' | sed -n 's/.*"top": "\([0-9a-f]*\)".*/\1/p')
    layer=$(ls "$XDG_DATA_HOME/smolvm/layers/$top".* 2>/dev/null | grep -v json)
    flat=$work/nomem-bundle.raw
    qemu-img convert -O raw "$layer" "$flat" 2> "$work/nomem-convert.err"
    e2fsck -fp "$flat" > "$work/nomem-fsck.out" 2>&1
    local preen=$?
    e2fsck -fn "$flat" >> "$work/nomem-fsck.out" 2>&1
    local check=$?
    echo "preen=$preen check=$check counter=$(disk_counter "$flat") saved=$saved top=$top" >> "$work/nomem-fsck.out"
    cp "$work/nomem-fail.out" "$work/nomem-save.out" "$work/nomem-fsck.out" "$results/" 2>/dev/null
    expect save-no-memory-disk-consistent "the bundle's disk replays its journal and checks clean (e2fsck -fp, -fn), its counter one the guest wrote (see nomem-fsck.out)" \
        eval 'test -n "$top" && test "$preen" -lt 4 && test "$check" -eq 0 && c=$(disk_counter "$flat") && test "$c" -ge 20 && test "$c" -le "$((saved + 1))" && grep -q "COUNT $c " "$work/nomem.out"'
}

# An instance made from a bundle with saved state (the counter's): its
# first start resumes the saved guest; once resumed it boots like any VM;
# reset brings the pristine state back; `save NAME` suspends a running
# instance and the next start resumes that; `save NAME -o` writes its chain
# of layers, which another instance imports sharing every layer it has and
# `start FILE` boots from.
scenario_instance_state() {
    local bundle=$work/counter.smolmachine saved first suspended before after f
    # snapshot_counter's bundle and its first start, made here when this L1
    # did not run snapshot_counter (a wedged L1's unfinished scenarios go on
    # in a new one, with a new $work: CI once failed here for that alone).
    if [ ! -s "$bundle" ] || [ -z "$(first_count cnt1)" ]; then
        save_counter_bundle
        quit_counter cnt
        start_counter cnt1 "$bundle" 5
    fi
    saved=$(first_count cnt1) # where every start of the bundle resumes
    "$SMOLVM" create st --from "$bundle" > "$work/st-create.out" 2>&1
    rc=$?
    cp "$work/st-create.out" "$results/" 2>/dev/null
    expect instance-state-created "create --from a bundle with state: $(tail -n 1 "$work/st-create.out")" \
        test "$rc" -eq 0
    test "$rc" -eq 0 || return
    start_counter st-1 st 5
    first=$(first_count st-1)
    expect instance-state-resumes "the first start resumes the saved count ($saved), no boot" \
        eval 'test -n "$first" && test "$first" -ge $((saved - 2)) && test "$first" -le $((saved + 2)) && ! has st-1 SMOLVM-GUEST-UP'
    start_counter st-2 st 3
    expect instance-state-spent "once resumed, the next start boots" \
        eval 'has st-2 SMOLVM-GUEST-UP && test "$(first_count st-2)" -le 2'
    "$SMOLVM" reset st > /dev/null 2>&1
    background st-3 start st
    wait_for st-3 'COUNT '
    first=$(first_count st-3)
    wait_for st-3 "COUNT $((first + 5)) "
    "$SMOLVM" reset st > "$work/st-busy.err" 2>&1
    local reset_rc=$?
    "$SMOLVM" rm st >> "$work/st-busy.err" 2>&1
    local rm_rc=$?
    expect instance-busy "reset and rm refuse a running instance (exit 1, one line each), its folder kept" \
        eval 'test "$reset_rc" -eq 1 -a "$rm_rc" -eq 1 && test "$(grep -c "^smolvm: .*is running" "$work/st-busy.err")" -eq 2 && test -s "$XDG_DATA_HOME/smolvm/instances/st/delta.qcow2"'
    "$SMOLVM" save st > "$work/st-suspend.out" 2>&1
    rc=$?
    suspended=$(last_count st-3)
    finish st-3
    expect instance-state-reset "reset: the pristine state again ($saved)" \
        eval 'test "$first" -ge $((saved - 2)) && test "$first" -le $((saved + 2)) && ! has st-3 SMOLVM-GUEST-UP'
    expect instance-suspend "save NAME suspends the instance into its folder" \
        eval 'test -s "$XDG_DATA_HOME/smolvm/instances/st/suspended.smolmachine" && "$SMOLVM" ls --json | grep -q suspended'
    start_counter st-4 st 3
    first=$(first_count st-4)
    expect instance-suspend-resumes "the next start resumes the suspended guest (at $suspended)" \
        eval 'test "$first" -ge $((suspended - 2)) && test "$first" -le $((suspended + 2)) && ! has st-4 SMOLVM-GUEST-UP && test ! -e "$XDG_DATA_HOME/smolvm/instances/st/suspended.smolmachine"'
    "$SMOLVM" save st -o "$work/st.smolmachine" > "$work/st-export.out" 2>&1
    before=$("$SMOLVM" layers --json | grep -c '"hash"')
    "$SMOLVM" create st-copy --from "$work/st.smolmachine" > /dev/null 2>&1
    after=$("$SMOLVM" layers --json | grep -c '"hash"')
    f=$(qemu-img convert -O raw "$XDG_DATA_HOME/smolvm/instances/st-copy/delta.qcow2" "$work/st-copy.raw" && echo "$work/st-copy.raw")
    expect instance-save-chain "save -o carries the chain: the copy adds one layer ($before -> $after), its disk is the instance's" \
        eval 'test "$after" -eq $((before + 1)) && test "$(disk_counter "$f")" = "$(last_count st-4)" && e2fsck -fn "$f" > /dev/null 2>&1'
    start_counter st-5 "$work/st.smolmachine" 2
    expect instance-chain-boots "start FILE boots a bundle that carries layers" \
        eval 'has st-5 SMOLVM-GUEST-UP && has st-5 GUEST-COUNTER-CLEAN'
}

# An appliance from `smolvm image build` (made here, in L1, from the host's
# kernel, modules and busybox) boots: our static init loads the modules,
# mounts the ext2 root we wrote from scratch and runs the command line's
# smolvm.run; the root goes through a delta, so the appliance is unchanged;
# a second build is a cache hit.
scenario_appliance() {
    local app=$work/app sum
    echo appliance-added-file > "$work/added.txt"
    "$SMOLVM" image build -o "$app" --add "$work/added.txt:/etc/added.txt" \
        > "$work/app-build.out" 2>&1
    expect appliance-builds "smolvm image build makes kernel, initrd and root.ext2" \
        eval 'test -s "$app/kernel" && test -s "$app/initrd" && test -s "$app/root.ext2"'
    sum=$(sha256sum < "$app/root.ext2")
    boot appliance --mem 256M --net none \
        --cmdline 'smolvm.run="echo APPLIANCE-UP; cat /etc/added.txt; grep vda /proc/mounts; ls /sys/bus/virtio/drivers; echo NICS-$(ls /sys/class/net | grep -c eth); echo written > /root/x; sync"' \
        "$app"
    expect appliance-boots "the appliance's init mounts its ext2 root and runs smolvm.run" \
        eval 'test "$rc" -eq 0 && has appliance APPLIANCE-UP && has appliance appliance-added-file && has appliance "^/dev/vda / ext[24] rw"'
    expect appliance-modules "its modules loaded from the initrd (virtio_blk, 9pnet_virtio, virtio_net bound)" \
        eval 'has appliance virtio_blk && has appliance 9pnet_virtio && has appliance virtio_net'
    expect appliance-net-none "--net none: the appliance has no NIC" \
        has appliance NICS-0
    # No --net: an appliance gets the user network by default.
    boot appliance-net --mem 256M \
        --cmdline 'smolvm.run="/etc/init.d/net; ip -4 -o addr show dev eth0; cat /etc/resolv.conf"' "$app"
    expect appliance-net "without --net (an appliance's default: user) its /etc/init.d/net (run by rcS) takes a DHCP lease" \
        eval 'has appliance-net "inet 10.0.2.15/24" && has appliance-net "nameserver 10.0.2.3"'
    expect appliance-unchanged "the appliance's root.ext2 is not written (a delta took the write)" \
        eval 'test "$sum" = "$(sha256sum < "$app/root.ext2")" && e2fsck -fn "$app/root.ext2" > /dev/null 2>&1'
    expect appliance-leaves-nothing "a run without --name removes its delta when it ends" \
        eval 'test "$rc" -eq 0 && ! ls "$XDG_DATA_HOME/smolvm/instances" 2>/dev/null | grep -q "^vm-"'
    "$SMOLVM" image build -o "$app" --add "$work/added.txt:/etc/added.txt" --json \
        > "$work/app-rebuild.out" 2>&1
    expect appliance-cached "an unchanged rebuild is a cache hit" \
        grep -q '"cached": true' "$work/app-rebuild.out"
    "$SMOLVM" pack -o "$work/app.smolmachine" "$app" --mem 256M \
        --cmdline 'smolvm.run="echo PACKED-UP; cat /etc/added.txt"' > "$work/app-pack.out" 2>&1
    timeout -k 10 "$BOOT_TIMEOUT" "$SMOLVM" start "$work/app.smolmachine" --name packed \
        < /dev/null > "$work/packed.out" 2>&1
    rc=$?
    cp "$work/packed.out" "$results/" 2>/dev/null
    expect appliance-packed "smolvm pack of the appliance gives a bundle that boots it" \
        eval 'test "$rc" -eq 0 && has packed PACKED-UP && has packed appliance-added-file'
    # Signed: starts under --verify with its public key; another key's is refused.
    "$SMOLVM" keygen "$work/sig" > /dev/null 2>&1
    "$SMOLVM" keygen "$work/sig-other" > /dev/null 2>&1
    "$SMOLVM" pack -o "$work/signed.smolmachine" "$app" --mem 256M --sign "$work/sig.key" \
        --cmdline 'smolvm.run="echo SIGNED-UP"' > /dev/null 2>&1
    timeout -k 10 "$BOOT_TIMEOUT" "$SMOLVM" start "$work/signed.smolmachine" --verify "$work/sig.pub" \
        < /dev/null > "$work/signed.out" 2>&1
    rc=$?
    "$SMOLVM" start "$work/signed.smolmachine" --verify "$work/sig-other.pub" < /dev/null \
        > /dev/null 2> "$work/signed-other.err"
    local other_rc=$?
    cp "$work/signed.out" "$work/signed-other.err" "$results/" 2>/dev/null
    expect bundle-signed "pack --sign: start --verify boots it with its key, refuses another key's (exit 1, one line)" \
        eval 'test "$rc" -eq 0 && has signed SIGNED-UP && test "$other_rc" -eq 1 && test "$(wc -l < "$work/signed-other.err")" -eq 1 && grep -q "signed by another key" "$work/signed-other.err"'
    "$SMOLVM" create signed-bad --from "$work/signed.smolmachine" --verify "$work/sig-other.pub" \
        > /dev/null 2>&1
    other_rc=$?
    "$SMOLVM" create signed-ok --from "$work/signed.smolmachine" --verify "$work/sig.pub" > /dev/null 2>&1
    rc=$?
    expect bundle-signed-create "create --verify: an instance from the signed bundle with its key, none with another's" \
        eval 'test "$rc" -eq 0 -a "$other_rc" -eq 1 && "$SMOLVM" ls | grep -q "^signed-ok " && ! "$SMOLVM" ls | grep -q "^signed-bad "'
}

# --trace-boot into the guest, on Debian's kernel: an appliance's boot shows
# the kernel's phases (from its stamped lines) and the init's (through
# /dev/kmsg) after the VMM's first vCPU entry, in order, and the split.
scenario_guest_trace() {
    local app=$work/trace-app
    "$SMOLVM" image build -o "$app" > "$work/trace-app-build.out" 2>&1
    boot guest-trace --mem 256M --trace-boot --cmdline 'smolvm.run="echo TRACE-UP"' "$app"
    local order
    order=$(grep -E "^(first_vcpu_entry|kernel_start|kernel_run_init|init_root_mounted|init_command_started|init_command_exited|guest_stopped) " \
        "$work/guest-trace.err" | awk '{print $1}' | tr '\n' ' ')
    expect guest-trace-phases "the VMM's, the kernel's and the init's phases on one timeline, in boot order, and the split" \
        eval 'test "$rc" -eq 0 && has guest-trace TRACE-UP && test "$order" = "first_vcpu_entry kernel_start kernel_run_init init_root_mounted init_command_started init_command_exited guest_stopped " && grep -q "^split: vmm [0-9.]* ms, kernel [0-9.]* ms, init [0-9.]* ms" "$work/guest-trace.err"'
}

# An appliance on smolvm's micro kernel (image build --kernel micro): the
# host built the kernel (micro-kernel.sh, cached in ~/.cache/smolvm-ci);
# here it is found in the cache by the same key (the same source and
# configuration), not built again. It boots with every device on the
# command line (no ACPI: the appliance says so), runs its command with the
# disk, the NIC, vsock and a virtio-fs share there, powers off by a reset,
# and --trace-boot shows the kernel's and the init's phases.
scenario_micro_kernel() {
    local cache=$work/micro-cache app=$work/micro-app share=$work/micro-share
    if [ -z "${MICRO_KERNEL:-}" ]; then
        fail micro-kernel "no micro kernel was built (tests/nested/micro-kernel.sh)"
        return
    fi
    mkdir -p -m 0700 "$cache" "$cache/smolvm" "$cache/smolvm/kernels" "$share"
    cp -r "$(dirname "$MICRO_KERNEL")" "$cache/smolvm/kernels/"
    echo micro-share-file > "$share/hello"
    XDG_CACHE_HOME=$cache "$SMOLVM" image build --kernel micro -o "$app" \
        > "$work/micro-build.out" 2>&1
    rc=$?
    cp "$work/micro-build.out" "$results/" 2>/dev/null
    expect micro-kernel-appliance "image build --kernel micro takes the cached kernel (no build), no modules, cmdline discovery" \
        eval 'test "$rc" -eq 0 && ! grep -q "building it now" "$work/micro-build.out" && grep -q "0 module files" "$work/micro-build.out" && grep -q "\"virtio_discovery\": \"cmdline\"" "$app/appliance.json"'
    boot micro --mem 256M --net user --share "$share:data" --trace-boot \
        --cmdline 'smolvm.run="echo MICRO-UP; ls /sys/bus/virtio/drivers; grep vda /proc/mounts; cat /mnt/data/hello; ip -o link show eth0; grep -o -m 1 tsc_deadline_timer /proc/cpuinfo"' \
        "$app"
    expect micro-kernel-boots "the micro kernel boots the appliance from its ext2 root and runs smolvm.run; the reset ends smolvm with 0" \
        eval 'test "$rc" -eq 0 && has micro MICRO-UP && has micro "^/dev/vda / ext[24] rw" && has micro "command exited with 0"'
    expect micro-kernel-devices "blk, net, vsock and virtio-fs found from the command line and bound (the share read)" \
        eval 'has micro virtio_blk && has micro virtio_net && has micro vmw_vsock_virtio_transport && has micro virtiofs && has micro micro-share-file && has micro "eth0:"'
    # smolvm offers KVM's TSC-deadline timer (KVM_GET_SUPPORTED_CPUID leaves
    # it out): without it the kernel calibrates its APIC timer at each boot.
    expect micro-kernel-tsc-deadline "the guest's CPU has the TSC-deadline timer" \
        has micro "^tsc_deadline_timer"
    # smolvm tells every kernel its timer pin works (vm_kernel_cmdline):
    # check_timer() would busy-wait for PIT ticks, long in a loaded L1.
    expect micro-kernel-no-timer-check "the kernel's command line carries no_timer_check before the devices" \
        has micro "Command line: .* no_timer_check acpi=noirq virtio_mmio.device="
    # Its built-in command line (kernel/micro.config) comes first: one vCPU
    # and no rewrite of every LOCK prefix at boot (noreplace-smp).
    expect micro-kernel-noreplace-smp "the kernel's command line starts with its built-in noreplace-smp" \
        has micro "Kernel command line: noreplace-smp "
    expect micro-kernel-trace "--trace-boot shows the kernel's and the init's phases on the VMM's timeline, and the split" \
        eval 'grep -q "^kernel_start " "$work/micro.err" && grep -q "^kernel_run_init " "$work/micro.err" && grep -q "^init_command_started " "$work/micro.err" && grep -q "^split: vmm [0-9.]* ms, kernel [0-9.]* ms, init [0-9.]* ms" "$work/micro.err"'
    # An instance of the appliance (create --from) keeps its devices on the
    # command line: without them its kernel finds no root disk.
    "$SMOLVM" create micro-inst --from "$app" --mem 256M \
        --cmdline 'console=ttyS0 panic=-1 smolvm.run="echo MICRO-INST-UP; ls /sys/bus/virtio/drivers"' \
        > "$work/micro-inst-create.out" 2>&1
    timeout -k 10 "$BOOT_TIMEOUT" "$SMOLVM" start micro-inst < /dev/null > "$work/micro-inst.out" 2>&1
    rc=$?
    cp "$work/micro-inst-create.out" "$work/micro-inst.out" "$results/" 2>/dev/null
    expect micro-kernel-instance "create --from the micro appliance: the instance finds its disk on the command line and runs its command" \
        eval 'test "$rc" -eq 0 && has micro-inst MICRO-INST-UP && has micro-inst virtio_blk && has micro-inst "virtio_mmio.device="'
    "$SMOLVM" rm micro-inst > /dev/null 2>&1
}

# bench/boot inside this L1 (named in SCENARIOS only, like jail_bench): the
# stock and the micro kernel under smolvm, QEMU -M microvm (and kvmtool when
# installed), RUNS times each; RESULTS/boot-bench/ holds times.tsv and the
# traces, which bench/boot/report reads on the host.
scenario_boot_bench() {
    local dir=$results/boot-bench
    mkdir -p "$dir"
    sed "s|^SMOLVM=.*|SMOLVM=$real_smolvm|" "$results/params.sh" > "$dir/params.sh"
    bash "$(dirname "$(realpath "$0")")/../../bench/boot/inside.sh" "$dir" \
        > "$dir/inside.log" 2>&1
    expect boot-bench "figures for the stock and the micro kernel under smolvm and QEMU" \
        eval 'grep -q "^smolvm-micro	boot-to-init	[0-9]" "$dir/times.tsv" && grep -q "^qemu-microvm-micro	boot-to-init	[0-9]" "$dir/times.tsv" && grep -q "^smolvm	boot-to-init	[0-9]" "$dir/times.tsv"'
    cat "$dir/times.tsv"
}

# bench/coldstart inside this L1 (named in SCENARIOS only, like boot_bench):
# later and first starts against a cold boot, both guests, 256 MiB, RUNS
# times; RESULTS/coldstart-bench/ holds times.tsv, splits.tsv, facts.txt.
scenario_coldstart_bench() {
    local dir=$results/coldstart-bench
    mkdir -p "$dir"
    sed "s|^SMOLVM=.*|SMOLVM=$real_smolvm|" "$results/params.sh" > "$dir/params.sh"
    TMPDIR=$work MEMS=${MEMS:-256M} RUNS=${RUNS:-3} \
        bash "$(dirname "$(realpath "$0")")/../../bench/coldstart/inside.sh" "$dir" \
        > "$dir/inside.log" 2>&1
    expect coldstart-bench "start and cold boot figures for both guests (coldstart-bench/facts.txt)" \
        eval 'grep -q "timer-driven guest: start" "$dir/facts.txt" && grep -q "input-driven guest: first start" "$dir/facts.txt"'
    cat "$dir/facts.txt"
}

# Five instances of one appliance (smolvm create: O(1), an empty delta on
# the shared root layer) run at the same time; each writes its own file and
# none sees another's; reset brings one back to the pristine layer while the
# others keep their writes. Judged on the deltas flattened by qemu-img.
scenario_instances() {
    local app=$work/app i pids=()
    "$SMOLVM" image build -o "$app" > /dev/null 2>&1
    for i in 1 2 3 4 5; do
        "$SMOLVM" create "inst$i" --from "$app" --mem 128M \
            --cmdline "console=ttyS0 panic=-1 quiet smolvm.run=\"echo inst$i > /root/mine; ls /root > /root/seen; sync; echo WROTE-\$(cat /root/mine)\"" \
            > /dev/null 2> "$work/create$i.err"
    done
    expect instances-created "five instances created, each delta a few KiB" \
        eval 'test "$("$SMOLVM" ls --json | grep -c "\"name\": \"inst")" = 5 && test "$(du -sk "$XDG_DATA_HOME/smolvm/instances/inst1" | cut -f1)" -lt 256'
    for i in 1 2 3 4 5; do
        timeout -k 10 "$BOOT_TIMEOUT" "$SMOLVM" start "inst$i" < /dev/null > "$work/inst$i.out" 2>&1 &
        pids+=($!)
    done
    rc=0
    for i in "${pids[@]}"; do wait "$i" || rc=$?; done
    cp "$work"/inst?.out "$results/" 2>/dev/null
    flat() { qemu-img convert -O raw "$XDG_DATA_HOME/smolvm/instances/$1/delta.qcow2" "$work/$1.raw" && echo "$work/$1.raw"; }
    expect instances-run-together "five instances ran at once, each wrote its own file" \
        eval 'test "$rc" -eq 0 && (for i in 1 2 3 4 5; do has inst$i "WROTE-inst$i" || exit 1; done)'
    expect instances-isolated "each delta holds only its own file (debugfs)" \
        eval '(for i in 1 2 3 4 5; do f=$(flat inst$i) && test "$(debugfs -R "cat /root/mine" "$f" 2>/dev/null)" = inst$i && test "$(debugfs -R "cat /root/seen" "$f" 2>/dev/null | tr -d "\n")" = "mineseen" || exit 1; done)'
    # An instance at rest saved signed (its chain of layers) starts verified.
    "$SMOLVM" keygen "$work/inst-sig" > /dev/null 2>&1
    "$SMOLVM" save inst2 -o "$work/inst2.smolmachine" --sign "$work/inst-sig.key" > /dev/null 2>&1
    timeout -k 10 "$BOOT_TIMEOUT" "$SMOLVM" start "$work/inst2.smolmachine" --verify "$work/inst-sig.pub" \
        < /dev/null > "$work/inst2-signed.out" 2>&1
    rc=$?
    cp "$work/inst2-signed.out" "$results/" 2>/dev/null
    expect instance-saved-signed "save --sign of an instance: start --verify boots its chain" \
        eval 'test "$rc" -eq 0 && has inst2-signed "WROTE-inst2"'
    "$SMOLVM" reset inst1 > /dev/null 2>&1
    expect instances-reset "reset brings one back to the pristine layer, the others keep theirs" \
        eval 'f=$(flat inst1) && ! debugfs -R "stat /root/mine" "$f" 2>&1 | grep -q Inode && f2=$(flat inst2) && test "$(debugfs -R "cat /root/mine" "$f2" 2>/dev/null)" = inst2 && e2fsck -fn "$f2" > /dev/null 2>&1'
}

# run --detach returns once the VM runs; ps, logs and stop reach it.
scenario_detach() {
    local out
    out=$(timeout -k 10 120 "$SMOLVM" run --detach --name det --kernel "$KERNEL" --initrd "$INITRD" \
        --cmdline "$GUEST_CMDLINE smolvm.test=counter" 2> "$work/det.err")
    rc=$?
    expect detach-returns "run --detach prints the name and exits 0" test "$rc" -eq 0 -a "$out" = det
    for _ in $(seq 1 "$BOOT_TIMEOUT"); do
        "$SMOLVM" logs det 2>/dev/null | grep -q '^COUNT 3 ' && break
        sleep 1
    done
    "$SMOLVM" logs det > "$work/det.out" 2>&1
    cp "$work/det.out" "$work/det.err" "$results/" 2>/dev/null
    expect detach-logs "logs shows the detached guest's console" has det '^COUNT 3 '
    expect detach-ps "ps lists it" eval '"$SMOLVM" ps | grep -q "^det "'
    "$SMOLVM" stop det
    sleep 2
    expect detach-stop "stop ends it" eval '! "$SMOLVM" ps | grep -q "^det "'
}

# smolvm stop presses the ACPI power button: a guest that watches it
# (Debian's button driver and evdev: KEY_POWER on "Power Button") powers
# off by itself, and stop says it was not forced; a guest that ignores the
# button is forced off after --timeout. (The appliance's C init reacts to
# it too: the api scenario's stop.)
scenario_power_button() {
    local out t0 t1
    background pb run --name pb --kernel "$KERNEL" --initrd "$INITRD" \
        --cmdline "$GUEST_CMDLINE smolvm.test=powerbutton"
    wait_for pb GUEST-POWER-BUTTON-READY
    out=$("$SMOLVM" stop pb --timeout 60 --json 2>&1)
    finish pb
    expect power-button-clean "stop pressed the power button; the guest powered off by itself (exit $rc): $out" \
        eval 'test "$rc" -eq 0 && has pb GUEST-POWER-BUTTON-PRESSED && echo "$out" | grep -q "\"forced\":false"'
    background pbi run --name pbi --kernel "$KERNEL" --initrd "$INITRD" \
        --cmdline "$GUEST_CMDLINE smolvm.test=echo"
    wait_for pbi SMOLVM-GUEST-UP
    t0=$(date +%s)
    out=$("$SMOLVM" stop pbi --timeout 3 --json 2>&1)
    t1=$(date +%s)
    finish pbi
    expect power-button-forced "a guest that ignores the button is forced off after --timeout 3 (took $((t1 - t0)) s, exit $rc): $out" \
        eval 'test "$rc" -eq 0 && echo "$out" | grep -q "\"forced\":true" && test $((t1 - t0)) -ge 3 && test $((t1 - t0)) -le 15 && ! has pbi GUEST-GOT'
}

bad_input() {
    local name=$1 want=$2 bin err lines
    shift 2
    for bin in "$SMOLVM" "$SMOLVM_ASAN"; do
        err=$work/bad-$name.err
        timeout -k 10 60 "$bin" run "$@" < /dev/null > /dev/null 2> "$err"
        rc=$?
        lines=$(wc -l < "$err")
        if [ "$rc" -ne "$want" ] || [ "$lines" -ne 1 ] || ! grep -q '^smolvm: ' "$err"; then
            cp "$err" "$results/" 2>/dev/null
            fail "bad-input-$name" "rc=$rc (want $want), $lines lines from $bin, stderr: $(head -c 300 "$err")"
            return
        fi
    done
    pass "bad-input-$name"
}

scenario_bad_inputs() {
    local big=$work/big.initrd
    head -c $((40 << 20)) /dev/zero > "$big"
    bad_input missing-kernel 1 --kernel /nonexistent/vmlinuz
    bad_input not-a-kernel 1 --kernel /etc/hostname
    bad_input directory-kernel 1 --kernel /boot
    bad_input missing-initrd 1 --kernel "$KERNEL" --initrd /nonexistent/initrd
    bad_input initrd-too-big 1 --kernel "$KERNEL" --initrd "$big" --mem 32M
    bad_input mem-zero 2 --kernel "$KERNEL" --mem 0
    bad_input mem-too-large 1 --kernel "$KERNEL" --mem 64T
    bad_input mem-garbage 2 --kernel "$KERNEL" --mem lots
    bad_input cpus-zero 2 --kernel "$KERNEL" --cpus 0
    bad_input cpus-too-many 2 --kernel "$KERNEL" --cpus 9999
    bad_input no-kernel 2 --mem 64M
    bad_input unknown-option 2 --kernel "$KERNEL" --frobnicate
    bad_input missing-disk 1 --kernel "$KERNEL" --disk /nonexistent/disk.img
    bad_input bad-disk-option 2 --kernel "$KERNEL" --disk /etc/hostname,bogus
    bad_input bad-console 2 --kernel "$KERNEL" --console vga
    # No /dev/kvm at all: hide /dev in a private mount namespace. Said
    # before any work: nothing unpacked into the (empty) kernel cache.
    if command -v unshare > /dev/null; then
        local err=$work/bad-no-kvm.err cache=$work/no-kvm-cache
        mkdir -p "$cache"
        XDG_CACHE_HOME=$cache unshare -m sh -c \
            "mount -t tmpfs none /dev && exec '$SMOLVM' run --kernel '$KERNEL'" \
            > /dev/null 2> "$err" < /dev/null
        rc=$?
        expect bad-input-no-kvm "says there is no /dev/kvm, what to do, and points at tests/nested" \
            eval 'test "$rc" -eq 1 && test "$(wc -l < "$err")" -eq 1 &&
                  grep -q "no /dev/kvm.*kvm_intel.*tests/nested" "$err"'
        expect bad-input-no-kvm-no-work "nothing unpacked before the message" \
            test -z "$(find "$cache" -type f)"
        # The user's own mistake comes first, with or without KVM.
        err=$work/bad-no-kvm-disk.err
        unshare -m sh -c "mount -t tmpfs none /dev && exec '$SMOLVM' run --kernel '$KERNEL' \
            --disk /nonexistent/disk.img" > /dev/null 2> "$err" < /dev/null
        rc=$?
        expect bad-input-no-kvm-missing-disk "a missing --disk is reported even without /dev/kvm" \
            eval 'test "$rc" -eq 1 && grep -q "disk .*/nonexistent/disk.img" "$err"'
    fi
}

# Refused by name before anything is made (no guest boots): a file with the
# bundle magic, cut short, is not imported as a raw disk; a public key
# cannot sign (pack and save, whose key is checked before the VM is asked).
scenario_bundle_refusals() {
    local err=$work/refusals.err
    "$SMOLVM" keygen "$work/rk" > /dev/null 2>&1
    "$SMOLVM" pack -o "$work/whole.smolmachine" --kernel "$KERNEL" --mem 64M > /dev/null 2>&1
    head -c 6000 "$work/whole.smolmachine" > "$work/cut.smolmachine"
    "$SMOLVM" create cut --from "$work/cut.smolmachine" > /dev/null 2> "$err"
    rc=$?
    cp "$err" "$results/bundle-cut-create.err" 2>/dev/null
    expect bundle-cut-create "create --from a cut-short bundle: exit 1, one line naming it, no instance" \
        eval 'test "$rc" -eq 1 && test "$(wc -l < "$err")" -eq 1 && grep -q "cut.smolmachine" "$err" &&
              ! test -e "$XDG_DATA_HOME/smolvm/instances/cut"'
    "$SMOLVM" pack -o "$work/pub.smolmachine" --kernel "$KERNEL" --mem 64M --sign "$work/rk.pub" \
        > /dev/null 2> "$err"
    rc=$?
    cp "$err" "$results/bundle-sign-public-key.err" 2>/dev/null
    expect bundle-sign-public-key "pack --sign KEY.pub: exit 1, one line naming it, nothing written" \
        eval 'test "$rc" -eq 1 && test "$(wc -l < "$err")" -eq 1 && grep -q "rk.pub. is a public key" "$err" &&
              ! ls "$work"/pub.smolmachine* > /dev/null 2>&1'
    "$SMOLVM" save nosuchvm -o "$work/save.smolmachine" --sign "$work/rk.pub" > /dev/null 2> "$err"
    rc=$?
    expect bundle-save-public-key "save --sign KEY.pub: refused for the key (exit 1) before any VM is looked up" \
        eval 'test "$rc" -eq 1 && grep -q "is a public key" "$err"'
}

# A VM whose stdout is a pipe nobody reads: the guest floods its console,
# the pipe fills, and the VM still answers ps and stops within seconds
# (the vCPU writing to the 8250 used to block in write()). The flood goes
# through the virtio console in big writes (see guest-init.sh's flood): the
# queue both consoles share is what is tested, and each ps is bounded, so a
# VM that stops answering fails here instead of stalling the whole L1.
scenario_console_stalled() {
    local fifo=$work/stall.fifo reader pid t0 t1 deadline
    rc=0 # expect reports it; this scenario may run first
    mkfifo "$fifo"
    sleep 600 < "$fifo" & # holds the read end open, reads nothing
    reader=$!
    timeout -k 10 "$BOOT_TIMEOUT" "$SMOLVM" run --name stall --console virtio --kernel "$KERNEL" \
        --initrd "$INITRD" --cmdline "$GUEST_CMDLINE smolvm.test=flood" \
        < /dev/null > "$fifo" 2> "$work/stall.err" &
    pid=$!
    # The guest floods once it has booted (a minute or two in a loaded L1):
    # wait for it as long as for any boot.
    deadline=$((SECONDS + BOOT_TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        timeout 20 "$SMOLVM" ps --json 2>/dev/null | grep -q '"console_dropped": [1-9]' && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    timeout 20 "$SMOLVM" ps --json > "$work/stall.out" 2>&1
    expect console-stalled-counted "ps --json counts the dropped console bytes" \
        grep -q '"console_dropped": [1-9]' "$work/stall.out"
    t0=$(date +%s)
    timeout 20 "$SMOLVM" stop stall --force
    wait "$pid"
    rc=$?
    t1=$(date +%s)
    kill "$reader" 2>/dev/null
    cp "$work/stall.out" "$work/stall.err" "$results/" 2>/dev/null
    expect console-stalled-stops "stop --force ends a VM whose stdout nobody reads within 5 s" \
        eval 'test "$rc" -eq 0 && test $((t1 - t0)) -le 5'
    expect console-stalled-reported "the dropped bytes are said once on stderr" \
        eval 'test "$(grep -c "console output were dropped" "$work/stall.err")" -eq 1'
}

# No runtime folder can hold a unix socket (as on 9p or NFS; here, paths too
# long for one): a run without --name goes on with one warning line, a run
# with --name refuses.
scenario_no_control_socket() {
    local long=$work/$(printf '%0110d' 0)
    if [ -d "/run/user/$(id -u)" ]; then
        pass no-control-socket-skipped
        return
    fi
    mkdir -p -m 0700 "$long"
    XDG_RUNTIME_DIR=$long TMPDIR=$long boot nosock --kernel "$KERNEL" --initrd "$INITRD" \
        --cmdline "$GUEST_CMDLINE"
    expect no-control-socket-runs "a run without --name boots with one warning line" \
        eval 'test "$rc" -eq 0 && has nosock SMOLVM-GUEST-UP &&
              test "$(grep -c "no control socket" "$work/nosock.err")" -eq 1'
    XDG_RUNTIME_DIR=$long TMPDIR=$long boot nosock-named --name named --kernel "$KERNEL" \
        --initrd "$INITRD" --cmdline "$GUEST_CMDLINE"
    expect no-control-socket-named "a run with --name needs its socket: one line, exit 1" \
        eval 'test "$rc" -eq 1 && test "$(wc -l < "$work/nosock-named.err")" -eq 1'
}

# A read-only home (~/.cache, ~/.local/share): run and start go on from the
# runtime folder, with one line saying so.
scenario_readonly_home() {
    local ro=$work/rohome bundle=$work/ro.smolmachine
    mkdir -p "$ro"
    "$SMOLVM" pack -o "$bundle" --kernel "$KERNEL" --initrd "$INITRD" \
        --cmdline "$GUEST_CMDLINE" > /dev/null 2>&1
    for verb in run start; do
        local args="run --kernel '$KERNEL' --initrd '$INITRD' --cmdline '$GUEST_CMDLINE'"
        [ "$verb" = start ] && args="start '$bundle'"
        XDG_CACHE_HOME= XDG_DATA_HOME= HOME=$ro timeout -k 10 "$BOOT_TIMEOUT" unshare -m sh -c \
            "mount -t tmpfs -o ro none '$ro' && exec '$SMOLVM' $args" \
            < /dev/null > "$work/ro-$verb.out" 2> "$work/ro-$verb.err"
        rc=$?
        cp "$work/ro-$verb.out" "$work/ro-$verb.err" "$results/" 2>/dev/null
        expect "readonly-home-$verb" "$verb boots with one line about the read-only home" \
            eval 'test "$rc" -eq 0 && has ro-$verb SMOLVM-GUEST-UP &&
                  test "$(grep -c "cannot be written" "$work/ro-$verb.err")" -eq 1'
    done
}

# positive NAME KEY: NAME's console has KEY=N with N > 0 (0.86 too).
positive() {
    tr -d '\r' < "$work/$1.out" | awk -F= -v key="$2" '$1 == key { found = $2 + 0 > 0 }
        END { exit !found }'
}

# fetch URL: the body, or nothing (retried for 20 s: a resumed guest's NAT
# learns where it is from its first packets).
fetch() {
    local i body
    for i in $(seq 1 20); do
        body=$(curl -s -m 5 "$1" 2>/dev/null) && [ -n "$body" ] && { echo "$body"; return; }
        sleep 1
    done
}

# virtio-net with --net user, judged by the guest's own virtio_net driver
# and busybox: a DHCP lease, an HTTP fetch from a server on this host at the
# gateway, a name looked up through the NAT's DNS forwarder (this host's
# resolver: our own on 127.0.0.1, the L1 has no network), iperf3 both ways
# (to this host at the gateway, from it through -p), a host fetch of the
# guest's server through -p; the VM saved and started twice with remapped
# forwards, both answering with no work in the guest; restrict refusing
# outbound; no smolvm-net left behind.
scenario_net() {
    local www=$work/www hport=18080 bundle=$work/net.smolmachine host_pid body b c
    local dns_pid iperf_pid down
    ip link set lo up 2>/dev/null || busybox ip link set lo up
    mkdir -p "$www" && echo host-says-hi > "$www/index.html"
    busybox httpd -f -p "127.0.0.1:$hport" -h "$www" &
    host_pid=$!
    echo nameserver 127.0.0.1 > "$work/resolv.conf"
    mount --bind "$work/resolv.conf" /etc/resolv.conf
    "$DNS_ANSWER" smolvm-dns-check.test=192.0.2.7 2> "$results/dns-answer.err" &
    dns_pid=$!
    iperf3 -s -p $((hport + 10)) > "$results/net-iperf-server.out" 2>&1 &
    iperf_pid=$!
    sleep 1
    fetch "http://127.0.0.1:$hport/" > "$work/net-host-self.out"
    cp "$work/net-host-self.out" "$results/" 2>/dev/null
    background net run --name net-a --net user -p 127.0.0.1:18081:80 -p 127.0.0.1:18084:5201 \
        --kernel "$KERNEL" --initrd "$INITRD_NET" \
        --cmdline "$GUEST_CMDLINE smolvm.test=net smolvm.port=$hport"
    wait_for net GUEST-NET-SERVING
    body=$(fetch http://127.0.0.1:18081/)
    iperf3 -c 127.0.0.1 -p 18084 -t 2 -f m > "$results/net-iperf-down.out" 2>&1
    down=$(awk '/receiver/ { print $(NF - 2); exit }' "$results/net-iperf-down.out")
    "$SMOLVM" save net-a -o "$bundle" > "$work/net-save.out" 2>&1
    finish net
    "$SMOLVM" start "$bundle" --name net-b -p 127.0.0.1:18082:80 --detach > /dev/null 2>&1
    "$SMOLVM" start "$bundle" --name net-c -p 127.0.0.1:18083:80 --detach > /dev/null 2>&1
    b=$(fetch http://127.0.0.1:18082/)
    c=$(fetch http://127.0.0.1:18083/)
    "$SMOLVM" stop net-b --force > /dev/null 2>&1
    "$SMOLVM" stop net-c --force > /dev/null 2>&1
    background net-r run --net user,restrict --kernel "$KERNEL" --initrd "$INITRD" \
        --cmdline "$GUEST_CMDLINE smolvm.test=net smolvm.port=$hport"
    wait_for net-r GUEST-NET-SERVING
    echo quit >&7
    finish net-r
    background net-allow run --net user,allow=192.0.2.0/24 --kernel "$KERNEL" --initrd "$INITRD" \
        --cmdline "$GUEST_CMDLINE smolvm.test=net smolvm.port=$hport"
    wait_for net-allow GUEST-NET-SERVING
    echo quit >&7
    finish net-allow
    kill "$host_pid" "$dns_pid" "$iperf_pid" 2>/dev/null
    umount /etc/resolv.conf
    sleep 2
    expect net-dns "the guest looked a name up through the NAT's DNS forwarder" \
        has net "GUEST-NET-DNS=192.0.2.7"
    expect net-iperf-guest-to-host "iperf3 from the guest to this host at the gateway (Mbit/s)" \
        positive net GUEST-NET-IPERF-UP
    expect net-iperf-host-to-guest "iperf3 from this host to the guest through -p: ${down:-none} Mbit/s" \
        eval 'echo "${down:-0}" | grep -q "[1-9]"'
    expect net-dhcp "the guest's udhcpc got 10.0.2.15/24" has net "GUEST-NET-LEASE=10.0.2.15/24"
    expect net-mtu "the guest's driver took --net user's 64 KiB MTU (VIRTIO_NET_F_MTU)" \
        has net "GUEST-NET-MTU=65520"
    expect net-ipv6 "the guest took a fec0::/64 address from the NAT's router advertisement" \
        has net "GUEST-NET-IPV6=fec0:"
    expect net-fetch-host "the guest fetched the host's page at the gateway" \
        has net "GUEST-NET-FETCH=host-says-hi"
    expect net-forward "a host fetch through -p reached the guest's httpd" \
        test "$body" = guest-says-hi
    expect net-save-start-forwards "two starts of the saved VM answer on their new forwards" \
        test "$b" = guest-says-hi -a "$c" = guest-says-hi
    expect net-restrict "user,restrict: a lease, but no connection out" \
        eval 'has net-r "GUEST-NET-LEASE=10.0.2.15/24" && ! has net-r "GUEST-NET-FETCH=host-says-hi"'
    expect net-allow "user,allow=192.0.2.0/24: a lease, but no connection to the host" \
        eval 'has net-allow "GUEST-NET-LEASE=10.0.2.15/24" && ! has net-allow "GUEST-NET-FETCH=host-says-hi"'
    expect net-allow-no-ipv6 "user,allow=: no IPv6 route around the IPv4 allowlist" \
        eval 'has net-allow "GUEST-NET-IPV6=" && ! has net-allow "GUEST-NET-IPV6=fec0"'
    expect net-helper-gone "no smolvm-net outlives its VM" eval '! pidof smolvm-net > /dev/null'
}

# --net tap=IFNAME on a TAP this (root) L1 makes, judged by the guest's
# virtio_net driver: iperf3 both ways, and frames past the 1514-byte wire
# size seen on the TAP each way (a packet socket, tap-frames.py): the
# guest's TCP segments went out whole for the host's kernel to cut, and the
# kernel sent the guest whole ones (the offloads the guest negotiated).
scenario_tap() {
    local down sizes
    modprobe tun 2>/dev/null # the L1 loads no more than it boots with
    ip tuntap add smoltap0 mode tap && ip addr add 10.9.0.254/24 dev smoltap0 &&
        ip link set smoltap0 up
    iperf3 -s -p 5202 > "$results/tap-iperf-server.out" 2>&1 &
    local iperf_pid=$!
    /usr/bin/python3 - smoltap0 > "$work/tap-frames" 2> "$results/tap-frames.err" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
s.settimeout(1)
most = {0: 0, 4: 0}  # PACKET_HOST (from the guest), PACKET_OUTGOING (to it)
end = time.time() + 150
while time.time() < end:
    try:
        data, addr = s.recvfrom(70000)
    except socket.timeout:
        continue
    if addr[2] in most and len(data) > most[addr[2]]:
        most[addr[2]] = len(data)
        print("from-guest %d to-guest %d" % (most[0], most[4]), flush=True)
PY
    local cap_pid=$!
    background tap run --net tap=smoltap0 --kernel "$KERNEL" --initrd "$INITRD_NET" \
        --cmdline "$GUEST_CMDLINE smolvm.test=tap"
    wait_for tap GUEST-TAP-SERVING
    iperf3 -c 10.9.0.1 -p 5201 -t 2 -f m > "$results/tap-iperf-down.out" 2>&1
    down=$(awk '/receiver/ { print $(NF - 2); exit }' "$results/tap-iperf-down.out")
    echo quit >&7
    finish tap
    kill "$iperf_pid" "$cap_pid" 2>/dev/null
    ip link del smoltap0 2>/dev/null
    sizes=$(tail -n 1 "$work/tap-frames")
    cp "$work/tap-frames" "$results/" 2>/dev/null
    expect tap-iperf-guest-to-host "iperf3 from the guest over the TAP (Mbit/s)" \
        positive tap GUEST-TAP-IPERF-UP
    expect tap-iperf-host-to-guest "iperf3 to the guest over the TAP: ${down:-none} Mbit/s" \
        eval 'echo "${down:-0}" | grep -q "[1-9]"'
    expect tap-tso "segments past 1514 bytes on the TAP both ways (largest: ${sizes:-none})" \
        eval 'set -- $sizes; test "${2:-0}" -gt 1514 && test "${4:-0}" -gt 1514'
}

# smolvm serve drives a real VM through its REST API (curl on the unix
# socket): an instance created from an appliance, started (its own
# process), paused and resumed while 50 clients list and inspect, the
# daemon killed -9 (the VM runs on) and started again (it finds the VM),
# suspended, resumed from its saved state, stopped and deleted. Every
# response is then checked against docs/openapi.yaml.
api() { # api METHOD PATH [BODY]: $api_status, $api_body; each response kept in $work/api
    api_n=$((api_n + 1))
    local f
    f=$work/api/$(printf %03d "$api_n")
    echo "$1 $2" > "$f.req"
    if [ $# -ge 3 ]; then
        curl -s -m 120 --unix-socket "$api_sock" -X "$1" -H 'Content-Type: application/json' \
            --data "$3" -o "$f.body" -w '%{http_code}\n%{content_type}\n' "http://smolvm$2" > "$f.meta"
    else
        curl -s -m 120 --unix-socket "$api_sock" -X "$1" -o "$f.body" \
            -w '%{http_code}\n%{content_type}\n' "http://smolvm$2" > "$f.meta"
    fi
    sed -n 1p "$f.meta" > "$f.status"
    sed -n 2p "$f.meta" > "$f.type"
    api_status=$(cat "$f.status")
    api_body=$(cat "$f.body" 2>/dev/null)
}

api_daemon() {
    "$SMOLVM" serve --socket "$api_sock" > "$work/serve-$1.out" 2>&1 &
    api_pid=$!
    for _ in $(seq 1 50); do
        [ -S "$api_sock" ] && curl -s --unix-socket "$api_sock" http://smolvm/machines > /dev/null && return
        sleep 0.2
    done
}

# The spare VMMs (api/spare.h: `smolvm start --spare-fd ...`) whose parent
# is $1, or of any parent without one.
api_spares() {
    local p
    for p in /proc/[0-9]*; do
        [ -z "${1:-}" ] || [ "$(cut -d' ' -f4 "$p/stat" 2>/dev/null)" = "$1" ] || continue
        tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -q -- ' --spare-fd ' && echo "${p#/proc/}"
    done
}

# vm_pid NAME [PS_JSON]: the VMM's pid, as `smolvm ps --json` (or
# PS_JSON, its output) says it.
vm_pid() {
    local ps_out=${2:-$("$real_smolvm" ps --json 2>&1)} pid
    pid=$(echo "$ps_out" | tr -d ' \n' | grep -o "\"name\":\"$1\"[^}]*" | grep -o '"pid":[0-9]*' | cut -d: -f2)
    [ -n "$pid" ] || pid=$(echo "$ps_out" | tr -d ' \n' | grep -o "\"pid\":[0-9]*,[^}]*\"name\":\"$1\"" | grep -o '"pid":[0-9]*' | cut -d: -f2)
    echo "$pid"
}

# threads_loose PID: each thread of PID not under a seccomp filter, with
# a capability (inheritable, permitted, effective, bounding, ambient) or
# without no_new_privs, as "TID Line" (none: nothing).
threads_loose() {
    local t
    for t in /proc/"$1"/task/*; do
        awk -v tid="${t##*/}" '($1 == "Seccomp:" && $2 != 2) || ($1 == "NoNewPrivs:" && $2 != 1) ||
            ($1 ~ /^Cap(Inh|Prm|Eff|Bnd|Amb):$/ && $2 !~ /^0+$/) { printf "%s %s %s; ", tid, $1, $2 }' \
            "$t/status" 2>/dev/null
    done
}

api_wait_log() { # api_wait_log NAME TEXT
    for _ in $(seq 1 "$BOOT_TIMEOUT"); do
        api GET "/machines/$1/logs"
        grep -q -- "$2" "$work/api/$(printf %03d "$api_n").body" && return 0
        sleep 1
    done
    return 1
}

scenario_api() {
    local app=$work/api-app body state i pids=() bad=0
    api_sock=$work/api.sock
    api_n=0
    mkdir -p "$work/api"
    "$SMOLVM" image build -o "$app" > /dev/null 2>&1
    api_daemon 1
    body='{"name":"apivm","from":"'$app'","mem":"128M","cmdline":"console=ttyS0 panic=-1 quiet smolvm.run=\"i=0; while :; do i=$((i+1)); echo TICK $i; read -t 1 line && echo GOT-$line; done\""}'
    api POST /machines "$body"
    expect api-create "POST /machines creates the instance (201): $api_body" test "$api_status" = 201
    api POST /machines/apivm/start
    state=$(echo "$api_body" | grep -o '"state":"[a-z]*"')
    expect api-start "POST start: 200 and running, as its own process: $api_body" \
        eval 'test "$api_status" = 200 && test "$state" = "\"state\":\"running\"" && "$SMOLVM" ps | grep -q "^apivm "'
    expect api-logs "GET logs shows the guest's output" api_wait_log apivm 'TICK 3'
    # Typed on its console (RUNTIME/apivm.console), read by the guest's command.
    printf 'typed-%s\r\020\021' 42 | "$SMOLVM" attach apivm > "$work/api-attach.out" 2>&1
    expect api-attach "smolvm attach types on the console, the guest reads it ($(tr '\r' ' ' < "$work/api-attach.out" | tail -c 200))" \
        api_wait_log apivm 'GOT-typed-42'
    api GET /machines/apivm/trace
    expect api-trace "GET trace: the running VM's boot phases: $(echo "$api_body" | head -c 300)" \
        eval 'test "$api_status" = 200 && echo "$api_body" | grep -q "\"first_vcpu_entry\":"'
    # The daemon keeps a spare VMM made ahead (api/spare.h): this start
    # went through it (its clock restarted when it was named, after
    # waiting since the daemon began), and the next one stands ready.
    expect api-spare "the start went through the daemon's spare VMM (trace: spare_named, spare_waited_us > 0; next spare: $(api_spares "$api_pid"))" \
        eval 'echo "$api_body" | grep -q "\"spare_named\":" && echo "$api_body" | grep -q "\"spare_waited_us\":[1-9]" && test -n "$(api_spares "$api_pid")"'
    # Its VMM was forked, into the template's namespaces, and its VM made
    # before the spare was named (src/cli/start.c: fork_waiting_vmm()).
    expect api-spare-vmm-ahead "the spare's VMM and its VM were made before it was named (trace: spare_vmm_ahead_us > 0)" \
        eval 'echo "$api_body" | grep -q "\"spare_vmm_ahead_us\":[1-9]"'
    # Its threads too, each with its filter loaded, its capabilities
    # dropped (confine_threads_ahead()): the start took them, and every
    # thread of the VM's VMM, those it did not take as well, is under a
    # filter and powerless.
    local vmm loose
    vmm=$(vm_pid apivm)
    loose=$(threads_loose "$vmm")
    expect api-spare-threads-ahead "the spare's VMM made threads ahead that the start took (trace: seccomp_ahead_loads > 0), and each thread of its VMM (${vmm:-none found}) has Seccomp 2, no capabilities, NoNewPrivs 1 (${loose:-all do})" \
        eval 'echo "$api_body" | grep -q "\"seccomp_ahead_loads\":[1-9]" && test -n "$vmm" && test -d "/proc/$vmm/task" && test -z "$loose"'
    # Exec and files through the guest agent (the requests smolvm exec and cp make).
    api POST /machines/apivm/exec '{"command":["sh","-c","echo in-guest-$((6*7)); cat; exit 3"],"stdin":"from-api"}'
    expect api-exec "POST exec runs in the guest, output and status streamed: $(echo "$api_body" | tr '\n' ' ' | head -c 300)" \
        eval 'test "$api_status" = 200 && echo "$api_body" | grep -q "in-guest-42" && echo "$api_body" | grep -q from-api && echo "$api_body" | tail -n 1 | grep -q "\"exit_code\":3"'
    local up=$work/api-upload down=$work/api-download put_status get_status
    head -c 3000000 /dev/urandom > "$up"
    put_status=$(curl -s -m 300 --unix-socket "$api_sock" -X PUT --data-binary @"$up" -o "$work/api-put.json" \
        -w '%{http_code}' "http://smolvm/machines/apivm/files?path=/root/api-upload")
    get_status=$(curl -s -m 300 --unix-socket "$api_sock" -o "$down" -w '%{http_code}' \
        "http://smolvm/machines/apivm/files?path=/root/api-upload")
    expect api-files "PUT then GET files: 3 MB in and out, the same bytes (PUT $put_status $(cat "$work/api-put.json" 2>/dev/null), GET $get_status, $(stat -c %s "$down" 2>/dev/null) bytes)" \
        eval 'test "$put_status" = 200 && test "$get_status" = 200 && cmp -s "$up" "$down"'
    rm -f "$up" "$down"
    # 50 clients list and inspect while the VM is paused and resumed.
    for i in $(seq 1 50); do
        (for _ in 1 2 3; do
            curl -s -m 30 -o /dev/null -w '%{http_code}\n' --unix-socket "$api_sock" http://smolvm/machines
            curl -s -m 30 -o /dev/null -w '%{http_code}\n' --unix-socket "$api_sock" http://smolvm/machines/apivm
        done > "$work/api-client-$i.out") &
        pids+=($!)
    done
    api POST /machines/apivm/pause
    local paused_status=$api_status
    api GET /machines/apivm
    local paused_state=$api_body
    api POST /machines/apivm/resume
    local resumed_status=$api_status
    for i in "${pids[@]}"; do wait "$i"; done
    bad=$(cat "$work"/api-client-*.out | grep -vc '^200$')
    # Which codes, when not: 000 is curl's own (no answer within -m 30).
    local codes
    codes=$(cat "$work"/api-client-*.out | grep -v '^200$' | sort | uniq -c | awk '{ printf " %s x%s", $2, $1 }')
    expect api-concurrent "50 clients x 6 requests all 200 ($bad not:${codes:- none}), pause/resume meanwhile ($paused_status/$resumed_status)" \
        eval 'test "$bad" = 0 && test "$(cat "$work"/api-client-*.out | wc -l)" = 300 && test "$paused_status" = 200 && test "$resumed_status" = 200 && echo "$paused_state" | grep -q "\"state\":\"paused\""'
    # kill -9: the VM runs on; a new daemon finds it.
    kill -9 "$api_pid"
    wait "$api_pid" 2>/dev/null
    sleep 1
    expect api-kill9-vm-runs "the VM outlives its daemon (kill -9)" eval '"$SMOLVM" ps | grep -q "^apivm .*running"'
    api_daemon 2
    api GET /machines/apivm
    expect api-adopted "a restarted daemon finds the running VM: $api_body" \
        eval 'test "$api_status" = 200 && echo "$api_body" | grep -q "\"state\":\"running\""'
    api POST /machines/apivm/pause
    api POST /machines/apivm/resume
    expect api-adopted-drives "and drives it (pause, resume)" test "$api_status" = 200
    api POST /machines/apivm/save
    local save_status=$api_status save_body=$api_body
    sleep 1
    api GET /machines/apivm
    expect api-save "POST save suspends it into its folder ($save_status: $save_body): $api_body" \
        eval 'test "$save_status" = 200 && echo "$api_body" | grep -q "\"state\":\"stopped\"" && echo "$api_body" | grep -q "resumes suspended"'
    # Its spare killed first: the start goes the normal way, and a new
    # spare is made behind it.
    local spare next
    spare=$(api_spares "$api_pid" | head -n 1)
    [ -z "$spare" ] || kill -9 "$spare"
    api POST /machines/apivm/start
    local start_status=$api_status first
    api_wait_log apivm 'TICK [0-9]'
    first=$(grep -ao 'TICK [0-9]*' "$work/api/$(printf %03d "$api_n").body" | head -n 1 | cut -d' ' -f2)
    expect api-resume-saved "start ($start_status) resumes the suspended guest: its count goes on (first TICK ${first:-none}, was past 3)" \
        eval 'test "$start_status" = 200 && test -n "$first" && test "$first" -gt 3'
    next=$(api_spares "$api_pid" | head -n 1)
    api GET /machines/apivm/trace
    expect api-spare-killed "a spare killed (${spare:-none found}) is passed over: that start works (above) without it (no spare_named in its trace), and a new spare stands ready (${next:-none})" \
        eval 'test -n "$spare" && test -n "$next" && test "$next" != "$spare" && test "$api_status" = 200 && ! echo "$api_body" | grep -q spare_named'
    # Saved again and started through the spare that stands ready, its
    # VMM made before it was named: the guest resumes, its saved state
    # marked resumed by the marker that spare forked ahead (unmarked, the
    # start fails).
    api POST /machines/apivm/save
    sleep 1
    api POST /machines/apivm/start
    start_status=$api_status
    api_wait_log apivm 'TICK [0-9]'
    first=$(grep -ao 'TICK [0-9]*' "$work/api/$(printf %03d "$api_n").body" | head -n 1 | cut -d' ' -f2)
    api GET /machines/apivm/trace
    expect api-spare-resumes "a saved guest started through the spare's VMM made ahead ($start_status) resumes (first TICK ${first:-none}, was past 3; trace has spare_vmm_ahead_us)" \
        eval 'test "$start_status" = 200 && test -n "$first" && test "$first" -gt 3 && echo "$api_body" | grep -q "\"spare_vmm_ahead_us\":[1-9]"'
    api POST /machines/apivm/start
    expect api-start-twice "a second start is refused: 409 already_running" \
        eval 'test "$api_status" = 409 && echo "$api_body" | grep -q already_running'
    api DELETE /machines/apivm
    expect api-delete-running "DELETE of a running VM: 409" test "$api_status" = 409
    api POST /machines/apivm/stop '{"timeout":60}'
    local stop_status=$api_status stop_body=$api_body
    sleep 2
    api GET /machines/apivm
    expect api-stop "POST stop ends it ($stop_status: $stop_body): $api_body" \
        eval 'test "$stop_status" = 200 && echo "$api_body" | grep -q "\"state\":\"stopped\"" && ! "$SMOLVM" ps | grep -q "^apivm "'
    expect api-stop-power-button "the appliance's init powered off on the power button (not forced): $stop_body" \
        eval 'echo "$stop_body" | grep -q "\"forced\":false" && api GET /machines/apivm/logs && grep -q "power button pressed" "$work/api/$(printf %03d "$api_n").body"'
    api DELETE /machines/apivm
    expect api-delete "DELETE removes it" eval 'test "$api_status" = 200 && ! "$SMOLVM" ls | grep -q "^apivm "'
    api GET /metrics
    kill "$api_pid"
    wait "$api_pid" 2>/dev/null
    # The first daemon's spare ended with it (killed -9: its pair closed),
    # the second's at its end; neither leaves its root's folder.
    sleep 1
    expect api-spare-ended "the daemons' spares ended and left nothing (spares: $(api_spares | tr '\n' ' '); $(ls -d "$XDG_RUNTIME_DIR"/smolvm/spare-* 2>/dev/null | tr '\n' ' '))" \
        eval 'test -z "$(api_spares)" && ! ls -d "$XDG_RUNTIME_DIR"/smolvm/spare-* > /dev/null 2>&1'
    python3 "$(dirname "$(realpath "$0")")/../api/openapi_check.py" recorded "$work/api" \
        > "$work/api-openapi.out" 2>&1
    rc=$?
    cp -r "$work/api" "$work/api-openapi.out" "$work"/serve-*.out "$results/" 2>/dev/null
    expect api-openapi "every response matches docs/openapi.yaml: $(tail -n 1 "$work/api-openapi.out")" \
        test "$rc" -eq 0
}

# Shared folders through the guest's own virtiofs driver: a read-write and
# a read-only share, then a save while the guest has them mounted (and a
# directory of the share as its working directory's parent) and a start
# with the rw tag mapped to a copy of the folder: the guest goes on with it.
scenario_shares() {
    local rw=$work/share-rw ro=$work/share-ro out=$work/outside moved=$work/share-moved
    local bundle=$work/shares.smolmachine
    rc=0 # the first checks come before any exit code
    rm -rf "$rw" "$ro" "$out" "$moved"
    mkdir -p "$rw" "$ro" "$out"
    echo host-file > "$rw/from-host"
    echo read-only > "$ro/file"
    echo secret > "$out/secret"
    ln -s ../outside "$rw/escape"
    ln -s "$out" "$rw/abs"
    background shares-run run --name shares-a --kernel "$KERNEL" --initrd "$INITRD" \
        --share "$rw:rw" --share "$ro:ro,ro" --cmdline "$GUEST_CMDLINE smolvm.test=virtiofs"
    if ! wait_for shares-run GUEST-FS-SNAP-READY; then
        finish shares-run
        fail shares "the guest never got ready (see shares-run.out/.err)"
        return
    fi
    expect shares-mount "the guest mounted both tags" has shares-run GUEST-FS-MOUNTED
    expect shares-host-to-guest "the guest read the host's file" has shares-run "GUEST-FS-READ=host-file"
    expect shares-guest-to-host "the host reads what the guest wrote" \
        eval '[ "$(cat "$rw/from-guest")" = from-guest ] && [ "$(cat "$rw/keep/moved/f")" = k ] && [ ! -e "$rw/d" ]'
    expect shares-dirops "mkdir, rename, symlink, unlink, rmdir in the guest" has shares-run GUEST-FS-DIROPS-OK
    expect shares-big-file "a 1.2 MB file copied in by the guest is intact on the host" \
        eval 'has shares-run "GUEST-FS-BIG=$(seq 1 200000 | md5sum | cut -c1-32)" && seq 1 200000 | cmp -s - "$rw/numbers"'
    expect shares-escape "symlinks out of the share reach nothing outside it" \
        eval '[ "$(ls -A "$out")" = secret ] && ! has shares-run "^secret"'
    expect shares-read-only "the ro share reads, refuses writes, is unchanged" \
        eval 'has shares-run "GUEST-FS-RO=read-only" && has shares-run GUEST-FS-RO-REFUSED && [ "$(ls "$ro")" = file ] && [ "$(cat "$ro/file")" = read-only ]'
    "$SMOLVM" save shares-a -o "$bundle" > "$work/shares-save.out" 2>&1
    rc=$?
    finish shares-run
    expect shares-save "save with the shares mounted writes the bundle" test -s "$bundle"
    cp -a "$rw" "$moved"
    "$SMOLVM" start "$bundle" --name shares-b < /dev/null > "$work/shares-nomap.out" 2>&1
    rc=$?
    expect shares-start-needs-folder "a start without --share for the bundle's tags: exit 1 naming the tag" \
        eval 'test "$rc" -eq 1 && grep -q "share rw needs a host folder" "$work/shares-nomap.out"'
    background shares-start start "$bundle" --name shares-c --share "$moved:rw" --share "$ro:ro"
    sleep 2
    (echo resumed >&7) 2> /dev/null # a start that failed has no reader: no SIGPIPE here
    wait_for shares-start GUEST-FS-UMOUNTED
    "$SMOLVM" stop shares-c --force 2>/dev/null
    finish shares-start
    expect shares-after-restore "the resumed guest reads and writes its share, now the copy" \
        eval 'has shares-start "GUEST-FS-AFTER=resumed from-guest moved" && [ "$(cat "$moved/keep/moved/f2")" = after-restore ] && [ ! -e "$rw/keep/moved/f2" ]'
    expect shares-clean "no device broke" eval '! grep -q "needs reset" "$work/shares-run.err" "$work/shares-start.err"'
}

# git and make in a share (issue 21), by the guest's Debian git, make and
# tcc (guest-initrd.sh initrd-tools) through its virtiofs driver, on a
# two-file C project the host wrote: the host's own git reads the
# repository the guest made (log, fsck), and the host runs the program the
# guest built.
scenario_shares_git_make() {
    local src=$work/gm-src proj=$work/gm-src/proj commits first remade
    rc=0 # the first checks come before any exit code
    if [ -z "${INITRD_TOOLS:-}" ]; then
        fail shares-git-make "no toolchain initrd (see initrd-tools.log in the results)"
        return
    fi
    rm -rf "$src"
    mkdir -p "$proj"
    printf '%s\n' 'sum: main.o add.o' '	$(CC) -o $@ main.o add.o' \
        '%.o: %.c add.h' '	$(CC) -c $<' > "$proj/Makefile"
    printf '%s\n' '#include <stdio.h>' '#include <stdlib.h>' '#include "add.h"' \
        'int main(int argc, char **argv)' '{' \
        '    printf("sum=%d\n", add(argc > 1 ? atoi(argv[1]) : 2, 40));' '    return 0;' '}' \
        > "$proj/main.c"
    echo 'int add(int a, int b);' > "$proj/add.h"
    printf '%s\n' '#include "add.h"' 'int add(int a, int b)' '{' '    return a + b;' '}' > "$proj/add.c"
    # (git, five compiles and a link under nested TCG: more than a boot)
    BOOT_TIMEOUT=$((BOOT_TIMEOUT * 3)) boot gitmake --mem 512M --kernel "$KERNEL" --initrd "$INITRD_TOOLS" --share "$src:src" \
        --cmdline "$GUEST_CMDLINE smolvm.test=gitmake"
    expect shares-git-commit "the guest's git init, add, commit: the host's git log shows its commit" \
        eval 'first=$(sed -n "s/.*GUEST-GM-COMMITTED \([0-9a-f]*\).*/\1/p" "$work/gitmake.out") &&
              [ -n "$first" ] && [ "$(git -C "$proj" log --format=%H --reverse | head -n 1)" = "$first" ] &&
              [ "$(git -C "$proj" log -1 --format=%s "$first")" = "two-file C project" ]'
    expect shares-git-fsck "git fsck --strict on the host finds the guest's repository whole" \
        eval 'git -C "$proj" fsck --strict > "$results/gitmake-fsck.out" 2>&1'
    expect shares-make "make of the two-file project: the guest's program ran, the host runs the same binary" \
        eval 'has gitmake "GUEST-GM-RAN=sum=45" && [ "$("$proj/sum" 7)" = "sum=147" ]'
    # (make may warn of clock skew: the files' times are the host's clock,
    # which a guest under nested TCG runs seconds behind)
    expect shares-remake "an edit in the share: make rebuilds add.o and links, not main.o" \
        eval 'remade=$(grep -a "GUEST-GM-REMADE=" "$work/gitmake.out") &&
              [[ $remade == *"tcc -c add.c tcc -o sum main.o add.o "*"| sum=145"* ]] &&
              [[ $remade != *"main.c"* ]]'
    commits=$(git -C "$proj" rev-list --count HEAD 2> /dev/null)
    expect shares-git-second "the build committed: 2 commits, a clean tree in the guest and on the host ($commits)" \
        eval 'has gitmake "GUEST-GM-CLEAN=0 2" && [ "$commits" = 2 ] && [ -z "$(git -C "$proj" status --porcelain)" ] &&
              git -C "$proj" cat-file -e HEAD:sum'
    expect shares-git-make-end "the guest unmounted and powered off; no device broke" \
        eval 'has gitmake GUEST-GM-DONE && [ "$rc" -eq 0 ] && ! grep -q "needs reset" "$work/gitmake.err"'
    rm -rf "$src"
}

# vsock and the guest agent (issue 20), against the guest's own
# vmw_vsock_virtio_transport driver in an appliance from `smolvm image
# build` (its init starts smolvm-agent): exec's output, errors, exit status,
# stdin and signal death; 100 sequential and 8 concurrent execs; cp of
# 50 MiB both ways checked by sha256; a paused VM and a killed agent give
# one clear line, not a hang; a bundle saved with the agent idle, and one
# saved while an exec was streaming, answer exec at once after start.
# Figures (ms) go to vsock-figures.txt in the results.
ms_now() { echo $(( $(date +%s%N) / 1000000 )); }
scenario_vsock() {
    local app=$work/app t0 t1 out i pids=() ok figures=$results/vsock-figures.txt
    "$SMOLVM" image build -o "$app" > "$work/vs-build.out" 2>&1
    t0=$(ms_now)
    "$SMOLVM" run --detach --name vs --mem 256M "$app" > /dev/null 2> "$work/vs-run.err"
    "$SMOLVM" exec --wait "$BOOT_TIMEOUT" vs -- true 2> "$work/vs-first.err"
    rc=$?
    t1=$(ms_now)
    echo "cold boot to first exec: $((t1 - t0)) ms" > "$figures"
    cp "$work/vs-run.err" "$work/vs-first.err" "$results/" 2>/dev/null
    expect vsock-agent-up "the appliance's agent answers exec after a boot" test "$rc" -eq 0
    out=$("$SMOLVM" exec vs -- sh -c 'echo OUT-$((6*7)); echo ERR-LINE >&2; exit 7' 2> "$work/vs-err.txt")
    rc=$?
    expect vsock-exec-output "exec: stdout and stderr apart, the exit status is the command's" \
        eval 'test "$rc" -eq 7 -a "$out" = OUT-42 && grep -qx ERR-LINE "$work/vs-err.txt"'
    out=$(echo hello-stdin | "$SMOLVM" exec -i vs -- tr a-z A-Z)
    expect vsock-exec-stdin "exec -i: stdin reaches the command" test "$out" = HELLO-STDIN
    "$SMOLVM" exec vs -- sh -c 'kill -9 $$'
    rc=$?
    out=$("$SMOLVM" exec --json -e FOO=bar -w /tmp vs -- sh -c 'echo $FOO $(pwd)')
    expect vsock-exec-signal-env "death by SIGKILL is 137; -e and -w reach the command; --json" \
        eval 'test "$rc" -eq 137 && echo "$out" | grep -q "\"stdout\":\"bar /tmp\\\\n\"" && echo "$out" | grep -q "\"exit_code\":0"'
    ok=0
    t0=$(ms_now)
    for i in $(seq 1 100); do
        [ "$("$SMOLVM" exec vs -- echo "n$i")" = "n$i" ] && ok=$((ok + 1))
    done
    t1=$(ms_now)
    echo "100 sequential execs: $((t1 - t0)) ms ($(((t1 - t0) / 100)) ms each)" >> "$figures"
    expect vsock-exec-100 "100 sequential execs all answer" test "$ok" -eq 100
    for i in 1 2 3 4 5 6 7 8; do
        "$SMOLVM" exec vs -- sh -c "sleep 1; echo c$i" > "$work/vs-c$i.out" 2>&1 &
        pids+=($!)
    done
    rc=0
    for i in "${pids[@]}"; do wait "$i" || rc=$?; done
    expect vsock-exec-concurrent "8 concurrent execs all answer" \
        eval 'test "$rc" -eq 0 && for i in 1 2 3 4 5 6 7 8; do grep -qx "c$i" "$work/vs-c$i.out" || exit 1; done'
    head -c $((50 << 20)) /dev/urandom > "$work/vs-big"
    t0=$(ms_now)
    "$SMOLVM" cp "$work/vs-big" vs:/root/big && "$SMOLVM" cp vs:/root/big "$work/vs-back"
    rc=$?
    t1=$(ms_now)
    echo "cp 50 MiB in and out: $((t1 - t0)) ms" >> "$figures"
    out=$("$SMOLVM" exec vs -- sha256sum /root/big)
    expect vsock-cp-50m "cp 50 MiB in and out, sha256 equal on host and guest" \
        eval 'test "$rc" -eq 0 && test "$(sha256sum < "$work/vs-big" | cut -c1-64)" = "$(sha256sum < "$work/vs-back" | cut -c1-64)" && test "${out%% *}" = "$(sha256sum < "$work/vs-big" | cut -c1-64)"'
    mkdir -p "$work/vs-tree/sub" && echo leaf > "$work/vs-tree/sub/leaf" && ln -s sub/leaf "$work/vs-tree/link"
    "$SMOLVM" cp "$work/vs-tree" vs:/root/ && out=$("$SMOLVM" exec vs -- cat /root/vs-tree/link) &&
        "$SMOLVM" cp vs:/root/vs-tree "$work/vs-tree-back"
    rc=$?
    expect vsock-cp-folder "cp of a folder into the VM and back: its file through its symbolic link" \
        eval 'test "$rc" -eq 0 -a "$out" = leaf && test "$(cat "$work/vs-tree-back/link")" = leaf'
    out=$(printf 'typed\n' | script -qec "stty rows 33 cols 101; $SMOLVM exec -i -t vs -- sh -c 'stty size; read x; echo got-\$x'" /dev/null 2>&1)
    printf '%s\n' "$out" > "$results/vs-tty.out"
    expect vsock-exec-tty "exec -i -t through a pty: the window size and typed input reach the command" \
        eval 'echo "$out" | grep -q "^33 101" && echo "$out" | grep -q got-typed'
    "$SMOLVM" pause vs
    t0=$(ms_now)
    timeout 30 "$SMOLVM" exec vs -- true 2> "$work/vs-paused.err"
    rc=$?
    t1=$(ms_now)
    "$SMOLVM" resume vs
    cp "$work/vs-paused.err" "$results/" 2>/dev/null
    expect vsock-paused "exec on a paused VM: one line naming the pause, exit 1, within 10 s" \
        eval 'test "$rc" -eq 1 -a $((t1 - t0)) -lt 10000 && grep -q paused "$work/vs-paused.err" && test "$(wc -l < "$work/vs-paused.err")" -eq 1'
    # (a) saved with the agent idle: exec right after start answers.
    "$SMOLVM" save vs -o "$work/vs.smolmachine" --resume > /dev/null 2>&1
    rc=$?
    # (b) saved while an exec streams: the streaming client learns of the end.
    "$SMOLVM" exec vs -- sh -c 'while :; do echo tick; sleep 0.1; done' > "$work/vs-stream.out" 2> "$work/vs-stream.err" &
    local streamer=$!
    sleep 1
    "$SMOLVM" save vs -o "$work/vs-streaming.smolmachine" > /dev/null 2>&1
    local save_rc=$?
    timeout 20 tail --pid="$streamer" -f /dev/null
    wait "$streamer"
    local stream_rc=$?
    cp "$work/vs-stream.err" "$results/" 2>/dev/null
    expect vsock-save-streaming "a streaming exec at save time ends with one line and exit 1, no hang" \
        eval 'test "$rc" -eq 0 -a "$save_rc" -eq 0 -a "$stream_rc" -eq 1 && grep -q tick "$work/vs-stream.out" && grep -q "closed the connection" "$work/vs-stream.err"'
    # Each bundle started twice (the second start finds its memory unpacked
    # in the cache); the figures split the start (to --detach returning)
    # from the first exec.
    local b n t2
    for b in vs vs-streaming vs; do
        n=$b-r
        if [ "$b" = vs ]; then
            [ -z "${started_vs:-}" ] || n=$b-r2
            started_vs=1
        fi
        local identity=()
        [ "$n" != vs-r2 ] || identity=(--hostname restored-2)
        t0=$(ms_now)
        "$SMOLVM" start "$work/$b.smolmachine" --detach --name "$n" "${identity[@]}" > /dev/null 2> "$work/$n-start.err"
        t1=$(ms_now)
        out=$("$SMOLVM" exec "$n" -- echo restored 2> "$work/$n-exec.err")
        rc=$?
        t2=$(ms_now)
        echo "start of $b.smolmachine as $n: $((t1 - t0)) ms to start --detach returning, then $((t2 - t1)) ms to the first exec's output ($((t2 - t0)) ms in all)" >> "$figures"
        cp "$work/$n-start.err" "$work/$n-exec.err" "$results/" 2>/dev/null
        [ "$rc" -eq 0 ] || "$SMOLVM" logs "$n" > "$results/$n-console.log" 2>&1
        expect "vsock-restored-$n" "exec right after start of $b.smolmachine (no --wait) answers" \
            test "$rc" -eq 0 -a "$out" = restored
    done
    unset started_vs
    # The hello after the start (its own thread) names the guest.
    for i in $(seq 1 50); do
        out=$("$SMOLVM" exec vs-r2 -- hostname 2>/dev/null)
        [ "$out" != restored-2 ] || break
        sleep 0.1
    done
    expect vsock-restored-hostname "start --hostname: the restored guest takes this start's hostname" \
        test "$out" = restored-2
    out=$("$SMOLVM" exec vs-r -- date +%s)
    expect vsock-restored-clock "the restored guest's clock is the host's after an exec" \
        eval 'test $(( $(date +%s) - ${out:-0} )) -le 2'
    "$SMOLVM" exec vs-r -- sh -c 'kill -9 $(pidof smolvm-agent)' > /dev/null 2> "$work/vs-kill1.err"
    local kill_rc=$?
    t0=$(ms_now)
    timeout 30 "$SMOLVM" exec vs-r -- true 2> "$work/vs-kill2.err"
    rc=$?
    t1=$(ms_now)
    cp "$work/vs-kill1.err" "$work/vs-kill2.err" "$results/" 2>/dev/null
    expect vsock-agent-killed "a killed agent: exit 1 with one clear line, then 'no agent', no hang" \
        eval 'test "$kill_rc" -eq 1 -a "$rc" -eq 1 -a $((t1 - t0)) -lt 10000 && grep -q "no agent" "$work/vs-kill2.err"'
    "$SMOLVM" stop vs --force > /dev/null 2>&1
    "$SMOLVM" stop vs-r --force > /dev/null 2>&1
    "$SMOLVM" stop vs-streaming-r --force > /dev/null 2>&1
    "$SMOLVM" stop vs-r2 --force > /dev/null 2>&1
    cat "$figures"
}

# --jail: the VMM in its own namespaces and root reaches only the VM's
# files (a test hook of the ASan build tries a host file beside them), has
# no capabilities, and a VM saved from there still lands where asked, then
# starts jailed again.
scenario_jail() {
    local marker=$work/jail-marker bundle=$work/jail.smolmachine ps_out pid i kind=jail
    echo secret > "$marker"
    # The L1 runs the scenarios with the host tree as its mount
    # namespace's root (l1-init.sh), not chrooted, so user namespaces work
    # there and the VM must get the namespace jail. A KVM host without
    # them gets landlock, and the checks below expect what it says it got
    # (the fallback itself: test_jail's landlock cases).
    unshare -Urm true 2> "$results/jail-kind.txt"
    rc=$?
    [ "$rc" -eq 0 ] || kind=landlock
    echo "jail kind expected here: $kind" >> "$results/jail-kind.txt"
    if [ -n "${SMOLVM_IN_L1:-}" ]; then
        expect jail-kind "the L1's scenarios may make user namespaces (see jail-kind.txt)" \
            test "$kind" = jail
    fi
    SMOLVM_TEST_JAIL_PROBE=$marker timeout -k 10 120 "$real_smolvm_asan" run --jail --detach \
        --name jailed --kernel "$KERNEL" --initrd "$INITRD" \
        --cmdline "$GUEST_CMDLINE smolvm.test=counter" > "$work/jail-run.out" 2> "$work/jail-run.err"
    rc=$?
    expect jail-runs "run --jail --detach starts" test "$rc" -eq 0
    for i in $(seq 1 "$BOOT_TIMEOUT"); do
        "$real_smolvm" logs jailed 2>/dev/null | grep -q '^COUNT 3 ' && break
        sleep 1
    done
    "$real_smolvm" logs jailed > "$work/jailed.out" 2>&1
    ps_out=$("$real_smolvm" ps --json 2>&1)
    echo "$ps_out" > "$work/jail-ps.out"
    cp "$work/jailed.out" "$work/jail-ps.out" "$work/jail-run.err" "$results/" 2>/dev/null
    expect jail-boots "the jailed guest runs" has jailed '^COUNT 3 '
    expect jail-probe "the jailed VMM cannot open a host file outside its jail" \
        has jailed "confine probe: $marker: denied"
    local want="jail (user, mount, pid, ipc, net ns)"
    [ "$kind" = landlock ] && want=landlock
    expect jail-status "ps --json says it is confined: $want" \
        eval 'echo "$ps_out" | grep -qF "\"confinement\": \"$want\""'
    if [ "$kind" = jail ]; then
        expect jail-no-fallback "run says nothing of a weaker confinement" \
            eval '! grep -q "no namespaces allowed" "$work/jail-run.err"'
    fi
    pid=$(vm_pid jailed "$ps_out")
    if [ "$kind" = jail ]; then
        expect jail-powerless "no capabilities, no_new_privs, its own user and mount namespaces" \
            eval 'grep -q "^CapEff:.0000000000000000" /proc/$pid/status && grep -q "^NoNewPrivs:.1" /proc/$pid/status && [ "$(readlink /proc/$pid/ns/user)" != "$(readlink /proc/self/ns/user)" ] && [ "$(readlink /proc/$pid/ns/mnt)" != "$(readlink /proc/self/ns/mnt)" ]'
    else
        expect jail-powerless "under landlock: no_new_privs set" \
            eval 'grep -q "^NoNewPrivs:.1" /proc/$pid/status'
    fi
    expect jail-ram-private "its guest RAM, sockets and log are the user's alone" \
        eval '! find "$XDG_RUNTIME_DIR" -maxdepth 1 -perm /077 -newer "$marker" | grep -q . && [ "$(stat -c %a "$XDG_RUNTIME_DIR")" = 700 ]'
    "$real_smolvm" save jailed -o "$bundle" > "$work/jail-save.out" 2>&1
    rc=$?
    cp "$work/jail-save.out" "$results/" 2>/dev/null
    expect jail-save "save of a jailed VM writes a bundle outside its jail" \
        eval 'test "$rc" -eq 0 -a -s "$bundle" && ! find "$XDG_RUNTIME_DIR" -name "save-*" | grep -q .'
    # What the other VMs of the user have is out of the second VM's reach:
    # the first one's control socket and vsock socket (it still runs), an
    # instance's disk, the cache's and the store's roots. The jailed VMM
    # tries each (the test hook) once confined, before it unpacks the
    # bundle into the cache folders it fills, and its start still works.
    local runtime=$XDG_RUNTIME_DIR/smolvm cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/smolvm
    local data_root=${XDG_DATA_HOME:-$HOME/.local/share}/smolvm
    local neighbour=$data_root/instances/jneighbour/delta.qcow2
    mkdir -p "${neighbour%/*}" "$cache_root" && echo disk > "$neighbour"
    local probes=("$runtime/jailed.sock" "$runtime/jailed.vm/jailed.vsock" "$neighbour"
                  "$cache_root/" "$data_root/")
    SMOLVM_TEST_JAIL_PROBE=$(IFS=:; echo "${probes[*]}") \
        timeout -k 10 120 "$real_smolvm_asan" start "$bundle" --jail --detach --name jailed2 \
        > "$work/jail-start.out" 2> "$work/jail-start.err"
    rc=$?
    for i in $(seq 1 "$BOOT_TIMEOUT"); do # the ASan build (its probe hook), slower
        "$real_smolvm" logs jailed2 2>/dev/null | grep -q '^COUNT' && break
        sleep 1
    done
    "$real_smolvm" logs jailed2 > "$work/jailed2.out" 2>&1
    ps_out=$("$real_smolvm" ps --json 2>&1)
    cp "$work/jailed2.out" "$work/jail-start.err" "$results/" 2>/dev/null
    want="jail (user, mount, pid, ipc ns)"
    [ "$kind" = landlock ] && want=landlock
    expect jail-start "start --jail resumes the saved bundle, confined: $want" \
        eval 'test "$rc" -eq 0 && has jailed2 "^COUNT" && echo "$ps_out" | grep -qF "\"confinement\": \"$want\""'
    if [ "$kind" = jail ]; then
        # (landlock does not keep a VMM from connecting to a socket.)
        local what=(socket vsock instance cache store)
        for i in "${!probes[@]}"; do
            expect "jail-probe-${what[$i]}" "the jailed VMM cannot reach ${probes[$i]}" \
                has jailed2 "confine probe: ${probes[$i]}: denied"
        done
    fi
    "$real_smolvm" stop jailed2 --force > /dev/null 2>&1
    "$real_smolvm" stop jailed --force > /dev/null 2>&1
    # Its relay, outside, removed its names from the runtime folder.
    for i in $(seq 1 30); do
        [ -e "$runtime/jailed.sock" ] || [ -e "$runtime/jailed2.sock" ] || break
        sleep 1
    done
    ls -la "$runtime" "$runtime"/*.vm > "$results/jail-runtime-after.txt" 2>&1
    expect jail-leftovers "the stopped jailed VMs' sockets are gone from the runtime folder (see jail-runtime-after.txt)" \
        eval '! ls "$runtime" | grep -qE "^jailed2?\.(sock|console|vsock)$"'
    rm -rf "$data_root/instances/jneighbour"
    # --cpu-quota and --mem-limit: its cgroup has them, where the L1 has a
    # cgroup v2 with the controllers; elsewhere one line says what is missing.
    timeout -k 10 120 "$real_smolvm" run --jail --detach --name jlim --cpu-quota 1.5 --mem-limit 1G \
        --kernel "$KERNEL" --initrd "$INITRD" --cmdline "$GUEST_CMDLINE smolvm.test=counter" \
        > /dev/null 2> "$work/jail-limits.err"
    rc=$?
    ps_out=$("$real_smolvm" ps --json 2>&1)
    pid=$(echo "$ps_out" | tr -d ' \n' | grep -o '"name":"jlim"[^}]*' | grep -o '"pid":[0-9]*' | cut -d: -f2)
    [ -z "$pid" ] && pid=$(echo "$ps_out" | tr -d ' \n' | grep -o '"pid":[0-9]*,[^}]*"name":"jlim"' | grep -o '"pid":[0-9]*' | cut -d: -f2)
    local cg=
    [ -n "$pid" ] && cg=$(sed -n 's/^0:://p' "/proc/$pid/cgroup")
    { echo "rc=$rc pid=$pid cgroup=$cg"; cat "$work/jail-limits.err"
      cat "/sys/fs/cgroup$cg/cpu.max" "/sys/fs/cgroup$cg/memory.max" 2>&1; } > "$results/jail-limits.txt"
    # The L1 has a cgroup v2 with the controllers (l1-init.sh): there the
    # limits must be set; elsewhere a host may lack them and say so.
    if [ -n "${SMOLVM_IN_L1:-}" ]; then
        expect jail-limits "the VMM runs in smolvm-jlim with cpu.max 150000 100000 and memory.max 1G (see jail-limits.txt)" \
            eval 'test "$rc" -eq 0 && grep -q "^150000 100000" "/sys/fs/cgroup$cg/cpu.max" && grep -q "^1073741824" "/sys/fs/cgroup$cg/memory.max"'
    else
        expect jail-limits "the VMM runs in smolvm-jlim with cpu.max and memory.max, or says which cgroup is missing" \
            eval '{ test "$rc" -eq 0 && grep -q "^150000 100000" "/sys/fs/cgroup$cg/cpu.max" && grep -q "^1073741824" "/sys/fs/cgroup$cg/memory.max"; } || { test "$rc" -eq 1 && grep -q "cgroup" "$work/jail-limits.err"; }'
    fi
    "$real_smolvm" stop jlim --force > /dev/null 2>&1
    if [ "$rc" -eq 0 ] && [ -n "$cg" ]; then
        for i in $(seq 1 30); do
            [ -d "/sys/fs/cgroup$cg" ] || break
            sleep 1
        done
        expect jail-limits-removed "the VM's cgroup is gone once it has stopped (/sys/fs/cgroup$cg)" \
            test ! -d "/sys/fs/cgroup$cg"
    fi
}

# smolvm serve for the benchmarks: bench_daemon SOCK LOG "OPTS" CMD...
# runs CMD serve --socket SOCK OPTS (CMD: smolvm, or strace ... smolvm),
# its pid in $daemon_pid once it answers; bench_api SOCK METHOD PATH
# [BODY] prints the answer's body; bench_daemon_end SOCK ends it (the
# smolvm-serve process, under a strace too) and waits.
bench_daemon() {
    local sock=$1 log=$2 opts=$3
    shift 3
    # shellcheck disable=SC2086
    "$@" serve --socket "$sock" $opts > "$log" 2>&1 &
    daemon_pid=$!
    for _ in $(seq 1 150); do
        [ -S "$sock" ] && curl -s -m 5 --unix-socket "$sock" http://smolvm/machines > /dev/null && return 0
        sleep 0.2
    done
    return 1
}

bench_api() {
    if [ $# -ge 4 ]; then
        curl -s -m 120 --unix-socket "$1" -X "$2" -H 'Content-Type: application/json' --data "$4" "http://smolvm$3"
    else
        curl -s -m 120 --unix-socket "$1" -X "$2" "http://smolvm$3"
    fi
}

bench_daemon_end() { # the daemon itself: $daemon_pid, or its child under strace
    local p serve=$daemon_pid
    for p in /proc/[0-9]*; do
        [ "$(cut -d' ' -f4 "$p/stat" 2>/dev/null)" = "$daemon_pid" ] && serve=${p#/proc/}
    done
    kill "$serve" 2>/dev/null
    timeout 30 tail --pid="$daemon_pid" -f /dev/null 2>/dev/null || kill -9 "$daemon_pid" 2>/dev/null
    wait "$daemon_pid" 2>/dev/null
}

# Until instance $2's log (daemon on $1) shows a COUNT line (60 s at most).
bench_api_counting() {
    for _ in $(seq 1 120); do
        bench_api "$1" GET "/machines/$2/logs" | grep -q '^COUNT' && return 0
        sleep 0.5
    done
    return 1
}

# counter_bundle_warmed PREFIX BUNDLE: the counter guest (PREFIX-src)
# saved mid-count into BUNDLE, then started twice untimed (PREFIX-warm):
# the first unpacks the memory cache (served, it records only a
# provisional working set), the second records the working set every
# later start prefetches. With one, the first timed start (jail_bench's
# round 1's first mode) was the only one not to prefetch.
counter_bundle_warmed() {
    local pre=$1 bundle=$2 n
    SMOLVM=$real_smolvm background "$pre-src" run --name "$pre-src" --kernel "$KERNEL" \
        --initrd "$INITRD" --cmdline "$GUEST_CMDLINE smolvm.test=counter"
    wait_for "$pre-src" '^COUNT 3 '
    "$real_smolvm" save "$pre-src" -o "$bundle" > /dev/null 2>&1
    finish "$pre-src"
    for n in 1 2; do
        SMOLVM=$real_smolvm background "$pre-warm" start "$bundle" --name "$pre-warm"
        wait_for "$pre-warm" '^COUNT'
        "$real_smolvm" stop "$pre-warm" --force > /dev/null 2>&1
        finish "$pre-warm"
    done
}

# The confinement's cost (issue 23's benchmark): boot to init, and start of
# a saved bundle until its vCPU runs again, RUNS (5) rounds in one L1:
# "plain" is neither (--seccomp=off, no --jail), "confined" is --jail with
# the filters on (the default); "jail" (--jail --seccomp=off) and
# "seccomp" (the filters, no --jail) split the cost between the two.
# Milliseconds since the VMM started, from --trace-boot's JSON (the clock
# starts before the jail is made, so its setup is inside the figure). The
# first start of the bundle unpacks its memory cache, the second records
# its working set: both are made untimed, so every timed start is a later
# start that prefetches. Rounds go in pairs, the
# second in the reverse order of the first, so a drift of the host's load
# (or the L1's caches warming) does not favour one side; each pair starts
# one mode further along. JAIL_BENCH_KINDS=start times starts only (the
# boots take ~2/3 of the time); JAIL_BENCH_MODES names the modes to run.
# Kind "api": starts through smolvm serve, whose spare VMM (api/spare.h)
# has done what does not depend on the machine before the request: two
# daemons, plain (--no-confine: no jail, --seccomp=off, a plain spare) and
# confined (the default), each an instance of the bundle reset to its
# saved state before each round's start (it resumes, as start of the
# bundle does); "api" is the request's time at the client (curl), "apivmm"
# the spare's own from its name to its first vCPU entry (its trace).
# bench/jail/report writes the raw rounds, medians, least, and each
# mode/plain of the medians and round by round into jail-bench.txt, then
# each jailed or filtered run's own trace counts (where its cost went).
scenario_jail_bench() {
    local bundle=$work/jb.smolmachine figures=$results/jail-bench.txt mode n v opts kind
    local report runs=${RUNS:-5} bench kinds=" ${JAIL_BENCH_KINDS:-boot start} " api_modes=""
    bench=$(dirname "$(realpath "$0")")/../../bench
    report=$bench/jail/report
    # shellcheck source=../../bench/lib.sh
    . "$bench/lib.sh" # bench_settle
    : > "$figures"
    counter_bundle_warmed jb "$bundle"
    case $kinds in *" api "*) jail_bench_api_begin && api_modes=$jba_modes ;; esac
    # SMOLVM_BASELINE (another smolvm, before a change): its confined runs too.
    local modes="plain jail seccomp confined" bin order
    [ -z "${SMOLVM_BASELINE:-}" ] || modes="$modes confined-baseline"
    [ -z "${JAIL_BENCH_MODES:-}" ] || modes=$JAIL_BENCH_MODES
    for n in $(seq 1 "$runs"); do
        # Rounds in pairs: the second of a pair runs the modes in the
        # reverse order of the first (a drift of the host's load favours no
        # side), and each pair starts one mode further along the list, so
        # every mode takes every place and follows every other (with a
        # fixed order, plain was always first or last: its even rounds'
        # setup, vmm_ready, took 2-3x its odd ones', December 2026).
        order=$(echo "$modes" | awk -v shift=$(((n - 1) / 2)) -v back=$((n % 2 == 0)) '{
            for (i = 0; i < NF; i++) o[i] = $(((i + shift) % NF) + 1)
            for (i = 0; i < NF; i++) printf "%s ", back ? o[NF - 1 - i] : o[i] }')
        for mode in $order; do
            bin=$real_smolvm
            case $mode in
            plain) opts=--seccomp=off ;;
            jail) opts="--jail --seccomp=off" ;;
            seccomp) opts= ;;
            confined) opts=--jail ;;
            confined-baseline) opts=--jail bin=$SMOLVM_BASELINE ;;
            esac
            # Each timed run from a settled L1 (bench/lib.sh: the last VM's
            # teardown, a jailed one's namespaces too, off its CPU), and
            # the start's line waited for by a reader forked before it
            # and blocked (line_watch), not by a poll forked each second:
            # neither is on a user's way.
            if [[ $kinds == *" boot "* ]]; then
                bench_settle
                SMOLVM=$bin boot "jb-boot-$mode-$n" $opts --kernel "$KERNEL" --initrd "$INITRD" \
                    --cmdline "$GUEST_CMDLINE" --trace-until SMOLVM-GUEST-UP --json
                v=$(grep -o '"marker_seen":[0-9.]*' "$work/jb-boot-$mode-$n.err" | cut -d: -f2)
                echo "boot $mode $n ${v:-?}" >> "$figures"
            fi
            [[ $kinds == *" start "* ]] || continue
            line_watch "jb-start-$mode-$n" '^COUNT'
            bench_settle
            SMOLVM=$bin background "jb-start-$mode-$n" start "$bundle" $opts --name "jb-$mode" \
                --trace-boot --json
            line_seen "jb-start-$mode-$n"
            "$real_smolvm" stop "jb-$mode" --force > /dev/null 2>&1
            finish "jb-start-$mode-$n"
            v=$(grep -o '"first_vcpu_entry":[0-9.]*' "$work/jb-start-$mode-$n.err" | cut -d: -f2)
            echo "start $mode $n ${v:-?}" >> "$figures"
        done
        # Through the API, in the same round, in turn first (odd rounds
        # plain first, even confined first).
        order=$api_modes
        [ $((n % 2)) = 1 ] || order=$(echo "$api_modes" | awk '{ for (i = NF; i > 0; i--) printf "%s ", $i }')
        for mode in $order; do
            jail_bench_api_start "$mode" "$n" "$figures"
        done
    done
    [ -z "$api_modes" ] || jail_bench_api_end
    {
        echo "# plain: --seccomp=off, no --jail; jail: --jail --seccomp=off; seccomp: filters, no --jail;"
        echo "# confined: --jail, filters on. ms since the VMM started; rounds in pairs, the second in the"
        echo "# reverse order of the first, each pair one mode further along: $modes"
        bash "$report" "$figures"
        # Where a start's own setup went (util/trace.h counts, µs), plain's too.
        for kind in $kinds; do
            [ "$kind" != api ] || continue
            for mode in $modes; do
                for n in $(seq 1 "$runs"); do
                    echo "counts $kind $mode $n: $(grep -o '"counts":{[^}]*}' "$work/jb-$kind-$mode-$n.err" | tr -d '"{}' | sed 's/^counts://')"
                done
            done
        done
        for mode in $api_modes; do
            for n in $(seq 1 "$runs"); do
                echo "counts api $mode $n: $(grep -o '"counts":{[^}]*}' "$work/jba-$mode-$n.trace" | tr -d '"{}' | sed 's/^counts://')"
            done
        done
        echo "load: $(cat /proc/loadavg)"
    } > "$figures.report"
    cat "$figures.report" >> "$figures"
    rm -f "$figures.report"
    expect jail-bench "figures for both, plain and confined, and their ratios (jail-bench.txt)" \
        eval '! grep -q "?" "$figures" && grep -q "^  confined/plain" "$figures"'
    [ -z "$api_modes" ] ||
        expect jail-bench-api "API starts through the spare, both modes (each trace has spare_named, and spare_vmm_ahead_us: its VMM and VM made before the name; jba-*.trace)" \
            eval 'test "$(grep -l "\"spare_named\":" "$work"/jba-*.trace | wc -l)" = $(($(echo $api_modes | wc -w) * runs)) && test "$(grep -l "\"spare_vmm_ahead_us\":[1-9]" "$work"/jba-plain-[0-9]*.trace "$work"/jba-confined-[0-9]*.trace | wc -l)" = $((2 * runs)) && grep -q "^api plain" "$figures"'
    expect jail-bench-confined "the confined and jail runs said they were jailed (see jb-*-{confined,jail}-*.err)" \
        eval '! grep -l "no namespaces allowed" "$work"/jb-*-confined-*.err "$work"/jb-*-jail-*.err 2>/dev/null | grep -q .'
    cat "$figures"
    rm -f "$bundle"
}

# Whether a jailed start's namespaces wait for the last VM's teardown
# (named in SCENARIOS only): jail_bench's jail-only rows were bimodal
# (jail_unshare_us 14-25 ms in 9 of 16 rounds, else 1-4). Pairs of jailed
# starts of a saved bundle (--seccomp=off; JAIL_UNSHARE_RUNS pairs, default
# RUNS), each from a settled L1
# (bench_settle: CPU idle), one of each pair after a further rest of
# JAIL_UNSHARE_REST (3) s, in turn first; each start's jail_unshare_us and
# of it the unshare() call (jail_unshare_call_us) in jail-unshare.txt.
scenario_jail_unshare() {
    local bundle=$work/ju.smolmachine out=$results/jail-unshare.txt n rest bench v
    bench=$(dirname "$(realpath "$0")")/../../bench
    # shellcheck source=../../bench/lib.sh
    . "$bench/lib.sh"
    SMOLVM=$real_smolvm background ju-src run --name ju-src --kernel "$KERNEL" --initrd "$INITRD" \
        --cmdline "$GUEST_CMDLINE smolvm.test=counter"
    wait_for ju-src '^COUNT 3 '
    "$real_smolvm" save ju-src -o "$bundle" > /dev/null 2>&1
    finish ju-src
    : > "$out"
    for n in $(seq 0 $((2 * ${JAIL_UNSHARE_RUNS:-${RUNS:-5}}))); do
        # n 0: untimed (the memory cache); then rests 0 and R, in turn first.
        rest=0
        [ $(((n + (n + 1) / 2) % 2)) = 1 ] || [ "$n" = 0 ] || rest=${JAIL_UNSHARE_REST:-3}
        line_watch "ju-$n" '^COUNT'
        bench_settle
        sleep "$rest"
        SMOLVM=$real_smolvm background "ju-$n" start "$bundle" --jail --seccomp=off --name ju \
            --trace-boot --json
        line_seen "ju-$n"
        "$real_smolvm" stop ju --force > /dev/null 2>&1
        finish "ju-$n"
        [ "$n" -gt 0 ] || continue
        v=$(grep -o '"counts":{[^}]*}' "$work/ju-$n.err" | grep -o '"jail_unshare[a-z_]*":[0-9]*' | tr -d '"' | tr '\n' ' ')
        echo "rest $rest: $v" >> "$out"
    done
    cat "$out"
    expect jail-unshare "jail_unshare_us for each start, both rests (jail-unshare.txt)" \
        eval 'grep -q "^rest 0: jail_unshare_us:" "$out" && grep -q "^rest [1-9][0-9]*: jail_unshare_us:" "$out"'
    rm -f "$bundle"
}

# A saved counter guest with a disk (an instance is made of one), for the
# API's starts: jail_api_bundle FILE NAME.
jail_api_bundle() {
    local disk=$work/$2.ext4
    mkfs.ext4 -q -F "$disk" 32M
    SMOLVM=$real_smolvm background "$2" run --name "$2" --kernel "$KERNEL" --initrd "$INITRD" \
        --disk "$disk" --cmdline "$GUEST_CMDLINE smolvm.test=counter"
    wait_for "$2" '^COUNT 3 '
    "$real_smolvm" save "$2" -o "$1" > "$work/$2.save" 2>&1
    finish "$2"
}

# jail_bench's API side: a daemon for each mode, its spare made, and an
# instance for each (jba-MODE) of a bundle like the CLI's but with a disk
# (jail_api_bundle), started twice untimed (its memory cache, its working
# set), as the bundle was.
# The API's modes (jba_modes): plain and confined, and with SMOLVM_BASELINE
# the same two of that smolvm's daemon (its own spares), to see what a
# user of the API gains or loses against it in the same L1.
jail_bench_api_begin() {
    local bundle=$work/jba.smolmachine mode opts bin
    jail_api_bundle "$bundle" jba-src
    jba_modes="plain confined"
    [ -z "${SMOLVM_BASELINE:-}" ] || jba_modes="$jba_modes plain-baseline confined-baseline"
    for mode in $jba_modes; do
        opts= bin=$real_smolvm
        [ "${mode%-baseline}" = confined ] || opts=--no-confine
        [ "$mode" = "${mode%-baseline}" ] || bin=$SMOLVM_BASELINE
        bench_daemon "$work/jba-$mode.sock" "$work/jba-$mode.serve" "$opts" "$bin" ||
            { fail jail-bench-api "the $mode daemon did not answer"; return 1; }
        eval "jba_daemon_${mode//-/_}=\$daemon_pid"
        "$real_smolvm" create "jba-$mode" --from "$bundle" > "$work/jba-$mode.create" 2>&1 ||
            { fail jail-bench-api "create jba-$mode: $(tail -n 1 "$work/jba-$mode.create")"; return 1; }
        for _ in 1 2; do
            "$real_smolvm" reset "jba-$mode" > /dev/null 2>&1
            bench_api "$work/jba-$mode.sock" POST "/machines/jba-$mode/start" > /dev/null
            bench_api_counting "$work/jba-$mode.sock" "jba-$mode"
            bench_api "$work/jba-$mode.sock" POST "/machines/jba-$mode/stop" '{"force":true}' > /dev/null
        done
    done
}

# One timed start of jba-MODE through its daemon (round N), into FIGURES.
jail_bench_api_start() {
    local mode=$1 n=$2 figures=$3 sock=$work/jba-$1.sock wall v
    "$real_smolvm" reset "jba-$mode" > /dev/null 2>&1
    bench_settle
    wall=$(curl -s -m 120 --unix-socket "$sock" -X POST -o "$work/jba-$mode-$n.json" \
        -w '%{time_total}' "http://smolvm/machines/jba-$mode/start")
    bench_api "$sock" GET "/machines/jba-$mode/trace" > "$work/jba-$mode-$n.trace"
    bench_api_counting "$sock" "jba-$mode"
    bench_api "$sock" POST "/machines/jba-$mode/stop" '{"force":true}' > /dev/null
    grep -q '"state":"running"' "$work/jba-$mode-$n.json" || wall=
    echo "api $mode $n $(awk -v s="${wall:-x}" 'BEGIN { if (s ~ /^[0-9.]+$/) printf "%.1f", s * 1000; else print "?" }')" >> "$figures"
    v=$(grep -o '"first_vcpu_entry":[0-9.]*' "$work/jba-$mode-$n.trace" | cut -d: -f2)
    echo "apivmm $mode $n ${v:-?}" >> "$figures"
}

jail_bench_api_end() {
    local mode
    for mode in $jba_modes; do
        daemon_pid=$(eval "echo \${jba_daemon_${mode//-/_}:-}")
        [ -z "$daemon_pid" ] || bench_daemon_end
        "$real_smolvm" rm "jba-$mode" > /dev/null 2>&1
    done
    rm -f "$work/jba.smolmachine" "$work/jba-src.ext4"
}

# What a jailed start costs in calls (named in SCENARIOS only, like
# jail_bench): one start of a saved bundle under strace -f for each of
# plain, confined and (SMOLVM_BASELINE) the baseline's confined; the calls
# made before the VMM opens the bundle to read it (the plan, the jail, the
# filters), by name, in jail-calls.txt. Each call that walks a path costs
# ~0.1-0.3 ms in a TCG L1: a cut in them is seen here exactly, where the
# wall clock of one start would hide it.
scenario_jail_calls() {
    local bundle=$work/jc.smolmachine out=$results/jail-calls.txt mode bin opts trace n
    command -v strace > /dev/null || { fail jail-calls "no strace in this L1"; return; }
    counter_bundle_warmed jc "$bundle"
    : > "$out"
    for mode in plain confined ${SMOLVM_BASELINE:+confined-baseline}; do
        bin=$real_smolvm opts=--jail
        case $mode in
        plain) opts=--seccomp=off ;;
        confined-baseline) bin=$SMOLVM_BASELINE ;;
        esac
        trace=$work/jc-$mode.strace
        printf '#!/bin/sh\nexec strace -f -o %s %s "$@"\n' "$trace" "$bin" > "$work/jc-strace"
        chmod +x "$work/jc-strace"
        SMOLVM=$work/jc-strace background "jc-$mode" start "$bundle" $opts --name "jc-$mode"
        wait_for_line "jc-$mode" '^COUNT'
        "$real_smolvm" stop "jc-$mode" --force > /dev/null 2>&1
        finish "jc-$mode"
        # strace -f: "PID name(args...) = result"; up to the bundle's open
        # for reading (the plan opens it O_PATH, outside the jail: strace
        # writes that O_RDONLY|O_CLOEXEC|O_PATH).
        awk -v mode="$mode" -v b="$bundle\", O_RDONLY" '
            index($0, b) && !index($0, "O_PATH") { done = 1 }
            done { next }
            { sub(/^[0-9]+ +/, ""); if (match($0, /^[a-z_0-9]+\(/)) { n[substr($0, 1, RLENGTH - 1)]++; all++ } }
            END { if (!done) { printf "%s: the bundle was never read (no cut-off)\n", mode; exit }
                  printf "%s: %d calls before the bundle is read:", mode, all
                  for (c in n) printf " %s %d", c, n[c]; printf "\n" }' "$trace" >> "$out"
        cp "$trace" "$results/"
    done
    # Through smolvm serve's spare VMM (api/spare.h), plain (--no-confine)
    # and confined: an instance of the bundle started by the API, the
    # daemon under strace -f; the spare's calls (and its children's, its
    # threads') from its read of the name to the first KVM_RUN: the
    # restore's calls are in both, the jail's per-start part is the rest.
    local name sock
    jail_api_bundle "$work/jca.smolmachine" jca-src
    for mode in plain confined; do
        name=jca-$mode sock=$work/jca-$mode.sock trace=$work/jca-$mode.strace opts=
        [ "$mode" = confined ] || opts=--no-confine
        "$real_smolvm" create "$name" --from "$work/jca.smolmachine" > "$work/jca-$mode.create" 2>&1 ||
            { fail jail-calls-api "create $name: $(tail -n 1 "$work/jca-$mode.create")"; continue; }
        # Two starts uncounted, as jail_bench's: the memory cache (the first
        # mode's), the working set; the counted one prefetches it.
        bench_daemon "$sock" "$work/jca-$mode.serve0" "$opts" "$real_smolvm"
        for n in 1 2; do
            bench_api "$sock" POST "/machines/$name/start" > /dev/null &&
                bench_api_counting "$sock" "$name"
            bench_api "$sock" POST "/machines/$name/stop" '{"force":true}' > /dev/null
            "$real_smolvm" reset "$name" > /dev/null 2>&1
        done
        bench_daemon_end
        # --decode-pids=pidns: a jailed VMM's threads are 2, 3... in its pid
        # namespace, which clone3 returns; strace adds what they are here.
        bench_daemon "$sock" "$work/jca-$mode.serve" "$opts" \
            strace -f --decode-pids=pidns -o "$trace" "$real_smolvm" ||
            { fail jail-calls "the $mode daemon did not answer under strace"; continue; }
        bench_api "$sock" POST "/machines/$name/start" > "$work/jca-$mode.start"
        bench_api_counting "$sock" "$name"
        bench_api "$sock" POST "/machines/$name/stop" '{"force":true}' > /dev/null
        bench_daemon_end
        "$real_smolvm" rm "$name" > /dev/null 2>&1
        N=$name awk -v mode="api-$mode" '
            function in_spare(p) {
                for (; p != ""; p = (p in parent) ? parent[p] : "") if (p == root) return 1
                return 0
            }
            { pid = $1; line = $0; sub(/^[0-9]+ +/, "", line) }
            # Who forked whom, from the start: the spare forks its VMM (and
            # under --jail its relay and resume marker) before it is named.
            { if ((index(line, "clone") || index(line, "fork")) && match(line, /[0-9]+ in strace.s PID NS \*\/$/)) {
                  child = substr(line, RSTART); sub(/ .*/, "", child); parent[child] = pid
              } else if ((index(line, "clone") || index(line, "fork")) && match(line, /= [0-9]+$/)) parent[substr(line, RSTART + 2)] = pid }
            !on { if (index(line, "\"" ENVIRON["N"] "\\n\"") && index(line, "read") && !index(line, "send")) { on = 1; root = pid }
                  next }
            { if (match(line, /^[a-z_0-9]+\(/)) { who[NR] = pid; what[NR] = substr(line, 1, RLENGTH - 1) }
              if (index(line, "KVM_RUN")) run[NR] = pid }
            END {
                if (!on) { printf "%s: the spare was never named (no cut-off)\n", mode; exit }
                cut = 0
                for (i = 1; i <= NR; i++) if ((i in run) && in_spare(run[i])) { cut = i; break }
                if (!cut) { printf "%s: no KVM_RUN (no cut-off)\n", mode; exit }
                for (i = 1; i < cut; i++) if ((i in who) && in_spare(who[i])) { n[what[i]]++; all++ }
                printf "%s: %d calls from the name to the first KVM_RUN:", mode, all
                for (c in n) printf " %s %d", c, n[c]; printf "\n" }' "$trace" >> "$out"
        cp "$trace" "$results/"
    done
    rm -f "$work/jca.smolmachine" "$work/jca-src.ext4"
    cat "$out"
    # Counted up to the cut-off, never to the end of the run (a cut-off no
    # longer matched counted everything and still looked like figures).
    expect jail-calls "calls counted for plain and confined up to the bundle's read (jail-calls.txt)" \
        eval 'grep -q "^plain: [1-9]" "$out" && grep -q "^confined: [1-9]" "$out" &&
              ! grep -q "never read" "$out"'
    expect jail-calls-api "calls counted for the API's plain and confined spares up to their first KVM_RUN (jail-calls.txt)" \
        eval 'grep -q "^api-plain: [1-9]" "$out" && grep -q "^api-confined: [1-9]" "$out" &&
              ! grep -q "no cut-off" "$out"'
    rm -f "$bundle"
}

# Where the CPU of a start's window goes (bench/jail/cpu-report): the L1
# has one vCPU, so a start's time from its exec to its first KVM_RUN is its
# own CPU, the CPU of whatever else ran meanwhile (the harness's waiter,
# kernel threads) and idle time; strace would slow every call many times
# over, the kernel's own trace (ftrace: raw_syscalls, sched_switch, forks
# and execs) does not. Plain (--seccomp=off) and confined (--jail), RUNS
# rounds, alternating which goes first; jail-cpu.txt says per start and
# per mode (medians) the window, the start's processes' CPU, the others',
# idle.
scenario_jail_cpu() {
    local bundle=$work/jcpu.smolmachine out=$results/jail-cpu.txt mode n opts order
    local tracing=/sys/kernel/tracing runs=${RUNS:-3} event
    [ -d "$tracing/events/raw_syscalls" ] || mount -t tracefs nodev "$tracing" 2> /dev/null
    [ -d "$tracing/events/raw_syscalls" ] || { fail jail-cpu "no tracefs in this L1"; return; }
    counter_bundle_warmed jcpu "$bundle"
    for n in $(seq 1 "$runs"); do
        order="plain confined"
        [ $((n % 2)) = 1 ] || order="confined plain"
        for mode in $order; do
            opts=--jail
            [ "$mode" = confined ] || opts=--seccomp=off
            echo 0 > "$tracing/tracing_on"
            echo 32768 > "$tracing/buffer_size_kb"
            : > "$tracing/trace"
            echo 1 > "$tracing/events/raw_syscalls/enable"
            for event in sched_switch sched_process_fork sched_process_exec; do
                echo 1 > "$tracing/events/sched/$event/enable"
            done
            echo 1 > "$tracing/tracing_on"
            SMOLVM=$real_smolvm background "jcpu-$mode" start "$bundle" $opts --name "jcpu-$mode" \
                --trace-boot --json
            wait_for_line "jcpu-$mode" '^COUNT'
            echo 0 > "$tracing/tracing_on"
            "$real_smolvm" stop "jcpu-$mode" --force > /dev/null 2>&1
            finish "jcpu-$mode"
            gzip -c "$tracing/trace" > "$results/jail-cpu-$mode-$n.trace.gz"
            echo 0 > "$tracing/events/enable"
            : > "$tracing/trace"
        done
    done
    python3 "$(dirname "$(realpath "$0")")/../../bench/jail/cpu-report" "$results"/jail-cpu-*.trace.gz > "$out" 2>&1
    expect jail-cpu "the start's CPU of both modes, and their ratio (jail-cpu.txt)" \
        grep -q "^confined/plain" "$out"
    rm -f "$bundle"
}

# bench/migrate in this L1 (named in SCENARIOS only, not CI's tier):
# smolvm's migrations against QEMU's of the same guest, RUNS of each;
# the figures in migrate-bench.txt.
scenario_migrate_bench() {
    local dir=$work/bench-migrate repo
    repo=$(dirname "$(realpath "$0")")/../..
    mkdir -p "$dir"
    printf 'SMOLVM=%s\nKERNEL=%s\nINITRD=%s\nRUNS=%s\nMIGRATE_MEM=%s\nMIGRATE_CAP=%s\n' "$real_smolvm" \
        "$KERNEL" "$INITRD" "${RUNS:-1}" "${MIGRATE_MEM:-1G}" "${MIGRATE_CAP:-100M}" > "$dir/params.sh"
    TMPDIR=$work bash "$repo/bench/migrate/inside.sh" "$dir" > "$results/migrate-bench.log" 2>&1
    cp "$dir"/*.json "$dir/dirtied.txt" "$dir/times.tsv" "$results/" 2>/dev/null
    # shellcheck source=../../bench/lib.sh
    (. "$repo/bench/lib.sh" && bench_report "$dir" ms lower) > "$results/migrate-bench.txt" 2>&1
    expect migrate-bench "figures for smolvm and QEMU (see migrate-bench.txt, .log)" \
        eval 'grep -q "^smolvm" "$dir/times.tsv" && grep -q "^qemu-microvm" "$dir/times.tsv"'
    cat "$results/migrate-bench.txt"
    rm -rf "$dir"
}

# SCENARIOS="snapshot detach" (from tests/nested/run's environment) runs only
# those, for work on one of them; the default is every scenario, in this order.
# Seccomp (issue 23): with a disk, user networking, a share, vsock and two
# vCPUs, every thread of the running VMM is under a filter (Seccomp: 2 in
# /proc) and the guest counts on; a device thread's forbidden call (the
# test builds' hook) ends the VMM with its one line. Then the cost: boot to
# init and start of a saved bundle with the filters on and off, alternated,
# SECCOMP_RUNS times (default 0: a benchmark, not run in CI's tier),
# medians in seccomp-figures.txt.
# smolvm_procs PID: the smolvm processes below PID (a jail's relay, the
# VMM, its net helper), one pid a line: a jailed VM has two beside the
# helper, and the relay is the one a child lookup finds first.
smolvm_procs() {
    local c
    for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        case "$(tr '\0' '\n' < /proc/"$c"/cmdline 2>/dev/null | head -n 1)" in
        *smolvm*) echo "$c" ;;
        esac
        smolvm_procs "$c"
    done
}
# seccomp_tree PID OUT: every thread of each smolvm process below PID, with
# its Seccomp line, into OUT; sets procs (their pids), n (threads, all of
# them), vmm_threads (the most one process has) and bad (threads not at 2).
seccomp_tree() {
    local p t k
    procs=$(smolvm_procs "$1" | tr '\n' ' ') n=0 vmm_threads=0 bad=
    : > "$2"
    for p in $procs; do
        k=0
        for t in /proc/"$p"/task/*; do
            n=$((n + 1)) k=$((k + 1))
            echo "$p $(cat "$t/comm" 2>/dev/null) $(grep '^Seccomp:' "$t/status" 2>/dev/null)" >> "$2"
            grep -q '^Seccomp:[[:space:]]*2$' "$t/status" 2>/dev/null || bad="$bad $p/$(cat "$t/comm" 2>/dev/null)"
        done
        [ "$k" -gt "$vmm_threads" ] && vmm_threads=$k
    done
}
# seccomp_ms NAME MARKER ARGS...: ms from launching smolvm ARGS until MARKER
# is on its output; the VM is stopped then.
seccomp_ms() {
    local name=$1 marker=$2 t0 pid
    shift 2
    t0=$(ms_now)
    "$SMOLVM" "$@" --name "$name" < /dev/null > "$work/$name.out" 2>&1 &
    pid=$!
    while ! grep -q -- "$marker" "$work/$name.out" && kill -0 "$pid" 2>/dev/null; do sleep 0.01; done
    echo $(( $(ms_now) - t0 ))
    "$SMOLVM" stop "$name" --force > /dev/null 2>&1
    wait "$pid"
}
seccomp_median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
scenario_seccomp() {
    local disk=$work/sc.ext4 share=$work/sc-share bundle=$work/sc.smolmachine procs bad n vmm_threads
    mkfs.ext4 -q -F "$disk" 32M
    mkdir -p "$share"
    background sc run --name sc --cpus 2 --net user --share "$share:sc" --disk "$disk" \
        --kernel "$KERNEL" --initrd "$INITRD" --cmdline "$GUEST_CMDLINE smolvm.test=counter"
    wait_for sc 'COUNT 3 '
    seccomp_tree "$bg_pid" "$results/seccomp-threads.txt"
    expect seccomp-every-thread "all $n threads of the smolvm processes (${procs:-none}: the VMM, its net helper, a jail's relay) show Seccomp: 2 (not:${bad:- none}; see seccomp-threads.txt)" \
        eval 'test -n "$procs" && test "$vmm_threads" -ge 7 && test -z "$bad"'
    expect seccomp-ps "ps --json says the VMM is confined by seccomp" \
        eval '"$SMOLVM" ps --json | grep -q "\"seccomp\": \"on\""'
    quit_counter sc # again until seen: one quit can land as busybox's read -t times out
    expect seccomp-guest-runs-on "the guest counted and unmounted under the filters, exit 0" \
        eval 'test "$rc" -eq 0 && has sc GUEST-COUNTER-CLEAN && ! grep -q seccomp "$work/sc.err"'
    if [ "$SMOLVM_ASAN" = "$SMOLVM" ]; then
        fail seccomp-violation "no test build (build-asan) to pull the hook"
    else
        SMOLVM_TEST_SECCOMP_VIOLATION=1 timeout -k 10 "$BOOT_TIMEOUT" "$SMOLVM_ASAN" run \
            --disk "$disk" --kernel "$KERNEL" --initrd "$INITRD" \
            --cmdline "$GUEST_CMDLINE smolvm.test=counter" < /dev/null > "$work/sc-kill.out" 2> "$work/sc-kill.err"
        rc=$?
        cp "$work/sc-kill.out" "$work/sc-kill.err" "$results/" 2>/dev/null
        expect seccomp-violation "a device thread's forbidden call ends the VMM: exit 1 and its one line" \
            eval 'test "$rc" -eq 1 && grep -qx "smolvm: run: seccomp: thread virtio-blk made a forbidden system call execve (nr 59)" "$work/sc-kill.err"'
    fi
    # The cost, on and off alternated.
    background sc-save run --name sc-save --kernel "$KERNEL" --initrd "$INITRD" \
        --cmdline "$GUEST_CMDLINE smolvm.test=counter"
    wait_for sc-save 'COUNT 3 '
    "$SMOLVM" save sc-save -o "$bundle" > "$work/sc-save.out" 2>&1
    finish sc-save
    # Under the filters the saved bundle starts (a test); their cost is a
    # benchmark, timed only when asked (SECCOMP_RUNS=N): not in CI's tier.
    seccomp_ms sc-start-on-1 'COUNT ' start --seccomp=on "$bundle" > /dev/null
    expect seccomp-starts "the saved bundle started with the filters on" has sc-start-on-1 'COUNT '
    local mode i boot_on= boot_off= start_on= start_off= ms
    [ "${SECCOMP_RUNS:-0}" -gt 0 ] || return 0
    for i in $(seq 1 "$SECCOMP_RUNS"); do
        for mode in on off; do
            ms=$(seccomp_ms "sc-boot-$mode-$i" SMOLVM-GUEST-UP run --seccomp=$mode --kernel "$KERNEL" \
                --initrd "$INITRD" --cmdline "$GUEST_CMDLINE smolvm.test=counter")
            eval "boot_$mode=\"\$boot_$mode $ms\""
            ms=$(seccomp_ms "sc-start-$mode-$i" 'COUNT ' start --seccomp=$mode "$bundle")
            eval "start_$mode=\"\$start_$mode $ms\""
        done
    done
    {
        echo "boot to init (ms), filters on: $boot_on; median $(echo "$boot_on" | seccomp_median)"
        echo "boot to init (ms), filters off: $boot_off; median $(echo "$boot_off" | seccomp_median)"
        echo "start of a saved bundle (ms), filters on: $start_on; median $(echo "$start_on" | seccomp_median)"
        echo "start of a saved bundle (ms), filters off: $start_off; median $(echo "$start_off" | seccomp_median)"
    } > "$results/seccomp-figures.txt"
}

# Two appliance VMs on one host folder (issue 21): each sees what the other
# writes, create --share gives an instance its folder, and the host's view
# agrees.
scenario_shares_two_vms() {
    local app=$work/app2 dir=$work/two-share out1 out2
    mkdir -p "$dir" && echo from-host > "$dir/host"
    "$SMOLVM" image build -o "$app" > "$work/two-build.out" 2>&1
    "$SMOLVM" run --detach --name two1 --mem 256M --share "$dir:w" "$app" > /dev/null 2> "$work/two1.err"
    "$SMOLVM" create two2 --from "$app" --share "$dir:w" > /dev/null 2> "$work/two2-create.err"
    "$SMOLVM" start two2 --detach --name two2 > /dev/null 2> "$work/two2.err"
    "$SMOLVM" exec --wait "$BOOT_TIMEOUT" two1 -- sh -c 'echo from-one > /mnt/w/one' 2>> "$work/two1.err"
    "$SMOLVM" exec --wait "$BOOT_TIMEOUT" two2 -- sh -c 'echo from-two > /mnt/w/two' 2>> "$work/two2.err"
    out1=$("$SMOLVM" exec two1 -- cat /mnt/w/two /mnt/w/host 2>&1)
    out2=$("$SMOLVM" exec two2 -- cat /mnt/w/one 2>&1)
    cp "$work/two1.err" "$work/two2.err" "$work/two2-create.err" "$results/" 2>/dev/null
    expect shares-two-vms "two VMs on one folder (one of them an instance made with create --share) see each other's files" \
        eval 'test "$out1" = "$(printf "from-two\nfrom-host")" -a "$out2" = from-one && test "$(cat "$dir/one" "$dir/two")" = "$(printf "from-one\nfrom-two")"'
    "$SMOLVM" stop two1 --force > /dev/null 2>&1
    "$SMOLVM" stop two2 --force > /dev/null 2>&1
    "$SMOLVM" rm two2 > /dev/null 2>&1
}

# bench/net in this L1 (run only when named): smolvm --net user and --net
# tap against QEMU -M microvm -netdev user and tap, RUNS boots each (3
# rounds a boot); the medians and ratios go to net-bench.txt.
scenario_net_bench() {
    local dir=$work/net-bench bench
    bench=$(realpath "$(dirname "${BASH_SOURCE[0]}")/../../bench")
    mkdir -p "$dir"
    printf 'SMOLVM=%s\nKERNEL=%s\nINITRD=%s\nRUNS=%s\n' "$real_smolvm" "$KERNEL" "$INITRD_NET" \
        "${RUNS:-2}" > "$dir/params.sh"
    TMPDIR=$work bash "$bench/net/inside.sh" "$dir" > "$results/net-bench.log" 2>&1
    (
        # shellcheck source=../../bench/lib.sh
        . "$bench/lib.sh"
        bench_report "$dir/throughput" MB/s higher
        bench_report "$dir/latency" ms lower
    ) > "$results/net-bench.txt" 2>&1
    cp "$dir/throughput/times.tsv" "$results/net-bench-throughput.tsv" 2>/dev/null
    cp "$dir/latency/times.tsv" "$results/net-bench-latency.tsv" 2>/dev/null
    cp "$dir/consoles.log" "$results/net-bench-consoles.log" 2>/dev/null
    expect net-bench "figures for smolvm and QEMU, user and tap, both ways" \
        eval '(for m in smolvm qemu-microvm; do for k in tcp-guest-to-host tcp-host-to-guest tap-tcp-guest-to-host tap-tcp-host-to-guest; do grep -q "^$m	$k	[0-9]" "$dir/throughput/times.tsv" || exit 1; done; done)'
}

# bench/fs in this L1 (run only when named): the same guest unpacks a tree,
# stats it, greps it, writes and reads a big file in a share served by
# smolvm's virtio-fs and by QEMU's 9p, RUNS boots each. FS_BENCH_DIRS
# folders of 100 files (default 20 here: a loaded L1 under TCG takes
# minutes per 2,000 files) and a FS_BENCH_MB file (default 64), the same
# for both; the medians and ratios go to fs-bench.txt. The guests' consoles
# go to RESULTS/fs-bench/ (the L1's watchdog sees them tick).
scenario_fs_bench() {
    local dir=$results/fs-bench bench
    bench=$(realpath "$(dirname "${BASH_SOURCE[0]}")/../../bench")
    mkdir -p "$dir"
    printf 'SMOLVM=%s\nKERNEL=%s\nINITRD=%s\nRUNS=%s\nFS_BENCH_MB=%s\n' "$real_smolvm" "$KERNEL" \
        "$INITRD" "${RUNS:-1}" "${FS_BENCH_MB:-64}" > "$dir/params.sh"
    python3 "$bench/fs/make-tree.py" "$dir/tree.tar" "${FS_BENCH_DIRS:-20}"
    TMPDIR=$work bash "$bench/fs/inside.sh" "$dir" > "$results/fs-bench.log" 2>&1
    rm -f "$dir/tree.tar"
    (
        # shellcheck source=../../bench/lib.sh
        . "$bench/lib.sh"
        echo "${FS_BENCH_DIRS:-20} folders of 100 files, a ${FS_BENCH_MB:-64} MiB file; $(uptime)"
        bench_report "$dir" s lower
    ) > "$results/fs-bench.txt" 2>&1
    expect fs-bench "all five steps timed for smolvm and QEMU (fs-bench.txt, fs-bench/console-*.log)" \
        eval '(for m in smolvm qemu-microvm; do for k in untar stat grep write read; do grep -q "^$m	$k	[0-9]" "$dir/times.tsv" || exit 1; done; done)'
    cat "$results/fs-bench.txt"
}

# bench/ram in this L1 (run only when named): the first touch of a guest's
# own RAM under smolvm and QEMU, RUNS boots of each (bench/ram/run says
# what it times and what mapping.tsv holds).
scenario_ram_bench() {
    local dir=$results/ram-bench bench
    bench=$(realpath "$(dirname "${BASH_SOURCE[0]}")/../../bench")
    mkdir -p "$dir"
    printf 'SMOLVM=%s\nKERNEL=%s\nINITRD=%s\nRUNS=%s\nRAM_BENCH_MB=%s\nKVMTOOL=%s\n' "$real_smolvm" \
        "$KERNEL" "$INITRD" "${RUNS:-3}" "${RAM_BENCH_MB:-128}" "${KVMTOOL:-}" > "$dir/params.sh"
    TMPDIR=$work bash "$bench/ram/inside.sh" "$dir" > "$results/ram-bench.log" 2>&1
    (
        # shellcheck source=../../bench/lib.sh
        . "$bench/lib.sh"
        echo "${RAM_BENCH_MB:-128} MiB filled; $(uptime)"
        bench_report "$dir" s lower
        column -t "$dir/mapping.tsv"
    ) > "$results/ram-bench.txt" 2>&1
    expect ram-bench "fill, read and refill timed for smolvm and QEMU (ram-bench.txt)" \
        eval '(for m in smolvm qemu-microvm; do for k in fill read refill; do grep -q "^$m	$k	[0-9]" "$dir/times.tsv" || exit 1; done; done)'
    cat "$results/ram-bench.txt"
}

# The guest's first touch of RAM it never touched costs the host one nested
# page fault per 2 MiB, not 512 (and, nested, the guest's vCPU each one):
# KVM maps it with 2 MiB entries, which it does only where the host backs
# it with a huge page at an address congruent with the guest's modulo
# 2 MiB (core/memory.c). KVM's own counts say how it mapped a 64 MiB fill
# (bench/ram/mapping.sh). Meanwhile the L1 gives huge pages only to who
# asks (THP "madvise", the kernel's default where it is not "always"):
# smolvm asks.
scenario_ram_huge_pages() {
    local thp=/sys/kernel/mm/transparent_hugepage/enabled mode before='' after='' huge small
    # shellcheck source=../../bench/ram/mapping.sh
    . "$(dirname "${BASH_SOURCE[0]}")/../../bench/ram/mapping.sh"
    mode=$(sed 's/.*\[\(.*\)\].*/\1/' "$thp")
    echo madvise > "$thp"
    background ramtouch run --kernel "$KERNEL" --initrd "$INITRD" --mem 512M \
        --cmdline "$GUEST_CMDLINE smolvm.test=ramtouch ramtouch.mb=64"
    wait_for ramtouch "RAMTOUCH-AT before" && before=$(ram_mapping "$bg_pid")
    wait_for ramtouch "RAMTOUCH-AT filled" && after=$(ram_mapping "$bg_pid")
    wait_for ramtouch RAMTOUCH-DONE
    finish ramtouch
    echo "$mode" > "$thp"
    huge=$(mapping_growth "$before" "$after" pages_2m)
    small=$(mapping_growth "$before" "$after" pages_4k 256)
    echo "ram-huge-pages: before: $before; after: $after" >> "$results/ramtouch.err"
    # 64 MiB of fresh pages: at least 16 new 2 MiB entries (32 MiB; the
    # rest may land in 2 MiB the boot touched), and more than in 4 KiB ones.
    expect ram-huge-pages "KVM maps the guest's 64 MiB fill with 2 MiB entries: ${huge:-?} new (at least 16), ${small:-?} MiB in 4 KiB ones (ramtouch.err)" \
        eval 'test "$huge" -ge 16 && test "$((huge * 2))" -gt "$small"'
}

# bench/api in this L1 (run only when named): a timer-driven guest (tick,
# a line every 20 ms; with a disk, which create --from needs to make
# layers of) saved into a bundle, then bench/api/measure: GET /machines
# latency with 100 machines, and POST .../start to the guest's first
# console byte against `smolvm start --detach`, RUNS (3) of each.
scenario_api_bench() {
    local bundle=$work/api-bench.smolmachine disk=$work/api-bench.ext4 bench
    bench=$(realpath "$(dirname "${BASH_SOURCE[0]}")/../../bench")
    mkfs.ext4 -q -F "$disk" 32M
    background api-bench-tick run --name api-bench-tick --mem 256M --kernel "$KERNEL" \
        --initrd "$INITRD" --disk "$disk" --cmdline "$GUEST_CMDLINE smolvm.test=tick"
    wait_for api-bench-tick "TICK 20"
    "$real_smolvm" save api-bench-tick -o "$bundle" > "$results/api-bench-save.out" 2>&1
    finish api-bench-tick
    TMPDIR=$work SMOLVM=$real_smolvm BUNDLE=$bundle RUNS=${RUNS:-3} REQUESTS=${REQUESTS:-300} \
        bash "$bench/api/measure" > "$results/api-bench.txt" 2> "$results/api-bench.err"
    cat "$results/api-bench.txt"
    expect api-bench "GET /machines latency and the API-vs-CLI start figures (api-bench.txt)" \
        eval 'grep -q "^GET /machines with" "$results/api-bench.txt" && grep -q "API adds" "$results/api-bench.txt"'
}

all_scenarios="boot_and_trace two_cpus reboot panic pvh serial_input virtio_disks
    cmdline_discovery virtio_console smp_io bad_inputs snapshot snapshot_counter first_start_served bundled_working_set
    first_start_corrupt_chunk compat_bundles instance_state detach power_button appliance instances bundle_refusals
    save_disk_consistent console_stalled readonly_home no_control_socket shares api vsock net tap
    migrate migrate_jailed seccomp jail guest_trace micro_kernel shares_two_vms shares_git_make
    ram_huge_pages boot_and_trace+jail"
# Benchmarks in the nested harness, run only when named in SCENARIOS (not
# part of the tier CI runs): jail_bench, jail_calls, jail_cpu, boot_bench, net_bench, migrate_bench,
# api_bench, fs_bench, coldstart_bench, ram_bench;
# and migrate_load (cuts at three points, a dirtying guest; needs the test
# build's cut hook) and migrate_layers, also only when named.
# What is to run and what has run (tests/nested/run gives a wedged L1's
# unfinished scenarios another one).
echo ${SCENARIOS:-$all_scenarios} > "$results/todo"
# The time each scenario took and the scratch space it leaves (a full tier
# once ran out of it).
for s in ${SCENARIOS:-$all_scenarios}; do
    scenario_started=$SECONDS
    case $s in
    *+jail) use_jail yes; "scenario_${s%+jail}"; use_jail "${SMOLVM_TEST_JAIL:+yes}" ;;
    *) "scenario_$s" ;;
    esac
    echo "$s" >> "$results/done"
    echo "$s: $((SECONDS - scenario_started)) s; $(du -sm "$work" 2>/dev/null | cut -f1) MB in $work; $(df -m "$work" | awk 'NR == 2 { print $4 }') MB free" \
        >> "$results/space.log"
    # Bundles' memory caches are RAM-sized and only refilled when dropped:
    # the next scenario unpacks what it starts again.
    rm -rf "${XDG_CACHE_HOME:-$HOME/.cache}/smolvm/memory"
done
rm -rf "$work"
