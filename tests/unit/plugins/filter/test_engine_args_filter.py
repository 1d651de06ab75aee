# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.gpu_stack.plugins.filter.engine_args import FilterModule


def test_filter_is_registered_and_renders():
    f = FilterModule().filters()["engine_args"]
    assert f({"model": "/m", "tensor_parallel_size": 2}, "vllm")[:2] == ["--model", "/m"]


@pytest.mark.parametrize("settings,engine", [({"model": "/m", "dtype": "int3"}, "vllm"), ("/m", "vllm")])
def test_filter_turns_errors_into_ansible_errors(settings, engine):
    with pytest.raises(AnsibleFilterError):
        FilterModule().filters()["engine_args"](settings, engine)
