# -*- coding: utf-8 -*-
# Copyright: contributors to the llmops.gpu_stack collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers of the model_storage role's modules: input rules, the on-disk layout of model
revisions, the atomic `current` switch, retention with zstd archives, resumable HTTP
downloads and the Hugging Face download plan.

Private to this collection (the leading underscore): the API may change without notice.
Standard library plus ansible.module_utils only; Python 3.9 or later on the managed host.
Path shape, file-system type and free-space rules come from _storage, hashing from the
model_manifest module: nothing here re-implements them.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import http.client
import json
import os
import posixpath
import re
import shutil
import stat
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _storage

# Names of models and revisions become directory names and parts of container mounts:
# ASCII letters, digits, '.', '_' and '-', starting with a letter or digit (so never a hidden
# name such as .incoming, never lost+found), no '..' anywhere.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
DEVICE_RE = re.compile(r"^/dev/[A-Za-z0-9][A-Za-z0-9/_.:+-]*$")
URL_RE = re.compile(r"^https?://[^\s/]+(/\S*)?$")
SOURCE_TYPES = ("controller", "url", "hf")

INCOMING = ".incoming"
HISTORY_FORMAT = "llmops.gpu_stack.model_storage.history/1"
HISTORY_LIMIT = 100
PART_SUFFIX = ".part"
CHUNK = 1024 * 1024
DM_CONTROL = "/dev/mapper/control"


class StorageError(Exception):
    """A condition the caller reports; the message names the cause and the fix."""


# --- input rules --------------------------------------------------------------------------

def problem(field, value, text, fix):
    return {"field": field, "value": value, "problem": text, "fix": fix}


def check_name(field, value, kind="name"):
    """Problems with a model or revision name (list of problem dicts)."""
    text = "" if value is None else str(value)
    if NAME_RE.match(text) and ".." not in text:
        return []
    return [problem(
        field, text,
        "%r is not a valid %s: ASCII letters, digits, '.', '_' and '-' only, starting with a "
        "letter or digit, at most 128 characters, no '..', no spaces or '/'" % (text, kind),
        "rename it, e.g. %r" % suggest_name(text),
    )]


def suggest_name(text):
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text).encode("ascii", "ignore").decode("ascii"))
    cleaned = re.sub(r"\.{2,}", ".", cleaned).strip(".-_")
    return (cleaned or "model")[:128]


def check_relpath(field, value):
    """Problems with a file path inside a revision (relative, ASCII, no spaces, no '..')."""
    text = "" if value is None else str(value)
    issues = []
    if not text or text.startswith("/") or posixpath.normpath(text) != text or text in (".", ".."):
        issues.append("it must be a normalised relative path inside the revision")
    if any(ord(ch) > 127 for ch in text):
        issues.append("it contains non-ASCII characters")
    if re.search(r"\s", text):
        issues.append("it contains whitespace")
    if ".." in text.split("/"):
        issues.append("it has a '..' component")
    if text.endswith(PART_SUFFIX):
        issues.append("the %s suffix is reserved for unfinished downloads" % PART_SUFFIX)
    if any(part.startswith(".") for part in text.split("/")):
        issues.append("hidden names (starting with '.') are reserved")
    if not issues:
        return []
    return [problem(field, text, "%r is not a valid file path: %s" % (text, "; ".join(issues)),
                    "use a path such as 'model-00001-of-00002.safetensors' or 'tokenizer/vocab.json'")]


def check_path(field, value):
    """_storage.check_model_path problems as problem dicts."""
    return [problem(field, value, item["problem"], item["fix"]) for item in _storage.check_model_path(value)]


def _url_basename(url):
    return posixpath.basename(url.split("?", 1)[0].split("#", 1)[0].rstrip("/"))


def url_file_path(item):
    """The relative path a url source file lands at: its `path`, or the URL's last segment."""
    return item.get("path") or _url_basename(item.get("url") or "")


