#!/bin/bash
# Runs inside a KVM host (the L1 guest, or directly): one guest (Debian
# kernel, the nested tier's initrd, MIGRATE_MEM of RAM, 1 vCPU, the serial
# console, no disk) counting on its console every 10 ms (guest mode tick),
# idle and dirtying (a 64 MiB buffer rewritten with bytes that are not
# zeros, then 1 s of sleep: at most 64 MiB/s), migrated live from process
# to process over loopback TCP by smolvm and by QEMU -M microvm, both under
# the same bandwidth cap (MIGRATE_CAP, default 100M = 104857600 bytes/s),
# downtime limit (300 ms) and auto-converge.
# Writes RESULTS/times.tsv ("vmm<TAB>metric<TAB>ms"), for each kind (idle,
# dirty):
#   total-K      the migration's length as the VMM reports it (smolvm
#                --json "seconds", QEMU query-migrate "total-time"; both
#                end at the hand-over, smolvm's source teardown after it is
#                "wind_down_ms")
#   downtime-K   the pause as the VMM reports it (downtime_ms, "downtime")
#   gap-K        the user's downtime: the largest gap between two counts,
#                the source's and the destination's console lines merged,
#                from the migrate command to 1 s after the first count on
#                the destination (a vCPU throttled or a page fault there
#                shows here too)
#   user-total-K the migrate command (smolvm migrate launched; QEMU's QMP
#                migrate sent) to the destination's first count
#   period-K     the median gap between counts in the 3 s before it (the
#                guest's own pace under this hypervisor: gap's floor)
#   to-pause-K   (smolvm) the gap's parts around the pause: the source's
#   after-done-K last count to the pause (--json "paused_at_unix_ms"), and
#                the pause's end (DONE: that + "downtime_ms") to the
#                destination's first count; the destination's own split of
#                the latter (GO to its vCPU's entry and its first console
#                byte) is in the log, as each receiver ends
# Each console line is stamped by the host as it comes out (bash's clock).
# The log also says where each smolvm migration's time went, on the
# source (--json "stats_ms") and the destination ($SMOLVM_MIGRATE_STATS).
# usage: inside.sh RESULTS_DIR   (RESULTS_DIR/params.sh as for the nested tier)
set -u
results=$1
# shellcheck source=/dev/null
. "$results/params.sh"
RUNS=${RUNS:-3}
MIGRATE_MEM=${MIGRATE_MEM:-1G}
MIGRATE_CAP=${MIGRATE_CAP:-100M}
DOWNTIME_MS=300
cap_bytes=$(numfmt --from=iec "$MIGRATE_CAP")
work=$(mktemp -d "${TMPDIR:-/tmp}/smolvm-bench-migrate.XXXXXX")
export XDG_RUNTIME_DIR=$work/run XDG_DATA_HOME=$work/data XDG_CACHE_HOME=$work/cache
mkdir -m 0700 -p "$XDG_RUNTIME_DIR" "$XDG_DATA_HOME" "$XDG_CACHE_HOME"
out=$results/times.tsv
: > "$out"
record() { echo -e "$1\t$2\t$3" | tee -a "$out"; }
cmdline() { echo "console=ttyS0 panic=-1 quiet smolvm.test=tick smolvm.tick_ms=10${1:+ smolvm.dirty_mib=$1}"; }
echo "load at start: $(cat /proc/loadavg); $(nproc) CPUs; cap $MIGRATE_CAP ($cap_bytes bytes/s), downtime limit $DOWNTIME_MS ms, RAM $MIGRATE_MEM"

