#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the llmops.gpu_stack collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: model_storage_info
short_description: Check model storage inputs and read the state of the model store
version_added: 0.2.0
description:
  - Read-only. Checks the inputs of the C(llmops.gpu_stack.model_storage) role and reads what is on the host, so
    that the role can refuse a bad input before it changes anything.
  - Checks the storage paths with the collection's model path rules (absolute, ASCII, no whitespace, no C(..)),
    model and revision names, each model's source, and the file-system type that holds the storage root
    (NTFS, FUSE block file systems, FAT and exFAT are refused with the reason).
  - For a block device, reads its signature with C(blkid -p) and reports a problem when formatting it would
    destroy a file system, a LUKS container or a partition table that is not the one asked for, unless
    O(force_format) is set; also when the device is mounted somewhere else, or when LUKS is asked for and the
    kernel's device-mapper is missing.
  - For each model, reports the published revisions, manifests, archives, where C(current) points, the
    activation history and unfinished downloads.
  - Returns the problems instead of failing, each with the field, the value, the problem and the fix; the role
    fails with all of them at once.
author:
  - llmops.gpu_stack maintainers (@llmops)
extends_documentation_fragment:
  - llmops.gpu_stack.attributes
  - llmops.gpu_stack.attributes.info_module
options:
  root:
    description: The storage root that holds one directory per model.
    type: path
    required: true
  mount:
    description: Where the model file system is mounted (or the existing directory that holds O(root)).
    type: path
    required: true
  device:
    description:
      - Block device (or LVM logical volume, or C(/dev/mapper) device) that holds, or will hold, the model
        file system. Empty when O(mount) is an existing file system.
    type: str
    default: ""
  fstype:
    description: File system the device gets.
    type: str
    choices: [ext4, xfs]
    default: ext4
  force_format:
    description: Accept a device that holds something else (it will be formatted over).
    type: bool
    default: false
  luks:
    description: The device gets (or has) a LUKS2 container.
    type: bool
    default: false
  luks_name:
    description: Name of the opened LUKS device under C(/dev/mapper); a mount of it at O(mount) is expected.
    type: str
    default: models
  allowed_fs_types:
    description: File systems accepted for the storage root. NTFS, fuseblk, FAT and exFAT are refused whatever this says.
    type: list
    elements: str
    default: [ext4, xfs]
  check_storage:
    description:
      - Check the file-system type that holds O(root) now. The role turns it off while the device is not mounted
        yet; it is checked anyway when O(device) is mounted at O(mount).
    type: bool
    default: true
  models:
    description:
      - The models as the role takes them, each C({name, revision, source}); see the role's documentation for
        the source types.
    type: list
    elements: dict
    default: []
  variable_prefix:
    description:
      - Prefix put before each field name in RV(messages) and before the option names that the fixes mention, for
        example V(model_storage_), so that messages name the caller's variables.
    type: str
    default: ""
notes:
  - Runs C(blkid) only when O(device) is set.
seealso:
  - module: llmops.gpu_stack.model_storage_fetch
  - module: llmops.gpu_stack.model_storage_revision
  - module: llmops.gpu_stack.model_manifest
"""

EXAMPLES = r"""
- name: Check the inputs and read the model store
  llmops.gpu_stack.model_storage_info:
    root: /srv/models
    mount: /srv/models
    device: /dev/nvme1n1
    models:
      - name: deepseek-r1-distill-qwen-7b
        revision: 916b56a44061fd5cd7d6a8fb632557ed4f724f60
        source:
          type: hf
          repo_id: deepseek-ai/DeepSeek-R1-Distill-Qwen-7B
          commit: 916b56a44061fd5cd7d6a8fb632557ed4f724f60
    variable_prefix: model_storage_
  register: __store

- name: Refuse bad input before any change
  ansible.builtin.assert:
    that: __store.problems | length == 0
    fail_msg: "{{ __store.messages }}"
"""

RETURN = r"""
problems:
  description: Every problem found, each with the field, the bad value, the problem and the fix.
  returned: always
  type: list
  elements: dict
  sample:
    - field: device
      value: /dev/loop3
      problem: /dev/loop3 already holds a vfat file system; formatting it as ext4 would destroy it
      fix: point device at an empty device, or set force_format true to overwrite it
