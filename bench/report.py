#!/usr/bin/env python3
"""The tables of bench/run.sh's report, from its measurements.

    python3 bench/report.py RESULTS.tsv [CORES]

CORES is the measured machine's core count (default: this machine's), for the share of the
cores the servers kept busy.

RESULTS.tsv has one line per measurement, tab-separated:

    case  protocol  connections  server  round  rps  p50_ms  p99_ms  errors  peak_rss_mib
    php_user_us  php_sys_us  http_user_us  http_sys_us

(p50 is h2load's mean for protocol h2; h2load gives no p99.) The last four are the CPU time
the server's processes used per request during the measurement, user and system, split
between the threads or processes that run PHP and those that serve HTTP (-1: not measured,
or one process does both); reports from before they were measured have none. Every server
of a case is measured once per round, the servers one after the other, so each round gives one pair
(tokio_php, peer) measured a few seconds apart; the ratio of a case is the median of those
pairs' ratios, with their spread. Each side's figures are medians over the rounds.

Prints Markdown: the per-case figures, the ratios, where the CPU goes, and the targets of
issue 18, each marked met or not met, with what the CPU account says stands in the way of
the PHP-bound ones that are not. The figures are information: nothing here decides an exit code.
"""

import csv
import os
import statistics
import sys
from collections import defaultdict

TOKIO = "tokio_php"
WORKER = "tokio_php worker"
FPM = "nginx+php-fpm"
APACHE = "apache+mod_php"
PEERS = [FPM, APACHE]

# (case, what is compared, threshold, "median" or "every round"), tokio_php ÷ peer.
TARGETS = [
    ("framework", "framework-style request, classic mode", 1.25, "median"),
    ("wordpress", "WordPress front page", 1.2, "median"),
    ("hello", "hello.php", 1.5, "median"),
    ("static", "100 KiB static file", 1.0, "every round"),
]
WORKER_TARGET = 4.0
# The targets where PHP's own execution is the request: what stands in the way is shown.
PHP_BOUND = ("framework", "wordpress")
CORES = os.cpu_count() or 1


def load(path):
    rows = []
    with open(path, newline="") as f:
        for r in csv.reader(f, delimiter="\t"):
            if not r:
                continue
            case, proto, conns, server, rnd, rps, p50, p99, errors, rss = r[:10]
            cpu = [int(x) for x in r[10:14]] if len(r) >= 14 else [-1, -1, -1, -1]
            rows.append(
                dict(case=case, proto=proto, conns=int(conns), server=server, round=int(rnd),
                     rps=float(rps), p50=float(p50), p99=float(p99), errors=int(errors),
                     rss=int(rss), php_user=cpu[0], php_sys=cpu[1], http_user=cpu[2],
                     http_sys=cpu[3]))
    return rows


def median(values):
    return statistics.median(values) if values else float("nan")


def by_round(rows, case, proto, server):
    return {r["round"]: r for r in rows
            if r["case"] == case and r["proto"] == proto and r["server"] == server}


def ratios(rows, case, proto, top, bottom):
    """Per-round ratios top ÷ bottom (req/s), for the rounds both were measured in."""
    a, b = by_round(rows, case, proto, top), by_round(rows, case, proto, bottom)
    return [a[n]["rps"] / b[n]["rps"] for n in sorted(a) if n in b and b[n]["rps"] > 0]


def fmt_ratio(rs):
    if not rs:
        return "—", "—", "—"
    spread = f"{min(rs):.2f}–{max(rs):.2f}" if len(rs) > 1 else f"{rs[0]:.2f}"
    return f"{median(rs):.2f}", spread, " / ".join(f"{x:.2f}" for x in rs)


def cases_in_order(rows, proto):
    seen = []
    for r in rows:
        if r["proto"] == proto and r["case"] not in seen:
            seen.append(r["case"])
    return seen


def servers_of(rows, case, proto):
    seen = []
    for r in rows:
        if r["case"] == case and r["proto"] == proto and r["server"] not in seen:
            seen.append(r["server"])
    return seen


def side(rows, case, proto, server):
    rs = list(by_round(rows, case, proto, server).values())
    return dict(
        rps=median([r["rps"] for r in rs]),
        rps_min=min(r["rps"] for r in rs), rps_max=max(r["rps"] for r in rs),
        p50=median([r["p50"] for r in rs]), p99=median([r["p99"] for r in rs]),
        errors=sum(r["errors"] for r in rs), rss=max(r["rss"] for r in rs),
        conns=rs[0]["conns"], n=len(rs))