def validate_source(field, source):
    """Problems with one model's source (type-specific required keys and their shape)."""
    found = []
    if not isinstance(source, dict):
        return [problem(field, source, "the source must be a mapping with a 'type'",
                        "set source: {type: controller|url|hf, ...}")]
    kind = source.get("type")
    if kind not in SOURCE_TYPES:
        return [problem(field + ".type", kind, "%r is not a source type" % (kind,),
                        "use one of %s" % ", ".join(SOURCE_TYPES))]
    if kind == "controller":
        if not source.get("path"):
            found.append(problem(field + ".path", source.get("path"), "a controller source needs 'path'",
                                 "set path to a file or directory on the control node"))
        found.extend(_check_sha256_map(field + ".sha256", source.get("sha256")))
    elif kind == "url":
        files = source.get("files") or []
        if not files:
            found.append(problem(field + ".files", files, "a url source needs a non-empty 'files' list",
                                 "list each file as {url, sha256, path (optional), size (optional)}"))
        seen = set()
        for index, item in enumerate(files):
            where = "%s.files[%d]" % (field, index)
            if not isinstance(item, dict):
                found.append(problem(where, item, "each file must be a mapping", "use {url, sha256}"))
                continue
            url = item.get("url") or ""
            if not URL_RE.match(url):
                found.append(problem(where + ".url", url, "%r is not an http(s) URL" % url,
                                     "give the full https:// URL of the file"))
            digest = str(item.get("sha256") or "").lower()
            if not SHA256_RE.match(digest):
                found.append(problem(
                    where + ".sha256", item.get("sha256"),
                    "every downloaded file needs its sha256 (64 hex digits): a URL alone proves nothing about the bytes",
                    "take it from the publisher (for the hub: the file's LFS sha256) or `sha256sum` of a trusted copy"))
            rel = url_file_path(item)
            found.extend(check_relpath(where + ".path", rel))
            if rel in seen:
                found.append(problem(where + ".path", rel, "two files land at %r" % rel, "give each file its own path"))
            seen.add(rel)
            size = item.get("size")
            if size is not None and (not isinstance(size, int) or size < 0):
                found.append(problem(where + ".size", size, "size must be a byte count", "omit it or give the size in bytes"))
    else:
        repo_id = source.get("repo_id") or ""
        if not REPO_ID_RE.match(repo_id):
            found.append(problem(field + ".repo_id", repo_id, "%r is not a hub repository id" % repo_id,
                                 "use '<owner>/<name>', e.g. deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"))
        commit = str(source.get("commit") or "")
        if not COMMIT_RE.match(commit):
            found.append(problem(
                field + ".commit", commit,
                "the hub revision must be pinned to a full commit hash (40 hex digits); a branch or tag can move",
                "take the commit from the model's 'Files and versions' history or the hub API"))
    return found


def _check_sha256_map(field, value):
    if value in (None, {}):
        return []
    if not isinstance(value, dict):
        return [problem(field, value, "must map relative paths to sha256 digests", "use {path: sha256}")]
    found = []
    for rel, digest in value.items():
        found.extend(check_relpath("%s[%s]" % (field, rel), rel))
        if not SHA256_RE.match(str(digest or "").lower()):
            found.append(problem("%s[%s]" % (field, rel), digest, "not a sha256 hex digest", "give 64 hex digits"))
    return found


def validate_models(models, field="models"):
    """Problems with the list of models: names, revisions, sources, duplicates."""
    found = []
    seen = set()
    for index, model in enumerate(models or []):
        where = "%s[%d]" % (field, index)
        if not isinstance(model, dict):
            found.append(problem(where, model, "each model must be a mapping", "use {name, revision, source}"))
            continue
        name = model.get("name")
        found.extend(check_name(where + ".name", name, "model name"))
        found.extend(check_name(where + ".revision", model.get("revision"), "revision name"))
        if name in seen:
            found.append(problem(where + ".name", name, "the model %r is listed twice" % name,
                                 "list each model once, with the revision to serve"))
        seen.add(name)
        found.extend(validate_source(where + ".source", model.get("source")))
    return found


