#!/bin/bash
# Builds kvmtool's lkvm for the boot benchmark (KVMTOOL=...) from a kvmtool
# git clone, once per commit: cached in SMOLVM_CACHE/kvmtool-COMMIT/lkvm
# (outside this clone, which the L1 sees read-only; no code of kvmtool's
# comes into smolvm). kvmtool is not packaged in Debian 12. x86 needs no
# libfdt; zlib (zlib1g-dev) is used when there, the rest is optional.
# Prints the lkvm's path.
#
# usage: bench/boot/kvmtool-build.sh KVMTOOL_CLONE
#        (git clone https://git.kernel.org/pub/scm/linux/kernel/git/will/kvmtool.git)
# env:   SMOLVM_CACHE (default ~/.cache/smolvm-ci)
set -euo pipefail
clone=$1
cache=${SMOLVM_CACHE:-$HOME/.cache/smolvm-ci}
commit=$(git -C "$clone" rev-parse HEAD)
out=$cache/kvmtool-$commit
if [ ! -x "$out/lkvm" ]; then
    src=$(mktemp -d "${TMPDIR:-/tmp}/kvmtool.XXXXXX")
    trap 'rm -rf "$src"' EXIT
    git -C "$clone" archive "$commit" | tar -x -C "$src"
    nice make -C "$src" -j"$(nproc)" lkvm >&2
    mkdir -p "$out"
    cp "$src/lkvm" "$out/lkvm.tmp"
    mv "$out/lkvm.tmp" "$out/lkvm"
fi
echo "$out/lkvm"
