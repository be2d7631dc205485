#!/bin/bash
# bsd-user against real BSD executables nobody here wrote, as npm ships
# them for the BSDs and for Linux (the same version): esbuild (Go: threads,
# TLS, futex-like waits, signals, sysctl, kqueue, sockets) for FreeBSD and
# NetBSD, and lefthook (Go: fork/exec, pipes) for FreeBSD; two older esbuilds
# for FreeBSD too: 0.12.26 (Go 1.17: FreeBSD 11's kevent in its server) and
# 0.8.15 (Go 1.15's runtime; no server then). Each case runs a
# BSD build under `smolvm bsd-user` and the Linux build natively and wants
# the same output. Packages are cached outside the clone.
# usage: real.sh SMOLVM [--fetch]   Prints PASS/FAIL/SKIP lines, then
# "N passed, N failed, N skipped"; --fetch only fetches the packages.
set -uo pipefail
smolvm=$(realpath "$1")
version=0.28.2 lefthook_version=2.2.2 old_version=0.12.26 older_version=0.8.15
cache=${SMOLVM_CI_CACHE:-$HOME/.cache/smolvm-ci}/npm
work=$(mktemp -d "${TMPDIR:-/tmp}/smolvm-bsd-real.XXXXXX")
passed=0 failed=0 skipped=0
trap 'rm -rf "$work"' EXIT

