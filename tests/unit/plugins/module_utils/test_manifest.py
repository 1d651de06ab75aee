# -*- coding: utf-8 -*-
# Copyright: contributors to the llmops.gpu_stack collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import hashlib
import json
import os
import random
import stat
import time

import pytest

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _manifest
from ansible_collections.llmops.gpu_stack.plugins.module_utils._manifest import (
    MANIFEST_FORMAT,
    ManifestError,
    build_manifest,
    default_cache_path,
    default_manifest_path,
    diff_files,
    dumps,
    ensure_manifest,
    hash_file,
    hash_files,
    load_cache,
    parse_expected,
    parse_manifest,
    save_cache,
    scan_revision,
    verify_revision,
    walk_revision,
    write_text_atomic,
)

SHIPPED_RACY_WINDOW_NS = _manifest.RACY_WINDOW_NS
SHA_A = "a" * 64
SHA_B = "b" * 64


def sha256_of(path):
    with open(path, "rb") as fileobj:
        return hashlib.sha256(fileobj.read()).hexdigest()


def write_bytes(path, size, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).getrandbits(8 * size).to_bytes(size, "little") if size else b"")
    return path


@pytest.fixture(autouse=True)
def trust_fresh_files(monkeypatch):
    """Files written by a test are seconds old at most; let the cache keep their hashes.
    The test of the racy window itself restores the shipped value."""
    monkeypatch.setattr(_manifest, "RACY_WINDOW_NS", 0)


@pytest.fixture
def revision(tmp_path):
    root = tmp_path / "rev"
    write_bytes(root / "model-00001-of-00002.safetensors", 300_000, 1)
    write_bytes(root / "model-00002-of-00002.safetensors", 120_000, 2)
    (root / "config.json").write_text('{"model_type": "qwen2"}\n')
    (root / "tokenizer" / "tokenizer.json").parent.mkdir()
    (root / "tokenizer" / "tokenizer.json").write_text('{"version": "1.0"}\n')
    return root


@pytest.fixture
def reads(monkeypatch):
    """Count every read of file data: the calls of hash_fileobj and the bytes they hash."""
    counter = {"calls": 0, "bytes": 0}
    original = _manifest.hash_fileobj

    def counting(fileobj, buffer_size=_manifest.DEFAULT_BUFFER_SIZE):
        counter["calls"] += 1
        counter["bytes"] += os.fstat(fileobj.fileno()).st_size
        return original(fileobj, buffer_size)

    monkeypatch.setattr(_manifest, "hash_fileobj", counting)
    return counter


def actual_of(root):
    return {
        str(path.relative_to(root)): {"size": path.stat().st_size, "sha256": sha256_of(path)}
        for path in sorted(root.rglob("*")) if path.is_file()
    }


# --- walking -------------------------------------------------------------------------------

def test_walk_lists_regular_files_sorted_with_posix_relative_paths(revision):
    walk = walk_revision(str(revision))
    assert [entry.relpath for entry in walk.files] == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "tokenizer/tokenizer.json",
    ]
    assert walk.refused == []
    entry = walk.files[0]
    st = os.stat(revision / "config.json")
    assert entry.key == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@pytest.mark.parametrize("patterns, left", [
    (["*.safetensors"], ["config.json", "tokenizer/tokenizer.json"]),
    (["tokenizer"], ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]),
    (["tok*/*.json", "config.*"], ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]),
    (["*.JSON"], ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                  "tokenizer/tokenizer.json"]),
])
def test_walk_exclude_matches_relative_paths_and_directories(revision, patterns, left):
    assert [entry.relpath for entry in walk_revision(str(revision), patterns).files] == left


def test_walk_refuses_links_that_leave_the_revision(tmp_path, revision):
    outside = tmp_path / "secret"
    outside.write_text("not part of the model\n")
    (revision / "relative-escape").symlink_to("../secret")
    (revision / "absolute-escape").symlink_to(outside)
    (revision / "tokenizer" / "deep-escape").symlink_to("../../secret")
    walk = walk_revision(str(revision))
    assert [item["path"] for item in walk.refused] == [
        "absolute-escape", "relative-escape", "tokenizer/deep-escape",
    ]
    assert "outside the revision" in walk.refused[0]["reason"]
    assert all("escape" not in entry.relpath for entry in walk.files)


