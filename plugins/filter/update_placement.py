# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: update_placement
short_description: Where the new instance of a blue/green update runs, or why it cannot
version_added: 0.2.0
author: llmops.gpu_stack maintainers (@llmops)
description:
  - During a blue/green update the running instance keeps its GPUs and their memory until the
    switch, so the new one must run beside it. This filter decides, for one model of the plan,
    whether the new instance goes on GPUs no model of the plan uses (C(free_gpus)), on the same
    GPUs because both instances' memory fractions fit together (C(shared)), on the CPU
    (C(cpu), llama.cpp, when the host's RAM holds both), or whether the update is refused with
    the fix.
  - The strategy C(in_place) stops the running instance first and starts the new one on its
    GPUs. Requests fail until the new instance is ready (the downtime is its readiness time);
    it is never chosen by itself.
options:
  _input:
    description: The serving role's instances of the plan (C(serving_models)), one dict per model.
    type: list
    elements: dict
    required: true
  name:
    description: The served model name being updated.
    type: str
    required: true
  active_gpus:
    description: The GPUs the running instance uses (recorded in its state; the plan's when none is recorded).
    type: list
    elements: int
  gpu_count:
    description: The GPUs on the host.
    type: int
    required: true
  strategy:
    description: C(auto) (blue/green when it fits, else refused) or C(in_place).
    type: str
    default: auto
  memory_available_bytes:
    description: Host RAM available, for two llama.cpp instances on the CPU.
    type: int
"""

EXAMPLES = r"""
- name: Place the new instance
  ansible.builtin.set_fact:
    __placement: >-
      {{ serving_models | llmops.gpu_stack.update_placement('deepseek-r1-distill-qwen-32b', active_gpus=[0, 1],
                                                            gpu_count=4) }}
"""

RETURN = r"""
_value:
  description:
    - C(strategy) (C(free_gpus), C(shared), C(cpu), C(in_place) or C(refused)), C(gpus) (the new instance's GPUs),
      C(downtime) (true for C(in_place)), C(message) and, when refused, C(fix).
  type: dict
"""

from ansible.errors import AnsibleFilterError

# Two instances on one GPU: vLLM and SGLang each claim their fraction of the whole memory, and
# both fractions together must leave the driver and CUDA contexts some room.
SHARED_LIMIT = 0.95


def update_placement(models, name, active_gpus=None, gpu_count=0, strategy="auto", memory_available_bytes=None):
    if strategy not in ("auto", "in_place"):
        raise AnsibleFilterError("serving_update_strategy must be auto or in_place, got %r" % (strategy,))
    mine = [m for m in models or [] if m.get("name") == name]
    if not mine:
        raise AnsibleFilterError("update_placement: no model %r in the plan" % (name,))
    model = mine[0]
    active = [int(g) for g in (active_gpus if active_gpus is not None else model.get("gpus") or [])]
    if strategy == "in_place":
        return {"strategy": "in_place", "gpus": active, "downtime": True,
                "message": "in place: %s stops first, the new instance starts on its %s; requests fail until it is "
                           "ready" % (name, "GPUs " + ",".join(str(g) for g in active) if active else "CPU")}
    if not active:
        weights = int(model.get("weights_bytes") or 0)
        need = 2 * weights
        if memory_available_bytes is not None and need > memory_available_bytes:
            return {"strategy": "refused", "gpus": [], "downtime": False,
                    "message": "two instances of %s need about %d MiB of RAM for their weights, the host has %d MiB "
                               "available" % (name, need >> 20, memory_available_bytes >> 20),
                    "fix": "free RAM, or update with serving_update_strategy: in_place (requests fail until the new "
                           "instance is ready)"}
        return {"strategy": "cpu", "gpus": [], "downtime": False,
                "message": "both instances of %s run on the CPU side by side" % name}
    used = set(g for m in models for g in (m.get("gpus") or [])) | set(active)
    free = [g for g in range(int(gpu_count)) if g not in used]
    if len(free) >= len(active):
        chosen = free[:len(active)]
        return {"strategy": "free_gpus", "gpus": chosen, "downtime": False,
                "message": "the new instance of %s starts on the free GPUs %s beside the running one on %s"
                           % (name, ",".join(map(str, chosen)), ",".join(map(str, active)))}
    fraction = (model.get("settings") or {}).get("gpu_memory_utilization")
    if fraction is not None and 2 * float(fraction) <= SHARED_LIMIT:
        return {"strategy": "shared", "gpus": active, "downtime": False,
                "message": "both instances of %s share GPUs %s: 2 x %g of their memory fits"
                           % (name, ",".join(map(str, active)), float(fraction))}
    return {"strategy": "refused", "gpus": [], "downtime": False,
            "message": "a blue/green update of %s needs a second set of %d GPUs (the host has %d, %d free of the plan's "
                       "models) or both instances on GPUs %s, which their memory fraction %s does not allow (2 x %s > "
                       "%g)" % (name, len(active), int(gpu_count), len(free), ",".join(map(str, active)), fraction,
                                fraction, SHARED_LIMIT),
            "fix": "set gpu_memory_utilization of %s to %g or less in gpu_stack_models (and run site.yml) so that both "
                   "instances fit, or update with serving_update_strategy: in_place (requests fail until the new "
                   "instance is ready: its readiness time), or free %d GPUs" % (name, SHARED_LIMIT / 2, len(active))}


class FilterModule(object):
    def filters(self):
        return {"update_placement": update_placement}
