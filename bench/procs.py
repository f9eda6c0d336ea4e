#!/usr/bin/env python3
"""What bench/run.sh reads from /proc about the servers it measures: one Python process
reading /proc, so that sampling costs every server the same little CPU, however many
processes it has. Each PID counts with its descendants (threads share their process's).

    procs.py peak-rss LOAD_PID PID...   the largest RSS (MiB) of the processes, sampled
                                        every 250 ms while LOAD_PID (the load generator) runs
    procs.py settle PID...              exits 0 once the processes use under 2 clock ticks
                                        (20 ms of CPU) in half a second, 1 after 10 s
"""
import os
import sys
import time


def tree(pid):
    pids = [pid]
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                for child in f.read().split():
                    pids += tree(int(child))
    except OSError:
        pass
    return pids


def stat_fields(pid):
    """The fields of /proc/PID/stat after the command name, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def running(pid):  # a zombie has finished too
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def cpu_ticks(roots):  # utime + stime of every process (each counts all its threads)
    total = 0
    for root in roots:
        for pid in tree(root):
            fields = stat_fields(pid)
            if fields is not None:
                total += int(fields[11]) + int(fields[12])
    return total


def peak_rss(load, roots):
    peak = 0
    while running(load):
        peak = max(peak, sum(rss_kib(p) for root in roots for p in tree(root)))
        time.sleep(0.25)
    print(peak // 1024)
    return 0


def settle(roots):
    deadline = time.monotonic() + 10
    before = cpu_ticks(roots)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = cpu_ticks(roots)
        if now - before < 2:
            return 0
        before = now
    return 1


def main(args):
    if len(args) >= 2 and args[0] == "peak-rss":
        return peak_rss(int(args[1]), [int(p) for p in args[2:]])
    if len(args) >= 1 and args[0] == "settle":
        return settle([int(p) for p in args[1:]])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
