#!/bin/bash
# Installs what smolvm needs to build and test on Debian 12, when missing.
set -euo pipefail
packages=(
    meson ninja-build pkg-config gcc libcmocka-dev     # build + unit tests
    liblzma-dev libzstd-dev zlib1g-dev                 # unpacking bzImage payloads, bundles
    libslirp-dev                                       # --net user: smolvm-net (libslirp NAT)
    libseccomp-dev                                     # confinement: per-thread seccomp filters
    libjansson-dev nettle-dev libgmp-dev               # bundle config (JSON), SHA-256, ed25519
    clang libclang-rt-14-dev                           # libFuzzer targets
    qemu-system-x86 linux-image-amd64 busybox-static   # nested tier: L1 and guests
    cpio xz-utils acpica-tools dmidecode util-linux e2fsprogs kmod # test oracles and tools
    tcc                                                # nested shares_git_make: the guest's C compiler
    qemu-utils zstd python3                            # disk oracles (qemu-img, qemu-io)
    iperf3                                             # nested net, tap, net_bench: TCP throughput both ways
    golang-golang-x-sys-dev lld                        # bsd-user: BSD ABI tables; test programs
    golang-1.19-src curl git                           # bsd-user: NetBSD's call numbers; real programs' tests
    linux-source-6.1 flex bison libelf-dev bc          # nested: a small kernel with cmdline virtio-mmio
    libmicrohttpd-dev python3-yaml python3-jsonschema  # smolvm serve: HTTP; its OpenAPI document, checked
    chromium                                           # the web console driven in a real browser (console_browser.sh)
)
missing=()
# bsd-user's real BSD executables come as npm packages (any npm will do).
command -v npm > /dev/null || packages+=(npm)
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
# The nested tier's L1 emulator: bookworm-backports' QEMU, unpacked into the
# cache, not installed (tools/l1-qemu.sh says why).
"$(dirname "$0")/l1-qemu.sh" fetch
