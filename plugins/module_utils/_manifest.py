# -*- coding: utf-8 -*-
# Copyright: contributors to the llmops.gpu_stack collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Helpers for the model_manifest module: walk a model revision, hash its files in
parallel with a stat-keyed cache, and compare the result with a manifest.

Private to this collection (the leading underscore): the API may change without notice.
Pure Python, standard library only, Python 3.9 or later.
"""

from __future__ import annotations

import collections
import errno
import fnmatch
import glob
import hashlib
import json
import os
import posixpath
import re
import stat
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.llmops.gpu_stack.plugins.module_utils._fsutil import read_text, write_text_atomic

MANIFEST_FORMAT = "llmops.gpu_stack.model_manifest/1"
CACHE_FORMAT = "llmops.gpu_stack.model_manifest.cache/1"
# Hugging Face names LFS blobs by their sha256, so only sha256 can be checked against the hub.
ALGORITHM = "sha256"
DEFAULT_CACHE_DIR = "/var/cache/gpu_stack/manifest"
MANIFEST_SUFFIX = ".manifest.json"
# hashlib releases the GIL for every update() larger than 2 KiB, so threads hash files in
# parallel; 1 MiB reads keep the GIL hand-overs rare and each thread's buffer small. On one
# core, reads from 64 KiB to 8 MiB hash at the same rate (measured on the build machine);
# benchmarks/manifest_verify.py --buffer-sizes compares them with several threads.
DEFAULT_BUFFER_SIZE = 1024 * 1024
# A hash is cached only when the file's mtime and ctime are older than the moment reading
# started by this margin. Timestamps come from a coarse clock (one kernel tick, or 1-2 s on
# some file systems), so a write in the same tick as our read could leave size, mtime and
# ctime unchanged; such "racily clean" files are hashed again next time instead.
RACY_WINDOW_NS = 2 * 1000 * 1000 * 1000

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

FileEntry = collections.namedtuple("FileEntry", ["relpath", "path", "key"])
FileEntry.__doc__ = """A regular file of a revision.

relpath: POSIX path relative to the revision root (the manifest key).
path: absolute resolved path to open (the target of an in-tree symlink).
key: stat identity (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns).
"""

WalkResult = collections.namedtuple("WalkResult", ["files", "refused"])
HashResult = collections.namedtuple("HashResult", ["sha256", "key", "started_ns"])


class ManifestError(Exception):
    """A condition the caller must report; the message names the cause and the fix."""


def stat_key(st):
    """The identity of a file version: any write changes ctime, replacement changes inode."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def default_workers():
    """Number of CPUs this process may run on (honours cpusets and taskset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def default_manifest_path(revision):
    """``<revision>.manifest.json``: a sibling file, outside the tree that is served."""
    return os.path.normpath(os.path.abspath(revision)) + MANIFEST_SUFFIX


def default_cache_path(revision, cache_dir=DEFAULT_CACHE_DIR):
    """``<cache_dir>/<sha256 of the revision's resolved absolute path>.json``."""
    real = os.path.realpath(revision)
    name = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()
    return os.path.join(cache_dir, name + ".json")


def _is_excluded(relpath, exclude):
    return any(fnmatch.fnmatchcase(relpath, pattern) for pattern in exclude)


def _inside(root, path):
    return os.path.commonpath([root, path]) == root


