#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: deploy_preflight
short_description: Check that a model deployment can work on a host before anything changes
version_added: 0.2.0
description:
  - Estimates the memory a model needs per GPU (weights + KV cache + activations + runtime) for the planned dtype,
    context, concurrency and tensor / pipeline parallel sizes, and checks it against the host's GPUs.
  - Also checks the GPU count, tensor-parallel divisibility, context length, compute capability for the engine and
    dtype, MIG mode, driver against the CUDA version, driver branch lifecycle, model path rules, model file-system type,
    free disk for the model plus a margin, and host RAM.
  - Engine V(llama_cpp) runs on the CPU when the host has no usable GPU; then the estimate is checked against host
    RAM instead of GPU memory. V(vllm) and V(sglang) on a host without usable GPUs are a blocking failure.
  - Fails only on blocking failures, with one message listing every failure and its fix; warnings (a need within
    5% of its limit, an end-of-life driver branch, ...) are returned.
  - Returns engine settings derived from the estimate for the serving role. Settings left unset (context length,
    sequences, memory fraction, batched tokens, dtype) are chosen from the estimate; a value that is set is checked,
    never changed. C(source) in RV(engine_settings) says which is which.
  - With O(models), checks a whole host plan at once (the C(gpu_stack_models) list of served models). It validates
    the list, places the models on the GPUs, checks each model, then what models that share a GPU claim together,
    and returns one report per model and a table.
  - On a host whose NVIDIA driver is not installed yet (O(defer_gpu_checks)), the GPUs are looked up by PCI device id
    in a table of common boards, so that a model that cannot fit or a format the GPU cannot run is refused before
    the driver is installed.
  - The formulas and assumptions are in the collection's C(docs/preflight.md).
author:
  - llmops.gpu_stack maintainers (@llmops)
extends_documentation_fragment:
  - llmops.gpu_stack.attributes
  - llmops.gpu_stack.attributes.info_module
