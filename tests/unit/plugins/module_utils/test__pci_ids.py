# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The PCI id table: entries against their sources (pci.ids 2026.08.22, NVIDIA's open kernel
module README 595.45.04, developer.nvidia.com/cuda-gpus), lookups and the sysfs scan."""

from __future__ import annotations

import tempfile

import pytest

import fake_pynvml as fake
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _gpu_tables as tables
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _nvml as n
from ansible_collections.llmops.gpu_stack.plugins.module_utils import _pci_ids as ids

GIB = 1024 ** 3
MIB = 1024 ** 2


@pytest.mark.parametrize("device, name, gib, cc", [
    ("0x2335", "H200 SXM 141GB", 141, "9.0"),
    ("0x233b", "H200 NVL", 141, "9.0"),
    ("0x2330", "H100 SXM5 80GB", 80, "9.0"),
    ("0x2331", "H100 PCIe 80GB", 80, "9.0"),
    ("0x2321", "H100 NVL 94GB", 94, "9.0"),
    ("0x2329", "H20", 96, "9.0"),
    ("0x26b9", "L40S", 48, "8.9"),
    ("0x26b5", "L40", 48, "8.9"),
    ("0x27b8", "L4", 24, "8.9"),
    ("0x26b1", "RTX 6000 Ada Generation", 48, "8.9"),
    ("0x2684", "GeForce RTX 4090", 24, "8.9"),
    ("0x20b0", "A100 SXM4 40GB", 40, "8.0"),
    ("0x20b2", "A100 SXM4 80GB", 80, "8.0"),
    ("0x20b1", "A100 PCIe 40GB", 40, "8.0"),
    ("0x20f1", "A100 PCIe 40GB", 40, "8.0"),
    ("0x20b5", "A100 PCIe 80GB", 80, "8.0"),
    ("0x20b7", "A30", 24, "8.0"),
    ("0x2235", "A40", 48, "8.6"),
    ("0x2236", "A10", 24, "8.6"),
    ("0x25b6", "A16 / A2", 16, "8.6"),
    ("0x2204", "GeForce RTX 3090", 24, "8.6"),
    ("0x1eb8", "T4", 16, "7.5"),
    ("0x1db1", "V100 SXM2 16GB", 16, "7.0"),
    ("0x1db4", "V100 PCIe 16GB", 16, "7.0"),
    ("0x1db5", "V100 SXM2 32GB", 32, "7.0"),
    ("0x1db6", "V100 PCIe 32GB", 32, "7.0"),
    ("0x1df6", "V100S PCIe 32GB", 32, "7.0"),
    ("0x2901", "B200", 180, "10.0"),
])
def test_boards(device, name, gib, cc):
    board = ids.lookup(device)
    assert (board["name"], board["memory_bytes"], board["compute_capability"]) == (name, gib * GIB, cc)
    assert board["device_id"] == device and board["source"] == "pci_ids"


def test_every_entry_is_consistent():
    for device, entry in ids.PCI_GPUS.items():
        assert ids.normalize_id(device) == device
        assert entry["memory_bytes"] == entry["memory_gib"] * GIB and entry["memory_gib"] >= 16
        assert tables.architecture_for_cc(entry["compute_capability"]) != "unknown"
    # The table's compute capabilities agree with the collection's examples (FACTS.md).
    for board, cc in (("2335", "H200"), ("2330", "H100"), ("26b9", "L40S"), ("2684", "RTX 4090"), ("2236", "A10"),
                      ("2204", "RTX 3090"), ("20b2", "A100"), ("1eb8", "T4"), ("1db5", "V100")):
        assert ids.PCI_GPUS[board]["compute_capability"] == tables.GPU_COMPUTE_CAPABILITY[cc]


@pytest.mark.parametrize("device, nvml_total_mib", [
    ("0x2335", 143771),     # H200 (docs/hardware-checks.md: a real H200)
    ("0x2330", 81559),      # H100 80GB
    ("0x2331", 81559),      # H100 PCIe
    ("0x26b9", 46068),      # L40S, ECC on
    ("0x1eb8", 15360),      # T4, ECC on
    ("0x20b2", 81920),      # A100 80GB
    ("0x2684", 24564),      # RTX 4090
])
def test_table_memory_is_an_upper_bound_of_what_nvml_reports(device, nvml_total_mib):
    # The first preflight refuses against the table; NVML's figure later must not be larger,
    # or a plan refused before the driver could have fitted.
    assert ids.lookup(device)["memory_bytes"] >= nvml_total_mib * MIB


@pytest.mark.parametrize("value, expected", [
    ("0x2335", "2335"), ("0X26B9", "26b9"), ("1eb8", "1eb8"), (0x27b8, "27b8"), (" 0x2330 ", "2330"),
    (None, None), (True, None), ("0x12345", None), ("zz12", None), ("", None),
])
def test_normalize_id(value, expected):
    assert ids.normalize_id(value) == expected


def test_lookup_misses():
    assert ids.lookup("0x1234") is None
    assert ids.lookup(None) is None
    assert ids.lookup("0x2335", vendor_id="0x8086") is None       # same number, another vendor
    assert ids.lookup("0x2335", vendor_id="0x10de")["name"] == "H200 SXM 141GB"


def test_subsystem_names_boards_apart():
    assert ids.lookup("0x25b6", "0x10de", "0x14a9")["name"] == "A16"
    assert ids.lookup("0x25b6", "0x10de", "0x157e")["name"] == "A2"
    assert ids.lookup("0x25b6", "0x10de", "0x0000")["name"] == "A16 / A2"
    assert ids.lookup("0x25b6", "0x10de", "0x157e")["memory_bytes"] == 16 * GIB


def test_identify_pci_gpus_from_a_sysfs_scan(tmp_path):
    root = tempfile.mkdtemp(dir=str(tmp_path))
    devices = n.scan_pci_devices(fake.hgx_sysfs(root, driver=None))
    gpus = ids.identify_pci_gpus(devices)
    # 8 H200 in bus order; the 4 NVSwitches, the NIC and the host bridge are left out
    assert [g["index"] for g in gpus] == list(range(8))
    assert [g["bus_id"] for g in gpus][:2] == ["0000:18:00.0", "0000:2a:00.0"]
    assert all(g["known"] and g["name"] == "H200 SXM 141GB" and g["compute_capability"] == "9.0" for g in gpus)
    assert gpus[0]["memory_total"] == 141 * GIB and gpus[0]["memory_free"] is None
    assert gpus[0]["source"] == "pci_ids"


def test_identify_pci_gpus_flags_unknown_ids_and_sorts_by_bus():
    devices = [{"bus_id": "0000:41:00.0", "kind": "gpu", "device_id": "0x1234", "vendor_id": "0x10de"},
               {"bus_id": "0000:01:00.1", "kind": "audio", "device_id": "0x22ba", "vendor_id": "0x10de"},
               {"bus_id": "0000:01:00.0", "kind": "gpu", "device_id": "0x1eb8", "vendor_id": "0x10de"}]
    gpus = ids.identify_pci_gpus(devices)
    assert [(g["index"], g["bus_id"], g["known"]) for g in gpus] == [
        (0, "0000:01:00.0", True), (1, "0000:41:00.0", False)]
    assert gpus[0]["name"] == "T4" and gpus[1]["name"] is None and gpus[1]["memory_total"] is None
    assert ids.identify_pci_gpus(None) == []
