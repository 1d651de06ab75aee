# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One model profile from what the caller has: a built-in model name (_model_catalogue), an
architecture given as a dict, or a file (config.json: _hf_config; .gguf: _gguf).
Python 3.9+, standard library only.
"""

from __future__ import annotations

import os

from ansible_collections.llmops.gpu_stack.plugins.module_utils._gguf import profile_from_gguf
from ansible_collections.llmops.gpu_stack.plugins.module_utils._hf_config import profile_from_hf_config
from ansible_collections.llmops.gpu_stack.plugins.module_utils._model_catalogue import get_profile, normalize_profile


def load_profile(model=None, architecture=None, config_path=None):
    """One profile from exactly one source: a built-in name, architecture numbers, or a file
    (config.json, or a .gguf file)."""
    given = [source for source in (model, architecture, config_path) if source]
    if len(given) != 1:
        raise ValueError("give exactly one of model, architecture or config_path")
    if model:
        return get_profile(model)
    if architecture:
        return normalize_profile(architecture)
    path = str(config_path)
    if path.lower().endswith(".gguf"):
        return profile_from_gguf(path)
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    return profile_from_hf_config(path)
