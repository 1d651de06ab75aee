"""The model_storage role's real effect on the stand-in host after converge (tiny-chat r1 from
the control node, tiny-gguf v1 over HTTP) and the refusals of side_effect.yml."""
import hashlib
import json

import pytest

ROOT = "/srv/models"
SERVICE = "llmserve"
JOURNAL_UNITS = ("model-storage-http.service",)


def expected_fstype(host):
    return "xfs" if host.system_info.release.startswith("13") else "ext4"


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
    (ROOT + "/tiny-gguf/revisions/v1/model.gguf", "root", SERVICE, 0o640),
    ("/var/cache/gpu_stack/model_storage", "root", "root", 0o700),
])
def test_owners_and_modes(host, path, owner, group, mode):
    f = host.file(path)
    assert f.exists, path
    assert (f.user, f.group, f.mode) == (owner, group, mode)


@pytest.mark.parametrize("model,current", [("tiny-chat", "r1"), ("tiny-gguf", "v1")])
def test_current_points_at_the_revision(host, model, current):
    base = "%s/%s" % (ROOT, model)
    link = host.file(base + "/current")
    assert link.is_symlink and link.linked_to == "%s/revisions/%s" % (base, current)
    assert host.check_output("readlink %s/current", base) == "revisions/" + current
    assert host.file(base + "/revisions").listdir() == [current]
    history = json.loads(host.file(base + "/history.json").content_string)
    assert history["activations"] == [current]


@pytest.mark.parametrize("model,revision", [("tiny-chat", "r1"), ("tiny-gguf", "v1")])
def test_files_match_their_manifest(host, model, revision):
    manifest = json.loads(host.file("%s/%s/manifests/%s.json" % (ROOT, model, revision)).content_string)
    base = "%s/%s/revisions/%s" % (ROOT, model, revision)
    listed = host.check_output("cd %s && find . -type f -printf '%%P\\n' | sort", base).splitlines()
    assert listed == sorted(manifest["files"])
    for rel, item in manifest["files"].items():
        out = host.check_output("sha256sum %s/%s", base, rel).split()[0]
        assert out == item["sha256"]
        assert host.file("%s/%s" % (base, rel)).size == item["size"]


def test_the_served_bytes_are_the_pinned_ones(host):
    out = host.check_output("sha256sum %s/tiny-gguf/current/model.gguf", ROOT).split()[0]
    assert out == "6e4196f59955f935a5828aa98c1d97a0b534d286bd7d4d7c094f0c1750f2e9ee"
    data = hashlib.shake_256(b"r1:model.safetensors").digest(2097152)
    out = host.check_output("sha256sum %s/tiny-chat/current/model.safetensors", ROOT).split()[0]
    assert out == hashlib.sha256(data).hexdigest()


def test_service_account_reads_but_cannot_write(host):
    as_service = "runuser -u %s -- " % SERVICE
    assert host.run(as_service + "cat %s/tiny-chat/current/config.json", ROOT).rc == 0
    for command in (
        "touch %s/tiny-chat/current/new-file" % ROOT,
        "sh -c 'echo x >> %s/tiny-chat/current/config.json'" % ROOT,
        "rm -f %s/tiny-chat/current/config.json" % ROOT,
        "ln -sfn revisions/r3 %s/tiny-chat/current" % ROOT,
        "mkdir %s/tiny-chat/revisions/evil" % ROOT,
    ):
        assert host.run(as_service + command).rc != 0, command
    assert host.file(ROOT + "/tiny-chat/current/config.json").size == 700


@pytest.mark.parametrize("path", [ROOT + "/.incoming", "/var/cache/gpu_stack/model_storage"])
def test_service_account_cannot_see_downloads_or_caches(host, path):
    assert host.run("runuser -u %s -- ls %s", SERVICE, path).rc != 0


def test_others_cannot_enter_the_store(host):
    assert host.run("runuser -u nobody -- ls %s", ROOT).rc != 0


def test_no_leftovers(host):
    leftovers = host.check_output(
        "find %s -name '*.part' -o -name '.current.*' -o -name '*.tmp' -o -name '.restore-*'", ROOT)
    assert leftovers == ""
    assert host.file(ROOT + "/.incoming/tiny-chat").listdir() == []
    assert host.file(ROOT + "/.incoming/tiny-gguf").listdir() == []


def test_check_mode_plans_a_hub_download_and_a_new_revision_and_changes_nothing(host, run_playbook, inventory_name):
    before = host.check_output("readlink %s/tiny-chat/current", ROOT)
    rc, out = run_playbook("molecule/model_storage/check_hub.yml", inventory_name, check=True)
    assert rc == 0, out[-3000:]
    # The playbook asserts the planned call itself; here: it ran, showed it, and hid the token.
    assert "HUB PLAN" in out and "7b9bd8a5c5b3f4e2d1a0b9c8d7e6f5a4b3c2d1e0" in out
    assert "hf_test_token" not in out
    assert host.check_output("readlink %s/tiny-chat/current", ROOT) == before
    assert not host.file(ROOT + "/smollm2-hub").exists
    assert not host.file(ROOT + "/.incoming/smollm2-hub").exists
    assert not host.file("/opt/gpu_stack/hf-hub").exists
    assert not host.file(ROOT + "/.incoming/tiny-chat/r2").exists
