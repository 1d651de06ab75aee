# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""NVIDIA GPUs by PCI device id: name, memory and compute capability, known without a driver.

Before the NVIDIA driver is installed NVML cannot answer, but the sysfs PCI scan in gpu_facts
(pci_devices: vendor_id, device_id, subsystem ids) already names the GPUs. This table lets the
first preflight refuse a plan that cannot fit or whose format the GPU cannot run, before the
driver role changes anything. Pure data and lookups; Python 3.9+, standard library only.

Sources, each entry checked against both where both list it:
  * The PCI ID Repository, pci.ids version 2026.08.22 (github.com/pciutils/pciids, snapshot
    commit c1c12547, 2026-08-22): device id -> chip and board name (vendor 10de).
  * NVIDIA open GPU kernel modules README, "Compatible GPUs" table, release 595.45.04
    (github.com/NVIDIA/open-gpu-kernel-modules, 2026-03-05): device id and subsystem id ->
    NVIDIA's product name, for Turing and newer. Volta (V100) is not in it (the open modules
    start at Turing); the V100 ids come from pci.ids alone.
  * Compute capability: developer.nvidia.com/cuda-gpus (B200 10.0; H100/H200 9.0; L4, L40,
    L40S, RTX 6000 Ada, RTX 4090 8.9; A40, A10, A16, A2, RTX 3090 8.6; A100, A30 8.0; T4 7.5)
    and developer.nvidia.com/cuda-legacy-gpus (V100 7.0). H20 is a GH100 (pci.ids), so 9.0.
  * Memory: NVIDIA's product data sheets (the size in each board's name where pci.ids or
    NVIDIA's README carries it). B200: 180 GB per GPU (DGX B200: 1,440 GB for 8 GPUs; MLCommons
    inference v6.0 system descriptions name it "B200-SXM-180GB").

memory_bytes is the data-sheet size read as GiB (80 GB HBM3 is 80 x 2^30 bytes of DRAM). NVML
later reports a little less (ECC and the driver's reservation: an H200 shows 143771 MiB of
144384, an L40S with ECC on 46068 of 49152, a T4 15360 of 16384), so this figure is an upper
bound of the memory the engine will see: a plan refused against it is certainly refused by
the NVML check that runs again once the driver is loaded, and a plan that passes is checked
again there.

