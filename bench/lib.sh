# Shared by the benchmarks: build, describe the guest, run a script where
# KVM works (directly, or inside one nested-KVM L1), report medians.
# shellcheck shell=bash
bench_repo=$(realpath "$(dirname "${BASH_SOURCE[0]}")/..")

# bench_prepare DEFAULT_RUNS: prints a results dir holding params.sh.
bench_prepare() {
    local results kver
    "$bench_repo/tools/deps.sh"
    "$bench_repo/tools/build.sh"
    kver=$(ls /lib/modules | sort -V | tail -n 1)
    results=$(mktemp -d "${TMPDIR:-/tmp}/smolvm-bench.XXXXXX")
    {
        echo "SMOLVM=$bench_repo/build/smolvm"
        echo "KERNEL=/boot/vmlinuz-$kver"
        echo "INITRD=$("$bench_repo/tests/nested/guest-initrd.sh" initrd)"
        echo "INITRD_MICRO=$("$bench_repo/tests/nested/guest-initrd.sh" initrd-micro)"
        echo "RUNS=${RUNS:-$1}"
        [ -z "${MEMS:-}" ] || echo "MEMS=\"$MEMS\""
        [ -z "${SMOLVM_BASELINE:-}" ] || echo "SMOLVM_BASELINE=$(realpath "$SMOLVM_BASELINE")"
        [ -z "${MICRO_KERNEL_VARIANT:-}" ] ||
            echo "MICRO_KERNEL_VARIANT=$(realpath "$MICRO_KERNEL_VARIANT")"
    } > "$results/params.sh"
    echo "$results"
}

# bench_inside SCRIPT RESULTS
bench_inside() {
    if [ -c /dev/kvm ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then
        bash "$1" "$2"
    else
        echo "bench: no hardware KVM here; measuring inside one nested-KVM L1 guest" >&2
        "$bench_repo/tests/nested/l1.sh" "$1" "$2" > "$2/l1-console.log" 2>&1 || true
        cat "$2/l1.log"
    fi
}

# bench_ms_to VAR MARKER COMMAND...: sets VAR to the milliseconds from
# launching COMMAND until a line with MARKER comes out of it (stdout and
# stderr, also appended to $BENCH_LOG when set), or to "timeout" (no
# MARKER; no line for 300 s: COMMAND is killed). With BENCH_KILL_AT_MARKER
# set, COMMAND is killed once MARKER is out (a guest that would wait for
# input it missed; BENCH_KILL_SIGNAL, default 9: TERM lets smolvm stop
# the guest and print its trace). COMMAND reads this function's stdin. Only
# COMMAND is launched in the measured span (no `timeout` wrapper), and the
# clock is bash's own: a fork and exec cost tens of ms in a nested L1, and
# that would be in every figure.
bench_ms_to() {
    # Prefixed locals: VAR, set by name at the end, must not be one of them.
    local _bms_var=$1 _bms_marker=$2 _bms_start _bms_line _bms_ms= _bms_pid _bms_fd _bms_rc=0
    shift 2
    _bms_start=${EPOCHREALTIME/./}
    exec {_bms_fd}< <(exec "$@" 2>&1)
    _bms_pid=$!
    while IFS= read -r -t 300 -u "$_bms_fd" _bms_line || { _bms_rc=$?; false; }; do
        if [ -z "$_bms_ms" ] && [[ $_bms_line == *"$_bms_marker"* ]]; then
            _bms_ms=$(((${EPOCHREALTIME/./} - _bms_start) / 1000))
            [ -z "${BENCH_KILL_AT_MARKER:-}" ] || _bms_rc=255
        fi
        [ -z "${BENCH_LOG:-}" ] || printf '%s\n' "$_bms_line" >> "$BENCH_LOG"
        [ "$_bms_rc" = 0 ] || break
    done
    [ "$_bms_rc" -gt 128 ] && kill -"${BENCH_KILL_SIGNAL:-9}" "$_bms_pid" 2>/dev/null
    # What it prints as it ends goes to the log too (a start stopped by
    # SIGTERM at its marker prints its --trace-boot split then; one killed
    # prints nothing, and a child of it could hold the pipe open).
    if [ -n "${BENCH_LOG:-}" ] && [ "$_bms_rc" = 255 ] && [ "${BENCH_KILL_SIGNAL:-9}" != 9 ]; then
        while IFS= read -r -t 30 -u "$_bms_fd" _bms_line; do
            printf '%s\n' "$_bms_line" >> "$BENCH_LOG"
        done
    fi
    exec {_bms_fd}<&-
    wait "$_bms_pid" 2>/dev/null
    printf -v "$_bms_var" '%s' "${_bms_ms:-timeout}"
}

# bench_settle: returns once the machine has been idle (>= 90% of a quarter
# second) or after 5 s. In boot_bench, of two near-identical smolvm
# binaries booted one after the other, whichever went first in a round was
# the faster in all 10 rounds: likely the first VM's teardown (the kernel
# freeing its memory, some of it deferred) still running on the L1's one
# CPU. Timed runs start from a settled machine instead.
bench_settle() {
    local _bs_try _bs_a _bs_b
    for _bs_try in $(seq 1 20); do
        _bs_a=$(awk '/^cpu /{ print $2 + $3 + $4 + $5 + $6 + $7 + $8, $5 + $6 }' /proc/stat)
        sleep 0.25
        _bs_b=$(awk '/^cpu /{ print $2 + $3 + $4 + $5 + $6 + $7 + $8, $5 + $6 }' /proc/stat)
        awk -v a="$_bs_a" -v b="$_bs_b" 'BEGIN { split(a, x, " "); split(b, y, " ")
            exit !(y[1] > x[1] && (y[2] - x[2]) >= 0.9 * (y[1] - x[1])) }' && return 0
    done
    return 0
}

# An awk function for the programs here: the median of a space-separated list.
# shellcheck disable=SC2016
BENCH_MEDIAN_AWK='
    function median(list,   a, k, i, j, t) {
        k = split(list, a, " ")
        for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++)
            if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
        return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
    }'
export BENCH_MEDIAN_AWK

# bench_report RESULTS UNIT BETTER: RESULTS/times.tsv holds "vmm<TAB>metric<TAB>value"
# lines; prints each metric's medians and the smolvm/qemu-microvm ratio.
# BETTER is "lower" (times) or "higher" (throughput), for the reader.
bench_report() {
    local tsv=$1/times.tsv unit=$2 better=$3 metric
    for metric in $(cut -f2 "$tsv" | sort -u); do
        awk -F'\t' -v m="$metric" -v unit="$unit" -v better="$better" "$BENCH_MEDIAN_AWK"'
            $2 == m && $3 ~ /^[0-9.]+$/ { v[$1] = v[$1] " " $3; n[$1]++ }
            END {
                s = median(v["smolvm"]); q = median(v["qemu-microvm"])
                printf "%-14s smolvm %9.1f %s   qemu-microvm %9.1f %s", m, s, unit, q, unit
                if (q > 0) printf "   ratio smolvm/qemu %.2f (%s is better)", s / q, better
                printf "\n   smolvm:%s\n   qemu-microvm:%s\n", v["smolvm"], v["qemu-microvm"]
            }' "$tsv"
    done
}
