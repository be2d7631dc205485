#!/bin/bash
# smolvm's micro kernel for the nested tests and the boot benchmark: built
# by `smolvm kernel build` (once: cached by its source and configuration in
# ~/.cache/smolvm-ci, outside the clone), its vmlinux's path printed.
# usage: micro-kernel.sh [SMOLVM]   env: SMOLVM_CACHE
set -euo pipefail
here=$(dirname "$(realpath "$0")")
smolvm=${1:-$here/../../build/smolvm}
cache=${SMOLVM_CACHE:-$HOME/.cache/smolvm-ci}
mkdir -p -m 0700 "$cache/xdg"
XDG_CACHE_HOME=$cache/xdg "$smolvm" kernel build
