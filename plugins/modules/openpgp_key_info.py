#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: openpgp_key_info
short_description: Read the fingerprint of an OpenPGP public key file and compare it with the expected one
version_added: 0.2.0
description:
  - Reads an OpenPGP public key (ASCII-armored or binary), such as a package repository's signing key, and returns
    the fingerprint of its primary key and subkeys and its user IDs.
  - With O(fingerprint), RV(matches) says whether the primary key is the expected one. Use it before letting apt or
    dnf trust a downloaded key.
  - Reads the packets itself; neither gpg nor a keyring home directory is needed or touched. Version 4 and version 6
    keys are supported.
author:
  - llmops.gpu_stack maintainers (@llmops)
extends_documentation_fragment:
  - llmops.gpu_stack.attributes
  - llmops.gpu_stack.attributes.info_module
options:
  path:
    description: The key file. A missing file is reported with RV(exists=false), not as a failure.
    type: path
    required: true
  fingerprint:
    description:
      - The expected fingerprint of the primary key, in hex; spaces and a C(0x) prefix are ignored.
    type: str
"""

EXAMPLES = r"""
- name: Download NVIDIA's container toolkit repository key
  ansible.builtin.get_url:
    url: https://nvidia.github.io/libnvidia-container/gpgkey
    dest: /etc/apt/keyrings/nvidia-container-toolkit.asc.download
    mode: "0644"

- name: Check it is NVIDIA's key
  llmops.gpu_stack.openpgp_key_info:
    path: /etc/apt/keyrings/nvidia-container-toolkit.asc.download
    fingerprint: C95B321B61E88C1809C4F759DDCAE044F796ECB0
  register: key

- name: Refuse another key
  ansible.builtin.assert:
    that: key.matches
    fail_msg: "unexpected key {{ key.primary_fingerprint }}"
"""

RETURN = r"""
exists:
  description: Whether the file exists.
  returned: success
  type: bool
primary_fingerprint:
  description: The fingerprint of the primary key, upper-case hex.
  returned: when the file exists
  type: str
  sample: C95B321B61E88C1809C4F759DDCAE044F796ECB0
version:
  description: The OpenPGP version of the primary key.
  returned: when the file exists
  type: int
  sample: 4
fingerprints:
  description: The fingerprints of the primary key and then of each subkey.
  returned: when the file exists
  type: list
  elements: str
user_ids:
  description: The user IDs in the key.
  returned: when the file exists
  type: list
  elements: str
  sample: ["NVIDIA CORPORATION (Open Source Projects) <cudatools@nvidia.com>"]
matches:
  description: Whether the primary key has the fingerprint O(fingerprint); V(null) when none was given or the file is
    missing.
  returned: success
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.llmops.gpu_stack.plugins.module_utils._openpgp_key_info import (
    KeyFormatError,
    key_info,
    normalize,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            fingerprint=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    path = module.params["path"]
    expected = normalize(module.params["fingerprint"]) if module.params["fingerprint"] else None
    if expected is not None and (len(expected) not in (40, 64) or any(c not in "0123456789ABCDEF" for c in expected)):
        module.fail_json(msg="fingerprint %r is not a version 4 (40 hex digits) or version 6 (64 hex digits) "
                             "fingerprint" % module.params["fingerprint"])
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        module.exit_json(changed=False, exists=False, matches=None)
    except (IOError, OSError) as exc:
        module.fail_json(msg="cannot read %s: %s. Fix: run with become: true" % (path, to_native(exc)))
    try:
        info = key_info(data)
    except KeyFormatError as exc:
        module.fail_json(msg="%s is not a usable OpenPGP public key: %s. Fix: download the key again from its "
                             "publisher" % (path, exc))
    matches = None if expected is None else info["primary_fingerprint"] == expected
    module.exit_json(changed=False, exists=True, matches=matches, **info)


if __name__ == "__main__":
    main()
