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
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _pci_ids as pci_ids
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _storage as storage
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _engine_settings as engine_cfg
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _fsutil as fsutil
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _vram as vram
from ansible_collections.llmops.gpu_stack.plugins.module_utils._fsutil import format_bytes as _gib

BLOCKING = "blocking"
WARNING = "warning"
# A need within this fraction of its limit passes with a warning: estimates are not exact.
NEAR_LIMIT = 0.05
# Host RAM per engine worker process (Python, torch, CUDA runtime, tokenizer).
WORKER_RAM_BYTES = 2 * fsutil.GIB
DEFAULT_CONTEXT_LENGTH = 32768
DEFAULT_MAX_NUM_SEQS = 16
DEFAULT_MAX_NUM_SEQS_LLAMA_CPP = 4
MIN_DERIVED_CONTEXT_LENGTH = 2048
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
SET = "set"
DERIVED = "derived"
NOT_APPLICABLE = "not_applicable"
# The settings whose origin every report carries (engine_settings.source, settings_source).
SETTINGS = ("max_model_len", "max_num_seqs", "gpu_memory_utilization", "max_num_batched_tokens", "dtype",
            "quantization", "kv_cache_dtype")
GPU_DTYPE_ALTERNATIVES = ("fp8", "int8", "awq")
GGUF_DTYPE_ALTERNATIVES = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M")


def result(check, ok, severity, message, numbers=None, fix=None):
    return {"check": check, "ok": bool(ok), "severity": severity, "message": message,
            "numbers": numbers or {}, "fix": None if ok else fix}


def _settings_source(plan):
    """Which of SETTINGS the caller set (a value given) and which the preflight derives."""
    def given(key):
        return SET if plan.get(key) is not None else DERIVED

    dtype_set = tables.normalize_dtype(plan.get("dtype") or "auto") != "auto"
    quantized = tables.normalize_dtype(plan.get("dtype") or "auto") in vram.QUANTIZED_DTYPES
    source = {
        "max_model_len": given("context_length"),
        "max_num_seqs": given("max_num_seqs"),
        "gpu_memory_utilization": given("gpu_memory_utilization"),
        "max_num_batched_tokens": given("max_num_batched_tokens"),
        # dtype: the engine's activation dtype; quantization: the weight format's method.
        "dtype": SET if (dtype_set and not quantized) or plan.get("activation_dtype") else DERIVED,
        "quantization": SET if dtype_set and quantized else DERIVED,
        "kv_cache_dtype": SET if (plan.get("kv_cache_dtype") or "auto") != "auto" else DERIVED,
    }
    if plan.get("engine") == "llama_cpp":
        source["gpu_memory_utilization"] = NOT_APPLICABLE
    return source


