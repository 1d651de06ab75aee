# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write this host's GPU metrics for node exporter's textfile collector.

The llmops.gpu_stack.observability role installs this script, and the collection's
module_utils it runs (_gpu_tables.py, _nvml.py, _fsutil.py, _nvml_metrics.py) in the host's one copy of
them (<base>/lib/module_utils), and runs it from a systemd timer. One NVML session per run; the file is replaced atomically.

Exit status: 0 the file was written (also on a host without GPU or with NVML unusable: the
file then says gpu_stack_gpu_collector_up 0 and why); 2 the file or the library could not
be used.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

PACKAGE = "ansible_collections.llmops.gpu_stack.plugins.module_utils"
MODULE_UTILS = ("_gpu_tables", "_nvml", "_fsutil", "_nvml_metrics")   # in dependency order
# The shared role installs the module_utils once per host, beside this script's directory.
DEFAULT_LIBRARY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils")
DEFAULT_OUTPUT = "/var/lib/prometheus/node-exporter/gpu_stack_gpu.prom"
DEFAULT_TUNING = "/etc/gpu_stack/gpu_tuning.json"
FIX_RERUN = "run the llmops.gpu_stack.observability role again, which installs both"


def load_module_utils(library):
    """MODULE_UTILS through _standalone.load (it names the first file missing), from the host's
    copy in library, or, for a checkout of the collection (library empty), from the Python path."""
    if library:
        sys.path.insert(0, library)
    return importlib.import_module("_standalone" if library else PACKAGE + "._standalone").load(library, MODULE_UTILS)


def read_tuning(path):
    """The gpu_tuning role's settings, or None when the role has not run (or the file is unusable)."""
    try:
        with open(path, "r") as handle:
            data = json.load(handle)
    except (IOError, OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def main(argv=None, nvml=None):
    parser = argparse.ArgumentParser(description="Write GPU metrics for node exporter's textfile collector.")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="metrics file (default %(default)s)")
    parser.add_argument("--library", default=DEFAULT_LIBRARY,
                        help="directory of the collection's module_utils (default: ../module_utils from this script); "
                             "empty: import them from the Python path")
    parser.add_argument("--bindings-path", default="/opt/gpu_stack/python", help="directory of the pynvml binding")
    parser.add_argument("--tuning-config", default=DEFAULT_TUNING,
                        help="gpu_tuning settings to compare against (default %(default)s)")
    parser.add_argument("--kernel-log", default="/dev/kmsg", help="kernel log to read Xid messages from")
    parser.add_argument("--sysfs-root", default="/sys", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    try:
        metrics_lib = load_module_utils(args.library)[-1]
    except ImportError as exc:
        print("gpu-stack-nvml-textfile: the collection's module_utils are missing from %s (%s). Fix: %s."
              % (args.library, exc, FIX_RERUN), file=sys.stderr)
        return 2
    metrics = metrics_lib.collect(nvml=nvml, bindings_path=args.bindings_path, sysfs_root=args.sysfs_root,
                                  kernel_log=metrics_lib.read_kernel_log(args.kernel_log),
                                  tuning=read_tuning(args.tuning_config))
    try:
        metrics_lib.write_atomically(args.output, metrics.render())
    except (IOError, OSError) as exc:
        print("gpu-stack-nvml-textfile: cannot write %s: %s. Fix: create the directory (the observability role "
              "does) and run as root or as a member of its group." % (args.output, exc), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
