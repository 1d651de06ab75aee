# -*- coding: utf-8 -*-
# Copyright: contributors to the llmops.gpu_stack collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import hashlib
import json
import os

import pytest

from ansible.module_utils import basic

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _manifest
from ansible_collections.llmops.gpu_stack.plugins.modules import model_manifest


@pytest.fixture(autouse=True)
def trust_fresh_files(monkeypatch):
    """Test files are seconds old; let the cache keep their hashes (see test_manifest.py)."""
    monkeypatch.setattr(_manifest, "RACY_WINDOW_NS", 0)


@pytest.fixture
def run(run_module):
    """Run the module (tests/unit/conftest.py patches exit_json / fail_json and warn) and
    check how it ended."""
    def runner(args, expect="exit", check_mode=False):
        outcome, result = run_module(model_manifest.main, args, check_mode=check_mode)
        assert outcome == expect, result
        return result
    return runner


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def revision(tmp_path):
    root = tmp_path / "rev"
    root.mkdir()
    (root / "model.safetensors").write_bytes(os.urandom(200_000))
    (root / "config.json").write_text('{"model_type": "qwen2"}\n')
    (root / ".cache" / "huggingface").mkdir(parents=True)
    (root / ".cache" / "huggingface" / "download.lock").write_text("")
    return root


@pytest.fixture
def args(revision, tmp_path):
    return {"path": str(revision), "cache_path": str(tmp_path / "cache.json"), "exclude": [".cache"]}


def test_present_writes_a_sibling_manifest_then_reports_no_change(run, args, revision, tmp_path):
    first = run(args)
    manifest = tmp_path / "rev.manifest.json"
    assert first["changed"] is True
    assert first["manifest"] == str(manifest)
    assert (first["file_count"], first["files_hashed"]) == (2, 2)
    assert first["total_bytes"] == 200_000 + len('{"model_type": "qwen2"}\n')
    assert set(json.loads(manifest.read_text())["files"]) == {"config.json", "model.safetensors"}
    second = run(args)
    assert second["changed"] is False
    assert (second["files_hashed"], second["files_cached"]) == (0, 2)
    assert "diff" not in second


def test_present_in_check_mode_writes_nothing_and_shows_the_diff(run, args, tmp_path):
    result = run(dict(args, _ansible_diff=True), check_mode=True)
    assert result["changed"] is True
    assert '"model.safetensors"' in result["diff"]["after"]
    assert result["diff"]["before"] == ""
    assert not (tmp_path / "rev.manifest.json").exists()
    assert not (tmp_path / "cache.json").exists()


def test_verified_passes_then_fails_naming_a_corrupted_file(run, args, revision):
    run(args)
    passed = run(dict(args, state="verified"))
    assert passed["changed"] is False
    assert (passed["missing"], passed["extra"], passed["mismatched"]) == ([], [], [])
    (revision / "config.json").write_text('{"model_type": "qwen3"}\n')  # same size
    failed = run(dict(args, state="verified"), expect="fail")
    assert failed["failed"] is True
    assert "1 differ (config.json)" in failed["msg"]
    assert failed["mismatched"][0]["actual"]["sha256"] == sha256_of(revision / "config.json")


def test_verified_fails_on_an_extra_file(run, args, revision):
    run(args)
    (revision / "payload.py").write_text("import os\n")
    failed = run(dict(args, state="verified"), expect="fail")
    assert failed["extra"] == ["payload.py"]


def test_verified_against_expected_hub_hashes(run, args, revision):
    expected = {"model.safetensors": "sha256:" + sha256_of(revision / "model.safetensors")}
    result = run(dict(args, state="verified", expected=expected))
    assert result["manifest"] is None
    assert result["extra"] == ["config.json"]
    wrong = {"model.safetensors": "0" * 64}
    failed = run(dict(args, state="verified", expected=wrong), expect="fail")
    assert [item["path"] for item in failed["mismatched"]] == ["model.safetensors"]


def test_verified_without_a_manifest_fails_with_the_fix(run, args):
    failed = run(dict(args, state="verified"), expect="fail")
    assert "does not exist. Create it with state=present" in failed["msg"]


def test_escaping_symlink_is_refused(run, args, revision, tmp_path):
    (tmp_path / "secret").write_text("token\n")
    (revision / "leak").symlink_to("../secret")
    failed = run(args, expect="fail")
    assert "leak (symlink to ../secret, outside the revision)" in failed["msg"]
    assert not (tmp_path / "rev.manifest.json").exists()


def test_explicit_manifest_path_and_disabled_cache(run, args, tmp_path):
    manifest = tmp_path / "elsewhere.json"
    args = dict(args, manifest=str(manifest), cache=False)
    run(args)
    assert manifest.exists()
    assert not (tmp_path / "cache.json").exists()
    assert run(dict(args, state="verified"))["files_hashed"] == 2


def test_warnings_reach_the_user(run, args, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    result = run(dict(args, cache_path=str(blocker / "cache.json")))
    assert len(result["warnings_shown"]) == 1
    assert "Could not write the hash cache" in result["warnings_shown"][0]


@pytest.mark.parametrize("extra_args, message", [
    ({"workers": 0}, "workers must be 1 or more"),
    ({"expected": {"a": "0" * 64}}, "expected is only used with state=verified"),
    ({"state": "verified", "expected": {"../a": "0" * 64}}, "inside the revision"),
    ({"path": "/nonexistent/revision"}, "is not a directory"),
])
def test_bad_input_fails_with_a_message_that_names_the_fix(run, args, extra_args, message):
    failed = run(dict(args, **extra_args), expect="fail")
    assert message in failed["msg"]


def test_argument_spec_matches_the_documentation():
    yaml = pytest.importorskip("yaml")
    documented = yaml.safe_load(model_manifest.DOCUMENTATION)["options"]
    captured = {}

    class Stop(Exception):
        pass

    def capture(self, argument_spec, **kwargs):
        captured.update(argument_spec)
        raise Stop()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(basic.AnsibleModule, "__init__", capture)
        with pytest.raises(Stop):
            model_manifest.main()
    assert set(captured) == set(documented)
    for name, spec in captured.items():
        doc = documented[name]
        assert spec.get("type", "str") == doc.get("type", "str"), name
        assert spec.get("default") == doc.get("default"), name
        assert spec.get("choices") == doc.get("choices"), name
        assert spec.get("required", False) == doc.get("required", False), name
        assert spec.get("elements") == doc.get("elements"), name
