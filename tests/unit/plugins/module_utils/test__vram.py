# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Memory estimate tests. Expectations are computed by hand from the architecture numbers in
the published config.json files; the arithmetic is written out next to each."""

from __future__ import annotations

import json
import struct

import pytest

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _engine_settings as engine_cfg
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _fsutil as fsutil
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _gguf as gguf_file
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _hf_config as hf_config
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_catalogue as catalogue
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_profile as profiles
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _vram as v

GIB = 1024 ** 3


# --- parameter counts ---------------------------------------------------------------------------

def test_qwen_7b_parameters_by_hand():
    # hidden 3584, 28 heads x 128, 4 KV heads, intermediate 18944, vocab 152064, 28 layers, q/k/v biases
    q = o = 3584 * 3584                      # 12,845,056 each
    k = vv = 3584 * 4 * 128                  # 1,835,008 each
    biases = 3584 + 2 * 512                  # 4,608
    mlp = 3 * 3584 * 18944                   # 203,685,888
    norms = 2 * 3584
    layer = q + k + vv + o + biases + mlp + norms
    embed = 152064 * 3584                    # untied: embedding and lm_head
    expected = 28 * layer + 2 * embed + 3584
    assert expected == 7615616512
    assert v.parameter_count(catalogue.get_profile("deepseek-r1-distill-qwen-7b"))["total"] == expected


def test_smollm2_parameters_by_hand():
    # 30 layers, hidden 576, 9 heads x 64, 3 KV heads, intermediate 1536, vocab 49152, tied embeddings
    attention = 576 * 576 * 2 + 2 * 576 * 3 * 64      # q, o + k, v = 884,736
    mlp = 3 * 576 * 1536                                # 2,654,208
    layer = attention + mlp + 2 * 576
    expected = 30 * layer + 49152 * 576 + 576          # one embedding (tied) + final norm
    assert expected == 134515008
    assert v.parameter_count(catalogue.get_profile("smollm2-135m-instruct"))["total"] == expected


@pytest.mark.parametrize("name, published", [
    ("deepseek-r1-distill-qwen-1.5b", 1.777e9),
    ("deepseek-r1-distill-qwen-7b", 7.62e9),
    ("deepseek-r1-distill-llama-8b", 8.03e9),
    ("deepseek-r1-distill-qwen-14b", 14.8e9),
    ("deepseek-r1-distill-qwen-32b", 32.8e9),
    ("deepseek-r1-distill-llama-70b", 70.6e9),
    ("deepseek-v3", 671e9),
    ("deepseek-r1", 671e9),
    ("smollm2-135m-instruct", 134.5e6),
])
def test_parameter_counts_within_one_percent_of_published_sizes(name, published):
    total = v.parameter_count(catalogue.get_profile(name))["total"]
    assert abs(total - published) / published < 0.01


def test_deepseek_v3_moe_mla_parameters_by_hand():
    h = 7168
    mla = (h * 1536 + 1536                   # q_a_proj + q_a_layernorm
           + 1536 * 128 * (128 + 64)         # q_b_proj
           + h * (512 + 64) + 512            # kv_a_proj_with_mqa + kv_a_layernorm
           + 512 * 128 * (128 + 128)         # kv_b_proj
           + 128 * 128 * h)                  # o_proj
    norms = 2 * h
    dense_layer = mla + 3 * h * 18432 + norms
    expert = 3 * h * 2048
    moe_layer = mla + (256 + 1) * expert + 256 * h + 256 + norms
    embed = 129280 * h
    total = 3 * dense_layer + 58 * moe_layer + 2 * embed + h
    active = 3 * dense_layer + 58 * (mla + (8 + 1) * expert + 256 * h + 256 + norms) + 2 * embed + h
    counts = v.parameter_count(catalogue.get_profile("deepseek-v3"))
    assert counts["total"] == total
    assert counts["active"] == active
    assert abs(active - 37e9) / 37e9 < 0.02          # "37B active"


# --- KV cache ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("deepseek-r1-distill-qwen-7b", 2 * 28 * 4 * 128 * 2),      # 57,344 B per token
    ("deepseek-r1-distill-llama-8b", 2 * 32 * 8 * 128 * 2),     # 131,072
    ("deepseek-r1-distill-llama-70b", 2 * 80 * 8 * 128 * 2),    # 327,680
    ("smollm2-135m-instruct", 2 * 30 * 3 * 64 * 2),             # 23,040
    ("deepseek-v3", 61 * (512 + 64) * 2),                       # MLA: 70,272 = 68.6 KiB
])
def test_kv_cache_bytes_per_token_bf16(name, expected):
    assert v.kv_cache_bytes_per_token(catalogue.get_profile(name)) == expected


def test_kv_cache_mla_matches_the_published_68_6_kib():
    assert round(v.kv_cache_bytes_per_token(catalogue.get_profile("deepseek-r1")) / 1024.0, 1) == 68.6


def test_kv_cache_splits_kv_heads_across_tp_and_replicates_beyond():
    p = catalogue.get_profile("deepseek-r1-distill-qwen-7b")              # 4 KV heads
    assert v.kv_cache_bytes_per_token(p, tensor_parallel_size=2) == 2 * 28 * 2 * 128 * 2
    assert v.kv_cache_bytes_per_token(p, tensor_parallel_size=8) == 2 * 28 * 1 * 128 * 2   # replicated, 1 per rank
    assert v.kv_cache_bytes_per_token(p, pipeline_parallel_size=4) == 2 * 7 * 4 * 128 * 2  # 28 layers / 4 stages


def test_kv_cache_mla_is_not_split_by_tensor_parallel():
    p = catalogue.get_profile("deepseek-v3")
    assert v.kv_cache_bytes_per_token(p, tensor_parallel_size=8) == 61 * 576 * 2


@pytest.mark.parametrize("kv_dtype, element", [("auto", 2), ("fp8", 1), ("fp16", 2), ("q8_0", 34 / 32.0), ("q4_0", 18 / 32.0)])
def test_kv_cache_dtypes(kv_dtype, element):
    p = catalogue.get_profile("deepseek-r1-distill-llama-8b")
    assert v.kv_cache_bytes_per_token(p, kv_dtype) == 2 * 32 * 8 * 128 * element


def test_unknown_kv_dtype_is_refused():
    with pytest.raises(ValueError, match="unknown kv_cache_dtype"):
        v.kv_cache_bytes_per_token(catalogue.get_profile("deepseek-r1-distill-llama-8b"), "int3")


# --- weights ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, linear, other", [
    ("bf16", 2.0, 2.0),
    ("fp32", 4.0, 4.0),
    ("fp8", 1.0 + 4.0 / 16384, 2.0),
    ("int8", 1.0, 2.0),
    ("int4", 0.5 + 2.0 / 128, 2.0),
    ("awq", 0.5 + 2.5 / 128, 2.0),
    ("Q4_0", 18 / 32.0, 18 / 32.0),        # 4.5 bits per weight
    ("Q4_1", 20 / 32.0, 20 / 32.0),        # 5.0
    ("Q5_0", 22 / 32.0, 22 / 32.0),        # 5.5
    ("Q8_0", 34 / 32.0, 34 / 32.0),        # 8.5
    ("Q4_K_M", 4.84 / 8, 4.84 / 8),        # mixed file type, measured average
    ("Q6_K", 6.56 / 8, 6.56 / 8),
    ("IQ4_XS", 136 / 256.0, 136 / 256.0),  # 4.25
])
def test_bytes_per_param(dtype, linear, other):
    assert v.bytes_per_param(dtype) == pytest.approx((linear, other))


def test_bytes_per_param_unknown():
    assert v.bytes_per_param("int3") is None
    with pytest.raises(ValueError, match="unknown dtype"):
        v.resolve_dtype(catalogue.get_profile("deepseek-r1-distill-qwen-7b"), "int3")


def test_weight_bytes_bf16_is_two_bytes_per_parameter():
    p = catalogue.get_profile("deepseek-r1-distill-llama-8b")
    total, per_gpu = v.weight_bytes(p, "bf16")
    assert total == 2 * 8030261248 and per_gpu == total


def test_weight_bytes_tp_splits_evenly_for_dense_models():
    p = catalogue.get_profile("deepseek-r1-distill-llama-70b")
    total, per_gpu = v.weight_bytes(p, "bf16", tensor_parallel_size=4)
    # norms (2 x 8192 per layer + 8192) stay whole on each rank: 4 bytes/rank extra per norm element x 3/4
    norms = (80 * 2 * 8192 + 8192) * 2
    assert per_gpu == pytest.approx((total - norms) / 4.0 + norms, abs=2)


def test_awq_keeps_embeddings_in_16_bit():
    p = catalogue.get_profile("deepseek-r1-distill-qwen-7b")
    counts = v.parameter_count(p)
    linear = sum(l["sharded"] + l["replicated"] for l in v.layer_parameters(p))
    small = counts["total"] - linear
    total = v.weight_bytes(p, "awq")[0]
    assert total == int(linear * (0.5 + 2.5 / 128) + small * 2)


def test_deepseek_v3_fp8_weights_and_replicated_mla_projections():
    p = catalogue.get_profile("deepseek-v3")
    total, per_gpu = v.weight_bytes(p, "auto", tensor_parallel_size=8)
    # about 671B params at ~1 byte, embeddings/head/norms/router in bf16: 627 GiB
    assert 620 * GIB < total < 635 * GIB
    # q_a_proj and kv_a_proj are replicated on every rank: per GPU is more than total / 8
    replicated = 61 * (7168 * 1536 + 7168 * 576) * (1.0 + 4.0 / 16384)
    assert per_gpu > total / 8.0 + 0.8 * replicated
    assert per_gpu < total / 8.0 + replicated + 2 * GIB
    # in bf16 the weights exceed 1.3 TB
    assert v.weight_bytes(p, "bf16")[0] > 1.3e12


def test_pipeline_parallel_puts_the_head_on_the_last_stage():
    p = catalogue.get_profile("smollm2-135m-instruct")        # tied embeddings
    single = v.weight_bytes(p, "bf16")[1]
    staged = v.weight_bytes(p, "bf16", pipeline_parallel_size=2)[1]
    embed = 49152 * 576 * 2
    # each stage holds 15 layers; the last also a copy of the tied head
    layer = (576 * 576 * 2 + 2 * 576 * 192 + 3 * 576 * 1536 + 2 * 576) * 2
    assert staged == 15 * layer + embed + 576 * 2
    assert single == 30 * layer + embed + 576 * 2


@pytest.mark.parametrize("layers, pp, expected", [
    (28, 1, [(0, 28)]),
    (28, 4, [(0, 7), (7, 14), (14, 21), (21, 28)]),
    (61, 2, [(0, 31), (31, 61)]),
    (30, 4, [(0, 8), (8, 16), (16, 23), (23, 30)]),
])
def test_stage_layers(layers, pp, expected):
    assert v.stage_layers(layers, pp) == expected


# --- estimate and fit ---------------------------------------------------------------------------

def test_estimate_adds_the_parts():
    p = catalogue.get_profile("deepseek-r1-distill-qwen-7b")
    est = v.estimate_memory(p, context_length=32768, max_num_seqs=16, engine="vllm")
    assert est["kv_cache_per_gpu_bytes"] == 57344 * 32768 * 16      # exactly 28 GiB
    assert est["kv_cache_per_gpu_bytes"] == 28 * GIB
    assert est["weights_per_gpu_bytes"] == 2 * 7615616512
    assert est["runtime_overhead_per_gpu_bytes"] == int(0.75 * GIB) + int(0.5 * GIB)
    # activations: 8192 tokens x (2 x 3584 + 3 x 18944) x 2 bytes + 16 x 152064 x 4 fp32 logits
    assert est["activation_per_gpu_bytes"] == 8192 * (2 * 3584 + 3 * 18944) * 2 + 16 * 152064 * 4
    assert est["need_per_gpu_bytes"] == (est["weights_per_gpu_bytes"] + est["kv_cache_per_gpu_bytes"]
                                         + est["activation_per_gpu_bytes"] + est["runtime_overhead_per_gpu_bytes"])


def test_estimate_rounds_context_up_to_kv_blocks():
    p = catalogue.get_profile("smollm2-135m-instruct")
    est = v.estimate_memory(p, context_length=1000, max_num_seqs=1)
    assert est["kv_cache_per_gpu_bytes"] == 23040 * 1008          # 1000 -> 63 blocks of 16


def test_estimate_cpu_mode_has_no_gpu_overhead():
    p = catalogue.get_profile("smollm2-135m-instruct")
    est = v.estimate_memory(p, "Q4_1", context_length=2048, max_num_seqs=1, engine="llama_cpp", device="cpu")
    assert est["gpus_needed"] == 0 and est["runtime_overhead_per_gpu_bytes"] == v.CPU_RUNTIME_BYTES
    assert est["batched_tokens"] == 512


def test_deepseek_v3_fits_one_8xh200_node_but_not_8xh100():
    p = catalogue.get_profile("deepseek-v3")
    est = v.estimate_memory(p, context_length=32768, max_num_seqs=16, tensor_parallel_size=8)
    h200, h100 = 143771 * 1024 ** 2, 81559 * 1024 ** 2
    assert est["need_per_gpu_bytes"] < 0.9 * h200
    assert est["weights_per_gpu_bytes"] > 0.9 * h100               # the weights alone do not fit
    # 2 x 8 H100 with TP 16: the weights halve, but the MLA latent cache is replicated on every
    # rank, so 16 x 32K sequences (34.3 GiB of cache per GPU) do not fit and 8 do.
    sixteen = v.estimate_memory(p, context_length=32768, max_num_seqs=16, tensor_parallel_size=16)
    assert sixteen["kv_cache_per_gpu_bytes"] == 61 * 576 * 2 * 32768 * 16
    assert sixteen["need_per_gpu_bytes"] > 0.9 * h100
    eight = v.estimate_memory(p, context_length=32768, max_num_seqs=8, tensor_parallel_size=16)
    assert eight["need_per_gpu_bytes"] < 0.9 * h100


def test_fit_limits_are_the_largest_that_fit():
    p = catalogue.get_profile("deepseek-r1-distill-qwen-7b")
    est = v.estimate_memory(p, context_length=32768, max_num_seqs=16)
    budget = int(0.9 * 24 * GIB)
    limits = v.fit_limits(p, est, budget)
    ctx = limits["max_context_length"]
    assert v.estimate_variant(est, p, context_length=ctx)["need_per_gpu_bytes"] <= budget
    assert v.estimate_variant(est, p, context_length=ctx + 16)["need_per_gpu_bytes"] > budget
    seqs = limits["max_num_seqs"]
    assert v.estimate_variant(est, p, max_num_seqs=seqs)["need_per_gpu_bytes"] <= budget
    assert v.estimate_variant(est, p, max_num_seqs=seqs + 1)["need_per_gpu_bytes"] > budget


def test_fit_limits_none_when_weights_alone_do_not_fit():
    p = catalogue.get_profile("deepseek-r1-distill-llama-70b")
    est = v.estimate_memory(p, context_length=4096, max_num_seqs=1)
    limits = v.fit_limits(p, est, 80 * GIB)
    assert limits["max_context_length"] is None and limits["max_num_seqs"] is None


def test_smallest_fitting_tensor_parallel():
    p = catalogue.get_profile("deepseek-r1-distill-llama-70b")
    est = v.estimate_memory(p, context_length=16384, max_num_seqs=8)
    budget = int(0.9 * 81559 * 1024 ** 2)
    tp = v.smallest_fitting_tensor_parallel(p, est, budget)
    assert tp == 4                                                # 131 GiB of weights: 2 x 73 > 71.7, 4 x fits
    assert v.estimate_variant(est, p, tensor_parallel_size=2)["need_per_gpu_bytes"] > budget


@pytest.mark.parametrize("name, expected", [
    ("deepseek-r1-distill-qwen-7b", [1, 2, 4]),       # 28 heads, 4 KV heads: 8 does not divide 28
    ("deepseek-r1-distill-llama-70b", [1, 2, 4, 8, 16, 32, 64]),
    ("smollm2-135m-instruct", [1]),                    # 9 heads
])
def test_tensor_parallel_candidates(name, expected):
    assert v.tensor_parallel_candidates(catalogue.get_profile(name)) == expected


def test_engine_settings_lower_the_memory_fraction_when_memory_is_taken():
    p = catalogue.get_profile("deepseek-r1-distill-qwen-7b")
    est = v.estimate_memory(p, context_length=8192, max_num_seqs=4)
    total = 80 * GIB
    settings = engine_cfg.engine_settings(p, est, total, total, 0.9)
    assert settings["gpu_memory_utilization"] == 0.9 and settings["fits"]
    assert settings["max_model_len"] == 8192 and settings["dtype"] == "bfloat16" and settings["quantization"] is None
    busy = engine_cfg.engine_settings(p, est, total, 50 * GIB, 0.9)
    # (50 GiB - 0.5 GiB) / 80 GiB = 0.61875 -> 0.61
    assert busy["gpu_memory_utilization"] == 0.61


def test_engine_settings_for_llama_cpp():
    p = catalogue.get_profile("smollm2-135m-instruct")
    est = v.estimate_memory(p, "Q4_1", context_length=4096, max_num_seqs=2, engine="llama_cpp", device="cpu")
    settings = engine_cfg.engine_settings(p, est, host_available_bytes=8 * GIB)
    assert settings["ctx_size"] == 8192 and settings["parallel"] == 2 and settings["n_gpu_layers"] == 0
    assert settings["fits"] is True


@pytest.mark.parametrize("value, expected", [(0, "0 B"), (1536, "1.5 KiB"), (80 * GIB, "80.0 GiB"), (None, "unknown")])
def test_format_bytes(value, expected):
    assert fsutil.format_bytes(value) == expected


@pytest.mark.parametrize("value, expected", [(65040, 64512), (1000, 992), (31, 16), (None, None)])
def test_round_context_down(value, expected):
    assert v.round_context_down(value) == expected


# --- profile sources -----------------------------------------------------------------------------

def test_get_profile_unknown_lists_names():
    with pytest.raises(ValueError, match="deepseek-r1-distill-qwen-7b"):
        catalogue.get_profile("llama-3-8b")


def test_normalize_profile_reports_every_problem():
    with pytest.raises(ValueError) as exc:
        catalogue.normalize_profile({"num_hidden_layers": 0, "hidden_size": "x", "num_attention_heads": 32, "vocab_size": 100,
                                     "num_key_value_heads": 5, "intermediate_size": 1})
    text = str(exc.value)
    assert "num_hidden_layers" in text and "hidden_size" in text and "multiple of num_key_value_heads" in text


def test_normalize_profile_fills_head_dim_and_kv_heads():
    p = catalogue.normalize_profile({"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128,
                                     "num_attention_heads": 4, "vocab_size": 100})
    assert p["head_dim"] == 16 and p["num_key_value_heads"] == 4 and p["attention"] == "gqa"


def test_profile_from_hf_config_matches_builtin(tmp_path):
    config = {"model_type": "qwen2", "num_hidden_layers": 28, "hidden_size": 3584, "intermediate_size": 18944,
              "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
              "tie_word_embeddings": False, "max_position_embeddings": 131072, "torch_dtype": "bfloat16"}
    path = tmp_path / "DeepSeek-R1-Distill-Qwen-7B" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(config))
    profile = profiles.load_profile(config_path=str(path.parent))
    assert profile["attention_bias"] is True and profile["dtype"] == "bf16"
    builtin = catalogue.get_profile("deepseek-r1-distill-qwen-7b")
    assert v.parameter_count(profile) == v.parameter_count(builtin)


def test_profile_from_hf_config_reads_fp8_quantization():
    config = dict(catalogue.MODEL_PROFILES["deepseek-v3"])
    config.update({"model_type": "deepseek_v3", "quantization_config": {"quant_method": "fp8"}})
    config.pop("dtype")
    assert hf_config.profile_from_hf_config(config)["dtype"] == "fp8"


def test_profile_from_bad_config(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read model config"):
        hf_config.profile_from_hf_config(str(path))


def test_load_profile_needs_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one"):
        profiles.load_profile()
    with pytest.raises(ValueError, match="exactly one"):
        profiles.load_profile(model="deepseek-v3", architecture={"a": 1})


# --- GGUF ----------------------------------------------------------------------------------------

def test_gguf_header_and_exact_tensor_bytes(tmp_path, gguf):
    path = gguf.smollm2(tmp_path / "smollm2.gguf")
    header = gguf_file.read_gguf_header(str(path))
    assert header["version"] == 3 and len(header["tensors"]) == 2 + 30 * 9
    assert header["metadata"]["llama.block_count"] == 30
    assert header["metadata"]["tokenizer.ggml.tokens"] is None           # long array skipped ...
    assert header["array_lengths"]["tokenizer.ggml.tokens"] == 49152     # ... its length kept
    profile = gguf_file.profile_from_gguf(str(path))
    assert profile["vocab_size"] == 49152 and profile["tie_word_embeddings"] is True
    assert profile["head_dim"] == 64 and profile["dtype"] == "Q4_1"
    # weights: embedding 28,311,552 x 34/32 (Q8_0) + matrices 30 x 3,538,944 x 20/32 (Q4_1) + norms f32
    embed = 49152 * 576 // 32 * 34
    matrices = 30 * (2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536) // 32 * 20
    norms = (30 * 2 * 576 + 576) * 4
    assert profile["gguf_weights"]["total_bytes"] == embed + matrices + norms
    assert abs(profile["gguf_weights"]["total_bytes"] - 98362432) / 98362432.0 < 0.03   # the published file
    assert v.parameter_count(profile)["total"] == 134515008


def test_gguf_estimate_uses_file_bytes_and_refuses_other_dtypes(tmp_path, gguf):
    profile = gguf_file.profile_from_gguf(str(gguf.smollm2(tmp_path / "m.gguf")))
    est = v.estimate_memory(profile, "auto", context_length=2048, max_num_seqs=1, engine="llama_cpp", device="cpu")
    assert est["weights_bytes"] == profile["gguf_weights"]["total_bytes"]
    with pytest.raises(ValueError, match="holds Q4_1 weights"):
        v.estimate_memory(profile, "Q8_0", context_length=2048)


@pytest.mark.parametrize("content, message", [
    (b"GGML" + b"\0" * 20, "not a GGUF file"),
    (b"GGUF" + struct.pack("<I", 1) + b"\0" * 16, "versions 2 and 3"),
    (b"GGUF" + struct.pack(">I", 3) + b"\0" * 16, "big-endian"),
    (b"GGUF" + struct.pack("<I", 3) + struct.pack("<Q", 1), "truncated"),
    (b"GGUF" + struct.pack("<I", 3) + struct.pack("<Q", 0) + struct.pack("<Q", 1)
     + struct.pack("<Q", 1) + b"k" + struct.pack("<I", 42), "unknown GGUF value type"),
])
def test_gguf_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        gguf_file.read_gguf_header(str(path))


def test_gguf_missing_file(tmp_path):
    with pytest.raises(ValueError, match="cannot open GGUF file"):
        gguf_file.read_gguf_header(str(tmp_path / "absent.gguf"))


def test_gguf_unknown_tensor_type_falls_back_to_data_size(tmp_path, gguf):
    meta = [("general.architecture", "llama"), ("llama.block_count", 1), ("llama.embedding_length", 64),
            ("llama.feed_forward_length", 128), ("llama.attention.head_count", 4), ("llama.vocab_size", 100)]
    path = gguf.write(tmp_path / "x.gguf", meta, [("blk.0.attn_q.weight", [64, 64], 77)], data_bytes=4096)
    profile = gguf_file.profile_from_gguf(str(path))
    assert profile["gguf_weights"]["exact"] is False
    assert profile["gguf_weights"]["total_bytes"] == 4096


# --- derivation helpers and explicit engine settings -----------------------------------------------

def test_largest_fitting_seqs_and_context_are_the_boundaries():
    p = catalogue.get_profile("deepseek-r1-distill-qwen-7b")
    est = v.estimate_memory(p, context_length=32768, max_num_seqs=16)
    budget = 20 * GIB
    seqs = engine_cfg.largest_fitting_seqs(p, est, budget, cap=16)
    assert seqs == 2
    assert v.estimate_variant(est, p, max_num_seqs=seqs)["need_per_gpu_bytes"] <= budget
    assert v.estimate_variant(est, p, max_num_seqs=seqs + 1)["need_per_gpu_bytes"] > budget
    assert engine_cfg.largest_fitting_seqs(p, est, 100 * GIB, cap=16) == 16          # capped
    assert engine_cfg.largest_fitting_seqs(p, est, 10 * GIB) is None                 # 14.2 GiB of weights
    context = engine_cfg.largest_fitting_context(p, est, budget, 32768)
    assert context % 16 == 0
    assert v.estimate_variant(est, p, context_length=context)["need_per_gpu_bytes"] <= budget
    assert v.estimate_variant(est, p, context_length=context + 16)["need_per_gpu_bytes"] > budget
    assert engine_cfg.largest_fitting_context(p, est, 10 * GIB, 32768) is None
    assert engine_cfg.largest_fitting_context(p, est, 200 * GIB, 4096) == 4096       # at most the longest asked


def test_estimate_variants_keep_the_overrides():
    p = catalogue.get_profile("deepseek-r1-distill-qwen-7b")
    est = v.estimate_memory(p, context_length=8192, max_num_seqs=4, max_num_batched_tokens=2048,
                            runtime_overhead=GIB)
    assert (est["max_num_batched_tokens"], est["runtime_overhead_bytes"]) == (2048, GIB)
    variant = v.estimate_variant(est, p, max_num_seqs=8)
    assert variant["batched_tokens"] == 2048 and variant["runtime_overhead_per_gpu_bytes"] == GIB
    plain = v.estimate_memory(p, context_length=8192, max_num_seqs=4)
    assert (plain["max_num_batched_tokens"], plain["runtime_overhead_bytes"]) == (None, None)
    assert v.estimate_variant(plain, p, max_num_seqs=8)["batched_tokens"] == 8192


@pytest.mark.parametrize("served, profile_dtype, expected", [
    ("bf16", "bf16", "bfloat16"), ("fp16", "bf16", "float16"), ("fp32", "bf16", "float32"),
    ("fp8", "fp8", "bfloat16"), ("int8", "bf16", "bfloat16"), ("awq", "bf16", "float16"),
    ("gptq", "bf16", "float16"), ("int4", "bf16", "float16"), ("Q4_K_M", "Q4_K_M", "Q4_K_M"),
])
def test_activation_dtype_arg_is_never_auto(served, profile_dtype, expected):
    assert engine_cfg.activation_dtype_arg({"dtype": profile_dtype}, served) == expected


def test_activation_dtype_of_a_quantized_hf_checkpoint():
    config = dict(catalogue.MODEL_PROFILES["deepseek-r1-distill-qwen-7b"])
    config.update({"model_type": "qwen2", "torch_dtype": "float16", "quantization_config": {"quant_method": "fp8"}})
    config.pop("dtype")
    profile = hf_config.profile_from_hf_config(config)
    assert profile["dtype"] == "fp8" and profile["activation_dtype"] == "fp16"
    assert engine_cfg.activation_dtype_arg(profile, "fp8") == "float16"
    plain = dict(config)
    plain.pop("quantization_config")
    assert "activation_dtype" not in hf_config.profile_from_hf_config(plain)


def test_engine_settings_name_everything_the_engine_needs():
    p = catalogue.get_profile("deepseek-v3")
    est = v.estimate_memory(p, context_length=32768, max_num_seqs=16, tensor_parallel_size=8, engine="sglang")
    settings = engine_cfg.engine_settings(p, est, 143771 * 1024 ** 2, None, 0.9)
    assert settings["max_num_batched_tokens"] == 8192 and settings["dtype"] == "bfloat16"
    assert settings["weight_format"] == "fp8" and settings["quantization"] is None
    assert engine_cfg.engine_settings(p, est, 143771 * 1024 ** 2, None, 0.9, max_num_batched_tokens=4096)[
        "max_num_batched_tokens"] == 4096
    q = catalogue.get_profile("deepseek-r1-distill-qwen-7b")
    awq = engine_cfg.engine_settings(q, v.estimate_memory(q, "awq", context_length=4096), 80 * GIB, None, 0.9)
    assert (awq["dtype"], awq["weight_format"], awq["quantization"]) == ("float16", "awq", "awq")
    cpu = engine_cfg.engine_settings(catalogue.get_profile("smollm2-135m-instruct"),
                                     v.estimate_memory(catalogue.get_profile("smollm2-135m-instruct"), "Q4_1", context_length=4096,
                                                       max_num_seqs=2, engine="llama_cpp", device="cpu"),
                                     host_available_bytes=8 * GIB)
    assert cpu["max_num_batched_tokens"] == 512 and cpu["dtype"] == "Q4_1"
