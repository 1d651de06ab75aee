# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test only (molecule/gpu_plan): the NVML binding of a stand-in host, answered by the unit
tests' fake NVML (fake_pynvml.py beside this file) with the scenario named in
/var/lib/gpu-plan-fake/nvml (written by fake_board.py). Installed by the scenario's prepare.yml
in the NVML bindings directory of the collection's modules; no role installs it."""

from __future__ import annotations

import fake_pynvml as _fake

with open("/var/lib/gpu-plan-fake/nvml", "r", encoding="utf-8") as _handle:
    _NVML = getattr(_fake, _handle.read().strip())()

NVMLError = _fake.NVMLError


def __getattr__(name):
    return getattr(_NVML, name)