def walk_revision(root, exclude=()):
    """List the regular files of a revision, sorted by relative POSIX path.

    ``exclude`` holds fnmatch patterns matched against relative paths (``*`` also matches
    ``/``); a directory that matches is not entered. A symlink whose target lies inside the
    revision and is a regular file is listed with that target's identity. Everything else
    that is not a regular file (links that leave the revision, dangling links, links to
    directories, sockets, FIFOs, devices) goes to ``refused`` as ``{path, reason}``.
    """
    root = os.path.realpath(root)
    files = []
    refused = []
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        with os.scandir(os.path.join(root, rel_dir)) as entries:
            for entry in entries:
                relpath = posixpath.join(rel_dir, entry.name) if rel_dir else entry.name
                if _is_excluded(relpath, exclude):
                    continue
                if entry.is_symlink():
                    _add_symlink(root, entry, relpath, files, refused)
                elif entry.is_dir(follow_symlinks=False):
                    pending.append(relpath)
                elif entry.is_file(follow_symlinks=False):
                    files.append(FileEntry(relpath, entry.path, stat_key(entry.stat(follow_symlinks=False))))
                else:
                    refused.append({"path": relpath, "reason": "not a regular file"})
    files.sort(key=lambda item: item.relpath)
    refused.sort(key=lambda item: item["path"])
    return WalkResult(files, refused)


def _add_symlink(root, entry, relpath, files, refused):
    link = os.readlink(entry.path)
    target = os.path.realpath(entry.path)
    if not _inside(root, target):
        refused.append({"path": relpath, "reason": "symlink to %s, outside the revision" % link})
        return
    try:
        st = os.stat(target)
    except OSError:
        refused.append({"path": relpath, "reason": "dangling symlink to %s" % link})
        return
    if stat.S_ISREG(st.st_mode):
        files.append(FileEntry(relpath, target, stat_key(st)))
    elif stat.S_ISDIR(st.st_mode):
        refused.append({"path": relpath, "reason": "symlink to a directory (%s)" % link})
    else:
        refused.append({"path": relpath, "reason": "symlink to %s, not a regular file" % link})


def hash_fileobj(fileobj, buffer_size=DEFAULT_BUFFER_SIZE):
    """sha256 hex digest of a binary file object, read with one reused buffer.

    This is the loop ``hashlib.file_digest`` (3.11+) runs, with a buffer size we choose and
    the same code on every Python from 3.9.
    """
    digest = hashlib.new(ALGORITHM)
    buf = bytearray(buffer_size)
    view = memoryview(buf)
    while True:
        size = fileobj.readinto(buf)
        if not size:
            break
        digest.update(view[:size])
    return digest.hexdigest()


def hash_file(path, buffer_size=DEFAULT_BUFFER_SIZE):
    """sha256 hex digest of the file at ``path``."""
    with open(path, "rb", buffering=0) as fileobj:
        return hash_fileobj(fileobj, buffer_size)


def _hash_entry(entry, buffer_size):
    """Hash one walked file, refusing it if it was swapped or changed while being read."""
    started_ns = time.time_ns()
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(entry.path, flags)
    except OSError as exc:
        raise ManifestError(
            "Cannot open %s: %s. If a download is still writing the revision, wait for it to "
            "finish and run again." % (entry.path, exc.strerror)
        )
    with os.fdopen(fd, "rb", buffering=0) as fileobj:
        before = os.fstat(fileobj.fileno())
        if not stat.S_ISREG(before.st_mode) or stat_key(before)[:2] != entry.key[:2]:
            raise ManifestError(
                "%s was replaced while the revision was being read. If a download is still "
                "writing the revision, wait for it to finish and run again." % entry.path
            )
        digest = hash_fileobj(fileobj, buffer_size)
        after = os.fstat(fileobj.fileno())
    if stat_key(after) != stat_key(before):
        raise ManifestError(
            "%s changed while it was being hashed. If a download is still writing the "
            "revision, wait for it to finish and run again." % entry.path
        )
    return HashResult(digest, stat_key(before), started_ns)


