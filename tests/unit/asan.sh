#!/bin/bash
# meson's "asan" suite, from any build: the unit tests again in build-asan/
# (ASan + UBSan), configured there on first use.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
[ -f build-asan/build.ninja ] ||
    meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false > /dev/null
ninja -C build-asan > /dev/null
exec meson test -C build-asan --suite unit --print-errorlogs
