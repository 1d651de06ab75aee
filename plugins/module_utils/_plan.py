# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One plan per host: the list of served models (gpu_stack_models), as pure functions.

Every role and the preflight read the same list. Each item names one served model:

  name                  served model name, ^[a-z0-9][a-z0-9._-]{0,62}$, unique per host (required)
  profile               a built-in model profile (_vram.MODEL_PROFILES), or
  architecture          config.json numbers; neither only for a .gguf file (its header is read)
  file                  the model file inside the model directory (llama_cpp: a .gguf file)
  model_path            where the model lives (default <model_root>/<name>)
  revision, source      model storage fields (type-checked here only)
  engine                auto | vllm | sglang | llama_cpp (auto: see resolve_engine)
  dtype, quantization, kv_cache_dtype                 auto, none, auto
  tensor_parallel_size, pipeline_parallel_size        1, 1
  gpus                  "all", a list of GPU indices, or unset (auto: see assign_gpus)
  max_model_len, max_num_seqs, gpu_memory_utilization, max_num_batched_tokens
                        unset: derived by the preflight (_preflight.derive_settings)
  port, port_green      the blue and green engine ports; default 8001 + 2i and 8002 + 2i
  gateway_port          the port of the model's gateway (nginx, the only port clients reach);
                        default 8080 + i
  extra_args            list of engine arguments; threads: llama.cpp CPU threads
  group, layout, cluster
                        a model served across the nodes of an inventory group (the cluster role):
                        layout {nodes, tensor_parallel_size, pipeline_parallel_size} and the
                        cluster settings (CLUSTER_DEFAULTS); see _check_group