def hash_files(entries, workers=None, buffer_size=DEFAULT_BUFFER_SIZE):
    """Hash ``entries`` (FileEntry) in parallel; returns ``{entry.path: HashResult}``.

    sha256 is a sequential hash, so one file cannot be split across cores; parallelism is
    across files, the largest started first so that the last to finish is a small one.
    Threads suffice because hashlib and file reads release the GIL; they also avoid
    starting processes inside a module run. Entries that share an inode (an in-tree symlink
    and its target, hard links) are read once.
    """
    unique = {}
    for entry in entries:
        unique.setdefault(entry.key[:2], entry)
    jobs = sorted(unique.values(), key=lambda item: (-item.key[2], item.path))
    workers = min(workers or default_workers(), len(jobs))
    if workers <= 1:
        by_inode = {entry.key[:2]: _hash_entry(entry, buffer_size) for entry in jobs}
    else:
        executor = ThreadPoolExecutor(max_workers=workers)
        try:
            futures = [(entry.key[:2], executor.submit(_hash_entry, entry, buffer_size)) for entry in jobs]
            by_inode = {inode: future.result() for inode, future in futures}
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
    return {entry.path: by_inode[entry.key[:2]] for entry in entries}


def load_cache(path, root):
    """Cached ``{relpath: [dev, ino, size, mtime_ns, ctime_ns, sha256]}`` for ``root``.

    Returns ``(entries, warning)``. A cache that is missing, unreadable, of another format,
    not owned by the current user or writable by group or others is ignored (``{}``):
    whoever can write the cache could make a changed file pass. A cache recorded under
    another root is kept: entries are matched on device, inode, size, mtime and ctime, which
    a rename of the revision directory (``.incoming/x`` -> ``revisions/x``) leaves alone, so
    the first verification after a revision is published reads no file data again.
    ``root`` is accepted for the callers' symmetry with :func:`save_cache`.
    """
    del root
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return {}, None
        return {}, "Ignoring the hash cache %s: %s." % (path, exc.strerror)
    with os.fdopen(fd, "rb") as fileobj:
        st = os.fstat(fileobj.fileno())
        if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return {}, (
                "Ignoring the hash cache %s: it must be owned by uid %d and writable by its "
                "owner only. Remove it; the next run writes a new one." % (path, os.geteuid())
            )
        try:
            data = json.loads(fileobj.read().decode("utf-8"))
        except ValueError:
            return {}, "Ignoring the hash cache %s: it is not valid JSON." % path
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        return {}, None
    entries = data.get("files")
    if not isinstance(entries, dict):
        return {}, None
    return {
        rel: value for rel, value in entries.items()
        if isinstance(value, list) and len(value) == 6 and isinstance(value[5], str)
    }, None


def save_cache(path, root, entries):
    """Write the cache atomically (mode 0600, parent created 0700); returns True if written."""
    text = dumps({"format": CACHE_FORMAT, "root": root, "files": entries})
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, mode=0o700, exist_ok=True)
    return write_text_atomic(path, text, mode=0o600)


def dumps(data):
    """Canonical JSON text: sorted keys, two-space indent, ASCII only, final newline."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=True) + "\n"


def build_manifest(files):
    """Manifest dict from ``{relpath: {"size": int, "sha256": str}}``; no timestamps, so the
    text only changes when the files do."""
    return {
        "format": MANIFEST_FORMAT,
        "algorithm": ALGORITHM,
        "file_count": len(files),
        "total_bytes": sum(item["size"] for item in files.values()),
        "files": {rel: {"size": item["size"], "sha256": item["sha256"]} for rel, item in files.items()},
    }


def parse_manifest(text, source="manifest"):
    """``{relpath: {"size", "sha256"}}`` from manifest text; ManifestError if malformed."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ManifestError("%s is not valid JSON (%s). Recreate it with state=present." % (source, exc))
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise ManifestError(
            "%s is not a %s manifest. Recreate it with state=present." % (source, MANIFEST_FORMAT)
        )
    files = data.get("files")
    if not isinstance(files, dict):
        raise ManifestError("%s has no 'files' mapping. Recreate it with state=present." % source)
    result = {}
    for rel, item in files.items():
        ok = all((
            isinstance(item, dict),
            isinstance(item, dict) and isinstance(item.get("size"), int),
            isinstance(item, dict) and isinstance(item.get("sha256"), str) and _SHA256_RE.match(item["sha256"]),
            _is_safe_relpath(rel),
        ))
        if not ok:
            raise ManifestError(
                "%s: entry %r is not {size, sha256} under a relative path. Recreate the "
                "manifest with state=present." % (source, rel)
            )
        result[rel] = {"size": item["size"], "sha256": item["sha256"]}
    return result


