# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Apply the GPU settings of the llmops.gpu_stack.gpu_tuning role again, at boot.

Persistence mode, clocks, power limits and compute modes reset on every reboot and driver
reload. The gpu_tuning role applies them with the gpu_settings module and installs this
script, and the collection's module_utils it runs in the host's one copy of them
(<base>/lib/module_utils, beside this script's directory); gpu-stack-tuning.service runs it at
every boot, after the driver and the persistence daemon are up. It reads the settings the
role rendered from its variables (one JSON file) and applies them through the same
functions the module uses, so a boot and a playbook run cannot disagree.

Which GPU gets which settings: every GPU gets the host-wide defaults; a GPU whose NVML
product name equals a key of "models" gets those defaults updated with that entry (a null
value there removes a default). GPUs are grouped by model, in the file's order, then the
GPUs of no listed model.

Exit status: 0 applied, nothing to change or no NVIDIA GPU on the PCI bus; 1 a setting
could not be applied or NVML is not usable (the message says why and how to fix it);
2 the settings file or the installed library is unusable.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

DEFAULT_CONFIG = "/etc/gpu_stack/gpu_tuning.json"
# The shared role installs the module_utils once per host, beside this script's directory.
DEFAULT_LIBRARY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils")
PACKAGE = "ansible_collections.llmops.gpu_stack.plugins.module_utils"
MODULE_UTILS = ("_gpu_tables", "_nvml", "_fsutil", "_gpu_settings")   # in dependency order
CONFIG_FORMAT = 1
REQUEST_KEYS = ("persistence_mode", "power_limit", "application_clocks", "locked_clocks", "compute_mode")
DEFAULT_KEYS = REQUEST_KEYS + ("reset_application_clocks", "reset_locked_clocks")
MODEL_KEYS = ("power_limit", "application_clocks", "locked_clocks", "compute_mode")
OTHER_GPUS = "GPUs of no listed model"
FIX_RERUN = "run the llmops.gpu_stack.gpu_tuning role again, which renders and installs both"


class ConfigError(Exception):
    """The settings file cannot be used."""


def load_config(path):
    """The validated settings file: a dict with format, defaults, models, best_effort,
    wait_seconds, state_dir and bindings_path. Raises ConfigError naming the problem."""
    try:
        with open(path, "r") as handle:
            config = json.load(handle)
    except (IOError, OSError) as exc:
        raise ConfigError("cannot read %s: %s" % (path, exc))
    except ValueError as exc:
        raise ConfigError("%s is not valid JSON: %s" % (path, exc))
    problems = []
    if not isinstance(config, dict):
        raise ConfigError("%s does not hold a JSON object" % path)
    if config.get("format") != CONFIG_FORMAT:
        problems.append("format is %r, this script reads format %d" % (config.get("format"), CONFIG_FORMAT))
    defaults = config.get("defaults")
    if not isinstance(defaults, dict):
        problems.append("defaults is not an object")
    else:
        unknown = sorted(set(defaults) - set(DEFAULT_KEYS))
        if unknown:
            problems.append("defaults has unknown keys %s" % ", ".join(unknown))
    models = config.get("models", {})
    if not isinstance(models, dict):
        problems.append("models is not an object")
    else:
        for model, override in models.items():
            if not isinstance(override, dict):
                problems.append("models[%r] is not an object" % model)
                continue
            unknown = sorted(set(override) - set(MODEL_KEYS))
            if unknown:
                problems.append("models[%r] has unknown keys %s" % (model, ", ".join(unknown)))
    if not isinstance(config.get("best_effort", False), bool):
        problems.append("best_effort is not true or false")
    wait = config.get("wait_seconds", 0)
    if not isinstance(wait, int) or isinstance(wait, bool) or wait < 0:
        problems.append("wait_seconds is not a whole number of seconds")
    for key in ("state_dir", "bindings_path"):
        if not isinstance(config.get(key), str) or not config[key].startswith("/"):
            problems.append("%s is not an absolute path" % key)
    if problems:
        raise ConfigError("%s: %s" % (path, "; ".join(problems)))
    config.setdefault("models", {})
    config.setdefault("best_effort", False)
    config.setdefault("wait_seconds", 0)
    return config


def has_request(wanted):
    """Whether a settings dict asks gpu_settings for anything."""
    return any(wanted.get(key) is not None for key in REQUEST_KEYS) or bool(
        wanted.get("reset_application_clocks") or wanted.get("reset_locked_clocks"))


def plan_groups(config, gpus):
    """[(label, [index, ...], settings)] for gpus given as [(index, product name)] in NVML order.

    One group per listed model present on the host (in the file's order), then one for the
    GPUs of no listed model. Groups that ask for nothing are left out.
    """
    defaults = config["defaults"]
    models = config.get("models") or {}
    groups = []
    for model, override in models.items():
        indices = [str(index) for index, name in gpus if name == model]
        wanted = dict(defaults)
        wanted.update(override)
        if indices and has_request(wanted):
            groups.append((model, indices, wanted))
    others = [str(index) for index, name in gpus if name not in models]
    if others and has_request(defaults):
        groups.append((OTHER_GPUS, others, dict(defaults)))
    return groups


def open_session(nvml_lib, nvml, wait_seconds, sleep=time.sleep, clock=time.monotonic, log=print):
    """An opened NvmlSession. While the kernel module is still loading (driver_not_loaded),
    try again every 2 s for up to wait_seconds. Raises NvmlUnavailable."""
    deadline = clock() + wait_seconds
    while True:
        try:
            return nvml_lib.NvmlSession(nvml).open()
        except nvml_lib.NvmlUnavailable as exc:
            if exc.status != "driver_not_loaded" or clock() >= deadline:
                raise
            log("gpu-tuning: the NVIDIA driver is not loaded yet; waiting (%d s left)" % max(0, int(deadline - clock())))
            sleep(2)


def apply_settings(config, libs, nvml, check_mode=False, boot_id=None, sleep=time.sleep, clock=time.monotonic, log=print):
    """Apply every group; returns the summary dict ("changed", "groups", "errors").

    A group that fails is reported and the others are still applied: at boot, as much of
    the tuning as possible is better than none.
    """
    settings_lib, nvml_lib = libs
    summary = {"changed": False, "check_mode": check_mode, "groups": [], "errors": []}
    session = open_session(nvml_lib, nvml, config["wait_seconds"], sleep=sleep, clock=clock, log=log)
    try:
        gpus = []
        for index in range(session.device_count()):
            handle = session.handle(index)
            gpus.append((index, _text(session.query("nvmlDeviceGetName", handle))))
        groups = plan_groups(config, gpus)
        if not groups:
            log("gpu-tuning: no setting requested for the %d GPU(s) of this host" % len(gpus))
        for label, indices, wanted in groups:
            request = dict(wanted, gpus=indices, best_effort=config["best_effort"])
            entry = {"label": label, "selectors": indices, "changed": False, "gpus": [], "skipped_settings": []}
            try:
                result = settings_lib.configure(session, request, check_mode=check_mode,
                                                state_dir=config["state_dir"], boot_id=boot_id)
            except settings_lib.SettingsError as exc:
                entry["error"] = "nothing changed on these GPUs: %s" % exc
            except settings_lib.ApplyError as exc:
                entry["error"] = "a setting failed after %d change(s): %s" % (len(exc.applied), exc.reason)
                entry["applied"] = exc.applied
                entry["changed"] = bool(exc.applied)
            except (IOError, OSError) as exc:
                entry["error"] = "cannot write the locked-clocks record in %s: %s" % (config["state_dir"], exc)
                entry["changed"] = True
            else:
                entry.update(changed=result["changed"], gpus=result["gpus"], skipped_settings=result["skipped_settings"])
            if "error" in entry:
                summary["errors"].append("%s (GPU %s): %s" % (label, ", ".join(indices), entry["error"]))
            summary["changed"] = summary["changed"] or entry["changed"]
            summary["groups"].append(entry)
    finally:
        session.close()
    return summary


def describe(summary, log=print):
    """Journal lines: one per GPU change, skipped setting and error, then a total."""
    verb = "would change" if summary["check_mode"] else "changed"
    count = 0
    for group in summary["groups"]:
        for gpu in group["gpus"]:
            for setting, change in sorted(gpu["changes"].items()):
                count += 1
                log("gpu-tuning: GPU %d (%s): %s %s %s -> %s" % (gpu["index"], gpu["name"], setting, verb,
                                                                 _show(change["before"]), _show(change["after"])))
        for skipped in group["skipped_settings"]:
            log("gpu-tuning: GPU %d: %s skipped (best_effort): %s" % (skipped["gpu"], skipped["setting"], skipped["reason"]))
        if "error" in group:
            log("gpu-tuning: %s (GPU %s): %s" % (group["label"], ", ".join(group["selectors"]), group["error"]))
    log("gpu-tuning: %d setting(s) %s, %d error(s)" % (count, verb, len(summary["errors"])))


def _to_stderr(message):
    print(message, file=sys.stderr)


def _show(value):
    if isinstance(value, dict):
        return "/".join("%s=%s" % (k, value[k]) for k in sorted(value))
    return str(value)


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").rstrip("\x00")
    return value


def load_module_utils(library):
    """MODULE_UTILS by the collection's loader (_standalone.load, which names the first missing
    file): from library, the boot unit's copy, or from the Python path when library is empty."""
    if library:
        sys.path.insert(0, library)
    return importlib.import_module("_standalone" if library else PACKAGE + "._standalone").load(library, MODULE_UTILS)


def pci_gpu_count(nvml_lib, sysfs_root):
    """NVIDIA GPUs on the PCI bus, or None when sysfs cannot be read."""
    try:
        return len([d for d in nvml_lib.scan_pci_devices(sysfs_root) if d["kind"] == "gpu"])
    except OSError:
        return None


def main(argv=None, log=print):
    parser = argparse.ArgumentParser(description="Apply the gpu_tuning settings to this host's GPUs.")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="settings file (default %(default)s)")
    parser.add_argument("--library", default=DEFAULT_LIBRARY,
                        help="directory of the collection's module_utils (default: ../module_utils from this script); "
                             "empty: import them from the Python path")
    parser.add_argument("--check", action="store_true", help="report what would change and change nothing")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--bindings-path", help="directory of the pynvml binding (default: from the settings file)")
    parser.add_argument("--state-dir", help="directory of the locked-clocks record (default: from the settings file)")
    parser.add_argument("--sysfs-root", default="/sys", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.json:
        log = _to_stderr   # stdout carries the JSON document

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        log("gpu-tuning: unusable settings: %s. Fix: %s." % (exc, FIX_RERUN))
        return 2
    if args.bindings_path:
        config["bindings_path"] = args.bindings_path
    if args.state_dir:
        config["state_dir"] = args.state_dir
    try:
        _tables, nvml_lib, _fsutil, settings_lib = load_module_utils(args.library)
    except ImportError as exc:
        log("gpu-tuning: the collection's module_utils are missing from %s (%s). Fix: %s." % (args.library, exc, FIX_RERUN))
        return 2
    libs = (settings_lib, nvml_lib)

    gpus_on_bus = pci_gpu_count(nvml_lib, args.sysfs_root)
    if gpus_on_bus == 0:
        log("gpu-tuning: no NVIDIA GPU on the PCI bus; nothing to apply")
        return 0
    nvml, import_error = nvml_lib.import_pynvml(config["bindings_path"])
    if nvml is None:
        log("gpu-tuning: %s" % nvml_lib.bindings_missing_reason(import_error))
        return 1
    try:
        summary = apply_settings(config, libs, nvml, check_mode=args.check, boot_id=settings_lib.read_boot_id(), log=log)
    except nvml_lib.NvmlUnavailable as exc:
        log("gpu-tuning: NVML is not usable (%s): %s" % (exc.status, exc.reason))
        return 1
    describe(summary, log=log)
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
