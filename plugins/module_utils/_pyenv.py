# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pinned Python environments: lock parsing, torch CUDA variants, stamps, commands, atomic swap.

The python_env module and the conda_env role build an environment from an exact Python and
a lock of hashed wheels. The logic lives here as functions a unit test can call:

* ``parse_requirements`` reads a hashed lock (``uv pip compile --generate-hashes`` or
  ``pip-compile --generate-hashes`` output) and refuses unpinned or unhashed lines.
* ``choose_torch_variant`` picks the PyTorch CUDA variant (cu118, cu121 ...) from the CUDA
  version and driver, with the driver table of _gpu_tables.
* ``stamp_inputs`` / ``compute_stamp`` turn everything that defines the environment into
  one sha256. The stamp is written inside the environment; an environment whose stamp
  matches is left alone, so a converged run neither solves nor installs.
* ``*_command`` functions build the argv of uv, micromamba and pip.
* ``ensure_environment`` builds a new prefix beside the old one, verifies it, and swaps a
  symlink to it with one rename(2), so a failed build leaves the working environment
  untouched. Commands run through a ``runner`` callable so tests need no uv or micromamba.

Runs on managed hosts: Python 3.9+, standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _fsutil as fsutil
from ansible_collections.llmops.gpu_stack.plugins.module_utils._gpu_tables import (
    compare_versions,
    cuda_major_minor,
    driver_supports_cuda,
    max_cuda_for_driver,
    parse_version,
)

STAMP_FILE = ".gpu_stack-env.json"
SPEC_DIR = ".gpu_stack"
STAMP_FORMAT = 1
BACKENDS = ("uv", "micromamba")
HASH_ALGORITHMS = ("sha256", "sha384", "sha512")
STAMP_LENGTH_IN_NAME = 12
OUTPUT_TAIL_LINES = 25

# PyTorch publishes one wheel index per CUDA variant (download.pytorch.org/whl/<variant>).
# A variant name is "cu" plus the CUDA major and minor digits: cu118 is CUDA 11.8, cu121 is
# 12.1, cu130 is 13.0. "cpu" has no CUDA. Source: pytorch.org "Get started" install matrix
# and the index directory names.
CPU_VARIANT = "cpu"
_VARIANT_RE = re.compile(r"^cu(\d{2,3})(\d)$")
_NAME_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9]|[A-Za-z0-9])(\[[A-Za-z0-9._,\s-]*\])?\s*")
_HASH_RE = re.compile(r"--hash[=\s]+([A-Za-z0-9]+):([0-9a-fA-F]+)")
_ENV_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_USERINFO_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
_HASH_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}


class PyEnvError(Exception):
    """A problem with the inputs or the build; the message names the cause and the fix."""

    def __init__(self, msg, **details):
        super(PyEnvError, self).__init__(msg)
        self.details = details


# --- names, URLs -----------------------------------------------------------------------------

def normalize_name(name):
    """PEP 503 normal form of a distribution name: PyYAML -> pyyaml, Jinja2 -> jinja2."""
    return re.sub(r"[-_.]+", "-", str(name)).lower()


def redact(text):
    """Hide the user:password part of every URL in a string or in the items of a list."""
    if isinstance(text, (list, tuple)):
        return [redact(item) for item in text]
    if text is None:
        return None
    return _USERINFO_RE.sub(r"\g<scheme>***@", str(text))


def check_env_name(name):
    if not _ENV_NAME_RE.match(str(name or "")):
        raise PyEnvError(
            "environment name %r is not valid: use 1-64 ASCII letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (for example 'serving')" % (name,))
    return name


# --- requirement locks ------------------------------------------------------------------------

def _logical_lines(text):
    """Yield (first line number, joined text) of a requirements file, continuations joined."""
    buffer, start = [], None
    for number, raw in enumerate(str(text or "").splitlines(), 1):
        line = raw
        if not line.lstrip().startswith("#"):
            # An inline comment needs whitespace before '#' (pip's rule); '#' in a URL fragment stays.
            line = re.sub(r"(^|\s)#.*$", "", line)
        else:
            line = ""
        if start is None:
            start = number
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1])
            continue
        buffer.append(stripped)
        joined = " ".join(part.strip() for part in buffer if part.strip())
        if joined:
            yield start, joined
        buffer, start = [], None
    if buffer:
        joined = " ".join(part.strip() for part in buffer if part.strip())
        if joined:
            yield start, joined


