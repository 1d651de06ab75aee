# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A model profile from a Hugging Face config.json (a path or an already parsed dict).
Python 3.9+, standard library only.
"""

from __future__ import annotations

import json
import os

from ansible_collections.llmops.gpu_stack.plugins.module_utils._gpu_tables import normalize_dtype
from ansible_collections.llmops.gpu_stack.plugins.module_utils._model_catalogue import normalize_profile


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
