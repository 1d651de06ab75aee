# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One model across several nodes: the checks that compare the nodes of a group.

A model served by a group of nodes (vLLM + Ray, or SGLang multi-node) only starts when every node
runs the same driver, CUDA, engine image, Ray and Python (Ray refuses mismatched Python patch
versions), holds the same model revision, has the named interface with an address, and reaches the
other nodes on the group's ports. node_facts gathers one node's facts; check_group compares the
facts of every node and returns results shaped like _preflight.result(): each failure names the
node, the value and the fix. Pure functions apart from node_facts; Python 3.9+, standard library.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _preflight as preflight
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _vram as vram

# The facts that must be identical on every node, with what to do when one differs.
SAME_EVERYWHERE = (
    ("driver_version", "NVIDIA driver", "install the same driver on every node (nvidia_driver_version in the "
                                        "group's variables) and reboot the odd node"),
    ("cuda_version", "CUDA version the driver reports", "install the same driver on every node; the CUDA version "
                                                        "follows the driver"),
    ("image_digest", "engine image digest", "pull the same image by digest on every node (cluster_engine_image "
                                            "with @sha256:...)"),
    ("ray_version", "Ray version", "install the same Ray on every node (one hashed lock for the group)"),
    ("python_version", "Python version", "use the same Python, to the patch release, on every node: Ray refuses "
                                         "nodes whose Python differs"),
    ("manifest_sha256", "model revision manifest", "place the same revision on every node (model_storage with the "
                                                   "same source and commit), then run again"),
)

_SIOCGIFADDR = 0x8915


def interface_addresses():
    """{interface name: [IPv4 addresses]} of this host, read with the SIOCGIFADDR ioctl (no
    iproute2 needed); an interface without an IPv4 address maps to []."""
    import fcntl
    found = {}
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _index, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
                found[name] = [socket.inet_ntoa(packed[20:24])]
            except OSError:
                found[name] = []
    finally:
        probe.close()
    return found


def manifest_sha256(model_dir):
    """sha256 of the manifest of the revision <model_dir>/current points at, or None when there is
    none (model_storage writes <revision>.manifest.json beside the revision)."""
    current = os.path.join(model_dir, "current")
    if not os.path.exists(current):
        return None
    path = os.path.normpath(os.path.realpath(current)) + ".manifest.json"
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except (IOError, OSError):
        return None


def driver_version(proc_root="/proc"):
    """The loaded NVIDIA kernel module's version from /proc/driver/nvidia/version, or None."""
    try:
        with open(os.path.join(proc_root, "driver/nvidia/version"), "r") as handle:
            first = handle.readline()
    except (IOError, OSError):
        return None
    for word in first.split():
        if word[:1].isdigit() and "." in word:
            return word
    return None


def _majority(values):
    counts = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))[0][0]


def check_same(nodes, key, what, fix):
    """All nodes report the same value of key. A node without it (None) while others have it is a
    failure too; no node with it: skipped (None returned)."""
    values = dict((name, facts.get(key)) for name, facts in nodes.items())
    known = dict((n, v) for n, v in values.items() if v not in (None, ""))
    if not known:
        return None
    common = _majority(list(known.values()))
    odd = sorted(n for n, v in values.items() if v != common)
    numbers = {"values": values, "expected": common}
    if not odd:
        return preflight.result("same_" + key, True, preflight.BLOCKING,
                                "%s %s on every node (%s)" % (what, common, ", ".join(sorted(nodes))), numbers)
    detail = "; ".join("node %s has %s" % (n, values[n] if values[n] not in (None, "") else "none") for n in odd)
    return preflight.result("same_" + key, False, preflight.BLOCKING,
                            "%s differs: %s where the other nodes have %s" % (what, detail, common), numbers,
                            "%s (on %s)" % (fix, ", ".join(odd)))


def check_interface(nodes, interface):
    """Every node has the interface with an IPv4 address."""
    bad = []
    for name in sorted(nodes):
        addresses = (nodes[name].get("interfaces") or {}).get(interface)
        if addresses is None:
            have = ", ".join(sorted(nodes[name].get("interfaces") or {})) or "none"
            bad.append("node %s has no interface %s (it has: %s)" % (name, interface, have))
        elif not addresses:
            bad.append("node %s has interface %s without an IPv4 address" % (name, interface))
    numbers = {"interface": interface,
               "addresses": dict((n, (nodes[n].get("interfaces") or {}).get(interface)) for n in sorted(nodes))}
    if bad:
        return preflight.result("interface", False, preflight.BLOCKING, "; ".join(bad), numbers,
                                "set cluster.interface to the interface of the private segment that every node of "
                                "the group has (NCCL_SOCKET_IFNAME and GLOO_SOCKET_IFNAME use it), or give the "
                                "node an address on it")
    return preflight.result("interface", True, preflight.BLOCKING,
                            "interface %s has an address on every node" % interface, numbers)


