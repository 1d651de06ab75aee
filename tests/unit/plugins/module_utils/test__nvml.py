# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import inspect
import sys

import pytest

import fake_pynvml as fake
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _nvml as n

MIB = 1024 ** 2


def collect(nvml, tmp_path, sysfs=None, proc=None, **kwargs):
    sysfs = sysfs or fake.empty_sysfs(tmp_path)
    proc = proc or str(tmp_path / "proc")
    return n.collect_gpu_facts(nvml=nvml, sysfs_root=sysfs, proc_root=proc, **kwargs)


def test_fake_matches_the_real_binding():
    """Every function and struct the fake stands in for exists in the installed pynvml,
    with at least as many positional parameters (the collection calls them positionally)."""
    pynvml = pytest.importorskip("pynvml")
    for name in fake.API:
        real = getattr(pynvml, name)
        ours = getattr(fake.FakeNvml, name)
        real_params = [p for p in inspect.signature(real).parameters.values() if p.default is p.empty]
        our_params = list(inspect.signature(ours).parameters.values())[1:]
        assert len(our_params) == len(real_params), name
    for name in fake.STRUCTS:
        real_fields = [f[0] for f in getattr(pynvml, name)._fields_]
        fake_fields = [f[0] for f in getattr(fake, name)._fields_]
        assert fake_fields == real_fields[:len(fake_fields)], name


def test_error_codes_match_the_real_binding():
    pynvml = pytest.importorskip("pynvml")
    for name in dir(n):
        if name.startswith("NVML_ERROR_") or name == "NVML_SUCCESS":
            assert getattr(pynvml, name) == getattr(n, name), name
    assert pynvml.NVML_CLOCK_GRAPHICS == n.CLOCK_GRAPHICS and pynvml.NVML_CLOCK_MEM == n.CLOCK_MEM
    assert pynvml.NVML_COMPUTEMODE_EXCLUSIVE_PROCESS == n.COMPUTE_MODE_IDS["exclusive_process"]
    assert pynvml.nvmlClocksEventReasonHwThermalSlowdown == 0x40


def test_healthy_hgx_h200(tmp_path):
    nvml = fake.hgx_h200()
    sysfs = fake.hgx_sysfs(tmp_path)
    proc = fake.write_nvswitch_proc(tmp_path, ["0000:05:00.0", "0000:06:00.0", "0000:07:00.0", "0000:08:00.0"])
    facts = collect(nvml, tmp_path, sysfs, proc)
    assert facts["status"] == "ok" and facts["gpu_count"] == 8
    assert facts["driver_version"] == "570.133.20" and facts["cuda_driver_version"] == "12.8"
    assert facts["pci_gpu_count"] == 8
    assert len([d for d in facts["pci_devices"] if d["kind"] == "nvswitch"]) == 4
    assert facts["nvswitch_present"] is True
    assert facts["fabric"]["fabric_manager_needed"] and facts["fabric"]["all_registered"]
    gpu = facts["gpus"][0]
    assert gpu["name"] == "NVIDIA H200" and gpu["pci_bus_id"] == "00000000:18:00.0"
    assert gpu["memory_total"] == 143771 * MIB and gpu["memory_free"] == (143771 - 512) * MIB
    assert gpu["compute_capability"] == "9.0" and gpu["architecture"] == "Hopper"
    assert gpu["power_limit_w"] == 700.0 and gpu["power_min_limit_w"] == 200.0 and gpu["power_draw_w"] == 112.0
    assert gpu["clocks"]["application"] == {"graphics": 1755, "memory": 3201}
    assert gpu["clocks"]["max"]["graphics"] == 1980
    assert gpu["throttle_reasons"] == ["gpu_idle"]
    assert gpu["mig_mode"] == {"current": "disabled", "pending": "disabled"}
    assert gpu["pcie"] == {"generation": 5, "width": 16, "max_generation": 5, "max_width": 16}
    assert gpu["fabric"]["state"] == "completed" and gpu["fabric"]["cluster_uuid"].startswith("5a5a5a5a-")
    assert "supported_clocks" not in gpu
    # one initialisation for the whole run, shut down at the end
    assert nvml.init_calls == 1 and nvml.initialised == 0


def test_supported_clocks_option(tmp_path):
    facts = collect(fake.hgx_h200(1), tmp_path, supported_clocks=True)
    pairs = facts["gpus"][0]["supported_clocks"]
    assert pairs[0]["memory"] == 3201 and pairs[0]["graphics"][0] == 1980 and pairs[0]["graphics"][-1] == 345


def test_mixed_gpus(tmp_path):
    facts = collect(fake.mixed(), tmp_path)
    assert [g["compute_capability"] for g in facts["gpus"]] == ["9.0", "8.9", "7.5"]
    assert [g["architecture"] for g in facts["gpus"]] == ["Hopper", "Ada Lovelace", "Turing"]
    assert facts["gpus"][1]["mig_mode"] is None          # not supported -> None
    assert facts["gpus"][2]["fabric"] is None
    assert facts["nvswitch_present"] is False and facts["fabric"]["fabric_manager_needed"] is False


