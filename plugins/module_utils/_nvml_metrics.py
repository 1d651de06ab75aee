# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""GPU metrics in the Prometheus text format, read through the collection's NVML helpers.

The observability role installs this file with _nvml.py and _gpu_tables.py beside its
textfile collector script, which a systemd timer runs; node exporter's textfile collector
then serves the file. Everything here is a pure function of an NVML session (or a fake of
it), the kernel log text and the gpu_tuning role's settings file, so it is unit-tested
without a GPU.

Never raises for a host-side problem: a host without a GPU, without the driver or without
the binding gets gpu_stack_gpu_collector_up 0 with the reason as a label, and one GPU that
fails (for instance one that fell off the bus) gets gpu_stack_gpu_lost 1 while the other
GPUs are still reported.
Python 3.9+; no third-party import (the NVML binding comes in as an argument).
"""

from __future__ import annotations

import os
import re

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _nvml
from ansible_collections.llmops.gpu_stack.plugins.module_utils._fsutil import write_text_atomic

PREFIX = "gpu_stack_gpu_"

# NVML constants (nvml.h), named here so the collector does not depend on a binding version.
PCIE_UTIL_TX_BYTES = 0
PCIE_UTIL_RX_BYTES = 1
MEMORY_ERROR_CORRECTED = 0
MEMORY_ERROR_UNCORRECTED = 1
VOLATILE_ECC = 0
# NVML_NVLINK_MAX_LINKS differs between bindings (18 in older ones, 36 in 13.x); the loop stops
# at the first link the GPU does not have.
NVLINK_MAX_LINKS = 36

# (name, type, help) of every metric the collector writes, in output order.
METRICS = (
    ("collector_up", "gauge", "1 when NVML answered for every GPU, 0 otherwise (reason label says why)"),
    ("count", "gauge", "GPUs NVML reports"),
    ("pci_count", "gauge", "NVIDIA GPUs on the PCI bus (sysfs), with or without a working driver"),
    ("info", "gauge", "Static description of a GPU (always 1)"),
    ("lost", "gauge", "1 when NVML reports the GPU lost (fell off the bus) or cannot answer"),
    ("temperature_celsius", "gauge", "GPU core temperature"),
    ("power_draw_watts", "gauge", "Power draw"),
    ("power_limit_watts", "gauge", "Enforced power limit"),
    ("clock_mhz", "gauge", "Current clock by domain"),
    ("application_clock_mhz", "gauge", "Application clock setting by domain"),
    ("utilization_ratio", "gauge", "Busy fraction over the last sample period (gpu: kernels, memory: memory controller)"),
    ("memory_used_bytes", "gauge", "Framebuffer memory used"),
    ("memory_total_bytes", "gauge", "Framebuffer memory total"),
    ("pcie_throughput_bytes_per_second", "gauge", "PCIe throughput over the last 20 ms by direction"),
    ("pcie_link_generation", "gauge", "Current PCIe link generation"),
    ("pcie_link_width", "gauge", "Current PCIe link width (lanes)"),
    ("nvlink_link_up", "gauge", "1 when the NVLink link is active (only GPUs with NVLink)"),
    ("ecc_mode_enabled", "gauge", "1 when ECC is enabled"),
    ("ecc_errors_total", "counter", "Volatile ECC error count since the driver loaded, by type"),
    ("throttle_reason", "gauge", "1 when the clock event (throttle) reason is active"),
    ("persistence_mode_enabled", "gauge", "1 when persistence mode is enabled"),
    ("xid_errors_total", "counter", "Xid messages for the GPU in the kernel log since boot, by Xid code"),
    ("xid_log_readable", "gauge", "1 when the kernel log could be read for Xid messages"),
    ("tuning_drift", "gauge", "1 when a setting of the gpu_tuning role differs from the GPU's current value"),
)
_KNOWN = dict((name, (kind, text)) for name, kind, text in METRICS)

# "NVRM: Xid (PCI:0000:18:00): 79, pid=..., GPU has fallen off the bus." (the driver's format).
_XID = re.compile(r"NVRM: Xid \(PCI:([0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2})[^)]*\): (\d+)")


class Metrics(object):
    """Samples in output order: add(name, value, **labels); render() gives the text format."""

    def __init__(self):
        self.samples = []

    def add(self, metric, value, **labels):
        if metric not in _KNOWN:
            raise KeyError("unknown metric %s" % metric)
        if value is None:
            return
        if isinstance(value, bool):
            value = int(value)
        self.samples.append((metric, labels, value))

    def values(self, metric, **labels):
        """Values of the samples of one metric whose labels include the given ones (tests)."""
        return [v for n, lbl, v in self.samples if n == metric and all(lbl.get(k) == w for k, w in labels.items())]

    def render(self):
        lines = []
        for name, kind, text in METRICS:
            rows = [(labels, value) for n, labels, value in self.samples if n == name]
            if not rows:
                continue
            lines.append("# HELP %s%s %s" % (PREFIX, name, text))
            lines.append("# TYPE %s%s %s" % (PREFIX, name, kind))
            for labels, value in rows:
                lines.append("%s%s%s %s" % (PREFIX, name, format_labels(labels), format_value(value)))
        return "\n".join(lines) + "\n"


def escape_label(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_labels(labels):
    if not labels:
        return ""
    return "{%s}" % ",".join('%s="%s"' % (key, escape_label(labels[key])) for key in sorted(labels))


def format_value(value):
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value)


def pci_short(bus_id):
    """'00000000:18:00.0' or '0000:18:00.0' -> '0000:18:00' (the form Xid messages use)."""
    if not bus_id:
        return None
    text = bus_id.lower()
    domain, _sep, rest = text.partition(":")
    return "%s:%s" % (domain[-4:], rest.rsplit(".", 1)[0])


def parse_xid_log(text):
    """{('0000:18:00', 79): count} from kernel log text (dmesg or /dev/kmsg records)."""
    counts = {}
    for match in _XID.finditer(text or ""):
        key = (match.group(1).lower(), int(match.group(2)))
        counts[key] = counts.get(key, 0) + 1
    return counts


def read_kernel_log(path="/dev/kmsg"):
    """The kernel ring buffer as text, or None when it cannot be read (not root, container).

    /dev/kmsg blocks at the end of the buffer, so it is read non-blocking until EAGAIN.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    chunks = []
    try:
        while True:
            try:
                record = os.read(fd, 8192)
            except BlockingIOError:
                break
            except OSError as exc:
                # EPIPE: a record was overwritten while reading; the next read goes on.
                if exc.errno == 32:
                    continue
                break
            if not record:
                break
            chunks.append(record.decode("utf-8", "replace"))
    finally:
        os.close(fd)
    return "".join(chunks)