def _is_safe_relpath(relpath):
    if not isinstance(relpath, str):
        return False
    return all((
        relpath != "",
        not relpath.startswith("/"),
        posixpath.normpath(relpath) == relpath,
        relpath != "..",
        not relpath.startswith("../"),
    ))


def parse_expected(expected):
    """``{relpath: {"size": None, "sha256": str}}`` from a user's ``{relpath: sha256}``.

    Accepts upper case and a ``sha256:`` prefix (as in Git LFS pointers); refuses paths that
    are absolute, not normalised or leave the revision.
    """
    result = {}
    problems = []
    for rel, value in expected.items():
        digest = value.strip().lower() if isinstance(value, str) else ""
        if digest.startswith("sha256:"):
            digest = digest[len("sha256:"):]
        if not _is_safe_relpath(rel):
            problems.append("%r is not a normalised path inside the revision" % (rel,))
        elif not _SHA256_RE.match(digest):
            problems.append("%r: %r is not a sha256 hex digest" % (rel, value))
        else:
            result[rel] = {"size": None, "sha256": digest}
    if problems:
        raise ManifestError(
            "expected must map relative paths to sha256 hex digests (64 hex characters, as the "
            "hub lists for LFS files): %s." % "; ".join(problems)
        )
    return result


def diff_files(expected, actual):
    """Compare ``{relpath: {"size", "sha256"}}`` maps; returns (missing, extra, mismatched).

    A ``size`` or ``sha256`` of None in ``expected`` is not compared. A None ``sha256`` in
    ``actual`` means the file was not hashed because its size already differs.
    ``mismatched`` items are ``{path, expected: {size, sha256}, actual: {size, sha256}}``.
    """
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    mismatched = []
    for rel in sorted(set(expected) & set(actual)):
        want, have = expected[rel], actual[rel]
        size_differs = want.get("size") is not None and want["size"] != have["size"]
        if size_differs or want["sha256"] != have["sha256"]:
            mismatched.append({
                "path": rel,
                "expected": {"size": want.get("size"), "sha256": want["sha256"]},
                "actual": {"size": have["size"], "sha256": have["sha256"]},
            })
    return missing, extra, mismatched


class Scan(object):
    """The result of hashing (part of) a revision, with the counters the module returns."""

    def __init__(self, refused):
        self.refused = refused
        self.actual = {}
        self.files_hashed = 0
        self.files_cached = 0
        self.bytes_hashed = 0
        self.hash_seconds = 0.0
        self.warnings = []


