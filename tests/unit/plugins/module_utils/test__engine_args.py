# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Engine command lines for the DeepSeek profiles, derived the way the serving role derives
them: model profile -> preflight estimate -> engine settings -> arguments."""
from __future__ import annotations

import tempfile

import pytest

import fake_pynvml as fake
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _engine_args as e
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _nvml as n
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _preflight as p
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_catalogue as catalogue

GIB = 1024 ** 3
HOST = {"mem_total_bytes": 2048 * GIB, "mem_available_bytes": 1900 * GIB}


def settings_for(model, plan, nvml, tmp_path, engine):
    root = tempfile.mkdtemp(dir=str(tmp_path))
    gpu = n.collect_gpu_facts(nvml=nvml, sysfs_root=fake.empty_sysfs(root), proc_root=root)
    report = p.run_preflight(catalogue.get_profile(model), dict(plan, engine=engine), gpu, HOST)
    assert report["ok"], report["blocking"]
    s = dict(report["engine_settings"])
    s.update(model="/models/current", served_model_name=model, port=8001)
    return s


def pairs(argv):
    """--flag value pairs (flags without a value map to True)."""
    out, i = {}, 0
    while i < len(argv):
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out[argv[i]] = argv[i + 1]
            i += 2
        else:
            out[argv[i]] = True
            i += 1
    return out


def test_deepseek_v3_fp8_on_8xh200_vllm(tmp_path):
    s = settings_for("deepseek-v3", {"tensor_parallel_size": 8, "context_length": 32768, "max_num_seqs": 16},
                     fake.hgx_h200(), tmp_path, "vllm")
    args = pairs(e.engine_argv("vllm", s))
    assert args["--model"] == "/models/current" and args["--served-model-name"] == "deepseek-v3"
    assert args["--tensor-parallel-size"] == "8" and args["--pipeline-parallel-size"] == "1"
    assert args["--max-model-len"] == "32768" and args["--max-num-seqs"] == "16"
    assert args["--gpu-memory-utilization"] == "0.9"
    # DeepSeek-V3 ships FP8 weights: served as they are, no on-the-fly quantization flag.
    assert "--quantization" not in args
    assert args["--host"] == "127.0.0.1" and args["--port"] == "8001"


def test_deepseek_v3_fp8_on_8xh200_sglang(tmp_path):
    s = settings_for("deepseek-v3", {"tensor_parallel_size": 8, "context_length": 32768, "max_num_seqs": 16},
                     fake.hgx_h200(), tmp_path, "sglang")
    argv = e.engine_argv("sglang", s)
    args = pairs(argv)
    assert args["--model-path"] == "/models/current"
    assert args["--tp-size"] == "8" and "--pp-size" not in args
    assert args["--context-length"] == "32768" and args["--max-running-requests"] == "16"
    assert args["--mem-fraction-static"] == "0.9"
    assert "--enable-metrics" in argv


def test_r1_distill_qwen_32b_bf16_tp2_vllm(tmp_path):
    s = settings_for("deepseek-r1-distill-qwen-32b",
                     {"tensor_parallel_size": 2, "context_length": 32768, "max_num_seqs": 8, "dtype": "bf16"},
                     fake.FakeNvml([fake.h100_pcie(0), fake.h100_pcie(1)]), tmp_path, "vllm")
    args = pairs(e.engine_argv("vllm", s))
    assert args["--tensor-parallel-size"] == "2" and args["--dtype"] == "bfloat16"
    assert args["--max-model-len"] == "32768" and "--quantization" not in args


def test_r1_distill_llama_70b_awq_quantization_is_passed(tmp_path):
    s = settings_for("deepseek-r1-distill-llama-70b",
                     {"tensor_parallel_size": 2, "context_length": 16384, "max_num_seqs": 8, "dtype": "awq"},
                     fake.FakeNvml([fake.h100_pcie(0), fake.h100_pcie(1)]), tmp_path, "vllm")
    args = pairs(e.engine_argv("vllm", s))
    assert args["--quantization"] == "awq"


def test_llama_cpp_gguf_on_cpu():
    argv = e.engine_argv("llama_cpp", {"model": "/models/current/SmolLM2-135M-Instruct.Q4_1.gguf",
                                       "served_model_name": "smollm2", "port": 8001, "max_model_len": 2048,
                                       "threads": 2})
    valued = {flag: value for flag, value in pairs(argv).items() if value is not True}
    assert valued == {"--model": "/models/current/SmolLM2-135M-Instruct.Q4_1.gguf", "--host": "127.0.0.1",
                      "--port": "8001", "--alias": "smollm2", "--ctx-size": "2048", "--parallel": "1",
                      "--n-gpu-layers": "0", "--threads": "2"}
    # Continuous batching and metrics on; the /slots endpoint (it shows prompts) and the web UI off.
    for flag in ("--cont-batching", "--metrics", "--no-slots", "--no-webui", "--log-jsonl"):
        assert flag in argv


def test_llama_cpp_slots_each_hold_the_whole_model_length():
    argv = e.engine_argv("llama_cpp", {"model": "/models/m.gguf", "max_model_len": 4096, "max_num_seqs": 8,
                                       "max_num_batched_tokens": 1024})
    args = pairs(argv)
    assert (args["--parallel"], args["--ctx-size"], args["--batch-size"]) == ("8", "32768", "1024")


def test_extra_args_are_appended():
    argv = e.engine_argv("vllm", {"model": "/m", "extra_args": ["--enable-prefix-caching", "--seed=7"]})
    assert argv[-2:] == ["--enable-prefix-caching", "--seed=7"]


@pytest.mark.parametrize("engine,settings,message", [
    ("vllm", {"model": "/m", "dtype": "int3"}, "dtype 'int3'"),
    ("vllm", {"model": "/m", "quantization": "magic"}, "quantization 'magic'"),
    ("sglang", {"model": "/m", "kv_cache_dtype": "fp8"}, "kv_cache_dtype 'fp8'"),
    ("vllm", {"model": "/m", "extra_args": ["--max-model-len=9"]}, "repeats --max-model-len"),
    ("vllm", {"model": "/m", "tensor_parallel_size": 0}, "tensor_parallel_size must be a positive integer"),
    ("vllm", {"model": "/m", "gpu_memory_utilization": 1.5}, "gpu_memory_utilization must be in (0, 1]"),
    ("vllm", {"model": "/m", "port": 70000}, "port must be at most 65535"),
    ("vllm", {}, "model (the model's path inside the container) is required"),
    ("llama_cpp", {"model": "/m/x.gguf", "tensor_parallel_size": 2}, "llama_cpp serves on one device"),
    ("llama_cpp", {"model": "/m/model.safetensors"}, "needs a GGUF file"),
    ("llama_cpp", {"model": "/m/x.gguf", "extra_args": ["-c", "512"]}, "repeats -c"),
    ("llama_cpp", {"model": "/m/x.gguf", "extra_args": ["--parallel=4"]}, "repeats --parallel"),
    ("tgi", {"model": "/m"}, "engine 'tgi' is unknown"),
])
def test_bad_settings_are_refused_with_the_fix(engine, settings, message):
    with pytest.raises(e.EngineArgsError) as err:
        e.engine_argv(engine, settings)
    assert message in str(err.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(e.EngineArgsError) as err:
        e.engine_argv("vllm", {"model": "/m", "dtype": "int3", "kv_cache_dtype": "int2", "max_num_seqs": -1})
    text = str(err.value)
    assert "dtype 'int3'" in text and "kv_cache_dtype 'int2'" in text and "max_num_seqs" in text


@pytest.mark.parametrize("engine,flag", [("vllm", "--max-num-batched-tokens"), ("sglang", "--chunked-prefill-size"),
                                         ("llama_cpp", "--batch-size")])
def test_batched_tokens_are_passed_to_every_engine(engine, flag):
    model = "/models/m.gguf" if engine == "llama_cpp" else "/models"
    args = pairs(e.engine_argv(engine, {"model": model, "max_num_batched_tokens": 4096}))
    assert args[flag] == "4096"
    with pytest.raises(e.EngineArgsError) as err:
        e.engine_argv(engine, {"model": model, "max_num_batched_tokens": 0})
    assert "max_num_batched_tokens must be a positive integer" in str(err.value)
