# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A fake of the pynvml API surface the collection uses, with host scenarios.

Behaves like the binding where it matters: strings come back as str (the binding decodes
them), PCI bus ids as bytes (ctypes char arrays are not decoded), power in milliwatts,
errors as NVMLError instances whose .value is the NVML return code, fabric info filled
through a ctypes byref. Setters change the fake state, so a second run sees the result.
Scenario builders at the bottom; write_sysfs() builds the matching /sys tree.
"""

from __future__ import annotations

import copy
import ctypes
import os

MIB = 1024 ** 2

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_UNKNOWN = 999

_ERROR_TEXT = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_LIB_RM_VERSION_MISMATCH: "RM has detected an NVML/RM version mismatch.",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}

NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_TEMPERATURE_GPU = 0
NVML_FEATURE_DISABLED = 0
NVML_FEATURE_ENABLED = 1
NVML_GPU_FABRIC_STATE_NOT_SUPPORTED = 0
NVML_GPU_FABRIC_STATE_NOT_STARTED = 1
NVML_GPU_FABRIC_STATE_IN_PROGRESS = 2
NVML_GPU_FABRIC_STATE_COMPLETED = 3

# The functions of the real binding this fake stands in for (checked against pynvml in tests).
API = (
    "nvmlInit", "nvmlShutdown", "nvmlSystemGetDriverVersion", "nvmlSystemGetCudaDriverVersion",
    "nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetNVMLVersion", "nvmlDeviceGetCount",
    "nvmlDeviceGetHandleByIndex", "nvmlDeviceGetName", "nvmlDeviceGetUUID", "nvmlDeviceGetPciInfo",
    "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetCudaComputeCapability", "nvmlDeviceGetPersistenceMode",
    "nvmlDeviceGetComputeMode", "nvmlDeviceGetMigMode", "nvmlDeviceGetEccMode", "nvmlDeviceGetTemperature",
    "nvmlDeviceGetPowerUsage", "nvmlDeviceGetPowerManagementLimit", "nvmlDeviceGetPowerManagementDefaultLimit",
    "nvmlDeviceGetPowerManagementLimitConstraints", "nvmlDeviceGetClockInfo", "nvmlDeviceGetApplicationsClock",
    "nvmlDeviceGetDefaultApplicationsClock", "nvmlDeviceGetMaxClockInfo", "nvmlDeviceGetCurrentClocksEventReasons",
    "nvmlDeviceGetCurrentClocksThrottleReasons", "nvmlDeviceGetCurrPcieLinkGeneration",
    "nvmlDeviceGetCurrPcieLinkWidth", "nvmlDeviceGetMaxPcieLinkGeneration", "nvmlDeviceGetMaxPcieLinkWidth",
    "nvmlDeviceGetGpuFabricInfoV", "nvmlDeviceGetGpuFabricInfo", "nvmlDeviceGetSupportedMemoryClocks",
    "nvmlDeviceGetSupportedGraphicsClocks", "nvmlDeviceSetPersistenceMode", "nvmlDeviceSetComputeMode",
    "nvmlDeviceSetPowerManagementLimit", "nvmlDeviceSetApplicationsClocks", "nvmlDeviceResetApplicationsClocks",
    "nvmlDeviceSetGpuLockedClocks", "nvmlDeviceResetGpuLockedClocks",
)
STRUCTS = ("c_nvmlGpuFabricInfo_t", "c_nvmlGpuFabricInfoV_t")


class NVMLError(Exception):
    """Like pynvml.NVMLError: NVMLError(code) builds the matching subclass."""

    _by_code = {}

    def __new__(cls, value=None):
        target = NVMLError._by_code.get(value, NVMLError) if cls is NVMLError else cls
        obj = Exception.__new__(target)
        obj.value = value if value is not None else getattr(target, "code", NVML_ERROR_UNKNOWN)
        return obj

    def __init__(self, value=None):
        Exception.__init__(self, self.value)

    def __str__(self):
        return _ERROR_TEXT.get(self.value, "NVML Error with code %d" % self.value)


def _error_class(name, code):
    cls = type(name, (NVMLError,), {"code": code})
    NVMLError._by_code[code] = cls
    return cls


NVMLError_NotSupported = _error_class("NVMLError_NotSupported", NVML_ERROR_NOT_SUPPORTED)
NVMLError_NoPermission = _error_class("NVMLError_NoPermission", NVML_ERROR_NO_PERMISSION)
NVMLError_DriverNotLoaded = _error_class("NVMLError_DriverNotLoaded", NVML_ERROR_DRIVER_NOT_LOADED)
NVMLError_LibraryNotFound = _error_class("NVMLError_LibraryNotFound", NVML_ERROR_LIBRARY_NOT_FOUND)
NVMLError_FunctionNotFound = _error_class("NVMLError_FunctionNotFound", NVML_ERROR_FUNCTION_NOT_FOUND)
NVMLError_GpuIsLost = _error_class("NVMLError_GpuIsLost", NVML_ERROR_GPU_IS_LOST)
NVMLError_InvalidArgument = _error_class("NVMLError_InvalidArgument", NVML_ERROR_INVALID_ARGUMENT)


class c_nvmlGpuFabricInfo_t(ctypes.Structure):
    _fields_ = [("clusterUuid", ctypes.c_uint8 * 16), ("status", ctypes.c_uint), ("cliqueId", ctypes.c_uint32),
                ("state", ctypes.c_uint)]


class c_nvmlGpuFabricInfoV_t(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint), ("clusterUuid", ctypes.c_uint8 * 16), ("status", ctypes.c_uint),
                ("cliqueId", ctypes.c_uint32), ("state", ctypes.c_uint), ("healthMask", ctypes.c_uint32)]

    def __init__(self):
        super(c_nvmlGpuFabricInfoV_t, self).__init__(version=0x02000024)


class _Struct(object):
    def __init__(self, **fields):
        self.__dict__.update(fields)


class FakeGpu(object):
    """One GPU's state. Fields in NVML units (bytes, milliwatts, MHz)."""

    def __init__(self, **fields):
        self.name = "NVIDIA H200"
        self.uuid = "GPU-00000000-0000-4000-8000-000000000000"
        self.bus_id = "00000000:18:00.0"
        self.memory_total = 143771 * MIB
        self.memory_used = 512 * MIB
        self.cc = (9, 0)
        self.persistence = NVML_FEATURE_ENABLED
        self.compute_mode = 0
        self.mig = (0, 0)
        self.ecc = (1, 1)
        self.temperature = 34
        self.power_usage = 112000
        self.power_limit = 700000
        self.power_default = 700000
        self.power_constraints = (200000, 700000)
        self.clocks = {NVML_CLOCK_GRAPHICS: 345, NVML_CLOCK_SM: 345, NVML_CLOCK_MEM: 3201}
        self.max_clocks = {NVML_CLOCK_GRAPHICS: 1980, NVML_CLOCK_SM: 1980, NVML_CLOCK_MEM: 3201}
        self.default_app_clocks = {NVML_CLOCK_GRAPHICS: 1755, NVML_CLOCK_MEM: 3201}
        self.app_clocks = dict(self.default_app_clocks)
        self.supported = {3201: list(range(1980, 344, -15))}
        self.throttle = 0x1
        self.pcie = (5, 16, 5, 16)
        self.fabric_state = NVML_GPU_FABRIC_STATE_COMPLETED
        self.fabric_clique = 7
        self.locked = None
        self.unsupported = set()   # function names answering NVML_ERROR_NOT_SUPPORTED
        self.errors = {}           # function name -> NVML error code
        self.__dict__.update(fields)


