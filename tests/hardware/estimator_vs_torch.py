"""Compare the collection's VRAM estimator with what PyTorch really allocates.

Builds DeepSeek-R1-Distill-Qwen-7B's architecture (Qwen2, from the estimator's own profile)
with random bf16 weights on the GPU, runs one prefill of --tokens tokens with the KV cache
kept, and compares: weight bytes, KV-cache bytes for those tokens, and the peak. No weights
are downloaded. Writes <outdir>/estimator_vs_torch.json.
"""
import argparse
import json
import os
import sys
import time

import torch
import transformers

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _vram


def tensor_bytes(obj, seen):
    if isinstance(obj, torch.Tensor):
        if id(obj) in seen:
            return 0
        seen.add(id(obj))
        return obj.numel() * obj.element_size()
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(item, seen) for item in obj)
    if isinstance(obj, dict):
        return sum(tensor_bytes(item, seen) for item in obj.values())
    total = 0
    for name in ("layers", "key_cache", "value_cache", "keys", "values"):
        if hasattr(obj, name):
            total += tensor_bytes(getattr(obj, name), seen)
    return total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("outdir")
    parser.add_argument("--model", default="deepseek-r1-distill-qwen-7b")
    parser.add_argument("--tokens", type=int, default=8192)
    args = parser.parse_args()
    profile = _vram.load_profile(model=args.model)
    est = _vram.estimate_memory(profile, dtype="bf16", context_length=args.tokens, max_num_seqs=1)
    config = transformers.Qwen2Config(
        vocab_size=profile["vocab_size"], hidden_size=profile["hidden_size"],
        intermediate_size=profile["intermediate_size"], num_hidden_layers=profile["num_hidden_layers"],
        num_attention_heads=profile["num_attention_heads"], num_key_value_heads=profile["num_key_value_heads"],
        max_position_embeddings=max(args.tokens, 32768), tie_word_embeddings=bool(profile.get("tie_word_embeddings")),
    )
    torch.cuda.set_device(0)
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    started = time.monotonic()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    model.eval()
    weights_real = torch.cuda.memory_allocated() - base
    params_real = sum(p.numel() for p in model.parameters())
    ids = torch.randint(0, profile["vocab_size"], (1, args.tokens), device="cuda")
    before = torch.cuda.memory_allocated()
    with torch.no_grad():
        try:
            out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        except TypeError:
            out = model(input_ids=ids, use_cache=True)
    torch.cuda.synchronize()
    kv_real = tensor_bytes(out.past_key_values, set())
    peak = torch.cuda.max_memory_allocated() - base
    result = {
        "model": args.model, "tokens": args.tokens, "torch": torch.__version__,
        "transformers": transformers.__version__, "gpu": torch.cuda.get_device_name(0),
        "parameters": {"estimator": est["parameters_total"], "torch": params_real,
                       "ratio": est["parameters_total"] / params_real},
        "weights_bytes": {"estimator": est["weights_bytes"], "torch": weights_real,
                          "ratio": est["weights_bytes"] / weights_real},
        "kv_bytes_per_token": {"estimator": est["kv_bytes_per_token"], "torch": kv_real / args.tokens,
                               "ratio": est["kv_bytes_per_token"] * args.tokens / kv_real if kv_real else None},
        "kv_cache_bytes": {"estimator": est["kv_cache_per_gpu_bytes"], "torch": kv_real},
        "prefill_peak_bytes_above_weights_and_kv": peak - weights_real - kv_real,
        "estimator_activation_plus_overhead_bytes": est["activation_per_gpu_bytes"] + est["runtime_overhead_per_gpu_bytes"],
        "estimator_need_bytes": est["need_per_gpu_bytes"],
        "torch_peak_bytes": peak,
        "memory_after_prefill_bytes": torch.cuda.memory_allocated() - before,
        "seconds": round(time.monotonic() - started, 2),
    }
    os.makedirs(args.outdir, exist_ok=True)
    with open(os.path.join(args.outdir, "estimator_vs_torch.json"), "w", encoding="utf-8") as fileobj:
        json.dump(result, fileobj, indent=2)
    print(json.dumps(result, indent=2))
    ok = abs(result["weights_bytes"]["ratio"] - 1) < 0.02 and abs(result["kv_bytes_per_token"]["ratio"] - 1) < 0.02
    print("estimator within 2 %% of PyTorch for weights and KV cache: %s" % ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
