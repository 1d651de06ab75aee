# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Cost of gathering GPU facts: the gpu_facts module's own work (NVML init + every query +
shutdown) against running and parsing `nvidia-smi -q -x` for the same fields, plus the sysfs
PCI scan the module does first.

Run on a GPU host for the real comparison; without GPU or driver it still runs, measures what
exists (the sysfs scan, how fast NVML reports its absence) and says so.

    python3 benchmarks/gpu_facts_cost.py [--repeat 20] [--output benchmarks/results/gpu_facts_cost.json]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUTPUT = os.path.join(REPO, "benchmarks", "results", "gpu_facts_cost.json")


def import_nvml_utils():
    """The collection's _nvml module, from an installed collection or from this checkout."""
    try:
        from ansible_collections.llmops.gpu_stack.plugins.module_utils import _nvml
        return _nvml
    except ImportError:
        pass
    tree = tempfile.mkdtemp(prefix="gpu_stack_bench_")
    atexit.register(shutil.rmtree, tree, True)      # removes the link, never what it points to
    os.makedirs(os.path.join(tree, "ansible_collections", "llmops"))
    os.symlink(REPO, os.path.join(tree, "ansible_collections", "llmops", "gpu_stack"))
    sys.path.insert(0, tree)
    for name in [m for m in sys.modules if m == "ansible_collections" or m.startswith("ansible_collections.")]:
        del sys.modules[name]
    from ansible_collections.llmops.gpu_stack.plugins.module_utils import _nvml
    return _nvml


def timed(function, repeat):
    """(list of seconds, last result or exception text)."""
    samples, last = [], None
    for dummy in range(repeat):
        start = time.perf_counter()
        try:
            last = function()
        except Exception as exc:  # a failing step is still a timing; the note says why
            last = "%s: %s" % (exc.__class__.__name__, exc)
        samples.append(time.perf_counter() - start)
    return samples, last


def summary(samples):
    ordered = sorted(samples)
    return {
        "runs": len(samples),
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "min_ms": round(ordered[0] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
        "p90_ms": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))] * 1000, 3),
    }


def _find(node, path):
    found = node.find(path)
    return found.text.strip() if found is not None and found.text else None


def parse_nvidia_smi_xml(text):
    """The fields gpu_facts reports, from `nvidia-smi -q -x` (a schema that changes between driver
    branches; this reads the names R535-R580 use)."""
    root = ET.fromstring(text)
    gpus = []
    for gpu in root.findall("gpu"):
        gpus.append({
            "name": _find(gpu, "product_name"),
            "uuid": _find(gpu, "uuid"),
            "pci_bus_id": gpu.get("id"),
            "memory_total": _find(gpu, "fb_memory_usage/total"),
            "memory_used": _find(gpu, "fb_memory_usage/used"),
            "memory_free": _find(gpu, "fb_memory_usage/free"),
            "persistence_mode": _find(gpu, "persistence_mode"),
            "compute_mode": _find(gpu, "compute_mode"),
            "mig_mode": _find(gpu, "mig_mode/current_mig"),
            "ecc_mode": _find(gpu, "ecc_mode/current_ecc"),
            "temperature": _find(gpu, "temperature/gpu_temp"),
            "power_draw": _find(gpu, "gpu_power_readings/power_draw") or _find(gpu, "power_readings/power_draw"),
            "power_limit": _find(gpu, "gpu_power_readings/current_power_limit") or _find(gpu, "power_readings/power_limit"),
            "graphics_clock": _find(gpu, "clocks/graphics_clock"),
            "app_graphics_clock": _find(gpu, "applications_clocks/graphics_clock"),
            "max_graphics_clock": _find(gpu, "max_clocks/graphics_clock"),
            "pcie_generation": _find(gpu, "pci/pci_gpu_link_info/pcie_gen/current_link_gen"),
            "pcie_width": _find(gpu, "pci/pci_gpu_link_info/link_widths/current_link_width"),
        })
    return {"driver_version": _find(root, "driver_version"), "cuda_version": _find(root, "cuda_version"), "gpus": gpus}


