#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: cdi_spec_info
short_description: Read an NVIDIA CDI specification and tell whether it matches the driver and GPUs
version_added: 0.2.0
description:
  - Reads a Container Device Interface specification written by C(nvidia-ctk cdi generate) and returns its kind, its
    device names, the GPU UUIDs it defines and the NVIDIA driver version it was generated for.
  - The driver version comes from the C(--host-driver-version) argument of the C(enable-cuda-compat) hook where the
    toolkit writes one, otherwise from the versioned C(libcuda.so) and C(libnvidia-ml.so) host paths.
  - Compared with O(driver_version) and O(gpu_uuids) (for example from M(llmops.gpu_stack.gpu_facts)), RV(stale) tells
    whether the spec must be regenerated, and RV(reasons) says why. A missing file is stale.
  - Reads YAML with PyYAML when the host has it, otherwise reads the few fields it needs line by line; JSON specs are
    read with the standard library.
author:
  - llmops.gpu_stack maintainers (@llmops)
extends_documentation_fragment:
  - llmops.gpu_stack.attributes
  - llmops.gpu_stack.attributes.info_module
options:
  path:
    description: The CDI specification file.
    type: path
    required: true
  driver_version:
    description: The driver version the host runs. Omit to skip the version comparison.
    type: str
  gpu_uuids:
    description:
      - The UUIDs of the host's GPUs. When the spec names GPUs by UUID they must be exactly these; when it names them
        by index only, their number must match.
    type: list
    elements: str
    default: []
  kind:
    description: The device kind the spec must declare.
    type: str
    default: nvidia.com/gpu
seealso:
  - module: llmops.gpu_stack.gpu_facts
  - name: NVIDIA Container Toolkit CDI support
    description: How the toolkit generates CDI specifications.
    link: https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/cdi-support.html
"""

EXAMPLES = r"""
- name: Gather GPU facts
  llmops.gpu_stack.gpu_facts:

- name: Read the CDI specification
  llmops.gpu_stack.cdi_spec_info:
    path: /var/run/cdi/nvidia.yaml
    driver_version: "{{ ansible_facts.gpu.driver_version }}"
    gpu_uuids: "{{ ansible_facts.gpu.gpus | map(attribute='uuid') | list }}"
  register: cdi

- name: Regenerate it when it no longer matches
  ansible.builtin.command: nvidia-ctk cdi generate --output=/var/run/cdi/nvidia.yaml
  when: cdi.stale
  changed_when: true
"""

RETURN = r"""
exists:
  description: Whether the file exists.
  returned: success
  type: bool
kind:
  description: The spec's device kind.
  returned: success
  type: str
  sample: nvidia.com/gpu
cdi_version:
  description: The spec's cdiVersion.
  returned: success
  type: str
  sample: 0.5.0
device_names:
  description: The device names the spec defines, usable as C(--device <kind>=<name>).
  returned: success
  type: list
  elements: str
  sample: ["0", "GPU-6f1c2e1a-0b7e-4f43-9b5e-2e64a8c1d001", all]
gpu_uuids:
  description: The GPU UUIDs among the device names.
  returned: success
  type: list
  elements: str
driver_versions:
  description: Every driver version the spec names (more than one means a mixed, broken spec).
  returned: success
  type: list
  elements: str
  sample: ["570.133.20"]
driver_version:
  description: The driver version the spec was generated for; V(null) unless it names exactly one.
  returned: success
  type: str
  sample: 570.133.20
stale:
  description: Whether the spec is missing or no longer matches the driver version, the GPUs or the kind.
  returned: success
  type: bool
reasons:
  description: Why the spec is stale; empty when it is not.
  returned: success
  type: list
  elements: str
  sample: ["the spec was generated for driver 550.127.05, the host runs driver 570.133.20"]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.llmops.gpu_stack.plugins.module_utils._cdi_spec_info import SpecError, read_spec


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            driver_version=dict(type="str"),
            gpu_uuids=dict(type="list", elements="str", default=[]),
            kind=dict(type="str", default="nvidia.com/gpu"),
        ),
        supports_check_mode=True,
    )
    path = module.params["path"]
    try:
        result = read_spec(path, module.params["driver_version"], module.params["gpu_uuids"], module.params["kind"])
    except SpecError as exc:
        module.fail_json(msg="%s is not a usable CDI specification: %s. Fix: remove it and generate it again with "
                             "'nvidia-ctk cdi generate --output=%s'" % (path, exc, path))
    except (IOError, OSError) as exc:
        module.fail_json(msg="cannot read %s: %s. Fix: run with become: true" % (path, to_native(exc)))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
