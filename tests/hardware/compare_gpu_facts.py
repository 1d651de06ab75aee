"""Compare gpu_facts with nvidia-smi on a real GPU host, and run the read-only GPU checks.

Reads nothing but NVML and nvidia-smi; gpu_settings runs in check mode only, so no setting
of the card changes. Writes <outdir>/gpu_checks.json and exits 1 when a fact disagrees with
nvidia-smi or a check does not behave as documented.
"""
import argparse
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

from run_module import run

MIB = 1024 * 1024


def smi_query():
    fields = ["index", "name", "uuid", "pci.bus_id", "memory.total", "compute_cap", "persistence_mode",
              "compute_mode", "power.limit", "power.min_limit", "power.max_limit", "power.default_limit",
              "clocks.max.graphics", "clocks.max.memory", "clocks.applications.graphics",
              "clocks.applications.memory", "pcie.link.gen.max", "pcie.link.width.max", "driver_version"]
    out = subprocess.run(["nvidia-smi", "--query-gpu=" + ",".join(fields), "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.strip().splitlines():
        rows.append(dict(zip(fields, [value.strip() for value in line.split(",")])))
    return rows


def smi_cuda_version():
    root = ET.fromstring(subprocess.run(["nvidia-smi", "-q", "-x"], capture_output=True, text=True,
                                        check=True).stdout)
    return root.findtext("cuda_version")


def smi_supported_clocks(index):
    out = subprocess.run(["nvidia-smi", "-i", str(index), "--query-supported-clocks=memory,graphics",
                          "--format=csv,noheader,nounits"], capture_output=True, text=True, check=True).stdout
    pairs = set()
    for line in out.strip().splitlines():
        memory, graphics = (int(v) for v in line.split(","))
        pairs.add((memory, graphics))
    return pairs


def norm_bus(bus):
    bus = bus.lower()
    return bus[4:] if bus.count(":") == 2 and len(bus.split(":")[0]) == 8 else bus


class Checker:
    def __init__(self):
        self.results = []

    def same(self, what, ours, theirs):
        ok = ours == theirs
        self.results.append({"check": what, "ok": ok, "gpu_stack": ours, "reference": theirs})
        return ok

    def expect(self, what, ok, detail):
        self.results.append({"check": what, "ok": bool(ok), "detail": detail})
        return ok


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("outdir")
    args = parser.parse_args()
    chk = Checker()
    facts_result = run("gpu_facts", {"supported_clocks": True})
    facts = facts_result.get("ansible_facts", {}).get("gpu", {})
    smi = smi_query()
    chk.same("status", facts.get("status"), "ok")
    chk.same("gpu_count", facts.get("gpu_count"), len(smi))
    chk.same("driver_version", facts.get("driver_version"), smi[0]["driver_version"] if smi else None)
    chk.same("cuda_driver_version", facts.get("cuda_driver_version"), smi_cuda_version())
    for row, gpu in zip(smi, facts.get("gpus", [])):
        i = row["index"]
        chk.same("gpu%s name" % i, gpu.get("name"), row["name"])
        chk.same("gpu%s uuid" % i, gpu.get("uuid"), row["uuid"])
        chk.same("gpu%s pci_bus_id" % i, norm_bus(gpu.get("pci_bus_id") or ""), norm_bus(row["pci.bus_id"]))
        chk.same("gpu%s memory_total MiB" % i, (gpu.get("memory_total") or 0) // MIB, int(row["memory.total"]))
        chk.same("gpu%s compute_capability" % i, gpu.get("compute_capability"), row["compute_cap"])
        chk.same("gpu%s persistence_mode" % i, str(gpu.get("persistence_mode")).lower(), row["persistence_mode"].lower())
        chk.same("gpu%s power_limit_w" % i, round(gpu.get("power_limit_w") or 0), round(float(row["power.limit"])))
        chk.same("gpu%s power_min_limit_w" % i, round(gpu.get("power_min_limit_w") or 0),
                 round(float(row["power.min_limit"])))
        chk.same("gpu%s power_max_limit_w" % i, round(gpu.get("power_max_limit_w") or 0),
                 round(float(row["power.max_limit"])))
        clocks = gpu.get("clocks") or {}
        chk.same("gpu%s max graphics clock" % i, (clocks.get("max") or {}).get("graphics"),
                 int(row["clocks.max.graphics"]))
        chk.same("gpu%s max memory clock" % i, (clocks.get("max") or {}).get("memory"), int(row["clocks.max.memory"]))
        pcie = gpu.get("pcie") or {}
        chk.same("gpu%s pcie max generation" % i, pcie.get("max_generation"), int(row["pcie.link.gen.max"]))
        chk.same("gpu%s pcie max width" % i, pcie.get("max_width"), int(row["pcie.link.width.max"]))
        ours = set()
        for entry in gpu.get("supported_clocks") or []:
            for graphics in entry.get("graphics", []):
                ours.add((entry["memory"], graphics))
        chk.same("gpu%s supported clock pairs" % i, sorted(ours) == sorted(smi_supported_clocks(i)), True)

    # gpu_settings, check mode only: what it would change, and its refusals.
    gpu0 = (facts.get("gpus") or [{}])[0]
    pairs = gpu0.get("supported_clocks") or [{"memory": 0, "graphics": [0]}]
    memory = max(entry["memory"] for entry in pairs)
    graphics = sorted(next(entry["graphics"] for entry in pairs if entry["memory"] == memory))
    middle = graphics[len(graphics) // 2]
    pmin, pmax = gpu0.get("power_min_limit_w") or 0, gpu0.get("power_max_limit_w") or 0
    wanted = {"gpus": ["0"], "persistence_mode": True, "compute_mode": "default",
              "power_limit": int(round(pmax - 100)), "application_clocks": {"memory": memory, "graphics": middle},
              "locked_clocks": {"min": graphics[0], "max": middle}, "state_dir": "/tmp/gpu_stack_state",
              "best_effort": True}
    planned = run("gpu_settings", wanted, check=True)
    chk.expect("gpu_settings check mode answers", not planned.get("failed"), planned)
    bad_pair = run("gpu_settings", {"gpus": ["0"], "application_clocks": {"memory": memory + 7, "graphics": 123},
                                    "state_dir": "/tmp/gpu_stack_state"}, check=True)
    chk.expect("unsupported clock pair refused with the pairs listed",
               bad_pair.get("failed") and str(memory) in bad_pair.get("msg", ""), bad_pair.get("msg"))
    bad_power = run("gpu_settings", {"gpus": ["0"], "power_limit": int(pmin) - 50,
                                     "state_dir": "/tmp/gpu_stack_state"}, check=True)
    chk.expect("power limit below the minimum refused",
               bad_power.get("failed") and str(int(pmin)) in bad_power.get("msg", ""), bad_power.get("msg"))
    no_gpu = run("gpu_settings", {"gpus": ["7"], "persistence_mode": True, "state_dir": "/tmp/gpu_stack_state"},
                 check=True)
    chk.expect("selector matching no GPU refused", no_gpu.get("failed"), no_gpu.get("msg"))
    after = smi_query()
    chk.same("nothing changed on the card (power limit, clocks, persistence)",
             [(r["power.limit"], r["clocks.applications.graphics"], r["persistence_mode"]) for r in after],
             [(r["power.limit"], r["clocks.applications.graphics"], r["persistence_mode"]) for r in smi])

    # deploy_preflight against the real card.
    fits = run("deploy_preflight", {"model": "deepseek-r1-distill-qwen-7b", "context_length": 32768,
                                    "max_num_seqs": 16, "engine": "vllm", "cuda_version": "12.8",
                                    "gpu": facts, "fail_on_blocking": False})
    chk.expect("R1-Distill-Qwen-7B bf16 32K x16 fits one H200",
               fits.get("blocked") is False and not fits.get("failed"), fits.get("msg"))
    too_big = run("deploy_preflight", {"model": "deepseek-v3", "dtype": "fp8", "context_length": 32768,
                                       "tensor_parallel_size": 8, "engine": "sglang", "gpu": facts,
                                       "fail_on_blocking": True})
    chk.expect("DeepSeek-V3 fp8 TP8 refused on a one-GPU host", too_big.get("failed"), too_big.get("msg"))
    newer = run("deploy_preflight", {"model": "deepseek-r1-distill-qwen-7b", "cuda_version": "14.0",
                                     "engine": "vllm", "gpu": facts, "fail_on_blocking": True})
    chk.expect("a CUDA major release the driver cannot know is refused", newer.get("failed"), newer.get("msg"))
    compat = run("deploy_preflight", {"model": "deepseek-r1-distill-qwen-7b", "cuda_version": "13.9",
                                      "engine": "vllm", "gpu": facts, "fail_on_blocking": True})
    chk.expect("a newer CUDA minor release passes with the minor-version compatibility warning",
               compat.get("blocked") is False and "minor-version" in json.dumps(compat.get("checks")), compat.get("msg"))

    report = {"facts": facts, "nvidia_smi": smi, "gpu_settings_check_mode": planned,
              "checks": chk.results, "failed": [r["check"] for r in chk.results if not r["ok"]]}
    os.makedirs(args.outdir, exist_ok=True)
    with open(os.path.join(args.outdir, "gpu_checks.json"), "w", encoding="utf-8") as fileobj:
        json.dump(report, fileobj, indent=2, default=str)
    for result in chk.results:
        print("%-4s %s" % ("ok" if result["ok"] else "FAIL", result["check"]))
    print("gpu_settings would change: %s" % json.dumps(planned.get("diff") or planned, default=str)[:3000])
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
