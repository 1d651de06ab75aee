"""The revision lifecycle on the stand-in host, after converge and side_effect.

tiny-chat went r1 -> r2 -> r3 -> r1 (restored from its archive), tiny-gguf v1 -> v2 -> v3
with one previous revision kept and zstd archives for the rest.
"""
import hashlib
import json

import pytest

ROOT = "/srv/models"
SERVICE = "llmserve"
JOURNAL_UNITS = ("model-storage-http.service",)


def expected_fstype(host):
    # The opposite of molecule/model_storage: xfs on Debian 12, ext4 on Debian 13.
    return "ext4" if host.system_info.release.startswith("13") else "xfs"


def test_mounted_by_uuid_with_noatime(host, check_mounted_by_uuid):
    check_mounted_by_uuid(host, ROOT, expected_fstype(host))


@pytest.mark.parametrize("path,owner,group,mode", [
    (ROOT, "root", SERVICE, 0o750),
    (ROOT + "/.incoming", "root", "root", 0o700),
    (ROOT + "/tiny-chat", "root", SERVICE, 0o750),
    (ROOT + "/tiny-chat/revisions", "root", SERVICE, 0o750),
    (ROOT + "/tiny-chat/revisions/r1", "root", SERVICE, 0o750),
    (ROOT + "/tiny-chat/revisions/r1/tokenizer", "root", SERVICE, 0o750),
    (ROOT + "/tiny-chat/revisions/r1/model.safetensors", "root", SERVICE, 0o640),
    (ROOT + "/tiny-chat/revisions/r1/tokenizer/tokenizer.json", "root", SERVICE, 0o640),
    (ROOT + "/tiny-chat/manifests/r1.json", "root", SERVICE, 0o640),
    (ROOT + "/tiny-chat/history.json", "root", SERVICE, 0o640),
    (ROOT + "/tiny-chat/archive", "root", "root", 0o700),
    (ROOT + "/tiny-chat/archive/r2.tar.zst", "root", "root", 0o600),
    (ROOT + "/tiny-gguf/revisions/v3/big.bin", "root", SERVICE, 0o640),
    ("/var/cache/gpu_stack/model_storage", "root", "root", 0o700),
])
def test_owners_and_modes(host, path, owner, group, mode):
    f = host.file(path)
    assert f.exists, path
    assert (f.user, f.group, f.mode) == (owner, group, mode)


@pytest.mark.parametrize("model,current,kept,archived", [
    ("tiny-chat", "r1", ["r1", "r3"], ["r1", "r2"]),
    ("tiny-gguf", "v3", ["v2", "v3"], ["v1"]),
])
def test_current_retention_and_archives(host, model, current, kept, archived):
    base = "%s/%s" % (ROOT, model)
    link = host.file(base + "/current")
    assert link.is_symlink and link.linked_to == "%s/revisions/%s" % (base, current)
    assert host.check_output("readlink %s/current", base) == "revisions/" + current
    assert sorted(host.file(base + "/revisions").listdir()) == kept
    assert sorted(name[:-len(".tar.zst")] for name in host.file(base + "/archive").listdir()) == archived


def test_history_records_the_activations(host):
    history = json.loads(host.file(ROOT + "/tiny-chat/history.json").content_string)
    assert history["activations"] == ["r1", "r2", "r3", "r1"]


@pytest.mark.parametrize("model,revision", [("tiny-chat", "r1"), ("tiny-chat", "r3"), ("tiny-gguf", "v3")])
def test_files_match_their_manifest(host, model, revision):
    manifest = json.loads(host.file("%s/%s/manifests/%s.json" % (ROOT, model, revision)).content_string)
    base = "%s/%s/revisions/%s" % (ROOT, model, revision)
    listed = host.check_output("cd %s && find . -type f -printf '%%P\\n' | sort", base).splitlines()
    assert listed == sorted(manifest["files"])
    for rel, item in manifest["files"].items():
        out = host.check_output("sha256sum %s/%s", base, rel).split()[0]
        assert out == item["sha256"]
        assert host.file("%s/%s" % (base, rel)).size == item["size"]


def test_the_served_bytes_are_the_published_ones(host):
    # tiny-gguf v3's model.gguf is the v2 content pinned in the scenario.
    out = host.check_output("sha256sum %s/tiny-gguf/current/model.gguf", ROOT).split()[0]
    assert out == "316886cc7d0c0d7e483546f1bf9be5e8da51f88c6488ad9657b8cf174b47aa4a"


def test_archive_is_a_valid_zstd_tar_of_the_revision(host):
    archive = ROOT + "/tiny-chat/archive/r2.tar.zst"
    assert host.run("zstd -q -t %s", archive).rc == 0
    members = host.check_output("tar --use-compress-program 'zstd -d' -tf %s", archive).splitlines()
    assert "r2/model.safetensors" in members and "r2/tokenizer/tokenizer.json" in members


def test_no_leftovers(host):
    leftovers = host.check_output(
        "find %s -name '*.part' -o -name '.current.*' -o -name '*.tmp' -o -name '.restore-*'", ROOT)
    assert leftovers == ""
    assert host.file(ROOT + "/.incoming/tiny-chat").listdir() == []
    assert host.file(ROOT + "/.incoming/tiny-gguf").listdir() == []


def test_current_revision_hashes_equal_the_control_node_copy(host):
    # r1 came back from its archive: its bytes are those the generator wrote (seed r1).
    data = hashlib.shake_256(b"r1:model.safetensors").digest(2097152)
    out = host.check_output("sha256sum %s/tiny-chat/current/model.safetensors", ROOT).split()[0]
    assert out == hashlib.sha256(data).hexdigest()
