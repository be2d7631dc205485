#!/usr/bin/env python3
"""Names the guest kernel's functions in what the L1 recorded of a boot.

usage: guest-functions.py samples PERF_DATA VMLINUX [N]
       guest-functions.py exits EXITS_TXT VMLINUX [N]
       guest-functions.py timeline PERF_DATA VMLINUX L1_KALLSYMS [BIN_MS]

samples: the cpu-clock samples `perf record -a` took while a vCPU was in
guest mode (perf marks them guest-kernel: KVM tells it the guest's RIP),
counted by the guest function they landed in. exits: lines "reason rip
info1 info2" (kvm:kvm_exit, as probe-guest-time.sh writes them), counted
by reason and guest function. VMLINUX: the guest's kernel with its symbols
(the micro kernel keeps them; no KASLR).

timeline: the same samples in time order, per boot (a boot: guest samples
with no gap of 150 ms), in bins of BIN_MS (default 10): each bin's sample
count and its four commonest places: G: a guest kernel function, GU: the
guest's user space, K: an L1 kernel function (named from L1_KALLSYMS, the
L1's /proc/kallsyms: RESULTS/l1-kallsyms), U: an L1 thread. It shows what
runs when: e.g. the L1 zeroing huge pages for the guest (K:clear_page_rep
under the vCPU thread) between two guest functions.
"""
import bisect
import collections
import re
import subprocess
import sys


def symbols(vmlinux):
    """Text symbols of VMLINUX, sorted by address."""
    nm = subprocess.run(["nm", "-n", vmlinux], capture_output=True, text=True, check=True)
    syms = []
    for line in nm.stdout.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[1] in "tTwW":
            syms.append((int(fields[0], 16), fields[2]))
    return syms


def namer(syms):
    addrs = [a for a, _ in syms]

    def name(ip):
        i = bisect.bisect_right(addrs, ip) - 1
        return syms[i][1] if i >= 0 and ip - addrs[i] < 0x10000 else hex(ip)
    return name


def samples(data, name, top):
    dump = subprocess.run(["perf", "script", "-i", data, "-D"], capture_output=True,
                          text=True, check=True).stdout
    kinds = collections.Counter()
    functions = collections.Counter()
    # "PERF_RECORD_SAMPLE(IP, 0x4): pid/tid: 0xip": misc 4 is guest kernel
    for m in re.finditer(r"PERF_RECORD_SAMPLE\(IP, (0x[0-9a-f]+)\): \d+/\d+: (0x[0-9a-f]+)", dump):
        misc = int(m.group(1), 16) & 7
        kinds[misc] += 1
        if misc == 4:
            functions[name(int(m.group(2), 16))] += 1
    labels = {1: "L1 kernel", 2: "L1 user", 4: "guest kernel", 5: "guest user"}
    print("samples:", ", ".join(f"{labels.get(k, k)} {n}" for k, n in kinds.most_common()))
    guest = max(kinds[4], 1)
    for function, n in functions.most_common(top):
        print(f"{n:7d} {100 * n / guest:5.1f}%  {function}")


def exits(path, name, top):
    reasons = collections.Counter()
    by_function = collections.Counter()
    with open(path) as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 2:
                reasons[fields[0]] += 1
                by_function[(fields[0], name(int(fields[1], 16)))] += 1
    print(sum(reasons.values()), "exits:", ", ".join(f"{r} {n}" for r, n in reasons.most_common()))
    for (reason, function), n in by_function.most_common(top):
        print(f"{n:7d} {reason:12s} {function}")


def kallsyms(path):
    """Text symbols of an L1's /proc/kallsyms copy, sorted by address."""
    syms = []
    with open(path) as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 3 and fields[1] in "tTwW":
                syms.append((int(fields[0], 16), fields[2]))
    return sorted(syms)


def timeline(data, name, l1_name, bin_ms):
    dump = subprocess.run(["perf", "script", "-i", data, "-D"], capture_output=True,
                          text=True, check=True).stdout
    comm = {int(m.group(2)): m.group(1)
            for m in re.finditer(r"PERF_RECORD_COMM(?: exec)?: (.*?):\d+/(\d+)", dump)}
    places = []
    for m in re.finditer(r"^\d+ (\d+) 0x[0-9a-f]+ \[0x[0-9a-f]+\]: "
                         r"PERF_RECORD_SAMPLE\(IP, (0x[0-9a-f]+)\): \d+/(\d+): (0x[0-9a-f]+)",
                         dump, re.M):
        misc, tid, ip = int(m.group(2), 16) & 7, int(m.group(3)), int(m.group(4), 16)
        place = {4: lambda: "G:" + name(ip), 5: lambda: "GU",
                 1: lambda: "K:" + (l1_name(ip) if tid else "idle")}.get(
                     misc, lambda: "U:" + comm.get(tid, str(tid)))()
        places.append((int(m.group(1)), misc, place))
    places.sort()
    guest = [t for t, misc, _ in places if misc in (4, 5)]
    if not guest:
        sys.exit("no guest samples")
    gaps = [(a, b) for a, b in zip(guest, guest[1:]) if b - a > 150e6]
    starts = [guest[0]] + [b for _, b in gaps]
    ends = [a for a, _ in gaps] + [guest[-1]]
    for i, (start, end) in enumerate(zip(starts, ends)):
        print(f"=== boot {i}: guest samples over {(end - start) / 1e6:.0f} ms")
        bins = collections.defaultdict(collections.Counter)
        for t, _, place in places:
            if start - 5e6 <= t <= end + 1e6:
                bins[int((t - start) // (bin_ms * 1e6))][place] += 1
        for b in sorted(bins):
            top = ", ".join(f"{p} {n}" for p, n in bins[b].most_common(4))
            print(f"{b * bin_ms:7.0f} {sum(bins[b].values()):4d}  {top}")


def main():
    if len(sys.argv) < 4 or sys.argv[1] not in ("samples", "exits", "timeline") or (
            sys.argv[1] == "timeline" and len(sys.argv) < 5):
        sys.exit(__doc__.strip().split("\n\n")[1])
    name = namer(symbols(sys.argv[3]))
    if sys.argv[1] == "timeline":
        bin_ms = float(sys.argv[5]) if len(sys.argv) > 5 else 10
        timeline(sys.argv[2], name, namer(kallsyms(sys.argv[4])), bin_ms)
        return
    top = int(sys.argv[4]) if len(sys.argv) > 4 else 40
    (samples if sys.argv[1] == "samples" else exits)(sys.argv[2], name, top)


main()