options:
  model:
    description:
      - Built-in model profile, lower case. One of V(deepseek-r1-distill-qwen-1.5b), V(deepseek-r1-distill-qwen-7b),
        V(deepseek-r1-distill-llama-8b), V(deepseek-r1-distill-qwen-14b), V(deepseek-r1-distill-qwen-32b),
        V(deepseek-r1-distill-llama-70b), V(deepseek-v3), V(deepseek-r1), V(smollm2-135m-instruct).
      - Exactly one of O(model), O(architecture), O(config_path) and O(models) is required.
    type: str
  architecture:
    description:
      - Architecture numbers with Hugging Face C(config.json) key names, for a model without a built-in profile.
      - Needs C(num_hidden_layers), C(hidden_size), C(intermediate_size), C(num_attention_heads), C(vocab_size);
        optional C(num_key_value_heads), C(head_dim), C(tie_word_embeddings), C(attention_bias),
        C(max_position_embeddings), C(dtype), and the DeepSeek MLA / MoE keys.
    type: dict
  config_path:
    description:
      - Path on the managed host of a C(config.json) (or the directory holding it) or of a C(.gguf) file, read for the
        architecture. A GGUF file's tensor table gives the exact weight bytes.
    type: path
  dtype:
    description:
      - Weight format served. V(auto) is the checkpoint's own (bf16 for the R1 distills, fp8 for DeepSeek-V3/R1, the
        file's type for GGUF).
      - V(fp32), V(fp16), V(bf16), V(fp8), V(int8), V(int4), V(awq), V(gptq), or a GGUF type such as V(Q4_K_M),
        V(Q8_0), V(Q4_1).
    type: str
    default: auto
  kv_cache_dtype:
    description:
      - KV cache element type. V(auto) follows the activation dtype (2 bytes). V(fp8) halves it; llama.cpp also takes
        V(q8_0) and V(q4_0).
    type: str
    default: auto
  context_length:
    description:
      - Longest sequence (prompt + output) to serve, the engine's max model length.
      - When omitted it is derived. With O(max_num_seqs) omitted too, 32768 (or the model's maximum when smaller) when
        at least one sequence fits, else the longest context one sequence fits, rounded down to a multiple of 1024;
        with O(max_num_seqs) set, the longest that fits at that many sequences, up to 32768. Below 2048 tokens nothing
        useful fits and the plan is blocked.
    type: int
  max_num_seqs:
    description:
      - Sequences served at the same time. The estimate assumes all of them at full O(context_length).
      - When omitted, the most that fit at the context, at most 16 (4 for V(llama_cpp)).
    type: int
  tensor_parallel_size:
    description: GPUs each layer is split across.
    type: int
    default: 1
  pipeline_parallel_size:
    description: Pipeline stages the layers are split into.
    type: int
    default: 1
  engine:
    description: Serving engine.
    type: str
    choices: [vllm, sglang, llama_cpp]
    default: vllm
  gpu_memory_utilization:
    description:
      - Fraction of each GPU's total memory the engine may claim (vLLM C(--gpu-memory-utilization), SGLang
        C(--mem-fraction-static)). Ignored by V(llama_cpp), which is checked against free memory.
      - When omitted, 0.9 (vLLM's default). It is not lowered to the memory free at the time of the check; the
        C(gpu_memory_free) check blocks instead and names the fraction that fits.
    type: float
  max_num_batched_tokens:
    description:
      - Tokens in the largest forward pass, for the activation estimate. When omitted, the engine's default chunk
        (8192 for vLLM and SGLang, 512 for llama.cpp), returned in RV(engine_settings) to be passed explicitly.
    type: int
  model_path:
    description:
      - Where the model lives or will be stored on the host. Enables the path rules, file-system type and disk space
        checks. Need not exist yet.
    type: path
  min_compute_capability:
    description: Lowest compute capability to accept on top of the engine's and dtype's own minimum, such as V(8.0).
    type: str
  cuda_version:
    description: CUDA version the engine build uses, such as V(12.8); enables the driver check.
    type: str
  allowed_fs_types:
    description:
      - File systems accepted for O(model_path). NTFS, FAT, exFAT and FUSE block file systems are refused whatever
        this says.
    type: list
    elements: str
    default: [ext4, xfs]
  disk_margin_fraction:
    description: Free disk to keep beyond the model, as a fraction of the model size.
    type: float
    default: 0.1
  disk_margin_min_gib:
    description: Lower bound of that margin in GiB.
    type: float
    default: 1.0
  gpu:
    description:
      - GPU facts as M(llmops.gpu_stack.gpu_facts) returns them; pass V({{ ansible_facts.gpu }}).
      - When omitted, the module reads them itself through NVML.
    type: dict
  defer_gpu_checks:
    description:
      - On a host whose NVIDIA GPUs are on the PCI bus but cannot be read through NVML yet (the GPU facts' C(status) is
        C(library_missing), C(driver_not_loaded) or C(bindings_missing), as on a bare server before the driver is
        installed), pass the GPU count check and skip the GPU memory, compute capability and MIG checks instead of
        blocking. The checks that need no driver (path, file system, disk, RAM, context length) still block.
      - The collection's C(site.yml) sets this for its first preflight, which runs before any change, and runs the
        full preflight again once the driver role has run.
    type: bool
    default: false
  fail_on_blocking:
    description:
      - Fail the task when a blocking check fails. With V(false) the result still has RV(blocked) and RV(msg), for a
        play that reports first and fails afterwards.
    type: bool
    default: true
  bindings_path:
    description: Directory searched for the C(pynvml) binding when O(gpu) is omitted.
    type: path
    default: /opt/gpu_stack/python
  models:
    description:
      - The host's served models (the C(gpu_stack_models) inventory variable), checked together instead of one model.
        Mutually exclusive with the single-model options (O(model), O(architecture), O(config_path), O(dtype),
        O(kv_cache_dtype), O(context_length), O(max_num_seqs), O(tensor_parallel_size), O(pipeline_parallel_size),
        O(engine), O(gpu_memory_utilization), O(max_num_batched_tokens), O(model_path)); the host options
        (O(cuda_version), O(min_compute_capability), O(allowed_fs_types), O(disk_margin_fraction),
        O(disk_margin_min_gib), O(gpu), O(defer_gpu_checks)) apply to every model.
      - "Each item: C(name) (required, unique, V(^[a-z0-9][a-z0-9._-]{0,62}$)); C(profile) (a built-in profile, see
        O(model)) or C(architecture) (config.json numbers), neither only for a C(.gguf) C(file); C(file); C(model_path)
        (default O(model_root)/C(name)); C(revision); C(source); C(engine) (V(auto), V(vllm), V(sglang),
        V(llama_cpp); V(auto) is vLLM on a GPU host and llama.cpp on a CPU host or for a C(.gguf) file); C(dtype);
        C(quantization) (V(none), V(fp8), V(int8), V(int4), V(awq), V(gptq)); C(kv_cache_dtype);
        C(tensor_parallel_size); C(pipeline_parallel_size); C(gpus) (V(all) or a list of GPU indices; unset: the next
        GPUs no other model claims); C(max_model_len), C(max_num_seqs), C(gpu_memory_utilization),
        C(max_num_batched_tokens) (unset: derived as for the single-model options; models sharing a GPU split 0.9);
        C(port), C(port_green) (default 8001 + 2i and 8002 + 2i for item i); C(gateway_port) (default 8080 + i);
        C(extra_args); C(threads)."
      - An invalid list fails the task before any check runs, with every problem named by its variable path
        (such as C(gpu_stack_models[1].tensor_parallel_size)), its value and the fix.
    type: list
    elements: dict
  model_root:
    description:
      - With O(models), the directory holding one directory per model (C(<model_root>/<name>), as the C(model_storage)
        role lays it out) for an item without C(model_path). A C(.gguf) C(file) of an item without C(profile) or
        C(architecture) is read from C(<model directory>/current/<file>).
    type: str
    default: /srv/models
  planned_fs_type:
    description:
      - With O(models) and O(planned_device), the file system the C(model_storage) role will make on that device for
        the model root (C(model_storage_fstype)). Until the device is mounted there, the file-system check uses this
        type and the disk check the device's size, instead of the file system the path is on now (the first preflight
        of C(site.yml) runs before the device is formatted).
    type: str
  planned_device:
    description:
      - The block device of O(planned_fs_type) (C(model_storage_device)).
    type: str