def parse_requirements(text, source="requirements"):
    """Parse a hashed lock into [{name, version, marker, hashes, line}] in file order.

    Every requirement must be pinned with == (or ===) and carry at least one --hash; other
    lines may be index options (--index-url, --extra-index-url, --find-links) that uv and
    pip accept in a lock. Raises PyEnvError naming the line and the fix.
    """
    pins = []
    seen = {}
    for number, line in _logical_lines(text):
        if line.startswith("-"):
            option = line.split()[0].split("=")[0]
            if option in ("-r", "--requirement", "-c", "--constraint", "-e", "--editable"):
                raise PyEnvError(
                    "%s line %d: %r refers to another file or an editable install; compile everything into "
                    "one hashed lock with `uv pip compile --generate-hashes` and use that file" % (source, number, line))
            continue
        requirement, _sep, options = line.partition(" --")
        options = ("--" + options) if _sep else ""
        requirement, _sep, marker = requirement.partition(";")
        requirement, marker = requirement.strip(), marker.strip()
        match = _NAME_RE.match(requirement)
        if not match:
            raise PyEnvError("%s line %d: cannot read a package name in %r" % (source, number, line))
        name = normalize_name(match.group(1))
        rest = requirement[match.end():].strip()
        version_match = re.match(r"^(===?)\s*([^\s,;]+)$", rest)
        if not version_match:
            raise PyEnvError(
                "%s line %d: %s is not pinned to one version (%r); every requirement needs name==version "
                "and --hash, as `uv pip compile --generate-hashes` writes them" % (source, number, name, rest or "no version"))
        hashes = []
        for algorithm, digest in _HASH_RE.findall(options):
            algorithm = algorithm.lower()
            if algorithm not in HASH_ALGORITHMS or len(digest) != _HASH_LENGTH[algorithm]:
                raise PyEnvError("%s line %d: %s has a malformed hash %s:%s" % (source, number, name, algorithm, digest))
            hashes.append("%s:%s" % (algorithm, digest.lower()))
        if not hashes:
            raise PyEnvError(
                "%s line %d: %s==%s has no --hash; installs run with --require-hashes, so regenerate the lock "
                "with `uv pip compile --generate-hashes`" % (source, number, name, version_match.group(2)))
        key = (name, marker)
        if key in seen:
            raise PyEnvError("%s line %d: %s is listed twice (first on line %d)" % (source, number, name, seen[key]))
        seen[key] = number
        pins.append({"name": name, "version": version_match.group(2), "marker": marker or None,
                     "hashes": sorted(hashes), "line": number})
    return pins


def canonical_requirements(pins):
    """One line per pin, hashes sorted: the form the stamp covers (comments and layout ignored)."""
    lines = []
    for pin in sorted(pins, key=lambda p: (p["name"], p["marker"] or "")):
        text = "%s==%s" % (pin["name"], pin["version"])
        if pin["marker"]:
            text += " ; %s" % pin["marker"]
        lines.append(text + "".join(" --hash=%s" % h for h in pin["hashes"]))
    return "\n".join(lines) + ("\n" if lines else "")


def pin_lines(pins):
    """name==version lines (with markers), for messages and diffs."""
    return ["%s==%s%s" % (p["name"], p["version"], " ; " + p["marker"] if p["marker"] else "") for p in pins]


# --- Python versions --------------------------------------------------------------------------

def python_version_matches(wanted, actual):
    """True when `actual` (3.10.12) matches `wanted` at the precision given: 3.10.12 or 3.10."""
    wanted_parts = parse_version(wanted)
    actual_parts = parse_version(actual)
    return actual_parts[:len(wanted_parts)] == wanted_parts


# --- torch CUDA variants ----------------------------------------------------------------------

def variant_cuda(variant):
    """CUDA release of a PyTorch variant: cu118 -> "11.8", cu121 -> "12.1", cpu -> None."""
    if variant == CPU_VARIANT:
        return None
    match = _VARIANT_RE.match(str(variant or ""))
    if not match:
        raise PyEnvError(
            "%r is not a PyTorch variant: use 'cpu' or 'cu' plus the CUDA major and minor digits, "
            "such as cu118, cu121, cu124, cu126 or cu128" % (variant,))
    return "%d.%d" % (int(match.group(1)), int(match.group(2)))


def variant_for_cuda(cuda):
    """The variant name for a CUDA release: "12.4" -> cu124."""
    major, minor = parse_version(cuda_major_minor(cuda))[:2]
    return "cu%d%d" % (major, minor)


