# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import copy
import hashlib
import os

import pytest

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _cluster as cluster
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_catalogue as catalogue
from ansible_collections.llmops.gpu_stack.plugins.modules import cluster_preflight

GIB = 1024 ** 3
H100 = 80 * GIB
LAYOUT = {"nodes": 2, "tensor_parallel_size": 8, "pipeline_parallel_size": 2}


def node(**changes):
    facts = {"python_version": "3.11.2", "ray_version": "2.58.0", "driver_version": "570.172.08",
             "cuda_version": "12.8", "image_digest": "sha256:" + "a" * 64, "manifest_sha256": "b" * 64,
             "interfaces": {"lo": ["127.0.0.1"], "ens1f0": ["10.0.0.1"]},
             "gpus": [{"index": i, "memory_total": H100} for i in range(8)]}
    facts.update(changes)
    return facts


def group(**odd):
    return {"gpu-h100-01": node(), "gpu-h100-02": node(**odd)}


def by_check(results):
    return dict((r["check"], r) for r in results)


def test_identical_nodes_pass():
    results, skipped = cluster.check_group(group(), LAYOUT, "ens1f0")
    assert cluster.blocking_lines(results) == []
    assert "ports: no reachability probes given" in skipped


@pytest.mark.parametrize("key,value,words", [
    ("python_version", "3.11.9", "Python version differs: node gpu-h100-02 has 3.11.9 where the other nodes have"),
    ("ray_version", "2.57.0", "Ray version differs: node gpu-h100-02 has 2.57.0"),
    ("driver_version", "575.57.08", "NVIDIA driver differs: node gpu-h100-02 has 575.57.08"),
    ("cuda_version", "12.9", "CUDA version the driver reports differs: node gpu-h100-02 has 12.9"),
    ("image_digest", "sha256:" + "c" * 64, "engine image digest differs: node gpu-h100-02 has sha256:ccc"),
    ("manifest_sha256", None, "model revision manifest differs: node gpu-h100-02 has none"),
])
def test_a_differing_fact_names_the_node_the_value_and_the_fix(key, value, words):
    nodes = {"gpu-h100-01": node(), "gpu-h100-02": node(**{key: value}), "gpu-h100-03": node()}
    results, _skipped = cluster.check_group(nodes, dict(LAYOUT, nodes=3, pipeline_parallel_size=3), "ens1f0")
    check = by_check(results)["same_" + key]
    assert not check["ok"]
    assert words in check["message"]
    assert check["fix"].endswith("(on gpu-h100-02)")


def test_a_fact_no_node_reports_is_skipped():
    nodes = dict((n, dict(f, driver_version=None)) for n, f in group().items())
    results, skipped = cluster.check_group(nodes, LAYOUT, "ens1f0")
    assert "same_driver_version" not in by_check(results)
    assert any(s.startswith("same_driver_version") for s in skipped)


def test_missing_interface_names_the_node_and_what_it_has():
    results, _summary = cluster.check_group(group(interfaces={"lo": ["127.0.0.1"], "eth0": ["10.1.0.2"]}), LAYOUT, "ens1f0")
    check = by_check(results)["interface"]
    assert not check["ok"]
    assert "node gpu-h100-02 has no interface ens1f0 (it has: eth0, lo)" in check["message"]
    assert "cluster.interface" in check["fix"]


def test_interface_without_address():
    results, _summary = cluster.check_group(group(interfaces={"ens1f0": []}), LAYOUT, "ens1f0")
    assert "without an IPv4 address" in by_check(results)["interface"]["message"]


def test_node_count_must_match_the_layout():
    results, _summary = cluster.check_group({"gpu-h100-01": node()}, LAYOUT, "ens1f0")
    check = by_check(results)["node_count"]
    assert not check["ok"]
    assert "needs 2 nodes but the group has 1" in check["message"]


def test_unreachable_port_names_both_nodes():
    probes = [{"from": "gpu-h100-01", "to": "gpu-h100-02", "port": 6379, "ok": True},
              {"from": "gpu-h100-02", "to": "gpu-h100-01", "port": 6379, "ok": False}]
    results, _summary = cluster.check_group(group(), LAYOUT, "ens1f0", probes, [6379])
    check = by_check(results)["ports"]
    assert not check["ok"]
    assert check["message"] == "node gpu-h100-02 cannot reach gpu-h100-01:6379"
    probes[1]["ok"] = True
    results, _summary = cluster.check_group(group(), LAYOUT, "ens1f0", probes, [6379])
    assert by_check(results)["ports"]["ok"]


