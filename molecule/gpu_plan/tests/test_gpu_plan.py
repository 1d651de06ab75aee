# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The GPU path without a GPU: the example inventory's plans on the boards its groups describe.

Three stand-ins present real servers through the unit tests' fake NVML and a fake sysfs PCI
tree (prepare.yml, files/fake_board.py): 2 x L40S (pcie_l40s), 8 x H200 and 8 x H100 SXM with
NVSwitch (both in hgx_h200). The expected numbers are worked out by hand from the estimator's
formulas (docs/preflight.md), not read back from the code under test.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import textwrap

import pytest
import testinfra
import yaml

SCENARIO = pathlib.Path(__file__).resolve().parents[1]
# What the scenario adds to the example inventory (molecule passes it to converge as extra vars).
EXTRA_VARS = yaml.safe_load((SCENARIO / "vars" / "extra_vars.yml").read_text(encoding="utf-8"))
PREFIX = os.environ.get("MOLECULE_SCENARIO_NAME", "gpu_plan")
MIB = 1024 ** 2

# What each stand-in's board is (fake_pynvml's pcie_l40s, hgx_h200, hgx_h100 and fake_board.py).
BOARDS = {
    "l40s": {"count": 2, "name": "NVIDIA L40S", "memory_mib": 46068, "cc": "8.9", "device_id": "0x26b9",
             "buses": ["0000:31:00.0", "0000:32:00.0"], "nvswitches": 0},
    "h200": {"count": 8, "name": "NVIDIA H200", "memory_mib": 143771, "cc": "9.0", "device_id": "0x2335",
             "buses": ["0000:%02x:00.0" % b for b in (0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb)],
             "nvswitches": 4},
    "h100": {"count": 8, "name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559, "cc": "9.0", "device_id": "0x2330",
             "buses": ["0000:%02x:00.0" % b for b in (0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb)],
             "nvswitches": 4},
}

# The preflight table of each example group on its board: the host line, then the model's row
# (model, engine, GPUs, context x sequences each marked set or derived, need per GPU, verdict).
#
# pcie_l40s: R1-Distill-Qwen-32B bf16, TP 2, context 32768 set, sequences derived. Per GPU:
#   weights 32.764 B params x 2 bytes / 2 GPUs                          = 30.51 GiB
#   KV cache 2 (k, v) x 64 layers x 8/2 KV heads x 128 x 2 bytes = 131072 B/token
#            x 32768 tokens                                              =  4.00 GiB per sequence
#   activations 8192 tokens x (2 x 5120 + 3 x 27648 / 2) x 2 bytes       =  0.79 GiB
#   runtime 0.75 + 0.5 (CUDA graphs) + 0.25 (NCCL)                       =  1.50 GiB
#   1 sequence 36.8 GiB, 2 sequences 40.8 GiB. Derived values fit in 95 % of
#   0.90 x 46068 MiB (44.99 GiB, NVML) = 38.46 GiB: 1 sequence.
# hgx_h200: DeepSeek-V3 fp8, TP 8, context 32768 set, sequences derived. Per GPU:
#   weights (fp8 linear + 16-bit embeddings, head, norms, routers) / 8 = 79.29 GiB
#   MLA cache 61 layers x (512 + 64) x 2 bytes = 70272 B/token, not split by TP,
#            x 32768 tokens                                              =  2.14 GiB per sequence
#   activations 0.35 GiB, runtime 1.50 GiB
#   16 sequences (the starting value, the most derived) 79.29 + 34.31 + 0.35 + 1.5 = 115.5 GiB
#   <= 95 % of 0.90 x 143771 MiB (140.4 GiB) = 120.04 GiB: 16.
# hgx_h200 on 8 x H100: 0.90 x 81559 MiB (79.65 GiB) = 71.68 GiB per GPU is less than the weights
#   alone; at the least accepted setting (32768 x 1) 79.29 + 2.14 + 0.35 + 1.5 = 83.3 GiB: BLOCKED.
EXPECTED_TABLE = {
    "l40s": ("gpu_plan-l40s: 2 x L40S, 45.0 GiB each, ok",
             ["deepseek-r1-distill-qwen-32b", "vllm", "0,1", "32768 set x 1 derived", "36.8 GiB x 2", "ok"]),
    "h200": ("gpu_plan-h200: 8 x H200, 140.4 GiB each, ok",
             ["deepseek-v3", "sglang", "0,1,2,3,4,5,6,7", "32768 set x 16 derived", "115.5 GiB x 8", "ok"]),
    "h100": ("gpu_plan-h100: 8 x H100 80GB HBM3, 79.6 GiB each, BLOCKED",
             ["deepseek-v3", "sglang", "0,1,2,3,4,5,6,7", "32768 set x 1 derived", "83.3 GiB x 8", "BLOCKED"]),
}

