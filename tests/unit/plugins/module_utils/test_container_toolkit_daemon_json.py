# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The daemon.json merge used by the nvidia_container_toolkit role."""

from __future__ import annotations

import json

import pytest

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _docker_daemon_json as d

NVIDIA = {"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}, "features": {"cdi": True}}

OPERATOR = """{
  "log-driver": "journald",
  "data-root": "/srv/docker",
  "registry-mirrors": ["https://mirror.example.internal"],
  "runtimes": {"crun": {"path": "/usr/bin/crun"}},
  "features": {"buildkit": true}
}
"""


def test_merge_keeps_every_operator_key():
    changed, before, after, text = d.plan(OPERATOR, NVIDIA)
    assert changed is True
    assert after["log-driver"] == "journald" and after["data-root"] == "/srv/docker"
    assert after["registry-mirrors"] == ["https://mirror.example.internal"]
    assert after["runtimes"] == {"crun": {"path": "/usr/bin/crun"}, "nvidia": {"path": "nvidia-container-runtime"}}
    assert after["features"] == {"buildkit": True, "cdi": True}
    assert list(after) == ["log-driver", "data-root", "registry-mirrors", "runtimes", "features"]
    assert json.loads(text) == after and text.endswith("}\n")
    assert before == json.loads(OPERATOR)


def test_second_run_is_no_change_whatever_the_formatting():
    _changed, _before, _after, text = d.plan(OPERATOR, NVIDIA)
    compact = json.dumps(json.loads(text), separators=(",", ":"))
    assert d.plan(text, NVIDIA)[0] is False
    assert d.plan(compact, NVIDIA)[0] is False


def test_lists_are_replaced_not_appended():
    after = d.merge({"dns": ["10.0.0.1"], "x": {"y": 1}}, {"dns": ["10.0.0.2"], "x": {"z": 2}})
    assert after == {"dns": ["10.0.0.2"], "x": {"y": 1, "z": 2}}


def test_merge_does_not_modify_its_inputs():
    current = {"runtimes": {"crun": {"path": "/usr/bin/crun"}}}
    settings = {"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}
    d.merge(current, settings)
    assert current == {"runtimes": {"crun": {"path": "/usr/bin/crun"}}}
    assert settings == {"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}


def test_operator_value_under_a_managed_key_is_replaced_and_reported():
    changed, before, after, _text = d.plan('{"runtimes": {"nvidia": {"path": "/opt/old/runtime", "runtimeArgs": []}}}', NVIDIA)
    assert changed is True
    assert after["runtimes"]["nvidia"] == {"path": "nvidia-container-runtime", "runtimeArgs": []}


@pytest.mark.parametrize("current, remove, expected", [
    ({"default-runtime": "nvidia", "a": 1}, {"default-runtime": "nvidia"}, {"a": 1}),
    ({"default-runtime": "runc", "a": 1}, {"default-runtime": "nvidia"}, {"default-runtime": "runc", "a": 1}),
    ({"features": {"cdi": True}}, {"features": {"cdi": True}}, {}),
    ({"features": {"cdi": True, "buildkit": True}}, {"features": {"cdi": True}}, {"features": {"buildkit": True}}),
    ({"features": {}}, {"features": {"cdi": True}}, {"features": {}}),
    ({}, {"default-runtime": "nvidia"}, {}),
])
def test_remove_if_equal(current, remove, expected):
    assert d.remove_if_equal(current, remove) == expected


def test_absent_file_is_created():
    changed, before, after, text = d.plan(None, NVIDIA)
    assert changed is True and before == {} and after == NVIDIA


def test_empty_file_counts_as_empty_object():
    assert d.plan("  \n", {})[0] is False
    assert d.plan("\n", NVIDIA)[2] == NVIDIA


@pytest.mark.parametrize("text, message", [
    # A missing colon: the same column on every Python (a trailing comma is reported at another
    # column from Python 3.13 on).
    ('{"log-driver" "journald"}', "is not valid JSON at line 1, column 15"),
    ("[1, 2]", "holds a JSON list, not an object"),
    ('"text"', "holds a JSON str, not an object"),
])
def test_unusable_file_is_refused_with_the_fix(text, message):
    with pytest.raises(d.DaemonJsonError) as exc:
        d.plan(text, NVIDIA, path="/etc/docker/daemon.json")
    assert message in str(exc.value) and "/etc/docker/daemon.json" in str(exc.value)
    assert "nothing was changed" in str(exc.value) and "Fix:" in str(exc.value)
