"""The options of the ``pkram.*`` plugins, declared once and read back once.

* :func:`layer_requirements`: what any plugin of this package over a memory
  image needs (the ``primary`` layer, and an optional Linux ``kernel``
  whose symbols are used when they match);
* :func:`pkram_requirements`: those plus the options of opening PKRAM
  (``--sb-pfn``, ``--revision``, ``--paging-levels``, ``--carve``); every
  description ends with its default, which ``-h`` shows;
* :class:`SizeRequirement`, :func:`max_file_size`: ``--max-file-size`` as
  text (``1G``, ``512M``), parsed by :mod:`.values`;
* :func:`open_options`: a plugin's config as the library's
  :class:`~volatility_pkram.pkram.choose.OpenOptions`;
* :class:`PkramPlugin`: the class attributes every ``pkram.*`` plugin shares.
  A plugin lists only its own options::

      class Files(PkramPlugin, interfaces.plugins.PluginInterface):
          @classmethod
          def extra_requirements(cls):
              return [requirements.BooleanRequirement(name="tar", ...)]
"""

from __future__ import annotations

from typing import List, Optional

from volatility3.framework import interfaces
from volatility3.framework.configuration import requirements

from ..core.streams import DEFAULT_MAX_FILE_SIZE
from ..pkram.choose import OpenOptions
from . import values

__all__ = ["layer_requirements", "revision_requirement", "pkram_requirements", "SizeRequirement",
           "flag", "max_file_size_requirement", "max_file_size", "int_choice", "open_options",
           "PkramPlugin"]

Requirements = List[interfaces.configuration.RequirementInterface]


def layer_requirements() -> Requirements:
    """The memory layer, and the Linux kernel when a symbol table matches (optional)."""
    return [
        requirements.TranslationLayerRequirement(name="primary", description="Memory layer"),
        # Optional: when a kernel symbol table matches, the kernel's own variables are read first.
        requirements.ModuleRequirement(name="kernel", description="Linux kernel (optional)",
                                       architectures=["Intel32", "Intel64"], optional=True),
    ]


def revision_requirement() -> interfaces.configuration.RequirementInterface:
    """``--revision``: the RFC revision of the saving kernel (pkram.scan uses only this one)."""
    return requirements.ChoiceRequirement(
        name="revision", choices=["auto", "1", "2", "3"], default="auto", optional=True,
        description="PKRAM RFC revision of the kernel that saved the memory "
                    "(default: auto = detect)")


def pkram_requirements() -> Requirements:
    """Options every pkram.* plugin that opens PKRAM accepts: the layers and how to find it."""
    return layer_requirements() + [
        requirements.IntRequirement(
            name="sb_pfn", optional=True,
            description="PFN of the PKRAM super block, decimal or 0x hex, >= 0; skips the search "
                        "(default: found from the kernel's variables, pkram= tokens, carving)"),
        revision_requirement(),
        requirements.ChoiceRequirement(
            name="paging_levels", choices=["auto", "4", "5"], default="auto", optional=True,
            description="v1 identity-map depth (default: auto = infer from the table itself)"),
        requirements.ChoiceRequirement(
            name="carve", choices=["auto", "never", "always"], default="auto", optional=True,
            description="Page carving for PKRAM structures: auto = when no valid pkram= super block "
                        "(or only an empty one) is found; always = also when one is; never "
                        "(default: auto)"),
    ]


def flag(name: str, description: str) -> interfaces.configuration.RequirementInterface:
    """An optional boolean option, off unless given (``--all-ranges``)."""
    return requirements.BooleanRequirement(name=name, default=False, optional=True,
                                           description=f"{description} (default: off)")


class SizeRequirement(requirements.StringRequirement):
    """A byte count typed as text (``1G``, ``512M``, ``0x1000``, ``4096``; :func:`values.size`).

    A string on the command line, so plain ``vol`` passes ``1G`` through too;
    an integer (a ``-c`` config file, the default) is accepted as well.
    """

    def unsatisfied(self, context, config_path):
        value = self.config_value(context, interfaces.configuration.path_join(config_path, self.name),
                                  self.default)
        if isinstance(value, int) and not isinstance(value, bool):
            return {}
        return super().unsatisfied(context, config_path)


def max_file_size_requirement(description: str) -> interfaces.configuration.RequirementInterface:
    """``--max-file-size``: how much of one preserved file a plugin reads."""
    return SizeRequirement(
        name="max_file_size", default=DEFAULT_MAX_FILE_SIZE, optional=True,
        description=f"{description}: bytes, or with a unit K, M, G, T (powers of 1024), e.g. 1G, "
                    f"512M, 0x100000; 0 = the default (default: "
                    f"{values.format_size(DEFAULT_MAX_FILE_SIZE)})")


def max_file_size(config) -> int:
    """The ``--max-file-size`` value in bytes (the default when absent or 0)."""
    value = config.get("max_file_size")
    return (values.size(value) if value is not None else 0) or DEFAULT_MAX_FILE_SIZE


def int_choice(value) -> Optional[int]:
    """A numeric ``ChoiceRequirement`` value; ``None`` for "auto" or unset."""
    return None if value in (None, "auto") else int(value)


def open_options(config) -> OpenOptions:
    """The options of opening PKRAM from a plugin's config."""
    sb_pfn = config.get("sb_pfn")
    return OpenOptions(sb_pfn=None if sb_pfn is None else values.pfn(sb_pfn),
                       revision=int_choice(config.get("revision")),
                       paging_levels=int_choice(config.get("paging_levels")),
                       carve=config.get("carve") or "auto")


class PkramPlugin:
    """Mixin for a ``pkram.*`` plugin class: versions and :func:`pkram_requirements`.

    Put it before ``interfaces.plugins.PluginInterface`` in the bases. It is
    not a ``PluginInterface`` itself, so volatility does not list it as a
    plugin. ``get_requirements`` is the common options followed by the
    plugin's :meth:`extra_requirements`.
    """

    _required_framework_version = (2, 0, 0)
    _version = (1, 0, 0)
    #: the prefix of the plugin's error line (``pkram: error: ...``)
    error_prefix = "pkram"

    @classmethod
    def get_requirements(cls) -> Requirements:
        return pkram_requirements() + cls.extra_requirements()

    @classmethod
    def extra_requirements(cls) -> Requirements:
        """The plugin's own options (none by default)."""
        return []
