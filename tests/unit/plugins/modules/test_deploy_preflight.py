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
        "model": "deepseek-r1-distill-llama-70b", "context_length": 8192, "max_num_seqs": 16, "gpu": facts,
        "fail_on_blocking": False})
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


# --- models: one plan for the host -------------------------------------------------------------------

@pytest.fixture
def root(tmp_path):
    """A model root on the test machine's own file system, which the checks then accept."""
    path = tmp_path / "models"
    path.mkdir()
    return path, _storage.fs_type_for_path(str(path))


def run_plan(run_module, models, facts, root, **extra):
    args = {"models": models, "gpu": facts, "model_root": str(root[0]), "allowed_fs_types": [root[1]]}
    args.update(extra)
    return run_module(deploy_preflight.main, args)


def test_models_on_the_l40s_node(run_module, meminfo, tmp_path, root):
    facts = gpu_facts(fake.pcie_l40s(), tmp_path)
    outcome, result = run_plan(run_module, [
        {"name": "r1-32b", "profile": "deepseek-r1-distill-qwen-32b", "dtype": "bf16", "tensor_parallel_size": 2},
    ], facts, root)
    assert outcome == "exit", result["msg"]
    assert result["blocked"] is False and result["msg"] == "preflight passed for 1 model: r1-32b"
    model = result["models"][0]
    assert model["name"] == "r1-32b" and model["engine"] == "vllm" and model["gpus_used"] == [0, 1]
    assert (model["port"], model["port_green"]) == (8001, 8002) and model["shares_gpus_with"] == []
    assert model["model_path"] == str(root[0] / "r1-32b")
    settings = model["engine_settings"]
    assert (settings["max_model_len"], settings["max_num_seqs"]) == (32768, 1)
    assert settings["source"]["max_model_len"] == "derived" and settings["source"]["dtype"] == "set"
    assert result["gpu_assignment"] == {"r1-32b": [0, 1]} and result["shared_gpus"] == {}
    assert len(result["table"]) == 2 and result["table"][1].startswith("r1-32b")
    assert "32768 derived x 1 derived" in result["table"][1] and result["table"][1].rstrip().endswith("ok")
    checks = dict((c["check"], c) for c in model["checks"])
    assert checks["fs_type"]["ok"] and checks["disk_space"]["ok"] and checks["model_path"]["ok"]


def test_a_group_model_is_left_to_the_cluster_role(run_module, meminfo, tmp_path, root):
    """A model served by a group of nodes is validated but neither placed nor sized on one host:
    the 2 x 8 GPU DeepSeek-V3 group next to a single-host model on the L40S node."""
    facts = gpu_facts(fake.pcie_l40s(), tmp_path)
    group = {"name": "v3", "profile": "deepseek-v3", "engine": "vllm", "group": "h100_pair",
             "layout": {"nodes": 2, "tensor_parallel_size": 8, "pipeline_parallel_size": 2},
             "cluster": {"interface": "ens1f0"}}
    outcome, result = run_plan(run_module, [
        group, {"name": "r1-32b", "profile": "deepseek-r1-distill-qwen-32b", "dtype": "bf16", "tensor_parallel_size": 2},
    ], facts, root)
    assert outcome == "exit", result["msg"]
    assert [m["name"] for m in result["models"]] == ["r1-32b"] and result["group_models"] == ["v3"]
    assert result["gpu_assignment"] == {"r1-32b": [0, 1]}
    assert result["msg"] == ("preflight passed for 1 model: r1-32b; served by a group of nodes, checked by "
                             "cluster_preflight: v3")
    # Still validated with the plan: a group model without its layout fails before any check.
    outcome, result = run_plan(run_module, [dict(group, layout=None)], facts, root)
    assert outcome == "fail" and "gpu_stack_models[0].layout" in result["msg"], result


def test_models_sharing_a_gpu_that_do_not_fit(run_module, meminfo, tmp_path, root):
    facts = gpu_facts(fake.pcie_l40s(), tmp_path)
    outcome, result = run_plan(run_module, [
        {"name": "qwen-7b", "profile": "deepseek-r1-distill-qwen-7b", "gpus": [1], "gpu_memory_utilization": 0.6},
        {"name": "qwen-14b", "profile": "deepseek-r1-distill-qwen-14b", "gpus": [1], "gpu_memory_utilization": 0.6,
         "max_model_len": 4096, "max_num_seqs": 1},
    ], facts, root, fail_on_blocking=False)
    assert outcome == "exit" and result["blocked"] is True
    assert result["shared_gpus"] == {"1": ["qwen-14b", "qwen-7b"]}
    assert result["models"][0]["shares_gpus_with"] == ["qwen-14b"]
    shared = [c for c in result["together"] if c["check"] == "shared_gpu"][0]
    assert not shared["ok"] and "GPU 1 (NVIDIA L40S, 45.0 GiB) is shared by qwen-7b and qwen-14b" in shared["message"]
    assert "free on this host: 0" in shared["fix"]
    assert any(line.startswith("shared_gpu: models do not fit together") for line in result["blocking"])
    assert result["msg"].startswith("preflight blocked the plan of 2 models")
    failed, _result = run_plan(run_module, [
        {"name": "qwen-7b", "profile": "deepseek-r1-distill-qwen-7b", "gpus": [1], "gpu_memory_utilization": 0.6},
        {"name": "qwen-14b", "profile": "deepseek-r1-distill-qwen-14b", "gpus": [1], "gpu_memory_utilization": 0.6}],
        facts, root)
    assert failed == "fail"


