# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.gpu_stack.plugins.filter.update_placement import FilterModule

place = FilterModule().filters()["update_placement"]

GIB = 1 << 30


def plan(*models):
    return [dict({"settings": {}}, **m) for m in models]


def test_free_gpus_beside_the_running_instance():
    models = plan({"name": "a", "gpus": [0, 1]})
    got = place(models, "a", active_gpus=[0, 1], gpu_count=4)
    assert (got["strategy"], got["gpus"], got["downtime"]) == ("free_gpus", [2, 3], False)


def test_gpus_of_other_models_are_not_free():
    models = plan({"name": "a", "gpus": [0]}, {"name": "b", "gpus": [1]})
    got = place(models, "a", active_gpus=[0], gpu_count=3)
    assert got["gpus"] == [2]
    got = place(models, "a", active_gpus=[0], gpu_count=2, strategy="auto")
    assert got["strategy"] == "refused"


def test_shared_when_both_fractions_fit():
    models = plan({"name": "a", "gpus": [0], "settings": {"gpu_memory_utilization": 0.45}})
    got = place(models, "a", active_gpus=[0], gpu_count=1)
    assert (got["strategy"], got["gpus"]) == ("shared", [0])
    assert "2 x 0.45" in got["message"]


@pytest.mark.parametrize("fraction", [None, 0.9, 0.48])
def test_refused_with_the_fix_when_neither_fits(fraction):
    models = plan({"name": "big", "gpus": [0, 1], "settings": {"gpu_memory_utilization": fraction}})
    got = place(models, "big", active_gpus=[0, 1], gpu_count=2)
    assert got["strategy"] == "refused" and got["gpus"] == []
    assert "second set of 2 GPUs" in got["message"] and "the host has 2, 0 free" in got["message"]
    assert "gpu_memory_utilization of big to 0.475 or less" in got["fix"]
    assert "serving_update_strategy: in_place" in got["fix"]


def test_in_place_keeps_the_gpus_and_states_the_downtime():
    models = plan({"name": "big", "gpus": [0, 1]})
    got = place(models, "big", active_gpus=[0, 1], gpu_count=2, strategy="in_place")
    assert (got["strategy"], got["gpus"], got["downtime"]) == ("in_place", [0, 1], True)
    assert "requests fail until it is ready" in got["message"]


def test_recorded_gpus_win_over_the_plan():
    models = plan({"name": "a", "gpus": [0]})
    assert place(models, "a", active_gpus=[3], gpu_count=4)["gpus"] == [1]
    assert place(models, "a", gpu_count=2)["gpus"] == [1]


def test_cpu_instances_side_by_side_or_refused_for_ram():
    models = plan({"name": "small", "gpus": [], "weights_bytes": 2 * GIB})
    assert place(models, "small", active_gpus=[], gpu_count=0, memory_available_bytes=8 * GIB)["strategy"] == "cpu"
    got = place(models, "small", active_gpus=[], gpu_count=0, memory_available_bytes=3 * GIB)
    assert got["strategy"] == "refused" and "4096 MiB" in got["message"] and "in_place" in got["fix"]


@pytest.mark.parametrize("kwargs,match", [
    ({"name": "a", "strategy": "rolling"}, "serving_update_strategy must be auto or in_place, got 'rolling'"),
    ({"name": "nope"}, "no model 'nope' in the plan"),
])
def test_bad_input_is_an_error(kwargs, match):
    with pytest.raises(AnsibleFilterError, match=match):
        place(plan({"name": "a", "gpus": [0]}), gpu_count=1, **kwargs)
