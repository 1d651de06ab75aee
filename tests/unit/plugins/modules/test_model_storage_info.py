# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""model_storage_info: every input problem reported at once with field, value and fix; the
device's signature, mounts and the file-system verdict read from (patched) system state."""

from __future__ import annotations

import os

import pytest

from ansible.module_utils import basic

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _block_devices as blockdev
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_revisions as revs
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _storage
from ansible_collections.llmops.gpu_stack.plugins.modules import model_storage_info

MOUNTINFO = (
    "22 1 0:21 / / rw - ext4 /dev/vda1 rw\n"
    "36 22 7:0 / /srv/models rw,noatime - ext4 /dev/loop0 rw\n"
    "37 22 7:2 / /mnt/ntfs rw - fuseblk /dev/loop2 rw\n"
)


@pytest.fixture
def host(monkeypatch, tmp_path):
    """Patched host: mountinfo, block devices, blkid output and the fs type of any path."""
    state = {"mountinfo": MOUNTINFO, "block": {"/dev/loop0", "/dev/loop1", "/dev/loop2", "/dev/loop3"},
             "blkid": {"/dev/loop0": "TYPE=ext4\nUUID=u-0\nUSAGE=filesystem\n",
                       "/dev/loop1": "TYPE=vfat\nUUID=AB-CD\nUSAGE=filesystem\n",
                       "/dev/loop3": ""},
             "fs": {}, "commands": []}
    monkeypatch.setattr(_storage, "read_mountinfo", lambda path=_storage.MOUNTINFO: state["mountinfo"])
    monkeypatch.setattr(blockdev, "is_block_device", lambda path: path in state["block"])
    monkeypatch.setattr(model_storage_info.os.path, "exists",
                        lambda path, real=os.path.exists: path in state["block"] or real(path))

    def fs_type(path, mountinfo_text=None, **kwargs):
        for prefix, kind in sorted(state["fs"].items(), key=lambda item: -len(item[0])):
            if path.startswith(prefix):
                return kind
        return "ext4"

    monkeypatch.setattr(_storage, "fs_type_for_path", fs_type)
    monkeypatch.setattr(_storage, "free_bytes", lambda path: 50 * 2 ** 30)
    monkeypatch.setattr(_storage, "total_bytes", lambda path: 100 * 2 ** 30)

    def run_command(self, argv, **kwargs):
        state["commands"].append(argv)
        out = state["blkid"].get(argv[-1], "")
        return (0 if out else 2), out, ""

    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    state["tmp"] = tmp_path
    return state


def run_ok(run_module, module_args, **kwargs):
    """The module reports problems and never fails on them."""
    outcome, result = run_module(model_storage_info.main, module_args, **kwargs)
    assert outcome == "exit", result
    return result


def args(tmp_path, **extra):
    base = {"root": str(tmp_path / "models"), "mount": str(tmp_path / "models"), "variable_prefix": "model_storage_"}
    base.update(extra)
    return base


def test_existing_ext4_mount_passes(run_module, host):
    result = run_ok(run_module, args(host["tmp"]))
    assert result["problems"] == [] and result["changed"] is False
    assert result["storage"]["fs_type"] == "ext4" and result["storage"]["ok"] and result["storage"]["checked"]
    assert host["commands"] == []


def test_ntfs_mount_is_refused_with_the_reason(run_module, host):
    host["fs"]["/mnt/ntfs"] = "fuseblk"
    result = run_ok(run_module, {"root": "/mnt/ntfs", "mount": "/mnt/ntfs",
                                 "variable_prefix": "model_storage_"})
    assert len(result["problems"]) == 1
    line = result["messages"][0]
    assert line.startswith("model_storage_root: the file system holding /mnt/ntfs: fuseblk is refused")
    assert "FUSE" in line


def test_overlay_is_not_allowed_unless_listed(run_module, host):
    host["fs"][str(host["tmp"])] = "overlay"
    result = run_ok(run_module, args(host["tmp"]))
    assert "overlay is not an allowed model file system" in result["messages"][0]
    result = run_ok(run_module, args(host["tmp"], allowed_fs_types=["ext4", "xfs", "overlay"]))
    assert result["problems"] == []


def test_paths_names_and_sources_all_at_once(run_module, host):
    models = [{"name": "my model", "revision": "r1", "source": {"type": "controller", "path": "/x"}},
              {"name": "ok", "revision": "r1", "source": {"type": "url", "files": [{"url": "https://h/x"}]}}]
    result = run_ok(run_module, {"root": "/srv/mödels", "mount": "relative/path",
                                 "models": models, "variable_prefix": "model_storage_"})
    fields = [p["field"] for p in result["problems"]]
    assert "mount" in fields and "root" in fields
    assert "models[0].name" in fields and "models[1].source.files[0].sha256" in fields
    assert all(line.startswith("model_storage_") for line in result["messages"])
    assert result["models"] == {}