def scan_revision(root, exclude=(), select=None, expected_sizes=None, workers=None,
                  cache_path=None, update_cache=True, buffer_size=DEFAULT_BUFFER_SIZE):
    """Walk ``root`` and hash its files, reusing cached hashes of unchanged files.

    ``select``: relative paths to hash (None: all). ``expected_sizes``: ``{relpath: size}``;
    a selected file whose size differs is reported with sha256 None and not read.
    ``cache_path`` None disables the cache; ``update_cache`` False leaves it untouched.
    Files that are not hashed appear in ``Scan.actual`` with their size only (sha256 None).
    """
    root = os.path.realpath(root)
    walk = walk_revision(root, exclude)
    scan = Scan(walk.refused)
    cached, warning = load_cache(cache_path, root) if cache_path else ({}, None)
    if warning:
        scan.warnings.append(warning)
    expected_sizes = expected_sizes or {}
    new_cache = {}
    to_hash = []
    for entry in walk.files:
        size = entry.key[2]
        scan.actual[entry.relpath] = {"size": size, "sha256": None}
        hit = cached.get(entry.relpath)
        valid = hit is not None and tuple(hit[:5]) == entry.key
        if valid:
            new_cache[entry.relpath] = hit
        wanted = select is None or entry.relpath in select
        if not wanted or expected_sizes.get(entry.relpath, size) != size:
            continue
        if valid:
            scan.actual[entry.relpath]["sha256"] = hit[5]
            scan.files_cached += 1
        else:
            to_hash.append(entry)
    started = time.perf_counter()
    results = hash_files(to_hash, workers, buffer_size)
    scan.hash_seconds = time.perf_counter() - started
    scan.files_hashed = len(to_hash)
    scan.bytes_hashed = sum({result.key[:2]: result.key[2] for result in results.values()}.values())
    for entry in to_hash:
        result = results[entry.path]
        scan.actual[entry.relpath]["sha256"] = result.sha256
        settled = max(result.key[3], result.key[4]) < result.started_ns - RACY_WINDOW_NS
        if settled:
            new_cache[entry.relpath] = list(result.key) + [result.sha256]
    if cache_path and update_cache and new_cache != cached:
        try:
            save_cache(cache_path, root, new_cache)
        except OSError as exc:
            scan.warnings.append(
                "Could not write the hash cache %s (%s); the next run hashes every file again. "
                "Set cache_path to a writable location or cache=false." % (cache_path, exc.strerror)
            )
    return scan


def _names(paths, limit=10):
    shown = ", ".join(paths[:limit])
    if len(paths) > limit:
        shown += " and %d more" % (len(paths) - limit)
    return shown


def _refused_message(root, refused):
    items = ["%s (%s)" % (item["path"], item["reason"]) for item in refused]
    return (
        "%s holds entries that are not regular files inside the revision: %s. Store the model "
        "as regular files (for Hugging Face, download with local_dir rather than into the "
        "symlinked hub cache), or list these paths in exclude." % (root, _names(items))
    )


def _counters(scan, root, started):
    seconds = time.perf_counter() - started
    return {
        "path": root,
        "files_hashed": scan.files_hashed,
        "files_cached": scan.files_cached,
        "bytes_hashed": scan.bytes_hashed,
        "seconds": round(seconds, 3),
        "throughput": int(scan.bytes_hashed / scan.hash_seconds) if scan.hash_seconds > 0 else 0,
        "warnings": scan.warnings,
    }


def _check_root(root):
    if not os.path.isdir(root):
        raise ManifestError(
            "%s is not a directory. Set path to the revision directory that holds the model "
            "files." % root
        )


def _scan(root, **kwargs):
    try:
        return scan_revision(root, **kwargs)
    except OSError as exc:
        raise ManifestError(
            "Cannot read %s: %s. Run the task as a user that can read the whole revision "
            "(become: true), or exclude the unreadable path." % (exc.filename or root, exc.strerror)
        )


def _auto_exclude(root, paths, exclude):
    """Keep the manifest and the cache out of the files they describe."""
    patterns = list(exclude)
    for path in paths:
        if path and _inside(root, os.path.realpath(path)):
            relpath = os.path.relpath(os.path.realpath(path), root).replace(os.sep, "/")
            patterns.append(glob.escape(relpath))
    return patterns


