#!/bin/bash
# Builds (once, cached by content) the busybox initrd of the nested test
# guests and prints its path (initrd-net: the net scenario's, with iperf3;
# initrd-tools: shares_git_make's, with git, make and a C compiler;
# initrd-micro: the same busybox and init without Debian's modules, what
# smolvm's micro kernel boots: it has all it uses built in, and a micro
# appliance carries no modules either, `image build --kernel micro`).
# Their /init is guest-preinit.c (the marker first), their /init.sh
# guest-init.sh (what the test asks for).
# Also extracts the PVH vmlinux from the host's bzImage when asked:
# guest-initrd.sh vmlinux
set -euo pipefail
here=$(dirname "$(realpath "$0")")
cache=${SMOLVM_CACHE:-$HOME/.cache/smolvm-ci}
kver=$(ls /lib/modules | sort -V | tail -n 1)
mkdir -p "$cache"
GUEST_MODULES="virtio_mmio virtio_blk virtio_rng virtio_console virtio_net ext4 virtiofs 9p 9pnet_virtio button evdev"

# build_initrd [micro]: with "micro", no modules (guest-micro-KEY.cpio).
build_initrd() {
    local flavour=${1:-} key out stage
    key=$( (cat "$here/guest-init.sh" "$here/guest-preinit.c" "$0" /bin/busybox; echo "$kver $flavour") |
        sha256sum | cut -c1-16)
    out=$cache/guest-${flavour:+$flavour-}$key.cpio
    if [ ! -s "$out" ]; then
        stage=$(mktemp -d)
        mkdir -p "$stage"/{bin,sbin,proc,sys,dev,tmp}
        cp /bin/busybox "$stage/bin/busybox"
        for applet in $(/bin/busybox --list); do
            [ "$applet" = busybox ] || ln -sf busybox "$stage/bin/$applet"
        done
        # /init prints the marker and runs /init.sh (guest-preinit.c: no
        # libc, so nothing before its first line).
        gcc -Os -static -nostdlib -no-pie -fno-stack-protector -fno-asynchronous-unwind-tables \
            -fcf-protection=none -Wall -Wextra -Werror -o "$stage/init" "$here/guest-preinit.c"
        install -m 0755 "$here/guest-init.sh" "$stage/init.sh"
        mknod "$stage/dev/console" c 5 1 2>/dev/null || true
        mknod "$stage/dev/kmsg" c 1 11 2>/dev/null || true
        # The Debian kernel has these as modules: carry them with their
        # dependencies, in load order (4.4 MB of the 6.4 MB archive).
        [ "$flavour" = micro ] || add_modules "$stage"
        (cd "$stage" && find . | cpio -o -H newc --quiet) > "$out.tmp"
        mv "$out.tmp" "$out"
        rm -rf "$stage"
    fi
    echo "$out"
}

# add_modules STAGE: GUEST_MODULES and what they need, and their order.
add_modules() {
    local m ko
    mkdir -p "$1/modules"
    for m in $GUEST_MODULES; do
        modprobe --show-depends -S "$kver" "$m" | awk '$1 == "insmod" { print $2 }'
    done | awk '!seen[$0]++' | while read -r ko; do
        cp "$ko" "$1/modules/"
        basename "$ko" >> "$1/modules/order"
    done
}

# build_extra_initrd NAME FILE...: the initrd above with Debian's own FILEs
# (and the shared libraries its executables load, by ldd) appended as a
# second archive, which the kernel unpacks over the first.
build_extra_initrd() {
    local name=$1 base key out stage list
    shift
    base=$(build_initrd)
    list=$(mktemp)
    for f in "$@"; do
        echo "$f"
        case $f in */bin/*) ldd "$f" | grep -o '/[^ ]*' ;; esac
    done | awk '!seen[$0]++' > "$list"
    key=$( (cat "$base"; xargs -a "$list" stat -L -c '%n %s %Y') | sha256sum | cut -c1-16)
    out=$cache/guest-$name-$key.cpio
    if [ ! -s "$out" ]; then
        stage=$(mktemp -d)
        # (-h: the libraries' symbolic links arrive as the files they name)
        tar -chf - --no-recursion -T "$list" 2>/dev/null | tar -xf - -C "$stage"
        cp "$base" "$out.tmp"
        (cd "$stage" && find . | cpio -o -H newc --quiet) >> "$out.tmp"
        mv "$out.tmp" "$out"
        rm -rf "$stage"
    fi
    rm -f "$list"
    echo "$out"
}

# The toolchain guest (shares_git_make): git, make and tcc (the Tiny C
# Compiler: 0.5 MB, where gcc's cc1, as and ld are 40 MB) with glibc's
# headers, start files and link scripts.
toolchain_files() {
    echo /usr/bin/git /usr/bin/make /usr/bin/tcc
    dpkg -L tcc | grep '^/usr/lib/x86_64-linux-gnu/tcc/'
    dpkg -L libc6-dev linux-libc-dev |
        grep -e '^/usr/include/' -e '/crt[1in]\.o$' -e '/libc\.so$' -e '/libc_nonshared\.a$'
    # (tcc looks for libc.so.6's own needs in its library folders)
    dpkg -L libc6 | grep '/ld-linux-x86-64\.so\.2$'
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
    initrd-micro) build_initrd micro ;;
    initrd-net) build_extra_initrd net /usr/bin/iperf3 ;;
    initrd-tools)
        command -v tcc > /dev/null || { echo "guest-initrd: no tcc (tools/deps.sh installs it)" >&2; exit 1; }
        # shellcheck disable=SC2046
        build_extra_initrd tools $(toolchain_files) ;;
    vmlinux) extract_vmlinux ;;
esac