class FakeNvml(object):
    """Module-like fake of pynvml over a list of FakeGpu."""

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_NoPermission = NVMLError_NoPermission
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_FunctionNotFound = NVMLError_FunctionNotFound
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    c_nvmlGpuFabricInfo_t = c_nvmlGpuFabricInfo_t
    c_nvmlGpuFabricInfoV_t = c_nvmlGpuFabricInfoV_t

    def __init__(self, gpus=(), driver="570.133.20", cuda=12080, nvml_version="12.570.133.20", init_error=None,
                 missing=(), read_only=False):
        self.gpus = list(gpus)
        self.driver = driver
        self.cuda = cuda
        self.nvml_version = nvml_version
        self.init_error = init_error
        self.missing = set(missing)      # functions the driver's library lacks: FunctionNotFound
        self.read_only = read_only       # setters answer NoPermission (not root)
        self.initialised = 0
        self.init_calls = 0
        self.calls = []

    # -- plumbing ------------------------------------------------------------------------
    def _check(self, name):
        if not self.initialised and name != "nvmlInit":
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        if name in self.missing:
            raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)

    def _gpu(self, handle, name):
        self._check(name)
        gpu = self.gpus[handle.index]
        if name in gpu.errors:
            raise NVMLError(gpu.errors[name])
        if name in gpu.unsupported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return gpu

    def _set(self, handle, name, *args):
        gpu = self._gpu(handle, name)
        if self.read_only:
            raise NVMLError(NVML_ERROR_NO_PERMISSION)
        self.calls.append((name, handle.index) + args)
        return gpu

    def setter_calls(self):
        return [c for c in self.calls if c[0].startswith(("nvmlDeviceSet", "nvmlDeviceReset"))]

    # -- system --------------------------------------------------------------------------
    def nvmlInit(self):
        self.init_calls += 1
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialised += 1

    def nvmlShutdown(self):
        self._check("nvmlShutdown")
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self):
        self._check("nvmlSystemGetDriverVersion")
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self):
        self._check("nvmlSystemGetCudaDriverVersion")
        return self.cuda

    def nvmlSystemGetCudaDriverVersion_v2(self):
        self._check("nvmlSystemGetCudaDriverVersion_v2")
        return self.cuda

    def nvmlSystemGetNVMLVersion(self):
        self._check("nvmlSystemGetNVMLVersion")
        return self.nvml_version

    def nvmlDeviceGetCount(self):
        self._check("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        self._check("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        handle = _Struct(index=index)
        self._gpu(handle, "nvmlDeviceGetHandleByIndex")
        return handle

    # -- queries -------------------------------------------------------------------------
    def nvmlDeviceGetName(self, handle):
        return self._gpu(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetUUID(self, handle):
        return self._gpu(handle, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetPciInfo(self, handle):
        gpu = self._gpu(handle, "nvmlDeviceGetPciInfo")
        return _Struct(busId=gpu.bus_id.encode(), busIdLegacy=gpu.bus_id.encode())

    def nvmlDeviceGetMemoryInfo(self, handle):
        gpu = self._gpu(handle, "nvmlDeviceGetMemoryInfo")
        return _Struct(total=gpu.memory_total, used=gpu.memory_used, free=gpu.memory_total - gpu.memory_used)

    def nvmlDeviceGetCudaComputeCapability(self, handle):
        return tuple(self._gpu(handle, "nvmlDeviceGetCudaComputeCapability").cc)

    def nvmlDeviceGetPersistenceMode(self, handle):
        return self._gpu(handle, "nvmlDeviceGetPersistenceMode").persistence

    def nvmlDeviceGetComputeMode(self, handle):
        return self._gpu(handle, "nvmlDeviceGetComputeMode").compute_mode

    def nvmlDeviceGetMigMode(self, handle):
        return list(self._gpu(handle, "nvmlDeviceGetMigMode").mig)

    def nvmlDeviceGetEccMode(self, handle):
        return list(self._gpu(handle, "nvmlDeviceGetEccMode").ecc)

    def nvmlDeviceGetTemperature(self, handle, sensor):
        return self._gpu(handle, "nvmlDeviceGetTemperature").temperature

    def nvmlDeviceGetPowerUsage(self, handle):
        return self._gpu(handle, "nvmlDeviceGetPowerUsage").power_usage

    def nvmlDeviceGetPowerManagementLimit(self, handle):
        return self._gpu(handle, "nvmlDeviceGetPowerManagementLimit").power_limit

    def nvmlDeviceGetPowerManagementDefaultLimit(self, handle):
        return self._gpu(handle, "nvmlDeviceGetPowerManagementDefaultLimit").power_default

    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle):
        return list(self._gpu(handle, "nvmlDeviceGetPowerManagementLimitConstraints").power_constraints)

    def nvmlDeviceGetClockInfo(self, handle, clock):
        return self._gpu(handle, "nvmlDeviceGetClockInfo").clocks[clock]

    def nvmlDeviceGetApplicationsClock(self, handle, clock):
        gpu = self._gpu(handle, "nvmlDeviceGetApplicationsClock")
        return gpu.app_clocks[clock]

    def nvmlDeviceGetDefaultApplicationsClock(self, handle, clock):
        return self._gpu(handle, "nvmlDeviceGetDefaultApplicationsClock").default_app_clocks[clock]

    def nvmlDeviceGetMaxClockInfo(self, handle, clock):
        return self._gpu(handle, "nvmlDeviceGetMaxClockInfo").max_clocks[clock]

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle):
        return self._gpu(handle, "nvmlDeviceGetCurrentClocksEventReasons").throttle

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle):
        return self._gpu(handle, "nvmlDeviceGetCurrentClocksThrottleReasons").throttle

    def nvmlDeviceGetCurrPcieLinkGeneration(self, handle):
        return self._gpu(handle, "nvmlDeviceGetCurrPcieLinkGeneration").pcie[0]

    def nvmlDeviceGetCurrPcieLinkWidth(self, handle):
        return self._gpu(handle, "nvmlDeviceGetCurrPcieLinkWidth").pcie[1]

    def nvmlDeviceGetMaxPcieLinkGeneration(self, handle):
        return self._gpu(handle, "nvmlDeviceGetMaxPcieLinkGeneration").pcie[2]

    def nvmlDeviceGetMaxPcieLinkWidth(self, handle):
        return self._gpu(handle, "nvmlDeviceGetMaxPcieLinkWidth").pcie[3]

    def _fabric(self, name, handle, ref):
        gpu = self._gpu(handle, name)
        info = ref._obj
        info.state = gpu.fabric_state
        info.status = NVML_SUCCESS
        info.cliqueId = gpu.fabric_clique if gpu.fabric_state != NVML_GPU_FABRIC_STATE_NOT_SUPPORTED else 0
        if gpu.fabric_state == NVML_GPU_FABRIC_STATE_COMPLETED:
            for i, byte in enumerate(bytearray(b"\x5a" * 16)):
                info.clusterUuid[i] = byte
        return NVML_SUCCESS

    def nvmlDeviceGetGpuFabricInfoV(self, handle, ref):
        return self._fabric("nvmlDeviceGetGpuFabricInfoV", handle, ref)

    def nvmlDeviceGetGpuFabricInfo(self, handle, ref):
        return self._fabric("nvmlDeviceGetGpuFabricInfo", handle, ref)

    def nvmlDeviceGetSupportedMemoryClocks(self, handle):
        return sorted(self._gpu(handle, "nvmlDeviceGetSupportedMemoryClocks").supported, reverse=True)

    def nvmlDeviceGetSupportedGraphicsClocks(self, handle, memory):
        gpu = self._gpu(handle, "nvmlDeviceGetSupportedGraphicsClocks")
        if memory not in gpu.supported:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return list(gpu.supported[memory])

    # -- setters -------------------------------------------------------------------------
    def nvmlDeviceSetPersistenceMode(self, handle, mode):
        self._set(handle, "nvmlDeviceSetPersistenceMode", mode).persistence = mode

    def nvmlDeviceSetComputeMode(self, handle, mode):
        self._set(handle, "nvmlDeviceSetComputeMode", mode).compute_mode = mode

    def nvmlDeviceSetPowerManagementLimit(self, handle, milliwatts):
        gpu = self._set(handle, "nvmlDeviceSetPowerManagementLimit", milliwatts)
        if not gpu.power_constraints[0] <= milliwatts <= gpu.power_constraints[1]:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        gpu.power_limit = milliwatts

    def nvmlDeviceSetApplicationsClocks(self, handle, memory, graphics):
        gpu = self._set(handle, "nvmlDeviceSetApplicationsClocks", memory, graphics)
        if graphics not in gpu.supported.get(memory, []):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        gpu.app_clocks = {NVML_CLOCK_MEM: memory, NVML_CLOCK_GRAPHICS: graphics}

    def nvmlDeviceResetApplicationsClocks(self, handle):
        gpu = self._set(handle, "nvmlDeviceResetApplicationsClocks")
        gpu.app_clocks = dict(gpu.default_app_clocks)

    def nvmlDeviceSetGpuLockedClocks(self, handle, low, high):
        self._set(handle, "nvmlDeviceSetGpuLockedClocks", low, high).locked = (low, high)

    def nvmlDeviceResetGpuLockedClocks(self, handle):
        self._set(handle, "nvmlDeviceResetGpuLockedClocks").locked = None


