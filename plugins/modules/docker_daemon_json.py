#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: docker_daemon_json
short_description: Merge settings into Docker's daemon.json, keeping the operator's own settings
version_added: 0.2.0
description:
  - Reads the JSON object in Docker's C(daemon.json), deep-merges O(settings) into it, removes the keys of
    O(remove_if_equal) only while they hold the given value, and writes the file only when the resulting object
    differs from the current one. Every other key stays as it was.
  - Dictionaries merge key by key; any other value, lists included, replaces the current one.
  - Formatting is not a change. When the file is written it is indented with four spaces and keeps its key order.
  - A file that is not a JSON object fails the task and is left untouched.
  - Use the changed result to restart Docker only when the file changed.
author:
  - llmops.gpu_stack maintainers (@llmops)
extends_documentation_fragment:
  - llmops.gpu_stack.attributes
  - ansible.builtin.files
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
options:
  path:
    description: Path of the daemon configuration file.
    type: path
    default: /etc/docker/daemon.json
  settings:
    description: Keys to merge into the file's object.
    type: dict
    default: {}
  remove_if_equal:
    description:
      - Keys to remove, with the value they must hold to be removed, in the same nested structure as the file.
        A key holding another value is left alone. A dictionary left empty by a removal is removed too.
    type: dict
    default: {}
  create:
    description:
      - Create the file when it is absent. With V(false), an absent file is left absent and nothing is reported.
      - The parent directory must exist.
    type: bool
    default: true
  backup:
    description: Keep a timestamped copy of the previous file next to it when the file changes.
    type: bool
    default: false
seealso:
  - name: Docker daemon configuration file
    description: The keys dockerd accepts in daemon.json.
    link: https://docs.docker.com/reference/cli/dockerd/#daemon-configuration-file
"""

EXAMPLES = r"""
- name: Add the NVIDIA runtime and enable CDI, keeping every other setting
  llmops.gpu_stack.docker_daemon_json:
    settings:
      runtimes:
        nvidia:
          path: nvidia-container-runtime
      features:
        cdi: true
    backup: true
    owner: root
    group: root
    mode: "0644"
  notify: Restart docker
  become: true

- name: Stop making the NVIDIA runtime the default, if it is
  llmops.gpu_stack.docker_daemon_json:
    remove_if_equal:
      default-runtime: nvidia
  become: true
"""

RETURN = r"""
config:
  description: The object the file holds after the task (would hold, in check mode).
  returned: success
  type: dict
  sample:
    log-driver: journald
    runtimes:
      nvidia:
        path: nvidia-container-runtime
    features:
      cdi: true
backup_file:
  description: The copy of the previous file, when O(backup=true) and the file changed.
  returned: changed and O(backup=true)
  type: str
  sample: /etc/docker/daemon.json.1234.2026-11-28@10:00:00~
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native

from ansible_collections.llmops.gpu_stack.plugins.module_utils._docker_daemon_json import (
    DaemonJsonError,
    plan,
    render,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/etc/docker/daemon.json"),
            settings=dict(type="dict", default={}),
            remove_if_equal=dict(type="dict", default={}),
            create=dict(type="bool", default=True),
            backup=dict(type="bool", default=False),
        ),
        add_file_common_args=True,
        supports_check_mode=True,
    )
    path = module.params["path"]
    exists = os.path.exists(path)
    if not exists and not module.params["create"]:
        module.exit_json(changed=False, config={}, msg="%s is absent and create=false: nothing to do" % path)
    if exists and not os.path.isfile(path):
        module.fail_json(msg="%s exists but is not a regular file; nothing was changed. Fix: remove it or point path "
                             "at the daemon configuration file" % path)
    parent = os.path.dirname(path) or "."
    if not exists and not os.path.isdir(parent):
        module.fail_json(msg="the directory %s does not exist; nothing was changed. Fix: create it (Docker's package "
                             "creates /etc/docker) or set path" % parent)

    text = None
    if exists:
        try:
            with open(path, "rb") as handle:
                text = handle.read().decode("utf-8")
        except (IOError, OSError, UnicodeDecodeError) as exc:
            module.fail_json(msg="cannot read %s: %s. Fix: run with become: true" % (path, to_native(exc)))
    try:
        changed, before, after, new_text = plan(text, module.params["settings"], module.params["remove_if_equal"], path)
    except DaemonJsonError as exc:
        module.fail_json(msg=str(exc))

    result = dict(changed=changed, config=after)
    if module._diff:
        result["diff"] = dict(before=render(before) if exists else "", after=new_text,
                              before_header=path, after_header=path)
    if changed and not module.check_mode:
        if exists and module.params["backup"]:
            result["backup_file"] = module.backup_local(path)
        handle, tmp = tempfile.mkstemp(prefix=".daemon.json.", dir=parent)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(to_bytes(new_text))
            if not exists:
                os.chmod(tmp, 0o644)
            module.atomic_move(tmp, path, unsafe_writes=module.params["unsafe_writes"])
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    if exists or not module.check_mode:
        file_args = module.load_file_common_arguments(module.params, path=path)
        result["changed"] = module.set_fs_attributes_if_different(file_args, result["changed"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
