# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json

import pytest

import fake_pynvml as fake
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _gpu_settings as g
from ansible_collections.llmops.gpu_stack.plugins.module_utils._nvml import NvmlSession


def run(nvml, tmp_path, check_mode=False, boot_id="boot-1", **wanted):
    with NvmlSession(nvml) as session:
        return g.configure(session, wanted, check_mode=check_mode, state_dir=str(tmp_path / "state"), boot_id=boot_id)


@pytest.mark.parametrize("values, text", [
    ([1980, 1965, 1950, 1935], "1980-1935 step 15"),
    ([1980, 1965, 1410], "1980, 1965, 1410"),
    ([810, 210], "810, 210"),
    ([3, 2, 1, 10], "10, 3-1 step 1"),
    ([], ""),
])
def test_compress_clocks(values, text):
    assert g.compress_clocks(values) == text


def test_select_all_index_and_uuid():
    nvml = fake.hgx_h200(4)
    with NvmlSession(nvml) as session:
        assert [x[0] for x in g.select_gpus(session, ["all"])] == [0, 1, 2, 3]
        uuid = nvml.gpus[3].uuid
        assert [x[0] for x in g.select_gpus(session, ["1", uuid.upper(), "1"])] == [1, 3]


def test_selector_matching_nothing_lists_the_gpus():
    with NvmlSession(fake.hgx_h200(2)) as session:
        with pytest.raises(g.SettingsError) as exc:
            g.select_gpus(session, ["7", "GPU-nope"])
    assert "'7', 'GPU-nope'" in str(exc.value) and "0 GPU-" in str(exc.value) and "NVIDIA H200" in str(exc.value)


def test_power_limit_changes_only_what_differs(tmp_path):
    nvml = fake.hgx_h200(2)
    nvml.gpus[1].power_limit = 600000
    result = run(nvml, tmp_path, power_limit=600)
    assert result["changed"] is True
    assert result["diff"] == {"before": {"gpu0": {"power_limit": 700}}, "after": {"gpu0": {"power_limit": 600}}}
    assert nvml.setter_calls() == [("nvmlDeviceSetPowerManagementLimit", 0, 600000)]
    again = run(nvml, tmp_path, power_limit=600)
    assert again["changed"] is False and again["diff"] == {"before": {}, "after": {}}


@pytest.mark.parametrize("watts", [199, 701])
def test_power_limit_out_of_range_fails_before_any_change(tmp_path, watts):
    nvml = fake.hgx_h200(2)
    with pytest.raises(g.SettingsError, match="outside this GPU's range 200-700 W"):
        run(nvml, tmp_path, power_limit=watts, persistence_mode=False)
    assert nvml.setter_calls() == []


def test_check_mode_changes_nothing(tmp_path):
    nvml = fake.hgx_h200(2)
    result = run(nvml, tmp_path, check_mode=True, persistence_mode=False, compute_mode="exclusive_process",
                 application_clocks={"memory": 3201, "graphics": 1980}, locked_clocks={"min": 1410, "max": 1980})
    assert result["changed"] is True
    assert set(result["diff"]["after"]["gpu0"]) == {"persistence_mode", "compute_mode", "application_clocks", "locked_clocks"}
    assert nvml.setter_calls() == []
    assert not (tmp_path / "state").exists()


def test_apply_all_settings_then_idempotent(tmp_path):
    nvml = fake.hgx_h200(1)
    wanted = dict(persistence_mode=False, compute_mode="exclusive_process", power_limit=650,
                  application_clocks={"memory": 3201, "graphics": 1980}, locked_clocks={"min": 1410, "max": 1980})
    first = run(nvml, tmp_path, **wanted)
    assert first["changed"]
    assert [c[0] for c in nvml.setter_calls()] == [
        "nvmlDeviceSetPowerManagementLimit", "nvmlDeviceSetPersistenceMode", "nvmlDeviceSetComputeMode",
        "nvmlDeviceSetApplicationsClocks", "nvmlDeviceSetGpuLockedClocks"]
    gpu = nvml.gpus[0]
    assert gpu.persistence == 0 and gpu.compute_mode == 3 and gpu.power_limit == 650000
    assert gpu.app_clocks == {2: 3201, 0: 1980} and gpu.locked == (1410, 1980)
    record = json.loads((tmp_path / "state" / g.LOCKED_CLOCKS_RECORD).read_text())
    assert record == {"boot_id": "boot-1", "gpus": {gpu.uuid: {"min": 1410, "max": 1980}}}
    second = run(nvml, tmp_path, **wanted)
    assert second["changed"] is False and len(nvml.setter_calls()) == 5


def test_locked_clock_record_from_an_earlier_boot_is_ignored(tmp_path):
    nvml = fake.hgx_h200(1)
    run(nvml, tmp_path, locked_clocks={"min": 1410, "max": 1980})
    after_reboot = run(nvml, tmp_path, boot_id="boot-2", locked_clocks={"min": 1410, "max": 1980})
    assert after_reboot["changed"] is True


