#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the llmops.gpu_stack collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_manifest
short_description: Record and verify sha256 manifests of model revisions
version_added: 0.2.0
description:
  - With O(state=present), hashes every regular file of a model revision directory and
    writes a manifest (relative path, size and sha256 of each file) beside it.
  - With O(state=verified), checks the revision against its manifest, or against the
    sha256 values the Hugging Face hub publishes for LFS files (O(expected)), and fails
    naming the files that are missing, extra, or differ.
  - Hashes files in parallel threads, the largest first. sha256 is sequential, so a single
    file is always hashed by one core; the speed-up comes from hashing several files at once.
  - Keeps a cache of the hash of each file keyed by its device, inode, size, mtime and
    ctime, so verifying an unchanged revision again reads no file data. Any write to a file
    changes its ctime and any replacement changes its inode, so a changed file is always
    read again; restoring the mtime does not hide a change.
  - Refuses symlinks that point outside the revision, dangling symlinks, symlinks to
    directories and anything else that is not a regular file. A symlink to a regular file
    inside the revision is listed under its own name with the content of its target.
author:
  - llmops.gpu_stack maintainers (@llmops)
extends_documentation_fragment:
  - llmops.gpu_stack.attributes
attributes:
  check_mode:
    support: full
    details:
      - With O(state=present), reports whether the manifest would change without writing
        it. Neither the manifest nor the cache is written in check mode.
  diff_mode:
    support: full
    details:
      - With O(state=present), shows the manifest text before and after.
  idempotent:
    support: full
    details:
      - The manifest holds no timestamps and has a fixed key order, so O(state=present)
        reports a change only when a file was added, removed or changed.
options:
  path:
    description:
      - The revision directory, for example the directory given as C(--local-dir) to
        C(huggingface-cli download).
      - Files of the hub cache layout (C(snapshots/<revision>) whose files are symlinks to
        C(../../blobs)) point outside the revision and are refused; download with
        C(local_dir) to get regular files.
    type: path
    required: true
  state:
    description:
      - V(present) writes the manifest of the files as they are now.
      - V(verified) compares the files with the manifest, or with O(expected), and fails if
        they do not match. Never changes the revision or the manifest.
    type: str
    choices: [present, verified]
    default: present
  manifest:
    description:
      - Path of the manifest file.
      - Defaults to C(<path>.manifest.json), a file beside the revision directory, so that it
        is not part of the tree that an inference server serves.
      - A manifest inside the revision is left out of the files it lists.
      - Not read when O(expected) is set.
    type: path
  expected:
    description:
      - Mapping of paths relative to the revision to sha256 hex digests, for example the
        C(lfs.oid) values the hub API lists for a revision. A C(sha256:) prefix is accepted.
      - When set, only these files are hashed and compared; the manifest is not read. Files
        not listed are returned in RV(extra) for information and do not fail the task.
      - Only valid with O(state=verified).
    type: dict
  workers:
    description:
      - Number of files hashed at the same time.
      - Defaults to the number of CPUs the module may run on.
    type: int
  cache:
    description:
      - Whether to use the hash cache. Without it every run reads every file.
    type: bool
    default: true
  cache_path:
    description:
      - Path of the hash cache file of this revision.
      - Defaults to C(/var/cache/gpu_stack/manifest/<sha256 of the resolved absolute path
        of the revision>.json).
      - The cache is ignored unless it is owned by the user the module runs as and writable
        by that user only. If it cannot be written, the module warns and goes on.
      - A cache inside the revision is left out of the files it describes.
    type: path
  exclude:
    description:
      - Shell-style patterns (C(fnmatch)) matched against paths relative to the revision;
        matching files are left out. C(*) also matches C(/). A pattern that matches a
        directory leaves out everything below it, for example V(.cache) for the metadata
        that C(huggingface-cli download --local-dir) writes.
    type: list
    elements: str
    default: []
notes:
  - Hashing runs at about 1 GB/s per core from the page cache on CPUs with SHA
    extensions; from disk it is bounded by the storage. See C(docs/model_manifest.md) for
    measured figures.
  - A file whose mtime or ctime is less than two seconds older than the moment it was read
    is not cached, because a write in the same clock tick could leave its size and times
    unchanged. It is hashed again on the next run.
seealso:
  - name: Hugging Face hub cache layout
    description: How the hub names LFS blobs by their sha256.
    link: https://huggingface.co/docs/huggingface_hub/guides/manage-cache
"""

EXAMPLES = r"""
- name: Record the manifest of a downloaded revision
  llmops.gpu_stack.model_manifest:
    path: /srv/models/deepseek-r1-distill-qwen-7b
    exclude:
      - .cache

- name: Verify the revision before the inference server starts
  llmops.gpu_stack.model_manifest:
    path: /srv/models/deepseek-r1-distill-qwen-7b
    state: verified
    exclude:
      - .cache

- name: Read the files of the pinned revision from the hub API
  ansible.builtin.uri:
    url: https://huggingface.co/api/models/deepseek-ai/DeepSeek-R1-Distill-Qwen-7B/tree/{{ model_revision }}
  register: __hub_tree
  delegate_to: localhost
  run_once: true

