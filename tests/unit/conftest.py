# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared unit-test helpers: the fake NVML on the import path, a module runner that patches
exit_json / fail_json (community.general style), and a small GGUF writer."""

from __future__ import annotations

import os
import struct
import sys
import types

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import contextlib  # noqa: E402
import json  # noqa: E402
from unittest import mock  # noqa: E402

from ansible.module_utils import basic  # noqa: E402
from ansible.module_utils.common.text.converters import to_bytes  # noqa: E402

try:
    from ansible.module_utils.testing import patch_module_args  # noqa: E402
except ImportError:  # ansible-core before 2.19 has no such helper: the same, by hand
    @contextlib.contextmanager
    def patch_module_args(args=None):
        payload = to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}))
        with mock.patch.object(basic, "_ANSIBLE_ARGS", payload):
            yield


class AnsibleExitJson(Exception):
    """exit_json was called: args[0] is the result."""


class AnsibleFailJson(Exception):
    """fail_json was called: args[0] is the result."""


def _exit_json(self, **kwargs):
    kwargs.setdefault("changed", False)
    kwargs["warnings_shown"] = list(getattr(self, "_test_warnings", []))
    raise AnsibleExitJson(kwargs)


def _fail_json(self, msg=None, **kwargs):
    kwargs["failed"] = True
    kwargs["msg"] = msg
    raise AnsibleFailJson(kwargs)


def _warn(self, warning):
    if not hasattr(self, "_test_warnings"):
        self._test_warnings = []
    self._test_warnings.append(warning)


@pytest.fixture
def run_module(monkeypatch):
    """run_module(main, args, check_mode=False) -> (outcome, result); outcome 'exit' or 'fail'."""
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", _exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", _fail_json)
    monkeypatch.setattr(basic.AnsibleModule, "warn", _warn)

    def runner(main, args, check_mode=False):
        args = dict(args)
        if check_mode:
            args["_ansible_check_mode"] = True
        with patch_module_args(args):
            try:
                main()
            except AnsibleExitJson as exc:
                return "exit", exc.args[0]
            except AnsibleFailJson as exc:
                return "fail", exc.args[0]
        raise AssertionError("the module returned without exit_json or fail_json")

    return runner


# --- GGUF files for the reader ----------------------------------------------------------------

def _gguf_string(text):
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def _gguf_kv(key, value):
    out = _gguf_string(key)
    if isinstance(value, str):
        return out + struct.pack("<I", 8) + _gguf_string(value)
    if isinstance(value, list):
        out += struct.pack("<I", 9) + struct.pack("<I", 8) + struct.pack("<Q", len(value))
        return out + b"".join(_gguf_string(item) for item in value)
    return out + struct.pack("<I", 4) + struct.pack("<I", value)


def write_gguf(path, metadata, tensors, version=3, data_bytes=0):
    """Minimal GGUF writer: metadata (str / u32 / string arrays), tensors (name, dims, ggml type)."""
    body = b"GGUF" + struct.pack("<I", version) + struct.pack("<Q", len(tensors)) + struct.pack("<Q", len(metadata))
    for key, value in metadata:
        body += _gguf_kv(key, value)
    offset = 0
    for name, dims, type_id in tensors:
        body += _gguf_string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        body += struct.pack("<I", type_id) + struct.pack("<Q", offset)
        offset += 32
    body += b"\0" * (-len(body) % 32) + b"\0" * data_bytes
    path.write_bytes(body)
    return path


def smollm2_gguf(path):
    """SmolLM2-135M shapes: Q8_0 embedding (tied), Q4_1 matrices, F32 norms."""
    tokens = ["t%d" % i for i in range(49152)]
    meta = [("general.architecture", "llama"), ("general.name", "SmolLM2 135M Instruct"),
            ("general.file_type", 3), ("llama.block_count", 30), ("llama.context_length", 8192),
            ("llama.embedding_length", 576), ("llama.feed_forward_length", 1536),
            ("llama.attention.head_count", 9), ("llama.attention.head_count_kv", 3),
            ("tokenizer.ggml.tokens", tokens)]
    tensors = [("token_embd.weight", [576, 49152], 8), ("output_norm.weight", [576], 0)]
    for i in range(30):
        for name, dims in (("attn_q", [576, 576]), ("attn_k", [576, 192]), ("attn_v", [576, 192]),
                           ("attn_output", [576, 576]), ("ffn_gate", [576, 1536]), ("ffn_up", [576, 1536]),
                           ("ffn_down", [1536, 576])):
            tensors.append(("blk.%d.%s.weight" % (i, name), dims, 3))
        tensors.append(("blk.%d.attn_norm.weight" % i, [576], 0))
        tensors.append(("blk.%d.ffn_norm.weight" % i, [576], 0))
    return write_gguf(path, meta, tensors)


@pytest.fixture
def gguf():
    """gguf.write(path, metadata, tensors) and gguf.smollm2(path) (SmolLM2-135M shapes)."""
    return types.SimpleNamespace(write=write_gguf, smollm2=smollm2_gguf, string=_gguf_string)
