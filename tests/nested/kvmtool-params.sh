#!/bin/bash
# kvmtool as the boot benchmark's third VMM on the micro kernel: prints the
# params.sh lines for it. kvmtool (KVMTOOL: an lkvm binary, built outside
# the clone: bench/boot/kvmtool-build.sh) boots only a bzImage, and the
# micro kernel's build keeps its vmlinux (smolvm and QEMU boot it through
# its PVH entry): the same vmlinux, byte for byte, is wrapped here into a
# bzImage by the kernel source's own boot code (its setup and gzip
# decompressor; nothing recompiled but those), cached in SMOLVM_CACHE by
# the vmlinux's hash. Runs on the host before the L1 (the tree is read-only
# there). Prints KVMTOOL= and MICRO_BZIMAGE=, or KVMTOOL_SKIPPED='why'.
#
# usage: kvmtool-params.sh MICRO_VMLINUX   (its configuration beside it, as
#        smolvm kernel build keeps it)
# env:   KVMTOOL, SMOLVM_CACHE (default ~/.cache/smolvm-ci)
set -euo pipefail
vmlinux=$1
cache=${SMOLVM_CACHE:-$HOME/.cache/smolvm-ci}

skip() {
    printf 'KVMTOOL_SKIPPED=%q\n' "$*"
    exit 0
}

# wrap VMLINUX OUT: OUT is VMLINUX as a bzImage (the build's lines to stderr).
wrap() {
    local source_tar work banner
    source_tar=$(ls /usr/src/linux-source-*.tar.xz | sort -V | tail -n 1)
    work=$(mktemp -d "${TMPDIR:-/tmp}/micro-bzimage.XXXXXX")
    trap 'rm -rf "$work"' RETURN
    tar -xJf "$source_tar" -C "$work" --strip-components=1
    cp "$(dirname "$1")/config" "$work/.config"
    make -C "$work" olddefconfig
    make -C "$work" -j"$(nproc)" prepare
    # The decompressor's sources want two files of the full build: the CPU
    # feature names, and the version string (the vmlinux's own, so that
    # the bzImage's header names the same build).
    make -C "$work" arch/x86/kernel/cpu/capflags.o
    banner=$(LC_ALL=C grep -a -o -m1 'Linux version [^[:cntrl:]]*) #[0-9][^[:cntrl:]]*' "$1") ||
        { echo "kvmtool-params: no version banner in $1" >&2; return 1; }
    printf '#define UTS_VERSION "%s"\n' "${banner##*) }" > "$work/include/generated/utsversion.h"
    cp "$1" "$work/vmlinux"
    # -o vmlinux: taken as built (not relinked from objects that are not there).
    make -C "$work" -j"$(nproc)" -o vmlinux bzImage
    cmp "$1" "$work/vmlinux"
    cp "$work/arch/x86/boot/bzImage" "$2.tmp"
    mv "$2.tmp" "$2"
}

[ -n "${KVMTOOL:-}" ] || skip "KVMTOOL is not set (an lkvm binary: bench/boot/kvmtool-build.sh builds one)"
[ -x "$KVMTOOL" ] || skip "KVMTOOL=$KVMTOOL is not an executable"
if [ ! -s "$vmlinux" ] || [ ! -s "$(dirname "$vmlinux")/config" ]; then
    skip "no micro kernel (vmlinux and its config) at '$vmlinux'"
fi
key=$(cat "$vmlinux" "$0" | sha256sum | cut -c1-16)
out=$cache/micro-bzimage-$key.bzImage
log=$cache/micro-bzimage-$key.log
if [ ! -s "$out" ]; then
    mkdir -p "$cache"
    # (set -e inside: a condition's || or ! would switch it off in wrap.)
    set +e
    (set -e; renice -n 10 -p "$BASHPID" > /dev/null; wrap "$vmlinux" "$out") > "$log" 2>&1
    wrapped=$?
    set -e
    [ "$wrapped" = 0 ] || skip "wrapping the micro kernel into a bzImage failed (see $log)"
fi
echo "KVMTOOL=$(realpath "$KVMTOOL")"
echo "MICRO_BZIMAGE=$out"
