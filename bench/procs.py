#!/usr/bin/env python3
"""What bench/run.sh reads from /proc about the servers it measures: one Python process
reading /proc, so that sampling costs every server the same little CPU, however many
processes it has. Each PID counts with its descendants (threads share their process's).

    procs.py load LOAD_PID ROOT...      while LOAD_PID (the load generator) runs: the largest
                                        RSS (MiB) of the processes, sampled every 250 ms, and
                                        the CPU time they used meanwhile, in clock ticks, by
                                        role: prints "peak_mib php_user php_sys http_user
                                        http_sys" (http -1 -1 when no process is HTTP's alone)
    procs.py settle PID...              exits 0 once the processes use under 2 clock ticks
                                        (20 ms of CPU) in half a second, 1 after 10 s

A ROOT of `load` is ROLE=PID, ROLE one of php (the tree runs PHP: php-fpm), http (it
serves HTTP: nginx), both (one process does both: Apache + mod_php, counted as php), or
split (tokio_php: its PHP worker threads, named php-worker-N or php-worker-mode, are php;
every other thread, and the threads that have exited, are http).
"""
import os
import re
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


def read_stat(path):
    """(command name, the fields after it) of a /proc stat file, or None once it is gone."""
    try:
        with open(path) as f:
            text = f.read()
        name, rest = text.split("(", 1)[1].rsplit(")", 1)
        return name, rest.split()
    except (OSError, IndexError, ValueError):
        return None


def stat_fields(pid):
    """The fields of /proc/PID/stat after the command name, or None once it is gone."""
    stat = read_stat(f"/proc/{pid}/stat")
    return stat[1] if stat else None


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


# A tokio_php thread that runs PHP scripts (src/php/pool.rs, src/php/worker.rs; the kernel
# keeps 15 characters of a name): not php-worker-watch, which only watches files.
PHP_THREAD = re.compile(r"php-worker-(\d+|mode)")
ROLES = ("php", "http", "both", "split")


def task_ticks(pid):
    """(user, system) ticks of the process PID's PHP threads, by name."""
    user = system = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0, 0
    for tid in tids:
        stat = read_stat(f"/proc/{pid}/task/{tid}/stat")
        if stat and PHP_THREAD.fullmatch(stat[0]):
            fields = stat[1]
            user += int(fields[11])
            system += int(fields[12])
    return user, system


def role_ticks(roots):
    """{role: [user, system]} over the trees of roots [(role, pid)]: php and http."""
    ticks = {"php": [0, 0], "http": [0, 0]}
    for role, root in roots:
        for pid in tree(root):
            fields = stat_fields(pid)
            if fields is None:
                continue
            user, system = int(fields[11]), int(fields[12])
            if role == "split":
                php_user, php_system = task_ticks(pid)
                ticks["php"][0] += php_user
                ticks["php"][1] += php_system
                ticks["http"][0] += user - php_user
                ticks["http"][1] += system - php_system
            else:
                key = "http" if role == "http" else "php"
                ticks[key][0] += user
                ticks[key][1] += system
    return ticks


def parse_roots(args):
    roots = []
    for arg in args:
        role, _, pid = arg.partition("=")
        if role not in ROLES or not pid.isdigit():
            raise SystemExit(f"procs.py: a root is ROLE=PID with ROLE one of {', '.join(ROLES)}, not '{arg}'")
        roots.append((role, int(pid)))
    return roots


def load(load_pid, roots):
    pids = [pid for _, pid in roots]
    before = role_ticks(roots)
    peak = 0
    while running(load_pid):
        peak = max(peak, sum(rss_kib(p) for root in pids for p in tree(root)))
        time.sleep(0.25)
    after = role_ticks(roots)
    used = {k: [after[k][i] - before[k][i] for i in (0, 1)] for k in after}
    if not any(role == "http" or role == "split" for role, _ in roots):
        used["http"] = [-1, -1]
    print(peak // 1024, *used["php"], *used["http"])
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
    if len(args) >= 2 and args[0] == "load":
        return load(int(args[1]), parse_roots(args[2:]))
    if len(args) >= 1 and args[0] == "settle":
        return settle([int(p) for p in args[1:]])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