def render(problems, prefix=""):
    """One line per problem, the field named with the caller's variable prefix."""
    return ["%s%s: %s (fix: %s)" % (prefix, item["field"], item["problem"], item["fix"]) for item in problems]


# --- block devices ------------------------------------------------------------------------

def parse_blkid_export(text):
    """`blkid -p -o export` output as a dict (TYPE, UUID, PTTYPE, USAGE, ...)."""
    result = {}
    for line in (text or "").splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            result[key.strip()] = value.strip()
    return result


def device_signature(blkid):
    """What a device holds according to blkid: ('filesystem'|'crypto'|'partition_table'|'other'|None, name)."""
    if blkid.get("PTTYPE") and not blkid.get("TYPE"):
        return "partition_table", blkid["PTTYPE"]
    kind = blkid.get("TYPE")
    if not kind:
        return None, None
    if kind == "crypto_LUKS":
        return "crypto", kind
    return ("filesystem" if blkid.get("USAGE", "filesystem") == "filesystem" else "other"), kind


def check_device_content(field, device, blkid, fstype, luks, force_format, force_field, prefix=""):
    """Problems when formatting `device` would destroy something (unless force_format)."""
    kind, name = device_signature(blkid)
    if kind is None:
        return []
    wanted = "crypto_LUKS" if luks else fstype
    if name == wanted:
        return []
    if force_format:
        return []
    what = {"partition_table": "a %s partition table" % name, "crypto": "a LUKS container",
            "filesystem": "a %s file system" % name}.get(kind, "%s data (%s)" % (name, kind))
    return [problem(
        field, device,
        "%s already holds %s; formatting it as %s would destroy it" % (device, what, "LUKS2" if luks else fstype),
        "point %s%s at an empty device, or set %s%s: true to overwrite it" % (prefix, field, prefix, force_field),
    )]


def mounted_devices(mountinfo_text):
    """{source: [mount points]} from mountinfo text."""
    result = {}
    for mount in _storage.parse_mountinfo(mountinfo_text):
        result.setdefault(mount["source"], []).append(mount["mount_point"])
    return result


def is_within(path, parent):
    path = os.path.normpath(path)
    parent = os.path.normpath(parent)
    return path == parent or path.startswith(parent.rstrip("/") + "/")


# --- layout -------------------------------------------------------------------------------

class Layout(object):
    """Where a model's files live under the storage root."""

    def __init__(self, root, name):
        self.root = os.path.normpath(root)
        self.name = name
        self.model_dir = os.path.join(self.root, name)
        self.revisions_dir = os.path.join(self.model_dir, "revisions")
        self.manifests_dir = os.path.join(self.model_dir, "manifests")
        self.archive_dir = os.path.join(self.model_dir, "archive")
        self.current = os.path.join(self.model_dir, "current")
        self.history = os.path.join(self.model_dir, "history.json")
        self.incoming_root = os.path.join(self.root, INCOMING)
        self.incoming_dir = os.path.join(self.incoming_root, name)

    def revision(self, rev):
        return os.path.join(self.revisions_dir, rev)

    def manifest(self, rev):
        return os.path.join(self.manifests_dir, rev + ".json")

    def archive(self, rev):
        return os.path.join(self.archive_dir, rev + ".tar.zst")

    def incoming(self, rev):
        return os.path.join(self.incoming_dir, rev)

    def link_target(self, rev):
        # Relative, so the tree can be mounted or moved elsewhere as a whole.
        return posixpath.join("revisions", rev)