def choose_torch_variant(available, requested="auto", cuda_version=None, driver_version=None,
                         allow_minor_version_compat=False):
    """Pick the PyTorch variant from the locks on offer; return (variant, notes).

    available: the variants that have a lock (keys of requirements_by_variant).
    requested: "auto" or one variant. cuda_version: the CUDA release the host is built for (the
    cuda role's toolkit, else the newest the driver supports). driver_version: the loaded or
    planned driver, or None when no driver can be read (image builds).

    auto picks the newest CUDA variant not newer than cuda_version (or, without it, than the
    newest release the driver runs) that the driver supports; "cpu" when no CUDA is known and a
    cpu lock exists. An explicit variant the driver cannot run fails with both named.
    """
    notes = []
    if not available:
        raise PyEnvError("requirements_by_variant is empty: give one hashed lock per torch variant, e.g. {cu121: serving-cu121.txt}")
    for variant in available:
        variant_cuda(variant)
    if cuda_version not in (None, ""):
        cuda_version = cuda_major_minor(cuda_version)
    else:
        cuda_version = None
    if driver_version in (None, ""):
        driver_version = None
    else:
        parse_version(driver_version)

    def driver_check(variant):
        needed = variant_cuda(variant)
        if needed is None or driver_version is None:
            return True, None
        return driver_supports_cuda(driver_version, needed, allow_minor_version_compat)

    if requested not in (None, "", "auto"):
        needed = variant_cuda(requested)
        if requested not in available:
            raise PyEnvError(
                "torch variant %s has no lock: requirements_by_variant offers %s; add a hashed lock for %s "
                "or choose one of those" % (requested, ", ".join(sorted(available)), requested))
        ok, reason = driver_check(requested)
        if not ok:
            best = max_cuda_for_driver(driver_version)
            raise PyEnvError(
                "torch variant %s needs CUDA %s but the driver is %s: %s. Choose a variant for CUDA %s or older "
                "(%s) or upgrade the driver" % (
                    requested, needed, driver_version, reason, best or "(none in the table)",
                    ", ".join(v for v in sorted(available) if all((
                        v != CPU_VARIANT, best, best and compare_versions(variant_cuda(v), best) <= 0))) or "no lock on offer"),
                variant=requested, driver_version=driver_version)
        if reason and "reduced features" in reason:
            notes.append(reason)
        if needed and driver_version is None:
            notes.append("no NVIDIA driver could be read: torch variant %s (CUDA %s) was not checked against a driver" % (requested, needed))
        if needed and cuda_version and compare_versions(needed, cuda_version) > 0:
            notes.append("torch variant %s is built for CUDA %s, newer than the host's CUDA %s; torch brings its own "
                         "CUDA runtime, but extensions compiled with the host's nvcc will not match" % (requested, needed, cuda_version))
        return requested, notes

    ceiling = cuda_version or (max_cuda_for_driver(driver_version) if driver_version else None)
    if ceiling is None:
        if CPU_VARIANT in available:
            notes.append("no CUDA version or driver known: the cpu variant was chosen")
            return CPU_VARIANT, notes
        raise PyEnvError(
            "cannot choose a torch variant: no CUDA version is known (no cuda role version, no driver read by gpu_facts) "
            "and there is no cpu lock; set the torch variant explicitly (offered: %s) or the CUDA version"
            % ", ".join(sorted(available)))
    candidates = []
    for variant in available:
        needed = variant_cuda(variant)
        if needed is None or compare_versions(needed, ceiling) > 0:
            continue
        ok, _reason = driver_check(variant)
        if ok:
            candidates.append((parse_version(needed), variant))
    if not candidates:
        raise PyEnvError(
            "no torch variant on offer fits CUDA %s%s: requirements_by_variant offers %s; add a lock for %s or older"
            % (ceiling, " and driver %s" % driver_version if driver_version else "",
               ", ".join(sorted(available)), variant_for_cuda(ceiling)),
            driver_version=driver_version)
    chosen = max(candidates)[1]
    if driver_version is None:
        notes.append("no NVIDIA driver could be read: torch variant %s was chosen from CUDA %s only" % (chosen, ceiling))
    return chosen, notes


def torch_index_for(template, variant):
    """The PyTorch index of a variant from a template with {variant}; '' when no template."""
    if not template:
        return ""
    return str(template).replace("{variant}", variant)


# --- stamps ---------------------------------------------------------------------------------

def sha256_text(text):
    return hashlib.sha256(str(text or "").encode("utf-8")).hexdigest()


def wheelhouse_fingerprint(directory):
    """Sorted [name, size] of the distributions in a wheelhouse directory, or None if it is missing.

    Names and sizes, not contents: the lock's --hash values pin the contents, and the
    installer checks them when it builds; hashing gigabytes of wheels on every run would cost
    seconds per converge for no extra safety.
    """
    if not directory or not os.path.isdir(directory):
        return None
    entries = []
    for name in sorted(os.listdir(directory)):
        if name.endswith((".whl", ".tar.gz", ".zip")):
            full = os.path.join(directory, name)
            if os.path.isfile(full):
                entries.append([name, os.path.getsize(full)])
    return entries


def stamp_inputs(backend, python_version, pins=None, interpreter=None, conda_spec=None, conda_lock=None,
                 channels=None, torch_variant=None, index_url=None, extra_index_urls=None, wheelhouse=None,
                 only_binary=True, compile_bytecode=True):
    """Everything that decides what the environment contains, as a JSON-able dict.

    Locks are reduced to hashes; the requirements lock to its canonical pins, so comments and
    line layout do not force a rebuild. Tool versions, the verify list and the paths of
    caches are left out: they do not change what gets installed.
    """
    inputs = {
        "format": STAMP_FORMAT,
        "backend": backend,
        "python_version": str(python_version),
        "requirements_sha256": sha256_text(canonical_requirements(pins or [])),
        "only_binary": bool(only_binary),
        "compile_bytecode": bool(compile_bytecode),
    }
    if interpreter:
        inputs["interpreter"] = {"path": interpreter.get("path"), "version": interpreter.get("version")}
    if conda_spec:
        inputs["conda_spec_sha256"] = sha256_text(conda_spec)
    if conda_lock:
        inputs["conda_lock_sha256"] = sha256_text(conda_lock)
    if backend == "micromamba" and not conda_lock:
        inputs["channels"] = list(channels or [])
    if torch_variant:
        inputs["torch_variant"] = torch_variant
    if wheelhouse is not None:
        inputs["wheelhouse"] = wheelhouse
    else:
        inputs["index_url"] = index_url or ""
        inputs["extra_index_urls"] = list(extra_index_urls or [])
    return inputs