def normalize_plan(plan, profile=None):
    """Plan with defaults filled; raises ValueError listing every invalid input.

    Settings left unset are filled with the starting values of the derivation policy
    (derive_settings) and marked "derived" in plan["settings_source"]; run_preflight then
    chooses them from the estimate. Values the caller set are marked "set" and only checked.
    """
    plan = dict(plan or {})
    problems = []
    engine = plan.get("engine") or "vllm"
    if engine not in tables.ENGINES:
        problems.append("engine %r is unknown; choose one of %s" % (engine, ", ".join(tables.ENGINES)))
    plan["engine"] = engine
    plan["settings_source"] = _settings_source(plan)
    plan["dtype"] = plan.get("dtype") or "auto"
    plan["kv_cache_dtype"] = plan.get("kv_cache_dtype") or "auto"
    seqs_default = DEFAULT_MAX_NUM_SEQS_LLAMA_CPP if engine == "llama_cpp" else DEFAULT_MAX_NUM_SEQS
    for key, default in (("tensor_parallel_size", 1), ("pipeline_parallel_size", 1),
                         ("max_num_seqs", seqs_default)):
        value = plan.get(key)
        value = default if value is None else value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or int(value) < 1:
            problems.append("%s must be a positive integer, got %r" % (key, value))
            value = default
        plan[key] = int(value)
    if plan.get("context_length") is None:
        longest = (profile or {}).get("max_position_embeddings") or DEFAULT_CONTEXT_LENGTH
        plan["context_length"] = min(DEFAULT_CONTEXT_LENGTH, longest)
        plan["context_length_defaulted"] = True
    elif isinstance(plan["context_length"], bool) or int(plan["context_length"]) < 1:
        problems.append("context_length must be positive, got %r" % plan["context_length"])
    else:
        plan["context_length"] = int(plan["context_length"])
    batched = plan.get("max_num_batched_tokens")
    if batched is not None and (isinstance(batched, bool) or int(batched) < 1):
        problems.append("max_num_batched_tokens must be a positive integer, got %r" % (batched,))
    util = plan.get("gpu_memory_utilization")
    if util is None:
        cap = plan.get("gpu_memory_utilization_cap")
        util = DEFAULT_GPU_MEMORY_UTILIZATION if cap is None else float(cap)
    else:
        util = float(util)
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
    plan["disk_margin_min_bytes"] = int(plan.get("disk_margin_min_bytes") or fsutil.GIB)
    if problems:
        raise ValueError("invalid preflight input: " + "; ".join(problems))
    return plan


def usable_gpus(gpu_facts):
    """GPUs from the facts that answered NVML without error."""
    if not gpu_facts:
        return []
    return [g for g in gpu_facts.get("gpus") or [] if not g.get("error") and g.get("memory_total")]


def _pick(gpus, plan):
    """The plan's GPUs (gpu_indices, in that order) or the first tp x pp of `gpus`."""
    indices = plan.get("gpu_indices")
    if indices is not None:
        by_index = dict((g.get("index"), g) for g in gpus)
        return [by_index[i] for i in indices if i in by_index]
    return gpus[:plan["tensor_parallel_size"] * plan["pipeline_parallel_size"]]


def selected_gpus(plan, gpu_facts):
    """The GPUs the engine will use: those the plan names (gpu_indices), else the first tp x pp
    usable ones in NVML (PCI bus) order."""
    return _pick(usable_gpus(gpu_facts), plan)


def pci_table_gpus(gpu_facts):
    """The GPUs on the PCI bus with what the PCI id table knows of them (see _pci_ids)."""
    return pci_ids.identify_pci_gpus((gpu_facts or {}).get("pci_devices"))


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
    pending = (gpu_facts or {}).get("status") in DRIVER_PENDING_STATUSES
    if all((plan.get("defer_gpu_checks"), pending, pci_gpus(gpu_facts))):
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
        on_bus = len(pci_gpus(gpu_facts))
        numbers["gpus_on_pci_bus"] = on_bus
        if needed > on_bus:
            return result("gpu_count", False, BLOCKING,
                          "needs %d GPUs (tensor parallel %d x pipeline parallel %d); %d NVIDIA GPU(s) on the PCI bus "
                          "(driver not loaded yet)" % (needed, plan["tensor_parallel_size"],
                                                       plan["pipeline_parallel_size"], on_bus),
                          numbers,
                          "lower tensor_parallel_size x pipeline_parallel_size to at most %d, or deploy to a host "
                          "with %d GPUs" % (on_bus, needed))
        return result("gpu_count", True, BLOCKING,
                      "%d NVIDIA GPU(s) on the PCI bus, NVML not readable yet (gpu status %s): the checks that need "
                      "the driver are deferred until it is installed" % (on_bus, status), numbers)
    if device is None:
        return result("gpu_count", False, BLOCKING,
                      "engine %s needs NVIDIA GPUs; this host has no usable one (gpu status %s: %s)"
                      % (engine, status, (gpu_facts or {}).get("reason") or "no gpu facts given"),
                      numbers, _status_fix(gpu_facts))
    indices = plan.get("gpu_indices")
    if indices is not None:
        usable = sorted(g["index"] for g in usable_gpus(gpu_facts))
        missing = [i for i in indices if i not in usable]
        numbers["gpu_indices"] = list(indices)
        if missing:
            return result("gpu_count", False, BLOCKING,
                          "GPU %s of the plan %s not usable on this host (usable GPUs: %s)"
                          % (", ".join(str(i) for i in missing), "is" if len(missing) == 1 else "are",
                             ", ".join(str(i) for i in usable) or "none"),
                          numbers, "name GPUs the host has (see gpu_facts), or fix the failing GPUs")
        if len(indices) >= needed:
            return result("gpu_count", True, BLOCKING, "GPUs %s of %d usable GPUs used"
                          % (", ".join(str(i) for i in indices), have), numbers)
    if have < needed or (indices is not None and len(indices) < needed):
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
            message += " (context_length not given: %d derived)" % context
        return result("context_length", True, BLOCKING, message, numbers)
    return result("context_length", False, BLOCKING,
                  "context %d exceeds the model's maximum of %d positions" % (context, longest),
                  numbers, "set context_length to %d or less" % longest)


