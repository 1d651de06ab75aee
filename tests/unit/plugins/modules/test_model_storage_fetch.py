# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""model_storage_fetch: the disk check before any download, URL downloads against a real local
range server (resume, stale files, check mode), the controller space check, and the hub path
with a fake huggingface_hub (arguments, token, listing, blob checks)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
import time
import types

import pytest

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_fetch as fetching
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _storage
from ansible_collections.llmops.gpu_stack.plugins.modules import model_storage_fetch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
SERVER = os.path.join(ROOT, "molecule", "model_storage", "files", "range_http_server.py")
COMMIT = "916b56a44061fd5cd7d6a8fb632557ed4f724f60"
GROUP = "root"


@pytest.fixture
def http(tmp_path):
    spec = importlib.util.spec_from_file_location("range_http_server", SERVER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    www, control = tmp_path / "www", tmp_path / "control"
    www.mkdir()
    (control / "cut").mkdir(parents=True)
    active = {"requests": 0}
    lock = threading.Lock()

    class CountingHandler(module.Handler):
        """The server logs a request after its response went out: count the requests in
        progress so that log() can wait for the last one to be recorded."""

        def serve(self, head):
            with lock:
                active["requests"] += 1
            try:
                super().serve(head)
            finally:
                with lock:
                    active["requests"] -= 1

    server = module.ThreadingHTTPServer(("127.0.0.1", 0), CountingHandler)
    server.root, server.log_path, server.control = str(www), str(tmp_path / "http.log"), str(control)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def log():
        deadline = time.monotonic() + 10
        while active["requests"] and time.monotonic() < deadline:
            time.sleep(0.01)
        if not os.path.exists(server.log_path):
            return []
        with open(server.log_path) as handle:
            return [json.loads(line) for line in handle]

    yield types.SimpleNamespace(www=www, url="http://127.0.0.1:%d/" % server.server_address[1], log=log,
                                cut=lambda rel, n: (control / "cut" / rel).write_text(str(n)))
    server.shutdown()
    server.server_close()


@pytest.fixture
def area(tmp_path):
    path = tmp_path / "models" / ".incoming"
    path.mkdir(parents=True)
    return path


def files_in(http, **sizes):
    out = []
    for name, size in sizes.items():
        data = hashlib.shake_256(name.encode()).digest(size)
        (http.www / name).write_bytes(data)
        out.append({"url": http.url + name, "sha256": hashlib.sha256(data).hexdigest()})
    return out


def url_args(area, files, **extra):
    base = {"type": "url", "dest": str(area / "tiny" / "r1"), "group": GROUP, "files": files,
            "margin_min_bytes": 0, "margin_fraction": 0.0}
    base.update(extra)
    return base


def test_url_download_creates_private_parents_and_returns_expected(run_module, http, area):
    files = files_in(http, **{"a.bin": 200000, "b.json": 100})
    outcome, result = run_module(model_storage_fetch.main, url_args(area, files))
    assert outcome == "exit", result
    assert result["changed"] and sorted(result["downloaded"]) == ["a.bin", "b.json"]
    assert result["expected"] == {"a.bin": files[0]["sha256"], "b.json": files[1]["sha256"]}
    assert result["space"]["ok"] and result["space"]["total_bytes"] == 200100
    assert os.stat(area / "tiny").st_mode & 0o777 == 0o700
    assert os.stat(area / "tiny" / "r1").st_mode & 0o777 == 0o750
    assert os.stat(area / "tiny" / "r1" / "a.bin").st_mode & 0o777 == 0o640
    # Sizes were asked with HEAD, since the files list gives none.
    assert sorted(e["method"] for e in http.log()) == ["GET", "GET", "HEAD", "HEAD"]


def test_a_second_run_fetches_nothing(run_module, http, area):
    files = files_in(http, **{"a.bin": 1000})
    run_module(model_storage_fetch.main, url_args(area, files))
    outcome, again = run_module(model_storage_fetch.main, url_args(area, [dict(files[0], size=1000)]))
    assert outcome == "exit" and again["changed"] is False and again["present"] == ["a.bin"]
    assert [e["method"] for e in http.log()].count("GET") == 1


def test_interrupted_then_resumed(run_module, http, area):
    files = files_in(http, **{"big.bin": 900000, "small.bin": 10})
    http.cut("big.bin", 300000)
    outcome, result = run_module(model_storage_fetch.main, url_args(area, files, retries=0, parallel=1))
    assert outcome == "fail"
    assert "big.bin" in result["msg"] and "300000 of 900000" in result["msg"] and "Run again" in result["msg"]
    assert result["downloaded"] == ["small.bin"]
    assert os.path.getsize(area / "tiny" / "r1" / "big.bin.part") == 300000
    outcome, result = run_module(model_storage_fetch.main, url_args(area, files))
    assert outcome == "exit" and result["resumed"] == ["big.bin"] and result["present"] == ["small.bin"]
    assert result["bytes_downloaded"] == 600000
    gets = [e for e in http.log() if e["method"] == "GET"]
    assert [(g["path"], g["range"]) for g in gets if g["path"] == "/big.bin"] == [
        ("/big.bin", None), ("/big.bin", "bytes=300000-")]
    assert len([g for g in gets if g["path"] == "/small.bin"]) == 1


def test_retries_resume_within_one_run(run_module, http, area):
    files = files_in(http, **{"big.bin": 500000})
    http.cut("big.bin", 100000)
    outcome, result = run_module(model_storage_fetch.main, url_args(area, [dict(files[0], size=500000)], retries=2))
    assert outcome == "exit" and result["resumed"] == ["big.bin"]


def test_space_is_checked_before_anything_is_downloaded(run_module, http, area, monkeypatch):
    monkeypatch.setattr(_storage, "free_bytes", lambda path: 5 * 2 ** 20)
    files = [dict(f, size=10 * 2 ** 30) for f in files_in(http, **{"a.bin": 10})]
    outcome, result = run_module(model_storage_fetch.main, url_args(area, files, margin_min_bytes=2 ** 30))
    assert outcome == "fail"
    assert "does not fit" in result["msg"] and "11.0 GiB" in result["msg"] and "5.0 MiB is free" in result["msg"]
    assert result["space"]["needed_bytes"] == 11 * 2 ** 30
    assert http.log() == [] and not (area / "tiny").exists()


def test_partial_bytes_count_as_there(run_module, http, area, monkeypatch):
    files = [dict(f, size=1000) for f in files_in(http, **{"a.bin": 1000})]
    dest = area / "tiny" / "r1"
    dest.mkdir(parents=True)
    (dest / "a.bin.part").write_bytes(b"x" * 600)
    monkeypatch.setattr(_storage, "free_bytes", lambda path: 450)
    outcome, result = run_module(model_storage_fetch.main, url_args(area, files))
    assert result["space"]["present_bytes"] == 600 and result["space"]["missing_bytes"] == 400
    assert outcome == "exit" and result["resumed"] == ["a.bin"]


def test_stale_files_are_removed_and_check_mode_changes_nothing(run_module, http, area):
    files = files_in(http, **{"a.bin": 100})
    dest = area / "tiny" / "r1"
    dest.mkdir(parents=True)
    (dest / "old.bin").write_bytes(b"old")
    outcome, result = run_module(model_storage_fetch.main, url_args(area, files), check_mode=True)
    assert outcome == "exit" and result["changed"] and result["would_fetch"] == ["a.bin"]
    assert result["removed"] == ["old.bin"] and (dest / "old.bin").exists()
    assert [e["method"] for e in http.log()] == ["HEAD"]
    outcome, result = run_module(model_storage_fetch.main, url_args(area, files))
    assert outcome == "exit" and result["removed"] == ["old.bin"]
    assert not (dest / "old.bin").exists() and (dest / "a.bin").exists()


def test_bad_url_file_and_http_errors(run_module, http, area):
    outcome, result = run_module(model_storage_fetch.main, url_args(area, [{"url": http.url + "nope.bin",
                                                                            "sha256": "0" * 64}]))
    assert outcome == "fail" and "HEAD" in result["msg"]
    outcome, result = run_module(model_storage_fetch.main, url_args(area, [{"url": http.url + "nope.bin",
                                                                            "size": 5}]))
    assert outcome == "fail" and "HTTP 404" in result["msg"]
    outcome, result = run_module(model_storage_fetch.main, url_args(area, [{"url": http.url + "x", "path": "../x"}]))
    assert outcome == "fail" and "Invalid file" in result["msg"]


def test_controller_space_check_and_dest(run_module, area, monkeypatch):
    args = {"type": "controller", "dest": str(area / "tiny" / "r1"), "group": GROUP,
            "sizes": {"model.safetensors": 2000, "config.json": 10}, "sha256": {"config.json": "A" * 64},
            "margin_min_bytes": 0}
    outcome, result = run_module(model_storage_fetch.main, args, check_mode=True)
    assert outcome == "exit" and result["expected"] == {"config.json": "a" * 64}
    assert not (area / "tiny").exists()
    outcome, result = run_module(model_storage_fetch.main, args)
    assert outcome == "exit" and result["changed"] and (area / "tiny" / "r1").is_dir()
    monkeypatch.setattr(_storage, "free_bytes", lambda path: 100)
    outcome, result = run_module(model_storage_fetch.main, args)
    assert outcome == "fail" and "does not fit" in result["msg"]
    outcome, result = run_module(model_storage_fetch.main, dict(args, sizes={"x": -1}))
    assert outcome == "fail" and "byte count" in result["msg"]


def test_invalid_arguments(run_module, area):
    for extra, text in (({"parallel": 0}, "parallel"), ({"retries": -1}, "retries"),
                        ({"dest": "relative/dir"}, "absolute")):
        outcome, result = run_module(model_storage_fetch.main, url_args(area, [{"url": "http://h/x"}], **extra))
        assert outcome == "fail" and text in result["msg"], extra


# --- the hub, with a fake client ----------------------------------------------------------

class FakeHub(object):
    """Records the calls; the tree and the downloaded files come from `repo`."""

    def __init__(self, repo, fail=None):
        self.repo, self.fail, self.calls = repo, fail, []
        hub = self

        class HfApi(object):
            def __init__(self, endpoint=None, token=None):
                hub.calls.append(("HfApi", {"endpoint": endpoint, "token": token}))

            def list_repo_tree(self, repo_id, recursive=False, revision=None, repo_type=None):
                hub.calls.append(("list_repo_tree", {"repo_id": repo_id, "recursive": recursive,
                                                     "revision": revision, "repo_type": repo_type}))
                for path, data, lfs in hub.repo:
                    sha1 = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
                    yield types.SimpleNamespace(path=path, size=len(data), blob_id=sha1,
                                                lfs={"sha256": hashlib.sha256(data).hexdigest()} if lfs else None)

        self.HfApi = HfApi

    def snapshot_download(self, **kwargs):
        self.calls.append(("snapshot_download", kwargs))
        if self.fail:
            raise RuntimeError(self.fail)
        os.makedirs(os.path.join(kwargs["local_dir"], ".cache", "huggingface"), exist_ok=True)
        for path, data, _lfs in self.repo:
            if kwargs.get("allow_patterns") and not fetching.hf_pattern_match(path, kwargs["allow_patterns"], []):
                continue
            full = os.path.join(kwargs["local_dir"], path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as handle:
                handle.write(data)
        return kwargs["local_dir"]


REPO = [("config.json", b'{"model_type": "llama"}', False),
        ("model.safetensors", b"w" * 5000, True),
        ("original/consolidated.pth", b"p" * 100, True)]


def hf_args(area, **extra):
    base = {"type": "hf", "dest": str(area / "smol" / COMMIT[:8]), "group": GROUP, "repo_id": "HuggingFaceTB/SmolLM2",
            "commit": COMMIT, "token": "hf_secret", "ignore_patterns": ["original/"], "margin_min_bytes": 0}
    base.update(extra)
    return base


def test_hub_download_at_the_pinned_commit(run_module, area, monkeypatch):
    hub = FakeHub(REPO)
    monkeypatch.setattr(model_storage_fetch, "huggingface_hub", hub)
    outcome, result = run_module(model_storage_fetch.main, hf_args(area))
    assert outcome == "exit", result
    name, kwargs = hub.calls[-1]
    assert name == "snapshot_download"
    assert kwargs == {"repo_id": "HuggingFaceTB/SmolLM2", "repo_type": "model", "revision": COMMIT,
                      "local_dir": str(area / "smol" / COMMIT[:8]), "max_workers": 8, "token": "hf_secret",
                      "ignore_patterns": ["original/"], "endpoint": "https://huggingface.co"}
    assert hub.calls[0] == ("HfApi", {"endpoint": "https://huggingface.co", "token": "hf_secret"})
    assert hub.calls[1][1]["revision"] == COMMIT and hub.calls[1][1]["recursive"] is True
    assert "token" not in result["plan"] and result["plan"]["revision"] == COMMIT
    assert result["expected"] == {"model.safetensors": hashlib.sha256(b"w" * 5000).hexdigest()}
    assert [f["path"] for f in result["files"]] == ["config.json", "model.safetensors"]
    assert not (area / "smol" / COMMIT[:8] / ".cache").exists()
    assert result["downloaded"] == ["config.json", "model.safetensors"]


def test_hub_second_run_downloads_nothing(run_module, area, monkeypatch):
    hub = FakeHub(REPO)
    monkeypatch.setattr(model_storage_fetch, "huggingface_hub", hub)
    run_module(model_storage_fetch.main, hf_args(area))
    hub.calls.clear()
    outcome, result = run_module(model_storage_fetch.main, hf_args(area))
    assert outcome == "exit" and result["changed"] is False
    assert [c[0] for c in hub.calls] == ["HfApi", "list_repo_tree"]


def test_hub_space_refusal_before_the_download(run_module, area, monkeypatch):
    hub = FakeHub(REPO)
    monkeypatch.setattr(model_storage_fetch, "huggingface_hub", hub)
    monkeypatch.setattr(_storage, "free_bytes", lambda path: 1000)
    outcome, result = run_module(model_storage_fetch.main, hf_args(area))
    assert outcome == "fail" and "does not fit" in result["msg"]
    assert "snapshot_download" not in [c[0] for c in hub.calls]


def test_hub_files_that_differ_from_the_listing_fail(run_module, area, monkeypatch):
    hub = FakeHub(REPO)
    monkeypatch.setattr(model_storage_fetch, "huggingface_hub", hub)
    original = hub.snapshot_download

    def tampering(**kwargs):
        original(**kwargs)
        with open(os.path.join(kwargs["local_dir"], "config.json"), "wb") as handle:
            handle.write(b'{"model_type": "evil!"}')

    hub.snapshot_download = tampering
    outcome, result = run_module(model_storage_fetch.main, hf_args(area))
    assert outcome == "fail" and "config.json differs from the hub's git blob" in result["msg"]


def test_hub_errors_are_reported(run_module, area, monkeypatch):
    hub = FakeHub(REPO, fail="connection reset")
    monkeypatch.setattr(model_storage_fetch, "huggingface_hub", hub)
    outcome, result = run_module(model_storage_fetch.main, hf_args(area))
    assert outcome == "fail" and "connection reset" in result["msg"] and "Run again to resume" in result["msg"]
    outcome, result = run_module(model_storage_fetch.main, hf_args(area, allow_patterns=["*.gguf"]))
    assert outcome == "fail" and "No file" in result["msg"]


def test_hub_check_mode_without_the_client_plans_only(run_module, area, monkeypatch):
    monkeypatch.setattr(model_storage_fetch, "huggingface_hub", None)
    outcome, result = run_module(model_storage_fetch.main, hf_args(area), check_mode=True)
    assert outcome == "exit" and result["changed"]
    assert result["plan"]["revision"] == COMMIT and "token" not in result["plan"]
    assert "hf_secret" not in json.dumps(result)
    outcome, result = run_module(model_storage_fetch.main, hf_args(area))
    assert outcome == "fail" and "huggingface_hub" in result["msg"]


def test_hub_commit_must_be_pinned(run_module, area):
    outcome, result = run_module(model_storage_fetch.main, hf_args(area, commit="main"))
    assert outcome == "fail" and "40-hex" in result["msg"]
