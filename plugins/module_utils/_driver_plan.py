# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How the NVIDIA driver is installed on a host: the kernel module flavour (open or
proprietary) for its GPU generations, whether the driver branch supports every GPU, and
whether the fabric manager is needed. Pure functions over ansible_facts.gpu (gpu_facts).

Before a driver is loaded NVML cannot answer, so the generation comes from the PCI device
id read from sysfs; once NVML answers, from the compute capability. Runs on managed hosts:
Python 3.9+, standard library only.
"""

from __future__ import annotations

from ansible_collections.llmops.gpu_stack.plugins.module_utils._gpu_tables import (
    architecture_for_cc,
    driver_branch,
    driver_branch_status,
    parse_version,
)

FLAVOURS = ("open", "proprietary")
REQUESTS = ("auto",) + FLAVOURS

# From this branch on NVIDIA installs the open kernel modules by default on GPUs that support
# them. Source: NVIDIA technical blog "NVIDIA Transitions Fully Towards Open-Source GPU Kernel
# Modules" (R560) and the driver installation guide, "Kernel Modules".
OPEN_DEFAULT_FROM_BRANCH = 560

# Per generation: open modules supported / required, and the branches that support it.
# Open modules: NVIDIA/open-gpu-kernel-modules README ("Turing and later GPUs"); Grace Hopper
# and Blackwell support only the open modules (same blog and installation guide).
# Branch limits: R470 is the last branch for Kepler; R580 the last for Maxwell, Pascal and
# Volta (R580 release notes); Ada Lovelace and Hopper need R520 or newer (first driver of
# the CUDA 11.8 release that added them); Blackwell needs R570 or newer (CUDA 12.8).
GENERATIONS = {
    "Kepler": {"open": False, "open_required": False, "min_branch": None, "max_branch": 470},
    "Maxwell": {"open": False, "open_required": False, "min_branch": None, "max_branch": 580},
    "Pascal": {"open": False, "open_required": False, "min_branch": None, "max_branch": 580},
    "Volta": {"open": False, "open_required": False, "min_branch": None, "max_branch": 580},
    "Turing": {"open": True, "open_required": False, "min_branch": None, "max_branch": None},
    "Ampere": {"open": True, "open_required": False, "min_branch": None, "max_branch": None},
    "Ada Lovelace": {"open": True, "open_required": False, "min_branch": 520, "max_branch": None},
    "Hopper": {"open": True, "open_required": False, "min_branch": 520, "max_branch": None},
    "Grace Hopper": {"open": True, "open_required": True, "min_branch": 535, "max_branch": None},
    "Blackwell": {"open": True, "open_required": True, "min_branch": 570, "max_branch": None},
}

# PCI device id ranges of NVIDIA GPU chips (vendor 0x10de), from the PCI ID repository
# (pci-ids.ucw.cz, vendor 10de) and the supported-GPU list of the driver README. NVIDIA
# allocates device ids per chip in blocks, so a block maps to one generation.
PCI_DEVICE_RANGES = (
    (0x0fc0, 0x12ff, "GK10x", "Kepler"),
    (0x1340, 0x137f, "GM108", "Maxwell"),
    (0x1380, 0x13bf, "GM107", "Maxwell"),
    (0x13c0, 0x13ff, "GM204", "Maxwell"),
    (0x1400, 0x143f, "GM206", "Maxwell"),
    (0x15f0, 0x15ff, "GP100", "Pascal"),
    (0x17c0, 0x17ff, "GM200", "Maxwell"),
    (0x1b00, 0x1b3f, "GP102", "Pascal"),
    (0x1b80, 0x1bff, "GP104", "Pascal"),
    (0x1c00, 0x1c7f, "GP106", "Pascal"),
    (0x1c80, 0x1cff, "GP107", "Pascal"),
    (0x1d00, 0x1d7f, "GP108", "Pascal"),
    (0x1db0, 0x1dbf, "GV100", "Volta"),
    (0x1e00, 0x1e7f, "TU102", "Turing"),
    (0x1e80, 0x1eff, "TU104", "Turing"),
    (0x1f00, 0x1f7f, "TU106", "Turing"),
    (0x1f80, 0x1fff, "TU117", "Turing"),
    (0x20b0, 0x20ff, "GA100", "Ampere"),
    (0x2180, 0x21ff, "TU116", "Turing"),
    (0x2200, 0x223f, "GA102", "Ampere"),
    (0x2300, 0x233f, "GH100", "Hopper"),
    (0x2340, 0x237f, "GH100 (Grace Hopper)", "Grace Hopper"),
    (0x2400, 0x243f, "GA103", "Ampere"),
    (0x2480, 0x24ff, "GA104", "Ampere"),
    (0x2500, 0x257f, "GA106", "Ampere"),
    (0x2580, 0x25ff, "GA107", "Ampere"),
    (0x2680, 0x26ff, "AD102", "Ada Lovelace"),
    (0x2700, 0x277f, "AD103", "Ada Lovelace"),
    (0x2780, 0x27ff, "AD104", "Ada Lovelace"),
    (0x2800, 0x287f, "AD106", "Ada Lovelace"),
    (0x2880, 0x28ff, "AD107", "Ada Lovelace"),
    (0x2900, 0x29ff, "GB100", "Blackwell"),
    (0x2b80, 0x2bff, "GB202", "Blackwell"),
    (0x2c00, 0x2c7f, "GB203", "Blackwell"),
    (0x2d00, 0x2d7f, "GB206", "Blackwell"),
    (0x2d80, 0x2dff, "GB207", "Blackwell"),
    (0x2f00, 0x2f7f, "GB205", "Blackwell"),
)


class PlanError(ValueError):
    """The requested driver cannot work on these GPUs; the message names the fix."""


def parse_device_id(value):
    """0x2335 for "0x2335", "2335" or 0x2335. Raises ValueError."""
    if isinstance(value, bool) or value is None:
        raise ValueError("not a PCI device id: %r" % (value,))
    if isinstance(value, int):
        return value
    return int(str(value).strip().lower().replace("0x", ""), 16)


def generation_for_device_id(device_id):
    """(chip, generation) for an NVIDIA PCI device id; ("unknown", "unknown") outside the table."""
    number = parse_device_id(device_id)
    for start, end, chip, generation in PCI_DEVICE_RANGES:
        if start <= number <= end:
            return chip, generation
    return "unknown", "unknown"


def generation_for_gpu(name, compute_capability):
    """Generation from NVML's answer: the compute capability, and the name for Grace Hopper."""
    if name and "GH200" in name.upper():
        return "Grace Hopper"
    return architecture_for_cc(compute_capability)


