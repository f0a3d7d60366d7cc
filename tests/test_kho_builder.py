"""A small builder of KHO/LUO images for the reader's unit tests (no tests here; not a generator tool).

It writes the structures as the kernel sources describe them (7.x radix tree
and luo-v5 blob; 6.19 kho-v1 bitmaps and luo-v1 FDT) into a bytearray and
returns the ground truth it placed: FDT addresses and roles, memfd contents
and their SHA-256, the preserved blocks. Tests compare the reader with this
truth, never with the reader's earlier output.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import libfdt

PAGE = 4096


@dataclass
class MemfdSpec:
    session: str
    token: int
    size: int
    #: page index -> (order, fill byte); indices not listed are holes
    folios: Dict[int, Tuple[int, int]]
    seals: int = 0


@dataclass
class Truth:
    fdts: Dict[int, str] = field(default_factory=dict)        # phys -> role
    moment: str = ""
    files: List[dict] = field(default_factory=list)
    blocks: List[Tuple[int, int]] = field(default_factory=list)


class Image:
    def __init__(self, size: int = 64 << 20, start_pfn: int = 0x400):
        self.buf = bytearray(size)
        self.next_pfn = start_pfn

    def alloc(self, pages: int = 1, align: int = 1) -> int:
        pfn = -(-self.next_pfn // align) * align
        self.next_pfn = pfn + pages
        return pfn << 12

    def put(self, phys: int, data: bytes) -> None:
        self.buf[phys:phys + len(data)] = data


def radix_tree(img: Image, blocks: List[Tuple[int, int]]) -> int:
    """7.x kho_radix_add_key for every (pfn, order); returns the root phys."""
    root = img.alloc()
    nodes = {(): root}
    for pfn, order in blocks:
        key = (1 << (52 - order)) | (pfn >> order)
        phys, path = root, ()
        for level in range(5, 0, -1):
            idx = (key >> ((level - 1) * 9 + 15)) & 511
            path = path + (idx,)
            if path not in nodes:
                nodes[path] = img.alloc()
                img.put(phys + idx * 8, struct.pack("<Q", nodes[path]))
            phys = nodes[path]
        bit = key & 0x7FFF
        img.buf[phys + bit // 8] |= 1 << (bit % 8)
    return root


def fdt(build) -> bytes:
    sw = libfdt.FdtSw()
    sw.finish_reservemap()
    with sw.add_node(""):
        build(sw)
    out = sw.as_fdt()
    out.pack()
    return bytes(out.as_bytearray())


def memfd_v2(img: Image, spec: MemfdSpec, blocks: list, version: int = 2) -> Tuple[int, bytes]:
    """memfd_luo_ser + vmalloc'd folio records + folio pages; returns (ser phys, content)."""
    content = bytearray(spec.size)
    recs = b""
    for index, (order, fill) in sorted(spec.folios.items()):
        phys = img.alloc(1 << order, 1 << order)
        data = bytes([fill]) * (PAGE << order)
        img.put(phys, data)
        blocks.append((phys >> 12, order))
        lo = index * PAGE
        content[lo:lo + len(data)] = data[:max(0, spec.size - lo)]
        recs += struct.pack("<QQ", (phys >> 12) | (3 << 52), index)
    ser = img.alloc()
    blocks.append((ser >> 12, 0))
    nr = len(spec.folios)
    if not nr:
        img.put(ser, struct.pack("<QQII", 0, spec.size, spec.seals, 0) if version == 2
                else struct.pack("<QQ", 0, spec.size))
        return ser, bytes(content[:spec.size])
    arr_pages = max(1, -(-len(recs) // PAGE))
    arr = img.alloc(arr_pages)
    img.put(arr, recs)
    chunk = img.alloc()
    img.put(chunk, struct.pack("<Q", 0) + b"".join(struct.pack("<Q", arr + i * PAGE) for i in range(arr_pages)))
    blocks.extend([(chunk >> 12, 0)] + [((arr >> 12) + i, 0) for i in range(arr_pages)])
    if version == 2:
        img.put(ser, struct.pack("<QQIIQQIHH", 0, spec.size, spec.seals, 0, nr, chunk, arr_pages, 1, 0))
    else:
        img.put(ser, struct.pack("<QQQQIHH", 0, spec.size, nr, chunk, arr_pages, 1, 0))
    return ser, bytes(content[:spec.size])


def block_chain(img: Image, entries: List[bytes], entry_size: int, blocks: list) -> int:
    per = (PAGE - 16) // entry_size
    heads = []
    for i in range(0, max(len(entries), 1), per):
        part = entries[i:i + per]
        phys = img.alloc()
        blocks.append((phys >> 12, 0))
        img.put(phys + 16, b"".join(part))
        heads.append((phys, len(part)))
    for j, (phys, count) in enumerate(heads):
        nxt = heads[j + 1][0] if j + 1 < len(heads) else 0
        img.put(phys, struct.pack("<QQ", nxt, count))
    return heads[0][0] if entries else 0


def build_v4(memfds: List[MemfdSpec], kexec_count: int = 1, luo_num: int = 1, img: Optional[Image] = None,
             setup: bool = True, compatible: str = "kho-v4", serialised: bool = True
             ) -> Tuple[Image, Truth, int]:
    """A saving-kernel 7.x image (kho-v4, luo-v5, memfd-v2) after liveupdate_reboot."""
    img = img or Image()
    truth = Truth()
    blocks: list = []
    sessions: Dict[str, List[bytes]] = {}
    for spec in memfds:
        ser, content = memfd_v2(img, spec, blocks)
        sessions.setdefault(spec.session, []).append(
            spec_compat(b"memfd-v2") + struct.pack("<QQ", ser, spec.token))
        truth.files.append({"session": spec.session, "token": spec.token, "size": spec.size,
                            "sha256": hashlib.sha256(content).hexdigest(), "content": content})
    sess_entries = []
    for name, files in sessions.items():
        head = block_chain(img, files, 64, blocks)
        sess_entries.append(name.encode().ljust(64, b"\0")[:64] + struct.pack("<QQ", head, len(files)))
    sessions_pa = block_chain(img, sess_entries, 80, blocks)
    if not serialised:      # before liveupdate_reboot: blocks allocated but zero, sessions_pa 0
        for phys in _chain_pages(img, sessions_pa):
            img.put(phys, bytes(PAGE))
        sessions_pa = 0
    luo = img.alloc()
    img.put(luo, b"luo-v5\0\0" + struct.pack("<QQQ", luo_num, sessions_pa, 0))
    meta = img.alloc()
    img.put(meta, struct.pack("<I", 1) + b"7.3.4-test".ljust(65, b"\0") + struct.pack("<I", kexec_count))
    fdt_phys = img.alloc()
    blocks += [(luo >> 12, 0), (meta >> 12, 0), (fdt_phys >> 12, 0)]
    root = radix_tree(img, blocks)

    def body(sw):
        sw.property_string("compatible", compatible)
        sw.property("preserved-memory-map", struct.pack("<Q", root))
        for name, phys, size in (("kexec-metadata", meta, 73), ("LUO", luo, 32)):
            with sw.add_node(name):
                sw.property("preserved-data", struct.pack("<Q", phys))
                sw.property("blob-size", struct.pack("<Q", size))
    img.put(fdt_phys, fdt(body))
    truth.fdts[fdt_phys] = "kho_out"
    truth.blocks = blocks
    if setup:
        add_setup(img, fdt_phys)
    return img, truth, fdt_phys


def spec_compat(name: bytes) -> bytes:
    return name.ljust(48, b"\0")


def add_setup(img: Image, fdt_phys: int) -> int:
    scratch = img.alloc()
    img.put(scratch, struct.pack("<QQQQ", 0x100000, 0x200000, 0x800000, 0x400000))
    sd = img.alloc()
    img.put(sd, struct.pack("<QII", 0, 10, 32) + struct.pack("<QQQQ", fdt_phys, PAGE, scratch, 32))
    return sd


def _chain_pages(img: Image, head: int) -> List[int]:
    """The block pages of a session chain and of every file chain it names."""
    out = []
    while head:
        out.append(head)
        nxt, count = struct.unpack_from("<QQ", img.buf, head)
        for i in range(count):
            files = struct.unpack_from("<Q", img.buf, head + 16 + i * 80 + 64)[0]
            while files:
                out.append(files)
                files = struct.unpack_from("<Q", img.buf, files)[0]
        head = nxt
    return out


def build_next(memfds: List[MemfdSpec]) -> Tuple[Image, Truth]:
    """A 7.x next-kernel image: the received FDT (count 1, named by setup_data) and
    the new kernel's own FDT (count 2, an empty LUO); the received luo_ser intact."""
    img, truth, received = build_v4(memfds)
    _img, new_truth, own = build_v4([], kexec_count=2, luo_num=2, img=img, setup=False)
    truth.fdts = {received: "kho_in", own: "kho_out"}
    truth.moment = "next kernel"
    return img, truth


def build_v1(memfds: List[MemfdSpec], luo_num: int = 1) -> Tuple[Image, Truth, int]:
    """A 6.19 saving-kernel image: kho-v1 (page bitmaps), luo-v1 FDT, memfd-v1."""
    img, truth, blocks = Image(), Truth(), []
    sessions: Dict[str, List[bytes]] = {}
    for spec in memfds:
        ser, content = memfd_v2(img, spec, blocks, version=1)
        sessions.setdefault(spec.session, []).append(spec_compat(b"memfd-v1") + struct.pack("<QQ", ser, spec.token))
        truth.files.append({"session": spec.session, "token": spec.token, "size": spec.size,
                            "sha256": hashlib.sha256(content).hexdigest(), "content": content})
    header = img.alloc(16, 16)
    blocks.append((header >> 12, 4))
    entries = b""
    for name, files in sessions.items():
        fphys = img.alloc(2, 2)
        blocks.append((fphys >> 12, 1))
        img.put(fphys, b"".join(files))
        entries += name.encode().ljust(64, b"\0")[:64] + struct.pack("<QQ", fphys, len(files))
    img.put(header, struct.pack("<Q", len(sessions)) + entries)

    def luo_body(sw):
        sw.property_string("compatible", "luo-v1")
        sw.property("liveupdate-number", struct.pack("<Q", luo_num))
        with sw.add_node("luo-session"):
            sw.property_string("compatible", "luo-session-v2")
            sw.property("luo-session-header", struct.pack("<Q", header))
    luo_fdt = img.alloc()
    img.put(luo_fdt, fdt(luo_body))
    fdt_phys = img.alloc()
    blocks += [(luo_fdt >> 12, 0), (fdt_phys >> 12, 0)]
    first = khoser_chunks(img, blocks)

    def body(sw):
        sw.property_string("compatible", "kho-v1")
        sw.property("preserved-memory-map", struct.pack("<Q", first))
        with sw.add_node("LUO"):
            sw.property("fdt", struct.pack("<Q", luo_fdt))
    img.put(fdt_phys, fdt(body))
    truth.fdts[fdt_phys] = "kho_out"
    truth.blocks = blocks
    add_setup(img, fdt_phys)
    return img, truth, fdt_phys


def khoser_chunks(img: Image, blocks: List[Tuple[int, int]]) -> int:
    """kho_mem_serialize with page bitmaps (PRESERVE_BITS = 32768): one chunk per order."""
    by_order: Dict[int, Dict[int, int]] = {}
    for pfn, order in blocks:
        idx = (pfn >> order) // 32768
        bits = by_order.setdefault(order, {})
        if idx not in bits:
            bits[idx] = img.alloc()
        bit = (pfn >> order) % 32768
        img.buf[bits[idx] + bit // 8] |= 1 << (bit % 8)
    first = prev = 0
    for order, bits in sorted(by_order.items()):
        chunk = img.alloc()
        img.put(chunk, struct.pack("<QII", 0, order, len(bits)) + b"".join(
            struct.pack("<QQ", (idx * 32768) << (order + 12), phys) for idx, phys in sorted(bits.items())))
        if prev:
            img.put(prev, struct.pack("<Q", chunk))
        first = first or chunk
        prev = chunk
    return first
