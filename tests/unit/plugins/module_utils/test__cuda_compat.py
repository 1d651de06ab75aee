# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _cuda_compat as c
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _gpu_tables as t


# The pins the nvidia_driver and cuda roles ship (vars files), checked against the table:
# every default toolkit must run on the default driver of the same source and OS.
SHIPPED_PAIRS = [
    ("Debian 12 distribution", "535.261.03", "11.8.89"),
    ("Debian 13 distribution", "550.163.01", "12.4.131"),
    ("Ubuntu distribution", "580.173.02", "12.8.1"),
    ("NVIDIA repository", "580.65.06", "12.8.1"),
]


@pytest.mark.parametrize("where, driver, cuda", SHIPPED_PAIRS)
def test_shipped_pins_are_compatible(where, driver, cuda):
    result = c.check_toolkit(cuda, driver, "planned")
    assert result["supported"] is True and result["level"] == "full", where


@pytest.mark.parametrize("cuda, minimum", [
    ("11.8", "520.61.05"), ("12.2", "535.54.03"), ("12.4", "550.54.14"),
    ("12.8", "570.26"), ("13.0", "580.65.06"),
])
def test_table_minimums(cuda, minimum):
    assert t.min_driver_for_cuda(cuda) == minimum


def test_refusal_names_both_versions_and_the_minimum():
    result = c.check_toolkit("11.8.89", "450.51.06", "planned")
    assert result["supported"] is False and result["level"] == "unsupported"
    assert "450.51.06" in result["msg"] and "CUDA 11.8" in result["msg"] and "520.61.05" in result["msg"]
    older = c.check_toolkit("11.8.89", "515.43.04", "planned")
    assert older["supported"] is False and "CUDA 11.7" in older["msg"]  # the newest release it runs


def test_minor_version_compat_needs_explicit_consent():
    strict = c.check_toolkit("12.4.131", "535.261.03", "installed")
    assert strict["supported"] is False and strict["level"] == "minor_version_compat"
    assert "550.54.14" in strict["msg"] and "535.261.03" in strict["msg"] and "Fix:" in strict["msg"]
    assert strict["newest_cuda_for_driver"] == "12.2"
    relaxed = c.check_toolkit("12.4.131", "535.261.03", "installed", allow_minor_version_compat=True)
    assert relaxed["supported"] is True and "Fix:" not in relaxed["msg"]


def test_cuda_13_on_r570_is_refused_even_with_compat():
    result = c.check_toolkit("13.0", "570.133.20", "loaded", allow_minor_version_compat=True)
    assert result["supported"] is False and "580.65.06" in result["msg"]


def test_no_driver_is_refused():
    result = c.check_toolkit("12.4", None, "none")
    assert result["supported"] is False and "no NVIDIA driver" in result["msg"]


@pytest.mark.parametrize("cuda, driver", [("12.7", "570.26"), ("twelve", "570.26"), ("12.4", "latest")])
def test_bad_input_raises(cuda, driver):
    with pytest.raises(ValueError):
        c.check_toolkit(cuda, driver, "planned")


def test_detect_loaded_driver_first(tmp_path):
    (tmp_path / "module" / "nvidia").mkdir(parents=True)
    (tmp_path / "module" / "nvidia" / "version").write_text("570.133.20\n")
    libs = tmp_path / "lib"
    libs.mkdir()
    (libs / "libcuda.so.535.261.03").write_text("")
    assert c.detect_driver(str(tmp_path), [str(libs)]) == ("570.133.20", "loaded")


def test_detect_installed_libraries(tmp_path):
    libs = tmp_path / "lib"
    libs.mkdir()
    for name in ("libcuda.so.1", "libcuda.so", "libnvidia-ml.so.535.261.03", "libcuda.so.535.261.03",
                 "libnvidia-ml.so.1", "libcudart.so.12.4.127"):
        (libs / name).write_text("")
    assert c.detect_driver(str(tmp_path), [str(libs), str(tmp_path / "missing")]) == ("535.261.03", "installed")


def test_detect_nothing(tmp_path):
    assert c.detect_driver(str(tmp_path), [str(tmp_path)]) == (None, "none")
