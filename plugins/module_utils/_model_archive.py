# -*- coding: utf-8 -*-
# Copyright: contributors to the llmops.gpu_stack collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""zstd archives of model revisions: the tar | zstd commands, archiving a revision (tested
before the revision is removed) and restoring one.

Private to this collection (the leading underscore): the API may change without notice.
Standard library only; Python 3.9 or later on the managed host.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from ansible_collections.llmops.gpu_stack.plugins.module_utils._fsutil import fsync_dir
from ansible_collections.llmops.gpu_stack.plugins.module_utils._model_revisions import _listdir
from ansible_collections.llmops.gpu_stack.plugins.module_utils._model_storage import StorageError


# --- archives -----------------------------------------------------------------------------

def tar_zstd_create_cmd(revisions_dir, revision, dest, level, threads=0):
    """tar piping through zstd; multi-threaded (-T0 = one thread per core)."""
    return ["tar", "--create", "--file", dest, "--use-compress-program",
            "zstd -q -T%d -%d" % (threads, level), "--directory", revisions_dir, "--", revision]


def tar_zstd_extract_cmd(archive, dest_dir):
    return ["tar", "--extract", "--file", archive, "--use-compress-program", "zstd -q -d",
            "--directory", dest_dir, "--no-same-owner", "--no-overwrite-dir"]


def zstd_test_cmd(archive):
    return ["zstd", "-q", "-t", archive]


def archive_revision(layout, revision, level, run):
    """Compress revisions/<revision> into archive/<revision>.tar.zst (temporary name, integrity
    test, rename, mode 0600), then remove the directory. `run(argv)` returns (rc, out, err).
    Returns True. A previous archive of the same revision is tested and reused."""
    final = layout.archive(revision)
    if not os.path.isdir(layout.archive_dir):
        os.mkdir(layout.archive_dir, 0o700)
        os.chmod(layout.archive_dir, 0o700)
    if not os.path.exists(final):
        tmp = os.path.join(layout.archive_dir, ".%s.tar.zst.tmp" % revision)
        if os.path.exists(tmp):
            os.unlink(tmp)
        rc, _out, err = run(tar_zstd_create_cmd(layout.revisions_dir, revision, tmp, level))
        if rc != 0:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise StorageError("Archiving %s failed: %s" % (layout.revision(revision), err.strip()))
        _test_archive(tmp, run)
        os.chmod(tmp, 0o600)
        os.replace(tmp, final)
        fsync_dir(layout.archive_dir)
    else:
        _test_archive(final, run)
    shutil.rmtree(layout.revision(revision))
    return True


def _test_archive(path, run):
    rc, _out, err = run(zstd_test_cmd(path))
    if rc != 0:
        raise StorageError(
            "The archive %s does not pass `zstd -t` (%s); the revision is kept. Remove the archive "
            "and run again." % (path, err.strip()))


def restore_archive(layout, revision, run):
    """Extract archive/<revision>.tar.zst into .incoming/<name>/<revision> (through a temporary
    directory and a rename). The caller verifies it against the revision's manifest."""
    archive = layout.archive(revision)
    if not os.path.isfile(archive):
        raise StorageError("%s does not exist; nothing to restore." % archive)
    os.makedirs(layout.incoming_dir, mode=0o700, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".restore-%s." % revision, dir=layout.incoming_dir)
    try:
        rc, _out, err = run(tar_zstd_extract_cmd(archive, staging))
        if rc != 0:
            raise StorageError("Extracting %s failed: %s. The archive may be damaged." % (archive, err.strip()))
        extracted = os.path.join(staging, revision)
        if not os.path.isdir(extracted) or _listdir(staging) != [revision]:
            raise StorageError("%s does not hold exactly the directory %s/." % (archive, revision))
        target = layout.incoming(revision)
        if os.path.lexists(target):
            shutil.rmtree(target)
        os.rename(extracted, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True
