#!/bin/bash
# Runs each libFuzzer target from its seed corpus, bounded: the virtqueue
# walker and virtio-blk request parser fed arbitrary guest memory; the
# .smolmachine reader, the disk formats and the bsd-user loader fed arbitrary
# files; every device's restore fed arbitrary saved device state. Target fuzz_NAME runs on tests/fuzz/corpus/NAME (a new target needs
# only its corpus folder here). Builds build-fuzz/ (clang) first.
# Prints "PASS fuzz NAME: ..." / "FAIL fuzz NAME: ..." lines; exits 1 if any failed.
#
# usage: tests/fuzz/run.sh [SECONDS_EACH]   (default: FUZZ_SECONDS, else 30)
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
seconds=${1:-${FUZZ_SECONDS:-30}}
if ! tools/build.sh --fuzz; then
    echo "FAIL fuzz build: the fuzz targets did not build (tools/build.sh --fuzz)"
    exit 1
fi
status=0
for corpus in tests/fuzz/corpus/*/; do
    corpus=${corpus%/}
    name=fuzz_$(basename "$corpus")
    work=$(mktemp -d "${TMPDIR:-/tmp}/smolvm-fuzz.XXXXXX")
    if build-fuzz/tests/fuzz/"$name" -max_total_time="$seconds" \
        -artifact_prefix="$work/" "$work" "$repo/$corpus" > "$work/log" 2>&1; then
        echo "PASS fuzz $name: $(grep -c . "$work/log") log lines, $(tail -n 1 "$work/log")"
        rm -rf "$work"
    else
        status=1
        echo "FAIL fuzz $name: crash input and log in $work"
        grep -m 5 -E 'ERROR|SUMMARY' "$work/log"
    fi
done
exit $status