# -- scenarios ---------------------------------------------------------------------------------

def _uuid(serial):
    return "GPU-%08x-0b7e-4f43-9b5e-2e64a8c1%04x" % (0x6f1c2e1a + serial, serial)


def h200(index, bus=None):
    bus = bus if bus is not None else (0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb)[index % 8]
    return FakeGpu(uuid=_uuid(index), bus_id="00000000:%02X:00.0" % bus)


def hgx_h200(count=8):
    """Healthy 8 x H200 SXM HGX board with NVSwitch fabric registered."""
    return FakeNvml([h200(i) for i in range(count)])


def h100_pcie(index=0):
    return FakeGpu(name="NVIDIA H100 PCIe", uuid=_uuid(100 + index), bus_id="00000000:%02X:00.0" % (0x17 + index),
                   memory_total=81559 * MIB, power_limit=350000, power_default=350000,
                   power_constraints=(200000, 350000), max_clocks={0: 1755, 1: 1755, 2: 1593},
                   default_app_clocks={0: 1755, 2: 1593}, app_clocks={0: 1755, 2: 1593},
                   supported={1593: list(range(1755, 344, -15))}, fabric_state=NVML_GPU_FABRIC_STATE_NOT_SUPPORTED,
                   pcie=(5, 16, 5, 16))


