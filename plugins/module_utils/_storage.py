# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Model storage rules: path shape, file-system type, free space.

Pure functions where possible; the readers take the file to read as a parameter so tests and
callers (deploy_preflight, the model_storage role, the model_manifest module) can point them
elsewhere. Python 3.9+, standard library only.
"""

from __future__ import annotations

import os
import re

MOUNTINFO = "/proc/self/mountinfo"

# Model storage the collection accepts unless told otherwise.
DEFAULT_ALLOWED_FS_TYPES = ("ext4", "xfs")

# File systems that break model loading or serving, each with the reason. Refused even when
# listed in allowed types: the failures they cause show up late (at load or under load).
REFUSED_FS_TYPES = {
    "ntfs": "NTFS has no POSIX owners or modes, so the service account and 0640 weights cannot be enforced; "
            "Linux drivers for it are slow under the random reads of mmap-loaded weights",
    "ntfs3": "NTFS (ntfs3 driver) has no POSIX owners or modes, so the service account and 0640 weights cannot be enforced",
    "fuseblk": "a FUSE block file system (usually ntfs-3g): mmap-loaded weights go through user space and load several "
               "times slower, and POSIX owners and modes are not kept",
    "vfat": "FAT32 cannot hold files of 4 GiB or more (safetensors shards and GGUF files often are) and has no owners or modes",
    "msdos": "FAT cannot hold files of 4 GiB or more and has no owners or modes",
    "exfat": "exFAT has no POSIX owners or modes, so the weights cannot be restricted to the service account",
}

_MOUNTINFO_ESCAPE = re.compile(r"\\([0-7]{3})")


def check_model_path(path):
    """Problems with a model path, each {problem, fix}; empty when the path is fine.

    Rules: absolute; ASCII only; no whitespace; no '..' component. Loaders and shell-built
    service command lines break on the others, in ways that show up late.
    """
    problems = []
    text = "" if path is None else str(path)
    if not text:
        return [{"problem": "the model path is empty", "fix": "set an absolute path such as /srv/models/<name>"}]
    suggestion = _suggest_path(text)
    if not text.startswith("/"):
        problems.append({
            "problem": "%r is not an absolute path" % text,
            "fix": "use an absolute path, e.g. %s" % suggestion,
        })
    non_ascii = sorted(set(ch for ch in text if ord(ch) > 127))
    if non_ascii:
        problems.append({
            "problem": "%r contains non-ASCII characters (%s)" % (text, " ".join(non_ascii)),
            "fix": "use ASCII letters, digits, '.', '_' and '-' only, e.g. %s" % suggestion,
        })
    if re.search(r"\s", text):
        problems.append({
            "problem": "%r contains whitespace" % text,
            "fix": "replace spaces with '_' or '-', e.g. %s" % suggestion,
        })
    if ".." in text.split("/"):
        problems.append({
            "problem": "%r has a '..' component" % text,
            "fix": "give the resolved path without '..', e.g. %s" % suggestion,
        })
    return problems


def _suggest_path(text):
    parts = []
    for part in text.split("/"):
        if part == "..":
            if parts and parts[-1] not in ("", ".."):
                parts.pop()
            continue
        part = re.sub(r"\s+", "_", part)
        part = "".join(ch for ch in part if ord(ch) < 128)
        parts.append(part)
    suggestion = "/".join(parts)
    suggestion = re.sub(r"/+", "/", suggestion)
    if not suggestion.startswith("/"):
        suggestion = "/srv/models/" + suggestion.lstrip("./")
    return suggestion.rstrip("/") or "/srv/models/model"


def _unescape(field):
    return _MOUNTINFO_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text):
    """Mounts from /proc/<pid>/mountinfo text: list of {mount_point, fs_type, source, options}.

    Format (proc(5)): id parent major:minor root mount_point options [optional...] - fstype source super_options.
    """
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if sep < 6 or len(fields) < sep + 3:
            continue
        mounts.append({
            "mount_point": _unescape(fields[4]),
            "options": fields[5],
            "fs_type": fields[sep + 1],
            "source": _unescape(fields[sep + 2]),
        })
    return mounts


def read_mountinfo(path=MOUNTINFO):
    with open(path, "r") as handle:
        return handle.read()


def _within(path, mount_point):
    if mount_point == "/":
        return path.startswith("/")
    return path == mount_point or path.startswith(mount_point.rstrip("/") + "/")


def mount_for_path(path, mountinfo_text):
    """The mount holding `path`: the longest mount point that is a path-component prefix.

    Later mounts over the same point shadow earlier ones, so the last of equal length wins.
    Returns None when nothing matches (no root mount in the text).
    """
    target = os.path.normpath(str(path))
    best = None
    for mount in parse_mountinfo(mountinfo_text):
        if _within(target, mount["mount_point"]):
            if best is None or len(mount["mount_point"]) >= len(best["mount_point"]):
                best = mount
    return best


def existing_ancestor(path):
    """The path itself if it exists, else its nearest existing parent (for a path to be created)."""
    current = os.path.abspath(str(path))
    while not os.path.exists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def fs_type_for_path(path, mountinfo_text=None, mountinfo_path=MOUNTINFO, resolve=True):
    """File-system type holding `path` (or the parent it would be created in), or None.

    With resolve, symlinks in the existing part are followed first, since the data lands
    where they point.
    """
    if mountinfo_text is None:
        mountinfo_text = read_mountinfo(mountinfo_path)
    target = str(path)
    if resolve:
        target = os.path.realpath(existing_ancestor(target))
    mount = mount_for_path(target, mountinfo_text)
    return mount["fs_type"] if mount else None


def check_fs_type(fs_type, allowed=DEFAULT_ALLOWED_FS_TYPES):
    """Return (ok, reason) for a file-system type against the allowed list and the refused table."""
    if fs_type is None:
        return False, "the file-system type could not be determined"
    allowed = [str(t).lower() for t in (allowed or DEFAULT_ALLOWED_FS_TYPES)]
    name = str(fs_type).lower()
    if name in REFUSED_FS_TYPES:
        return False, "%s is refused for model storage: %s" % (name, REFUSED_FS_TYPES[name])
    if name not in allowed:
        return False, "%s is not an allowed model file system (allowed: %s)" % (name, ", ".join(allowed))
    return True, "%s is an allowed model file system" % name


def free_bytes(path):
    """Bytes available to unprivileged writers on the file system of `path` (or its nearest
    existing parent): f_bavail x f_frsize from statvfs."""
    stats = os.statvfs(existing_ancestor(path))
    return stats.f_bavail * stats.f_frsize


def total_bytes(path):
    stats = os.statvfs(existing_ancestor(path))
    return stats.f_blocks * stats.f_frsize


def used_bytes_under(path):
    """Bytes already stored at `path`: a file's size, a directory's file sizes summed (links not
    followed), 0 if it does not exist."""
    path = str(path)
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                try:
                    total += os.path.getsize(full)
                except OSError:
                    pass
    return total


def disk_needed(model_bytes, existing_bytes=0, margin_fraction=0.1, margin_min_bytes=1024 ** 3):
    """Bytes still to be written plus a margin: max(margin_fraction x model, margin_min)."""
    missing = max(0, int(model_bytes) - int(existing_bytes or 0))
    margin = max(int(model_bytes * float(margin_fraction)), int(margin_min_bytes))
    return missing + margin, missing, margin
