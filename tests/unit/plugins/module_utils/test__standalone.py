# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The loader of the module_utils copies the roles install on hosts, run as a host runs it:
in a fresh, isolated interpreter with only the copied files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

MODULE_UTILS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "plugins", "module_utils")

RUN = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("loader", sys.argv[1] + "/_standalone.py")
loader = importlib.util.module_from_spec(spec)
spec.loader.exec_module(loader)
try:
    modules = loader.load(sys.argv[1], sys.argv[2:])
except ImportError as exc:
    print("ImportError:", exc)
    sys.exit(3)
print(" ".join(module.__name__ for module in modules))
print(modules[-1].__file__)
"""


def copy(tmp_path, names):
    library = tmp_path / "module_utils"
    library.mkdir()
    for name in names + ["_standalone"]:
        shutil.copy(os.path.join(MODULE_UTILS, name + ".py"), str(library))
    return library


def run(library, names):
    return subprocess.run([sys.executable, "-I", "-c", RUN, str(library)] + names,
                          capture_output=True, text=True, timeout=60, check=False)


def test_loads_the_copies_under_their_collection_names(tmp_path):
    names = ["_gpu_tables", "_nvml", "_fsutil", "_gpu_settings"]
    library = copy(tmp_path, names)
    result = run(library, names)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    package = "ansible_collections.llmops.gpu_stack.plugins.module_utils"
    assert lines[0] == " ".join(package + "." + name for name in names)
    assert lines[1] == str(library / "_gpu_settings.py")   # the copy, not some other installation


@pytest.mark.parametrize("missing", ["_gpu_tables", "_nvml"])
def test_a_missing_file_is_named_and_nothing_is_loaded(tmp_path, missing):
    names = ["_gpu_tables", "_nvml", "_fsutil", "_nvml_metrics"]
    library = copy(tmp_path, names)
    (library / (missing + ".py")).unlink()
    result = run(library, names)
    assert result.returncode == 3
    assert result.stdout.strip() == "ImportError: %s is missing" % (library / (missing + ".py"))


def test_a_file_loaded_before_its_dependency_fails(tmp_path):
    library = copy(tmp_path, ["_gpu_tables", "_nvml"])
    result = run(library, ["_nvml", "_gpu_tables"])   # _nvml imports _gpu_tables: wrong order
    assert result.returncode == 3
    assert "No module named 'ansible_collections.llmops.gpu_stack.plugins.module_utils._gpu_tables'" in result.stdout
