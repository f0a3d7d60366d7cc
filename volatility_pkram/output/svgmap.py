"""The physical memory map of an image, drawn as one bounded SVG.

The axis is physical memory from PFN 0 to the end of the capture, folded
into rows. Pages are counted into *buckets* (one or more pages each, at most
:data:`MAX_BUCKETS` whatever the image), each bucket is drawn in the colour
of what it holds, and neighbouring buckets of one colour and shade merge
into one ``<rect>``: a 64 GiB image of a quarter of a million scattered runs
gives at most :data:`MAX_BUCKETS` rects, each with a ``<title>`` tooltip
naming its PFN range and page counts, and ``data-*`` attributes with those
counts (``data-pages`` = preserved pages), so the picture can be checked by
parsing it.

Categories (:data:`CATEGORIES`), a bucket takes the first that applies:
an anomaly (dangling, orphan, referenced but not captured) over the
preserved pages; among preserved pages the majority of metadata or data;
then a capture gap; a bucket with none of these is background (captured,
not preserved). The input is plain runs ``(first_pfn, npages)``: this module
knows nothing of PKRAM and does not import volatility3.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

__all__ = ["CATEGORIES", "MAX_BUCKETS", "MapLayers", "MapSvg", "render_map"]

Runs = Sequence[Tuple[int, int]]

#: (key, legend label, fill, what it means), in bucket priority order
CATEGORIES = (
    ("dangling", "dangling", "#d62728",
     "referenced but not preserved: the next kernel reuses these pages"),
    ("orphan", "orphan", "#ff7f0e", "preserved, but nothing references them"),
    ("unreadable", "referenced, not captured", "#9467bd",
     "referenced pages the image does not hold"),
    ("metadata", "metadata", "#1f77b4",
     "super block, nodes, objs, links, byte streams, pagetable or region list"),
    ("data", "preserved data", "#2ca02c", "data pages of preserved files and objects"),
    ("gap", "not in the image", "#555555", "physical addresses the capture does not hold"),
)
FREE_FILL = "#e8e8e8"
_KEYS = [c[0] for c in CATEGORIES]

#: buckets per row, bucket width in px, row height and gap in px, left margin
COLUMNS = 512
CELL_W = 2
ROW_H = 22
ROW_GAP = 12
LEFT = 96
#: bound on buckets, hence on the map's rects, whatever the image (a bucket is a
#: power-of-two number of pages, so a row covers a round 2 MiB << k)
MAX_BUCKETS = 9 * COLUMNS
_SHADES = (0.4, 0.6, 0.8, 1.0)


@dataclass
class MapLayers:
    """What to draw, as ascending disjoint page runs per category.

    ``metadata``, ``orphan`` and the implied data pages are disjoint parts of
    ``preserved``; ``dangling`` is outside it; ``unreadable`` may overlap it.
    ``extents`` are the captured byte ranges ``(start, end_exclusive)``.
    """

    end_pfn: int
    extents: Sequence[Tuple[int, int]]
    preserved: Runs
    metadata: Runs = ()
    orphan: Runs = ()
    dangling: Runs = ()
    unreadable: Runs = ()


@dataclass
class MapSvg:
    """The SVG text, and what it shows (page totals per category, rect count)."""

    svg: str
    pages_per_bucket: int
    rects: int
    totals: Dict[str, int] = field(default_factory=dict)


def _spread(runs: Runs, per: int, nb: int, end_pfn: int) -> List[int]:
    """Pages of ``runs`` in each of ``nb`` buckets of ``per`` pages (clipped to the axis)."""
    out = [0] * nb
    for pfn, n in runs:
        pos, stop = max(pfn, 0), min(pfn + n, end_pfn)
        while pos < stop:
            b = pos // per
            take = min(stop, (b + 1) * per) - pos
            out[b] += take
            pos += take
    return out


def _captured(extents: Sequence[Tuple[int, int]], per: int, nb: int, end_pfn: int) -> List[int]:
    """Captured pages per bucket (a partly captured page counts as not captured)."""
    runs = []
    for start, end in extents:
        first, last = -(-start // 4096), end // 4096
        if last > first:
            runs.append((first, last - first))
    return _spread(runs, per, nb, end_pfn)


def _classify(counts: Dict[str, int], size: int) -> Tuple[str, int]:
    """The bucket's category and shade index; ("", 0) for background."""
    for key in ("dangling", "orphan", "unreadable"):
        if counts[key]:
            return key, len(_SHADES) - 1
    kept = counts["metadata"] + counts["data"]
    if kept:
        key = "metadata" if counts["metadata"] > counts["data"] else "data"
        density = kept / size
        shade = 0 if density <= 1 / 64 else 1 if density <= 1 / 8 else 2 if density <= 1 / 2 else 3
        return key, shade
    if counts["gap"]:
        return "gap", len(_SHADES) - 1
    return "", 0


def _title(first: int, last: int, c: Dict[str, int]) -> str:
    parts = [f"{c['pages']} preserved"]
    if c["pages"]:
        parts[0] += f" ({c['metadata']} metadata, {c['data']} data, {c['orphan']} orphan)"
    for key, label in (("dangling", "dangling"), ("unreadable", "referenced but not captured"),
                       ("gap", "not in the image")):
        if c[key]:
            parts.append(f"{c[key]} {label}")
    return (f"PFN 0x{first:x}-0x{last:x} (0x{first << 12:x}-0x{((last + 1) << 12) - 1:x}): "
            + ", ".join(parts))


