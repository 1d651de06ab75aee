# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import copy

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.gpu_stack.plugins.filter.cluster_plan import FilterModule

cluster_plan = FilterModule().filters()["cluster_plan"]

GROUPS = {"all": ["a", "b", "c", "solo"], "pair": ["a", "b"], "trio": ["a", "b", "c"], "ungrouped": ["solo"]}
VLLM = {"name": "deepseek-v3", "profile": "deepseek-v3", "engine": "vllm", "group": "pair",
        "layout": {"nodes": 2, "tensor_parallel_size": 8, "pipeline_parallel_size": 2},
        "cluster": {"interface": "ens1f0"}}
SGLANG = {"name": "r1", "profile": "deepseek-r1", "engine": "sglang", "group": "pair",
          "layout": {"nodes": "2", "tensor_parallel_size": "16", "pipeline_parallel_size": "1"},
          "cluster": {"interface": "ens1f0", "port": 30000, "dist_init_port": 5001}}
HOST = {"name": "small", "profile": "deepseek-r1-distill-qwen-7b"}


def test_head_and_worker_items():
    models = [HOST, VLLM]
    (head,) = cluster_plan(copy.deepcopy(models), GROUPS, "a")
    (worker,) = cluster_plan(copy.deepcopy(models), GROUPS, "b")
    assert (head["is_head"], head["rank"], worker["is_head"], worker["rank"]) == (True, 0, False, 1)
    assert head["hosts"] == ["a", "b"] and head["head"] == worker["head"] == "a"
    assert (head["nodes"], head["tensor_parallel_size"], head["pipeline_parallel_size"], head["gpus_per_node"]) == (
        2, 8, 2, 8)
    assert head["ports"] == [6379] and head["instance"] == "deepseek-v3"
    assert head["settings"]["shm_size"] == "32g" and head["settings"]["interface"] == "ens1f0"
    assert head["model_dir"] == "/srv/models/deepseek-v3"
    # The normalized item without its unset keys (the role's default(omit) still works).
    assert "max_model_len" not in head["model"] and head["model"]["dtype"] == "auto"
    # The plan's second gateway port (index 1), in front of the engine on cluster.host:cluster.port.
    assert head["gateway"] == {"name": "deepseek-v3", "instance": "deepseek-v3", "engine": "vllm",
                               "gateway_port": 8081, "upstream_host": "127.0.0.1", "upstream_port": 8000,
                               "max_model_len": 0}


def test_sglang_spans_nodes_with_tensor_parallel_and_strings_become_numbers():
    (item,) = cluster_plan([dict(SGLANG, max_model_len=32768, model_path="/data/r1")], GROUPS, "b",
                           model_root="/unused")
    assert (item["tensor_parallel_size"], item["pipeline_parallel_size"], item["gpus_per_node"]) == (16, 1, 8)
    assert item["ports"] == [5001] and item["model_dir"] == "/data/r1"
    assert item["gateway"]["upstream_port"] == 30000 and item["gateway"]["max_model_len"] == 32768


def test_engine_on_any_address_is_reached_on_loopback_and_ipv6_in_brackets():
    anyaddr = dict(VLLM, cluster={"interface": "ens1f0", "host": "0.0.0.0"})
    assert cluster_plan([anyaddr], GROUPS, "a")[0]["gateway"]["upstream_host"] == "127.0.0.1"
    six = dict(VLLM, cluster={"interface": "ens1f0", "host": "::1"})
    assert cluster_plan([six], GROUPS, "a")[0]["gateway"]["upstream_host"] == "[::1]"


def test_hosts_outside_the_group_get_nothing():
    assert cluster_plan([HOST, VLLM], GROUPS, "solo") == []
    assert cluster_plan([], GROUPS, "a") == []


@pytest.mark.parametrize("models,host,fragments", [
    # The plan's own rules (the preflight's): the same message, with the variable path.
    ([dict(VLLM, layout={"nodes": 2, "tensor_parallel_size": 16, "pipeline_parallel_size": 1})], "a",
     ["gpu_stack_models[0].layout.pipeline_parallel_size is 1: with vLLM, pipeline parallel crosses the nodes",
      "Nothing was changed"]),
    ([dict(VLLM, cluster={})], "a", ["gpu_stack_models[0].cluster.interface is None"]),
    # The inventory.
    ([dict(VLLM, group="quad")], "a", ["gpu_stack_models[0].group is 'quad': the inventory has no group quad"]),
    ([dict(VLLM, group="trio")], "a",
     ["gpu_stack_models[0].layout.nodes is 2, but inventory group trio has 3 hosts (a, b, c)", "set layout.nodes to 3"]),
    ([VLLM, dict(VLLM, name="other", gateway_port=9000)], "b", ["b is in the Ray groups of deepseek-v3, other"]),
    # Ports: the SGLang group's engine on the single-host model's blue port.
    ([HOST, dict(SGLANG, cluster={"interface": "ens1f0", "port": 8001})], "a",
     ["gpu_stack_models[0].port, gpu_stack_models[1].cluster.port are all port 8001 on a"]),
    # Two SGLang groups on the same nodes with the default rendezvous port.
    ([dict(SGLANG, cluster={"interface": "e", "port": 30000}), dict(SGLANG, name="r2", cluster={"interface": "e"})], "b",
     ["gpu_stack_models[0].cluster.dist_init_port, gpu_stack_models[1].cluster.dist_init_port are all port 5000"]),
])
def test_refusals_name_the_variable_the_value_and_the_fix(models, host, fragments):
    with pytest.raises(AnsibleFilterError) as raised:
        cluster_plan(copy.deepcopy(models), GROUPS, host)
    for fragment in fragments:
        assert fragment in str(raised.value)


def test_the_gateway_port_is_claimed_on_the_head_only():
    # The vLLM group's gateway (on its head, a) on the SGLang group's engine port.
    clash = [dict(VLLM, gateway_port=30000), SGLANG]
    with pytest.raises(AnsibleFilterError, match=r"gpu_stack_models\[0\]\.gateway_port, "
                                                 r"gpu_stack_models\[1\]\.cluster\.port are all port 30000 on a"):
        cluster_plan(copy.deepcopy(clash), GROUPS, "a")
    assert len(cluster_plan(copy.deepcopy(clash), GROUPS, "b")) == 2