def test_unsupported_clock_pair_lists_supported_pairs(tmp_path):
    nvml = fake.mixed()
    with pytest.raises(g.SettingsError) as exc:
        run(nvml, tmp_path, gpus=["1"], application_clocks={"memory": 9001, "graphics": 2000})
    text = str(exc.value)
    assert "memory 9001 MHz / graphics 2000 MHz are not a supported pair" in text
    assert "memory 9001 MHz with graphics 2520-210 step 15 MHz" in text
    assert "memory 810 MHz with graphics 810, 210 MHz" in text
    assert nvml.setter_calls() == []


def test_reset_application_clocks(tmp_path):
    nvml = fake.hgx_h200(1)
    nvml.gpus[0].app_clocks = {0: 1980, 2: 3201}
    result = run(nvml, tmp_path, reset_application_clocks=True)
    assert result["gpus"][0]["changes"] == {"application_clocks": {
        "before": {"memory": 3201, "graphics": 1980}, "after": {"memory": 3201, "graphics": 1755}}}
    assert nvml.setter_calls() == [("nvmlDeviceResetApplicationsClocks", 0)]
    assert run(nvml, tmp_path, reset_application_clocks=True)["changed"] is False


def test_reset_locked_clocks_with_and_without_record(tmp_path):
    nvml = fake.hgx_h200(1)
    run(nvml, tmp_path, locked_clocks={"min": 1000, "max": 1500})
    result = run(nvml, tmp_path, reset_locked_clocks=True)
    assert result["changed"] is True and nvml.gpus[0].locked is None
    # no record now: the reset is still issued but not reported
    quiet = run(nvml, tmp_path, reset_locked_clocks=True)
    assert quiet["changed"] is False
    assert nvml.setter_calls()[-1] == ("nvmlDeviceResetGpuLockedClocks", 0)


@pytest.mark.parametrize("low, high, message", [
    (1500, 1000, "need 0 < min <= max"),
    (0, 1000, "need 0 < min <= max"),
    (1000, 2100, "above this GPU's maximum graphics clock 1980 MHz"),
])
def test_locked_clocks_validation(tmp_path, low, high, message):
    with pytest.raises(g.SettingsError, match=message):
        run(fake.hgx_h200(1), tmp_path, locked_clocks={"min": low, "max": high})


def test_locked_clocks_need_volta(tmp_path):
    nvml = fake.hgx_h200(1)
    nvml.gpus[0].cc = (6, 1)
    with pytest.raises(g.SettingsError, match="need Volta"):
        run(nvml, tmp_path, locked_clocks={"min": 1000, "max": 1500})


def test_geforce_not_supported_fails_clearly(tmp_path):
    nvml = fake.geforce()
    with pytest.raises(g.SettingsError) as exc:
        run(nvml, tmp_path, application_clocks={"memory": 10501, "graphics": 2520}, power_limit=400)
    assert "application clocks are not supported" in str(exc.value) and "best_effort" in str(exc.value)
    assert nvml.setter_calls() == []


def test_geforce_best_effort_skips_and_reports(tmp_path):
    nvml = fake.geforce()
    result = run(nvml, tmp_path, best_effort=True, application_clocks={"memory": 10501, "graphics": 2520},
                 compute_mode="exclusive_process", power_limit=400)
    assert sorted(s["setting"] for s in result["skipped_settings"]) == ["application_clocks", "compute_mode"]
    assert result["changed"] is True and nvml.gpus[0].power_limit == 400000


def test_best_effort_still_fails_invalid_values(tmp_path):
    with pytest.raises(g.SettingsError, match="outside"):
        run(fake.geforce(), tmp_path, best_effort=True, power_limit=1000)


def test_failure_part_way_reports_what_was_applied(tmp_path):
    nvml = fake.hgx_h200(2)
    nvml.gpus[1].errors["nvmlDeviceSetPowerManagementLimit"] = fake.NVML_ERROR_GPU_IS_LOST
    with pytest.raises(g.ApplyError) as exc:
        run(nvml, tmp_path, power_limit=600)
    assert exc.value.applied == [{"gpu": 0, "uuid": nvml.gpus[0].uuid, "setting": "power_limit", "after": 600}]
    assert "Xid 79" in exc.value.reason


def test_not_root(tmp_path):
    nvml = fake.hgx_h200(1)
    nvml.read_only = True
    with pytest.raises(g.ApplyError, match="become: true"):
        run(nvml, tmp_path, persistence_mode=False)


def test_unknown_compute_mode(tmp_path):
    with pytest.raises(g.SettingsError, match="unknown compute_mode"):
        run(fake.hgx_h200(1), tmp_path, compute_mode="exclusive_thread")