def test_walk_refuses_dangling_links_directory_links_and_special_files(revision):
    (revision / "dangling").symlink_to("does-not-exist")
    (revision / "tokenizer-link").symlink_to("tokenizer")
    os.mkfifo(revision / "pipe")
    refused = {item["path"]: item["reason"] for item in walk_revision(str(revision)).refused}
    assert set(refused) == {"dangling", "tokenizer-link", "pipe"}
    assert "dangling" in refused["dangling"]
    assert "directory" in refused["tokenizer-link"]
    assert "not a regular file" in refused["pipe"]


def test_walk_lists_an_in_tree_link_with_its_target_identity(revision):
    (revision / "weights.safetensors").symlink_to("model-00001-of-00002.safetensors")
    files = {entry.relpath: entry for entry in walk_revision(str(revision)).files}
    target = files["model-00001-of-00002.safetensors"]
    assert files["weights.safetensors"].path == target.path
    assert files["weights.safetensors"].key == target.key


def test_walk_excluded_escape_links_are_not_refused(tmp_path, revision):
    (revision / "escape").symlink_to(tmp_path)
    assert walk_revision(str(revision), ["escape"]).refused == []


# --- hashing -------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096 + 17])
def test_hash_file_matches_hashlib_across_buffer_boundaries(tmp_path, size):
    path = write_bytes(tmp_path / "blob", size, size)
    assert hash_file(str(path), buffer_size=4096) == sha256_of(path)


def test_parallel_hashing_gives_the_digests_of_a_serial_hashlib_run(tmp_path):
    root = tmp_path / "many"
    for index in range(12):
        write_bytes(root / ("shard-%02d.bin" % index), 1000 + index * 37_000, index)
    entries = walk_revision(str(root)).files
    parallel = hash_files(entries, workers=4, buffer_size=8192)
    serial = {str(root / entry.relpath): sha256_of(root / entry.relpath) for entry in entries}
    assert {path: result.sha256 for path, result in parallel.items()} == serial


def test_hash_files_starts_with_the_largest_file(tmp_path, monkeypatch):
    root = tmp_path / "sizes"
    for name, size in [("small", 10), ("large", 50_000), ("medium", 5_000)]:
        write_bytes(root / name, size, size)
    sizes_in_order = []
    original = _manifest.hash_fileobj

    def recording(fileobj, buffer_size=_manifest.DEFAULT_BUFFER_SIZE):
        sizes_in_order.append(os.fstat(fileobj.fileno()).st_size)
        return original(fileobj, buffer_size)

    monkeypatch.setattr(_manifest, "hash_fileobj", recording)
    hash_files(walk_revision(str(root)).files, workers=1)
    assert sizes_in_order == [50_000, 5_000, 10]


def test_hash_files_reads_a_linked_file_once(revision, reads):
    (revision / "weights.safetensors").symlink_to("model-00001-of-00002.safetensors")
    entries = walk_revision(str(revision)).files
    results = hash_files(entries, workers=2)
    assert reads["calls"] == len(entries) - 1
    assert results[entries[-1].path].sha256 == sha256_of(revision / "model-00001-of-00002.safetensors")


def test_hash_files_refuses_a_file_replaced_after_the_walk(revision):
    entries = walk_revision(str(revision)).files
    target = revision / "config.json"
    replacement = revision / "config.json.new"
    replacement.write_text('{"model_type": "evil"}\n')
    os.replace(replacement, target)
    with pytest.raises(ManifestError, match="replaced while"):
        hash_files(entries, workers=1)


def test_hash_files_refuses_a_file_that_changes_while_it_is_read(revision, monkeypatch):
    original = _manifest.hash_fileobj

    def appending(fileobj, buffer_size=_manifest.DEFAULT_BUFFER_SIZE):
        digest = original(fileobj, buffer_size)
        with open(revision / "config.json", "a") as other:
            other.write("more\n")
        return digest

    monkeypatch.setattr(_manifest, "hash_fileobj", appending)
    entries = [entry for entry in walk_revision(str(revision)).files if entry.relpath == "config.json"]
    with pytest.raises(ManifestError, match="changed while it was being hashed"):
        hash_files(entries, workers=1)


