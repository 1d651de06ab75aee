#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: nvidia_driver_plan
short_description: Decide how the NVIDIA driver is installed for a host's GPUs
version_added: 0.2.0
description:
  - Chooses the kernel module flavour (open or proprietary) for the GPUs in O(gpu) and the driver branch of
    O(driver_version), checks that the branch supports every GPU generation, and says whether the fabric manager is
    needed (NVSwitch present).
  - Before a driver is loaded NVML cannot answer, so the GPU generation comes from the PCI device id that
    M(llmops.gpu_stack.gpu_facts) reads from sysfs; once NVML answers, from the compute capability.
  - With O(kernel_modules=auto) GPUs that only support the open modules (Grace Hopper, Blackwell) get them, GPUs older
    than Turing get the proprietary ones, and otherwise the branch's NVIDIA default applies (open from branch 560).
  - Fails, naming the GPUs and the fix, for a combination that cannot work (an explicit flavour a GPU does not
    support, a branch too old or too new for a GPU, GPUs that need different flavours). Warns about an end-of-life
    branch.
author:
  - llmops.gpu_stack maintainers (@llmops)
extends_documentation_fragment:
  - llmops.gpu_stack.attributes
  - llmops.gpu_stack.attributes.info_module
options:
  gpu:
    description: The host's GPU facts, C(ansible_facts.gpu) from M(llmops.gpu_stack.gpu_facts).
    type: dict
    required: true
  driver_version:
    description: The exact driver version to install, such as V(535.261.03). Its first part is the branch.
    type: str
    required: true
  kernel_modules:
    description: V(auto), V(open) or V(proprietary).
    type: str
    choices: [auto, open, proprietary]
    default: auto
seealso:
  - module: llmops.gpu_stack.gpu_facts
  - module: llmops.gpu_stack.cuda_compat
"""

EXAMPLES = r"""
- name: Plan the driver installation
  llmops.gpu_stack.nvidia_driver_plan:
    gpu: "{{ ansible_facts['gpu'] }}"
    driver_version: 580.65.06
  register: driver_plan

- name: Show the choice
  ansible.builtin.debug:
    msg: "{{ driver_plan.plan.kernel_modules }}: {{ driver_plan.plan.reason }}"
"""

RETURN = r"""
plan:
  description: The decision.
  returned: success
  type: dict
  contains:
    driver_version:
      description: The driver version planned.
      type: str
      sample: 580.65.06
    branch:
      description: The driver branch.
      type: int
      sample: 580
    branch_status:
      description: The branch lifecycle (C(kind) lts, production, eol or unknown; C(eol); C(supported)).
      type: dict
      sample: {branch: 580, kind: lts, eol: "2028-08", supported: true}
    kernel_modules:
      description: V(open) or V(proprietary).
      type: str
      sample: open
    reason:
      description: Why this flavour.
      type: str
      sample: "open kernel modules: NVIDIA's default from branch 560 (every GPU supports them)"
    gpu_count:
      description: GPUs the decision considered.
      type: int
      sample: 8
    gpus:
      description: Per GPU, C(id) (PCI bus id), C(name), C(generation) and C(source) (C(nvml) or C(pci)).
      type: list
      elements: dict
    fabric_manager:
      description: Whether the fabric manager is needed (NVSwitch or an NVLink fabric is present).
      type: bool
      sample: true
    warnings:
      description: The warnings also shown by Ansible (end-of-life branch, unknown GPU generation).
      type: list
      elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.gpu_stack.plugins.module_utils._driver_plan import PlanError, make_plan


def main():
    module = AnsibleModule(
        argument_spec=dict(
            gpu=dict(type="dict", required=True),
            driver_version=dict(type="str", required=True),
            kernel_modules=dict(type="str", default="auto", choices=["auto", "open", "proprietary"]),
        ),
        supports_check_mode=True,
    )
    try:
        plan = make_plan(module.params["gpu"], module.params["driver_version"], module.params["kernel_modules"])
    except PlanError as exc:
        module.fail_json(msg=str(exc))
    except ValueError as exc:
        module.fail_json(msg="invalid driver version: %s" % exc)
    for warning in plan["warnings"]:
        module.warn(warning)
    module.exit_json(changed=False, plan=plan)


if __name__ == "__main__":
    main()