def l40s(index=1):
    return FakeGpu(name="NVIDIA L40S", uuid=_uuid(200 + index), bus_id="00000000:%02X:00.0" % (0x31 + index),
                   memory_total=46068 * MIB, cc=(8, 9), ecc=(1, 1), power_limit=350000, power_default=350000,
                   power_constraints=(100000, 350000), max_clocks={0: 2520, 1: 2520, 2: 9001},
                   default_app_clocks={0: 2520, 2: 9001}, app_clocks={0: 2520, 2: 9001},
                   supported={9001: list(range(2520, 209, -15)), 5001: list(range(2520, 209, -15)), 810: [810, 210]},
                   fabric_state=NVML_GPU_FABRIC_STATE_NOT_SUPPORTED, unsupported={"nvmlDeviceGetMigMode"},
                   pcie=(4, 16, 4, 16))


def pcie_l40s(count=2):
    """The example inventory's PCIe node: 2 x L40S 48GB, no NVSwitch."""
    return FakeNvml([l40s(i) for i in range(count)], driver="570.133.20", cuda=12080, nvml_version="12.570.133.20")


def h100_sxm(index, bus=None):
    bus = bus if bus is not None else (0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb)[index % 8]
    return FakeGpu(name="NVIDIA H100 80GB HBM3", uuid=_uuid(600 + index), bus_id="00000000:%02X:00.0" % bus,
                   memory_total=81559 * MIB, max_clocks={0: 1980, 1: 1980, 2: 2619},
                   default_app_clocks={0: 1755, 2: 2619}, app_clocks={0: 1755, 2: 2619},
                   supported={2619: list(range(1980, 344, -15))})


