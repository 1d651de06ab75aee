# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Health of a Ray group: every expected node alive, as the head's GCS sees it.

Prints one JSON object (alive, expected, nodes with address, alive and GPU resources). Exits 0
when at least --expect nodes are alive, 1 naming the nodes that are not (within --wait seconds).
"""
import argparse
import json
import sys
import time


def snapshot(ray):
    nodes = []
    for entry in ray.nodes():
        nodes.append({"address": entry.get("NodeManagerAddress"), "name": entry.get("NodeName"),
                      "alive": bool(entry.get("Alive")), "gpus": (entry.get("Resources") or {}).get("GPU", 0)})
    return nodes


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--wait", type=int, default=0)
    args = parser.parse_args()
    import ray
    ray.init(address=args.address, logging_level="ERROR", log_to_driver=False)
    end = time.time() + args.wait
    while True:
        nodes = snapshot(ray)
        alive = [n for n in nodes if n["alive"]]
        if len(alive) >= args.expect or time.time() >= end:
            break
        time.sleep(2)
    dead = sorted(set(n["address"] for n in nodes if not n["alive"]) - set(n["address"] for n in alive))
    report = {"alive": len(alive), "expected": args.expect, "dead": dead, "nodes": nodes}
    print(json.dumps(report, sort_keys=True))
    if len(alive) < args.expect:
        sys.stderr.write("Ray group unhealthy: %d of %d nodes alive; lost: %s. Fix: look at the Ray unit on those "
                         "nodes (journalctl -u gpu-stack-cluster-*-ray) and restart it\n"
                         % (len(alive), args.expect, ", ".join(dead) or "nodes that never joined"))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