def _listdir(path):
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def read_current(layout):
    """The revision `current` points at, or None. StorageError when `current` is not a link
    into revisions/ (something else owns the name)."""
    try:
        target = os.readlink(layout.current)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise StorageError(
                "%s exists and is not a symlink. Move it away: the role manages 'current' as a link "
                "to revisions/<revision>." % layout.current)
        raise
    parts = target.split("/")
    if len(parts) == 2 and parts[0] == "revisions" and NAME_RE.match(parts[1]):
        return parts[1]
    raise StorageError(
        "%s points at %r, not at revisions/<revision>. Remove the link; the next run recreates it."
        % (layout.current, target))


def dir_bytes(path):
    return _storage.used_bytes_under(path) if os.path.isdir(path) else 0


def model_state(layout):
    """What is on disk for a model: published revisions, manifests, archives, current,
    activation history and unfinished downloads (bytes)."""
    revisions = [name for name in _listdir(layout.revisions_dir) if os.path.isdir(layout.revision(name))]
    return {
        "current": read_current(layout),
        "revisions": revisions,
        "manifests": [n[:-5] for n in _listdir(layout.manifests_dir) if n.endswith(".json")],
        "archives": [n[:-8] for n in _listdir(layout.archive_dir) if n.endswith(".tar.zst")],
        "history": load_history(layout.history),
        "incoming": dict((name, dir_bytes(layout.incoming(name))) for name in _listdir(layout.incoming_dir)
                         if os.path.isdir(layout.incoming(name)) and not name.startswith(".")),
    }


# --- history and retention ----------------------------------------------------------------

def load_history(path):
    """Revisions in the order they became current (oldest first); [] if absent or unreadable."""
    try:
        with open(path, "r", encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict) or data.get("format") != HISTORY_FORMAT:
        return []
    return [item for item in data.get("activations", []) if isinstance(item, str) and NAME_RE.match(item)]


def history_text(activations):
    data = {"format": HISTORY_FORMAT, "activations": activations[-HISTORY_LIMIT:]}
    return json.dumps(data, sort_keys=True, indent=2) + "\n"


def record_activation(history, revision):
    """History with `revision` as the latest activation (unchanged if it already is)."""
    if history and history[-1] == revision:
        return list(history)
    return list(history) + [revision]


def plan_retention(current, present, history, keep):
    """(kept, pruned) among the `present` revisions: `current` plus the `keep` revisions that
    were current most recently. Revisions never recorded in the history count as older than
    any recorded one (newest name first among them)."""
    order = []
    for rev in reversed(history):
        if rev not in order:
            order.append(rev)
    order.extend(sorted((rev for rev in present if rev not in order), reverse=True))
    ranked = [rev for rev in order if rev in present and rev != current]
    kept = ([current] if current in present else []) + ranked[:max(0, int(keep))]
    pruned = list(ranked[max(0, int(keep)):])
    return kept, pruned


# --- writing ------------------------------------------------------------------------------

def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path, text, mode, uid=0, gid=0):
    """Write through a temporary file, fsync and rename; False if the content was already there."""
    try:
        with open(path, "r", encoding="utf-8") as handle:
            if handle.read() == text:
                return False
    except FileNotFoundError:
        pass
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chown(tmp, uid, gid)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(directory)
    return True


def switch_current(layout, revision):
    """Point `current` at revisions/<revision> by renaming a new symlink over it, so a reader
    resolves either the old or the new revision, never a mix or nothing. False if it already
    pointed there."""
    if read_current(layout) == revision and os.path.isdir(layout.revision(revision)):
        return False
    if not os.path.isdir(layout.revision(revision)):
        raise StorageError("%s is not a published revision; nothing to switch to." % layout.revision(revision))
    tmp = os.path.join(layout.model_dir, ".current.%d.tmp" % os.getpid())
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(layout.link_target(revision), tmp)
    try:
        os.replace(tmp, layout.current)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(layout.model_dir)
    return True


