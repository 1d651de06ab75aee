# -*- coding: utf-8 -*-
# Copyright: contributors to the llmops.gpu_stack collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Benchmark of the model_manifest helpers against coreutils sha256sum and plain hashlib.

Generates a synthetic model revision (large shards of mixed sizes plus many small files),
reads it once so that every measurement hashes from the page cache, then measures:

  * coreutils ``sha256sum`` over all files, one process and one process per core;
  * plain ``hashlib`` sha256, one core, serial (the per-core ceiling);
  * the collection's helpers verifying the revision with an empty (cold) cache, with one
    worker and with one worker per core, plus a process pool for comparison;
  * re-verification of the unchanged revision with the cache filled (target: under 1 s).

Each round runs every measurement once, so that load from other processes falls on all of
them alike; ratios use the best round of each (--statistic median to use the median).
Prints a table (GB = 10^9 bytes) and writes JSON to benchmarks/results/manifest_verify.json.
The generated data is removed at the end unless --keep is given.

    python3 benchmarks/manifest_verify.py                  # ~4 GiB, 24 shards, 168 small files
    python3 benchmarks/manifest_verify.py --total-gib 2 --repeat 3
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import multiprocessing
import os
import platform
import random
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
HELPERS = HERE.parent / "plugins" / "module_utils" / "_manifest.py"
GB = 1e9
MIB = 1024 * 1024
TARGET_PARALLEL_EFFICIENCY = 0.8
TARGET_REVERIFY_SECONDS = 1.0


def load_helpers():
    """Import the helpers from this checkout (stdlib only), whatever PYTHONPATH says."""
    spec = importlib.util.spec_from_file_location("_manifest", HELPERS)
    module = importlib.util.module_from_spec(spec)
    sys.modules["_manifest"] = module  # process-pool workers import it by this name
    spec.loader.exec_module(module)
    return module


manifest = load_helpers()


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--dir", help="parent directory for the generated revision (default: system temp dir)")
    parser.add_argument("--total-gib", type=float, default=4.0, help="size of the large files together (default 4)")
    parser.add_argument("--large-files", type=int, default=24, help="number of large files (default 24)")
    parser.add_argument("--small-files", type=int, default=168, help="number of small files (default 168)")
    parser.add_argument("--small-max-kib", type=int, default=512, help="largest small file in KiB (default 512)")
    parser.add_argument("--workers", type=int, default=manifest.default_workers(),
                        help="parallel workers (default: CPUs available, here %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (default 3)")
    parser.add_argument("--statistic", choices=["min", "median"], default="min",
                        help="run time that ratios use: min, the run least disturbed by other "
                             "processes (default), or median")
    parser.add_argument("--buffer-sizes", default="",
                        help="comma-separated read sizes in KiB to compare with N workers, e.g. 256,1024,4096,8192")
    parser.add_argument("--skip-sha256sum", action="store_true", help="do not run coreutils sha256sum")
    parser.add_argument("--output", default=str(HERE / "results" / "manifest_verify.json"))
    parser.add_argument("--keep", action="store_true", help="keep the generated revision")
    parser.add_argument("--seed", type=int, default=20240601)
    return parser.parse_args()


def generate(root, args):
    """Large shards of mixed sizes (0.25x to 1.75x the mean) and small files in subfolders.

    Content is a random 16 MiB block with a per-chunk header, so every file differs; the
    bytes do not matter to sha256's speed.
    """
    rng = random.Random(args.seed)
    weights = [rng.uniform(0.25, 1.75) for _shard in range(args.large_files)]
    total = int(args.total_gib * 1024 ** 3)
    sizes = [int(total * weight / sum(weights)) for weight in weights]
    block = bytearray(os.urandom(16 * MIB))
    for index, size in enumerate(sizes):
        name = "model-%05d-of-%05d.safetensors" % (index + 1, args.large_files)
        with open(root / name, "wb") as fileobj:
            written = 0
            chunk = 0
            while written < size:
                block[:16] = b"%08d%08d" % (index, chunk)
                piece = min(len(block), size - written)
                fileobj.write(memoryview(block)[:piece])
                written += piece
                chunk += 1
    for index in range(args.small_files):
        folder = root / ("extra-%02d" % (index % 8)) if index % 3 else root
        folder.mkdir(exist_ok=True)
        size = rng.randint(64, args.small_max_kib * 1024)
        (folder / ("file-%04d.json" % index)).write_bytes(rng.getrandbits(8 * size).to_bytes(size, "little"))
    return sizes


