# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The NVML textfile collector's metrics (module_utils/_nvml_metrics.py) against the fake NVML:
healthy hosts, hosts without GPU, driver or binding, a GPU that falls off the bus, Xid
messages, ECC, NVLink, throttle reasons and drift from the gpu_tuning settings."""

from __future__ import annotations

import inspect
import os
import re

import pytest

import fake_pynvml as fake
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _nvml_metrics as m

MIB = 1024 ** 2


class Rates(object):
    def __init__(self, gpu, memory):
        self.gpu = gpu
        self.memory = memory


class MetricsNvml(fake.FakeNvml):
    """The shared fake plus the four queries only the collector makes. Per GPU: utilization
    (gpu %, memory %), pcie_kib (tx, rx) in KiB/s, nvlinks (list of states; links past its end
    answer INVALID_ARGUMENT like a real GPU), ecc_counts {(type, counter): n}."""

    def nvmlDeviceGetUtilizationRates(self, handle):
        gpu = self._gpu(handle, "nvmlDeviceGetUtilizationRates")
        util = getattr(gpu, "utilization", (37, 12))
        return Rates(*util)

    def nvmlDeviceGetPcieThroughput(self, handle, counter):
        gpu = self._gpu(handle, "nvmlDeviceGetPcieThroughput")
        return getattr(gpu, "pcie_kib", (2048, 512))[counter]

    def nvmlDeviceGetNvLinkState(self, handle, link):
        gpu = self._gpu(handle, "nvmlDeviceGetNvLinkState")
        links = getattr(gpu, "nvlinks", None)
        if links is None:
            raise fake.NVMLError(fake.NVML_ERROR_NOT_SUPPORTED)
        if link >= len(links):
            raise fake.NVMLError(fake.NVML_ERROR_INVALID_ARGUMENT)
        return links[link]

    def nvmlDeviceGetTotalEccErrors(self, handle, error_type, counter_type):
        gpu = self._gpu(handle, "nvmlDeviceGetTotalEccErrors")
        return getattr(gpu, "ecc_counts", {}).get((error_type, counter_type), 0)


EXTRA_API = ("nvmlDeviceGetUtilizationRates", "nvmlDeviceGetPcieThroughput", "nvmlDeviceGetNvLinkState",
             "nvmlDeviceGetTotalEccErrors")


def nvml_of(base, **per_gpu):
    """A MetricsNvml with the GPUs and settings of a fake_pynvml scenario."""
    ours = MetricsNvml(base.gpus, driver=base.driver, cuda=base.cuda, nvml_version=base.nvml_version,
                       init_error=base.init_error)
    for gpu in ours.gpus:
        gpu.__dict__.update(per_gpu)
    return ours


def collect(nvml, tmp_path, sysfs=None, **kwargs):
    return m.collect(nvml=nvml, sysfs_root=sysfs or fake.hgx_sysfs(tmp_path), **kwargs)


def parse(text):
    """{(name, frozenset(labels)): value} of a text exposition; fails on a malformed line."""
    sample = re.compile(r'^([a-z_]+)(\{([a-z_]+="(?:[^"\\]|\\.)*"(,[a-z_]+="(?:[^"\\]|\\.)*")*)\})? (-?[0-9.e+]+)$')
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) gpu_stack_gpu_[a-z_]+ .+$", line), line
            continue
        match = sample.match(line)
        assert match, "not the Prometheus text format: %r" % line
        labels = frozenset(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
        out[(match.group(1), labels)] = float(match.group(5))
    return out


def test_extra_fake_functions_exist_in_the_real_binding():
    pynvml = pytest.importorskip("pynvml")
    for name in EXTRA_API:
        real = [p for p in inspect.signature(getattr(pynvml, name)).parameters.values() if p.default is p.empty]
        ours = list(inspect.signature(getattr(MetricsNvml, name)).parameters.values())[1:]
        assert len(ours) == len(real), name
    assert pynvml.NVML_PCIE_UTIL_TX_BYTES == m.PCIE_UTIL_TX_BYTES
    assert pynvml.NVML_PCIE_UTIL_RX_BYTES == m.PCIE_UTIL_RX_BYTES
    assert pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED == m.MEMORY_ERROR_UNCORRECTED
    assert pynvml.NVML_VOLATILE_ECC == m.VOLATILE_ECC


def test_healthy_hgx_reports_every_core_metric(tmp_path):
    nvml = nvml_of(fake.hgx_h200(), nvlinks=[1] * 18, ecc_counts={(1, 0): 2})
    metrics = collect(nvml, tmp_path, kernel_log="")
    assert metrics.values("collector_up") == [1]
    assert metrics.values("count") == [8] and metrics.values("pci_count") == [8]
    assert metrics.values("temperature_celsius", gpu="0") == [34]
    assert metrics.values("power_draw_watts", gpu="0") == [112.0]
    assert metrics.values("power_limit_watts", gpu="0") == [700.0]
    assert metrics.values("clock_mhz", gpu="0", clock="sm") == [345]
    assert metrics.values("application_clock_mhz", gpu="0", clock="graphics") == [1755]
    assert metrics.values("utilization_ratio", gpu="0", kind="gpu") == [0.37]
    assert metrics.values("memory_used_bytes", gpu="0") == [512 * MIB]
    assert metrics.values("memory_total_bytes", gpu="0") == [143771 * MIB]
    assert metrics.values("pcie_throughput_bytes_per_second", gpu="0", direction="tx") == [2048 * 1024]
    assert metrics.values("pcie_link_generation", gpu="0") == [5]
    assert len(metrics.values("nvlink_link_up", gpu="0")) == 18
    assert metrics.values("ecc_errors_total", gpu="0", type="uncorrected") == [2]
    assert metrics.values("ecc_errors_total", gpu="0", type="corrected") == [0]
    assert metrics.values("throttle_reason", gpu="0", reason="gpu_idle") == [1]
    assert metrics.values("throttle_reason", gpu="0", reason="hw_thermal_slowdown") == [0]
    assert metrics.values("persistence_mode_enabled", gpu="0") == [1]
    assert metrics.values("lost") == [0] * 8
    assert metrics.values("xid_log_readable") == [1]
    info = [labels for name, labels, _v in metrics.samples if name == "info"]
    assert info[0]["name"] == "NVIDIA H200" and info[0]["pci_bus_id"] == "00000000:18:00.0"


def test_rendered_text_is_valid_exposition_with_one_header_per_metric(tmp_path):
    text = collect(nvml_of(fake.hgx_h200(2)), tmp_path, kernel_log="").render()
    parsed = parse(text)
    assert parsed[("gpu_stack_gpu_collector_up", frozenset({("reason", "ok")}))] == 1
    assert text.count("# TYPE gpu_stack_gpu_temperature_celsius gauge") == 1
    assert "# TYPE gpu_stack_gpu_ecc_errors_total counter" in text
    assert text.endswith("\n")


def test_label_values_are_escaped():
    metrics = m.Metrics()
    metrics.add("info", 1, name='odd "name"\\x\nnext', gpu="0")
    assert 'name="odd \\"name\\"\\\\x\\nnext"' in metrics.render()


def test_unknown_metric_is_refused():
    with pytest.raises(KeyError):
        m.Metrics().add("made_up", 1)


def test_host_without_gpu_writes_collector_down_and_count_zero(tmp_path):
    nvml = nvml_of(fake.library_missing())
    metrics = collect(nvml, tmp_path, sysfs=fake.empty_sysfs(tmp_path), kernel_log=None)
    parsed = parse(metrics.render())
    assert parsed[("gpu_stack_gpu_collector_up", frozenset({("reason", "no_nvidia_device")}))] == 0
    assert parsed[("gpu_stack_gpu_count", frozenset())] == 0
    assert parsed[("gpu_stack_gpu_pci_count", frozenset())] == 0
    assert parsed[("gpu_stack_gpu_xid_log_readable", frozenset())] == 0
    assert nvml.init_calls == 0   # no GPU on the bus: NVML is not even opened


@pytest.mark.parametrize("scenario, reason", [
    (fake.driver_not_loaded, "driver_not_loaded"),
    (fake.library_missing, "library_missing"),
])
def test_gpu_on_the_bus_but_nvml_unusable(tmp_path, scenario, reason):
    metrics = collect(nvml_of(scenario()), tmp_path, sysfs=fake.geforce_sysfs(tmp_path))
    assert [labels["reason"] for name, labels, _v in metrics.samples if name == "collector_up"] == [reason]
    assert metrics.values("collector_up") == [0] and metrics.values("pci_count") == [1]


def test_binding_missing_is_a_reason_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.setattr(m._nvml, "import_pynvml", lambda path: (None, "No module named 'pynvml'"))
    metrics = m.collect(nvml=None, sysfs_root=fake.geforce_sysfs(tmp_path))
    assert metrics.values("collector_up", reason="bindings_missing") == [0]


def test_gpu_fallen_off_the_bus_is_reported_and_the_others_still_are(tmp_path):
    nvml = nvml_of(fake.error_halfway())   # GPU 2 answers GPU_IS_LOST
    metrics = collect(nvml, tmp_path, sysfs=fake.hgx_sysfs(tmp_path))
    assert metrics.values("lost", gpu="2") == [1]
    assert metrics.values("lost", gpu="2", reason="gpu_lost") == [1]
    assert metrics.values("temperature_celsius", gpu="2") == []   # no half-written GPU
    assert len(metrics.values("temperature_celsius")) == 3
    assert metrics.values("collector_up", reason="gpu_error") == [0]
    assert nvml.initialised == 0   # the session was closed


def test_device_count_failure_is_reported(tmp_path):
    nvml = nvml_of(fake.hgx_h200())
    nvml.missing.add("nvmlDeviceGetCount")
    metrics = collect(nvml, tmp_path)
    assert metrics.values("collector_up") == [0] and metrics.values("count") == [0]


def test_geforce_without_ecc_or_nvlink_leaves_them_out(tmp_path):
    nvml = nvml_of(fake.geforce())
    metrics = collect(nvml, tmp_path, sysfs=fake.geforce_sysfs(tmp_path))
    assert metrics.values("collector_up") == [1]
    assert metrics.values("ecc_mode_enabled") == [] and metrics.values("ecc_errors_total") == []
    assert metrics.values("nvlink_link_up") == [] and metrics.values("application_clock_mhz") == []
    assert metrics.values("throttle_reason", reason="sw_power_cap") == [1]
    assert metrics.values("persistence_mode_enabled") == [0]


def test_unsupported_utilization_is_left_out(tmp_path):
    nvml = nvml_of(fake.hgx_h200(1), unsupported={"nvmlDeviceGetUtilizationRates", "nvmlDeviceGetPcieThroughput"})
    metrics = collect(nvml, tmp_path)
    assert metrics.values("utilization_ratio") == [] and metrics.values("pcie_throughput_bytes_per_second") == []
    assert metrics.values("collector_up") == [1]


KMSG = """6,1234,5678,-;NVRM: Xid (PCI:0000:18:00): 79, pid=0, name=, GPU has fallen off the bus.
4,1235,5679,-;NVRM: Xid (PCI:0000:18:00): 13, pid=4242, name=python3, Graphics Exception
4,1236,5680,-;NVRM: Xid (PCI:0000:2a:00): 13, pid=4242, name=python3, Graphics Exception
4,1237,5681,-;NVRM: Xid (PCI:0000:18:00): 13, pid=4242, name=python3, Graphics Exception
6,1238,5682,-;eth0: link up
"""


def test_parse_xid_log_counts_by_bus_and_code():
    assert m.parse_xid_log(KMSG) == {("0000:18:00", 79): 1, ("0000:18:00", 13): 2, ("0000:2a:00", 13): 1}
    assert m.parse_xid_log("") == {} and m.parse_xid_log(None) == {}
    assert m.parse_xid_log("NVRM: Xid without a bus id: 79") == {}


def test_xid_messages_are_attributed_to_their_gpu(tmp_path):
    metrics = collect(nvml_of(fake.hgx_h200(2)), tmp_path, kernel_log=KMSG)
    assert metrics.values("xid_errors_total", gpu="0", xid="79") == [1]
    assert metrics.values("xid_errors_total", gpu="0", xid="13") == [2]
    assert metrics.values("xid_errors_total", gpu="1", xid="13") == [1]
    assert metrics.values("xid_errors_total", gpu="1", xid="79") == []


def test_read_kernel_log_from_a_file_and_an_unreadable_path(tmp_path):
    path = tmp_path / "kmsg"
    path.write_text(KMSG)
    assert "Xid" in m.read_kernel_log(str(path))
    assert m.read_kernel_log(str(tmp_path / "absent")) is None


@pytest.mark.parametrize("bus, short", [("00000000:18:00.0", "0000:18:00"), ("0000:AB:00.0", "0000:ab:00"), (None, None)])
def test_pci_short(bus, short):
    assert m.pci_short(bus) == short


TUNING = {"format": 1, "persistence": "legacy",
          "defaults": {"power_limit": 500, "application_clocks": {"memory": 3201, "graphics": 1755}},
          "models": {"NVIDIA L40S": {"power_limit": 300, "application_clocks": None}}}


def test_no_drift_when_the_gpu_has_the_tuned_values(tmp_path):
    nvml = nvml_of(fake.hgx_h200(1), power_limit=500000)
    metrics = collect(nvml, tmp_path, tuning=TUNING)
    assert metrics.values("tuning_drift", setting="persistence") == [0]
    assert metrics.values("tuning_drift", setting="power_limit") == [0]
    assert metrics.values("tuning_drift", setting="application_clocks") == [0]


def test_drift_when_persistence_clocks_or_power_were_reset(tmp_path):
    nvml = nvml_of(fake.hgx_h200(1), power_limit=700000, persistence=0,
                   app_clocks={fake.NVML_CLOCK_GRAPHICS: 1980, fake.NVML_CLOCK_MEM: 3201})
    metrics = collect(nvml, tmp_path, tuning=TUNING)
    assert metrics.values("tuning_drift", setting="persistence") == [1]
    assert metrics.values("tuning_drift", setting="power_limit") == [1]
    assert metrics.values("tuning_drift", setting="application_clocks") == [1]


def test_model_entry_overrides_and_removes_tuned_settings():
    expected = m.expected_settings(TUNING, "NVIDIA L40S")
    assert expected["power_limit"] == 300 and expected["application_clocks"] is None
    assert m.expected_settings(None, "x") == {}
    assert m.expected_settings({"persistence": "none", "defaults": {}}, "x")["persistence"] is None


def test_no_tuning_file_means_no_drift_metric(tmp_path):
    metrics = collect(nvml_of(fake.hgx_h200(1)), tmp_path, tuning=None)
    assert metrics.values("tuning_drift") == []


def test_write_atomically_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "gpu.prom"
    target.write_text("old\n")
    m.write_atomically(str(target), "new\n")
    assert target.read_text() == "new\n"
    assert oct(os.stat(str(target)).st_mode & 0o777) == "0o644"
    assert sorted(os.listdir(str(tmp_path))) == ["gpu.prom"]


def test_write_atomically_fails_cleanly_on_a_missing_directory(tmp_path):
    with pytest.raises(OSError):
        m.write_atomically(str(tmp_path / "absent" / "gpu.prom"), "x\n")
