#!/bin/bash
# Builds (once, cached by content) the busybox initrd of the nested test
# guests and prints its path (initrd-net: the net scenario's, with iperf3).
# Also extracts the PVH vmlinux from the host's bzImage when asked:
# guest-initrd.sh vmlinux
set -euo pipefail
here=$(dirname "$(realpath "$0")")
cache=${SMOLVM_CACHE:-$HOME/.cache/smolvm-ci}
kver=$(ls /lib/modules | sort -V | tail -n 1)
mkdir -p "$cache"
GUEST_MODULES="virtio_mmio virtio_blk virtio_rng virtio_console virtio_net ext4 virtiofs 9p 9pnet_virtio"

build_initrd() {
    local key out stage
    key=$( (cat "$here/guest-init.sh" "$0" /bin/busybox; echo "$kver") | sha256sum | cut -c1-16)
    out=$cache/guest-$key.cpio
    if [ ! -s "$out" ]; then
        stage=$(mktemp -d)
        mkdir -p "$stage"/{bin,sbin,proc,sys,dev,tmp}
        cp /bin/busybox "$stage/bin/busybox"
        for applet in $(/bin/busybox --list); do
            [ "$applet" = busybox ] || ln -sf busybox "$stage/bin/$applet"
        done
        install -m 0755 "$here/guest-init.sh" "$stage/init"
        mknod "$stage/dev/console" c 5 1 2>/dev/null || true
        # The Debian kernel has these as modules: carry them with their
        # dependencies, in load order.
        mkdir -p "$stage/modules"
        for m in $GUEST_MODULES; do
            modprobe --show-depends -S "$kver" "$m" | awk '$1 == "insmod" { print $2 }'
        done | awk '!seen[$0]++' | while read -r ko; do
            cp "$ko" "$stage/modules/"
            basename "$ko" >> "$stage/modules/order"
        done
        (cd "$stage" && find . | cpio -o -H newc --quiet) > "$out.tmp"
        mv "$out.tmp" "$out"
        rm -rf "$stage"
    fi
    echo "$out"
}

# The net scenario's guest: the initrd above with iperf3 (Debian's, linked
# dynamically) and the libraries it loads appended as a second archive,
# which the kernel unpacks over the first.
build_net_initrd() {
    local base key out stage f
    base=$(build_initrd)
    key=$( (cat "$base" /usr/bin/iperf3; ldd /usr/bin/iperf3) | sha256sum | cut -c1-16)
    out=$cache/guest-net-$key.cpio
    if [ ! -s "$out" ]; then
        stage=$(mktemp -d)
        for f in /usr/bin/iperf3 $(ldd /usr/bin/iperf3 | grep -o '/[^ ]*'); do
            mkdir -p "$stage$(dirname "$f")"
            cp -L "$f" "$stage$f"
        done
        cp "$base" "$out.tmp"
        (cd "$stage" && find . | cpio -o -H newc --quiet) >> "$out.tmp"
        mv "$out.tmp" "$out"
        rm -rf "$stage"
    fi
    echo "$out"
}

# Debian's vmlinuz carries an xz-compressed ELF vmlinux with a PVH note.
extract_vmlinux() {
    local kernel=/boot/vmlinuz-$kver out offset
    out=$cache/vmlinux-$kver
    if [ ! -s "$out" ]; then
        offset=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$kernel" | head -n 1 | cut -d: -f1)
        tail -c +$((offset + 1)) "$kernel" | xz -dc 2>/dev/null > "$out.tmp" || true
        [ "$(head -c 4 "$out.tmp" | od -An -c | tr -d ' ')" = '177ELF' ] || {
            echo "guest-initrd: cannot extract vmlinux from $kernel" >&2
            exit 1
        }
        mv "$out.tmp" "$out"
    fi
    echo "$out"
}

case "${1:-initrd}" in
    initrd) build_initrd ;;
    initrd-net) build_net_initrd ;;
    vmlinux) extract_vmlinux ;;
esac
