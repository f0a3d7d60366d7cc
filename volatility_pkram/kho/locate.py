"""Find every KHO FDT in a physical image, and the x86 hand-over records naming one.

Three routes, all without kernel symbols:

* **carving**: every page that starts with ``FDT_MAGIC`` is validated
  (:func:`~.fdt.read_fdt`) and kept when its root ``compatible`` is
  ``kho-v*``. KHO allocates its FDT as one page (6.16 ``alloc_page``, 7.x
  ``kho_alloc_preserve(PAGE_SIZE)``), so page starts suffice.
* **setup_data**: ``kexec_file_load`` on x86 (``setup_kho``,
  arch/x86/kernel/kexec-bzimage64.c) writes a ``struct setup_data`` of type
  ``SETUP_KEXEC_KHO`` (10) and length 32 holding ``struct kho_data``; it is
  carved by that signature (``type``, ``len``, ``fdt_size`` = 4096).
* **boot_params**: a page with ``hdr.header`` = "HdrS" whose ``hdr.setup_data``
  chain reaches such an entry (``parse_setup_data``, arch/x86/kernel/setup.c):
  the zero page a kernel was booted with.

One pass over the captured data, 4 MiB at a time; holes of sparse images are
skipped (they cannot hold a signature).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ..core.physmem import PAGE_SIZE, PhysicalMemory
from ..core.problems import INFO, WARNING, Diagnostics
from .fdt import FdtBlob, read_fdt
from .format import BOOT_HDRS, FDT_MAGIC, SETUP_KEXEC_KHO, layouts
from .mem import read_bytes, read_struct

__all__ = ["SetupKho", "BootParams", "Located", "locate"]

WINDOW = 4 << 20
MAX_CANDIDATES = 4096
MAX_SETUP_CHAIN = 64
# struct setup_data { next; u32 type = 10; u32 len = 32 } then kho_data.fdt_addr, fdt_size = PAGE_SIZE
_SETUP_RE = re.compile(re.escape((SETUP_KEXEC_KHO).to_bytes(4, "little") + (32).to_bytes(4, "little"))
                       + b"[\\x00-\\xff]{8}" + re.escape(PAGE_SIZE.to_bytes(8, "little")), re.DOTALL)
_MAGIC_RE = re.compile(re.escape(FDT_MAGIC))
_HDRS_RE = re.compile(re.escape(BOOT_HDRS.to_bytes(4, "little")))


@dataclass
class SetupKho:
    """A ``SETUP_KEXEC_KHO`` entry: where it is and its ``struct kho_data``."""

    phys: int               # of the struct setup_data
    fdt_addr: int
    fdt_size: int
    scratch_addr: int
    scratch_size: int
    via: str                # "carved" or "boot_params 0x..."


@dataclass
class BootParams:
    """A carved x86 zero page and the setup_data types its chain holds."""

    phys: int
    setup_data: int
    chain: List[tuple] = field(default_factory=list)     # (phys, type, len)


@dataclass
class Located:
    fdts: List[FdtBlob] = field(default_factory=list)
    rejected: List[tuple] = field(default_factory=list)   # (phys, why) of FDT-magic pages refused
    setups: List[SetupKho] = field(default_factory=list)
    boot_params: List[BootParams] = field(default_factory=list)


def _kho_data(mem: PhysicalMemory, sd_phys: int, via: str) -> Optional[SetupKho]:
    kd = read_struct(mem, layouts()["kho_data"], sd_phys + layouts()["setup_data"].size)
    if kd is None:
        return None
    return SetupKho(sd_phys, kd["fdt_addr"], kd["fdt_size"], kd["scratch_addr"], kd["scratch_size"], via)


def _follow_boot_params(mem: PhysicalMemory, phys: int, out: Located, diag: Diagnostics) -> None:
    """Walk ``hdr.setup_data`` of the zero page at ``phys`` (bounded, loop-safe)."""
    bp = read_struct(mem, layouts()["boot_params"], phys)
    if bp is None or bp["header"] != BOOT_HDRS or bp["version"] < 0x209:
        return
    rec = BootParams(phys, bp["setup_data"])
    seen = set()
    sd = bp["setup_data"]
    while sd and len(rec.chain) < MAX_SETUP_CHAIN:
        if sd in seen:
            diag.add("cycle", WARNING, f"setup_data chain of boot_params 0x{phys:x} loops at 0x{sd:x}")
            break
        seen.add(sd)
        hdr = read_struct(mem, layouts()["setup_data"], sd)
        if hdr is None:
            break
        rec.chain.append((sd, hdr["type"], hdr["len"]))
        if hdr["type"] == SETUP_KEXEC_KHO and hdr["len"] >= 32:
            got = _kho_data(mem, sd, f"boot_params 0x{phys:x}")
            if got:
                out.setups.append(got)
        sd = hdr["next"]
    if rec.chain:
        out.boot_params.append(rec)


def _scan(mem: PhysicalMemory, fdt_pages: List[int], setups: List[int], hdrs: List[int]) -> None:
    """Signature offsets in every captured window (FDT magic at page starts only)."""
    for start, end in mem.data_extents():
        pos = start
        while pos < end:
            stop = min(end, pos + WINDOW)
            data = read_bytes(mem, pos, stop - pos)
            if data is None:
                pos = stop
                continue
            base = pos
            # patterns are short; a match straddling two windows is re-read with 64 bytes overlap
            for m in _MAGIC_RE.finditer(data):
                if (base + m.start()) % PAGE_SIZE == 0 and len(fdt_pages) < MAX_CANDIDATES:
                    fdt_pages.append(base + m.start())
            for m in _SETUP_RE.finditer(data):
                if (base + m.start() - 8) % 8 == 0 and len(setups) < MAX_CANDIDATES:
                    setups.append(base + m.start() - 8)
            for m in _HDRS_RE.finditer(data):
                if (base + m.start() - 0x202) % 16 == 0 and len(hdrs) < MAX_CANDIDATES:
                    hdrs.append(base + m.start() - 0x202)
            pos = stop if stop >= end else stop - 64


def locate(mem: PhysicalMemory, diag: Diagnostics, extra_fdts: Optional[List[int]] = None) -> Located:
    """Every KHO FDT, ``SETUP_KEXEC_KHO`` entry and zero page in ``mem``.

    ``extra_fdts`` are physical addresses to try as well (e.g. from kernel
    symbols). FDTs named by a setup_data entry are read even when not page aligned.
    """
    out = Located()
    fdt_pages: List[int] = []
    setup_at: List[int] = []
    hdrs: List[int] = []
    _scan(mem, fdt_pages, setup_at, hdrs)
    for sd in sorted(set(setup_at)):
        got = _kho_data(mem, sd, "carved")
        if got:
            out.setups.append(got)
    for bp in sorted(set(hdrs)):
        _follow_boot_params(mem, bp, out, diag)
    _dedupe_setups(out)
    wanted = sorted(set(fdt_pages) | {s.fdt_addr for s in out.setups} | set(extra_fdts or ()))
    for phys in wanted:
        blob, why = read_fdt(mem, phys)
        if blob is None:
            out.rejected.append((phys, why))
            continue
        if blob.compatible.startswith("kho-v"):
            out.fdts.append(blob)
        elif any(s.fdt_addr == phys for s in out.setups):
            out.rejected.append((phys, f"compatible {blob.compatible!r} is not kho-v*"))
    if len(fdt_pages) >= MAX_CANDIDATES:
        diag.add("capped", INFO, f"more than {MAX_CANDIDATES} FDT magic pages; the rest not examined")
    return out


def _dedupe_setups(out: Located) -> None:
    """One entry per setup_data address; a boot_params route wins over plain carving."""
    best: Dict[int, SetupKho] = {}
    for s in out.setups:
        if s.phys not in best or best[s.phys].via == "carved":
            best[s.phys] = s
    out.setups = [best[k] for k in sorted(best)]
