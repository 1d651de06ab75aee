# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Per-GPU settings through NVML: persistence mode, application clocks, locked GPU clocks,
power limit, compute mode. Read first, validate everything, then change only what differs.

All of these reset on reboot or driver reload (NVIDIA driver persistence documentation,
nvidia-smi manual); apply them again at every boot to keep them. Python 3.9+.
"""

from __future__ import annotations

import json
import os

from ansible_collections.llmops.gpu_stack.plugins.module_utils._fsutil import write_text_atomic
from ansible_collections.llmops.gpu_stack.plugins.module_utils._gpu_tables import compare_compute_capability
from ansible_collections.llmops.gpu_stack.plugins.module_utils._nvml import (
    CLOCK_GRAPHICS,
    CLOCK_MEM,
    COMPUTE_MODE_IDS,
    COMPUTE_MODES,
    NVML_ERROR_NOT_SUPPORTED,
    describe_nvml_error,
    error_code,
)

SETTINGS = ("power_limit", "persistence_mode", "compute_mode", "application_clocks", "locked_clocks")
# exclusive_thread exists in NVML's enum but its support was removed from the driver.
SETTABLE_COMPUTE_MODES = ("default", "exclusive_process", "prohibited")
LOCKED_CLOCKS_RECORD = "locked_clocks.json"
BOOT_ID = "/proc/sys/kernel/random/boot_id"
NVML_FEATURE_DISABLED = 0
NVML_FEATURE_ENABLED = 1


class SettingsError(Exception):
    """A request that cannot be carried out; the message names the cause and the fix."""


class NotSupported(Exception):
    """The GPU or driver does not support a setting."""


def setting_requested(wanted, setting):
    """A value given for the setting (False counts), or its reset_ flag set."""
    return wanted.get(setting) is not None or bool(wanted.get("reset_" + setting))


def compress_clocks(values):
    """'1980-1410 step 15, 1395' style text for a descending list of clocks in MHz."""
    values = sorted(set(values), reverse=True)
    parts, i = [], 0
    while i < len(values):
        j = i
        step = values[i] - values[i + 1] if i + 1 < len(values) else None
        while j + 1 < len(values) and values[j] - values[j + 1] == step:
            j += 1
        if j - i >= 2:
            parts.append("%d-%d step %d" % (values[i], values[j], step))
            i = j + 1
        else:
            parts.append("%d" % values[i])
            i += 1
    return ", ".join(parts)


def describe_pairs(pairs):
    return "; ".join("memory %d MHz with graphics %s MHz" % (p["memory"], compress_clocks(p["graphics"]) or "none")
                     for p in pairs)


def select_gpus(session, selectors):
    """[(index, handle, uuid, name)] for the selectors: 'all', an index, or a GPU UUID.

    Raises SettingsError naming every selector that matches nothing, with the GPUs present.
    """
    count = session.device_count()
    present = []
    for index in range(count):
        handle = session.handle(index)
        uuid = session.query("nvmlDeviceGetUUID", handle)
        name = session.query("nvmlDeviceGetName", handle)
        present.append((index, handle, _text(uuid), _text(name)))
    if not present:
        raise SettingsError("no GPU visible to NVML on this host; nothing to configure")
    chosen, unmatched = {}, []
    for selector in selectors or ["all"]:
        text = str(selector).strip()
        if text.lower() == "all":
            for gpu in present:
                chosen[gpu[0]] = gpu
            continue
        matched = [gpu for gpu in present if any(((text.isdigit() and int(text) == gpu[0]),
                                                  (gpu[2] and gpu[2].lower() == text.lower())))]
        if matched:
            chosen[matched[0][0]] = matched[0]
        else:
            unmatched.append(text)
    if unmatched:
        raise SettingsError(
            "GPU selector(s) %s match no GPU; present: %s. Fix: use 'all', an index or a UUID from that list"
            % (", ".join(repr(u) for u in unmatched),
               ", ".join("%d %s (%s)" % (g[0], g[2], g[3]) for g in present)))
    return [chosen[index] for index in sorted(chosen)]


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def read_boot_id(path=BOOT_ID):
    try:
        with open(path, "r") as handle:
            return handle.read().strip()
    except (IOError, OSError):
        return None


def read_locked_record(state_dir, boot_id):
    """Locked GPU clock ranges this module set since boot: {uuid: {min, max}}.

    NVML can set but not read locked clocks, so the module keeps this record under a
    directory that is empty after a reboot (/run), as the locks are.
    """
    path = os.path.join(state_dir, LOCKED_CLOCKS_RECORD)
    try:
        with open(path, "r") as handle:
            data = json.load(handle)
    except (IOError, OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("boot_id") != boot_id:
        return {}
    gpus = data.get("gpus")
    return gpus if isinstance(gpus, dict) else {}


def write_locked_record(state_dir, boot_id, record):
    if not os.path.isdir(state_dir):
        os.makedirs(state_dir, 0o755)
    write_text_atomic(os.path.join(state_dir, LOCKED_CLOCKS_RECORD),
                      json.dumps({"boot_id": boot_id, "gpus": record}, sort_keys=True), only_if_changed=False)


def read_state(session, handle, uuid, locked_record):
    """Current value of every setting (None where the GPU cannot say)."""
    q = session.query
    persistence = q("nvmlDeviceGetPersistenceMode", handle)
    mode = q("nvmlDeviceGetComputeMode", handle)
    limit = q("nvmlDeviceGetPowerManagementLimit", handle)
    app_mem = q("nvmlDeviceGetApplicationsClock", handle, CLOCK_MEM)
    app_gfx = q("nvmlDeviceGetApplicationsClock", handle, CLOCK_GRAPHICS)
    locked = locked_record.get(uuid)
    return {
        "persistence_mode": None if persistence is None else bool(persistence),
        "compute_mode": None if mode is None else COMPUTE_MODES.get(mode, str(mode)),
        "power_limit": None if limit is None else int(round(limit / 1000.0)),
        "application_clocks": None if app_mem is None or app_gfx is None else {"memory": app_mem, "graphics": app_gfx},
        "locked_clocks": dict(locked) if locked else None,
    }


def plan_gpu(session, handle, state, wanted):
    """Changes for one GPU: [(setting, before, after)]. Raises SettingsError for an invalid
    request, NotSupported for a setting the GPU does not have (with the setting in args[1])."""
    changes = []
    if wanted.get("power_limit") is not None:
        watts = int(wanted["power_limit"])
        limits = session.query("nvmlDeviceGetPowerManagementLimitConstraints", handle)
        if limits is None or state["power_limit"] is None:
            raise NotSupported("power limit control is not supported on this GPU or driver", "power_limit")
        low, high = int(round(limits[0] / 1000.0)), int(round(limits[1] / 1000.0))
        if not low <= watts <= high:
            raise SettingsError("power_limit %d W is outside this GPU's range %d-%d W. Fix: choose a value in that range"
                                % (watts, low, high))
        if state["power_limit"] != watts:
            changes.append(("power_limit", state["power_limit"], watts))
    if wanted.get("persistence_mode") is not None:
        if state["persistence_mode"] is None:
            raise NotSupported("persistence mode is not supported on this GPU or driver", "persistence_mode")
        if state["persistence_mode"] != wanted["persistence_mode"]:
            changes.append(("persistence_mode", state["persistence_mode"], wanted["persistence_mode"]))
    if wanted.get("compute_mode") is not None:
        if state["compute_mode"] is None:
            raise NotSupported("compute mode is not supported on this GPU or driver", "compute_mode")
        if state["compute_mode"] != wanted["compute_mode"]:
            changes.append(("compute_mode", state["compute_mode"], wanted["compute_mode"]))
    if wanted.get("application_clocks") is not None or wanted.get("reset_application_clocks"):
        changes.extend(_plan_application_clocks(session, handle, state, wanted))
    if wanted.get("locked_clocks") is not None or wanted.get("reset_locked_clocks"):
        changes.extend(_plan_locked_clocks(session, handle, state, wanted))
    return changes


def _plan_application_clocks(session, handle, state, wanted):
    if state["application_clocks"] is None:
        raise NotSupported("application clocks are not supported on this GPU or driver", "application_clocks")
    if wanted.get("reset_application_clocks"):
        mem = session.query("nvmlDeviceGetDefaultApplicationsClock", handle, CLOCK_MEM)
        gfx = session.query("nvmlDeviceGetDefaultApplicationsClock", handle, CLOCK_GRAPHICS)
        if mem is None or gfx is None:
            raise NotSupported("default application clocks are not reported by this GPU", "application_clocks")
        target = {"memory": mem, "graphics": gfx, "reset": True}
    else:
        request = wanted["application_clocks"]
        target = {"memory": int(request["memory"]), "graphics": int(request["graphics"])}
        memory_clocks = session.query("nvmlDeviceGetSupportedMemoryClocks", handle)
        if not memory_clocks:
            raise NotSupported("application clocks are not supported on this GPU or driver", "application_clocks")
        pairs = [{"memory": m, "graphics": session.query("nvmlDeviceGetSupportedGraphicsClocks", handle, m) or []}
                 for m in sorted(memory_clocks, reverse=True)]
        match = [p for p in pairs if p["memory"] == target["memory"]]
        if not match or target["graphics"] not in match[0]["graphics"]:
            raise SettingsError(
                "application clocks memory %d MHz / graphics %d MHz are not a supported pair. Supported pairs: %s. "
                "Fix: pick a memory clock and a graphics clock from one of these pairs"
                % (target["memory"], target["graphics"], describe_pairs(pairs)))
    before = state["application_clocks"]
    if before["memory"] == target["memory"] and before["graphics"] == target["graphics"]:
        return []
    return [("application_clocks", before, target)]


def _plan_locked_clocks(session, handle, state, wanted):
    cc = session.query("nvmlDeviceGetCudaComputeCapability", handle)
    if cc is not None and compare_compute_capability(tuple(cc), "7.0") < 0:
        raise NotSupported("locked GPU clocks need Volta (compute capability 7.0) or newer; this GPU is %d.%d" % tuple(cc),
                           "locked_clocks")
    before = state["locked_clocks"]
    if wanted.get("reset_locked_clocks"):
        # Without a record the lock state is unknown; the reset is then issued anyway (a no-op
        # on an unlocked GPU) and not reported as a change.
        if before is None:
            return [("locked_clocks_unknown", None, None)]
        return [("locked_clocks", before, None)]
    request = wanted["locked_clocks"]
    low, high = int(request["min"]), int(request["max"])
    if low <= 0 or low > high:
        raise SettingsError("locked_clocks min %d MHz / max %d MHz: need 0 < min <= max. Fix: swap or correct the values"
                            % (low, high))
    top = session.query("nvmlDeviceGetMaxClockInfo", handle, CLOCK_GRAPHICS)
    if top is not None and high > top:
        raise SettingsError("locked_clocks max %d MHz is above this GPU's maximum graphics clock %d MHz. Fix: use at most %d"
                            % (high, top, top))
    target = {"min": low, "max": high}
    if before == target:
        return []
    return [("locked_clocks", before, target)]


def apply_change(session, handle, setting, after):
    """Carry out one planned change through NVML."""
    if setting == "power_limit":
        session.call("nvmlDeviceSetPowerManagementLimit", handle, int(after) * 1000)
    elif setting == "persistence_mode":
        session.call("nvmlDeviceSetPersistenceMode", handle, NVML_FEATURE_ENABLED if after else NVML_FEATURE_DISABLED)
    elif setting == "compute_mode":
        session.call("nvmlDeviceSetComputeMode", handle, COMPUTE_MODE_IDS[after])
    elif setting == "application_clocks":
        if after.get("reset"):
            session.call("nvmlDeviceResetApplicationsClocks", handle)
        else:
            session.call("nvmlDeviceSetApplicationsClocks", handle, after["memory"], after["graphics"])
    elif setting == "locked_clocks":
        if after is None:
            session.call("nvmlDeviceResetGpuLockedClocks", handle)
        else:
            session.call("nvmlDeviceSetGpuLockedClocks", handle, after["min"], after["max"])
    elif setting == "locked_clocks_unknown":
        session.call("nvmlDeviceResetGpuLockedClocks", handle)
    else:
        raise SettingsError("unknown setting %s" % setting)


def _public(value):
    if isinstance(value, dict):
        return dict((k, v) for k, v in value.items() if k != "reset")
    return value


def configure(session, wanted, check_mode=False, state_dir="/run/gpu_stack", boot_id=None):
    """Plan and (outside check mode) apply settings on the selected GPUs.

    wanted: gpus (selectors), power_limit (W), persistence_mode (bool), compute_mode (name),
    application_clocks ({memory, graphics}), reset_application_clocks, locked_clocks
    ({min, max}), reset_locked_clocks, best_effort.
    Returns {changed, diff, gpus, skipped_settings} (not "skipped": Ansible reads a truthy
    "skipped" key as a skipped task). Raises SettingsError (nothing changed yet) for an
    invalid request, or ApplyError after a change failed part way.
    """
    if wanted.get("compute_mode") is not None and wanted["compute_mode"] not in SETTABLE_COMPUTE_MODES:
        raise SettingsError("unknown compute_mode %r; settable: %s" % (wanted["compute_mode"], ", ".join(SETTABLE_COMPUTE_MODES)))
    best_effort = bool(wanted.get("best_effort"))
    gpus = select_gpus(session, wanted.get("gpus"))
    record = read_locked_record(state_dir, boot_id)
    plans, skipped, errors = [], [], []
    for index, handle, uuid, name in gpus:
        try:
            state = read_state(session, handle, uuid, record)
        except Exception as exc:
            errors.append(describe_nvml_error(exc, "GPU %d %s" % (index, uuid))[1])
            continue
        changes = []
        for setting in SETTINGS:
            if not setting_requested(wanted, setting):
                continue
            single = dict((k, v) for k, v in wanted.items() if k in (setting, "reset_" + setting))
            try:
                changes.extend(plan_gpu(session, handle, state, single))
            except NotSupported as exc:
                message = "GPU %d (%s): %s" % (index, name, exc.args[0])
                if best_effort:
                    skipped.append({"gpu": index, "uuid": uuid, "setting": setting, "reason": exc.args[0]})
                else:
                    errors.append(message + ". Fix: leave this setting out for this GPU, or set best_effort: true to skip it")
            except SettingsError as exc:
                errors.append("GPU %d (%s): %s" % (index, name, exc))
            except Exception as exc:
                errors.append(describe_nvml_error(exc, "GPU %d %s" % (index, uuid))[1])
        plans.append((index, handle, uuid, name, state, changes))
    if errors:
        raise SettingsError("; ".join(errors))

    result_gpus, before_diff, after_diff = [], {}, {}
    changed = False
    applied = []
    for index, handle, uuid, name, state, changes in plans:
        reported = dict((setting, {"before": _public(before), "after": _public(after)})
                        for setting, before, after in changes if setting != "locked_clocks_unknown")
        for setting, before, after in changes:
            if check_mode:
                continue
            try:
                apply_change(session, handle, setting, after)
            except Exception as exc:
                soft = error_code(exc) == NVML_ERROR_NOT_SUPPORTED
                reason = describe_nvml_error(exc, "GPU %d %s, setting %s" % (index, uuid, setting))[1]
                if soft and best_effort:
                    skipped.append({"gpu": index, "uuid": uuid, "setting": setting, "reason": reason})
                    reported.pop(setting, None)
                    continue
                raise ApplyError(reason, applied)
            if setting == "locked_clocks":
                if after is None:
                    record.pop(uuid, None)
                else:
                    record[uuid] = {"min": after["min"], "max": after["max"]}
            elif setting == "locked_clocks_unknown":
                record.pop(uuid, None)
            if setting != "locked_clocks_unknown":
                applied.append({"gpu": index, "uuid": uuid, "setting": setting, "after": _public(after)})
        if reported:
            changed = True
            key = "gpu%d" % index
            before_diff[key] = dict((s, c["before"]) for s, c in reported.items())
            after_diff[key] = dict((s, c["after"]) for s, c in reported.items())
        result_gpus.append({"index": index, "uuid": uuid, "name": name, "changes": reported})
    if not check_mode and any(s in ("locked_clocks", "locked_clocks_unknown") for p in plans for s, _b, _a in p[5]):
        write_locked_record(state_dir, boot_id, record)
    return {"changed": changed, "diff": {"before": before_diff, "after": after_diff},
            "gpus": result_gpus, "skipped_settings": skipped}


class ApplyError(Exception):
    """A change failed after others were applied: carries what was applied."""

    def __init__(self, reason, applied):
        super(ApplyError, self).__init__(reason)
        self.reason = reason
        self.applied = list(applied)