def deepseek_estimate(layout, **kw):
    profile = catalogue.get_profile("deepseek-v3")
    args = dict(dtype="fp8", context_length=32768, max_num_seqs=4)
    args.update(kw)
    return cluster.estimate_per_gpu(profile, layout, "vllm", **args)


def test_deepseek_v3_fits_two_h100_nodes_at_tp8_pp2():
    est = deepseek_estimate(LAYOUT)
    results, _summary = cluster.check_group(group(), LAYOUT, "ens1f0", estimate=est)
    check = by_check(results)["gpu_memory"]
    assert check["ok"], check["message"]
    assert est["need_per_gpu_bytes"] < 0.9 * H100
    # The same model on one node (TP 8, PP 1) does not fit: that is why it needs the group.
    one = deepseek_estimate({"nodes": 1, "tensor_parallel_size": 8, "pipeline_parallel_size": 1})
    assert one["need_per_gpu_bytes"] > H100


def test_memory_refusal_names_the_node():
    small = [{"index": i, "memory_total": 40 * GIB} for i in range(8)]
    results, _summary = cluster.check_group(group(gpus=small), LAYOUT, "ens1f0", estimate=deepseek_estimate(LAYOUT))
    check = by_check(results)["gpu_memory"]
    assert not check["ok"]
    assert check["message"].startswith("node gpu-h100-02: needs")
    results, _summary = cluster.check_group(group(gpus=small[:4]), LAYOUT, "ens1f0", estimate=deepseek_estimate(LAYOUT))
    assert "node gpu-h100-02 has 4 GPUs, the layout needs 8 per node" in by_check(results)["gpu_memory"]["message"]


def test_memory_skipped_without_gpu_facts():
    nodes = dict((n, dict(f, gpus=[])) for n, f in group().items())
    results, skipped = cluster.check_group(nodes, LAYOUT, "ens1f0", estimate=deepseek_estimate(LAYOUT))
    assert "gpu_memory" not in by_check(results)
    assert any(s.startswith("gpu_memory: no node reports GPUs (needs") for s in skipped)


def test_manifest_sha256(tmp_path):
    revision = tmp_path / "rev-1"
    revision.mkdir()
    (tmp_path / "rev-1.manifest.json").write_text('{"format": "x"}')
    assert cluster.manifest_sha256(str(tmp_path)) is None
    os.symlink(str(revision), str(tmp_path / "current"))
    assert cluster.manifest_sha256(str(tmp_path)) == hashlib.sha256(b'{"format": "x"}').hexdigest()


def test_driver_version(tmp_path):
    (tmp_path / "driver" / "nvidia").mkdir(parents=True)
    (tmp_path / "driver" / "nvidia" / "version").write_text(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.172.08  Release Build\n")
    assert cluster.driver_version(str(tmp_path)) == "570.172.08"
    assert cluster.driver_version(str(tmp_path / "none")) is None


def test_interface_addresses_has_loopback():
    found = cluster.interface_addresses()
    assert found.get("lo") == ["127.0.0.1"]


@pytest.mark.parametrize("layout,fragment", [
    ({"nodes": 2, "tensor_parallel_size": 8}, "layout.pipeline_parallel_size is None"),
    ({"nodes": 0, "tensor_parallel_size": 8, "pipeline_parallel_size": 2}, "layout.nodes is 0"),
    ({"nodes": 3, "tensor_parallel_size": 8, "pipeline_parallel_size": 2}, "is not a multiple of nodes (3)"),
    ({"nodes": 2, "tensor_parallel_size": 16, "pipeline_parallel_size": 1}, "with vLLM, pipeline parallel crosses"),
])
def test_module_layout_refusals(layout, fragment):
    out, problem = cluster_preflight.normalize_layout(layout)
    assert out is None
    assert fragment in problem


def test_module_layout_ok():
    assert cluster_preflight.normalize_layout(copy.deepcopy(LAYOUT)) == (LAYOUT, None)
    # SGLang may span the nodes with tensor parallel; the plan accepts it, so the module does too.
    sglang = {"nodes": 2, "tensor_parallel_size": 16, "pipeline_parallel_size": 1}
    assert cluster_preflight.normalize_layout(sglang, "sglang") == (sglang, None)
