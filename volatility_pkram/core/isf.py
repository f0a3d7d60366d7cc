"""Struct readers compiled from the ISF declarations in ``symbols/``.

The ISF files are the one place where a PKRAM offset is written down
(the dissect.cstruct idea: declare once, parse everywhere). This module
turns each ``user_types`` struct into a :class:`StructLayout` whose scalar
fields are unpacked with one precompiled :class:`struct.Struct` call, and
whose arrays are exposed as ``(offset, count, element_size)`` so that hot
paths can unpack them in bulk.
"""

from __future__ import annotations

import functools
import json
import struct
from dataclasses import dataclass
from importlib import resources
from typing import Dict, Mapping, Optional, Tuple

__all__ = ["StructLayout", "ArrayField", "layouts", "isf_path", "named_layouts"]

_INT_CODES = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h",
              (4, False): "I", (4, True): "i", (8, False): "Q", (8, True): "q"}


@dataclass(frozen=True)
class ArrayField:
    """An array member: ``count`` elements of ``element_size`` bytes at ``offset``."""

    offset: int
    count: int
    element_size: int
    element: str  # base type or struct name of one element

    @property
    def size(self) -> int:
        return self.count * self.element_size


class StructLayout:
    """One C struct as declared in the ISF.

    ``unpack(buf, base)`` returns a dict of every scalar field;
    ``arrays`` maps array members to :class:`ArrayField`.
    """

    def __init__(self, name: str, size: int, scalars: Dict[str, Tuple[int, str]],
                 arrays: Dict[str, ArrayField],
                 bitfields: Optional[Dict[str, Tuple[str, int, int]]] = None):
        self.name = name
        #: bitfield members: name -> (hidden scalar holding the word, bit position, bit length)
        self.bitfields = bitfields or {}
        self.size = size
        self.arrays = arrays
        self.offsets = {f: off for f, (off, _) in scalars.items()}
        self.offsets.update({f: a.offset for f, a in arrays.items()})
        ordered = sorted(scalars.items(), key=lambda kv: kv[1][0])
        fmt, pos = "<", 0
        for _field, (off, code) in ordered:
            if off < pos:
                raise ValueError(f"{name}: overlapping scalar fields in ISF")
            fmt += f"{off - pos}x" if off > pos else ""
            fmt += code
            pos = off + struct.calcsize("<" + code)
        self._names = tuple(f for f, _ in ordered)
        self._struct = struct.Struct(fmt)
        #: bytes covered by the scalar fields (a prefix of the struct)
        self.scalar_span = self._struct.size
        if self.bitfields:      # structs without bitfields keep the plain (hot) unpack
            self.unpack = self._unpack_with_bitfields

    def unpack(self, buf: bytes | memoryview, base: int = 0) -> Dict[str, int]:
        """Unpack every scalar field of the struct at ``buf[base:]``."""
        return dict(zip(self._names, self._struct.unpack_from(buf, base)))

    def _unpack_with_bitfields(self, buf: bytes | memoryview, base: int = 0) -> Dict[str, int]:
        out = dict(zip(self._names, self._struct.unpack_from(buf, base)))
        for field, (word, pos, length) in self.bitfields.items():
            out[field] = (out[word] >> pos) & ((1 << length) - 1)
        return out

    def field_size(self, field: str) -> int:
        if field in self.arrays:
            return self.arrays[field].size
        nxt = sorted(o for o in self.offsets.values() if o > self.offsets[field])
        return (nxt[0] if nxt else self.size) - self.offsets[field]

    def __repr__(self) -> str:
        return f"StructLayout({self.name}, size={self.size})"


def isf_path(revision: int):
    """``importlib.resources`` path of ``pkram-v<revision>.json``."""
    return resources.files("volatility_pkram.symbols").joinpath(f"pkram-v{revision}.json")


def _compile(doc: Mapping) -> Dict[str, StructLayout]:
    base = doc["base_types"]
    user = doc["user_types"]

    def type_size(t: Mapping) -> int:
        if t["kind"] == "base":
            return base[t["name"]]["size"]
        if t["kind"] in ("struct", "union"):
            return user[t["name"]]["size"]
        if t["kind"] == "array":
            return t["count"] * type_size(t["subtype"])
        if t["kind"] == "pointer":
            return base["pointer"]["size"]
        raise ValueError(f"unsupported ISF type kind {t['kind']!r}")

    out: Dict[str, StructLayout] = {}
    for name, decl in user.items():
        scalars: Dict[str, Tuple[int, str]] = {}
        arrays: Dict[str, ArrayField] = {}
        bitfields: Dict[str, Tuple[str, int, int]] = {}
        for field, spec in decl["fields"].items():
            t, off = spec["type"], spec["offset"]
            if t["kind"] == "bitfield":
                # several bitfields share one word: it is unpacked once, as a hidden scalar
                b = base[t["type"]["name"]]
                word = f"_word@{off}"
                scalars[word] = (off, _INT_CODES[(b["size"], b["signed"])])
                bitfields[field] = (word, t["bit_position"], t["bit_length"])
            elif t["kind"] == "base":
                b = base[t["name"]]
                scalars[field] = (off, _INT_CODES[(b["size"], b["signed"])])
            elif t["kind"] == "array":
                sub = t["subtype"]
                arrays[field] = ArrayField(off, t["count"], type_size(sub), sub.get("name", sub["kind"]))
            else:
                raise ValueError(f"{name}.{field}: unsupported ISF field kind {t['kind']!r}")
        out[name] = StructLayout(name, decl["size"], scalars, arrays, bitfields)
    return out


@functools.lru_cache(maxsize=None)
def layouts(revision: int) -> Dict[str, StructLayout]:
    """All struct layouts of RFC revision ``revision`` (1, 2 or 3)."""
    if revision not in (1, 2, 3):
        raise ValueError(f"unknown PKRAM revision {revision!r}")
    with isf_path(revision).open("r", encoding="utf-8") as fh:
        return _compile(json.load(fh))


@functools.lru_cache(maxsize=None)
def named_layouts(name: str) -> Dict[str, StructLayout]:
    """All struct layouts of ``symbols/<name>.json`` (e.g. ``kho-abi``)."""
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"bad ISF file name {name!r}")
    path = resources.files("volatility_pkram.symbols").joinpath(f"{name}.json")
    with path.open("r", encoding="utf-8") as fh:
        return _compile(json.load(fh))
