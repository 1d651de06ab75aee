# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fingerprints and user IDs of an OpenPGP public key file, without gpg.

A repository signing key must be checked against the fingerprint its publisher states
before apt trusts it. gpg needs a home directory (it creates ~/.gnupg), so this reads the
packets itself: ASCII armor (RFC 9580 section 6, CRC-24 checked when present) or binary,
old and new packet headers (section 4.2), public key and subkey packets (tags 6 and 14)
and user IDs (tag 13). Fingerprints (section 5.5.4): version 4 is SHA-1 over 0x99, a
two-octet length and the packet body; version 6 is SHA-256 over 0x9B, a four-octet length
and the body. Version 5 (never standardised) is read the v6 way with prefix 0x9A.
Python 3.8+, standard library only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct

TAG_PUBLIC_KEY = 6
TAG_PUBLIC_SUBKEY = 14
TAG_USER_ID = 13
ARMOR_BEGIN = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
ARMOR_END = "-----END PGP PUBLIC KEY BLOCK-----"


class KeyFormatError(Exception):
    """The data is not an OpenPGP public key this reader understands."""


def crc24(data):
    crc = 0xB704CE
    for byte in bytearray(data):
        crc ^= byte << 16
        for _bit in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def dearmor(text):
    """The binary packets of the first public key block in text. Raises KeyFormatError."""
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n")]
    try:
        start = lines.index(ARMOR_BEGIN)
        end = lines.index(ARMOR_END, start)
    except ValueError:
        raise KeyFormatError("no '%s' ... '%s' block" % (ARMOR_BEGIN, ARMOR_END))
    body = lines[start + 1:end]
    # Armor headers ("Comment: ...") end at the first blank line; some writers omit both.
    if "" in body and all(":" in line for line in body[:body.index("")]):
        body = body[body.index("") + 1:]
    checksum = None
    if body and body[-1].startswith("=") and len(body[-1]) == 5:
        checksum = body.pop()
    try:
        data = base64.b64decode("".join(line for line in body if line), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyFormatError("the armored data is not valid base64: %s" % exc)
    if checksum is not None:
        try:
            expected = struct.unpack(">I", b"\0" + base64.b64decode(checksum[1:]))[0]
        except (binascii.Error, ValueError, struct.error):
            raise KeyFormatError("the armor checksum line %r is not valid" % checksum)
        if crc24(data) != expected:
            raise KeyFormatError("the armor checksum does not match the data: the file is damaged")
    return data


def packets(data):
    """[(tag, body)] of the OpenPGP packets in data. Raises KeyFormatError."""
    result = []
    data = bytearray(data)
    pos = 0
    while pos < len(data):
        first = data[pos]
        if not first & 0x80:
            raise KeyFormatError("byte %d is not a packet header" % pos)
        if first & 0x40:   # new format
            tag = first & 0x3F
            pos += 1
            if pos >= len(data):
                raise KeyFormatError("truncated packet header")
            octet = data[pos]
            if octet < 192:
                length, pos = octet, pos + 1
            elif octet < 224:
                if pos + 1 >= len(data):
                    raise KeyFormatError("truncated packet length")
                length, pos = ((octet - 192) << 8) + data[pos + 1] + 192, pos + 2
            elif octet == 255:
                if pos + 4 >= len(data):
                    raise KeyFormatError("truncated packet length")
                length, pos = struct.unpack(">I", bytes(data[pos + 1:pos + 5]))[0], pos + 5
            else:
                raise KeyFormatError("partial body lengths are not allowed in key packets")
        else:              # old (legacy) format
            tag = (first >> 2) & 0x0F
            kind = first & 0x03
            pos += 1
            if kind == 3:
                length = len(data) - pos
            else:
                size = (1, 2, 4)[kind]
                if pos + size > len(data):
                    raise KeyFormatError("truncated packet length")
                length = int(binascii.hexlify(bytes(data[pos:pos + size])), 16)
                pos += size
        if pos + length > len(data):
            raise KeyFormatError("a packet runs past the end of the data")
        result.append((tag, bytes(data[pos:pos + length])))
        pos += length
    return result


def fingerprint(body):
    """(version, upper-case hex fingerprint) of a public key or subkey packet body."""
    if not body:
        raise KeyFormatError("empty key packet")
    version = bytearray(body)[0]
    if version == 4:
        digest = hashlib.sha1(b"\x99" + struct.pack(">H", len(body)) + body).hexdigest()
    elif version in (5, 6):
        prefix = b"\x9a" if version == 5 else b"\x9b"
        digest = hashlib.sha256(prefix + struct.pack(">I", len(body)) + body).hexdigest()
    else:
        raise KeyFormatError("key packet version %d is not supported (versions 4 and 6 are)" % version)
    return version, digest.upper()


def normalize(text):
    """A fingerprint as written by people ("C95B 321B ...", "0x...") in upper-case hex."""
    value = "".join((text or "").split()).upper()
    return value[2:] if value.startswith("0X") else value


def key_info(data):
    """{primary_fingerprint, version, fingerprints, user_ids} for armored text or binary
    data holding one public key (certificate). Raises KeyFormatError."""
    if isinstance(data, bytes):
        stripped = data.lstrip()
        if stripped.startswith(b"-----BEGIN"):
            try:
                data = dearmor(stripped.decode("ascii"))
            except UnicodeDecodeError:
                raise KeyFormatError("the armored key is not ASCII text")
    else:
        data = dearmor(data)
    found = packets(data)
    keys = [(tag, body) for tag, body in found if tag in (TAG_PUBLIC_KEY, TAG_PUBLIC_SUBKEY)]
    if not keys or keys[0][0] != TAG_PUBLIC_KEY:
        raise KeyFormatError("no public key packet first: this is not an OpenPGP public key")
    if len([tag for tag, _body in keys if tag == TAG_PUBLIC_KEY]) > 1:
        raise KeyFormatError("more than one public key in one file; give the repository's key alone")
    version, primary = fingerprint(keys[0][1])
    return {
        "primary_fingerprint": primary,
        "version": version,
        "fingerprints": [fingerprint(body)[1] for _tag, body in keys],
        "user_ids": [body.decode("utf-8", "replace") for tag, body in found if tag == TAG_USER_ID],
    }
