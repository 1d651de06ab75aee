# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""model_storage_revision: publish only with a manifest, atomic switch, history, retention with
removal or zstd archives, restore, check mode and idempotence."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_revisions as revs
from ansible_collections.llmops.gpu_stack.plugins.modules import model_storage_revision

needs_zstd = pytest.mark.skipif(not (shutil.which("zstd") and shutil.which("tar")), reason="tar and zstd needed")


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "models"
    lay = revs.Layout(str(root), "tiny")
    for path in (lay.revisions_dir, lay.manifests_dir, lay.incoming_dir):
        os.makedirs(path)
    return lay


def download(lay, rev, manifest=True):
    os.makedirs(lay.incoming(rev))
    with open(os.path.join(lay.incoming(rev), "model.bin"), "w") as handle:
        handle.write("weights " + rev)
    if manifest:
        with open(lay.manifest(rev), "w") as handle:
            handle.write("{}")


def args(lay, rev, **extra):
    base = {"root": lay.root, "name": lay.name, "revision": rev, "group": "root"}
    base.update(extra)
    return base


def test_publish_switch_and_idempotence(run_module, store):
    download(store, "r1")
    outcome, result = run_module(model_storage_revision.main, args(store, "r1"))
    assert outcome == "exit", result
    assert result["changed"] and result["published"] and result["switched"] and result["previous"] is None
    assert os.readlink(store.current) == "revisions/r1"
    assert not os.path.exists(store.incoming("r1"))
    assert json.load(open(store.history))["activations"] == ["r1"]
    assert os.stat(store.history).st_mode & 0o777 == 0o640
    assert result["current_path"] == store.current and result["revision_path"] == store.revision("r1")
    outcome, again = run_module(model_storage_revision.main, args(store, "r1"))
    assert outcome == "exit" and again["changed"] is False and not again["switched"]


def test_no_manifest_no_publish(run_module, store):
    download(store, "r1", manifest=False)
    outcome, result = run_module(model_storage_revision.main, args(store, "r1"))
    assert outcome == "fail" and "only a verified revision is published" in result["msg"]
    assert not os.path.lexists(store.current)


def test_nothing_to_publish(run_module, store):
    outcome, result = run_module(model_storage_revision.main, args(store, "r9"))
    assert outcome == "fail" and "neither published nor downloaded" in result["msg"]


def test_retention_removes_beyond_keep(run_module, store):
    for rev in ("r1", "r2", "r3"):
        download(store, rev)
        outcome, result = run_module(model_storage_revision.main, args(store, rev, keep=1,
                                                                       cache_dir=str(store.root) + "-cache"))
        assert outcome == "exit"
    assert result["previous"] == "r2" and result["kept"] == ["r3", "r2"] and result["removed"] == ["r1"]
    assert sorted(os.listdir(store.revisions_dir)) == ["r2", "r3"]
    assert not os.path.exists(store.manifest("r1"))
    assert result["archived"] == []


def test_rollback_to_a_kept_revision(run_module, store):
    for rev in ("r1", "r2"):
        download(store, rev)
        run_module(model_storage_revision.main, args(store, rev))
    outcome, result = run_module(model_storage_revision.main, args(store, "r1"))
    assert result["switched"] and not result["published"] and result["previous"] == "r2"
    assert result["kept"] == ["r1", "r2"]
    assert json.load(open(store.history))["activations"] == ["r1", "r2", "r1"]


def test_check_mode_changes_nothing(run_module, store):
    download(store, "r1")
    run_module(model_storage_revision.main, args(store, "r1"))
    download(store, "r2")
    before = sorted(os.listdir(store.model_dir))
    outcome, result = run_module(model_storage_revision.main, args(store, "r2", keep=0), check_mode=True)
    assert outcome == "exit" and result["changed"] and result["published"] and result["switched"]
    assert result["removed"] == ["r1"]
    assert os.readlink(store.current) == "revisions/r1"
    assert os.path.isdir(store.incoming("r2")) and os.path.isdir(store.revision("r1"))
    assert sorted(os.listdir(store.model_dir)) == before


def test_check_mode_before_the_fetch(run_module, store):
    outcome, result = run_module(model_storage_revision.main, args(store, "r1"), check_mode=True)
    assert outcome == "exit" and result["changed"] and result["published"]


def test_check_mode_on_a_fresh_host(run_module, tmp_path):
    lay = revs.Layout(str(tmp_path / "nothing"), "tiny")
    outcome, result = run_module(model_storage_revision.main, args(lay, "r1", group="no-such-group"),
                                 check_mode=True)
    assert outcome == "exit" and result["changed"] and result["switched"]
    assert not os.path.exists(str(tmp_path / "nothing"))


def test_bad_input(run_module, store):
    for extra, text in (({"revision": "../x"}, "revision name"), ({"keep": -1}, "keep"),
                        ({"archive_level": 30}, "1 to 19"), ({"group": "no-such-group"}, "does not exist")):
        outcome, result = run_module(model_storage_revision.main, dict(args(store, "r1"), **extra))
        assert outcome == "fail" and text in result["msg"], extra


@needs_zstd
def test_archive_and_restore(run_module, store):
    for rev in ("r1", "r2", "r3"):
        download(store, rev)
        outcome, result = run_module(model_storage_revision.main, args(store, rev, keep=1, archive="zstd"))
        assert outcome == "exit", result
    assert result["archived"] == ["r1"] and result["removed"] == ["r1"]
    assert os.path.isfile(store.archive("r1")) and os.path.isfile(store.manifest("r1"))
    assert os.stat(store.archive_dir).st_mode & 0o777 == 0o700
    outcome, result = run_module(model_storage_revision.main, args(store, "r1", state="restored"), check_mode=True)
    assert result["restored"] and not os.path.exists(store.incoming("r1"))
    outcome, result = run_module(model_storage_revision.main, args(store, "r1", state="restored"))
    assert outcome == "exit" and result["restored"]
    with open(os.path.join(store.incoming("r1"), "model.bin")) as handle:
        assert handle.read() == "weights r1"
    outcome, result = run_module(model_storage_revision.main, args(store, "r1", keep=1, archive="zstd"))
    assert result["published"] and result["previous"] == "r3"
    assert result["kept"] == ["r1", "r3"] and result["archived"] == ["r2"]
    # r1's archive was kept: pruning r1 later reuses it.
    assert sorted(os.listdir(store.archive_dir)) == ["r1.tar.zst", "r2.tar.zst"]


def test_restore_without_an_archive(run_module, store):
    outcome, result = run_module(model_storage_revision.main, args(store, "r1", state="restored"))
    assert outcome == "fail" and "no archive" in result["msg"]


def test_a_foreign_current_is_refused(run_module, store):
    os.symlink("/etc", store.current)
    download(store, "r1")
    outcome, result = run_module(model_storage_revision.main, args(store, "r1"))
    assert outcome == "fail" and "not at revisions" in result["msg"]
