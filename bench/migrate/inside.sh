#!/bin/bash
# Runs inside a KVM host (the L1 guest, or directly): the counter guest
# (MIGRATE_MEM of RAM, a 32 MiB ext4 disk, 2 vCPUs) migrated from process
# to process over loopback TCP, idle and dirtying (smolvm.test=dirtier: up
# to 64 MiB/s of RAM and its disk written without pause), by smolvm (warm
# and live) and by QEMU -M microvm (its live migration, same kernel,
# initrd and guest; the disk shared, QEMU does not send it). Writes
# RESULTS/times.tsv ("vmm<TAB>metric<TAB>ms"): total (the call to the
# destination running, as each VMM measures it), downtime (as each
# measures it) and the console gap (last count printed on the source to
# first on the destination).
# usage: inside.sh RESULTS_DIR   (RESULTS_DIR/params.sh as for the nested tier)
set -u
results=$1
# shellcheck source=/dev/null
. "$results/params.sh"
RUNS=${RUNS:-3}
MIGRATE_MEM=${MIGRATE_MEM:-1G}
work=$(mktemp -d "${TMPDIR:-/tmp}/smolvm-bench-migrate.XXXXXX")
export XDG_RUNTIME_DIR=$work/run XDG_DATA_HOME=$work/data XDG_CACHE_HOME=$work/cache
mkdir -m 0700 -p "$XDG_RUNTIME_DIR" "$XDG_DATA_HOME" "$XDG_CACHE_HOME"
out=$results/times.tsv
: > "$out"
record() { echo -e "$1\t$2\t$3" | tee -a "$out"; }

# stamped NAME COMMAND...: COMMAND's output, each line prefixed with the
# wall clock in microseconds, into $work/NAME.out; stdin held by a fifo.
stamped() {
    local name=$1
    shift
    mkfifo "$work/$name.in"
    ("$@" < "$work/$name.in" 2> "$work/$name.err" | while IFS= read -r line; do
        echo "${EPOCHREALTIME/./} $line"
    done > "$work/$name.out") &
    sleep 0.2
    exec {hold}> "$work/$name.in"
    eval "hold_$name=$hold"
}
# listening PORT: until something listens on 127.0.0.1:PORT (at most 60 s;
# a process starting in a loaded L1 may take seconds)
listening() {
    local hex
    hex=$(printf '%04X' "$1")
    for _ in $(seq 1 300); do
        grep -q ":$hex 00000000:0000 0A" /proc/net/tcp && return 0
        sleep 0.2
    done
    return 1
}
count_time() { # count_time NAME first|last: the stamp of that COUNT line
    if [ "$2" = first ]; then grep -a ' COUNT ' "$work/$1.out" | head -n 1
    else grep -a ' COUNT ' "$work/$1.out" | tail -n 1; fi | cut -d' ' -f1
}
wait_for() { # wait_for NAME TEXT: until a line with TEXT (at most 300 s)
    for _ in $(seq 1 1500); do grep -q -a "$2" "$work/$1.out" 2>/dev/null && return 0; sleep 0.2; done
    return 1
}
console_gap() { # console_gap FROM TO: ms from FROM's last count to TO's first
    echo $((($(count_time "$2" first) - $(count_time "$1" last)) / 1000))
}
# settle NAME MODE: running long enough to be idle, or dirtying
settle() {
    wait_for "$1" ' COUNT '
    if [ "$2" = dirtier ]; then
        for _ in $(seq 1 150); do [ "$(grep -c DIRTIED "$work/$1.out")" -ge 3 ] && return; sleep 0.2; done
    else
        sleep 5
    fi
}

