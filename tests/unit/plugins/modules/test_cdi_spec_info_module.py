# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The cdi_spec_info module on spec files in a temporary directory."""

from __future__ import annotations

from ansible_collections.llmops.gpu_stack.plugins.modules import cdi_spec_info

SPEC = """cdiVersion: 0.5.0
containerEdits:
  mounts:
  - containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.570.133.20
    hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.570.133.20
devices:
- containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
  name: "0"
- containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
  name: GPU-6f1c2e1a-0b7e-4f43-9b5e-2e64a8c10000
- containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
  name: all
kind: nvidia.com/gpu
"""


def test_current_spec(run_module, tmp_path):
    path = tmp_path / "nvidia.yaml"
    path.write_text(SPEC)
    outcome, result = run_module(cdi_spec_info.main, {"path": str(path), "driver_version": "570.133.20",
                                                      "gpu_uuids": ["GPU-6f1c2e1a-0b7e-4f43-9b5e-2e64a8c10000"]},
                                 check_mode=True)
    assert outcome == "exit" and result["changed"] is False
    assert result["exists"] is True and result["stale"] is False and result["reasons"] == []
    assert result["device_names"] == ["0", "GPU-6f1c2e1a-0b7e-4f43-9b5e-2e64a8c10000", "all"]


def test_stale_after_driver_upgrade(run_module, tmp_path):
    path = tmp_path / "nvidia.yaml"
    path.write_text(SPEC)
    outcome, result = run_module(cdi_spec_info.main, {"path": str(path), "driver_version": "580.65.06"})
    assert outcome == "exit" and result["stale"] is True
    assert result["reasons"] == ["the spec was generated for driver 570.133.20, the host runs driver 580.65.06"]


def test_missing_spec_is_stale(run_module, tmp_path):
    outcome, result = run_module(cdi_spec_info.main, {"path": str(tmp_path / "nvidia.yaml")})
    assert outcome == "exit" and result["exists"] is False and result["stale"] is True


def test_garbage_fails_with_the_fix(run_module, tmp_path):
    path = tmp_path / "nvidia.yaml"
    path.write_text("cdiVersion: [broken\n")
    outcome, result = run_module(cdi_spec_info.main, {"path": str(path)})
    assert outcome == "fail" and "not a usable CDI specification" in result["msg"] and "nvidia-ctk cdi generate" in result["msg"]


def test_unreadable_path_fails_with_the_fix(run_module, tmp_path):
    outcome, result = run_module(cdi_spec_info.main, {"path": str(tmp_path)})   # a directory
    assert outcome == "fail" and "cannot read" in result["msg"] and "Fix:" in result["msg"]
