#!/bin/bash
# Builds (once, cached by its inputs) a small kernel from Debian's
# linux-source-6.1 with tiny-kernel.config, and prints its bzImage's path.
set -euo pipefail
here=$(dirname "$(realpath "$0")")
cache=${SMOLVM_CACHE:-$HOME/.cache/smolvm-ci}
source_tar=$(ls /usr/src/linux-source-*.tar.xz | sort -V | tail -n 1)
key=$( (cat "$here/tiny-kernel.config" "$0"; dpkg-query -W linux-source-6.1) | sha256sum | cut -c1-16)
out=$cache/tiny-kernel-$key.bzImage
mkdir -p "$cache"
if [ ! -s "$out" ]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/tiny-kernel.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    echo "building a small kernel from $source_tar (once)" >&2
    tar -xJf "$source_tar" -C "$work"
    cd "$work"/linux-source-*
    make -s tinyconfig >&2
    # shellcheck disable=SC2046
    ./scripts/config $(grep -v '^#' "$here/tiny-kernel.config" | tr ' ' '\n' | sed -n 's/^\(.\)/-e \1/p')
    make -s olddefconfig >&2
    grep -q '^CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y' .config
    make -s -j"$(nproc)" bzImage >&2
    cp arch/x86/boot/bzImage "$out.tmp"
    mv "$out.tmp" "$out"
fi
echo "$out"