def describe_gpus(gpu_facts):
    """One entry per GPU: {id, name, generation, source}. NVML's list when it answered for
    every GPU with a compute capability, otherwise the sysfs PCI list."""
    gpu_facts = gpu_facts or {}
    nvml = [g for g in gpu_facts.get("gpus") or [] if g.get("compute_capability")]
    if gpu_facts.get("status") == "ok" and nvml and len(nvml) == len(gpu_facts.get("gpus") or []):
        return [{
            "id": g.get("pci_bus_id") or "GPU %s" % g.get("index"),
            "name": g.get("name") or "GPU %s" % g.get("index"),
            "generation": generation_for_gpu(g.get("name"), g["compute_capability"]),
            "source": "nvml",
        } for g in nvml]
    described = []
    for device in gpu_facts.get("pci_devices") or []:
        if device.get("kind") != "gpu":
            continue
        try:
            chip, generation = generation_for_device_id(device.get("device_id"))
        except ValueError:
            chip, generation = "unknown", "unknown"
        described.append({
            "id": device.get("bus_id"),
            "name": "%s (device %s)" % (chip, device.get("device_id")),
            "generation": generation,
            "source": "pci",
        })
    return described


def _label(gpu):
    return "%s %s (%s)" % (gpu["id"], gpu["name"], gpu["generation"])