def run_nvidia_smi(binary):
    completed = subprocess.run([binary, "-q", "-x"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if completed.returncode != 0:
        raise RuntimeError("nvidia-smi exited %d: %s" % (completed.returncode,
                                                         completed.stderr.decode("utf-8", "replace").strip()[:200]))
    return parse_nvidia_smi_xml(completed.stdout.decode("utf-8", "replace"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--repeat", type=int, default=20, help="repetitions per measurement (default 20)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="JSON result file")
    parser.add_argument("--sysfs-root", default="/sys")
    args = parser.parse_args(argv)

    nvml_utils = import_nvml_utils()
    rows, notes = [], []

    scan_samples, scan_last = timed(lambda: nvml_utils.scan_pci_devices(args.sysfs_root), args.repeat)
    devices = scan_last if isinstance(scan_last, list) else []
    rows.append(("sysfs PCI scan", summary(scan_samples),
                 "%d NVIDIA PCI functions" % len(devices) if isinstance(scan_last, list) else scan_last))

    pynvml, import_error = nvml_utils.import_pynvml()
    gpu_ready = False
    if pynvml is None:
        notes.append("NVML binding not importable: %s" % import_error)
        rows.append(("gpu_facts (NVML)", None, "skipped: no pynvml"))
    else:
        facts_samples, facts = timed(lambda: nvml_utils.collect_gpu_facts(nvml=pynvml, sysfs_root=args.sysfs_root),
                                     args.repeat)
        status = facts["status"] if isinstance(facts, dict) else facts
        gpu_ready = isinstance(facts, dict) and facts["status"] == "ok"
        detail = "status %s" % status
        if isinstance(facts, dict):
            detail += ", %d GPU(s)" % facts["gpu_count"]
            if not gpu_ready:
                notes.append("NVML not usable here (%s): the gpu_facts figure is the cost of finding that out, "
                             "not of a full query" % facts["status"])
        rows.append(("gpu_facts (NVML init + queries)", summary(facts_samples), detail))
        if gpu_ready:
            session = nvml_utils.NvmlSession(pynvml).open()
            try:
                def queries():
                    return [session.gpu_info(i, session.handle(i)) for i in range(session.device_count())]
                query_samples = timed(queries, args.repeat)[0]
            finally:
                session.close()
            rows.append(("  of which queries only (one init)", summary(query_samples),
                         "%.3f ms per GPU" % (statistics.median(query_samples) * 1000 / max(1, facts["gpu_count"]))))

    binary = shutil.which("nvidia-smi")
    if binary is None:
        notes.append("nvidia-smi is not installed: no comparison figure")
        rows.append(("nvidia-smi -q -x + parse", None, "skipped: nvidia-smi not installed"))
    else:
        smi_samples, smi = timed(lambda: run_nvidia_smi(binary), args.repeat)
        detail = ("%d GPU(s)" % len(smi["gpus"])) if isinstance(smi, dict) else smi
        rows.append(("nvidia-smi -q -x + parse", summary(smi_samples), detail))

    if not gpu_ready:
        notes.insert(0, "No usable NVIDIA GPU/driver on this machine: only the sysfs scan and the cost of NVML "
                        "reporting its absence are measured. Run on a GPU host for the NVML vs nvidia-smi comparison.")

    print("gpu_facts cost, %d repetitions, Python %s on %s" % (args.repeat, platform.python_version(), platform.node()))
    print("%-36s %10s %10s %10s  %s" % ("step", "median ms", "min ms", "p90 ms", "note"))
    for name, stats, note in rows:
        if stats is None:
            print("%-36s %10s %10s %10s  %s" % (name, "-", "-", "-", note))
        else:
            print("%-36s %10.3f %10.3f %10.3f  %s" % (name, stats["median_ms"], stats["min_ms"], stats["p90_ms"], note))
    for note in notes:
        print("note: " + note)

    result = {
        "benchmark": "gpu_facts_cost",
        "repeat": args.repeat,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "gpu_available": gpu_ready,
        "results": [{"step": name, "stats": stats, "note": note} for name, stats, note in rows],
        "notes": notes,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    directory = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(directory):
        os.makedirs(directory)
    with open(args.output, "w") as handle:
        json.dump(result, handle, indent=2, sort_keys=True)
        handle.write("\n")
    print("wrote " + os.path.relpath(args.output, os.getcwd()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