def expected_settings(tuning, gpu_name):
    """The gpu_tuning role's settings for a GPU of this model (its boot file, format 1):
    {persistence: bool or None, power_limit: W or None, application_clocks: {memory, graphics} or None}."""
    if not isinstance(tuning, dict):
        return {}
    wanted = dict(tuning.get("defaults") or {})
    override = (tuning.get("models") or {}).get(gpu_name)
    if isinstance(override, dict):
        wanted.update(override)
    return {
        "persistence": True if tuning.get("persistence") in ("daemon", "legacy") else None,
        "power_limit": wanted.get("power_limit"),
        "application_clocks": wanted.get("application_clocks"),
    }


def tuning_drift(expected, gpu):
    """{setting: 0 or 1} for each setting gpu_tuning manages on this GPU and NVML can read."""
    drift = {}
    if expected.get("persistence") is not None and gpu.get("persistence_mode") is not None:
        drift["persistence"] = int(gpu["persistence_mode"] != "enabled")
    if expected.get("power_limit") is not None and gpu.get("power_limit_w") is not None:
        drift["power_limit"] = int(abs(float(gpu["power_limit_w"]) - float(expected["power_limit"])) >= 1.0)
    clocks = expected.get("application_clocks")
    current = (gpu.get("clocks") or {}).get("application") or {}
    if isinstance(clocks, dict) and current.get("graphics") is not None and current.get("memory") is not None:
        drift["application_clocks"] = int(any((int(clocks["graphics"]) != current["graphics"],
                                               int(clocks["memory"]) != current["memory"])))
    return drift


def _nvlink_states(session, handle):
    states = []
    for link in range(NVLINK_MAX_LINKS):
        state = session.query("nvmlDeviceGetNvLinkState", handle, link)
        if state is None:
            break
        states.append(state)
    return states