def figures_table(rows, out):
    out.append("| case | conns | server | req/s (median) | req/s min–max | p50 ms | p99 ms "
               "| errors | peak RSS MiB |")
    out.append("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for case in cases_in_order(rows, "h1"):
        for server in servers_of(rows, case, "h1"):
            s = side(rows, case, "h1", server)
            out.append(f"| {case} | {s['conns']} | {server} | {s['rps']:.0f} "
                       f"| {s['rps_min']:.0f}–{s['rps_max']:.0f} | {s['p50']:.2f} "
                       f"| {s['p99']:.2f} | {s['errors']} | {s['rss']} |")


def ratio_table(rows, proto, out):
    latency = "p99 ms" if proto == "h1" else "mean ms"
    out.append(f"| case | tokio_php ÷ | median ratio | min–max | per round "
               f"| tokio_php req/s | peer req/s | tokio_php {latency} | peer {latency} |")
    out.append("|---|---|---:|---:|---|---:|---:|---:|---:|")
    key = "p99" if proto == "h1" else "p50"
    for case in cases_in_order(rows, proto):
        servers = servers_of(rows, case, proto)
        if WORKER in servers:
            pairs = [(WORKER, TOKIO, f"{TOKIO} classic (worker mode ÷ classic)")]
        else:
            pairs = [(TOKIO, peer, peer) for peer in servers if peer != TOKIO]
        for top, bottom, label in pairs:
            if top not in servers:
                continue
            med, spread, each = fmt_ratio(ratios(rows, case, proto, top, bottom))
            a, b = side(rows, case, proto, top), side(rows, case, proto, bottom)
            out.append(f"| {case} | {label} | **{med}** | {spread} | {each} "
                       f"| {a['rps']:.0f} | {b['rps']:.0f} | {a[key]:.2f} | {b[key]:.2f} |")


CPU_FIELDS = ("php_user", "php_sys", "http_user", "http_sys")


def cpu_of(rows, case, proto, server):
    """Median microseconds per request of each CPU field over the rounds (None: not measured)."""
    rs = list(by_round(rows, case, proto, server).values())
    return {k: (median([r[k] for r in rs if r[k] >= 0]) if any(r[k] >= 0 for r in rs) else None)
            for k in CPU_FIELDS}


def cpu_total(c):
    return sum(c[k] for k in CPU_FIELDS if c[k] is not None)


def busy(rows, case, server, total_us):
    return total_us * side(rows, case, "h1", server)["rps"] / 1e6 / CORES


def cpu_table(rows, out):
    out.append("| case | server | PHP user | PHP system | HTTP user | HTTP system | total "
               "| total × req/s ÷ cores |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for case in cases_in_order(rows, "h1"):
        for server in servers_of(rows, case, "h1"):
            c = cpu_of(rows, case, "h1", server)
            if c["php_user"] is None:
                continue
            cells = [("—" if c[k] is None else f"{c[k]:.0f}") for k in CPU_FIELDS]
            total = cpu_total(c)
            out.append(f"| {case} | {server} | {' | '.join(cells)} | {total:.0f} "
                       f"| {busy(rows, case, server, total):.0%} |")


def mark(ok):
    return "met" if ok else "**not met**"


def targets_table(rows, out):
    out.append(f"| target | vs {FPM} | vs {APACHE} |")
    out.append("|---|---|---|")
    for case, what, threshold, how in TARGETS:
        cells = []
        for peer in PEERS:
            rs = ratios(rows, case, "h1", TOKIO, peer)
            if not rs:
                cells.append("not measured")
            elif how == "median":
                cells.append(f"{median(rs):.2f} × — {mark(median(rs) >= threshold)}")
            else:
                cells.append(f"lowest round {min(rs):.2f} × — {mark(min(rs) >= threshold)}")
        label = f"{what}: ≥ {threshold:g} × ({'median of the rounds' if how == 'median' else 'in every round'})"
        if case == "static":
            label += "; the target is against nginx"
        out.append(f"| {label} | {cells[0]} | {cells[1]} |")
    rs = ratios(rows, "app", "h1", WORKER, TOKIO)
    cell = (f"{median(rs):.2f} × tokio_php classic — {mark(median(rs) >= WORKER_TARGET)}"
            if rs else "not measured")
    out.append(f"| worker mode ≥ {WORKER_TARGET:g} × classic (the app case, median) | {cell} | — |")
    cells = []
    for peer in PEERS:
        worse, compared = [], 0
        for case in cases_in_order(rows, "h1"):
            if peer not in servers_of(rows, case, "h1") or TOKIO not in servers_of(rows, case, "h1"):
                continue
            compared += 1
            t, p = side(rows, case, "h1", TOKIO)["p99"], side(rows, case, "h1", peer)["p99"]
            if t > p:
                worse.append(f"{case} {t:.2f} vs {p:.2f} ms")
        if compared == 0:
            cells.append("not measured")
        elif worse:
            cells.append("**not met**: " + "; ".join(worse))
        else:
            cells.append(f"met in all {compared} cases")
    out.append(f"| p99 no worse than the peer (median p99, every case) | {cells[0]} | {cells[1]} |")


def in_the_way(rows, out):
    """For each PHP-bound target not met against php-fpm: what the CPU account says."""
    lines = []
    for case, what, threshold, how in TARGETS:
        if case not in PHP_BOUND:
            continue
        rs = ratios(rows, case, "h1", TOKIO, FPM)
        if not rs or median(rs) >= threshold:
            continue
        t, f = cpu_of(rows, case, "h1", TOKIO), cpu_of(rows, case, "h1", FPM)
        if t["php_user"] is None or f["php_user"] is None or f["http_user"] is None:
            continue
        t_php, f_php = t["php_user"] + t["php_sys"], f["php_user"] + f["php_sys"]
        t_http, f_http = t["http_user"] + t["http_sys"], f["http_user"] + f["http_sys"]
        t_all, f_all = cpu_total(t), cpu_total(f)
        needed = f_all / threshold
        t_busy, f_busy = busy(rows, case, TOKIO, t_all), busy(rows, case, FPM, f_all)
        if abs(t_busy - f_busy) <= 0.05:
            share = (f"Their processes kept {t_busy:.0%} and {f_busy:.0%} of the cores busy, so "
                    "requests per second go as the inverse of this time")
        else:
            share = (f"Their processes kept {t_busy:.0%} and {f_busy:.0%} of the cores busy: part "
                    "of the gap in requests per second is time the cores spent elsewhere (the "
                    "load generator, the database, other programs), not time per request")
        lines.append(
            f"- {case}: {median(rs):.2f} ×, not {threshold:g} ×. CPU per request: tokio_php "
            f"{t_all:.0f} µs (PHP workers {t_php:.0f}, of it {t['php_sys']:.0f} in the kernel; "
            f"HTTP {t_http:.0f}), nginx + php-fpm {f_all:.0f} µs (php-fpm {f_php:.0f}, of it "
            f"{f['php_sys']:.0f} in the kernel; nginx {f_http:.0f}). {share}. At php-fpm's "
            f"{f_all:.0f} µs, {threshold:g} × needs tokio_php at {needed:.0f} µs, "
            f"{t_all - needed:.0f} µs less than now, against an HTTP side of {t_http:.0f} µs in "
            f"all: the rest would have to come out of PHP's own execution, {t_php / t_all:.0%} "
            f"of tokio_php's time and {t_php / f_php:.2f} × php-fpm's.")
    if lines:
        out += ["", "What stands in the way, from the CPU account above:", ""] + lines


def main():
    global CORES
    rows = load(sys.argv[1])
    if len(sys.argv) > 2:
        CORES = int(sys.argv[2])
    out = ["## Figures", "",
           "HTTP/1.1 keep-alive (wrk). Medians over the rounds; errors are summed (non-2xx "
           "responses and socket errors), peak RSS is the largest of the rounds (the "
           "server's processes, nginx's and php-fpm's together).", ""]
    figures_table(rows, out)
    out += ["", "## Ratios", "",
            "Requests per second, tokio_php ÷ peer, one pair per round (the two measured a few "
            "seconds apart); the median ratio, its spread and each round's. Latency columns "
            "are the medians over the rounds.", ""]
    ratio_table(rows, "h1", out)
    if cases_in_order(rows, "h2"):
        out += ["", "HTTP/2 cleartext (h2load, prior knowledge, 10 streams per connection); "
                "latency is h2load's mean time per request:", ""]
        ratio_table(rows, "h2", out)
    if any(r["php_user"] >= 0 for r in rows):
        out += ["", "## Where the CPU goes", "",
                "CPU time of the server's processes per request, in microseconds (median over "
                "the rounds), from /proc while the load ran: PHP is tokio_php's PHP worker "
                "threads and php-fpm's children, HTTP is every other tokio_php thread and "
                "nginx's workers; Apache's processes do both (all under PHP). The last column "
                "is the share of the machine's cores that makes at the median rate: what is "
                "left went to the load generator and the kernel's work outside the servers' "
                "time.", ""]
        cpu_table(rows, out)
    out += ["", "## Targets (issue 18)", "",
            "Information, not a pass/fail: the script's exit code does not depend on them.", ""]
    targets_table(rows, out)
    in_the_way(rows, out)
    print("\n".join(out))


if __name__ == "__main__":
    main()
