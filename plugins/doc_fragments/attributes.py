# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):
    """Attributes shared by the modules of llmops.gpu_stack.

    Use the base fragment (llmops.gpu_stack.attributes) in every module, then set each
    attribute's support in the module, or add one of the ready-made sets below:
    llmops.gpu_stack.attributes.info_module for read-only modules and
    llmops.gpu_stack.attributes.facts plus .facts_module for fact-gathering ones.
    """

    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in C(check_mode) and return the changed status it would have, without modifying the target.
  diff_mode:
    description: Returns details on what has changed (or would change in C(check_mode)) when run in diff mode.
  idempotent:
    description:
      - When run twice in a row outside check mode with the same arguments, the second run reports no change.
      - This assumes the system the module controls or reads has not changed in a relevant way in between.
  platform:
    description: Target operating systems and hardware the module can operate on.
    support: full
    platforms: posix
    details:
      - Linux hosts, with NVIDIA GPUs where the module talks to the GPUs.
"""

    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
  idempotent:
    support: full
    details:
      - This action does not modify state.
"""

    FACTS = r"""
options: {}
attributes:
  facts:
    description: Action returns an C(ansible_facts) dictionary that updates existing host facts.
"""

    FACTS_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
  idempotent:
    support: full
    details:
      - This action does not modify state.
  facts:
    support: full
"""
