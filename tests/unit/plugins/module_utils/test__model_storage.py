# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The model_storage helpers: input rules, blkid, layout, atomic switch, retention, archives,
resumable HTTP downloads against a real local server, and the hub download plan."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import threading
import types

import pytest

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _block_devices as blockdev
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _fsutil as fsutil
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_archive as archives
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_fetch as fetching
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_revisions as revs
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_storage as ms

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
SERVER = os.path.join(ROOT, "molecule", "model_storage", "files", "range_http_server.py")
SHA_A = "a" * 64


def run(argv):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


# --- names and paths ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["smollm2", "DeepSeek-R1-Distill-Qwen-7B", "r1", "v1.2_final", "a" * 128,
                                  "916b56a44061fd5cd7d6a8fb632557ed4f724f60"])
def test_good_names(name):
    assert ms.check_name("name", name) == []


@pytest.mark.parametrize("name", ["", "my model", "../etc", "a/b", ".incoming", "-x", "mod..el", "mödel",
                                  "lost+found", "a" * 129, None])
def test_bad_names_name_the_value_and_a_fix(name):
    problems = ms.check_name("models[0].name", name, "model name")
    assert len(problems) == 1
    assert problems[0]["field"] == "models[0].name"
    assert "model name" in problems[0]["problem"]
    assert ms.check_name("x", ms.suggest_name(name or "")) == [] or not (name or "").strip(" ./-")


def test_suggestion_is_valid():
    assert ms.suggest_name("My Model (7B)") == "My-Model-7B"
    assert ms.suggest_name("../etc") == "etc"


@pytest.mark.parametrize("rel", ["model.gguf", "tokenizer/vocab.json", "a/b/c.bin"])
def test_good_relpaths(rel):
    assert ms.check_relpath("p", rel) == []


@pytest.mark.parametrize("rel,fragment", [
    ("/etc/passwd", "relative"), ("a/../b", "normalised"), ("..", "normalised"), ("my file.bin", "whitespace"),
    ("mödel.bin", "non-ASCII"), ("x.part", ".part"), (".cache/x", "hidden"), ("", "relative"), ("a//b", "normalised"),
])
def test_bad_relpaths(rel, fragment):
    problems = ms.check_relpath("p", rel)
    assert problems and fragment in problems[0]["problem"]


def test_check_path_uses_the_collection_rules():
    assert ms.check_path("root", "/srv/models") == []
    fields = [p["field"] for p in ms.check_path("root", "srv/my models/..")]
    assert fields == ["root", "root", "root"]


# --- sources ------------------------------------------------------------------------------

def url_model(**source):
    base = {"type": "url", "files": [{"url": "https://example.invalid/m/model.gguf", "sha256": SHA_A}]}
    base.update(source)
    return {"name": "m", "revision": "r1", "source": base}


def test_valid_models():
    models = [
        {"name": "a", "revision": "r1", "source": {"type": "controller", "path": "/data/a"}},
        url_model(),
        {"name": "c", "revision": "916b56a4", "source": {"type": "hf", "repo_id": "deepseek-ai/DeepSeek-R1",
                                                         "commit": "916b56a44061fd5cd7d6a8fb632557ed4f724f60"}},
    ]
    models[1]["name"] = "b"
    assert ms.validate_models(models) == []