# The engine arguments each approved plan must run with, exactly (blue instance, port 8001).
EXPECTED_ENGINE = {
    "l40s": {
        "unit": "gpu-stack-serving-deepseek-r1-distill-qwen-32b-blue",
        "image": "docker.io/vllm/vllm-openai:v0.11.0",
        "devices": ["nvidia.com/gpu=0", "nvidia.com/gpu=1"],
        "args": ["--model", "/models", "--host", "127.0.0.1", "--port", "8001",
                 "--served-model-name", "deepseek-r1-distill-qwen-32b",
                 "--tensor-parallel-size", "2", "--pipeline-parallel-size", "1",
                 "--max-model-len", "32768", "--max-num-seqs", "1",
                 "--gpu-memory-utilization", "0.9", "--max-num-batched-tokens", "8192",
                 "--dtype", "bfloat16", "--kv-cache-dtype", "auto"],
    },
    "h200": {
        "unit": "gpu-stack-serving-deepseek-v3-blue",
        "image": "docker.io/lmsysorg/sglang:v0.5.3-cu129",
        "devices": ["nvidia.com/gpu=%d" % i for i in range(8)],
        "args": ["--model-path", "/models", "--host", "127.0.0.1", "--port", "8001",
                 "--served-model-name", "deepseek-v3", "--tp-size", "8",
                 "--context-length", "32768", "--max-running-requests", "16",
                 "--mem-fraction-static", "0.9", "--chunked-prefill-size", "8192",
                 "--dtype", "bfloat16", "--kv-cache-dtype", "auto", "--enable-metrics"],
    },
}

ROW = re.compile(r"^(?P<model>\S+)\s+(?P<engine>\S+)\s+(?P<gpus>\S+)\s+"
                 r"(?P<context>\d+ (?:set|derived) x \d+ (?:set|derived))\s+"
                 r"(?P<need>[\d.]+ [KMGT]iB x \d+)\s+(?P<verdict>ok|warning|BLOCKED)(?:\s+(?P<problem>.*))?$")


def standin(board):
    """The stand-in through podman exec (reads state in milliseconds)."""
    return testinfra.get_host("podman://%s-%s" % (PREFIX, board))


def through_ansible(board):
    """The stand-in through Ansible, for running the collection's modules."""
    return testinfra.get_host("ansible://%s-%s" % (PREFIX, board),
                              ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


def preflight(run_playbook, limit, **extra):
    """playbooks/preflight.yml with the scenario's extra variables (and `extra` on top)."""
    return run_playbook("playbooks/preflight.yml", limit, dict(EXTRA_VARS, **extra))


def task_results(out, task):
    """{host: result} of one task in ansible-playbook's output (YAML result format)."""
    lines = out.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("TASK [%s]" % task)]
    assert starts, "task %r not in the output:\n%s" % (task, out)
    results, i = {}, starts[-1] + 1
    while i < len(lines) and not lines[i].startswith(("TASK [", "PLAY [", "PLAY RECAP")):
        match = re.match(r"^(?:ok|changed|fatal|failed): \[([^\]]+)\]", lines[i])
        i += 1
        if not match:
            continue
        block = []
        while i < len(lines) and (lines[i].startswith(" ") or not lines[i].strip()):
            block.append(lines[i])
            i += 1
        results[match.group(1)] = yaml.safe_load(textwrap.dedent("\n".join(block))) or {}
    return results


def preflight_tables(out):
    """{host: (host line, [model rows as cell lists])} from the preflight's table."""
    shown = task_results(out, "Show the verdict per host and model")
    assert len(shown) == 1, shown                         # run_once: one result holds every host
    tables, host = {}, None
    for line in list(shown.values())[0]["msg"]:
        if not line.startswith("  "):
            host = line.split(":", 1)[0]
            tables[host] = (line, [])
        elif not line.strip().startswith("model "):       # the header of each host's rows
            match = ROW.match(line.strip())
            assert match, "not a table row: %r" % line
            tables[host][1].append(match)
    return tables


