# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The boot-time script of the gpu_tuning role (roles/gpu_tuning/files/gpu_tuning_apply.py)
against the fake NVML: grouping by model, apply, check mode, errors, waiting for the driver."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

import fake_pynvml as fake
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _gpu_settings, _nvml

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "gpu_tuning", "files", "gpu_tuning_apply.py")
_spec = importlib.util.spec_from_file_location("gpu_tuning_apply", SCRIPT)
apply_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(apply_script)

LIBS = (_gpu_settings, _nvml)
NONE = dict((key, None) for key in apply_script.REQUEST_KEYS)


def config(tmp_path, defaults=None, models=None, **extra):
    base = {"format": 1, "defaults": dict(NONE, reset_application_clocks=False, reset_locked_clocks=False),
            "models": models or {}, "best_effort": False, "wait_seconds": 0,
            "state_dir": str(tmp_path / "state"), "bindings_path": str(tmp_path / "bindings")}
    base["defaults"].update(defaults or {})
    base.update(extra)
    return base


def write(tmp_path, data, name="gpu_tuning.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


MIXED_MODELS = {
    "NVIDIA L40S": {"power_limit": 250, "application_clocks": {"memory": 9001, "graphics": 2520}},
    "Tesla T4": {"power_limit": 70, "application_clocks": None, "locked_clocks": {"min": 585, "max": 1590}},
}
MIXED_DEFAULTS = {"persistence_mode": True, "power_limit": 300, "compute_mode": "exclusive_process",
                  "application_clocks": {"memory": 1593, "graphics": 1410}}


# -- grouping ------------------------------------------------------------------------------

def test_groups_by_model_then_the_rest(tmp_path):
    cfg = config(tmp_path, MIXED_DEFAULTS, MIXED_MODELS)
    gpus = [(0, "NVIDIA H100 PCIe"), (1, "NVIDIA L40S"), (2, "Tesla T4"), (3, "NVIDIA L40S")]
    groups = apply_script.plan_groups(cfg, gpus)
    assert [(group[0], group[1]) for group in groups] == [
        ("NVIDIA L40S", ["1", "3"]), ("Tesla T4", ["2"]), (apply_script.OTHER_GPUS, ["0"])]
    l40s, t4, other = (group[2] for group in groups)
    assert l40s["power_limit"] == 250 and l40s["compute_mode"] == "exclusive_process"
    assert t4["application_clocks"] is None and t4["locked_clocks"] == {"min": 585, "max": 1590}
    assert other == cfg["defaults"]


def test_model_absent_from_the_host_and_nothing_requested(tmp_path):
    cfg = config(tmp_path, {}, {"NVIDIA B200": {"power_limit": 900}})
    assert apply_script.plan_groups(cfg, [(0, "NVIDIA H200")]) == []
    cfg = config(tmp_path, {"power_limit": 600}, {"NVIDIA H200": {"power_limit": None}})
    assert apply_script.plan_groups(cfg, [(0, "NVIDIA H200"), (1, "NVIDIA H100")]) == [
        (apply_script.OTHER_GPUS, ["1"], cfg["defaults"])]


def test_reset_alone_is_a_request(tmp_path):
    cfg = config(tmp_path, {"reset_application_clocks": True, "reset_locked_clocks": True})
    assert [g[1] for g in apply_script.plan_groups(cfg, [(0, "NVIDIA H200")])] == [["0"]]


# -- settings file -------------------------------------------------------------------------

def test_load_config_accepts_what_the_role_renders(tmp_path):
    loaded = apply_script.load_config(write(tmp_path, config(tmp_path, MIXED_DEFAULTS, MIXED_MODELS)))
    assert loaded["models"]["Tesla T4"]["power_limit"] == 70


@pytest.mark.parametrize("change, message", [
    ({"format": 2}, "this script reads format 1"),
    ({"defaults": {"power_limt": 300}}, "defaults has unknown keys power_limt"),
    ({"models": {"NVIDIA H200": {"persistence_mode": True}}}, "models['NVIDIA H200'] has unknown keys persistence_mode"),
    ({"models": {"NVIDIA H200": 600}}, "models['NVIDIA H200'] is not an object"),
    ({"wait_seconds": -1}, "wait_seconds is not a whole number"),
    ({"best_effort": "yes"}, "best_effort is not true or false"),
    ({"state_dir": "run/gpu_stack"}, "state_dir is not an absolute path"),
])
def test_load_config_refuses(tmp_path, change, message):
    data = config(tmp_path)
    data.update(change)
    with pytest.raises(apply_script.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        apply_script.load_config(write(tmp_path, data))


def test_load_config_not_json(tmp_path):
    path = tmp_path / "gpu_tuning.json"
    path.write_text("{broken")
    with pytest.raises(apply_script.ConfigError, match="is not valid JSON"):
        apply_script.load_config(str(path))


# -- applying ------------------------------------------------------------------------------

def test_applies_per_model_then_is_idempotent(tmp_path):
    nvml = fake.mixed()
    cfg = config(tmp_path, MIXED_DEFAULTS, MIXED_MODELS)
    summary = apply_script.apply_settings(cfg, LIBS, nvml, boot_id="boot-1", log=lambda m: None)
    assert summary["changed"] is True and summary["errors"] == []
    h100, l40s, t4 = nvml.gpus
    assert (h100.power_limit, h100.compute_mode, h100.app_clocks) == (300000, 3, {2: 1593, 0: 1410})
    assert (l40s.power_limit, l40s.compute_mode, l40s.app_clocks) == (250000, 3, {0: 2520, 2: 9001})
    assert (t4.power_limit, t4.compute_mode, t4.locked, t4.app_clocks) == (70000, 3, (585, 1590), {0: 585, 2: 5001})
    record = json.loads((tmp_path / "state" / "locked_clocks.json").read_text())
    assert record["gpus"] == {t4.uuid: {"min": 585, "max": 1590}}
    calls = len(nvml.setter_calls())
    again = apply_script.apply_settings(cfg, LIBS, nvml, boot_id="boot-1", log=lambda m: None)
    assert again["changed"] is False and len(nvml.setter_calls()) == calls
    after_reboot = apply_script.apply_settings(cfg, LIBS, nvml, boot_id="boot-2", log=lambda m: None)
    assert [c[0] for c in nvml.setter_calls()[calls:]] == ["nvmlDeviceSetGpuLockedClocks"]   # locks are not readable
    assert after_reboot["changed"] is True


def test_check_mode_reports_and_changes_nothing(tmp_path):
    nvml = fake.mixed()
    lines = []
    summary = apply_script.apply_settings(config(tmp_path, MIXED_DEFAULTS, MIXED_MODELS), LIBS, nvml, check_mode=True,
                                          log=lines.append)
    apply_script.describe(summary, log=lines.append)
    assert summary["changed"] is True and nvml.setter_calls() == []
    assert not (tmp_path / "state").exists()
    assert "gpu-tuning: GPU 0 (NVIDIA H100 PCIe): power_limit would change 350 -> 300" in lines
    assert "gpu-tuning: GPU 2 (Tesla T4): locked_clocks would change None -> max=1590/min=585" in lines
    assert lines[-1] == "gpu-tuning: 7 setting(s) would change, 0 error(s)"


def test_a_failing_group_does_not_stop_the_others(tmp_path):
    nvml = fake.mixed()
    models = {"Tesla T4": {"application_clocks": None}}   # T4 keeps the 300 W default: out of its 60-70 W range
    summary = apply_script.apply_settings(config(tmp_path, {"power_limit": 300}, models), LIBS, nvml, log=lambda m: None)
    assert len(summary["errors"]) == 1 and "Tesla T4 (GPU 2)" in summary["errors"][0]
    assert "outside this GPU's range 60-70 W" in summary["errors"][0]
    assert [g.power_limit for g in nvml.gpus] == [300000, 300000, 70000]


def test_geforce_best_effort_skips_what_the_board_cannot_do(tmp_path):
    nvml = fake.geforce()
    cfg = config(tmp_path, {"application_clocks": {"memory": 10501, "graphics": 2520}, "power_limit": 400},
                 best_effort=True)
    lines = []
    summary = apply_script.apply_settings(cfg, LIBS, nvml, log=lines.append)
    apply_script.describe(summary, log=lines.append)
    assert summary["errors"] == [] and nvml.gpus[0].power_limit == 400000
    assert any("application_clocks skipped (best_effort)" in line for line in lines)
    cfg["best_effort"] = False
    summary = apply_script.apply_settings(cfg, LIBS, fake.geforce(), log=lambda m: None)
    assert "application clocks are not supported" in summary["errors"][0]


def test_waits_for_the_driver_to_load(tmp_path):
    nvml = fake.hgx_h200(1)
    nvml.init_error = fake.NVML_ERROR_DRIVER_NOT_LOADED
    clock = {"now": 0.0}

    def sleep(seconds):
        clock["now"] += seconds
        if clock["now"] >= 6:
            nvml.init_error = None   # the module finished loading

    summary = apply_script.apply_settings(config(tmp_path, {"power_limit": 600}, wait_seconds=30), LIBS, nvml,
                                          sleep=sleep, clock=lambda: clock["now"], log=lambda m: None)
    assert summary["changed"] is True and nvml.init_calls == 4


def test_gives_up_after_the_wait(tmp_path):
    nvml = fake.driver_not_loaded()
    clock = {"now": 0.0}

    def sleep(seconds):
        clock["now"] += seconds

    with pytest.raises(_nvml.NvmlUnavailable) as exc:
        apply_script.apply_settings(config(tmp_path, {"power_limit": 600}, wait_seconds=10), LIBS, nvml,
                                    sleep=sleep, clock=lambda: clock["now"], log=lambda m: None)
    assert exc.value.status == "driver_not_loaded" and nvml.init_calls == 6


def test_library_missing_fails_at_once(tmp_path):
    nvml = fake.library_missing()
    with pytest.raises(_nvml.NvmlUnavailable):
        apply_script.apply_settings(config(tmp_path, {"power_limit": 600}, wait_seconds=60), LIBS, nvml,
                                    sleep=lambda s: pytest.fail("must not wait"), log=lambda m: None)


# -- the command line -----------------------------------------------------------------------

@pytest.fixture
def host(monkeypatch, tmp_path):
    """main() against a fake NVML and a fake /sys; returns (set_nvml, sysfs_root)."""
    state = {"nvml": None}
    monkeypatch.setattr(_nvml, "import_pynvml", lambda path: (state["nvml"], None) if state["nvml"] else
                        (None, "No module named 'pynvml'"))
    monkeypatch.setattr(_gpu_settings, "read_boot_id", lambda: "boot-test")

    def use(nvml, sysfs_builder=fake.hgx_sysfs):
        state["nvml"] = nvml
        return sysfs_builder(tmp_path)

    return use


def run_main(tmp_path, sysfs, *extra, data=None):
    path = write(tmp_path, data or config(tmp_path, {"power_limit": 600}))
    lines = []
    code = apply_script.main(["--config", path, "--library", "", "--sysfs-root", sysfs] + list(extra), log=lines.append)
    return code, lines


def test_main_applies(host, tmp_path):
    sysfs = host(fake.hgx_h200(2))
    code, lines = run_main(tmp_path, sysfs)
    assert code == 0 and lines[-1] == "gpu-tuning: 2 setting(s) changed, 0 error(s)"


def test_main_check_mode_json(host, tmp_path, capsys):
    nvml = fake.hgx_h200(2)
    sysfs = host(nvml)
    code, lines = run_main(tmp_path, sysfs, "--check", "--json")
    document = json.loads(capsys.readouterr().out)
    assert code == 0 and document["check_mode"] is True and document["changed"] is True
    assert document["groups"][0]["gpus"][1]["changes"] == {"power_limit": {"before": 700, "after": 600}}
    assert nvml.setter_calls() == []


def test_main_without_gpu_on_the_bus_does_nothing(host, tmp_path):
    sysfs = host(None, fake.empty_sysfs)
    code, lines = run_main(tmp_path, sysfs)
    assert code == 0 and lines == ["gpu-tuning: no NVIDIA GPU on the PCI bus; nothing to apply"]


def test_main_bindings_missing(host, tmp_path):
    sysfs = host(None)
    code, lines = run_main(tmp_path, sysfs)
    assert code == 1 and "Failed to import the required Python library (nvidia-ml-py" in lines[0]


def test_main_driver_not_loaded(host, tmp_path):
    sysfs = host(fake.driver_not_loaded())
    code, lines = run_main(tmp_path, sysfs)
    assert code == 1 and "NVML is not usable (driver_not_loaded)" in lines[-1] and "modprobe nvidia" in lines[-1]


def test_main_failed_setting_exits_1(host, tmp_path):
    sysfs = host(fake.hgx_h200(1))
    code, lines = run_main(tmp_path, sysfs, data=config(tmp_path, {"power_limit": 900}))
    assert code == 1 and "outside this GPU's range 200-700 W" in lines[-2] and lines[-1].endswith("1 error(s)")


def test_main_bad_settings_file(host, tmp_path):
    sysfs = host(fake.hgx_h200(1))
    code, lines = run_main(tmp_path, sysfs, data=dict(config(tmp_path), format=7))
    assert code == 2 and "unusable settings" in lines[0] and "gpu_tuning role again" in lines[0]


# -- as the boot unit runs it: a fresh, isolated interpreter loading the module_utils files ---

MODULE_UTILS_DIR = os.path.join(os.path.dirname(SCRIPT), "..", "..", "..", "plugins", "module_utils")


def run_isolated(tmp_path, library, sysfs):
    path = write(tmp_path, config(tmp_path, {"power_limit": 600}))
    return subprocess.run([sys.executable, "-I", SCRIPT, "--config", path, "--library", library, "--sysfs-root", sysfs,
                           "--check"], capture_output=True, text=True, timeout=60, check=False)


def test_isolated_run_loads_the_module_utils_from_files(tmp_path):
    run = run_isolated(tmp_path, MODULE_UTILS_DIR, fake.empty_sysfs(tmp_path))
    assert run.returncode == 0, run.stderr
    assert run.stdout == "gpu-tuning: no NVIDIA GPU on the PCI bus; nothing to apply\n"


def test_isolated_run_with_a_missing_library_file(tmp_path):
    library = tmp_path / "lib"
    library.mkdir()
    (library / "_gpu_tables.py").write_text("")
    # The loader itself is always copied with the files (the shared role's module_utils task).
    shutil.copy(os.path.join(MODULE_UTILS_DIR, "_standalone.py"), str(library))
    run = run_isolated(tmp_path, str(library), fake.empty_sysfs(tmp_path))
    assert run.returncode == 2 and "_nvml.py is missing" in run.stdout and "gpu_tuning role again" in run.stdout
