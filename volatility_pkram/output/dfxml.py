"""DFXML 1.2 (Digital Forensics XML) for a run's custody record, written as it goes.

No maintained DFXML library is on PyPI (NIST's ``dfxml`` Python code lives
in its repository only), so the document is built here with
:mod:`xml.etree.ElementTree`, one ``<fileobject>`` at a time: :func:`head`,
then :func:`fileobject` per object, then :func:`tail`. The elements are
DFXML's own (``creator``, ``source``, ``fileobject`` with ``filename``,
``filesize``, ``mode``, ``uid``, ``gid``, ``mtime``, ``atime``, ``ctime``,
``byte_runs``/``byte_run``, ``hashdigest``); what DFXML has no element for
is in the ``pkram:`` namespace (:data:`PKRAM_NS`).

``byte_run/@img_offset`` is the *physical address* of the run (what a
memory image is indexed by), not an offset in the image file: a LiME or ELF
image places physical memory at other file offsets.
"""

from __future__ import annotations

import datetime
import re
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape
from typing import Iterable, Iterator, Mapping, Optional, Tuple

__all__ = ["DFXML_NS", "PKRAM_NS", "head", "fileobject", "fileobject_parts", "archive", "tail", "iso_ns",
           "xml_text"]

DFXML_NS = "http://www.forensicswiki.org/wiki/Category:Digital_Forensics_XML"
PKRAM_NS = "urn:volatility-pkram:custody:1"
DC_NS = "http://purl.org/dc/elements/1.1/"
#: byte runs formatted per piece of a fileobject (a piece is written before the next is made)
RUNS_PER_PART = 4096
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
#: characters XML 1.0 cannot carry (and lone surrogates: undecodable bytes of a name)
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """``text`` with what XML 1.0 cannot hold as ``%XX`` (its UTF-8 or raw bytes)."""
    def escape(m):
        return "".join(f"%{b:02X}" for b in m.group().encode("utf-8", "surrogateescape"))
    return _NOT_XML.sub(escape, text)


def iso_ns(ns: int) -> str:
    """Nanoseconds since the epoch as ISO 8601 UTC with all nine digits (``…T…​.123456789Z``)."""
    secs, frac = divmod(int(ns), 10**9)
    try:
        when = _EPOCH + datetime.timedelta(seconds=secs)
    except OverflowError:
        return f"{ns}ns"
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def _sub(parent: ET.Element, tag: str, text=None, **attrib) -> ET.Element:
    el = ET.SubElement(parent, tag, {k: str(v) for k, v in attrib.items()})
    if text is not None:
        el.text = xml_text(str(text))
    return el


def _str(el: ET.Element) -> str:
    return ET.tostring(el, encoding="unicode") + "\n"


def head(creator: Mapping, source: Mapping, run: Mapping[str, str]) -> str:
    """The document up to its first ``<fileobject>``.

    ``creator``: program, version, libraries {name: version}, command_line,
    start_time (ns), uid. ``source``: image_filename, filesize, mtime (ns),
    sha256 (optional). ``run``: pkram-specific facts (plugin, route…).
    """
    out = ["<?xml version='1.0' encoding='UTF-8'?>\n",
           f"<dfxml xmlns='{DFXML_NS}' xmlns:dc='{DC_NS}' xmlns:pkram='{PKRAM_NS}' version='1.2.0'>\n"]
    meta = ET.Element("metadata")
    _sub(meta, "dc:type", "Files rebuilt from memory preserved across kexec")
    out.append(_str(meta))
    cr = ET.Element("creator", version="1.0")
    _sub(cr, "program", creator["program"])
    _sub(cr, "version", creator["version"])
    build = _sub(cr, "build_environment")
    for name, version in creator.get("libraries", {}).items():
        _sub(build, "library", name=name, version=version)
    exe = _sub(cr, "execution_environment")
    _sub(exe, "command_line", creator.get("command_line", ""))
    if creator.get("uid") is not None:
        _sub(exe, "uid", creator["uid"])
    if creator.get("start_time") is not None:
        _sub(exe, "start_time", iso_ns(creator["start_time"]))
    out.append(_str(cr))
    src = ET.Element("source")
    _sub(src, "image_filename", source.get("image_filename", ""))
    if source.get("filesize") is not None:
        _sub(src, "filesize", source["filesize"])
    if source.get("mtime") is not None:
        _sub(src, "pkram:image_mtime", iso_ns(source["mtime"]))
    if source.get("sha256"):
        _sub(src, "hashdigest", source["sha256"], type="sha256")
    out.append(_str(src))
    facts = ET.Element("pkram:run")
    for key, value in run.items():
        _sub(facts, f"pkram:{key}", value)
    out.append(_str(facts))
    return "".join(out)


