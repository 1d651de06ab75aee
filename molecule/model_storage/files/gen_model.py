# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""Writes deterministic test "model" files: the same arguments give the same bytes on any
host and Python (SHAKE-256 of the seed is an extendable-output function), so the scenario
can pin their sha256 like an operator pins a real model's.

    gen_model.py OUTDIR PATH:SIZE:SEED [PATH:SIZE:SEED ...] [--corrupt PATH]

--corrupt flips one byte in the middle of PATH after writing it: same size, other digest.
Prints "sha256  size  path" per file.
"""
import argparse
import hashlib
import os
import sys


def content(seed, path, size):
    return hashlib.shake_256(("%s:%s" % (seed, path)).encode("ascii")).digest(size)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("outdir")
    parser.add_argument("files", nargs="+", help="PATH:SIZE:SEED")
    parser.add_argument("--corrupt", action="append", default=[])
    args = parser.parse_args()
    for spec in args.files:
        path, size, seed = spec.rsplit(":", 2)
        data = bytearray(content(seed, path, int(size)))
        if path in args.corrupt:
            data[len(data) // 2] ^= 0xFF
        dest = os.path.join(args.outdir, path)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        tmp = dest + ".tmp"
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, dest)
        sys.stdout.write("%s  %d  %s\n" % (hashlib.sha256(data).hexdigest(), len(data), path))


if __name__ == "__main__":
    main()
