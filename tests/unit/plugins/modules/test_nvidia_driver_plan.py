# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from ansible_collections.llmops.gpu_stack.plugins.modules import nvidia_driver_plan

HGX_H200 = {
    "status": "driver_not_loaded",
    "nvswitch_present": True,
    "gpus": [],
    "pci_devices": [{"bus_id": "0000:%02x:00.0" % b, "device_id": "0x2335", "kind": "gpu"} for b in (0x18, 0x2a)]
    + [{"bus_id": "0000:05:00.0", "device_id": "0x22a3", "kind": "nvswitch"}],
}


def test_plan_for_an_hgx_host(run_module):
    outcome, result = run_module(nvidia_driver_plan.main, {"gpu": HGX_H200, "driver_version": "580.65.06"},
                                 check_mode=True)
    assert outcome == "exit" and result["changed"] is False
    plan = result["plan"]
    assert plan["kernel_modules"] == "open" and plan["fabric_manager"] is True and plan["gpu_count"] == 2
    assert result["warnings_shown"] == []


def test_eol_branch_is_a_warning(run_module):
    outcome, result = run_module(nvidia_driver_plan.main, {"gpu": {}, "driver_version": "550.163.01"})
    assert outcome == "exit" and result["plan"]["kernel_modules"] == "proprietary"
    assert any("end of life" in w for w in result["warnings_shown"])


def test_impossible_flavour_fails(run_module):
    outcome, result = run_module(nvidia_driver_plan.main,
                                 {"gpu": HGX_H200, "driver_version": "535.261.03", "kernel_modules": "proprietary"})
    assert outcome == "exit"
    gpu = dict(HGX_H200, pci_devices=[{"bus_id": "0000:18:00.0", "device_id": "0x1db4", "kind": "gpu"}])
    outcome, result = run_module(nvidia_driver_plan.main,
                                 {"gpu": gpu, "driver_version": "535.261.03", "kernel_modules": "open"})
    assert outcome == "fail" and "Turing and newer" in result["msg"]


def test_bad_version_fails(run_module):
    outcome, result = run_module(nvidia_driver_plan.main, {"gpu": {}, "driver_version": "latest"})
    assert outcome == "fail" and "invalid driver version" in result["msg"]