# stamped NAME COMMAND...: COMMAND's output, each line prefixed with the
# wall clock in microseconds, into $work/NAME.out; stdin held by a fifo.
stamped() {
    local name=$1
    shift
    mkfifo "$work/$name.in"
    ("$@" < "$work/$name.in" 2> "$work/$name.err" | while IFS= read -r line; do
        echo "${EPOCHREALTIME/./} ${line%$'\r'}" # a serial tty ends its lines \r\n
    done > "$work/$name.out") &
    sleep 0.2
    exec {hold}> "$work/$name.in" # held open (never closed) for the run
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
ticks() { grep -a '^[0-9]* TICK [0-9]*$' "$work/$1.out"; } # ticks NAME: "stamp TICK n" lines
first_tick() { ticks "$1" | head -n 1 | cut -d' ' -f1; }
wait_for() { # wait_for NAME TEXT: until a line with TEXT (at most 300 s)
    for _ in $(seq 1 1500); do grep -q -a "$2" "$work/$1.out" 2>/dev/null && return 0; sleep 0.2; done
    return 1
}
# settle NAME MODE: running long enough to be idle, or dirtying
settle() {
    wait_for "$1" ' TICK '
    if [ "$2" = dirty ]; then
        for _ in $(seq 1 300); do [ "$(grep -c DIRTIED "$work/$1.out")" -ge 3 ] && return; sleep 0.2; done
    else
        sleep 5
    fi
}
# measure VMM KIND FROM TO T0: the user's figures of one migration from
# FROM to TO that began at T0 (µs), once TO counts
measure() {
    local vmm=$1 kind=$2 from=$3 to=$4 t0=$5 first gap
    wait_for "$to" ' TICK ' || { echo "$to never counted"; return 1; }
    sleep 1.2
    first=$(first_tick "$to")
    record "$vmm" "user-total-$kind" $(((first - t0) / 1000))
    # Each count tagged with its console (source, destination): where the
    # largest gap lies goes to the log.
    gap=$({ ticks "$from" | sed 's/$/ source/'; ticks "$to" | sed 's/$/ destination/'; } |
        awk -v a="$t0" -v b=$((first + 1000000)) '$1 >= a && $1 <= b' | sort -n |
        awk 'NR > 1 && $1 - p > m { m = $1 - p; at = pn " on the " pc " to " $3 " on the " $4 }
            { p = $1; pn = $3; pc = $4 } END { printf "%d (count %s)", m / 1000, at }')
    record "$vmm" "gap-$kind" "${gap%% *}"
    echo "$to: the largest gap, ${gap#* }, from the migrate command on"
    record "$vmm" "period-$kind" "$(ticks "$from" | awk -v a=$((t0 - 3000000)) -v b="$t0" \
        '$1 >= a && $1 < b { if (p) print $1 - p; p = $1 }' | sort -n |
        awk '{ v[NR] = $1 } END { printf "%d", v[int((NR + 1) / 2)] / 1000 }')"
    echo "$to: the source's last count $(ticks "$from" | tail -n 1 | cut -d' ' -f3), the destination's first $(ticks "$to" | head -n 1 | cut -d' ' -f3)"
}

# huge_pages_of NAME: how much of receiver NAME's resident memory lies in
# huge pages (its guest's RAM in 4 KiB pages costs the guest a nested page
# fault per page it touches after the hand-over)
huge_pages_of() {
    local p
    for p in /proc/[0-9]*; do
        case "$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)" in
        *" receive "*"--name $1 "*)
            awk '/^Rss:/ { r = $2 } /^AnonHugePages:/ { h = $2 } END { printf "%d of %d kB", h, r }' \
                "$p/smaps_rollup" 2>/dev/null ;;
        esac
    done
}

# split_gap KIND FROM TO: the gap's parts outside smolvm's pause (to-pause,
# after-done above), from the stamps of FROM's last count before the pause
# and TO's first count
split_gap() {
    local paused down last first
    # µs, as the stamps (%.0f: a 32-bit awk's %d stops at 2^31)
    paused=$(field paused_at_unix_ms "$work/$3.json" | awk '{printf "%.0f", $1 * 1000}')
    down=$(field downtime_ms "$work/$3.json" | awk '{printf "%.0f", $1 * 1000}')
    [ -n "$paused" ] && [ -n "$down" ] || return 0
    last=$(ticks "$2" | awk -v p="$paused" '$1 <= p { l = $1 } END { printf "%.0f", l }')
    first=$(first_tick "$3")
    record smolvm "to-pause-$1" $(((paused - last) / 1000))
    record smolvm "after-done-$1" $(((first - paused - down) / 1000))
}