@pytest.mark.parametrize("model,field,fragment", [
    ({"name": "a", "revision": "r1", "source": {"type": "controller"}}, "models[0].source.path", "needs 'path'"),
    ({"name": "a", "revision": "r1", "source": {"type": "ftp"}}, "models[0].source.type", "not a source type"),
    ({"name": "a", "revision": "r1", "source": "x"}, "models[0].source", "mapping"),
    (url_model(files=[]), "models[0].source.files", "non-empty"),
    (url_model(files=[{"url": "https://h/x.bin"}]), "models[0].source.files[0].sha256", "sha256"),
    (url_model(files=[{"url": "file:///etc/x", "sha256": SHA_A}]), "models[0].source.files[0].url", "http"),
    (url_model(files=[{"url": "https://h/a/x.bin", "sha256": SHA_A}, {"url": "https://h/b/x.bin", "sha256": SHA_A}]),
     "models[0].source.files[1].path", "two files"),
    (url_model(files=[{"url": "https://h/x", "sha256": SHA_A, "path": "../x"}]), "models[0].source.files[0].path",
     "not a valid file path"),
    (url_model(files=[{"url": "https://h/x", "sha256": SHA_A, "size": -1}]), "models[0].source.files[0].size", "byte"),
    ({"name": "a", "revision": "r1", "source": {"type": "hf", "repo_id": "x", "commit": "0" * 40}},
     "models[0].source.repo_id", "repository"),
    ({"name": "a", "revision": "r1", "source": {"type": "hf", "repo_id": "o/n", "commit": "main"}},
     "models[0].source.commit", "pinned"),
    ({"name": "a", "revision": "r 1", "source": {"type": "controller", "path": "/x"}}, "models[0].revision", "revision"),
    ({"name": "a", "revision": "r1", "source": {"type": "controller", "path": "/x", "sha256": {"a": "nothex"}}},
     "models[0].source.sha256[a]", "sha256"),
])
def test_invalid_sources(model, field, fragment):
    problems = ms.validate_models([model])
    assert any(p["field"] == field and fragment in p["problem"] for p in problems), problems


def test_duplicate_models_are_refused():
    problems = ms.validate_models([url_model(), url_model()])
    assert [p["field"] for p in problems] == ["models[1].name"]


def test_render_names_the_variable():
    lines = ms.render([ms.problem("models[0].name", "x y", "bad", "rename")], "model_storage_")
    assert lines == ["model_storage_models[0].name: bad (fix: rename)"]


def test_url_file_path_defaults_to_the_last_segment():
    assert ms.url_file_path({"url": "https://h/a/b/model.gguf?download=1"}) == "model.gguf"
    assert ms.url_file_path({"url": "https://h/a", "path": "x/y.bin"}) == "x/y.bin"


# --- devices ------------------------------------------------------------------------------

BLKID_VFAT = "DEVNAME=/dev/loop1\nSEC_TYPE=msdos\nUUID=6456-EF2F\nVERSION=FAT16\nTYPE=vfat\nUSAGE=filesystem\n"


def test_parse_blkid():
    info = blockdev.parse_blkid_export(BLKID_VFAT)
    assert info["TYPE"] == "vfat" and info["UUID"] == "6456-EF2F"
    assert blockdev.parse_blkid_export("") == {}


@pytest.mark.parametrize("blkid,fstype,luks,force,refused", [
    ({}, "ext4", False, False, False),
    ({"TYPE": "ext4", "USAGE": "filesystem"}, "ext4", False, False, False),
    ({"TYPE": "vfat", "USAGE": "filesystem"}, "ext4", False, False, True),
    ({"TYPE": "vfat", "USAGE": "filesystem"}, "ext4", False, True, False),
    ({"TYPE": "xfs", "USAGE": "filesystem"}, "ext4", False, False, True),
    ({"TYPE": "ntfs", "USAGE": "filesystem"}, "xfs", False, False, True),
    ({"PTTYPE": "gpt"}, "ext4", False, False, True),
    ({"TYPE": "crypto_LUKS", "USAGE": "crypto"}, "ext4", True, False, False),
    ({"TYPE": "crypto_LUKS", "USAGE": "crypto"}, "ext4", False, False, True),
    ({"TYPE": "ext4", "USAGE": "filesystem"}, "ext4", True, False, True),
])
def test_device_content(blkid, fstype, luks, force, refused):
    problems = blockdev.check_device_content("device", "/dev/loop1", blkid, fstype, luks, force, "force_format")
    assert bool(problems) == refused
    if refused:
        assert "force_format" in problems[0]["fix"]
        assert "/dev/loop1" in problems[0]["problem"]


def test_vfat_refusal_text():
    problem = blockdev.check_device_content("device", "/dev/loop1", blockdev.parse_blkid_export(BLKID_VFAT), "ext4", False,
                                            False, "force_format")[0]
    assert problem["problem"] == "/dev/loop1 already holds a vfat file system; formatting it as ext4 would destroy it"


