"""Bounded reads for the KHO walkers: a value or None, never an exception.

Everything a walker reads comes from the image and may point anywhere; a read
that the capture cannot satisfy is reported by the caller as a finding.
"""

from __future__ import annotations

from typing import Dict, Optional

from ..core.isf import StructLayout
from ..core.physmem import PAGE_SHIFT, PhysicalMemory, UnreadableError
from ..core.problems import ERROR, Diagnostics

__all__ = ["read_bytes", "read_struct", "page_ok", "next_page", "capped"]


def read_bytes(mem: PhysicalMemory, addr: int, length: int) -> Optional[bytes]:
    """``length`` bytes at physical ``addr``, or None when the image does not hold them."""
    if addr < 0 or length < 0 or not mem.is_present(addr, max(length, 1)):
        return None
    try:
        return mem.read(addr, length)
    except UnreadableError:
        return None


def read_struct(mem: PhysicalMemory, layout: StructLayout, addr: int) -> Optional[Dict[str, int]]:
    """The scalar fields of ``layout`` at ``addr``, or None when unreadable."""
    data = read_bytes(mem, addr, layout.size)
    return None if data is None else layout.unpack(data)


def page_ok(mem: PhysicalMemory, phys: int) -> bool:
    """True if ``phys`` is page aligned, non-zero and its page was captured."""
    return phys > 0 and not phys & 0xFFF and mem.pfn_present(phys >> PAGE_SHIFT)


def next_page(phys: int, what: str, diag: Diagnostics) -> int:
    """The PFN a chain pointer names, for :func:`~volatility_pkram.core.chains.follow_pages`.

    0 ends the chain; a pointer that is not page aligned ends it with a finding.
    """
    if phys & 0xFFF:
        diag.add("misaligned", ERROR, f"{what} pointer 0x{phys:x} is not page aligned; stopped",
                 phys >> PAGE_SHIFT)
        return 0
    return phys >> PAGE_SHIFT


def capped(count: int, cap: int, what: str, pfn: Optional[int], diag: Diagnostics) -> int:
    """``count`` from the image, at most ``cap`` (what its page can hold); a larger one is a finding."""
    if count > cap:
        diag.add("bad-count", ERROR, f"{what}: count {count} > {cap}; read {cap}", pfn)
        return cap
    return count
