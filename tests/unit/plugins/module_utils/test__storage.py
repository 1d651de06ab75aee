# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os

import pytest

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _storage as s

MOUNTINFO = """\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
30 22 259:3 / /srv rw,relatime shared:2 - xfs /dev/nvme1n1 rw,attr2,inode64
31 30 8:17 / /srv/models rw,relatime shared:3 - ext4 /dev/sdb1 rw
32 30 8:33 / /srv/models-ntfs rw,relatime shared:4 - ntfs3 /dev/sdc1 rw,uid=0
33 22 8:49 / /mnt/usb\\040stick rw,relatime shared:5 - vfat /dev/sdd1 rw,fmask=0022
34 22 8:65 / /mnt/win rw,relatime shared:6 - fuseblk /dev/sde1 rw,user_id=0
35 31 0:50 / /srv/models/scratch rw shared:7 master:1 - tmpfs tmpfs rw,size=1g
36 31 8:81 / /srv/models/scratch rw shared:8 - exfat /dev/sdf1 rw
"""


@pytest.mark.parametrize("path", [
    "/srv/models/deepseek-r1-distill-qwen-7b",
    "/srv/models/DeepSeek-R1_Distill.Qwen-7B/rev-2",
    "/opt/llm/smollm2.gguf",
])
def test_good_model_paths(path):
    assert s.check_model_path(path) == []


@pytest.mark.parametrize("path, fragment, suggestion", [
    ("models/qwen", "not an absolute path", "/srv/models/models/qwen"),
    ("/srv/my models/qwen", "whitespace", "/srv/my_models/qwen"),
    ("/srv/models/模型", "non-ASCII", "/srv/models"),
    ("/srv/models/../etc/qwen", "'..' component", "/srv/etc/qwen"),
    ("/srv/models/qwen\t7b", "whitespace", "/srv/models/qwen_7b"),
    ("", "empty", "/srv/models/<name>"),
])
def test_bad_model_paths_name_the_problem_and_a_fix(path, fragment, suggestion):
    problems = s.check_model_path(path)
    assert any(fragment in p["problem"] for p in problems)
    assert any(suggestion in p["fix"] for p in problems)


def test_every_rule_is_reported_at_once():
    problems = s.check_model_path("models/../mes modèles")
    assert len(problems) == 4


def test_parse_mountinfo_unescapes_and_reads_after_separator():
    mounts = s.parse_mountinfo(MOUNTINFO)
    usb = [m for m in mounts if m["fs_type"] == "vfat"][0]
    assert usb["mount_point"] == "/mnt/usb stick" and usb["source"] == "/dev/sdd1"
    tmpfs = [m for m in mounts if m["fs_type"] == "tmpfs"][0]       # optional fields before '-'
    assert tmpfs["mount_point"] == "/srv/models/scratch"


@pytest.mark.parametrize("path, fs_type", [
    ("/srv/models/qwen", "ext4"),
    ("/srv/models", "ext4"),
    ("/srv/models-ntfs/qwen", "ntfs3"),       # a sibling with a common string prefix, not a parent
    ("/srv/model", "xfs"),
    ("/srv", "xfs"),
    ("/home/user", "ext4"),
    ("/mnt/usb stick/m", "vfat"),
    ("/mnt/win/models", "fuseblk"),
    ("/srv/models/scratch/x", "exfat"),       # the later mount over the same point wins
    ("/srv/models/./qwen/../x", "ext4"),
])
def test_fs_type_for_path_longest_prefix(path, fs_type):
    assert s.fs_type_for_path(path, MOUNTINFO, resolve=False) == fs_type


def test_fs_type_for_path_without_root_mount():
    assert s.fs_type_for_path("/x", "23 1 0:21 / /proc rw - proc proc rw\n", resolve=False) is None


def test_fs_type_resolves_symlinks(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    info = "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n2 1 8:2 / %s rw - xfs /dev/sdb1 rw\n" % real
    assert s.fs_type_for_path(str(link / "model"), info) == "xfs"
    assert s.fs_type_for_path(str(link / "model"), info, resolve=False) == "ext4"


def test_fs_type_reads_the_mountinfo_file(tmp_path):
    path = tmp_path / "mountinfo"
    path.write_text(MOUNTINFO)
    assert s.fs_type_for_path("/srv/models/x", mountinfo_path=str(path), resolve=False) == "ext4"


@pytest.mark.parametrize("fs_type, allowed, ok, fragment", [
    ("ext4", None, True, "allowed"),
    ("xfs", ["ext4", "xfs"], True, "allowed"),
    ("btrfs", None, False, "not an allowed"),
    ("btrfs", ["ext4", "xfs", "btrfs"], True, "allowed"),
    ("ntfs", None, False, "no POSIX owners"),
    ("ntfs3", ["ntfs3"], False, "refused"),          # refused even when listed
    ("fuseblk", None, False, "FUSE"),
    ("vfat", None, False, "4 GiB"),
    ("msdos", None, False, "4 GiB"),
    ("exfat", None, False, "exFAT"),
    (None, None, False, "could not be determined"),
])
def test_check_fs_type(fs_type, allowed, ok, fragment):
    result, reason = s.check_fs_type(fs_type, allowed)
    assert result is ok and fragment in reason


def test_free_and_used_bytes(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "a.safetensors").write_bytes(b"x" * 1000)
    (tmp_path / "model" / "sub").mkdir()
    (tmp_path / "model" / "sub" / "b").write_bytes(b"y" * 24)
    os.symlink(str(tmp_path / "model" / "a.safetensors"), str(tmp_path / "model" / "link"))
    assert s.used_bytes_under(str(tmp_path / "model")) == 1024
    assert s.used_bytes_under(str(tmp_path / "model" / "a.safetensors")) == 1000
    assert s.used_bytes_under(str(tmp_path / "absent")) == 0
    assert s.existing_ancestor(str(tmp_path / "not" / "yet")) == str(tmp_path)


def test_free_bytes_reads_the_nearest_existing_parent(tmp_path, monkeypatch):
    # A fixed statvfs: the real file system's free space moves while other processes write.
    asked = []
    fixed = os.statvfs_result((4096, 4096, 1000, 900, 700, 0, 0, 0, 0, 255))

    def fake_statvfs(path):
        asked.append(path)
        return fixed

    monkeypatch.setattr(s.os, "statvfs", fake_statvfs)
    assert s.free_bytes(str(tmp_path / "not" / "yet")) == 700 * 4096
    assert s.total_bytes(str(tmp_path / "not" / "yet")) == 1000 * 4096
    assert asked == [str(tmp_path), str(tmp_path)]


@pytest.mark.parametrize("model, existing, fraction, minimum, need", [
    (100 * 2 ** 30, 0, 0.1, 2 ** 30, 110 * 2 ** 30),          # 10% margin
    (100 * 2 ** 20, 0, 0.1, 2 ** 30, 100 * 2 ** 20 + 2 ** 30),  # small model: 1 GiB floor
    (100 * 2 ** 30, 60 * 2 ** 30, 0.1, 2 ** 30, 50 * 2 ** 30),  # 40 GiB left to fetch + 10 GiB margin
    (100 * 2 ** 30, 120 * 2 ** 30, 0.0, 0, 0),
])
def test_disk_needed(model, existing, fraction, minimum, need):
    assert s.disk_needed(model, existing, fraction, minimum)[0] == need
