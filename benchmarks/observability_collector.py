# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Cost of the observability role's textfile collectors, which run every 15 s on each host.

  * nvml_script_run: one run of the NVML collector as the timer runs it (a new Python, the
    module_utils loaded from the installed layout, sysfs scan, kernel log, atomic write). On a
    host without GPU this is the whole cost; with GPUs NVML's own time comes on top.
  * metrics_fake_8_gpus: collect() + render() for 8 GPUs with the unit tests' fake NVML: the
    collection's own Python work per run, without the driver's.
  * metrics_real_nvml: the same with the real binding, where a GPU and its driver answer.
  * serving_log_lines_per_second: the serving collector counting a fresh access log.

    python3 benchmarks/observability_collector.py [--repeat 10] [--output benchmarks/results/observability_collector.json]
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = os.path.join(REPO, "roles", "observability", "files")
MODULE_UTILS = os.path.join(REPO, "plugins", "module_utils")
DEFAULT_OUTPUT = os.path.join(REPO, "benchmarks", "results", "observability_collector.json")


def import_metrics():
    """The collection's _nvml_metrics, from an installed collection or from this checkout."""
    try:
        from ansible_collections.llmops.gpu_stack.plugins.module_utils import _nvml_metrics
        return _nvml_metrics
    except ImportError:
        pass
    tree = tempfile.mkdtemp(prefix="gpu_stack_bench_")
    atexit.register(shutil.rmtree, tree, True)      # removes the link, never what it points to
    os.makedirs(os.path.join(tree, "ansible_collections", "llmops"))
    os.symlink(REPO, os.path.join(tree, "ansible_collections", "llmops", "gpu_stack"))
    sys.path.insert(0, tree)
    for name in [m for m in sys.modules if m == "ansible_collections" or m.startswith("ansible_collections.")]:
        del sys.modules[name]
    from ansible_collections.llmops.gpu_stack.plugins.module_utils import _nvml_metrics
    return _nvml_metrics


def summary(samples):
    return {"min_s": round(min(samples), 6), "median_s": round(statistics.median(samples), 6), "runs": len(samples)}


def timed(function, repeat):
    samples = []
    for dummy in range(repeat):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return samples


def bench_script(work, repeat):
    lib = os.path.join(work, "lib")
    os.makedirs(lib)
    shutil.copy(os.path.join(FILES, "gpu_stack_nvml_textfile.py"), lib)
    for name in ("_gpu_tables.py", "_nvml.py", "_nvml_metrics.py"):
        shutil.copy(os.path.join(MODULE_UTILS, name), lib)
    output = os.path.join(work, "gpu.prom")
    command = [sys.executable, os.path.join(lib, "gpu_stack_nvml_textfile.py"), "--output", output]

    def run():
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = timed(run, repeat)
    with open(output) as handle:
        up = [line for line in handle if line.startswith("gpu_stack_gpu_collector_up")]
    return dict(summary(samples), collector_up=up[0].strip() if up else None)


def bench_fake(metrics_lib, repeat):
    sys.path.insert(0, os.path.join(REPO, "tests", "unit"))
    import fake_pynvml as fake
    sys.path.insert(0, os.path.join(REPO, "tests", "unit", "plugins", "module_utils"))
    from test__nvml_metrics import nvml_of
    work = tempfile.mkdtemp(prefix="gpu_stack_bench_sysfs_")
    atexit.register(shutil.rmtree, work, True)
    sysfs = fake.hgx_sysfs(work)
    nvml = nvml_of(fake.hgx_h200(), nvlinks=[1] * 18)

    def run():
        metrics_lib.collect(nvml=nvml, sysfs_root=sysfs, kernel_log="").render()
    samples = timed(run, repeat)
    text = metrics_lib.collect(nvml=nvml, sysfs_root=sysfs, kernel_log="").render()
    return dict(summary(samples), samples_written=len([l for l in text.splitlines() if not l.startswith("#")]))


def bench_real(metrics_lib, repeat):
    metrics = metrics_lib.collect()
    if metrics.values("collector_up") != [1]:
        reasons = [labels.get("reason") for name, labels, _v in metrics.samples if name == "collector_up"]
        return {"skipped": "NVML not usable here: %s" % ", ".join(r or "?" for r in reasons)}
    samples = timed(lambda: metrics_lib.collect().render(), repeat)
    return dict(summary(samples), gpus=metrics.values("count")[0])


def bench_serving_log(work, lines=200000):
    spec = importlib.util.spec_from_file_location("serving", os.path.join(FILES, "gpu_stack_serving_textfile.py"))
    serving = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serving)
    log = os.path.join(work, "access.log")
    with open(log, "w") as handle:
        for index in range(lines):
            handle.write(json.dumps({"time": "2026-01-01T00:00:00+00:00", "caller": "3f2a9c0e1b7d4a55",
                                     "method": "POST", "path": "/v1/chat/completions",
                                     "status": 500 if index % 50 == 0 else 200, "request_bytes": 420,
                                     "response_bytes": 900, "latency_s": 0.6}) + "\n")
    config = {"engines": [], "gateways": [{"name": "bench", "access_log": log}],
              "state_file": os.path.join(work, "state.json"), "output": os.path.join(work, "serving.prom")}
    start = time.perf_counter()
    serving.run(config)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    serving.run(config)            # nothing new: the steady-state cost of one timer run
    idle = time.perf_counter() - start
    return {"lines": lines, "seconds": round(seconds, 4), "lines_per_second": int(lines / seconds),
            "nothing_new_s": round(idle, 6)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    metrics_lib = import_metrics()
    work = tempfile.mkdtemp(prefix="gpu_stack_bench_")
    atexit.register(shutil.rmtree, work, True)
    result = {
        "host": {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine()},
        "nvml_script_run": bench_script(work, args.repeat),
        "metrics_fake_8_gpus": bench_fake(metrics_lib, args.repeat * 10),
        "metrics_real_nvml": bench_real(metrics_lib, args.repeat),
        "serving_log": bench_serving_log(work),
    }
    text = json.dumps(result, indent=2, sort_keys=True)
    print(text)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as handle:
        handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