def compute_stamp(inputs):
    """sha256 of the canonical JSON of stamp_inputs()."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def prefix_for(path, stamp):
    """The real directory of one build: <dir>/.<name>-<first 12 hex of the stamp>."""
    parent, name = os.path.split(os.path.normpath(path))
    return os.path.join(parent, ".%s-%s" % (name, stamp[:STAMP_LENGTH_IN_NAME]))


def read_stamp(prefix):
    """The stamp record of a finished build, or None (missing, unreadable, or not ours)."""
    try:
        with open(os.path.join(prefix, STAMP_FILE)) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != STAMP_FORMAT or not data.get("stamp"):
        return None
    return data


def current_environment(path):
    """State of the stable path: {kind: missing|managed|foreign, prefix, record}."""
    if os.path.islink(path):
        target = os.readlink(path)
        prefix = os.path.normpath(os.path.join(os.path.dirname(path), target))
        record = read_stamp(prefix) if os.path.isdir(prefix) else None
        return {"kind": "managed", "prefix": prefix, "record": record}
    if os.path.lexists(path):
        return {"kind": "foreign", "prefix": None, "record": None}
    return {"kind": "missing", "prefix": None, "record": None}


def environment_is_current(state, stamp):
    """True when the stable path points at a finished build with this stamp whose python runs."""
    record = state.get("record")
    if state.get("kind") != "managed" or not record or record.get("stamp") != stamp:
        return False
    return os.path.exists(os.path.join(state["prefix"], "bin", "python"))


def build_prefixes(path):
    """Every build directory of the environment at `path`, newest first (by modification time)."""
    parent, name = os.path.split(os.path.normpath(path))
    pattern = re.compile(r"^\.%s-[0-9a-f]{%d}$" % (re.escape(name), STAMP_LENGTH_IN_NAME))
    if not os.path.isdir(parent):
        return []
    found = []
    for entry in os.listdir(parent):
        full = os.path.join(parent, entry)
        if pattern.match(entry) and os.path.isdir(full) and not os.path.islink(full):
            found.append((os.path.getmtime(full), full))
    return [full for _mtime, full in sorted(found, reverse=True)]


def leftovers(path):
    """Spec staging directories and swap links a killed run may have left beside `path`."""
    parent, name = os.path.split(os.path.normpath(path))
    pattern = re.compile(r"^(\.%s\.staging-[A-Za-z0-9_]{8}|%s\.swap-[0-9]+)$" % (re.escape(name), re.escape(name)))
    if not os.path.isdir(parent):
        return []
    return sorted(os.path.join(parent, entry) for entry in os.listdir(parent) if pattern.match(entry))


def prefixes_to_prune(path, current, keep):
    """Build directories to remove: all but `current` and the `keep` newest finished ones.

    Unfinished builds (no stamp record: a build that failed or was killed) are always removed,
    and so are the staging directories and swap links of killed runs.
    """
    remove, kept = [], 0
    for prefix in build_prefixes(path):
        if prefix == current:
            continue
        if read_stamp(prefix) is not None and kept < keep:
            kept += 1
            continue
        remove.append(prefix)
    return remove + leftovers(path)


def swap_symlink(path, prefix):
    """Point `path` at `prefix` with one rename(2): readers see the old or the new, never neither."""
    parent = os.path.dirname(os.path.normpath(path))
    fsutil.swap_symlink(path, os.path.basename(prefix) if os.path.dirname(prefix) == parent else prefix)


# --- commands --------------------------------------------------------------------------------

def index_arguments(index_url=None, extra_index_urls=None, wheelhouse=None):
    """Index options shared by uv and pip: a wheelhouse means --no-index and nothing else."""
    if wheelhouse:
        return ["--no-index", "--find-links", wheelhouse]
    args = []
    if index_url:
        args += ["--index-url", index_url]
    for url in extra_index_urls or []:
        args += ["--extra-index-url", url]
    return args


def uv_venv_command(uv, python, prefix):
    return [uv, "venv", "--no-config", "--no-project", "--no-python-downloads", "--python", python, prefix]


def uv_sync_command(uv, prefix, requirements_file, index_url=None, extra_index_urls=None, wheelhouse=None,
                    only_binary=True, compile_bytecode=True):
    """`uv pip sync`: installs exactly the lock into the prefix, every file hash-checked."""
    argv = [uv, "pip", "sync", "--no-config", "--python", os.path.join(prefix, "bin", "python"),
            "--require-hashes", "--no-python-downloads"]
    if extra_index_urls and not wheelhouse:
        # A local version such as 2.1.0+cu118 exists only on the PyTorch index: look at every
        # index for the pinned file instead of stopping at the first that knows the name.
        argv += ["--index-strategy", "unsafe-best-match"]
    if only_binary:
        argv += ["--only-binary", ":all:"]
    if compile_bytecode:
        argv.append("--compile-bytecode")
    argv += index_arguments(index_url, extra_index_urls, wheelhouse)
    argv.append(requirements_file)
    return argv


def micromamba_create_command(micromamba, prefix, root_prefix, python_version, channels=None,
                              spec_file=None, lock_file=None):
    """`micromamba create` from a lock (no solving) or from an exact Python plus a spec file."""
    argv = [micromamba, "create", "--yes", "--no-rc", "--root-prefix", root_prefix, "--prefix", prefix]
    if lock_file:
        return argv + ["--file", lock_file]
    argv += ["--override-channels", "--strict-channel-priority"]
    for channel in channels or []:
        argv += ["--channel", channel]
    if spec_file:
        argv += ["--file", spec_file]
    return argv + ["python=%s" % python_version, "pip"]


def pip_install_command(prefix, requirements_file, index_url=None, extra_index_urls=None, wheelhouse=None,
                        only_binary=True, compile_bytecode=True):
    """pip inside a conda prefix, hash-checked, ignoring any pip configuration on the host."""
    argv = [os.path.join(prefix, "bin", "python"), "-I", "-m", "pip", "install", "--no-input",
            "--disable-pip-version-check", "--no-cache-dir", "--require-hashes"]
    if only_binary:
        argv.append("--only-binary=:all:")
    if not compile_bytecode:
        argv.append("--no-compile")
    argv += index_arguments(index_url, extra_index_urls, wheelhouse)
    return argv + ["--requirement", requirements_file]


def tool_environment(backend, cache_dir, ca_bundle=None):
    """Environment variables for the tools: no user configuration, no Python downloads.

    ca_bundle: a CA bundle on the host that uv (SSL_CERT_FILE), pip (PIP_CERT) and micromamba
    (MAMBA_SSL_VERIFY) trust instead of their built-in roots, for networks whose proxy re-signs TLS.
    """
    env = {"PIP_CONFIG_FILE": os.devnull, "PYTHONNOUSERSITE": "1", "PIP_NO_INPUT": "1",
           "UV_NO_CONFIG": "1", "UV_PYTHON_DOWNLOADS": "never", "NO_COLOR": "1"}
    if backend == "uv" and cache_dir:
        env["UV_CACHE_DIR"] = cache_dir
    if backend == "micromamba" and cache_dir:
        env["MAMBA_ROOT_PREFIX"] = cache_dir
    if ca_bundle:
        env.update({"SSL_CERT_FILE": ca_bundle, "PIP_CERT": ca_bundle, "MAMBA_SSL_VERIFY": ca_bundle})
    return env


# --- verification ----------------------------------------------------------------------------

VERIFY_SCRIPT = r"""
import importlib, json, platform, re, sys
try:
    from importlib import metadata