def _multi_host_layout(profile, est, available, gpus_per_host, most_hosts=8):
    """(tensor parallel, hosts) for the fewest hosts like this one that hold the model, one
    pipeline stage per host and the largest accepted tensor-parallel size a host holds; or None."""
    sizes = [size for size in vram.tensor_parallel_candidates(profile) if size <= gpus_per_host]
    if not sizes:
        return None
    for hosts in range(2, most_hosts + 1):
        if hosts > profile["num_hidden_layers"]:
            break
        trial = vram.estimate_variant(est, profile, tensor_parallel_size=sizes[-1], pipeline_parallel_size=hosts)
        if trial["need_per_gpu_bytes"] <= available:
            return sizes[-1], hosts
    return None


def _memory_alternatives(profile, plan, est, available, gpu_count, min_cc):
    fixes = []
    tp = vram.smallest_fitting_tensor_parallel(profile, est, available)
    if tp is not None and tp != est["tensor_parallel_size"]:
        gpus = tp * est["pipeline_parallel_size"]
        text = "set tensor_parallel_size %d (%d GPUs" % (tp, gpus)
        text += ", the host has %d)" % gpu_count if gpus > gpu_count else ")"
        fixes.append(text)
    if est["device"] == "gpu" and gpu_count and (tp is None or tp * est["pipeline_parallel_size"] > gpu_count):
        layout = _multi_host_layout(profile, est, available, gpu_count)
        if layout:
            fixes.append("serve it across %d hosts of %d GPU%s: tensor_parallel_size %d x pipeline_parallel_size %d "
                         "(one pipeline stage per host)" % (layout[1], gpu_count, "" if gpu_count == 1 else "s",
                                                            layout[0], layout[1]))
    if est["device"] == "gpu" and plan["engine"] != "llama_cpp":
        candidates = [d for d in GPU_DTYPE_ALTERNATIVES
                      if min_cc is None or tables.dtype_min_cc(d) is None or tables.compare_compute_capability(
                          min_cc, tables.dtype_min_cc(d)) >= 0]
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