# fetch PACKAGE VERSION BINARY: the package's executable, from the cache
# or npm.
fetch() {
    local name=${1#@} dir
    dir=$cache/${name//\//-}-$2
    if [ ! -x "$dir/package/bin/$3" ]; then
        mkdir -p "$dir" &&
            (cd "$dir" && timeout 300 npm pack --silent "$1@$2" > /dev/null 2>&1 &&
                tar xzf ./*.tgz && rm -f ./*.tgz) || return 1
    fi
    echo "$dir/package/bin/$3"
}

if ! linux=$(fetch @esbuild/linux-x64 "$version" esbuild) ||
    ! freebsd=$(fetch @esbuild/freebsd-x64 "$version" esbuild) ||
    ! netbsd=$(fetch @esbuild/netbsd-x64 "$version" esbuild) ||
    ! lefthook_linux=$(fetch lefthook-linux-x64 "$lefthook_version" lefthook) ||
    ! lefthook_freebsd=$(fetch lefthook-freebsd-x64 "$lefthook_version" lefthook) ||
    ! freebsd_go117=$(fetch esbuild-freebsd-64 "$old_version" esbuild) ||
    ! linux_go117=$(fetch esbuild-linux-64 "$old_version" esbuild) ||
    ! freebsd_go115=$(fetch esbuild-freebsd-64 "$older_version" esbuild) ||
    ! linux_go115=$(fetch esbuild-linux-64 "$older_version" esbuild); then
    echo "SKIP bsd-user-real: npm could not fetch esbuild $version, $old_version or $older_version or lefthook $lefthook_version"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
fi
# --fetch: only the packages, for bench/bsduser.
[ "${2:-}" = --fetch ] && exit 0

# The Linux build of the same esbuild as OS's.
linux_of() { [ "${1#freebsd_go}" != "$1" ] && echo "linux_${1#freebsd_}" || echo linux; }

# same OS NAME ARGS...: OS's build (freebsd, netbsd, freebsd_go117, _go115) under
# bsd-user and the Linux build, run in $work/proj, give the same stdout,
# stderr and exit status.
same() {
    local os=$1 name=$1-$2 a b bin linux_name
    shift 2
    bin=${!os}
    linux_name=$(linux_of "$os")
    local linux=${!linux_name}
    (cd "$work/proj" && timeout 120 "$smolvm" bsd-user "$bin" "$@" > "$work/$name.bsd" 2> "$work/$name.bsd.err")
    a=$?
    (cd "$work/proj" && "$linux" "$@" > "$work/$name.linux" 2> "$work/$name.linux.err")
    b=$?
    if [ "$a" -eq "$b" ] && cmp -s "$work/$name.bsd" "$work/$name.linux" &&
        cmp -s "$work/$name.bsd.err" "$work/$name.linux.err" &&
        { [ -s "$work/$name.linux" ] || [ -s "$work/$name.linux.err" ]; }; then
        passed=$((passed + 1))
        echo "PASS bsd-user-real $name: $os esbuild under bsd-user = Linux esbuild ($(wc -c < "$work/$name.linux") bytes, exit $a)"
    else
        failed=$((failed + 1))
        echo "FAIL bsd-user-real $name: exit $a vs $b; $(tail -n 2 "$work/$name.bsd.err" | tr '\n' ' ')"
    fi
}

mkdir -p "$work/proj/src"
printf 'import {sq} from "./lib";\nconsole.log(sq(7) as number);\n' > "$work/proj/main.ts"
printf 'export const sq = (x: number): number => x * x;\nexport const unused = 1;\n' > "$work/proj/lib.ts"
# A few hundred modules: esbuild parses them on all its threads.
for i in $(seq 1 300); do
    printf 'import {v%d} from "./m%d";\nexport const v%d = (v%d as number) + %d;\n' \
        $((i - 1)) $((i - 1)) "$i" $((i - 1)) "$i" > "$work/proj/src/m$i.ts"
done
printf 'export const v0 = 0;\n' > "$work/proj/src/m0.ts"
printf 'import {v300} from "./src/m300";\nconsole.log(v300);\n' > "$work/proj/big.ts"

# serve OS|linux|linux_go117 PORT OUT: esbuild's HTTP server (Go's
# net/http: sockets, the kqueue poller) bundles on request; OUT gets what
# curl fetched.
serve() {
    local bin=${!1} port=$2 out=$3 i server
    # It serves while its stdin stays open.
    if [ "${1#linux}" != "$1" ]; then
        (cd "$work/proj" && sleep 60 | timeout 70 "$bin" main.ts --bundle --outdir=served \
            --serve=127.0.0.1:"$port" > /dev/null 2>&1) 2> /dev/null &
        server=$!
    else
        (cd "$work/proj" && sleep 60 | timeout 70 "$smolvm" bsd-user "$bin" main.ts --bundle \
            --outdir=served --serve=127.0.0.1:"$port" > /dev/null 2>&1) 2> /dev/null &
        server=$!
    fi
    for i in $(seq 1 200); do # a loaded machine starts it slowly
        curl -sf -m 5 "http://127.0.0.1:$port/main.js" > "$out" 2> /dev/null && break
        sleep 0.2
    done
    curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/missing.js" >> "$out.codes"
    pkill -f -- "--serve=127.0.0.1:$port" 2> /dev/null
    pkill -P "$server" 2> /dev/null # its stdin's sleep too
    wait "$server" 2> /dev/null     # reaped quietly (no "Terminated")
}

printf 'let x = ;\n' > "$work/proj/bad.ts"
for os in freebsd netbsd freebsd_go117 freebsd_go115; do
    same $os version --version
    same $os bundle main.ts --bundle --minify
    same $os many-modules big.ts --bundle --sourcemap=inline --format=esm
    same $os syntax-error bad.ts --bundle
    [ $os = freebsd_go115 ] && continue # (esbuild 0.8.15 has no --serve)
    port=$((20000 + RANDOM % 20000))
    serve "$(linux_of $os)" "$port" "$work/serve-linux"
    serve $os $((port + 1)) "$work/serve-$os"
    if [ -s "$work/serve-linux" ] && cmp -s "$work/serve-linux" "$work/serve-$os" &&
        [ "$(cat "$work/serve-$os.codes")" = 404 ]; then
        passed=$((passed + 1))
        echo "PASS bsd-user-real $os-serve: $os esbuild's HTTP server under bsd-user served the bundle the Linux build serves ($(wc -c < "$work/serve-linux") bytes; 404 for a missing file)"
    else
        failed=$((failed + 1))
        echo "FAIL bsd-user-real $os-serve: $(wc -c < "$work/serve-$os" 2>/dev/null) bytes vs $(wc -c < "$work/serve-linux" 2>/dev/null); codes $(cat "$work/serve-$os.codes" 2>/dev/null)"
    fi
done
# lefthook (Go: fork and exec of the hooks' shell commands, run in
# parallel, pipes, process groups) runs a git pre-commit hook; the same
# output as its Linux build, timings aside.
hooks() { # hooks BIN OUT [RUNNER...]: in a fresh copy of the repository
    local bin=$1 out=$2
    shift 2
    rm -rf "$work/repo-run" && cp -a "$work/repo" "$work/repo-run"
    (cd "$work/repo-run" && timeout 120 "$@" "$bin" run pre-commit --no-tty 2>&1 |
        grep -v -e 'done in' -e 'seconds' > "$out")
}
mkdir -p "$work/repo"
(cd "$work/repo" && git init -q . && printf 'a\nb\n' > one.txt && printf 'c\n' > two.txt &&
    printf 'pre-commit:\n  parallel: true\n  commands:\n    greet:\n      run: echo hello from lefthook\n    count:\n      glob: "*.txt"\n      run: wc -l {all_files}\n' > lefthook.yml &&
    git add -A)
hooks "$lefthook_linux" "$work/hooks-linux"
hooks "$lefthook_freebsd" "$work/hooks-freebsd" "$smolvm" bsd-user
# The two commands run in parallel: either may finish, and print its
# block, first. Each block whole, in any order (the rule under the last
# one is a block of its own).
blocks() { awk '/❯|────/ { if (b != "") print b; b = "" } { b = b $0 "\\n" } END { print b }' "$1" | sort; }
if grep -q 'hello from lefthook' "$work/hooks-linux" && grep -q '3 total' "$work/hooks-linux" &&
    [ "$(blocks "$work/hooks-linux")" = "$(blocks "$work/hooks-freebsd")" ]; then
    passed=$((passed + 1))
    echo "PASS bsd-user-real freebsd-lefthook: FreeBSD lefthook under bsd-user ran the pre-commit hook as the Linux build does"
else
    failed=$((failed + 1))
    echo "FAIL bsd-user-real freebsd-lefthook: $(diff "$work/hooks-linux" "$work/hooks-freebsd" | head -n 3 | tr '\n' ' ')"
fi
# binfmt_misc: after --register, the FreeBSD and NetBSD builds run as
# ./esbuild (in a user namespace with a binfmt_misc of its own, Linux 6.7+,
# so nothing is left on the host).
if unshare --user --map-root-user --mount sh -c \
    'mount -t binfmt_misc none /proc/sys/fs/binfmt_misc' 2> /dev/null; then
    want=$("$linux" --version)
    got=$(unshare --user --map-root-user --mount sh -c 'mount -t binfmt_misc none \
        /proc/sys/fs/binfmt_misc && "$0" bsd-user --register && timeout 60 "$1" --version && timeout 60 "$2" --version' \
        "$smolvm" "$freebsd" "$netbsd" 2>&1 | tr '\n' ' ')
    if [ "$got" = "$want $want " ]; then
        passed=$((passed + 1))
        echo "PASS bsd-user-real binfmt: after --register the FreeBSD and NetBSD builds ran directly ($want)"
    else
        failed=$((failed + 1))
        echo "FAIL bsd-user-real binfmt: wanted '$want' twice, got '$got'"
    fi
else
    skipped=$((skipped + 1))
    echo "SKIP bsd-user-real binfmt: no binfmt_misc of a user namespace's own here (Linux < 6.7)"
fi
echo "$passed passed, $failed failed, $skipped skipped"