def _el(tag: str, text) -> str:
    return f"<{tag}>{escape(xml_text(str(text)))}</{tag}>"


def fileobject(path: str, size: int, sha256: Optional[str], *, times: Optional[Mapping] = None,
               byte_runs: Iterable[Tuple[int, int, int]] = (),
               extra: Mapping[str, object] = ()) -> str:
    """One ``<fileobject>`` as one string (see :func:`fileobject_parts`)."""
    return "".join(fileobject_parts(path, size, sha256, times=times, byte_runs=byte_runs, extra=extra))


def fileobject_parts(path: str, size: int, sha256: Optional[str], *,
                     times: Optional[Mapping] = None,
                     byte_runs: Iterable[Tuple[int, int, int]] = (),
                     extra: Mapping[str, object] = ()) -> Iterator[str]:
    """One ``<fileobject>`` in pieces: ``path`` (node/name), ``times`` (mode, uid,
    gid, mtime_ns, atime_ns, ctime_ns), physical ``byte_runs`` ``(file_offset,
    address, length)`` (consumed lazily, :data:`RUNS_PER_PART` a piece),
    ``extra`` as ``pkram:`` elements (output file, status…).

    Formatted directly: a file of 10^5 runs would spend seconds in ElementTree.
    """
    # the element order of the DFXML schema's fileobject sequence
    out = [_el("filename", path), _el("name_type", "r"), _el("filesize", int(size))]
    if xml_text(path) != path:      # the exact bytes, when XML could not carry them
        extra = dict(extra, name_hex=path.encode("utf-8", "surrogateescape").hex())
    if times:
        out += [_el("mode", int(times["mode"])), _el("uid", int(times["uid"])), _el("gid", int(times["gid"]))]
        out += [_el(key, iso_ns(times[f"{key}_ns"])) for key in ("mtime", "ctime", "atime")]
    yield "<fileobject>" + "".join(out) + "<byte_runs>"
    part = []
    for o, a, n in byte_runs:
        part.append(f'<byte_run file_offset="{int(o)}" img_offset="{int(a)}" len="{int(n)}" />')
        if len(part) >= RUNS_PER_PART:
            yield "".join(part)
            part = []
    out = ["".join(part), "</byte_runs>"]
    if sha256:
        out.append(f'<hashdigest type="sha256">{escape(xml_text(sha256))}</hashdigest>')
    out += [_el(f"pkram:{key}", value) for key, value in dict(extra).items() if value is not None]
    yield "".join(out) + "</fileobject>\n"


def archive(file: str, sha256: str, size: int) -> str:
    """``pkram:archive``: the run's tar under -o, its size and SHA-256."""
    return (f'<pkram:archive><pkram:output_file>{escape(xml_text(file))}</pkram:output_file>'
            f'<filesize>{int(size)}</filesize><hashdigest type="sha256">{escape(sha256)}</hashdigest>'
            f'</pkram:archive>\n')


def tail(outcome: Mapping[str, object]) -> str:
    """The end of the document: how the run ended (``pkram:outcome``), and ``</dfxml>``."""
    el = ET.Element("pkram:outcome")
    for key, value in outcome.items():
        _sub(el, f"pkram:{key}", value)
    return _str(el) + "</dfxml>\n"
