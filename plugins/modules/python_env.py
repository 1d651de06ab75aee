#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the llmops.gpu_stack collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: python_env
short_description: Build a Python environment from an exact Python and a hashed lock, and swap it in atomically
version_added: 0.2.0
description:
  - Makes O(path) a Python environment built from an exact Python version and a lock of hashed wheels, with
    C(uv) (a virtual environment on an interpreter of the host) or C(micromamba) (a conda prefix from channels
    the operator sets, or from a conda lock).
  - Everything that decides the environment's content (backend, Python, interpreter, requirement pins and
    hashes, conda spec or lock, channels, indexes, wheelhouse, torch variant) is reduced to one sha256, the
    stamp, which a finished build records inside itself. When the stamp of the inputs equals the recorded one
    the module runs no installer and reports no change.
  - A build goes to a new directory beside the old one, C(.<name>-<first 12 hex digits of the stamp>), is
    verified there (exact Python version, every pinned version through C(importlib.metadata), the O(imports),
    and with O(torch_check) C(torch.cuda.is_available()) and C(torch.version.cuda)), and only then O(path), a
    symlink, is switched to it with one C(rename(2)). A build that fails at any step is removed and O(path)
    keeps pointing at the working environment.
  - O(keep) earlier builds are kept for a quick return; when the inputs go back to those of a kept build the
    module switches to it without installing anything.
  - With O(requirements_by_variant), chooses the PyTorch CUDA variant (C(cu118), C(cu121), C(cu124), C(cu126),
    C(cu128) ...) from O(cuda_version) and O(driver_version), and refuses a variant the driver cannot run,
    naming both.
  - O(state=checked) validates every input, chooses the variant and reports whether a build is due, changing
    nothing; the conda_env role runs it before anything changes.
author:
  - llmops.gpu_stack maintainers (@llmops)
extends_documentation_fragment:
  - llmops.gpu_stack.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reports whether a build (or a switch to a kept build) would happen and the commands it would run;
        runs only the interpreter of O(python) to read its version.
  diff_mode:
    support: full
    details:
      - Shows the pinned packages of the current build and of the wanted one.
  idempotent:
    support: full
    details:
      - A second run with the same inputs finds the stamp and changes nothing.
  platform:
    support: full
    platforms: posix
