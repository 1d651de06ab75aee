# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Command lines of the inference engines, from one settings dict.

The serving role renders the engine's arguments from the model profile and the preflight
estimate (deploy_preflight's engine_settings) plus the operator's overrides. Everything the
engine needs is passed explicitly; nothing is left for the engine to guess (docs/serving.md).
Pure functions: unit-tested for the DeepSeek profiles.
"""
from __future__ import annotations

ENGINES = ("vllm", "sglang", "llama_cpp")

# Our dtype names to the engines' --dtype values (activations / unquantized weights).
_DTYPE_ARG = {
    "auto": "auto", "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
    "half": "float16", "fp32": "float32", "float32": "float32",
}
# Weight quantization methods each engine accepts by name (--quantization).
_QUANTIZATION = {
    "vllm": ("awq", "gptq", "fp8", "bitsandbytes", "compressed-tensors", "gguf", "marlin", "awq_marlin",
             "gptq_marlin", "experts_int8", "modelopt", "fbgemm_fp8"),
    "sglang": ("awq", "gptq", "fp8", "bitsandbytes", "compressed-tensors", "gguf", "marlin", "awq_marlin",
               "gptq_marlin", "w8a8_int8", "w8a8_fp8", "modelopt", "blockwise_int8"),
}
_KV_CACHE_DTYPES = {
    "vllm": ("auto", "fp8", "fp8_e4m3", "fp8_e5m2"),
    "sglang": ("auto", "fp8_e4m3", "fp8_e5m2"),
}
# Arguments the role itself owns; an extra argument that repeats one is refused, because the
# engine would silently take whichever comes last.
_OWNED = {
    "vllm": ("--model", "--served-model-name", "--host", "--port", "--tensor-parallel-size",
             "--pipeline-parallel-size", "--max-model-len", "--max-num-seqs", "--gpu-memory-utilization",
             "--dtype", "--quantization", "--kv-cache-dtype", "--max-num-batched-tokens"),
    "sglang": ("--model-path", "--served-model-name", "--host", "--port", "--tp-size", "--pp-size",
               "--context-length", "--max-running-requests", "--mem-fraction-static", "--dtype", "--quantization",
               "--kv-cache-dtype", "--chunked-prefill-size"),
    "llama_cpp": ("--model", "-m", "--alias", "-a", "--host", "--port", "--ctx-size", "-c", "--parallel", "-np",
                  "--n-gpu-layers", "-ngl", "--threads", "-t", "--cont-batching", "-cb", "--no-cont-batching",
                  "-nocb", "--metrics", "--slots", "--no-slots", "--batch-size", "-b"),
}


class EngineArgsError(ValueError):
    """Settings that cannot be turned into a working command line; the message names the fix."""


def _positive_int(settings, key, problems, default=None):
    value = settings.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        problems.append("%s must be a positive integer, got %r" % (key, value))
        return None
    return value


def _check_extra(engine, extra, problems):
    if not isinstance(extra, (list, tuple)) or not all(isinstance(a, str) for a in extra):
        problems.append("extra_args must be a list of strings, got %r" % (extra,))
        return []
    for arg in extra:
        flag = arg.split("=", 1)[0]
        if flag in _OWNED[engine]:
            problems.append("extra_args repeats %s, which the role sets from its own variables; set that "
                            "variable instead" % flag)
    return list(extra)


def engine_argv(engine, settings):
    """The engine's arguments (after its entry point) as a list of strings.

    settings keys: model (path inside the container; for llama_cpp the .gguf file), served_model_name,
    host, port, tensor_parallel_size, pipeline_parallel_size, max_model_len, max_num_seqs,
    gpu_memory_utilization, dtype, quantization, kv_cache_dtype, threads (llama_cpp), n_gpu_layers
    (llama_cpp), max_num_batched_tokens (vLLM --max-num-batched-tokens, SGLang --chunked-prefill-size,
    llama.cpp --batch-size), trust_remote_code, extra_args.
    Raises EngineArgsError listing every problem at once.
    """
    if engine not in ENGINES:
        raise EngineArgsError("engine %r is unknown; choose one of %s" % (engine, ", ".join(ENGINES)))
    problems = []
    model = settings.get("model")
    if not model or not isinstance(model, str):
        problems.append("model (the model's path inside the container) is required")
    name = settings.get("served_model_name") or None
    host = settings.get("host") or "127.0.0.1"
    port = _positive_int(settings, "port", problems, 8000)
    if port is not None and port > 65535:
        problems.append("port must be at most 65535, got %d" % port)
    tp = _positive_int(settings, "tensor_parallel_size", problems, 1)
    pp = _positive_int(settings, "pipeline_parallel_size", problems, 1)
    max_len = _positive_int(settings, "max_model_len", problems)
    seqs = _positive_int(settings, "max_num_seqs", problems)
    util = settings.get("gpu_memory_utilization")
    if util is not None and not (isinstance(util, (int, float)) and 0.0 < float(util) <= 1.0):
        problems.append("gpu_memory_utilization must be in (0, 1], got %r" % (util,))
    dtype = settings.get("dtype") or "auto"
    quantization = settings.get("quantization") or None
    kv_dtype = settings.get("kv_cache_dtype") or "auto"
    batched = _positive_int(settings, "max_num_batched_tokens", problems)
    extra = _check_extra(engine, settings.get("extra_args") or [], problems)

    if engine in ("vllm", "sglang"):
        if dtype not in _DTYPE_ARG:
            problems.append("dtype %r is not one %s accepts; use one of %s" % (dtype, engine, ", ".join(sorted(_DTYPE_ARG))))
        if quantization is not None and quantization not in _QUANTIZATION[engine]:
            problems.append("quantization %r is not one %s knows; use one of %s"
                            % (quantization, engine, ", ".join(_QUANTIZATION[engine])))
        if kv_dtype not in _KV_CACHE_DTYPES[engine]:
            problems.append("kv_cache_dtype %r is not one %s accepts; use one of %s"
                            % (kv_dtype, engine, ", ".join(_KV_CACHE_DTYPES[engine])))
    if problems:
        raise EngineArgsError("; ".join(problems))

    if engine == "vllm":
        argv = ["--model", model, "--host", host, "--port", str(port)]
        if name:
            argv += ["--served-model-name", name]
        argv += ["--tensor-parallel-size", str(tp), "--pipeline-parallel-size", str(pp)]
        if max_len:
            argv += ["--max-model-len", str(max_len)]
        if seqs:
            argv += ["--max-num-seqs", str(seqs)]
        if util is not None:
            argv += ["--gpu-memory-utilization", "%g" % float(util)]
        if batched:
            argv += ["--max-num-batched-tokens", str(batched)]
        argv += ["--dtype", _DTYPE_ARG[dtype]]
        if quantization:
            argv += ["--quantization", quantization]
        argv += ["--kv-cache-dtype", kv_dtype]
        if settings.get("trust_remote_code"):
            argv.append("--trust-remote-code")
    elif engine == "sglang":
        argv = ["--model-path", model, "--host", host, "--port", str(port)]
        if name:
            argv += ["--served-model-name", name]
        argv += ["--tp-size", str(tp)]
        if pp > 1:
            argv += ["--pp-size", str(pp)]
        if max_len:
            argv += ["--context-length", str(max_len)]
        if seqs:
            argv += ["--max-running-requests", str(seqs)]
        if util is not None:
            argv += ["--mem-fraction-static", "%g" % float(util)]
        if batched:
            argv += ["--chunked-prefill-size", str(batched)]
        argv += ["--dtype", _DTYPE_ARG[dtype]]
        if quantization:
            argv += ["--quantization", quantization]
        argv += ["--kv-cache-dtype", kv_dtype]
        argv.append("--enable-metrics")
        if settings.get("trust_remote_code"):
            argv.append("--trust-remote-code")
    else:
        # llama.cpp's own server (llama-server): one model file; `seqs` parallel slots with
        # continuous batching, each slot holding a whole max_model_len context, so the KV cache
        # is max_model_len x seqs tokens. /metrics on; /slots off, because it shows the prompts
        # being processed to anyone who reaches the port.
        if tp > 1 or pp > 1:
            raise EngineArgsError("llama_cpp serves on one device; tensor/pipeline parallel sizes must be 1 "
                                  "(got %d/%d): use vllm or sglang for multi-GPU serving" % (tp, pp))
        if not model.endswith(".gguf"):
            raise EngineArgsError("llama_cpp needs a GGUF file as model, got %r" % model)
        argv = ["--model", model, "--host", host, "--port", str(port)]
        if name:
            argv += ["--alias", name]
        slots = seqs or 1
        if max_len:
            argv += ["--ctx-size", str(max_len * slots)]
        argv += ["--parallel", str(slots), "--cont-batching"]
        if batched:
            argv += ["--batch-size", str(batched)]
        argv += ["--n-gpu-layers", str(int(settings.get("n_gpu_layers") or 0))]
        threads = _positive_int(settings, "threads", [], None)
        if threads:
            argv += ["--threads", str(threads)]
        argv += ["--metrics", "--no-slots", "--no-webui", "--log-jsonl"]
    return argv + extra