seealso:
  - module: llmops.gpu_stack.gpu_facts
"""

EXAMPLES = r"""
- name: Gather GPU facts
  llmops.gpu_stack.gpu_facts:

- name: Can DeepSeek-R1-Distill-Qwen-32B serve 32K context to 16 users on two GPUs?
  llmops.gpu_stack.deploy_preflight:
    model: deepseek-r1-distill-qwen-32b
    context_length: 32768
    max_num_seqs: 16
    tensor_parallel_size: 2
    engine: vllm
    cuda_version: "12.8"
    model_path: /srv/models/deepseek-r1-distill-qwen-32b
    gpu: "{{ ansible_facts.gpu }}"
  register: __preflight

- name: Serve with the derived settings
  ansible.builtin.debug:
    var: __preflight.engine_settings

- name: Check the host's whole plan (one report and one table row per served model)
  llmops.gpu_stack.deploy_preflight:
    models: "{{ gpu_stack_models }}"
    model_root: /srv/models
    cuda_version: "12.8"
    gpu: "{{ ansible_facts.gpu }}"
  register: __plan
  # gpu_stack_models on a host with four GPUs:
  #   - name: deepseek-r1-distill-qwen-32b
  #     profile: deepseek-r1-distill-qwen-32b
  #     dtype: bf16
  #     tensor_parallel_size: 2            # GPUs 0 and 1 (the next free ones)
  #   - name: deepseek-r1-distill-qwen-7b
  #     profile: deepseek-r1-distill-qwen-7b
  #     max_model_len: 16384               # set: checked, never changed; max_num_seqs derived
  #   - name: smollm2                      # GPU 3, shared: each gets 0.45 of it
  #     profile: smollm2-135m-instruct
  #     gpus: [3]
  #   - name: deepseek-r1-distill-qwen-1.5b
  #     profile: deepseek-r1-distill-qwen-1.5b
  #     gpus: [3]