def timed(function, repeat):
    seconds = []
    result = None
    for _run in range(repeat):
        started = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - started)
    return seconds, result


def warm_page_cache(paths):
    buf = bytearray(8 * MIB)
    for path in paths:
        with open(path, "rb", buffering=0) as fileobj:
            while fileobj.readinto(buf):
                pass


def hashlib_serial(paths):
    """The baseline: one core, plain hashlib, 1 MiB reads, independent of the helpers."""
    digests = {}
    buf = bytearray(MIB)
    view = memoryview(buf)
    for path in paths:
        digest = hashlib.sha256()
        with open(path, "rb", buffering=0) as fileobj:
            while True:
                size = fileobj.readinto(buf)
                if not size:
                    break
                digest.update(view[:size])
        digests[path] = digest.hexdigest()
    return digests


def balanced_groups(paths, count):
    """Split paths into ``count`` groups of similar total size, largest first."""
    groups = [[0, []] for _group in range(count)]
    for path in sorted(paths, key=os.path.getsize, reverse=True):
        lightest = min(groups, key=lambda group: group[0])
        lightest[0] += os.path.getsize(path)
        lightest[1].append(path)
    return [group[1] for group in groups if group[1]]


def sha256sum(paths, processes):
    """Run coreutils sha256sum in ``processes`` processes over balanced groups of files."""
    running = [
        subprocess.Popen(["sha256sum", "--"] + group, stdout=subprocess.PIPE, text=True)
        for group in balanced_groups(paths, processes)
    ]
    digests = {}
    for process in running:
        out, _err = process.communicate()
        if process.returncode != 0:
            raise RuntimeError("sha256sum exited with %d" % process.returncode)
        for line in out.splitlines():
            digest, path = line.split(None, 1)
            digests[path.lstrip("*")] = digest
    return digests


def process_pool(paths, workers, buffer_size):
    ordered = sorted(paths, key=os.path.getsize, reverse=True)
    # fork: the workers inherit the helpers loaded from this checkout.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return dict(zip(ordered, pool.map(manifest.hash_file, ordered, [buffer_size] * len(ordered))))


def settle(paths):
    """Wait until every file is older than the cache's racy window, so that the cold run
    fills the cache with every file and the re-verification can use it."""
    newest = max(max(os.stat(path).st_mtime_ns, os.stat(path).st_ctime_ns) for path in paths)
    wait = (newest + manifest.RACY_WINDOW_NS - time.time_ns()) / 1e9 + 0.1
    if wait > 0:
        time.sleep(wait)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as fileobj:
            for line in fileobj:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def row(name, seconds, total_bytes):
    best, median = min(seconds), statistics.median(seconds)
    return {"name": name, "seconds": [round(value, 4) for value in seconds],
            "min_seconds": round(best, 4), "median_seconds": round(median, 4),
            "gb_per_s_min": round(total_bytes / best / GB, 3),
            "gb_per_s_median": round(total_bytes / median / GB, 3)}


