#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_settings
short_description: Set NVIDIA GPU persistence mode, clocks, power limit and compute mode
version_added: 0.2.0
description:
  - Sets, per GPU, legacy persistence mode, application clocks, a locked GPU clock range, the power limit and the
    compute mode through NVML.
  - Reads the current state first and changes only what differs. Validates every requested setting on every selected
    GPU before changing anything; an invalid request changes nothing.
  - All of these settings reset on reboot and on driver reload. Apply them again at every boot to keep them.
author:
  - llmops.gpu_stack maintainers (@llmops)
extends_documentation_fragment:
  - llmops.gpu_stack.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
    details:
      - Locked clocks cannot be read back through NVML; the module keeps a record of the ranges it set in
        O(state_dir) and compares against that. A lock set by other tools, or lost to a driver reload without reboot,
        is not seen.
requirements:
  - The C(nvidia-ml-py) Python package (import name C(pynvml)) on the managed host.
  - Root privileges (C(become)) for any change.
options:
  gpus:
    description:
      - GPUs to configure. Each item is V(all), an NVML index such as V(0), or a GPU UUID such as V(GPU-6f1c2e1a-...).
      - A selector that matches no GPU is an error that lists the GPUs present.
    type: list
    elements: str
    default: [all]
  persistence_mode:
    description:
      - Legacy persistence mode (C(nvidia-smi -pm)). Keeps the driver initialised between GPU clients, saving
        1-3 s per GPU at each start.
      - NVIDIA calls legacy persistence mode near end of life; the supported way is the C(nvidia-persistenced) daemon,
        which should be preferred. Use this option where the daemon is not available.
    type: bool
  compute_mode:
    description:
      - Compute mode. V(exclusive_process) lets one process own the GPU.
    type: str
    choices: [default, exclusive_process, prohibited]
  power_limit:
    description:
      - Power limit in watts. Must lie within the GPU's minimum and maximum limit (see
        RV(llmops.gpu_stack.gpu_facts#module:ansible_facts.gpu.gpus[].power_min_limit_w) and
        RV(llmops.gpu_stack.gpu_facts#module:ansible_facts.gpu.gpus[].power_max_limit_w)).
    type: int
  application_clocks:
    description:
      - Application clocks in MHz (C(nvidia-smi -ac)). The pair must be one the GPU supports; the error lists the
        supported pairs, and M(llmops.gpu_stack.gpu_facts) with O(llmops.gpu_stack.gpu_facts#module:supported_clocks=true)
        reports them.
      - Documented for data-centre and workstation GPUs; many GeForce boards answer C(not supported).
    type: dict
    suboptions:
      memory:
        description: Memory clock in MHz.
        type: int
        required: true
      graphics:
        description: Graphics clock in MHz.
        type: int
        required: true
  reset_application_clocks:
    description:
      - Reset application clocks to the GPU's defaults. Changes nothing when they already are.
    type: bool
    default: false
  locked_clocks:
    description:
      - Lock the GPU (graphics) clock to a range in MHz (C(nvidia-smi -lgc)). Needs Volta or newer. Overrides
        application clocks while set.
    type: dict
    suboptions:
      min:
        description: Lowest GPU clock in MHz.
        type: int
        required: true
      max:
        description: Highest GPU clock in MHz; at most the GPU's maximum graphics clock.
        type: int
        required: true
  reset_locked_clocks:
    description:
      - Unlock the GPU clocks (C(nvidia-smi -rgc)). Reported as a change when the module's record shows a lock; without
        a record the reset is still issued (it does nothing on an unlocked GPU) and not reported.
    type: bool
    default: false
  best_effort:
    description:
      - When a GPU does not support a requested setting, skip that setting on that GPU and report it in
        RV(skipped_settings) instead of failing.
      - Invalid values (an unsupported clock pair, a power limit out of range) fail regardless.
    type: bool
    default: false
  state_dir:
    description:
      - Directory for the record of locked clock ranges. Keep it on a file system emptied at boot, as the locks are.
    type: path
    default: /run/gpu_stack
  bindings_path:
    description:
      - Directory searched for the C(pynvml) binding when the host Python does not have it.
    type: path
    default: /opt/gpu_stack/python
notes:
  - Locked clocks take precedence over application clocks.
seealso:
  - module: llmops.gpu_stack.gpu_facts
"""

EXAMPLES = r"""
- name: Persistence mode and a 600 W power limit on every GPU
  llmops.gpu_stack.gpu_settings:
    persistence_mode: true
    power_limit: 600
  become: true

- name: Maximum application clocks on an H100 SXM
  llmops.gpu_stack.gpu_settings:
    gpus: [all]
    application_clocks:
      memory: 2619
      graphics: 1980
  become: true

- name: Lock GPU 0 and 1 between 1410 and 1980 MHz, skipping GPUs that cannot
  llmops.gpu_stack.gpu_settings:
    gpus: ["0", "1"]
    locked_clocks:
      min: 1410
      max: 1980
    best_effort: true
  become: true

- name: Back to default clocks
  llmops.gpu_stack.gpu_settings:
    reset_application_clocks: true
    reset_locked_clocks: true
  become: true
"""

RETURN = r"""
gpus:
  description: Per selected GPU, the settings changed (or that would change in check mode) with before and after.
  returned: success
  type: list
  elements: dict
  sample:
    - index: 0
      uuid: GPU-6f1c2e1a-0b7e-4f43-9b5e-2e64a8c1d001
      name: NVIDIA H200
      changes:
        power_limit: {before: 700, after: 600}
        persistence_mode: {before: false, after: true}
skipped_settings:
  description: Settings skipped with O(best_effort=true) because a GPU does not support them.
  returned: success
  type: list
  elements: dict
  sample:
    - gpu: 0
      uuid: GPU-0c7b9a9e-0000-4000-8000-000000000001
      setting: application_clocks
      reason: application clocks are not supported on this GPU or driver
diff:
  description: Before and after per GPU (keys C(gpu0), C(gpu1), ...), for the settings that change.
  returned: success
  type: dict
  sample:
    before: {gpu0: {power_limit: 700}}
    after: {gpu0: {power_limit: 600}}
applied:
  description: On a failure part way, the changes that were made before it.
  returned: failure after a change was applied
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.llmops.gpu_stack.plugins.module_utils._gpu_settings import (
    ApplyError,
    SettingsError,
    configure,
    read_boot_id,
    setting_requested,
)
from ansible_collections.llmops.gpu_stack.plugins.module_utils._nvml import (
    BINDINGS_FIX,
    DEFAULT_BINDINGS_PATH,
    NvmlSession,
    NvmlUnavailable,
    import_pynvml,
)

SETTING_OPTIONS = ("persistence_mode", "compute_mode", "power_limit", "application_clocks",
                   "reset_application_clocks", "locked_clocks", "reset_locked_clocks")
SETTING_NAMES = ("persistence_mode", "compute_mode", "power_limit", "application_clocks", "locked_clocks")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            gpus=dict(type="list", elements="str", default=["all"]),
            persistence_mode=dict(type="bool"),
            compute_mode=dict(type="str", choices=["default", "exclusive_process", "prohibited"]),
            power_limit=dict(type="int"),
            application_clocks=dict(type="dict", options=dict(
                memory=dict(type="int", required=True),
                graphics=dict(type="int", required=True),
            )),
            reset_application_clocks=dict(type="bool", default=False),
            locked_clocks=dict(type="dict", options=dict(
                min=dict(type="int", required=True),
                max=dict(type="int", required=True),
            )),
            reset_locked_clocks=dict(type="bool", default=False),
            best_effort=dict(type="bool", default=False),
            state_dir=dict(type="path", default="/run/gpu_stack"),
            bindings_path=dict(type="path", default=DEFAULT_BINDINGS_PATH),
        ),
        mutually_exclusive=[
            ("application_clocks", "reset_application_clocks"),
            ("locked_clocks", "reset_locked_clocks"),
        ],
        supports_check_mode=True,
    )
    params = module.params
    if not any(setting_requested(params, name) for name in SETTING_NAMES):
        module.fail_json(msg="no setting requested; give at least one of %s" % ", ".join(SETTING_OPTIONS))

    nvml, import_error = import_pynvml(params["bindings_path"])
    if nvml is None:
        module.fail_json(msg="%s Fix: %s." % (missing_required_lib("nvidia-ml-py (import name pynvml)"), BINDINGS_FIX),
                         exception=import_error)
    try:
        session = NvmlSession(nvml).open()
    except NvmlUnavailable as exc:
        module.fail_json(msg=exc.reason, status=exc.status)

    wanted = dict((name, params[name]) for name in SETTING_OPTIONS)
    wanted["gpus"] = params["gpus"]
    wanted["best_effort"] = params["best_effort"]
    try:
        result = configure(session, wanted, check_mode=module.check_mode, state_dir=params["state_dir"],
                           boot_id=read_boot_id())
    except SettingsError as exc:
        module.fail_json(msg="nothing changed: %s" % exc, changed=False)
    except ApplyError as exc:
        module.fail_json(msg="a GPU setting failed after %d change(s): %s" % (len(exc.applied), exc.reason),
                         changed=bool(exc.applied), applied=exc.applied)
    except (IOError, OSError) as exc:
        module.fail_json(msg="cannot write the locked-clocks record in %s: %s. Fix: run with become: true or set "
                             "state_dir to a writable directory" % (params["state_dir"], exc), changed=True)
    finally:
        session.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