def check_node_count(nodes, layout):
    expected = layout["nodes"]
    names = sorted(nodes)
    numbers = {"expected": expected, "nodes": names}
    if len(names) != expected:
        return preflight.result("node_count", False, preflight.BLOCKING,
                                "the layout needs %d nodes but the group has %d (%s)"
                                % (expected, len(names), ", ".join(names) or "none"), numbers,
                                "put exactly %d hosts in the group, or set layout.nodes to %d"
                                % (expected, len(names)))
    return preflight.result("node_count", True, preflight.BLOCKING, "%d nodes: %s" % (expected, ", ".join(names)),
                            numbers)


def check_ports(probes, ports):
    """probes: [{from, to, port, ok}] of every node to every other node on every port."""
    if not probes:
        return None
    failed = [p for p in probes if not p.get("ok")]
    numbers = {"ports": list(ports), "probes": len(probes), "failed": failed}
    if failed:
        lines = ["node %s cannot reach %s:%s" % (p["from"], p["to"], p["port"]) for p in failed]
        return preflight.result("ports", False, preflight.BLOCKING, "; ".join(lines), numbers,
                                "open TCP %s between the nodes of the group on the private segment (firewall, "
                                "security group), or choose free ports in the model's cluster settings"
                                % ", ".join(str(p) for p in ports))
    return preflight.result("ports", True, preflight.BLOCKING,
                            "every node reaches every other on %s" % ", ".join(str(p) for p in ports), numbers)


def estimate_per_gpu(profile, layout, engine, dtype="auto", kv_cache_dtype="auto", context_length=None,
                     max_num_seqs=1):
    """The _vram estimate on the busiest GPU for the group's tensor x pipeline parallel layout."""
    return vram.estimate_memory(profile, dtype=dtype, kv_cache_dtype=kv_cache_dtype, context_length=context_length,
                                max_num_seqs=max_num_seqs, tensor_parallel_size=layout["tensor_parallel_size"],
                                pipeline_parallel_size=layout["pipeline_parallel_size"], engine=engine)


def check_memory(nodes, est, layout, utilization):
    """The estimate per GPU against the smallest GPU of every node (GPU facts), and every node has
    the GPUs per node the layout needs. Nodes without GPU facts: skipped (None)."""
    per_node = layout["tensor_parallel_size"] * layout["pipeline_parallel_size"] // layout["nodes"]
    with_gpus = dict((n, f) for n, f in nodes.items() if f.get("gpus"))
    if not with_gpus:
        return None
    need = est["need_per_gpu_bytes"]
    problems = []
    smallest = {}
    for name in sorted(nodes):
        gpus = nodes[name].get("gpus") or []
        if len(gpus) < per_node:
            problems.append("node %s has %d GPU%s, the layout needs %d per node"
                            % (name, len(gpus), "" if len(gpus) == 1 else "s", per_node))
            continue
        total = min(g.get("memory_total") or 0 for g in gpus)
        smallest[name] = total
        if need > total * utilization:
            problems.append("node %s: needs %s per GPU, %.2f of its %s GPUs is %s"
                            % (name, vram.format_bytes(need), utilization, vram.format_bytes(total),
                               vram.format_bytes(int(total * utilization))))
    numbers = {"need_per_gpu_bytes": need, "gpu_memory_utilization": utilization, "smallest_gpu_bytes": smallest,
               "tensor_parallel_size": layout["tensor_parallel_size"],
               "pipeline_parallel_size": layout["pipeline_parallel_size"]}
    if problems:
        return preflight.result("gpu_memory", False, preflight.BLOCKING, "; ".join(problems), numbers,
                                "add nodes (layout.nodes and pipeline_parallel_size), use a smaller format (fp8) or "
                                "an fp8 KV cache, or lower max_model_len or max_num_seqs")
    return preflight.result("gpu_memory", True, preflight.BLOCKING,
                            "needs %s per GPU at tensor parallel %d x pipeline parallel %d; fits on every node"
                            % (vram.format_bytes(need), layout["tensor_parallel_size"],
                               layout["pipeline_parallel_size"]), numbers)


def check_group(nodes, layout, interface=None, probes=None, ports=(), estimate=None, utilization=0.9):
    """Every cross-node check. nodes: {node name: node facts}. Returns (results, skipped)."""
    results = [check_node_count(nodes, layout)]
    skipped = []
    for key, what, fix in SAME_EVERYWHERE:
        outcome = check_same(nodes, key, what, fix)
        if outcome is None:
            skipped.append("same_%s: no node reports a %s" % (key, what))
        else:
            results.append(outcome)
    if interface:
        results.append(check_interface(nodes, interface))
    else:
        skipped.append("interface: no interface named")
    outcome = check_ports(probes or [], ports)
    if outcome is None:
        skipped.append("ports: no reachability probes given")
    else:
        results.append(outcome)
    if estimate is not None:
        outcome = check_memory(nodes, estimate, layout, utilization)
        if outcome is None:
            skipped.append("gpu_memory: no node reports GPUs (needs %s per GPU)"
                           % vram.format_bytes(estimate["need_per_gpu_bytes"]))
        else:
            results.append(outcome)
    return results, skipped


def blocking_lines(results):
    return ["%s: %s. Fix: %s" % (r["check"], r["message"], r["fix"]) for r in results
            if not r["ok"] and r["severity"] == preflight.BLOCKING]
