#!/bin/sh
# Finds the Go sources bsd-user's ABI tables are generated from (at
# configure time, by src/bsduser/meson.build) and prints two lines:
#   the x/sys unix directory (zsysnum_, zerrors_, ztypes_<os>_amd64.go),
#     Debian's golang-golang-x-sys-dev. Not the older copy Go's sources
#     vendor (src/cmd/vendor): its FreeBSD table still names the
#     FreeBSD 11 calls (stat 188, getdirentries 196) the handlers would
#     answer with the ino64 layouts.
#   Go's runtime directory (sys_<os>_amd64.s), newest Go first
# Go lives in /usr/share/go-X (Debian, Ubuntu), /usr/lib/go-X (its
# binaries' GOROOT, often a link to the former) or /usr/lib/go, /usr/local/go.
# Exits 1 with one line naming the packages when either is missing.
set -u
has_sys() {
    for os in freebsd netbsd; do
        for kind in zsysnum zerrors ztypes; do
            [ -f "$1/${kind}_${os}_amd64.go" ] || return 1
        done
    done
}
has_runtime() {
    [ -f "$1/sys_freebsd_amd64.s" ] && [ -f "$1/sys_netbsd_amd64.s" ]
}
# Go roots, newest version first (sort -V on the version in the name).
roots=$(ls -d /usr/share/go-* /usr/lib/go-* 2>/dev/null | sort -t- -k2 -V -r)
roots="$roots /usr/lib/go /usr/local/go"

sys=/usr/share/gocode/src/golang.org/x/sys/unix
has_sys "$sys" || sys=
runtime=
for r in $roots; do
    has_runtime "$r/src/runtime" && runtime=$r/src/runtime && break
done
if [ -z "$sys" ] || [ -z "$runtime" ]; then
    echo "bsd-user's system call tables are generated from Go's x/sys tables" \
        "(${sys:-not in /usr/share/gocode}) and Go's runtime sources" \
        "(${runtime:-not in /usr/share/go-*, /usr/lib/go-*, /usr/lib/go, /usr/local/go}):" \
        "apt-get install golang-golang-x-sys-dev golang-src" >&2
    exit 1
fi
# Real paths: a /usr/lib/go-X link and its /usr/share/go-X are one tree.
realpath "$sys"
realpath "$runtime"