def _gpu_source(gpus):
    """Where the GPU numbers come from: "nvml", or "pci_ids" before the driver is loaded."""
    return pci_ids.SOURCE if any(g.get("source") == pci_ids.SOURCE for g in gpus) else "nvml"


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
    numbers["source"] = _gpu_source(gpus)
    if numbers["source"] == pci_ids.SOURCE:
        budget_text += " (%s memory from the PCI id table; the driver is not loaded yet)" % gpus[0].get("name")
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
    suggested = math.floor(100.0 * max(0, worst["memory_free"] - 512 * fsutil.MIB) / worst["memory_total"]) / 100.0
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
    numbers = {"required": needed, "gpus": dict(("gpu%d" % g["index"], g["compute_capability"]) for g in gpus),
               "source": _gpu_source(gpus)}
    if not bad:
        return result("compute_capability", True, BLOCKING,
                      "every GPU meets compute capability %s" % (needed or "(none required)"), numbers)
    lowest = min((g["compute_capability"] for g, _r in bad), key=tables.parse_compute_capability)
    fixes = []
    engine_ok = tables.compute_capability_ok(lowest, engine, None, plan.get("min_compute_capability"))[0]
    if engine_ok:
        runnable = [d for d in ("bf16", "fp16", "fp8", "int8", "awq", "gptq")
                    if tables.compute_capability_ok(lowest, engine, d, plan.get("min_compute_capability"))[0]]
        alternatives = [d for d in runnable if d != tables.normalize_dtype(dtype)]
        if alternatives:
            fixes.append("use dtype %s instead of %s" % (" or ".join(alternatives[:2]), tables.normalize_dtype(dtype)))
    fixes.append("use GPUs with compute capability %s or newer (A100 8.0, L40S 8.9, H100/H200 9.0)" % needed)
    if engine != "llama_cpp":
        fixes.append("use engine llama_cpp")
    message = "; ".join("GPU %d %s: %s" % (g["index"], g.get("name"), r) for g, r in bad)
    if numbers["source"] == pci_ids.SOURCE:
        message += " (from the PCI id table; the driver is not loaded yet)"
    return result("compute_capability", False, BLOCKING, message, numbers, ", or ".join(fixes))


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


def memory_budget(plan, gpus, device, host):
    """Bytes the model must fit in per GPU (or in host RAM), or None when that is not known.

    vLLM / SGLang: gpu_memory_utilization x the smallest total memory of the GPUs used (from
    NVML, or from the PCI id table before the driver is loaded); llama.cpp on a GPU: the
    smallest free memory; on the CPU: MemAvailable.
    """
    if device in ("gpu", "pending"):
        if not gpus or not all(g.get("memory_total") for g in gpus):
            return None
        if plan["engine"] == "llama_cpp":
            return min(g["memory_free"] if g.get("memory_free") is not None else g["memory_total"] for g in gpus)
        return int(plan["gpu_memory_utilization"] * min(g["memory_total"] for g in gpus))
    if device == "cpu":
        return (host or {}).get("mem_available_bytes")
    return None


def _estimate(profile, plan, device, context_length=None, max_num_seqs=None):
    return vram.estimate_memory(
        profile, plan["dtype"], plan["kv_cache_dtype"], context_length or plan["context_length"],
        max_num_seqs or plan["max_num_seqs"], plan["tensor_parallel_size"], plan["pipeline_parallel_size"],
        plan["engine"], plan.get("max_num_batched_tokens"), plan.get("runtime_overhead_bytes"),
        "cpu" if device == "cpu" else "gpu")


