# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: instance_name
short_description: The instance name the serving role gives a served model
version_added: 0.2.0
author: llmops.gpu_stack maintainers (@llmops)
description:
  - A served model's name as the prefix of the serving role's unit, state and nginx file names
    (C(gpu-stack-serving-<instance>-blue.service), C(/var/lib/gpu_stack/serving/<instance>.json)).
  - Lower-case letters, digits and C(-) only (every other run of characters becomes one C(-)), no
    C(-) at either end, at most 40 characters; V(model) when nothing is left.
  - The same rule as the serving role and M(llmops.gpu_stack.deploy_preflight) apply, so playbooks
    that look for an instance's files (rollback, reports) find the ones the role wrote.
options:
  _input:
    description: The served model's name (C(name) in C(gpu_stack_models)).
    type: str
    required: true
"""

EXAMPLES = r"""
- name: The unit of a model's blue engine
  ansible.builtin.debug:
    msg: "gpu-stack-serving-{{ 'Qwen2.5-7B_Instruct' | llmops.gpu_stack.instance_name }}-blue.service"
  # gpu-stack-serving-qwen2-5-7b-instruct-blue.service
"""

RETURN = r"""
_value:
  description: The instance name.
  type: str
"""

from ansible_collections.llmops.gpu_stack.plugins.module_utils._plan import instance_name


class FilterModule(object):
    def filters(self):
        return {"instance_name": instance_name}
