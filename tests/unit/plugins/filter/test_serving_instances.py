# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.gpu_stack.plugins.filter.serving_instances import FilterModule as Instances
from ansible_collections.llmops.gpu_stack.plugins.filter.serving_instances import instance_name
from ansible_collections.llmops.gpu_stack.plugins.filter.instance_name import FilterModule as InstanceName
from ansible_collections.llmops.gpu_stack.plugins.filter.serving_plan_items import FilterModule as PlanItems

instances = Instances().filters()["serving_instances"]
plan_items = PlanItems().filters()["serving_plan_items"]


def report(name="DeepSeek-R1-Distill-Qwen-32B", engine="vllm", **extra):
    return dict({
        "name": name, "engine": engine, "device": "gpu", "model_path": "/srv/models/" + name,
        "port": 8001, "port_green": 8002, "gateway_port": 8080, "gpus_used": [0, 1],
        "plan": {"tensor_parallel_size": 2, "pipeline_parallel_size": 1},
        "engine_settings": {"max_model_len": 32768, "max_num_seqs": 16, "max_num_batched_tokens": 8192,
                            "gpu_memory_utilization": 0.9, "dtype": "bfloat16", "quantization": None},
        "estimate": {"weights_bytes": 65536 << 20}, "blocked": False,
    }, **extra)


def test_vllm_instance_has_both_colours_and_the_derived_settings():
    (got,) = instances({"models": [report()]}, [{"name": "DeepSeek-R1-Distill-Qwen-32B"}])
    assert got["instance"] == "deepseek-r1-distill-qwen-32b"
    assert got["current_path"] == "/srv/models/DeepSeek-R1-Distill-Qwen-32B/current"
    assert (got["gpus"], got["weights_bytes"]) == ([0, 1], 65536 << 20)
    blue = got["argvs"]["blue"]
    assert blue[blue.index("--port") + 1] == "8001" and got["argvs"]["green"][blue.index("--port") + 1] == "8002"
    for flag, value in (("--tensor-parallel-size", "2"), ("--max-model-len", "32768"), ("--max-num-seqs", "16"),
                        ("--gpu-memory-utilization", "0.9"), ("--dtype", "bfloat16")):
        assert blue[blue.index(flag) + 1] == value, (flag, blue)


def test_llama_cpp_on_the_cpu_offloads_nothing():
    rep = report("smollm2", engine="llama_cpp", device="cpu", gpus_used=[], plan={},
                 engine_settings={"max_model_len": 8192, "max_num_seqs": 4})
    (got,) = instances({"models": [rep]}, [{"name": "smollm2", "file": "m.gguf"}], threads=2)
    argv = got["argvs"]["blue"]
    assert argv[argv.index("--model") + 1] == "/models/m.gguf"
    assert "--gpu-memory-utilization" not in argv


def test_a_model_served_by_a_group_is_not_a_host_instance():
    """deploy_preflight leaves group models out of its reports; the filter leaves them out of the plan."""
    group = {"name": "v3", "group": "h100_pair", "layout": {"nodes": 2, "tensor_parallel_size": 8}}
    (got,) = instances({"models": [report()]}, [group, {"name": "DeepSeek-R1-Distill-Qwen-32B"}])
    assert got["instance"] == "deepseek-r1-distill-qwen-32b"


@pytest.mark.parametrize("result,models,match", [
    ({}, [], "expects the result of deploy_preflight"),
    ({"models": [report()]}, [], "checked 1 models, the plan has 0"),
    ({"models": [report()]}, [{"name": "other"}], "is not the plan's 'other'"),
    ({"models": [report(blocked=True, blocking=["does not fit"])]}, [{"name": "DeepSeek-R1-Distill-Qwen-32B"}],
     "blocked DeepSeek-R1-Distill-Qwen-32B: does not fit"),
])
def test_a_plan_the_preflight_did_not_approve_is_an_error(result, models, match):
    with pytest.raises(AnsibleFilterError, match=match):
        instances(result, models)


@pytest.mark.parametrize("name,expected", [("Qwen2.5-7B_Instruct", "qwen2-5-7b-instruct"), ("...", "model")])
def test_instance_names(name, expected):
    assert instance_name(name) == expected
    # The filter playbooks use (rollback.yml) applies the same rule.
    assert InstanceName().filters()["instance_name"](name) == expected


def test_plan_items_drop_the_role_keys_only():
    assert plan_items([{"name": "a", "instance": "x", "current_path": "/c", "engine": "vllm"}]) == [
        {"name": "a", "engine": "vllm"}]