def derive_settings(profile, plan, budget, device):
    """Choose the serving settings the caller left unset, from the estimate; updates plan.

    The policy. A value the caller set is checked by the other checks and never changed.

    - Starting values: context = min(the model's maximum, 32768); sequences = 16 for vLLM and
      SGLang, 4 for llama.cpp (its slots each reserve the whole context in one buffer and a CPU
      decodes few sequences at a time, so more slots mostly queue).
    - Context and sequences both unset: context = the starting value; sequences = the most that
      fit at that context, at most the starting value. When not even one sequence fits: one
      sequence at the longest context that fits, rounded down to a multiple of 1024
      (round_context_down). Below the minimum context (2048 tokens, or the model's maximum when
      that is smaller) no useful setting exists: the plan is estimated at the minimum x 1 and the
      memory check blocks, with its alternatives (tensor parallel, format, KV cache dtype).
    - Only sequences set: context = the starting value or the longest that fits at those
      sequences, whichever is smaller, rounded down; below the minimum: the minimum (blocked).
    - Only context set: sequences = the most that fit at that context, at most the starting
      value; when not even one fits: 1 (blocked by the memory check).
    - max_num_batched_tokens unset: the engine's default chunk (vram.DEFAULT_BATCHED_TOKENS:
      8192 for vLLM and SGLang, 512 for llama.cpp), passed to the engine explicitly so that it
      runs what was estimated.
    - gpu_memory_utilization unset: 0.90 (vLLM's default), or the share the plan gives a model
      whose GPUs other models share (_plan.memory_shares: 0.90 split evenly). It is not lowered
      to the memory free at preflight time: free memory is transient (a stray process, or this
      collection's own engine on a re-run) and a setting derived from it would change the
      engine's configuration from one run to the next; gpu_memory_free blocks instead and names
      the fraction that fits. llama.cpp: not applicable (it is checked against free memory).
    - dtype / quantization unset (auto): the checkpoint's own format; engine_settings names the
      activation dtype explicitly (bfloat16, float16 or float32, never auto) and a quantization
      method only when the engine must quantize a 16-bit checkpoint on the fly.
    Derived values fit in the budget less the 5 % warning band (NEAR_LIMIT), so that a derived
    plan passes the memory check cleanly. On the CPU (llama.cpp without a usable GPU) the budget
    is the host's MemAvailable.

    Returns {rule, fits, budget_bytes, minimum_context_length, least_settings,
    minimum_need_bytes}: fits is None when nothing was derived (all set, or no budget known: then
    the starting values stay); least_settings is [context, sequences] at the smallest settings
    the policy accepts (the minimum context and one sequence for what is derived, the set values
    otherwise) and minimum_need_bytes what the model needs there, for the fractions
    check_together proposes.
    """
    source = plan["settings_source"]
    context_set = source["max_model_len"] == SET
    seqs_set = source["max_num_seqs"] == SET
    longest = profile.get("max_position_embeddings") or DEFAULT_CONTEXT_LENGTH
    minimum = min(MIN_DERIVED_CONTEXT_LENGTH, longest)
    start_context, cap = plan["context_length"], plan["max_num_seqs"]
    least = (start_context if context_set else minimum, cap if seqs_set else 1)
    info = {"rule": "context and sequences set", "fits": None, "budget_bytes": budget,
            "minimum_context_length": minimum, "least_settings": list(least), "minimum_need_bytes": None}
    try:
        est = _estimate(profile, plan, device)
        info["minimum_need_bytes"] = _estimate(profile, plan, device, least[0], least[1])["need_per_gpu_bytes"]
    except ValueError:
        info["rule"] = "no estimate: starting values kept"
        return info
    if context_set and seqs_set:
        return info
    if budget is None:
        info["rule"] = "memory not known: starting values kept"
        return info
    budget = int(budget * (1 - NEAR_LIMIT))

    def fitting_context(at):
        fit = engine_cfg.largest_fitting_context(profile, at, budget, start_context)
        return vram.round_context_down(fit) if fit and fit < start_context else fit

    if context_set:
        most = engine_cfg.largest_fitting_seqs(profile, est, budget, cap)
        plan["max_num_seqs"] = most or 1
        info.update(rule="context set: the most sequences that fit, at most %d" % cap, fits=most is not None)
        return info
    if seqs_set:
        context = fitting_context(est)
        fits = context is not None and context >= minimum
        plan["context_length"] = context if fits else minimum
        info.update(rule="sequences set: the longest context that fits, at most %d" % start_context, fits=fits)
        return info
    most = engine_cfg.largest_fitting_seqs(profile, est, budget, cap)
    if most:
        plan["max_num_seqs"] = most
        info.update(rule="context %d; the most sequences that fit, at most %d" % (start_context, cap), fits=True)
        return info
    context = fitting_context(vram.estimate_variant(est, profile, max_num_seqs=1))
    fits = context is not None and context >= minimum
    plan["max_num_seqs"] = 1
    plan["context_length"] = context if fits else minimum
    info.update(rule="one sequence at the longest context that fits (at least %d)" % minimum, fits=fits)
    return info


