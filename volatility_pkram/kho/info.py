"""kho.info's rows, as plain tuples: every FDT and what it holds, in words.

``(section, item, value, detail)`` per row, in the order an analyst reads
them: the moment and its evidence, each FDT (address, role, revision,
generation), its memory map, scratch areas, clients with their properties,
kexec metadata, reserve_mem regions, LUO sessions, the x86 records that
name an FDT, pages that looked like an FDT but were refused, findings.
"""

from __future__ import annotations

from typing import Iterator, Tuple

from .format import native_u64, seal_names
from .memmap import summary
from .reader import Kho
from .tree import KhoTree

__all__ = ["info_rows", "MAX_FINDINGS"]

Row = Tuple[str, str, str, str]
MAX_FINDINGS = 500


def _prop_text(value: bytes) -> str:
    num = native_u64(value)
    if num is not None:
        return f"0x{num:x}"
    text = value.rstrip(b"\0")
    if text and all(0x20 <= b < 0x7F for b in text) and value.endswith(b"\0"):
        return repr(text.decode())
    return value[:32].hex() + ("..." if len(value) > 32 else "")


def _tree_rows(kho: Kho, t: KhoTree) -> Iterator[Row]:
    at = f"0x{t.phys:x}"
    yield ("fdt", at, t.role, f"compatible {t.compatible!r} ({t.revision.kernels}); generation "
           f"{t.generation_text()}; totalsize {t.blob.totalsize}; "
           f"{'own page preserved by its map' if t.self_preserved else 'own page not in its map'}")
    if t.preserved is not None:
        extra = f", {t.preserved.bitmap_bits}-bit bitmaps" if t.preserved.encoding == "bitmaps" else ""
        yield ("memory-map", at, f"0x{t.preserved.root_phys:x}",
               f"{t.preserved.encoding}{extra}: {summary(t.preserved)}; {len(t.preserved.meta_pfns)} map page(s)")
    for i, (addr, size) in enumerate(t.scratch):
        yield ("scratch", f"{at} #{i}", f"0x{addr:x}", f"size 0x{size:x} ({size >> 20} MiB)")
    if t.kexec_count is not None:
        yield ("metadata", at, f"kexec_count {t.kexec_count}", f"previous_release {t.previous_release!r}")
    for cl in t.clients:
        where = f"0x{cl.data_phys:x}" if cl.data_phys is not None else "-"
        yield ("client", f"{at} {cl.name}", where, f"{cl.kind}; {cl.decoded}")
        for name, value in cl.props.items():
            yield ("property", f"{at} {cl.name}/{name}", _prop_text(value), f"{len(value)} bytes")
        for name, start, size in cl.reserve_mem:
            yield ("reserve_mem", name, f"0x{start:x}", f"size 0x{size:x}")
    if t.luo is not None:
        yield from _luo_rows(kho, t)


def _luo_rows(kho: Kho, t: KhoTree) -> Iterator[Row]:
    luo = t.luo
    yield ("luo", f"0x{luo.phys:x}", luo.compatible or "?",
           f"liveupdate_num {luo.liveupdate_num}; sessions_pa 0x{luo.sessions_pa:x}; flbs_pa 0x{luo.flbs_pa:x}; "
           f"{len(luo.sessions)} session(s), {sum(len(s.files) for s in luo.sessions)} file(s)"
           f"{'' if luo.serialized else '; not serialised'}")
    for s in luo.sessions:
        yield ("session", s.name, f"{len(s.files)} file(s)",
               f"record 0x{s.entry_phys:x}; files 0x{s.files_phys:x} count {s.file_count}")
    for flb in luo.flbs:
        yield ("flb", flb.name, f"0x{flb.data:x}", f"count {flb.count}")
    if t is kho.primary:
        for pf in kho.files():
            if pf.session.entry_phys == 0 and pf.memfd is not None:
                m = pf.memfd
                yield ("memfd", f"0x{m.ser_phys:x}", f"size {m.size}",
                       f"no session record (found by shape); seals {seal_names(m.seals) or '-'}")


def info_rows(kho: Kho) -> Iterator[Row]:
    """Every row of kho.info."""
    yield ("moment", kho.moment, f"{len(kho.trees)} KHO FDT(s)",
           f"primary 0x{kho.primary.phys:x} ({kho.primary.role})")
    for ev in kho.evidence:
        yield ("evidence", "", "", ev)
    for t in sorted(kho.trees, key=lambda t: ({"kho_in": 0, "kho_out": 1}.get(t.role, 2), t.phys)):
        yield from _tree_rows(kho, t)
    for s in kho.located.setups:
        yield ("setup_data", f"0x{s.phys:x}", f"fdt 0x{s.fdt_addr:x}",
               f"SETUP_KEXEC_KHO via {s.via}; fdt_size {s.fdt_size}; scratch 0x{s.scratch_addr:x}+{s.scratch_size}")
    for bp in kho.located.boot_params:
        types = ",".join(str(t) for _p, t, _l in bp.chain)
        yield ("boot_params", f"0x{bp.phys:x}", f"setup_data 0x{bp.setup_data:x}", f"chain types {types}")
    named = {s.fdt_addr for s in kho.located.setups}
    for phys, why in kho.located.rejected:
        if phys in named:
            yield ("rejected", f"0x{phys:x}", "named by setup_data", why)
    for p in list(kho.diag)[:MAX_FINDINGS]:
        where = f"pfn 0x{p.pfn:x}: " if p.pfn is not None else ""
        yield ("finding", p.kind, p.severity, where + p.message)
    if len(kho.diag) > MAX_FINDINGS or kho.diag.dropped:
        yield ("finding", "more", "info", f"{len(kho.diag) - MAX_FINDINGS + kho.diag.dropped} more not shown")
