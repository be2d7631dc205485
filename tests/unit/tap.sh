#!/bin/bash
# Runs one cmocka test with TAP output for meson. cmocka reports a skipped
# case as "not ok N # SKIP"; TAP (and meson's parser) count only
# "ok N # SKIP" as a skip, so that line is rewritten. Undefined behaviour
# fails the test (UBSan halts), as in tests/run.
set -o pipefail
export CMOCKA_MESSAGE_OUTPUT=TAP UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
"$@" 2>&1 | sed -u 's/^not ok \([0-9][0-9]*\) # SKIP/ok \1 # SKIP/'
