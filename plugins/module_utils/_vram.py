# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""GPU memory estimate for serving a model: weights + KV cache + activations + runtime.

Pure computation over plain dicts. Python 3.9+, standard library only.

A model profile is a dict of architecture numbers, the keys Hugging Face config.json uses:
num_hidden_layers, hidden_size, intermediate_size, num_attention_heads,
num_key_value_heads, head_dim, vocab_size, tie_word_embeddings, attention_bias,
max_position_embeddings, dtype; DeepSeek MLA/MoE models add q_lora_rank, kv_lora_rank,
qk_nope_head_dim, qk_rope_head_dim, v_head_dim, first_k_dense_replace, n_routed_experts,
n_shared_experts, moe_intermediate_size, num_experts_per_tok. A profile read from a GGUF
file also carries "gguf_weights": the exact tensor bytes per layer. Profiles come from
_model_catalogue (built in), _hf_config (config.json) and _gguf (GGUF files), one of them
chosen by _model_profile.load_profile; the engine settings an estimate leads to are in
_engine_settings.

The formulas and the assumptions behind the runtime figures are written out in
docs/preflight.md; keep the two in step.
"""

from __future__ import annotations

import math

from ansible_collections.llmops.gpu_stack.plugins.module_utils._fsutil import GIB
from ansible_collections.llmops.gpu_stack.plugins.module_utils._gguf import GGML_TYPE_BY_NAME
from ansible_collections.llmops.gpu_stack.plugins.module_utils._gpu_tables import normalize_dtype
# _plan reads these as vram.<name>; they live in _model_catalogue and _fsutil.
from ansible_collections.llmops.gpu_stack.plugins.module_utils._fsutil import format_bytes  # noqa: F401 pylint: disable=unused-import
from ansible_collections.llmops.gpu_stack.plugins.module_utils._model_catalogue import (  # noqa: F401 pylint: disable=unused-import
    MODEL_PROFILES,
    list_profiles,
    normalize_profile,
)


# Bytes per parameter of the linear (matmul) weights in each format. Quantized formats
# quantize only the linear layers; embeddings, the output head, norms, biases and MoE router
# weights stay in 16 bit (what AWQ, GPTQ, FP8 and W8A8 checkpoints ship).
#   fp8: e4m3 plus one fp32 scale per 128x128 block (DeepSeek-V3's native format).
#   int8: W8A8, per-channel scales (negligible).
#   int4: 4 bit plus an fp16 scale per group of 128.
#   awq / gptq: 4 bit plus an fp16 scale and a packed 4-bit zero point per group of 128.
LINEAR_BYTES_PER_PARAM = {
    "fp32": 4.0,
    "fp16": 2.0,
    "bf16": 2.0,
    "fp8": 1.0 + 4.0 / (128 * 128),
    "int8": 1.0,
    "int4": 0.5 + 2.0 / 128,
    "awq": 0.5 + 2.5 / 128,
    "gptq": 0.5 + 2.5 / 128,
}
QUANTIZED_DTYPES = ("fp8", "int8", "int4", "awq", "gptq")


# Whole-file bits per weight of the mixed llama.cpp quantizations (several tensor types per
# file), measured on Llama 2 7B. Source: llama.cpp tools/quantize/README.md. Used when a GGUF
# quantization is planned by name without the file at hand; a real file is always summed
# tensor by tensor instead.
MIXED_GGUF_BITS_PER_WEIGHT = {
    "Q2_K": 3.35,
    "Q3_K_S": 3.50,
    "Q3_K_M": 3.91,
    "Q3_K_L": 4.27,
    "Q4_K_S": 4.58,
    "Q4_K_M": 4.84,
    "Q5_K_S": 5.52,
    "Q5_K_M": 5.68,
    "Q6_K": 6.56,
}

# KV cache element sizes. vLLM/SGLang: auto = the activation dtype, fp8 = 1 byte.
# llama.cpp --cache-type-k/-v: f16 default, q8_0 / q4_0 / ... as GGML blocks.
KV_CACHE_BYTES = {
    "fp32": 4.0,
    "fp16": 2.0,
    "bf16": 2.0,
    "fp8": 1.0,
    "Q8_0": 34.0 / 32,
    "Q5_1": 24.0 / 32,
    "Q5_0": 22.0 / 32,
    "Q4_1": 20.0 / 32,
    "Q4_0": 18.0 / 32,
    "IQ4_NL": 18.0 / 32,
}

# Runtime memory per GPU besides weights, KV cache and activations (assumptions, documented
# in docs/preflight.md): the CUDA context with lazy module loading plus cuBLAS/cuDNN
# workspaces, CUDA graphs that vLLM and SGLang capture for decode batch sizes, and NCCL
# buffers when more than one GPU works on the model.
CUDA_CONTEXT_BYTES = int(0.75 * GIB)
CUDA_GRAPH_BYTES = int(0.5 * GIB)
NCCL_BYTES = int(0.25 * GIB)
CPU_RUNTIME_BYTES = int(0.5 * GIB)

# Tokens in the largest forward pass the engine profiles or runs: vLLM and SGLang chunk
# prefills at 8192 tokens by default on large GPUs; llama.cpp's physical batch (n_ubatch) is 512.
DEFAULT_BATCHED_TOKENS = {"vllm": 8192, "sglang": 8192, "llama_cpp": 512}

# vLLM allocates the KV cache in blocks of 16 tokens.
KV_BLOCK_TOKENS = 16


# --- parameter counts ------------------------------------------------------------------------

def _attention_params(p):
    """(sharded linear, replicated linear, other) parameters of one attention block."""
    h = p["hidden_size"]
    heads = p["num_attention_heads"]
    if p["attention"] == "mla":
        qk_head = p["qk_nope_head_dim"] + p["qk_rope_head_dim"]
        replicated = h * (p["kv_lora_rank"] + p["qk_rope_head_dim"])        # kv_a_proj_with_mqa
        other = p["kv_lora_rank"]                                              # kv_a_layernorm
        if p.get("q_lora_rank"):
            replicated += h * p["q_lora_rank"]                                 # q_a_proj
            sharded = p["q_lora_rank"] * heads * qk_head                       # q_b_proj
            other += p["q_lora_rank"]                                          # q_a_layernorm
        else:
            sharded = h * heads * qk_head                                      # q_proj
        sharded += p["kv_lora_rank"] * heads * (p["qk_nope_head_dim"] + p["v_head_dim"])  # kv_b_proj
        sharded += heads * p["v_head_dim"] * h                                 # o_proj
        return sharded, replicated, other
    q_dim = heads * p["head_dim"]
    kv_dim = p["num_key_value_heads"] * p["head_dim"]
    sharded = h * q_dim + 2 * h * kv_dim + q_dim * h                         # q, k, v, o
    other = (q_dim + 2 * kv_dim) if p["attention_bias"] else 0              # q/k/v biases
    return sharded, 0, other


def layer_parameters(profile):
    """Per-layer parameter counts: list of {sharded, replicated, other, active}.

    sharded: linear weights split across tensor-parallel ranks; replicated: linear weights
    every rank holds in full (MLA's low-rank down projections); other: norms, biases and the
    MoE router, kept in 16 bit; active: parameters one token passes through.
    """
    p = profile
    h = p["hidden_size"]
    attn_sharded, attn_replicated, attn_other = _attention_params(p)
    layers = []
    for index in range(p["num_hidden_layers"]):
        other = attn_other + 2 * h                                             # two RMSNorms
        sharded = attn_sharded
        active = attn_sharded + attn_replicated + other
        if p.get("n_routed_experts") and index >= p.get("first_k_dense_replace", 0):
            expert = 3 * h * p["moe_intermediate_size"]                        # gate, up, down
            experts = p["n_routed_experts"] + p["n_shared_experts"]
            sharded += experts * expert
            router = p["n_routed_experts"] * h + p["n_routed_experts"]         # gate + score bias
            other += router
            active += (p["num_experts_per_tok"] + p["n_shared_experts"]) * expert + router
        else:
            mlp = 3 * h * p["intermediate_size"]
            sharded += mlp
            active += mlp
        layers.append({"sharded": sharded, "replicated": attn_replicated, "other": other, "active": active})
    return layers


def parameter_count(profile):
    """{total, active, embedding, lm_head, layers, final_norm} parameter counts."""
    layers = layer_parameters(profile)
    embed = profile["vocab_size"] * profile["hidden_size"]
    lm_head = 0 if profile["tie_word_embeddings"] else embed
    final_norm = profile["hidden_size"]
    in_layers = sum(layer["sharded"] + layer["replicated"] + layer["other"] for layer in layers)
    total = embed + lm_head + final_norm + in_layers
    active = embed + lm_head + final_norm + sum(layer["active"] for layer in layers)
    return {"total": total, "active": active, "embedding": embed, "lm_head": lm_head,
            "layers": in_layers, "final_norm": final_norm}


# --- bytes ------------------------------------------------------------------------------------

def resolve_dtype(profile, dtype):
    """The weight format actually served: 'auto' means the checkpoint's own."""
    native = profile.get("dtype") or "bf16"
    if dtype in (None, "", "auto"):
        return native
    wanted = normalize_dtype(dtype)
    if profile.get("gguf_weights") is not None and wanted != native:
        raise ValueError("the GGUF file holds %s weights; set dtype to auto or %s" % (native, native))
    if bytes_per_param(wanted) is None:
        raise ValueError("unknown dtype/quantization %r; known: %s" % (dtype, ", ".join(known_dtypes())))
    return wanted


def known_dtypes():
    names = set(LINEAR_BYTES_PER_PARAM) | set(MIXED_GGUF_BITS_PER_WEIGHT) | set(GGML_TYPE_BY_NAME)
    return sorted(names)


def bytes_per_param(dtype):
    """(linear, other) bytes per parameter for a weight format, or None if unknown."""
    name = normalize_dtype(dtype)
    if name in LINEAR_BYTES_PER_PARAM:
        other = 4.0 if name == "fp32" else 2.0
        return LINEAR_BYTES_PER_PARAM[name], other
    if name in MIXED_GGUF_BITS_PER_WEIGHT:
        value = MIXED_GGUF_BITS_PER_WEIGHT[name] / 8.0
        return value, value
    if name in GGML_TYPE_BY_NAME:
        block, size = GGML_TYPE_BY_NAME[name]
        value = float(size) / block
        return value, value
    return None


def kv_element_bytes(kv_cache_dtype, dtype):
    """Bytes per cached K or V element: 'auto' follows the activation dtype (fp32 -> 4, else 2)."""
    if kv_cache_dtype in (None, "", "auto"):
        return 4.0 if normalize_dtype(dtype) == "fp32" else 2.0
    name = normalize_dtype(kv_cache_dtype)
    if name not in KV_CACHE_BYTES:
        raise ValueError("unknown kv_cache_dtype %r; known: auto, %s" % (kv_cache_dtype, ", ".join(sorted(KV_CACHE_BYTES))))
    return KV_CACHE_BYTES[name]


def stage_layers(num_layers, pipeline_parallel_size):
    """Contiguous layer ranges per pipeline stage, earlier stages taking the remainder."""
    pp = max(1, int(pipeline_parallel_size))
    base, extra = divmod(num_layers, pp)
    ranges, start = [], 0
    for stage in range(pp):
        count = base + (1 if stage < extra else 0)
        ranges.append((start, start + count))
        start += count
    return ranges


def kv_heads_per_rank(profile, tensor_parallel_size):
    """KV heads one tensor-parallel rank caches: split evenly, replicated when tp > kv heads."""
    kv = profile["num_key_value_heads"]
    return max(1, int(math.ceil(kv / float(tensor_parallel_size))))


def kv_cache_bytes_per_token(profile, kv_cache_dtype="auto", dtype=None, tensor_parallel_size=1,
                             pipeline_parallel_size=1):
    """KV cache bytes per token on the busiest GPU (whole model with tp=pp=1).

    MHA/GQA: 2 x layers x kv_heads x head_dim x bytes. MLA: layers x (kv_lora_rank +
    qk_rope_head_dim) x bytes; the latent is not split across tensor-parallel ranks.
    """
    element = kv_element_bytes(kv_cache_dtype, dtype or profile.get("dtype"))
    layers = max(end - start for start, end in stage_layers(profile["num_hidden_layers"], pipeline_parallel_size))
    if profile["attention"] == "mla":
        per_layer = (profile["kv_lora_rank"] + profile["qk_rope_head_dim"]) * element
    else:
        per_layer = 2 * kv_heads_per_rank(profile, tensor_parallel_size) * profile["head_dim"] * element
    return layers * per_layer


def weight_bytes(profile, dtype="auto", tensor_parallel_size=1, pipeline_parallel_size=1):
    """(total bytes, bytes on the busiest GPU) of the weights in a format and parallel layout.

    Sharded linear weights and the vocabulary-parallel embedding / output head divide by the
    tensor-parallel size; replicated weights and norms do not; pipeline stages hold their own
    layers, the first stage the embedding and the last the output head.
    """
    tp = max(1, int(tensor_parallel_size))
    ranges = stage_layers(profile["num_hidden_layers"], pipeline_parallel_size)
    gguf = profile.get("gguf_weights")
    if gguf is not None:
        layer_bytes = list(gguf["layer_bytes"]) + [0] * (profile["num_hidden_layers"] - len(gguf["layer_bytes"]))
        layer_per_gpu = [b / float(tp) for b in layer_bytes]
        embed, output, other = gguf["embedding_bytes"], gguf["output_bytes"], gguf["other_bytes"]
        total = gguf["total_bytes"]
        tied_copy = embed
    else:
        linear, small = bytes_per_param(resolve_dtype(profile, dtype))
        layers = layer_parameters(profile)
        layer_per_gpu = [layer["sharded"] * linear / tp + layer["replicated"] * linear + layer["other"] * small
                         for layer in layers]
        counts = parameter_count(profile)
        embed = counts["embedding"] * small
        output = counts["lm_head"] * small
        other = counts["final_norm"] * small
        tied_copy = embed
        total = embed + output + other + sum(
            layer["sharded"] * linear + layer["replicated"] * linear + layer["other"] * small for layer in layers)
    busiest = 0.0
    last = len(ranges) - 1
    for stage, (start, end) in enumerate(ranges):
        size = sum(layer_per_gpu[start:end])
        if stage == 0:
            size += embed / tp
        if stage == last:
            size += other
            if output:
                size += output / tp
            elif last > 0:
                size += tied_copy / tp      # tied head: the last stage keeps its own copy
        busiest = max(busiest, size)
    return int(total), int(math.ceil(busiest))


def activation_bytes(profile, engine, dtype, max_num_seqs, batched_tokens, tensor_parallel_size=1):
    """Peak activation memory of the largest forward pass on one GPU (estimate).

    Per token, the larger of the attention block (residual + normed input + q/k/v + output)
    and the MLP block (residual + normed input + gate/up + activated), in the activation dtype;
    plus fp32 logits over the full vocabulary for every sequence sampled in the step.
    """
    p = profile
    tp = max(1, int(tensor_parallel_size))
    element = 4 if normalize_dtype(dtype) == "fp32" else 2
    h = p["hidden_size"]
    heads = p["num_attention_heads"]
    if p["attention"] == "mla":
        attention = heads * (2 * (p["qk_nope_head_dim"] + p["qk_rope_head_dim"]) + p["v_head_dim"]) / float(tp)
    else:
        attention = (2 * heads + 2 * kv_heads_per_rank(p, tp) * tp) * p["head_dim"] / float(tp)
    if p.get("n_routed_experts"):
        mlp = 3 * p["num_experts_per_tok"] * p["moe_intermediate_size"] / float(tp) + p["n_routed_experts"] * 2
        if p.get("first_k_dense_replace"):
            mlp = max(mlp, 3 * p["intermediate_size"] / float(tp))
    else:
        mlp = 3 * p["intermediate_size"] / float(tp)
    per_token = (2 * h + max(attention, mlp)) * element
    logits = min(max_num_seqs, batched_tokens) * p["vocab_size"] * 4
    return int(math.ceil(batched_tokens * per_token + logits))


def runtime_overhead_bytes(engine, gpus, device="gpu"):
    """CUDA context and workspaces, CUDA graphs (vLLM, SGLang), NCCL buffers (several GPUs)."""
    if device == "cpu":
        return CPU_RUNTIME_BYTES
    total = CUDA_CONTEXT_BYTES
    if engine in ("vllm", "sglang"):
        total += CUDA_GRAPH_BYTES
    if gpus > 1:
        total += NCCL_BYTES
    return total


def round_up(value, multiple):
    return int(math.ceil(value / float(multiple))) * multiple


def estimate_memory(profile, dtype="auto", kv_cache_dtype="auto", context_length=None, max_num_seqs=1,
                    tensor_parallel_size=1, pipeline_parallel_size=1, engine="vllm",
                    max_num_batched_tokens=None, runtime_overhead=None, device="gpu"):
    """Memory needed on the busiest GPU (device='gpu') or in host RAM (device='cpu').

    need = weights + KV cache (context rounded up to 16-token blocks x sequences, every
    sequence at full length) + activation peak + runtime overhead.
    """
    served = resolve_dtype(profile, dtype)
    tp = 1 if device == "cpu" else max(1, int(tensor_parallel_size))
    pp = 1 if device == "cpu" else max(1, int(pipeline_parallel_size))
    context = int(context_length or profile.get("max_position_embeddings") or 4096)
    seqs = max(1, int(max_num_seqs))
    activation_dtype = "fp32" if served == "fp32" else "bf16"
    total_weights, weights_gpu = weight_bytes(profile, served, tp, pp)
    kv_token_model = kv_cache_bytes_per_token(profile, kv_cache_dtype, activation_dtype, 1, 1)
    kv_token_gpu = kv_cache_bytes_per_token(profile, kv_cache_dtype, activation_dtype, tp, pp)
    cached_tokens = round_up(context, KV_BLOCK_TOKENS) * seqs
    kv_gpu = int(math.ceil(kv_token_gpu * cached_tokens))
    batched = int(max_num_batched_tokens or DEFAULT_BATCHED_TOKENS.get(engine, 8192))
    batched = max(1, min(batched, cached_tokens))
    activations = activation_bytes(profile, engine, activation_dtype, seqs, batched, tp)
    overhead = int(runtime_overhead) if runtime_overhead is not None else runtime_overhead_bytes(engine, tp * pp, device)
    need = weights_gpu + kv_gpu + activations + overhead
    counts = parameter_count(profile)
    return {
        "model": profile.get("name"),
        "engine": engine,
        "device": device,
        "dtype": served,
        "kv_cache_dtype": kv_cache_dtype or "auto",
        "context_length": context,
        "max_num_seqs": seqs,
        "tensor_parallel_size": tp,
        "pipeline_parallel_size": pp,
        "gpus_needed": tp * pp if device == "gpu" else 0,
        "parameters_total": counts["total"],
        "parameters_active": counts["active"],
        "weights_bytes": total_weights,
        "weights_per_gpu_bytes": weights_gpu,
        "kv_bytes_per_token": int(math.ceil(kv_token_model)),
        "kv_bytes_per_token_per_gpu": int(math.ceil(kv_token_gpu)),
        "kv_cache_per_gpu_bytes": kv_gpu,
        "batched_tokens": batched,
        "activation_per_gpu_bytes": activations,
        "runtime_overhead_per_gpu_bytes": overhead,
        "need_per_gpu_bytes": need,
        "max_position_embeddings": profile.get("max_position_embeddings"),
        # The overrides given (None: the defaults above), so that variants keep them.
        "max_num_batched_tokens": int(max_num_batched_tokens) if max_num_batched_tokens else None,
        "runtime_overhead_bytes": int(runtime_overhead) if runtime_overhead is not None else None,
    }


def estimate_variant(est, profile, **changes):
    """The estimate again with some inputs changed (dtype=, context_length=, tensor_parallel_size=, ...)."""
    args = {
        "dtype": est["dtype"], "kv_cache_dtype": est["kv_cache_dtype"],
        "context_length": est["context_length"], "max_num_seqs": est["max_num_seqs"],
        "tensor_parallel_size": est["tensor_parallel_size"],
        "pipeline_parallel_size": est["pipeline_parallel_size"], "engine": est["engine"],
        "device": est["device"], "max_num_batched_tokens": est.get("max_num_batched_tokens"),
        "runtime_overhead": est.get("runtime_overhead_bytes"),
    }
    args.update(changes)
    return estimate_memory(profile, **args)


def _largest(low, high, fits):
    """Largest integer in [low, high] for which the monotone predicate holds, or None."""
    if high < low or not fits(low):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def fit_limits(profile, est, available_bytes):
    """Largest context (at the planned sequences) and largest sequence count (at the planned
    context) that fit into available_bytes per GPU; None when not even the minimum fits."""
    longest = int(profile.get("max_position_embeddings") or est["context_length"])
    longest = max(longest, est["context_length"])

    def fits_context(blocks):
        return estimate_variant(est, profile, context_length=blocks * KV_BLOCK_TOKENS)["need_per_gpu_bytes"] <= available_bytes

    def fits_seqs(seqs):
        return estimate_variant(est, profile, max_num_seqs=seqs)["need_per_gpu_bytes"] <= available_bytes

    blocks = _largest(1, longest // KV_BLOCK_TOKENS, fits_context)
    seqs = _largest(1, 4096, fits_seqs)
    fixed = est["weights_per_gpu_bytes"] + est["runtime_overhead_per_gpu_bytes"] + est["activation_per_gpu_bytes"]
    kv_budget = max(0, int(available_bytes) - fixed)
    tokens = kv_budget // est["kv_bytes_per_token_per_gpu"] if est["kv_bytes_per_token_per_gpu"] else 0
    return {
        "max_context_length": blocks * KV_BLOCK_TOKENS if blocks else None,
        "max_num_seqs": seqs,
        "kv_budget_bytes": kv_budget,
        "kv_cache_tokens": int(tokens),
    }


def round_context_down(value):
    """A context length people recognise: a multiple of 1024 from 1024 up, else of 16."""
    if value is None:
        return None
    if value >= 1024:
        return (value // 1024) * 1024
    return (value // KV_BLOCK_TOKENS) * KV_BLOCK_TOKENS


def tensor_parallel_candidates(profile, limit=64):
    """Tensor-parallel sizes the engines accept: powers of two dividing the attention heads,
    with the KV heads divisible by it or dividing it."""
    heads = profile["num_attention_heads"]
    kv = profile["num_key_value_heads"]
    sizes, tp = [], 1
    while tp <= limit:
        if heads % tp == 0 and (kv % tp == 0 or tp % kv == 0):
            sizes.append(tp)
        tp *= 2
    return sizes


def smallest_fitting_tensor_parallel(profile, est, available_bytes):
    """Smallest accepted tensor-parallel size at or above the planned one that fits, or None."""
    for tp in tensor_parallel_candidates(profile):
        if tp < est["tensor_parallel_size"]:
            continue
        if estimate_variant(est, profile, tensor_parallel_size=tp)["need_per_gpu_bytes"] <= available_bytes:
            return tp
    return None


def fitting_dtypes(profile, est, available_bytes, candidates):
    """Candidates (in the given order) whose weights are smaller than the planned ones and fit."""
    if profile.get("gguf_weights") is not None:
        return []
    result = []
    for candidate in candidates:
        if candidate == est["dtype"]:
            continue
        trial = estimate_variant(est, profile, dtype=candidate)
        if trial["weights_bytes"] >= est["weights_bytes"]:
            continue
        if trial["need_per_gpu_bytes"] <= available_bytes:
            result.append(candidate)
    return result