messages:
  description: The problems as lines, the field prefixed with O(variable_prefix).
  returned: always
  type: list
  elements: str
device:
  description:
    - What O(device) holds. C(blkid) is the C(blkid -p -o export) output as a mapping (C(TYPE), C(UUID), C(PTTYPE) ...).
    - C(mounted_at) lists where it is mounted. C(dm_available) says whether the kernel's device-mapper is there.
  returned: always
  type: dict
  sample: {path: /dev/loop3, exists: true, block: true, blkid: {TYPE: ext4, UUID: 0b9f7c6e-2d54-4a8e-9b0f-1c2d3e4f5a6b}, mounted_at: [], dm_available: true}
storage:
  description:
    - The file system that holds O(root) (or the parent it will be created in), its verdict and free bytes.
    - C(checked) says whether the verdict counted (see O(check_storage)).
  returned: always
  type: dict
  sample: {path: /srv/models, fs_type: ext4, ok: true, checked: true, reason: ext4 is an allowed model file system,
           free_bytes: 98765432100, total_bytes: 105089261568}
models:
  description:
    - Per model name, what is on disk; C(published) is true when the requested revision and its manifest exist,
      C(archived) when its archive and manifest exist.
  returned: always
  type: dict
  sample:
    smollm2:
      current: r1
      revisions: [r1]
      manifests: [r1]
      archives: []
      history: [r1]
      incoming: {}
      published: true
      archived: false
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _block_devices as blockdev
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_revisions as revs
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_storage as ms
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _storage


def device_facts(module, device):
    facts = {"path": device, "exists": False, "block": False, "blkid": {}, "mounted_at": [],
             "dm_available": os.path.exists(blockdev.DM_CONTROL)}
    if not device:
        return facts
    facts["exists"] = os.path.exists(device)
    facts["block"] = blockdev.is_block_device(device)
    if facts["block"]:
        rc, out, err = module.run_command(["blkid", "-p", "-o", "export", device])
        # 2: nothing recognised on the device (an empty device).
        if rc not in (0, 2):
            module.fail_json(msg="blkid -p %s failed (rc %d): %s" % (device, rc, err.strip()))
        facts["blkid"] = blockdev.parse_blkid_export(out)
        real = os.path.realpath(device)
        mounts = blockdev.mounted_devices(_storage.read_mountinfo())
        facts["mounted_at"] = sorted(set(mounts.get(device, []) + mounts.get(real, [])))
    return facts


def check_device(params, facts):
    device = params["device"]
    prefix = params["variable_prefix"]
    found = []
    if not blockdev.DEVICE_RE.match(device):
        return [ms.problem("device", device, "%r is not a device path under /dev" % device,
                           "give the block device or logical volume, e.g. /dev/nvme1n1 or /dev/vg0/models")]
    if not facts["block"]:
        why = "does not exist" if not facts["exists"] else "is not a block device"
        return [ms.problem("device", device, "%s %s" % (device, why),
                           "give an existing block device or logical volume, or leave %sdevice empty to use an "
                           "existing mount" % prefix)]
    found.extend(blockdev.check_device_content("device", device, facts["blkid"], params["fstype"], params["luks"],
                                               params["force_format"], "force_format", prefix))
    others = [point for point in facts["mounted_at"] if os.path.normpath(point) != os.path.normpath(params["mount"])]
    if others:
        found.append(ms.problem("device", device, "%s is mounted at %s" % (device, ", ".join(others)),
                                "unmount it there, or set %smount to %s" % (prefix, others[0])))
    occupant = mount_source(params["mount"])
    ours = set([device, os.path.realpath(device)])
    if params["luks"]:
        mapped = "/dev/mapper/" + params["luks_name"]
        ours.update([mapped, os.path.realpath(mapped)])
    if occupant is not None and occupant not in ours:
        found.append(ms.problem("mount", params["mount"], "%s already has %s mounted on it" % (params["mount"], occupant),
                                "unmount it, or choose another %smount" % prefix))
    if params["luks"] and not facts["dm_available"]:
        found.append(ms.problem(
            "luks", True, "LUKS needs the kernel's device-mapper with dm-crypt, and %s is missing" % blockdev.DM_CONTROL,
            "load it (modprobe dm_crypt) on a kernel that has it, or set %sluks to false" % prefix))
    if not ms.is_within(params["root"], params["mount"]):
        found.append(ms.problem("root", params["root"], "%s is not on the new file system mounted at %s"
                                % (params["root"], params["mount"]),
                                "put %sroot at or below %s" % (prefix, params["mount"])))
    return found