except ImportError:
    metadata = None
spec = json.loads(sys.argv[1])


def norm(version):
    version = version.strip().lower().lstrip("v")
    local = ""
    if "+" in version:
        version, local = version.split("+", 1)
    parts = version.split(".")
    while len(parts) > 1 and parts[-1] == "0":
        parts.pop()
    return ".".join(parts) + ("+" + local if local else "")


out = {"python_version": platform.python_version(), "versions": {}, "missing": [], "mismatched": [],
       "skipped": [], "import_errors": {}, "torch": None}
for pin in spec["pins"]:
    try:
        have = metadata.version(pin["name"])
    except Exception:
        (out["skipped"] if pin.get("marker") else out["missing"]).append(pin["name"])
        continue
    out["versions"][pin["name"]] = have
    if norm(have) != norm(pin["version"]):
        out["mismatched"].append({"name": pin["name"], "pinned": pin["version"], "installed": have})
for name in spec["imports"]:
    try:
        importlib.import_module(name)
    except BaseException as exc:
        out["import_errors"][name] = "%s: %s" % (type(exc).__name__, exc)
if spec.get("torch_cuda"):
    try:
        import torch
        out["torch"] = {"version": torch.__version__, "cuda": torch.version.cuda,
                        "available": bool(torch.cuda.is_available()),
                        "device_count": int(torch.cuda.device_count())}
    except BaseException as exc:
        out["torch"] = {"error": "%s: %s" % (type(exc).__name__, exc)}