One device id covers boards of one memory size for every entry below; where NVIDIA names
boards apart by subsystem id (A2 / A16), SUBSYSTEM_NAMES refines the name. Boards whose
memory could not be confirmed from these sources are left out and reported as unknown.
"""

from __future__ import annotations

GIB = 1024 ** 3
NVIDIA_VENDOR_ID = "10de"
SOURCE = "pci_ids"


def _gpu(name, memory_gib, compute_capability):
    return {"name": name, "memory_bytes": memory_gib * GIB, "memory_gib": memory_gib,
            "compute_capability": compute_capability}


# PCI device id (vendor 10de, lower-case hex without 0x) -> board.
PCI_GPUS = {
    # Blackwell
    "2901": _gpu("B200", 180, "10.0"),                 # NVIDIA README: B200 (subsystems 1999, 199B, 20DA)
    # Hopper (GH100)
    "2335": _gpu("H200 SXM 141GB", 141, "9.0"),        # pci.ids "H200 SXM 141GB"; NVIDIA README "NVIDIA H200"
    "233b": _gpu("H200 NVL", 141, "9.0"),              # pci.ids and NVIDIA README "H200 NVL"
    "2330": _gpu("H100 SXM5 80GB", 80, "9.0"),         # pci.ids "H100 SXM5 80GB"; NVIDIA "H100 80GB HBM3"
    "2331": _gpu("H100 PCIe 80GB", 80, "9.0"),         # pci.ids and NVIDIA README "H100 PCIe"
    "2321": _gpu("H100 NVL 94GB", 94, "9.0"),          # NVIDIA README "H100 NVL"; pci.ids "H100L 94GB"
    "2329": _gpu("H20", 96, "9.0"),                    # pci.ids and NVIDIA README "H20"
    # Ada Lovelace (AD102 / AD104)
    "26b9": _gpu("L40S", 48, "8.9"),
    "26b5": _gpu("L40", 48, "8.9"),
    "27b8": _gpu("L4", 24, "8.9"),
    "26b1": _gpu("RTX 6000 Ada Generation", 48, "8.9"),
    "2684": _gpu("GeForce RTX 4090", 24, "8.9"),
    # Ampere (GA100 / GA102 / GA107)
    "20b0": _gpu("A100 SXM4 40GB", 40, "8.0"),
    "20b2": _gpu("A100 SXM4 80GB", 80, "8.0"),
    "20b1": _gpu("A100 PCIe 40GB", 40, "8.0"),         # pci.ids only
    "20f1": _gpu("A100 PCIe 40GB", 40, "8.0"),         # pci.ids and NVIDIA README "A100-PCIE-40GB"
    "20b5": _gpu("A100 PCIe 80GB", 80, "8.0"),
    "20b7": _gpu("A30", 24, "8.0"),
    "2235": _gpu("A40", 48, "8.6"),
    "2236": _gpu("A10", 24, "8.6"),
    "25b6": _gpu("A16 / A2", 16, "8.6"),               # A16: four 16 GB GPUs per board, one PCI function each
    "2204": _gpu("GeForce RTX 3090", 24, "8.6"),
    # Turing (TU104)
    "1eb8": _gpu("T4", 16, "7.5"),
    # Volta (GV100GL), pci.ids only
    "1db1": _gpu("V100 SXM2 16GB", 16, "7.0"),
    "1df5": _gpu("V100 SXM2 16GB", 16, "7.0"),
    "1db4": _gpu("V100 PCIe 16GB", 16, "7.0"),
    "1db5": _gpu("V100 SXM2 32GB", 32, "7.0"),
    "1db6": _gpu("V100 PCIe 32GB", 32, "7.0"),
    "1df6": _gpu("V100S PCIe 32GB", 32, "7.0"),
}

# (device id, subsystem vendor id, subsystem device id) -> board name, where NVIDIA's README
# tells boards of one device id apart. Memory and compute capability stay the device's.
SUBSYSTEM_NAMES = {
    ("25b6", "10de", "14a9"): "A16",
    ("25b6", "10de", "157e"): "A2",
}


def normalize_id(value):
    """'2335' for '0x2335', '0X2335', '2335' or the int 0x2335; None for anything else."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        text = "%04x" % value
    else:
        text = str(value).strip().lower()
        if text.startswith("0x"):
            text = text[2:]
    if len(text) != 4 or any(ch not in "0123456789abcdef" for ch in text):
        return None
    return text


def lookup(device_id, subsystem_vendor_id=None, subsystem_device_id=None, vendor_id=NVIDIA_VENDOR_ID):
    """The board for a PCI id as {device_id, name, memory_bytes, memory_gib, compute_capability,
    source}, or None when the id is not NVIDIA's or not in the table."""
    if normalize_id(vendor_id) != NVIDIA_VENDOR_ID:
        return None
    device = normalize_id(device_id)
    entry = PCI_GPUS.get(device)
    if entry is None:
        return None
    board = dict(entry)
    name = SUBSYSTEM_NAMES.get((device, normalize_id(subsystem_vendor_id), normalize_id(subsystem_device_id)))
    if name:
        board["name"] = name
    board["device_id"] = "0x" + device
    board["source"] = SOURCE
    return board


def identify_pci_gpus(pci_devices):
    """GPUs of a sysfs PCI scan (gpu_facts' pci_devices), in PCI bus order, which is the order
    NVML numbers them in: list of {index, bus_id, device_id, subsystem, known, name,
    memory_total, memory_free (None: unknown before the driver), compute_capability, source}.
    Functions that are not GPUs (audio, NVSwitch, USB) are left out."""
    gpus = []
    functions = [d for d in pci_devices or [] if d.get("kind") == "gpu"]
    for index, device in enumerate(sorted(functions, key=lambda d: d.get("bus_id") or "")):
        board = lookup(device.get("device_id"), device.get("subsystem_vendor_id"),
                       device.get("subsystem_device_id"), device.get("vendor_id") or NVIDIA_VENDOR_ID)
        gpu = {
            "index": index,
            "bus_id": device.get("bus_id"),
            "device_id": device.get("device_id"),
            "subsystem": "%s:%s" % (device.get("subsystem_vendor_id"), device.get("subsystem_device_id")),
            "known": board is not None,
            "name": board["name"] if board else None,
            "memory_total": board["memory_bytes"] if board else None,
            "memory_free": None,
            "compute_capability": board["compute_capability"] if board else None,
            "source": SOURCE,
        }
        gpus.append(gpu)
    return gpus
