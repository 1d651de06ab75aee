# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test only (molecule/gpu_plan): make a stand-in host present a real GPU server.

Runs on the stand-in as root: python3 fake_board.py BOARD STATE, with BOARD one of l40s, h100,
h200 and STATE one of
  loaded  the driver is in place: NVML (the unit tests' fake, through the pynvml shim beside
          fake_pynvml.py in the NVML bindings directory) answers with the board, and the PCI
          functions are bound to the nvidia (and nvidia-nvswitch) drivers;
  bare    a server before the driver: NVML says the driver is not loaded, and the same PCI
          functions sit on the bus with no driver bound.
The PCI functions are a fake sysfs tree (fake_pynvml.write_sysfs) bind-mounted over
/sys/bus/pci/devices, and /proc/meminfo shows the server's RAM: both mounts live in the
stand-in's own mount namespace and go with it. Prints "changed" or "unchanged".
"""

from __future__ import annotations

import os
import subprocess
import sys

BINDINGS = "/opt/gpu_stack/python"
BASE = "/var/lib/gpu-plan-fake"
PCI_DEVICES = "/sys/bus/pci/devices"
MEMINFO = "/proc/meminfo"
GIB_KB = 1024 * 1024

sys.path.insert(0, BINDINGS)
import fake_pynvml  # noqa: E402  (the unit tests' fake, which prepare.yml puts in the bindings directory)

GPU_BUSES = (0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb)   # fake_pynvml.h200() / h100_sxm()
NVSWITCH_BUSES = (0x05, 0x06, 0x07, 0x08)                      # four third-generation NVSwitches


def _hgx(gpu_device_id, driver):
    devices = [("0000:00:00.0", "0x8086", "0x09a2", "0x060000", None),
               ("0000:19:00.0", "0x15b3", "0x1021", "0x020000", "mlx5_core")]
    devices += [("0000:%02x:00.0" % bus, "0x10de", gpu_device_id, "0x030200", driver and "nvidia")
                for bus in GPU_BUSES]
    devices += [("0000:%02x:00.0" % bus, "0x10de", "0x22a3", "0x068000", driver and "nvidia-nvswitch")
                for bus in NVSWITCH_BUSES]
    return devices


def _pcie_l40s(driver):
    # fake_pynvml.l40s(i) sits at 00000000:31:00.0 and :32:00.0 in NVML.
    return [("0000:00:00.0", "0x8086", "0x09a2", "0x060000", None),
            ("0000:31:00.0", "0x10de", "0x26b9", "0x030200", driver and "nvidia"),
            ("0000:32:00.0", "0x10de", "0x26b9", "0x030200", driver and "nvidia")]


# board -> (fake_pynvml scenario with the driver loaded, PCI functions, the server's RAM in GiB)
BOARDS = {
    "l40s": ("pcie_l40s", _pcie_l40s, 512),
    "h100": ("hgx_h100", lambda driver: _hgx("0x2330", driver), 2048),   # H100 SXM5 80GB
    "h200": ("hgx_h200", lambda driver: _hgx("0x2335", driver), 2048),   # H200 SXM 141GB
}


def _write(path, text):
    """Write text to path; True when the content changed."""
    try:
        with open(path, "r", encoding="utf-8") as handle:
            if handle.read() == text:
                return False
    except OSError:
        pass
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return True


def _mounted_on(path):
    with open("/proc/self/mountinfo", "r", encoding="utf-8") as handle:
        return any(line.split()[4] == path for line in handle)


def _bind(source, target):
    """Bind-mount source over target unless it already is; True when it mounted."""
    wanted, current = os.stat(source), os.stat(target)
    if (wanted.st_dev, wanted.st_ino) == (current.st_dev, current.st_ino):
        return False
    while _mounted_on(target):
        subprocess.run(["umount", target], check=True)
    subprocess.run(["mount", "--bind", source, target], check=True)
    return True


def _meminfo(ram_gib):
    """/proc/meminfo as on the server: the real file with its RAM figures replaced."""
    ram_kb = ram_gib * GIB_KB
    lines = []
    with open(MEMINFO, "r", encoding="utf-8") as handle:
        for line in handle:
            key = line.split(":", 1)[0]
            if key == "MemTotal":
                line = "MemTotal:       %d kB\n" % ram_kb
            elif key in ("MemFree", "MemAvailable"):
                line = "%s:%s%d kB\n" % (key, " " * (15 - len(key)), ram_kb - 16 * GIB_KB)
            lines.append(line)
    return "".join(lines)


def present(board, state):
    scenario, functions, ram_gib = BOARDS[board]
    changed = False
    tree = os.path.join(BASE, state)
    if not os.path.isdir(tree):
        fake_pynvml.write_sysfs(tree, functions(state == "loaded"))
        changed = True
    changed |= _write(os.path.join(BASE, "nvml"), (scenario if state == "loaded" else "driver_not_loaded") + "\n")
    meminfo = os.path.join(BASE, "meminfo")
    if not os.path.exists(meminfo):
        _write(meminfo, _meminfo(ram_gib))
        changed = True
    changed |= _bind(os.path.join(tree, "sys", "bus", "pci", "devices"), PCI_DEVICES)
    changed |= _bind(meminfo, MEMINFO)
    return changed


def main(argv):
    if len(argv) != 3 or argv[1] not in BOARDS or argv[2] not in ("loaded", "bare"):
        sys.stderr.write("usage: fake_board.py {%s} {loaded|bare}\n" % "|".join(sorted(BOARDS)))
        return 2
    print("changed" if present(argv[1], argv[2]) else "unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