def cells(match):
    return [match.group(k) for k in ("model", "engine", "gpus", "context", "need", "verdict")]


@pytest.fixture(scope="module")
def preflight_all(run_playbook):
    """The preflight of every host of the example's groups, each on its own board."""
    return preflight(run_playbook, "gpu_hosts")


# -- gpu_facts -------------------------------------------------------------------------------------

@pytest.mark.parametrize("board", sorted(BOARDS))
def test_gpu_facts_report_the_board(board):
    expected = BOARDS[board]
    gpu = through_ansible(board).ansible("llmops.gpu_stack.gpu_facts", check=False)["ansible_facts"]["gpu"]
    assert gpu["status"] == "ok" and gpu["nvml_status"] == "ok", gpu["reason"]
    assert gpu["driver_version"] == "570.133.20" and gpu["cuda_driver_version"] == "12.8"
    assert gpu["gpu_count"] == expected["count"]
    assert [g["name"] for g in gpu["gpus"]] == [expected["name"]] * expected["count"]
    assert [g["memory_total"] for g in gpu["gpus"]] == [expected["memory_mib"] * MIB] * expected["count"]
    assert [g["compute_capability"] for g in gpu["gpus"]] == [expected["cc"]] * expected["count"]
    # The sysfs scan and NVML see the same GPUs, at the same PCI addresses, bound to the driver.
    on_bus = [d for d in gpu["pci_devices"] if d["kind"] == "gpu"]
    assert [d["bus_id"] for d in on_bus] == expected["buses"]
    assert [g["pci_bus_id"].lower() for g in gpu["gpus"]] == ["0000" + bus for bus in expected["buses"]]
    assert {d["device_id"] for d in on_bus} == {expected["device_id"]}
    assert {d["driver"] for d in on_bus} == {"nvidia"}
    assert gpu["pci_gpu_count"] == expected["count"]
    switches = gpu["fabric"]["pci_nvswitch_devices"]
    assert len(switches) == expected["nvswitches"]
    assert gpu["nvswitch_present"] is (expected["nvswitches"] > 0)
    assert gpu["fabric"]["fabric_manager_needed"] is (expected["nvswitches"] > 0)
    if expected["nvswitches"]:
        assert gpu["fabric"]["all_registered"] is True


# -- the preflight of every example group on its board --------------------------------------------

@pytest.mark.parametrize("board", sorted(EXPECTED_TABLE))
def test_preflight_table_of_each_example_group(preflight_all, board):
    rc, out = preflight_all
    assert rc != 0, out                                   # the H100 host is refused, so the run fails
    tables = preflight_tables(out)
    assert sorted(tables) == ["%s-%s" % (PREFIX, b) for b in sorted(EXPECTED_TABLE)], out
    host_line, rows = tables["%s-%s" % (PREFIX, board)]
    expected_line, expected_row = EXPECTED_TABLE[board]
    assert host_line == expected_line.replace("gpu_plan", PREFIX, 1)
    assert [cells(row) for row in rows] == [expected_row]


def test_deepseek_v3_on_8_h100_is_refused_with_the_fix(preflight_all):
    rc, out = preflight_all
    assert rc != 0, out
    failed = task_results(out, "Fail the hosts the preflight blocked")
    h100 = "%s-h100" % PREFIX
    assert sorted(host for host, result in failed.items() if "preflight blocked" in str(result.get("msg"))) == [h100]
    msg = " ".join(failed[h100]["msg"].split())
    assert "deepseek-v3: gpu_memory: does not fit: needs 8 x 83.3 GiB" in msg
    assert "budget per GPU 0.90 x 79.6 GiB = 71.7 GiB" in msg
    # The fix names two such nodes (one pipeline stage each) and a smaller format.
    assert ("serve it across 2 hosts of 8 GPUs: tensor_parallel_size 8 x pipeline_parallel_size 2 "
            "(one pipeline stage per host)") in msg
    assert "use int4 (awq/gptq) weights (dtype awq)" in msg
    assert "PLAY RECAP" in out and re.search(r"%s\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=1" % h100, out)


