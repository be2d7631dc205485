#!/bin/bash
# The emulator the nested tier's L1 runs under: Debian's backported QEMU
# (bookworm-backports), unpacked into the cache beside the L1's images, not
# installed (the QEMU the tests run inside the L1 as a peer stays the
# system's).
#
# Why not bookworm's QEMU 7.2: its TCG finds translated code by virtual
# address, so a position-independent program placed afresh by ASLR at each
# launch has all its code translated again. In the L1, `smolvm --version`
# took 20-23 ms with ASLR and 9-10 ms without under 7.2, and 11-13 ms
# either way under 10.0 (whose translated blocks are position-independent).
# Hardware has no translator: the newer emulator measures what a user's
# machine would, and every benchmark's peers (cold boot, QEMU, kvmtool) run
# in the same L1.
#
# usage: tools/l1-qemu.sh fetch   (deps.sh, as root or with sudo: adds the
#                                   backports source, downloads, unpacks;
#                                   nothing once one is unpacked)
#        tools/l1-qemu.sh path    (prints the emulator l1.sh runs, and its
#                                   firmware folder on a second line when it
#                                   is the unpacked one)
# env:   SMOLVM_CACHE  (default ~/.cache/smolvm-ci)
#        L1_QEMU=system  the system's qemu-system-x86_64, whatever is cached
set -euo pipefail
cache=${SMOLVM_CACHE:-$HOME/.cache/smolvm-ci}
current=$cache/l1-qemu/current
packages=(qemu-system-x86 qemu-system-common qemu-system-data)
sources=/etc/apt/sources.list.d/smolvm-bookworm-backports.sources

say() { echo "l1-qemu: $*" >&2; }

add_backports_source() {
    [ -e "$sources" ] && return 0
    # Priority 100 (a backports suite's default): nothing installed or
    # upgraded from it unless asked by name.
    printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm-backports' \
        'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' |
        $sudo tee "$sources" > /dev/null
    $sudo apt-get update -q > /dev/null
}

backports_version() {
    apt-cache madison qemu-system-x86 | awk -F'|' '$3 ~ /bookworm-backports/ { gsub(/ /, "", $2); print $2; exit }'
}

# apt-get download checks each package against the suite's signed index.
unpack() {
    local version=$1 dir=$2 work deb
    work=$(mktemp -d "$cache/l1-qemu/.unpack.XXXXXX")
    # (As root apt would download as _apt, who cannot write in work.)
    if (cd "$work" && apt-get download -q -o APT::Sandbox::User=root "${packages[@]/%/=$version}" > /dev/null) &&
        mkdir "$work/root" && (for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root" || exit 1; done) &&
        "$work/root/usr/bin/qemu-system-x86_64" --version > /dev/null; then
        rm -rf "$dir"
        mv "$work/root" "$dir"
    fi
    rm -rf "$work"
    [ -x "$dir/usr/bin/qemu-system-x86_64" ]
}

# Once unpacked it stays the L1's emulator (a newer backport would change
# the instrument between runs unannounced): remove the folder to fetch again.
fetch() {
    local version dir
    [ ! -x "$current/usr/bin/qemu-system-x86_64" ] || return 0
    sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    add_backports_source || { say "no bookworm-backports source; the L1 runs under the system's QEMU"; return 0; }
    version=$(backports_version)
    if [ -z "$version" ]; then
        say "bookworm-backports has no qemu-system-x86; the L1 runs under the system's QEMU"
        return 0
    fi
    dir=$cache/l1-qemu/${version//[:~+]/_}
    if [ ! -x "$dir/usr/bin/qemu-system-x86_64" ]; then
        say "fetching QEMU $version for the L1"
        mkdir -p "$cache/l1-qemu"
        unpack "$version" "$dir" || { say "could not unpack QEMU $version; the L1 runs under the system's QEMU"; return 0; }
    fi
    ln -sfn "$dir" "$current.tmp"
    mv -T "$current.tmp" "$current"
}

path() {
    if [ "${L1_QEMU:-}" != system ] && [ -x "$current/usr/bin/qemu-system-x86_64" ]; then
        echo "$current/usr/bin/qemu-system-x86_64"
        echo "$current/usr/share/qemu"
    else
        command -v qemu-system-x86_64
    fi
}

case "${1:-}" in
fetch) fetch ;;
path) path ;;
*)
    echo "usage: tools/l1-qemu.sh fetch|path" >&2
    exit 2
    ;;
esac