def _rect(x: int, y: int, w: int, key: str, shade: int, first: int, last: int,
          c: Dict[str, int]) -> str:
    attrs = "".join(f' data-{k}="{c[k]}"' for k in ("pages", "metadata", "data", "orphan",
                                                     "dangling", "unreadable", "gap") if c[k])
    # anomalies stand out of the row, so one page of them shows in a map of gigabytes
    tall = key in ("dangling", "orphan", "unreadable")
    y, h = (y - 4, ROW_H + 8) if tall else (y, ROW_H)
    return (f'<rect x="{x}" y="{y}" width="{w}" height="{h}" class="m-{key} s{shade}"{attrs}>'
            f"<title>{html.escape(_title(first, last, c))}</title></rect>")


def _label(pfn: int) -> str:
    """A row's first address, in the largest unit it reaches."""
    addr = pfn << 12
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if addr >= 1 << shift:
            return f"{addr / (1 << shift):.4g} {unit}"
    return str(addr)


def _legend(y: int, totals: Dict[str, int], out: List[str]) -> int:
    """Legend swatches with page totals, four to a line; returns the height used."""
    entries = [(f'class="m-{key} s3"', f"{label}: {totals.get(key, 0)} pages", meaning)
               for key, label, _fill, meaning in CATEGORIES]
    entries.append((f'fill="{FREE_FILL}" stroke="#999"', "captured, not preserved",
                    "pages the image holds and PKRAM does not keep"))
    width = COLUMNS * CELL_W // 4
    for i, (paint, label, meaning) in enumerate(entries):
        x, ly = LEFT + (i % 4) * width, y + (i // 4) * 22
        out.append(f'<rect x="{x}" y="{ly}" width="14" height="14" {paint}>'
                   f"<title>{html.escape(meaning)}</title></rect>")
        out.append(f'<text x="{x + 20}" y="{ly + 12}">{html.escape(label)}</text>')
    return y + 22 * (-(-len(entries) // 4))


def _style() -> str:
    rules = [f".m-{key}{{fill:{fill}}}" for key, _l, fill, _m in CATEGORIES]
    rules += [f".s{i}{{fill-opacity:{v}}}" for i, v in enumerate(_SHADES)]
    rules.append(".m-gap{stroke:none}text{font:12px sans-serif;fill:#222}")
    return "".join(rules)


def render_map(layers: MapLayers) -> MapSvg:
    """Draw ``layers``: at most :data:`MAX_BUCKETS` rects for the map, whatever the image."""
    end = max(layers.end_pfn, 1)
    per = 1 << max(0, (-(-end // MAX_BUCKETS) - 1).bit_length())   # a power of two: round rows
    nb = -(-end // per)
    cols = {k: _spread(getattr(layers, k), per, nb, end)
            for k in ("preserved", "metadata", "orphan", "dangling", "unreadable")}
    captured = _captured(layers.extents, per, nb, end)
    sizes = [min(per, end - b * per) for b in range(nb)]
    cols["pages"] = cols.pop("preserved")
    cols["data"] = [max(p - m - o, 0) for p, m, o in zip(cols["pages"], cols["metadata"],
                                                         cols["orphan"])]
    cols["gap"] = [s - c for s, c in zip(sizes, captured)]
    rows = -(-nb // COLUMNS)
    body: List[str] = []
    nrects = 0
    for row in range(rows):
        y = 6 + row * (ROW_H + ROW_GAP)
        lo, hi = row * COLUMNS, min(nb, (row + 1) * COLUMNS)
        body.append(f'<rect x="{LEFT}" y="{y}" width="{(hi - lo) * CELL_W}" height="{ROW_H}" '
                    f'fill="{FREE_FILL}"/>')
        body.append(f'<text x="{LEFT - 6}" y="{y + 15}" text-anchor="end">'
                    f"{_label(lo * per)}</text>")
        nrects += _draw_row(cols, sizes, lo, hi, per, y, body)
    totals = {k: sum(v) for k, v in cols.items()}
    height = _legend(8 + rows * (ROW_H + ROW_GAP), totals, body) + 4
    width = LEFT + COLUMNS * CELL_W + 16
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" data-pages-per-bucket="{per}" '
           f'data-end-pfn="{end}"><style>{_style()}</style>{"".join(body)}</svg>')
    return MapSvg(svg, per, nrects, totals)


def _draw_row(cols: Dict[str, List[int]], sizes: List[int], lo: int, hi: int, per: int, y: int,
              body: List[str]) -> int:
    """Append the merged rects of buckets ``lo..hi`` (one row); returns how many."""
    drawn = 0
    run_key, run_start, acc = None, lo, None
    for b in range(lo, hi + 1):
        if b < hi:
            counts = {k: v[b] for k, v in cols.items()}
            key = _classify(counts, sizes[b])
        else:
            key = None
        if key != run_key or b == hi:
            if run_key is not None and run_key[0]:
                first, last = run_start * per, (b - 1) * per + sizes[b - 1] - 1
                body.append(_rect(LEFT + (run_start - lo) * CELL_W, y, (b - run_start) * CELL_W,
                                  run_key[0], run_key[1], first, last, acc))
                drawn += 1
            run_key, run_start, acc = key, b, (dict(counts) if b < hi else None)
        else:
            for k in acc:
                acc[k] += counts[k]
    return drawn
