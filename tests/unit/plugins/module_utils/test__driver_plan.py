# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _driver_plan as p


def pci_facts(*device_ids, nvswitch=False, status="driver_not_loaded"):
    devices = [{"bus_id": "0000:%02x:00.0" % (0x18 + i), "device_id": d, "kind": "gpu"}
               for i, d in enumerate(device_ids)]
    if nvswitch:
        devices.append({"bus_id": "0000:05:00.0", "device_id": "0x22a3", "kind": "nvswitch"})
    return {"status": status, "pci_devices": devices, "gpus": [], "nvswitch_present": nvswitch}


def nvml_facts(*gpus):
    return {"status": "ok", "pci_devices": [], "nvswitch_present": False,
            "gpus": [{"index": i, "name": name, "pci_bus_id": "00000000:%02X:00.0" % i, "compute_capability": cc}
                     for i, (name, cc) in enumerate(gpus)]}


@pytest.mark.parametrize("device_id, chip, generation", [
    ("0x2335", "GH100", "Hopper"),          # H200
    ("0x2330", "GH100", "Hopper"),          # H100 SXM
    ("0x2342", "GH100 (Grace Hopper)", "Grace Hopper"),  # GH200
    ("0x20b0", "GA100", "Ampere"),          # A100
    ("0x26b9", "AD102", "Ada Lovelace"),    # L40S
    ("0x27b8", "AD104", "Ada Lovelace"),    # L4
    ("0x1eb8", "TU104", "Turing"),          # T4
    ("0x1db4", "GV100", "Volta"),           # V100
    ("0x2901", "GB100", "Blackwell"),       # B200
    ("0x2b85", "GB202", "Blackwell"),       # RTX 5090
    ("2204", "GA102", "Ampere"),            # RTX 3090, without 0x
    (0x2684, "AD102", "Ada Lovelace"),      # RTX 4090 as an int
    ("0x1b80", "GP104", "Pascal"),
    ("0x1021", "GK10x", "Kepler"),
    ("0x0001", "unknown", "unknown"),
])
def test_generation_for_device_id(device_id, chip, generation):
    assert p.generation_for_device_id(device_id) == (chip, generation)


@pytest.mark.parametrize("bad", [None, True, "zz", ""])
def test_bad_device_id(bad):
    with pytest.raises(ValueError):
        p.parse_device_id(bad)


def test_describe_prefers_nvml_when_it_answered():
    gpus = p.describe_gpus(nvml_facts(("NVIDIA H200", "9.0"), ("NVIDIA GH200 480GB", "9.0")))
    assert [g["generation"] for g in gpus] == ["Hopper", "Grace Hopper"]
    assert {g["source"] for g in gpus} == {"nvml"}


def test_describe_falls_back_to_pci_and_skips_other_functions():
    facts = pci_facts("0x2335", nvswitch=True)
    facts["pci_devices"].append({"bus_id": "0000:18:00.1", "device_id": "0x22ba", "kind": "audio"})
    gpus = p.describe_gpus(facts)
    assert [(g["generation"], g["source"]) for g in gpus] == [("Hopper", "pci")]


@pytest.mark.parametrize("facts, version, requested, flavour, reason_part", [
    (pci_facts(), "535.261.03", "auto", "proprietary", "default of branch 535"),
    (pci_facts(), "580.65.06", "auto", "open", "no GPU on this host"),
    (pci_facts("0x2335"), "535.261.03", "auto", "proprietary", "default of branch 535"),
    (pci_facts("0x2335"), "570.133.20", "auto", "open", "every GPU supports them"),
    (pci_facts("0x2901"), "570.133.20", "auto", "open", "required by"),
    (pci_facts("0x2342"), "550.163.01", "auto", "open", "required by"),
    (pci_facts("0x1db4"), "570.133.20", "auto", "proprietary", "cannot use the open ones"),
    (pci_facts("0x2335"), "535.261.03", "open", "open", "as requested"),
    (pci_facts("0x20b0"), "580.65.06", "proprietary", "proprietary", "as requested"),
    (nvml_facts(("Tesla V100-SXM2-32GB", "7.0")), "580.65.06", "auto", "proprietary", "Volta"),
])
def test_flavour_choice(facts, version, requested, flavour, reason_part):
    plan = p.make_plan(facts, version, requested)
    assert plan["kernel_modules"] == flavour
    assert reason_part in plan["reason"]


@pytest.mark.parametrize("facts, version, requested, message_part", [
    (pci_facts("0x1db4"), "570.133.20", "open", "Turing and newer GPUs only"),
    (pci_facts("0x2901"), "570.133.20", "proprietary", "support only the open kernel modules"),
    (pci_facts("0x2901", "0x1db4"), "570.133.20", "auto", "One driver cannot serve both"),
    (pci_facts("0x2901"), "550.163.01", "auto", "needs driver branch 570 or newer"),
    (pci_facts("0x1db4"), "590.44.01", "auto", "supported up to driver branch 580"),
    (pci_facts("0x1021"), "535.261.03", "auto", "supported up to driver branch 470"),
])
def test_impossible_combinations_fail_with_the_fix(facts, version, requested, message_part):
    with pytest.raises(p.PlanError) as error:
        p.make_plan(facts, version, requested)
    assert message_part in str(error.value)
    assert "Fix" in str(error.value) or "different hosts" in str(error.value)


def test_fabric_manager_follows_nvswitch_presence():
    assert p.make_plan(pci_facts("0x2335", nvswitch=True), "535.261.03")["fabric_manager"] is True
    assert p.make_plan(pci_facts("0x2335"), "535.261.03")["fabric_manager"] is False
    assert p.make_plan({}, "535.261.03")["fabric_manager"] is False


def test_eol_branch_and_unknown_generation_warn():
    plan = p.make_plan(pci_facts("0x0001"), "550.163.01")
    assert plan["branch"] == 550 and plan["branch_status"]["supported"] is False
    assert any("end of life" in w for w in plan["warnings"])
    assert any("generation unknown" in w for w in plan["warnings"])
    assert p.make_plan(pci_facts(), "535.261.03")["warnings"] == []


@pytest.mark.parametrize("version", ["535", "abc", ""])
def test_bad_versions(version):
    with pytest.raises(ValueError):
        p.make_plan(pci_facts(), version)


def test_bad_request():
    with pytest.raises(p.PlanError):
        p.choose_flavour([], 535, "closed")
