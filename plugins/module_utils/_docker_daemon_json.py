# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Merge settings into Docker's daemon.json without losing what the operator put there.

Docker reads one JSON object from /etc/docker/daemon.json. Templating that file replaces
every setting the operator made (log drivers, registries, data-root ...); this helper
instead reads the object, deep-merges the requested keys into it, removes keys only where
asked and only when they hold the given value, and reports whether anything differs.
Formatting alone never counts as a change. Python 3.8+, standard library only.
"""

from __future__ import annotations

import copy
import json


class DaemonJsonError(Exception):
    """The existing file cannot be used; the message names the cause and the fix."""


def load(text, path="daemon.json"):
    """The JSON object in text ({} for an empty file). Raises DaemonJsonError otherwise."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        line = getattr(exc, "lineno", None)
        column = getattr(exc, "colno", None)
        where = " at line %s, column %s" % (line, column) if line is not None else ""
        raise DaemonJsonError(
            "%s is not valid JSON%s (%s); nothing was changed. Fix: correct the file by hand (dockerd refuses it too) "
            "or move it away so that it is created anew" % (path, where, getattr(exc, "msg", exc)))
    if not isinstance(value, dict):
        raise DaemonJsonError(
            "%s holds a JSON %s, not an object; nothing was changed. Fix: make it a JSON object ({...}) as dockerd "
            "expects" % (path, type(value).__name__))
    return value


def merge(current, settings):
    """A copy of current with settings deep-merged in: dicts merge key by key, any other
    value (lists included) replaces the current one. Keys not in settings are kept."""
    result = copy.deepcopy(current)
    for key, value in settings.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def remove_if_equal(current, spec):
    """A copy of current without the keys of spec whose current value equals spec's value.

    spec mirrors the structure: {"default-runtime": "nvidia"} removes default-runtime only
    while it is "nvidia"; {"features": {"cdi": True}} removes features.cdi only while true
    (and features itself once it is empty). A key holding another value is left alone:
    it is the operator's.
    """
    result = copy.deepcopy(current)
    for key, wanted in spec.items():
        if key not in result:
            continue
        if isinstance(wanted, dict) and isinstance(result[key], dict):
            inner = remove_if_equal(result[key], wanted)
            if inner or not result[key]:
                result[key] = inner
            else:
                del result[key]
        elif result[key] == wanted:
            del result[key]
    return result


def render(config):
    """The text written: 4-space indentation (as nvidia-ctk and Docker's docs use), the
    operator's key order kept, a final newline."""
    return json.dumps(config, indent=4, ensure_ascii=False) + "\n"


def plan(text, settings, remove=None, path="daemon.json"):
    """(changed, before, after, new_text) for the file text (None when the file is absent)."""
    before = load(text or "", path)
    after = merge(before, settings or {})
    if remove:
        after = remove_if_equal(after, remove)
    changed = text is None or after != before
    return changed, before, after, render(after)
