# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""GGUF files (llama.cpp): the GGML tensor types, the header and tensor table reader, and the
model profile they give, with the exact tensor bytes per layer. Reads only the header, never
the weights. Python 3.9+, standard library only.
"""

from __future__ import annotations

import math
import os
import struct

from ansible_collections.llmops.gpu_stack.plugins.module_utils._fsutil import MIB
from ansible_collections.llmops.gpu_stack.plugins.module_utils._model_catalogue import normalize_profile


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