def test_mounted_devices_and_within():
    text = "36 35 7:0 / /srv/models rw,noatime - ext4 /dev/loop0 rw\n37 35 7:1 / /mnt/x rw - fuseblk /dev/loop1 rw\n"
    assert blockdev.mounted_devices(text) == {"/dev/loop0": ["/srv/models"], "/dev/loop1": ["/mnt/x"]}
    assert ms.is_within("/srv/models/store", "/srv/models")
    assert not ms.is_within("/srv/models2", "/srv/models")


# --- layout, current, publish -------------------------------------------------------------

@pytest.fixture
def layout(tmp_path):
    lay = revs.Layout(str(tmp_path / "models"), "tiny")
    for path in (lay.revisions_dir, lay.manifests_dir, lay.archive_dir, lay.incoming_dir):
        os.makedirs(path)
    return lay


def make_revision(lay, rev, where="revisions", content=b"weights"):
    base = lay.revision(rev) if where == "revisions" else lay.incoming(rev)
    os.makedirs(os.path.join(base, "sub"))
    with open(os.path.join(base, "model.bin"), "wb") as handle:
        handle.write(content + rev.encode())
    with open(os.path.join(base, "sub", "config.json"), "w") as handle:
        handle.write('{"rev": "%s"}' % rev)
    with open(lay.manifest(rev), "w") as handle:
        handle.write("{}")
    return base


def test_layout_paths(tmp_path):
    lay = revs.Layout("/srv/models/", "tiny")
    assert lay.revision("r1") == "/srv/models/tiny/revisions/r1"
    assert lay.manifest("r1") == "/srv/models/tiny/manifests/r1.json"
    assert lay.archive("r1") == "/srv/models/tiny/archive/r1.tar.zst"
    assert lay.incoming("r1") == "/srv/models/.incoming/tiny/r1"
    assert lay.current == "/srv/models/tiny/current"
    assert lay.link_target("r1") == "revisions/r1"


def test_read_current(layout):
    assert revs.read_current(layout) is None
    os.symlink("revisions/r1", layout.current)
    assert revs.read_current(layout) == "r1"


def test_read_current_refuses_a_directory(layout):
    os.mkdir(layout.current)
    with pytest.raises(ms.StorageError, match="not a symlink"):
        revs.read_current(layout)


def test_read_current_refuses_a_foreign_link(layout):
    os.symlink("/etc", layout.current)
    with pytest.raises(ms.StorageError, match="not at revisions"):
        revs.read_current(layout)


def test_switch_is_a_rename_and_idempotent(layout):
    make_revision(layout, "r1")
    make_revision(layout, "r2")
    assert revs.switch_current(layout, "r1") is True
    assert os.readlink(layout.current) == "revisions/r1"
    inode = os.lstat(layout.current).st_ino
    assert revs.switch_current(layout, "r1") is False
    assert os.lstat(layout.current).st_ino == inode
    assert revs.switch_current(layout, "r2") is True
    assert os.readlink(layout.current) == "revisions/r2"
    assert [n for n in os.listdir(layout.model_dir) if n.startswith(".current")] == []


def test_switch_refuses_an_unpublished_revision(layout):
    with pytest.raises(ms.StorageError, match="not a published revision"):
        revs.switch_current(layout, "r9")


def test_readers_never_see_a_mix_or_nothing(layout):
    """A reader resolving current/ during many switches always finds a whole revision."""
    make_revision(layout, "r1")
    make_revision(layout, "r2")
    revs.switch_current(layout, "r1")
    seen, errors = set(), []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                with open(os.path.join(layout.current, "model.bin"), "rb") as handle:
                    model = handle.read()
                with open(os.path.join(layout.current, "sub", "config.json")) as handle:
                    config = handle.read()
            except OSError as exc:
                errors.append(exc)
                continue
            seen.add((model[-2:], config))

    thread = threading.Thread(target=reader)
    thread.start()
    for index in range(300):
        revs.switch_current(layout, "r2" if index % 2 == 0 else "r1")
    stop.set()
    thread.join()
    assert errors == []
    # A reader can only mix when it reads the two files across a switch; each file alone is whole.
    assert all(model in (b"r1", b"r2") for model, _config in seen)


