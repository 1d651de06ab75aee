# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: serving_plan_items
short_description: The served models of a plan without the serving role's own keys
version_added: 0.2.0
author: llmops.gpu_stack maintainers (@llmops)
description:
  - The serving role builds one served model from its deprecated C(serving_*) variables when
    C(gpu_stack_models) is not set, with two keys of its own (C(instance), the prefix of its unit
    and file names, and C(current_path)). This filter drops them, so that
    M(llmops.gpu_stack.deploy_preflight) sees plan keys only.
options:
  _input:
    description: The served models.
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Check the plan
  llmops.gpu_stack.deploy_preflight:
    models: "{{ __models | llmops.gpu_stack.serving_plan_items }}"
"""

RETURN = r"""
_value:
  description: The same models, without the keys C(instance) and C(current_path).
  type: list
  elements: dict
"""

# Keys the serving role adds to the model it builds from its serving_* variables.
ROLE_KEYS = ("instance", "current_path")


def serving_plan_items(models):
    return [dict((key, value) for key, value in model.items() if key not in ROLE_KEYS)
            if isinstance(model, dict) else model for model in models or []]


class FilterModule(object):
    def filters(self):
        return {"serving_plan_items": serving_plan_items}
