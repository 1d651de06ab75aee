# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from ansible_collections.llmops.gpu_stack.plugins.modules import cuda_compat


def test_planned_driver_is_compared(run_module):
    outcome, result = run_module(cuda_compat.main, {"cuda_version": "11.8.89", "driver_version": "535.261.03"},
                                 check_mode=True)
    assert outcome == "exit" and result["changed"] is False
    assert result["supported"] is True and result["driver_source"] == "planned" and result["cuda"] == "11.8"


def test_incompatible_pair_is_reported_not_failed(run_module):
    outcome, result = run_module(cuda_compat.main, {"cuda_version": "12.4.131", "driver_version": "535.261.03"})
    assert outcome == "exit" and result["supported"] is False
    assert "550.54.14" in result["msg"] and "535.261.03" in result["msg"]


def test_detected_driver_is_used_without_a_planned_one(run_module, monkeypatch):
    monkeypatch.setattr(cuda_compat, "detect_driver", lambda: ("550.163.01", "installed"))
    outcome, result = run_module(cuda_compat.main, {"cuda_version": "12.4"})
    assert outcome == "exit" and result["supported"] is True and result["driver_source"] == "installed"


def test_unknown_cuda_release_fails(run_module):
    outcome, result = run_module(cuda_compat.main, {"cuda_version": "12.7", "driver_version": "570.26"})
    assert outcome == "fail" and "not in the driver table" in result["msg"]