def test_publish_moves_the_download(layout):
    make_revision(layout, "r1", where="incoming")
    assert revs.publish(layout, "r1")
    assert os.path.isfile(os.path.join(layout.revision("r1"), "model.bin"))
    assert not os.path.exists(layout.incoming("r1"))


def test_publish_refuses_existing_and_missing(layout):
    make_revision(layout, "r1")
    with pytest.raises(ms.StorageError, match="published already"):
        revs.publish(layout, "r1")
    with pytest.raises(ms.StorageError, match="neither published nor fetched"):
        revs.publish(layout, "r2")


def test_model_state(layout):
    make_revision(layout, "r1")
    make_revision(layout, "r2", where="incoming")
    revs.switch_current(layout, "r1")
    state = revs.model_state(layout)
    assert state["current"] == "r1"
    assert state["revisions"] == ["r1"]
    assert sorted(state["manifests"]) == ["r1", "r2"]
    assert list(state["incoming"]) == ["r2"] and state["incoming"]["r2"] > 0


# --- history and retention ----------------------------------------------------------------

def test_history_roundtrip(tmp_path):
    path = str(tmp_path / "history.json")
    assert revs.load_history(path) == []
    history = revs.record_activation(revs.record_activation([], "r1"), "r2")
    assert revs.record_activation(history, "r2") == history
    fsutil.write_text_atomic(path, revs.history_text(history), 0o640, os.getuid(), os.getgid())
    assert revs.load_history(path) == ["r1", "r2"]
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert fsutil.write_text_atomic(path, revs.history_text(history), 0o640, os.getuid(), os.getgid()) is False


def test_history_ignores_junk(tmp_path):
    path = tmp_path / "history.json"
    path.write_text(json.dumps({"format": "other", "activations": ["r1"]}))
    assert revs.load_history(str(path)) == []
    path.write_text("not json")
    assert revs.load_history(str(path)) == []


@pytest.mark.parametrize("current,present,history,keep,kept,pruned", [
    ("r3", ["r1", "r2", "r3"], ["r1", "r2", "r3"], 1, ["r3", "r2"], ["r1"]),
    ("r3", ["r1", "r2", "r3"], ["r1", "r2", "r3"], 0, ["r3"], ["r2", "r1"]),
    ("r3", ["r1", "r2", "r3"], ["r1", "r2", "r3"], 5, ["r3", "r2", "r1"], []),
    # Rolled back to r1: r3 was current most recently, so it stays; r2 goes.
    ("r1", ["r1", "r2", "r3"], ["r1", "r2", "r3", "r1"], 1, ["r1", "r3"], ["r2"]),
    # Revisions never activated count as older than any activated one.
    ("r2", ["r1", "r2", "x9"], ["r1", "r2"], 1, ["r2", "r1"], ["x9"]),
])
def test_retention(current, present, history, keep, kept, pruned):
    assert revs.plan_retention(current, present, history, keep) == (kept, pruned)


# --- archives -----------------------------------------------------------------------------

needs_zstd = pytest.mark.skipif(not (shutil.which("zstd") and shutil.which("tar")), reason="tar and zstd needed")


@needs_zstd
def test_archive_and_restore_roundtrip(layout):
    base = make_revision(layout, "r1", content=os.urandom(4096))
    digest = hashlib.sha256(open(os.path.join(base, "model.bin"), "rb").read()).hexdigest()
    assert archives.archive_revision(layout, "r1", 3, run)
    assert not os.path.exists(layout.revision("r1"))
    assert os.stat(layout.archive("r1")).st_mode & 0o777 == 0o600
    assert [n for n in os.listdir(layout.archive_dir) if n.endswith(".tmp")] == []
    archives.restore_archive(layout, "r1", run)
    restored = os.path.join(layout.incoming("r1"), "model.bin")
    assert hashlib.sha256(open(restored, "rb").read()).hexdigest() == digest
    assert os.path.isfile(os.path.join(layout.incoming("r1"), "sub", "config.json"))
    assert [n for n in os.listdir(layout.incoming_dir) if n.startswith(".restore")] == []