# --- cache ---------------------------------------------------------------------------------

def test_reverifying_an_unchanged_revision_reads_no_data(revision, tmp_path, reads):
    cache = str(tmp_path / "cache" / "rev.json")
    first = scan_revision(str(revision), cache_path=cache)
    assert (first.files_hashed, first.files_cached) == (4, 0)
    assert reads["calls"] == 4
    second = scan_revision(str(revision), cache_path=cache)
    assert (second.files_hashed, second.files_cached, second.bytes_hashed) == (0, 4, 0)
    assert reads["calls"] == 4
    assert second.actual == first.actual == actual_of(revision)


def test_a_rewrite_with_same_size_and_restored_mtime_is_caught_by_ctime(revision, tmp_path, reads):
    cache = str(tmp_path / "cache.json")
    target = revision / "model-00002-of-00002.safetensors"
    scan_revision(str(revision), cache_path=cache)
    before = os.stat(target)
    time.sleep(0.05)  # let the coarse file system clock tick past the first ctime
    with open(target, "r+b") as fileobj:
        fileobj.write(b"\0" * 16)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(target)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    reads["calls"] = 0
    scan = scan_revision(str(revision), cache_path=cache)
    assert reads["calls"] == 1
    assert scan.actual["model-00002-of-00002.safetensors"]["sha256"] == sha256_of(target)


def test_a_replacement_with_same_size_and_restored_mtime_is_caught_by_inode(revision, tmp_path, reads):
    cache = str(tmp_path / "cache.json")
    target = revision / "config.json"
    scan_revision(str(revision), cache_path=cache)
    before = os.stat(target)
    replacement = revision / "config.json.tmp"
    replacement.write_text('{"model_type": "llama"}\n'[: before.st_size].ljust(before.st_size))
    os.utime(replacement, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(replacement, target)
    reads["calls"] = 0
    scan = scan_revision(str(revision), cache_path=cache)
    assert reads["calls"] == 1
    assert scan.actual["config.json"]["sha256"] == sha256_of(target)


def test_files_within_the_racy_window_are_not_cached(revision, tmp_path, reads, monkeypatch):
    monkeypatch.setattr(_manifest, "RACY_WINDOW_NS", SHIPPED_RACY_WINDOW_NS)
    cache = str(tmp_path / "cache.json")
    scan_revision(str(revision), cache_path=cache)
    scan = scan_revision(str(revision), cache_path=cache)
    assert (scan.files_hashed, scan.files_cached) == (4, 0)
    assert reads["calls"] == 8


def test_update_cache_false_writes_no_cache(revision, tmp_path):
    cache = tmp_path / "cache.json"
    scan_revision(str(revision), cache_path=str(cache), update_cache=False)
    assert not cache.exists()


def test_without_a_cache_every_file_is_read(revision, reads):
    scan_revision(str(revision), cache_path=None)
    scan_revision(str(revision), cache_path=None)
    assert reads["calls"] == 8


def test_a_selected_file_with_a_different_size_is_not_read(revision, reads):
    scan = scan_revision(
        str(revision), select={"config.json", "model-00001-of-00002.safetensors"},
        expected_sizes={"model-00001-of-00002.safetensors": 1},
    )
    assert reads["calls"] == 1
    assert scan.actual["model-00001-of-00002.safetensors"] == {"size": 300_000, "sha256": None}
    assert scan.actual["config.json"]["sha256"] == sha256_of(revision / "config.json")


def test_cache_round_trip_is_private_to_its_owner(tmp_path):
    path = tmp_path / "cache" / "rev.json"
    entries = {"a.bin": [1, 2, 3, 4, 5, SHA_A]}
    assert save_cache(str(path), "/models/rev", entries) is True
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_cache(str(path), "/models/rev") == (entries, None)
    assert save_cache(str(path), "/models/rev", entries) is False


def test_cache_recorded_under_another_root_is_kept(tmp_path):
    path = tmp_path / "rev.json"
    save_cache(str(path), "/models/.incoming/one", {"a.bin": [1, 2, 3, 4, 5, SHA_A]})
    assert load_cache(str(path), "/models/revisions/one") == ({"a.bin": [1, 2, 3, 4, 5, SHA_A]}, None)


def test_a_revision_published_by_rename_is_reverified_without_reading(revision, tmp_path, reads):
    cache = str(tmp_path / "cache" / "rev.json")
    assert scan_revision(str(revision), cache_path=cache).files_hashed == 4
    published = tmp_path / "revisions" / "rev"
    published.parent.mkdir()
    os.rename(revision, published)
    after = scan_revision(str(published), cache_path=cache)
    assert (after.files_hashed, after.files_cached, after.bytes_hashed) == (0, 4, 0)
    assert reads["calls"] == 4
    assert after.actual == actual_of(published)


def test_another_revisions_cache_does_not_vouch_for_different_files(revision, tmp_path, reads):
    cache = str(tmp_path / "cache" / "rev.json")
    scan_revision(str(revision), cache_path=cache)
    other = tmp_path / "other"
    for rel in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                "config.json", "tokenizer/tokenizer.json"):
        (other / rel).parent.mkdir(parents=True, exist_ok=True)
        (other / rel).write_bytes((revision / rel).read_bytes()[::-1])
    reads["calls"] = 0
    result = scan_revision(str(other), cache_path=cache)
    assert (result.files_hashed, result.files_cached) == (4, 0)
    assert result.actual == actual_of(other)


