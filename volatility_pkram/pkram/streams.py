"""The streams of one preserved ``pkram_obj``, as an analyst gets them.

A tmpfs object (byte stream = ``struct file_header`` + name, mm/shmem_pkram.c
of RFC v1/v2) is one stream: the file, its pages placed by page-cache index,
cut at the recorded size. An object of any other consumer is two raw
streams: ``objNNNN.bytes`` (the byte stream, ``data_len`` long) and
``objNNNN.pages`` (the page stream placed by index, up to its last page).
The extract, yarascan and incident plugins all take their streams from
:func:`object_streams`, so a file is the same bytes wherever it is read.
"""

from __future__ import annotations

from typing import Iterator, List

from ..core.physmem import PAGE_SIZE, PhysicalMemory
from ..output.files import describe_stats
from ..core.streams import (DEFAULT_MAX_FILE_SIZE, Chunk, ObjectStream, PageMap, StreamStats,
                            byte_stream_chunks, inline_chunks, page_stream_chunks)
from .reader import PreservedObject

__all__ = ["object_streams", "object_status"]


def object_streams(mem: PhysicalMemory, pobj: PreservedObject,
                   max_size: int = DEFAULT_MAX_FILE_SIZE) -> List[ObjectStream]:
    """The streams of ``pobj`` (``struct pkram_obj`` of any revision), each capped at ``max_size``."""
    if pobj.header is not None:
        return [_file_stream(mem, pobj, max_size)]
    return [_bytes_stream(mem, pobj, max_size), _pages_stream(mem, pobj, max_size)]


def _file_stream(mem: PhysicalMemory, pobj: PreservedObject, max_size: int) -> ObjectStream:
    """A tmpfs file: ``file_header.size`` bytes placed by page index, holes where no page is."""
    size = pobj.header.size

    def chunks(stats: StreamStats) -> Iterator[Chunk]:
        return page_stream_chunks(mem, pobj.pages, size, stats, max_size=max_size)

    return ObjectStream(pobj.header.name, "file", min(size, max_size), size, pobj.pages.pages,
                        PageMap(stream=pobj.pages), chunks)


def _bytes_stream(mem: PhysicalMemory, pobj: PreservedObject, max_size: int) -> ObjectStream:
    """The raw byte stream (``data_len`` bytes); a short one was read while decoding."""
    full = pobj.byte_len
    length = min(full, max_size)

    def chunks(stats: StreamStats) -> Iterator[Chunk]:
        if full > length:
            stats.truncated_from = full
        if pobj.byte_stream_complete:
            return inline_chunks(pobj.byte_stream[:length], stats)
        return byte_stream_chunks(mem, pobj.byte_pfns, length, stats)

    return ObjectStream(f"{pobj.name}.bytes", "bytes", length, full, len(pobj.byte_pfns),
                        PageMap(pfns=pobj.byte_pfns), chunks)


def _pages_stream(mem: PhysicalMemory, pobj: PreservedObject, max_size: int) -> ObjectStream:
    """The raw page stream, placed by page index up to its last page."""
    full = pobj.pages.end_index * PAGE_SIZE
    length = min(full, max_size)

    def chunks(stats: StreamStats) -> Iterator[Chunk]:
        if full > length:
            stats.truncated_from = full
        return page_stream_chunks(mem, pobj.pages, length, stats)

    return ObjectStream(f"{pobj.name}.pages", "pages", length, full, pobj.pages.pages,
                        PageMap(stream=pobj.pages), chunks)


def object_status(stats: StreamStats, pobj: PreservedObject) -> str:
    """How a stream of ``pobj`` was rebuilt and what its lists showed, in words; "ok" if nothing."""
    notes: List[str] = describe_stats(stats)
    if pobj.node.flags:
        notes.append("node save/load in progress")
    if pobj.pages.zeroed_entries:
        notes.append(f"{pobj.pages.zeroed_entries} zeroed entries (partially loaded?)")
    if pobj.pages.overlapping_entries:
        notes.append(f"{pobj.pages.overlapping_entries} overlapping entries ignored")
    for problem in pobj.problems:
        if problem.kind not in ("zeroed-entries", "overlapping-entries", "unfinished-node"):
            notes.append(f"{problem.kind}: {problem.message}")
    return "; ".join(notes) if notes else "ok"
