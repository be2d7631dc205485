# shellcheck shell=bash
# Shared by bench/coldstart's probes (sourced, after params.sh and
# ../lib.sh): a work folder for bundles and caches (PROBE_WORK, XDG_*
# inside it), a stdin that never gives a line held open on fd 8
# ($PROBE_WORK/quiet), and probe_save_at.
PROBE_WORK=$(mktemp -d "${TMPDIR:-/tmp}/smolvm-probe.XXXXXX")
export XDG_RUNTIME_DIR=$PROBE_WORK/run XDG_DATA_HOME=$PROBE_WORK/data XDG_CACHE_HOME=$PROBE_WORK/cache
mkdir -m 0700 -p "$XDG_RUNTIME_DIR" "$XDG_DATA_HOME" "$XDG_CACHE_HOME"
mkfifo "$PROBE_WORK/quiet"
exec 8<> "$PROBE_WORK/quiet"

# probe_save_at BUNDLE TEST MARKER: boots the test guest TEST (256 MiB, its
# console input never comes), waits for MARKER and a second more, saves.
probe_save_at() {
    local fifo=$PROBE_WORK/fifo log=$PROBE_WORK/boot.log pid
    rm -f "$fifo"
    mkfifo "$fifo"
    "$SMOLVM" run --name probe --mem 256M --kernel "$KERNEL" --initrd "$INITRD" \
        --cmdline "console=ttyS0 quiet panic=-1 smolvm.test=$2" < "$fifo" > "$log" 2>&1 &
    pid=$!
    exec 7> "$fifo"
    for _ in $(seq 1 300); do grep -q "$3" "$log" && break; sleep 0.5; done
    sleep 1
    "$SMOLVM" save probe -o "$1" > /dev/null
    timeout 60 tail --pid="$pid" -f /dev/null
    wait "$pid"
    exec 7>&-
}

# probe_done: the work folder removed.
probe_done() {
    exec 8>&-
    rm -rf "$PROBE_WORK"
}