def test_models_sharing_a_gpu_split_the_memory(run_module, meminfo, tmp_path, root):
    facts = gpu_facts(fake.pcie_l40s(), tmp_path)
    outcome, result = run_plan(run_module, [
        {"name": "qwen-7b", "profile": "deepseek-r1-distill-qwen-7b", "gpus": [0]},
        {"name": "qwen-1.5b", "profile": "deepseek-r1-distill-qwen-1.5b", "gpus": [0]},
    ], facts, root)
    assert outcome == "exit", result["msg"]
    assert [m["engine_settings"]["gpu_memory_utilization"] for m in result["models"]] == [0.45, 0.45]
    assert [c["ok"] for c in result["together"]] == [True, True]


@pytest.mark.parametrize("models, fragment", [
    ([{"name": "qwen", "profile": "deepseek-r1-distill-qwen-7b", "gpus": [0, 3], "tensor_parallel_size": 2}],
     "gpu_stack_models[0].gpus is [0, 3] but the host has no usable GPU 3: it has 2 (indices 0, 1)"),
    ([{"name": "qwen", "profile": "gpt-9"}], "gpu_stack_models[0].profile is 'gpt-9': not a built-in model profile"),
    ([{"name": "qwen", "profile": "deepseek-v3", "tensor_parallel_size": "eight"}],
     "gpu_stack_models[0].tensor_parallel_size is 'eight': must be a positive integer"),
])
def test_an_invalid_plan_fails_before_any_check(run_module, meminfo, tmp_path, root, models, fragment):
    outcome, result = run_plan(run_module, models, gpu_facts(fake.pcie_l40s(), tmp_path), root)
    assert outcome == "fail" and fragment in result["msg"] and fragment in result["problems"][0]
    assert "models" not in result and "table" not in result


def test_tensor_parallel_that_does_not_divide_the_heads(run_module, meminfo, tmp_path, root):
    facts = gpu_facts(fake.hgx_h200(), tmp_path)
    outcome, result = run_plan(run_module, [
        {"name": "qwen-7b", "profile": "deepseek-r1-distill-qwen-7b", "tensor_parallel_size": 8},
    ], facts, root, fail_on_blocking=False)
    assert outcome == "exit" and result["blocked"] is True
    assert result["blocking"][0].startswith("qwen-7b: tensor_parallel: tensor parallel 8 does not divide the model's "
                                            "28 attention heads")
    assert result["blocking"][0].endswith("Fix: set tensor_parallel_size to one of 1, 2, 4")
    assert "BLOCKED tensor_parallel: tensor parallel 8" in result["table"][1]


def test_a_gguf_model_is_read_from_the_model_root(run_module, meminfo, tmp_path, root, gguf):
    current = root[0] / "smollm2" / "current"
    current.mkdir(parents=True)
    gguf.smollm2(current / "SmolLM2-135M-Instruct.Q4_1.gguf")
    facts = gpu_facts(fake.library_missing(), tmp_path)
    outcome, result = run_plan(run_module, [
        {"name": "smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf", "max_model_len": 2048, "max_num_seqs": 1},
        {"name": "other", "file": "missing.Q4_K_M.gguf"},
    ], facts, root, fail_on_blocking=False)
    assert outcome == "exit" and result["blocked"] is True
    smol, other = result["models"]
    assert smol["engine"] == "llama_cpp" and smol["device"] == "cpu" and not smol["blocked"]
    assert smol["estimate"]["dtype"] == "Q4_1" and smol["engine_settings"]["ctx_size"] == 2048
    assert other["blocked"] and other["blocking"][0].startswith(
        "model_profile: cannot size other: give profile or architecture, or place the file first (%s does not "
        "exist)" % (root[0] / "other" / "current" / "missing.Q4_K_M.gguf"))
    assert result["table"][2].split()[:5] == ["other", "llama_cpp", "-", "-", "-"]