options:
  path:
    description:
      - The environment's stable path, a symlink the module manages, for example C(/opt/gpu_stack/envs/serving).
        Services use C(<path>/bin/python).
      - Builds live beside it as C(.<name>-<stamp>) directories.
    type: path
    required: true
  name:
    description: Name of the environment in messages; defaults to the last component of O(path).
    type: str
  state:
    description:
      - V(present) builds when the stamp differs and switches O(path) to the build.
      - V(checked) validates and reports RV(rebuild_needed) and RV(torch_variant); never changes anything.
      - V(absent) removes O(path) and every build of it.
    type: str
    choices: [present, checked, absent]
    default: present
  backend:
    description:
      - V(uv) makes a virtual environment on the interpreter O(python) and installs the lock with
        C(uv pip sync --require-hashes).
      - V(micromamba) creates a conda prefix with C(python=<python_version>) from O(channels) (plus
        O(conda_spec)), or from O(conda_lock) without solving, and installs the lock with the prefix's pip,
        C(--require-hashes).
    type: str
    choices: [uv, micromamba]
    default: uv
  python_version:
    description:
      - The exact Python version, such as V(3.10.12). V(3.11) accepts any 3.11.x.
      - With V(uv), O(python) must be this version or the module fails before changing anything.
      - Required unless O(state=absent).
    type: str
  python:
    description: Absolute path of the interpreter on the host that V(uv) builds on. Required with V(uv) unless O(state=absent).
    type: path
  uv:
    description: Path of the C(uv) binary. Required with V(uv) and O(state=present).
    type: path
  micromamba:
    description: Path of the C(micromamba) binary. Required with V(micromamba) and O(state=present).
    type: path
  cache_dir:
    description:
      - C(UV_CACHE_DIR) for V(uv); the root prefix (package cache) for V(micromamba). A warm cache makes a
        rebuild after one pin change fast.
    type: path
  channels:
    description:
      - Conda channels, names or full URLs of mirrors, highest priority first. Used with
        C(--override-channels --strict-channel-priority), so no other channel is read. Not used with
        O(conda_lock), whose entries carry their URLs.
    type: list
    elements: str
    default: [conda-forge]
  conda_spec:
    description: Content of a conda environment file (C(environment.yml)) added to the exact Python. V(micromamba) only.
    type: str
  conda_lock:
    description:
      - Content of a conda lock, either an explicit list (C(@EXPLICIT)) or a C(conda-lock) file. Installs exactly
        these packages without solving. V(micromamba) only.
    type: str
  requirements:
    description:
      - Content of a hashed requirements lock, as C(uv pip compile --generate-hashes) writes it. Every
        requirement must be pinned with C(==) and carry C(--hash); other files (C(-r), C(-c)) are refused.
    type: str
  requirements_by_variant:
    description:
      - One hashed lock per PyTorch variant (C(cpu), C(cu118), C(cu121) ...), variant to lock content. The
        module chooses the variant (see O(torch_variant)) and installs that lock.
      - Not together with a non-empty O(requirements).
    type: dict
  torch_variant:
    description:
      - V(auto) chooses the newest variant on offer that is not newer than O(cuda_version) (or, without it, than
        the newest CUDA the driver runs) and that O(driver_version) supports; V(cpu) when neither is known.
      - A variant name chooses that one; the module fails when O(driver_version) cannot run it.
    type: str
    default: auto
  cuda_version:
    description: The CUDA release the host is built for (major.minor), for example from the cuda role.
    type: str
  driver_version:
    description: The loaded or planned NVIDIA driver. Without it the variant is not checked against a driver.
    type: str
  allow_minor_version_compat:
    description:
      - Accept a variant whose CUDA release needs a newer driver than O(driver_version) when the driver reaches
        the major release's minor-version compatibility floor (reduced features, no PTX JIT).
    type: bool
    default: false
  torch_check:
    description:
      - After the build, import torch and require C(torch.cuda.is_available()) and C(torch.version.cuda) equal
        to the variant's CUDA release. Only for CUDA variants; set it on hosts whose GPUs are usable.
    type: bool
    default: false
  torch_index_url:
    description:
      - The PyTorch index of the variant, with C({variant}) replaced by the chosen variant, added as an extra
        index. Only used with O(requirements_by_variant).
    type: str
    default: ""
  index_url:
    description: The package index (a mirror of PyPI); empty for the installer's default.
    type: str
    default: ""
  extra_index_urls:
    description:
      - More indexes. With any extra index, uv looks at every index for the pinned files
        (C(--index-strategy unsafe-best-match)); the hashes decide which file is accepted.
    type: list
    elements: str
    default: []
  wheelhouse:
    description:
      - A directory of wheels on the host. When set, installs use C(--no-index --find-links) and read no index.
        The names and sizes of its files are part of the stamp.
    type: path
  only_binary:
    description: Install wheels only, never build from a source distribution.
    type: bool
    default: true
  compile_bytecode:
    description:
      - Compile the installed packages to bytecode at build time. The environment belongs to root and the service
        cannot write C(__pycache__), so without it every start compiles in memory again.
    type: bool
    default: true
  imports:
    description: Modules to import in the new build before it is switched in.
    type: list
    elements: str
    default: []
  keep:
    description: Number of earlier finished builds kept beside the current one.
    type: int
    default: 1
  ca_bundle:
    description:
      - A CA bundle on the host that uv (C(SSL_CERT_FILE)), pip (C(PIP_CERT)) and micromamba (C(MAMBA_SSL_VERIFY))
        trust instead of their built-in roots, for networks whose proxy re-signs TLS. Not part of the stamp.
    type: path