@pytest.mark.parametrize("setup, reason", [
    (lambda path: os.chmod(path, 0o664), "writable by its owner only"),
    (lambda path: path.write_text("{not json"), "not valid JSON"),
])
def test_untrusted_or_corrupt_cache_is_ignored_with_a_warning(tmp_path, setup, reason):
    path = tmp_path / "rev.json"
    save_cache(str(path), "/models/rev", {"a.bin": [1, 2, 3, 4, 5, SHA_A]})
    setup(path)
    entries, warning = load_cache(str(path), "/models/rev")
    assert entries == {}
    assert reason in warning


def test_cache_reached_through_a_symlink_is_ignored(tmp_path):
    real = tmp_path / "real.json"
    save_cache(str(real), "/models/rev", {"a.bin": [1, 2, 3, 4, 5, SHA_A]})
    link = tmp_path / "link.json"
    link.symlink_to(real)
    entries, warning = load_cache(str(link), "/models/rev")
    assert entries == {}
    assert "Ignoring" in warning


def test_a_forged_cache_entry_does_not_hide_a_changed_file(revision, tmp_path):
    cache = str(tmp_path / "cache.json")
    scan_revision(str(revision), cache_path=cache)
    root = os.path.realpath(str(revision))
    entries, _warning = load_cache(cache, root)
    entries["config.json"][3] -= 1  # an entry for an older version of the file
    entries["config.json"][5] = SHA_A
    save_cache(cache, root, entries)
    scan = scan_revision(str(revision), cache_path=cache)
    assert scan.actual["config.json"]["sha256"] == sha256_of(revision / "config.json")


# --- manifest text, parsing and diffing ----------------------------------------------------

def test_manifest_text_is_canonical(revision):
    actual = actual_of(revision)
    reordered = dict(reversed(list(actual.items())))
    assert dumps(build_manifest(actual)) == dumps(build_manifest(reordered))
    manifest = json.loads(dumps(build_manifest(actual)))
    assert manifest["format"] == MANIFEST_FORMAT
    assert manifest["file_count"] == 4
    assert manifest["total_bytes"] == sum(item["size"] for item in actual.values())
    assert list(manifest) == sorted(manifest)


def test_parse_manifest_round_trips(revision):
    actual = actual_of(revision)
    assert parse_manifest(dumps(build_manifest(actual))) == actual


@pytest.mark.parametrize("text, match", [
    ("{not json", "not valid JSON"),
    ('{"format": "other/1", "files": {}}', "is not a"),
    ('{"format": "%s"}' % MANIFEST_FORMAT, "no 'files'"),
    ('{"format": "%s", "files": {"../etc/passwd": {"size": 1, "sha256": "%s"}}}' % (MANIFEST_FORMAT, SHA_A),
     "relative path"),
    ('{"format": "%s", "files": {"a": {"size": 1, "sha256": "xyz"}}}' % MANIFEST_FORMAT, "relative path"),
    ('{"format": "%s", "files": {"a": {"size": "1", "sha256": "%s"}}}' % (MANIFEST_FORMAT, SHA_A),
     "relative path"),
])
def test_parse_manifest_rejects_malformed_manifests(text, match):
    with pytest.raises(ManifestError, match=match):
        parse_manifest(text)