normalize_models validates the list and fills the defaults; assign_gpus places the models on
the host's GPUs; plan_to_preflight turns one item into the plan _preflight.run_preflight
takes; check_together checks what models that share a GPU (or the host's RAM) claim together.
Python 3.9+, standard library only.
"""

from __future__ import annotations

import math
import re

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _gpu_tables as tables
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _preflight as preflight
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _vram as vram

DEFAULT_VAR = "gpu_stack_models"
ENGINES = ("auto", "vllm", "sglang", "llama_cpp")
GPU_ENGINES = ("vllm", "sglang")
QUANTIZATIONS = ("none", "fp8", "int8", "int4", "awq", "gptq")
FIRST_PORT = 8001
FIRST_GATEWAY_PORT = 8080
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
# Models that share a GPU and leave gpu_memory_utilization unset split this fraction evenly.
SHARED_MEMORY_FRACTION = preflight.DEFAULT_GPU_MEMORY_UTILIZATION

KEYS = ("name", "profile", "architecture", "file", "model_path", "revision", "source", "engine", "dtype",
        "quantization", "kv_cache_dtype", "tensor_parallel_size", "pipeline_parallel_size", "gpus",
        "max_model_len", "max_num_seqs", "gpu_memory_utilization", "max_num_batched_tokens", "port",
        "port_green", "gateway_port", "extra_args", "threads", "group", "layout", "cluster")
GROUP_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LAYOUT_KEYS = ("nodes", "tensor_parallel_size", "pipeline_parallel_size")
# The cluster settings of a model served by a group, with their defaults (interface has none).
CLUSTER_DEFAULTS = {"interface": None, "host_ip_source": "interface", "shm_size": "32g", "ray_port": 6379,
                    "dist_init_port": 5000, "dist_timeout": 3600, "host": "127.0.0.1", "port": 8000}
HOST_IP_SOURCES = ("interface", "ansible_host")
SHM_RE = re.compile(r"^[1-9][0-9]*[kmgKMG]?$")


class PlanError(ValueError):
    """An invalid plan; .problems lists every problem (variable path, value, fix)."""

    def __init__(self, problems, var=DEFAULT_VAR):
        self.problems = list(problems)
        ValueError.__init__(self, "%s is not a valid plan (%d problem%s): %s" % (
            var, len(self.problems), "" if len(self.problems) == 1 else "s", " | ".join(self.problems)))


def _int_value(value):
    """An int from an int or a string of digits (templated values arrive as strings); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == int(value):
        return int(value)
    if isinstance(value, str) and re.match(r"^\s*-?\d+\s*$", value):
        return int(value)
    return None


def _float_value(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


class _Item(object):
    """Validation of one item; every problem is appended to the shared list."""

    def __init__(self, item, index, var, problems):
        self.item = item
        self.index = index
        self.var = var
        self.problems = problems

    def path(self, key=None):
        base = "%s[%d]" % (self.var, self.index)
        return base + ("." + key if key else "")

    def problem(self, key, value, what, fix):
        self.problems.append("%s is %r: %s; %s" % (self.path(key), value, what, fix))

    def positive_int(self, key, default=None, fix=None):
        value = self.item.get(key)
        if value is None:
            return default
        number = _int_value(value)
        if number is None or number < 1:
            self.problem(key, value, "must be a positive integer", fix or "set a whole number of 1 or more, or leave "
                         "it unset")
            return default
        return number

    def text(self, key, default=None):
        value = self.item.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            self.problem(key, value, "must be a string", "quote it in the inventory")
            return default
        return value


def _suggest_name(value):
    text = re.sub(r"[^a-z0-9._-]+", "-", str(value).strip().lower()).strip("-._")
    return text[:63] or "my-model"


def _normalize_item(raw, index, var, problems):
    check = _Item(raw, index, var, problems)
    unknown = sorted(str(k) for k in raw if k not in KEYS)
    for key in unknown:
        check.problems.append("%s is not a known key; the keys of a served model are: %s (check the spelling)"
                              % (check.path(key), ", ".join(KEYS)))
    model = {"index": index, "var": check.path()}

    name = raw.get("name")
    if name is None or name == "":
        check.problems.append("%s has no name: every served model needs one (the name clients ask for, such as "
                              "deepseek-r1-distill-qwen-7b)" % check.path())
    elif not isinstance(name, str) or not NAME_RE.match(name):
        check.problem("name", name, "not a served model name (lower-case letters, digits, '.', '_' and '-', "
                      "starting with a letter or digit, at most 63 characters)", "use %r" % _suggest_name(name))
        name = None
    model["name"] = name

    engine = raw.get("engine") or "auto"
    if engine not in ENGINES:
        check.problem("engine", engine, "not an engine", "use one of %s" % ", ".join(ENGINES))
        engine = "auto"
    model["engine"] = engine

    model["file"] = check.text("file")
    if model["file"] is not None and not FILE_RE.match(model["file"]):
        check.problem("file", model["file"], "not a file name", "give the file's name inside the model directory "
                      "(no '/', no spaces), such as model.Q4_K_M.gguf")
        model["file"] = None
    is_gguf = (model["file"] or "").lower().endswith(".gguf")

    profile = raw.get("profile")
    architecture = raw.get("architecture")
    if profile is not None:
        key = str(profile).strip().lower()
        if key not in vram.MODEL_PROFILES:
            check.problem("profile", profile, "not a built-in model profile",
                          "use one of %s, or give architecture (the config.json numbers) instead"
                          % ", ".join(vram.list_profiles()))
            profile = None
        else:
            profile = key
    if architecture is not None:
        if not isinstance(architecture, dict):
            check.problem("architecture", architecture, "must be a dict of config.json numbers",
                          "give num_hidden_layers, hidden_size, intermediate_size, num_attention_heads, vocab_size, ...")
            architecture = None
        else:
            try:
                vram.normalize_profile(architecture)
            except ValueError as exc:
                check.problems.append("%s: %s; fix those numbers (config.json key names)" % (check.path("architecture"), exc))
    if raw.get("profile") is not None and raw.get("architecture") is not None:
        check.problems.append("%s sets both profile (%r) and architecture: give one of them (profile for a "
                              "built-in model, architecture for any other)" % (check.path(), raw.get("profile")))
    if raw.get("profile") is None and raw.get("architecture") is None and not is_gguf:
        check.problems.append("%s gives neither profile nor architecture, and file %r is not a .gguf file whose "
                              "header could be read: set profile to one of %s, or architecture to the model's "
                              "config.json numbers" % (check.path(), model["file"], ", ".join(vram.list_profiles())))
    model["profile"] = profile
    model["architecture"] = architecture
    if engine == "llama_cpp" and not is_gguf:
        check.problem("file", model["file"], "engine llama_cpp serves a GGUF file",
                      "set file to the .gguf file's name (such as model.Q4_K_M.gguf), or use engine vllm or sglang")

    model_path = check.text("model_path")
    if model_path is not None and not model_path.startswith("/"):
        check.problem("model_path", model_path, "not an absolute path", "use an absolute path such as /srv/models/%s"
                      % (name or "<name>"))
        model_path = None
    model["model_path"] = model_path
    model["revision"] = check.text("revision")
    source = raw.get("source")
    if source is not None and not isinstance(source, dict):
        check.problem("source", source, "must be a dict", "give the model storage source as a mapping (see the "
                      "model_storage role)")
        source = None
    model["source"] = source

    dtype = str(raw.get("dtype") or "auto")
    if dtype != "auto" and tables.normalize_dtype(dtype) not in vram.known_dtypes():
        check.problem("dtype", dtype, "not a weight format", "use auto, bf16, fp16, fp32, fp8, int8, int4, awq, gptq "
                      "or a GGUF type such as Q4_K_M")
        dtype = "auto"
    model["dtype"] = dtype
    quantization = str(raw.get("quantization") or "none").lower()
    if tables.normalize_dtype(quantization) not in QUANTIZATIONS:
        check.problem("quantization", quantization, "not a quantization method", "use one of %s" % ", ".join(QUANTIZATIONS))
        quantization = "none"
    model["quantization"] = quantization if quantization == "none" else tables.normalize_dtype(quantization)
    kv = str(raw.get("kv_cache_dtype") or "auto")
    if kv != "auto" and tables.normalize_dtype(kv) not in vram.KV_CACHE_BYTES:
        check.problem("kv_cache_dtype", kv, "not a KV cache type", "use auto, fp8, or for llama_cpp q8_0 / q4_0")
        kv = "auto"
    model["kv_cache_dtype"] = kv

    tp = check.positive_int("tensor_parallel_size", 1, "set the number of GPUs each layer is split across (1, 2, 4 "
                            "or 8), or leave it unset for 1")
    pp = check.positive_int("pipeline_parallel_size", 1, "set the number of pipeline stages (usually 1), or leave "
                            "it unset for 1")
    model["tensor_parallel_size"], model["pipeline_parallel_size"] = tp, pp
    if engine == "llama_cpp" and tp * pp != 1:
        check.problem("tensor_parallel_size", tp * pp, "llama_cpp serves on one device",
                      "leave tensor_parallel_size and pipeline_parallel_size at 1, or use engine vllm or sglang")

    gpus = raw.get("gpus")
    if gpus is None or gpus == "auto":
        gpus = "auto"
    elif gpus == "all":
        pass
    elif isinstance(gpus, (list, tuple)):
        indices = [_int_value(g) for g in gpus]
        if not gpus or any(i is None or i < 0 for i in indices):
            check.problem("gpus", gpus, "must be \"all\" or a list of GPU indices (whole numbers from 0)",
                          "list the GPUs as in nvidia-smi, such as [0, 1], or leave it unset to place the model "
                          "on the next free GPUs")
            gpus = "auto"
        elif len(set(indices)) != len(indices):
            check.problem("gpus", gpus, "names a GPU twice", "list each GPU once, such as %r" % sorted(set(indices)))
            gpus = "auto"
        elif len(indices) != tp * pp:
            check.problem("gpus", gpus, "lists %d GPU%s but tensor_parallel_size x pipeline_parallel_size is %d"
                          % (len(indices), "" if len(indices) == 1 else "s", tp * pp),
                          "list %d GPU%s, or set tensor_parallel_size to %d" % (
                              tp * pp, "" if tp * pp == 1 else "s", max(1, len(indices) // pp)))
            gpus = "auto"
        else:
            gpus = indices
    else:
        check.problem("gpus", gpus, "must be \"all\" or a list of GPU indices",
                      "write gpus: all, or gpus: [0, 1], or leave it unset to place the model on the next free GPUs")
        gpus = "auto"
    model["gpus"] = gpus

    model["max_model_len"] = check.positive_int("max_model_len", None, "set the longest sequence (prompt + output) "
                                                "in tokens, such as 32768, or leave it unset to derive it")
    model["max_num_seqs"] = check.positive_int("max_num_seqs", None, "set the number of sequences served at once, "
                                               "such as 16, or leave it unset to derive it")
    model["max_num_batched_tokens"] = check.positive_int("max_num_batched_tokens", None, "set the tokens of the "
                                                         "largest forward pass, such as 8192, or leave it unset")
    util = raw.get("gpu_memory_utilization")
    if util is not None:
        number = _float_value(util)
        if number is None or not 0.0 < number <= 1.0:
            check.problem("gpu_memory_utilization", util, "must be a fraction in (0, 1]",
                          "set the fraction of each GPU's memory the engine may claim, such as 0.9, or leave it "
                          "unset to derive it")
            util = None
        elif engine == "llama_cpp":
            check.problem("gpu_memory_utilization", util, "llama_cpp takes no memory fraction (it is checked "
                          "against free memory)", "remove it")
            util = None
        else:
            util = number
    model["gpu_memory_utilization"] = util

    for key, default in (("port", FIRST_PORT + 2 * index), ("port_green", FIRST_PORT + 1 + 2 * index),
                         ("gateway_port", FIRST_GATEWAY_PORT + index)):
        value = raw.get(key)
        number = default if value is None else _int_value(value)
        if number is None or not 1 <= number <= 65535:
            check.problem(key, value, "not a TCP port", "use a port from 1 to 65535, or leave it unset for %d" % default)
            number = default
        model[key] = number

    extra = raw.get("extra_args")
    if extra is None:
        extra = []
    elif not isinstance(extra, (list, tuple)) or not all(isinstance(a, str) for a in extra):
        check.problem("extra_args", extra, "must be a list of strings", "write each engine argument as one string, "
                      "such as ['--enable-prefix-caching']")
        extra = []
    model["extra_args"] = list(extra)
    model["threads"] = check.positive_int("threads", None, "set the CPU threads llama.cpp uses, or leave it unset")
    _check_group(check, raw, model, engine)
    return model


def _check_group(check, raw, model, engine):
    """group, layout and cluster: a model served across the nodes of an inventory group.

    Tensor parallel stays inside a node; for vLLM pipeline parallel crosses the nodes
    (pipeline_parallel_size = nodes), for SGLang tensor x pipeline parallel spans them. Every node
    has the same number of GPUs (tensor x pipeline parallel divisible by nodes). cluster names the
    private interface (NCCL_SOCKET_IFNAME, GLOO_SOCKET_IFNAME, and VLLM_HOST_IP from its address)."""
    group, layout, settings = raw.get("group"), raw.get("layout"), raw.get("cluster")
    model["group"], model["layout"], model["cluster"] = None, None, None
    if group is None:
        for key, value in (("layout", layout), ("cluster", settings)):
            if value is not None:
                check.problem(key, value, "only a model served by a group of nodes has one",
                              "set group to the inventory group that serves the model, or remove %s" % key)
        return
    if not isinstance(group, str) or not GROUP_RE.match(group):
        check.problem("group", group, "not an inventory group name", "use the name of the group of hosts that serve "
                      "the model together, such as h100_pair")
        return
    if engine not in GPU_ENGINES:
        check.problem("engine", engine, "a model served by a group runs vLLM (with Ray) or SGLang",
                      "set engine to vllm or sglang")
    if raw.get("tensor_parallel_size") is not None or raw.get("pipeline_parallel_size") is not None:
        check.problems.append("%s sets tensor_parallel_size or pipeline_parallel_size and group: a group model "
                              "takes them from layout; remove them" % check.path())
    layout, problems = check_layout(layout, engine)
    for key, value, what, fix in problems:
        check.problem(key, value, what, fix)
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        check.problem("cluster", settings, "must be a mapping", "give the cluster settings as a mapping, at least "
                      "{interface: <the private interface>}")
        settings = {}
    merged = dict(CLUSTER_DEFAULTS)
    for key in sorted(str(k) for k in settings if k not in CLUSTER_DEFAULTS):
        check.problems.append("%s is not a cluster setting; the settings are %s" % (
            check.path("cluster." + key), ", ".join(sorted(CLUSTER_DEFAULTS))))
    merged.update((k, v) for k, v in settings.items() if k in CLUSTER_DEFAULTS)
    if not isinstance(merged["interface"], str) or not merged["interface"]:
        check.problem("cluster.interface", merged["interface"], "a group model needs the interface of the private "
                      "segment between its nodes (NCCL and GLOO use it; VLLM_HOST_IP is its address)",
                      "set cluster.interface, such as ens1f0 (every node must have it)")
    if merged["host_ip_source"] not in HOST_IP_SOURCES:
        check.problem("cluster.host_ip_source", merged["host_ip_source"], "not a source of the node address",
                      "use interface (the address on cluster.interface) or ansible_host")
    if not isinstance(merged["shm_size"], str) or not SHM_RE.match(merged["shm_size"]):
        check.problem("cluster.shm_size", merged["shm_size"], "not a size", "write it as podman does, such as 32g")
    for key in ("ray_port", "dist_init_port", "port"):
        number = _int_value(merged[key])
        if number is None or not 1 <= number <= 65535:
            check.problem("cluster." + key, merged[key], "not a TCP port", "use a port from 1 to 65535, or leave it "
                          "unset for %d" % CLUSTER_DEFAULTS[key])
        else:
            merged[key] = number
    timeout = _int_value(merged["dist_timeout"])
    if timeout is None or timeout < 1:
        check.problem("cluster.dist_timeout", merged["dist_timeout"], "must be a whole number of seconds",
                      "set it, such as 3600 (SGLang's advice against NCCL watchdog timeouts)")
    else:
        merged["dist_timeout"] = timeout
    model["group"], model["layout"], model["cluster"] = group, layout, merged


def check_layout(layout, engine):
    """The one rule for a group's layout: (layout with whole numbers or None, problems).

    Each problem is (key, value, what, fix), key relative to the model (layout.nodes). A group
    serves one model on 2 or more nodes; every node holds the same number of GPUs (tensor x
    pipeline parallel divisible by nodes); with vLLM pipeline parallel crosses the nodes and tensor
    parallel stays inside one (pipeline_parallel_size = nodes). The plan (_check_group) and the
    cross-node preflight (cluster_preflight) both apply it."""
    if not isinstance(layout, dict):
        return None, [("layout", layout, "a group model needs a layout", "set layout: {nodes: 2, "
                       "tensor_parallel_size: 8, pipeline_parallel_size: 2} (tensor parallel = GPUs per node, "
                       "pipeline parallel = nodes)")]
    problems = [("layout." + key, layout[key], "not a layout key", "the keys are %s" % ", ".join(LAYOUT_KEYS))
                for key in sorted(layout, key=str) if key not in LAYOUT_KEYS]
    numbers = {}
    for key in LAYOUT_KEYS:
        number = _int_value(layout.get(key))
        if number is None or number < 1 or (key == "nodes" and number < 2):
            problems.append(("layout." + key, layout.get(key), "must be a whole number of %d or more"
                             % (2 if key == "nodes" else 1), "set it (a group serves one model on 2 or more nodes)"))
            return None, problems
        numbers[key] = number
    nodes, tp, pp = numbers["nodes"], numbers["tensor_parallel_size"], numbers["pipeline_parallel_size"]
    if (tp * pp) % nodes:
        problems.append(("layout", layout, "tensor_parallel_size x pipeline_parallel_size (%d) is not a multiple of "
                         "nodes (%d): every node holds the same number of GPUs" % (tp * pp, nodes),
                         "use tensor_parallel_size = GPUs per node and pipeline_parallel_size = nodes"))
    elif engine == "vllm" and pp != nodes:
        problems.append(("layout.pipeline_parallel_size", pp, "with vLLM, pipeline parallel crosses the nodes and "
                         "tensor parallel stays inside one (an all-reduce per layer over the network is slow)",
                         "set pipeline_parallel_size to %d (the nodes) and tensor_parallel_size to %d (the GPUs per "
                         "node)" % (nodes, tp * pp // nodes)))
    return (None if problems else numbers), problems


def group_models(models):
    """The normalized models served by a group of nodes (the cluster role's)."""
    return [m for m in models if m.get("group")]


def host_models(models):
    """The normalized models a single host serves (every model without a group)."""
    return [m for m in models if not m.get("group")]


_INSTANCE_CHARS = re.compile(r"[^a-z0-9-]+")


def instance_name(name):
    """A served model name as the prefix of the serving role's unit, state and nginx file names:
    lower-case letters, digits and '-' only ('.' and '_' become '-'), at most 40 characters."""
    return _INSTANCE_CHARS.sub("-", str(name).lower()).strip("-")[:40] or "model"


def normalize_models(models, var=DEFAULT_VAR):
    """The served models with every default filled, or PlanError listing every problem.

    Each problem names the variable path (gpu_stack_models[1].tensor_parallel_size), the value
    and the fix. Checks each item (see _normalize_item) and, across items, unique names and
    ports (blue and green engine instances and the gateway of every item).
    """
    if not isinstance(models, (list, tuple)):
        raise PlanError(["%s is %r: it must be a list of served models, each a mapping with at least name and "
                         "profile (or architecture, or a .gguf file)" % (var, models)], var)
    problems = []
    normalized = []
    for index, raw in enumerate(models):
        if not isinstance(raw, dict):
            problems.append("%s[%d] is %r: each served model is a mapping with at least name and profile"
                            % (var, index, raw))
            continue
        normalized.append(_normalize_item(raw, index, var, problems))
    names = {}
    for model in normalized:
        if model["name"]:
            names.setdefault(model["name"], []).append(model["var"])
    for name, paths in sorted(names.items()):
        if len(paths) > 1:
            problems.append("%s all have name %r: names must be unique on a host (clients choose the model by "
                            "it); rename all but one" % (", ".join(p + ".name" for p in paths), name))
    instances = {}
    for name in sorted(names):
        instances.setdefault(instance_name(name), []).append(name)
    for instance, clashing in sorted(instances.items()):
        if len(clashing) > 1:
            problems.append("%s names %s become the same unit and state name %r ('.' and '_' turn into '-', at most "
                            "40 characters): rename all but one so that they differ in letters or digits"
                            % (var, ", ".join(repr(n) for n in clashing), instance))
    ports = {}
    for model in normalized:
        for key in ("port", "port_green", "gateway_port"):
            ports.setdefault(model[key], []).append("%s.%s" % (model["var"], key))
    taken = set(ports)
    for port, paths in sorted(ports.items()):
        if len(paths) > 1:
            spare = next(p for p in range(FIRST_PORT, 65536) if p not in taken)
            problems.append("%s all use port %d: every engine instance (blue and green of each model) and every "
                            "gateway needs its own port; set one of them to a free one, such as %d"
                            % (", ".join(paths), port, spare))
    if problems:
        raise PlanError(problems, var)
    return normalized


def resolve_engine(model, gpu_count):
    """The engine that serves the model: as set, or for auto vllm when the host has GPUs (usable
    through NVML, or waiting on the PCI bus for the driver) and llama_cpp otherwise; a .gguf
    file is llama.cpp's format and always goes to llama_cpp."""
    if model["engine"] != "auto":
        return model["engine"]
    if (model.get("file") or "").lower().endswith(".gguf"):
        return "llama_cpp"
    return "vllm" if gpu_count > 0 else "llama_cpp"


def _gpus_needed(model, engine):
    return 1 if engine == "llama_cpp" else model["tensor_parallel_size"] * model["pipeline_parallel_size"]


def _span(indices):
    return ", ".join(str(i) for i in indices) or "none"


def assign_gpus(models, gpu_count, var=DEFAULT_VAR):
    """{name: [GPU indices]} for every model; PlanError listing every placement problem.

    gpu_count: the number of usable GPUs (indices 0 .. gpu_count - 1), or the list of usable
    indices when some GPU is missing (one that failed its NVML queries).

    Explicit lists and "all" first (a GPU index the host lacks is an error naming the item's
    gpus, the value, the indices the host has and the fix; "all" needs tensor x pipeline
    parallel = the GPU count); then the models with gpus unset, in list order, each on the next
    tp x pp GPUs that no other model claims (llama_cpp: one GPU). A model that needs more GPUs
    than the host has gets them all and the preflight's gpu_count check refuses it with the
    alternatives. On a host without GPUs every model gets [] (llama_cpp runs on the CPU; the
    preflight refuses vLLM / SGLang). Models whose lists overlap share those GPUs
    (shared_gpus); check_together checks what they claim together.
    """
    problems = []
    assignment = {}
    claimed = {}
    have = sorted(gpu_count) if isinstance(gpu_count, (list, tuple)) else list(range(int(gpu_count)))
    for model in models:
        engine = resolve_engine(model, len(have))
        gpus = model["gpus"]
        path = "%s.gpus" % model["var"]
        if gpus == "auto":
            continue
        if not have:
            problems.append("%s is %r but the host has no usable GPU: leave gpus unset (llama_cpp runs on the "
                            "CPU), or deploy the model to a GPU host" % (path, gpus))
            assignment[model["name"]] = []
            continue
        if gpus == "all":
            needed = _gpus_needed(model, engine)
            if needed != len(have):
                problems.append("%s is 'all' (%d GPUs) but the model uses tensor_parallel_size x pipeline_parallel_size "
                                "= %d: set tensor_parallel_size to %d (with pipeline_parallel_size %d), or list %d "
                                "GPUs" % (path, len(have), needed, max(1, len(have) // model["pipeline_parallel_size"]),
                                          model["pipeline_parallel_size"], needed))
            indices = list(have)
        else:
            missing = [i for i in gpus if i not in have]
            if missing:
                problems.append("%s is %r but the host has no usable GPU %s: it has %d (indices %s); list GPUs from "
                                "those, or leave gpus unset to take the next free ones"
                                % (path, gpus, _span(missing), len(have), _span(have)))
            indices = list(gpus)
        assignment[model["name"]] = indices
        for index in indices:
            claimed.setdefault(index, []).append(model["name"])
    for model in models:
        if model["gpus"] != "auto":
            continue
        engine = resolve_engine(model, len(have))
        if not have:
            assignment[model["name"]] = []
            continue
        needed = _gpus_needed(model, engine)
        free = [i for i in have if i not in claimed]
        if needed > len(have):
            indices = list(have)
        elif len(free) < needed:
            owners = "; ".join("GPU %d: %s" % (i, ", ".join(claimed[i])) for i in sorted(claimed))
            problems.append("%s.gpus is unset (the next free GPUs) but %s needs %d GPU%s and %s of the host's %d "
                            "GPUs %s free (%s): list the GPUs to share explicitly, such as gpus: %r, lower "
                            "tensor_parallel_size, or serve the model on another host"
                            % (model["var"], model["name"], needed, "" if needed == 1 else "s",
                               "only GPU %s" % _span(free) if free else "none", len(have),
                               "is" if len(free) <= 1 else "are", owners, have[:needed]))
            indices = free
        else:
            indices = free[:needed]
        assignment[model["name"]] = indices
        for index in indices:
            claimed.setdefault(index, []).append(model["name"])
    if problems:
        raise PlanError(problems, var)
    return assignment


def shared_gpus(assignment):
    """{GPU index: [model names]} for every GPU that more than one model uses."""
    users = {}
    for name, indices in assignment.items():
        for index in indices:
            users.setdefault(index, []).append(name)
    return dict((index, sorted(names)) for index, names in sorted(users.items()) if len(names) > 1)


def memory_shares(models, assignment, gpu_count):
    """{name: fraction}: the derived gpu_memory_utilization of vLLM / SGLang models that share a
    GPU and leave it unset. On each shared GPU, 0.90 less the fractions set by the others is split
    evenly among the models without one (llama.cpp models count as one part each: their estimate
    has to fit in it); a model on several GPUs takes its smallest share. check_together checks
    the result."""
    shared = shared_gpus(assignment)
    by_name = dict((m["name"], m) for m in models)
    shares = {}
    for names in shared.values():
        taken = 0.0
        open_parts = []
        for name in names:
            model = by_name[name]
            engine = resolve_engine(model, gpu_count)
            if engine in GPU_ENGINES and model["gpu_memory_utilization"] is not None:
                taken += model["gpu_memory_utilization"]
            else:
                open_parts.append((name, engine))
        if not open_parts:
            continue
        share = math.floor(100.0 * max(0.0, SHARED_MEMORY_FRACTION - taken) / len(open_parts)) / 100.0
        share = max(0.01, share)
        for name, engine in open_parts:
            if engine in GPU_ENGINES:
                shares[name] = min(shares.get(name, 1.0), share)
    return shares


def plan_to_preflight(model, gpus=None, memory_share=None, gpu_count=None):
    """The single-model plan _preflight.run_preflight takes, for one normalized item.

    max_model_len -> context_length; quantization (when not none) is the weight format checked
    (dtype then becomes the activation dtype); unset settings stay None so that the preflight
    derives them and reports them as derived; gpus -> gpu_indices; memory_share -> the derived
    gpu_memory_utilization's starting value (memory_shares).
    """
    engine = model["engine"] if gpu_count is None else resolve_engine(model, gpu_count)
    quantized = model["quantization"] != "none"
    plan = {
        "name": model["name"],
        "engine": "vllm" if engine == "auto" else engine,
        "dtype": model["quantization"] if quantized else model["dtype"],
        "activation_dtype": model["dtype"] if quantized and model["dtype"] != "auto" else None,
        "kv_cache_dtype": model["kv_cache_dtype"],
        "context_length": model["max_model_len"],
        "max_num_seqs": model["max_num_seqs"],
        "gpu_memory_utilization": model["gpu_memory_utilization"],
        "max_num_batched_tokens": model["max_num_batched_tokens"],
        "tensor_parallel_size": model["tensor_parallel_size"],
        "pipeline_parallel_size": model["pipeline_parallel_size"],
        "gpu_indices": list(gpus) if gpus is not None else None,
        "gpu_memory_utilization_cap": memory_share,
        "model_path": model.get("model_path"),
    }
    return plan


# --- several models on one host -----------------------------------------------------------------

def _claim(report, total):
    """(bytes, fraction of total) a model claims on each of its GPUs."""
    engine = report["plan"]["engine"]
    if engine == "llama_cpp":
        need = (report.get("estimate") or {}).get("need_per_gpu_bytes") or 0
        return need, need / float(total)
    plan = report["plan"]
    util = plan.get("gpu_memory_utilization") or plan.get("gpu_memory_utilization_cap") or SHARED_MEMORY_FRACTION
    return int(util * total), util


def _fraction_fix(reports, total, llama_bytes):
    """Fractions for the vLLM / SGLang models of one GPU that fit together, or why none do.

    Each needs at least its estimate at its context x sequences (rounded up to 0.01); the
    spare up to 0.90 of the GPU in all (or up to all of it when 0.90 is too little), less what
    the llama.cpp models need, is split evenly."""
    gpu_reports = [r for r in reports if r["plan"]["engine"] in GPU_ENGINES]
    if not gpu_reports:
        return None
    minimum = {}
    for report in gpu_reports:
        need = (report.get("derivation") or {}).get("minimum_need_bytes")
        if need is None:
            need = (report.get("estimate") or {}).get("need_per_gpu_bytes") or 0
        minimum[report["name"]] = math.ceil(100.0 * need / total) / 100.0
    taken = llama_bytes / float(total)
    needed = sum(minimum.values())
    if needed > 1.0 - taken:
        return ("lowering gpu_memory_utilization cannot fit them: at their context x sequences they need %s of "
                "the GPU at the least; lower max_model_len or max_num_seqs (or leave them unset to be derived), or "
                "use a smaller format"
                % " + ".join("%.2f (%s)" % (minimum[n], n) for n in sorted(minimum)))
    target = SHARED_MEMORY_FRACTION - taken if needed <= SHARED_MEMORY_FRACTION - taken else 1.0 - taken
    extra = math.floor(100.0 * (target - needed) / len(minimum)) / 100.0
    return "set gpu_memory_utilization to %s (settings left unset are then derived within them)" % ", ".join(
        "%.2f for %s" % (minimum[n] + extra, n) for n in sorted(minimum))


def check_together(reports, gpus, host=None):
    """Checks of what several models claim together; each result shaped like _preflight.result().

    reports: per-model preflight reports with "name" added. gpus: the host's GPUs (gpu facts'
    GPUs, or _pci_ids.identify_pci_gpus before the driver), with index and memory_total.
    For every GPU more than one model uses: what they claim (vLLM / SGLang:
    gpu_memory_utilization x total; llama.cpp: its estimate per GPU) must fit in its total
    memory, that is the claimed fractions must add up to 1.0 at most (within 5 %: a warning).
    For several models on one host: their host RAM together (CPU models: the whole estimate;
    GPU models: 2 GiB per engine worker) must fit in MemAvailable.
    """
    results = []
    by_index = dict((g.get("index"), g) for g in gpus or [])
    users = {}
    for report in reports:
        for index in report.get("gpus_used") or []:
            users.setdefault(index, []).append(report)
    used = set(users)
    free = [i for i in sorted(by_index) if i not in used]
    for index in sorted(users):
        sharing = users[index]
        if len(sharing) < 2:
            continue
        gpu = by_index.get(index) or {}
        total = gpu.get("memory_total")
        names = [r["name"] for r in sharing]
        if not total:
            results.append(preflight.result(
                "shared_gpu", False, preflight.WARNING,
                "GPU %s is shared by %s but its memory is not known yet" % (index, " and ".join(names)),
                {"gpu": index, "models": names}, "run the preflight again once the driver is loaded"))
            continue
        claims = dict((r["name"], _claim(r, total)) for r in sharing)
        claimed = sum(b for b, f in claims.values())
        fraction = sum(f for b, f in claims.values())
        numbers = {"gpu": index, "models": names, "total_bytes": total, "claimed_bytes": claimed,
                   "claimed_fraction": round(fraction, 4), "source": gpu.get("source") or "nvml",
                   "claims": dict((n, {"bytes": b, "fraction": round(f, 4)}) for n, (b, f) in claims.items())}
        engines = dict((r["name"], r["plan"]["engine"]) for r in sharing)
        detail = " + ".join("%s %s (%s)" % (n, vram.format_bytes(claims[n][0]), "estimate" if engines[n] == "llama_cpp"
                                            else "%.2f x total" % claims[n][1]) for n in names)
        summary = "GPU %d (%s, %s) is shared by %s: %s = %s, %.2f of the GPU" % (
            index, gpu.get("name") or "GPU", vram.format_bytes(total), " and ".join(names), detail,
            vram.format_bytes(claimed), fraction)
        if claimed > total or fraction > 1.0:
            llama_bytes = sum(claims[n][0] for n in names if engines[n] == "llama_cpp")
            fixes = []
            if free:
                fixes.append("give each model its own GPUs (free on this host: %s)" % _span(free))
            else:
                fixes.append("give each model its own GPUs (none is free on this host: serve one of them on another "
                             "host)")
            fraction_fix = _fraction_fix(sharing, total, llama_bytes)
            if fraction_fix:
                fixes.append(fraction_fix)
            fixes.append("leave the plan refused")
            results.append(preflight.result("shared_gpu", False, preflight.BLOCKING,
                                            "models do not fit together: " + summary, numbers, ", or ".join(fixes)))
        elif fraction > 1.0 - preflight.NEAR_LIMIT:
            results.append(preflight.result("shared_gpu", False, preflight.WARNING,
                                            "fit together with less than %d%% to spare: %s"
                                            % (int(preflight.NEAR_LIMIT * 100), summary), numbers,
                                            "leave headroom: lower a gpu_memory_utilization, or give a model its "
                                            "own GPU"))
        else:
            results.append(preflight.result("shared_gpu", True, preflight.BLOCKING, "fit together: " + summary, numbers))
    available = (host or {}).get("mem_available_bytes")
    if available is not None:
        needs = {}
        for report in reports:
            est = report.get("estimate")
            if not est or report.get("device") is None:
                continue
            if report["device"] == "cpu":
                needs[report["name"]] = est["need_per_gpu_bytes"]
            else:
                workers = est["tensor_parallel_size"] * est["pipeline_parallel_size"]
                needs[report["name"]] = workers * preflight.WORKER_RAM_BYTES
        if len(needs) < 2:
            return results
        need = sum(needs.values())
        numbers = {"mem_available_bytes": available, "needed_bytes": need, "needs": needs}
        summary = "%s need %s of RAM together (%s), %s available" % (
            " and ".join(sorted(needs)), vram.format_bytes(need),
            " + ".join("%s %s" % (n, vram.format_bytes(needs[n])) for n in sorted(needs)), vram.format_bytes(available))
        if need > available:
            results.append(preflight.result("host_ram_together", False, preflight.BLOCKING,
                                            "models do not fit in RAM together: " + summary, numbers,
                                            "serve fewer models on this host, use smaller formats or contexts for "
                                            "the CPU models, or add RAM"))
        elif need > available * (1 - preflight.NEAR_LIMIT):
            results.append(preflight.result("host_ram_together", False, preflight.WARNING,
                                            "RAM nearly exhausted: " + summary, numbers,
                                            "leave headroom: shorter contexts or fewer sequences for the CPU models"))
        else:
            results.append(preflight.result("host_ram_together", True, preflight.BLOCKING,
                                            "fit in RAM together: " + summary, numbers))
    return results


# --- the table ----------------------------------------------------------------------------------

TABLE_COLUMNS = (("model", 32), ("engine", 10), ("GPUs", 12), ("context x seqs", 28), ("need per GPU", 18),
                 ("verdict", 8))


def _context_cell(report):
    settings = report.get("engine_settings") or {}
    source = report.get("settings_source") or settings.get("source") or {}
    plan = report.get("plan") or {}
    if not report.get("estimate"):
        return "-"
    context = settings.get("max_model_len", plan.get("context_length"))
    seqs = settings.get("max_num_seqs", plan.get("max_num_seqs"))
    return "%s %s x %s %s" % (context, source.get("max_model_len", "?"), seqs, source.get("max_num_seqs", "?"))


def _need_cell(report):
    est = report.get("estimate") or {}
    if not est:
        return "-"
    if report.get("device") == "cpu":
        return "%s RAM" % vram.format_bytes(est["need_per_gpu_bytes"])
    return "%s x %d" % (vram.format_bytes(est["need_per_gpu_bytes"]), max(1, est.get("gpus_needed") or 1))


def plan_table(reports, together=()):
    """Lines of a table, one row per model: name, engine, GPUs, context x seqs (each marked set or
    derived), need per GPU, verdict (ok, warning, BLOCKED) and the first problem (its own, else a
    together check that names it). Host-independent columns, so rows of several hosts line up."""
    def row(cells, last):
        # A cell longer than its column is kept whole (a model name is never cut) and pushes the rest.
        widths = [width for _header, width in TABLE_COLUMNS]
        return "".join(str(c).ljust(w - 1) + " " for c, w in zip(cells, widths)) + last

    lines = [row([h for h, w in TABLE_COLUMNS], "first problem")]
    for report in reports:
        name = report["name"]
        mine = [c for c in together if any((name in (c.get("numbers") or {}).get("models", ()),
                                            name in (c.get("numbers") or {}).get("needs", {})))]
        blocking = list(report.get("blocking") or []) + [
            "%s: %s. Fix: %s" % (c["check"], c["message"], c["fix"]) for c in mine
            if not c["ok"] and c["severity"] == preflight.BLOCKING]
        warnings = list(report.get("warnings") or report.get("preflight_warnings") or []) + [
            "%s: %s" % (c["check"], c["message"]) for c in mine if not c["ok"] and c["severity"] == preflight.WARNING]
        verdict = "BLOCKED" if blocking else ("warning" if warnings else "ok")
        gpus = report.get("gpus_used") or []
        where = ",".join(str(i) for i in gpus) if gpus else ("cpu" if report.get("device") == "cpu" else "-")
        problem = (blocking or warnings or [""])[0]
        if len(problem) > 160:
            problem = problem[:157] + "..."
        engine = (report.get("plan") or {}).get("engine") or "-"
        lines.append(row([name, engine, where, _context_cell(report), _need_cell(report), verdict], problem))
    return lines