def test_geforce_not_supported_fields_become_none(tmp_path):
    sysfs = fake.geforce_sysfs(tmp_path)
    facts = collect(fake.geforce(), tmp_path, sysfs)
    assert facts["status"] == "ok"
    gpu = facts["gpus"][0]
    for field in ("ecc_mode", "mig_mode", "compute_mode", "fabric"):
        assert gpu[field] is None, field
    assert gpu["clocks"]["application"] == {"graphics": None, "memory": None}
    assert gpu["throttle_reasons"] == ["gpu_idle", "sw_power_cap"]
    assert gpu["persistence_mode"] == "disabled" and gpu["power_max_limit_w"] == 600.0
    kinds = sorted(d["kind"] for d in facts["pci_devices"])
    assert kinds == ["audio", "gpu"] and facts["pci_gpu_count"] == 1


def test_mig_enabled(tmp_path):
    facts = collect(fake.mig_enabled(), tmp_path)
    assert facts["gpus"][0]["mig_mode"] == {"current": "enabled", "pending": "enabled"}
    assert facts["gpus"][1]["mig_mode"]["current"] == "disabled"


def test_driver_not_loaded_with_gpus_on_the_bus(tmp_path):
    sysfs = fake.hgx_sysfs(tmp_path, driver="nouveau")
    facts = collect(fake.driver_not_loaded(), tmp_path, sysfs)
    assert facts["status"] == "driver_not_loaded"
    assert "modprobe nvidia" in facts["reason"] and "bound to: nouveau" in facts["reason"]
    assert facts["pci_gpu_count"] == 8 and facts["gpus"] == []
    assert facts["nvswitch_present"] is True         # seen on the PCI bus without any driver


def test_library_missing_with_gpus(tmp_path):
    facts = collect(fake.library_missing(), tmp_path, fake.geforce_sysfs(tmp_path, driver=None))
    assert facts["status"] == "library_missing"
    assert "libnvidia-ml.so.1" in facts["reason"] and "nvidia_driver role" in facts["reason"]
    assert facts["pci_devices"][0]["driver"] is None


def test_no_nvidia_device_when_nothing_on_the_bus(tmp_path):
    facts = collect(fake.library_missing(), tmp_path)
    assert facts["status"] == "no_nvidia_device" and "no NVIDIA GPU on the PCI bus" in facts["reason"]


def test_error_halfway_keeps_the_other_gpus(tmp_path):
    nvml = fake.error_halfway()
    facts = collect(nvml, tmp_path)
    assert facts["status"] == "error" and facts["gpu_count"] == 4
    assert "GPU 2" in facts["reason"] and "Xid 79" in facts["reason"]
    assert facts["gpus"][2] == {"index": 2, "error": facts["reason"]}
    assert [g["memory_total"] for g in facts["gpus"] if not g.get("error")] == [81920 * MIB] * 3
    assert nvml.initialised == 0


def test_bindings_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(n, "import_pynvml", lambda path: (None, "No module named 'pynvml'"))
    facts = n.collect_gpu_facts(bindings_path="/nonexistent", sysfs_root=fake.geforce_sysfs(tmp_path),
                                proc_root=str(tmp_path))
    assert facts["status"] == "bindings_missing"
    assert "nvidia-ml-py==13.615.71" in facts["reason"] and "python3-pynvml" in facts["reason"]
    assert facts["pci_gpu_count"] == 1


def test_bindings_missing_without_gpus_is_no_device(monkeypatch, tmp_path):
    monkeypatch.setattr(n, "import_pynvml", lambda path: (None, "No module named 'pynvml'"))
    facts = n.collect_gpu_facts(sysfs_root=fake.empty_sysfs(tmp_path), proc_root=str(tmp_path))
    assert facts["status"] == "no_nvidia_device"


def test_unreadable_sysfs_is_noted_not_fatal(tmp_path):
    facts = n.collect_gpu_facts(nvml=fake.hgx_h200(2), sysfs_root=str(tmp_path / "nosys"), proc_root=str(tmp_path))
    assert facts["status"] == "ok" and facts["pci_devices"] == [] and "sysfs PCI scan failed" in facts["reason"]


def test_driver_loaded_but_no_gpu(tmp_path):
    facts = collect(fake.FakeNvml([]), tmp_path, fake.geforce_sysfs(tmp_path))
    assert facts["status"] == "no_nvidia_device" and "RmInitAdapter" in facts["reason"]


def test_fabric_falls_back_to_the_legacy_call(tmp_path):
    nvml = fake.hgx_h200(1)
    nvml.missing.add("nvmlDeviceGetGpuFabricInfoV")
    facts = collect(nvml, tmp_path)
    assert facts["gpus"][0]["fabric"]["state"] == "completed"


