"""The text forms the plugins' option values take, parsed once, refused with a message.

Each parser takes the text (or the value a config file gave) and returns the
value, or raises :class:`OptionError` naming the option, what was given and
the forms accepted. Two callers:

* ``vol-pkram``'s argument parser (:mod:`.cli`) uses them as argparse types,
  so a bad value is refused before the image is opened;
* every plugin checks its config again when it starts (:func:`check_config`,
  called by :func:`.open.open_memory`), which is what plain ``vol`` users get.

    size("512M") == 512 << 20; pfn("0x1f4") == 500; pfn("-5") -> OptionError
"""

from __future__ import annotations

import datetime
import re
from typing import Callable, Dict, Optional

__all__ = ["OptionError", "pfn", "address", "size", "hole_hash_limit", "reference_time", "format_size",
           "PARSERS", "check_config"]

_INT_FORMS = "a decimal or 0x-prefixed hexadecimal integer >= 0"
SIZE_FORMS = ("a byte count: decimal or 0x hex, optionally followed by K, M, G or T "
              "(powers of 1024; KiB, MB... also read), e.g. 1G, 512M, 4096, 0x100000")
TIME_FORMS = ("an ISO 8601 date or time, e.g. 2026-12-04, 2026-12-04T18:20:00, "
              "2026-12-04T18:20:00+01:00 or ...Z (no zone: UTC)")
_UNITS = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}
_SIZE_RE = re.compile(r"(0x[0-9a-f]+|[0-9]+)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)


class OptionError(ValueError):
    """An option value in none of the accepted forms: ``option``, ``reason``."""

    def __init__(self, option: str, reason: str) -> None:
        super().__init__(f"{option}: {reason}")
        self.option = option
        self.reason = reason


def _refuse(option: str, value, what: str, forms: str) -> OptionError:
    return OptionError(option, f"{str(value)!r} is not {what}; accepted: {forms}")


def _non_negative(option: str, value, what: str) -> int:
    if isinstance(value, bool):
        raise _refuse(option, value, what, _INT_FORMS)
    if isinstance(value, int):
        number = value
    else:
        try:
            number = int(str(value).strip(), 0)
        except ValueError:
            raise _refuse(option, value, what, _INT_FORMS) from None
    if number < 0:
        raise _refuse(option, value, what, _INT_FORMS)
    return number


def pfn(value) -> int:
    """``--sb-pfn``: a page frame number."""
    return _non_negative("--sb-pfn", value, "a page frame number")


def address(value) -> int:
    """``--fdt``: a physical byte address."""
    return _non_negative("--fdt", value, "a physical address")


def size(value, option: str = "--max-file-size") -> int:
    """A byte count (``--max-file-size``, ``--hole-hash-limit``), with an optional binary
    unit (``1G``, ``512M``, ``0x1000``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise _refuse(option, value, "a size", SIZE_FORMS)
        return value
    match = _SIZE_RE.fullmatch(str(value).strip())
    if match is None:
        raise _refuse(option, value, "a size", SIZE_FORMS)
    return int(match.group(1), 0) << _UNITS[match.group(2).upper()]


def hole_hash_limit(value) -> int:
    """``--hole-hash-limit``: a byte count like :func:`size` (0: no limit)."""
    return size(value, "--hole-hash-limit")


def format_size(nbytes: int) -> str:
    """The shortest exact form :func:`size` reads back (``16G``, ``512M``, ``4097``)."""
    for unit in ("T", "G", "M", "K"):
        if nbytes and nbytes % (1 << _UNITS[unit]) == 0:
            return f"{nbytes >> _UNITS[unit]}{unit}"
    return str(nbytes)


def reference_time(value) -> datetime.datetime:
    """``--reference-time``: an ISO 8601 date or time, UTC when no zone is given."""
    text = str(value).strip()
    try:
        when = datetime.datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" and text
                                               else text)
    except ValueError:
        raise _refuse("--reference-time", value, "a time", TIME_FORMS) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=datetime.timezone.utc)


#: config name -> parser of one value (a list option's elements are parsed one by one)
PARSERS: Dict[str, Callable] = {
    "sb_pfn": pfn,
    "fdt": address,
    "max_file_size": size,
    "hole_hash_limit": hole_hash_limit,
    "reference_time": reference_time,
}


def check_config(config) -> Optional[OptionError]:
    """The first value of ``config`` that :data:`PARSERS` refuses, or None."""
    for name, parse in PARSERS.items():
        value = config.get(name)
        if value is None:
            continue
        try:
            for item in (value if isinstance(value, (list, tuple)) else [value]):
                parse(item)
        except OptionError as exc:
            return exc
    return None
