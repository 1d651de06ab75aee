# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/files/gpu_stack_diagnostics.sh, the host side of playbooks/diagnostics.yml, run
with bash as the script module runs it; stand-in commands first on PATH where a test needs a
command to fail or to say something known."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "..", "playbooks", "files", "gpu_stack_diagnostics.sh")
FILES = ["engine-logs.txt", "gateway-config.txt", "gateway-errors.txt", "packages.txt", "serving-state.json",
         "units.txt", "versions.txt"]


def executable(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def collect(tmp_path, *args, stand_ins=None):
    out = tmp_path / "out"
    out.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (stand_ins or {}).items():
        executable(bin_dir / name, text)
    env = {"PATH": "%s:%s" % (bin_dir, os.environ.get("PATH", "/usr/bin:/bin")), "LC_ALL": "C"}
    run = subprocess.run(["bash", SCRIPT, str(out)] + [str(arg) for arg in args], capture_output=True, text=True,
                         timeout=120, env=env, check=False)
    return run, out


def test_writes_every_file_and_each_command_under_its_header(tmp_path):
    run, out = collect(tmp_path, tmp_path / "no-state", tmp_path / "no-envs")
    assert run.returncode == 0, run.stderr
    assert sorted(os.listdir(str(out))) == FILES
    versions = (out / "versions.txt").read_text()
    assert versions.startswith("## uname -a\n")
    assert "## python3 --version\nPython 3." in versions


def test_a_failing_command_is_recorded_and_the_others_still_run(tmp_path):
    run, out = collect(tmp_path, stand_ins={"nvidia-smi": "echo 'NVIDIA-SMI has failed'\nexit 9\n"})
    assert run.returncode == 0, run.stderr
    versions = (out / "versions.txt").read_text()
    assert "## nvidia-smi --query-gpu=index,name,driver_version,vbios_version --format=csv\n" \
           "NVIDIA-SMI has failed\n(exit 9)\n" in versions
    assert versions.index("(exit 9)") < versions.index("## nvcc --version") < versions.index("## python3 --version")


def test_serving_state_and_environments_come_from_the_given_directories(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "chat.json").write_text('{"color": "green"}\n')
    (state / "notes.txt").write_text("not state\n")
    executable(tmp_path / "envs" / "torch" / "bin" / "python", "echo \"pip $*\"\necho torch==2.5.1\n")
    run, out = collect(tmp_path, state, tmp_path / "envs")
    assert run.returncode == 0, run.stderr
    assert (out / "serving-state.json").read_text() == "## %s/chat.json\n{\"color\": \"green\"}\n\n" % state
    packages = (out / "packages.txt").read_text()
    assert "## %s/torch/bin/python -m pip list --format=freeze\npip -m pip list --format=freeze\ntorch==2.5.1\n" \
           % (tmp_path / "envs") in packages


def test_nothing_to_collect_is_not_a_failure(tmp_path):
    run, out = collect(tmp_path, tmp_path / "no-state", tmp_path / "no-envs")
    assert run.returncode == 0, run.stderr
    assert (out / "serving-state.json").read_text() == ""


@pytest.mark.parametrize("args", [[], ["/nonexistent/dir"], ["/tmp", "a", "b", "c"]])
def test_wrong_arguments_are_refused_and_nothing_is_written(tmp_path, args):
    run = subprocess.run(["bash", SCRIPT] + args, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2
    assert run.stderr.startswith("usage: ") and "DIR must exist" in run.stderr
