#!/bin/bash
# Builds the smolvm of each commit in compat-commits, once: from this
# clone's git history (git archive, no checkout), cached by commit in
# $SMOLVM_CACHE/compat-COMMIT/smolvm. Runs on the host before the L1 starts
# (the tree is read-only there). Prints "COMMIT=PATH ..." on one line for
# the scenarios' params; build logs go to stderr.
#
# usage: compat-build.sh
# env:   SMOLVM_CACHE  (default ~/.cache/smolvm-ci)
set -euo pipefail
here=$(dirname "$(realpath "$0")")
repo=$(realpath "$here/../..")
cache=${SMOLVM_CACHE:-$HOME/.cache/smolvm-ci}
built=()

build_commit() { # build_commit COMMIT OUT_DIR
    local src
    src=$(mktemp -d "${TMPDIR:-/tmp}/smolvm-compat.XXXXXX")
    trap 'rm -rf "$src"' RETURN
    git -C "$repo" archive "$1" | tar -x -C "$src"
    meson setup "$src/build" "$src" -Dstatic=true -Dtests=false >&2
    ninja -C "$src/build" smolvm >&2
    mkdir -p "$2"
    cp "$src/build/smolvm" "$2/smolvm.tmp"
    mv "$2/smolvm.tmp" "$2/smolvm"
}

while read -r commit _; do
    case "$commit" in '' | '#'*) continue ;; esac
    if ! git -C "$repo" cat-file -e "$commit^{commit}" 2>/dev/null; then
        echo "compat-build: commit $commit is not in this clone (a shallow clone?)" >&2
        exit 1
    fi
    out=$cache/compat-$commit
    [ -x "$out/smolvm" ] || build_commit "$commit" "$out"
    built+=("$commit=$out/smolvm")
done < "$here/compat-commits"
echo "${built[*]}"
