# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""NVML access for the collection's modules: guarded import, one initialisation per run,
every NVML error mapped to a status and a reason that names the fix, and the NVIDIA PCI
devices read from sysfs (which works before any driver is loaded).

NVML, not nvidia-smi: nvidia-smi's text output is not a stable interface, NVML is, and one
NVML session answers all queries for a fraction of one nvidia-smi call.
Python 3.9+; the only third-party import is the NVML binding (nvidia-ml-py, import pynvml).
"""

from __future__ import annotations

import ctypes
import importlib
import os
import sys

from ansible_collections.llmops.gpu_stack.plugins.module_utils._gpu_tables import (
    architecture_for_cc,
    cuda_version_from_int,
)

# The common role installs the pinned binding here with `pip --target` on hosts whose
# distribution does not package it (Debian 13 uses its python3-pynvml instead).
DEFAULT_BINDINGS_PATH = "/opt/gpu_stack/python"
PINNED_BINDINGS = "nvidia-ml-py==13.615.71"
BINDINGS_PACKAGE = "nvidia-ml-py"
BINDINGS_FIX = (
    "run the llmops.gpu_stack.common role, which installs %s into %s (on Debian 13 it installs "
    "the python3-pynvml package), or install %s for the Python that runs Ansible modules"
    % (PINNED_BINDINGS, DEFAULT_BINDINGS_PATH, PINNED_BINDINGS)
)

STATUSES = ("ok", "no_nvidia_device", "library_missing", "driver_not_loaded", "bindings_missing", "error")

NVIDIA_VENDOR_ID = "0x10de"

# NVML return codes (nvml.h); named here so the mapping does not depend on a binding version.
NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_POWER = 8
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_IRQ_ISSUE = 11
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_CORRUPTED_INFOROM = 14
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_OPERATING_SYSTEM = 17
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_IN_USE = 19
NVML_ERROR_MEMORY = 20
NVML_ERROR_UNKNOWN = 999

# code -> (status, what happened, how to fix it)
_ERRORS = {
    NVML_ERROR_LIBRARY_NOT_FOUND: (
        "library_missing",
        "the NVML library (libnvidia-ml.so.1) of the NVIDIA driver is not installed",
        "install the NVIDIA driver (llmops.gpu_stack.nvidia_driver role)"),
    NVML_ERROR_DRIVER_NOT_LOADED: (
        "driver_not_loaded",
        "the NVIDIA kernel module is not loaded",
        "reboot after installing the driver or run 'modprobe nvidia'; if that fails, 'dmesg' shows why "
        "(unsigned module under Secure Boot, nouveau bound to the GPU, or a kernel without matching module)"),
    NVML_ERROR_NO_PERMISSION: (
        "error",
        "no permission to open the NVIDIA device files (/dev/nvidia*)",
        "run the task with become: true, or give the user access to /dev/nvidia*"),
    NVML_ERROR_LIB_RM_VERSION_MISMATCH: (
        "error",
        "the NVML library and the loaded NVIDIA kernel module come from different driver versions "
        "(the driver was upgraded without a reboot)",
        "reboot, or stop GPU processes and reload the nvidia kernel modules"),
    NVML_ERROR_GPU_IS_LOST: (
        "error",
        "a GPU has fallen off the bus",
        "check 'dmesg' for Xid 79, reset the GPU or reboot, and check its power and PCIe seating"),
    NVML_ERROR_RESET_REQUIRED: (
        "error",
        "a GPU needs a reset",
        "stop the processes using it and run 'nvidia-smi -r', or reboot"),
    NVML_ERROR_CORRUPTED_INFOROM: (
        "error",
        "a GPU's infoROM is corrupted",
        "the board needs vendor service; take it out of the serving pool"),
    NVML_ERROR_INSUFFICIENT_POWER: (
        "error",
        "a GPU's external power cables are not connected properly",
        "check the GPU power connectors"),
    NVML_ERROR_FUNCTION_NOT_FOUND: (
        "error",
        "the NVML library is older than the Python binding expects",
        "upgrade the NVIDIA driver, or install an older nvidia-ml-py matching it"),
    NVML_ERROR_TIMEOUT: (
        "error",
        "NVML timed out talking to the driver",
        "check 'dmesg' for Xid errors; a reboot usually clears it"),
    NVML_ERROR_IRQ_ISSUE: (
        "error",
        "the NVIDIA driver reports an interrupt problem",
        "check 'dmesg' and the kernel's IOMMU / MSI settings"),
    NVML_ERROR_OPERATING_SYSTEM: (
        "error",
        "the operating system blocked the NVML request",
        "check SELinux/AppArmor denials and container device access"),
    NVML_ERROR_UNINITIALIZED: (
        "error",
        "NVML was used before initialisation",
        "report this as a bug in llmops.gpu_stack"),
    NVML_ERROR_MEMORY: (
        "error",
        "NVML ran out of host memory",
        "free host memory and run again"),
}

# Query results that mean "this GPU or driver cannot answer": the field becomes None.
_SOFT_ERRORS = (NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_FUNCTION_NOT_FOUND, NVML_ERROR_NOT_FOUND,
                NVML_ERROR_NO_PERMISSION, NVML_ERROR_INVALID_ARGUMENT)

# Clock event ("throttle") reason bits. Source: nvml.h, nvmlClocksEventReason*.
THROTTLE_REASONS = (
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)

COMPUTE_MODES = {0: "default", 1: "exclusive_thread", 2: "prohibited", 3: "exclusive_process"}
COMPUTE_MODE_IDS = dict((name, code) for code, name in COMPUTE_MODES.items())

FABRIC_STATES = {0: "not_supported", 1: "not_started", 2: "in_progress", 3: "completed"}

# NVML clock types and ids (nvml.h).
CLOCK_GRAPHICS = 0
CLOCK_SM = 1
CLOCK_MEM = 2
TEMPERATURE_GPU = 0

# PCI class codes (PCI Code and ID Assignment Specification): base class + subclass.
PCI_CLASS_KINDS = {
    0x0300: "gpu",        # VGA-compatible display controller
    0x0302: "gpu",        # 3D controller (data-centre GPUs)
    0x0680: "nvswitch",   # other bridge: NVSwitch
    0x0403: "audio",      # HDMI audio function of a graphics board
    0x0c03: "usb",        # USB-C controller of a graphics board
    0x0c80: "serial_bus",
}


class NvmlUnavailable(Exception):
    """NVML cannot be used: carries the collection status and a reason naming the fix."""

    def __init__(self, status, reason):
        super(NvmlUnavailable, self).__init__(reason)
        self.status = status
        self.reason = reason


def import_pynvml(bindings_path=DEFAULT_BINDINGS_PATH):
    """Return (pynvml module or None, error text).

    Tries the interpreter's own packages first, then the collection-owned directory.
    """
    try:
        return importlib.import_module("pynvml"), None
    except ImportError as exc:
        first = exc
    if bindings_path and os.path.isdir(bindings_path) and bindings_path not in sys.path:
        sys.path.append(bindings_path)
        importlib.invalidate_caches()
        try:
            return importlib.import_module("pynvml"), None
        except ImportError as exc:
            return None, "%s (also looked in %s: %s)" % (first, bindings_path, exc)
    return None, "%s (not found in %s either)" % (first, bindings_path)


def bindings_missing_reason(error_text, python=None):
    return (
        "Failed to import the required Python library (%s, import name pynvml) on this host's Python %s: %s. "
        "Fix: %s." % (BINDINGS_PACKAGE, python or sys.executable, error_text, BINDINGS_FIX)
    )


def error_code(exc):
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def describe_nvml_error(exc, context=None):
    """(status, reason) for an exception raised by the binding; reason names cause and fix."""
    code = error_code(exc)
    status, what, fix = _ERRORS.get(code, ("error", "NVML reported an error", "check 'dmesg' for Xid errors and run 'nvidia-smi'"))
    where = (" (%s)" % context) if context else ""
    detail = str(exc) or exc.__class__.__name__
    if code is not None:
        detail = "%s, code %d" % (detail, code)
    return status, "%s%s: NVML says %s. Fix: %s." % (what, where, detail, fix)


def is_soft_error(exc):
    code = error_code(exc)
    if code in _SOFT_ERRORS:
        return True
    # pynvml raises NVMLLibraryMismatchError for unversioned functions the library lacks.
    return exc.__class__.__name__ == "NVMLLibraryMismatchError"


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").rstrip("\x00")
    return value


def _read(path):
    try:
        with open(path, "r") as handle:
            return handle.read().strip()
    except (IOError, OSError):
        return None


def scan_pci_devices(sysfs_root="/sys"):
    """NVIDIA PCI functions from sysfs: list of {bus_id, vendor_id, device_id, class, kind,
    driver, subsystem_vendor_id, subsystem_device_id, numa_node}. Works with no driver loaded.

    Raises OSError when the sysfs PCI directory cannot be read.
    """
    base = os.path.join(sysfs_root, "bus", "pci", "devices")
    devices = []
    for entry in sorted(os.listdir(base)):
        path = os.path.join(base, entry)
        vendor = (_read(os.path.join(path, "vendor")) or "").lower()
        if vendor != NVIDIA_VENDOR_ID:
            continue
        klass = (_read(os.path.join(path, "class")) or "0x000000").lower()
        try:
            class_code = int(klass, 16) >> 8
        except ValueError:
            class_code = 0
        driver_link = os.path.join(path, "driver")
        driver = os.path.basename(os.readlink(driver_link)) if os.path.islink(driver_link) else None
        numa = _read(os.path.join(path, "numa_node"))
        devices.append({
            "bus_id": entry,
            "vendor_id": vendor,
            "device_id": (_read(os.path.join(path, "device")) or "").lower() or None,
            "class": klass,
            "kind": PCI_CLASS_KINDS.get(class_code, "other"),
            "driver": driver,
            "subsystem_vendor_id": (_read(os.path.join(path, "subsystem_vendor")) or "").lower() or None,
            "subsystem_device_id": (_read(os.path.join(path, "subsystem_device")) or "").lower() or None,
            "numa_node": int(numa) if numa and numa.lstrip("-").isdigit() else None,
        })
    return devices


def list_nvswitch_proc(proc_root="/proc"):
    """Entries of /proc/driver/nvidia-nvswitch/devices (one per NVSwitch the driver sees)."""
    path = os.path.join(proc_root, "driver", "nvidia-nvswitch", "devices")
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


class NvmlSession(object):
    """One NVML initialisation for a whole module run; use as a context manager.

    nvmlInit is the expensive call (it opens every GPU); queries after it are cheap.
    """

    def __init__(self, nvml):
        self.nvml = nvml
        self.initialised = False

    def open(self):
        if self.initialised:
            return self
        try:
            self.nvml.nvmlInit()
        except Exception as exc:  # the binding raises NVMLError subclasses and OSError-like errors
            status, reason = describe_nvml_error(exc, "nvmlInit")
            raise NvmlUnavailable(status, reason)
        self.initialised = True
        return self

    def close(self):
        if self.initialised:
            self.initialised = False
            try:
                self.nvml.nvmlShutdown()
            except Exception:  # nothing useful to do about a failing shutdown at exit
                pass

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc_info):
        self.close()
        return False

    def call(self, name, *args):
        """Call a binding function; raises AttributeError if the binding lacks it."""
        return getattr(self.nvml, name)(*args)

    def query(self, name, *args):
        """Call a binding function; None when the GPU/driver cannot answer (not supported,
        no permission, missing function); other NVML errors propagate."""
        function = getattr(self.nvml, name, None)
        if function is None:
            return None
        try:
            return function(*args)
        except Exception as exc:
            if is_soft_error(exc):
                return None
            raise

    def first(self, calls):
        """First non-None answer of several (name, args) alternatives (new API, then old)."""
        for name, args in calls:
            value = self.query(name, *args)
            if value is not None:
                return value
        return None

    def device_count(self):
        return self.call("nvmlDeviceGetCount")

    def handle(self, index):
        return self.call("nvmlDeviceGetHandleByIndex", index)

    def system_info(self):
        cuda = self.first([("nvmlSystemGetCudaDriverVersion_v2", ()), ("nvmlSystemGetCudaDriverVersion", ())])
        return {
            "driver_version": _text(self.query("nvmlSystemGetDriverVersion")),
            "cuda_driver_version": cuda_version_from_int(cuda) if cuda else None,
            "nvml_version": _text(self.query("nvmlSystemGetNVMLVersion")),
        }

    def fabric_info(self, handle):
        """GPU fabric (NVLink/NVSwitch) registration state, None where NVML has no answer."""
        for function, struct in (("nvmlDeviceGetGpuFabricInfoV", "c_nvmlGpuFabricInfoV_t"),
                                 ("nvmlDeviceGetGpuFabricInfo", "c_nvmlGpuFabricInfo_t")):
            fn = getattr(self.nvml, function, None)
            cls = getattr(self.nvml, struct, None)
            if fn is None or cls is None:
                continue
            info = cls()
            try:
                fn(handle, ctypes.byref(info))
            except Exception as exc:
                if error_code(exc) == NVML_ERROR_FUNCTION_NOT_FOUND or exc.__class__.__name__ == "NVMLLibraryMismatchError":
                    continue
                if is_soft_error(exc):
                    return None
                raise
            uuid_bytes = bytes(bytearray(info.clusterUuid))
            return {
                "state": FABRIC_STATES.get(info.state, "unknown(%d)" % info.state),
                "status": "success" if info.status == NVML_SUCCESS else "error(%d)" % info.status,
                "clique_id": info.cliqueId,
                "cluster_uuid": _format_uuid(uuid_bytes),
            }
        return None

    def supported_clocks(self, handle):
        """[{memory: MHz, graphics: [MHz, ...]}], None if the GPU does not report them."""
        memory = self.query("nvmlDeviceGetSupportedMemoryClocks", handle)
        if memory is None:
            return None
        pairs = []
        for mem in sorted(memory, reverse=True):
            graphics = self.query("nvmlDeviceGetSupportedGraphicsClocks", handle, mem) or []
            pairs.append({"memory": mem, "graphics": sorted(graphics, reverse=True)})
        return pairs

    def gpu_info(self, index, handle, supported_clocks=False):
        """Everything gpu_facts reports about one GPU. None for what the GPU cannot answer."""
        q = self.query
        memory = q("nvmlDeviceGetMemoryInfo", handle)
        cc = q("nvmlDeviceGetCudaComputeCapability", handle)
        cc_text = "%d.%d" % tuple(cc) if cc else None
        pci = q("nvmlDeviceGetPciInfo", handle)
        power_limits = q("nvmlDeviceGetPowerManagementLimitConstraints", handle)
        reasons = self.first([("nvmlDeviceGetCurrentClocksEventReasons", (handle,)),
                              ("nvmlDeviceGetCurrentClocksThrottleReasons", (handle,))])
        temperature = self.first([("nvmlDeviceGetTemperature", (handle, TEMPERATURE_GPU))])
        info = {
            "index": index,
            "name": _text(q("nvmlDeviceGetName", handle)),
            "uuid": _text(q("nvmlDeviceGetUUID", handle)),
            "pci_bus_id": _text(pci.busId) if pci is not None else None,
            "memory_total": memory.total if memory is not None else None,
            "memory_free": memory.free if memory is not None else None,
            "memory_used": memory.used if memory is not None else None,
            "compute_capability": cc_text,
            "architecture": architecture_for_cc(cc_text) if cc_text else None,
            "persistence_mode": _enabled(q("nvmlDeviceGetPersistenceMode", handle)),
            "compute_mode": _lookup(COMPUTE_MODES, q("nvmlDeviceGetComputeMode", handle)),
            "mig_mode": _current_pending(q("nvmlDeviceGetMigMode", handle)),
            "ecc_mode": _current_pending(q("nvmlDeviceGetEccMode", handle)),
            "temperature_c": temperature,
            "power_draw_w": _watts(q("nvmlDeviceGetPowerUsage", handle)),
            "power_limit_w": _watts(q("nvmlDeviceGetPowerManagementLimit", handle)),
            "power_default_limit_w": _watts(q("nvmlDeviceGetPowerManagementDefaultLimit", handle)),
            "power_min_limit_w": _watts(power_limits[0]) if power_limits else None,
            "power_max_limit_w": _watts(power_limits[1]) if power_limits else None,
            "clocks": {
                "current": {
                    "graphics": q("nvmlDeviceGetClockInfo", handle, CLOCK_GRAPHICS),
                    "sm": q("nvmlDeviceGetClockInfo", handle, CLOCK_SM),
                    "memory": q("nvmlDeviceGetClockInfo", handle, CLOCK_MEM),
                },
                "application": {
                    "graphics": q("nvmlDeviceGetApplicationsClock", handle, CLOCK_GRAPHICS),
                    "memory": q("nvmlDeviceGetApplicationsClock", handle, CLOCK_MEM),
                },
                "default_application": {
                    "graphics": q("nvmlDeviceGetDefaultApplicationsClock", handle, CLOCK_GRAPHICS),
                    "memory": q("nvmlDeviceGetDefaultApplicationsClock", handle, CLOCK_MEM),
                },
                "max": {
                    "graphics": q("nvmlDeviceGetMaxClockInfo", handle, CLOCK_GRAPHICS),
                    "sm": q("nvmlDeviceGetMaxClockInfo", handle, CLOCK_SM),
                    "memory": q("nvmlDeviceGetMaxClockInfo", handle, CLOCK_MEM),
                },
            },
            "throttle_reasons": throttle_reason_names(reasons) if reasons is not None else None,
            "pcie": {
                "generation": q("nvmlDeviceGetCurrPcieLinkGeneration", handle),
                "width": q("nvmlDeviceGetCurrPcieLinkWidth", handle),
                "max_generation": q("nvmlDeviceGetMaxPcieLinkGeneration", handle),
                "max_width": q("nvmlDeviceGetMaxPcieLinkWidth", handle),
            },
            "fabric": self.fabric_info(handle),
            "error": None,
        }
        if supported_clocks:
            info["supported_clocks"] = self.supported_clocks(handle)
        return info


def _format_uuid(raw):
    if not raw or not any(bytearray(raw)):
        return None
    text = "".join("%02x" % b for b in bytearray(raw))
    return "%s-%s-%s-%s-%s" % (text[:8], text[8:12], text[12:16], text[16:20], text[20:32])


def _enabled(value):
    if value is None:
        return None
    return "enabled" if value else "disabled"


def _lookup(table, value):
    if value is None:
        return None
    return table.get(value, "unknown(%s)" % value)


def _current_pending(pair):
    if pair is None:
        return None
    return {"current": _enabled(pair[0]), "pending": _enabled(pair[1])}


def _watts(milliwatts):
    if milliwatts is None:
        return None
    return round(milliwatts / 1000.0, 3)


def throttle_reason_names(bits):
    """Names of the set clock event reason bits, in bit order; unknown bits as hex."""
    names = []
    known = 0
    for bit, name in THROTTLE_REASONS:
        known |= bit
        if bits & bit:
            names.append(name)
    rest = bits & ~known
    if rest:
        names.append("unknown(0x%x)" % rest)
    return names


def _empty_facts():
    return {
        "status": None,
        # What NVML itself answered (ok, bindings_missing, library_missing, driver_not_loaded,
        # error), kept apart from status, which says no_nvidia_device when sysfs shows no GPU.
        "nvml_status": None,
        "reason": "",
        "driver_version": None,
        "cuda_driver_version": None,
        "nvml_version": None,
        "pci_devices": [],
        "pci_gpu_count": 0,
        "nvswitch_present": False,
        "fabric": {},
        "gpu_count": 0,
        "gpus": [],
    }


def _fabric_summary(facts, proc_devices):
    pci_switches = [d["bus_id"] for d in facts["pci_devices"] if d["kind"] == "nvswitch"]
    states = [g["fabric"]["state"] for g in facts["gpus"] if g.get("fabric")]
    nvml_fabric = any(state != "not_supported" for state in states)
    present = bool(proc_devices or pci_switches or nvml_fabric)
    facts["nvswitch_present"] = present
    facts["fabric"] = {
        "proc_nvswitch_devices": proc_devices,
        "pci_nvswitch_devices": pci_switches,
        "gpu_states": states,
        # Fabric manager must run exactly where NVSwitches (or an NVLink fabric) exist; it fails
        # to start elsewhere.
        "fabric_manager_needed": present,
        "all_registered": bool(states) and all(s == "completed" for s in states) if nvml_fabric else None,
    }


def collect_gpu_facts(nvml=None, bindings_path=DEFAULT_BINDINGS_PATH, sysfs_root="/sys", proc_root="/proc",
                      supported_clocks=False, python=None):
    """The ansible_facts.gpu dict. Never raises for a host-side problem: the status and reason
    say what is wrong and how to fix it.

    nvml: a pynvml-compatible module; imported (with the collection fallback path) when None.
    """
    facts = _empty_facts()
    notes = []
    try:
        facts["pci_devices"] = scan_pci_devices(sysfs_root)
        sysfs_ok = True
    except OSError as exc:
        sysfs_ok = False
        notes.append("sysfs PCI scan failed: %s" % exc)
    facts["pci_gpu_count"] = len([d for d in facts["pci_devices"] if d["kind"] == "gpu"])
    proc_devices = list_nvswitch_proc(proc_root)
    no_pci_gpu = sysfs_ok and facts["pci_gpu_count"] == 0

    if nvml is None:
        nvml, import_error = import_pynvml(bindings_path)
        if nvml is None:
            facts["nvml_status"] = "bindings_missing"
            if no_pci_gpu:
                facts["status"] = "no_nvidia_device"
                facts["reason"] = "no NVIDIA GPU on the PCI bus (sysfs); the NVML Python binding is not installed either"
            else:
                facts["status"] = "bindings_missing"
                facts["reason"] = bindings_missing_reason(import_error, python)
            _fabric_summary(facts, proc_devices)
            return facts

    session = NvmlSession(nvml)
    try:
        session.open()
    except NvmlUnavailable as exc:
        facts["status"] = facts["nvml_status"] = exc.status
        facts["reason"] = exc.reason
        if no_pci_gpu and exc.status in ("library_missing", "driver_not_loaded"):
            facts["status"] = "no_nvidia_device"
            facts["reason"] = "no NVIDIA GPU on the PCI bus (sysfs); NVML: " + exc.reason
        elif exc.status == "driver_not_loaded":
            bound = sorted(set(d["driver"] for d in facts["pci_devices"] if d["kind"] == "gpu" and d["driver"]))
            if bound:
                facts["reason"] += " The GPUs are bound to: %s." % ", ".join(bound)
        _fabric_summary(facts, proc_devices)
        return facts

    facts["nvml_status"] = "ok"
    try:
        try:
            facts.update(session.system_info())
            count = session.device_count()
        except Exception as exc:
            facts["status"], facts["reason"] = describe_nvml_error(exc, "system query")
            _fabric_summary(facts, proc_devices)
            return facts
        failures = []
        for index in range(count):
            try:
                handle = session.handle(index)
                gpu = session.gpu_info(index, handle, supported_clocks)
            except Exception as exc:
                status, reason = describe_nvml_error(exc, "GPU %d" % index)
                gpu = {"index": index, "error": reason}
                failures.append(reason)
            facts["gpus"].append(gpu)
        facts["gpu_count"] = count
        if failures:
            facts["status"] = "error"
            facts["reason"] = "; ".join(failures)
        elif count == 0:
            facts["status"] = "no_nvidia_device"
            facts["reason"] = "the NVIDIA driver is loaded but shows no GPU"
            if facts["pci_gpu_count"]:
                facts["reason"] += (" although %d NVIDIA GPU(s) sit on the PCI bus; check 'dmesg' for "
                                    "RmInitAdapter failures" % facts["pci_gpu_count"])
        else:
            facts["status"] = "ok"
            facts["reason"] = "%d GPU(s), driver %s" % (count, facts["driver_version"])
    finally:
        session.close()
    if notes:
        facts["reason"] += " (" + "; ".join(notes) + ")"
    _fabric_summary(facts, proc_devices)
    return facts


def open_session(bindings_path=DEFAULT_BINDINGS_PATH, nvml=None, python=None):
    """An opened NvmlSession, or NvmlUnavailable with status and reason (bindings included)."""
    if nvml is None:
        nvml, error = import_pynvml(bindings_path)
        if nvml is None:
            raise NvmlUnavailable("bindings_missing", bindings_missing_reason(error, python))
    return NvmlSession(nvml).open()
