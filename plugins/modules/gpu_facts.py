#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_facts
short_description: Gather NVIDIA GPU facts through NVML
version_added: 0.2.0
description:
  - Returns C(ansible_facts.gpu) with the driver and CUDA versions, the NVIDIA PCI devices read from sysfs,
    NVSwitch and fabric presence, and per GPU its memory, compute capability, modes, temperature, power, clocks,
    clock event (throttle) reasons and PCIe link.
  - Uses NVML through the C(nvidia-ml-py) binding (import name C(pynvml)), initialised once per run. It does not run
    C(nvidia-smi), whose text output is not a stable interface.
  - Never fails for a host-side problem. A host without GPUs, without driver, with the kernel module not loaded or
    without the Python binding gets a RV(ansible_facts.gpu.status) and a RV(ansible_facts.gpu.reason) that names the fix;
    the sysfs PCI list is filled in every case.
  - Queries a GPU cannot answer (many GeForce boards answer C(not supported)) return V(null) for that field only.
author:
  - llmops.gpu_stack maintainers (@llmops)
extends_documentation_fragment:
  - llmops.gpu_stack.attributes
  - llmops.gpu_stack.attributes.facts
  - llmops.gpu_stack.attributes.facts_module
requirements:
  - The C(nvidia-ml-py) Python package (import name C(pynvml)) on the managed host. The C(llmops.gpu_stack.common)
    role installs it; without it the facts say C(bindings_missing).
