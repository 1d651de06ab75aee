# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r"""
name: serving_instances
short_description: What the serving role runs for each model of the plan, from the preflight's verdict
version_added: 0.2.0
author: llmops.gpu_stack maintainers (@llmops)
description:
  - Joins the served models of the plan (C(gpu_stack_models)) with the report
    M(llmops.gpu_stack.deploy_preflight) returned for them, and gives, per model, everything the
    serving role needs to run its blue and green instances (names, ports, the GPUs the preflight
    placed it on, the settings it derived, each marked set or derived, and the exact engine
    arguments of each instance).
  - The engine runs what the preflight approved. The settings come from the report's
    C(engine_settings) (values the user set are there unchanged), never from a second
    calculation.
options:
  _input:
    description: The result of M(llmops.gpu_stack.deploy_preflight) with O(llmops.gpu_stack.deploy_preflight#module:models).
    type: dict
    required: true
  models:
    description:
      - The plan the preflight checked (the same list, in the same order).
      - Models served by a group of nodes (with a C(group)) are left out here, as the preflight leaves them out;
        the cluster role serves them.
    type: list
    elements: dict
    required: true
  model_mount:
    description: Where the engine container sees the model directory.
    type: str
    default: /models
  threads:
    description: llama.cpp CPU threads for a model that sets none (the host's CPUs).
    type: int
"""

EXAMPLES = r"""
- name: The instances of each model
  ansible.builtin.set_fact:
    __instances: "{{ __preflight | llmops.gpu_stack.serving_instances(gpu_stack_models, threads=8) }}"
"""

RETURN = r"""
_value:
  description:
    - One dict per model, in plan order, with C(name) (served model name), C(instance) (the prefix of its units,
      state file and gateway files), C(engine), C(model_path) (the model directory), C(current_path)
      (C(<model_path>/current)), C(file), C(port), C(port_green), C(gateway_port), C(gpus) (indices used),
      C(settings) (the engine settings with C(source)), C(weights_bytes) and C(argvs) (C(blue) and C(green), the engine
      arguments of each instance).
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.gpu_stack.plugins.module_utils._engine_args import EngineArgsError, engine_argv
from ansible_collections.llmops.gpu_stack.plugins.module_utils._plan import host_models, instance_name


def _settings(report, model, model_mount, threads):
    derived = report.get("engine_settings") or {}
    plan = report.get("plan") or {}
    engine = report["engine"]
    path = model_mount + ("/" + model["file"] if model.get("file") else "")
    settings = {
        "model": path,
        "served_model_name": report["name"],
        "host": "127.0.0.1",
        "tensor_parallel_size": int(plan.get("tensor_parallel_size") or 1),
        "pipeline_parallel_size": int(plan.get("pipeline_parallel_size") or 1),
        "max_model_len": derived.get("max_model_len"),
        "max_num_seqs": derived.get("max_num_seqs"),
        "max_num_batched_tokens": derived.get("max_num_batched_tokens"),
        "gpu_memory_utilization": derived.get("gpu_memory_utilization") if engine != "llama_cpp" else None,
        "dtype": derived.get("dtype") or "auto",
        "quantization": derived.get("quantization"),
        "kv_cache_dtype": derived.get("kv_cache_dtype") or model.get("kv_cache_dtype") or "auto",
        "extra_args": list(model.get("extra_args") or []),
        "trust_remote_code": bool(model.get("trust_remote_code")),
    }
    if engine == "llama_cpp":
        settings["threads"] = model.get("threads") or threads
        settings["n_gpu_layers"] = 0 if report.get("device") == "cpu" else derived.get("n_gpu_layers")
        # llama.cpp takes no dtype or KV cache names of vLLM's: its file is its format.
        settings["dtype"] = "auto"
        settings["kv_cache_dtype"] = "auto"
    return settings


def serving_instances(result, models, model_mount="/models", threads=None):
    if not isinstance(result, dict) or "models" not in result:
        raise AnsibleFilterError("serving_instances expects the result of deploy_preflight with models, got %r"
                                 % (type(result).__name__,))
    reports = result["models"]
    models = host_models(models or [])
    if len(reports) != len(models or []):
        raise AnsibleFilterError("serving_instances: the preflight checked %d models, the plan has %d; run the "
                                 "preflight on the same gpu_stack_models" % (len(reports), len(models or [])))
    out = []
    for report, model in zip(reports, models):
        if report["name"] != model.get("name"):
            raise AnsibleFilterError("serving_instances: the preflight's model %r is not the plan's %r (same order "
                                     "expected)" % (report["name"], model.get("name")))
        if report.get("blocked"):
            raise AnsibleFilterError("serving_instances: the preflight blocked %s: %s"
                                     % (report["name"], " | ".join(report.get("blocking") or [])))
        settings = _settings(report, model, model_mount, threads)
        argvs = {}
        try:
            for color, port in (("blue", report["port"]), ("green", report["port_green"])):
                argvs[color] = engine_argv(report["engine"], dict(settings, port=int(port)))
        except EngineArgsError as exc:
            raise AnsibleFilterError("the engine arguments of %s: %s" % (report["name"], exc))
        out.append({
            "name": report["name"],
            "instance": model.get("instance") or instance_name(report["name"]),
            "engine": report["engine"],
            "device": report.get("device"),
            "model_path": report["model_path"],
            "current_path": model.get("current_path") or report["model_path"].rstrip("/") + "/current",
            "file": model.get("file") or "",
            "port": int(report["port"]),
            "port_green": int(report["port_green"]),
            "gateway_port": int(report["gateway_port"]),
            "gpus": list(report.get("gpus_used") or []),
            "settings": dict(report.get("engine_settings") or {}),
            "weights_bytes": int((report.get("estimate") or {}).get("weights_bytes") or 0),
            "argvs": argvs,
        })
    return out


class FilterModule(object):
    def filters(self):
        return {"serving_instances": serving_instances}