def hgx_h100(count=8):
    """8 x H100 80GB SXM5 HGX board with NVSwitch fabric registered."""
    return FakeNvml([h100_sxm(i) for i in range(count)])


def t4(index=2):
    return FakeGpu(name="Tesla T4", uuid=_uuid(300 + index), bus_id="00000000:%02X:00.0" % (0x3b + index),
                   memory_total=15360 * MIB, memory_used=3 * MIB, cc=(7, 5), power_limit=70000, power_default=70000,
                   power_constraints=(60000, 70000), max_clocks={0: 1590, 1: 1590, 2: 5001},
                   default_app_clocks={0: 585, 2: 5001}, app_clocks={0: 585, 2: 5001},
                   supported={5001: list(range(1590, 584, -15)), 405: [405]},
                   fabric_state=NVML_GPU_FABRIC_STATE_NOT_SUPPORTED,
                   unsupported={"nvmlDeviceGetMigMode", "nvmlDeviceGetGpuFabricInfoV", "nvmlDeviceGetGpuFabricInfo"},
                   pcie=(3, 16, 3, 16))


def mixed():
    """H100 PCIe + L40S + T4 in one host, no NVSwitch."""
    return FakeNvml([h100_pcie(0), l40s(1), t4(2)], driver="550.127.05", cuda=12040, nvml_version="12.550.127.05")