- name: Verify the weights against the sha256 values the hub publishes for LFS files
  llmops.gpu_stack.model_manifest:
    path: /srv/models/deepseek-r1-distill-qwen-7b
    state: verified
    expected: "{{ dict(__lfs_files | map(attribute='path') | zip(__lfs_files | map(attribute='lfs.oid'))) }}"
  vars:
    __lfs_files: "{{ __hub_tree.json | selectattr('lfs', 'defined') | list }}"

- name: Hash with two threads and keep the cache next to the models
  llmops.gpu_stack.model_manifest:
    path: /srv/models/deepseek-r1-distill-qwen-7b
    workers: 2
    cache_path: /srv/models/.manifest-cache/deepseek-r1-distill-qwen-7b.json
"""

RETURN = r"""
path:
  description: Resolved absolute path of the revision.
  returned: success or verification failure
  type: str
  sample: /srv/models/deepseek-r1-distill-qwen-7b
manifest:
  description: Path of the manifest written or read; null when O(expected) was used.
  returned: success or verification failure
  type: str
  sample: /srv/models/deepseek-r1-distill-qwen-7b.manifest.json
file_count:
  description: Number of regular files in the revision, after O(exclude).
  returned: success or verification failure
  type: int
  sample: 11
total_bytes:
  description: Total size of those files in bytes.
  returned: success or verification failure
  type: int
  sample: 15242054536
files_hashed:
  description: Number of files whose data was read in this run.
  returned: success or verification failure
  type: int
  sample: 2
files_cached:
  description: Number of files whose hash came from the cache without reading data.
  returned: success or verification failure
  type: int
  sample: 9
bytes_hashed:
  description: Bytes read and hashed in this run.
  returned: success or verification failure
  type: int
  sample: 8606596466
seconds:
  description: Wall-clock seconds spent walking and hashing the revision.
  returned: success or verification failure
  type: float
  sample: 4.571
throughput:
  description: Bytes hashed per second of hashing (RV(bytes_hashed) over the hashing time); 0 when nothing was read.
  returned: success or verification failure
  type: int
  sample: 1912213500
missing:
  description:
    - Paths that are expected but absent.
    - With O(state=present), paths of the previous manifest that are gone.
  returned: success or verification failure
  type: list
  elements: str
  sample: [model-00002-of-000002.safetensors]
extra:
  description:
    - Paths present but not expected; a failure only when verifying against a manifest.
    - With O(state=present), paths that are new since the previous manifest.
  returned: success or verification failure
  type: list
  elements: str
  sample: [notes.txt]
mismatched:
  description:
    - Files whose size or sha256 differs from the expected one.
    - With O(state=present), files that changed since the previous manifest.
    - C(actual.sha256) is null when the size already differs; such a file is not read.
    - C(expected.size) is null when checking against O(expected), which has no sizes.
  returned: success or verification failure
  type: list
  elements: dict
  contains:
    path:
      description: Path relative to the revision.
      type: str
    expected:
      description: Expected C(size) and C(sha256).
      type: dict
    actual:
      description: Actual C(size) and C(sha256).
      type: dict
  sample:
    - path: model-00001-of-000002.safetensors
      expected:
        size: 8606596466
        sha256: 3d2c1a0b5e5f0e1c7f6e9a4b2d8c0f1e3a5b7c9d1e2f3a4b5c6d7e8f9a0b1c2d
      actual:
        size: 8606596466
        sha256: 9b8a7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.gpu_stack.plugins.module_utils._manifest import (
    ManifestError,
    default_cache_path,
    default_manifest_path,
    ensure_manifest,
    verify_revision,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            state=dict(type="str", default="present", choices=["present", "verified"]),
            manifest=dict(type="path"),
            expected=dict(type="dict"),
            workers=dict(type="int"),
            cache=dict(type="bool", default=True),
            cache_path=dict(type="path"),
            exclude=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params["workers"] is not None and params["workers"] < 1:
        module.fail_json(msg="workers must be 1 or more; omit it to use one per CPU.")
    if params["expected"] is not None and params["state"] != "verified":
        module.fail_json(
            msg="expected is only used with state=verified; set state=verified or drop expected."
        )
    manifest_path = params["manifest"] or default_manifest_path(params["path"])
    cache_path = None
    if params["cache"]:
        cache_path = params["cache_path"] or default_cache_path(params["path"])
    common = dict(
        exclude=params["exclude"], workers=params["workers"], cache_path=cache_path,
        check_mode=module.check_mode,
    )
    try:
        if params["state"] == "present":
            result = ensure_manifest(params["path"], manifest_path, **common)
        else:
            result = verify_revision(params["path"], manifest_path, expected=params["expected"], **common)
    except ManifestError as exc:
        module.fail_json(msg=str(exc))

    for warning in result.pop("warnings"):
        module.warn(warning)
    if not module._diff:
        result.pop("diff", None)
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