def test_serving_alone_refuses_v3_on_8_h100_before_any_change(run_playbook):
    """The serving role without the preflight playbook checks the plan itself and stops first."""
    h100 = standin("h100")
    rc, out = run_playbook("molecule/gpu_plan/serve.yml", "%s-h100" % PREFIX, EXTRA_VARS)
    assert rc != 0, out
    assert "preflight blocked the plan of 1 model" in out and "pipeline_parallel_size 2" in " ".join(out.split())
    assert not h100.package("podman").is_installed
    assert not h100.file("/etc/systemd/system/gpu-stack-serving-deepseek-v3-blue.service").exists


# -- the engines the preflight approved ------------------------------------------------------------

def engine_unit(host, unit):
    """(unit style, image, devices, podman arguments, engine arguments) of a rendered instance:
    a Quadlet .container (podman 4.4 and later) or a generated .service (Debian 12's podman 4.3)."""
    quadlet = host.file("/etc/containers/systemd/%s.container" % unit)
    if quadlet.exists:
        lines = quadlet.content_string.splitlines()

        def values(key):
            return [line.split("=", 1)[1] for line in lines if line.startswith(key + "=")]

        return ("quadlet", values("Image")[0], values("AddDevice"), " ".join(values("PodmanArgs")).split(),
                shlex.split(values("Exec")[0]))
    text = host.file("/etc/systemd/system/%s.service" % unit).content_string
    joined = re.sub(r"\\\n", " ", text)
    argv = shlex.split([line for line in joined.splitlines() if line.startswith("ExecStart=")][0][len("ExecStart="):])
    assert argv[:2] == ["/usr/bin/podman", "run"], argv
    image = [a for a in argv if a.startswith(("docker.io/", "localhost/"))][0]
    options, engine = argv[:argv.index(image)], argv[argv.index(image) + 1:]
    devices = [options[i + 1] for i, a in enumerate(options) if a == "--device"]
    return "generated", image, devices, options, engine


@pytest.mark.parametrize("board", sorted(EXPECTED_ENGINE))
def test_engine_unit_runs_exactly_what_the_preflight_derived(board):
    host, expected = standin(board), EXPECTED_ENGINE[board]
    style, image, devices, options, engine = engine_unit(host, expected["unit"])
    # Debian 12 ships podman 4.3: no Quadlet, the role generates the unit.
    podman = host.check_output("podman --version").split()[-1]
    assert style == ("quadlet" if tuple(int(p) for p in podman.split(".")[:2]) >= (4, 4) else "generated"), podman
    assert image == expected["image"]
    assert engine == expected["args"]
    assert devices == expected["devices"]
    ipc = options[options.index("--ipc"):options.index("--ipc") + 2] if "--ipc" in options else options
    assert ipc == ["--ipc", "host"]


@pytest.mark.parametrize("board", sorted(EXPECTED_ENGINE))
def test_no_image_pulled_and_no_engine_started(board):
    host, unit = standin(board), EXPECTED_ENGINE[board]["unit"]
    assert host.package("podman").is_installed and host.package("nginx").is_installed
    assert host.check_output("podman images --quiet") == ""
    assert host.check_output("podman ps --all --quiet") == ""
    assert host.run("systemctl is-active %s.service", unit).stdout.strip() in ("inactive", "unknown")
    assert host.run("systemctl is-enabled %s.service", unit).stdout.strip() != "enabled"


@pytest.mark.parametrize("board", sorted(EXPECTED_ENGINE))
def test_gateway_is_up_and_refuses_a_request_without_the_key(board):
    host = standin(board)
    assert host.service("nginx").is_running
    status = host.check_output("curl -s -o /dev/null -w '%%{http_code}' --max-time 10 %s", "http://127.0.0.1:8080/v1/models")
    assert status == "401"


# -- a bare host: GPUs on the PCI bus, no driver yet ----------------------------------------------

BARE_FITS = [{"name": "deepseek-r1-distill-qwen-32b", "profile": "deepseek-r1-distill-qwen-32b", "engine": "vllm",
              "dtype": "bf16", "tensor_parallel_size": 2, "max_model_len": 32768}]
BARE_TOO_BIG = [{"name": "deepseek-r1-distill-llama-70b", "profile": "deepseek-r1-distill-llama-70b",
                 "engine": "vllm", "dtype": "bf16", "tensor_parallel_size": 2, "max_model_len": 32768}]


