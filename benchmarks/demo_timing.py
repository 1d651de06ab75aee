# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Time `make demo`: a cold run on a fresh stand-in host, the converged re-run of site.yml,
and the same number of no-op tasks against the same host over the same connection (SSH with
pipelining, become) as the floor Ansible itself sets.

    python3 benchmarks/demo_timing.py [--cold] [--output benchmarks/results/demo_timing.json]

--cold removes the demo stand-in first (`scripts/demo.sh destroy`), so the first run starts
from a bare container; the llama.cpp image and the model come from the cache either way
(`make setup`; building the image uncached is a separate, one-off cost). Without --cold only
the converged run and the no-op floor are measured. Run from the checkout, with .venv made.

Two floors are given: as many no-op tasks as the converged run has tasks (ok + skipped: every
task costs Ansible's per-task work, a skipped one no round trip), and as many as it ran on the
host (ok only, the stricter one). converged_over_noop is the ratio to the first.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUTPUT = os.path.join(REPO, "benchmarks", "results", "demo_timing.json")
RECAP = re.compile(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)")


def env():
    return dict(os.environ, PATH=os.path.join(REPO, ".venv", "bin") + os.pathsep + os.environ["PATH"],
                ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1")


def timed(cmd):
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, check=False)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit("%s failed with rc %d" % (" ".join(cmd), proc.returncode))
    return seconds, proc.stdout


def recap(out):
    match = RECAP.findall(out)
    if not match:
        raise SystemExit("no PLAY RECAP in the output")
    ok, changed, _unreachable, _failed, skipped = (int(v) for v in match[-1])
    return {"ok": ok, "changed": changed, "skipped": skipped}


def site_seconds(out):
    match = re.search(r"demo: site.yml took (\d+) s", out)
    return int(match.group(1)) if match else None


def noop_playbook(tasks, path):
    # Each no-op task runs a module on the host (ping: one round trip through the same
    # connection, no work), the cost every real task pays at least once.
    lines = ["---", "- name: As many no-op tasks as the converged site.yml runs", "  hosts: gpu_hosts",
             "  become: true", "  gather_facts: false", "  tasks:"]
    for number in range(tasks):
        lines += ["    - name: No-op %d" % number, "      ansible.builtin.ping:"]
    with open(path, "w", encoding="utf-8") as fileobj:
        fileobj.write("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--cold", action="store_true", help="start from a fresh stand-in host")
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    result = {"load_average_start": os.getloadavg()}
    if args.cold:
        timed(["scripts/demo.sh", "destroy"])
        seconds, out = timed(["scripts/demo.sh"])
        result["cold_demo_seconds"] = round(seconds, 1)
        result["cold_site_seconds"] = site_seconds(out)
        result["cold_recap"] = recap(out)
    seconds, out = timed(["scripts/demo.sh"])
    counts = recap(out)
    result["converged_demo_seconds"] = round(seconds, 1)
    result["converged_site_seconds"] = site_seconds(out)
    result["converged_recap"] = counts
    floors = {"noop": counts["ok"] + counts["skipped"], "noop_ok_only": counts["ok"]}
    with tempfile.TemporaryDirectory() as tmp:
        for key, tasks in floors.items():
            path = os.path.join(tmp, key + ".yml")
            noop_playbook(tasks, path)
            seconds, out = timed(["ansible-playbook", path, "-i", "inventories/local/hosts.yml"])
            result[key + "_tasks"] = tasks
            result[key + "_seconds"] = round(seconds, 1)
            if result["converged_site_seconds"]:
                result["converged_over_" + key] = round(result["converged_site_seconds"] / seconds, 2)
    result["load_average_end"] = os.getloadavg()
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as fileobj:
        json.dump(result, fileobj, indent=2)
    for key, value in result.items():
        print("%-26s %s" % (key, value))
    if counts["changed"] != 0:
        raise SystemExit("the converged run changed %d tasks" % counts["changed"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
