# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host plan (gpu_stack_models): validation with every problem named, GPU placement,
memory shares, the single-model plans, the checks of models together, and the table."""

from __future__ import annotations

import tempfile

import pytest

import fake_pynvml as fake
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _nvml as n
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _plan as plan
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _preflight as p
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _fsutil as fsutil
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_catalogue as catalogue

GIB = 1024 ** 3
MIB = 1024 ** 2
HOST = {"mem_total_bytes": 256 * GIB, "mem_available_bytes": 200 * GIB}
QWEN_7B = {"name": "qwen-7b", "profile": "deepseek-r1-distill-qwen-7b"}
QWEN_15B = {"name": "qwen-1.5b", "profile": "deepseek-r1-distill-qwen-1.5b"}
QWEN_14B = {"name": "qwen-14b", "profile": "deepseek-r1-distill-qwen-14b"}


def facts(nvml, tmp_path):
    root = tempfile.mkdtemp(dir=str(tmp_path))
    return n.collect_gpu_facts(nvml=nvml, sysfs_root=fake.empty_sysfs(root), proc_root=root)


def problems_of(models, **kwargs):
    with pytest.raises(plan.PlanError) as exc:
        plan.normalize_models(models, **kwargs)
    return exc.value.problems


def reports_for(items, gpu, host=None):
    """What deploy_preflight does with a list: normalize, place, share, preflight each model."""
    models = plan.normalize_models(items)
    usable = [g["index"] for g in p.usable_gpus(gpu)]
    assignment = plan.assign_gpus(models, usable)
    shares = plan.memory_shares(models, assignment, len(usable))
    reports = []
    for model in models:
        report = p.run_preflight(catalogue.get_profile(model["profile"]),
                                 plan.plan_to_preflight(model, assignment[model["name"]], shares.get(model["name"]),
                                                        len(usable)), gpu, host or HOST)
        report["name"] = model["name"]
        reports.append(report)
    return reports


# --- normalize_models ---------------------------------------------------------------------------

def test_defaults_are_filled():
    models = plan.normalize_models([dict(QWEN_7B), dict(QWEN_15B)])
    first, second = models
    assert (first["port"], first["port_green"], second["port"], second["port_green"]) == (8001, 8002, 8003, 8004)
    assert first["engine"] == "auto" and first["gpus"] == "auto" and first["dtype"] == "auto"
    assert first["quantization"] == "none" and first["kv_cache_dtype"] == "auto"
    assert (first["tensor_parallel_size"], first["pipeline_parallel_size"]) == (1, 1)
    for key in ("max_model_len", "max_num_seqs", "gpu_memory_utilization", "max_num_batched_tokens", "threads",
                "file", "revision", "source", "model_path", "architecture"):
        assert first[key] is None, key
    assert first["extra_args"] == [] and first["var"] == "gpu_stack_models[0]" and second["index"] == 1
    assert first["profile"] == "deepseek-r1-distill-qwen-7b"


def test_values_are_kept_and_templated_numbers_accepted():
    model = plan.normalize_models([{
        "name": "r1-32b", "profile": "DeepSeek-R1-Distill-Qwen-32B", "engine": "vllm", "dtype": "bf16",
        "quantization": "AWQ", "kv_cache_dtype": "fp8", "tensor_parallel_size": "2", "gpus": [1, "0"],
        "max_model_len": 16384, "max_num_seqs": 8, "gpu_memory_utilization": "0.85",
        "max_num_batched_tokens": 4096, "port": 9001, "port_green": 9002, "extra_args": ["--enable-prefix-caching"],
        "revision": "abc", "source": {"type": "hf"}, "model_path": "/data/r1"}])[0]
    assert model["profile"] == "deepseek-r1-distill-qwen-32b" and model["quantization"] == "awq"
    assert model["tensor_parallel_size"] == 2 and model["gpus"] == [1, 0]
    assert model["gpu_memory_utilization"] == 0.85 and model["max_model_len"] == 16384
    assert (model["port"], model["port_green"]) == (9001, 9002) and model["source"] == {"type": "hf"}


def test_a_gguf_file_needs_no_profile():
    model = plan.normalize_models([{"name": "smol", "file": "SmolLM2-135M-Instruct.Q4_1.gguf", "engine": "llama_cpp",
                                    "threads": 2}])[0]
    assert model["profile"] is None and model["architecture"] is None and model["threads"] == 2


def test_not_a_list():
    with pytest.raises(plan.PlanError) as exc:
        plan.normalize_models({"name": "qwen"})
    assert exc.value.problems == ["gpu_stack_models is {'name': 'qwen'}: it must be a list of served models, each a "
                                  "mapping with at least name and profile (or architecture, or a .gguf file)"]
    assert isinstance(exc.value, ValueError)


def test_the_variable_name_is_used_in_messages():
    problems = problems_of([{"name": "a", "profile": "nope"}], var="hostvars_models")
    assert problems[0].startswith("hostvars_models[0].profile is 'nope'")


@pytest.mark.parametrize("item, fragments", [
    ("qwen", ["gpu_stack_models[0] is 'qwen': each served model is a mapping"]),
    ({"profile": "deepseek-v3"}, ["gpu_stack_models[0] has no name"]),
    ({"name": "My Model", "profile": "deepseek-v3"},
     ["gpu_stack_models[0].name is 'My Model': not a served model name", "use 'my-model'"]),
    ({"name": "a", "profile": "llama-9b"},
     ["gpu_stack_models[0].profile is 'llama-9b': not a built-in model profile",
      "use one of deepseek-r1, deepseek-r1-distill-llama-70b", "smollm2-135m-instruct"]),
    ({"name": "a", "profile": "deepseek-v3", "architecture": {"num_hidden_layers": 2}},
     ["gpu_stack_models[0] sets both profile ('deepseek-v3') and architecture: give one of them"]),
    ({"name": "a"}, ["gpu_stack_models[0] gives neither profile nor architecture, and file None is not a .gguf file"]),
    ({"name": "a", "file": "model.safetensors"}, ["gives neither profile nor architecture, and file 'model.safetensors'"]),
    ({"name": "a", "profile": "deepseek-v3", "engine": "llama_cpp"},
     ["gpu_stack_models[0].file is None: engine llama_cpp serves a GGUF file; set file to the .gguf file's name"]),
    ({"name": "a", "profile": "deepseek-v3", "engine": "tgi"},
     ["gpu_stack_models[0].engine is 'tgi': not an engine; use one of auto, vllm, sglang, llama_cpp"]),
    ({"name": "a", "profile": "deepseek-v3", "tensor_parallel_size": 0},
     ["gpu_stack_models[0].tensor_parallel_size is 0: must be a positive integer"]),
    ({"name": "a", "profile": "deepseek-v3", "pipeline_parallel_size": True},
     ["gpu_stack_models[0].pipeline_parallel_size is True: must be a positive integer"]),
    ({"name": "a", "profile": "deepseek-v3", "gpus": "some"},
     ["gpu_stack_models[0].gpus is 'some': must be \"all\" or a list of GPU indices"]),
    ({"name": "a", "profile": "deepseek-v3", "gpus": [-1]}, ["gpu_stack_models[0].gpus is [-1]: must be \"all\""]),
    ({"name": "a", "profile": "deepseek-v3", "gpus": [0, 0]}, ["gpus is [0, 0]: names a GPU twice; list each GPU once"]),
    ({"name": "a", "profile": "deepseek-v3", "gpus": [0], "tensor_parallel_size": 2},
     ["gpus is [0]: lists 1 GPU but tensor_parallel_size x pipeline_parallel_size is 2; list 2 GPUs"]),
    ({"name": "a", "profile": "deepseek-v3", "gpu_memory_utilization": 1.5},
     ["gpu_stack_models[0].gpu_memory_utilization is 1.5: must be a fraction in (0, 1]"]),
    ({"name": "a", "profile": "deepseek-v3", "gpu_memory_utilization": 0}, ["gpu_memory_utilization is 0: must be"]),
    ({"name": "a", "file": "m.gguf", "engine": "llama_cpp", "gpu_memory_utilization": 0.5},
     ["gpu_memory_utilization is 0.5: llama_cpp takes no memory fraction"]),
    ({"name": "a", "file": "m.gguf", "engine": "llama_cpp", "tensor_parallel_size": 2},
     ["tensor_parallel_size is 2: llama_cpp serves on one device"]),
    ({"name": "a", "profile": "deepseek-v3", "max_model_len": -4}, ["max_model_len is -4: must be a positive integer"]),
    ({"name": "a", "profile": "deepseek-v3", "port": 70000}, ["gpu_stack_models[0].port is 70000: not a TCP port"]),
    ({"name": "a", "profile": "deepseek-v3", "extra_args": "--seed 1"}, ["extra_args is '--seed 1': must be a list"]),
    ({"name": "a", "profile": "deepseek-v3", "dtype": "int3"}, ["dtype is 'int3': not a weight format"]),
    ({"name": "a", "profile": "deepseek-v3", "quantization": "magic"}, ["quantization is 'magic': not a quantization"]),
    ({"name": "a", "profile": "deepseek-v3", "kv_cache_dtype": "int2"}, ["kv_cache_dtype is 'int2': not a KV cache"]),
    ({"name": "a", "profile": "deepseek-v3", "revision": 5}, ["revision is 5: must be a string"]),
    ({"name": "a", "profile": "deepseek-v3", "source": "hf"}, ["source is 'hf': must be a dict"]),
    ({"name": "a", "profile": "deepseek-v3", "model_path": "models/a"}, ["model_path is 'models/a': not an absolute"]),
    ({"name": "a", "profile": "deepseek-v3", "file": "../x.gguf"}, ["file is '../x.gguf': not a file name"]),
    ({"name": "a", "architecture": {"hidden_size": 64}},
     ["gpu_stack_models[0].architecture: invalid model architecture: num_hidden_layers is missing"]),
    ({"name": "a", "profile": "deepseek-v3", "contxt": 4096},
     ["gpu_stack_models[0].contxt is not a known key; the keys of a served model are: name, profile"]),
])
def test_each_problem_names_path_value_and_fix(item, fragments):
    text = " | ".join(problems_of([item]))
    for fragment in fragments:
        assert fragment in text


def test_every_problem_is_listed_at_once():
    problems = problems_of([
        {"name": "a", "profile": "nope", "tensor_parallel_size": 0},
        {"name": "a", "profile": "deepseek-v3", "gpus": "x"},
        "junk",
    ])
    assert len(problems) == 5
    text = " | ".join(problems)
    assert "gpu_stack_models[0].profile" in text and "gpu_stack_models[0].tensor_parallel_size" in text
    assert "gpu_stack_models[1].gpus" in text and "gpu_stack_models[2] is 'junk'" in text
    assert "gpu_stack_models[0].name, gpu_stack_models[1].name all have name 'a'" in text


def test_duplicate_ports_between_blue_and_green_of_different_items():
    problems = problems_of([dict(QWEN_7B), dict(QWEN_15B, port=8002)])
    assert problems == ["gpu_stack_models[0].port_green, gpu_stack_models[1].port all use port 8002: every engine "
                        "instance (blue and green of each model) and every gateway needs its own port; set one of "
                        "them to a free one, such as 8003"]


def test_gateway_ports_default_per_item_and_must_not_collide():
    models = plan.normalize_models([dict(QWEN_7B), dict(QWEN_15B)])
    assert [m["gateway_port"] for m in models] == [8080, 8081]
    problems = problems_of([dict(QWEN_7B, gateway_port=8002)])
    assert problems == ["gpu_stack_models[0].port_green, gpu_stack_models[0].gateway_port all use port 8002: every "
                        "engine instance (blue and green of each model) and every gateway needs its own port; set "
                        "one of them to a free one, such as 8003"]


def test_plan_error_message_counts_problems():
    error = plan.PlanError(["one", "two"])
    assert str(error) == "gpu_stack_models is not a valid plan (2 problems): one | two"


# --- engines and GPUs ------------------------------------------------------------------------------

@pytest.mark.parametrize("item, gpus, engine", [
    ({"name": "a", "profile": "deepseek-v3"}, 8, "vllm"),
    ({"name": "a", "profile": "deepseek-v3"}, 0, "llama_cpp"),
    ({"name": "a", "profile": "smollm2-135m-instruct", "file": "s.gguf"}, 8, "llama_cpp"),
    ({"name": "a", "profile": "deepseek-v3", "engine": "sglang"}, 0, "sglang"),
])
def test_resolve_engine(item, gpus, engine):
    assert plan.resolve_engine(plan.normalize_models([item])[0], gpus) == engine


def test_assign_gpus_in_order_after_explicit_claims():
    models = plan.normalize_models([
        dict(QWEN_7B, tensor_parallel_size=2),           # auto: 2 GPUs
        dict(QWEN_15B, gpus=[0]),                        # explicit: claims 0 first
        dict(QWEN_14B),                                  # auto: next free
    ])
    assert plan.assign_gpus(models, 4) == {"qwen-1.5b": [0], "qwen-7b": [1, 2], "qwen-14b": [3]}
    assert plan.shared_gpus({"qwen-1.5b": [0], "qwen-7b": [1, 2], "qwen-14b": [3]}) == {}


def test_assign_gpus_all_and_sharing():
    models = plan.normalize_models([dict(QWEN_7B, gpus="all", tensor_parallel_size=4), dict(QWEN_15B, gpus=[2])])
    assignment = plan.assign_gpus(models, 4)
    assert assignment == {"qwen-7b": [0, 1, 2, 3], "qwen-1.5b": [2]}
    assert plan.shared_gpus(assignment) == {2: ["qwen-1.5b", "qwen-7b"]}


def test_a_gpu_index_the_host_lacks():
    models = plan.normalize_models([dict(QWEN_7B, gpus=[0, 5], tensor_parallel_size=2)])
    with pytest.raises(plan.PlanError) as exc:
        plan.assign_gpus(models, 2)
    assert exc.value.problems == ["gpu_stack_models[0].gpus is [0, 5] but the host has no usable GPU 5: it has 2 "
                                  "(indices 0, 1); list GPUs from those, or leave gpus unset to take the next free "
                                  "ones"]


def test_usable_indices_with_a_gap():
    models = plan.normalize_models([dict(QWEN_7B, gpus=[2]), dict(QWEN_15B, tensor_parallel_size=2)])
    with pytest.raises(plan.PlanError, match=r"no usable GPU 2: it has 3 \(indices 0, 1, 3\)"):
        plan.assign_gpus(models, [0, 1, 3])
    assert plan.assign_gpus(plan.normalize_models([dict(QWEN_7B, tensor_parallel_size=2), dict(QWEN_15B)]),
                            [0, 1, 3]) == {"qwen-7b": [0, 1], "qwen-1.5b": [3]}


def test_all_must_match_the_parallel_sizes():
    models = plan.normalize_models([dict(QWEN_7B, gpus="all")])
    with pytest.raises(plan.PlanError) as exc:
        plan.assign_gpus(models, 4)
    assert ("gpu_stack_models[0].gpus is 'all' (4 GPUs) but the model uses tensor_parallel_size x "
            "pipeline_parallel_size = 1: set tensor_parallel_size to 4") in exc.value.problems[0]


def test_auto_without_a_free_gpu():
    models = plan.normalize_models([dict(QWEN_7B, tensor_parallel_size=2), dict(QWEN_15B)])
    with pytest.raises(plan.PlanError) as exc:
        plan.assign_gpus(models, 2)
    assert exc.value.problems == [
        "gpu_stack_models[1].gpus is unset (the next free GPUs) but qwen-1.5b needs 1 GPU and none of the host's 2 "
        "GPUs is free (GPU 0: qwen-7b; GPU 1: qwen-7b): list the GPUs to share explicitly, such as gpus: [0], "
        "lower tensor_parallel_size, or serve the model on another host"]


def test_more_gpus_than_the_host_has_are_left_to_the_preflight():
    models = plan.normalize_models([{"name": "v3", "profile": "deepseek-v3", "tensor_parallel_size": 16}])
    assert plan.assign_gpus(models, 8) == {"v3": list(range(8))}


def test_cpu_host():
    models = plan.normalize_models([{"name": "smol", "file": "s.gguf"}, dict(QWEN_7B)])
    assert plan.assign_gpus(models, 0) == {"smol": [], "qwen-7b": []}
    with pytest.raises(plan.PlanError, match=r"gpu_stack_models\[0\].gpus is \[0\] but the host has no usable GPU"):
        plan.assign_gpus(plan.normalize_models([dict(QWEN_7B, gpus=[0])]), 0)


def test_llama_cpp_on_a_gpu_host_takes_one_gpu():
    models = plan.normalize_models([{"name": "smol", "file": "s.gguf"}, dict(QWEN_7B)])
    assert plan.assign_gpus(models, 2) == {"smol": [0], "qwen-7b": [1]}


def test_memory_shares():
    models = plan.normalize_models([dict(QWEN_7B, gpus=[0]), dict(QWEN_15B, gpus=[0]),
                                    dict(QWEN_14B, gpus=[1])])
    assignment = plan.assign_gpus(models, 2)
    assert plan.memory_shares(models, assignment, 2) == {"qwen-7b": 0.45, "qwen-1.5b": 0.45}
    models = plan.normalize_models([dict(QWEN_7B, gpus=[0], gpu_memory_utilization=0.6), dict(QWEN_15B, gpus=[0])])
    assert plan.memory_shares(models, plan.assign_gpus(models, 1), 1) == {"qwen-1.5b": 0.3}
    models = plan.normalize_models([dict(QWEN_7B, gpus=[0]), dict(QWEN_15B, gpus=[0]),
                                    {"name": "smol", "file": "s.gguf", "gpus": [0]}])
    # three parts of 0.90: the llama.cpp model's estimate has to fit in its part
    assert plan.memory_shares(models, plan.assign_gpus(models, 1), 1) == {"qwen-7b": 0.3, "qwen-1.5b": 0.3}
    models = plan.normalize_models([dict(QWEN_7B, gpus=[0], gpu_memory_utilization=0.5),
                                    dict(QWEN_15B, gpus=[0], gpu_memory_utilization=0.4)])
    assert plan.memory_shares(models, plan.assign_gpus(models, 1), 1) == {}


def test_plan_to_preflight_maps_and_keeps_what_was_set():
    model = plan.normalize_models([dict(QWEN_7B, max_model_len=8192, dtype="bf16", quantization="fp8",
                                        tensor_parallel_size=2)])[0]
    single = plan.plan_to_preflight(model, [2, 3], 0.45, 4)
    assert single["context_length"] == 8192 and single["max_num_seqs"] is None
    assert single["dtype"] == "fp8" and single["activation_dtype"] == "bf16"
    assert single["gpu_indices"] == [2, 3] and single["gpu_memory_utilization_cap"] == 0.45
    assert single["engine"] == "vllm" and single["gpu_memory_utilization"] is None
    assert plan.plan_to_preflight(plan.normalize_models([dict(QWEN_7B)])[0], [], None, 0)["engine"] == "llama_cpp"


def test_the_preflight_reports_what_the_item_set(tmp_path):
    gpu = facts(fake.hgx_h200(2), tmp_path)
    report = reports_for([dict(QWEN_7B, max_model_len=8192, gpus=[1])], gpu)[0]
    assert report["gpus_used"] == [1]
    source = report["engine_settings"]["source"]
    assert source["max_model_len"] == "set" and source["max_num_seqs"] == "derived"
    assert source["gpu_memory_utilization"] == "derived" and source["max_num_batched_tokens"] == "derived"
    assert report["engine_settings"]["max_model_len"] == 8192 and report["engine_settings"]["max_num_seqs"] == 16


# --- check_together ----------------------------------------------------------------------------------

def test_two_models_that_fit_on_one_gpu(tmp_path):
    gpu = facts(fake.pcie_l40s(), tmp_path)
    reports = reports_for([dict(QWEN_7B, gpus=[0]), dict(QWEN_15B, gpus=[0])], gpu)
    assert not any(r["blocked"] for r in reports)
    assert [r["plan"]["gpu_memory_utilization"] for r in reports] == [0.45, 0.45]
    results = plan.check_together(reports, p.usable_gpus(gpu), HOST)
    shared = [c for c in results if c["check"] == "shared_gpu"]
    assert len(shared) == 1 and shared[0]["ok"]
    total = 46068 * MIB
    assert shared[0]["numbers"]["claimed_bytes"] == 2 * int(0.45 * total)
    assert shared[0]["numbers"]["claimed_fraction"] == 0.9
    assert shared[0]["message"].startswith("fit together: GPU 0 (NVIDIA L40S, 45.0 GiB) is shared by qwen-7b and "
                                           "qwen-1.5b")
    ram = [c for c in results if c["check"] == "host_ram_together"][0]
    assert ram["ok"] and ram["numbers"]["needed_bytes"] == 4 * GIB


def test_two_models_that_do_not_fit_on_one_gpu(tmp_path):
    gpu = facts(fake.pcie_l40s(), tmp_path)
    reports = reports_for([dict(QWEN_7B, gpus=[0], gpu_memory_utilization=0.6),
                           dict(QWEN_15B, gpus=[0], gpu_memory_utilization=0.6)], gpu)
    result = plan.check_together(reports, p.usable_gpus(gpu), HOST)[0]
    assert not result["ok"] and result["severity"] == "blocking" and result["check"] == "shared_gpu"
    assert "models do not fit together: GPU 0 (NVIDIA L40S, 45.0 GiB) is shared by qwen-7b and qwen-1.5b" in \
        result["message"]
    assert "1.20 of the GPU" in result["message"]
    fixes = result["fix"].split(", or ")
    assert fixes[0] == "give each model its own GPUs (free on this host: 1)"
    # qwen-7b needs at least 2048 x 1 on 45 GiB: weights 14.2 GiB + ... -> 0.36; qwen-1.5b -> 0.11;
    # the spare up to 0.90 split evenly: (0.90 - 0.47) / 2 = 0.21 each
    minimum_7b = reports[0]["derivation"]["minimum_need_bytes"]
    minimum_15b = reports[1]["derivation"]["minimum_need_bytes"]
    total = 46068 * MIB
    low_7b, low_15b = -(-100 * minimum_7b // total) / 100.0, -(-100 * minimum_15b // total) / 100.0
    assert (low_7b, low_15b) == (0.36, 0.11)
    assert fixes[1] == "set gpu_memory_utilization to 0.32 for qwen-1.5b, 0.57 for qwen-7b (settings left unset " \
                       "are then derived within them)"
    assert fixes[2] == "leave the plan refused"


def test_models_that_cannot_share_even_with_lower_fractions(tmp_path):
    gpu = facts(fake.FakeNvml([fake.l40s(0)]), tmp_path)
    reports = reports_for([dict(QWEN_14B, gpus=[0], gpu_memory_utilization=0.6, max_model_len=8192, max_num_seqs=1),
                           dict(QWEN_7B, gpus=[0], gpu_memory_utilization=0.5, max_model_len=8192, max_num_seqs=1)],
                          gpu)
    result = plan.check_together(reports, p.usable_gpus(gpu), HOST)[0]
    assert not result["ok"]
    assert result["fix"].startswith("give each model its own GPUs (none is free on this host: serve one of them "
                                    "on another host), or lowering gpu_memory_utilization cannot fit them")


def test_sharing_near_the_limit_warns(tmp_path):
    gpu = facts(fake.pcie_l40s(), tmp_path)
    reports = reports_for([dict(QWEN_15B, gpus=[0], gpu_memory_utilization=0.5, max_model_len=4096, max_num_seqs=1),
                           dict(QWEN_7B, gpus=[0], gpu_memory_utilization=0.48, max_model_len=4096, max_num_seqs=1)],
                          gpu)
    result = plan.check_together(reports, p.usable_gpus(gpu))[0]
    assert not result["ok"] and result["severity"] == "warning" and "0.98 of the GPU" in result["message"]


def test_a_llama_cpp_model_claims_its_estimate(tmp_path):
    gpu = facts(fake.FakeNvml([fake.l40s(0)]), tmp_path)
    vllm = reports_for([dict(QWEN_7B, gpus=[0], gpu_memory_utilization=0.9, max_model_len=4096, max_num_seqs=1)],
                       gpu)[0]
    profile = catalogue.get_profile("deepseek-r1-distill-qwen-7b")
    llama = p.run_preflight(profile, {"engine": "llama_cpp", "dtype": "Q4_K_M", "context_length": 4096,
                                      "max_num_seqs": 1, "gpu_indices": [0]}, gpu, HOST)
    llama["name"] = "qwen-7b-gguf"
    result = plan.check_together([vllm, llama], p.usable_gpus(gpu), HOST)[0]
    need = llama["estimate"]["need_per_gpu_bytes"]
    assert result["numbers"]["claims"]["qwen-7b-gguf"]["bytes"] == need
    assert result["numbers"]["claimed_bytes"] == int(0.9 * 46068 * MIB) + need
    assert not result["ok"] and result["severity"] == "blocking"
    assert "qwen-7b-gguf %s (estimate)" % fsutil.format_bytes(need) in result["message"]


def test_cpu_models_share_the_host_ram(tmp_path):
    gpu = facts(fake.library_missing(), tmp_path)
    profile = catalogue.get_profile("smollm2-135m-instruct")
    reports = []
    for name in ("a", "b"):
        report = p.run_preflight(profile, {"engine": "llama_cpp", "dtype": "Q4_1", "context_length": 8192,
                                           "max_num_seqs": 4}, gpu, HOST)
        report["name"] = name
        reports.append(report)
    need = reports[0]["estimate"]["need_per_gpu_bytes"]
    ok = plan.check_together(reports, [], {"mem_available_bytes": 3 * need})
    assert ok[0]["check"] == "host_ram_together" and ok[0]["ok"] and ok[0]["numbers"]["needed_bytes"] == 2 * need
    short = plan.check_together(reports, [], {"mem_available_bytes": need + need // 2})[0]
    assert not short["ok"] and short["severity"] == "blocking"
    assert short["message"].startswith("models do not fit in RAM together: a and b need")
    assert plan.check_together(reports[:1], [], {"mem_available_bytes": need}) == []


def test_shared_gpu_without_known_memory():
    reports = [{"name": "a", "gpus_used": [0], "plan": {"engine": "vllm", "gpu_memory_utilization": 0.45}},
               {"name": "b", "gpus_used": [0], "plan": {"engine": "vllm", "gpu_memory_utilization": 0.45}}]
    result = plan.check_together(reports, [{"index": 0, "memory_total": None}])[0]
    assert not result["ok"] and result["severity"] == "warning" and "not known yet" in result["message"]


# --- the table ----------------------------------------------------------------------------------

def test_plan_table(tmp_path):
    gpu = facts(fake.pcie_l40s(), tmp_path)
    reports = reports_for([dict(QWEN_7B, gpus=[0], gpu_memory_utilization=0.6),
                           dict(QWEN_15B, gpus=[0], max_model_len=4096, max_num_seqs=4, gpu_memory_utilization=0.6)],
                          gpu)
    together = plan.check_together(reports, p.usable_gpus(gpu), HOST)
    lines = plan.plan_table(reports, together)
    assert lines[0].split() == ["model", "engine", "GPUs", "context", "x", "seqs", "need", "per", "GPU", "verdict",
                                "first", "problem"]
    assert len(lines) == 3
    assert lines[1].startswith("qwen-7b                         vllm      0           32768 derived x ")
    assert "BLOCKED shared_gpu: models do not fit together" in lines[1]
    assert "4096 set x 4 set" in lines[2] and "BLOCKED" in lines[2]
    # the second shares GPU 0 with 0.90 - 0.60 = 0.30 left: derived within it, together they fit
    fits = reports_for([dict(QWEN_7B, gpus=[0], gpu_memory_utilization=0.6), dict(QWEN_15B, gpus=[0])], gpu)
    rows = plan.plan_table(fits, plan.check_together(fits, p.usable_gpus(gpu), HOST))
    assert fits[1]["plan"]["gpu_memory_utilization"] == 0.3
    # 0.30 x 45.0 GiB x 0.95 = 12.8 GiB: weights 3.3 + runtime 1.2 + activations 0.5 GiB, then 28,672 B x 32768
    # = 0.875 GiB of KV per sequence: 8 sequences (12.0 GiB), 9 would need 12.9 GiB
    assert rows[2].startswith("qwen-1.5b                       vllm      0           32768 derived x 8 derived   12.0 GiB")
    assert rows[1].rstrip().endswith("ok") and rows[2].rstrip().endswith("ok")
    # a name longer than its column is kept whole
    long_name = "deepseek-r1-distill-qwen-1.5b-for-the-support-team"
    reports = reports_for([dict(QWEN_15B, name=long_name)], gpu)
    assert plan.plan_table(reports)[1].startswith(long_name + " vllm      0 ")


@pytest.mark.parametrize("name,expected", [
    ("deepseek-r1-distill-qwen-1.5b", "deepseek-r1-distill-qwen-1-5b"), ("Qwen2.5_7B", "qwen2-5-7b"),
    ("a" * 50, "a" * 40), ("...", "model"),
])
def test_instance_name(name, expected):
    assert plan.instance_name(name) == expected


def test_names_that_become_the_same_instance_are_refused():
    with pytest.raises(plan.PlanError) as exc:
        plan.normalize_models([{"name": "qwen-1.5b", "profile": "smollm2-135m-instruct"},
                               {"name": "qwen-1_5b", "profile": "smollm2-135m-instruct", "port": 8101,
                                "port_green": 8102, "gateway_port": 8181}])
    assert "'qwen-1.5b', 'qwen-1_5b' become the same unit and state name 'qwen-1-5b'" in str(exc.value)
