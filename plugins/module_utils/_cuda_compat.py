# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Whether an NVIDIA driver can run a CUDA toolkit release, and which driver a host has.

The numbers come from _gpu_tables (CUDA toolkit release notes); this module finds the driver
(planned, loaded or installed) and words the answer. Runs on managed hosts: Python 3.9+,
standard library only.
"""

from __future__ import annotations

import os
import re

from ansible_collections.llmops.gpu_stack.plugins.module_utils._gpu_tables import (
    cuda_major_minor,
    cuda_support_level,
    max_cuda_for_driver,
    min_driver_for_cuda,
    minor_compat_min_driver,
    parse_version,
)

# Where the driver's user-space libraries are installed (Debian/Ubuntu multiarch, RHEL, NVIDIA's
# runfile default).
LIBRARY_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
)
_LIBRARY_RE = re.compile(r"^lib(?:cuda|nvidia-ml)\.so\.(\d+\.\d+(?:\.\d+)?)$")


def loaded_driver_version(sysfs_root="/sys"):
    """Version of the loaded nvidia kernel module ("535.261.03"), None when it is not loaded."""
    try:
        with open(os.path.join(sysfs_root, "module", "nvidia", "version")) as handle:
            text = handle.read().strip()
    except (IOError, OSError):
        return None
    return text or None


def installed_driver_version(library_dirs=LIBRARY_DIRS):
    """Version of the installed driver libraries, from libcuda.so.<version> or
    libnvidia-ml.so.<version> (the highest found), None when none is installed."""
    found = []
    for directory in library_dirs:
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            match = _LIBRARY_RE.match(name)
            if match:
                found.append(match.group(1))
    if not found:
        return None
    return max(found, key=parse_version)


def detect_driver(sysfs_root="/sys", library_dirs=LIBRARY_DIRS):
    """(version, source): source is "loaded", "installed" or "none"."""
    loaded = loaded_driver_version(sysfs_root)
    if loaded:
        return loaded, "loaded"
    installed = installed_driver_version(library_dirs)
    if installed:
        return installed, "installed"
    return None, "none"


def check_toolkit(cuda_version, driver_version, driver_source, allow_minor_version_compat=False):
    """Whether driver `driver_version` runs CUDA toolkit `cuda_version`.

    Returns {supported, cuda, driver_version, driver_source, min_driver, compat_min_driver,
    level, newest_cuda_for_driver, msg}. Raises ValueError for a malformed version or a CUDA
    release that is not in the table.
    """
    cuda = cuda_major_minor(cuda_version)
    minimum = min_driver_for_cuda(cuda)
    compat = minor_compat_min_driver(cuda)
    result = {
        "cuda": cuda,
        "driver_version": driver_version,
        "driver_source": driver_source,
        "min_driver": minimum,
        "compat_min_driver": compat,
        "level": None,
        "newest_cuda_for_driver": None,
        "supported": False,
    }
    if not driver_version:
        result["msg"] = (
            "no NVIDIA driver is planned, loaded or installed on this host, so nothing can run CUDA %s (it needs "
            "driver %s or newer). Fix: install the driver first (llmops.gpu_stack.nvidia_driver) or name the driver "
            "the toolkit will run on" % (cuda, minimum))
        return result
    parse_version(driver_version)
    level = cuda_support_level(driver_version, cuda)
    newest = max_cuda_for_driver(driver_version)
    result["level"] = level
    result["newest_cuda_for_driver"] = newest
    what = "%s driver %s" % (driver_source, driver_version)
    if level == "full":
        result["supported"] = True
        result["msg"] = "the %s runs CUDA %s (minimum %s)" % (what, cuda, minimum)
        return result
    alternative = ("choose a toolkit up to CUDA %s, the newest this driver runs, " % newest) if newest else ""
    if level == "minor_version_compat":
        result["supported"] = bool(allow_minor_version_compat)
        result["msg"] = (
            "the %s is below %s, the minimum for CUDA %s, but at or above %s, the CUDA %s minor-version compatibility "
            "floor: CUDA %s runs with reduced features (no PTX JIT of newer PTX, some APIs missing)%s"
            % (what, minimum, cuda, compat, cuda.split(".")[0], cuda,
               "" if allow_minor_version_compat else
               ". Fix: %sinstall a driver %s or newer, or accept minor-version compatibility explicitly"
               % (alternative, minimum)))
        return result
    result["msg"] = (
        "CUDA %s needs NVIDIA driver %s or newer (the minimum for CUDA %s); the %s is older. Fix: %sinstall a driver "
        "%s or newer" % (cuda, minimum, cuda, what, alternative, minimum))
    return result