def publish(layout, revision):
    """Move a verified download from .incoming into revisions/ with one rename."""
    source, target = layout.incoming(revision), layout.revision(revision)
    if os.path.lexists(target):
        raise StorageError("%s already exists; it is published already." % target)
    if not os.path.isdir(source):
        raise StorageError(
            "%s does not exist: the revision was neither published nor fetched. Run the role's fetch "
            "steps (do not skip the 'fetch' tag)." % source)
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            raise StorageError(
                "%s and %s are on different file systems, so the revision cannot be published with "
                "one atomic rename. Keep the model directory on the storage root's file system." % (source, target))
        raise
    fsync_dir(layout.revisions_dir)
    return True


# --- archives -----------------------------------------------------------------------------

def tar_zstd_create_cmd(revisions_dir, revision, dest, level, threads=0):
    """tar piping through zstd; multi-threaded (-T0 = one thread per core)."""
    return ["tar", "--create", "--file", dest, "--use-compress-program",
            "zstd -q -T%d -%d" % (threads, level), "--directory", revisions_dir, "--", revision]


def tar_zstd_extract_cmd(archive, dest_dir):
    return ["tar", "--extract", "--file", archive, "--use-compress-program", "zstd -q -d",
            "--directory", dest_dir, "--no-same-owner", "--no-overwrite-dir"]


def zstd_test_cmd(archive):
    return ["zstd", "-q", "-t", archive]


def archive_revision(layout, revision, level, run):
    """Compress revisions/<revision> into archive/<revision>.tar.zst (temporary name, integrity
    test, rename, mode 0600), then remove the directory. `run(argv)` returns (rc, out, err).
    Returns True. A previous archive of the same revision is tested and reused."""
    final = layout.archive(revision)
    if not os.path.isdir(layout.archive_dir):
        os.mkdir(layout.archive_dir, 0o700)
        os.chmod(layout.archive_dir, 0o700)
    if not os.path.exists(final):
        tmp = os.path.join(layout.archive_dir, ".%s.tar.zst.tmp" % revision)
        if os.path.exists(tmp):
            os.unlink(tmp)
        rc, _out, err = run(tar_zstd_create_cmd(layout.revisions_dir, revision, tmp, level))
        if rc != 0:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise StorageError("Archiving %s failed: %s" % (layout.revision(revision), err.strip()))
        _test_archive(tmp, run)
        os.chmod(tmp, 0o600)
        os.replace(tmp, final)
        fsync_dir(layout.archive_dir)
    else:
        _test_archive(final, run)
    shutil.rmtree(layout.revision(revision))
    return True


def _test_archive(path, run):
    rc, _out, err = run(zstd_test_cmd(path))
    if rc != 0:
        raise StorageError(
            "The archive %s does not pass `zstd -t` (%s); the revision is kept. Remove the archive "
            "and run again." % (path, err.strip()))


