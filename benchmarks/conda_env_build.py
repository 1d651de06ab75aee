# -*- coding: utf-8 -*-
# Copyright: contributors to the llmops.gpu_stack collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Benchmark of the conda_env role's uv path against pip, on this machine, from PyPI.

Builds the hashed set of the molecule scenario (numpy, jinja2, markupsafe, pyyaml) with the
same helpers the python_env module runs (plugins/module_utils/_pyenv.py: uv venv, uv pip sync
--require-hashes --compile-bytecode, verification, stamp, atomic swap), and measures:

  * cold build: empty uv cache, new environment;
  * converged no-op: the same inputs again (the stamp matches: no uv, no solve, no install);
  * warm rebuild: one pin changed (jinja2 3.1.5 -> 3.1.6), uv cache warm: a new prefix is
    built, byte-compiled, verified and swapped in; and the same without byte-compiling, to
    show how much of a rebuild is compileall (the role compiles: the service cannot write
    __pycache__ into a root-owned environment);
  * pip reference for the same set: python -m venv + pip install --require-hashes, cold (no
    pip cache), warm (pip cache filled) and "already satisfied" (the same command again).
    pip byte-compiles by default, like the role's uv builds.

Each figure is measured --repeat times; the minimum and median go to the JSON. Downloads come
from PyPI, so cold figures include the network. uv is the role's pinned version, fetched once
by pip by name and sha256 into the control-node cache the role uses.

    python3 benchmarks/conda_env_build.py                 # 3 repeats, writes benchmarks/results/conda_env_build.json
    python3 benchmarks/conda_env_build.py --repeat 1 --python /usr/bin/python3
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HELPERS = ROOT / "plugins" / "module_utils" / "_pyenv.py"
TABLES = ROOT / "plugins" / "module_utils" / "_gpu_tables.py"
DEFAULTS = ROOT / "roles" / "conda_env" / "defaults" / "main.yml"
LOCK = ROOT / "molecule" / "conda_env" / "files" / "app.txt"
LOCK_NEXT = ROOT / "molecule" / "conda_env" / "files" / "app-next.txt"
IMPORTS = ["numpy", "yaml", "jinja2", "markupsafe"]


def load_helpers():
    """Import _pyenv from this checkout without an installed collection (it imports _gpu_tables)."""
    import types

    for name in ("ansible_collections", "ansible_collections.llmops", "ansible_collections.llmops.gpu_stack",
                 "ansible_collections.llmops.gpu_stack.plugins",
                 "ansible_collections.llmops.gpu_stack.plugins.module_utils"):
        sys.modules.setdefault(name, types.ModuleType(name))
    for name, path in (("_gpu_tables", TABLES), ("_pyenv", HELPERS)):
        full = "ansible_collections.llmops.gpu_stack.plugins.module_utils." + name
        spec = importlib.util.spec_from_file_location(full, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        spec.loader.exec_module(module)
    return sys.modules["ansible_collections.llmops.gpu_stack.plugins.module_utils._pyenv"]


pyenv = load_helpers()


def role_default(name):
    """A scalar or one-level mapping default of the conda_env role, read without PyYAML."""
    lines = DEFAULTS.read_text().splitlines()
    for index, line in enumerate(lines):
        if line.startswith(name + ":"):
            value = line.split(":", 1)[1].strip()
            if value:
                return value.strip('"')
            mapping = {}
            for item in lines[index + 1:]:
                if not item.startswith("  "):
                    break
                key, _sep, val = item.strip().partition(":")
                mapping[key] = val.strip()
            return mapping
    raise KeyError(name)


def clean_env(extra=None):
    """The environment without pip/uv configuration of this machine, like the module's."""
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_")))
    env.update({"PIP_CONFIG_FILE": os.devnull, "UV_NO_CONFIG": "1", "PYTHONNOUSERSITE": "1"})
    env.update(extra or {})
    return env


def ensure_uv():
    version = role_default("conda_env_uv_version")
    arch = platform.machine()
    sha = role_default("conda_env_uv_wheel_sha256")[arch]
    cache = Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "llmops-gpu-stack" / "wheels"
    target = cache / ("uv-%s-%s" % (version, arch))
    uv = target / "bin" / "uv"
    if not uv.exists():
        cache.mkdir(parents=True, exist_ok=True)
        req = cache / ("uv-%s-%s.txt" % (version, arch))
        req.write_text("uv==%s --hash=sha256:%s\n" % (version, sha))
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               "--no-deps", "--only-binary=:all:", "--platform", "manylinux_2_17_" + arch,
                               "--require-hashes", "--target", str(target), "--requirement", str(req)],
                              env=clean_env())
    return str(uv), version


def runner(argv, env):
    result = subprocess.run(argv, capture_output=True, text=True, env=clean_env(env), check=False)
    return result.returncode, result.stdout, result.stderr


def timed(function):
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def summarize(samples):
    return {"min_s": round(min(samples), 3), "median_s": round(statistics.median(samples), 3),
            "samples_s": [round(s, 3) for s in samples]}