def _device_gpus(plan, gpu_facts, device):
    """(GPUs used, GPUs the host has) for the device: NVML's, or the PCI id table's when pending."""
    if device == "gpu":
        return selected_gpus(plan, gpu_facts), usable_gpus(gpu_facts)
    if device == "pending":
        on_bus = pci_table_gpus(gpu_facts)
        return _pick(on_bus, plan), on_bus
    return [], usable_gpus(gpu_facts)


def _unknown_pci(gpus):
    return ["PCI device id %s (bus %s)" % (g.get("device_id") or "unreadable", g.get("bus_id")) for g in gpus
            if not g.get("known")]


def _gpu_checks(plan, profile, gpus, host_gpus, estimate, device, checks, skipped):
    """The checks on the GPUs used: from NVML, or from the PCI id table before the driver."""
    needed = plan["tensor_parallel_size"] * plan["pipeline_parallel_size"]
    if device == "pending":
        deferred = "deferred until the driver is loaded"
        unknown = _unknown_pci(gpus)
        known = [g for g in gpus if g.get("known")]
        if unknown:
            why = "%s: %s not in the PCI id table" % (deferred, ", ".join(unknown))
            skipped.append("gpu_memory: " + why)
            skipped.append("compute_capability: " + why)
        elif estimate is not None and len(gpus) == needed:
            checks.append(check_gpu_memory(plan, profile, gpus, estimate, len(host_gpus)))
        else:
            skipped.append("gpu_memory: %s (too few GPUs to place the model: see gpu_count)" % deferred)
        if known:
            checks.append(check_compute_capability(plan, known))
        elif not unknown:
            skipped.append("compute_capability: %s (no GPU used)" % deferred)
        skipped.append("gpu_memory_free: free memory is unknown until the driver is loaded")
        skipped.append("mig_mode: " + deferred)
        return
    if device == "gpu" and gpus:
        if estimate is not None and len(gpus) == needed:
            checks.append(check_gpu_memory(plan, profile, gpus, estimate, len(host_gpus)))
        elif estimate is not None:
            skipped.append("gpu_memory: too few GPUs to place the model (see gpu_count)")
        if plan["engine"] in tables.GPU_REQUIRED_ENGINES:
            checks.append(check_gpu_memory_free(plan, gpus))
        checks.append(check_compute_capability(plan, gpus))
        checks.append(check_mig(plan, gpus))
        return
    skipped.extend(["gpu_memory: no GPU used", "compute_capability: no GPU used", "mig_mode: no GPU used"])


def _settings(profile, plan, estimate, gpus, device, host):
    """engine_settings for the serving role, with the origin of every setting."""
    if estimate is None or device is None:
        return None
    batched = plan.get("max_num_batched_tokens")
    if device in ("gpu", "pending") and gpus and all(g.get("memory_total") for g in gpus):
        total = min(g["memory_total"] for g in gpus)
        if plan["engine"] == "llama_cpp":
            free = min(g["memory_free"] if g.get("memory_free") is not None else g["memory_total"] for g in gpus)
            settings = engine_cfg.engine_settings(profile, estimate, total, free, 1.0, max_num_batched_tokens=batched)
            settings["gpu_memory_utilization"] = None
        else:
            # Not lowered to the free memory: see derive_settings.
            settings = engine_cfg.engine_settings(profile, estimate, total, None, plan["gpu_memory_utilization"],
                                                  max_num_batched_tokens=batched)
        settings["memory_source"] = _gpu_source(gpus)
    elif device == "cpu":
        settings = engine_cfg.engine_settings(profile, estimate, host_available_bytes=host.get("mem_available_bytes"),
                                              max_num_batched_tokens=batched)
        settings["memory_source"] = "meminfo"
    else:
        return None
    if plan.get("activation_dtype"):
        settings["dtype"] = engine_cfg.activation_dtype_arg(profile, tables.normalize_dtype(plan["activation_dtype"]))
    elif settings["dtype"] == "bfloat16" and gpus:
        # A quantized checkpoint computes in bf16 only where the GPUs have it (8.0); fp16 below.
        lowest = min((g["compute_capability"] for g in gpus if g.get("compute_capability")),
                     key=tables.parse_compute_capability, default=None)
        below_bf16 = lowest is not None and tables.compare_compute_capability(lowest, tables.DTYPE_MIN_CC["bf16"]) < 0
        if below_bf16 and estimate["dtype"] in vram.QUANTIZED_DTYPES:
            settings["dtype"] = "float16"
    settings["source"] = dict(plan["settings_source"])
    return settings


