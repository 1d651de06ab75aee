#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_preflight
short_description: Compare the nodes of a multi-node model group before anything changes
version_added: 0.3.0
description:
  - A model served across several nodes (vLLM with Ray, or SGLang multi-node) needs the same NVIDIA driver, CUDA,
    engine image, Ray and Python on every node, the same model revision, the named network interface with an address,
    and every node reaching the others on the group's ports.
  - With O(gather=true) the module reads this node's facts and returns them as RV(node); nothing else is checked.
  - Otherwise it compares the facts of every node (O(nodes), the RV(node) results of each node gathered earlier) and
    estimates the memory per GPU for the tensor x pipeline parallel layout. Each failure names the node, the value
    and the fix. Fails on any blocking failure unless O(fail_on_blocking=false).
  - Facts no node reports (no NVIDIA driver on any node, no image pulled yet, no model placed yet) are skipped and
    listed in RV(skipped_checks); a fact that some nodes report and another lacks is a failure.
author:
  - llmops.gpu_stack maintainers (@llmops)
extends_documentation_fragment:
  - llmops.gpu_stack.attributes
  - llmops.gpu_stack.attributes.info_module
options:
  gather:
    description: Read this node's facts (RV(node)) instead of comparing nodes.
    type: bool
    default: false
  python:
    description: With O(gather), the Python of the Ray environment; its version and its Ray version are read.
    type: path
  image:
    description: With O(gather), the engine image whose digest is read from the local image store.
    type: str
  container_engine:
    description: With O(gather), the command that inspects O(image).
    type: str
    default: podman
  model_dir:
    description: With O(gather), the model directory; the sha256 of the manifest of its C(current) revision is read.
    type: path
  bindings_path:
    description: With O(gather), where the C(pynvml) binding is installed.
    type: path
    default: /opt/gpu_stack/python
  nodes:
    description: The facts of every node of the group, by node name (each the RV(node) of a gather).
    type: dict
  layout:
    description:
      - The group's layout, C(nodes), C(tensor_parallel_size) and C(pipeline_parallel_size) (the C(layout) of a served
        model in C(gpu_stack_models)).
      - Checked first with the plan's own layout rule, the one M(llmops.gpu_stack.deploy_preflight) applies to
        C(gpu_stack_models) (2 or more nodes; tensor x pipeline parallel a multiple of C(nodes); with O(engine=vllm)
        C(pipeline_parallel_size) equal to C(nodes)); a layout it refuses fails the module naming each key, value and
        fix.
    type: dict
  interface:
    description: The interface of the private segment that NCCL and GLOO use; every node must have it with an address.
    type: str
  ports:
    description: The group's TCP ports (Ray, or SGLang's distributed init port).
    type: list
    elements: int
    default: []
  probes:
    description: Reachability of every node from every other, as a list of C(from), C(to), C(port) and C(ok).
    type: list
    elements: dict
    default: []
  profile:
    description: A built-in model profile for the memory estimate per GPU.
    type: str
  architecture:
    description: The model's config.json numbers, for a model without a built-in profile.
    type: dict
  engine:
    description: The engine, for its activation and runtime estimate.
    type: str
    choices: [vllm, sglang]
    default: vllm
  dtype:
    description: Weight format served.
    type: str
    default: auto
  kv_cache_dtype:
    description: KV cache element type.
    type: str
    default: auto
  context_length:
    description: Longest sequence served.
    type: int
  max_num_seqs:
    description: Sequences served at once.
    type: int
    default: 1
  gpu_memory_utilization:
    description: Fraction of each GPU's memory the engine may claim.
    type: float
    default: 0.9
  fail_on_blocking:
    description: Fail the task when a blocking check fails.
    type: bool
    default: true
seealso:
  - module: llmops.gpu_stack.deploy_preflight
"""

EXAMPLES = r"""
- name: Read each node's facts
  llmops.gpu_stack.cluster_preflight:
    gather: true
    python: /opt/gpu_stack/envs/ray/bin/python
    image: docker.io/vllm/vllm-openai@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
    model_dir: /srv/models/deepseek-v3
  register: __node

- name: Compare them, once per group
  llmops.gpu_stack.cluster_preflight:
    nodes: "{{ dict(groups['h100_pair'] | zip(groups['h100_pair'] | map('extract', hostvars, ['__node', 'node']))) }}"
    layout: {nodes: 2, tensor_parallel_size: 8, pipeline_parallel_size: 2}
    interface: ens1f0
    ports: [6379]
    profile: deepseek-v3
    dtype: fp8
    context_length: 32768
    max_num_seqs: 16
  run_once: true
"""

RETURN = r"""
node:
  description:
    - With O(gather), this node's facts, C(python_version), C(ray_version), C(driver_version), C(cuda_version),
      C(image_digest), C(manifest_sha256) (each V(null) when not found), C(interfaces) (name to IPv4 addresses) and
      C(gpus) (C(index) and C(memory_total) of each GPU NVML reads).
  returned: with O(gather)
  type: dict
blocked:
  description: Whether a blocking check failed.
  returned: without O(gather)
  type: bool
msg:
  description: The verdict; on a block every failure with its fix.
  returned: always
  type: str
checks:
  description: Every check run, as C(check), C(ok), C(severity), C(message), C(numbers) and C(fix).
  returned: without O(gather)
  type: list
  elements: dict
blocking:
  description: Blocking failures, one line each with the fix.
  returned: without O(gather)
  type: list
  elements: str
