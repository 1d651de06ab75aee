# -*- coding: utf-8 -*-
# Copyright: contributors to the llmops.gpu_stack collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Block devices of the model_storage role: blkid's export format, what a device already
holds (and whether formatting it is allowed), which devices are mounted.

Private to this collection (the leading underscore): the API may change without notice.
Standard library only; Python 3.9 or later on the managed host.
"""

from __future__ import annotations

import os
import re
import stat

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _storage
from ansible_collections.llmops.gpu_stack.plugins.module_utils._model_storage import problem


DEVICE_RE = re.compile(r"^/dev/[A-Za-z0-9][A-Za-z0-9/_.:+-]*$")
DM_CONTROL = "/dev/mapper/control"


# --- block devices ------------------------------------------------------------------------

def parse_blkid_export(text):
    """`blkid -p -o export` output as a dict (TYPE, UUID, PTTYPE, USAGE, ...)."""
    result = {}
    for line in (text or "").splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            result[key.strip()] = value.strip()
    return result


def device_signature(blkid):
    """What a device holds according to blkid: ('filesystem'|'crypto'|'partition_table'|'other'|None, name)."""
    if blkid.get("PTTYPE") and not blkid.get("TYPE"):
        return "partition_table", blkid["PTTYPE"]
    kind = blkid.get("TYPE")
    if not kind:
        return None, None
    if kind == "crypto_LUKS":
        return "crypto", kind
    return ("filesystem" if blkid.get("USAGE", "filesystem") == "filesystem" else "other"), kind


def check_device_content(field, device, blkid, fstype, luks, force_format, force_field, prefix=""):
    """Problems when formatting `device` would destroy something (unless force_format)."""
    kind, name = device_signature(blkid)
    if kind is None:
        return []
    wanted = "crypto_LUKS" if luks else fstype
    if name == wanted:
        return []
    if force_format:
        return []
    what = {"partition_table": "a %s partition table" % name, "crypto": "a LUKS container",
            "filesystem": "a %s file system" % name}.get(kind, "%s data (%s)" % (name, kind))
    return [problem(
        field, device,
        "%s already holds %s; formatting it as %s would destroy it" % (device, what, "LUKS2" if luks else fstype),
        "point %s%s at an empty device, or set %s%s: true to overwrite it" % (prefix, field, prefix, force_field),
    )]


def mounted_devices(mountinfo_text):
    """{source: [mount points]} from mountinfo text."""
    result = {}
    for mount in _storage.parse_mountinfo(mountinfo_text):
        result.setdefault(mount["source"], []).append(mount["mount_point"])
    return result


def is_block_device(path):
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False
