#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the llmops.gpu_stack collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: model_storage_fetch
short_description: Download a model revision into a private directory, resumably, after a disk space check
version_added: 0.2.0
description:
  - Fetches the files of one model revision into O(dest), the unpublished download directory of the
    C(llmops.gpu_stack.model_storage) role (under C(<root>/.incoming/), which the serving account cannot read).
  - First works out the bytes the revision needs and refuses, with the numbers, a download that cannot fit with
    the margin on the file system of O(dest). Bytes already downloaded count as there. Nothing is downloaded
    before this check passes.
  - V(url) downloads each file over HTTP(S) into C(<path>.part) and renames it to its name only once the size the
    server announced (or O(files[].size)) has arrived. An interrupted transfer keeps its C(.part) file and the
    next attempt resumes it with a C(Range) request; a finished file is never fetched again. Files are created
    C(0640 root:<group>) from the start, so the role's mode check afterwards changes nothing. Files in O(dest)
    that are not listed are removed.
  - V(hf) downloads a Hugging Face hub repository at a pinned commit with C(huggingface_hub.snapshot_download)
    into O(dest) as regular files (not the symlinked cache), which resumes unfinished files itself. The sizes come
    from the hub's file listing first, for the space check. Afterwards every file's size is checked and every
    file that is not in LFS is checked against the hub's git blob id; LFS files are returned in RV(expected) with
    the sha256 the hub publishes, for M(llmops.gpu_stack.model_manifest) to verify. Needs C(huggingface_hub) on
    the Python that runs the module.
  - V(controller) does the space check for the files in O(sizes) and creates O(dest); the role copies controller
    files itself.
  - Hashes are not checked here; the role verifies the whole download with M(llmops.gpu_stack.model_manifest)
    before it becomes a revision.
author:
  - llmops.gpu_stack maintainers (@llmops)
extends_documentation_fragment:
  - llmops.gpu_stack.attributes
