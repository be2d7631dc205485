#!/bin/bash
# Fetches xterm.js, the terminal emulator of smolvm serve's web console,
# from npm into the cache (never into the tree) and prints its folder:
# smolvm serve finds it there, or where --web-dir / SMOLVM_XTERM_DIR says
# (lib/xterm.js and css/xterm.css inside).
set -euo pipefail
version=${XTERM_VERSION:-5.5.0}
cache=${SMOLVM_CI_CACHE:-$HOME/.cache/smolvm-ci}/npm
dir=$cache/xterm-xterm-$version
if [ ! -s "$dir/package/lib/xterm.js" ]; then
    mkdir -p "$dir"
    (cd "$dir" && timeout 300 npm pack --silent "@xterm/xterm@$version" > /dev/null &&
        tar xzf ./*.tgz && rm -f ./*.tgz) || {
        echo "fetch-xterm: npm could not fetch @xterm/xterm@$version" >&2
        exit 1
    }
fi
ln -sfn "xterm-xterm-$version/package" "$cache/xterm"
echo "$cache/xterm"