def run_preflight(profile, plan, gpu_facts, host=None):
    """Every applicable check; returns the report dict (see module RETURN for its keys).

    plan: engine, dtype, kv_cache_dtype, context_length, max_num_seqs, tensor_parallel_size,
    pipeline_parallel_size, gpu_memory_utilization, max_num_batched_tokens (each optional:
    unset ones are derived, see derive_settings), gpu_indices (the GPUs to use; default the
    first tp x pp), gpu_memory_utilization_cap (the derived fraction's starting value),
    activation_dtype, model_path, min_compute_capability, cuda_version, allowed_fs_types,
    disk_margin_fraction, disk_margin_min_bytes, defer_gpu_checks, runtime_overhead_bytes.
    """
    plan = normalize_plan(plan, profile)
    host = host or {}
    device = decide_device(plan, gpu_facts)
    checks, skipped = [], []
    gpus, host_gpus = _device_gpus(plan, gpu_facts, device)
    checks.append(check_gpu_count(plan, gpu_facts, device))
    if plan["engine"] != "llama_cpp" or device == "gpu":
        checks.append(check_tensor_parallel(plan, profile, len(host_gpus)))

    budget = memory_budget(plan, gpus, device, host)
    derivation = derive_settings(profile, plan, budget, device)
    checks.append(check_context_length(plan, profile))

    estimate = None
    try:
        estimate = _estimate(profile, plan, device)
        plan["served_dtype"] = estimate["dtype"]
    except ValueError as exc:
        checks.append(result("estimate", False, BLOCKING, str(exc), {}, "correct dtype / kv_cache_dtype"))

    _gpu_checks(plan, profile, gpus, host_gpus, estimate, device, checks, skipped)
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

    if derivation["fits"] is False:
        context, seqs = derivation["least_settings"]
        note = (" (settings derived: not even %d tokens x %d sequence%s fit in %s)"
                % (context, seqs, "" if seqs == 1 else "s", _gib(derivation["budget_bytes"])))
        for check in checks:
            if check["check"] in ("gpu_memory", "host_ram") and not check["ok"] and check["severity"] == BLOCKING:
                check["message"] += note

    settings = _settings(profile, plan, estimate, gpus, device, host)
    blocking = [c for c in checks if not c["ok"] and c["severity"] == BLOCKING]
    warnings = [c for c in checks if not c["ok"] and c["severity"] == WARNING]
    hidden = ("served_dtype", "context_length_defaulted", "settings_source", "gpu_memory_utilization_cap")
    return {
        "ok": not blocking,
        "blocked": bool(blocking),
        "device": device,
        "gpus_used": [g["index"] for g in gpus],
        "plan": dict((k, v) for k, v in plan.items() if k not in hidden),
        "estimate": estimate,
        "engine_settings": settings,
        "settings_source": dict(plan["settings_source"]),
        "derivation": derivation,
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