@needs_zstd
def test_a_damaged_archive_keeps_the_revision(layout):
    make_revision(layout, "r1")
    with open(layout.archive("r1"), "wb") as handle:
        handle.write(b"not zstd")
    with pytest.raises(ms.StorageError, match="zstd -t"):
        archives.archive_revision(layout, "r1", 3, run)
    assert os.path.isdir(layout.revision("r1"))


def test_archive_commands():
    argv = archives.tar_zstd_create_cmd("/srv/m/revisions", "r1", "/srv/m/archive/.r1.tmp", 5)
    assert argv[:3] == ["tar", "--create", "--file"]
    assert "zstd -q -T0 -5" in argv and argv[-2:] == ["--", "r1"]
    assert "--no-same-owner" in archives.tar_zstd_extract_cmd("/a.tar.zst", "/d")


def test_restore_refuses_a_missing_archive(layout):
    with pytest.raises(ms.StorageError, match="nothing to restore"):
        archives.restore_archive(layout, "r1", run)


# --- space --------------------------------------------------------------------------------

def test_space_check_numbers(tmp_path):
    check = fetching.space_check(str(tmp_path), 10 * 2 ** 30, 2 * 2 ** 30, 0.1, 2 ** 30, free=5 * 2 ** 30)
    assert check["missing_bytes"] == 8 * 2 ** 30
    assert check["margin_bytes"] == 2 ** 30
    assert check["needed_bytes"] == 9 * 2 ** 30
    assert check["ok"] is False
    message = fetching.space_message("tiny r1", "/srv/models", check)
    assert "9.0 GiB" in message and "5.0 GiB" in message and "Nothing was downloaded" in message
    assert fetching.space_check(str(tmp_path), 2 ** 20, 0, 0.1, 2 ** 20, free=3 * 2 ** 20)["ok"] is True


def test_present_bytes_and_unlisted(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"x" * 10)
    (tmp_path / "b.bin.part").write_bytes(b"x" * 4)
    (tmp_path / "c.bin").write_bytes(b"x" * 3)  # wrong size: counts nothing
    (tmp_path / "stale.bin").write_bytes(b"x")
    files = [{"path": "a.bin", "size": 10}, {"path": "b.bin", "size": 8}, {"path": "c.bin", "size": 7}]
    assert fetching.present_bytes(str(tmp_path), files) == 14
    assert fetching.unlisted_files(str(tmp_path), ["a.bin", "b.bin", "c.bin"]) == ["stale.bin"]


# --- HTTP ---------------------------------------------------------------------------------

