# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _gpu_tables as t


@pytest.mark.parametrize("text, expected", [
    ("550.54.14", (550, 54, 14)),
    ("570.26", (570, 26)),
    ("12.4", (12, 4)),
    (" v13.0 ", (13, 0)),
    (580, (580,)),
    (12.4, (12, 4)),
])
def test_parse_version_good(text, expected):
    assert t.parse_version(text) == expected


@pytest.mark.parametrize("text", ["", None, "abc", "550..1", "12.x", True, "550.54.14-1"])
def test_parse_version_bad(text):
    with pytest.raises(ValueError):
        t.parse_version(text)


@pytest.mark.parametrize("left, right, expected", [
    ("550.54.14", "550.54.14", 0),
    ("550.54.15", "550.54.14", 1),
    ("550.54", "550.54.14", -1),
    ("12.4", "12.4.0", 0),
    ("570.26", "565.57.01", 1),
    ("535.230.02", "545.23.06", -1),
])
def test_compare_versions(left, right, expected):
    assert t.compare_versions(left, right) == expected


@pytest.mark.parametrize("cuda, driver", [
    ("11.7", "515.43.04"), ("11.8", "520.61.05"), ("12.0", "525.60.13"), ("12.1", "530.30.02"),
    ("12.2", "535.54.03"), ("12.3", "545.23.06"), ("12.4", "550.54.14"), ("12.5", "555.42.02"),
    ("12.6", "560.28.03"), ("12.8", "570.26"), ("12.9", "575.51.03"), ("13.0", "580.65.06"),
    ("12.4.1", "550.54.14"), (12040, "550.54.14"),
])
def test_min_driver_for_cuda_matches_the_release_notes_table(cuda, driver):
    assert t.min_driver_for_cuda(cuda) == driver


@pytest.mark.parametrize("cuda", ["12.7", "10.2", "14.0"])
def test_min_driver_for_unknown_cuda_names_the_known_releases(cuda):
    with pytest.raises(ValueError, match="known releases: 11.7, 11.8, 12.0"):
        t.min_driver_for_cuda(cuda)


@pytest.mark.parametrize("driver, cuda, level", [
    ("550.54.14", "12.4", "full"),
    ("570.133.20", "12.4", "full"),
    ("550.54.13", "12.4", "minor_version_compat"),    # below 550.54.14, above the 12.x floor 525.60.13
    ("535.230.02", "12.8", "minor_version_compat"),
    ("525.60.13", "12.9", "minor_version_compat"),
    ("525.60.12", "12.0", "unsupported"),
    ("520.61.05", "12.1", "unsupported"),
    ("575.51.03", "13.0", "unsupported"),             # 13.x needs >= 580
    ("580.65.06", "13.0", "full"),
    ("580.0", "13.1", "minor_version_compat"),        # not in the table: the 13.x floor decides
    ("470.82.01", "11.8", "minor_version_compat"),    # 11.x floor 450.80.02
    ("450.80.01", "11.7", "unsupported"),
])
def test_cuda_support_level(driver, cuda, level):
    assert t.cuda_support_level(driver, cuda) == level


def test_driver_supports_cuda_strict_and_compat():
    ok, reason = t.driver_supports_cuda("570.133.20", "12.8")
    assert ok and "570.26" in reason
    ok, reason = t.driver_supports_cuda("535.230.02", "12.8")
    assert not ok and "minor-version" in reason and "570.26" in reason
    ok, reason = t.driver_supports_cuda("535.230.02", "12.8", allow_minor_version_compat=True)
    assert ok
    ok, reason = t.driver_supports_cuda("515.105.01", "12.4")
    assert not ok and "too old" in reason and "550.54.14" in reason
    ok, reason = t.driver_supports_cuda("not-a-version", "12.4")
    assert not ok and "not a version" in reason


@pytest.mark.parametrize("driver, cuda", [
    ("550.54.14", "12.4"), ("570.26", "12.8"), ("535.54.03", "12.2"), ("580.95.05", "13.0"), ("555.42.02", "12.5"),
])
def test_max_cuda_for_driver(driver, cuda):
    assert t.max_cuda_for_driver(driver) == cuda


def test_max_cuda_for_old_driver_is_none():
    assert t.max_cuda_for_driver("510.47.03") is None


@pytest.mark.parametrize("driver, kind, supported", [
    ("535.230.02", "lts", True),
    ("570.133.20", "production", True),
    ("580.65.06", "lts", True),
    ("550.127.05", "eol", False),
    ("575.51.03", "eol", False),
    ("590.10", "unknown", None),
])
def test_driver_branch_status(driver, kind, supported):
    status = t.driver_branch_status(driver)
    assert status["kind"] == kind and status["supported"] is supported
    assert status["branch"] == int(driver.split(".")[0])