print(json.dumps(out))
"""


def verify_command(prefix, pins, imports, torch_cuda=None):
    spec = {"pins": [{"name": p["name"], "version": p["version"], "marker": p["marker"]} for p in pins],
            "imports": list(imports or []), "torch_cuda": torch_cuda}
    return [os.path.join(prefix, "bin", "python"), "-I", "-c", VERIFY_SCRIPT, json.dumps(spec)]


def verification_problems(report, python_version, torch_cuda=None):
    """Human-readable problems in a verify report; empty when the environment is right."""
    problems = []
    if not python_version_matches(python_version, report.get("python_version") or "0"):
        problems.append("Python is %s, the pin is %s" % (report.get("python_version"), python_version))
    if report.get("missing"):
        problems.append("not installed: %s" % ", ".join(report["missing"]))
    for item in report.get("mismatched") or []:
        problems.append("%s is %s, the pin is %s" % (item["name"], item["installed"], item["pinned"]))
    for name, error in sorted((report.get("import_errors") or {}).items()):
        problems.append("import %s failed: %s" % (name, error))
    if torch_cuda:
        torch = report.get("torch") or {}
        if torch.get("error"):
            problems.append("import torch failed: %s" % torch["error"])
        else:
            if torch.get("cuda") != torch_cuda:
                problems.append("torch.version.cuda is %s, the variant is built for CUDA %s" % (torch.get("cuda"), torch_cuda))
            if not torch.get("available"):
                problems.append("torch.cuda.is_available() is False on a host whose driver gpu_facts reads; "
                                "check that the driver supports CUDA %s and that the GPUs are visible" % torch_cuda)
    return problems


def tail(text, lines=OUTPUT_TAIL_LINES):
    return "\n".join(str(text or "").strip().splitlines()[-lines:])


def interpreter_version(runner, python):
    """Run the interpreter once for its exact version; PyEnvError when it is missing or broken."""
    if not python or not os.path.isabs(python):
        raise PyEnvError("python must be the absolute path of an interpreter on the host, got %r" % (python,))
    if not os.path.exists(python):
        raise PyEnvError("the interpreter %s does not exist on this host: install it (for example the "
                         "distribution's python3) or point python at one that does" % python)
    rc, out, err = runner([python, "-I", "-c", "import platform; print(platform.python_version())"], None)
    if rc != 0:
        raise PyEnvError("the interpreter %s does not run (rc %d): %s" % (python, rc, tail(err, 5)))
    return out.strip()


# --- the whole operation ---------------------------------------------------------------------

class Plan(object):
    """What an environment should be: validated inputs, chosen variant, stamp."""

    def __init__(self, params, runner):
        self.params = params
        self.name = check_env_name(params.get("name") or os.path.basename(os.path.normpath(params["path"])))
        self.path = os.path.normpath(params["path"])
        if not os.path.isabs(self.path):
            raise PyEnvError("path must be absolute, got %r" % (params["path"],))
        self.backend = params.get("backend") or "uv"
        if self.backend not in BACKENDS:
            raise PyEnvError("backend must be one of %s, got %r" % (", ".join(BACKENDS), self.backend))
        self.python_version = str(params.get("python_version") or "")
        try:
            parse_version(self.python_version)
        except ValueError:
            raise PyEnvError("python_version must be dotted numbers such as 3.10.12, got %r" % (self.python_version,))
        if params.get("ca_bundle") and not os.path.isfile(params["ca_bundle"]):
            raise PyEnvError("the CA bundle %s (ca_bundle) is not a file on the host: install it there first, or leave "
                             "it empty to keep each tool's own roots" % params["ca_bundle"])
        self.notes = []
        self.torch_variant = None
        by_variant = params.get("requirements_by_variant") or {}
        if params.get("requirements") and by_variant:
            raise PyEnvError("give either requirements or requirements_by_variant, not both")
        if by_variant:
            self.torch_variant, notes = choose_torch_variant(
                sorted(by_variant), params.get("torch_variant") or "auto", params.get("cuda_version"),
                params.get("driver_version"), bool(params.get("allow_minor_version_compat")))
            self.notes += notes
            self.requirements_text = by_variant[self.torch_variant]
            source = "requirements_by_variant[%s]" % self.torch_variant
        else:
            self.requirements_text = params.get("requirements") or ""
            source = "requirements"
        self.pins = parse_requirements(self.requirements_text, source)
        self.conda_spec = params.get("conda_spec") or None
        self.conda_lock = params.get("conda_lock") or None
        if self.backend == "uv" and (self.conda_spec or self.conda_lock):
            raise PyEnvError("conda_spec and conda_lock need backend micromamba; the uv backend takes a python and a requirements lock")
        if self.conda_spec and self.conda_lock:
            raise PyEnvError("give either conda_spec or conda_lock, not both: a lock already fixes every package")
        if self.backend == "uv" and not self.pins:
            raise PyEnvError("the uv backend needs a requirements lock with at least one hashed pin")
        self.torch_index_url = ""
        extra = list(params.get("extra_index_urls") or [])
        if self.torch_variant and params.get("torch_index_url"):
            self.torch_index_url = torch_index_for(params["torch_index_url"], self.torch_variant)
            extra.append(self.torch_index_url)
        self.index_url = params.get("index_url") or ""
        self.extra_index_urls = extra
        self.wheelhouse = params.get("wheelhouse") or None
        self.wheelhouse_entries = wheelhouse_fingerprint(self.wheelhouse) if self.wheelhouse else None
        self.interpreter = None
        if self.backend == "uv":
            version = interpreter_version(runner, params.get("python"))
            if not python_version_matches(self.python_version, version):
                raise PyEnvError(
                    "python_version is %s but %s is Python %s: point python at an interpreter of %s, or set "
                    "python_version to %s if that is the version you mean to pin"
                    % (self.python_version, params.get("python"), version, self.python_version, version))
            self.interpreter = {"path": params.get("python"), "version": version}
        self.inputs = stamp_inputs(
            self.backend, self.python_version, self.pins, self.interpreter, self.conda_spec, self.conda_lock,
            params.get("channels"), self.torch_variant, self.index_url, self.extra_index_urls,
            self.wheelhouse_entries if self.wheelhouse else None,
            params.get("only_binary", True), params.get("compile_bytecode", True))
        if self.wheelhouse and self.wheelhouse_entries is None:
            # Not there yet (check mode before the wheelhouse is pushed): the stamp cannot match.
            self.inputs["wheelhouse"] = "missing:%s" % self.wheelhouse
        self.stamp = compute_stamp(self.inputs)
        self.prefix = prefix_for(self.path, self.stamp)

    def torch_cuda(self):
        if self.params.get("torch_check") and self.torch_variant and self.torch_variant != CPU_VARIANT:
            return variant_cuda(self.torch_variant)
        return None

    def commands(self, spec_dir):
        """The argv list a build runs, with the spec files it writes to spec_dir."""
        p = self.params
        requirements_file = os.path.join(spec_dir, "requirements.txt")
        commands = []
        if self.backend == "uv":
            commands.append(uv_venv_command(p.get("uv"), p.get("python"), self.prefix))
            if self.pins:
                commands.append(uv_sync_command(
                    p.get("uv"), self.prefix, requirements_file, self.index_url, self.extra_index_urls,
                    self.wheelhouse, p.get("only_binary", True), p.get("compile_bytecode", True)))
        else:
            spec_file = os.path.join(spec_dir, "environment.yml") if self.conda_spec else None
            lock_file = os.path.join(spec_dir, lock_file_name(self.conda_lock)) if self.conda_lock else None
            commands.append(micromamba_create_command(
                p.get("micromamba"), self.prefix, p.get("cache_dir") or os.path.join(os.path.dirname(self.path), ".micromamba"),
                self.python_version, p.get("channels"), spec_file, lock_file))
            if self.pins:
                commands.append(pip_install_command(
                    self.prefix, requirements_file, self.index_url, self.extra_index_urls, self.wheelhouse,
                    p.get("only_binary", True), p.get("compile_bytecode", True)))
        return commands

    def spec_files(self):
        files = {}
        if self.pins:
            files["requirements.txt"] = self.requirements_text
        if self.conda_spec:
            files["environment.yml"] = self.conda_spec
        if self.conda_lock:
            files[lock_file_name(self.conda_lock)] = self.conda_lock
        return files


def lock_file_name(conda_lock):
    """micromamba tells an explicit list from a conda-lock file by its content and name."""
    if re.search(r"^@EXPLICIT\s*$", conda_lock or "", re.MULTILINE):
        return "explicit.txt"
    return "conda-lock.yml"


def _write(path, text, mode=0o644):
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)


def _remove_tree(path):
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def _diff(before_pins, plan):
    return {"before": "\n".join(before_pins or []) + ("\n" if before_pins else ""),
            "after": "\n".join(pin_lines(plan.pins)) + ("\n" if plan.pins else ""),
            "before_header": "%s (installed)" % plan.path, "after_header": "%s (wanted)" % plan.path}


def ensure_environment(params, runner, check_mode=False):
    """Make `path` an environment built from these inputs; return the module result.

    runner(argv, env) -> (rc, stdout, stderr) runs a command. Raises PyEnvError on any
    failure; the stable path then still points where it pointed before.
    """
    started = time.time()
    plan = Plan(params, runner)
    state = current_environment(plan.path)
    if state["kind"] == "foreign":
        raise PyEnvError("%s exists and is not an environment this module manages (not a symlink to a stamped build); "
                         "move it away or choose another name" % plan.path)
    before_record = state.get("record") or {}
    result = {
        "changed": False, "rebuilt": False, "reused": False, "path": plan.path, "prefix": plan.prefix,
        "previous_prefix": state["prefix"], "stamp": plan.stamp, "torch_variant": plan.torch_variant,
        "python_version": plan.python_version, "backend": plan.backend, "removed": [], "commands": [],
        "notes": list(plan.notes), "pins": pin_lines(plan.pins),
    }
    if environment_is_current(state, plan.stamp):
        result["python_version"] = state["record"].get("python_version", plan.python_version)
        result["previous_prefix"] = None
        result["seconds"] = round(time.time() - started, 3)
        return result

    result["changed"] = True
    result["diff"] = _diff(before_record.get("pins"), plan)
    spec_dir_planned = os.path.join(plan.prefix, SPEC_DIR)
    result["commands"] = [redact(argv) for argv in plan.commands(spec_dir_planned)]
    reusable = read_stamp(plan.prefix)
    if reusable is not None and reusable.get("stamp") == plan.stamp and os.path.exists(os.path.join(plan.prefix, "bin", "python")):
        # A kept earlier build with exactly these inputs (a pin put back): swap to it, no install.
        result["reused"] = True
        result["commands"] = []
        if not check_mode:
            swap_symlink(plan.path, plan.prefix)
            result["removed"] = _prune(plan, params)
        result["python_version"] = reusable.get("python_version", plan.python_version)
        result["seconds"] = round(time.time() - started, 3)
        return result
    if check_mode:
        result["rebuilt"] = True
        result["seconds"] = round(time.time() - started, 3)
        return result

    if plan.wheelhouse and plan.wheelhouse_entries is None:
        raise PyEnvError("wheelhouse %s does not exist on the host: push it first (wheelhouse_src) or fix the path" % plan.wheelhouse)
    for tool in ("uv",) if plan.backend == "uv" else ("micromamba",):
        if not params.get(tool) or not os.access(params[tool], os.X_OK):
            raise PyEnvError("%s is not installed at %r; the conda_env role installs it before building" % (tool, params.get(tool)))

    parent = os.path.dirname(plan.path)
    old_umask = os.umask(0o022)
    try:
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o755)
        _remove_tree(plan.prefix)  # a leftover of a build that failed or was killed
        staging = tempfile.mkdtemp(prefix=".%s.staging-" % plan.name, dir=parent)
        try:
            for name, text in plan.spec_files().items():
                _write(os.path.join(staging, name), text)
            env = tool_environment(plan.backend, params.get("cache_dir"), params.get("ca_bundle"))
            try:
                for argv in plan.commands(staging):
                    rc, out, err = runner(argv, env)
                    if rc != 0:
                        raise PyEnvError(
                            "the build failed (%s exited %d); the environment at %s is unchanged:\n%s"
                            % (os.path.basename(argv[0]), rc, plan.path, redact(tail(err or out))),
                            command=redact(argv), rc=rc)
                report = _verify(plan, runner, env)
                problems = verification_problems(report, plan.python_version, plan.torch_cuda())
                if problems:
                    raise PyEnvError("the new build failed verification; the environment at %s is unchanged: %s"
                                     % (plan.path, "; ".join(problems)), verify=report)
                os.makedirs(os.path.join(plan.prefix, SPEC_DIR), 0o755)
                for name in plan.spec_files():
                    shutil.copyfile(os.path.join(staging, name), os.path.join(plan.prefix, SPEC_DIR, name))
                    os.chmod(os.path.join(plan.prefix, SPEC_DIR, name), 0o644)
                record = {
                    "format": STAMP_FORMAT, "stamp": plan.stamp, "name": plan.name, "backend": plan.backend,
                    "python_version": report["python_version"], "torch_variant": plan.torch_variant,
                    "pins": pin_lines(plan.pins), "versions": report["versions"], "inputs": _redacted_inputs(plan.inputs),
                    "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
                if report.get("torch"):
                    record["torch"] = report["torch"]
                # The record is written last: its presence marks a finished, verified build.
                _write(os.path.join(plan.prefix, STAMP_FILE), json.dumps(record, indent=2, sort_keys=True) + "\n")
            except BaseException:
                _remove_tree(plan.prefix)
                raise
        finally:
            _remove_tree(staging)
        swap_symlink(plan.path, plan.prefix)
        result["removed"] = _prune(plan, params)
    finally:
        os.umask(old_umask)
    result["rebuilt"] = True
    result["python_version"] = report["python_version"]
    result["versions"] = report["versions"]
    if report.get("torch"):
        result["torch"] = report["torch"]
    result["seconds"] = round(time.time() - started, 3)
    return result


def _redacted_inputs(inputs):
    data = dict(inputs)
    if "index_url" in data:
        data["index_url"] = redact(data["index_url"])
    if "extra_index_urls" in data:
        data["extra_index_urls"] = redact(data["extra_index_urls"])
    if "channels" in data:
        data["channels"] = redact(data["channels"])
    return data


def _verify(plan, runner, env):
    rc, out, err = runner(verify_command(plan.prefix, plan.pins, plan.params.get("imports"), plan.torch_cuda()), env)
    if rc != 0:
        raise PyEnvError("verifying the new build failed to run (rc %d): %s" % (rc, tail(err or out)))
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise PyEnvError("verifying the new build printed no report: %s" % tail(out or err))


def _prune(plan, params):
    removed = prefixes_to_prune(plan.path, plan.prefix, max(0, int(params.get("keep", 1))))
    for prefix in removed:
        _remove_tree(prefix)
    return removed


def check_environment(params, runner):
    """Validate the inputs and say whether a build is due, changing nothing (state=checked)."""
    plan = Plan(params, runner)
    state = current_environment(plan.path)
    if state["kind"] == "foreign":
        raise PyEnvError("%s exists and is not an environment this module manages (not a symlink to a stamped build); "
                         "move it away or choose another name" % plan.path)
    return {
        "changed": False, "path": plan.path, "prefix": plan.prefix, "stamp": plan.stamp,
        "rebuild_needed": not environment_is_current(state, plan.stamp), "torch_variant": plan.torch_variant,
        "python_version": plan.python_version, "backend": plan.backend, "notes": plan.notes,
        "pins": pin_lines(plan.pins), "interpreter": plan.interpreter,
    }


def remove_environment(path, check_mode=False):
    """Remove the stable path and every build of it (state=absent)."""
    path = os.path.normpath(path)
    state = current_environment(path)
    if state["kind"] == "foreign":
        raise PyEnvError("%s is not an environment this module manages; remove it by hand if it should go" % path)
    targets = build_prefixes(path)
    changed = state["kind"] == "managed" or bool(targets)
    if changed and not check_mode:
        if state["kind"] == "managed":
            os.unlink(path)
        for prefix in targets:
            _remove_tree(prefix)
    return {"changed": changed, "path": path, "removed": targets + ([path] if state["kind"] == "managed" else [])}