notes:
  - Index URLs may carry credentials; the module hides the C(user:password@) part of every URL it returns.
    Prefer a C(.netrc) on the host over credentials in URLs.
  - The module runs as root and builds with umask 022, so the environment is readable and usable by the service
    account but not writable by it.
seealso:
  - module: llmops.gpu_stack.gpu_facts
  - name: uv pip compile
    description: Generating a hashed lock with C(--generate-hashes).
    link: https://docs.astral.sh/uv/pip/compile/
"""

EXAMPLES = r"""
- name: Build the serving environment with uv on the distribution's Python
  llmops.gpu_stack.python_env:
    path: /opt/gpu_stack/envs/tools
    backend: uv
    uv: /opt/gpu_stack/envs/.tools/bin/uv
    python: /usr/bin/python3
    python_version: "3.11.2"
    requirements: "{{ lookup('ansible.builtin.file', 'files/tools.txt') }}"
    imports: [numpy, yaml]

- name: Build a conda environment with Python 3.10.12 and the torch variant for the host's CUDA
  llmops.gpu_stack.python_env:
    path: /opt/gpu_stack/envs/serving
    backend: micromamba
    micromamba: /opt/gpu_stack/envs/.tools/bin/micromamba
    cache_dir: /opt/gpu_stack/envs/.cache/micromamba
    python_version: "3.10.12"
    channels: [https://conda.mirror.example.internal/conda-forge]
    requirements_by_variant:
      cu118: "{{ lookup('ansible.builtin.file', 'files/serving-cu118.txt') }}"
      cu121: "{{ lookup('ansible.builtin.file', 'files/serving-cu121.txt') }}"
    torch_index_url: https://download.pytorch.org/whl/{variant}
    cuda_version: "{{ ansible_facts.gpu.cuda_driver_version }}"
    driver_version: "{{ ansible_facts.gpu.driver_version }}"
    torch_check: "{{ ansible_facts.gpu.status == 'ok' }}"
    imports: [torch, transformers, accelerate, peft]

- name: Only check the inputs and the variant, changing nothing
  llmops.gpu_stack.python_env:
    path: /opt/gpu_stack/envs/serving
    state: checked
    backend: micromamba
    python_version: "3.10.12"
    requirements_by_variant:
      cu118: "{{ lookup('ansible.builtin.file', 'files/serving-cu118.txt') }}"
    torch_variant: cu118
    driver_version: "535.261.03"
  register: __plan
"""

RETURN = r"""
path:
  description: The stable path.
  returned: always
  type: str
  sample: /opt/gpu_stack/envs/serving
prefix:
  description: The build directory for these inputs (the symlink's target after a successful run).
  returned: success
  type: str
  sample: /opt/gpu_stack/envs/.serving-3f1c2a9b0d4e
previous_prefix:
  description: The build O(path) pointed at before this run; null when nothing changed or nothing was there.
  returned: state=present
  type: str
  sample: /opt/gpu_stack/envs/.serving-77ab01c2d3e4
stamp:
  description: sha256 of the inputs.
  returned: success
  type: str
  sample: 3f1c2a9b0d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8
rebuild_needed:
  description: Whether O(state=present) would build or switch.
  returned: state=checked
  type: bool
  sample: true
rebuilt:
  description: Whether this run built a new prefix (would build, in check mode).
  returned: state=present
  type: bool
  sample: true
reused:
  description: Whether O(path) was switched to a kept earlier build with the same stamp, without installing.
  returned: state=present
  type: bool
  sample: false
torch_variant:
  description: The PyTorch variant chosen from O(requirements_by_variant); null without it.
  returned: success
  type: str
  sample: cu121
python_version:
  description: The Python version of the environment (the pin in check mode).
  returned: success
  type: str
  sample: 3.10.12
backend:
  description: The backend used.
  returned: success
  type: str
  sample: micromamba
pins:
  description: The pinned packages of the lock installed (name==version).
  returned: success
  type: list
  elements: str
  sample: [accelerate==0.26.1, torch==2.1.0+cu118]
versions:
  description: Installed version of every pin, read back from the new build.
  returned: when a build ran
  type: dict
  sample: {torch: 2.1.0+cu118, transformers: 4.36.0}
torch:
  description: torch's version, CUDA release, whether CUDA is available and the device count, with O(torch_check).
  returned: when a build ran with O(torch_check)
  type: dict
  sample: {version: 2.1.0+cu118, cuda: "11.8", available: true, device_count: 8}
commands:
  description: The commands a build runs (ran, or would run in check mode), URL credentials hidden.
  returned: state=present
  type: list
  elements: list
  sample: [[/opt/gpu_stack/envs/.tools/bin/uv, venv, --no-config, --python, /usr/bin/python3, /opt/gpu_stack/envs/.tools-3f1c2a9b0d4e]]
removed:
  description: Build directories removed (older than the O(keep) newest, or unfinished).
  returned: state=present or state=absent
  type: list
  elements: str
  sample: [/opt/gpu_stack/envs/.serving-0a1b2c3d4e5f]
notes:
  description: Remarks on the variant choice (no driver to check against, reduced-feature compatibility).
  returned: success
  type: list
  elements: str
  sample: []
interpreter:
  description: Path and exact version of O(python) (V(uv) only).
  returned: state=checked
  type: dict
  sample: {path: /usr/bin/python3, version: 3.11.2}
seconds:
  description: Wall-clock seconds of the run.
  returned: state=present
  type: float
  sample: 0.004
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.gpu_stack.plugins.module_utils._pyenv import (
    PyEnvError,
    check_environment,
    ensure_environment,
    redact,
    remove_environment,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            name=dict(type="str"),
            state=dict(type="str", default="present", choices=["present", "checked", "absent"]),
            backend=dict(type="str", default="uv", choices=["uv", "micromamba"]),
            python_version=dict(type="str"),
            python=dict(type="path"),
            uv=dict(type="path"),
            micromamba=dict(type="path"),
            cache_dir=dict(type="path"),
            channels=dict(type="list", elements="str", default=["conda-forge"]),
            conda_spec=dict(type="str"),
            conda_lock=dict(type="str"),
            requirements=dict(type="str"),
            requirements_by_variant=dict(type="dict"),
            torch_variant=dict(type="str", default="auto"),
            cuda_version=dict(type="str"),
            driver_version=dict(type="str"),
            allow_minor_version_compat=dict(type="bool", default=False),
            torch_check=dict(type="bool", default=False),
            torch_index_url=dict(type="str", default=""),
            index_url=dict(type="str", default=""),
            extra_index_urls=dict(type="list", elements="str", default=[]),
            wheelhouse=dict(type="path"),
            only_binary=dict(type="bool", default=True),
            compile_bytecode=dict(type="bool", default=True),
            imports=dict(type="list", elements="str", default=[]),
            keep=dict(type="int", default=1),
            ca_bundle=dict(type="path"),
        ),
        required_if=[["state", "present", ["python_version"]], ["state", "checked", ["python_version"]]],
        supports_check_mode=True,
    )
    params = module.params
    if params["keep"] < 0:
        module.fail_json(msg="keep must be 0 or more, got %d" % params["keep"])

    def runner(argv, env):
        return module.run_command(argv, environ_update=env or {})

    try:
        if params["state"] == "absent":
            result = remove_environment(params["path"], module.check_mode)
        elif params["state"] == "checked":
            result = check_environment(params, runner)
        else:
            result = ensure_environment(params, runner, module.check_mode)
    except PyEnvError as exc:
        label = params["name"] or os.path.basename(os.path.normpath(params["path"]))
        details = dict((key, redact(value) if isinstance(value, (str, list)) else value) for key, value in exc.details.items())
        module.fail_json(msg=redact("environment %s: %s" % (label, exc)), **details)

    for note in result.get("notes") or []:
        module.warn("environment %s: %s" % (params["name"] or os.path.basename(os.path.normpath(params["path"])), note))

    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
