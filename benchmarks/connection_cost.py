# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Per-task cost of Ansible against a stand-in host, by connection, side by side in one run.

    python3 benchmarks/connection_cost.py [--tasks 30] [--repeat 3] [--output FILE]

Starts its own stand-in (a Debian 12 container from `make images`, sshd published on this
machine's loopback only, a throwaway key pair and known_hosts), then runs one playbook of
--tasks `ansible.builtin.ping` tasks (a module round trip each, no work on the host) through:

  podman             the containers.podman.podman connection (podman exec + file copies)
  podman_pipelining  the same with pipelining on
  ssh                OpenSSH with ControlPersist, without pipelining
  ssh_pipelining     OpenSSH with ControlPersist and pipelining (what the tests and the demo use)

and prints seconds per task (median of --repeat runs, after one warm-up run per connection)
and each one's ratio to ssh_pipelining. The stand-in is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUTPUT = os.path.join(REPO, "benchmarks", "results", "connection_cost.json")
IMAGE = "localhost/gpu-stack/debian12:latest"
NAME = "gpu-stack-bench-connection"


def run(cmd, **kwargs):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)


def start_standin(workdir):
    """A stand-in with sshd on a loopback port; returns (port, key, known_hosts)."""
    run(["podman", "run", "--detach", "--replace", "--name", NAME, "--hostname", NAME, "--systemd=always",
         "--privileged", "--cgroupns=host", "--volume", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
         "--publish", "127.0.0.1::22", IMAGE, "/sbin/init"])
    key = os.path.join(workdir, "id_ed25519")
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key])
    with open(key + ".pub", encoding="utf-8") as handle:
        pubkey = handle.read().strip()
    with open(os.path.join(REPO, "scripts", "standin-init.sh"), encoding="utf-8") as script:
        host_key = run(["podman", "exec", "-i", NAME, "sh", "-s", "root", pubkey], stdin=script).stdout.split("\n")
    port = run(["podman", "port", NAME, "22/tcp"]).stdout.strip().rsplit(":", 1)[1]
    known_hosts = os.path.join(workdir, "known_hosts")
    with open(known_hosts, "w", encoding="utf-8") as handle:
        handle.write("[127.0.0.1]:%s %s\n" % (port, [line for line in host_key if line.strip()][-1]))
    return port, key, known_hosts


def inventories(workdir, port, key, known_hosts):
    ssh = {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": int(port),
           "ansible_user": "root", "ansible_private_key_file": key,
           "ansible_ssh_common_args": "-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes "
                                      "-o ControlMaster=auto -o ControlPersist=300s" % known_hosts}
    podman = {"ansible_connection": "containers.podman.podman", "ansible_host": NAME}
    kinds = {"podman": (podman, False), "podman_pipelining": (podman, True),
             "ssh": (ssh, False), "ssh_pipelining": (ssh, True)}
    out = {}
    for kind, (variables, pipelining) in kinds.items():
        path = os.path.join(workdir, kind + ".json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({"all": {"hosts": {"standin": dict(variables, ansible_pipelining=pipelining)}}}, handle)
        out[kind] = path
    return out


def playbook(workdir, tasks):
    path = os.path.join(workdir, "ping.yml")
    lines = ["---", "- name: No-op tasks", "  hosts: all", "  gather_facts: false", "  tasks:"]
    for number in range(tasks):
        lines += ["    - name: Ping %d" % number, "      ansible.builtin.ping:"]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def timed_run(play, inventory):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_PYTHON_INTERPRETER="/usr/bin/python3",
               PATH=os.path.join(REPO, ".venv", "bin") + os.pathsep + os.environ["PATH"])
    start = time.monotonic()
    proc = subprocess.run(["ansible-playbook", "-i", inventory, play], env=env, capture_output=True, text=True,
                          check=False)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stdout[-3000:] + proc.stderr[-3000:])
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--tasks", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    result = {"tasks": args.tasks, "repeat": args.repeat, "load_average_start": os.getloadavg(), "per_task_s": {}}
    with tempfile.TemporaryDirectory() as workdir:
        try:
            paths = inventories(workdir, *start_standin(workdir))
            play = playbook(workdir, args.tasks)
            runs = {kind: [] for kind in paths}
            for kind, inventory in paths.items():
                timed_run(play, inventory)  # warm-up: interpreter discovery, SSH master connection
            for _round in range(args.repeat):
                for kind, inventory in paths.items():   # interleaved, so load changes hit every kind
                    runs[kind].append(timed_run(play, inventory))
        finally:
            subprocess.run(["podman", "rm", "--force", "--time", "5", NAME], capture_output=True, check=False)
    for kind, seconds in runs.items():
        result["per_task_s"][kind] = round(statistics.median(seconds) / args.tasks, 3)
    floor = result["per_task_s"]["ssh_pipelining"]
    result["ratio_to_ssh_pipelining"] = {kind: round(value / floor, 2) for kind, value in result["per_task_s"].items()}
    result["runs_s"] = {kind: [round(s, 1) for s in seconds] for kind, seconds in runs.items()}
    result["load_average_end"] = os.getloadavg()
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)
    print("%-18s %12s %22s" % ("connection", "s per task", "x ssh_pipelining"))
    for kind, value in result["per_task_s"].items():
        print("%-18s %12.3f %22.2f" % (kind, value, result["ratio_to_ssh_pipelining"][kind]))
    print("load average %s -> %s" % (tuple(round(v, 2) for v in result["load_average_start"]),
                                     tuple(round(v, 2) for v in result["load_average_end"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