- name: Show the table
  ansible.builtin.debug:
    msg: "{{ __plan.table }}"

- name: A GGUF model on the CPU
  llmops.gpu_stack.deploy_preflight:
    config_path: /srv/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    engine: llama_cpp
    context_length: 8192
    max_num_seqs: 2
    model_path: /srv/models/smollm2
    gpu: "{{ ansible_facts.gpu }}"
"""

RETURN = r"""
blocked:
  description: Whether a blocking check failed.
  returned: always
  type: bool
msg:
  description: Verdict; on a block, every blocking failure with its fix.
  returned: always
  type: str
  sample: "preflight blocked the deployment (1 problem): gpu_memory: does not fit: needs 1 x 71.4 GiB ..."
device:
  description: Where the model runs, C(gpu) or C(cpu); V(null) when a GPU engine has no GPU.
  returned: single model
  type: str
gpus_used:
  description: NVML indices of the GPUs the estimate places the model on (the first tp x pp usable ones).
  returned: single model
  type: list
  elements: int
plan:
  description: The inputs with defaults filled in.
  returned: single model
  type: dict
estimate:
  description:
    - Memory estimate on the busiest GPU (or the host for C(cpu)), in bytes, with parameter counts.
    - Keys include C(weights_bytes), C(weights_per_gpu_bytes), C(kv_bytes_per_token), C(kv_bytes_per_token_per_gpu),
      C(kv_cache_per_gpu_bytes), C(activation_per_gpu_bytes), C(runtime_overhead_per_gpu_bytes),
      C(need_per_gpu_bytes), C(parameters_total), C(parameters_active), C(dtype), C(context_length), C(max_num_seqs).
  returned: when the profile could be loaded
  type: dict
engine_settings:
  description:
    - Settings for the serving engine, the ones to pass as they are. C(max_model_len), C(max_num_seqs),
      C(gpu_memory_utilization) (V(null) for llama_cpp), C(max_num_batched_tokens), C(tensor_parallel_size),
      C(pipeline_parallel_size), C(dtype) (the activation dtype, never V(auto)), C(weight_format) (the weights served),
      C(quantization) (the method when the engine quantizes a 16-bit checkpoint on the fly; V(null) when the
      checkpoint carries it), C(kv_cache_dtype), C(kv_cache_tokens) (capacity per GPU),
      C(max_num_seqs_at_max_model_len), C(max_model_len_at_max_num_seqs), C(fits), C(memory_source) (V(nvml),
      V(pci_ids) before the driver is loaded, or V(meminfo)); for llama_cpp also C(ctx_size), C(parallel),
      C(n_gpu_layers).
    - C(source) maps each of C(max_model_len), C(max_num_seqs), C(gpu_memory_utilization), C(max_num_batched_tokens),
      C(dtype), C(quantization), C(kv_cache_dtype) to V(set) (given, only checked) or V(derived) (chosen by the
      preflight); C(gpu_memory_utilization) is V(not_applicable) for llama_cpp.
  returned: when a device was found
  type: dict
settings_source:
  description: The same as C(source) in RV(engine_settings), also when no engine settings could be derived.
  returned: single model
  type: dict
derivation:
  description:
    - How the unset settings were chosen, C(rule), C(fits) (V(false) when not even the smallest accepted settings fit,
      V(null) when nothing was derived), C(budget_bytes), C(minimum_context_length), C(least_settings) (context and
      sequences at the smallest accepted settings) and C(minimum_need_bytes) (the memory needed there).
  returned: single model
  type: dict
checks:
  description: Every check run, as C(check), C(ok), C(severity) (C(blocking) or C(warning)), C(message), C(numbers) and
    C(fix).
  returned: single model
  type: list
  elements: dict
blocking:
  description: Blocking failures, one line each with the fix.
  returned: always
  type: list
  elements: str
preflight_warnings:
  description: Warnings, one line each (also shown as task warnings).
  returned: always
  type: list
  elements: str
