# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_fsutil: atomic writes, the symlink swap, directory fsync and sizes for messages."""

from __future__ import annotations

import os

import pytest

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _fsutil as fsutil


def test_write_creates_sets_mode_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    assert fsutil.write_text_atomic(str(path), "one\n", mode=0o640) is True
    assert path.read_text() == "one\n"
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    assert os.listdir(str(tmp_path)) == ["a.json"]


def test_same_text_is_not_written_again_unless_asked(tmp_path):
    path = tmp_path / "a.txt"
    fsutil.write_text_atomic(str(path), "x\n")
    inode = path.stat().st_ino
    assert fsutil.write_text_atomic(str(path), "x\n") is False
    assert path.stat().st_ino == inode
    assert fsutil.write_text_atomic(str(path), "x\n", only_if_changed=False) is True
    assert path.stat().st_ino != inode   # a new file renamed over the old one


def test_owner_is_set_when_given(tmp_path):
    path = tmp_path / "owned"
    fsutil.write_text_atomic(str(path), "x", uid=os.getuid(), gid=os.getgid())
    assert (path.stat().st_uid, path.stat().st_gid) == (os.getuid(), os.getgid())


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "keep"
    path.write_text("old")

    def refuse(*_args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(fsutil.os, "replace", refuse)
    with pytest.raises(OSError):
        fsutil.write_text_atomic(str(path), "new")
    assert path.read_text() == "old"
    assert os.listdir(str(tmp_path)) == ["keep"]


def test_missing_directory_raises(tmp_path):
    with pytest.raises(OSError):
        fsutil.write_text_atomic(str(tmp_path / "absent" / "f"), "x")


def test_read_text_of_a_missing_file_is_none(tmp_path):
    assert fsutil.read_text(str(tmp_path / "none")) is None


def test_swap_symlink_replaces_the_link_in_one_rename(tmp_path):
    (tmp_path / "r1").mkdir()
    (tmp_path / "r2").mkdir()
    link = tmp_path / "current"
    fsutil.swap_symlink(str(link), "r1")
    assert os.readlink(str(link)) == "r1"
    fsutil.swap_symlink(str(link), "r2")
    assert os.readlink(str(link)) == "r2"
    assert sorted(os.listdir(str(tmp_path))) == ["current", "r1", "r2"]


def test_a_failed_swap_keeps_the_old_link_and_no_temporary(tmp_path, monkeypatch):
    link = tmp_path / "current"
    os.symlink("r1", str(link))

    def refuse(*_args):
        raise OSError(30, "Read-only file system")
    monkeypatch.setattr(fsutil.os, "replace", refuse)
    with pytest.raises(OSError):
        fsutil.swap_symlink(str(link), "r2")
    assert os.readlink(str(link)) == "r1"
    assert os.listdir(str(tmp_path)) == ["current"]


@pytest.mark.parametrize("value, text", [
    (None, "unknown"), (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
    (85899345920, "80.0 GiB"), (3 * 1024 ** 4, "3.0 TiB"), (5000 * 1024 ** 4, "5000.0 TiB"), (-2048, "-2.0 KiB"),
])
def test_format_bytes(value, text):
    assert fsutil.format_bytes(value) == text