def main():
    args = parse_args()
    parent = args.dir or tempfile.gettempdir()
    work = Path(tempfile.mkdtemp(prefix="manifest-bench-", dir=parent))
    revision = work / "revision"
    revision.mkdir()
    load_before = os.getloadavg()
    try:
        print("generating %.2f GiB in %d large and %d small files under %s ..."
              % (args.total_gib, args.large_files, args.small_files, revision), flush=True)
        generate(revision, args)
        walk = manifest.walk_revision(str(revision))
        paths = [os.path.join(str(revision), entry.relpath) for entry in walk.files]
        total_bytes = sum(entry.key[2] for entry in walk.files)
        file_count = len(paths)

        started = time.perf_counter()
        warm_page_cache(paths)
        warm_seconds = time.perf_counter() - started
        print("page cache warmed: read %.2f GB in %.2f s; every run below hashes from memory"
              % (total_bytes / GB, warm_seconds), flush=True)

        manifest_path = str(work / "revision.manifest.json")
        manifest.ensure_manifest(str(revision), manifest_path, workers=args.workers)
        settle(paths)
        cache = work / "cache.json"

        def verify_cold(workers, buffer_size=manifest.DEFAULT_BUFFER_SIZE):
            if cache.exists():
                cache.unlink()
            result = manifest.verify_revision(str(revision), manifest_path, workers=workers,
                                              cache_path=str(cache), buffer_size=buffer_size)
            if result.get("failed") or result["files_hashed"] != file_count:
                raise SystemExit("cold verification did not hash every file: %r" % result)
            return result

        workers = args.workers
        measures = [
            ("hashlib", "hashlib sha256, 1 core, serial", lambda: hashlib_serial(paths)),
            ("ours_1", "model_manifest verify, 1 worker, cold cache", lambda: verify_cold(1)),
            ("ours", "model_manifest verify, %d workers, cold cache" % workers, lambda: verify_cold(workers)),
            ("pool", "process pool of %d, hash_file (comparison)" % workers,
             lambda: process_pool(paths, workers, manifest.DEFAULT_BUFFER_SIZE)),
        ]
        for kib in [int(value) for value in args.buffer_sizes.split(",") if value.strip()]:
            measures.append(("buffer_%d" % kib, "  same, %d KiB reads" % kib,
                             lambda size=kib * 1024: verify_cold(workers, size)))
        if not args.skip_sha256sum and shutil.which("sha256sum"):
            measures.append(("sha256sum", "coreutils sha256sum, 1 process", lambda: sha256sum(paths, 1)))
            if workers > 1:
                measures.append(("sha256sum_n", "coreutils sha256sum, %d processes" % workers,
                                 lambda: sha256sum(paths, workers)))

        # Rounds interleave the measurements, so that load from other processes, which drifts
        # over minutes, falls on all of them alike.
        seconds = {key: [] for key, _name, _function in measures}
        reference = None
        for round_number in range(args.repeat):
            print("round %d of %d" % (round_number + 1, args.repeat), flush=True)
            for key, name, function in measures:
                started = time.perf_counter()
                output = function()
                seconds[key].append(time.perf_counter() - started)
                if key in ("hashlib", "pool", "sha256sum", "sha256sum_n"):
                    digests = {os.path.relpath(path, str(revision)): value for path, value in output.items()}
                    reference = reference or digests
                    if digests != reference:
                        raise SystemExit("%s produced different digests from hashlib" % name)
        with open(manifest_path) as fileobj:
            recorded = manifest.parse_manifest(fileobj.read())
        if {rel: item["sha256"] for rel, item in recorded.items()} != reference:
            raise SystemExit("the manifest's digests differ from the hashlib baseline")

        pick = min if args.statistic == "min" else statistics.median
        results = []
        print("  %-46s %10s %13s %13s" % ("measurement", "best s", "best GB/s", "median GB/s"))
        for key, name, _function in measures:
            results.append(dict(row(name, seconds[key], total_bytes), key=key))
            print("  %-46s %10.3f %13.3f %13.3f" % (
                name, min(seconds[key]), results[-1]["gb_per_s_min"], results[-1]["gb_per_s_median"]))
        one_core, ours_one, ours = pick(seconds["hashlib"]), pick(seconds["ours_1"]), pick(seconds["ours"])
        sha256sum_serial = pick(seconds["sha256sum"]) if "sha256sum" in seconds else None
        buffer_rows = [dict(item, buffer_kib=int(item["key"].split("_")[1]))
                       for item in results if item["key"].startswith("buffer_")]
        cold = verify_cold(workers)

        # The last cold run left a full cache behind: verify the unchanged revision again.
        reverify_seconds, warm = timed(
            lambda: manifest.verify_revision(str(revision), manifest_path, workers=workers,
                                             cache_path=str(cache)),
            args.repeat)
        reverify = max(reverify_seconds)
        print("  %-46s %10.3f   (worst run; %d of %d files from the cache, %d bytes read)"
              % ("re-verify unchanged revision, warm cache", reverify, warm["files_cached"],
                 file_count, warm["bytes_hashed"]), flush=True)

        ours_rate = total_bytes / ours / GB
        efficiency = one_core / (ours * args.workers)
        summary = {
            "ours_gb_per_s": round(ours_rate, 3),
            "ours_one_worker_gb_per_s": round(total_bytes / ours_one / GB, 3),
            "hashlib_one_core_gb_per_s": round(total_bytes / one_core / GB, 3),
            "sha256sum_gb_per_s": round(total_bytes / sha256sum_serial / GB, 3) if sha256sum_serial else None,
            "ours_vs_sha256sum": round(sha256sum_serial / ours, 2) if sha256sum_serial else None,
            "ours_vs_workers_x_hashlib_one_core": round(efficiency, 2),
            "target_parallel_efficiency": TARGET_PARALLEL_EFFICIENCY,
            "parallel_efficiency_met": efficiency >= TARGET_PARALLEL_EFFICIENCY,
            "reverify_seconds": round(reverify, 4),
            "reverify_files_cached": warm["files_cached"],
            "reverify_bytes_read": warm["bytes_hashed"],
            "target_reverify_seconds": TARGET_REVERIFY_SECONDS,
            "reverify_target_met": reverify < TARGET_REVERIFY_SECONDS and warm["bytes_hashed"] == 0,
            "module_reported_throughput_gb_per_s": round(cold["throughput"] / GB, 3),
        }
        print()
        print("ratios from the %s run time of each measurement" % args.statistic)
        print("ours (%d workers): %.3f GB/s = %s sha256sum (1 process); %.2f of %d x one-core hashlib "
              "(target %.1f: %s)" % (
                  args.workers, ours_rate,
                  "%.2fx" % summary["ours_vs_sha256sum"] if sha256sum_serial else "n/a",
                  efficiency, args.workers, TARGET_PARALLEL_EFFICIENCY,
                  "met" if summary["parallel_efficiency_met"] else "NOT met"))
        print("re-verify of %d unchanged files: %.3f s, %d bytes read (target < %.0f s: %s)" % (
            file_count, reverify, warm["bytes_hashed"], TARGET_REVERIFY_SECONDS,
            "met" if summary["reverify_target_met"] else "NOT met"))

        report = {
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
            "machine": {
                "cpu": cpu_model(), "cpus_available": manifest.default_workers(),
                "python": platform.python_version(), "openssl": ssl.OPENSSL_VERSION,
                "loadavg_before": [round(value, 2) for value in load_before],
                "loadavg_after": [round(value, 2) for value in os.getloadavg()],
            },
            "data": {
                "total_bytes": total_bytes, "files": file_count, "large_files": args.large_files,
                "small_files": args.small_files, "page_cache": "warmed before measuring",
                "warm_read_gb_per_s": round(total_bytes / warm_seconds / GB, 3),
            },
            "workers": args.workers, "repeat": args.repeat, "statistic": args.statistic,
            "buffer_size_bytes": manifest.DEFAULT_BUFFER_SIZE,
            "results": results, "buffer_sizes": buffer_rows, "summary": summary,
        }
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        print("wrote %s" % output)
    finally:
        if args.keep:
            print("kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
