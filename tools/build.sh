#!/bin/bash
# Builds smolvm (build/: one static-pie executable, as shipped), its
# ASan+UBSan twin (build-asan/, --asan, linked dynamically) and the
# libFuzzer targets with clang (build-fuzz/, --fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build/build.ninja ] || meson setup build -Dstatic=true >/dev/null
meson configure build | grep -q '^ *static *true' || # a build/ from before the option
    meson setup --reconfigure build -Dstatic=true >/dev/null
ninja -C build >/dev/null
if [ "${1:-}" = --fuzz ]; then
    [ -f build-fuzz/build.ninja ] || CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=false \
        -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
    ninja -C build-fuzz >/dev/null
fi
if [ "${1:-}" = --asan ]; then
    [ -f build-asan/build.ninja ] || \
        meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
    ninja -C build-asan >/dev/null
fi
