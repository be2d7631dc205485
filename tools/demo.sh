#!/bin/bash
# Installs dependencies, builds smolvm and boots a demo microVM (Debian's
# kernel + a busybox initramfs) with its boot trace. On a host without
# hardware KVM it says so and runs the demo inside the nested-KVM harness.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
tools/deps.sh
tools/build.sh
kver=$(ls /lib/modules | sort -V | tail -n 1)
initrd=$(tests/nested/guest-initrd.sh initrd)
demo=$(mktemp -d "${TMPDIR:-/tmp}/smolvm-demo.XXXXXX")
cat > "$demo/demo.sh" <<SCRIPT
#!/bin/bash
'$repo/build/smolvm' run --kernel /boot/vmlinuz-$kver --initrd '$initrd' \\
    --cmdline 'console=ttyS0 quiet panic=-1 smolvm.test=demo' \\
    --trace-until 'Hello from a smolvm microVM.' < /dev/null
echo "smolvm exited with \$?"
SCRIPT
if [ -c /dev/kvm ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then
    bash "$demo/demo.sh"
else
    echo "demo: this host has no hardware /dev/kvm; running the demo inside a nested-KVM"
    echo "demo: L1 guest under QEMU TCG (tests/nested/l1.sh), which takes a minute..."
    tests/nested/l1.sh "$demo/demo.sh" "$demo" > "$demo/l1-console.log" 2>&1 || true
    cat "$demo/l1.log"
fi
