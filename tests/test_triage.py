"""triage.py: file classification of rebuilt files, against independent ground truth.

Ground truth never comes from the module under test: a real system ELF is
described by ``readelf`` (or the known facts of /bin/true on x86-64 Debian),
hand-built ELF and PE files by the values they were built with, archives by
the stdlib modules that wrote them, entropy by a direct -sum(p log2 p), and
the imphash by its published definition (md5 of "dll.func,...") and by pefile
itself, the reference implementation. Hostile inputs (random bytes after the
magic, mutated headers) must never raise.

A longer fuzz run: ``PKRAM_TRIAGE_EXAMPLES=5000 pytest tests/test_triage.py``.
"""

import bz2
import collections
import datetime
import gzip
import hashlib
import io
import lzma
import math
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import time
import tracemalloc
import zipfile

import pefile
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from volatility_pkram.output.triage import (HEAD_SIZE, KINDS, Triage, TriageSampler, shannon_entropy,
                                     triage, triage_bytes)

EXAMPLES = int(os.environ.get("PKRAM_TRIAGE_EXAMPLES", "80"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


# -- independent helpers ------------------------------------------------------

def ref_entropy(data: bytes) -> float:
    if not data:
        return 0.0
    n = len(data)
    return -sum(c / n * math.log2(c / n) for c in collections.Counter(data).values()) + 0.0


def feed_chunked(data: bytes, seed: int, keep_limit=None, holes=True) -> TriageSampler:
    """Feed ``data`` in random-sized chunks; all-zero chunks go in as holes."""
    rng = random.Random(seed)
    s = TriageSampler() if keep_limit is None else TriageSampler(keep_limit=keep_limit)
    pos = 0
    while pos < len(data):
        n = rng.choice([1, 7, 100, 4096, rng.randrange(1, 20000)])
        chunk = data[pos:pos + n]
        if holes and not chunk.strip(b"\0"):
            s.feed_zeros(len(chunk))
        else:
            s.feed(chunk)
        pos += len(chunk)
    return s


def assert_sane(t: Triage) -> None:
    assert t.kind in KINDS
    assert isinstance(t.detail, str) and t.detail
    assert t.detail.isprintable(), t.detail          # one line, no escapes
    assert 0.0 <= t.entropy <= 8.0


# -- a real system ELF, described by readelf ---------------------------------------

READELF_MACHINES = {"Advanced Micro Devices X86-64": "x86-64", "AArch64": "AArch64",
                    "Intel 80386": "i386", "ARM": "ARM", "RISC-V": "RISC-V",
                    "PowerPC64": "PowerPC64", "IBM S/390": "S/390"}


def system_elf_facts(path: str):
    """(class, machine, type, interpreter) of ``path`` from readelf, not from triage."""
    if shutil.which("readelf"):
        out = subprocess.run(["readelf", "-h", "-l", "-W", path], capture_output=True,
                             text=True, check=True).stdout
        cls = re.search(r"Class:\s+(\S+)", out).group(1)
        machine = re.search(r"Machine:\s+(.+)", out).group(1).strip()
        etype = re.search(r"Type:\s+(\S+)", out).group(1)
        m = re.search(r"\[Requesting program interpreter: (.+)\]", out)
        return cls, READELF_MACHINES.get(machine, machine), etype, (m.group(1) if m else None)
    # Known facts of /bin/true on x86-64 Debian.
    return "ELF64", "x86-64", "DYN", "/lib64/ld-linux-x86-64.so.2"


@pytest.fixture(scope="module")
def real_elf(tmp_path_factory):
    src = "/bin/true"
    if not os.path.exists(src):
        pytest.skip("no /bin/true")
    dst = tmp_path_factory.mktemp("elf") / "true"
    shutil.copyfile(src, dst)
    return dst.read_bytes(), system_elf_facts(str(dst))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_real_elf_fed_in_random_chunks(real_elf, seed):
    data, (cls, machine, etype, interp) = real_elf
    s = feed_chunked(data, seed)
    assert s.size == len(data) and s.complete_copy
    counts = collections.Counter(data)
    assert s.histogram == tuple(counts.get(b, 0) for b in range(256))
    t = triage(s)
    assert_sane(t)
    assert t.kind == "ELF"
    assert (t.elf_class, t.elf_machine, t.elf_type, t.elf_interpreter) == (cls, machine, etype, interp)
    assert t.entropy == pytest.approx(ref_entropy(data), abs=1e-9)
    assert t.size == len(data)
    if etype == "DYN" and interp:
        assert "PIE executable" in t.detail and interp in t.detail


def test_real_elf_head_only(real_elf):
    # keep_limit 0 and a file larger than the head: everything comes from the head.
    data, (cls, machine, etype, interp) = real_elf
    big = data + bytes(HEAD_SIZE)
    s = feed_chunked(big, 9, keep_limit=0)
    assert not s.complete_copy and s.whole_file() is None and s.head == big[:HEAD_SIZE]
    t = triage(s)
    assert (t.elf_class, t.elf_machine, t.elf_type, t.elf_interpreter) == (cls, machine, etype, interp)
    assert "held" in t.detail


# -- hand-built ELF files -----------------------------------------------------------

def build_elf(*, cls=2, endian="<", e_type=2, machine=62, interp=b"/lib/ld.so.1\0",
              dynamic=False, interp_offset=None, phentsize=None, phnum=None):
    """A minimal ELF: header, program headers, then the PT_INTERP string."""
    ehsize, phsz = (52, 32) if cls == 1 else (64, 56)
    phdrs = []                                   # (type, flags, offset, filesz)
    n = 1 + (interp is not None) + dynamic
    data_off = ehsize + n * phsz
    blob = b""
    if interp is not None:
        off = data_off if interp_offset is None else interp_offset
        phdrs.append((3, 4, off, len(interp)))
        if interp_offset is None:
            blob += interp
    if dynamic:
        dyn_off = data_off + len(blob)
        fmt = endian + ("iI" if cls == 1 else "qQ")
        dyn = struct.pack(fmt, 0x6FFFFFFB, 0x08000000) + struct.pack(fmt, 0, 0)
        phdrs.append((2, 6, dyn_off, len(dyn)))
        blob += dyn
    phdrs.append((1, 5, 0, data_off + len(blob)))
    ident = b"\x7fELF" + bytes([cls, 1 if endian == "<" else 2, 1]) + bytes(9)
    hfmt = "HHIIIIIHHHHHH" if cls == 1 else "HHIQQQIHHHHHH"
    hdr = ident + struct.pack(endian + hfmt, e_type, machine, 1, 0x1000, ehsize, 0, 0, ehsize,
                              phentsize or phsz, len(phdrs) if phnum is None else phnum, 0, 0, 0)
    body = b""
    for p_type, flags, off, filesz in phdrs:
        if cls == 1:
            body += struct.pack(endian + "IIIIIIII", p_type, off, off, off, filesz, filesz, flags, 4)
        else:
            body += struct.pack(endian + "IIQQQQQQ", p_type, flags, off, off, off, filesz, filesz, 8)
    out = hdr + body + blob
    if interp is not None and interp_offset is not None:
        out = out.ljust(interp_offset, b"\0") + interp
    return out


def test_hand_built_elf32_big_endian():
    data = build_elf(cls=1, endian=">", e_type=2, machine=8, interp=b"/lib/ld.so.1\0")
    t = triage_bytes(data)
    assert (t.kind, t.elf_class, t.elf_machine, t.elf_type, t.elf_interpreter) == \
        ("ELF", "ELF32", "MIPS", "EXEC", "/lib/ld.so.1")
    assert "MSB executable" in t.detail
    if shutil.which("readelf"):   # the builder itself checked by an independent parser
        import tempfile
        with tempfile.NamedTemporaryFile(suffix=".elf") as f:
            f.write(data)
            f.flush()
            out = subprocess.run(["readelf", "-h", "-l", f.name], capture_output=True, text=True).stdout
        assert "ELF32" in out and "big endian" in out and "/lib/ld.so.1" in out


@pytest.mark.parametrize("machine,name", [(3, "i386"), (62, "x86-64"), (183, "AArch64"),
                                          (40, "ARM"), (243, "RISC-V"), (0x1234, "0x1234")])
def test_elf_machines(machine, name):
    assert triage_bytes(build_elf(cls=2, machine=machine)).elf_machine == name


def test_elf_types_and_static():
    t = triage_bytes(build_elf(e_type=2, interp=None))
    assert t.elf_type == "EXEC" and t.elf_interpreter is None and "statically linked" in t.detail
    t = triage_bytes(build_elf(e_type=3, interp=None, dynamic=True))
    assert t.elf_type == "DYN" and "shared object" in t.detail
    t = triage_bytes(build_elf(e_type=3, interp=b"/lib64/ld-linux-x86-64.so.2\0", dynamic=True))
    assert "PIE executable" in t.detail and "DF_1_PIE" not in t.detail
    assert triage_bytes(build_elf(e_type=1, interp=None)).elf_type == "REL"
    assert triage_bytes(build_elf(e_type=4, interp=None)).elf_type == "CORE"


def test_elf_hostile_interpreter_is_escaped():
    t = triage_bytes(build_elf(interp=b"/lib/x\n\x1b[31mevil\0"))
    assert t.elf_interpreter == "/lib/x\\x0a\\x1b[31mevil"
    assert_sane(t)


def test_elf_interp_beyond_head_uses_copy_or_says_so():
    data = build_elf(e_type=3, interp=b"/far/away/ld.so\0", interp_offset=HEAD_SIZE + 4096)
    assert triage(feed_chunked(data, 1)).elf_interpreter == "/far/away/ld.so"
    t = triage(feed_chunked(data, 1, keep_limit=0))
    assert t.elf_interpreter is None and "PT_INTERP outside the held bytes" in t.detail
    assert "PIE executable" in t.detail        # the PT_INTERP exists even if unread


def test_elf_bad_program_header_fields():
    t = triage_bytes(build_elf(phnum=0xFFFE))
    assert_sane(t)
    assert "capped" in t.detail
    assert "PN_XNUM" in triage_bytes(build_elf(phnum=0xFFFF)).detail
    assert "bad e_phentsize" in triage_bytes(build_elf(phentsize=8)).detail
    t = triage_bytes(b"\x7fELF\x02\x01\x01" + bytes(20))
    assert t.kind == "ELF" and "truncated" in t.detail


# -- a hand-built PE --------------------------------------------------------------

IMPORTS = (("KERNEL32.dll", ("ExitProcess", "GetStdHandle")),)
IMPHASH = hashlib.md5(b"kernel32.exitprocess,kernel32.getstdhandle").hexdigest()
STAMP = 1600000000          # 2020-09-13 12:26:40 UTC


def build_pe(*, pe32plus=True, machine=0x8664, timestamp=STAMP, dll=False, imports=IMPORTS,
             signed=False, raw_offset=0x200, subsystem=3):
    """DOS header, PE header, optional header, one .text section holding the imports."""
    fa, sa, text_rva = 0x200, 0x1000, 0x1000
    thunk = "<Q" if pe32plus else "<I"
    sec = bytearray(b"\xc3" + b"\xcc" * 15)             # entry point: ret
    desc_off = len(sec)
    sec += bytes(20 * (len(imports) + 1))               # descriptors + null terminator
    for i, (dll_name, funcs) in enumerate(imports):
        hint_names = []
        for f in funcs:
            sec += bytes(len(sec) % 2)
            hint_names.append(text_rva + len(sec))
            sec += struct.pack("<H", 0) + f.encode() + b"\0"
        name_rva = text_rva + len(sec)
        sec += dll_name.encode() + b"\0"
        sec += bytes(-len(sec) % 8)
        ilt_rva = text_rva + len(sec)
        sec += b"".join(struct.pack(thunk, r) for r in hint_names) + struct.pack(thunk, 0)
        iat_rva = text_rva + len(sec)
        sec += b"".join(struct.pack(thunk, r) for r in hint_names) + struct.pack(thunk, 0)
        struct.pack_into("<IIIII", sec, desc_off + 20 * i, ilt_rva, 0, 0, name_rva, iat_rva)
    vsize = len(sec)
    sec += bytes(-len(sec) % fa)

    dirs = [(0, 0)] * 16
    if imports:
        dirs[1] = (text_rva + desc_off, 20 * (len(imports) + 1))
    size_of_image = text_rva + (vsize + sa - 1) // sa * sa
    if pe32plus:
        opt = struct.pack("<HBBIIIIIQIIHHHHHHIIIIHHQQQQII", 0x20B, 14, 0, len(sec), 0, 0, text_rva,
                          text_rva, 0x140000000, sa, fa, 6, 0, 0, 0, 6, 0, 0, size_of_image, fa, 0,
                          subsystem, 0x8160, 0x100000, 0x1000, 0x100000, 0x1000, 0, 16)
    else:
        opt = struct.pack("<HBBIIIIIIIIIHHHHHHIIIIHHIIIIII", 0x10B, 14, 0, len(sec), 0, 0, text_rva,
                          text_rva, 0, 0x400000, sa, fa, 6, 0, 0, 0, 6, 0, 0, size_of_image, fa, 0,
                          subsystem, 0x8140, 0x100000, 0x1000, 0x100000, 0x1000, 0, 16)
    dir_off = len(opt)
    opt += b"".join(struct.pack("<II", *d) for d in dirs)
    chars = 0x0002 | (0x0020 if pe32plus else 0x0100) | (0x2000 if dll else 0)
    coff = struct.pack("<HHIIIHH", machine, 1, timestamp, 0, 0, len(opt), chars)
    shdr = struct.pack("<8sIIIIIIHHI", b".text", vsize, text_rva, len(sec), raw_offset, 0, 0, 0, 0,
                       0x60000020)
    dos = bytearray(64)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 64)
    headers = bytes(dos) + b"PE\0\0" + coff + opt + shdr
    out = bytearray(headers.ljust(raw_offset, b"\0") + sec)
    if signed:
        # A WIN_CERTIFICATE (revision 2, PKCS#7) at the end; contents irrelevant, never verified.
        cert = struct.pack("<IHH", 8 + 24, 0x0200, 0x0002) + b"\x30\x82" + bytes(22)
        cert_off = len(out)
        out += cert
        struct.pack_into("<II", out, 64 + 4 + 20 + dir_off + 4 * 8, cert_off, len(cert))
    return bytes(out)


def test_pe32plus_fields():
    data = build_pe()
    # pefile on the same bytes (full load) is the reference imphash; it must also
    # match the published definition computed above.
    assert pefile.PE(data=data).get_imphash() == IMPHASH
    t = triage(feed_chunked(data, 5))
    assert_sane(t)
    assert t.kind == "PE" and t.pe_format == "PE32+"
    assert t.pe_machine == "AMD64"
    assert t.pe_timestamp == datetime.datetime(2020, 9, 13, 12, 26, 40, tzinfo=datetime.timezone.utc)
    assert t.pe_sections == [".text"]
    assert t.pe_imphash == IMPHASH
    assert t.pe_signed is False and t.pe_dll is False
    assert t.pe_subsystem == "WINDOWS_CUI"
    assert "unsigned" in t.detail and IMPHASH in t.detail
    assert t.as_dict()["pe_timestamp"] == "2020-09-13T12:26:40+00:00"


def test_pe_signed():
    data = build_pe(signed=True)
    t = triage_bytes(data)
    assert t.pe_signed is True and "Authenticode signature present" in t.detail
    assert t.pe_imphash == IMPHASH


def test_pe32_dll_i386():
    data = build_pe(pe32plus=False, machine=0x14C, dll=True, subsystem=2)
    assert pefile.PE(data=data).get_imphash() == IMPHASH
    t = triage_bytes(data)
    assert (t.pe_format, t.pe_machine, t.pe_dll, t.pe_subsystem) == ("PE32", "I386", True, "WINDOWS_GUI")
    assert t.pe_imphash == IMPHASH and "DLL" in t.detail


def test_pe_arm64_no_imports():
    t = triage_bytes(build_pe(machine=0xAA64, imports=()))
    assert t.pe_machine == "ARM64" and t.pe_imphash == "" and "no imports" in t.detail


def test_pe_with_overlay_beyond_keep_limit():
    # Sections held in the head, a big overlay dropped: imports are still exact.
    s = TriageSampler(keep_limit=HEAD_SIZE)
    s.feed(build_pe())
    s.feed_zeros(1 << 20)
    assert not s.complete_copy
    t = triage(s)
    assert t.pe_imphash == IMPHASH and "overlay not held" in t.detail


def test_pe_sections_beyond_head():
    data = build_pe(raw_offset=HEAD_SIZE + 0x2000)
    assert pefile.PE(data=data).get_imphash() == IMPHASH
    assert triage(feed_chunked(data, 3)).pe_imphash == IMPHASH           # kept whole
    t = triage(feed_chunked(data, 3, keep_limit=0))                      # head only
    assert t.kind == "PE" and t.pe_imphash is None and "imports not read" in t.detail
    assert t.pe_machine == "AMD64" and t.pe_sections == [".text"]


def test_mz_without_pe_is_data():
    t = triage_bytes(b"MZ" + bytes(62) + b"This program cannot be run in DOS mode" + bytes(100))
    assert t.kind == "data" and "MZ" in t.detail


# -- hostile headers never raise -------------------------------------------------------

@FUZZ
@given(cls=st.sampled_from([0, 1, 2, 3]), data_=st.sampled_from([0, 1, 2, 7]),
       rest=st.binary(max_size=600))
def test_garbage_after_elf_magic(cls, data_, rest):
    t = triage_bytes(b"\x7fELF" + bytes([cls, data_]) + rest)
    assert_sane(t)
    assert t.kind == "ELF"


@FUZZ
@given(rest=st.binary(max_size=800), lfanew=st.sampled_from([0x40, 0x80, 0xFFFFFFF0]))
def test_garbage_after_pe_signature(rest, lfanew):
    head = bytearray(b"MZ" + bytes(62))
    struct.pack_into("<I", head, 0x3C, lfanew)
    t = triage_bytes(bytes(head) + (b"PE\0\0" if lfanew == 0x40 else b"") + rest)
    assert_sane(t)


@pytest.fixture(scope="module")
def valid_headers(real_elf):
    return {"elf": real_elf[0][:4096], "pe": build_pe(signed=True)}


@FUZZ
@given(which=st.sampled_from(["elf", "pe"]),
       edits=st.lists(st.tuples(st.integers(0, 1023), st.integers(0, 255)), min_size=1, max_size=24),
       cut=st.one_of(st.none(), st.integers(0, 4096)))
def test_mutated_headers_never_raise(valid_headers, which, edits, cut):
    data = bytearray(valid_headers[which])
    for pos, val in edits:
        if pos < len(data):
            data[pos] = val
    t = triage_bytes(bytes(data[:cut] if cut is not None else data))
    assert_sane(t)


# -- entropy, histogram, holes ---------------------------------------------------------

def test_entropy_fixed_points():
    assert triage_bytes(bytes(4096)).entropy == 0.0
    assert triage_bytes(bytes(range(256)) * 16).entropy == 8.0
    assert shannon_entropy([0] * 256, 0) == 0.0
    assert shannon_entropy([5, 5] + [0] * 254, 10) == 1.0
    s = TriageSampler()
    s.feed_zeros(1 << 20)
    assert s.entropy == 0.0
    assert "all 1048576 bytes zero" in triage(s).detail


@FUZZ
@given(st.binary(max_size=3000))
def test_entropy_matches_reference(data):
    histogram = [data.count(b) for b in range(256)]
    assert shannon_entropy(histogram, len(data)) == pytest.approx(ref_entropy(data), abs=1e-9)
    assert triage_bytes(data).entropy == pytest.approx(ref_entropy(data), abs=1e-9)


def test_holes_are_counted_not_allocated():
    s = TriageSampler()
    s.feed(b"abc")
    tracemalloc.start()
    t0 = time.perf_counter()
    s.feed_zeros(1 << 40)                         # a 1 TiB hole
    s.feed(b"xyz")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.perf_counter() - t0 < 1.0 and peak < 4 * HEAD_SIZE
    assert s.size == 6 + (1 << 40)
    assert s.histogram[0] == 1 << 40 and s.histogram[ord("a")] == 1 and s.histogram[ord("z")] == 1
    assert not s.complete_copy and s.whole_file() is None
    assert s.head == b"abc" + bytes(HEAD_SIZE - 3)
    expected = -sum(p * math.log2(p) for p in [(1 << 40) / s.size] + [1 / s.size] * 6)
    assert s.entropy == pytest.approx(expected, rel=1e-9)
    t = triage(s)
    assert t.kind == "data" and t.size == s.size


def test_holes_and_data_equal_plain_feed():
    data = os.urandom(3000) + bytes(70000) + b"tail" + bytes(5000)
    plain = TriageSampler()
    plain.feed(data)
    holed = feed_chunked(data, 11)
    assert holed.histogram == plain.histogram and holed.head == plain.head == data[:HEAD_SIZE]
    assert holed.whole_file() == data and holed.entropy == plain.entropy


def test_keep_limit_drops_copy():
    s = TriageSampler(keep_limit=100)
    s.feed(b"x" * 100)
    assert s.complete_copy and s.whole_file() == b"x" * 100
    s.feed(b"y")
    assert not s.complete_copy and s.whole_file() == b"x" * 100 + b"y"   # still all in the head
    s.feed_zeros(HEAD_SIZE)
    assert s.whole_file() is None
    with pytest.raises(ValueError):
        s.feed_zeros(-1)
    s.feed(memoryview(b"mv"))                      # any buffer is accepted
    assert s.size == 103 + HEAD_SIZE


def test_empty():
    t = triage(TriageSampler())
    assert (t.kind, t.entropy, t.size) == ("empty", 0.0, 0)


# -- scripts, archives, text ---------------------------------------------------------

@pytest.mark.parametrize("first,interp", [
    (b"#!/bin/sh", "/bin/sh"),
    (b"#! /usr/bin/python3 -u", "/usr/bin/python3"),
    (b"#!/usr/bin/env python3", "python3"),
    (b"#!/usr/bin/env -S perl -w", "perl"),
    (b"#!/bin/bash\r", "/bin/bash"),
])
def test_scripts(first, interp):
    t = triage_bytes(first + b"\necho hello\n")
    assert t.kind == "script" and t.script_interpreter == interp
    assert interp in t.detail
    assert_sane(t)


def test_script_empty_shebang():
    t = triage_bytes(b"#!\n")
    assert t.kind == "script" and t.script_interpreter is None


def _tar(fmt):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        info = tarfile.TarInfo("hello.txt")
        info.size = 5
        tf.addfile(info, io.BytesIO(b"hello"))
    return buf.getvalue()


def _zip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.txt", "hello")
    return buf.getvalue()


def _cpio_newc(magic=b"070701"):
    # newc header: magic + 13 fields of 8 hex digits, then the name (cpio(5)).
    name = b"a\0"
    fields = [1, 0o100644, 0, 0, 1, 0, 0, 0, 0, 0, 0, len(name), 0]
    return magic + b"".join(b"%08X" % f for f in fields) + name + bytes(4)


PAYLOAD = b"some text to compress " * 50


@pytest.mark.parametrize("data,fmt", [
    (gzip.compress(PAYLOAD), "gzip"),
    (bz2.compress(PAYLOAD), "bzip2"),
    (lzma.compress(PAYLOAD, format=lzma.FORMAT_XZ), "xz"),
    (_zip(), "zip"),
    (_tar(tarfile.USTAR_FORMAT), "tar"),
    (_tar(tarfile.GNU_FORMAT), "tar"),
    (_tar(tarfile.PAX_FORMAT), "tar"),
    (_cpio_newc(b"070701"), "cpio (newc)"),
    (_cpio_newc(b"070702"), "cpio (newc, crc)"),
    # No stdlib writer: the magic numbers from RFC 8878 (zstd) and the 7z format doc.
    (b"\x28\xb5\x2f\xfd\x24\x05\x29\x00\x00hello" , "zstd"),
    (b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(24), "7z"),
])
def test_archives(data, fmt):
    t = triage(feed_chunked(data, 2))
    assert t.kind == "archive" and t.archive_format == fmt
    assert_sane(t)


def test_bzh_text_is_not_bzip2():
    assert triage_bytes(b"BZh is how this line starts\n").kind == "text"


def test_text_kinds():
    t = triage_bytes(b"line one\nline two\n")
    assert (t.kind, t.detail) == ("text", "ASCII text, 2 lines")
    t = triage_bytes("café\r\nnaïve\r\n".encode())
    assert t.kind == "text" and t.detail.startswith("UTF-8 text, 2 lines") and "CRLF" in t.detail
    # The head cut inside a multi-byte character is still text.
    body = ("é" * (HEAD_SIZE // 2 + 10)).encode()
    body = b"x" + body + b"\n"
    assert len(body) > HEAD_SIZE
    assert triage(feed_chunked(body, 4, keep_limit=0, holes=False)).kind == "text"
    # Text head on a binary body is not text.
    s = TriageSampler()
    s.feed(b"hello world\n" * 100)
    s.feed_zeros(1 << 20)
    assert triage(s).kind == "data"
    assert triage_bytes(b"\xff\xfe bad utf-8").kind == "data"


def test_random_data_is_high_entropy():
    t = triage_bytes(random.Random(7).randbytes(1 << 16))
    assert t.kind == "data" and "high entropy" in t.detail and t.entropy > 7.9


def test_pure_library():
    # triage must not pull in volatility3 (it runs outside the framework too).
    code = "import sys, volatility_pkram.output.triage; sys.exit('volatility3' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# -- StreamSampler: C-speed statistics must agree with the full histogram ------------

def _stream(sampler, chunks):
    for kind, data in chunks:
        if kind == "hole":
            sampler("hole", data, None)
        else:
            sampler("data", len(data), data)


@pytest.mark.parametrize("payload", [
    b"line one\nline two\r\n" * 300,
    bytes(range(256)) * 64,
    b"\x7fELF" + bytes(5000),
    "héllo wörld\n".encode() * 100,
])
def test_stream_sampler_agrees_with_full_histogram(payload):
    from volatility_pkram.output.triage import StreamSampler, TriageSampler
    chunks = [("data", payload[:1000]), ("hole", 4096), ("data", payload[1000:])]
    full = TriageSampler()
    full.feed(payload[:1000])
    full.feed_zeros(4096)
    full.feed(payload[1000:])
    fast = StreamSampler()
    _stream(fast, chunks)
    a, b = full.profile(), fast.profile()
    assert (a.size, a.zeros, a.newlines, a.carriage_returns, a.binary, a.ascii) == \
           (b.size, b.zeros, b.newlines, b.carriage_returns, b.binary, b.ascii)
    assert b.entropy == pytest.approx(a.entropy, abs=1e-5)
    assert triage(fast).kind == triage(full).kind


def test_stream_sampler_counts_whole_stream_but_samples_entropy():
    from volatility_pkram.output.triage import StreamSampler
    fast = StreamSampler(sample_limit=4096)
    _stream(fast, [("data", b"a\n" * 4096), ("data", bytes(range(256)) * 32)])
    prof = fast.profile()
    assert prof.size == 8192 + 8192 and prof.newlines == 4096 + 32   # range(256) holds one \n
    assert prof.entropy_bytes == 4096 and prof.entropy == pytest.approx(1.0, abs=1e-5)
    assert not fast.sampled_all


def test_stream_sampler_profiles_a_prefix_and_says_so():
    """Byte statistics and entropy cover the first MiB; the scope note names the prefix."""
    from volatility_pkram.output.triage import StreamSampler
    text = b"log line\n" * ((3 << 20) // 9)             # 3 MiB of text lines
    fast = StreamSampler()
    _stream(fast, [("data", text[:1000]), ("data", text[1000:])])
    prof = fast.profile()
    assert prof.size == 1 << 20 and prof.newlines == text[:1 << 20].count(b"\n")
    assert fast.scope_note() == (f" (entropy of the first {1 << 20} bytes, byte statistics of the "
                                 f"first {1 << 20} of {len(text)})")
    assert triage(fast).kind == "text"
    small = StreamSampler()
    _stream(small, [("data", text[:5000]), ("hole", 3000)])
    assert small.scope_note() == ""