def test_parse_expected_normalises_hub_digests():
    assert parse_expected({"a.safetensors": "SHA256:" + SHA_A.upper(), "b/c.bin": SHA_B}) == {
        "a.safetensors": {"size": None, "sha256": SHA_A},
        "b/c.bin": {"size": None, "sha256": SHA_B},
    }


@pytest.mark.parametrize("expected, match", [
    ({"../outside.bin": SHA_A}, "inside the revision"),
    ({"/abs.bin": SHA_A}, "inside the revision"),
    ({"./a.bin": SHA_A}, "inside the revision"),
    ({"a.bin": "deadbeef"}, "not a sha256"),
    ({"a.bin": 12}, "not a sha256"),
])
def test_parse_expected_rejects_bad_entries(expected, match):
    with pytest.raises(ManifestError, match=match):
        parse_expected(expected)


@pytest.mark.parametrize("expected, actual, missing, extra, differ", [
    ({"a": {"size": 1, "sha256": SHA_A}}, {"a": {"size": 1, "sha256": SHA_A}}, [], [], []),
    ({"a": {"size": 1, "sha256": SHA_A}}, {}, ["a"], [], []),
    ({}, {"a": {"size": 1, "sha256": SHA_A}}, [], ["a"], []),
    ({"a": {"size": 1, "sha256": SHA_A}}, {"a": {"size": 1, "sha256": SHA_B}}, [], [], ["a"]),
    ({"a": {"size": 1, "sha256": SHA_A}}, {"a": {"size": 2, "sha256": None}}, [], [], ["a"]),
    ({"a": {"size": None, "sha256": SHA_A}}, {"a": {"size": 7, "sha256": SHA_A}}, [], [], []),
    ({"a": {"size": None, "sha256": SHA_A}}, {"a": {"size": 7, "sha256": SHA_B}}, [], [], ["a"]),
])
def test_diff_files(expected, actual, missing, extra, differ):
    got_missing, got_extra, mismatched = diff_files(expected, actual)
    assert (got_missing, got_extra, [item["path"] for item in mismatched]) == (missing, extra, differ)
    for item in mismatched:
        assert item["expected"]["sha256"] == expected[item["path"]]["sha256"]
        assert item["actual"] == actual[item["path"]]


# --- atomic writes and defaults ------------------------------------------------------------

def test_write_text_atomic_writes_only_on_change(tmp_path):
    path = tmp_path / "m.json"
    assert write_text_atomic(str(path), "one\n") is True
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    inode = os.stat(path).st_ino
    assert write_text_atomic(str(path), "one\n") is False
    assert os.stat(path).st_ino == inode
    assert write_text_atomic(str(path), "two\n") is True
    assert path.read_text() == "two\n"
    assert sorted(os.listdir(tmp_path)) == ["m.json"]


def test_write_text_atomic_keeps_the_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    path = tmp_path / "m.json"
    path.write_text("old\n")

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_manifest.os, "replace", failing_replace)
    with pytest.raises(OSError):
        write_text_atomic(str(path), "new\n")
    assert path.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["m.json"]


def test_default_paths(tmp_path):
    rev = tmp_path / "models" / "rev"
    rev.mkdir(parents=True)
    assert default_manifest_path(str(rev) + "/") == str(rev) + ".manifest.json"
    name = hashlib.sha256(os.path.realpath(str(rev)).encode()).hexdigest()
    assert default_cache_path(str(rev)) == "/var/cache/gpu_stack/manifest/%s.json" % name
    assert default_cache_path(str(rev), str(tmp_path)) == str(tmp_path / (name + ".json"))


# --- state=present -------------------------------------------------------------------------