ip link set lo up 2>/dev/null || busybox ip link set lo up 2>/dev/null
field() { sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p" "$2" | head -n 1; }
port=47100

# smolvm: idle, warm and live in turn; dirtying, live.
for mode in counter dirtier; do
    kind=idle migrations=$((2 * RUNS))
    [ "$mode" = dirtier ] && kind=dirty migrations=$RUNS
    rm -f "$work/disk.ext4"
    mkfs.ext4 -q -F "$work/disk.ext4" 32M
    from="s$mode-0"
    stamped "$from" "$SMOLVM" run --name "$from" --cpus 2 --mem "$MIGRATE_MEM" --console virtio \
        --kernel "$KERNEL" --initrd "$INITRD" --disk "$work/disk.ext4" \
        --cmdline "console=ttyS0 quiet smolvm.test=$mode"
    settle "$from" "$mode"
    for i in $(seq 1 "$migrations"); do
        to="s$mode-$i" how=live flags=--live port=$((port + 1))
        [ "$mode" = counter ] && [ $((i % 2)) = 1 ] && how=warm flags=
        stamped "$to" "$SMOLVM" receive --listen "tcp:127.0.0.1:$port" --name "$to"
        listening "$port"
        # shellcheck disable=SC2086
        "$SMOLVM" migrate "$from" --to "tcp:127.0.0.1:$port" $flags --json > "$work/$to.json" ||
            { cat "$work/$to.json" "$work/$to.err"; break; }
        wait_for "$to" ' COUNT '
        record smolvm "total-$kind-$how" "$(field seconds "$work/$to.json" | awk '{printf "%d", $1 * 1000}')"
        record smolvm "downtime-$kind-$how" "$(field downtime_ms "$work/$to.json" | awk '{printf "%d", $1}')"
        record smolvm "gap-$kind-$how" "$(console_gap "$from" "$to")"
        cat "$work/$to.json" >> "$results/migrations.json"
        from=$to
        settle "$from" "$mode"
    done
    "$SMOLVM" stop "$from" --force > /dev/null 2>&1
done

# qmp PORT COMMAND...: each command's answer (events skipped), one QMP
# session over bash's /dev/tcp.
qmp() {
    local q line
    listening "$1" && exec {q}<> "/dev/tcp/127.0.0.1/$1" || return 1
    shift
    read -r -t 10 line <&"$q"
    for c in '{"execute":"qmp_capabilities"}' "$@"; do
        echo "$c" >&"$q"
        while read -r -t 30 line <&"$q"; do
            case $line in *'"event"'*) continue ;; esac
            echo "$line"
            break
        done
    done
    exec {q}>&-
}
# qemu NAME QMP_PORT MODE [args]: QEMU -M microvm running the guest
qemu() {
    local name=$1 qport=$2 mode=$3
    shift 3
    stamped "$name" qemu-system-x86_64 -M microvm -accel kvm -cpu host -m "$MIGRATE_MEM" -smp 2 \
        -nodefaults -no-user-config -nographic -serial stdio \
        -kernel "$KERNEL" -initrd "$INITRD" -append "console=ttyS0 quiet smolvm.test=$mode" \
        -drive id=d0,file="$work/disk.ext4",format=raw,if=none \
        -device virtio-blk-device,drive=d0 -qmp "tcp:127.0.0.1:$qport,server=on,wait=off" "$@"
    sleep 1
}

# QEMU: idle and dirtying, live (its only kind), 300 ms downtime as smolvm's default.
qport=47200
for mode in counter dirtier; do
    kind=idle
    [ "$mode" = dirtier ] && kind=dirty
    rm -f "$work/disk.ext4"
    mkfs.ext4 -q -F "$work/disk.ext4" 32M
    from="q$mode-0" from_port=$((qport += 1))
    qemu "$from" "$from_port" "$mode"
    settle "$from" "$mode"
    for i in $(seq 1 "$RUNS"); do
        to="q$mode-$i" to_port=$((qport += 1)) port=$((port + 1))
        qemu "$to" "$to_port" "$mode" -incoming "tcp:127.0.0.1:$port"
        listening "$port"
        # auto-converge as smolvm's; QEMU's own bandwidth cap lifted (smolvm has none)
        qmp "$from_port" '{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"auto-converge","state":true}]}}' \
            '{"execute":"migrate-set-parameters","arguments":{"downtime-limit":300,"max-bandwidth":10737418240}}' \
            "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"tcp:127.0.0.1:$port\"}}" > "$work/$to.qmp"
        for _ in $(seq 1 600); do
            qmp "$from_port" '{"execute":"query-migrate"}' | tail -n 1 > "$work/$to.json"
            grep -q '"status": *"\(completed\|failed\|cancelled\)"' "$work/$to.json" && break
            sleep 0.2
        done
        cat "$work/$to.json" >> "$results/qemu-migrations.json"
        grep -q '"status": *"completed"' "$work/$to.json" ||
            { cat "$work/$to.qmp" "$work/$to.json"; qmp "$from_port" '{"execute":"migrate_cancel"}'; break; }
        qmp "$from_port" '{"execute":"quit"}' > /dev/null
        wait_for "$to" ' COUNT '
        record qemu-microvm "total-$kind-live" "$(sed -n 's/.*"total-time": *\([0-9]*\).*/\1/p' "$work/$to.json")"
        record qemu-microvm "downtime-$kind-live" "$(sed -n 's/.*"downtime": *\([0-9]*\).*/\1/p' "$work/$to.json")"
        record qemu-microvm "gap-$kind-live" "$(console_gap "$from" "$to")"
        from=$to from_port=$to_port
        settle "$from" "$mode"
    done
    qmp "$from_port" '{"execute":"quit"}' > /dev/null
done
grep -a DIRTIED "$work"/*.out > "$results/dirtied.txt" 2>/dev/null
sleep 1
rm -rf "$work"
