"""Column groups several plugins share (see :mod:`.rows` for how a row type becomes columns).

* :class:`FileMeta`: a preserved file's metadata (``struct file_header``:
  mode, owner, times), in pkram.files and pkram.extract;
* :class:`TriageColumns`: what a rebuilt file looks like
  (:mod:`volatility_pkram.output.triage`), in pkram.extract;
* :class:`YaraMatch`: a YARA match (where, which rule, the bytes), in the
  yarascan plugins.
"""

from __future__ import annotations

import datetime
import stat
from dataclasses import dataclass
from typing import Optional

from volatility3.framework.renderers import format_hints

from .report import ns_to_datetime
from .rows import column
from .yara_rules import printable

__all__ = ["FileMeta", "TriageColumns", "YaraMatch"]


@dataclass(frozen=True)
class FileMeta:
    """Mode, owner and times of a tmpfs file (``struct file_header`` of mm/shmem_pkram.c)."""

    mode: str
    mode_octal: str
    uid: int
    gid: int
    a_time: datetime.datetime
    m_time: datetime.datetime
    c_time: datetime.datetime

    @classmethod
    def of(cls, header) -> Optional["FileMeta"]:
        """The columns of a decoded ``file_header``; None (not applicable) without one."""
        if header is None:
            return None
        return cls(stat.filemode(header.mode), f"{header.mode:o}", header.uid, header.gid,
                   ns_to_datetime(header.atime_ns), ns_to_datetime(header.mtime_ns),
                   ns_to_datetime(header.ctime_ns))


@dataclass(frozen=True)
class TriageColumns:
    """The triage of one rebuilt stream: its type, entropy and executable details."""

    kind: str = column("Type")   # "type" would shadow the builtin
    entropy: float
    type_detail: str
    elf_class: Optional[str]
    elf_machine: Optional[str]
    elf_type: Optional[str]
    interpreter: Optional[str]
    pe_machine: Optional[str]
    pe_timestamp: Optional[datetime.datetime]
    pe_imphash: Optional[str]
    pe_sections: Optional[str]
    pe_signed: Optional[str]

    @classmethod
    def of(cls, t, scope_note: str = "") -> "TriageColumns":
        """The columns of a :class:`~volatility_pkram.output.triage.Triage`.

        ``scope_note`` says how much of the stream the sampler saw.
        """
        signed = None if t.pe_signed is None else ("yes" if t.pe_signed else "no")
        sections = None if t.pe_sections is None else ",".join(t.pe_sections)
        return cls(t.kind, round(t.entropy, 4), t.detail + scope_note, t.elf_class,
                   t.elf_machine, t.elf_type, t.elf_interpreter, t.pe_machine, t.pe_timestamp,
                   t.pe_imphash, sections, signed)


@dataclass(frozen=True)
class YaraMatch:
    """One YARA match: the physical address of its first byte, the rule, the bytes."""

    offset: Optional[format_hints.Hex]   # None: the byte is in a hole of the stream
    rule: str
    component: str                       # the rule's string identifier
    value: str                           # hex bytes, space-separated, on one line (JSON: as before)
    match: str                           # the bytes as printable text

    @classmethod
    def of(cls, phys: Optional[int], hit) -> "YaraMatch":
        """The columns of a ``streamscan`` hit whose first byte is at ``phys``.

        ``Value`` is ``hit.data.hex(" ")``: the string volatility's JSON renderer
        made of the former ``HexBytes`` column, without the text renderers'
        multi-line dump (it began with a newline and broke text and CSV rows).
        """
        return cls(phys, hit.rule, hit.identifier, hit.data.hex(" "), printable(hit.data))