skipped_checks:
  description: Checks not run and why.
  returned: without O(gather)
  type: list
  elements: str
estimate:
  description: The memory estimate on the busiest GPU for the layout (the keys of M(llmops.gpu_stack.deploy_preflight)'s).
  returned: with O(profile) or O(architecture)
  type: dict
"""

import sys

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _cluster as cluster
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _model_profile as profiles
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _plan as plan
from ansible_collections.llmops.gpu_stack.plugins.module_utils._nvml import DEFAULT_BINDINGS_PATH, collect_gpu_facts

_VERSIONS = ("import sys, importlib.metadata as m\n"
             "print(sys.version.split()[0])\n"
             "try:\n    print(m.version('ray'))\nexcept m.PackageNotFoundError:\n    print('')\n")


def gather(module):
    params = module.params
    node = {"python_version": None, "ray_version": None, "image_digest": None, "manifest_sha256": None}
    if params["python"]:
        rc, out, err = module.run_command([params["python"], "-c", _VERSIONS])
        if rc != 0:
            module.fail_json(msg="cannot run %s (%s): set python to the Ray environment's interpreter"
                             % (params["python"], (err or out).strip()))
        lines = out.splitlines() + ["", ""]
        node["python_version"] = lines[0].strip() or None
        node["ray_version"] = lines[1].strip() or None
    else:
        node["python_version"] = "%d.%d.%d" % sys.version_info[:3]
    if params["image"]:
        binary = module.get_bin_path(params["container_engine"])
        if binary:
            rc, out, _err = module.run_command([binary, "image", "inspect", "--format", "{{.Digest}}", params["image"]])
            node["image_digest"] = out.strip() or None if rc == 0 else None
    if params["model_dir"]:
        node["manifest_sha256"] = cluster.manifest_sha256(params["model_dir"])
    facts = collect_gpu_facts(bindings_path=params["bindings_path"])
    node["driver_version"] = facts.get("driver_version") or cluster.driver_version()
    node["cuda_version"] = facts.get("cuda_driver_version")
    node["gpus"] = [{"index": g.get("index"), "memory_total": g.get("memory_total")} for g in facts.get("gpus") or []]
    node["interfaces"] = cluster.interface_addresses()
    module.exit_json(changed=False, node=node, msg="facts of this node gathered")


def normalize_layout(layout, engine="vllm"):
    """The layout with whole numbers, or a message naming what is wrong: the plan's own rule
    (_plan.check_layout), so a layout the plan accepts is the one compared here."""
    out, problems = plan.check_layout(layout, engine)
    if problems:
        return None, " | ".join("%s is %r: %s; %s" % problem for problem in problems)
    return out, None


def compare(module):
    params = module.params
    if not params["nodes"] or not params["layout"]:
        module.fail_json(msg="nodes and layout are required without gather=true: pass the gathered facts of every "
                             "node and the group's layout")
    layout, problem = normalize_layout(params["layout"], params["engine"])
    if problem:
        module.fail_json(msg=problem)
    estimate = None
    if params["profile"] or params["architecture"]:
        try:
            profile = profiles.load_profile(model=params["profile"], architecture=params["architecture"])
            estimate = cluster.estimate_per_gpu(profile, layout, params["engine"], params["dtype"],
                                                params["kv_cache_dtype"], params["context_length"],
                                                params["max_num_seqs"])
        except (ValueError, KeyError) as exc:
            module.fail_json(msg="cannot size the model: %s; give a built-in profile or the config.json numbers"
                             % exc)
    results, skipped = cluster.check_group(params["nodes"], layout, params["interface"], params["probes"],
                                           params["ports"], estimate, params["gpu_memory_utilization"])
    blocking = cluster.blocking_lines(results)
    if blocking:
        msg = "cluster preflight blocked the group of %d node%s (%d problem%s): %s" % (
            len(params["nodes"]), "" if len(params["nodes"]) == 1 else "s", len(blocking),
            "" if len(blocking) == 1 else "s", " | ".join(blocking))
    else:
        msg = "cluster preflight passed for %s" % ", ".join(sorted(params["nodes"]))
    result = dict(changed=False, blocked=bool(blocking), msg=msg, checks=results, blocking=blocking,
                  skipped_checks=skipped, estimate=estimate)
    if blocking and params["fail_on_blocking"]:
        module.fail_json(**result)
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            gather=dict(type="bool", default=False),
            python=dict(type="path"),
            image=dict(type="str"),
            container_engine=dict(type="str", default="podman"),
            model_dir=dict(type="path"),
            bindings_path=dict(type="path", default=DEFAULT_BINDINGS_PATH),
            nodes=dict(type="dict"),
            layout=dict(type="dict"),
            interface=dict(type="str"),
            ports=dict(type="list", elements="int", default=[]),
            probes=dict(type="list", elements="dict", default=[]),
            profile=dict(type="str"),
            architecture=dict(type="dict"),
            engine=dict(type="str", default="vllm", choices=["vllm", "sglang"]),
            dtype=dict(type="str", default="auto"),
            kv_cache_dtype=dict(type="str", default="auto"),
            context_length=dict(type="int"),
            max_num_seqs=dict(type="int", default=1),
            gpu_memory_utilization=dict(type="float", default=0.9),
            fail_on_blocking=dict(type="bool", default=True),
        ),
        mutually_exclusive=[("profile", "architecture")],
        supports_check_mode=True,
    )
    if module.params["gather"]:
        gather(module)
    compare(module)


if __name__ == "__main__":
    main()
