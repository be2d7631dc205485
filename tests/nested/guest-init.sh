#!/bin/sh
# /init of the test guests that smolvm boots in the nested scenarios. The
# kernel command line picks what it does: smolvm.test=NAME.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
echo "SMOLVM-GUEST-UP"
test=$(sed -n 's/.*smolvm\.test=\([^ ]*\).*/\1/p' /proc/cmdline)
case "$test" in
    demo)
        echo "Hello from a smolvm microVM."
        echo "kernel: $(uname -sr)  cpus: $(grep -c ^processor /proc/cpuinfo)  $(grep MemTotal /proc/meminfo)"
        echo "uptime at init: $(cut -d' ' -f1 /proc/uptime) s"
        ;;
    cpus) echo "GUEST-CPUS=$(grep -c ^processor /proc/cpuinfo)" ;;
    reboot) reboot -f ;;
    panic) echo c > /proc/sysrq-trigger ;;
    echo)
        # One line in from the host over the serial console, one line back.
        read -r line
        echo "GUEST-GOT=$line"
        ;;
esac
poweroff -f
sleep 10