def test_a_bare_host_refuses_before_the_driver(run_module, meminfo, tmp_path, root):
    sysfs = tempfile.mkdtemp(dir=str(tmp_path))
    facts = _nvml.collect_gpu_facts(nvml=fake.driver_not_loaded(), sysfs_root=fake.bare_sysfs(sysfs, ["t4"]),
                                    proc_root=sysfs)
    outcome, result = run_plan(run_module, [
        {"name": "qwen-1.5b", "profile": "deepseek-r1-distill-qwen-1.5b", "dtype": "bf16"},
    ], facts, root, defer_gpu_checks=True, fail_on_blocking=False)
    assert outcome == "exit"
    model = result["models"][0]
    assert model["device"] == "pending" and model["engine"] == "vllm" and model["gpus_used"] == [0]
    assert result["blocked"] is True
    assert "compute capability 7.5 (Turing) is below 8.0" in result["blocking"][0]
    assert "(from the PCI id table; the driver is not loaded yet)" in result["blocking"][0]


@pytest.mark.parametrize("extra, fragment", [
    ({"model": "deepseek-v3"}, "mutually exclusive"),
    ({"context_length": 4096}, "mutually exclusive"),
    ({"tensor_parallel_size": 2}, "mutually exclusive"),
])
def test_models_exclude_the_single_model_options(run_module, meminfo, extra, fragment):
    args = {"models": [{"name": "a", "profile": "deepseek-v3"}], "gpu": {}}
    args.update(extra)
    outcome, result = run_module(deploy_preflight.main, args)
    assert outcome == "fail" and fragment in result["msg"]


def test_single_model_settings_are_derived_without_the_old_defaults(run_module, meminfo, tmp_path):
    facts = gpu_facts(fake.geforce(), tmp_path)
    outcome, result = run_module(deploy_preflight.main, {"model": "deepseek-r1-distill-qwen-7b", "gpu": facts})
    assert outcome == "exit", result["msg"]
    settings = result["engine_settings"]
    assert (settings["max_model_len"], settings["max_num_seqs"], settings["gpu_memory_utilization"]) == (32768, 2, 0.9)
    assert result["settings_source"]["max_num_seqs"] == "derived"
    assert result["derivation"]["fits"] is True


def _mountinfo(tmp_path, source, mount_point, fs_type):
    path = tmp_path / "mountinfo"
    path.write_text("22 1 8:1 / / rw,relatime shared:1 - overlay overlay rw\n"
                    "40 22 7:0 / %s rw,noatime shared:2 - %s %s rw\n" % (mount_point, fs_type, source))
    return str(path)


def test_planned_storage_until_the_device_is_mounted_there(tmp_path):
    sys_block = tmp_path / "block"
    (sys_block / "loop0").mkdir(parents=True)
    (sys_block / "loop0" / "size").write_text("4194304\n")      # 512-byte sectors: 2 GiB
    device = tmp_path / "dev-loop0"
    device.write_text("")
    # Not mounted yet: the file system the role will make, and the device's size.
    mountinfo = _mountinfo(tmp_path, "/dev/other", "/mnt", "ext4")
    planned = deploy_preflight.planned_storage(str(tmp_path / "srv" / "models"), "xfs", "/dev/loop0",
                                               mountinfo=mountinfo, sys_block=str(sys_block))
    assert planned == ("xfs", 2 * GIB)
    facts = deploy_preflight.host_facts("/srv/models/m", meminfo=str(tmp_path / "none"), planned=planned)
    assert (facts["fs_type"], facts["disk_free_bytes"], facts["model_existing_bytes"]) == ("xfs", 2 * GIB, 0)
    # Mounted from that device: the host's own facts count (None: nothing planned).
    models = tmp_path / "models"
    models.mkdir()
    mounted = _mountinfo(tmp_path, str(device), str(models), "xfs")
    assert deploy_preflight.planned_storage(str(models / "m"), "xfs", str(device), mountinfo=mounted,
                                            sys_block=str(sys_block)) is None
    # No device planned: nothing planned.
    assert deploy_preflight.planned_storage(str(models), "xfs", "", mountinfo=mounted) is None


def test_a_planned_file_system_that_is_not_allowed_blocks(run_module, meminfo, tmp_path, monkeypatch):
    monkeypatch.setattr(deploy_preflight, "planned_storage", lambda path, fs_type, device: (fs_type, 100 * GIB))
    facts = gpu_facts(fake.FakeNvml([]), tmp_path)
    outcome, result = run_module(deploy_preflight.main, {
        "models": [{"name": "tiny", "profile": "smollm2-135m-instruct", "engine": "llama_cpp", "dtype": "Q4_1",
                    "file": "tiny.gguf"}],
        "model_root": str(tmp_path / "models"), "planned_fs_type": "vfat", "planned_device": "/dev/sdz",
        "gpu": facts, "fail_on_blocking": False})
    assert outcome == "exit" and result["blocked"] is True
    assert any("vfat" in line for line in result["blocking"]), result["blocking"]
