# -*- coding: utf-8 -*-
# Copyright: contributors to the llmops.gpu_stack collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Input rules of the model_storage role's modules: names, paths, sources and checksums, with
the error they report (StorageError). The other concerns have their own files: _model_revisions
(layout, history, retention, the atomic `current` switch), _model_archive (zstd archives),
_model_fetch (space, resumable HTTP downloads, the Hugging Face plan), _block_devices (blkid)
and _fsutil (atomic writes).

Private to this collection (the leading underscore): the API may change without notice.
Standard library plus ansible.module_utils only; Python 3.9 or later on the managed host.
Path shape, file-system type and free-space rules come from _storage, hashing from the
model_manifest module: nothing here re-implements them.
"""

from __future__ import annotations

import os
import posixpath
import re

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _storage

# Names of models and revisions become directory names and parts of container mounts:
# ASCII letters, digits, '.', '_' and '-', starting with a letter or digit (so never a hidden
# name such as .incoming, never lost+found), no '..' anywhere.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
URL_RE = re.compile(r"^https?://[^\s/]+(/\S*)?$")
SOURCE_TYPES = ("controller", "url", "hf")
PART_SUFFIX = ".part"


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


def is_within(path, parent):
    path = os.path.normpath(path)
    parent = os.path.normpath(parent)
    return path == parent or path.startswith(parent.rstrip("/") + "/")
