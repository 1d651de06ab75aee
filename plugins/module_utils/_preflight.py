# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Deploy preflight: every check a deployment must pass, as pure functions over plain dicts.

Each check returns results shaped {check, ok, severity, message, numbers, fix}:
  ok        True when the check passed cleanly.
  severity  "blocking" (a failure stops the deployment) or "warning" (reported only).
            A passed check carries the severity its failure would have.
  numbers   the figures the verdict rests on (bytes, counts, versions).
  fix       what to change, with computed alternatives; None when ok.
Inputs: the model profile (_vram), the plan (normalize_plan), the gpu facts dict that
gpu_facts returns, and host facts {mem_total_bytes, mem_available_bytes, fs_type,
disk_free_bytes, model_existing_bytes}. Python 3.9+.
"""

from __future__ import annotations

import math

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _gpu_tables as tables
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _storage as storage
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _vram as vram

BLOCKING = "blocking"
WARNING = "warning"
# A need within this fraction of its limit passes with a warning: estimates are not exact.
NEAR_LIMIT = 0.05
# Host RAM per engine worker process (Python, torch, CUDA runtime, tokenizer).
WORKER_RAM_BYTES = 2 * vram.GIB
DEFAULT_CONTEXT_LENGTH = 32768
DEFAULT_MAX_NUM_SEQS = 16
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
GPU_DTYPE_ALTERNATIVES = ("fp8", "int8", "awq")
GGUF_DTYPE_ALTERNATIVES = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M")


def result(check, ok, severity, message, numbers=None, fix=None):
    return {"check": check, "ok": bool(ok), "severity": severity, "message": message,
            "numbers": numbers or {}, "fix": None if ok else fix}


def _gib(value):
    return vram.format_bytes(value)


def normalize_plan(plan, profile=None):
    """Plan with defaults filled; raises ValueError listing every invalid input."""
    plan = dict(plan or {})
    problems = []
    engine = plan.get("engine") or "vllm"
    if engine not in tables.ENGINES:
        problems.append("engine %r is unknown; choose one of %s" % (engine, ", ".join(tables.ENGINES)))
    plan["engine"] = engine
    plan["dtype"] = plan.get("dtype") or "auto"
    plan["kv_cache_dtype"] = plan.get("kv_cache_dtype") or "auto"
    for key, default in (("tensor_parallel_size", 1), ("pipeline_parallel_size", 1),
                         ("max_num_seqs", DEFAULT_MAX_NUM_SEQS)):
        value = plan.get(key)
        value = default if value is None else value
        if isinstance(value, bool) or int(value) != value or int(value) < 1:
            problems.append("%s must be a positive integer, got %r" % (key, value))
            value = default
        plan[key] = int(value)
    if plan.get("context_length") is None:
        longest = (profile or {}).get("max_position_embeddings") or DEFAULT_CONTEXT_LENGTH
        plan["context_length"] = min(DEFAULT_CONTEXT_LENGTH, longest)
        plan["context_length_defaulted"] = True
    elif int(plan["context_length"]) < 1:
        problems.append("context_length must be positive, got %r" % plan["context_length"])
    else:
        plan["context_length"] = int(plan["context_length"])
    util = plan.get("gpu_memory_utilization")
    util = DEFAULT_GPU_MEMORY_UTILIZATION if util is None else float(util)
    if not 0.0 < util <= 1.0:
        problems.append("gpu_memory_utilization must be in (0, 1], got %r" % util)
    plan["gpu_memory_utilization"] = util
    if plan.get("min_compute_capability"):
        try:
            plan["min_compute_capability"] = tables.format_compute_capability(plan["min_compute_capability"])
        except ValueError as exc:
            problems.append(str(exc))
    if plan.get("cuda_version"):
        try:
            plan["cuda_version"] = tables.cuda_major_minor(plan["cuda_version"])
        except ValueError as exc:
            problems.append(str(exc))
    plan["allowed_fs_types"] = list(plan.get("allowed_fs_types") or storage.DEFAULT_ALLOWED_FS_TYPES)
    margin = plan.get("disk_margin_fraction")
    plan["disk_margin_fraction"] = 0.1 if margin is None else float(margin)
    plan["disk_margin_min_bytes"] = int(plan.get("disk_margin_min_bytes") or vram.GIB)
    if problems:
        raise ValueError("invalid preflight input: " + "; ".join(problems))
    return plan


def usable_gpus(gpu_facts):
    """GPUs from the facts that answered NVML without error."""
    if not gpu_facts:
        return []
    return [g for g in gpu_facts.get("gpus") or [] if not g.get("error") and g.get("memory_total")]


def selected_gpus(plan, gpu_facts):
    """The GPUs the engine will use: the first tp x pp usable ones in NVML (PCI bus) order."""
    wanted = plan["tensor_parallel_size"] * plan["pipeline_parallel_size"]
    return usable_gpus(gpu_facts)[:wanted]


# NVML states in which GPUs on the PCI bus cannot be read yet because the NVIDIA stack is not
# (fully) installed: what a bare GPU server looks like before the nvidia_driver role runs.
DRIVER_PENDING_STATUSES = ("library_missing", "driver_not_loaded", "bindings_missing")


def pci_gpus(gpu_facts):
    """NVIDIA GPU functions the sysfs PCI scan found (present even with no driver loaded)."""
    return [d for d in (gpu_facts or {}).get("pci_devices") or [] if d.get("kind") == "gpu"]


def decide_device(plan, gpu_facts):
    """'gpu', 'cpu' (llama_cpp without a usable GPU), 'pending' (GPUs on the PCI bus, driver not
    there yet, and the caller asked to defer GPU checks), or None (a GPU engine without GPUs)."""
    if usable_gpus(gpu_facts) and (gpu_facts or {}).get("status") in ("ok", "error"):
        return "gpu"
    if plan["engine"] == "llama_cpp":
        return "cpu"
    if (plan.get("defer_gpu_checks") and (gpu_facts or {}).get("status") in DRIVER_PENDING_STATUSES
            and pci_gpus(gpu_facts)):
        return "pending"
    return None


def _status_fix(gpu_facts):
    status = (gpu_facts or {}).get("status")
    reason = (gpu_facts or {}).get("reason") or ""
    if status == "no_nvidia_device":
        return "deploy to a host with NVIDIA GPUs, or use engine llama_cpp, which runs on the CPU"
    if "Fix:" in reason:
        return reason.split("Fix:", 1)[1].strip()
    if status is None:
        return "run llmops.gpu_stack.gpu_facts first and pass gpu: \"{{ ansible_facts.gpu }}\""
    return "run llmops.gpu_stack.gpu_facts on the host and fix what its reason says"


def check_gpu_count(plan, gpu_facts, device):
    engine = plan["engine"]
    needed = plan["tensor_parallel_size"] * plan["pipeline_parallel_size"]
    have = len(usable_gpus(gpu_facts))
    status = (gpu_facts or {}).get("status")
    numbers = {"gpus_needed": needed, "gpus_usable": have, "gpu_status": status}
    if device == "cpu":
        numbers["gpus_needed"] = 0
        return result("gpu_count", True, BLOCKING,
                      "llama_cpp runs on the CPU: no usable NVIDIA GPU (gpu status %s)" % status, numbers)
    if device == "pending":
        numbers["gpus_on_pci_bus"] = len(pci_gpus(gpu_facts))
        return result("gpu_count", True, BLOCKING,
                      "%d NVIDIA GPU(s) on the PCI bus, NVML not readable yet (gpu status %s): GPU checks "
                      "deferred until the driver is installed" % (numbers["gpus_on_pci_bus"], status), numbers)
    if device is None:
        return result("gpu_count", False, BLOCKING,
                      "engine %s needs NVIDIA GPUs; this host has no usable one (gpu status %s: %s)"
                      % (engine, status, (gpu_facts or {}).get("reason") or "no gpu facts given"),
                      numbers, _status_fix(gpu_facts))
    if have < needed:
        return result("gpu_count", False, BLOCKING,
                      "needs %d GPUs (tensor parallel %d x pipeline parallel %d); the host has %d usable"
                      % (needed, plan["tensor_parallel_size"], plan["pipeline_parallel_size"], have),
                      numbers,
                      "lower tensor_parallel_size x pipeline_parallel_size to at most %d (the gpu_memory check "
                      "shows whether the model then fits), or deploy to a host with %d GPUs" % (have, needed))
    return result("gpu_count", True, BLOCKING, "%d of %d usable GPUs used" % (needed, have), numbers)


def check_tensor_parallel(plan, profile, gpu_count):
    tp = plan["tensor_parallel_size"]
    heads = profile["num_attention_heads"]
    kv = profile["num_key_value_heads"]
    numbers = {"tensor_parallel_size": tp, "attention_heads": heads, "kv_heads": kv}
    if heads % tp == 0 and (kv % tp == 0 or tp % kv == 0):
        return result("tensor_parallel", True, BLOCKING,
                      "tensor parallel %d divides %d attention heads and %d KV heads" % (tp, heads, kv), numbers)
    valid = [size for size in vram.tensor_parallel_candidates(profile) if size <= max(gpu_count, 1)]
    return result("tensor_parallel", False, BLOCKING,
                  "tensor parallel %d does not divide the model's %d attention heads / %d KV heads" % (tp, heads, kv),
                  numbers, "set tensor_parallel_size to one of %s" % ", ".join(str(v) for v in valid or [1]))


def check_context_length(plan, profile):
    context = plan["context_length"]
    longest = profile.get("max_position_embeddings")
    numbers = {"context_length": context, "max_position_embeddings": longest}
    if longest is None or context <= longest:
        message = "context %d within the model's %s" % (context, longest or "unstated maximum")
        if plan.get("context_length_defaulted"):
            message += " (context_length not given: %d used)" % context
        return result("context_length", True, BLOCKING, message, numbers)
    return result("context_length", False, BLOCKING,
                  "context %d exceeds the model's maximum of %d positions" % (context, longest),
                  numbers, "set context_length to %d or less" % longest)


def _memory_alternatives(profile, plan, est, available, gpu_count, min_cc):
    fixes = []
    tp = vram.smallest_fitting_tensor_parallel(profile, est, available)
    if tp is not None and tp != est["tensor_parallel_size"]:
        gpus = tp * est["pipeline_parallel_size"]
        text = "set tensor_parallel_size %d (%d GPUs" % (tp, gpus)
        text += ", the host has %d)" % gpu_count if gpus > gpu_count else ")"
        fixes.append(text)
    if est["device"] == "gpu" and plan["engine"] != "llama_cpp":
        candidates = [d for d in GPU_DTYPE_ALTERNATIVES
                      if min_cc is None or tables.dtype_min_cc(d) is None
                      or tables.compare_compute_capability(min_cc, tables.dtype_min_cc(d)) >= 0]
    else:
        candidates = list(GGUF_DTYPE_ALTERNATIVES)
    dtypes = vram.fitting_dtypes(profile, est, available, candidates)
    if dtypes:
        label = {"awq": "int4 (awq/gptq)", "int8": "int8 (w8a8)"}.get(dtypes[0], dtypes[0])
        fixes.append("use %s weights (dtype %s)" % (label, dtypes[0]))
    if plan["engine"] != "llama_cpp" and est["kv_cache_dtype"] in ("auto", "bf16", "fp16"):
        trial = vram.estimate_variant(est, profile, kv_cache_dtype="fp8")
        if trial["need_per_gpu_bytes"] <= available:
            fixes.append("set kv_cache_dtype fp8")
    limits = vram.fit_limits(profile, est, available)
    context = vram.round_context_down(limits["max_context_length"])
    if context and context < est["context_length"]:
        fixes.append("cut context_length to %d" % context)
    if limits["max_num_seqs"] and limits["max_num_seqs"] < est["max_num_seqs"]:
        fixes.append("lower max_num_seqs to %d" % limits["max_num_seqs"])
    return fixes, limits


def _breakdown(est):
    return "weights %s + KV cache %s + activations %s + runtime %s" % (
        _gib(est["weights_per_gpu_bytes"]), _gib(est["kv_cache_per_gpu_bytes"]),
        _gib(est["activation_per_gpu_bytes"]), _gib(est["runtime_overhead_per_gpu_bytes"]))


def check_gpu_memory(plan, profile, gpus, est, host_gpu_count=None):
    """Need on the busiest GPU against the budget of the smallest selected GPU.

    vLLM / SGLang budget: gpu_memory_utilization x total memory (they refuse to start when
    less than that is free: see check_gpu_memory_free). llama.cpp budget: free memory.
    """
    engine = plan["engine"]
    smallest_total = min(g["memory_total"] for g in gpus)
    smallest_free = min(g["memory_free"] if g.get("memory_free") is not None else g["memory_total"] for g in gpus)
    if engine == "llama_cpp":
        budget = smallest_free
        budget_text = "%s free" % _gib(budget)
    else:
        budget = int(plan["gpu_memory_utilization"] * smallest_total)
        budget_text = "%.2f x %s = %s" % (plan["gpu_memory_utilization"], _gib(smallest_total), _gib(budget))
    need = est["need_per_gpu_bytes"]
    min_cc = min((g["compute_capability"] for g in gpus if g.get("compute_capability")),
                 key=tables.parse_compute_capability, default=None)
    numbers = {
        "need_per_gpu_bytes": need, "budget_per_gpu_bytes": budget, "gpu_total_bytes": smallest_total,
        "gpu_free_bytes": smallest_free, "gpus": len(gpus),
        "weights_per_gpu_bytes": est["weights_per_gpu_bytes"], "kv_cache_per_gpu_bytes": est["kv_cache_per_gpu_bytes"],
        "activation_per_gpu_bytes": est["activation_per_gpu_bytes"],
        "runtime_overhead_per_gpu_bytes": est["runtime_overhead_per_gpu_bytes"],
    }
    summary = "needs %d x %s (%s); budget per GPU %s" % (len(gpus), _gib(need), _breakdown(est), budget_text)
    if need > budget:
        host_gpus = len(gpus) if host_gpu_count is None else host_gpu_count
        fixes, limits = _memory_alternatives(profile, plan, est, budget, host_gpus, min_cc)
        numbers["fit"] = limits
        fix = ", or ".join(fixes) if fixes else "use GPUs with more memory"
        return result("gpu_memory", False, BLOCKING, "does not fit: " + summary, numbers, fix)
    if need > budget * (1 - NEAR_LIMIT):
        return result("gpu_memory", False, WARNING,
                      "fits with less than %d%% to spare: %s" % (int(NEAR_LIMIT * 100), summary), numbers,
                      "leave headroom: lower max_num_seqs or context_length a little, or raise gpu_memory_utilization")
    return result("gpu_memory", True, BLOCKING, "fits: " + summary, numbers)


def check_gpu_memory_free(plan, gpus):
    """vLLM / SGLang claim gpu_memory_utilization x total at start and refuse if less is free."""
    util = plan["gpu_memory_utilization"]
    short = []
    for gpu in gpus:
        if gpu.get("memory_free") is None:
            continue
        wanted = util * gpu["memory_total"]
        if gpu["memory_free"] < wanted:
            short.append(gpu)
    numbers = {"gpu_memory_utilization": util,
               "free_bytes": dict(("gpu%d" % g["index"], g.get("memory_free")) for g in gpus)}
    if not short:
        return result("gpu_memory_free", True, BLOCKING,
                      "%.0f%% of each GPU's memory is free to claim" % (util * 100), numbers)
    worst = min(short, key=lambda g: g["memory_free"] / float(g["memory_total"]))
    suggested = math.floor(100.0 * max(0, worst["memory_free"] - 512 * vram.MIB) / worst["memory_total"]) / 100.0
    details = ", ".join("GPU %d has %s of %s free (%s in use)" % (
        g["index"], _gib(g["memory_free"]), _gib(g["memory_total"]), _gib(g["memory_total"] - g["memory_free"]))
        for g in short)
    return result("gpu_memory_free", False, BLOCKING,
                  "gpu_memory_utilization %.2f claims more than is free: %s" % (util, details), numbers,
                  "stop the processes holding GPU memory (nvidia-smi lists them), or lower "
                  "gpu_memory_utilization to %.2f" % suggested)


def check_compute_capability(plan, gpus):
    engine, dtype = plan["engine"], plan.get("served_dtype") or plan["dtype"]
    bad = []
    for gpu in gpus:
        ok, reason = tables.compute_capability_ok(gpu["compute_capability"], engine, dtype, plan.get("min_compute_capability"))
        if not ok:
            bad.append((gpu, reason))
    needed, reasons = tables.required_compute_capability(engine, dtype, plan.get("min_compute_capability"))
    numbers = {"required": needed, "gpus": dict(("gpu%d" % g["index"], g["compute_capability"]) for g in gpus)}
    if not bad:
        return result("compute_capability", True, BLOCKING,
                      "every GPU meets compute capability %s" % (needed or "(none required)"), numbers)
    lowest = min((g["compute_capability"] for g, _r in bad), key=tables.parse_compute_capability)
    fixes = []
    engine_ok = tables.compute_capability_ok(lowest, engine, None, plan.get("min_compute_capability"))[0]
    if engine_ok:
        alternatives = [d for d in ("bf16", "fp16", "fp8", "int8", "awq", "gptq")
                        if d != tables.normalize_dtype(dtype)
                        and tables.compute_capability_ok(lowest, engine, d, plan.get("min_compute_capability"))[0]]
        if alternatives:
            fixes.append("use dtype %s instead of %s" % (" or ".join(alternatives[:2]), tables.normalize_dtype(dtype)))
    fixes.append("use GPUs with compute capability %s or newer (A100 8.0, L40S 8.9, H100/H200 9.0)" % needed)
    if engine != "llama_cpp":
        fixes.append("use engine llama_cpp")
    return result("compute_capability", False, BLOCKING,
                  "; ".join("GPU %d %s: %s" % (g["index"], g.get("name"), r) for g, r in bad), numbers,
                  ", or ".join(fixes))


def check_mig(plan, gpus):
    enabled = [g for g in gpus if (g.get("mig_mode") or {}).get("current") == "enabled"]
    numbers = {"mig_enabled_gpus": [g["index"] for g in enabled]}
    if not enabled:
        return result("mig_mode", True, BLOCKING, "MIG is off on the GPUs used", numbers)
    indices = ", ".join(str(g["index"]) for g in enabled)
    return result("mig_mode", False, BLOCKING,
                  "MIG is enabled on GPU %s: the engine would see MIG instances, not the whole GPU the estimate "
                  "assumes" % indices, numbers,
                  "disable MIG (nvidia-smi -i %s -mig 0, then reset the GPU), or use GPUs without MIG" % indices)


def check_gpu_errors(gpu_facts):
    broken = [g for g in (gpu_facts or {}).get("gpus") or [] if g.get("error")]
    numbers = {"gpus_with_errors": [g.get("index") for g in broken]}
    if not broken:
        return result("gpu_errors", True, WARNING, "every GPU answered NVML", numbers)
    return result("gpu_errors", False, WARNING,
                  "; ".join("GPU %s: %s" % (g.get("index"), g["error"]) for g in broken), numbers,
                  "fix the failing GPUs or keep them out of the deployment (they are not counted as usable)")


def _recommended_branch(minimum):
    needed = tables.driver_branch(minimum)
    for branch in sorted(tables.DRIVER_BRANCHES):
        if branch >= needed:
            info = tables.DRIVER_BRANCHES[branch]
            return "R%d (%s, end of life %s)" % (branch, info["kind"], info["eol"])
    return "a branch %d or newer" % needed


def check_driver_cuda(plan, gpu_facts):
    cuda = plan["cuda_version"]
    driver = (gpu_facts or {}).get("driver_version")
    numbers = {"cuda_version": cuda, "driver_version": driver,
               "cuda_driver_version": (gpu_facts or {}).get("cuda_driver_version")}
    level = tables.cuda_support_level(driver, cuda)
    numbers["support"] = level
    try:
        full = tables.min_driver_for_cuda(cuda)
    except ValueError:
        full = None
    numbers["min_driver"] = full
    ok, reason = tables.driver_supports_cuda(driver, cuda)
    if ok:
        return result("driver_cuda", True, BLOCKING, reason, numbers)
    target = full or tables.minor_compat_min_driver(cuda)
    if target is None:
        # A CUDA release newer than the table: no driver can be named, and the installed
        # driver's own CUDA level (NVML) is the only fact known.
        known = ", ".join(sorted(tables.CUDA_MIN_DRIVER, key=tables.parse_version))
        fix = ("pick a CUDA version this collection's driver table knows (%s), up to the %s the driver "
               "reports, or update the collection" % (known, numbers["cuda_driver_version"] or "CUDA level"))
    else:
        fix = "install driver %s or newer: %s" % (target, _recommended_branch(target))
    if level == "minor_version_compat":
        return result("driver_cuda", False, WARNING, reason, numbers, fix)
    return result("driver_cuda", False, BLOCKING, reason, numbers, fix)


def check_driver_branch(gpu_facts):
    driver = (gpu_facts or {}).get("driver_version")
    status = tables.driver_branch_status(driver)
    numbers = {"driver_version": driver, "branch": status["branch"], "kind": status["kind"], "eol": status["eol"]}
    if status["supported"] is False:
        return result("driver_branch", False, WARNING,
                      "driver branch R%d is end of life and gets no security fixes" % status["branch"], numbers,
                      "move to a supported branch: R580 LTS (end of life 2028-08) or R535 LTS (2026-06)")
    return result("driver_branch", True, WARNING, "driver branch R%d: %s" % (status["branch"], status["kind"]), numbers)


def check_model_path(plan):
    problems = storage.check_model_path(plan["model_path"])
    numbers = {"model_path": plan["model_path"]}
    if not problems:
        return result("model_path", True, BLOCKING, "model path %s follows the path rules" % plan["model_path"], numbers)
    return result("model_path", False, BLOCKING, "; ".join(p["problem"] for p in problems), numbers,
                  "; ".join(p["fix"] for p in problems))


def check_fs_type(plan, host):
    fs_type = host.get("fs_type")
    ok, reason = storage.check_fs_type(fs_type, plan["allowed_fs_types"])
    numbers = {"fs_type": fs_type, "allowed": plan["allowed_fs_types"]}
    return result("fs_type", ok, BLOCKING, "model storage %s: %s" % (plan["model_path"], reason), numbers,
                  "put the models on an ext4 or xfs file system (llmops.gpu_stack.model_storage role), or add the "
                  "type to allowed_fs_types if it is deliberate" if fs_type not in storage.REFUSED_FS_TYPES else
                  "put the models on an ext4 or xfs file system (llmops.gpu_stack.model_storage role)")


def check_disk_space(plan, host, model_bytes):
    free = host["disk_free_bytes"]
    need, missing, margin = storage.disk_needed(model_bytes, host.get("model_existing_bytes") or 0,
                                                plan["disk_margin_fraction"], plan["disk_margin_min_bytes"])
    numbers = {"free_bytes": free, "needed_bytes": need, "model_bytes": model_bytes, "to_download_bytes": missing,
               "margin_bytes": margin}
    summary = "needs %s (model %s still to store + margin %s), %s free" % (_gib(need), _gib(missing), _gib(margin), _gib(free))
    if free < need:
        return result("disk_space", False, BLOCKING, "not enough disk: " + summary, numbers,
                      "free %s on the file system of %s, or point model_path at a larger one"
                      % (_gib(need - free), plan["model_path"]))
    if free < need * (1 + NEAR_LIMIT):
        return result("disk_space", False, WARNING, "disk nearly full after download: " + summary, numbers,
                      "free some space on the file system of %s" % plan["model_path"])
    return result("disk_space", True, BLOCKING, "enough disk: " + summary, numbers)


def check_host_ram(plan, host, est, device):
    """CPU mode: the whole estimate must fit in MemAvailable. GPU mode: each engine worker
    needs its own process memory (blocking), and loading streams a GPU's share of the weights
    through the page cache (warning when that does not fit as well)."""
    available = host["mem_available_bytes"]
    numbers = {"mem_available_bytes": available, "mem_total_bytes": host.get("mem_total_bytes")}
    if device == "cpu":
        need = est["need_per_gpu_bytes"]
        numbers["needed_bytes"] = need
        summary = "needs %s (%s), %s available" % (_gib(need), _breakdown(est), _gib(available))
        if need > available:
            return result("host_ram", False, BLOCKING, "model does not fit in RAM: " + summary, numbers,
                          "use a smaller quantization (Q4_K_M), a shorter context or fewer parallel sequences, "
                          "or a host with more RAM")
        if need > available * (1 - NEAR_LIMIT):
            return result("host_ram", False, WARNING, "RAM nearly exhausted: " + summary, numbers,
                          "leave headroom: shorter context or fewer parallel sequences")
        return result("host_ram", True, BLOCKING, "fits in RAM: " + summary, numbers)
    workers = est["tensor_parallel_size"] * est["pipeline_parallel_size"]
    hard = workers * WORKER_RAM_BYTES
    comfortable = hard + est["weights_per_gpu_bytes"]
    numbers.update({"needed_bytes": hard, "comfortable_bytes": comfortable, "workers": workers})
    if available < hard:
        return result("host_ram", False, BLOCKING,
                      "%d engine workers need about %s of RAM, %s available" % (workers, _gib(hard), _gib(available)),
                      numbers, "stop other services or add RAM")
    if available < comfortable:
        return result("host_ram", False, WARNING,
                      "%s RAM available, less than the workers plus one GPU's share of weights (%s): loading will "
                      "read from disk without page-cache help" % (_gib(available), _gib(comfortable)), numbers,
                      "add RAM for faster (re)loads")
    return result("host_ram", True, BLOCKING, "%s RAM available for loading (needs %s)" % (_gib(available), _gib(hard)), numbers)


def run_preflight(profile, plan, gpu_facts, host=None):
    """Every applicable check; returns the report dict (see module RETURN for its keys)."""
    plan = normalize_plan(plan, profile)
    host = host or {}
    device = decide_device(plan, gpu_facts)
    checks, skipped = [], []
    gpus = selected_gpus(plan, gpu_facts) if device == "gpu" else []
    checks.append(check_gpu_count(plan, gpu_facts, device))
    if plan["engine"] != "llama_cpp" or device == "gpu":
        checks.append(check_tensor_parallel(plan, profile, len(usable_gpus(gpu_facts))))
    checks.append(check_context_length(plan, profile))

    estimate = None
    try:
        estimate = vram.estimate_memory(
            profile, plan["dtype"], plan["kv_cache_dtype"], plan["context_length"], plan["max_num_seqs"],
            plan["tensor_parallel_size"], plan["pipeline_parallel_size"], plan["engine"],
            plan.get("max_num_batched_tokens"), plan.get("runtime_overhead_bytes"),
            "cpu" if device == "cpu" else "gpu")
        plan["served_dtype"] = estimate["dtype"]
    except ValueError as exc:
        checks.append(result("estimate", False, BLOCKING, str(exc), {}, "correct dtype / kv_cache_dtype"))

    if device == "gpu" and gpus:
        if estimate is not None and len(gpus) == plan["tensor_parallel_size"] * plan["pipeline_parallel_size"]:
            checks.append(check_gpu_memory(plan, profile, gpus, estimate, len(usable_gpus(gpu_facts))))
        elif estimate is not None:
            skipped.append("gpu_memory: too few GPUs to place the model (see gpu_count)")
        if plan["engine"] in tables.GPU_REQUIRED_ENGINES:
            checks.append(check_gpu_memory_free(plan, gpus))
        checks.append(check_compute_capability(plan, gpus))
        checks.append(check_mig(plan, gpus))
    elif device == "pending":
        skipped.extend(["gpu_memory: deferred until the driver is loaded",
                        "compute_capability: deferred until the driver is loaded",
                        "mig_mode: deferred until the driver is loaded"])
    else:
        skipped.extend(["gpu_memory: no GPU used", "compute_capability: no GPU used", "mig_mode: no GPU used"])
    if (gpu_facts or {}).get("gpus"):
        checks.append(check_gpu_errors(gpu_facts))

    if plan.get("cuda_version") and (gpu_facts or {}).get("driver_version"):
        checks.append(check_driver_cuda(plan, gpu_facts))
    elif plan.get("cuda_version"):
        skipped.append("driver_cuda: no driver version known")
    else:
        skipped.append("driver_cuda: no cuda_version given")
    if (gpu_facts or {}).get("driver_version"):
        checks.append(check_driver_branch(gpu_facts))

    if plan.get("model_path"):
        checks.append(check_model_path(plan))
        if host.get("fs_type") is not None or "fs_type" in host:
            checks.append(check_fs_type(plan, host))
        else:
            skipped.append("fs_type: file system not known")
        if host.get("disk_free_bytes") is not None and estimate is not None:
            model_bytes = profile.get("gguf_file_size") or estimate["weights_bytes"]
            checks.append(check_disk_space(plan, host, model_bytes))
        else:
            skipped.append("disk_space: free space or model size not known")
    else:
        skipped.extend(["model_path: no model_path given", "fs_type: no model_path given",
                        "disk_space: no model_path given"])
    if host.get("mem_available_bytes") is not None and estimate is not None and device is not None:
        checks.append(check_host_ram(plan, host, estimate, device))
    else:
        skipped.append("host_ram: available memory or estimate not known")

    settings = None
    if estimate is not None and device is not None:
        if device == "gpu" and gpus:
            total = min(g["memory_total"] for g in gpus)
            free = min(g["memory_free"] if g.get("memory_free") is not None else g["memory_total"] for g in gpus)
            if plan["engine"] == "llama_cpp":
                settings = vram.engine_settings(profile, estimate, total, free, 1.0)
                settings["gpu_memory_utilization"] = None
            else:
                settings = vram.engine_settings(profile, estimate, total, free, plan["gpu_memory_utilization"])
        elif device == "cpu":
            settings = vram.engine_settings(profile, estimate, host_available_bytes=host.get("mem_available_bytes"))

    blocking = [c for c in checks if not c["ok"] and c["severity"] == BLOCKING]
    warnings = [c for c in checks if not c["ok"] and c["severity"] == WARNING]
    return {
        "ok": not blocking,
        "blocked": bool(blocking),
        "device": device,
        "gpus_used": [g["index"] for g in gpus],
        "plan": dict((k, v) for k, v in plan.items() if k not in ("served_dtype", "context_length_defaulted")),
        "estimate": estimate,
        "engine_settings": settings,
        "checks": checks,
        "blocking": ["%s: %s. Fix: %s" % (c["check"], c["message"], c["fix"]) for c in blocking],
        "warnings": ["%s: %s" % (c["check"], c["message"]) + (". Fix: %s" % c["fix"] if c["fix"] else "") for c in warnings],
        # not "skipped": Ansible reads a truthy "skipped" key as a skipped task
        "skipped_checks": skipped,
    }


def summarize(report):
    """One message listing every blocking failure (or the verdict when there is none)."""
    if report["blocking"]:
        return "preflight blocked the deployment (%d problem%s): %s" % (
            len(report["blocking"]), "" if len(report["blocking"]) == 1 else "s", " | ".join(report["blocking"]))
    est = report.get("estimate") or {}
    text = "preflight passed"
    if est:
        text += ": %s %s on %s needs %s per %s" % (
            est.get("model"), est.get("dtype"), report["device"], _gib(est.get("need_per_gpu_bytes")),
            "GPU" if report["device"] == "gpu" else "host")
    if report["warnings"]:
        text += " with %d warning%s" % (len(report["warnings"]), "" if len(report["warnings"]) == 1 else "s")
    return text


def parse_meminfo(text):
    """{mem_total_bytes, mem_available_bytes} from /proc/meminfo text (kB values)."""
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
            values[parts[0][:-1]] = int(parts[1]) * 1024
    available = values.get("MemAvailable")
    if available is None and "MemFree" in values:
        available = values["MemFree"] + values.get("Cached", 0) + values.get("Buffers", 0)
    return {"mem_total_bytes": values.get("MemTotal"), "mem_available_bytes": available}