def test_a_vfat_device_is_not_formatted_without_force(run_module, host):
    result = run_ok(run_module, args(host["tmp"], device="/dev/loop1", check_storage=False))
    assert result["device"]["blkid"]["TYPE"] == "vfat"
    assert result["messages"] == [
        "model_storage_device: /dev/loop1 already holds a vfat file system; formatting it as ext4 would destroy it "
        "(fix: point model_storage_device at an empty device, or set model_storage_force_format: true to overwrite it)"]
    assert host["commands"] == [["blkid", "-p", "-o", "export", "/dev/loop1"]]
    forced = run_ok(run_module, args(host["tmp"], device="/dev/loop1", force_format=True,
                                                         check_storage=False))
    assert forced["problems"] == []


def test_an_empty_device_passes_and_storage_waits_for_the_mount(run_module, host):
    host["fs"][str(host["tmp"])] = "overlay"
    result = run_ok(run_module, args(host["tmp"], device="/dev/loop3", check_storage=False))
    assert result["problems"] == [] and result["storage"]["checked"] is False


def test_the_device_mounted_here_gets_its_storage_checked(run_module, host):
    result = run_ok(run_module, {"root": "/srv/models", "mount": "/srv/models",
                                 "device": "/dev/loop0", "check_storage": False})
    assert result["device"]["mounted_at"] == ["/srv/models"]
    assert result["storage"]["checked"] is True and result["problems"] == []


def test_a_device_mounted_elsewhere_or_a_busy_mount_point(run_module, host):
    result = run_ok(run_module, {"root": "/data/models", "mount": "/data/models",
                                 "device": "/dev/loop0", "check_storage": False})
    assert any("is mounted at /srv/models" in p["problem"] for p in result["problems"])
    result = run_ok(run_module, {"root": "/srv/models", "mount": "/srv/models",
                                 "device": "/dev/loop3", "check_storage": False})
    assert any("already has /dev/loop0 mounted on it" in p["problem"] for p in result["problems"])


def test_missing_or_odd_devices(run_module, host):
    for device, text in (("/dev/nope", "does not exist"), ("/etc/passwd", "not a device path"),
                         ("/dev/loop9", "does not exist")):
        result = run_ok(run_module, args(host["tmp"], device=device, check_storage=False))
        assert text in result["problems"][0]["problem"], device


def test_root_outside_the_new_file_system(run_module, host):
    result = run_ok(run_module, {"root": "/srv/other", "mount": "/srv/new",
                                 "device": "/dev/loop3", "check_storage": False})
    assert [p["field"] for p in result["problems"]] == ["root"]


def test_luks_needs_device_mapper(run_module, host, monkeypatch):
    monkeypatch.setattr(blockdev, "DM_CONTROL", str(host["tmp"] / "no-such-control"))
    result = run_ok(run_module, args(host["tmp"], device="/dev/loop3", luks=True,
                                                         check_storage=False))
    assert [p["field"] for p in result["problems"]] == ["luks"]
    assert "device-mapper" in result["problems"][0]["problem"]
    assert result["device"]["dm_available"] is False


def test_luks_over_a_file_system_is_refused(run_module, host, monkeypatch):
    monkeypatch.setattr(blockdev, "DM_CONTROL", __file__)
    result = run_ok(run_module, args(host["tmp"], device="/dev/loop0", luks=True,
                                                         mount="/srv/models", root="/srv/models", check_storage=False))
    assert any("formatting it as LUKS2 would destroy it" in p["problem"] for p in result["problems"])


def test_model_state_is_reported(run_module, host):
    root = host["tmp"] / "models"
    lay = revs.Layout(str(root), "tiny")
    os.makedirs(lay.revision("r1"))
    os.makedirs(lay.manifests_dir)
    (root / "tiny" / "manifests" / "r1.json").write_text("{}")
    os.symlink("revisions/r1", lay.current)
    models = [{"name": "tiny", "revision": "r1", "source": {"type": "controller", "path": "/x"}},
              {"name": "fresh", "revision": "a", "source": {"type": "controller", "path": "/y"}}]
    result = run_ok(run_module, args(host["tmp"], models=models))
    assert result["models"]["tiny"]["current"] == "r1"
    assert result["models"]["tiny"]["published"] is True
    assert result["models"]["fresh"] == {"current": None, "revisions": [], "manifests": [], "archives": [],
                                         "history": [], "incoming": {}, "published": False, "archived": False}


def test_a_current_that_is_a_directory_is_a_problem(run_module, host):
    root = host["tmp"] / "models"
    os.makedirs(str(root / "tiny" / "current"))
    models = [{"name": "tiny", "revision": "r1", "source": {"type": "controller", "path": "/x"}}]
    result = run_ok(run_module, args(host["tmp"], models=models))
    assert result["problems"][0]["field"] == "models[0].name"
    assert "not a symlink" in result["problems"][0]["problem"]


def test_check_mode_reads_the_same(run_module, host):
    result = run_ok(run_module, args(host["tmp"]), check_mode=True)
    assert result["changed"] is False and result["problems"] == []


def test_a_published_revision_without_manifest_cannot_be_verified(run_module, host):
    root = host["tmp"] / "models"
    os.makedirs(str(root / "tiny" / "revisions" / "r1"))
    models = [{"name": "tiny", "revision": "r1", "source": {"type": "controller", "path": "/x"}}]
    result = run_ok(run_module, args(host["tmp"], models=models))
    assert [p["field"] for p in result["problems"]] == ["models[0].revision"]
    assert "manifest" in result["problems"][0]["problem"] and "remove" in result["problems"][0]["fix"]