def _gpu_metrics(metrics, session, index, handle, xid_counts, tuning):
    gpu = session.gpu_info(index, handle)
    q = session.query
    label = {"gpu": str(index), "uuid": gpu["uuid"] or ""}
    metrics.add("info", 1, name=gpu["name"] or "", pci_bus_id=gpu["pci_bus_id"] or "", **label)
    metrics.add("lost", 0, reason="ok", **label)
    metrics.add("temperature_celsius", gpu["temperature_c"], **label)
    metrics.add("power_draw_watts", gpu["power_draw_w"], **label)
    metrics.add("power_limit_watts", gpu["power_limit_w"], **label)
    for clock in ("graphics", "sm", "memory"):
        metrics.add("clock_mhz", gpu["clocks"]["current"][clock], clock=clock, **label)
    for clock in ("graphics", "memory"):
        metrics.add("application_clock_mhz", gpu["clocks"]["application"][clock], clock=clock, **label)
    rates = q("nvmlDeviceGetUtilizationRates", handle)
    if rates is not None:
        metrics.add("utilization_ratio", rates.gpu / 100.0, kind="gpu", **label)
        metrics.add("utilization_ratio", rates.memory / 100.0, kind="memory", **label)
    metrics.add("memory_used_bytes", gpu["memory_used"], **label)
    metrics.add("memory_total_bytes", gpu["memory_total"], **label)
    for direction, counter in (("tx", PCIE_UTIL_TX_BYTES), ("rx", PCIE_UTIL_RX_BYTES)):
        kib = q("nvmlDeviceGetPcieThroughput", handle, counter)
        metrics.add("pcie_throughput_bytes_per_second", None if kib is None else kib * 1024, direction=direction, **label)
    metrics.add("pcie_link_generation", gpu["pcie"]["generation"], **label)
    metrics.add("pcie_link_width", gpu["pcie"]["width"], **label)
    for link, state in enumerate(_nvlink_states(session, handle)):
        metrics.add("nvlink_link_up", int(bool(state)), link=str(link), **label)
    ecc = gpu["ecc_mode"]
    if ecc is not None:
        metrics.add("ecc_mode_enabled", int(ecc["current"] == "enabled"), **label)
        if ecc["current"] == "enabled":
            for kind, code in (("corrected", MEMORY_ERROR_CORRECTED), ("uncorrected", MEMORY_ERROR_UNCORRECTED)):
                metrics.add("ecc_errors_total", q("nvmlDeviceGetTotalEccErrors", handle, code, VOLATILE_ECC),
                            type=kind, **label)
    active = gpu["throttle_reasons"]
    if active is not None:
        for _bit, reason in _nvml.THROTTLE_REASONS:
            metrics.add("throttle_reason", int(reason in active), reason=reason, **label)
    if gpu["persistence_mode"] is not None:
        metrics.add("persistence_mode_enabled", int(gpu["persistence_mode"] == "enabled"), **label)
    if xid_counts is not None:
        short = pci_short(gpu["pci_bus_id"])
        for (bus, xid), count in sorted(xid_counts.items()):
            if bus == short:
                metrics.add("xid_errors_total", count, xid=str(xid), **label)
    for setting, value in sorted(tuning_drift(expected_settings(tuning, gpu["name"]), gpu).items()):
        metrics.add("tuning_drift", value, setting=setting, **label)


def collect(nvml=None, bindings_path=_nvml.DEFAULT_BINDINGS_PATH, sysfs_root="/sys", kernel_log=None, tuning=None):
    """Metrics for this host. nvml: a pynvml-compatible module (imported when None);
    kernel_log: kernel log text, None when unreadable; tuning: the gpu_tuning settings dict."""
    metrics = Metrics()
    try:
        pci_count = len([d for d in _nvml.scan_pci_devices(sysfs_root) if d["kind"] == "gpu"])
    except OSError:
        pci_count = None
    metrics.add("pci_count", pci_count)
    xid_counts = parse_xid_log(kernel_log) if kernel_log is not None else None
    metrics.add("xid_log_readable", int(kernel_log is not None))

    if pci_count == 0:
        metrics.add("collector_up", 0, reason="no_nvidia_device")
        metrics.add("count", 0)
        return metrics
    try:
        session = _nvml.open_session(bindings_path, nvml=nvml)
    except _nvml.NvmlUnavailable as exc:
        metrics.add("collector_up", 0, reason=exc.status)
        metrics.add("count", 0)
        return metrics
    try:
        try:
            count = session.device_count()
        except Exception as exc:  # the binding raises NVMLError subclasses
            metrics.add("collector_up", 0, reason=_nvml.describe_nvml_error(exc)[0])
            metrics.add("count", 0)
            return metrics
        failed = 0
        for index in range(count):
            # One GPU's samples are kept only when all its queries worked.
            gpu_metrics = Metrics()
            try:
                handle = session.handle(index)
                _gpu_metrics(gpu_metrics, session, index, handle, xid_counts, tuning)
                metrics.samples.extend(gpu_metrics.samples)
            except Exception as exc:
                failed += 1
                reason = "gpu_lost" if _nvml.error_code(exc) == _nvml.NVML_ERROR_GPU_IS_LOST else "gpu_error"
                metrics.add("lost", 1, gpu=str(index), uuid="", reason=reason)
        metrics.add("count", count)
        if failed:
            metrics.add("collector_up", 0, reason="gpu_error")
        elif count == 0:
            metrics.add("collector_up", 0, reason="no_nvidia_device")
        else:
            metrics.add("collector_up", 1, reason="ok")
    finally:
        session.close()
    return metrics


def write_atomically(path, text, mode=0o644):
    """Write text to path through a temporary file in the same directory and a rename, so
    node exporter never reads a half-written file. Written on every run, the same text
    included, so node exporter's node_textfile_mtime_seconds says when the collector last ran."""
    return write_text_atomic(path, text, mode, only_if_changed=False)