attributes:
  check_mode:
    support: full
    details:
      - Plans and runs the space check (with the hub's listing where C(huggingface_hub) is installed); downloads
        nothing and removes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - Finished files are not fetched again.
requirements:
  - For O(type=hf), C(huggingface_hub) on the Python that runs the module (the role runs it with its own virtual
    environment).
options:
  type:
    description: Where the files come from.
    type: str
    choices: [url, hf, controller]
    required: true
  dest:
    description:
      - The download directory of the revision, C(<area>/<model>/<revision>). Created C(0750 root:<group>) if missing,
        its parent C(0700 root:root); the download area C(<area>) must exist.
    type: path
    required: true
  group:
    description: Group of the files and directories created.
    type: str
    default: root
  files:
    description:
      - For V(url), the files to download.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Path in the revision. Defaults to the last segment of O(files[].url).
        type: str
      url:
        description: The file's http or https URL (V(url) only).
        type: str
      sha256:
        description: The file's sha256, returned in RV(expected).
        type: str
      size:
        description:
          - Size in bytes. With V(url), when omitted a C(HEAD) request asks the server.
        type: int
  sizes:
    description:
      - For V(controller), relative path to size in bytes of every file the role will copy, for the space check.
    type: dict
    default: {}
  sha256:
    description:
      - For V(controller), relative path to sha256 of the files, returned in RV(expected).
    type: dict
    default: {}
  headers:
    description: HTTP headers sent with every request, for example an C(Authorization) header.
    type: dict
    default: {}
  timeout:
    description: Seconds a connection may stay silent before the attempt counts as interrupted.
    type: int
    default: 60
  retries:
    description: Attempts after an interrupted transfer in the same run; each one resumes where the last stopped.
    type: int
    default: 3
  parallel:
    description: Files downloaded at the same time.
    type: int
    default: 4
  validate_certs:
    description: Verify the server's TLS certificate.
    type: bool
    default: true
  repo_id:
    description: Hub repository, C(<owner>/<name>) (V(hf) only).
    type: str
  commit:
    description: The full 40-hex commit hash to download (V(hf) only); a branch name could move.
    type: str
  allow_patterns:
    description: Only hub files matching one of these patterns (C(fnmatch); a pattern ending in C(/) takes a folder).
    type: list
    elements: str
    default: []
  ignore_patterns:
    description: Hub files matching one of these patterns are left out.
    type: list
    elements: str
    default: []
  token:
    description: Hugging Face access token for gated or private repositories. Never logged.
    type: str
  endpoint:
    description: The hub's base URL, for a mirror.
    type: str
    default: https://huggingface.co
  hf_max_workers:
    description: Files C(snapshot_download) fetches at the same time.
    type: int
    default: 8
  margin_fraction:
    description: Free space to keep beyond the revision, as a fraction of its size.
    type: float
    default: 0.1
  margin_min_bytes:
    description: Lower bound of that margin in bytes.
    type: int
    default: 1073741824
notes:
  - The margin and the free space are measured with C(statvfs) on the file system of O(dest) (blocks available to
    unprivileged users).
seealso:
  - module: llmops.gpu_stack.model_manifest
  - module: llmops.gpu_stack.model_storage_revision
  - name: huggingface_hub snapshot_download
    description: The hub client's download of a whole repository at a revision.
    link: https://huggingface.co/docs/huggingface_hub/guides/download
"""

EXAMPLES = r"""
- name: Download two files over HTTPS, resuming after an interruption
  llmops.gpu_stack.model_storage_fetch:
    type: url
    dest: /srv/models/.incoming/smollm2/r1
    group: llmserve
    files:
      - url: https://models.example.internal/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
        sha256: 3f0b5c7e9a1d2b4c6e8f0a1b3c5d7e9f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d
      - url: https://models.example.internal/smollm2/config.json
        sha256: 0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9
  register: __fetched

- name: Download a hub repository at a pinned commit
  llmops.gpu_stack.model_storage_fetch:
    type: hf
    dest: /srv/models/.incoming/deepseek-r1-distill-qwen-7b/916b56a4
    group: llmserve
    repo_id: deepseek-ai/DeepSeek-R1-Distill-Qwen-7B
    commit: 916b56a44061fd5cd7d6a8fb632557ed4f724f60
    allow_patterns: ["*.safetensors", "*.json", "tokenizer*"]
    token: "{{ vault_hf_token }}"
  vars:
    ansible_python_interpreter: /opt/gpu_stack/hf-hub/bin/python
"""

RETURN = r"""
dest:
  description: The download directory.
  returned: always
  type: str
  sample: /srv/models/.incoming/smollm2/r1
files:
  description: The files of the revision, each with C(path), C(size) and C(sha256) (null where unknown).
  returned: always
  type: list
  elements: dict
  sample: [{path: model.gguf, size: 98362432, sha256: 3f0b5c7e9a1d2b4c6e8f0a1b3c5d7e9f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d}]
expected:
  description: Relative path to sha256 for every file whose hash is known, for M(llmops.gpu_stack.model_manifest).
  returned: always
  type: dict
  sample: {model.gguf: 3f0b5c7e9a1d2b4c6e8f0a1b3c5d7e9f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d}
space:
  description: The space check, in bytes.
  returned: always
  type: dict
  sample: {ok: true, free_bytes: 53687091200, needed_bytes: 1171771648, missing_bytes: 98362432, margin_bytes: 1073741824,
           total_bytes: 98362432, present_bytes: 0}
downloaded:
  description: Files fetched from the start in this run.
  returned: always
  type: list
  elements: str
resumed:
  description: Files whose unfinished download was continued in this run.
  returned: always
  type: list
  elements: str
would_fetch:
  description: In check mode, the files a real run would fetch.
  returned: in check mode
  type: list
  elements: str
present:
  description: Files that were already complete and were not fetched.
  returned: always
  type: list
  elements: str
removed:
  description: Files in O(dest) that are not part of the revision and were removed (V(url)).
  returned: always
  type: list
  elements: str
bytes_downloaded:
  description: Bytes transferred in this run.
  returned: always
  type: int
plan:
  description: For V(hf), the C(snapshot_download) arguments (without the token).
  returned: when type is hf
  type: dict
  sample: {repo_id: deepseek-ai/DeepSeek-R1-Distill-Qwen-7B, repo_type: model, revision: 916b56a44061fd5cd7d6a8fb632557ed4f724f60,
           local_dir: /srv/models/.incoming/deepseek-r1-distill-qwen-7b/916b56a4, max_workers: 8}
"""

import grp
import os
import shutil
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.urls import open_url

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_fetch as fetching
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_storage as ms

HF_IMPORT_ERROR = None
try:
    import huggingface_hub
except ImportError:
    huggingface_hub = None
    HF_IMPORT_ERROR = traceback.format_exc()


def make_opener(validate_certs):
    def opener(url, headers, timeout, method):
        # No decompression: byte offsets must be those of the file, for Range requests.
        return open_url(url, headers=headers, method=method, timeout=timeout, validate_certs=validate_certs,
                        follow_redirects="all", decompress=False)
    return opener


def resolve_group(module, name):
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        module.fail_json(msg="The group %s does not exist. Create it first (the role does) or set group." % name)


def ensure_dest(module, dest, gid):
    """dest 0750 root:<group>; missing parents 0700 root:root, up to the first that exists
    (the download area itself, which the role creates)."""
    parent = os.path.dirname(dest)
    area = os.path.dirname(parent)
    if not os.path.isdir(area):
        module.fail_json(msg="%s does not exist; create the download area first." % area)
    fetching.makedirs_owned(parent, area, mode=0o700, gid=0)
    if not os.path.isdir(dest):
        os.mkdir(dest, 0o750)
        os.chown(dest, 0, gid)
        os.chmod(dest, 0o750)


def space_or_fail(module, params, files, result):
    total = sum(item["size"] for item in files if item.get("size") is not None)
    there = fetching.present_bytes(params["dest"], files) if os.path.isdir(params["dest"]) else 0
    check = fetching.space_check(params["dest"], total, there, params["margin_fraction"], params["margin_min_bytes"])
    result["space"] = check
    if not check["ok"]:
        result["msg"] = fetching.space_message("The revision in %s" % params["dest"], params["dest"], check)
        module.fail_json(**result)


def url_files(module, params, opener):
    files = []
    for item in params["files"]:
        rel = ms.url_file_path(item)
        problems = ms.check_relpath("files.path", rel)
        if problems or not ms.URL_RE.match(item.get("url") or ""):
            module.fail_json(msg="Invalid file %r: %s" % (item, "; ".join(p["problem"] for p in problems) or "bad URL"))
        size = item.get("size")
        if size is None:
            try:
                size = fetching.head_size(opener, item["url"], params["headers"], params["timeout"])
            except ms.StorageError as exc:
                module.fail_json(msg=str(exc))
            if size is None:
                module.fail_json(msg="%s does not announce its size (no Content-Length). Give size for this file, "
                                     "so the disk check can count it." % item["url"])
        sha = (item.get("sha256") or "").lower() or None
        files.append({"path": rel, "url": item["url"], "size": size, "sha256": sha})
    return files


def run_url(module, params, result):
    opener = make_opener(params["validate_certs"])
    files = url_files(module, params, opener)
    result["files"] = [dict((k, f[k]) for k in ("path", "size", "sha256")) for f in files]
    result["expected"] = dict((f["path"], f["sha256"]) for f in files if f["sha256"])
    space_or_fail(module, params, files, result)
    dest = params["dest"]
    stale = fetching.unlisted_files(dest, [f["path"] for f in files]) if os.path.isdir(dest) else []
    todo = []
    for item in files:
        final = os.path.join(dest, item["path"])
        if os.path.isfile(final) and os.path.getsize(final) == item["size"]:
            result["present"].append(item["path"])
        else:
            todo.append(item)
    if module.check_mode:
        result["changed"] = bool(todo or stale)
        result["would_fetch"] = [item["path"] for item in todo]
        result["removed"] = stale
        module.exit_json(**result)
    gid = resolve_group(module, params["group"])
    ensure_dest(module, dest, gid)
    for rel in stale:
        os.unlink(os.path.join(dest, rel))
    result["removed"] = stale

    def fetch_one(item):
        return fetching.fetch_http_file(opener, item["url"], dest, item["path"], size=item["size"],
                                        headers=params["headers"], timeout=params["timeout"], gid=gid)

    done, errors = fetching.fetch_all(todo, fetch_one, params["parallel"], params["retries"])
    for item in done:
        result[item["status"]].append(item["path"])
        result["bytes_downloaded"] += item["bytes"]
    result["changed"] = bool(done or stale)
    if errors:
        result["msg"] = ("Fetching into %s did not complete: %s. Run again to resume; finished files are kept."
                         % (dest, "; ".join(errors)))
        module.fail_json(**result)
    module.exit_json(**result)


def run_hf(module, params, result):
    dest = params["dest"]
    kwargs = fetching.hf_snapshot_kwargs(params["repo_id"], params["commit"], dest, params["token"],
                                         params["allow_patterns"], params["ignore_patterns"], params["hf_max_workers"],
                                         params["endpoint"])
    result["plan"] = dict((k, v) for k, v in kwargs.items() if k != "token")
    if huggingface_hub is None:
        if module.check_mode:
            result["changed"] = True
            result["msg"] = ("huggingface_hub is not installed yet (the role installs it), so the hub listing and "
                             "the space check run only in a real run; planned download: %s" % result["plan"])
            module.exit_json(**result)
        module.fail_json(msg=missing_required_lib("huggingface_hub"), exception=HF_IMPORT_ERROR)
    api = huggingface_hub.HfApi(endpoint=params["endpoint"], token=params["token"] or None)
    try:
        tree = list(api.list_repo_tree(params["repo_id"], recursive=True, revision=params["commit"],
                                       repo_type="model"))
    except Exception as exc:
        module.fail_json(msg="Listing %s at %s on %s failed: %s. Check repo_id, commit, the token (gated models) "
                             "and that the hub (or the mirror in endpoint) is reachable."
                             % (params["repo_id"], params["commit"], params["endpoint"], exc))
    plan = fetching.hf_plan(tree, params["allow_patterns"], params["ignore_patterns"])
    if not plan:
        module.fail_json(msg="No file of %s at %s matches allow_patterns %s / ignore_patterns %s."
                             % (params["repo_id"], params["commit"], params["allow_patterns"], params["ignore_patterns"]))
    result["files"] = [dict((k, f[k]) for k in ("path", "size", "sha256")) for f in plan]
    result["expected"] = dict((f["path"], f["sha256"]) for f in plan if f["sha256"])
    space_or_fail(module, params, plan, result)

    def whole(entry):
        full = os.path.join(dest, entry["path"])
        return os.path.isfile(full) and os.path.getsize(full) == entry["size"]

    complete = [f["path"] for f in plan if whole(f)]
    if len(complete) == len(plan) and not fetching.check_hf_download(dest, plan):
        result["present"] = complete
        module.exit_json(**result)
    if module.check_mode:
        result["changed"] = True
        result["would_fetch"] = [f["path"] for f in plan if f["path"] not in complete]
        module.exit_json(**result)
    gid = resolve_group(module, params["group"])
    ensure_dest(module, dest, gid)
    before = fetching.present_bytes(dest, plan)
    try:
        huggingface_hub.snapshot_download(**kwargs)
    except Exception as exc:
        result["msg"] = ("Downloading %s at %s did not complete: %s. Run again to resume; finished files are kept."
                         % (params["repo_id"], params["commit"], exc))
        module.fail_json(**result)
    problems = fetching.check_hf_download(dest, plan)
    if problems:
        result["msg"] = "The download of %s at %s is not what the hub lists: %s." % (
            params["repo_id"], params["commit"], "; ".join(problems))
        module.fail_json(**result)
    # The client's resume metadata is no part of the revision.
    shutil.rmtree(os.path.join(dest, ".cache"), ignore_errors=True)
    result["changed"] = True
    result["present"] = complete
    result["downloaded"] = [f["path"] for f in plan if f["path"] not in complete]
    result["bytes_downloaded"] = max(0, sum(f["size"] for f in plan) - before)
    module.exit_json(**result)


def run_controller(module, params, result):
    problems = []
    for rel, size in sorted(params["sizes"].items()):
        if not isinstance(size, int) or size < 0:
            problems.append("%s: size %r is not a byte count" % (rel, size))
    for rel, digest in sorted(params["sha256"].items()):
        if not ms.SHA256_RE.match(str(digest or "").lower()):
            problems.append("%s: %r is not a sha256 hex digest" % (rel, digest))
    if problems:
        module.fail_json(msg="Invalid controller file list: %s." % "; ".join(problems))
    files = [{"path": rel, "size": size, "sha256": str(params["sha256"].get(rel) or "").lower() or None}
             for rel, size in sorted(params["sizes"].items())]
    result["files"] = files
    result["expected"] = dict((rel, str(digest).lower()) for rel, digest in params["sha256"].items())
    space_or_fail(module, params, files, result)
    if not module.check_mode and not os.path.isdir(params["dest"]):
        ensure_dest(module, params["dest"], resolve_group(module, params["group"]))
        result["changed"] = True
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            type=dict(type="str", required=True, choices=["url", "hf", "controller"]),
            dest=dict(type="path", required=True),
            group=dict(type="str", default="root"),
            files=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="str"),
                url=dict(type="str"),
                sha256=dict(type="str"),
                size=dict(type="int"),
            )),
            sizes=dict(type="dict", default={}),
            sha256=dict(type="dict", default={}),
            headers=dict(type="dict", default={}, no_log=True),
            timeout=dict(type="int", default=60),
            retries=dict(type="int", default=3),
            parallel=dict(type="int", default=4),
            validate_certs=dict(type="bool", default=True),
            repo_id=dict(type="str"),
            commit=dict(type="str"),
            allow_patterns=dict(type="list", elements="str", default=[]),
            ignore_patterns=dict(type="list", elements="str", default=[]),
            token=dict(type="str", no_log=True),
            endpoint=dict(type="str", default="https://huggingface.co"),
            hf_max_workers=dict(type="int", default=8),
            margin_fraction=dict(type="float", default=0.1),
            margin_min_bytes=dict(type="int", default=1024 ** 3),
        ),
        required_if=[("type", "hf", ("repo_id", "commit"))],
        supports_check_mode=True,
    )
    params = module.params
    for key in ("timeout", "parallel", "hf_max_workers"):
        if params[key] < 1:
            module.fail_json(msg="%s must be 1 or more (got %d)." % (key, params[key]))
    if params["retries"] < 0:
        module.fail_json(msg="retries must be 0 or more (got %d)." % params["retries"])
    problems = ms.check_path("dest", params["dest"])
    if problems:
        module.fail_json(msg="; ".join(ms.render(problems)))
    result = dict(changed=False, dest=params["dest"], files=[], expected={}, space={}, downloaded=[], resumed=[],
                  present=[], removed=[], bytes_downloaded=0)
    if params["type"] == "url":
        if not params["files"]:
            module.fail_json(msg="type=url needs files.")
        run_url(module, params, result)
    elif params["type"] == "hf":
        if not ms.COMMIT_RE.match(params["commit"]) or not ms.REPO_ID_RE.match(params["repo_id"]):
            module.fail_json(msg="repo_id must be <owner>/<name> and commit a full 40-hex commit hash (got %r, %r)."
                                 % (params["repo_id"], params["commit"]))
        run_hf(module, params, result)
    else:
        run_controller(module, params, result)


if __name__ == "__main__":
    main()