def load_server():
    spec = importlib.util.spec_from_file_location("range_http_server", SERVER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def http(tmp_path):
    """The molecule scenario's range server, in a thread, serving tmp_path/www."""
    server_module = load_server()
    www, control = tmp_path / "www", tmp_path / "control"
    www.mkdir()
    (control / "cut").mkdir(parents=True)
    server = server_module.ThreadingHTTPServer(("127.0.0.1", 0), server_module.Handler)
    server.root = str(www)
    server.log_path = str(tmp_path / "http.log")
    server.control = str(control)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def log():
        if not os.path.exists(server.log_path):
            return []
        with open(server.log_path) as handle:
            return [json.loads(line) for line in handle]

    yield types.SimpleNamespace(
        www=www, url="http://127.0.0.1:%d/" % server.server_address[1], log=log,
        cut=lambda rel, count: (control / "cut" / rel.replace("/", "__")).write_text(str(count)))
    server.shutdown()
    server.server_close()


def opener(url, headers, timeout, method):
    from ansible.module_utils.urls import open_url
    return open_url(url, headers=headers, method=method, timeout=timeout, decompress=False)


def test_download_and_skip_when_present(http, tmp_path):
    data = os.urandom(300000)
    (http.www / "m.bin").write_bytes(data)
    dest = tmp_path / "dest"
    dest.mkdir()
    result = fetching.fetch_http_file(opener, http.url + "m.bin", str(dest), "m.bin", gid=os.getgid())
    assert result == {"path": "m.bin", "status": "downloaded", "bytes": 300000}
    assert (dest / "m.bin").read_bytes() == data
    assert os.stat(dest / "m.bin").st_mode & 0o777 == 0o640
    assert not (dest / "m.bin.part").exists()
    again = fetching.fetch_http_file(opener, http.url + "m.bin", str(dest), "m.bin", size=300000)
    assert again["status"] == "present"
    assert len([e for e in http.log() if e["method"] == "GET"]) == 1


def test_interrupted_download_resumes_with_a_range(http, tmp_path):
    data = os.urandom(1000000)
    (http.www / "big.bin").write_bytes(data)
    dest = tmp_path / "dest"
    dest.mkdir()
    http.cut("big.bin", 400000)
    with pytest.raises(fetching.Interrupted, match="400000 of 1000000"):
        fetching.fetch_http_file(opener, http.url + "big.bin", str(dest), "big.bin", size=1000000, chunk=65536)
    assert (dest / "big.bin.part").stat().st_size == 400000
    assert not (dest / "big.bin").exists()
    result = fetching.fetch_http_file(opener, http.url + "big.bin", str(dest), "big.bin", size=1000000)
    assert result == {"path": "big.bin", "status": "resumed", "bytes": 600000}
    assert (dest / "big.bin").read_bytes() == data
    gets = [e for e in http.log() if e["method"] == "GET"]
    assert [g["range"] for g in gets] == [None, "bytes=400000-"]
    assert gets[1]["status"] == 206


def test_nested_paths_get_owned_directories(http, tmp_path):
    (http.www / "x.json").write_bytes(b"{}")
    dest = tmp_path / "dest"
    dest.mkdir()
    fetching.fetch_http_file(opener, http.url + "x.json", str(dest), "tok/x.json", gid=os.getgid())
    assert os.stat(dest / "tok").st_mode & 0o777 == 0o750


def test_a_size_mismatch_is_refused(http, tmp_path):
    (http.www / "m.bin").write_bytes(b"x" * 100)
    with pytest.raises(ms.StorageError, match="100 bytes on the server but 200 are expected"):
        fetching.fetch_http_file(opener, http.url + "m.bin", str(tmp_path), "m.bin", size=200)


def test_a_missing_file_names_the_status(http, tmp_path):
    with pytest.raises(ms.StorageError, match="HTTP 404"):
        fetching.fetch_http_file(opener, http.url + "nope.bin", str(tmp_path), "nope.bin")


def test_complete_part_file_is_finished_without_a_request(http, tmp_path):
    (tmp_path / "m.bin.part").write_bytes(b"y" * 50)
    result = fetching.fetch_http_file(opener, http.url + "m.bin", str(tmp_path), "m.bin", size=50)
    assert result["status"] == "resumed" and (tmp_path / "m.bin").read_bytes() == b"y" * 50
    assert http.log() == []


class FakeResponse(object):
    def __init__(self, code, body, headers):
        self._code, self._body, self.headers = code, body, headers

    def getcode(self):
        return self._code

    def read(self, size):
        chunk, self._body = self._body[:size], self._body[size:]
        return chunk


def test_a_server_that_ignores_ranges_restarts_from_zero(tmp_path):
    (tmp_path / "m.bin.part").write_bytes(b"zz")

    def ignoring(url, headers, timeout, method):
        assert headers["Range"] == "bytes=2-"
        return FakeResponse(200, b"abcdef", {"Content-Length": "6"})

    result = fetching.fetch_http_file(ignoring, "http://h/m.bin", str(tmp_path), "m.bin")
    assert result["status"] == "downloaded"
    assert (tmp_path / "m.bin").read_bytes() == b"abcdef"


def test_a_wrong_content_range_is_refused(tmp_path):
    (tmp_path / "m.bin.part").write_bytes(b"zz")

    def wrong(url, headers, timeout, method):
        return FakeResponse(206, b"cdef", {"Content-Length": "4", "Content-Range": "bytes 0-3/6"})

    with pytest.raises(ms.StorageError, match="range"):
        fetching.fetch_http_file(wrong, "http://h/m.bin", str(tmp_path), "m.bin")


def test_parse_content_range():
    assert fetching.parse_content_range("bytes 10-19/20") == (10, 19, 20)
    assert fetching.parse_content_range("bytes 10-19/*") == (10, 19, None)
    assert fetching.parse_content_range("junk") is None


def test_fetch_all_retries_interrupted_jobs_only():
    calls = []

    def one(job):
        calls.append(job)
        if job == "flaky" and calls.count("flaky") < 3:
            raise fetching.Interrupted("cut")
        if job == "broken":
            raise ms.StorageError("HTTP 404")
        return {"path": job}

    results, errors = fetching.fetch_all(["ok", "flaky", "broken"], one, 1, retries=3, sleep=lambda s: None)
    assert sorted(r["path"] for r in results) == ["flaky", "ok"]
    assert errors == ["HTTP 404"]
    assert calls.count("flaky") == 3 and calls.count("broken") == 1

    def always_cut(job):
        raise fetching.Interrupted("cut")

    results, errors = fetching.fetch_all(["flaky2"], always_cut, 2, retries=0)
    assert results == [] and errors == ["cut"]


# --- Hugging Face -------------------------------------------------------------------------

def entry(path, size, blob_id, sha256=None):
    lfs = {"size": size, "sha256": sha256, "pointer_size": 134} if sha256 else None
    return types.SimpleNamespace(path=path, size=size, blob_id=blob_id, lfs=lfs)


def test_hf_patterns():
    assert fetching.hf_pattern_match("model.safetensors", ["*.safetensors"], [])
    assert not fetching.hf_pattern_match("model.bin", ["*.safetensors"], [])
    assert fetching.hf_pattern_match("tokenizer/vocab.json", ["tokenizer/"], [])
    assert not fetching.hf_pattern_match("original/x.pth", [], ["original/"])
    assert fetching.hf_pattern_match("anything", [], [])


def test_hf_plan_takes_lfs_sha256_and_skips_folders():
    tree = [entry("model.safetensors", 100, "b1", "c" * 64), entry("config.json", 10, "b2"),
            types.SimpleNamespace(path="original", tree_id="t"), entry("original/x.pth", 5, "b3", "d" * 64)]
    plan = fetching.hf_plan(tree, [], ["original/"])
    assert plan == [
        {"path": "config.json", "size": 10, "blob_id": "b2", "sha256": None},
        {"path": "model.safetensors", "size": 100, "blob_id": "b1", "sha256": "c" * 64},
    ]


def test_hf_kwargs_pin_the_commit_and_download_regular_files():
    kwargs = fetching.hf_snapshot_kwargs("deepseek-ai/DeepSeek-R1", "0" * 40, "/srv/models/.incoming/r1/x", token="hf_x",
                                         allow_patterns=["*.json"], max_workers=4, endpoint="https://hub.mirror.invalid")
    assert kwargs == {"repo_id": "deepseek-ai/DeepSeek-R1", "repo_type": "model", "revision": "0" * 40,
                      "local_dir": "/srv/models/.incoming/r1/x", "max_workers": 4, "token": "hf_x",
                      "allow_patterns": ["*.json"], "endpoint": "https://hub.mirror.invalid"}
    assert "token" not in fetching.hf_snapshot_kwargs("o/n", "0" * 40, "/d")
    assert "cache_dir" not in kwargs


def test_git_blob_sha1_matches_git(tmp_path):
    path = tmp_path / "hello"
    path.write_bytes(b"hello\n")
    # `printf 'hello\n' | git hash-object --stdin`
    assert fetching.git_blob_sha1(str(path)) == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_check_hf_download(tmp_path):
    (tmp_path / "config.json").write_bytes(b"hello\n")
    (tmp_path / "model.safetensors").write_bytes(b"x" * 5)
    plan = [{"path": "config.json", "size": 6, "blob_id": "ce013625030ba8dba906f756967f9e9ca394464a", "sha256": None},
            {"path": "model.safetensors", "size": 5, "blob_id": "b", "sha256": "e" * 64}]
    assert fetching.check_hf_download(str(tmp_path), plan) == []
    plan[0]["blob_id"] = "0" * 40
    plan.append({"path": "missing.json", "size": 1, "blob_id": "x", "sha256": None})
    plan[1]["size"] = 6
    problems = fetching.check_hf_download(str(tmp_path), plan)
    assert len(problems) == 3
    assert "git blob" in problems[0] and "hub lists 6" in problems[1] and "missing" in problems[2]
