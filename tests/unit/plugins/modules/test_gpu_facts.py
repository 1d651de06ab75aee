# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import functools

import pytest

import fake_pynvml as fake
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _nvml
from ansible_collections.llmops.gpu_stack.plugins.modules import gpu_facts


@pytest.fixture
def host(monkeypatch, tmp_path):
    """Point the module at a fake NVML and a fake /sys + /proc; returns a setter."""

    def use(nvml, sysfs_builder=fake.empty_sysfs):
        sysfs = sysfs_builder(tmp_path)
        collect = functools.partial(_nvml.collect_gpu_facts, sysfs_root=sysfs, proc_root=str(tmp_path))
        monkeypatch.setattr(gpu_facts, "collect_gpu_facts", collect)
        monkeypatch.setattr(_nvml, "import_pynvml", lambda path: (nvml, None) if nvml else (None, "No module named 'pynvml'"))
        return nvml

    return use


def test_healthy_host(run_module, host):
    host(fake.hgx_h200(), fake.hgx_sysfs)
    outcome, result = run_module(gpu_facts.main, {})
    assert outcome == "exit" and result["changed"] is False
    gpu = result["ansible_facts"]["gpu"]
    assert gpu["status"] == "ok" and gpu["gpu_count"] == 8 and gpu["nvswitch_present"] is True
    assert gpu["gpus"][7]["pci_bus_id"] == "00000000:DB:00.0"
    assert "supported_clocks" not in gpu["gpus"][0]


def test_check_mode_and_supported_clocks(run_module, host):
    host(fake.mixed())
    outcome, result = run_module(gpu_facts.main, {"supported_clocks": True}, check_mode=True)
    assert outcome == "exit"
    l40s = result["ansible_facts"]["gpu"]["gpus"][1]
    assert [pair["memory"] for pair in l40s["supported_clocks"]] == [9001, 5001, 810]


@pytest.mark.parametrize("scenario, status", [
    (fake.driver_not_loaded, "driver_not_loaded"),
    (fake.library_missing, "library_missing"),
    (fake.error_halfway, "error"),
])
def test_host_problems_are_facts_not_failures(run_module, host, scenario, status):
    host(scenario(), fake.geforce_sysfs)
    outcome, result = run_module(gpu_facts.main, {})
    assert outcome == "exit"
    gpu = result["ansible_facts"]["gpu"]
    assert gpu["status"] == status and "Fix:" in gpu["reason"]
    assert gpu["pci_gpu_count"] == 1


def test_bindings_missing(run_module, host):
    host(None, fake.geforce_sysfs)
    outcome, result = run_module(gpu_facts.main, {"bindings_path": "/opt/elsewhere"})
    gpu = result["ansible_facts"]["gpu"]
    assert outcome == "exit" and gpu["status"] == "bindings_missing"
    assert "Failed to import the required Python library (nvidia-ml-py" in gpu["reason"]


def test_no_device(run_module, host):
    host(fake.library_missing())
    outcome, result = run_module(gpu_facts.main, {})
    assert result["ansible_facts"]["gpu"]["status"] == "no_nvidia_device"


def test_internal_error_is_a_clean_failure(run_module, monkeypatch):
    def broken(**kwargs):
        raise KeyError("clocks")

    monkeypatch.setattr(gpu_facts, "collect_gpu_facts", broken)
    outcome, result = run_module(gpu_facts.main, {})
    assert outcome == "fail" and "KeyError" in result["msg"] and "bug in llmops.gpu_stack" in result["msg"]
    assert "Traceback" in result["exception"]


def test_bad_option(run_module, host):
    host(fake.hgx_h200(1))
    outcome, result = run_module(gpu_facts.main, {"supported_clocks": "sometimes"})
    assert outcome == "fail" and "supported_clocks" in result["msg"]