def restore_archive(layout, revision, run):
    """Extract archive/<revision>.tar.zst into .incoming/<name>/<revision> (through a temporary
    directory and a rename). The caller verifies it against the revision's manifest."""
    archive = layout.archive(revision)
    if not os.path.isfile(archive):
        raise StorageError("%s does not exist; nothing to restore." % archive)
    os.makedirs(layout.incoming_dir, mode=0o700, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".restore-%s." % revision, dir=layout.incoming_dir)
    try:
        rc, _out, err = run(tar_zstd_extract_cmd(archive, staging))
        if rc != 0:
            raise StorageError("Extracting %s failed: %s. The archive may be damaged." % (archive, err.strip()))
        extracted = os.path.join(staging, revision)
        if not os.path.isdir(extracted) or _listdir(staging) != [revision]:
            raise StorageError("%s does not hold exactly the directory %s/." % (archive, revision))
        target = layout.incoming(revision)
        if os.path.lexists(target):
            shutil.rmtree(target)
        os.rename(extracted, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


# --- space --------------------------------------------------------------------------------

def space_check(path, total_bytes, present_bytes, margin_fraction, margin_min_bytes, free=None):
    """Whether `total_bytes` of which `present_bytes` are already there fit on the file system
    of `path` with the margin. Returns a dict with the numbers and `ok`."""
    if free is None:
        free = _storage.free_bytes(path)
    needed, missing, margin = _storage.disk_needed(total_bytes, present_bytes, margin_fraction, margin_min_bytes)
    return {"ok": free >= needed, "free_bytes": free, "needed_bytes": needed, "missing_bytes": missing,
            "margin_bytes": margin, "total_bytes": total_bytes, "present_bytes": present_bytes}


def human(num):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(num) < 1024 or unit == "TiB":
            return ("%d %s" % (num, unit)) if unit == "B" else ("%.1f %s" % (num, unit))
        num /= 1024.0
    return "%d B" % num


def space_message(what, path, check):
    return (
        "%s does not fit: it needs %s more on the file system of %s (%s to fetch + %s margin; %s of %s "
        "already there), and only %s is free. Nothing was downloaded. Free space there (lower the "
        "revisions kept), enlarge the volume, or lower the margin." % (
            what, human(check["needed_bytes"]), path, human(check["missing_bytes"]), human(check["margin_bytes"]),
            human(check["present_bytes"]), human(check["total_bytes"]), human(check["free_bytes"])))


# --- files in a download directory --------------------------------------------------------

def makedirs_owned(path, stop, mode=0o750, gid=0):
    """Create `path` and its missing parents below `stop` with mode and root:gid."""
    missing = []
    current = path
    while not os.path.isdir(current) and is_within(current, stop) and current != stop:
        missing.append(current)
        current = os.path.dirname(current)
    for directory in reversed(missing):
        os.mkdir(directory, mode)
        os.chown(directory, 0, gid)
        os.chmod(directory, mode)


def present_bytes(dest, files):
    """Bytes of `files` ({path, size}) already in `dest`: finished files count in full when
    their size is right, unfinished `.part` files count up to the expected size."""
    total = 0
    for item in files:
        final = os.path.join(dest, item["path"])
        size = item.get("size")
        try:
            st = os.stat(final)
            if size is None or st.st_size == size:
                total += st.st_size
                continue
        except FileNotFoundError:
            pass
        try:
            part = os.stat(final + PART_SUFFIX).st_size
            total += min(part, size) if size is not None else part
        except FileNotFoundError:
            pass
    return total


def unlisted_files(dest, listed):
    """Regular files under `dest` that are neither a listed path nor its `.part`."""
    keep = set(listed) | set(rel + PART_SUFFIX for rel in listed)
    found = []
    for base, _dirs, names in os.walk(dest):
        for name in names:
            rel = os.path.relpath(os.path.join(base, name), dest).replace(os.sep, "/")
            if rel not in keep:
                found.append(rel)
    return sorted(found)


# --- HTTP ---------------------------------------------------------------------------------

class Interrupted(Exception):
    """A transfer stopped before the file was complete; the .part file keeps what arrived."""


def parse_content_range(value):
    """(start, end, total) from 'bytes START-END/TOTAL' (total None for '*'), or None."""
    match = re.match(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", value or "")
    if not match:
        return None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), int(match.group(2)), total


def fetch_http_file(opener, url, dest, rel, size=None, headers=None, timeout=60, gid=0, mode=0o640,
                    chunk=CHUNK, stop=None):
    """Download `url` to dest/rel, resuming dest/rel.part with a Range request.

    `opener(url, headers, timeout, method)` returns an object with getcode(), headers and
    read(n), or raises an exception with a `code` attribute for HTTP errors (as
    ansible.module_utils.urls.open_url does). A finished file (right size) is not fetched
    again. The file is renamed from .part only when complete: the size the server announced
    (or `size`) has arrived. Returns {path, status: present|downloaded|resumed, bytes}.
    """
    final = os.path.join(dest, rel)
    part = final + PART_SUFFIX
    makedirs_owned(os.path.dirname(final), stop or dest, gid=gid)
    if os.path.isfile(final) and (size is None or os.path.getsize(final) == size):
        return {"path": rel, "status": "present", "bytes": 0}
    if os.path.lexists(final):
        os.unlink(final)
    offset = os.path.getsize(part) if os.path.isfile(part) else 0
    if size is not None and offset > size:
        os.unlink(part)
        offset = 0
    if size is not None and offset == size and size > 0:
        _finish(part, final)
        return {"path": rel, "status": "resumed", "bytes": 0}
    request_headers = dict(headers or {})
    if offset:
        request_headers["Range"] = "bytes=%d-" % offset
    try:
        response = opener(url, request_headers, timeout, "GET")
    except Exception as exc:  # HTTP errors carry a code; 416 means nothing is left to send
        code = getattr(exc, "code", None)
        if code == 416 and offset and size is None:
            _finish(part, final)
            return {"path": rel, "status": "resumed", "bytes": 0}
        if code == 416:
            os.unlink(part)
            raise Interrupted("%s: the server refused the resume offset %d; the partial file was removed, "
                              "the next attempt starts over" % (url, offset))
        if code is not None:
            raise StorageError("%s answered HTTP %s (%s). Check the URL and any credentials in the headers."
                               % (url, code, getattr(exc, "reason", exc)))
        raise Interrupted("%s: %s" % (url, exc))
    status = response.getcode()
    length = response.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    resumed = False
    if offset and status == 206:
        crange = parse_content_range(response.headers.get("Content-Range"))
        if not crange or crange[0] != offset:
            raise StorageError("%s: the server answered the resume request with the range %r instead of "
                               "bytes %d-" % (url, response.headers.get("Content-Range"), offset))
        expected_total = crange[2] if crange[2] is not None else (offset + length if length is not None else None)
        resumed = True
    elif status in (200, 203):
        offset = 0
        expected_total = length
    else:
        raise StorageError("%s answered HTTP %s where 200 or 206 was expected." % (url, status))
    if size is not None and expected_total is not None and expected_total != size:
        raise StorageError("%s is %d bytes on the server but %d are expected. The source changed or the "
                           "size in the model's source is wrong." % (url, expected_total, size))
    expected_total = size if size is not None else expected_total
    received = _write_response(response, part, offset, gid, mode, chunk)
    total = offset + received
    if expected_total is not None and total < expected_total:
        raise Interrupted("%s: the transfer stopped after %d of %d bytes; %s keeps them for the next attempt"
                          % (url, total, expected_total, rel + PART_SUFFIX))
    if expected_total is not None and total > expected_total:
        os.unlink(part)
        raise StorageError("%s sent %d bytes, more than the %d expected; the partial file was removed."
                           % (url, total, expected_total))
    _finish(part, final)
    return {"path": rel, "status": "resumed" if resumed else "downloaded", "bytes": received}


def _write_response(response, part, offset, gid, mode, chunk):
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(part, flags, mode)
    received = 0
    try:
        os.fchown(fd, 0, gid)
        os.fchmod(fd, mode)
        if offset:
            os.lseek(fd, offset, os.SEEK_SET)
        os.ftruncate(fd, offset)
        while True:
            try:
                data = response.read(chunk)
            except (OSError, http.client.HTTPException) as exc:
                os.fsync(fd)
                raise Interrupted("the connection broke after %d more bytes (%s)" % (received, exc))
            if not data:
                break
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            received += len(data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return received


def _finish(part, final):
    os.replace(part, final)
    fsync_dir(os.path.dirname(final))


def head_size(opener, url, headers, timeout):
    """Content-Length of a HEAD request, or None."""
    try:
        response = opener(url, dict(headers or {}), timeout, "HEAD")
    except Exception as exc:
        code = getattr(exc, "code", None)
        raise StorageError("HEAD %s failed (%s). Check the URL, or give the file's size." % (url, code or exc))
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def fetch_all(jobs, fetch_one, parallel, retries, backoff=1.0, sleep=time.sleep):
    """Run `fetch_one(job)` for every job, `parallel` at a time, retrying an interrupted job up
    to `retries` times (each retry resumes). Returns (results, errors) with errors as text."""
    def attempt(job):
        delay = backoff
        for attempt_no in range(retries + 1):
            try:
                return fetch_one(job), None
            except Interrupted as exc:
                if attempt_no == retries:
                    return None, str(exc)
                sleep(delay)
                delay *= 2
            except StorageError as exc:
                return None, str(exc)
        return None, "not attempted"

    results, errors = [], []
    workers = max(1, min(parallel, len(jobs)))
    if workers == 1:
        outcomes = [attempt(job) for job in jobs]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            outcomes = list(pool.map(attempt, jobs))
    for result, error in outcomes:
        if error:
            errors.append(error)
        else:
            results.append(result)
    return results, errors


# --- Hugging Face -------------------------------------------------------------------------

def hf_pattern_match(path, allow_patterns, ignore_patterns):
    """The hub's filter rule (huggingface_hub.utils.filter_repo_objects): fnmatch on the path,
    a pattern ending in '/' matches everything below it."""
    def norm(patterns):
        return [p + "*" if p.endswith("/") else p for p in (patterns or [])]
    allow, ignore = norm(allow_patterns), norm(ignore_patterns)
    if allow and not any(fnmatch.fnmatch(path, p) for p in allow):
        return False
    return not any(fnmatch.fnmatch(path, p) for p in ignore)


def hf_plan(tree, allow_patterns=None, ignore_patterns=None):
    """Files to download from the hub's tree listing (objects with path, size, blob_id and lfs),
    with the LFS sha256 where there is one. Folders (no size) are skipped."""
    files = []
    for entry in tree:
        size = getattr(entry, "size", None)
        if size is None or not hasattr(entry, "blob_id"):
            continue
        if not hf_pattern_match(entry.path, allow_patterns, ignore_patterns):
            continue
        lfs = getattr(entry, "lfs", None)
        sha256 = None
        if lfs is not None:
            sha256 = lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)
        files.append({"path": entry.path, "size": int(size), "blob_id": entry.blob_id, "sha256": sha256})
    return sorted(files, key=lambda item: item["path"])


def hf_snapshot_kwargs(repo_id, commit, local_dir, token=None, allow_patterns=None, ignore_patterns=None,
                       max_workers=8, endpoint=None):
    """Arguments of huggingface_hub.snapshot_download for a pinned, resumable download into
    local_dir (regular files, not the symlinked cache)."""
    kwargs = {
        "repo_id": repo_id,
        "repo_type": "model",
        "revision": commit,
        "local_dir": local_dir,
        "max_workers": int(max_workers),
    }
    if token:
        kwargs["token"] = token
    if allow_patterns:
        kwargs["allow_patterns"] = list(allow_patterns)
    if ignore_patterns:
        kwargs["ignore_patterns"] = list(ignore_patterns)
    if endpoint:
        kwargs["endpoint"] = endpoint
    return kwargs


def git_blob_sha1(path, chunk=CHUNK):
    """The git object id of a file (sha1 of 'blob <size>\\0' + content): what the hub lists
    for files that are not in LFS."""
    digest = hashlib.sha1(b"blob %d\0" % os.path.getsize(path))  # nosec - git's object id, not a security hash
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def check_hf_download(local_dir, plan):
    """Problems after a hub download: missing files, wrong sizes, and non-LFS files whose git
    blob id differs (LFS files are verified by sha256 with model_manifest afterwards)."""
    found = []
    for item in plan:
        path = os.path.join(local_dir, item["path"])
        if not os.path.isfile(path):
            found.append("%s is missing" % item["path"])
        elif os.path.getsize(path) != item["size"]:
            found.append("%s is %d bytes, the hub lists %d" % (item["path"], os.path.getsize(path), item["size"]))
        elif item["sha256"] is None and git_blob_sha1(path) != item["blob_id"]:
            found.append("%s differs from the hub's git blob %s" % (item["path"], item["blob_id"]))
    return found


def is_block_device(path):
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False
