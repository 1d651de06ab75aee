#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: deploy_preflight
short_description: Check that a model deployment can work on a host before anything changes
version_added: 0.1.0
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
  - Returns engine settings derived from the estimate for the serving role.
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
      - Exactly one of O(model), O(architecture) and O(config_path) is required.
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
      - Longest sequence (prompt + output) to serve, the engine's max model length. Defaults to 32768 or the model's
        maximum when that is smaller; the result says when the default was used.
    type: int
  max_num_seqs:
    description:
      - Sequences served at the same time. The estimate assumes all of them at full O(context_length).
    type: int
    default: 16
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
    type: float
    default: 0.9
  max_num_batched_tokens:
    description:
      - Tokens in the largest forward pass, for the activation estimate. Defaults to 8192 for vLLM and SGLang, 512 for
        llama.cpp.
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
  returned: always
  type: str
gpus_used:
  description: NVML indices of the GPUs the estimate places the model on (the first tp x pp usable ones).
  returned: always
  type: list
  elements: int
plan:
  description: The inputs with defaults filled in.
  returned: always
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
    - Settings for the serving engine derived from the estimate. C(max_model_len), C(max_num_seqs),
      C(gpu_memory_utilization) (lowered when less memory is free), C(tensor_parallel_size),
      C(pipeline_parallel_size), C(dtype), C(quantization), C(kv_cache_dtype), C(kv_cache_tokens) (capacity per GPU),
      C(max_num_seqs_at_max_model_len), C(max_model_len_at_max_num_seqs), C(fits); for llama_cpp also C(ctx_size),
      C(parallel), C(n_gpu_layers).
  returned: when a device was found
  type: dict
checks:
  description: Every check run, as C(check), C(ok), C(severity) (C(blocking) or C(warning)), C(message), C(numbers) and
    C(fix).
  returned: always
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
  description: Checks not run and why (missing input).
  returned: always
  type: list
  elements: str
"""

import os
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _preflight as preflight
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _storage as storage
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _vram as vram
from ansible_collections.llmops.gpu_stack.plugins.module_utils._nvml import DEFAULT_BINDINGS_PATH, collect_gpu_facts

PLAN_KEYS = ("engine", "dtype", "kv_cache_dtype", "context_length", "max_num_seqs", "tensor_parallel_size",
             "pipeline_parallel_size", "gpu_memory_utilization", "max_num_batched_tokens", "model_path",
             "min_compute_capability", "cuda_version", "allowed_fs_types", "disk_margin_fraction",
             "defer_gpu_checks")


def host_facts(model_path, meminfo="/proc/meminfo", mountinfo=storage.MOUNTINFO):
    """RAM, and for a model path its file system, free space and what is already stored there."""
    host = {}
    try:
        with open(meminfo, "r") as handle:
            host.update(preflight.parse_meminfo(handle.read()))
    except (IOError, OSError):
        pass
    if model_path:
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


def main():
    module = AnsibleModule(
        argument_spec=dict(
            model=dict(type="str"),
            architecture=dict(type="dict"),
            config_path=dict(type="path"),
            dtype=dict(type="str", default="auto"),
            kv_cache_dtype=dict(type="str", default="auto"),
            context_length=dict(type="int"),
            max_num_seqs=dict(type="int", default=16),
            tensor_parallel_size=dict(type="int", default=1),
            pipeline_parallel_size=dict(type="int", default=1),
            engine=dict(type="str", default="vllm", choices=["vllm", "sglang", "llama_cpp"]),
            gpu_memory_utilization=dict(type="float", default=0.9),
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
        ),
        mutually_exclusive=[("model", "architecture", "config_path")],
        required_one_of=[("model", "architecture", "config_path")],
        supports_check_mode=True,
    )
    params = module.params
    try:
        profile = vram.load_profile(params["model"], params["architecture"], params["config_path"])
    except ValueError as exc:
        module.fail_json(msg="cannot build the model profile: %s" % exc)

    gpu = params["gpu"]
    if gpu is None:
        gpu = collect_gpu_facts(bindings_path=params["bindings_path"])
    plan = dict((key, params[key]) for key in PLAN_KEYS)
    plan["disk_margin_min_bytes"] = int(params["disk_margin_min_gib"] * vram.GIB)
    try:
        report = preflight.run_preflight(profile, plan, gpu, host_facts(params["model_path"]))
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    except Exception as exc:
        module.fail_json(msg="deploy_preflight failed unexpectedly: %s: %s. This is a bug in llmops.gpu_stack; "
                             "please report it with the exception shown at -vvv." % (exc.__class__.__name__, exc),
                         exception=traceback.format_exc())
    report["msg"] = preflight.summarize(report)
    report.pop("ok")
    # Ansible consumes a result key named "warnings"; show them as task warnings and keep the data.
    report["preflight_warnings"] = report.pop("warnings")
    for warning in report["preflight_warnings"]:
        module.warn(warning)
    if report["blocked"] and params["fail_on_blocking"]:
        module.fail_json(changed=False, **report)
    module.exit_json(changed=False, **report)


if __name__ == "__main__":
    main()
