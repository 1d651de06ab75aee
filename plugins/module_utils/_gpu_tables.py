# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""NVIDIA driver, CUDA and compute-capability tables, with pure helpers over them.

One place for the numbers that the gpu_facts, deploy_preflight and gpu_settings modules and
the cuda / conda_env roles decide on. Every table names its source; change a number only
against that source. Runs on managed hosts: Python 3.9+, standard library only.
"""

from __future__ import annotations

import re

# Minimum Linux x86_64 driver for each CUDA toolkit release.
# Source: CUDA Toolkit release notes, table "CUDA Toolkit and Corresponding Driver Versions"
# (GA releases; an "Update N" release may ask for a slightly newer build of the same branch).
# There was no CUDA 12.7 release.
CUDA_MIN_DRIVER = {
    "11.7": "515.43.04",
    "11.8": "520.61.05",
    "12.0": "525.60.13",
    "12.1": "530.30.02",
    "12.2": "535.54.03",
    "12.3": "545.23.06",
    "12.4": "550.54.14",
    "12.5": "555.42.02",
    "12.6": "560.28.03",
    "12.8": "570.26",
    "12.9": "575.51.03",
    "13.0": "580.65.06",
}

# Minor-version compatibility: any runtime of a CUDA major release runs on a driver at or
# above this version, with reduced features (no PTX JIT of newer PTX, some APIs missing).
# Source: CUDA Compatibility guide, "Minor Version Compatibility" (13.x: ">= 580").
CUDA_MINOR_COMPAT_MIN_DRIVER = {
    11: "450.80.02",
    12: "525.60.13",
    13: "580",
}

# Driver branch lifecycle. Source: NVIDIA "Supported drivers and CUDA toolkit versions"
# (data-centre driver lifecycle). Branches not listed here are end of life.
DRIVER_BRANCHES = {
    535: {"kind": "lts", "eol": "2026-06"},
    570: {"kind": "production", "eol": "2026-02"},
    580: {"kind": "lts", "eol": "2028-08", "cuda": "13.x"},
}
DRIVER_BRANCHES_EOL = tuple(range(515, 566, 5)) + (575,)

# Compute capability -> architecture. Source: developer.nvidia.com/cuda-gpus and the CUDA C
# Programming Guide, "Compute Capabilities". Exact (major, minor) first, then by major.
ARCHITECTURE_BY_CC = {
    (7, 0): "Volta",
    (7, 2): "Volta",
    (7, 5): "Turing",
    (8, 0): "Ampere",
    (8, 6): "Ampere",
    (8, 7): "Ampere",
    (8, 9): "Ada Lovelace",
    (9, 0): "Hopper",
    (10, 0): "Blackwell",
    (10, 3): "Blackwell",
    (11, 0): "Blackwell",
    (12, 0): "Blackwell",
    (12, 1): "Blackwell",
}
ARCHITECTURE_BY_MAJOR = {
    3: "Kepler",
    5: "Maxwell",
    6: "Pascal",
    7: "Volta",
    8: "Ampere",
    9: "Hopper",
    10: "Blackwell",
    11: "Blackwell",
    12: "Blackwell",
}

# Examples from the same source, for messages and tests.
GPU_COMPUTE_CAPABILITY = {
    "H200": "9.0",
    "H100": "9.0",
    "L40S": "8.9",
    "RTX 4090": "8.9",
    "A10": "8.6",
    "RTX 3090": "8.6",
    "A100": "8.0",
    "T4": "7.5",
    "V100": "7.0",
}

# Minimum compute capability per serving engine. None: no GPU needed (runs on the CPU).
# vllm: vLLM installation docs ("compute capability 7.0 or higher").
# sglang: its kernels (sgl-kernel, FlashInfer, FA3) ship for sm80 and newer; sm75 support was
# announced end of life (sgl-project/sglang#6006) and current releases fail on T4 / RTX 20xx
# with "no kernel image is available" (sgl-project/sglang#24224, #24302). 8.0 is the floor.
# llama_cpp: its CUDA backend builds for every supported architecture and runs on the CPU.
ENGINE_MIN_CC = {
    "vllm": "7.0",
    "sglang": "8.0",
    "llama_cpp": None,
}
ENGINES = tuple(sorted(ENGINE_MIN_CC))
GPU_REQUIRED_ENGINES = ("sglang", "vllm")

# Minimum compute capability per weight dtype / quantization on GPU engines.
# bf16 (8.0) and fp8 e4m3 tensor cores (8.9): developer.nvidia.com/cuda-gpus and the CUDA
# C Programming Guide (bf16 and fp8 tensor core support per compute capability).
# awq / int4 / int8 (W8A8) need Turing (7.5), gptq runs from Volta (7.0): vLLM docs,
# "Quantization: Supported Hardware". fp16, fp32 and GGUF types: no extra requirement.
DTYPE_MIN_CC = {
    "bf16": "8.0",
    "fp8": "8.9",
    "awq": "7.5",
    "int4": "7.5",
    "int8": "7.5",
    "gptq": "7.0",
}

_VERSION_RE = re.compile(r"^\s*v?(\d+(?:\.\d+)*)\s*$")


def parse_version(version):
    """Return a version string such as "550.54.14" or "12.4" as a tuple of ints.

    Accepts ints and floats too (12.4 -> (12, 4)). Raises ValueError with the offending value.
    """
    if isinstance(version, bool):
        raise ValueError("not a version: %r" % (version,))
    if isinstance(version, int):
        return (version,)
    if isinstance(version, float):
        version = repr(version)
    if isinstance(version, (tuple, list)):
        return tuple(int(part) for part in version)
    match = _VERSION_RE.match(str(version or ""))
    if not match:
        raise ValueError("not a version: %r (expected dotted numbers such as 550.54.14)" % (version,))
    return tuple(int(part) for part in match.group(1).split("."))


def compare_versions(left, right):
    """Return -1, 0 or 1 comparing two versions; missing parts count as zero (12.4 == 12.4.0)."""
    a, b = parse_version(left), parse_version(right)
    width = max(len(a), len(b))
    a += (0,) * (width - len(a))
    b += (0,) * (width - len(b))
    return (a > b) - (a < b)


def version_at_least(version, minimum):
    return compare_versions(version, minimum) >= 0


def cuda_major_minor(cuda):
    """Return "12.4" for "12.4", "12.4.1", 12.4 or 12040 (the integer NVML and cudart report)."""
    if isinstance(cuda, int) and not isinstance(cuda, bool) and cuda >= 1000:
        return cuda_version_from_int(cuda)
    parts = parse_version(cuda)
    if len(parts) < 2:
        raise ValueError("CUDA version %r needs a major and a minor part, such as 12.4" % (cuda,))
    return "%d.%d" % parts[:2]


def cuda_version_from_int(value):
    """Turn the CUDA driver API integer (12040) into "12.4"."""
    value = int(value)
    return "%d.%d" % (value // 1000, (value % 1000) // 10)


def min_driver_for_cuda(cuda):
    """Minimum driver for the full feature set of a CUDA toolkit release, e.g. "550.54.14".

    Raises ValueError for a release that is not in the table, naming the known ones.
    """
    key = cuda_major_minor(cuda)
    if key not in CUDA_MIN_DRIVER:
        raise ValueError(
            "CUDA %s is not in the driver table; known releases: %s"
            % (key, ", ".join(sorted(CUDA_MIN_DRIVER, key=parse_version)))
        )
    return CUDA_MIN_DRIVER[key]


def minor_compat_min_driver(cuda):
    """Lowest driver that runs any runtime of this CUDA major release (reduced features), or None."""
    major = parse_version(cuda_major_minor(cuda))[0]
    return CUDA_MINOR_COMPAT_MIN_DRIVER.get(major)


def cuda_support_level(driver, cuda):
    """Return "full", "minor_version_compat" or "unsupported" for a driver and a CUDA release."""
    key = cuda_major_minor(cuda)
    full = CUDA_MIN_DRIVER.get(key)
    if full is not None and version_at_least(driver, full):
        return "full"
    if full is None:
        # A release newer than the table: only the major release's compatibility floor is known.
        compat = minor_compat_min_driver(key)
        if compat is not None and version_at_least(driver, compat):
            return "minor_version_compat"
        return "unsupported"
    compat = minor_compat_min_driver(key)
    if compat is not None and version_at_least(driver, compat):
        return "minor_version_compat"
    return "unsupported"


def driver_supports_cuda(driver, cuda, allow_minor_version_compat=False):
    """Return (ok, reason) for running CUDA `cuda` applications on driver `driver`.

    Strict by default: the driver must reach the release's minimum from the toolkit table.
    With allow_minor_version_compat, a driver that only reaches the major release's
    compatibility floor also passes; the reason then says what is lost.
    """
    try:
        key = cuda_major_minor(cuda)
        parse_version(driver)
    except ValueError as exc:
        return False, str(exc)
    level = cuda_support_level(driver, key)
    full = CUDA_MIN_DRIVER.get(key)
    compat = minor_compat_min_driver(key)
    if level == "full":
        return True, "driver %s supports CUDA %s (minimum %s)" % (driver, key, full)
    if level == "minor_version_compat":
        reason = (
            "driver %s is below the CUDA %s minimum %s but at or above %s, the minor-version "
            "compatibility floor: CUDA %s runs with reduced features (no PTX JIT for newer PTX)"
            % (driver, key, full or "(not in table)", compat, key)
        )
        return bool(allow_minor_version_compat), reason
    needed = full or compat
    if needed is None:
        return False, "CUDA %s is not in the driver table; cannot tell whether driver %s runs it" % (key, driver)
    return False, "driver %s is too old for CUDA %s: needs %s or newer" % (driver, key, needed)


def max_cuda_for_driver(driver):
    """Newest CUDA release in the table whose full minimum the driver reaches, or None."""
    best = None
    for cuda, minimum in CUDA_MIN_DRIVER.items():
        if version_at_least(driver, minimum) and (best is None or compare_versions(cuda, best) > 0):
            best = cuda
    return best


def driver_branch(driver):
    """Branch number of a driver version: 550 for "550.54.14"."""
    return parse_version(driver)[0]


def driver_branch_status(driver):
    """Lifecycle of the driver's branch: {branch, kind, eol, supported}."""
    branch = driver_branch(driver)
    info = DRIVER_BRANCHES.get(branch)
    if info is not None:
        result = {"branch": branch, "supported": True}
        result.update(info)
        return result
    if branch in DRIVER_BRANCHES_EOL:
        return {"branch": branch, "kind": "eol", "eol": None, "supported": False}
    return {"branch": branch, "kind": "unknown", "eol": None, "supported": None}


