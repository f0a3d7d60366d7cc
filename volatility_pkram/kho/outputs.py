"""What a KHO hand-over gives an analyst as files: memfds, other handlers' data, unknown blobs.

Each item is an :class:`~volatility_pkram.core.streams.ObjectStream` with a
safe output name, so the file writer, the tar, triage and YARA over logical
streams read LUO memfds exactly as they read PKRAM files:

* a memfd: ``size`` bytes, folios placed by index (:func:`~.memfd.memfd_stream`);
* a file of another handler: the preserved block its ``data`` names, raw
  (the handler's format is unknown; never dropped);
* a KHO client nobody here decodes: its blob (``blob-size`` bytes, or the
  sub-FDT's ``totalsize``), raw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, List, Optional

from ..core.physmem import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory
from ..core.streams import ObjectStream, PageMap, StreamStats, byte_stream_chunks
from ..output.files import describe_stats, safe_component
from .format import native_u64
from .memfd import Memfd, memfd_stream
from .reader import Kho, PreservedFile
from .tree import MAX_BLOB, KhoClient

__all__ = ["OutputItem", "output_items", "raw_stream", "file_label", "stream_notes"]

KNOWN_CLIENTS = ("LUO", "memblock", "kexec-metadata")


@dataclass
class OutputItem:
    """One stream to write: who it belongs to, its name under -o, and the stream."""

    session: str
    token: Optional[int]
    kind: str                      # memfd, handler-data, kho-client
    out_name: str
    stream: ObjectStream
    memfd: Optional[Memfd] = None
    notes: List[str] = field(default_factory=list)
    session_raw: Optional[bytes] = None      # the session name's recorded bytes


def raw_stream(mem: PhysicalMemory, name: str, phys: int, length: int) -> ObjectStream:
    """``length`` bytes from physical ``phys`` (page aligned), as a raw stream."""
    first = phys >> PAGE_SHIFT
    pfns = list(range(first, first + (length + PAGE_SIZE - 1) // PAGE_SIZE))
    return ObjectStream(name=name, kind="raw", length=length, full_length=length, pages=len(pfns),
                        page_map=PageMap(pfns=pfns),
                        chunks=lambda stats: byte_stream_chunks(mem, pfns, length, stats))


def file_label(pf: PreservedFile) -> str:
    """``<session>__<token>``, each part made safe (``memfdN`` when no record gives a token)."""
    session = safe_component(pf.session.name_raw or pf.session.name, "session")
    token = f"0x{pf.file.token:x}" if pf.file.token is not None else f"memfd{pf.file.index}"
    return f"{session}__{token}"


def _handler_data(kho: Kho, pf: PreservedFile) -> OutputItem:
    """The block a non-memfd handler's ``data`` names, raw."""
    data = pf.file.data
    order = pf.tree.preserved.order_of().get(data >> PAGE_SHIFT) if pf.tree.preserved else None
    notes = []
    if data & 0xFFF or order is None:
        notes.append(f"data 0x{data:x} is not a preserved block's head; one page dumped")
        order = 0
    name = f"{file_label(pf)}.{safe_component(pf.file.compatible, 'handler')}.raw"
    stream = raw_stream(kho.mem, name, data & ~0xFFF, PAGE_SIZE << min(order, 10))
    return OutputItem(pf.session.name, pf.file.token, "handler-data", name, stream, notes=notes)


def _client_items(kho: Kho, cl: KhoClient) -> Iterator[OutputItem]:
    """An undecoded client's blob, and every preserved run a u64 of its sub-FDT names."""
    if cl.name in KNOWN_CLIENTS or not cl.data_phys:
        return
    size = cl.sub_fdt.totalsize if cl.sub_fdt else (cl.blob_size or PAGE_SIZE)
    notes = [f"blob-size {size} capped at {MAX_BLOB}"] if size > MAX_BLOB else []
    base = f"kho-client__{safe_component(cl.name, 'client')}"
    stream = raw_stream(kho.mem, f"{base}.blob", cl.data_phys & ~0xFFF,
                        min(size + (cl.data_phys & 0xFFF), MAX_BLOB))
    yield OutputItem("(kho client)", None, "kho-client", f"{base}.blob", stream, notes=notes)
    order_of = kho.primary.preserved.order_of() if kho.primary.preserved else {}
    for node in cl.sub_fdt.nodes if cl.sub_fdt else ():
        for prop, value in node.props.items():
            phys = native_u64(value)
            pages = _preserved_run(order_of, phys) if phys and not phys & 0xFFF else 0
            if pages:
                name = f"{base}__{safe_component(node.path.strip('/') + '@' + prop, 'prop')}.blob"
                yield OutputItem("(kho client)", None, "kho-client", name,
                                 raw_stream(kho.mem, name, phys, min(pages * PAGE_SIZE, MAX_BLOB)),
                                 notes=[f"preserved run named by property {prop!r}"])


def _preserved_run(order_of: dict, phys: int) -> int:
    """Pages of the contiguous preserved blocks starting at ``phys`` (0 if none starts there)."""
    pfn = start = phys >> PAGE_SHIFT
    while pfn in order_of and pfn - start < MAX_BLOB // PAGE_SIZE:
        pfn += 1 << order_of[pfn]
    return pfn - start


def output_items(kho: Kho, max_size: Optional[int] = None) -> Iterator[OutputItem]:
    """Every memfd, every other handler's data, every undecoded KHO client blob of the hand-over."""
    for pf in kho.files():
        if pf.memfd is not None:
            name = f"{file_label(pf)}.memfd"
            yield OutputItem(pf.session.name, pf.file.token, "memfd", name,
                             memfd_stream(kho.mem, pf.memfd, name, max_size), memfd=pf.memfd,
                             notes=list(pf.memfd.problems), session_raw=pf.session.name_raw)
        else:
            item = _handler_data(kho, pf)
            item.session_raw = pf.session.name_raw
            yield item
    for cl in kho.primary.clients:
        yield from _client_items(kho, cl)


def stream_notes(item: OutputItem, stats: StreamStats) -> str:
    """The Status column of a written item: "ok", or what went wrong."""
    notes = item.notes + describe_stats(stats)
    return "; ".join(notes) if notes else "ok"
