# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: cluster_plan
short_description: The models of the plan one host serves as a member of an inventory group
version_added: 0.3.0
author: llmops.gpu_stack maintainers (@llmops)
description:
  - Checks the plan (C(gpu_stack_models)) with the same rules as M(llmops.gpu_stack.deploy_preflight)
    (one implementation; the plan's layout and cluster settings are validated there), then checks it
    against the inventory, and gives, for each model served by a group this host belongs to, everything the
    cluster role needs (its nodes, head, rank, layout, settings, ports and gateway).
  - Refuses, with the variable, the value and the fix, a plan the preflight would refuse, a group the inventory
    does not have, a group whose host count is not the layout's C(nodes), two Ray groups on one host, and two
    ports of this host's models that are the same.
options:
  _input:
    description: The plan, C(gpu_stack_models).
    type: list
    elements: dict
    required: true
  groups:
    description: The inventory's groups (the C(groups) magic variable).
    type: dict
    required: true
  host:
    description: The host the items are for (C(inventory_hostname)).
    type: str
    required: true
  model_root:
    description: Where a model without C(model_path) lives (C(<model_root>/<name>)).
    type: str
    default: /srv/models
"""

EXAMPLES = r"""
- name: The group models this node serves
  ansible.builtin.set_fact:
    __items: "{{ gpu_stack_models | llmops.gpu_stack.cluster_plan(groups, inventory_hostname) }}"
"""

RETURN = r"""
_value:
  description:
    - One dict per group model this host serves, in plan order, with C(name), C(instance), C(engine), C(group),
      C(hosts) (the group's hosts, head first), C(head), C(rank) (this host's index), C(is_head), C(nodes),
      C(tensor_parallel_size), C(pipeline_parallel_size), C(gpus_per_node), C(settings) (the cluster settings with
      their defaults), C(ports) (the ports the nodes reach each other on), C(model_dir), C(model) (the normalized
      plan item, unset keys left out) and C(gateway) (C(name), C(instance), C(engine), C(gateway_port),
      C(upstream_host), C(upstream_port), C(max_model_len)).
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _plan as plan

_ANY_ADDRESS = ("0.0.0.0", "::", "")


def _item(model, hosts, host, model_root):
    layout, settings, engine = model["layout"], model["cluster"], model["engine"]
    tp, pp, nodes = layout["tensor_parallel_size"], layout["pipeline_parallel_size"], layout["nodes"]
    instance = plan.instance_name(model["name"])
    upstream = settings["host"] if settings["host"] not in _ANY_ADDRESS else "127.0.0.1"
    if ":" in upstream:
        upstream = "[%s]" % upstream.strip("[]")
    return {
        "name": model["name"],
        "instance": instance,
        "engine": engine,
        "group": model["group"],
        "hosts": list(hosts),
        "head": hosts[0],
        "rank": hosts.index(host),
        "is_head": hosts[0] == host,
        "nodes": nodes,
        "tensor_parallel_size": tp,
        "pipeline_parallel_size": pp,
        "gpus_per_node": tp * pp // nodes,
        "settings": dict(settings),
        "ports": [settings["ray_port"] if engine == "vllm" else settings["dist_init_port"]],
        "model_dir": model["model_path"] or "%s/%s" % (model_root.rstrip("/"), model["name"]),
        "model": dict((k, v) for k, v in model.items() if v is not None),
        "gateway": {"name": model["name"], "instance": instance, "engine": engine,
                    "gateway_port": model["gateway_port"], "upstream_host": upstream,
                    "upstream_port": settings["port"], "max_model_len": model["max_model_len"] or 0},
    }


def _port_clashes(host, models, items):
    """Two ports this host would listen on that are the same: a single-host model's engines and
    gateway, a group model's engine port, its Ray or SGLang rendezvous port, and its gateway (head)."""
    claims = {}
    for model in plan.host_models(models):
        for key in ("port", "port_green", "gateway_port"):
            claims.setdefault(model[key], []).append("%s.%s" % (model["var"], key))
    for item in items:
        var = item["model"]["var"]
        settings = item["settings"]
        claims.setdefault(settings["port"], []).append("%s.cluster.port" % var)
        key = "ray_port" if item["engine"] == "vllm" else "dist_init_port"
        claims.setdefault(settings[key], []).append("%s.cluster.%s" % (var, key))
        if item["is_head"]:
            claims.setdefault(item["gateway"]["gateway_port"], []).append("%s.gateway_port" % var)
    return ["%s are all port %d on %s: give each its own port" % (", ".join(paths), port, host)
            for port, paths in sorted(claims.items()) if len(paths) > 1]


def cluster_plan(models, groups, host, model_root="/srv/models"):
    groups = groups or {}
    try:
        normalized = plan.normalize_models(models)
    except plan.PlanError as exc:
        raise AnsibleFilterError("%s. Nothing was changed." % exc)
    problems = []
    items = []
    for model in plan.group_models(normalized):
        group, nodes = model["group"], model["layout"]["nodes"]
        if group not in groups:
            problems.append("%s.group is %r: the inventory has no group %s; add it with the nodes that serve the "
                            "model (the head first), or name an existing group" % (model["var"], group, group))
            continue
        hosts = list(groups[group] or [])
        if len(hosts) != nodes:
            problems.append("%s.layout.nodes is %d, but inventory group %s has %d host%s (%s): list exactly the "
                            "nodes that serve the model in the group (the head first), or set layout.nodes to %d"
                            % (model["var"], nodes, group, len(hosts), "" if len(hosts) == 1 else "s",
                               ", ".join(hosts) or "none", len(hosts)))
            continue
        if host in hosts:
            items.append(_item(model, hosts, host, model_root))
    ray = [item["name"] for item in items if item["engine"] == "vllm"]
    if len(ray) > 1:
        problems.append("%s is in the Ray groups of %s: one Ray cluster per node; serve all but one of them from "
                        "another group" % (host, ", ".join(ray)))
    problems.extend(_port_clashes(host, normalized, items))
    if problems:
        raise AnsibleFilterError("gpu_stack_models does not fit the inventory on %s (%d problem%s): %s. Nothing was "
                                 "changed." % (host, len(problems), "" if len(problems) == 1 else "s",
                                               " | ".join(problems)))
    return items


class FilterModule(object):
    def filters(self):
        return {"cluster_plan": cluster_plan}
