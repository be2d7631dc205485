#!/bin/bash
# Review 46 probe (not part of the tier): a VM started through `smolvm
# serve`'s spare, whose VMM is forked before the machine is named, against
# `smolvm start NAME --detach --jail` in the same L1:
#   r46-same-confinement  the VMM: every thread's Seccomp, the
#                         capability sets (bounding too), no_new_privs, which
#                         namespaces are its own, its root, its fds (kinds),
#                         its cgroup -- the same fingerprint for both
#   r46-relay-filtered    its relay: filtered, nnp, no template watch kept
#   r46-vmm-confined      that fingerprint is a jail's (own user/mnt/pid/ipc
#                         ns, its own root, no capability, nnp, Seccomp 2 on
#                         every thread, no folder fd)
#   r46-daemon-killed     the daemon killed -9 while its next spare waits
#                         (its VMM, relay and marker forked ahead): none of
#                         them is left, nor its root's folder
#   r46-plain-*           --no-confine: a start through the plain spare
#                         (its VMM forked ahead too) logs, traces, saves,
#                         resumes and stops as it should
# usage: SCENARIOS=review46 tests/nested/run tests/nested/probe-review46.sh
scenario_review46() {
    local app=$work/r46-app n pid relay
    api_sock=$work/api.sock
    api_n=0
    mkdir -p "$work/api"
    "$SMOLVM" image build -o "$app" > /dev/null 2>&1
    api_daemon r46
    for n in r46api r46cli; do
        api POST /machines '{"name":"'$n'","from":"'$app'","mem":"128M","cmdline":"console=ttyS0 panic=-1 quiet smolvm.run=\"i=0; while :; do i=$((i+1)); echo TICK $i; sleep 1; done\""}'
        echo "create $n: $api_status $api_body" >> "$results/r46.log"
    done
    api POST /machines/r46api/start
    echo "api start: $api_status $api_body" >> "$results/r46.log"
    timeout 120 "$SMOLVM" start r46cli --detach --jail >> "$results/r46.log" 2>&1
    echo "cli start: $?" >> "$results/r46.log"
    api_wait_log r46api 'TICK 2'
    api_wait_log r46cli 'TICK 2'
    "$SMOLVM" ps --json > "$work/r46-ps.json" 2>> "$results/r46.log"
    cp "$work/r46-ps.json" "$results/"
    for n in r46api r46cli; do
        pid=$(python3 -c 'import json,sys
for m in json.load(open(sys.argv[1])):
    if m.get("name") == sys.argv[2]: print(m.get("pid", ""))' "$work/r46-ps.json" "$n")
        relay=$(awk '/^PPid:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
        { echo "== VMM"; r46_fingerprint "$pid" "$n"; echo "== relay"; r46_fingerprint "$relay" "$n"; } \
            > "$results/r46-$n.txt" 2>&1
        # The VMM's alone, its fds' paths as seen from either mount tree
        # (a jail's /dev/null reads /null from outside it; /run/tmp is /tmp).
        r46_fingerprint "$pid" "$n" | sed -e 's|^fd /run/tmp/|fd /tmp/|' -e 's|^fd /null$|fd /dev/null|' \
            -e 's|^fd /kvm$|fd /dev/kvm|' | sort > "$results/r46-$n-vmm.txt" 2>&1
        echo "$n: VMM $pid relay $relay" >> "$results/r46.log"
    done
    expect r46-same-confinement "the VMM through the spare fingerprints as start --detach --jail's ($(diff "$results/r46-r46api-vmm.txt" "$results/r46-r46cli-vmm.txt" | tr '\n' ' ' | head -c 600))" \
        cmp -s "$results/r46-r46api-vmm.txt" "$results/r46-r46cli-vmm.txt"
    expect r46-relay-filtered "the spare's VMM's relay: Seccomp 2 on every thread, nnp, no template watch (inotify) kept ($(sed -n '/== relay/,$p' "$results/r46-r46api.txt" | tr '\n' ' ' | head -c 600))" \
        eval 'sed -n "/== relay/,\$p" "$results/r46-r46api.txt" > "$work/r46-relay.txt" &&
              grep -q "^threads-not-seccomp2=0$" "$work/r46-relay.txt" && grep -q "^NoNewPrivs:.1$" "$work/r46-relay.txt" &&
              ! grep -q inotify "$work/r46-relay.txt"' 
    expect r46-vmm-confined "the spare's VMM is jailed ($(sed -n '2,20p' "$results/r46-r46api.txt" | tr '\n' ' '))" \
        eval 'grep -q "^threads-not-seccomp2=0$" "$results/r46-r46api.txt" &&
              grep -q "^CapBnd:.0000000000000000$" "$results/r46-r46api.txt" &&
              grep -q "^CapPrm:.0000000000000000$" "$results/r46-r46api.txt" &&
              grep -q "^NoNewPrivs:.1$" "$results/r46-r46api.txt" &&
              grep -q "^ns user=own mnt=own pid=own ipc=own" "$results/r46-r46api.txt" &&
              grep -q "^root=own$" "$results/r46-r46api.txt" && grep -q "^dirfds=0$" "$results/r46-r46api.txt"'
    # What the next spare's processes hold while they wait (for the report).
    local p
    for p in $(api_spares ""); do
        echo "== waiting $p ($(tr '\0' ' ' < /proc/$p/cmdline)) ppid $(awk '/^PPid:/ { print $2 }' /proc/$p/status)"
        r46_fingerprint "$p" none
    done > "$results/r46-waiting.txt" 2>&1
    api POST /machines/r46api/stop '{"timeout":60}'
    timeout 60 "$SMOLVM" stop r46cli >> "$results/r46.log" 2>&1
    sleep 2
    ls -la "${XDG_RUNTIME_DIR:-/run/user/$(id -u)}/smolvm" > "$results/r46-runtime-after-stop.txt" 2>&1
    # The daemon killed -9 while its next spare waits, VMM forked ahead.
    local before after
    before=$(api_spares "" | tr '\n' ' ')
    kill -9 "$api_pid"
    wait "$api_pid" 2>/dev/null
    sleep 3
    after=$(api_spares "" | tr '\n' ' ')
    expect r46-daemon-killed "no spare process left 3 s after its daemon was killed -9 (before: $before; after: ${after:-none}; $(ls "${XDG_RUNTIME_DIR:-/run/user/$(id -u)}/smolvm" 2>/dev/null | grep spare- | tr '\n' ' '))" \
        eval 'test -z "$after" && ! ls "${XDG_RUNTIME_DIR:-/run/user/$(id -u)}/smolvm" 2>/dev/null | grep -q "^spare-"'
    # The plain (--no-confine) spare: its VMM forked ahead too.
    "$SMOLVM" serve --socket "$api_sock" --no-confine > "$work/serve-r46plain.out" 2>&1 &
    api_pid=$!
    for _ in $(seq 1 50); do
        [ -S "$api_sock" ] && curl -s --unix-socket "$api_sock" http://smolvm/machines > /dev/null && break
        sleep 0.2
    done
    sleep 2 # its spare forked its VMM
    api POST /machines/r46api/start
    local start1=$api_status
    api_wait_log r46api 'TICK 3'
    local logs=$?
    api GET /machines/r46api/trace
    local trace=$api_body
    api POST /machines/r46api/save
    local save=$api_status
    sleep 1
    api POST /machines/r46api/start
    local start2=$api_status
    api_wait_log r46api 'TICK [0-9]'
    local first
    first=$(grep -ao 'TICK [0-9]*' "$work/api/$(printf %03d "$api_n").body" | head -n 1 | cut -d' ' -f2)
    api POST /machines/r46api/stop '{"timeout":60}'
    local stop=$api_status
    sleep 1
    echo "plain: start $start1 logs $logs save $save start2 $start2 first ${first:-none} stop $stop; trace $trace" >> "$results/r46.log"
    expect r46-plain-start "plain spare: start 200 ($start1), logs show TICK ($logs), trace says spare_named and spare_vmm_ahead_us" \
        eval 'test "$start1" = 200 && test "$logs" = 0 && echo "$trace" | grep -q "\"spare_named\":" && echo "$trace" | grep -q "\"spare_vmm_ahead_us\":[1-9]"'
    expect r46-plain-save-resume-stop "plain spare: save ($save), start again resumes (first TICK ${first:-none} > 3, $start2), stop ($stop)" \
        eval 'test "$save" = 200 && test "$start2" = 200 && test -n "$first" && test "$first" -gt 3 && test "$stop" = 200'
    expect r46-plain-gone "plain spare: no VM left running after stop ($("$SMOLVM" ps 2>&1 | tr '\n' ' '))" \
        eval '! "$SMOLVM" ps 2>/dev/null | grep -q "^r46api "'
    kill "$api_pid"
    wait "$api_pid" 2>/dev/null
    cp "$work"/serve-r46*.out "$results/" 2>/dev/null
    cp -r "$work/api" "$results/r46-api" 2>/dev/null
}

# review46b: the plain spare's save, against a plain start without a spare
# and a jailed one through the spare, each in a daemon of its own:
#   r46b-LABEL  start, logs, save, start again (resumes), stop
scenario_review46b() {
    local app=$work/r46-app
    api_sock=$work/api.sock
    api_n=0
    mkdir -p "$work/api"
    "$SMOLVM" image build -o "$app" > /dev/null 2>&1
    r46_cycle plain-spare "$app" --no-confine
    r46_cycle plain-nospare "$app" --no-confine --no-spare
    r46_cycle jail-spare "$app"
    r46_cycle plain-spare-again "$app" --no-confine
    cp -r "$work/api" "$results/r46b-api" 2>/dev/null
}

# r46_cycle LABEL APP SERVE-FLAGS...: a daemon with those flags; its VM
# r46LABEL started, saved, started again and stopped.
r46_cycle() {
    local label=$1 app=$2 vm=r46${1//-/} start1 logs save start2 first stop
    shift 2
    "$SMOLVM" serve --socket "$api_sock" "$@" > "$work/serve-r46b-$label.out" 2>&1 &
    api_pid=$!
    for _ in $(seq 1 50); do
        [ -S "$api_sock" ] && curl -s --unix-socket "$api_sock" http://smolvm/machines > /dev/null && break
        sleep 0.2
    done
    sleep 3 # its spare ready
    api POST /machines '{"name":"'$vm'","from":"'$app'","mem":"128M","cmdline":"console=ttyS0 panic=-1 quiet smolvm.run=\"i=0; while :; do i=$((i+1)); echo TICK $i; sleep 1; done\""}'
    api POST /machines/$vm/start
    start1=$api_status
    api_wait_log $vm 'TICK 3'
    logs=$?
    api POST /machines/$vm/save
    save=$api_status
    cp "${XDG_RUNTIME_DIR}/smolvm/$vm.log" "$results/r46b-$label-after-save.log" 2>/dev/null
    sleep 1
    api POST /machines/$vm/start
    start2=$api_status
    api_wait_log $vm 'TICK [0-9]'
    first=$(grep -ao 'TICK [0-9]*' "$work/api/$(printf %03d "$api_n").body" | head -n 1 | cut -d' ' -f2)
    api POST /machines/$vm/stop '{"timeout":60}'
    stop=$api_status
    expect "r46b-$label" "$label ($*): start $start1, logs $logs, save $save, start again $start2 resumes (first TICK ${first:-none} > 3), stop $stop" \
        eval 'test "$start1" = 200 && test "$logs" = 0 && test "$save" = 200 && test "$start2" = 200 && test -n "$first" && test "$first" -gt 3 && test "$stop" = 200'
    kill "$api_pid"
    wait "$api_pid" 2>/dev/null
    cp "$work/serve-r46b-$label.out" "$results/" 2>/dev/null
}

# r46_fingerprint PID NAME: what confines the process, with its own pids and
# the VM's name taken out (so two VMs' prints compare).
r46_fingerprint() {
    local pid=$1 name=$2 t bad=0 n=0 ns line fd kind dirs=0
    [ -d "/proc/$pid" ] || { echo "no process '$pid'"; return; }
    for t in /proc/$pid/task/*; do
        n=$((n + 1))
        grep -q '^Seccomp:[[:space:]]*2$' "$t/status" || bad=$((bad + 1))
    done
    echo "threads-not-seccomp2=$bad"
    grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' "/proc/$pid/status"
    echo "nspid-depth=$(awk '/^NSpid:/ { print NF - 1 }' "/proc/$pid/status")"
    line=ns
    for ns in user mnt pid ipc net uts cgroup; do
        if [ "$(readlink "/proc/$pid/ns/$ns")" = "$(readlink "/proc/self/ns/$ns")" ]; then
            line="$line $ns=host"
        else line="$line $ns=own"; fi
    done
    echo "$line"
    if [ "$(stat -L -c %d:%i "/proc/$pid/root/")" = "$(stat -L -c %d:%i /)" ]; then
        echo root=host
    else echo root=own; fi
    for fd in /proc/$pid/fd/*; do
        kind=$(readlink "$fd" | sed -e "s/$name/NAME/g" -e 's/\[[0-9]*\]/[]/' -e 's/spare-[0-9]*/spare-N/')
        [ -d "$fd" ] && dirs=$((dirs + 1))
        echo "fd $kind"
    done | sort
    echo "dirfds=$(for fd in /proc/$pid/fd/*; do [ -d "$fd" ] && echo x; done | wc -l)"
    echo "cgroup $(cat "/proc/$pid/cgroup")"
    echo "nice $(awk '{ print $19 }' "/proc/$pid/stat")"
}

. "$(dirname "$(realpath "$0")")/scenarios.sh"