def test_present_writes_the_manifest_and_is_idempotent(revision, tmp_path, reads):
    manifest = tmp_path / "rev.manifest.json"
    cache = str(tmp_path / "cache.json")
    first = ensure_manifest(str(revision), str(manifest), cache_path=cache)
    assert first["changed"] is True
    assert parse_manifest(manifest.read_text()) == actual_of(revision)
    inode = os.stat(manifest).st_ino
    second = ensure_manifest(str(revision), str(manifest), cache_path=cache)
    assert second["changed"] is False
    assert second["diff"]["before"] == second["diff"]["after"]
    assert os.stat(manifest).st_ino == inode
    assert (second["files_hashed"], second["files_cached"]) == (0, 4)
    assert reads["calls"] == 4


def test_present_in_check_mode_writes_nothing(revision, tmp_path):
    manifest = tmp_path / "rev.manifest.json"
    cache = tmp_path / "cache.json"
    result = ensure_manifest(str(revision), str(manifest), cache_path=str(cache), check_mode=True)
    assert result["changed"] is True
    assert not manifest.exists()
    assert not cache.exists()
    assert sorted(os.listdir(tmp_path)) == ["rev"]


def test_present_in_check_mode_reports_no_change_when_there_is_none(revision, tmp_path):
    manifest = tmp_path / "rev.manifest.json"
    ensure_manifest(str(revision), str(manifest))
    assert ensure_manifest(str(revision), str(manifest), check_mode=True)["changed"] is False


def test_present_records_a_changed_file_and_names_the_differences(revision, tmp_path):
    manifest = tmp_path / "rev.manifest.json"
    ensure_manifest(str(revision), str(manifest))
    (revision / "config.json").write_text('{"model_type": "llama"}\n')
    (revision / "generation_config.json").write_text("{}\n")
    (revision / "tokenizer" / "tokenizer.json").unlink()
    result = ensure_manifest(str(revision), str(manifest))
    assert result["changed"] is True
    assert result["missing"] == ["tokenizer/tokenizer.json"]
    assert result["extra"] == ["generation_config.json"]
    assert [item["path"] for item in result["mismatched"]] == ["config.json"]
    assert parse_manifest(manifest.read_text()) == actual_of(revision)


def test_present_leaves_a_manifest_and_cache_inside_the_revision_out(revision):
    manifest = revision / ".manifest.json"
    cache = revision / ".cache[1].json"
    ensure_manifest(str(revision), str(manifest), cache_path=str(cache))
    assert cache.exists()
    result = ensure_manifest(str(revision), str(manifest), cache_path=str(cache))
    assert result["changed"] is False
    assert ".manifest.json" not in parse_manifest(manifest.read_text())


def test_present_refuses_a_link_that_leaves_the_revision(revision, tmp_path):
    (revision / "escape").symlink_to("/etc/hostname")
    manifest = tmp_path / "rev.manifest.json"
    with pytest.raises(ManifestError, match=r"escape \(symlink to /etc/hostname, outside the revision\)"):
        ensure_manifest(str(revision), str(manifest))
    assert not manifest.exists()


def test_present_refuses_an_empty_revision(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="holds no files"):
        ensure_manifest(str(tmp_path / "empty"), str(tmp_path / "empty.manifest.json"))


def test_present_refuses_a_path_that_is_not_a_directory(tmp_path):
    with pytest.raises(ManifestError, match="is not a directory"):
        ensure_manifest(str(tmp_path / "nope"), str(tmp_path / "nope.manifest.json"))


def test_present_names_an_unwritable_manifest_directory(revision, tmp_path):
    with pytest.raises(ManifestError, match="Cannot write the manifest"):
        ensure_manifest(str(revision), str(tmp_path / "no-such-dir" / "m.json"))