options:
  supported_clocks:
    description:
      - Also report the supported memory and graphics clock pairs of every GPU, as accepted by
        M(llmops.gpu_stack.gpu_settings) for O(llmops.gpu_stack.gpu_settings#module:application_clocks).
      - Adds one NVML query per memory clock and GPU.
    type: bool
    default: false
  bindings_path:
    description:
      - Directory searched for the C(pynvml) binding when the host Python does not have it.
      - The C(llmops.gpu_stack.common) role installs a pinned C(nvidia-ml-py) there with C(pip --target).
    type: path
    default: /opt/gpu_stack/python
notes:
  - GPU indices are in NVML order (PCI bus order), the order C(nvidia-smi) shows. CUDA applications number GPUs
    fastest first unless C(CUDA_DEVICE_ORDER=PCI_BUS_ID) is set; set it wherever GPU indices from these facts are used.
seealso:
  - module: llmops.gpu_stack.deploy_preflight
  - module: llmops.gpu_stack.gpu_settings
"""

EXAMPLES = r"""
- name: Gather GPU facts
  llmops.gpu_stack.gpu_facts:

- name: Show the GPU inventory
  ansible.builtin.debug:
    msg: "{{ ansible_facts.gpu.gpu_count }} x {{ ansible_facts.gpu.gpus | map(attribute='name') | unique | join(', ') }}"
  when: ansible_facts.gpu.status == 'ok'

- name: Stop when the driver is not usable yet
  ansible.builtin.assert:
    that: ansible_facts.gpu.status == 'ok'
    fail_msg: "{{ ansible_facts.gpu.status }}: {{ ansible_facts.gpu.reason }}"

- name: Gather the clock pairs for gpu_settings
  llmops.gpu_stack.gpu_facts:
    supported_clocks: true
"""

RETURN = r"""
ansible_facts:
  description: Facts added to the host.
  returned: always
  type: dict
  contains:
    gpu:
      description: NVIDIA GPU facts.
      returned: always
      type: dict
      contains:
        status:
          description:
            - C(ok), C(no_nvidia_device), C(library_missing) (driver user space not installed),
              C(driver_not_loaded), C(bindings_missing) (no C(pynvml)) or C(error).
          type: str
          sample: ok
        nvml_status:
          description:
            - What NVML itself answered, whatever the PCI scan found - C(ok), C(bindings_missing),
              C(library_missing), C(driver_not_loaded) or C(error). On a host with no NVIDIA GPU RV(ansible_facts.gpu.status)
              is C(no_nvidia_device) while this still tells whether the driver stack is installed.
          type: str
          sample: driver_not_loaded
        reason:
          description: What the status means on this host and, for a problem, the fix.
          type: str
          sample: 8 GPU(s), driver 570.133.20
        driver_version:
          description: NVIDIA driver version, V(null) when NVML is not usable.
          type: str
          sample: 570.133.20
        cuda_driver_version:
          description: Highest CUDA version the driver supports, major.minor.
          type: str
          sample: "12.8"
        nvml_version:
          description: NVML library version.
          type: str
          sample: 12.570.133.20
        pci_devices:
          description: NVIDIA PCI functions from sysfs, read even when no driver is loaded.
          type: list
          elements: dict
          sample:
            - bus_id: "0000:18:00.0"
              vendor_id: "0x10de"
              device_id: "0x2335"
              class: "0x030200"
              kind: gpu
              driver: nvidia
              subsystem_vendor_id: "0x10de"
              subsystem_device_id: "0x18be"
              numa_node: 0
        pci_gpu_count:
          description: PCI functions of kind C(gpu) (display or 3D controllers).
          type: int
          sample: 8
        nvswitch_present:
          description:
            - Whether NVSwitches or an NVLink fabric exist, from C(/proc/driver/nvidia-nvswitch/devices), the PCI list
              (class 0x0680) and NVML fabric state. Fabric manager is needed exactly when this is true.
          type: bool
          sample: true
        fabric:
          description: Where NVSwitch presence was seen and the per-GPU fabric registration state.
          type: dict
          sample:
            proc_nvswitch_devices: ["0000:05:00.0", "0000:06:00.0"]
            pci_nvswitch_devices: ["0000:05:00.0", "0000:06:00.0"]
            gpu_states: [completed, completed]
            fabric_manager_needed: true
            all_registered: true
        gpu_count:
          description: GPUs NVML reports.
          type: int
          sample: 8
        gpus:
          description:
            - One dict per GPU. Fields a GPU cannot report are V(null). A GPU whose queries failed has only
              RV(ansible_facts.gpu.gpus[].index) and RV(ansible_facts.gpu.gpus[].error).
          type: list
          elements: dict
          contains:
            index:
              description: NVML index.
              type: int
            name:
              description: Product name.
              type: str
              sample: NVIDIA H200
            uuid:
              description: GPU UUID.
              type: str
              sample: GPU-6f1c2e1a-0b7e-4f43-9b5e-2e64a8c1d001
            pci_bus_id:
              description: PCI bus id as NVML reports it.
              type: str
              sample: "00000000:18:00.0"
            memory_total:
              description: Total memory in bytes.
              type: int
            memory_free:
              description: Free memory in bytes.
              type: int
            memory_used:
              description: Used memory in bytes.
              type: int
            compute_capability:
              description: CUDA compute capability, major.minor.
              type: str
              sample: "9.0"
            architecture:
              description: Architecture name for the compute capability.
              type: str
              sample: Hopper
            persistence_mode:
              description: C(enabled) or C(disabled).
              type: str
            compute_mode:
              description: C(default), C(exclusive_process), C(prohibited) or C(exclusive_thread).
              type: str
            mig_mode:
              description: MIG mode, current and pending (C(enabled)/C(disabled)); V(null) without MIG support.
              type: dict
              sample: {current: disabled, pending: disabled}
            ecc_mode:
              description: ECC mode, current and pending; V(null) without ECC support.
              type: dict
            temperature_c:
              description: GPU temperature in degrees Celsius.
              type: int
            power_draw_w:
              description: Current power draw in watts.
              type: float
            power_limit_w:
              description: Power limit in watts.
              type: float
            power_default_limit_w:
              description: Default power limit in watts.
              type: float
            power_min_limit_w:
              description: Lowest settable power limit in watts.
              type: float
            power_max_limit_w:
              description: Highest settable power limit in watts.
              type: float
            clocks:
              description: Clocks in MHz, keys C(current) (graphics, sm, memory), C(application) and
                C(default_application) (graphics, memory) and C(max) (graphics, sm, memory).
              type: dict
            throttle_reasons:
              description: Active clock event reasons, for example C(sw_power_cap), C(hw_thermal_slowdown), C(gpu_idle).
              type: list
              elements: str
            pcie:
              description: PCIe link, keys C(generation), C(width), C(max_generation), C(max_width).
              type: dict
            fabric:
              description: NVML fabric state (C(state), C(status), C(clique_id), C(cluster_uuid)); V(null) where not
                supported.
              type: dict
            supported_clocks:
              description: With O(supported_clocks=true), the supported pairs as a list of C(memory) and C(graphics) lists.
              type: list
              elements: dict
              returned: when O(supported_clocks=true)
            error:
              description: Why this GPU could not be queried, with the fix; V(null) when it answered.
              type: str
"""

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.gpu_stack.plugins.module_utils._nvml import (
    DEFAULT_BINDINGS_PATH,
    collect_gpu_facts,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            supported_clocks=dict(type="bool", default=False),
            bindings_path=dict(type="path", default=DEFAULT_BINDINGS_PATH),
        ),
        supports_check_mode=True,
    )
    try:
        facts = collect_gpu_facts(
            bindings_path=module.params["bindings_path"],
            supported_clocks=module.params["supported_clocks"],
        )
    except Exception as exc:
        module.fail_json(
            msg="gpu_facts failed unexpectedly: %s: %s. This is a bug in llmops.gpu_stack; please report it with the "
                "exception shown at -vvv." % (exc.__class__.__name__, exc),
            exception=traceback.format_exc(),
        )
    module.exit_json(changed=False, ansible_facts={"gpu": facts})


if __name__ == "__main__":
    main()
