# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: engine_args
short_description: Command-line arguments of an inference engine
version_added: 0.2.0
author: llmops.gpu_stack maintainers (@llmops)
description:
  - Turns one settings dict into the arguments of vLLM (C(vllm serve) / the OpenAI server), SGLang
    (C(sglang.launch_server)) or llama.cpp's llama-server, every value explicit.
  - Refuses, with every problem listed, settings the engine would reject or silently reinterpret
    (unknown dtype, quantization or KV-cache dtype, parallel sizes for llama.cpp, extra arguments
    that repeat one the role sets).
options:
  _input:
    description: Settings; see the serving role's documentation for the keys.
    type: dict
    required: true
  engine:
    description: The engine.
    type: str
    choices: [vllm, sglang, llama_cpp]
    required: true
"""

EXAMPLES = r"""
- name: Arguments for vLLM
  ansible.builtin.debug:
    msg: "{{ {'model': '/models', 'tensor_parallel_size': 2, 'max_model_len': 32768} | llmops.gpu_stack.engine_args('vllm') }}"
"""

RETURN = r"""
_value:
  description: The arguments, in order.
  type: list
  elements: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.gpu_stack.plugins.module_utils._engine_args import EngineArgsError, engine_argv


def engine_args(settings, engine):
    if not isinstance(settings, dict):
        raise AnsibleFilterError("engine_args expects a dict of settings, got %s" % type(settings).__name__)
    try:
        return engine_argv(engine, settings)
    except EngineArgsError as exc:
        raise AnsibleFilterError("engine_args (%s): %s" % (engine, exc))


class FilterModule(object):
    def filters(self):
        return {"engine_args": engine_args}