def test_present_warns_when_the_cache_cannot_be_written(revision, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = ensure_manifest(str(revision), str(tmp_path / "m.json"), cache_path=str(blocker / "c.json"))
    assert result["changed"] is True
    assert len(result["warnings"]) == 1
    assert "Could not write the hash cache" in result["warnings"][0]


# --- state=verified ------------------------------------------------------------------------

@pytest.fixture
def recorded(revision, tmp_path):
    manifest = tmp_path / "rev.manifest.json"
    ensure_manifest(str(revision), str(manifest), cache_path=str(tmp_path / "cache.json"))
    return revision, str(manifest), str(tmp_path / "cache.json")


def test_verified_passes_an_unchanged_revision_from_the_cache(recorded, reads):
    revision, manifest, cache = recorded
    reads["calls"] = 0
    result = verify_revision(str(revision), manifest, cache_path=cache)
    assert "failed" not in result
    assert (result["missing"], result["extra"], result["mismatched"]) == ([], [], [])
    assert (result["files_hashed"], result["files_cached"], result["changed"]) == (0, 4, False)
    assert reads["calls"] == 0


def test_verified_fails_on_a_corrupted_file(recorded):
    revision, manifest, cache = recorded
    target = revision / "model-00001-of-00002.safetensors"
    recorded_sha = sha256_of(target)
    with open(target, "r+b") as fileobj:
        fileobj.seek(1000)
        byte = fileobj.read(1)
        fileobj.seek(1000)
        fileobj.write(bytes([byte[0] ^ 1]))
    result = verify_revision(str(revision), manifest, cache_path=cache)
    assert result["failed"] is True
    assert "1 differ (model-00001-of-00002.safetensors)" in result["msg"]
    assert result["mismatched"] == [{
        "path": "model-00001-of-00002.safetensors",
        "expected": {"size": 300_000, "sha256": recorded_sha},
        "actual": {"size": 300_000, "sha256": sha256_of(target)},
    }]


def test_verified_fails_on_missing_and_extra_files(recorded):
    revision, manifest, cache = recorded
    (revision / "config.json").unlink()
    (revision / "tokenizer" / "added.py").write_text("import os\n")
    result = verify_revision(str(revision), manifest, cache_path=cache)
    assert result["failed"] is True
    assert (result["missing"], result["extra"]) == (["config.json"], ["tokenizer/added.py"])
    assert "1 missing (config.json)" in result["msg"]
    assert "1 extra (tokenizer/added.py)" in result["msg"]


def test_verified_reports_a_truncated_file_without_reading_it(recorded, reads):
    revision, manifest, cache = recorded
    target = revision / "model-00002-of-00002.safetensors"
    os.truncate(target, 1000)
    reads["calls"] = 0
    result = verify_revision(str(revision), manifest, cache_path=cache)
    assert result["failed"] is True
    assert result["mismatched"][0]["actual"] == {"size": 1000, "sha256": None}
    assert reads["calls"] == 0


def test_verified_against_expected_hashes_checks_only_the_listed_files(revision, reads):
    expected = {"model-00001-of-00002.safetensors": sha256_of(revision / "model-00001-of-00002.safetensors")}
    result = verify_revision(str(revision), "/nonexistent/manifest.json", expected=expected)
    assert "failed" not in result
    assert result["manifest"] is None
    assert result["extra"] == ["config.json", "model-00002-of-00002.safetensors", "tokenizer/tokenizer.json"]
    assert reads["calls"] == 1


def test_verified_against_expected_hashes_fails_on_a_wrong_digest(revision):
    result = verify_revision(
        str(revision), "/nonexistent/manifest.json",
        expected={"model-00001-of-00002.safetensors": SHA_A, "model-00003-of-00003.safetensors": SHA_B},
    )
    assert result["failed"] is True
    assert result["missing"] == ["model-00003-of-00003.safetensors"]
    assert result["mismatched"][0]["expected"] == {"size": None, "sha256": SHA_A}
    assert "the expected hashes" in result["msg"]


def test_verified_without_a_manifest_says_how_to_create_one(revision, tmp_path):
    with pytest.raises(ManifestError, match="Create it with state=present"):
        verify_revision(str(revision), str(tmp_path / "absent.json"))


def test_verified_refuses_a_link_that_leaves_the_revision(recorded, tmp_path):
    revision, manifest, cache = recorded
    os.replace(revision / "config.json", tmp_path / "config.json")
    (revision / "config.json").symlink_to(tmp_path / "config.json")
    with pytest.raises(ManifestError, match="config.json \\(symlink to .*outside the revision\\)"):
        verify_revision(str(revision), manifest, cache_path=cache)


def test_verified_in_check_mode_writes_no_cache(recorded, tmp_path):
    revision, manifest, cache = recorded
    os.unlink(cache)
    verify_revision(str(revision), manifest, cache_path=cache, check_mode=True)
    assert not os.path.exists(cache)
