# -*- coding: utf-8 -*-
# Copyright: contributors to the llmops.gpu_stack collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The on-disk layout of a model's revisions (revisions/, manifests/, .incoming, the `current`
link), the activation history, retention, and publishing and switching revisions atomically.

Private to this collection (the leading underscore): the API may change without notice.
Standard library only; Python 3.9 or later on the managed host.
"""

from __future__ import annotations

import errno
import json
import os
import posixpath

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _storage
from ansible_collections.llmops.gpu_stack.plugins.module_utils._fsutil import (
    fsync_dir,
    swap_symlink,
)
from ansible_collections.llmops.gpu_stack.plugins.module_utils._model_storage import (
    NAME_RE,
    StorageError,
)


INCOMING = ".incoming"
HISTORY_FORMAT = "llmops.gpu_stack.model_storage.history/1"
HISTORY_LIMIT = 100


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

def switch_current(layout, revision):
    """Point `current` at revisions/<revision> by renaming a new symlink over it, so a reader
    resolves either the old or the new revision, never a mix or nothing. False if it already
    pointed there."""
    if read_current(layout) == revision and os.path.isdir(layout.revision(revision)):
        return False
    if not os.path.isdir(layout.revision(revision)):
        raise StorageError("%s is not a published revision; nothing to switch to." % layout.revision(revision))
    swap_symlink(layout.current, layout.link_target(revision))
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
