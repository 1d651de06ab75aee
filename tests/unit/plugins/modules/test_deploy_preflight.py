# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import functools
import tempfile

import pytest

import fake_pynvml as fake
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _nvml
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _storage
from ansible_collections.llmops.gpu_stack.plugins.modules import deploy_preflight

GIB = 1024 ** 3


def gpu_facts(nvml, tmp_path):
    root = tempfile.mkdtemp(dir=str(tmp_path))
    return _nvml.collect_gpu_facts(nvml=nvml, sysfs_root=fake.empty_sysfs(root), proc_root=root)


@pytest.fixture
def meminfo(monkeypatch, tmp_path):
    """Fixed host RAM: 256 GiB total, 200 GiB available."""
    path = tmp_path / "meminfo"
    path.write_text("MemTotal: %d kB\nMemAvailable: %d kB\n" % (256 * 1024 * 1024, 200 * 1024 * 1024))
    monkeypatch.setattr(deploy_preflight, "host_facts",
                        functools.partial(deploy_preflight.host_facts, meminfo=str(path)))


def test_passes_and_returns_estimate_and_settings(run_module, meminfo, tmp_path):
    facts = gpu_facts(fake.hgx_h200(), tmp_path)
    outcome, result = run_module(deploy_preflight.main, {
        "model": "deepseek-r1-distill-qwen-32b", "tensor_parallel_size": 2, "context_length": 32768,
        "max_num_seqs": 16, "cuda_version": "12.8", "gpu": facts})
    assert outcome == "exit" and result["changed"] is False and result["blocked"] is False
    assert result["gpus_used"] == [0, 1] and result["device"] == "gpu"
    # KV: 2 x 64 layers x (8 / 2) heads x 128 x 2 B = 131,072 B per token per GPU x 32768 x 16 = 64 GiB
    assert result["estimate"]["kv_cache_per_gpu_bytes"] == 64 * GIB
    settings = result["engine_settings"]
    assert settings["max_model_len"] == 32768 and settings["tensor_parallel_size"] == 2 and settings["fits"]
    assert result["msg"].startswith("preflight passed: deepseek-r1-distill-qwen-32b bf16 on gpu")
    assert any(c["check"] == "driver_cuda" and c["ok"] for c in result["checks"])
    # Ansible would show a result with a truthy "skipped" key as a skipped task
    assert "skipped" not in result and "model_path: no model_path given" in result["skipped_checks"]


def test_blocked_fails_with_every_problem(run_module, meminfo, tmp_path):
    facts = gpu_facts(fake.FakeNvml([fake.h100_pcie(0)]), tmp_path)
    outcome, result = run_module(deploy_preflight.main, {
        "model": "deepseek-r1-distill-llama-70b", "context_length": 32768, "max_num_seqs": 8,
        "tensor_parallel_size": 2, "gpu": facts})
    assert outcome == "fail" and result["blocked"] is True
    assert "gpu_count: needs 2 GPUs" in result["msg"]
    assert result["msg"].startswith("preflight blocked the deployment")


def test_blocked_without_failing(run_module, meminfo, tmp_path):
    facts = gpu_facts(fake.FakeNvml([fake.h100_pcie(0)]), tmp_path)
    outcome, result = run_module(deploy_preflight.main, {
        "model": "deepseek-r1-distill-llama-70b", "context_length": 8192, "gpu": facts, "fail_on_blocking": False})
    assert outcome == "exit" and result["blocked"] is True
    memory = [c for c in result["checks"] if c["check"] == "gpu_memory"][0]
    # TP 2: 131.4 GiB / 2 of weights + 2 x 80 x 4 x 128 x 2 B x 8192 x 16 = 20 GiB of KV > 0.9 x 79.6 GiB
    # TP 4: 32.9 GiB + 10 GiB + runtime fits
    assert "set tensor_parallel_size 4 (4 GPUs, the host has 1)" in memory["fix"]