def parse_compute_capability(value):
    """Return (major, minor) for "9.0", "sm_90", "sm90", 9.0, (9, 0) or 90. Raises ValueError."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return int(value[0]), int(value[1])
    if isinstance(value, bool) or value is None:
        raise ValueError("not a compute capability: %r" % (value,))
    if isinstance(value, int):
        if value >= 10:
            return value // 10, value % 10
        return value, 0
    text = str(value).strip().lower()
    match = re.match(r"^(?:sm_?|compute_?)?(\d+)\.(\d+)$", text)
    if match:
        return int(match.group(1)), int(match.group(2))
    match = re.match(r"^(?:sm_?|compute_?)(\d+)(\d)[a-z]?$", text)
    if match:
        return int(match.group(1)), int(match.group(2))
    if re.match(r"^\d+$", text):
        return int(text), 0
    raise ValueError("not a compute capability: %r (expected major.minor such as 9.0)" % (value,))


def format_compute_capability(value):
    major, minor = parse_compute_capability(value)
    return "%d.%d" % (major, minor)


def compare_compute_capability(left, right):
    a, b = parse_compute_capability(left), parse_compute_capability(right)
    return (a > b) - (a < b)


def architecture_for_cc(value):
    """Architecture name for a compute capability ("9.0" -> "Hopper"); "unknown" if not known."""
    cc = parse_compute_capability(value)
    return ARCHITECTURE_BY_CC.get(cc) or ARCHITECTURE_BY_MAJOR.get(cc[0], "unknown")


def normalize_dtype(dtype):
    """Canonical lower-case weight dtype: bfloat16 -> bf16, float16/half -> fp16, float32 -> fp32,
    fp8_e4m3 -> fp8. GGUF type names are returned upper case (q4_k_m -> Q4_K_M)."""
    if dtype is None:
        return None
    text = str(dtype).strip()
    low = text.lower()
    aliases = {
        "bfloat16": "bf16",
        "float16": "fp16",
        "half": "fp16",
        "f16": "fp16",
        "float32": "fp32",
        "float": "fp32",
        "f32": "fp32",
        "fp8_e4m3": "fp8",
        "fp8_e5m2": "fp8",
        "e4m3": "fp8",
        "float8": "fp8",
        "w8a8": "int8",
        "awq_marlin": "awq",
        "gptq_marlin": "gptq",
        "w4a16": "int4",
    }
    low = aliases.get(low, low)
    if re.match(r"^(i?q\d|tq\d|mxfp4)", low):
        return low.upper()
    return low


def engine_min_cc(engine):
    """Minimum compute capability for an engine ("7.0"), None if it needs no GPU.

    Raises ValueError for an unknown engine, naming the known ones.
    """
    if engine not in ENGINE_MIN_CC:
        raise ValueError("unknown engine %r; known: %s" % (engine, ", ".join(ENGINES)))
    return ENGINE_MIN_CC[engine]


def engine_needs_gpu(engine):
    engine_min_cc(engine)
    return engine in GPU_REQUIRED_ENGINES


def dtype_min_cc(dtype):
    """Minimum compute capability a weight dtype needs on a GPU engine, or None."""
    return DTYPE_MIN_CC.get(normalize_dtype(dtype))


def required_compute_capability(engine, dtype=None, minimum=None):
    """Highest of the engine's, the dtype's and an explicit minimum, with the reasons.

    Returns (cc or None, [reason, ...]) where cc is a "major.minor" string.
    """
    wanted = []
    engine_cc = engine_min_cc(engine)
    if engine_cc:
        wanted.append((engine_cc, "%s needs compute capability %s or newer" % (engine, engine_cc)))
    if engine in GPU_REQUIRED_ENGINES or engine_cc:
        dtype_cc = dtype_min_cc(dtype)
        if dtype_cc:
            wanted.append((dtype_cc, "%s weights need compute capability %s or newer" % (normalize_dtype(dtype), dtype_cc)))
    if minimum:
        wanted.append((format_compute_capability(minimum), "min_compute_capability is %s" % format_compute_capability(minimum)))
    if not wanted:
        return None, []
    top = max(wanted, key=lambda item: parse_compute_capability(item[0]))[0]
    reasons = [reason for cc, reason in wanted if compare_compute_capability(cc, top) == 0]
    return top, reasons


def compute_capability_ok(cc, engine, dtype=None, minimum=None):
    """Return (ok, reason) for a GPU of compute capability `cc` under an engine and dtype."""
    needed, reasons = required_compute_capability(engine, dtype, minimum)
    if needed is None:
        return True, "%s has no compute capability requirement" % engine
    have = format_compute_capability(cc)
    if compare_compute_capability(have, needed) >= 0:
        return True, "compute capability %s (%s) meets %s" % (have, architecture_for_cc(have), needed)
    return False, "compute capability %s (%s) is below %s: %s" % (
        have, architecture_for_cc(have), needed, "; ".join(reasons))