def test_throttle_reasons_fall_back_to_the_deprecated_call(tmp_path):
    nvml = fake.hgx_h200(1)
    nvml.missing.add("nvmlDeviceGetCurrentClocksEventReasons")
    nvml.gpus[0].throttle = 0x40 | 0x4
    assert collect(nvml, tmp_path)["gpus"][0]["throttle_reasons"] == ["sw_power_cap", "hw_thermal_slowdown"]


@pytest.mark.parametrize("code, status, fragment", [
    (fake.NVML_ERROR_LIBRARY_NOT_FOUND, "library_missing", "libnvidia-ml.so.1"),
    (fake.NVML_ERROR_DRIVER_NOT_LOADED, "driver_not_loaded", "Secure Boot"),
    (fake.NVML_ERROR_NO_PERMISSION, "error", "become: true"),
    (fake.NVML_ERROR_LIB_RM_VERSION_MISMATCH, "error", "reboot"),
    (fake.NVML_ERROR_GPU_IS_LOST, "error", "Xid 79"),
    (fake.NVML_ERROR_UNKNOWN, "error", "dmesg"),
])
def test_describe_nvml_error(code, status, fragment):
    got_status, reason = n.describe_nvml_error(fake.NVMLError(code), "nvmlInit")
    assert got_status == status and fragment in reason and "Fix:" in reason and "code %d" % code in reason


@pytest.mark.parametrize("bits, names", [
    (0, []),
    (0x1, ["gpu_idle"]),
    (0x4 | 0x40, ["sw_power_cap", "hw_thermal_slowdown"]),
    (0x1000, ["unknown(0x1000)"]),
])
def test_throttle_reason_names(bits, names):
    assert n.throttle_reason_names(bits) == names


def test_import_pynvml_falls_back_to_the_collection_path(tmp_path, monkeypatch):
    target = tmp_path / "python"
    target.mkdir()
    (target / "pynvml.py").write_text("MARK = 'collection copy'\n")
    # an interpreter without the binding: no cached module, no site-packages on the path
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "site-packages" not in p])
    module, error = n.import_pynvml(str(target))
    assert error is None and module.MARK == "collection copy"
    assert sys.path[-1] == str(target)                         # appended, never shadowing the system


def test_import_pynvml_reports_both_attempts(tmp_path, monkeypatch):
    def no_module(name):
        raise ImportError("No module named %r" % name)

    monkeypatch.setattr(n.importlib, "import_module", no_module)
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "python").mkdir()
    module, error = n.import_pynvml(str(tmp_path / "python"))
    assert module is None and "also looked in" in error


def test_session_open_failure_maps_status():
    with pytest.raises(n.NvmlUnavailable) as exc:
        n.NvmlSession(fake.driver_not_loaded()).open()
    assert exc.value.status == "driver_not_loaded"


def test_open_session_without_bindings(monkeypatch):
    monkeypatch.setattr(n, "import_pynvml", lambda path: (None, "No module named 'pynvml'"))
    with pytest.raises(n.NvmlUnavailable) as exc:
        n.open_session("/nonexistent")
    assert exc.value.status == "bindings_missing"


def test_scan_pci_devices_reads_ids_and_driver(tmp_path):
    devices = n.scan_pci_devices(fake.hgx_sysfs(tmp_path))
    first = devices[0]
    assert first["bus_id"] == "0000:05:00.0" and first["kind"] == "nvswitch" and first["class"] == "0x068000"
    assert first["driver"] == "nvidia-nvswitch" and first["numa_node"] == 0
    gpus = [d for d in devices if d["kind"] == "gpu"]
    assert len(gpus) == 8 and gpus[0]["device_id"] == "0x2335" and gpus[0]["driver"] == "nvidia"
    assert all(d["vendor_id"] == "0x10de" for d in devices)          # Intel and Mellanox skipped


def test_list_nvswitch_proc(tmp_path):
    assert n.list_nvswitch_proc(str(tmp_path)) == []
    proc = fake.write_nvswitch_proc(tmp_path, ["0000:06:00.0", "0000:05:00.0"])
    assert n.list_nvswitch_proc(proc) == ["0000:05:00.0", "0000:06:00.0"]


def test_nvml_status_is_kept_apart_from_the_pci_verdict(tmp_path):
    # No GPU on the PCI bus: the status says so, nvml_status still tells what NVML answered.
    root = str(tmp_path)
    facts = n.collect_gpu_facts(nvml=fake.FakeNvml([], init_error=fake.NVML_ERROR_DRIVER_NOT_LOADED),
                                sysfs_root=fake.empty_sysfs(root), proc_root=root)
    assert facts["status"] == "no_nvidia_device"
    assert facts["nvml_status"] == "driver_not_loaded"
