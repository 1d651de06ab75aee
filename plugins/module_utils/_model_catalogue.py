# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The built-in model profiles (by name) and the rules every profile passes, whatever its
source (normalize_profile). A profile's keys are described in _vram. Python 3.9+, standard
library only.
"""

from __future__ import annotations

import copy

from ansible_collections.llmops.gpu_stack.plugins.module_utils._gpu_tables import normalize_dtype


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


_REQUIRED_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size")


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
