# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The docker_daemon_json module on real files in a temporary directory."""

from __future__ import annotations

import json
import os
import stat

from ansible_collections.llmops.gpu_stack.plugins.modules import docker_daemon_json

NVIDIA = {"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}, "features": {"cdi": True}}
OPERATOR = {"log-driver": "journald", "runtimes": {"crun": {"path": "/usr/bin/crun"}}}


def write(path, data, mode=0o600):
    path.write_text(json.dumps(data, indent=2) + "\n")
    os.chmod(str(path), mode)
    return path


def test_merges_then_reports_no_change(run_module, tmp_path):
    target = write(tmp_path / "daemon.json", OPERATOR)
    outcome, result = run_module(docker_daemon_json.main, {"path": str(target), "settings": NVIDIA, "mode": "0644"})
    assert outcome == "exit" and result["changed"] is True
    on_disk = json.loads(target.read_text())
    assert on_disk["log-driver"] == "journald"
    assert on_disk["runtimes"] == {"crun": {"path": "/usr/bin/crun"}, "nvidia": {"path": "nvidia-container-runtime"}}
    assert on_disk["features"] == {"cdi": True}
    assert stat.S_IMODE(os.stat(str(target)).st_mode) == 0o644
    outcome, again = run_module(docker_daemon_json.main, {"path": str(target), "settings": NVIDIA, "mode": "0644"})
    assert outcome == "exit" and again["changed"] is False


def test_check_mode_reports_and_changes_nothing(run_module, tmp_path):
    target = write(tmp_path / "daemon.json", OPERATOR)
    before = target.read_text()
    outcome, result = run_module(docker_daemon_json.main, {"path": str(target), "settings": NVIDIA, "_ansible_diff": True},
                                 check_mode=True)
    assert outcome == "exit" and result["changed"] is True
    assert '"nvidia"' in result["diff"]["after"] and '"nvidia"' not in result["diff"]["before"]
    assert target.read_text() == before


def test_check_mode_on_an_absent_file(run_module, tmp_path):
    target = tmp_path / "daemon.json"
    outcome, result = run_module(docker_daemon_json.main, {"path": str(target), "settings": NVIDIA, "mode": "0644"},
                                 check_mode=True)
    assert outcome == "exit" and result["changed"] is True and not target.exists()


def test_creates_an_absent_file_with_the_mode_asked(run_module, tmp_path):
    target = tmp_path / "daemon.json"
    outcome, result = run_module(docker_daemon_json.main, {"path": str(target), "settings": NVIDIA, "mode": "0640"})
    assert outcome == "exit" and result["changed"] is True
    assert json.loads(target.read_text()) == NVIDIA
    assert stat.S_IMODE(os.stat(str(target)).st_mode) == 0o640


def test_mode_change_alone_is_a_change(run_module, tmp_path):
    target = write(tmp_path / "daemon.json", NVIDIA, mode=0o600)
    outcome, result = run_module(docker_daemon_json.main, {"path": str(target), "settings": NVIDIA, "mode": "0644"})
    assert outcome == "exit" and result["changed"] is True
    assert stat.S_IMODE(os.stat(str(target)).st_mode) == 0o644


def test_backup_keeps_the_operator_file(run_module, tmp_path):
    target = write(tmp_path / "daemon.json", OPERATOR)
    outcome, result = run_module(docker_daemon_json.main, {"path": str(target), "settings": NVIDIA, "backup": True})
    assert outcome == "exit" and result["backup_file"]
    assert json.loads(open(result["backup_file"]).read()) == OPERATOR


def test_remove_if_equal_leaves_other_values(run_module, tmp_path):
    target = write(tmp_path / "daemon.json", dict(OPERATOR, **{"default-runtime": "runc"}))
    outcome, result = run_module(docker_daemon_json.main, {"path": str(target), "remove_if_equal": {"default-runtime": "nvidia"}})
    assert outcome == "exit" and result["changed"] is False
    target = write(tmp_path / "daemon.json", dict(OPERATOR, **{"default-runtime": "nvidia"}))
    outcome, result = run_module(docker_daemon_json.main, {"path": str(target), "remove_if_equal": {"default-runtime": "nvidia"}})
    assert outcome == "exit" and result["changed"] is True and "default-runtime" not in json.loads(target.read_text())


def test_invalid_json_fails_and_is_left_alone(run_module, tmp_path):
    target = tmp_path / "daemon.json"
    target.write_text('{"log-driver": "journald",\n')
    outcome, result = run_module(docker_daemon_json.main, {"path": str(target), "settings": NVIDIA})
    assert outcome == "fail" and "is not valid JSON" in result["msg"] and "nothing was changed" in result["msg"]
    assert target.read_text() == '{"log-driver": "journald",\n'


def test_missing_directory_fails_with_the_fix(run_module, tmp_path):
    outcome, result = run_module(docker_daemon_json.main, {"path": str(tmp_path / "nope" / "daemon.json"), "settings": NVIDIA})
    assert outcome == "fail" and "does not exist" in result["msg"] and "Fix:" in result["msg"]


def test_absent_file_without_create_is_left_absent(run_module, tmp_path):
    target = tmp_path / "daemon.json"
    outcome, result = run_module(docker_daemon_json.main, {"path": str(target), "settings": NVIDIA, "create": False})
    assert outcome == "exit" and result["changed"] is False and not target.exists()
