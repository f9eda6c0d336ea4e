#!/usr/bin/env python3
"""What idle keep-alive connections cost a server, in resident memory per connection.

Warms the server up with requests on short connections, takes its RSS, opens N
connections that each send one request (or none, with --no-request) and read the answer,
keeps them all open and idle for --settle seconds, takes the RSS again and prints the
difference per connection. Everything goes to 127.0.0.1.

    bench/idle_connections.py --port 18080 --pid 1234 --connections 10000 --path /hello.php
"""

import argparse
import socket
import sys
import time


def with_children(pids):
    """`pids` and their child processes (the supervisor's serving processes)."""
    out = []
    for pid in pids:
        out.append(pid)
        try:
            with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as children:
                out.extend(int(child) for child in children.read().split())
        except OSError:
            pass
    return out


def rss_kib(pids):
    """Sum of VmRSS over `pids` and their children (KiB)."""
    total = 0
    for pid in with_children(pids):
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def request(host, path, close):
    connection = "close" if close else "keep-alive"
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: {connection}\r\n\r\n".encode()


def read_response(sock):
    """Reads one response with a Content-Length; returns its status code."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"connection closed before the response head: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed mid-body")
        body += chunk
    return status


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, action="append", required=True,
                        help="server process whose RSS is measured (repeat for several)")
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--path", default="/hello.php")
    parser.add_argument("--warmup", type=int, default=2000,
                        help="requests on short connections before the first RSS sample")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds the connections sit idle before the second sample")
    parser.add_argument("--no-request", action="store_true",
                        help="connect only: the cost of a connection that has sent nothing")
    args = parser.parse_args()
    address = ("127.0.0.1", args.port)
    host = f"127.0.0.1:{args.port}"

    for _ in range(args.warmup):
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(request(host, args.path, close=True))
            if read_response(sock) != 200:
                sys.exit(f"warm-up request to {args.path} did not answer 200")
    time.sleep(args.settle)
    before = rss_kib(args.pid)

    started = time.monotonic()
    sockets = []
    for _ in range(args.connections):
        sock = socket.create_connection(address, timeout=10)
        if not args.no_request:
            sock.sendall(request(host, args.path, close=False))
            status = read_response(sock)
            if status != 200:
                sys.exit(f"request to {args.path} answered {status}")
        sockets.append(sock)
    opened_in = time.monotonic() - started
    time.sleep(args.settle)
    after = rss_kib(args.pid)

    # Every connection must still be open: a closed one would cost nothing.
    for sock in sockets:
        sock.setblocking(False)
        try:
            if sock.recv(1) == b"":
                sys.exit("the server closed an idle connection during the measurement")
        except BlockingIOError:
            pass
    mode = "no request" if args.no_request else f"one request to {args.path}"
    per = (after - before) / args.connections
    print(f"{args.connections} idle HTTP/1.1 connections ({mode}, opened in {opened_in:.1f} s, "
          f"idle {args.settle:.0f} s): RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB, "
          f"{per:.1f} KiB per connection")
    for sock in sockets:
        sock.close()


if __name__ == "__main__":
    main()