@pytest.mark.parametrize("value, expected", [
    ("9.0", (9, 0)), ("sm_90", (9, 0)), ("sm89", (8, 9)), ("compute_75", (7, 5)), (8.6, (8, 6)),
    ((8, 0), (8, 0)), (90, (9, 0)), ("sm_100a", (10, 0)), ("7", (7, 0)),
])
def test_parse_compute_capability(value, expected):
    assert t.parse_compute_capability(value) == expected


@pytest.mark.parametrize("value", ["", "nine", None, "9.x", True])
def test_parse_compute_capability_bad(value):
    with pytest.raises(ValueError):
        t.parse_compute_capability(value)


@pytest.mark.parametrize("cc, arch", [
    ("9.0", "Hopper"), ("8.9", "Ada Lovelace"), ("8.6", "Ampere"), ("8.0", "Ampere"), ("7.5", "Turing"),
    ("7.0", "Volta"), ("10.0", "Blackwell"), ("12.0", "Blackwell"), ("6.1", "Pascal"), ("2.0", "unknown"),
])
def test_architecture_for_cc(cc, arch):
    assert t.architecture_for_cc(cc) == arch


def test_facts_table_gpus_map_to_their_architecture():
    expected = {"H200": "Hopper", "H100": "Hopper", "L40S": "Ada Lovelace", "RTX 4090": "Ada Lovelace",
                "A10": "Ampere", "RTX 3090": "Ampere", "A100": "Ampere", "T4": "Turing", "V100": "Volta"}
    assert dict((gpu, t.architecture_for_cc(cc)) for gpu, cc in t.GPU_COMPUTE_CAPABILITY.items()) == expected


@pytest.mark.parametrize("text, expected", [
    ("bfloat16", "bf16"), ("float16", "fp16"), ("half", "fp16"), ("float32", "fp32"), ("fp8_e4m3", "fp8"),
    ("q4_k_m", "Q4_K_M"), ("Q8_0", "Q8_0"), ("iq4_xs", "IQ4_XS"), ("AWQ", "awq"), ("auto", "auto"), (None, None),
])
def test_normalize_dtype(text, expected):
    assert t.normalize_dtype(text) == expected


@pytest.mark.parametrize("engine, dtype, cc, ok", [
    ("vllm", "bf16", "9.0", True),
    ("vllm", "bf16", "7.5", False),      # bf16 needs 8.0
    ("vllm", "fp16", "7.5", True),
    ("vllm", "fp16", "7.0", True),       # V100 is vLLM's floor
    ("vllm", "fp16", "6.1", False),
    ("vllm", "fp8", "8.9", True),
    ("vllm", "fp8", "8.6", False),       # fp8 tensor cores from Ada on
    ("vllm", "awq", "7.5", True),
    ("vllm", "awq", "7.0", False),
    ("vllm", "gptq", "7.0", True),
    ("sglang", "fp16", "7.5", False),    # SGLang kernels need sm80
    ("sglang", "bf16", "8.0", True),
    ("llama_cpp", "Q4_K_M", "5.2", True),
])
def test_compute_capability_ok(engine, dtype, cc, ok):
    assert t.compute_capability_ok(cc, engine, dtype)[0] is ok


def test_required_compute_capability_takes_the_highest_and_says_why():
    cc, reasons = t.required_compute_capability("vllm", "fp8", "8.0")
    assert cc == "8.9" and reasons == ["fp8 weights need compute capability 8.9 or newer"]
    cc, reasons = t.required_compute_capability("vllm", "fp16", "9.0")
    assert cc == "9.0" and reasons == ["min_compute_capability is 9.0"]
    assert t.required_compute_capability("llama_cpp", "Q4_0") == (None, [])


def test_engine_tables():
    assert t.engine_min_cc("vllm") == "7.0"
    assert t.engine_min_cc("sglang") == "8.0"
    assert t.engine_min_cc("llama_cpp") is None
    assert t.engine_needs_gpu("vllm") and not t.engine_needs_gpu("llama_cpp")
    with pytest.raises(ValueError, match="known: llama_cpp, sglang, vllm"):
        t.engine_min_cc("tgi")


@pytest.mark.parametrize("value, expected", [(12040, "12.4"), (12080, "12.8"), (13000, "13.0"), (11080, "11.8")])
def test_cuda_version_from_int(value, expected):
    assert t.cuda_version_from_int(value) == expected
