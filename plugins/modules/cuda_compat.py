#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: cuda_compat
short_description: Check that an NVIDIA driver can run a CUDA toolkit release
version_added: 0.2.0
description:
  - Compares a CUDA toolkit release with the NVIDIA driver that will run it, using the minimum driver of each CUDA
    release from the CUDA toolkit release notes and the minor-version compatibility floors of the CUDA compatibility
    guide.
  - The driver is O(driver_version) when given (a driver planned but not installed yet), otherwise the loaded kernel
    module (C(/sys/module/nvidia/version)), otherwise the installed driver libraries (C(libcuda.so.VERSION) or
    C(libnvidia-ml.so.VERSION)).
  - Reports RV(supported) and a message that names both versions and the minimum; it does not fail for an
    incompatible pair, so a role can word its own error. It fails only for a malformed version or a CUDA release
    missing from the table.
author:
  - llmops.gpu_stack maintainers (@llmops)
extends_documentation_fragment:
  - llmops.gpu_stack.attributes
  - llmops.gpu_stack.attributes.info_module
options:
  cuda_version:
    description: The CUDA toolkit version, V(12.4), V(12.4.1) or V(11.8.89).
    type: str
    required: true
  driver_version:
    description: The driver the toolkit will run on. Empty to use the host's loaded or installed driver.
    type: str
    default: ""
  allow_minor_version_compat:
    description:
      - Accept a driver below the release's minimum but at or above its major release's compatibility floor
        (reduced features).
    type: bool
    default: false
seealso:
  - module: llmops.gpu_stack.nvidia_driver_plan
  - module: llmops.gpu_stack.gpu_facts
"""

EXAMPLES = r"""
- name: Check the planned pair
  llmops.gpu_stack.cuda_compat:
    cuda_version: "12.4"
    driver_version: 550.163.01
  register: compat

- name: Refuse an incompatible pair
  ansible.builtin.assert:
    that: compat.supported
    fail_msg: "{{ compat.msg }}"
"""

RETURN = r"""
supported:
  description: Whether the driver runs the toolkit (with minor-version compatibility only when allowed).
  returned: always
  type: bool
  sample: false
msg:
  description: The answer in words, with both versions, the minimum and, for a refusal, the fix.
  returned: always
  type: str
  sample: CUDA 12.4 needs NVIDIA driver 550.54.14 or newer (the minimum for CUDA 12.4); the planned driver 535.261.03 is older.
cuda:
  description: The CUDA release, major.minor.
  returned: always
  type: str
  sample: "12.4"
driver_version:
  description: The driver compared, V(null) when there is none.
  returned: always
  type: str
  sample: 535.261.03
driver_source:
  description: V(planned), V(loaded), V(installed) or V(none).
  returned: always
  type: str
  sample: planned
min_driver:
  description: The minimum driver for the full feature set of this CUDA release.
  returned: always
  type: str
  sample: 550.54.14
compat_min_driver:
  description: The minor-version compatibility floor of the CUDA major release.
  returned: always
  type: str
  sample: 525.60.13
level:
  description: V(full), V(minor_version_compat) or V(unsupported); V(null) without a driver.
  returned: always
  type: str
  sample: minor_version_compat
newest_cuda_for_driver:
  description: The newest CUDA release in the table the driver fully supports.
  returned: always
  type: str
  sample: "12.2"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.gpu_stack.plugins.module_utils._cuda_compat import check_toolkit, detect_driver


def main():
    module = AnsibleModule(
        argument_spec=dict(
            cuda_version=dict(type="str", required=True),
            driver_version=dict(type="str", default=""),
            allow_minor_version_compat=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    driver = module.params["driver_version"]
    source = "planned"
    if not driver:
        driver, source = detect_driver()
    try:
        result = check_toolkit(module.params["cuda_version"], driver, source,
                               module.params["allow_minor_version_compat"])
    except ValueError as exc:
        module.fail_json(msg="cannot compare CUDA %s with driver %s: %s"
                         % (module.params["cuda_version"], driver, exc))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
