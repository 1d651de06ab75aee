#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the llmops.gpu_stack collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: model_storage_revision
short_description: Publish a verified model revision, switch C(current) atomically, keep or archive older revisions
version_added: 0.2.0
description:
  - Manages the revisions of one model in the layout of the C(llmops.gpu_stack.model_storage) role,
    C(<root>/<name>/revisions/<revision>/) with the symlink C(<root>/<name>/current).
  - With O(state=current), publishes the revision if it is not yet (one C(rename) of its verified download
    directory C(<root>/.incoming/<name>/<revision>) into C(revisions/); its manifest
    C(<root>/<name>/manifests/<revision>.json) must exist), then points C(current) at it by renaming a new symlink
    over the old one, so a reader resolves either the old or the new revision and never a mix, then keeps the
    revision that is current and the O(keep) revisions that were current most recently, and removes the others
    or, with O(archive=zstd), compresses each into C(archive/<revision>.tar.zst) (tested with C(zstd -t) before
    the directory is removed).
  - With O(state=restored), extracts C(archive/<revision>.tar.zst) back into the download directory
    C(<root>/.incoming/<name>/<revision>), for the role to verify against the revision's manifest and publish.
  - Records the order in which revisions became current in C(<root>/<name>/history.json).
author:
  - llmops.gpu_stack maintainers (@llmops)
extends_documentation_fragment:
  - llmops.gpu_stack.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reports what would be published, switched, removed or archived; changes nothing. A revision that a
        real run would fetch first counts as published.
  diff_mode:
    support: none
  idempotent:
    support: full
requirements:
  - C(tar) and C(zstd) on the host for O(archive=zstd) and O(state=restored).
options:
  root:
    description: The storage root.
    type: path
    required: true
  name:
    description: The model's name (its directory under O(root)).
    type: str
    required: true
  revision:
    description: The revision to make current (or to restore).
    type: str
    required: true
  state:
    description:
      - V(current) publishes the revision if needed, switches C(current) to it and applies the retention.
      - V(restored) extracts the revision's archive into the download directory.
    type: str
    choices: [current, restored]
    default: current
  keep:
    description: Revisions kept besides the current one, the most recently current first.
    type: int
    default: 1
  archive:
    description: What happens to a revision beyond O(keep). V(none) removes it, V(zstd) compresses it first.
    type: str
    choices: [none, zstd]
    default: none
  archive_level:
    description: zstd compression level (1-19).
    type: int
    default: 3
  group:
    description: Group of C(history.json) (mode C(0640), owner root).
    type: str
    default: root
  cache_dir:
    description:
      - Directory of the role's hash caches, C(<cache_dir>/<name>/<revision>.json); the cache of a removed or
        archived revision is deleted with it.
    type: path
notes:
  - Nothing here reads file data; verification is M(llmops.gpu_stack.model_manifest)'s job and the role runs it
    before this module publishes or switches.
seealso:
  - module: llmops.gpu_stack.model_manifest
  - module: llmops.gpu_stack.model_storage_fetch
"""

EXAMPLES = r"""
- name: Publish the verified revision, switch current to it, archive what is beyond one previous revision
  llmops.gpu_stack.model_storage_revision:
    root: /srv/models
    name: deepseek-r1-distill-qwen-7b
    revision: 916b56a44061fd5cd7d6a8fb632557ed4f724f60
    keep: 1
    archive: zstd
    group: llmserve

- name: Bring an archived revision back into the download area (the role then verifies and publishes it)
  llmops.gpu_stack.model_storage_revision:
    root: /srv/models
    name: deepseek-r1-distill-qwen-7b
    revision: 0c3b2e1f7a9d8c6b5a4f3e2d1c0b9a8f7e6d5c4b
    state: restored
"""

RETURN = r"""
revision:
  description: The revision asked for.
  returned: always
  type: str
previous:
  description: The revision C(current) pointed at before; null if there was none.
  returned: always
  type: str
published:
  description: Whether the revision was moved from the download area into C(revisions/) in this run.
  returned: always
  type: bool
switched:
  description: Whether C(current) was switched in this run.
  returned: always
  type: bool
restored:
  description: Whether the archive was extracted in this run (O(state=restored)).
  returned: always
  type: bool
kept:
  description: The revisions kept, current first.
  returned: always
  type: list
  elements: str
removed:
  description: Revisions whose directory was removed (after archiving them with O(archive=zstd)).
  returned: always
  type: list
  elements: str
archived:
  description: Revisions compressed into C(archive/) in this run.
  returned: always
  type: list
  elements: str
current_path:
  description: The path of the C(current) symlink.
  returned: always
  type: str
  sample: /srv/models/deepseek-r1-distill-qwen-7b/current
revision_path:
  description: The published directory of the revision.
  returned: always
  type: str
  sample: /srv/models/deepseek-r1-distill-qwen-7b/revisions/916b56a44061fd5cd7d6a8fb632557ed4f724f60
