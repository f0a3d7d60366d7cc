"""volatility's YARA support, for plugins that scan with YARA rules.

volatility's ``yarascan`` module raises at import when neither yara-x nor
yara-python is installed (docs: volatility3-notes 2g), so it is imported here
once, and a plugin without YARA explains instead of vanishing from ``--help``.

* :func:`yara_requirements`: volatility's yarascan options (``--yara-string``,
  ``--yara-file``, ...) and the versions of its scanner;
* :func:`yara_scanner`: the ``YaraScanner`` for a plugin's rules;
* :func:`printable`: a match as one printable line.
"""

from __future__ import annotations

from typing import List

from volatility3.framework import exceptions, interfaces
from volatility3.framework.configuration import requirements

try:
    from volatility3.plugins import yarascan
except ImportError:   # neither yara-x nor yara-python
    yarascan = None

__all__ = ["yara_requirements", "yara_scanner", "printable"]


def yara_requirements() -> List[interfaces.configuration.RequirementInterface]:
    """volatility's yarascan options and versions (none when YARA is not installed)."""
    if yarascan is None:
        return []
    return yarascan.YaraScan.get_yarascan_option_requirements() + [
        requirements.VersionRequirement(name="yarascanner", component=yarascan.YaraScanner,
                                        version=(2, 1, 0)),
        requirements.VersionRequirement(name="yarascan", component=yarascan.YaraScan,
                                        version=(2, 0, 0)),
    ]


def yara_scanner(plugin_name: str, config):
    """The scanner for the rules the options give; explains a missing YARA or missing rules."""
    if yarascan is None:
        raise exceptions.PluginRequirementException(
            f"{plugin_name} needs yara-python or yara-x (pip install yara-python)")
    rules = yarascan.YaraScan.process_yara_options(dict(config))
    if rules is None:
        raise exceptions.PluginRequirementException(
            "no rules: give --yara-string, --yara-file or --yara-compiled-file")
    return yarascan.YaraScanner(rules=rules)


def printable(data: bytes, shown: int = 256) -> str:
    """The first ``shown`` bytes, non-printable ones as ``\\xNN``; "..." when cut."""
    text = data[:shown].decode("latin-1")
    out = "".join(c if 0x20 <= ord(c) < 0x7F else f"\\x{ord(c):02x}" for c in text)
    return out + ("..." if len(data) > shown else "")