def uv_round(work, uv, python, python_version):
    """One cold build, one no-op, one warm rebuild; returns the three times."""
    envs = work / "envs"
    cache = work / "uv-cache"
    for path in (envs, cache):
        shutil.rmtree(str(path), ignore_errors=True)
    envs.mkdir(parents=True)

    def params(lock, compile_bytecode=True):
        return {"path": str(envs / "app"), "backend": "uv", "python": python, "python_version": python_version,
                "uv": uv, "cache_dir": str(cache), "requirements": lock.read_text(), "imports": IMPORTS,
                "ca_bundle": os.environ.get("SSL_CERT_FILE") or None, "keep": 1,
                "compile_bytecode": compile_bytecode}

    cold, first = timed(lambda: pyenv.ensure_environment(params(LOCK), runner))
    noop, second = timed(lambda: pyenv.ensure_environment(params(LOCK), runner))
    warm, third = timed(lambda: pyenv.ensure_environment(params(LOCK_NEXT), runner))
    # The same warm rebuild without byte-compiling: how much of it is compileall.
    plain, fourth = timed(lambda: pyenv.ensure_environment(params(LOCK_NEXT, compile_bytecode=False), runner))
    assert first["rebuilt"] and not second["changed"] and third["rebuilt"] and fourth["rebuilt"], (first, second, third)
    assert third["versions"]["jinja2"] == "3.1.6"
    return cold, noop, warm, plain


def pip_round(work, python):
    """pip for the same set: cold (no cache), warm (cache filled), already satisfied."""
    pip_cache = work / "pip-cache"
    shutil.rmtree(str(pip_cache), ignore_errors=True)
    times = {}
    for label, cache_args in (("cold", ["--no-cache-dir"]), ("warm", ["--cache-dir", str(pip_cache)])):
        if label == "warm":  # fill the cache first, outside the measurement
            prime = work / "pip-prime"
            shutil.rmtree(str(prime), ignore_errors=True)
            subprocess.check_call([python, "-m", "venv", str(prime)], env=clean_env())
            subprocess.check_call([str(prime / "bin" / "python"), "-m", "pip", "install", "--quiet", "--require-hashes",
                                   "--only-binary=:all:", "--cache-dir", str(pip_cache), "-r", str(LOCK)], env=clean_env())
        venv = work / ("pip-" + label)
        shutil.rmtree(str(venv), ignore_errors=True)

        def build():
            subprocess.check_call([python, "-m", "venv", str(venv)], env=clean_env())
            subprocess.check_call([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--require-hashes",
                                   "--only-binary=:all:"] + cache_args + ["-r", str(LOCK)], env=clean_env())

        times[label] = timed(build)[0]
        times["pip_version"] = subprocess.check_output([str(venv / "bin" / "python"), "-m", "pip", "--version"],
                                                       text=True, env=clean_env()).split()[1]
    times["satisfied"] = timed(lambda: subprocess.check_call(
        [str(work / "pip-warm" / "bin" / "python"), "-m", "pip", "install", "--quiet", "--require-hashes",
         "--only-binary=:all:", "--cache-dir", str(pip_cache), "-r", str(LOCK)], env=clean_env()))[0]
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--python", default="/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable,
                        help="interpreter the environments are built on (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per measurement (default 3)")
    parser.add_argument("--dir", help="work directory (default: a new temporary directory, removed at the end)")
    parser.add_argument("--output", default=str(HERE / "results" / "conda_env_build.json"))
    args = parser.parse_args()

    uv, uv_version = ensure_uv()
    python_version = subprocess.check_output([args.python, "-c", "import platform; print(platform.python_version())"],
                                             text=True).strip()
    work = Path(args.dir or tempfile.mkdtemp(prefix="conda_env_bench-"))
    work.mkdir(parents=True, exist_ok=True)
    pip_version = None
    rows = {"uv_cold_build": [], "uv_converged_noop": [], "uv_warm_rebuild_one_pin": [], "uv_warm_rebuild_no_bytecode": [],
            "pip_cold_install": [], "pip_warm_install": [], "pip_already_satisfied": []}
    try:
        for _round in range(args.repeat):
            cold, noop, warm, plain = uv_round(work, uv, args.python, python_version)
            rows["uv_cold_build"].append(cold)
            rows["uv_converged_noop"].append(noop)
            rows["uv_warm_rebuild_one_pin"].append(warm)
            rows["uv_warm_rebuild_no_bytecode"].append(plain)
            pip = pip_round(work, args.python)
            pip_version = pip["pip_version"]
            rows["pip_cold_install"].append(pip["cold"])
            rows["pip_warm_install"].append(pip["warm"])
            rows["pip_already_satisfied"].append(pip["satisfied"])
    finally:
        if not args.dir:
            shutil.rmtree(str(work), ignore_errors=True)

    result = {
        "benchmark": "conda_env_build",
        "set": pyenv.pin_lines(pyenv.parse_requirements(LOCK.read_text())),
        "changed_pin": "jinja2 3.1.5 -> 3.1.6",
        "python": {"path": args.python, "version": python_version},
        "uv_version": uv_version,
        "pip_version": pip_version,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_1m": round(os.getloadavg()[0], 2)},
        "repeat": args.repeat,
        "results": dict((name, summarize(samples)) for name, samples in rows.items()),
    }
    ratio = result["results"]["pip_cold_install"]["min_s"] / max(result["results"]["uv_cold_build"]["min_s"], 1e-9)
    result["pip_cold_over_uv_cold"] = round(ratio, 2)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(name) for name in rows)
    print("conda_env build, %s, Python %s, uv %s, %d round(s), load %.2f"
          % (", ".join(result["set"]), python_version, uv_version, args.repeat, result["machine"]["load_average_1m"]))
    for name in rows:
        figure = result["results"][name]
        print("  %-*s  min %7.3f s   median %7.3f s" % (width, name, figure["min_s"], figure["median_s"]))
    print("  pip cold / uv cold: %.2fx   -> %s" % (ratio, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