GEFORCE_NOT_SUPPORTED = {
    "nvmlDeviceGetApplicationsClock", "nvmlDeviceGetDefaultApplicationsClock", "nvmlDeviceGetSupportedMemoryClocks",
    "nvmlDeviceGetSupportedGraphicsClocks", "nvmlDeviceSetApplicationsClocks", "nvmlDeviceResetApplicationsClocks",
    "nvmlDeviceGetEccMode", "nvmlDeviceGetMigMode", "nvmlDeviceGetGpuFabricInfoV", "nvmlDeviceGetGpuFabricInfo",
    "nvmlDeviceSetComputeMode", "nvmlDeviceGetComputeMode",
}


def geforce():
    """RTX 4090: 'not supported' for application clocks, ECC, MIG, fabric and compute mode."""
    gpu = FakeGpu(name="NVIDIA GeForce RTX 4090", uuid=_uuid(400), bus_id="00000000:01:00.0",
                  memory_total=24564 * MIB, memory_used=1100 * MIB, cc=(8, 9), persistence=NVML_FEATURE_DISABLED,
                  power_limit=450000, power_default=450000, power_constraints=(150000, 600000),
                  max_clocks={0: 3120, 1: 3120, 2: 10501}, throttle=0x4 | 0x1,
                  pcie=(4, 16, 4, 16), unsupported=set(GEFORCE_NOT_SUPPORTED))
    return FakeNvml([gpu], driver="570.133.07", cuda=12080, nvml_version="12.570.133.07")


def a100(index, **fields):
    base = dict(name="NVIDIA A100-SXM4-80GB", uuid=_uuid(500 + index), bus_id="00000000:%02X:00.0" % (0x07 + 0x10 * index),
                memory_total=81920 * MIB, cc=(8, 0), power_limit=400000, power_default=400000,
                power_constraints=(100000, 400000), max_clocks={0: 1410, 1: 1410, 2: 1593},
                default_app_clocks={0: 1275, 2: 1593}, app_clocks={0: 1275, 2: 1593},
                supported={1593: list(range(1410, 209, -15))}, fabric_state=NVML_GPU_FABRIC_STATE_NOT_SUPPORTED,
                pcie=(4, 16, 4, 16))
    base.update(fields)
    return FakeGpu(**base)


def mig_enabled():
    """A100 80GB with MIG mode on (current and pending), one without."""
    return FakeNvml([a100(0, mig=(1, 1)), a100(1)], driver="535.230.02", cuda=12020, nvml_version="12.535.230.02")


def driver_not_loaded():
    return FakeNvml([], init_error=NVML_ERROR_DRIVER_NOT_LOADED)


