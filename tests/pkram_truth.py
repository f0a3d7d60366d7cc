"""Ground truth for damaged-image tests: which objects a mutation leaves untouched.

The generator's manifest says what each preserved object holds (sha256 of
the file, or of the raw byte and page streams). This module adds, from the
*pristine* image and with plain ``struct`` (never the reader), the pages each
object depends on: the super block and the node chain up to its node (the
handed-over route), its node page, the objs before it in the node's list,
its own obj page, its link pages and byte-stream pages, and, for the
runtime (carving) route, the identity-map pages (the carver uses them to tell
live nodes from an earlier boot's). An object none of whose pages a mutation
touched must still be recovered byte-exact, whatever else was damaged.

:func:`recover` opens the image the way ``vol3/open.py`` does (``pkram=``
search or ``--sb-pfn``, page carving when the library asks for it, the
choice), without volatility, and returns what each object's streams hash to.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Dict, List, Optional, Set, Tuple

from volatility_pkram.core import streams
from volatility_pkram.pkram import carve, choose, locate
from volatility_pkram.pkram.choose import NotFound, OpenOptions
from volatility_pkram.pkram.streams import object_streams

PAGE = 4096
MAX_WALK = 1 << 16


def _u64(raw: bytes, pfn: int, off: int) -> int:
    at = pfn * PAGE + off
    if at + 8 > len(raw):
        return 0
    return struct.unpack_from("<Q", raw, at)[0]


def _chain(raw: bytes, head: int, next_off: int) -> List[int]:
    """Pages of a one-page-record list in the pristine image (0 ends it)."""
    out: List[int] = []
    while head and head not in out and len(out) < MAX_WALK and (head + 1) * PAGE <= len(raw):
        out.append(head)
        head = _u64(raw, head, next_off)
    return out


def _link_entries(raw: bytes, links: List[int]) -> List[int]:
    return [e for lk in links for e in (_u64(raw, lk, 16 + 8 * i) for i in range(510)) if e]


def object_paths(raw: bytes, manifest: dict, runtime: bool) -> Dict[int, Set[int]]:
    """obj PFN -> the pages whose damage may cost that object (see the module docstring)."""
    v1 = manifest["revision"] == 1
    sb = manifest.get("sb_pfn")
    chain: List[int] = []
    if not runtime and sb:
        chain = _chain(raw, _u64(raw, sb, 0 if v1 else 8), 0x10)
    kinds = manifest["page_kinds"]
    shared = set(kinds.get("pgd", [])) | set(kinds.get("table", [])) if runtime else set()
    paths: Dict[int, Set[int]] = {}
    for node in manifest["nodes"]:
        if node["flags"]:
            continue                        # a node being saved: not handed over
        if runtime:
            before = {node["pfn"]}
        elif node["pfn"] in chain:
            before = {sb, *chain[:chain.index(node["pfn"]) + 1]}
        else:
            continue                        # not reachable on the handed-over route
        for i, obj in enumerate(node["obj_pfns"]):
            pages = set(before) | set(node["obj_pfns"][:i + 1]) | shared
            pages_head = _u64(raw, obj, 0x10 if v1 else 0x00)
            links = _chain(raw, pages_head, 0)
            if v1:
                data = _u64(raw, obj, 0x00)
                pages |= {data} if data else set()
            else:
                blinks = _chain(raw, _u64(raw, obj, 0x10), 0)
                pages |= set(blinks) | {e >> 12 for e in _link_entries(raw, blinks)}
            paths[obj] = pages | set(links)
    return paths


def expected(manifest: dict) -> Dict[int, Tuple[str, ...]]:
    """obj PFN -> the sha256 of its streams, as the generator wrote them."""
    out: Dict[int, Tuple[str, ...]] = {}
    for f in manifest["files"]:
        out[f["obj_pfn"]] = (f["sha256"],)
    for r in manifest["raw_objects"]:
        out[r["obj_pfn"]] = (r["bytes_sha256"], r["pages_sha256"])
    return out


def _digest(pobj, mem, max_size: int) -> Tuple[str, ...]:
    out = []
    for stream in object_streams(mem, pobj, max_size):
        sha = hashlib.sha256()
        for kind, length, data in stream.chunks(streams.StreamStats()):
            if kind == streams.DATA:
                sha.update(data)
            else:                                    # a hole, or bytes not in the image
                while length:
                    step = min(length, 1 << 20)
                    sha.update(bytes(step))
                    length -= step
        out.append(sha.hexdigest())
    return tuple(out)


def open_choice(mem, options: OpenOptions):
    """What ``vol3/open.find_pkram`` chooses, without volatility: a Choice or a NotFound."""
    location = failure = None
    try:
        location = locate.locate_super_block(mem, sb_pfn=options.sb_pfn, revision=options.revision)
    except locate.LocateError as exc:
        failure = exc
    carved = None
    if choose.wants_carving(options, location):
        carved = carve.recover(mem, carve.scan_pages(mem), revision=options.revision)
    return choose.choose(options, location, failure, carved)


def recover(mem, options: OpenOptions = OpenOptions(), max_size: int = 8 << 20):
    """(choice, reader, {obj PFN: [stream digests of each time it was read]}, problems)."""
    choice = open_choice(mem, options)
    if isinstance(choice, NotFound):
        return choice, None, {}, []
    pk = choice.reader(mem, options)
    pk.ranges()
    got: Dict[int, List[Tuple[str, ...]]] = {}
    for node in pk.nodes():
        for pobj in pk.objects(node):
            got.setdefault(pobj.obj.pfn, []).append(_digest(pobj, mem, max_size))
    return choice, pk, got, list(pk.diag)


def lost_objects(manifest: dict, paths: Dict[int, Set[int]], touched: Set[int],
                 got: Dict[int, List[Tuple[str, ...]]]) -> List[int]:
    """Objects untouched by the damage that were not recovered byte-exact."""
    want = expected(manifest)
    return [obj for obj, pages in sorted(paths.items())
            if not pages & touched and obj in want and want[obj] not in got.get(obj, [])]


def first_link(raw: bytes, manifest: dict, obj_pfn: int) -> Optional[int]:
    """The first page link of an obj in the pristine image."""
    head = _u64(raw, obj_pfn, 0x10 if manifest["revision"] == 1 else 0x00)
    return head or None
