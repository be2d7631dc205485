#!/bin/sh
# /init.sh of the test guests that smolvm boots in the nested scenarios,
# run by their /init (guest-preinit.c) once it has printed the marker
# SMOLVM-GUEST-UP. The kernel command line picks what it does:
# smolvm.test=NAME.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
# Each module gets its parameters from the command line (name.param=value),
# as modprobe passes them: the kernel applies those only to built-in code.
load_modules() {
    local m name
    for m in $(cat /modules/order); do
        name=$(basename "$m"); name=${name%%.*}; name=$(echo "$name" | tr - _)
        # shellcheck disable=SC2046
        insmod "/modules/$m" $(tr ' ' '\n' < /proc/cmdline | sed -n "s/^$name\.//p") 2>/dev/null
    done
}
# mount_share TAG DIR: the virtiofs tag at DIR as smolvm's appliance init
# mounts it (guest/init.c widen_readahead: 512 KiB readahead windows, set
# once the stat has waited for the server's INIT answer).
mount_share() {
    mount -t virtiofs "$1" "$2" && stat "$2" > /dev/null && echo 512 > "$(share_bdi "$2")/read_ahead_kb"
}
# timed NAME COMMAND...: runs it, quiet, and prints "BENCH NAME SECONDS"
# by the guest's clock (bench/fs, bench/ram read these lines).
timed() {
    local name=$1 a b
    shift
    a=$(cut -d' ' -f1 /proc/uptime)
    "$@" > /dev/null 2>&1 || echo "BENCH-FAILED $name"
    b=$(cut -d' ' -f1 /proc/uptime)
    echo "BENCH $name $(echo "$a $b" | awk '{ printf "%.2f", $2 - $1 }')"
}
# share_bdi DIR: the sysfs folder of the backing device (readahead) of the
# file system mounted at DIR.
share_bdi() {
    echo "/sys/class/bdi/$(awk -v d="$1" '$5 == d { print $3 }' /proc/self/mountinfo)"
}
# eth0 up with a DHCP lease (busybox udhcpc); port=smolvm.port=N.
net_up() {
    port=$(sed -n 's/.*smolvm\.port=\([0-9]*\).*/\1/p' /proc/cmdline)
    mkdir -p /etc /www
    printf '%s\n' '#!/bin/sh' 'case "$1" in bound|renew)' \
        'ip addr add "$ip/${mask:-24}" dev "$interface"' \
        'ip route add default via "$router" dev "$interface";; esac' > /bin/dhcp-event
    chmod +x /bin/dhcp-event
    ip link set lo up
    ip link set eth0 up
    # smolvm.ip=A.B.C.D/N: a static address (a TAP has no DHCP server)
    static_ip=$(sed -n 's/.*smolvm\.ip=\([0-9./]*\).*/\1/p' /proc/cmdline)
    if [ -n "$static_ip" ]; then
        ip addr add "$static_ip" dev eth0
    else
        udhcpc -i eth0 -s /bin/dhcp-event -q -n -t 10 -T 2 > /dev/null 2>&1
    fi
}
# http_get PATH: the response (headers, body) of the host's server at the
# gateway, port $port, over busybox nc (HTTP/1.0: the server closes).
http_get() {
    rm -f /tmp/req
    mkfifo /tmp/req
    nc -w 15 10.0.2.2 "$port" < /tmp/req &
    ncpid=$!
    exec 4> /tmp/req
    printf 'GET %s HTTP/1.0\r\n\r\n' "$1" >&4
    wait "$ncpid"
    exec 4>&-
}
test=$(sed -n 's/.*smolvm\.test=\([^ ]*\).*/\1/p' /proc/cmdline)
case "$test" in
    demo)
        echo "Hello from a smolvm microVM."
        echo "kernel: $(uname -sr)  cpus: $(grep -c ^processor /proc/cpuinfo)  $(grep MemTotal /proc/meminfo)"
        echo "uptime at init: $(cut -d' ' -f1 /proc/uptime) s"
        ;;
    virtio)
        # Three disks (raw rw, ext4, read-only raw) and the rng, all used
        # through Debian's own virtio drivers.
        load_modules
        echo "GUEST-VDA=$(dd if=/dev/vda bs=8 count=1 2>/dev/null)"
        echo "GUEST-VDA-SERIAL=$(cat /sys/block/vda/serial 2>/dev/null)"
        printf GUESTWROTE | dd of=/dev/vda bs=512 seek=2048 conv=fsync 2>/dev/null &&
            echo GUEST-VDA-WRITE-OK
        # Discard (BLKDISCARD: VIRTIO_BLK_T_DISCARD) 4 MiB at 8 MiB.
        blkdiscard -o 8388608 -l 4194304 /dev/vda && echo GUEST-DISCARD-OK
        mkdir -p /mnt
        if mount -t ext4 /dev/vdb /mnt; then
            echo ext4-from-guest > /mnt/hello.txt
            mkdir /mnt/dir && seq 1 20000 > /mnt/dir/numbers
            umount /mnt && echo GUEST-EXT4-OK
        fi
        if printf x | dd of=/dev/vdc conv=fsync 2>/dev/null; then
            echo GUEST-RO-WRITE-SUCCEEDED
        else
            echo GUEST-RO-WRITE-FAILED
        fi
        echo "GUEST-RNG=$(cat /sys/class/misc/hw_random/rng_current) $(head -c 1048576 /dev/hwrng | wc -c)"
        ;;
    smp-io)
        # Both vCPUs read and write one disk at once (4 MiB regions each).
        load_modules
        (taskset 1 dd if=/dev/urandom of=/tmp/a bs=64k count=64 2>/dev/null
         taskset 1 dd if=/tmp/a of=/dev/vda bs=64k seek=0 conv=fsync 2>/dev/null
         taskset 1 dd if=/dev/vda bs=64k count=64 2>/dev/null | md5sum > /tmp/a.read) &
        (taskset 2 dd if=/dev/urandom of=/tmp/b bs=64k count=64 2>/dev/null
         taskset 2 dd if=/tmp/b of=/dev/vda bs=64k seek=64 conv=fsync 2>/dev/null
         taskset 2 dd if=/dev/vda bs=64k skip=64 count=64 2>/dev/null | md5sum > /tmp/b.read) &
        wait
        echo 3 > /proc/sys/vm/drop_caches
        a=$(md5sum < /tmp/a); b=$(md5sum < /tmp/b)
        [ "$a" = "$(cat /tmp/a.read)" ] && [ "$b" = "$(cat /tmp/b.read)" ] &&
            [ "$a" = "$(dd if=/dev/vda bs=64k count=64 2>/dev/null | md5sum)" ] &&
            echo "GUEST-SMP-IO-OK $(md5sum < /tmp/a | cut -c1-32) $(md5sum < /tmp/b | cut -c1-32)"
        ;;
    blkbench)
        # Sequential throughput on vda, 3 rounds; the page cache is dropped
        # before reads. Prints "BENCH name MB/s" lines.
        load_modules
        rate() { # rate NAME BYTES COMMAND...: MB/s, timed with /proc/uptime
            name=$1 bytes=$2; shift 2
            t0=$(cut -d' ' -f1 /proc/uptime)
            "$@" 2>/dev/null
            t1=$(cut -d' ' -f1 /proc/uptime)
            awk -v n="$name" -v b="$bytes" -v a="$t0" -v c="$t1" \
                'BEGIN { if (c > a) printf "BENCH %s %.1f\n", n, b / 1048576 / (c - a) }'
        }
        for i in 1 2 3; do
            rate seq-write-1M 67108864 dd if=/dev/zero of=/dev/vda bs=1M count=64 conv=fsync
            echo 3 > /proc/sys/vm/drop_caches
            rate seq-read-1M 67108864 dd if=/dev/vda of=/dev/null bs=1M count=64
            rate seq-write-4K 16777216 dd if=/dev/zero of=/dev/vda bs=4k count=4096 conv=fsync
            echo 3 > /proc/sys/vm/drop_caches
            rate seq-read-4K 16777216 dd if=/dev/vda of=/dev/null bs=4k count=4096 iflag=direct
            # Random 4 KiB, direct, one at a time (bench/blk adds randio).
            if [ -x /bin/randio ]; then
                rate rand-read-4K 8388608 randio read /dev/vda 2048 64
                rate rand-write-4K 8388608 randio write /dev/vda 2048 64
            fi
        done
        ;;
    hvc)
        # A line in and out over virtio-console (hvc0).
        load_modules
        stty -F /dev/hvc0 -echo 2>/dev/null
        echo GUEST-HVC-READY > /dev/hvc0
        read -r line < /dev/hvc0
        echo "GUEST-HVC-GOT=$line" > /dev/hvc0
        ;;
    cpus) echo "GUEST-CPUS=$(grep -c ^processor /proc/cpuinfo)" ;;
    reboot) reboot -f ;;
    panic) echo c > /proc/sysrq-trigger ;;
    snap)
        # Saved to a .smolmachine while blocked on input, then resumed from
        # it: the token lives only in guest RAM, the disk is read after.
        load_modules
        token=$(cat /proc/sys/kernel/random/uuid)
        echo "GUEST-VMGENID-DEVICES=$(ls /sys/bus/acpi/drivers/vmgenid 2>/dev/null | grep -c VMGENCTR)"
        echo "GUEST-SNAP-READY token=$token"
        read -r line
        echo "GUEST-SNAP-GOT=$line token=$token disk=$(dd if=/dev/vda bs=8 count=1 2>/dev/null)"
        # The GED's interrupt count (the vmgenid notification) and fresh
        # random bytes: two starts of one bundle must not share them.
        sleep 0.2
        echo "GUEST-GED-IRQS=$(awk '/Ged/ { print $2 }' /proc/interrupts)"
        echo "GUEST-RANDOM=$(head -c 16 /dev/urandom | md5sum | cut -c1-32)"
        printf AFTERRESTORE | dd of=/dev/vda bs=512 seek=8 conv=fsync 2>/dev/null &&
            echo GUEST-SNAP-WRITE-OK
        ;;
    counter|dirtier)
        # A counter in RAM and in a file on an ext4 disk, printed every
        # 100 ms with the guest's clock, until "quit" arrives on the console;
        # then a clean unmount. Saved and resumed while it runs.
        # dirtier: the same, while two jobs load it for live migration
        # (issue 24): 64 MiB of a tmpfs rewritten each second (at most
        # 64 MiB/s of RAM dirtied; each pass's rate printed as DIRTIED) and
        # 1 MiB files written and fsync'd to the disk without pause.
        load_modules
        mkdir -p /mnt && mount -t ext4 /dev/vda /mnt || echo GUEST-COUNTER-NO-DISK
        jobs=
        if [ "$test" = dirtier ]; then
            mkdir -p /dirty && mount -t tmpfs -o size=72m tmpfs /dirty
            # Each job ends at its next turn once /stop is there.
            (while [ ! -e /stop ]; do
                echo "DIRTIED $(dd if=/dev/zero of=/dirty/ram bs=1M count=64 conv=notrunc 2>&1 | tail -n 1)"
                sleep 1
            done) &
            jobs="$jobs $!"
            (i=0; while [ ! -e /stop ]; do
                i=$(((i + 1) % 8))
                dd if=/dev/zero of="/mnt/blk$i" bs=64k count=16 conv=fsync 2>/dev/null
            done) &
            jobs="$jobs $!"
        fi
        n=0 in=/dev/console
        # With --console virtio the host's input arrives on hvc0. No echo:
        # an echoed "quit" lands inside the COUNT lines the host parses.
        [ -c /dev/hvc0 ] && in=/dev/hvc0
        stty -F "$in" -echo 2>/dev/null
        exec 3< "$in" # held open: a tty closed between reads drops its input
        echo GUEST-COUNTER-READY
        while true; do
            n=$((n + 1))
            echo "$n" > /mnt/counter
            sync
            echo "COUNT $n file=$(cat /mnt/counter) date=$(date +%s)"
            if read -t 0.1 -r line <&3; then [ "$line" = quit ] && break; fi
        done
        touch /stop
        for j in $jobs; do wait "$j"; done
        umount /mnt && echo GUEST-COUNTER-CLEAN
        ;;
    flood)
        # Console output faster than a stalled reader takes it, until
        # stopped. Through hvc0 (the scenario runs --console virtio): 58 KiB
        # per write, a few notifies each, then 100 ms (~580 KB/s: the pipe
        # and smolvm's 256 KiB queue full within a second, then drops
        # counted). Not through the 8250: there each byte is two port exits
        # (LSR, THR), and an 8250 flood, paced at 11 KB/s or not, wedged TCG
        # L1s (no heartbeat) in this scenario in CI, stop after stop.
        load_modules # virtio_console, in Debian's kernel
        out=/dev/ttyS0
        [ -c /dev/hvc0 ] && out=/dev/hvc0 && stty -F /dev/hvc0 raw -echo 2>/dev/null
        yes "FLOOD 0123456789 abcdefghijklmnopqrstuvwxyz 0123456789" | head -n 1024 > /tmp/flood
        echo GUEST-FLOOD-ON=$out
        while true; do cat /tmp/flood > "$out"; usleep 100000; done
        ;;
    net)
        # virtio-net through Debian's own virtio_net driver: a DHCP lease
        # (busybox udhcpc), a fetch from the host's server at the gateway
        # (port smolvm.port=N), then a server of our own for the host's -p
        # forward, until a line arrives on the console.
        load_modules
        net_up
        echo "GUEST-NET-LEASE=$(ip -4 -o addr show dev eth0 | awk '{ print $4 }')"
        echo "GUEST-NET-MTU=$(cat /sys/class/net/eth0/mtu)"
        echo "GUEST-NET-FETCH=$(http_get / | tail -n 1)"
        # busybox wget has been seen to segfault here before connecting: say where.
        wget -q -T 5 -O /dev/null "http://10.0.2.2:$port/" 2> /dev/null ||
            echo "GUEST-NET-WGET-FAILED $(dmesg | grep -a segfault | tail -n 1)"
        # IPv6 by the NAT's router advertisement (SLAAC on fec0::/64).
        for _ in 1 2 3 4 5; do
            ip -6 -o addr show dev eth0 | grep -q 'inet6 fec0:' && break
            sleep 1
        done
        echo "GUEST-NET-IPV6=$(ip -6 -o addr show dev eth0 | grep -o 'fec0:[0-9a-f:]*' | head -n 1)"
        # A name the host's resolver knows, through the NAT's DNS forwarder.
        echo "GUEST-NET-DNS=$(nslookup smolvm-dns-check.test 10.0.2.3 2>&1 |
            awk '/^Name:/ { n = 1 } n && /^Address/ { print $NF; exit }')"
        # iperf3 (initrd-net): to the host's server at the gateway, and a
        # server of our own for the host's client through -p.
        if [ -x /usr/bin/iperf3 ]; then
            echo "GUEST-NET-IPERF-UP=$(/usr/bin/iperf3 -c 10.0.2.2 -p "$((port + 10))" -t 2 -f m \
                --connect-timeout 3000 2>&1 | awk '/receiver/ { print $(NF - 2); exit }')"
            /usr/bin/iperf3 -s -D -p 5201
        fi
        echo guest-says-hi > /www/index.html
        httpd -p 80 -h /www && echo GUEST-NET-SERVING
        read -r line
        echo "GUEST-NET-DONE $line"
        ;;
    tap)
        # --net tap: a static address on the L1's TAP network (10.9.0.0/24,
        # the L1 at .254), iperf3 both ways through the host kernel's
        # segmentation offloads, until a line arrives on the console.
        load_modules
        ip link set eth0 up
        ip addr add 10.9.0.1/24 dev eth0
        echo "GUEST-TAP-IPERF-UP=$(/usr/bin/iperf3 -c 10.9.0.254 -p 5202 -t 2 -f m \
            --connect-timeout 3000 2>&1 | awk '/receiver/ { print $(NF - 2); exit }')"
        /usr/bin/iperf3 -s -D -p 5201 && echo GUEST-TAP-SERVING
        read -r line
        echo "GUEST-TAP-DONE $line"
        ;;
    netbench)
        # TCP throughput both ways with iperf3 (initrd-net) against the
        # host's iperf3 server at the gateway, port+1 (-R: the host sends),
        # 5 s each; and small HTTP requests one after another to the host's
        # httpd on port (over nc, each a connection); 3 rounds. "BENCH name
        # value" lines: MB/s as iperf3's receiver counted them; request ms
        # timed by /proc/uptime. A failed iperf3 prints its error instead.
        # After each iperf3 a NETDIAG line: the guest's TCP counters (since
        # boot) that tell a stall in its TCP (zero windows, pruned or
        # dropped segments, segments received twice: the sender's
        # retransmissions) and eth0's receive drops; the VMMs say theirs
        # at exit (smolvm: SMOLVM_NET_STATS).
        load_modules
        net_up
        ms() { awk -v a="$1" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { print (b - a) * 1000 }'; }
        netdiag() {
            awk '/^TcpExt:/ { if (!named) { for (i = 2; i <= NF; i++) name[i] = $i; named = 1; next }
                    for (i = 2; i <= NF; i++) if (name[i] ~ /^(TCPToZeroWindowAdv|TCPFromZeroWindowAdv|TCPWantZeroWindowAdv|TCPRcvQDrop|PruneCalled|RcvPruned|TCPOFODrop|TCPZeroWindowDrop|TCPDSACKOldSent|DelayedACKLost|TCPBacklogDrop|TCPTimeouts)$/) printf " %s=%s", name[i], $i }' /proc/net/netstat
            echo " rx_dropped=$(cat /sys/class/net/eth0/statistics/rx_dropped)"
        }
        iperf_mbs() { # iperf_mbs [-R]: the receiver's MBytes/sec, or iperf3's last line
            /usr/bin/iperf3 -c 10.0.2.2 -p $((port + 1)) -t 5 -f M --connect-timeout 5000 "$@" \
                > /tmp/iperf.out 2>&1
            awk '/receiver/ { print $(NF - 2); found = 1; exit } END { if (!found) exit 1 }' \
                /tmp/iperf.out || echo "failed: $(tail -n 1 /tmp/iperf.out)"
        }
        for _ in 1 2 3; do
            echo "BENCH tcp-guest-to-host $(iperf_mbs)"
            echo "NETDIAG$(netdiag)"
            echo "BENCH tcp-host-to-guest $(iperf_mbs -R)"
            echo "NETDIAG$(netdiag)"
            t0=$(cut -d' ' -f1 /proc/uptime)
            for _ in $(seq 1 20); do http_get /small > /dev/null; done
            t=$(ms "$t0"); echo "BENCH http-request-ms $(awk -v t="$t" 'BEGIN { printf "%.2f", t / 20 }')"
        done
        ;;
    virtiofs)
        # Shares rw (read-write) and ro (read-only) through Linux's own
        # virtiofs driver; the host judges what reached its folders.
        load_modules
        mkdir -p /mnt/rw /mnt/ro
        if mount_share rw /mnt/rw && mount_share ro /mnt/ro; then
            echo GUEST-FS-MOUNTED
        else
            dmesg | grep -i -e virtio -e fuse
        fi
        echo "GUEST-FS-READ=$(cat /mnt/rw/from-host)"
        echo from-guest > /mnt/rw/from-guest
        mkdir /mnt/rw/d && echo x > /mnt/rw/d/a && mv /mnt/rw/d/a /mnt/rw/d/b && ln -s b /mnt/rw/d/l &&
            [ "$(cat /mnt/rw/d/l)" = x ] && rm /mnt/rw/d/b /mnt/rw/d/l && rmdir /mnt/rw/d &&
            mkdir -p /mnt/rw/keep/sub && echo k > /mnt/rw/keep/sub/f && mv /mnt/rw/keep/sub /mnt/rw/keep/moved &&
            echo GUEST-FS-DIROPS-OK
        seq 1 200000 > /tmp/numbers && cp /tmp/numbers /mnt/rw/numbers &&
            echo "GUEST-FS-BIG=$(md5sum < /mnt/rw/numbers | cut -c1-32)"
        echo "GUEST-FS-LIST=$(ls /mnt/rw | tr '\n' ' ')"
        # The host's symlinks resolve in the guest's namespace, and writing
        # through them reaches nothing of the host's outside the folder.
        echo pwned > /mnt/rw/escape/pwned 2>/dev/null; echo pwned > /mnt/rw/abs/pwned 2>/dev/null
        cat /mnt/rw/../outside/secret 2>/dev/null
        echo "GUEST-FS-RO=$(cat /mnt/ro/file)"
        if echo x > /mnt/ro/file || touch /mnt/ro/new || mkdir /mnt/ro/d; then
            echo GUEST-FS-RO-WRITTEN
        else
            echo GUEST-FS-RO-REFUSED
        fi
        sync
        echo GUEST-FS-SNAP-READY
        read -r line
        echo "GUEST-FS-AFTER=$line $(cat /mnt/rw/from-guest) $(ls /mnt/rw/keep)"
        cd /mnt/rw/keep/moved && echo after-restore > f2 && cd / && sync &&
            umount /mnt/rw && umount /mnt/ro && echo GUEST-FS-UMOUNTED
        ;;
    gitmake)
        # A developer's loop in the share "src" (initrd-tools: Debian's git,
        # make and tcc): git init, add, commit; make of a two-file C
        # project, its program run; an edit rebuilds only what it touches;
        # the build committed too. The host checks with its own git.
        load_modules
        export PATH=/usr/bin:/bin:/sbin HOME=/tmp GIT_AUTHOR_NAME=guest GIT_COMMITTER_NAME=guest \
            GIT_AUTHOR_EMAIL=guest@smolvm.test GIT_COMMITTER_EMAIL=guest@smolvm.test
        mkdir -p /mnt/src
        mount_share src /mnt/src || echo GUEST-GM-MOUNT-FAILED
        cd /mnt/src/proj &&
            git init -q --template= && git add . && git commit -q -m "two-file C project" &&
            echo "GUEST-GM-COMMITTED $(git rev-parse HEAD)"
        make CC=tcc && echo "GUEST-GM-RAN=$(./sum 5)"
        sed -i 's/a + b/a + b + 100/' add.c
        # (make compares modification times: the edit must be the newer)
        while [ ! add.c -nt add.o ]; do touch add.c; done
        make CC=tcc > /tmp/remake 2>&1 &&
            echo "GUEST-GM-REMADE=$(tr '\n' ' ' < /tmp/remake)| $(./sum 5)"
        git add -A && git commit -q -m "built in the guest" && git status --porcelain > /tmp/st &&
            echo "GUEST-GM-CLEAN=$(wc -l < /tmp/st) $(git rev-list --count HEAD)"
        cd / && sync && umount /mnt/src && echo GUEST-GM-DONE
        ;;
    fsbench)
        # bench/fs: the share "bench" by virtio-fs or 9p (fsbench.fs=), each
        # step timed from the guest's clock with caches dropped before it.
        load_modules
        mkdir -p /mnt/s
        mb=$(sed -n 's/.*fsbench\.mb=\([0-9]*\).*/\1/p' /proc/cmdline)
        if grep -q 'fsbench.fs=9p' /proc/cmdline; then
            mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 bench /mnt/s
        else
            mount_share bench /mnt/s
        fi || echo BENCH-MOUNT-FAILED
        step() { # step NAME COMMAND...: timed, caches dropped before it
            sync; echo 3 > /proc/sys/vm/drop_caches
            timed "$@"
        }
        # A line a minute: the L1's watchdog takes a silent console for a hang.
        (while sleep 60; do echo BENCH-TICK; done) &
        ticker=$!
        step untar tar -xf /mnt/s/tree.tar -C /mnt/s/x
        step stat sh -c 'find /mnt/s/x | xargs stat'
        step grep grep -r zebra /mnt/s/x
        # The read step's yardstick (no target): this guest's own cost, in
        # this L1, of filling the big file's size in page-cache pages (each
        # taken and written) and of copying them out again, with no device at all
        # (tmpfs, which drop_caches leaves). A buffered virtio-fs read does
        # both in the guest; 9p's cache=none read neither (the host writes
        # into the reader's buffer); DAX would leave only the copy. Run
        # before the write and read, it also touches guest RAM that the
        # read's page cache then takes again: a guest page's first touch
        # costs the L1 faults of its own, which would otherwise be in
        # smolvm's read (page cache) and not in 9p's (a first read of the
        # 64 MiB took 0.32-0.38 s longer than a re-read in the run that
        # showed it), and which on hardware cost next to nothing.
        # At most 256 MiB of them: a tmpfs lives in the guest's RAM (512
        # MiB), which a 1 GiB run (FS_BENCH_MB=1024, issue 21's size) would
        # overflow; there the yardstick is a quarter of the file.
        calib_mb=$(( ${mb:-256} < 256 ? ${mb:-256} : 256 ))
        mkdir -p /calib && mount -t tmpfs -o size=$((calib_mb + 16))m calib /calib
        step tmpfs-fill dd if=/dev/zero of=/calib/big bs=1M count="$calib_mb"
        step tmpfs-read dd if=/calib/big of=/dev/null bs=1M
        umount /calib
        step write dd if=/dev/zero of=/mnt/s/big bs=1M count="${mb:-256}" conv=fsync
        step read dd if=/mnt/s/big of=/dev/null bs=1M
        # virtio-fs only, no target: the read again in other readahead
        # windows (128 KiB: the kernel's default, as a guest that mounts
        # the share without widening them reads it; 256 KiB: the window
        # before; 1 MiB: two 512 KiB READs each), then in the widened
        # window again (read-ra512: the drift since the first read), and
        # without the page cache (read-direct, O_DIRECT: the reader's
        # pages filled by the host, as 9p's uncached read does).
        if ! grep -q 'fsbench.fs=9p' /proc/cmdline; then
            for kb in 128 256 1024 512; do
                echo "$kb" > "$(share_bdi /mnt/s)/read_ahead_kb" &&
                    step "read-ra$kb" dd if=/mnt/s/big of=/dev/null bs=1M
            done
            step read-direct dd if=/mnt/s/big of=/dev/null bs=1M iflag=direct
        fi
        echo "BENCH-FILES $(find /mnt/s/x -type f | wc -l)"
        kill "$ticker"
        umount /mnt/s
        ;;
    powerbutton)
        # smolvm stop presses the ACPI power button: Linux's button driver
        # reports KEY_POWER on its input device; then this guest powers off.
        load_modules
        for _ in $(seq 1 50); do
            dev=$(grep -l '^Power Button$' /sys/class/input/event*/device/name 2>/dev/null | head -n 1)
            [ -n "$dev" ] && break
            sleep 0.1
        done
        ev=$(basename "$(dirname "$(dirname "$dev")")")
        echo "GUEST-POWER-BUTTON-READY $ev"
        dd if="/dev/input/$ev" bs=24 count=1 > /dev/null 2>&1 && echo GUEST-POWER-BUTTON-PRESSED
        ;;
    tick)
        # A timer-driven guest: a line every 20 ms of the guest's clock
        # (smolvm.tick_ms=N: every N ms), input or not (bench/coldstart
        # saves it mid-count and times a start to its next line;
        # bench/migrate takes the largest gap across a migration as the
        # downtime a user sees). The console is held open, as counter's.
        # smolvm.dirty_mib=N: also a job rewriting an N MiB buffer (tmpfs)
        # with bytes that are not zeros, then sleeping 1 s (at most N MiB/s
        # dirtied; each pass's rate printed as DIRTIED). Not zeros: a page
        # of zeros costs QEMU's migration a flag and smolvm's a page.
        tick_s=$(sed -n 's/.*smolvm\.tick_ms=\([0-9]*\).*/\1/p' /proc/cmdline)
        tick_s=$(printf '0.%03d' "${tick_s:-20}")
        dirty_mib=$(sed -n 's/.*smolvm\.dirty_mib=\([0-9]*\).*/\1/p' /proc/cmdline)
        if [ -n "$dirty_mib" ]; then
            mkdir -p /dirty && mount -t tmpfs -o size=$((dirty_mib + 8))m tmpfs /dirty
            fill=0123456789abcdef fill=$fill$fill$fill$fill fill=$fill$fill$fill$fill
            (while true; do
                t=$(tr -d . < /proc/uptime | cut -d' ' -f1) # centiseconds
                yes "$fill$fill$fill$fill" | dd of=/dirty/ram bs=1M count="$dirty_mib" \
                    iflag=fullblock conv=notrunc 2> /dev/null
                t=$(($(tr -d . < /proc/uptime | cut -d' ' -f1) - t))
                echo "DIRTIED $dirty_mib MiB in ${t}0 ms: $((dirty_mib * 100 / (t + 1))) MiB/s"
                sleep 1
            done) &
        fi
        exec 3< /dev/console
        n=0
        while true; do
            n=$((n + 1))
            echo "TICK $n"
            read -t "$tick_s" -r _ <&3
        done
        ;;
    ramtouch)
        # bench/ram and scenario ram_huge_pages: the guest's first touch of
        # its own RAM, no device involved. It fills ramtouch.mb MiB (default
        # 128) of tmpfs: pages never touched, each taken and written (fill);
        # reads them back (read); frees and fills them again (refill: the
        # same pages, touched before). "RAMTOUCH-AT NAME" then 3 s of quiet
        # before and after the fill: the host looks at how the guest's RAM
        # is mapped then. BENCH-STEAL: the guest's steal ticks in the step
        # (its vCPU runnable in the host but not running).
        mb=$(sed -n 's/.*ramtouch\.mb=\([0-9]*\).*/\1/p' /proc/cmdline)
        mb=${mb:-128}
        mkdir -p /touch && mount -t tmpfs -o size=$((mb + 16))m touch /touch
        steal() { awk '$1 == "cpu" { print $9 }' /proc/stat; }
        ramstep() { # ramstep NAME COMMAND...: timed, with its steal ticks
            local s
            s=$(steal)
            timed "$@"
            echo "BENCH-STEAL $1 $(($(steal) - s))"
        }
        echo "RAMTOUCH-AT before"
        sleep 3
        ramstep fill dd if=/dev/zero of=/touch/big bs=1M count="$mb"
        echo "RAMTOUCH-AT filled"
        sleep 3
        ramstep read dd if=/touch/big of=/dev/null bs=1M
        rm /touch/big
        ramstep refill dd if=/dev/zero of=/touch/big bs=1M count="$mb"
        umount /touch
        echo RAMTOUCH-DONE
        ;;
    dmesg)
        # The kernel's log after a quiet boot (bench/boot's profile: the
        # guest's phases by its own clock, without the console's cost).
        dmesg | sed 's/^/DMESG /'
        echo DMESG-END
        ;;
    echo)
        # One line in from the host over the serial console, one line back.
        read -r line
        echo "GUEST-GOT=$line"
        ;;
esac
# A guest without ACPI (acpi=off) cannot power off: it halts; it reboots.
grep -q 'smolvm.end=reboot' /proc/cmdline && reboot -f
poweroff -f
sleep 10