def mount_source(path):
    """The source of the mount exactly at `path`, or None."""
    target = os.path.normpath(path)
    source = None
    for mount in _storage.parse_mountinfo(_storage.read_mountinfo()):
        if os.path.normpath(mount["mount_point"]) == target:
            source = mount["source"]
    return source


def storage_facts(params):
    root = params["root"]
    fs_type = _storage.fs_type_for_path(root)
    ok, reason = _storage.check_fs_type(fs_type, params["allowed_fs_types"])
    return {"path": root, "fs_type": fs_type, "ok": ok, "reason": reason,
            "free_bytes": _storage.free_bytes(root), "total_bytes": _storage.total_bytes(root)}


def models_facts(params, found):
    result = {}
    for index, model in enumerate(params["models"]):
        name = model.get("name") if isinstance(model, dict) else None
        if not isinstance(name, str) or ms.check_name("name", name) or name in result:
            continue
        layout = revs.Layout(params["root"], name)
        try:
            state = revs.model_state(layout)
        except ms.StorageError as exc:
            found.append(ms.problem("models[%d].name" % index, name, str(exc), "see the message"))
            continue
        revision = model.get("revision")
        if revision in state["revisions"] and revision not in state["manifests"]:
            found.append(ms.problem(
                "models[%d].revision" % index, revision,
                "%s is published but its manifest %s is missing, so it cannot be verified"
                % (layout.revision(revision), layout.manifest(revision)),
                "remove %s; the next run fetches and verifies it again" % layout.revision(revision)))
        state["published"] = revision in state["revisions"] and revision in state["manifests"]
        state["archived"] = revision in state["archives"] and revision in state["manifests"]
        result[name] = state
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            mount=dict(type="path", required=True),
            device=dict(type="str", default=""),
            fstype=dict(type="str", default="ext4", choices=["ext4", "xfs"]),
            force_format=dict(type="bool", default=False),
            luks=dict(type="bool", default=False),
            luks_name=dict(type="str", default="models"),
            allowed_fs_types=dict(type="list", elements="str", default=["ext4", "xfs"]),
            check_storage=dict(type="bool", default=True),
            models=dict(type="list", elements="dict", default=[]),
            variable_prefix=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    params = module.params
    found = []
    found.extend(ms.check_path("mount", params["mount"]))
    found.extend(ms.check_path("root", params["root"]))
    found.extend(ms.validate_models(params["models"]))
    paths_ok = not found
    facts = device_facts(module, params["device"])
    if params["device"]:
        found.extend(check_device(params, facts))
    storage = {"path": params["root"]}
    if paths_ok:
        storage = storage_facts(params)
        mounted_here = bool(params["device"]) and any(
            os.path.normpath(point) == os.path.normpath(params["mount"]) for point in facts["mounted_at"])
        storage["checked"] = params["check_storage"] or mounted_here
        if storage["checked"] and not storage["ok"]:
            found.append(ms.problem(
                "root", params["root"], "the file system holding %s: %s" % (params["root"], storage["reason"]),
                "put the models on ext4 or xfs: set {0}device to a block device to format, or point {0}mount and "
                "{0}root at an ext4 or xfs mount".format(params["variable_prefix"])))
    models = models_facts(params, found) if paths_ok else {}
    module.exit_json(changed=False, problems=found, messages=ms.render(found, params["variable_prefix"]),
                     device=facts, storage=storage, models=models)


if __name__ == "__main__":
    main()
