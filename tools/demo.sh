#!/bin/bash
# Installs dependencies, builds smolvm, builds the default appliance (the
# host's kernel and modules, our init, an ext2 root with busybox: `smolvm
# image build`) and boots it with its boot trace. On a host without
# hardware KVM it says so and runs the demo inside the nested-KVM harness.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
tools/deps.sh
tools/build.sh
appliance=$(build/smolvm image build)
echo "demo: appliance in $appliance"
demo=$(mktemp -d "${TMPDIR:-/tmp}/smolvm-demo.XXXXXX")
cat > "$demo/demo.sh" <<SCRIPT
#!/bin/bash
'$repo/build/smolvm' run '$appliance' \\
    --cmdline 'quiet smolvm.run="echo Hello from a smolvm microVM.; uname -sr; grep MemTotal /proc/meminfo; grep vda /proc/mounts; cat /proc/uptime"' \\
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