skipped_checks:
  description: Checks not run and why (missing input; a GPU whose PCI device id the table does not know).
  returned: single model
  type: list
  elements: str
models:
  description:
    - One report per model this host serves (those of O(models) without a C(group)), in their order, each with the single-model keys (C(blocked),
      C(device), C(gpus_used), C(plan), C(estimate), C(engine_settings) with C(source), C(settings_source),
      C(derivation), C(checks), C(blocking), C(preflight_warnings), C(skipped_checks)) plus C(name), C(engine) (the
      engine chosen for V(auto)), C(model_path), C(port), C(port_green), C(gateway_port) and C(shares_gpus_with) (the
      other models on its GPUs).
  returned: with O(models)
  type: list
  elements: dict
group_models:
  description:
    - Names of the models of O(models) served by a group of nodes (C(group), C(layout)). They are validated with the
      rest of the plan, but not placed or sized on this host; the cluster role checks them across the group's
      nodes (M(llmops.gpu_stack.cluster_preflight)).
  returned: with O(models)
  type: list
  elements: str
together:
  description:
    - The checks of what models claim together, shaped like RV(checks); C(shared_gpu) for each GPU several models use
      (their claims must add up to the GPU's memory at most), C(host_ram_together) for the host's RAM.
  returned: with O(models)
  type: list
  elements: dict
gpu_assignment:
  description: The GPU indices of each model, by name (an empty list for a model on the CPU).
  returned: with O(models)
  type: dict
  sample: {"deepseek-r1-distill-qwen-32b": [0, 1], "deepseek-r1-distill-qwen-7b": [2], "smollm2": [3],
           "deepseek-r1-distill-qwen-1.5b": [3]}
shared_gpus:
  description: For each GPU index (as a string) that more than one model uses, the names of those models.
  returned: with O(models)
  type: dict
  sample: {"3": ["deepseek-r1-distill-qwen-1.5b", "smollm2"]}
table:
  description:
    - A table as lines of text, a header and one row per model, with host-independent columns (model, engine, GPUs,
      context x seqs (each marked set or derived), need per GPU, verdict (ok, warning, BLOCKED) and the first problem).
  returned: with O(models)
  type: list
  elements: str
  sample:
    - "model                           engine    GPUs        context x seqs              need per GPU      verdict first problem"
    - "deepseek-r1-distill-qwen-32b    vllm      0,1         32768 derived x 1 derived   36.8 GiB x 2      ok      "
    - "deepseek-r1-distill-qwen-7b     vllm      2           16384 set x 16 derived      30.4 GiB x 1      ok      "
    - "smollm2                         vllm      3           8192 derived x 16 derived   4.4 GiB x 1       ok      "
    - "deepseek-r1-distill-qwen-1.5b   vllm      3           32768 derived x 16 derived  19.0 GiB x 1      ok      "
problems:
  description: With O(models), when the list itself is invalid, every problem (variable path, value, fix).
  returned: on an invalid O(models)
  type: list
  elements: str
"""

import os
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _plan as plan_utils
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _preflight as preflight
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _storage as storage
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _fsutil as fsutil
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _gguf as gguf_file
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_catalogue as catalogue
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_profile as profiles
from ansible_collections.llmops.gpu_stack.plugins.module_utils._nvml import DEFAULT_BINDINGS_PATH, collect_gpu_facts

PLAN_KEYS = ("engine", "dtype", "kv_cache_dtype", "context_length", "max_num_seqs", "tensor_parallel_size",
             "pipeline_parallel_size", "gpu_memory_utilization", "max_num_batched_tokens", "model_path",
             "min_compute_capability", "cuda_version", "allowed_fs_types", "disk_margin_fraction",
             "defer_gpu_checks")
# Options of one model, which O(models) replaces.
SINGLE_MODEL_OPTIONS = ("model", "architecture", "config_path", "dtype", "kv_cache_dtype", "context_length",
                        "max_num_seqs", "tensor_parallel_size", "pipeline_parallel_size", "engine",
                        "gpu_memory_utilization", "max_num_batched_tokens", "model_path")
# O(models) replaces the options of one model.
MODELS_EXCLUDE = [("models", option) for option in SINGLE_MODEL_OPTIONS[3:]]
# Options of the host, which apply to every model of O(models).
HOST_KEYS = ("min_compute_capability", "cuda_version", "allowed_fs_types", "disk_margin_fraction", "defer_gpu_checks")


def planned_storage(model_path, fs_type, device, mountinfo=storage.MOUNTINFO, sys_block="/sys/class/block"):
    """(fs_type, size in bytes or None) of the file system the model_storage role will make on
    `device` for `model_path`, or None when the path already lives on that device (then the
    host's own facts are the right ones)."""
    if not fs_type or not device:
        return None
    real_device = os.path.realpath(device)
    try:
        with open(mountinfo, "r") as handle:
            mount = storage.mount_for_path(os.path.realpath(storage.existing_ancestor(model_path)), handle.read())
    except (IOError, OSError):
        mount = None
    if mount and mount["source"] and os.path.realpath(mount["source"]) == real_device:
        return None
    size = None
    try:
        with open(os.path.join(sys_block, os.path.basename(real_device), "size"), "r") as handle:
            size = int(handle.read().strip()) * 512
    except (IOError, OSError, ValueError):
        size = None
    return fs_type, size


def host_facts(model_path, meminfo="/proc/meminfo", mountinfo=storage.MOUNTINFO, planned=None):
    """RAM, and for a model path its file system, free space and what is already stored there.
    planned: (fs_type, size) of a file system still to be made for it (planned_storage)."""
    host = {}
    try:
        with open(meminfo, "r") as handle:
            host.update(preflight.parse_meminfo(handle.read()))
    except (IOError, OSError):
        pass
    if model_path and planned:
        host["fs_type"], host["disk_free_bytes"] = planned
        host["model_existing_bytes"] = 0
        host["fs_planned"] = True
    elif model_path:
        try:
            host["fs_type"] = storage.fs_type_for_path(model_path, mountinfo_path=mountinfo)
        except (IOError, OSError):
            host["fs_type"] = None
        try:
            host["disk_free_bytes"] = storage.free_bytes(model_path)
        except OSError:
            host["disk_free_bytes"] = None
        host["model_existing_bytes"] = storage.used_bytes_under(model_path) if os.path.exists(model_path) else 0
    return host


def _finish(report):
    report.pop("ok", None)
    # Ansible consumes a result key named "warnings"; the data stays under preflight_warnings.
    report["preflight_warnings"] = report.pop("warnings")
    return report


def model_profile(model, model_dir):
    """(profile, None) for a served model, or (None, reason) when it cannot be sized."""
    if model["profile"]:
        return catalogue.get_profile(model["profile"]), None
    if model["architecture"]:
        return catalogue.normalize_profile(model["architecture"]), None
    path = os.path.join(model_dir, "current", model["file"] or "")
    if not model["file"] or not os.path.isfile(path):
        return None, ("cannot size %s: give profile or architecture, or place the file first (%s does not exist)"
                      % (model["name"], path))
    try:
        return gguf_file.profile_from_gguf(path, name=model["name"]), None
    except ValueError as exc:
        return None, "cannot size %s: %s" % (model["name"], exc)


def unsized_report(model, plan, gpus, reason):
    """The report of a model that could not be sized: blocked, with the reason and the fix."""
    check = preflight.result("model_profile", False, preflight.BLOCKING, reason,
                             {"file": model["file"], "model_path": plan["model_path"]},
                             "set profile (one of %s) or architecture in %s, or place the file first (the "
                             "model_storage role) and run again" % (", ".join(catalogue.list_profiles()), model["var"]))
    source = dict((key, "set" if model.get(key) is not None else "derived")
                  for key in ("max_model_len", "max_num_seqs", "gpu_memory_utilization", "max_num_batched_tokens"))
    return {"ok": False, "blocked": True, "device": None, "gpus_used": list(gpus), "plan": plan, "estimate": None,
            "engine_settings": None, "settings_source": source, "derivation": None, "checks": [check],
            "blocking": ["%s: %s. Fix: %s" % (check["check"], check["message"], check["fix"])], "warnings": [],
            "skipped_checks": ["every other check: the model could not be sized"]}


def check_models(params, gpu, facts_for=None):
    """The whole host plan: (result, None), or (None, failure dict) for an invalid plan."""
    if facts_for is None:
        def facts_for(path):
            planned = planned_storage(path, params.get("planned_fs_type"), params.get("planned_device")) if path else None
            return host_facts(path, planned=planned)
    try:
        models = plan_utils.normalize_models(params["models"])
    except plan_utils.PlanError as exc:
        return None, {"msg": str(exc), "problems": exc.problems}
    # A model served by a group of nodes (group, layout) is validated with the rest of the plan
    # and then left to the cluster role and its cross-node check (cluster_preflight): this host
    # neither places nor sizes it alone.
    served_by_groups = [m["name"] for m in plan_utils.group_models(models)]
    models = plan_utils.host_models(models)
    host_gpus = preflight.usable_gpus(gpu)
    pending = (gpu or {}).get("status") in preflight.DRIVER_PENDING_STATUSES
    if all((not host_gpus, params["defer_gpu_checks"], pending, preflight.pci_gpus(gpu))):
        host_gpus = preflight.pci_table_gpus(gpu)
    indices = [g["index"] for g in host_gpus]
    try:
        assignment = plan_utils.assign_gpus(models, indices)
    except plan_utils.PlanError as exc:
        return None, {"msg": str(exc), "problems": exc.problems}
    shares = plan_utils.memory_shares(models, assignment, len(indices))
    shared = plan_utils.shared_gpus(assignment)
    reports = []
    for model in models:
        name = model["name"]
        model_dir = model["model_path"] or os.path.join(params["model_root"], name)
        plan = plan_utils.plan_to_preflight(model, assignment[name], shares.get(name), len(indices))
        plan.update((key, params[key]) for key in HOST_KEYS)
        plan["disk_margin_min_bytes"] = int(params["disk_margin_min_gib"] * fsutil.GIB)
        plan["model_path"] = model_dir
        try:
            profile, reason = model_profile(model, model_dir)
        except ValueError as exc:
            profile, reason = None, "cannot size %s: %s" % (name, exc)
        if profile is None:
            report = unsized_report(model, plan, assignment[name], reason)
        else:
            report = preflight.run_preflight(profile, plan, gpu, facts_for(model_dir))
        report = _finish(report)
        others = sorted(set(n for i in assignment[name] for n in shared.get(i, []) if n != name))
        report.update(name=name, engine=plan["engine"], model_path=model_dir, port=model["port"],
                      port_green=model["port_green"], gateway_port=model["gateway_port"], shares_gpus_with=others)
        reports.append(report)
    together = plan_utils.check_together(reports, host_gpus, facts_for(None))
    blocking = ["%s: %s" % (r["name"], line) for r in reports for line in r["blocking"]]
    blocking += ["%s: %s. Fix: %s" % (c["check"], c["message"], c["fix"]) for c in together
                 if not c["ok"] and c["severity"] == preflight.BLOCKING]
    warnings = ["%s: %s" % (r["name"], line) for r in reports for line in r["preflight_warnings"]]
    warnings += ["%s: %s" % (c["check"], c["message"]) + (". Fix: %s" % c["fix"] if c["fix"] else "")
                 for c in together if not c["ok"] and c["severity"] == preflight.WARNING]
    if blocking:
        msg = "preflight blocked the plan of %d model%s (%d problem%s): %s" % (
            len(reports), "" if len(reports) == 1 else "s", len(blocking), "" if len(blocking) == 1 else "s",
            " | ".join(blocking))
    else:
        names = ", ".join(r["name"] for r in reports) or "none"
        msg = "preflight passed for %d model%s: %s" % (len(reports), "" if len(reports) == 1 else "s", names)
        if warnings:
            msg += " with %d warning%s" % (len(warnings), "" if len(warnings) == 1 else "s")
    if served_by_groups:
        msg += "; served by a group of nodes, checked by cluster_preflight: %s" % ", ".join(served_by_groups)
    return {
        "changed": False,
        "blocked": bool(blocking),
        "msg": msg,
        "models": reports,
        "group_models": served_by_groups,
        "together": together,
        "gpu_assignment": assignment,
        "shared_gpus": dict((str(index), names) for index, names in shared.items()),
        "blocking": blocking,
        "preflight_warnings": warnings,
        "table": plan_utils.plan_table(reports, together),
    }, None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            model=dict(type="str"),
            architecture=dict(type="dict"),
            config_path=dict(type="path"),
            dtype=dict(type="str", default="auto"),
            kv_cache_dtype=dict(type="str", default="auto"),
            context_length=dict(type="int"),
            max_num_seqs=dict(type="int"),
            tensor_parallel_size=dict(type="int", default=1),
            pipeline_parallel_size=dict(type="int", default=1),
            engine=dict(type="str", default="vllm", choices=["vllm", "sglang", "llama_cpp"]),
            gpu_memory_utilization=dict(type="float"),
            max_num_batched_tokens=dict(type="int", no_log=False),
            model_path=dict(type="path"),
            min_compute_capability=dict(type="str"),
            cuda_version=dict(type="str"),
            allowed_fs_types=dict(type="list", elements="str", default=["ext4", "xfs"]),
            disk_margin_fraction=dict(type="float", default=0.1),
            disk_margin_min_gib=dict(type="float", default=1.0),
            gpu=dict(type="dict"),
            defer_gpu_checks=dict(type="bool", default=False),
            fail_on_blocking=dict(type="bool", default=True),
            bindings_path=dict(type="path", default=DEFAULT_BINDINGS_PATH),
            models=dict(type="list", elements="dict"),
            model_root=dict(type="str", default="/srv/models"),
            planned_fs_type=dict(type="str"),
            planned_device=dict(type="str"),
        ),
        mutually_exclusive=[("model", "architecture", "config_path", "models")] + MODELS_EXCLUDE,
        required_one_of=[("model", "architecture", "config_path", "models")],
        supports_check_mode=True,
    )
    params = module.params
    gpu = params["gpu"]
    if params["models"] is not None:
        if gpu is None:
            gpu = collect_gpu_facts(bindings_path=params["bindings_path"])
        try:
            result, failure = check_models(params, gpu)
        except Exception as exc:
            module.fail_json(msg="deploy_preflight failed unexpectedly: %s: %s. This is a bug in llmops.gpu_stack; "
                                 "please report it with the exception shown at -vvv." % (exc.__class__.__name__, exc),
                             exception=traceback.format_exc())
        if failure is not None:
            module.fail_json(**failure)
        for warning in result["preflight_warnings"]:
            module.warn(warning)
        if result["blocked"] and params["fail_on_blocking"]:
            module.fail_json(**result)
        module.exit_json(**result)

    try:
        profile = profiles.load_profile(params["model"], params["architecture"], params["config_path"])
    except ValueError as exc:
        module.fail_json(msg="cannot build the model profile: %s" % exc)

    if gpu is None:
        gpu = collect_gpu_facts(bindings_path=params["bindings_path"])
    plan = dict((key, params[key]) for key in PLAN_KEYS)
    plan["disk_margin_min_bytes"] = int(params["disk_margin_min_gib"] * fsutil.GIB)
    try:
        report = preflight.run_preflight(profile, plan, gpu, host_facts(params["model_path"]))
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    except Exception as exc:
        module.fail_json(msg="deploy_preflight failed unexpectedly: %s: %s. This is a bug in llmops.gpu_stack; "
                             "please report it with the exception shown at -vvv." % (exc.__class__.__name__, exc),
                         exception=traceback.format_exc())
    report["msg"] = preflight.summarize(report)
    report = _finish(report)
    for warning in report["preflight_warnings"]:
        module.warn(warning)
    if report["blocked"] and params["fail_on_blocking"]:
        module.fail_json(changed=False, **report)
    module.exit_json(changed=False, **report)


if __name__ == "__main__":
    main()
