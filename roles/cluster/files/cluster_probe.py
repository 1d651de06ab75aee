# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reachability of a group's ports between its nodes, before any service runs.

listen: accept connections on each port for a while (a port already in use, such as a running
Ray head, is left to its owner: it answers the probe itself). connect: try each target until it
answers or the time is up; print one JSON list of {from, to, port, ok}.
"""
import argparse
import json
import select
import socket
import sys
import time


def listen(ports, seconds):
    sockets = []
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            sock.close()
            continue
        sock.listen(16)
        sockets.append(sock)
    end = time.time() + seconds
    while sockets and time.time() < end:
        ready, _writable, _errors = select.select(sockets, [], [], 0.5)
        for sock in ready:
            conn, _addr = sock.accept()
            conn.close()
    for sock in sockets:
        sock.close()


def connect(origin, targets, seconds):
    results = []
    for target in targets:
        end = time.time() + seconds
        ok = False
        # A node without an address on the group's interface cannot be reached on it.
        while target.get("address") and not ok and time.time() < end:
            try:
                socket.create_connection((target["address"], int(target["port"])), timeout=2).close()
                ok = True
            except (OSError, TypeError):
                time.sleep(0.5)
        results.append({"from": origin, "to": target["to"], "port": int(target["port"]), "ok": ok})
    json.dump(results, sys.stdout)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["listen", "connect"])
    parser.add_argument("--ports", default="")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--from", dest="origin", default="")
    parser.add_argument("--targets", default="[]")
    args = parser.parse_args()
    if args.mode == "listen":
        listen([int(p) for p in args.ports.split(",") if p], args.seconds)
    else:
        connect(args.origin, json.loads(args.targets), args.seconds)


if __name__ == "__main__":
    main()
