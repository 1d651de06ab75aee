# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every preflight check with a passing and a failing case; figures computed from the
architecture numbers (see test__vram.py for the per-part arithmetic)."""

from __future__ import annotations

import tempfile

import pytest

import fake_pynvml as fake
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _nvml as n
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _preflight as p
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_catalogue as catalogue
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _vram as v

GIB = 1024 ** 3
MIB = 1024 ** 2
HOST = {"mem_total_bytes": 512 * GIB, "mem_available_bytes": 480 * GIB, "fs_type": "ext4",
        "disk_free_bytes": 2000 * GIB, "model_existing_bytes": 0}


def facts(nvml, tmp_path):
    root = tempfile.mkdtemp(dir=str(tmp_path))
    return n.collect_gpu_facts(nvml=nvml, sysfs_root=fake.empty_sysfs(root), proc_root=root)


def check(report, name):
    found = [c for c in report["checks"] if c["check"] == name]
    assert len(found) == 1, (name, [c["check"] for c in report["checks"]])
    return found[0]


def preflight(model, plan, gpu, host=None):
    return p.run_preflight(catalogue.get_profile(model), plan, gpu, HOST if host is None else host)


@pytest.fixture
def hgx(tmp_path):
    return facts(fake.hgx_h200(), tmp_path)


@pytest.fixture
def two_h100(tmp_path):
    return facts(fake.FakeNvml([fake.h100_pcie(0), fake.h100_pcie(1)]), tmp_path)


# --- whole runs ---------------------------------------------------------------------------------

def test_deepseek_v3_on_8xh200_passes(hgx):
    report = preflight("deepseek-v3", {"tensor_parallel_size": 8, "context_length": 32768, "max_num_seqs": 16,
                                       "cuda_version": "12.8", "model_path": "/srv/models/deepseek-v3"}, hgx)
    assert report["ok"] and report["blocking"] == [] and report["device"] == "gpu"
    assert report["gpus_used"] == list(range(8))
    assert report["engine_settings"]["fits"] and report["engine_settings"]["quantization"] is None
    assert report["estimate"]["dtype"] == "fp8"
    assert "passed" in p.summarize(report)


def test_every_blocking_failure_is_listed_at_once(tmp_path):
    gpu = facts(fake.FakeNvml([fake.t4(0)], driver="515.105.01", cuda=11070), tmp_path)
    report = preflight("deepseek-r1-distill-qwen-7b",
                       {"tensor_parallel_size": 2, "dtype": "bf16", "cuda_version": "12.4", "context_length": 200000,
                        "model_path": "/srv/my models/qwen"},
                       gpu, dict(HOST, fs_type="ntfs", disk_free_bytes=1 * GIB))
    failed = sorted(c["check"] for c in report["checks"] if not c["ok"] and c["severity"] == "blocking")
    assert failed == ["compute_capability", "context_length", "disk_space", "driver_cuda", "fs_type", "gpu_count",
                      "model_path"]
    message = p.summarize(report)
    assert message.startswith("preflight blocked the deployment (7 problems)")
    for name in failed:
        assert name + ":" in message


def test_gpu_engine_without_gpus_is_blocked_with_the_reason(tmp_path):
    gpu = facts(fake.driver_not_loaded(), tmp_path)
    report = preflight("deepseek-r1-distill-qwen-7b", {"engine": "vllm"}, gpu)
    result = check(report, "gpu_count")
    assert not result["ok"] and result["severity"] == "blocking" and report["device"] is None
    assert "vllm needs NVIDIA GPUs" in result["message"] and "no_nvidia_device" in result["message"]
    assert "llama_cpp" in result["fix"]


def test_llama_cpp_without_gpus_checks_host_ram(tmp_path):
    gpu = facts(fake.library_missing(), tmp_path)
    plan = {"engine": "llama_cpp", "dtype": "Q4_1", "context_length": 8192, "max_num_seqs": 2}
    report = preflight("smollm2-135m-instruct", plan, gpu, dict(HOST, mem_available_bytes=4 * GIB))
    assert report["device"] == "cpu" and report["ok"]
    assert check(report, "gpu_count")["ok"] and check(report, "host_ram")["message"].startswith("fits in RAM")
    assert report["engine_settings"]["n_gpu_layers"] == 0 and report["engine_settings"]["ctx_size"] == 16384
    small = preflight("smollm2-135m-instruct", plan, gpu, dict(HOST, mem_available_bytes=100 * MIB))
    ram = check(small, "host_ram")
    assert not ram["ok"] and ram["severity"] == "blocking" and "Q4_K_M" in ram["fix"]


def test_llama_cpp_with_a_gpu_uses_free_memory(tmp_path):
    gpu = facts(fake.geforce(), tmp_path)
    report = preflight("deepseek-r1-distill-qwen-7b", {"engine": "llama_cpp", "dtype": "Q4_K_M",
                                                       "context_length": 16384, "max_num_seqs": 1}, gpu)
    memory = check(report, "gpu_memory")
    assert memory["ok"] and memory["numbers"]["budget_per_gpu_bytes"] == (24564 - 1100) * MIB
    assert report["engine_settings"]["gpu_memory_utilization"] is None
    assert report["engine_settings"]["n_gpu_layers"] == 29
    assert all(c["check"] != "gpu_memory_free" for c in report["checks"])


# --- gpu_count / tensor_parallel / context_length ---------------------------------------------

def test_gpu_count_pass_and_fail(two_h100):
    assert check(preflight("deepseek-r1-distill-qwen-7b", {"tensor_parallel_size": 2}, two_h100), "gpu_count")["ok"]
    result = check(preflight("deepseek-r1-distill-llama-70b", {"tensor_parallel_size": 4}, two_h100), "gpu_count")
    assert not result["ok"] and "needs 4 GPUs" in result["message"] and "host has 2" in result["message"]
    assert "at most 2" in result["fix"]


def test_tensor_parallel_pass_and_fail(hgx):
    assert check(preflight("deepseek-r1-distill-qwen-7b", {"tensor_parallel_size": 4}, hgx), "tensor_parallel")["ok"]
    result = check(preflight("deepseek-r1-distill-qwen-7b", {"tensor_parallel_size": 8}, hgx), "tensor_parallel")
    assert not result["ok"] and "28 attention heads" in result["message"]
    assert result["fix"] == "set tensor_parallel_size to one of 1, 2, 4"


def test_context_length_pass_and_fail(hgx):
    ok = check(preflight("smollm2-135m-instruct", {"context_length": 8192}, hgx), "context_length")
    assert ok["ok"]
    bad = check(preflight("smollm2-135m-instruct", {"context_length": 16384}, hgx), "context_length")
    assert not bad["ok"] and bad["fix"] == "set context_length to 8192 or less"


def test_context_length_default_is_capped_by_the_model(hgx):
    report = preflight("smollm2-135m-instruct", {}, hgx)
    assert report["estimate"]["context_length"] == 8192
    assert "context_length not given" in check(report, "context_length")["message"]
    assert preflight("deepseek-r1-distill-qwen-7b", {}, hgx)["estimate"]["context_length"] == 32768


# --- gpu memory -------------------------------------------------------------------------------------

def test_gpu_memory_fail_computes_the_alternatives(two_h100):
    report = preflight("deepseek-r1-distill-qwen-32b", {"context_length": 32768, "max_num_seqs": 4}, two_h100)
    result = check(report, "gpu_memory")
    assert not result["ok"] and result["severity"] == "blocking"
    # weights 32,763,876,352 x 2 B = 61.0 GiB; KV 2 x 64 x 8 x 128 x 2 B = 256 KiB/token x 32768 x 4 = 32 GiB
    assert result["numbers"]["kv_cache_per_gpu_bytes"] == 262144 * 32768 * 4
    assert "needs 1 x 95.7 GiB" in result["message"] and "0.90 x 79.6 GiB = 71.7 GiB" in result["message"]
    fixes = result["fix"].split(", or ")
    assert fixes[0] == "set tensor_parallel_size 2 (2 GPUs)"
    assert fixes[1] == "use fp8 weights (dtype fp8)"              # H100 is 9.0: fp8 allowed
    limits = result["numbers"]["fit"]
    assert fixes[2] == "cut context_length to %d" % v.round_context_down(limits["max_context_length"])
    # the proposed numbers really fit
    profile = catalogue.get_profile("deepseek-r1-distill-qwen-32b")
    est = report["estimate"]
    budget = result["numbers"]["budget_per_gpu_bytes"]
    assert v.estimate_variant(est, profile, tensor_parallel_size=2)["need_per_gpu_bytes"] <= budget
    assert v.estimate_variant(est, profile, dtype="fp8")["need_per_gpu_bytes"] <= budget
    assert v.estimate_variant(est, profile, context_length=limits["max_context_length"])["need_per_gpu_bytes"] <= budget


def test_gpu_memory_alternatives_respect_compute_capability(tmp_path):
    gpu = facts(fake.mig_enabled(), tmp_path)            # A100: 8.0, no fp8
    gpu["gpus"][0]["mig_mode"] = {"current": "disabled", "pending": "disabled"}
    result = check(preflight("deepseek-r1-distill-qwen-32b", {"context_length": 32768, "max_num_seqs": 4}, gpu),
                   "gpu_memory")
    assert "fp8 weights" not in result["fix"] and "use int8 (w8a8) weights (dtype int8)" in result["fix"]


def test_gpu_memory_pass(hgx):
    result = check(preflight("deepseek-r1-distill-qwen-7b", {"context_length": 32768, "max_num_seqs": 16}, hgx),
                   "gpu_memory")
    assert result["ok"] and result["message"].startswith("fits:")


def test_gpu_memory_warning_within_five_percent(hgx):
    profile = catalogue.get_profile("deepseek-r1-distill-qwen-7b")
    need = v.estimate_memory(profile, context_length=32768, max_num_seqs=16)["need_per_gpu_bytes"]
    util = round(need / (143771 * MIB * 0.97), 4)                # need is 97% of the budget
    result = check(preflight("deepseek-r1-distill-qwen-7b", {"context_length": 32768, "max_num_seqs": 16,
                                                             "gpu_memory_utilization": util}, hgx), "gpu_memory")
    assert not result["ok"] and result["severity"] == "warning" and "less than 5%" in result["message"]


def test_gpu_memory_free_pass_and_fail(hgx):
    assert check(preflight("deepseek-r1-distill-qwen-7b", {}, hgx), "gpu_memory_free")["ok"]
    hgx["gpus"][0]["memory_free"] = 40 * GIB
    hgx["gpus"][0]["memory_used"] = hgx["gpus"][0]["memory_total"] - 40 * GIB
    result = check(preflight("deepseek-r1-distill-qwen-7b", {}, hgx), "gpu_memory_free")
    assert not result["ok"] and "GPU 0 has 40.0 GiB of 140.4 GiB free" in result["message"]
    # (40 GiB - 0.5 GiB) / 140.4 GiB = 0.2813 -> 0.28
    assert result["fix"].endswith("lower gpu_memory_utilization to 0.28")


# --- compute capability / MIG / errors --------------------------------------------------------------

def test_compute_capability_pass_and_fail(tmp_path, hgx):
    assert check(preflight("deepseek-r1-distill-qwen-7b", {"dtype": "bf16"}, hgx), "compute_capability")["ok"]
    t4 = facts(fake.FakeNvml([fake.t4(0)]), tmp_path)
    result = check(preflight("deepseek-r1-distill-qwen-1.5b", {"dtype": "bf16", "context_length": 4096,
                                                               "max_num_seqs": 1}, t4), "compute_capability")
    assert not result["ok"] and "7.5 (Turing) is below 8.0" in result["message"]
    assert result["fix"].startswith("use dtype fp16 or int8 instead of bf16")


def test_compute_capability_for_sglang_and_min(hgx, tmp_path):
    t4 = facts(fake.FakeNvml([fake.t4(0)]), tmp_path)
    result = check(preflight("deepseek-r1-distill-qwen-1.5b", {"engine": "sglang", "dtype": "fp16",
                                                               "context_length": 4096, "max_num_seqs": 1}, t4),
                   "compute_capability")
    assert not result["ok"] and "sglang needs compute capability 8.0" in result["message"]
    strict = check(preflight("deepseek-r1-distill-qwen-7b", {"min_compute_capability": "10.0"}, hgx),
                   "compute_capability")
    assert not strict["ok"] and "min_compute_capability is 10.0" in strict["message"]


def test_mig_pass_and_fail(tmp_path, hgx):
    assert check(preflight("deepseek-r1-distill-qwen-7b", {}, hgx), "mig_mode")["ok"]
    result = check(preflight("deepseek-r1-distill-qwen-7b", {"context_length": 8192}, facts(fake.mig_enabled(), tmp_path)),
                   "mig_mode")
    assert not result["ok"] and result["severity"] == "blocking" and "-mig 0" in result["fix"]


def test_gpu_errors_warn_and_are_not_used(tmp_path):
    gpu = facts(fake.error_halfway(), tmp_path)
    report = preflight("deepseek-r1-distill-llama-70b", {"tensor_parallel_size": 4, "context_length": 8192,
                                                         "max_num_seqs": 4}, gpu)
    warning = check(report, "gpu_errors")
    assert not warning["ok"] and warning["severity"] == "warning" and warning["numbers"]["gpus_with_errors"] == [2]
    gpus = check(report, "gpu_count")
    assert not gpus["ok"] and "host has 3 usable" in gpus["message"]
    assert check(preflight("deepseek-r1-distill-qwen-7b", {}, facts(fake.hgx_h200(1), tmp_path)), "gpu_errors")["ok"]


# --- driver -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("driver, cuda, ok, severity, fragment", [
    ("570.133.20", "12.8", True, "blocking", "supports CUDA 12.8"),
    ("535.230.02", "12.8", False, "warning", "minor-version compatibility"),
    ("515.105.01", "12.4", False, "blocking", "too old for CUDA 12.4"),
    ("575.64.03", "13.0", False, "blocking", "needs 580.65.06"),
])
def test_driver_cuda(hgx, driver, cuda, ok, severity, fragment):
    hgx["driver_version"] = driver
    result = check(preflight("deepseek-r1-distill-qwen-7b", {"cuda_version": cuda}, hgx), "driver_cuda")
    assert result["ok"] is ok and result["severity"] == severity and fragment in result["message"]
    if not ok:
        assert "install driver" in result["fix"]


def test_driver_cuda_fix_names_a_supported_branch(hgx):
    hgx["driver_version"] = "515.105.01"
    result = check(preflight("deepseek-r1-distill-qwen-7b", {"cuda_version": "12.4"}, hgx), "driver_cuda")
    assert result["fix"] == "install driver 550.54.14 or newer: R570 (production, end of life 2026-02)"


def test_driver_cuda_newer_than_the_table_is_blocked_without_naming_a_driver(hgx):
    # What a real H200 host reported (driver 580.159.04, NVML CUDA level 13.0).
    hgx["driver_version"], hgx["cuda_driver_version"] = "580.159.04", "13.0"
    result = check(preflight("deepseek-r1-distill-qwen-7b", {"cuda_version": "14.0"}, hgx), "driver_cuda")
    assert not result["ok"] and result["severity"] == "blocking"
    assert "CUDA 14.0 is not in the driver table" in result["message"]
    assert "install driver" not in result["fix"] and "up to the 13.0 the driver reports" in result["fix"]


def test_driver_branch_pass_and_warn(hgx):
    assert check(preflight("deepseek-r1-distill-qwen-7b", {}, hgx), "driver_branch")["ok"]
    hgx["driver_version"] = "550.127.05"
    result = check(preflight("deepseek-r1-distill-qwen-7b", {}, hgx), "driver_branch")
    assert not result["ok"] and result["severity"] == "warning" and "R550 is end of life" in result["message"]


# --- storage ------------------------------------------------------------------------------------------

def test_model_path_and_fs_type_pass_and_fail(hgx):
    good = preflight("deepseek-r1-distill-qwen-7b", {"model_path": "/srv/models/qwen-7b"}, hgx)
    assert check(good, "model_path")["ok"] and check(good, "fs_type")["ok"]
    bad = preflight("deepseek-r1-distill-qwen-7b", {"model_path": "/srv/模型/qwen 7b"}, hgx, dict(HOST, fs_type="ntfs3"))
    path = check(bad, "model_path")
    assert not path["ok"] and "non-ASCII" in path["message"] and "whitespace" in path["message"]
    fs = check(bad, "fs_type")
    assert not fs["ok"] and "refused" in fs["message"] and "allowed_fs_types" not in fs["fix"]
    other = check(preflight("deepseek-r1-distill-qwen-7b", {"model_path": "/srv/m"}, hgx, dict(HOST, fs_type="btrfs")),
                  "fs_type")
    assert not other["ok"] and "allowed_fs_types" in other["fix"]
    allowed = preflight("deepseek-r1-distill-qwen-7b", {"model_path": "/srv/m", "allowed_fs_types": ["btrfs"]}, hgx,
                        dict(HOST, fs_type="btrfs"))
    assert check(allowed, "fs_type")["ok"]


def test_disk_space_pass_warn_fail(hgx):
    weights = 2 * 7615616512                                      # bf16 bytes
    need = weights + int(weights * 0.1)                           # 10% margin (above the 1 GiB floor)

    def run(free, existing=0):
        return check(preflight("deepseek-r1-distill-qwen-7b", {"model_path": "/srv/models/q"}, hgx,
                               dict(HOST, disk_free_bytes=free, model_existing_bytes=existing)), "disk_space")

    assert run(need * 2)["ok"]
    warn = run(need + 1)
    assert not warn["ok"] and warn["severity"] == "warning"
    fail = run(need - GIB)
    assert not fail["ok"] and fail["severity"] == "blocking" and "free 1.0 GiB" in fail["fix"]
    assert fail["numbers"]["needed_bytes"] == need
    # already downloaded: only the margin is needed
    assert run(int(weights * 0.1) + GIB, existing=weights)["ok"]


def test_host_ram_gpu_mode_pass_warn_fail(hgx):
    plan = {"tensor_parallel_size": 8, "context_length": 8192, "max_num_seqs": 4}
    assert check(preflight("deepseek-v3", plan, hgx), "host_ram")["ok"]
    warn = check(preflight("deepseek-v3", plan, hgx, dict(HOST, mem_available_bytes=40 * GIB)), "host_ram")
    assert not warn["ok"] and warn["severity"] == "warning"
    fail = check(preflight("deepseek-v3", plan, hgx, dict(HOST, mem_available_bytes=8 * GIB)), "host_ram")
    assert not fail["ok"] and fail["severity"] == "blocking" and "8 engine workers need about 16.0 GiB" in fail["message"]


def test_skipped_checks_are_named(hgx):
    report = p.run_preflight(catalogue.get_profile("deepseek-r1-distill-qwen-7b"), {}, hgx, {})
    assert "driver_cuda: no cuda_version given" in report["skipped_checks"]
    assert "model_path: no model_path given" in report["skipped_checks"]
    assert any(s.startswith("host_ram") for s in report["skipped_checks"])


# --- inputs -------------------------------------------------------------------------------------------

def test_normalize_plan_reports_every_problem():
    with pytest.raises(ValueError) as exc:
        p.normalize_plan({"engine": "tgi", "tensor_parallel_size": 0, "gpu_memory_utilization": 1.5,
                          "cuda_version": "twelve"})
    text = str(exc.value)
    for fragment in ("engine 'tgi'", "tensor_parallel_size", "gpu_memory_utilization", "not a version"):
        assert fragment in text


def test_bad_dtype_is_a_blocking_result(hgx):
    report = preflight("deepseek-r1-distill-qwen-7b", {"dtype": "int3"}, hgx)
    assert not check(report, "estimate")["ok"] and report["blocked"]


def test_parse_meminfo():
    text = "MemTotal:       131072000 kB\nMemFree:        1000 kB\nMemAvailable:   65536000 kB\nCached: 5 kB\n"
    assert p.parse_meminfo(text) == {"mem_total_bytes": 131072000 * 1024, "mem_available_bytes": 65536000 * 1024}
    old = "MemTotal: 100 kB\nMemFree: 10 kB\nCached: 20 kB\nBuffers: 5 kB\n"
    assert p.parse_meminfo(old)["mem_available_bytes"] == 35 * 1024


# --- a bare GPU server before the driver is installed --------------------------------------------

def bare_server(status="driver_not_loaded", kinds=("gpu", "gpu", "audio")):
    return {"status": status, "reason": "NVML: %s" % status, "gpus": [], "gpu_count": 0,
            "pci_devices": [{"bus_id": "0000:%02x:00.0" % i, "kind": kind} for i, kind in enumerate(kinds)]}


@pytest.mark.parametrize("status", ["driver_not_loaded", "library_missing", "bindings_missing"])
def test_deferred_gpu_checks_pass_on_bare_gpu_server(status):
    report = preflight("deepseek-r1-distill-qwen-7b", {"defer_gpu_checks": True}, bare_server(status))
    assert report["device"] == "pending" and not report["blocked"], report["blocking"]
    gpu_count = check(report, "gpu_count")
    assert gpu_count["ok"] and gpu_count["numbers"]["gpus_on_pci_bus"] == 2
    assert "deferred" in gpu_count["message"]
    assert any(s.startswith("gpu_memory: deferred") for s in report["skipped_checks"])
    assert report["engine_settings"] is None


def test_without_deferral_a_bare_gpu_server_blocks():
    report = preflight("deepseek-r1-distill-qwen-7b", {}, bare_server())
    assert report["blocked"] and report["device"] is None
    assert not check(report, "gpu_count")["ok"]


def test_deferral_does_not_invent_gpus():
    # No NVIDIA GPU on the PCI bus (only an audio function): nothing to wait for, still blocked.
    report = preflight("deepseek-r1-distill-qwen-7b", {"defer_gpu_checks": True}, bare_server(kinds=("audio",)))
    assert report["blocked"] and "gpu_count" in report["blocking"][0]


def test_deferral_keeps_the_checks_that_need_no_driver():
    report = preflight("deepseek-r1-distill-qwen-7b",
                       {"defer_gpu_checks": True, "model_path": "/srv/models/my model"}, bare_server())
    assert report["blocked"]
    assert any(b.startswith("model_path:") for b in report["blocking"])


# --- derived settings ---------------------------------------------------------------------------------

@pytest.fixture
def rtx4090(tmp_path):
    return facts(fake.geforce(), tmp_path)


def test_the_default_7b_on_a_24gb_gpu_is_not_blocked(rtx4090):
    # Budget 0.90 x 24564 MiB = 21.6 GiB (derived within 95 % of it: 20.5 GiB). At 32768 tokens a sequence
    # caches 57,344 B x 32768 = 1.75 GiB on top of 14.2 GiB of weights, 1.0 GiB of activations and 1.25 GiB
    # of runtime: 2 sequences (19.9 GiB) fit, 3 (21.7 GiB) do not.
    report = preflight("deepseek-r1-distill-qwen-7b", {}, rtx4090)
    assert not report["blocked"], report["blocking"]
    settings = report["engine_settings"]
    assert (settings["max_model_len"], settings["max_num_seqs"]) == (32768, 2)
    assert settings["gpu_memory_utilization"] == 0.9 and settings["max_num_batched_tokens"] == 8192
    assert settings["dtype"] == "bfloat16" and settings["weight_format"] == "bf16" and settings["quantization"] is None
    assert settings["source"] == {"max_model_len": "derived", "max_num_seqs": "derived",
                                  "gpu_memory_utilization": "derived", "max_num_batched_tokens": "derived",
                                  "dtype": "derived", "quantization": "derived", "kv_cache_dtype": "derived"}
    assert report["settings_source"] == settings["source"]
    assert check(report, "gpu_memory")["ok"]                     # inside the 5 % band, no warning
    assert report["estimate"]["need_per_gpu_bytes"] <= 0.95 * 0.9 * 24564 * MIB
    three = v.estimate_variant(report["estimate"], catalogue.get_profile("deepseek-r1-distill-qwen-7b"), max_num_seqs=3)
    assert three["need_per_gpu_bytes"] > 0.95 * 0.9 * 24564 * MIB
    assert report["derivation"]["rule"] == "context 32768; the most sequences that fit, at most 16"


def test_only_sequences_set_derives_the_context(rtx4090):
    report = preflight("deepseek-r1-distill-qwen-7b", {"max_num_seqs": 16}, rtx4090)
    settings = report["engine_settings"]
    assert not report["blocked"] and settings["max_num_seqs"] == 16
    assert settings["max_model_len"] == 4096                      # the longest that fits, rounded down to 1024s
    assert settings["source"]["max_model_len"] == "derived" and settings["source"]["max_num_seqs"] == "set"
    profile = catalogue.get_profile("deepseek-r1-distill-qwen-7b")
    assert v.estimate_variant(report["estimate"], profile, context_length=5120)["need_per_gpu_bytes"] > \
        0.95 * 0.9 * 24564 * MIB


def test_only_context_set_derives_the_sequences(rtx4090):
    report = preflight("deepseek-r1-distill-qwen-7b", {"context_length": 8192}, rtx4090)
    settings = report["engine_settings"]
    # 20.5 GiB less 14.2 GiB weights, 1.0 GiB activations, 1.25 GiB runtime = 4.1 GiB for the cache;
    # 57,344 B x 8192 = 0.44 GiB per sequence: 9
    assert (settings["max_model_len"], settings["max_num_seqs"]) == (8192, 9)
    assert settings["source"]["max_model_len"] == "set" and settings["source"]["max_num_seqs"] == "derived"
    capped = preflight("deepseek-r1-distill-qwen-1.5b", {"context_length": 4096}, rtx4090)
    assert capped["engine_settings"]["max_num_seqs"] == 16          # at most the starting 16


def test_both_set_are_checked_never_changed(rtx4090):
    report = preflight("deepseek-r1-distill-qwen-7b", {"context_length": 32768, "max_num_seqs": 16}, rtx4090)
    assert report["blocked"] and report["engine_settings"]["max_model_len"] == 32768
    assert report["engine_settings"]["max_num_seqs"] == 16
    result = check(report, "gpu_memory")
    assert "lower max_num_seqs to 2" in result["fix"] and "cut context_length to 5120" in result["fix"]


def test_nothing_useful_fits_is_blocked_at_the_minimum(rtx4090):
    report = preflight("deepseek-r1-distill-qwen-32b", {"dtype": "bf16"}, rtx4090)
    assert report["blocked"]
    assert (report["estimate"]["context_length"], report["estimate"]["max_num_seqs"]) == (2048, 1)
    result = check(report, "gpu_memory")
    assert "(settings derived: not even 2048 tokens x 1 sequence fit in 21.6 GiB)" in result["message"]
    assert "use int4 (awq/gptq) weights (dtype awq)" in result["fix"]
    assert report["derivation"]["fits"] is False


def test_context_set_and_not_even_one_sequence_fits(rtx4090):
    report = preflight("deepseek-r1-distill-qwen-32b", {"dtype": "bf16", "context_length": 8192}, rtx4090)
    assert report["blocked"] and report["estimate"]["max_num_seqs"] == 1
    assert report["derivation"]["least_settings"] == [8192, 1]
    assert "(settings derived: not even 8192 tokens x 1 sequence fit in 21.6 GiB)" in check(report, "gpu_memory")[
        "message"]
    seqs = preflight("deepseek-r1-distill-qwen-32b", {"dtype": "bf16", "max_num_seqs": 4}, rtx4090)
    assert "(settings derived: not even 2048 tokens x 4 sequences fit" in check(seqs, "gpu_memory")["message"]


def test_one_sequence_at_a_shorter_context_when_one_at_32k_does_not_fit(tmp_path):
    gpu = facts(fake.FakeNvml([fake.t4(0)]), tmp_path)
    # 8B in fp16 on a 15 GiB T4: 15.0 GiB of weights alone at 0.90 x 15 GiB: nothing fits; in int8 (8.1 GiB of
    # weights) one sequence of 32K (4 GiB of KV) does not fit either, a shorter one does
    report = preflight("deepseek-r1-distill-llama-8b", {"dtype": "int8"}, gpu)
    settings = report["engine_settings"]
    assert settings["max_num_seqs"] == 1 and 2048 <= settings["max_model_len"] < 32768
    assert settings["max_model_len"] % 1024 == 0 and not report["blocked"], report["blocking"]
    assert report["derivation"]["rule"] == "one sequence at the longest context that fits (at least 2048)"
    # int8 weights compute in the checkpoint's bf16, which a T4 (7.5) lacks: float16 there, bfloat16 on an H200
    assert settings["dtype"] == "float16" and settings["weight_format"] == "int8"
    h200 = preflight("deepseek-r1-distill-llama-8b", {"dtype": "int8"}, facts(fake.hgx_h200(1), tmp_path))
    assert h200["engine_settings"]["dtype"] == "bfloat16"


def test_llama_cpp_on_the_cpu_derives_against_host_ram(tmp_path):
    gpu = facts(fake.library_missing(), tmp_path)
    plan = {"engine": "llama_cpp", "dtype": "Q4_1"}
    report = preflight("smollm2-135m-instruct", plan, gpu, dict(HOST, mem_available_bytes=4 * GIB))
    settings = report["engine_settings"]
    assert (settings["max_model_len"], settings["max_num_seqs"]) == (8192, 4)       # llama.cpp starts at 4
    assert settings["gpu_memory_utilization"] is None and settings["source"]["gpu_memory_utilization"] == "not_applicable"
    assert settings["max_num_batched_tokens"] == 512 and settings["memory_source"] == "meminfo"
    assert settings["ctx_size"] == 8192 * 4
    # 23,040 B per token: 8192 x 4 = 0.70 GiB of KV + weights + 0.5 GiB: with 1 GiB only one slot of 8K fits
    small = preflight("smollm2-135m-instruct", plan, gpu, dict(HOST, mem_available_bytes=1 * GIB))
    assert small["engine_settings"]["max_num_seqs"] < 4 and not small["blocked"]


def test_settings_set_are_reported_as_set(hgx):
    report = preflight("deepseek-r1-distill-qwen-7b", {"context_length": 8192, "max_num_seqs": 4,
                                                       "gpu_memory_utilization": 0.5, "max_num_batched_tokens": 2048,
                                                       "dtype": "bf16", "kv_cache_dtype": "fp8"}, hgx)
    settings = report["engine_settings"]
    assert set(settings["source"].values()) == {"set", "derived"}
    assert [k for k, s in sorted(settings["source"].items()) if s == "derived"] == ["quantization"]
    assert (settings["gpu_memory_utilization"], settings["max_num_batched_tokens"]) == (0.5, 2048)
    assert report["estimate"]["batched_tokens"] == 2048 and settings["kv_cache_dtype"] == "fp8"


def test_a_set_memory_fraction_is_not_lowered_in_the_settings(hgx):
    hgx["gpus"][0]["memory_free"] = 40 * GIB
    report = preflight("deepseek-r1-distill-qwen-7b", {"gpu_memory_utilization": 0.9}, hgx)
    assert report["engine_settings"]["gpu_memory_utilization"] == 0.9
    assert not check(report, "gpu_memory_free")["ok"]


def test_the_memory_fraction_cap_is_the_derived_start(hgx):
    report = preflight("deepseek-r1-distill-qwen-7b", {"gpu_memory_utilization_cap": 0.45}, hgx)
    assert report["engine_settings"]["gpu_memory_utilization"] == 0.45
    assert report["engine_settings"]["source"]["gpu_memory_utilization"] == "derived"
    assert check(report, "gpu_memory")["numbers"]["budget_per_gpu_bytes"] == int(0.45 * 143771 * MIB)


@pytest.mark.parametrize("dtype, engine_dtype, quantization", [
    ("auto", "bfloat16", None), ("fp16", "float16", None), ("fp8", "bfloat16", "fp8"), ("awq", "float16", "awq"),
    ("int8", "bfloat16", "int8"),
])
def test_dtype_and_quantization_are_explicit(hgx, dtype, engine_dtype, quantization):
    settings = preflight("deepseek-r1-distill-qwen-7b", {"dtype": dtype}, hgx)["engine_settings"]
    assert (settings["dtype"], settings["quantization"]) == (engine_dtype, quantization)
    assert settings["source"]["quantization"] == ("set" if quantization else "derived")


def test_deepseek_v3_keeps_its_native_fp8_without_a_quantization_flag(hgx):
    settings = preflight("deepseek-v3", {"tensor_parallel_size": 8}, hgx)["engine_settings"]
    assert (settings["dtype"], settings["weight_format"], settings["quantization"]) == ("bfloat16", "fp8", None)


def test_activation_dtype_overrides_the_engine_dtype(hgx):
    settings = preflight("deepseek-r1-distill-qwen-7b", {"dtype": "fp8", "activation_dtype": "fp16"},
                         hgx)["engine_settings"]
    assert settings["dtype"] == "float16" and settings["source"]["dtype"] == "set"


# --- the example inventory's boards ----------------------------------------------------------------

def test_deepseek_v3_fp8_tp8_sglang_fits_8xh200(hgx):
    report = preflight("deepseek-v3", {"engine": "sglang", "dtype": "fp8", "tensor_parallel_size": 8,
                                       "context_length": 32768, "max_num_seqs": 16}, hgx)
    assert not report["blocked"] and report["gpus_used"] == list(range(8))
    memory = check(report, "gpu_memory")
    # weights 79.3 GiB + MLA cache 61 x 576 x 2 B x 32768 x 16 = 34.3 GiB + runtime: 115.5 GiB of 126.4 GiB
    assert memory["numbers"]["kv_cache_per_gpu_bytes"] == 61 * 576 * 2 * 32768 * 16
    assert "needs 8 x 115.5 GiB" in memory["message"] and memory["numbers"]["source"] == "nvml"


def test_deepseek_v3_fp8_tp8_on_8xh100_is_refused_with_two_nodes(tmp_path):
    gpu = facts(fake.hgx_h100(), tmp_path)
    report = preflight("deepseek-v3", {"engine": "sglang", "dtype": "fp8", "tensor_parallel_size": 8,
                                       "context_length": 32768, "max_num_seqs": 16}, gpu)
    assert report["blocked"]
    memory = check(report, "gpu_memory")
    assert not memory["ok"] and "budget per GPU 0.90 x 79.6 GiB = 71.7 GiB" in memory["message"]
    assert ("serve it across 2 hosts of 8 GPUs: tensor_parallel_size 8 x pipeline_parallel_size 2 (one pipeline "
            "stage per host)") in memory["fix"]
    profile = catalogue.get_profile("deepseek-v3")
    two = v.estimate_variant(report["estimate"], profile, pipeline_parallel_size=2)
    assert two["need_per_gpu_bytes"] <= memory["numbers"]["budget_per_gpu_bytes"]
    # with the settings derived, not even 2048 x 1 fits (79.3 GiB of weights): the smaller format is named too
    derived = check(preflight("deepseek-v3", {"engine": "sglang", "tensor_parallel_size": 8}, gpu), "gpu_memory")
    assert "use int4 (awq/gptq) weights (dtype awq)" in derived["fix"] and "2 hosts of 8 GPUs" in derived["fix"]


def test_r1_distill_qwen_32b_bf16_tp2_fits_2xl40s_with_derived_settings(tmp_path):
    gpu = facts(fake.pcie_l40s(), tmp_path)
    report = preflight("deepseek-r1-distill-qwen-32b", {"dtype": "bf16", "tensor_parallel_size": 2}, gpu)
    assert not report["blocked"], report["blocking"]
    settings = report["engine_settings"]
    # 0.90 x 45.0 GiB x 0.95 = 38.5 GiB: weights 30.5 GiB + runtime 1.5 GiB + activations leave room for one
    # sequence of 32768 (131,072 B per token per GPU = 4 GiB), not two
    assert (settings["max_model_len"], settings["max_num_seqs"]) == (32768, 1)
    assert settings["tensor_parallel_size"] == 2 and settings["dtype"] == "bfloat16"
    assert settings["source"]["max_model_len"] == settings["source"]["max_num_seqs"] == "derived"
    assert settings["source"]["dtype"] == "set"
    assert report["gpus_used"] == [0, 1]


# --- a bare server: the PCI id table before the driver ------------------------------------------------

def bare_pci(tmp_path, boards):
    root = tempfile.mkdtemp(dir=str(tmp_path))
    return n.collect_gpu_facts(nvml=fake.driver_not_loaded(), sysfs_root=fake.bare_sysfs(root, boards),
                               proc_root=root)


def test_a_t4_is_refused_for_bf16_before_the_driver(tmp_path):
    gpu = bare_pci(tmp_path, ["t4"])
    assert gpu["status"] == "driver_not_loaded" and gpu["gpus"] == []
    report = preflight("deepseek-r1-distill-qwen-1.5b", {"dtype": "bf16", "defer_gpu_checks": True}, gpu)
    assert report["device"] == "pending" and report["blocked"]
    result = check(report, "compute_capability")
    assert not result["ok"] and result["numbers"]["source"] == "pci_ids"
    assert result["message"] == ("GPU 0 T4: compute capability 7.5 (Turing) is below 8.0: bf16 weights need compute "
                                 "capability 8.0 or newer (from the PCI id table; the driver is not loaded yet)")
    assert result["fix"].startswith("use dtype fp16 or int8 instead of bf16")
    assert "mig_mode: deferred until the driver is loaded" in report["skipped_checks"]
    assert "gpu_memory_free: free memory is unknown until the driver is loaded" in report["skipped_checks"]


def test_70b_bf16_on_2xl4_is_refused_before_the_driver(tmp_path):
    gpu = bare_pci(tmp_path, ["l4", "l4"])
    report = preflight("deepseek-r1-distill-llama-70b", {"dtype": "bf16", "tensor_parallel_size": 2,
                                                         "defer_gpu_checks": True}, gpu)
    assert report["blocked"]
    memory = check(report, "gpu_memory")
    assert not memory["ok"] and memory["numbers"]["source"] == "pci_ids"
    assert memory["numbers"]["gpu_total_bytes"] == 24 * GIB
    # 141.1 GB of bf16 weights / 2 = 65.7 GiB per GPU against 0.90 x 24.0 GiB
    assert "needs 2 x 67.7 GiB" in memory["message"]
    assert "budget per GPU 0.90 x 24.0 GiB = 21.6 GiB (L4 memory from the PCI id table" in memory["message"]
    assert check(report, "compute_capability")["ok"]               # L4 is 8.9: bf16 is fine
    assert report["engine_settings"]["memory_source"] == "pci_ids"


def test_a_plan_that_fits_passes_before_the_driver(tmp_path):
    report = preflight("deepseek-v3", {"tensor_parallel_size": 8, "defer_gpu_checks": True,
                                       "context_length": 32768, "max_num_seqs": 16}, bare_pci(tmp_path, ["h200"] * 8))
    assert not report["blocked"], report["blocking"]
    assert check(report, "gpu_memory")["ok"] and check(report, "compute_capability")["ok"]
    assert check(report, "gpu_count")["numbers"]["gpus_on_pci_bus"] == 8


def test_an_unknown_pci_id_is_skipped_with_its_id(tmp_path):
    report = preflight("deepseek-r1-distill-qwen-7b", {"defer_gpu_checks": True}, bare_pci(tmp_path, ["0x1234"]))
    assert not report["blocked"] and report["engine_settings"] is None
    why = "deferred until the driver is loaded: PCI device id 0x1234 (bus 0000:18:00.0) not in the PCI id table"
    assert "gpu_memory: " + why in report["skipped_checks"]
    assert "compute_capability: " + why in report["skipped_checks"]
    assert all(c["check"] not in ("gpu_memory", "compute_capability") for c in report["checks"])


def test_more_gpus_than_the_pci_bus_has_are_refused_before_the_driver(tmp_path):
    report = preflight("deepseek-r1-distill-qwen-7b", {"tensor_parallel_size": 4, "defer_gpu_checks": True},
                       bare_pci(tmp_path, ["l4", "l4"]))
    result = check(report, "gpu_count")
    assert not result["ok"] and "needs 4 GPUs" in result["message"] and "2 NVIDIA GPU(s) on the PCI bus" in \
        result["message"]


# --- chosen GPUs --------------------------------------------------------------------------------------------

def test_the_plan_can_name_its_gpus(hgx):
    report = preflight("deepseek-r1-distill-qwen-7b", {"gpu_indices": [3, 5], "tensor_parallel_size": 2}, hgx)
    assert report["gpus_used"] == [3, 5] and check(report, "gpu_count")["message"] == "GPUs 3, 5 of 8 usable GPUs used"


def test_a_named_gpu_that_is_not_usable(tmp_path):
    gpu = facts(fake.error_halfway(), tmp_path)
    report = preflight("deepseek-r1-distill-qwen-7b", {"gpu_indices": [2], "context_length": 4096}, gpu)
    result = check(report, "gpu_count")
    assert not result["ok"] and result["message"] == "GPU 2 of the plan is not usable on this host (usable GPUs: 0, 1, 3)"
