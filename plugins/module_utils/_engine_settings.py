# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Engine settings that follow from a memory estimate (_vram): the --dtype an engine gets for a
served weight format, the largest sequence count and context that fit, and engine_settings().
Python 3.9+, standard library only.
"""

from __future__ import annotations

import math

from ansible_collections.llmops.gpu_stack.plugins.module_utils._engine_args import _DTYPE_ARG as DTYPE_ARG
from ansible_collections.llmops.gpu_stack.plugins.module_utils._fsutil import MIB
from ansible_collections.llmops.gpu_stack.plugins.module_utils._vram import (
    DEFAULT_BATCHED_TOKENS,
    KV_BLOCK_TOKENS,
    QUANTIZED_DTYPES,
    _largest,
    estimate_variant,
    fit_limits,
)


# 4-bit AWQ / GPTQ / int4 kernels take fp16 activations (vLLM casts bf16 to fp16 for them).
_FP16_ACTIVATION_FORMATS = ("awq", "gptq", "int4")


def activation_dtype_arg(profile, served):
    """The engine's --dtype for a served weight format, never 'auto': the format itself for
    16/32-bit weights; for quantized weights the checkpoint's own 16-bit dtype (bf16 for the
    DeepSeek and R1 checkpoints), fp16 for the 4-bit formats whose kernels need it. GGUF
    formats (llama.cpp) return the GGUF type, which llama.cpp reads from the file."""
    if served in DTYPE_ARG:
        return DTYPE_ARG[served]
    if served in _FP16_ACTIVATION_FORMATS:
        return "float16"
    if served in QUANTIZED_DTYPES:
        return DTYPE_ARG.get(profile.get("activation_dtype") or "bf16", "bfloat16")
    return served


def largest_fitting_seqs(profile, est, available_bytes, cap=4096):
    """Most sequences (1..cap) that fit at the estimate's context, or None when not even one does."""
    def fits(seqs):
        return estimate_variant(est, profile, max_num_seqs=seqs)["need_per_gpu_bytes"] <= available_bytes
    return _largest(1, max(1, int(cap)), fits)


def largest_fitting_context(profile, est, available_bytes, longest):
    """Longest context (a multiple of the 16-token KV block, at most `longest`) that fits at the
    estimate's sequence count, or None when not even one block does."""
    def fits(blocks):
        return estimate_variant(est, profile, context_length=blocks * KV_BLOCK_TOKENS)["need_per_gpu_bytes"] <= available_bytes
    blocks = _largest(1, max(1, int(longest) // KV_BLOCK_TOKENS), fits)
    return blocks * KV_BLOCK_TOKENS if blocks else None


def engine_settings(profile, est, gpu_total_bytes=None, gpu_free_bytes=None, gpu_memory_utilization=0.9,
                    host_available_bytes=None, max_num_batched_tokens=None):
    """Serving settings derived from the estimate, for the serving role.

    Keys: fits, max_model_len, max_num_seqs, gpu_memory_utilization (recommended),
    max_num_batched_tokens (the engine's default when not given: passed explicitly so the
    engine runs what was estimated), tensor_parallel_size, pipeline_parallel_size, dtype (the
    activation dtype, never 'auto'), weight_format (the weights served: bf16, fp8, awq, Q4_K_M,
    ...), quantization (the method for on-the-fly quantization of a 16-bit checkpoint; None when
    the checkpoint already carries it), kv_cache_dtype, kv_cache_tokens (capacity per GPU at
    that fraction), max_num_seqs_at_max_model_len, max_model_len_at_max_num_seqs; for llama_cpp
    also ctx_size, parallel, n_gpu_layers.
    """
    util = float(gpu_memory_utilization)
    if est["device"] == "cpu":
        available = host_available_bytes
        recommended = None
    else:
        available = int(util * gpu_total_bytes) if gpu_total_bytes else None
        recommended = util
        if gpu_total_bytes and gpu_free_bytes is not None and gpu_free_bytes < util * gpu_total_bytes:
            spare = max(0, gpu_free_bytes - 512 * MIB)
            recommended = math.floor(100.0 * spare / gpu_total_bytes) / 100.0
            available = int(recommended * gpu_total_bytes)
    limits = fit_limits(profile, est, available) if available is not None else {}
    served = est["dtype"]
    native = profile.get("dtype")
    settings = {
        "fits": bool(available is not None and est["need_per_gpu_bytes"] <= available),
        "max_model_len": est["context_length"],
        "max_num_seqs": est["max_num_seqs"],
        "gpu_memory_utilization": recommended,
        "max_num_batched_tokens": int(max_num_batched_tokens or DEFAULT_BATCHED_TOKENS.get(est["engine"], 8192)),
        "tensor_parallel_size": est["tensor_parallel_size"],
        "pipeline_parallel_size": est["pipeline_parallel_size"],
        "dtype": activation_dtype_arg(profile, served),
        "weight_format": served,
        "quantization": served if (served in QUANTIZED_DTYPES and served != native) else None,
        "kv_cache_dtype": est["kv_cache_dtype"],
        "kv_cache_tokens": limits.get("kv_cache_tokens"),
        "max_num_seqs_at_max_model_len": limits.get("max_num_seqs"),
        "max_model_len_at_max_num_seqs": limits.get("max_context_length"),
    }
    if est["engine"] == "llama_cpp":
        # llama-server's -c is the total context shared by --parallel slots.
        settings.update({
            "ctx_size": est["context_length"] * est["max_num_seqs"],
            "parallel": est["max_num_seqs"],
            "n_gpu_layers": 0 if est["device"] == "cpu" else profile["num_hidden_layers"] + 1,
        })
    return settings