"""

import grp
import os
import shutil

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _fsutil as fsutil
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_archive as archives
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_revisions as revs
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_storage as ms


def remove_revision_files(layout, revision, cache_dir, archived):
    """The manifest goes with the revision unless an archive still needs it; the cache always goes."""
    if not archived and os.path.exists(layout.manifest(revision)):
        os.unlink(layout.manifest(revision))
    if cache_dir:
        cache = os.path.join(cache_dir, layout.name, revision + ".json")
        if os.path.exists(cache):
            os.unlink(cache)


def state_current(module, layout, params, result):
    revision = params["revision"]
    check = module.check_mode
    state = revs.model_state(layout)
    result["previous"] = state["current"]
    present = list(state["revisions"])
    if revision not in present:
        fetched = os.path.isdir(layout.incoming(revision))
        if not check:
            if not fetched:
                module.fail_json(msg="%s is neither published nor downloaded to %s; nothing to make current."
                                     % (revision, layout.incoming(revision)))
            if not os.path.isfile(layout.manifest(revision)):
                module.fail_json(msg="%s has no manifest %s: only a verified revision is published. Run the role's "
                                     "verification step first." % (revision, layout.manifest(revision)))
            revs.publish(layout, revision)
        result["published"] = True
        present.append(revision)
    if state["current"] != revision:
        if not check:
            revs.switch_current(layout, revision)
        result["switched"] = True
    history = revs.record_activation(state["history"], revision)
    kept, pruned = revs.plan_retention(revision, present, history, params["keep"])
    result["kept"] = kept
    zstd = params["archive"] == "zstd"
    for old in pruned:
        if not check:
            if zstd:
                archives.archive_revision(layout, old, params["archive_level"], module.run_command)
            else:
                shutil.rmtree(layout.revision(old))
            remove_revision_files(layout, old, params["cache_dir"], zstd)
        if zstd and old not in state["archives"]:
            result["archived"].append(old)
        result["removed"].append(old)
    text = revs.history_text(history)
    if not check:
        gid = grp.getgrnam(params["group"]).gr_gid
        if fsutil.write_text_atomic(layout.history, text, 0o640, 0, gid):
            result["changed"] = True
        st = os.stat(layout.history)
        if (st.st_uid, st.st_gid, st.st_mode & 0o7777) != (0, gid, 0o640):
            os.chown(layout.history, 0, gid)
            os.chmod(layout.history, 0o640)
            result["changed"] = True
    elif revs.history_text(state["history"]) != text:
        result["changed"] = True
    if result["published"] or result["switched"] or result["removed"]:
        result["changed"] = True


def state_restored(module, layout, params, result):
    revision = params["revision"]
    if os.path.isdir(layout.revision(revision)):
        return
    if not os.path.isfile(layout.archive(revision)):
        module.fail_json(msg="%s has no archive %s to restore." % (revision, layout.archive(revision)))
    if not module.check_mode:
        archives.restore_archive(layout, revision, module.run_command)
    result["restored"] = True
    result["changed"] = True


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            name=dict(type="str", required=True),
            revision=dict(type="str", required=True),
            state=dict(type="str", default="current", choices=["current", "restored"]),
            keep=dict(type="int", default=1),
            archive=dict(type="str", default="none", choices=["none", "zstd"]),
            archive_level=dict(type="int", default=3),
            group=dict(type="str", default="root"),
            cache_dir=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    problems = ms.check_path("root", params["root"]) + ms.check_name("name", params["name"], "model name")
    problems += ms.check_name("revision", params["revision"], "revision name")
    if params["keep"] < 0:
        problems.append(ms.problem("keep", params["keep"], "keep must be 0 or more", "set keep to 0, 1, 2 ..."))
    if not 1 <= params["archive_level"] <= 19:
        problems.append(ms.problem("archive_level", params["archive_level"], "zstd levels run from 1 to 19",
                                   "use 3 (fast) to 19 (smallest)"))
    if problems:
        module.fail_json(msg="; ".join(ms.render(problems)))
    try:
        grp.getgrnam(params["group"])
    except KeyError:
        # In check mode on a fresh host the role has not created the group yet.
        if not module.check_mode:
            module.fail_json(msg="The group %s does not exist; create it or set group." % params["group"])
    layout = revs.Layout(params["root"], params["name"])
    result = dict(changed=False, revision=params["revision"], previous=None, published=False, switched=False,
                  restored=False, kept=[], removed=[], archived=[], current_path=layout.current,
                  revision_path=layout.revision(params["revision"]))
    if not os.path.isdir(layout.model_dir) and not module.check_mode:
        module.fail_json(msg="%s does not exist; the role creates the model's directories first." % layout.model_dir)
    try:
        if params["state"] == "current":
            if module.check_mode and not os.path.isdir(layout.model_dir):
                result.update(changed=True, published=True, switched=True, kept=[params["revision"]])
            else:
                state_current(module, layout, params, result)
        else:
            state_restored(module, layout, params, result)
    except ms.StorageError as exc:
        result["msg"] = str(exc)
        module.fail_json(**result)
    except OSError as exc:
        result["msg"] = "%s: %s" % (exc.filename or layout.model_dir, exc.strerror)
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
