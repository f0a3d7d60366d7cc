#!/usr/bin/env python3
"""Decompress the vmlinux ELF out of a bzImage (what the kernel's scripts/extract-vmlinux does).

Debian 6.1 "cloud" kernels use LZ4 (legacy frame), the standard flavour xz, 6.12 zstd.
xz is done with Python's lzma; LZ4 and zstd need the `lz4` / `zstd` command-line tools.
The first candidate whose output starts with an ELF header wins.
"""

import lzma
import subprocess
import sys

MAGICS = [
    ("lz4", b"\x02\x21\x4c\x18"),
    ("xz", b"\xfd7zXZ\x00"),
    ("zstd", b"\x28\xb5\x2f\xfd"),
]


def candidates(data):
    for kind, magic in MAGICS:
        pos = data.find(magic)
        while pos >= 0:
            yield kind, pos
            pos = data.find(magic, pos + 1)


def decompress(kind, blob):
    if kind == "xz":
        d = lzma.LZMADecompressor()
        try:
            return d.decompress(blob)
        except lzma.LZMAError:
            return b""
    tool = {"lz4": ["lz4", "-dc"], "zstd": ["zstd", "-dc"]}[kind]
    # trailing bytes after the payload make both tools exit non-zero; the output is complete
    proc = subprocess.run(tool, input=blob, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return proc.stdout


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: extract_vmlinux.py vmlinuz vmlinux.elf")
    data = open(sys.argv[1], "rb").read()
    for kind, pos in candidates(data):
        out = decompress(kind, data[pos:])
        if out[:4] == b"\x7fELF":
            with open(sys.argv[2], "wb") as fh:
                fh.write(out)
            print(f"{kind} payload at {pos:#x}: {len(out)} bytes")
            return 0
    sys.exit("no ELF payload found")


if __name__ == "__main__":
    sys.exit(main())
