# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""File-system helpers the modules and the host scripts share: atomic writes, a symlink
swapped in one rename, directory fsync, and sizes for messages.

A reader of a file written here sees the old content or the new, never a half-written file;
after a crash the rename is on disk (the directory is fsynced). Runs on managed hosts:
Python 3.9+, standard library only.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

KIB = 1024
MIB = 1024 ** 2
GIB = 1024 ** 3
TIB = 1024 ** 4


def fsync_dir(path):
    """Flush a directory's entries (a rename into it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _removed_on_failure(tmp):
    """Remove the temporary file ``tmp`` when the block fails, and re-raise."""
    try:
        yield
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def read_text(path):
    """The file's text (UTF-8), or None when there is no such file."""
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_text_atomic(path, text, mode=0o644, uid=None, gid=None, only_if_changed=True):
    """Write ``text`` to ``path`` through a temporary file in the same directory, fsync, set
    owner (when uid/gid are given) and mode, rename, fsync the directory. With
    only_if_changed (the default) a file that already holds exactly that text is left alone.
    Returns True if the file was written. On any failure the temporary file is removed and
    ``path`` is unchanged."""
    if only_if_changed and read_text(path) == text:
        return False
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
    with _removed_on_failure(tmp):
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if uid is not None or gid is not None:
            os.chown(tmp, -1 if uid is None else uid, -1 if gid is None else gid)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    fsync_dir(directory)
    return True


def swap_symlink(path, target):
    """Point the symlink ``path`` at ``target`` with one rename(2) of a new link over it, so a
    reader resolves the old target or the new one, never neither; then fsync the directory."""
    path = os.path.normpath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, ".%s.%d.swap" % (os.path.basename(path), os.getpid()))
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    with _removed_on_failure(tmp):
        os.replace(tmp, path)
    fsync_dir(directory)


def format_bytes(value):
    """Human-readable binary size: 1536 -> '1.5 KiB', 85899345920 -> '80.0 GiB', None -> 'unknown'."""
    if value is None:
        return "unknown"
    value = float(value)
    for unit, size in (("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if abs(value) >= size:
            return "%.1f %s" % (value / size, unit)
    return "%d B" % value