@pytest.fixture
def bare_l40s():
    """The L40S host before its driver: NVML says the driver is not loaded, the two L40S sit on
    the PCI bus with no driver bound. Put back as it was afterwards."""
    host = standin("l40s")

    def present(state):
        host.check_output("python3 /var/lib/gpu-plan-fake/fake_board.py l40s %s", state)

    present("bare")
    try:
        yield host
    finally:
        present("loaded")


def test_bare_host_gpu_facts_see_the_pci_ids_only(bare_l40s):
    gpu = through_ansible("l40s").ansible("llmops.gpu_stack.gpu_facts", check=False)["ansible_facts"]["gpu"]
    assert gpu["status"] == "driver_not_loaded" and gpu["gpus"] == [] and gpu["driver_version"] is None
    on_bus = [d for d in gpu["pci_devices"] if d["kind"] == "gpu"]
    assert len(on_bus) == 2 and {d["device_id"] for d in on_bus} == {"0x26b9"} and {d["driver"] for d in on_bus} == {None}


def test_bare_host_refuses_a_plan_that_cannot_fit_before_any_driver(run_playbook, bare_l40s):
    # R1-Distill-Llama-70B bf16 on two L40S: 70.554 B params x 2 bytes / 2 GPUs = 65.7 GiB of
    # weights per GPU, over 0.90 x 48 GiB (the L40S's memory in the PCI id table) = 43.2 GiB.
    rc, out = preflight(run_playbook, "%s-l40s" % PREFIX, preflight_defer_gpu_checks=True,
                        gpu_stack_models=BARE_TOO_BIG)
    assert rc != 0, out
    line, rows = preflight_tables(out)["%s-l40s" % PREFIX]
    assert line == "%s-l40s: 2 on the PCI bus (driver_not_loaded), BLOCKED" % PREFIX
    assert [cells(row) for row in rows] == [["deepseek-r1-distill-llama-70b", "vllm", "0,1", "32768 set x 1 derived",
                                             "73.1 GiB x 2", "BLOCKED"]]
    msg = " ".join(task_results(out, "Fail the hosts the preflight blocked")["%s-l40s" % PREFIX]["msg"].split())
    assert "gpu_memory: does not fit: needs 2 x 73.1 GiB" in msg
    # The check is marked as made from the PCI ids, before the driver.
    assert "budget per GPU 0.90 x 48.0 GiB = 43.2 GiB (L40S memory from the PCI id table; the driver is not loaded yet)" in msg


def test_bare_host_passes_a_plan_that_fits_with_the_nvml_checks_deferred(run_playbook, bare_l40s):
    # From the PCI id table's 48 GiB per L40S: 95 % of 0.90 x 48 GiB = 41.04 GiB holds 2 sequences
    # of 32768 (30.51 + 8.00 + 0.79 + 1.5 = 40.8 GiB); NVML later shows 45.0 GiB and derives 1.
    rc, out = preflight(run_playbook, "%s-l40s" % PREFIX, preflight_defer_gpu_checks=True,
                        gpu_stack_models=BARE_FITS)
    assert rc == 0, out
    line, rows = preflight_tables(out)["%s-l40s" % PREFIX]
    assert line == "%s-l40s: 2 on the PCI bus (driver_not_loaded), ok" % PREFIX
    assert [cells(row) for row in rows] == [["deepseek-r1-distill-qwen-32b", "vllm", "0,1", "32768 set x 2 derived",
                                             "40.8 GiB x 2", "ok"]]
    report = through_ansible("l40s").ansible(
        "llmops.gpu_stack.deploy_preflight",
        json.dumps({"models": BARE_FITS, "defer_gpu_checks": True, "cuda_version": "12.8",
                    "allowed_fs_types": EXTRA_VARS["model_storage_allowed_fs_types"]}),
        check=False)
    model = report["models"][0]
    assert report["blocked"] is False and model["device"] == "pending"
    assert model["engine_settings"]["memory_source"] == "pci_ids"
    memory = [c for c in model["checks"] if c["check"] == "gpu_memory"][0]
    assert memory["ok"] and memory["numbers"]["source"] == "pci_ids"
    assert "gpu_memory_free: free memory is unknown until the driver is loaded" in model["skipped_checks"]
    assert "mig_mode: deferred until the driver is loaded" in model["skipped_checks"]
    assert "driver_cuda: no driver version known" in model["skipped_checks"]
