"""volatility's YARA support, for plugins that scan with YARA rules.

volatility's ``yarascan`` module raises at import when neither yara-x nor
yara-python is installed (docs: volatility3-notes 2g), so it is imported here
once, and a plugin without YARA explains instead of vanishing from ``--help``.

* :func:`yara_requirements`: volatility's yarascan options (``--yara-string``,
  ``--yara-file``, ...) and the versions of its scanner;
* :func:`yara_scanner`: the ``YaraScanner`` for a plugin's rules; missing,
  empty, unreadable or uncompilable rules end the plugin with one error line
  and status 1 (README "Exit status"), under plain ``vol`` too;
* :func:`printable`: a match as one printable line.
"""

from __future__ import annotations

from typing import List

from volatility3.framework import interfaces
from volatility3.framework.configuration import requirements

from .report import EXIT_USAGE, fail

try:
    from volatility3.plugins import yarascan
except ImportError:   # neither yara-x nor yara-python
    yarascan = None

__all__ = ["yara_requirements", "yara_scanner", "printable"]


def yara_requirements() -> List[interfaces.configuration.RequirementInterface]:
    """volatility's yarascan options and versions (none when YARA is not installed)."""
    if yarascan is None:
        return []
    return [_unused_max_size(req) if req.name == "max_size" else _with_default(req)
            for req in yarascan.YaraScan.get_yarascan_option_requirements()] + [
        requirements.VersionRequirement(name="yarascanner", component=yarascan.YaraScanner,
                                        version=(2, 1, 0)),
        requirements.VersionRequirement(name="yarascan", component=yarascan.YaraScan,
                                        version=(2, 0, 0)),
    ]


def _with_default(req) -> interfaces.configuration.RequirementInterface:
    """volatility's option with its default said in the help (``-h`` shows every default)."""
    if not isinstance(req, (requirements.BooleanRequirement, requirements.StringRequirement)):
        return req
    said = "off" if isinstance(req, requirements.BooleanRequirement) else "none"
    return type(req)(name=req.name, description=f"{req.description} (default: {said})",
                     default=req.default, optional=req.optional)


def _unused_max_size(req) -> interfaces.configuration.RequirementInterface:
    """volatility's ``--max-size``, still accepted, its help saying it does nothing here."""
    return requirements.IntRequirement(
        name=req.name, default=req.default, optional=True,
        description="volatility's yarascan option, accepted and not used: files are scanned in "
                    "16 MiB windows whatever their size; --max-file-size caps a file "
                    f"(default: {req.default:#x})")


RULE_OPTIONS = ("yara_string", "yara_file", "yara_compiled_file")


def yara_scanner(plugin_name: str, config):
    """The scanner for the rules the options give; exits with status 1 when there is none."""
    prefix = "kho" if plugin_name.startswith(("kho.", "luo.")) else "pkram"
    if yarascan is None:
        fail(f"{plugin_name} needs yara-python or yara-x (pip install yara-python)", EXIT_USAGE,
             prefix)
    given = [name for name in RULE_OPTIONS if config.get(name) is not None]
    if not given:
        fail("no rules: give --yara-string, --yara-file or --yara-compiled-file", EXIT_USAGE, prefix)
    option = "--" + given[0].replace("_", "-")
    if given[0] == "yara_string" and not str(config["yara_string"]).strip():
        fail(f"{option}: empty; accepted: a text string, {{hex bytes}} or /regex/", EXIT_USAGE,
             prefix)
    try:
        rules = yarascan.YaraScan.process_yara_options(dict(config))
    except Exception as exc:   # yara.SyntaxError, yara_x.CompileError, OSError...: all the rules' fault
        fail(f"{option}: rules not usable: {type(exc).__name__}: {exc}", EXIT_USAGE, prefix)
    return yarascan.YaraScanner(rules=rules)


def printable(data: bytes, shown: int = 256) -> str:
    """The first ``shown`` bytes, non-printable ones as ``\\xNN``; "..." when cut."""
    text = data[:shown].decode("latin-1")
    out = "".join(c if 0x20 <= ord(c) < 0x7F else f"\\x{ord(c):02x}" for c in text)
    return out + ("..." if len(data) > shown else "")
