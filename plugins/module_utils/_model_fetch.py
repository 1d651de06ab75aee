# -*- coding: utf-8 -*-
# Copyright: contributors to the llmops.gpu_stack collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Downloads of model files: the free-space check before a download, the files already in a
download directory, resumable HTTP downloads with retries, and the Hugging Face download plan
and its check.

Private to this collection (the leading underscore): the API may change without notice.
Standard library only; Python 3.9 or later on the managed host.
"""

from __future__ import annotations

import fnmatch
import hashlib
import http.client
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _storage
from ansible_collections.llmops.gpu_stack.plugins.module_utils._fsutil import (
    format_bytes,
    fsync_dir,
)
from ansible_collections.llmops.gpu_stack.plugins.module_utils._model_storage import (
    PART_SUFFIX,
    StorageError,
    is_within,
)


CHUNK = 1024 * 1024


# --- space --------------------------------------------------------------------------------

def space_check(path, total_bytes, present_bytes, margin_fraction, margin_min_bytes, free=None):
    """Whether `total_bytes` of which `present_bytes` are already there fit on the file system
    of `path` with the margin. Returns a dict with the numbers and `ok`."""
    if free is None:
        free = _storage.free_bytes(path)
    needed, missing, margin = _storage.disk_needed(total_bytes, present_bytes, margin_fraction, margin_min_bytes)
    return {"ok": free >= needed, "free_bytes": free, "needed_bytes": needed, "missing_bytes": missing,
            "margin_bytes": margin, "total_bytes": total_bytes, "present_bytes": present_bytes}


def space_message(what, path, check):
    return (
        "%s does not fit: it needs %s more on the file system of %s (%s to fetch + %s margin; %s of %s "
        "already there), and only %s is free. Nothing was downloaded. Free space there (lower the "
        "revisions kept), enlarge the volume, or lower the margin." % (
            what, format_bytes(check["needed_bytes"]), path, format_bytes(check["missing_bytes"]), format_bytes(check["margin_bytes"]),
            format_bytes(check["present_bytes"]), format_bytes(check["total_bytes"]), format_bytes(check["free_bytes"])))


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