ip link set lo up 2>/dev/null || busybox ip link set lo up 2>/dev/null
field() { sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p" "$2" | head -n 1; }
port=47100

for kind in idle dirty; do
    dirty=
    [ "$kind" = dirty ] && dirty=64
    from="s$kind-0"
    stamped "$from" "$SMOLVM" run --name "$from" --cpus 1 --mem "$MIGRATE_MEM" \
        --kernel "$KERNEL" --initrd "$INITRD" --cmdline "$(cmdline $dirty)"
    settle "$from" "$kind"
    for i in $(seq 1 "$RUNS"); do
        to="s$kind-$i" port=$((port + 1))
        stamped "$to" env SMOLVM_MIGRATE_STATS=1 "$SMOLVM" receive --listen "tcp:127.0.0.1:$port" --name "$to"
        listening "$port"
        t0=${EPOCHREALTIME/./}
        "$SMOLVM" migrate "$from" --to "tcp:127.0.0.1:$port" --live --max-bandwidth "$cap_bytes" \
            --max-downtime "$DOWNTIME_MS" --json > "$work/$to.json" ||
            { cat "$work/$to.json" "$work/$to.err"; break; }
        measure smolvm "$kind" "$from" "$to" "$t0" || break
        echo "$to: in huge pages: $(huge_pages_of "$to")"
        record smolvm "total-$kind" "$(field seconds "$work/$to.json" | awk '{printf "%d", $1 * 1000}')"
        record smolvm "downtime-$kind" "$(field downtime_ms "$work/$to.json" | awk '{printf "%d", $1}')"
        split_gap "$kind" "$from" "$to"
        cat "$work/$to.json" >> "$results/migrations.json"
        # where the time went: the source's (its --json "stats_ms"), the destination's
        echo "$to: $(grep -o '"stats_ms":{[^}]*}' "$work/$to.json")"
        grep -a 'smolvm: receive:' "$work/$to.err" | sed "s/^/$to: /"
        from=$to
        settle "$from" "$kind"
    done
    "$SMOLVM" stop "$from" --force > /dev/null 2>&1
done
# each receiver's own account of its start, once it ended (migrated on)
grep -a 'after the hand-over' "$work"/s*-[0-9]*.err 2>/dev/null | sed "s|^$work/||"

# qmp PORT COMMAND...: each command's answer (events skipped), one QMP
# session over bash's /dev/tcp; qmp_sent: when the last command went (µs).
qmp() {
    local q line
    listening "$1" && exec {q}<> "/dev/tcp/127.0.0.1/$1" || return 1
    shift
    read -r -t 10 line <&"$q"
    for c in '{"execute":"qmp_capabilities"}' "$@"; do
        qmp_sent=${EPOCHREALTIME/./}
        echo "$c" >&"$q"
        while read -r -t 30 line <&"$q"; do
            case $line in *'"event"'*) continue ;; esac
            echo "$line"
            break
        done
    done
    exec {q}>&-
}
# qemu NAME QMP_PORT DIRTY_MIB [args]: QEMU -M microvm running the guest
qemu() {
    local name=$1 qport=$2 dirty=$3
    shift 3
    stamped "$name" qemu-system-x86_64 -M microvm -accel kvm -cpu host -m "$MIGRATE_MEM" -smp 1 \
        -nodefaults -no-user-config -nographic -serial stdio \
        -kernel "$KERNEL" -initrd "$INITRD" -append "$(cmdline "$dirty")" \
        -qmp "tcp:127.0.0.1:$qport,server=on,wait=off" "$@"
    sleep 1
}

qport=47200
for kind in idle dirty; do
    dirty=
    [ "$kind" = dirty ] && dirty=64
    from="q$kind-0" from_port=$((qport += 1))
    qemu "$from" "$from_port" "$dirty"
    settle "$from" "$kind"
    for i in $(seq 1 "$RUNS"); do
        to="q$kind-$i" to_port=$((qport += 1)) port=$((port + 1))
        qemu "$to" "$to_port" "$dirty" -incoming "tcp:127.0.0.1:$port"
        listening "$port"
        qmp "$from_port" '{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"auto-converge","state":true}]}}' \
            "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"downtime-limit\":$DOWNTIME_MS,\"max-bandwidth\":$cap_bytes}}" \
            > "$work/$to.qmp"
        qmp "$from_port" "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"tcp:127.0.0.1:$port\"}}" >> "$work/$to.qmp"
        t0=$qmp_sent
        measure qemu-microvm "$kind" "$from" "$to" "$t0" || { qmp "$from_port" '{"execute":"migrate_cancel"}'; break; }
        for _ in $(seq 1 150); do
            qmp "$from_port" '{"execute":"query-migrate"}' | tail -n 1 > "$work/$to.json"
            grep -q '"status": *"\(completed\|failed\|cancelled\)"' "$work/$to.json" && break
            sleep 0.2
        done
        cat "$work/$to.json" >> "$results/qemu-migrations.json"
        grep -q '"status": *"completed"' "$work/$to.json" || { cat "$work/$to.qmp" "$work/$to.json"; break; }
        qmp "$from_port" '{"execute":"quit"}' > /dev/null
        record qemu-microvm "total-$kind" "$(sed -n 's/.*"total-time": *\([0-9]*\).*/\1/p' "$work/$to.json")"
        record qemu-microvm "downtime-$kind" "$(sed -n 's/.*"downtime": *\([0-9]*\).*/\1/p' "$work/$to.json")"
        from=$to from_port=$to_port
        settle "$from" "$kind"
    done
    qmp "$from_port" '{"execute":"quit"}' > /dev/null
done
grep -a DIRTIED "$work"/*.out > "$results/dirtied.txt" 2>/dev/null
echo "load at end: $(cat /proc/loadavg)"
sleep 1
rm -rf "$work"