def library_missing():
    return FakeNvml([], init_error=NVML_ERROR_LIBRARY_NOT_FOUND)


def error_halfway():
    """Four A100s; GPU 2 falls off the bus while being queried."""
    gpus = [a100(i) for i in range(4)]
    gpus[2].errors["nvmlDeviceGetMemoryInfo"] = NVML_ERROR_GPU_IS_LOST
    return FakeNvml(gpus, driver="535.230.02", cuda=12020, nvml_version="12.535.230.02")


def copy_scenario(fake):
    return copy.deepcopy(fake)


# -- sysfs / procfs ------------------------------------------------------------------------------

def write_sysfs(root, devices):
    """Write /sys/bus/pci/devices/<bus>/{vendor,device,class,...} for (bus_id, vendor, device, class,
    driver) tuples; driver None leaves no driver link. Returns the sysfs root."""
    base = os.path.join(str(root), "sys")
    pci = os.path.join(base, "bus", "pci", "devices")
    drivers = os.path.join(base, "bus", "pci", "drivers")
    os.makedirs(pci)
    for bus_id, vendor, device, klass, driver in devices:
        path = os.path.join(pci, bus_id)
        os.makedirs(path)
        for name, value in (("vendor", vendor), ("device", device), ("class", klass),
                            ("subsystem_vendor", vendor), ("subsystem_device", "0x18be"), ("numa_node", "0")):
            with open(os.path.join(path, name), "w") as handle:
                handle.write(value + "\n")
        if driver:
            target = os.path.join(drivers, driver)
            if not os.path.isdir(target):
                os.makedirs(target)
            os.symlink(target, os.path.join(path, "driver"))
    return base


def hgx_sysfs(root, driver="nvidia"):
    """8 H200 (3D controller), 4 NVSwitches (bridge 0x0680), an Intel NIC and host bridge."""
    devices = [("0000:00:00.0", "0x8086", "0x09a2", "0x060000", None),
               ("0000:19:00.0", "0x15b3", "0x1021", "0x020000", "mlx5_core")]
    for i, bus in enumerate((0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb)):
        devices.append(("0000:%02x:00.0" % bus, "0x10de", "0x2335", "0x030200", driver))
    for bus in (0x05, 0x06, 0x07, 0x08):
        devices.append(("0000:%02x:00.0" % bus, "0x10de", "0x22a3", "0x068000", driver and "nvidia-nvswitch"))
    return write_sysfs(root, devices)


def geforce_sysfs(root, driver="nvidia"):
    """One RTX 4090 with its HDMI audio function."""
    return write_sysfs(root, [("0000:01:00.0", "0x10de", "0x2684", "0x030000", driver),
                              ("0000:01:00.1", "0x10de", "0x22ba", "0x040300", "snd_hda_intel")])


# PCI device ids (pci.ids / NVIDIA's README) of boards the tests put on a bare host's bus.
PCI_DEVICE_IDS = {"t4": "0x1eb8", "l4": "0x27b8", "l40s": "0x26b9", "h100_sxm": "0x2330", "h200": "0x2335"}


def bare_sysfs(root, boards):
    """A server before the driver: the GPUs (names of PCI_DEVICE_IDS, or raw device ids) on the
    PCI bus as 3D controllers with no driver bound."""
    devices = [("0000:00:00.0", "0x8086", "0x09a2", "0x060000", None)]
    for i, board in enumerate(boards):
        devices.append(("0000:%02x:00.0" % (0x18 + 0x10 * i), "0x10de", PCI_DEVICE_IDS.get(board, board),
                        "0x030200", None))
    return write_sysfs(root, devices)


def empty_sysfs(root):
    return write_sysfs(root, [("0000:00:00.0", "0x8086", "0x09a2", "0x060000", None)])


def write_nvswitch_proc(root, bus_ids):
    base = os.path.join(str(root), "proc")
    path = os.path.join(base, "driver", "nvidia-nvswitch", "devices")
    os.makedirs(path)
    for bus_id in bus_ids:
        os.makedirs(os.path.join(path, bus_id))
    return base
