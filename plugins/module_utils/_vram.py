# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""GPU memory estimate for serving a model: weights + KV cache + activations + runtime.

Pure computation over plain dicts (no I/O except the two readers that take a path:
profile_from_hf_config and read_gguf_header). Python 3.9+, standard library only.

A model profile is a dict of architecture numbers, the keys Hugging Face config.json uses:
num_hidden_layers, hidden_size, intermediate_size, num_attention_heads,
num_key_value_heads, head_dim, vocab_size, tie_word_embeddings, attention_bias,
max_position_embeddings, dtype; DeepSeek MLA/MoE models add q_lora_rank, kv_lora_rank,
qk_nope_head_dim, qk_rope_head_dim, v_head_dim, first_k_dense_replace, n_routed_experts,
n_shared_experts, moe_intermediate_size, num_experts_per_tok. A profile read from a GGUF
file also carries "gguf_weights": the exact tensor bytes per layer.

The formulas and the assumptions behind the runtime figures are written out in
docs/preflight.md; keep the two in step.
"""

from __future__ import annotations

import copy
import json
import math
import os
import struct

from ansible_collections.llmops.gpu_stack.plugins.module_utils._gpu_tables import normalize_dtype

KIB = 1024
MIB = 1024 ** 2
GIB = 1024 ** 3

# Built-in profiles. Source: each model's published config.json (the table in
# docs/preflight.md). max_position_embeddings also from config.json (DeepSeek-V3/R1: 163840
# with YaRN; its README advertises 128K).
_DISTILL_QWEN = {"architecture": "qwen2", "attention_bias": True, "tie_word_embeddings": False,
                 "head_dim": 128, "dtype": "bf16", "max_position_embeddings": 131072}
_DISTILL_LLAMA = {"architecture": "llama", "attention_bias": False, "tie_word_embeddings": False,
                  "head_dim": 128, "dtype": "bf16", "max_position_embeddings": 131072}
_DEEPSEEK_V3 = {
    "architecture": "deepseek_v3", "num_hidden_layers": 61, "hidden_size": 7168,
    "intermediate_size": 18432, "num_attention_heads": 128, "num_key_value_heads": 128,
    "vocab_size": 129280, "tie_word_embeddings": False, "attention_bias": False,
    "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
    "v_head_dim": 128, "first_k_dense_replace": 3, "n_routed_experts": 256,
    "n_shared_experts": 1, "moe_intermediate_size": 2048, "num_experts_per_tok": 8,
    "max_position_embeddings": 163840, "dtype": "fp8",
}


def _merge(*parts):
    result = {}
    for part in parts:
        result.update(part)
    return result


MODEL_PROFILES = {
    "deepseek-r1-distill-qwen-1.5b": _merge(_DISTILL_QWEN, {
        "num_hidden_layers": 28, "hidden_size": 1536, "intermediate_size": 8960,
        "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936}),
    "deepseek-r1-distill-qwen-7b": _merge(_DISTILL_QWEN, {
        "num_hidden_layers": 28, "hidden_size": 3584, "intermediate_size": 18944,
        "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064}),
    "deepseek-r1-distill-llama-8b": _merge(_DISTILL_LLAMA, {
        "num_hidden_layers": 32, "hidden_size": 4096, "intermediate_size": 14336,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256}),
    "deepseek-r1-distill-qwen-14b": _merge(_DISTILL_QWEN, {
        "num_hidden_layers": 48, "hidden_size": 5120, "intermediate_size": 13824,
        "num_attention_heads": 40, "num_key_value_heads": 8, "vocab_size": 152064}),
    "deepseek-r1-distill-qwen-32b": _merge(_DISTILL_QWEN, {
        "num_hidden_layers": 64, "hidden_size": 5120, "intermediate_size": 27648,
        "num_attention_heads": 40, "num_key_value_heads": 8, "vocab_size": 152064}),
    "deepseek-r1-distill-llama-70b": _merge(_DISTILL_LLAMA, {
        "num_hidden_layers": 80, "hidden_size": 8192, "intermediate_size": 28672,
        "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 128256}),
    "deepseek-v3": dict(_DEEPSEEK_V3),
    "deepseek-r1": dict(_DEEPSEEK_V3),
    "smollm2-135m-instruct": {
        "architecture": "llama", "num_hidden_layers": 30, "hidden_size": 576,
        "intermediate_size": 1536, "num_attention_heads": 9, "num_key_value_heads": 3,
        "head_dim": 64, "vocab_size": 49152, "tie_word_embeddings": True,
        "attention_bias": False, "max_position_embeddings": 8192, "dtype": "bf16"},
}

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

# GGML tensor types: id -> (name, elements per block, bytes per block).
# Source: ggml/include/ggml.h (enum ggml_type) and gguf-py/gguf/constants.py
# (GGML_QUANT_SIZES). Bits per weight = 8 * bytes / elements, block scales included.
GGML_TYPES = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
}
GGML_TYPE_BY_NAME = dict((name, (block, size)) for name, block, size in GGML_TYPES.values())

# llama.cpp file types (general.file_type, enum llama_ftype in include/llama.h).
LLAMA_FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE",
}

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

_REQUIRED_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size")


def format_bytes(value):
    """Human-readable binary size: 1536 -> '1.5 KiB', 85899345920 -> '80.0 GiB'."""
    if value is None:
        return "unknown"
    value = float(value)
    for unit, size in (("TiB", 1024 ** 4), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if abs(value) >= size:
            return "%.1f %s" % (value / size, unit)
    return "%d B" % value


def list_profiles():
    return sorted(MODEL_PROFILES)


def get_profile(name):
    """Copy of a built-in profile, by lower-case name. Raises ValueError naming the known ones."""
    key = str(name or "").strip().lower()
    if key not in MODEL_PROFILES:
        raise ValueError("unknown model profile %r; built-in profiles: %s" % (name, ", ".join(list_profiles())))
    profile = copy.deepcopy(MODEL_PROFILES[key])
    profile["name"] = key
    return normalize_profile(profile)


def _positive_int(profile, key, problems, required=True):
    value = profile.get(key)
    if value is None:
        if required:
            problems.append("%s is missing" % key)
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value <= 0:
        try:
            as_int = int(str(value))
        except (TypeError, ValueError):
            problems.append("%s must be a positive integer, got %r" % (key, value))
            return None
        if as_int <= 0:
            problems.append("%s must be a positive integer, got %r" % (key, value))
            return None
        value = as_int
    return int(value)


def normalize_profile(architecture):
    """Validate architecture numbers and fill the derivable ones; returns a new profile dict.

    Raises ValueError listing every problem at once.
    """
    if not isinstance(architecture, dict):
        raise ValueError("architecture must be a dict of numbers, got %s" % type(architecture).__name__)
    profile = copy.deepcopy(architecture)
    problems = []
    for key in _REQUIRED_KEYS:
        profile[key] = _positive_int(profile, key, problems)
    is_mla = profile.get("kv_lora_rank") is not None
    is_moe = profile.get("n_routed_experts") is not None
    if not is_mla or profile.get("first_k_dense_replace", 0):
        profile["intermediate_size"] = _positive_int(profile, "intermediate_size", problems)
    else:
        profile["intermediate_size"] = _positive_int(profile, "intermediate_size", problems, required=False)
    heads = profile.get("num_attention_heads")
    if profile.get("num_key_value_heads") is None:
        profile["num_key_value_heads"] = heads
    profile["num_key_value_heads"] = _positive_int(profile, "num_key_value_heads", problems)
    if profile.get("head_dim") is None and heads and profile.get("hidden_size"):
        profile["head_dim"] = profile["hidden_size"] // heads
    profile["head_dim"] = _positive_int(profile, "head_dim", problems, required=not is_mla)
    kv_heads = profile.get("num_key_value_heads")
    if heads and kv_heads and heads % kv_heads:
        problems.append("num_attention_heads (%d) must be a multiple of num_key_value_heads (%d)" % (heads, kv_heads))
    if is_mla:
        for key in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
            profile[key] = _positive_int(profile, key, problems)
        profile["q_lora_rank"] = _positive_int(profile, "q_lora_rank", problems, required=False)
        profile["attention"] = "mla"
    else:
        profile["attention"] = "gqa"
    if is_moe:
        for key in ("n_routed_experts", "moe_intermediate_size", "num_experts_per_tok"):
            profile[key] = _positive_int(profile, key, problems)
        profile["n_shared_experts"] = int(profile.get("n_shared_experts") or 0)
        profile["first_k_dense_replace"] = int(profile.get("first_k_dense_replace") or 0)
    profile["max_position_embeddings"] = _positive_int(profile, "max_position_embeddings", problems, required=False)
    profile["tie_word_embeddings"] = bool(profile.get("tie_word_embeddings", False))
    profile["attention_bias"] = bool(profile.get("attention_bias", profile.get("architecture") == "qwen2"))
    profile["dtype"] = normalize_dtype(profile.get("dtype") or "bf16")
    profile.setdefault("name", profile.get("architecture") or "custom")
    if problems:
        raise ValueError("invalid model architecture: " + "; ".join(problems))
    return profile


# --- Hugging Face config.json ----------------------------------------------------------------

_HF_KEYS = (
    "num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads",
    "num_key_value_heads", "head_dim", "vocab_size", "tie_word_embeddings", "attention_bias",
    "max_position_embeddings", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim",
    "qk_rope_head_dim", "v_head_dim", "first_k_dense_replace", "n_routed_experts",
    "n_shared_experts", "moe_intermediate_size", "num_experts_per_tok",
)


def profile_from_hf_config(config, name=None):
    """Profile from a parsed config.json dict or the path of one."""
    if not isinstance(config, dict):
        path = str(config)
        try:
            with open(path, "rb") as handle:
                config = json.loads(handle.read().decode("utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError("cannot read model config %s: %s" % (path, exc))
        name = name or os.path.basename(os.path.dirname(os.path.abspath(path))).lower()
    if isinstance(config.get("text_config"), dict):
        merged = dict(config)
        merged.update(config["text_config"])
        config = merged
    profile = dict((key, config[key]) for key in _HF_KEYS if config.get(key) is not None)
    profile["architecture"] = config.get("model_type") or "unknown"
    if "attention_bias" not in profile:
        # Qwen2 always has q/k/v biases and no config key for it.
        profile["attention_bias"] = profile["architecture"] == "qwen2"
    quant = config.get("quantization_config") or {}
    method = str(quant.get("quant_method") or "").lower()
    checkpoint_dtype = config.get("torch_dtype") or config.get("dtype") or "bf16"
    if method in ("fp8", "awq", "gptq"):
        profile["dtype"] = method
    elif method == "bitsandbytes":
        profile["dtype"] = "int4" if quant.get("load_in_4bit") else "int8"
    else:
        profile["dtype"] = checkpoint_dtype
    if profile["dtype"] != checkpoint_dtype:
        # A quantized checkpoint still computes in its 16-bit dtype (the engine's --dtype).
        profile["activation_dtype"] = normalize_dtype(checkpoint_dtype)
    if name:
        profile["name"] = name
    return normalize_profile(profile)


# --- GGUF --------------------------------------------------------------------------------------

GGUF_MAGIC = b"GGUF"
_GGUF_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                        10: "<Q", 11: "<q", 12: "<d"}
_GGUF_STRING = 8
_GGUF_ARRAY = 9
_GGUF_MAX_STRING = 64 * MIB
_GGUF_MAX_COUNT = 1 << 24
_GGUF_DEFAULT_ALIGNMENT = 32


class _GgufStream(object):
    def __init__(self, handle):
        self.handle = handle

    def read(self, size):
        data = self.handle.read(size)
        if len(data) != size:
            raise ValueError("GGUF file is truncated (wanted %d bytes at offset %d)" % (size, self.handle.tell() - len(data)))
        return data

    def unpack(self, fmt):
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def string(self):
        length = self.unpack("<Q")
        if length > _GGUF_MAX_STRING:
            raise ValueError("GGUF string of %d bytes is implausible; the file is damaged" % length)
        return self.read(length).decode("utf-8", "replace")

    def skip(self, size):
        self.handle.seek(size, os.SEEK_CUR)

    def value(self, value_type, keep_items):
        if value_type in _GGUF_SCALAR_FORMATS:
            return self.unpack(_GGUF_SCALAR_FORMATS[value_type]), None
        if value_type == _GGUF_STRING:
            return self.string(), None
        if value_type == _GGUF_ARRAY:
            item_type = self.unpack("<I")
            count = self.unpack("<Q")
            if count > _GGUF_MAX_COUNT * 16:
                raise ValueError("GGUF array of %d items is implausible; the file is damaged" % count)
            if count > keep_items:
                if item_type in _GGUF_SCALAR_FORMATS:
                    self.skip(count * struct.calcsize(_GGUF_SCALAR_FORMATS[item_type]))
                else:
                    for dummy in range(count):
                        self.value(item_type, 0)
                return None, count
            return [self.value(item_type, keep_items)[0] for dummy in range(count)], count
        raise ValueError("unknown GGUF value type %d; the file is damaged or newer than this reader" % value_type)


def read_gguf_header(path, keep_array_items=64):
    """Read a GGUF file's metadata and tensor table (not the tensor data).

    GGUF v2/v3 layout: magic 'GGUF', u32 version, u64 tensor count, u64 key/value count, then
    key/values (gguf string key, u32 type, value) and tensor infos (name, u32 n_dims,
    u64 dims[n_dims], u32 ggml type, u64 offset). Arrays longer than keep_array_items are
    skipped; their lengths are kept in "array_lengths" (the vocabulary size comes from there).
    Raises ValueError for anything that is not a readable GGUF file.
    """
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise ValueError("cannot open GGUF file %s: %s" % (path, exc))
    with handle:
        stream = _GgufStream(handle)
        try:
            magic = stream.read(4)
            if magic != GGUF_MAGIC:
                raise ValueError("%s is not a GGUF file (magic %r, expected %r)" % (path, magic, GGUF_MAGIC))
            version = stream.unpack("<I")
            if version > 0xFFFF:
                raise ValueError("%s is a big-endian GGUF file; only little-endian files are supported" % path)
            if version < 2:
                raise ValueError("%s is GGUF version %d; versions 2 and 3 are supported (re-convert the model)" % (path, version))
            tensor_count = stream.unpack("<Q")
            kv_count = stream.unpack("<Q")
            if tensor_count > _GGUF_MAX_COUNT or kv_count > _GGUF_MAX_COUNT:
                raise ValueError("%s has an implausible header (%d tensors, %d keys); the file is damaged" % (path, tensor_count, kv_count))
            metadata = {}
            array_lengths = {}
            for dummy in range(kv_count):
                key = stream.string()
                value_type = stream.unpack("<I")
                value, length = stream.value(value_type, keep_array_items)
                metadata[key] = value
                if length is not None:
                    array_lengths[key] = length
            tensors = []
            for dummy in range(tensor_count):
                name = stream.string()
                n_dims = stream.unpack("<I")
                if n_dims > 8:
                    raise ValueError("tensor %s has %d dimensions; the file is damaged" % (name, n_dims))
                shape = [stream.unpack("<Q") for dummy in range(n_dims)]
                type_id = stream.unpack("<I")
                offset = stream.unpack("<Q")
                elements = 1
                for dim in shape:
                    elements *= dim
                known = GGML_TYPES.get(type_id)
                tensors.append({
                    "name": name,
                    "shape": shape,
                    "type": known[0] if known else "unknown(%d)" % type_id,
                    "offset": offset,
                    "elements": elements,
                    "bytes": (int(math.ceil(elements / float(known[1]))) * known[2]) if known else None,
                })
            alignment = metadata.get("general.alignment") or _GGUF_DEFAULT_ALIGNMENT
            position = handle.tell()
        except struct.error as exc:
            raise ValueError("%s is not a readable GGUF file: %s" % (path, exc))
        handle.seek(0, os.SEEK_END)
        file_size = handle.tell()
    data_offset = position + (-position % alignment)
    return {
        "version": version,
        "metadata": metadata,
        "array_lengths": array_lengths,
        "tensors": tensors,
        "alignment": alignment,
        "data_offset": data_offset,
        "file_size": file_size,
    }


def _gguf_weights(header):
    """Tensor bytes grouped as embedding / output / per layer / other, exact from the table."""
    per_layer = {}
    embed = output = other = 0
    unknown = False
    total = 0
    for tensor in header["tensors"]:
        size = tensor["bytes"]
        if size is None:
            unknown = True
            continue
        total += size
        name = tensor["name"]
        if name.startswith("blk."):
            index = name.split(".")[1]
            if index.isdigit():
                per_layer[int(index)] = per_layer.get(int(index), 0) + size
                continue
        if name == "token_embd.weight":
            embed += size
        elif name == "output.weight":
            output += size
        else:
            other += size
    if unknown:
        # A tensor type this reader does not know: the data section size is exact instead.
        total = max(header["file_size"] - header["data_offset"], total)
    layers = [per_layer[index] for index in sorted(per_layer)]
    return {"total_bytes": total, "embedding_bytes": embed, "output_bytes": output,
            "other_bytes": other, "layer_bytes": layers, "exact": not unknown}


def profile_from_gguf(path, name=None):
    """Profile from a GGUF file header: architecture numbers plus exact tensor bytes."""
    header = read_gguf_header(path)
    meta = header["metadata"]
    arch = meta.get("general.architecture")
    if not arch:
        raise ValueError("%s has no general.architecture key" % path)

    def key(suffix, default=None):
        value = meta.get("%s.%s" % (arch, suffix), default)
        if isinstance(value, list):
            value = max(value) if value else default
        return value

    tensor_names = set(t["name"] for t in header["tensors"])
    vocab = key("vocab_size") or header["array_lengths"].get("tokenizer.ggml.tokens")
    if vocab is None and isinstance(meta.get("tokenizer.ggml.tokens"), list):
        vocab = len(meta["tokenizer.ggml.tokens"])
    heads = key("attention.head_count")
    profile = {
        "architecture": arch,
        "num_hidden_layers": key("block_count"),
        "hidden_size": key("embedding_length"),
        "intermediate_size": key("feed_forward_length"),
        "num_attention_heads": heads,
        "num_key_value_heads": key("attention.head_count_kv", heads),
        "head_dim": key("attention.key_length"),
        "vocab_size": vocab,
        "max_position_embeddings": key("context_length"),
        "tie_word_embeddings": "output.weight" not in tensor_names,
        "attention_bias": "blk.0.attn_q.bias" in tensor_names,
    }
    if key("attention.kv_lora_rank") is not None:
        rope = key("rope.dimension_count")
        qk_head = key("attention.key_length_mla") or key("attention.key_length")
        v_head = key("attention.value_length_mla") or key("attention.value_length")
        profile.update({
            "kv_lora_rank": key("attention.kv_lora_rank"),
            "q_lora_rank": key("attention.q_lora_rank") or None,
            "qk_rope_head_dim": rope,
            "qk_nope_head_dim": (qk_head - rope) if (qk_head and rope) else None,
            "v_head_dim": v_head,
            "head_dim": None,
            "num_key_value_heads": heads,
        })
    if key("expert_count"):
        profile.update({
            "n_routed_experts": key("expert_count"),
            "n_shared_experts": key("expert_shared_count", 0),
            "moe_intermediate_size": key("expert_feed_forward_length"),
            "num_experts_per_tok": key("expert_used_count"),
            "first_k_dense_replace": key("leading_dense_block_count", 0),
        })
    file_type = meta.get("general.file_type")
    weights = _gguf_weights(header)
    profile["dtype"] = LLAMA_FILE_TYPES.get(file_type, "GGUF")
    profile["name"] = name or meta.get("general.name") or os.path.basename(str(path))
    profile = normalize_profile(dict((k, v) for k, v in profile.items() if v is not None))
    profile["dtype"] = LLAMA_FILE_TYPES.get(file_type, "GGUF")
    profile["gguf_weights"] = weights
    profile["gguf_file_size"] = header["file_size"]
    return profile


def load_profile(model=None, architecture=None, config_path=None):
    """One profile from exactly one source: a built-in name, architecture numbers, or a file
    (config.json, or a .gguf file)."""
    given = [source for source in (model, architecture, config_path) if source]
    if len(given) != 1:
        raise ValueError("give exactly one of model, architecture or config_path")
    if model:
        return get_profile(model)
    if architecture:
        return normalize_profile(architecture)
    path = str(config_path)
    if path.lower().endswith(".gguf"):
        return profile_from_gguf(path)
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    return profile_from_hf_config(path)


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


_VLLM_DTYPE_ARG = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
# 4-bit AWQ / GPTQ / int4 kernels take fp16 activations (vLLM casts bf16 to fp16 for them).
_FP16_ACTIVATION_FORMATS = ("awq", "gptq", "int4")


def activation_dtype_arg(profile, served):
    """The engine's --dtype for a served weight format, never 'auto': the format itself for
    16/32-bit weights; for quantized weights the checkpoint's own 16-bit dtype (bf16 for the
    DeepSeek and R1 checkpoints), fp16 for the 4-bit formats whose kernels need it. GGUF
    formats (llama.cpp) return the GGUF type, which llama.cpp reads from the file."""
    if served in _VLLM_DTYPE_ARG:
        return _VLLM_DTYPE_ARG[served]
    if served in _FP16_ACTIVATION_FORMATS:
        return "float16"
    if served in QUANTIZED_DTYPES:
        return _VLLM_DTYPE_ARG.get(profile.get("activation_dtype") or "bf16", "bfloat16")
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
