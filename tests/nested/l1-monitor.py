#!/usr/bin/python3
"""The L1's QEMU, through its human monitor on a unix socket.

kick: every INTERVAL seconds, until QEMU ends, a key event (shift, which
types nothing) on the L1's i8042. QEMU 7.2's TCG loses a wake-up: wedged
L1s were found halted in native_safe_halt with IF set and their APIC
timer's vector (236) pending in IRR above PPR, QEMU's threads idle, for
good. Any new interrupt makes QEMU look at the APIC again and deliver it;
the keyboard's is one the L1 ignores.

facts: what a wedged L1 is doing, from the monitor and the host's /proc:
is its vCPU thread spinning (CPU time grows) or idle, where is its RIP (a
kernel symbol: the L1 boots nokaslr), what is pending in its APIC.
Printed on stdout; three samples 3 s apart.

usage: l1-monitor.py kick MONITOR_SOCKET INTERVAL
       l1-monitor.py facts MONITOR_SOCKET QEMU_PID KALLSYMS
"""
import bisect
import os
import re
import socket
import sys
import time

COMMANDS = ["info registers", "info lapic", "info pic", "info irq"]


def thread_ticks(pid):
    """{thread name/tid: utime+stime} of every thread of pid."""
    ticks = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        ticks[f"{name}/{tid}"] = int(fields[11]) + int(fields[12])
    return ticks


def ask_monitor(path, command):
    """One monitor command's answer (the text up to the next prompt)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        answer = b""
        for text in (None, command):
            if text is not None:
                s.sendall(text.encode() + b"\n")
                answer = b""
            while not answer.rstrip().endswith(b"(qemu)"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
        text = answer.decode(errors="replace")
        text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]|\r", "", text)
        # the first line is the monitor's echo of the command; the FPU and
        # vector registers say nothing here
        lines = text.replace("(qemu)", "").strip().split("\n")[1:]
        return "\n".join(l for l in lines if not re.match(r"(FPR|XMM|YMM|FCW|DR[0-7])", l))


def ask_monitor_again(monitor, command):
    """The kicker may hold the monitor for a moment: try a few times."""
    for attempt in range(5):
        try:
            return ask_monitor(monitor, command)
        except OSError as e:
            error = e
            time.sleep(0.5)
    return f"(monitor: {error})"


def load_symbols(path):
    symbols = []
    try:
        with open(path) as f:
            for line in f:
                addr, kind, name = line.split()[:3]
                if kind in "tTwW":
                    symbols.append((int(addr, 16), name))
    except OSError:
        pass
    symbols.sort()
    return symbols


def symbolize(symbols, rip):
    i = bisect.bisect_right(symbols, (rip, "\uffff")) - 1
    if i < 0 or rip >= 0xffffffffffe00000 or rip < 0xffffffff80000000:
        return "not in the L1 kernel's text (an L2 guest's or a user's code)"
    return f"{symbols[i][1]}+{rip - symbols[i][0]:#x}"


def kick(monitor, interval):
    """One connection per kick: the monitor takes one client at a time,
    and facts needs it between kicks."""
    while True:
        time.sleep(interval)
        try:
            ask_monitor(monitor, "sendkey shift")
        except (FileNotFoundError, ConnectionRefusedError):
            return  # QEMU has ended
        except OSError:
            continue


def facts(monitor, qemu, kallsyms):
    symbols = load_symbols(kallsyms)
    before = thread_ticks(qemu)
    for sample in range(3):
        time.sleep(3)
        now = thread_ticks(qemu)
        busy = {t: now[t] - before.get(t, 0) for t in now}
        print(f"== sample {sample + 1}: QEMU threads' CPU ticks in the last 3 s:",
              ", ".join(f"{t} {n}" for t, n in sorted(busy.items()) if n))
        before = now
        for command in COMMANDS:
            answer = ask_monitor_again(monitor, command)
            print(f"-- {command}:\n{answer}")
            m = re.search(r"RIP=([0-9a-f]+)", answer)
            if m:
                print(f"-- RIP is {symbolize(symbols, int(m.group(1), 16))}")
        sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:2] == ["kick"] and len(sys.argv) == 4:
        kick(sys.argv[2], float(sys.argv[3]))
    elif sys.argv[1:2] == ["facts"] and len(sys.argv) == 5:
        facts(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(__doc__)
