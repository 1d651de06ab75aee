# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading NVIDIA CDI specifications: driver version, devices, staleness."""

from __future__ import annotations

import json

import pytest

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _cdi_spec_info as c

UUIDS = ["GPU-6f1c2e1a-0b7e-4f43-9b5e-2e64a8c10000", "GPU-6f1c2e1b-0b7e-4f43-9b5e-2e64a8c10001"]


def spec_yaml(driver="570.133.20", uuids=None, hook=True, names_by="index,uuid"):
    """A spec in the layout `nvidia-ctk cdi generate` writes (keys sorted, devices last but kind)."""
    uuids = UUIDS if uuids is None else uuids
    lines = ["---", "cdiVersion: 0.5.0", "containerEdits:", "  deviceNodes:", "  - path: /dev/nvidiactl",
             "  - path: /dev/nvidia-uvm", "  env:", "  - NVIDIA_VISIBLE_DEVICES=void", "  hooks:"]
    if hook:
        lines += ["  - args:", "    - nvidia-cdi-hook", "    - enable-cuda-compat",
                  "    - --host-driver-version=%s" % driver, "    hookName: createContainer",
                  "    path: /usr/bin/nvidia-cdi-hook"]
    lines += ["  - args:", "    - nvidia-cdi-hook", "    - create-symlinks", "    - --link",
              "    - libcuda.so.1::/usr/lib/x86_64-linux-gnu/libcuda.so", "    hookName: createContainer",
              "    path: /usr/bin/nvidia-cdi-hook", "  mounts:"]
    for lib in ("libcuda.so", "libnvidia-ml.so", "libnvidia-ptxjitcompiler.so"):
        path = "/usr/lib/x86_64-linux-gnu/%s.%s" % (lib, driver)
        lines += ["  - containerPath: %s" % path, "    hostPath: %s" % path, "    options:", "    - ro",
                  "    - nosuid", "    - nodev", "    - bind"]
    lines += ["  - containerPath: /lib/firmware/nvidia/%s/gsp_ga10x.bin" % driver,
              "    hostPath: /lib/firmware/nvidia/%s/gsp_ga10x.bin" % driver, "devices:"]
    names = []
    for index, uuid in enumerate(uuids):
        if "index" in names_by:
            names.append(('"%d"' % index, "/dev/nvidia%d" % index))
        if "uuid" in names_by:
            names.append((uuid, "/dev/nvidia%d" % index))
    names.append(("all", "/dev/nvidia0"))
    for name, node in names:
        lines += ["- containerEdits:", "    deviceNodes:", "    - path: %s" % node, "  name: %s" % name]
    lines += ["kind: nvidia.com/gpu", ""]
    return "\n".join(lines)


@pytest.fixture(params=["pyyaml", "line reader"])
def reader(request, monkeypatch):
    """Every YAML test runs with PyYAML and with the line reader used on hosts without it."""
    if request.param == "line reader":
        monkeypatch.setattr(c, "HAS_YAML", False)
    return request.param


def test_reads_driver_devices_and_kind(reader):
    spec = c.parse_spec(spec_yaml())
    assert spec["kind"] == "nvidia.com/gpu" and spec["cdi_version"] == "0.5.0"
    assert spec["device_names"] == ["0", UUIDS[0], "1", UUIDS[1], "all"]
    assert spec["gpu_uuids"] == sorted(UUIDS)
    assert spec["driver_versions"] == ["570.133.20"] and spec["driver_version"] == "570.133.20"


def test_driver_version_from_library_names_without_the_hook(reader):
    spec = c.parse_spec(spec_yaml(driver="535.261.03", hook=False))
    assert spec["driver_version"] == "535.261.03"


def test_json_spec():
    document = {"cdiVersion": "0.6.0", "kind": "nvidia.com/gpu",
                "containerEdits": {"mounts": [{"hostPath": "/usr/lib64/libnvidia-ml.so.580.65.06",
                                               "containerPath": "/usr/lib64/libnvidia-ml.so.580.65.06"}]},
                "devices": [{"name": "0", "containerEdits": {}}, {"name": "all", "containerEdits": {}}]}
    spec = c.parse_spec(json.dumps(document, indent=2))
    assert spec["driver_version"] == "580.65.06" and spec["device_names"] == ["0", "all"] and spec["cdi_version"] == "0.6.0"


def test_current_spec_is_not_stale(reader):
    spec = c.parse_spec(spec_yaml())
    assert c.assess(spec, "570.133.20", UUIDS) == []
    assert c.assess(spec, "570.133.20", [u.lower() for u in UUIDS]) == []


def test_driver_upgrade_makes_it_stale(reader):
    reasons = c.assess(c.parse_spec(spec_yaml(driver="550.127.05")), "570.133.20", UUIDS)
    assert reasons == ["the spec was generated for driver 550.127.05, the host runs driver 570.133.20"]


def test_replaced_gpu_makes_it_stale(reader):
    host = [UUIDS[0], "GPU-99999999-0b7e-4f43-9b5e-2e64a8c19999"]
    reasons = c.assess(c.parse_spec(spec_yaml()), "570.133.20", host)
    assert len(reasons) == 1 and "GPU-99999999" in reasons[0] and UUIDS[1].upper() in reasons[0]


def test_index_only_spec_compares_the_gpu_count(reader):
    spec = c.parse_spec(spec_yaml(names_by="index"))
    assert c.assess(spec, "570.133.20", UUIDS) == []
    assert c.assess(spec, "570.133.20", UUIDS + ["GPU-0"]) == ["the spec has 2 GPU index device(s), the host has 3 GPU(s)"]


def test_mixed_driver_versions_are_stale():
    text = spec_yaml().replace("libnvidia-ml.so.570.133.20", "libnvidia-ml.so.550.127.05")
    spec = c.parse_spec(text.replace("    - --host-driver-version=570.133.20\n", ""))
    assert spec["driver_version"] is None and spec["driver_versions"] == ["550.127.05", "570.133.20"]
    assert "generated for driver 550.127.05, 570.133.20" in c.assess(spec, "570.133.20")[0]


def test_wrong_kind_and_no_all_device(reader):
    text = spec_yaml().replace("kind: nvidia.com/gpu", "kind: example.com/fpga").replace("name: all", "name: every")
    reasons = c.assess(c.parse_spec(text), "570.133.20")
    assert "kind is 'example.com/fpga'" in reasons[0] and "no 'nvidia.com/gpu=all' device" in reasons[1]


def test_read_spec_missing_file(tmp_path):
    result = c.read_spec(str(tmp_path / "nvidia.yaml"), "570.133.20")
    assert result["exists"] is False and result["stale"] is True and "does not exist" in result["reasons"][0]


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ("cdiVersion: [unclosed\n", "not valid YAML"),
    ("- a\n- b\n", "is a list, not a CDI specification"),
])
def test_unreadable_specs(text, message):
    with pytest.raises(c.SpecError, match=message):
        c.parse_spec(text)
