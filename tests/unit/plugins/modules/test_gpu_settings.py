# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

import fake_pynvml as fake
from ansible_collections.llmops.gpu_stack.plugins.modules import gpu_settings


@pytest.fixture
def nvml(monkeypatch):
    """Install a fake NVML for the module; returns a setter taking the FakeNvml (or None)."""

    def use(fake_nvml):
        monkeypatch.setattr(gpu_settings, "import_pynvml",
                            lambda path: (fake_nvml, None) if fake_nvml else (None, "No module named 'pynvml'"))
        monkeypatch.setattr(gpu_settings, "read_boot_id", lambda: "boot-test")
        return fake_nvml

    return use


def args(tmp_path, **extra):
    base = {"state_dir": str(tmp_path / "state")}
    base.update(extra)
    return base


def test_power_limit_changes_then_is_idempotent(run_module, nvml, tmp_path):
    host = nvml(fake.hgx_h200(2))
    outcome, result = run_module(gpu_settings.main, args(tmp_path, power_limit=600))
    assert outcome == "exit" and result["changed"] is True
    assert result["diff"]["before"] == {"gpu0": {"power_limit": 700}, "gpu1": {"power_limit": 700}}
    assert result["diff"]["after"] == {"gpu0": {"power_limit": 600}, "gpu1": {"power_limit": 600}}
    assert [g.power_limit for g in host.gpus] == [600000, 600000]
    outcome, again = run_module(gpu_settings.main, args(tmp_path, power_limit=600))
    assert outcome == "exit" and again["changed"] is False
    assert host.initialised == 0                          # NVML shut down after each run


def test_check_mode_reports_but_changes_nothing(run_module, nvml, tmp_path):
    host = nvml(fake.hgx_h200(1))
    outcome, result = run_module(gpu_settings.main, args(tmp_path, persistence_mode=False,
                                                         locked_clocks={"min": 1410, "max": 1980}), check_mode=True)
    assert outcome == "exit" and result["changed"] is True
    assert result["diff"]["after"]["gpu0"] == {"persistence_mode": False, "locked_clocks": {"min": 1410, "max": 1980}}
    assert host.setter_calls() == [] and not (tmp_path / "state").exists()


def test_selector_by_uuid(run_module, nvml, tmp_path):
    host = nvml(fake.hgx_h200(3))
    outcome, result = run_module(gpu_settings.main, args(tmp_path, gpus=[host.gpus[2].uuid], compute_mode="exclusive_process"))
    assert outcome == "exit" and [g["index"] for g in result["gpus"]] == [2]
    assert [g.compute_mode for g in host.gpus] == [0, 0, 3]


def test_selector_matching_nothing_fails(run_module, nvml, tmp_path):
    nvml(fake.hgx_h200(2))
    outcome, result = run_module(gpu_settings.main, args(tmp_path, gpus=["5"], power_limit=600))
    assert outcome == "fail" and "nothing changed" in result["msg"] and "'5'" in result["msg"]


def test_unsupported_pair_fails_with_the_supported_pairs(run_module, nvml, tmp_path):
    host = nvml(fake.hgx_h200(1))
    outcome, result = run_module(gpu_settings.main, args(tmp_path, application_clocks={"memory": 2619, "graphics": 1980}))
    assert outcome == "fail" and result["changed"] is False
    assert "memory 3201 MHz with graphics 1980-345 step 15 MHz" in result["msg"]
    assert host.setter_calls() == []


def test_geforce_best_effort(run_module, nvml, tmp_path):
    nvml(fake.geforce())
    outcome, result = run_module(gpu_settings.main, args(tmp_path, reset_application_clocks=True, best_effort=True))
    assert outcome == "exit" and result["changed"] is False
    assert result["skipped_settings"][0]["setting"] == "application_clocks"
    assert "skipped" not in result                     # Ansible would report the task as skipped
    outcome, result = run_module(gpu_settings.main, args(tmp_path, reset_application_clocks=True))
    assert outcome == "fail" and "not supported" in result["msg"]


def test_failure_part_way(run_module, nvml, tmp_path):
    host = nvml(fake.hgx_h200(2))
    host.gpus[1].errors["nvmlDeviceSetPersistenceMode"] = fake.NVML_ERROR_GPU_IS_LOST
    outcome, result = run_module(gpu_settings.main, args(tmp_path, persistence_mode=False))
    assert outcome == "fail" and result["changed"] is True
    assert result["applied"] == [{"gpu": 0, "uuid": host.gpus[0].uuid, "setting": "persistence_mode", "after": False}]
    assert "after 1 change(s)" in result["msg"]


def test_missing_bindings(run_module, nvml, tmp_path):
    nvml(None)
    outcome, result = run_module(gpu_settings.main, args(tmp_path, power_limit=600))
    assert outcome == "fail"
    assert "Failed to import the required Python library (nvidia-ml-py (import name pynvml))" in result["msg"]
    assert "nvidia-ml-py==13.615.71" in result["msg"]


def test_driver_not_loaded(run_module, nvml, tmp_path):
    nvml(fake.driver_not_loaded())
    outcome, result = run_module(gpu_settings.main, args(tmp_path, power_limit=600))
    assert outcome == "fail" and result["status"] == "driver_not_loaded" and "modprobe nvidia" in result["msg"]


def test_nothing_requested(run_module, nvml, tmp_path):
    nvml(fake.hgx_h200(1))
    outcome, result = run_module(gpu_settings.main, args(tmp_path, reset_locked_clocks=False))
    assert outcome == "fail" and "no setting requested" in result["msg"]


def test_persistence_false_is_a_request(run_module, nvml, tmp_path):
    nvml(fake.hgx_h200(1))
    outcome, result = run_module(gpu_settings.main, args(tmp_path, persistence_mode=False))
    assert outcome == "exit" and result["changed"] is True


def test_mutually_exclusive_options(run_module, nvml, tmp_path):
    nvml(fake.hgx_h200(1))
    outcome, result = run_module(gpu_settings.main, args(tmp_path, locked_clocks={"min": 1000, "max": 1500},
                                                         reset_locked_clocks=True))
    assert outcome == "fail" and "mutually exclusive" in result["msg"]


def test_unwritable_state_dir(run_module, nvml, tmp_path):
    nvml(fake.hgx_h200(1))
    blocker = tmp_path / "file"
    blocker.write_text("")
    outcome, result = run_module(gpu_settings.main, {"state_dir": str(blocker / "sub"),
                                                     "locked_clocks": {"min": 1000, "max": 1500}})
    assert outcome == "fail" and "locked-clocks record" in result["msg"] and result["changed"] is True
