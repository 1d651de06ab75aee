# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Load the collection's module_utils outside Ansible, from a directory of their .py files.

The scripts the roles install on hosts (the gpu_tuning boot unit, the NVML textfile collector)
run the modules' own code. The llmops.gpu_stack.shared role copies the files they need, and this
one, into one directory per host (<base>/lib/module_utils); each script loads this file from
there and calls load(). Every file is registered under its collection module name, so the
files' own imports (from ansible_collections.llmops.gpu_stack.plugins.module_utils import ...)
resolve unchanged.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types

PACKAGE = "ansible_collections.llmops.gpu_stack.plugins.module_utils"


def load(library, names):
    """The modules PACKAGE.<name> for each of names, loaded from <library>/<name>.py in the
    given (dependency) order, or, with an empty library, imported from the Python path (a
    collection checkout). Raises ImportError naming the first missing file."""
    if library:
        paths = [os.path.join(library, name + ".py") for name in names]
        for path in paths:
            if not os.path.isfile(path):
                raise ImportError("%s is missing" % path)
        parent = ""
        for part in PACKAGE.split("."):
            parent = part if not parent else parent + "." + part
            if parent not in sys.modules:
                package = types.ModuleType(parent)
                package.__path__ = []
                sys.modules[parent] = package
        for name, path in zip(names, paths):
            spec = importlib.util.spec_from_file_location(PACKAGE + "." + name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
    return [importlib.import_module(PACKAGE + "." + name) for name in names]