def ensure_manifest(path, manifest_path, exclude=(), workers=None, cache_path=None,
                    check_mode=False, buffer_size=DEFAULT_BUFFER_SIZE):
    """state=present: hash the revision and write its manifest if the content changed.

    Returns the module result (``changed``, ``diff``, counters, and missing / extra /
    mismatched relative to the manifest it replaces). Nothing is written in check mode.
    """
    started = time.perf_counter()
    _check_root(path)
    root = os.path.realpath(path)
    scan = _scan(
        root, exclude=_auto_exclude(root, [manifest_path, cache_path], exclude), workers=workers,
        cache_path=cache_path, update_cache=not check_mode, buffer_size=buffer_size,
    )
    if scan.refused:
        raise ManifestError(_refused_message(root, scan.refused))
    if not scan.actual:
        raise ManifestError(
            "%s holds no files (after exclude). Download the model first or check path and "
            "exclude." % root
        )
    manifest = build_manifest(scan.actual)
    text = dumps(manifest)
    before = read_text(manifest_path)
    changed = before != text
    previous = {}
    if before is not None:
        try:
            previous = parse_manifest(before, manifest_path)
        except ManifestError:
            previous = {}
    missing, extra, mismatched = diff_files(previous, scan.actual) if previous else ([], [], [])
    if changed and not check_mode:
        try:
            write_text_atomic(manifest_path, text)
        except OSError as exc:
            raise ManifestError(
                "Cannot write the manifest %s: %s. Create its directory or make it writable, "
                "or set manifest to another path." % (manifest_path, exc.strerror)
            )
    result = _counters(scan, root, started)
    result.update({
        "changed": changed,
        "manifest": manifest_path,
        "file_count": manifest["file_count"],
        "total_bytes": manifest["total_bytes"],
        "missing": missing,
        "extra": extra,
        "mismatched": mismatched,
        "diff": {
            "before": before or "", "after": text,
            "before_header": manifest_path, "after_header": manifest_path,
        },
    })
    return result


def verify_revision(path, manifest_path, expected=None, exclude=(), workers=None,
                    cache_path=None, check_mode=False, buffer_size=DEFAULT_BUFFER_SIZE):
    """state=verified: compare the revision with its manifest, or with ``expected``.

    With a manifest every file counts: missing, extra and mismatched files all fail. With
    ``expected`` ({relpath: sha256}, e.g. the hub's LFS hashes) only those files are hashed;
    the others are listed in ``extra`` for information and do not fail. Returns the module
    result with ``failed`` and ``msg`` set when the revision does not match.
    """
    started = time.perf_counter()
    _check_root(path)
    root = os.path.realpath(path)
    if expected is not None:
        wanted = parse_expected(expected)
        source = "the expected hashes"
    else:
        text = read_text(manifest_path)
        if text is None:
            raise ManifestError(
                "Manifest %s does not exist. Create it with state=present, set manifest, or "
                "pass the published hashes in expected." % manifest_path
            )
        wanted = parse_manifest(text, manifest_path)
        source = "its manifest %s" % manifest_path
    scan = _scan(
        root, exclude=_auto_exclude(root, [manifest_path, cache_path], exclude), select=set(wanted),
        expected_sizes={rel: item["size"] for rel, item in wanted.items() if item["size"] is not None},
        workers=workers, cache_path=cache_path, update_cache=not check_mode,
        buffer_size=buffer_size,
    )
    if scan.refused:
        raise ManifestError(_refused_message(root, scan.refused))
    missing, extra, mismatched = diff_files(wanted, scan.actual)
    result = _counters(scan, root, started)
    result.update({
        "changed": False,
        "manifest": None if expected is not None else manifest_path,
        "file_count": len(scan.actual),
        "total_bytes": sum(item["size"] for item in scan.actual.values()),
        "missing": missing,
        "extra": extra,
        "mismatched": mismatched,
    })
    problems = []
    if missing:
        problems.append("%d missing (%s)" % (len(missing), _names(missing)))
    if mismatched:
        problems.append("%d differ (%s)" % (len(mismatched), _names([m["path"] for m in mismatched])))
    if extra and expected is None:
        problems.append("%d extra (%s)" % (len(extra), _names(extra)))
    if problems:
        result["failed"] = True
        result["msg"] = (
            "%s does not match %s: %s. Download the listed files again (extra files: remove "
            "them), or, if the change is intended, record it with state=present."
            % (root, source, "; ".join(problems))
        )
    return result
