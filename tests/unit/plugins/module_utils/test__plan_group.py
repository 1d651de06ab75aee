# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The group keys of a served model: group, layout and cluster."""

from __future__ import annotations

import pytest

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _plan as plan


def v3(**changes):
    item = {"name": "deepseek-v3", "profile": "deepseek-v3", "engine": "vllm", "dtype": "fp8", "group": "h100_pair",
            "layout": {"nodes": 2, "tensor_parallel_size": 8, "pipeline_parallel_size": 2},
            "cluster": {"interface": "ens1f0"}}
    item.update(changes)
    return item


def problems(item):
    with pytest.raises(plan.PlanError) as err:
        plan.normalize_models([item])
    return err.value.problems


def test_group_model_normalized_with_cluster_defaults():
    model = plan.normalize_models([v3()])[0]
    assert model["group"] == "h100_pair"
    assert model["layout"] == {"nodes": 2, "tensor_parallel_size": 8, "pipeline_parallel_size": 2}
    assert model["cluster"]["interface"] == "ens1f0"
    assert model["cluster"]["ray_port"] == 6379
    assert model["cluster"]["shm_size"] == "32g"
    assert plan.group_models([model]) == [model]
    assert plan.host_models([model]) == []


def test_model_without_group_has_none():
    model = plan.normalize_models([{"name": "m", "profile": "deepseek-r1-distill-qwen-7b"}])[0]
    assert model["group"] is None and model["layout"] is None and model["cluster"] is None


@pytest.mark.parametrize("changes,fragment", [
    ({"layout": {"nodes": 2, "tensor_parallel_size": 4, "pipeline_parallel_size": 4}},
     "gpu_stack_models[0].layout.pipeline_parallel_size is 4: with vLLM, pipeline parallel crosses the nodes"),
    ({"layout": {"nodes": 3, "tensor_parallel_size": 8, "pipeline_parallel_size": 1}, "engine": "sglang"},
     "is not a multiple of nodes (3)"),
    ({"layout": {"nodes": 1, "tensor_parallel_size": 8, "pipeline_parallel_size": 1}},
     "gpu_stack_models[0].layout.nodes is 1: must be a whole number of 2 or more"),
    ({"layout": None}, "a group model needs a layout"),
    ({"layout": {"nodes": 2, "tensor_parallel_size": 8, "pipeline_parallel_size": 2, "gpus": 8}},
     "gpu_stack_models[0].layout.gpus is 8: not a layout key; the keys are nodes"),
    ({"cluster": {}}, "gpu_stack_models[0].cluster.interface is None"),
    ({"cluster": {"interface": "ens1f0", "ray_port": 70000}}, "gpu_stack_models[0].cluster.ray_port is 70000"),
    ({"cluster": {"interface": "ens1f0", "shm_size": "lots"}}, "gpu_stack_models[0].cluster.shm_size is 'lots'"),
    ({"cluster": {"interface": "ens1f0", "host_ip_source": "dns"}}, "cluster.host_ip_source is 'dns'"),
    ({"cluster": {"interface": "ens1f0", "nccl": 1}}, "gpu_stack_models[0].cluster.nccl is not a cluster setting"),
    ({"engine": "llama_cpp", "file": "m.gguf"}, "a model served by a group runs vLLM (with Ray) or SGLang"),
    ({"tensor_parallel_size": 8}, "takes them from layout"),
    ({"group": "h100-pair"}, "gpu_stack_models[0].group is 'h100-pair': not an inventory group name"),
])
def test_bad_group_keys_are_named(changes, fragment):
    found = problems(v3(**changes))
    assert any(fragment in p for p in found), found


def test_layout_without_group_is_refused():
    item = {"name": "m", "profile": "deepseek-r1-distill-qwen-7b", "layout": {"nodes": 2}}
    assert any("only a model served by a group of nodes has one" in p for p in problems(item))


def test_sglang_spans_the_nodes_with_tensor_parallel():
    model = plan.normalize_models([v3(engine="sglang", layout={"nodes": 2, "tensor_parallel_size": 16,
                                                               "pipeline_parallel_size": 1})])[0]
    assert model["layout"]["tensor_parallel_size"] == 16
