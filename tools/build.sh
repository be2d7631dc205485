#!/bin/bash
# Builds smolvm (build/), its ASan+UBSan twin (build-asan/, --asan) and the
# libFuzzer targets with clang (build-fuzz/, --fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build/build.ninja ] || meson setup build >/dev/null
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
