# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read an NVIDIA CDI specification (as written by `nvidia-ctk cdi generate`) and tell
whether it still matches the installed driver and GPUs.

A CDI spec names the driver's user-space files by version (libcuda.so.570.133.20,
libnvidia-ml.so.570.133.20, firmware/nvidia/570.133.20/...) and, in recent toolkits, passes
--host-driver-version=570.133.20 to the enable-cuda-compat hook. After a driver upgrade
those files are gone and containers asking for nvidia.com/gpu=... fail to start, so the
spec must be regenerated whenever the driver version changes. Devices are named by index
("0"), by UUID ("GPU-..."), and "all"; a replaced GPU makes the UUID names stale too.

The spec is YAML or JSON. JSON is parsed with the standard library, YAML with PyYAML where
the host has it; otherwise the few fields needed are read line by line, which the
generated format allows. Python 3.8+.
"""

from __future__ import annotations

import json
import re

try:
    import yaml
    HAS_YAML = True
except ImportError:  # a host without PyYAML: the line reader below is used
    yaml = None
    HAS_YAML = False

_VERSION = r"[0-9]+\.[0-9]+(?:\.[0-9]+)?"
# Versioned driver libraries present in every spec of a driver with CUDA; the number after
# .so. is the driver version.
_LIB_VERSION = re.compile(r"/(?:libcuda|libnvidia-ml)\.so\.(%s)\b" % _VERSION)
_HOOK_VERSION = re.compile(r"--host-driver-version=(%s)\b" % _VERSION)
_NAME_LINE = re.compile(r"""^[\s-]*"?name"?\s*:\s*"?([^"\s,]+)"?\s*,?\s*$""")
_KIND_LINE = re.compile(r"""^\s*"?kind"?\s*:\s*"?([^"\s,]+)"?\s*,?\s*$""")
_CDI_VERSION_LINE = re.compile(r"""^\s*"?cdiVersion"?\s*:\s*"?([^"\s,]+)"?\s*,?\s*$""")
_GPU_UUID = re.compile(r"^GPU-[0-9a-fA-F-]+$")


class SpecError(Exception):
    """The file is not a CDI specification this reader understands."""


def _strings(value):
    """Every string inside a parsed document."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def _parse_structured(text):
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return json.loads(text)
    if HAS_YAML:
        return yaml.safe_load(text)
    return None


def _parse_lines(text):
    """kind, cdiVersion and device names of a generated YAML spec, without a YAML parser.

    Device names are the only "name" keys in an NVIDIA spec (hooks use hookName); the top
    level keys kind and cdiVersion are unindented in the generated YAML.
    """
    kind = cdi_version = None
    names = []
    in_devices = False
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace() and not line.startswith("-"):
            in_devices = line.split(":", 1)[0].strip().strip('"') == "devices"
        match = _KIND_LINE.match(line)
        if match and not line[0].isspace():
            kind = match.group(1)
        match = _CDI_VERSION_LINE.match(line)
        if match and not line[0].isspace():
            cdi_version = match.group(1)
        match = _NAME_LINE.match(line)
        if match and in_devices:
            names.append(match.group(1))
    return {"kind": kind, "cdiVersion": cdi_version, "devices": [{"name": n} for n in names]}


def parse_spec(text):
    """Summary of a spec: kind, cdi_version, device_names, gpu_uuids, driver_versions,
    driver_version (None unless exactly one version is named). Raises SpecError."""
    try:
        document = _parse_structured(text)
    except ValueError as exc:
        raise SpecError("not valid JSON: %s" % exc)
    except Exception as exc:  # yaml.YAMLError and its subclasses
        raise SpecError("not valid YAML: %s" % exc)
    if document is None:
        document = _parse_lines(text)
    if not isinstance(document, dict):
        raise SpecError("the document is a %s, not a CDI specification object" % type(document).__name__)
    devices = document.get("devices") or []
    if not isinstance(devices, list):
        raise SpecError("devices is not a list")
    names = [str(d.get("name")) for d in devices if isinstance(d, dict) and d.get("name") is not None]
    texts = list(_strings(document)) if "containerEdits" in document else [text]
    hook_versions = set()
    lib_versions = set()
    for item in texts:
        hook_versions.update(_HOOK_VERSION.findall(item))
        lib_versions.update(_LIB_VERSION.findall(item))
    versions = sorted(hook_versions or lib_versions)
    return {
        "kind": document.get("kind"),
        "cdi_version": None if document.get("cdiVersion") is None else str(document.get("cdiVersion")),
        "device_names": names,
        "gpu_uuids": sorted(n for n in names if _GPU_UUID.match(n)),
        "driver_versions": versions,
        "driver_version": versions[0] if len(versions) == 1 else None,
    }


def assess(spec, driver_version=None, gpu_uuids=None, kind="nvidia.com/gpu"):
    """Reasons the spec no longer fits the host ([] when it does)."""
    reasons = []
    if spec.get("kind") != kind:
        reasons.append("the spec's kind is %r, expected %r" % (spec.get("kind"), kind))
    if "all" not in spec.get("device_names", []):
        reasons.append("the spec defines no '%s=all' device" % kind)
    if driver_version:
        found = spec.get("driver_versions") or []
        if not found:
            reasons.append("the spec names no driver version (no versioned libcuda/libnvidia-ml) while driver %s is "
                           "installed" % driver_version)
        elif found != [driver_version]:
            reasons.append("the spec was generated for driver %s, the host runs driver %s"
                           % (", ".join(found), driver_version))
    if gpu_uuids:
        wanted = sorted(u.upper() for u in gpu_uuids if u)
        present = sorted(u.upper() for u in spec.get("gpu_uuids") or [])
        if present and present != wanted:
            missing = sorted(set(wanted) - set(present))
            extra = sorted(set(present) - set(wanted))
            parts = []
            if missing:
                parts.append("GPUs not in the spec: %s" % ", ".join(missing))
            if extra:
                parts.append("GPUs in the spec but not on the host: %s" % ", ".join(extra))
            reasons.append("the GPUs changed (%s)" % "; ".join(parts))
        elif not present:
            indices = [n for n in spec.get("device_names", []) if n.isdigit()]
            if len(indices) != len(wanted):
                reasons.append("the spec has %d GPU index device(s), the host has %d GPU(s)" % (len(indices), len(wanted)))
    return reasons


def read_spec(path, driver_version=None, gpu_uuids=None, kind="nvidia.com/gpu"):
    """The module's result for one spec file: exists, the parse summary, stale and reasons."""
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8")
    except FileNotFoundError:
        return {"exists": False, "stale": True, "reasons": ["%s does not exist" % path], "kind": None,
                "cdi_version": None, "device_names": [], "gpu_uuids": [], "driver_versions": [],
                "driver_version": None}
    except UnicodeDecodeError as exc:
        raise SpecError("not UTF-8 text: %s" % exc)
    spec = parse_spec(text)
    reasons = assess(spec, driver_version, gpu_uuids, kind)
    spec.update({"exists": True, "stale": bool(reasons), "reasons": reasons})
    return spec
