# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The OpenPGP key reader the nvidia_container_toolkit role checks the repository key with.
Known answers from RFC 9580 Appendix A (A.1 version 4 key, A.3 version 6 certificate)."""

from __future__ import annotations

import base64

import pytest

from ansible_collections.llmops.gpu_stack.plugins.module_utils import _openpgp_key_info as k

V4_BODY = base64.b64decode("xjMEU/NfCxYJKwYBBAHaRw8BAQdAPwmJlL3ZFu1AUxl5NOSofIBzOhKA1i+AEJkuQ+47JAY=")[2:]
V4_FINGERPRINT = "C959BDBAFA32A2F89A153B678CFDE12197965A9A"
V4_ARMORED = """-----BEGIN PGP PUBLIC KEY BLOCK-----

xjMEU/NfCxYJKwYBBAHaRw8BAQdAPwmJlL3ZFu1AUxl5NOSofIBzOhKA1i+AEJku
Q+47JAY=
-----END PGP PUBLIC KEY BLOCK-----
"""
V6_ARMORED = """-----BEGIN PGP PUBLIC KEY BLOCK-----

xioGY4d/4xsAAAAg+U2nu0jWCmHlZ3BqZYfQMxmZu52JGggkLq2EVD34laPCsQYf
GwoAAABCBYJjh3/jAwsJBwUVCg4IDAIWAAKbAwIeCSIhBssYbE8GCaaX5NUt+mxy
KwwfHifBilZwj2Ul7Ce62azJBScJAgcCAAAAAK0oIBA+LX0ifsDm185Ecds2v8lw
gyU2kCcUmKfvBXbAf6rhRYWzuQOwEn7E/aLwIwRaLsdry0+VcallHhSu4RN6HWaE
QsiPlR4zxP/TP7mhfVEe7XWPxtnMUMtf15OyA51YBM4qBmOHf+MZAAAAIIaTJINn
+eUBXbki+PSAld2nhJh/LVmFsS+60WyvXkQ1wpsGGBsKAAAALAWCY4d/4wKbDCIh
BssYbE8GCaaX5NUt+mxyKwwfHifBilZwj2Ul7Ce62azJAAAAAAQBIKbpGG2dWTX8
j+VjFM21J0hqWlEg+bdiojWnKfA5AQpWUWtnNwDEM0g12vYxoWM8Y81W+bHBw805
I8kWVkXU6vFOi+HWvv/ira7ofJu16NnoUkhclkUrk0mXubZvyl4GBg==
-----END PGP PUBLIC KEY BLOCK-----
"""
V6_FINGERPRINT = "CB186C4F0609A697E4D52DFA6C722B0C1F1E27C18A56708F6525EC27BAD9ACC9"
V6_SUBKEY = "12C83F1E706F6308FE151A417743A1F033790E93E9978488D1DB378DA9930885"
USER_ID = b"Repository signing key <repo@example.invalid>"


def old_format(tag, body):
    """A legacy-format packet with a one-octet length, as older gpg versions write keys."""
    return bytes(bytearray([0x80 | (tag << 2)])) + bytes(bytearray([len(body)])) + body


def armor(data, header="Comment: test key"):
    crc = k.crc24(data)
    encoded = base64.b64encode(data).decode()
    lines = [encoded[i:i + 64] for i in range(0, len(encoded), 64)]
    checksum = "=" + base64.b64encode(bytes(bytearray([crc >> 16, (crc >> 8) & 0xFF, crc & 0xFF]))).decode()
    return "\n".join([k.ARMOR_BEGIN, header, ""] + lines + [checksum, k.ARMOR_END, ""])


def test_crc24_known_answer():
    assert k.crc24(b"123456789") == 0x21CF02     # the CRC-24/OpenPGP check value


def test_rfc9580_version_4_key():
    info = k.key_info(V4_ARMORED)
    assert info["primary_fingerprint"] == V4_FINGERPRINT and info["version"] == 4
    assert info["fingerprints"] == [V4_FINGERPRINT] and info["user_ids"] == []


def test_rfc9580_version_6_certificate_with_subkey():
    info = k.key_info(V6_ARMORED)
    assert info["primary_fingerprint"] == V6_FINGERPRINT and info["version"] == 6
    assert info["fingerprints"] == [V6_FINGERPRINT, V6_SUBKEY]


def test_binary_and_armored_bytes_give_the_same_answer():
    binary = k.dearmor(V6_ARMORED)
    assert k.key_info(binary)["fingerprints"] == k.key_info(V6_ARMORED.encode())["fingerprints"]


def test_legacy_packets_with_user_id_armor_header_and_checksum():
    data = old_format(k.TAG_PUBLIC_KEY, V4_BODY) + old_format(k.TAG_USER_ID, USER_ID)
    info = k.key_info(armor(data))
    assert info["primary_fingerprint"] == V4_FINGERPRINT
    assert info["user_ids"] == [USER_ID.decode()]


def test_new_format_two_octet_length():
    body = USER_ID * 5   # 225 octets: needs the two-octet new-format length
    packet = bytes(bytearray([0xC0 | k.TAG_USER_ID, ((len(body) - 192) >> 8) + 192, (len(body) - 192) & 0xFF])) + body
    assert k.packets(old_format(k.TAG_PUBLIC_KEY, V4_BODY) + packet)[1] == (k.TAG_USER_ID, body)


@pytest.mark.parametrize("fingerprint, expected", [
    ("0xc959 bdba fa32 a2f8 9a15  3b67 8cfd e121 9796 5a9a", V4_FINGERPRINT),
    (" C959BDBAFA32A2F89A153B678CFDE12197965A9A\n", V4_FINGERPRINT),
])
def test_normalize(fingerprint, expected):
    assert k.normalize(fingerprint) == expected


def test_damaged_armor_checksum():
    text = armor(old_format(k.TAG_PUBLIC_KEY, V4_BODY))
    damaged = text.replace(text.split("\n")[3], text.split("\n")[3][:-2] + "AA")
    with pytest.raises(k.KeyFormatError, match="checksum does not match"):
        k.key_info(damaged)


@pytest.mark.parametrize("data, message", [
    ("<html>404 Not Found</html>", "no '-----BEGIN PGP PUBLIC KEY BLOCK-----'"),
    (V4_ARMORED.replace("xjMEU", "xj*EU"), "not valid base64"),
    (b"\x00\x01\x02", "byte 0 is not a packet header"),
    (old_format(k.TAG_PUBLIC_KEY, V4_BODY)[:-3], "runs past the end"),
    (old_format(k.TAG_USER_ID, USER_ID), "no public key packet first"),
    (old_format(k.TAG_PUBLIC_KEY, V4_BODY) * 2, "more than one public key"),
    (old_format(k.TAG_PUBLIC_KEY, b"\x03" + V4_BODY[1:]), "version 3 is not supported"),
])
def test_refuses_what_is_not_one_public_key(data, message):
    with pytest.raises(k.KeyFormatError, match=message):
        k.key_info(data)
