# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The openpgp_key_info module on key files in a temporary directory."""

from __future__ import annotations

from ansible_collections.llmops.gpu_stack.plugins.modules import openpgp_key_info

KEY = """-----BEGIN PGP PUBLIC KEY BLOCK-----

xjMEU/NfCxYJKwYBBAHaRw8BAQdAPwmJlL3ZFu1AUxl5NOSofIBzOhKA1i+AEJku
Q+47JAY=
-----END PGP PUBLIC KEY BLOCK-----
"""
FINGERPRINT = "C959BDBAFA32A2F89A153B678CFDE12197965A9A"


def key_file(tmp_path, text=KEY):
    path = tmp_path / "key.asc"
    path.write_text(text)
    return str(path)


def test_matching_key(run_module, tmp_path):
    outcome, result = run_module(openpgp_key_info.main, {"path": key_file(tmp_path), "fingerprint": FINGERPRINT.lower()},
                                 check_mode=True)
    assert outcome == "exit" and result["changed"] is False
    assert result["exists"] is True and result["matches"] is True and result["primary_fingerprint"] == FINGERPRINT


def test_other_key_does_not_match(run_module, tmp_path):
    outcome, result = run_module(openpgp_key_info.main, {"path": key_file(tmp_path), "fingerprint": "C95B321B61E88C1809C4F759DDCAE044F796ECB0"})
    assert outcome == "exit" and result["matches"] is False


def test_without_expected_fingerprint(run_module, tmp_path):
    outcome, result = run_module(openpgp_key_info.main, {"path": key_file(tmp_path)})
    assert outcome == "exit" and result["matches"] is None and result["fingerprints"] == [FINGERPRINT]


def test_missing_file_is_reported_not_failed(run_module, tmp_path):
    outcome, result = run_module(openpgp_key_info.main, {"path": str(tmp_path / "absent.asc"), "fingerprint": FINGERPRINT})
    assert outcome == "exit" and result["exists"] is False and result["matches"] is None


def test_malformed_expected_fingerprint(run_module, tmp_path):
    outcome, result = run_module(openpgp_key_info.main, {"path": key_file(tmp_path), "fingerprint": "C95B321B"})
    assert outcome == "fail" and "is not a version 4 (40 hex digits)" in result["msg"]


def test_not_a_key(run_module, tmp_path):
    outcome, result = run_module(openpgp_key_info.main, {"path": key_file(tmp_path, "<html>rate limited</html>")})
    assert outcome == "fail" and "is not a usable OpenPGP public key" in result["msg"] and "Fix:" in result["msg"]