def branch_problems(gpus, branch):
    """Messages for GPUs the branch does not support."""
    problems = []
    for gpu in gpus:
        info = GENERATIONS.get(gpu["generation"])
        if info is None:
            continue
        if info["min_branch"] and branch < info["min_branch"]:
            problems.append("%s needs driver branch %d or newer" % (_label(gpu), info["min_branch"]))
        if info["max_branch"] and branch > info["max_branch"]:
            problems.append("%s is supported up to driver branch %d" % (_label(gpu), info["max_branch"]))
    return problems


def choose_flavour(gpus, branch, requested="auto"):
    """(flavour, reason) for the GPUs and branch; raises PlanError for a combination that cannot work."""
    if requested not in REQUESTS:
        raise PlanError("kernel module flavour must be one of %s, got %r" % (", ".join(REQUESTS), requested))
    no_open = [g for g in gpus if g["generation"] in GENERATIONS and not GENERATIONS[g["generation"]]["open"]]
    need_open = [g for g in gpus if GENERATIONS.get(g["generation"], {}).get("open_required")]
    if no_open and need_open:
        raise PlanError(
            "these GPUs need the open kernel modules: %s; these cannot use them: %s. One driver cannot serve "
            "both: put them in different hosts" % ("; ".join(map(_label, need_open)), "; ".join(map(_label, no_open))))
    if requested == "open" and no_open:
        raise PlanError(
            "the open kernel modules support Turing and newer GPUs only; %s cannot use them. Fix: set the kernel "
            "modules to proprietary (or auto)" % "; ".join(map(_label, no_open)))
    if requested == "proprietary" and need_open:
        raise PlanError(
            "%s support only the open kernel modules. Fix: set the kernel modules to open (or auto)"
            % "; ".join(map(_label, need_open)))
    if requested != "auto":
        return requested, "%s kernel modules as requested" % requested
    if need_open:
        return "open", "open kernel modules: required by %s" % "; ".join(map(_label, need_open))
    if no_open:
        return "proprietary", "proprietary kernel modules: %s cannot use the open ones" % "; ".join(map(_label, no_open))
    if branch >= OPEN_DEFAULT_FROM_BRANCH:
        what = "every GPU supports them" if gpus else "no GPU on this host"
        return "open", "open kernel modules: NVIDIA's default from branch %d (%s)" % (OPEN_DEFAULT_FROM_BRANCH, what)
    return "proprietary", (
        "proprietary kernel modules: the default of branch %d (NVIDIA defaults to the open modules from branch %d)"
        % (branch, OPEN_DEFAULT_FROM_BRANCH))


def make_plan(gpu_facts, driver_version, requested="auto"):
    """The driver plan for a host. Raises PlanError (message names the fix) or ValueError (bad version)."""
    parts = parse_version(driver_version)
    if len(parts) < 2:
        raise ValueError("driver version %r needs at least branch and minor, such as 535.261.03" % (driver_version,))
    branch = driver_branch(driver_version)
    gpus = describe_gpus(gpu_facts)
    problems = branch_problems(gpus, branch)
    if problems:
        raise PlanError("driver %s (branch %d) cannot drive these GPUs: %s. Fix: choose a driver version in a "
                        "branch that supports them" % (driver_version, branch, "; ".join(problems)))
    flavour, reason = choose_flavour(gpus, branch, requested)
    status = driver_branch_status(driver_version)
    warnings = []
    if status["supported"] is False:
        warnings.append("driver branch %d is end of life (NVIDIA's driver lifecycle): it gets no more security "
                        "fixes; plan a move to a supported branch (535 LTS, 570, 580 LTS)" % branch)
    unknown = [g for g in gpus if g["generation"] == "unknown"]
    if unknown:
        warnings.append("GPU generation unknown for %s: the kernel module choice assumes it supports the branch "
                        "and the open modules" % ", ".join(g["id"] for g in unknown))
    gpu_facts = gpu_facts or {}
    return {
        "driver_version": driver_version,
        "branch": branch,
        "branch_status": status,
        "kernel_modules": flavour,
        "reason": reason,
        "gpu_count": len(gpus),
        "gpus": gpus,
        "fabric_manager": bool(gpu_facts.get("nvswitch_present")),
        "warnings": warnings,
    }