def test_warnings_are_returned_and_shown(run_module, meminfo, tmp_path):
    facts = gpu_facts(fake.hgx_h200(1), tmp_path)
    facts["driver_version"] = "550.127.05"                      # end-of-life branch
    outcome, result = run_module(deploy_preflight.main, {"model": "smollm2-135m-instruct", "gpu": facts})
    assert outcome == "exit" and result["blocked"] is False
    assert result["preflight_warnings"] == result["warnings_shown"]
    assert result["preflight_warnings"][0].startswith("driver_branch: driver branch R550 is end of life")


def test_llama_cpp_on_a_cpu_host_with_a_gguf_file(run_module, meminfo, tmp_path, gguf):
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    path = gguf.smollm2(model_dir / "SmolLM2-135M-Instruct.Q4_1.gguf")
    fs_type = _storage.fs_type_for_path(str(model_dir))
    facts = gpu_facts(fake.library_missing(), tmp_path)
    outcome, result = run_module(deploy_preflight.main, {
        "config_path": str(path), "engine": "llama_cpp", "context_length": 8192, "max_num_seqs": 2,
        "model_path": str(model_dir), "allowed_fs_types": [fs_type], "gpu": facts})
    assert outcome == "exit", result["msg"]
    assert result["device"] == "cpu" and result["estimate"]["dtype"] == "Q4_1"
    assert result["engine_settings"]["ctx_size"] == 16384
    checks = dict((c["check"], c) for c in result["checks"])
    assert checks["host_ram"]["ok"] and checks["fs_type"]["ok"] and checks["model_path"]["ok"]
    # the file is already there: only the margin (1 GiB floor) is needed on disk
    assert checks["disk_space"]["numbers"]["to_download_bytes"] == 0


def test_vllm_without_gpus_fails(run_module, meminfo, tmp_path):
    facts = gpu_facts(fake.library_missing(), tmp_path)
    outcome, result = run_module(deploy_preflight.main, {"model": "smollm2-135m-instruct", "gpu": facts})
    assert outcome == "fail" and "vllm needs NVIDIA GPUs" in result["msg"]


def test_collects_gpu_facts_itself(run_module, meminfo, monkeypatch, tmp_path):
    root = tempfile.mkdtemp(dir=str(tmp_path))
    monkeypatch.setattr(deploy_preflight, "collect_gpu_facts", functools.partial(
        _nvml.collect_gpu_facts, nvml=fake.hgx_h200(2), sysfs_root=fake.empty_sysfs(root), proc_root=root))
    outcome, result = run_module(deploy_preflight.main, {"model": "deepseek-r1-distill-qwen-7b"}, check_mode=True)
    assert outcome == "exit" and result["gpus_used"] == [0]


def test_architecture_input(run_module, meminfo, tmp_path):
    facts = gpu_facts(fake.hgx_h200(1), tmp_path)
    arch = {"num_hidden_layers": 2, "hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4,
            "vocab_size": 1000, "max_position_embeddings": 4096}
    outcome, result = run_module(deploy_preflight.main, {"architecture": arch, "gpu": facts})
    assert outcome == "exit" and result["estimate"]["context_length"] == 4096
    # 2 x (4 x 256 x 256 + 3 x 256 x 512 + 2 x 256) + 2 x 1000 x 256 + 256
    assert result["estimate"]["parameters_total"] == 2 * (4 * 256 * 256 + 3 * 256 * 512 + 512) + 2 * 256000 + 256


@pytest.mark.parametrize("bad, fragment", [
    ({"model": "gpt-5"}, "unknown model profile"),
    ({"model": "deepseek-v3", "architecture": {"hidden_size": 1}}, "mutually exclusive"),
    ({}, "one of the following is required"),
    ({"model": "deepseek-v3", "engine": "tgi"}, "value of engine must be one of"),
    ({"model": "deepseek-v3", "gpu_memory_utilization": 2.0, "gpu": {}}, "gpu_memory_utilization must be in"),
    ({"config_path": "/nonexistent/config.json"}, "cannot read model config"),
])
def test_bad_input(run_module, meminfo, bad, fragment):
    outcome, result = run_module(deploy_preflight.main, bad)
    assert outcome == "fail" and fragment in result["msg"]
