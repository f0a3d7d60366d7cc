"""What the kho.* and luo.* plugins share: options, opening KHO, logging findings.

Imported by volatility as ``volatility3.plugins.linux.kho._shared`` (it
defines no plugin). When no KHO FDT is found a plugin prints
``kho: error: ...`` and exits with status 2, as the pkram.* plugins do.
"""

import logging
import sys
from dataclasses import dataclass
from typing import Optional

from volatility3.framework import exceptions
from volatility3.framework.configuration import requirements
from volatility3.framework.renderers import format_hints

from volatility_pkram.kho.reader import Kho, KhoNotFound, open_kho
from volatility_pkram.vol3 import options
from volatility_pkram.vol3.kernel import ensure_kernel
from volatility_pkram.vol3.open import EXIT_NOT_FOUND, open_memory

vollog = logging.getLogger("volatility_pkram")


@dataclass(frozen=True)
class FileId:
    """Columns Session and Token: which preserved file a row is about (Token: the user's u64)."""

    session: str
    token: Optional[format_hints.Hex]


class KhoPlugin:
    """Mixin for a kho.*/luo.* plugin (before ``PluginInterface`` in the bases)."""

    _required_framework_version = (2, 0, 0)
    _version = (1, 0, 0)
    #: the prefix of the plugin's error line (``kho: error: ...``)
    error_prefix = "kho"

    @classmethod
    def get_requirements(cls):
        return options.layer_requirements() + [
            requirements.ListRequirement(
                name="fdt", element_type=int, optional=True,
                description="Physical address(es) of KHO FDTs to read besides those found, "
                            "decimal or 0x hex (default: none)"),
            options.flag("no_shape", "Do not look for memfd records no LUO file record names"),
        ] + cls.extra_requirements()

    @classmethod
    def extra_requirements(cls):
        return []

    def open_kho(self) -> Kho:
        """Find and decode KHO in the image; exit with status 2 when there is none."""
        try:
            kho = open_kho(open_memory(self), extra_fdts=list(self.config.get("fdt") or []),
                           kernel_roles=self.kernel_roles())
        except KhoNotFound as exc:
            sys.stderr.write(f"kho: error: {exc}\n")
            raise SystemExit(EXIT_NOT_FOUND)
        kho.carve_memfds = not self.config.get("no_shape")
        vollog.info(f"kho: {kho.moment}; primary FDT 0x{kho.primary.phys:x} ({kho.primary.role})")
        for line in kho.evidence:
            vollog.info(f"kho: {line}")
        return kho

    def kernel_roles(self) -> dict:
        """FDT phys -> role from the kernel's ``kho_out``/``kho_in`` (7.x) when its symbols match."""
        kname = ensure_kernel(self)
        if not kname:
            return {}
        vmlinux = self.context.modules[kname]
        layer = self.context.layers[vmlinux.layer_name]
        roles = {}
        try:
            fdt = int(vmlinux.object_from_symbol("kho_out").fdt)
            if fdt:
                roles[layer.translate(fdt)[0]] = "kho_out"
            fdt_phys = int(vmlinux.object_from_symbol("kho_in").fdt_phys)
            if fdt_phys:
                roles[fdt_phys] = "kho_in"
        except (exceptions.VolatilityException, AttributeError, ValueError) as exc:
            vollog.info(f"kho: kernel variables kho_out/kho_in unusable: {exc}")
        return roles

    @staticmethod
    def log_findings(kho: Kho, done: int = 0) -> int:
        """Log the findings recorded since ``done``; return the new count."""
        items = list(kho.diag)
        for p in items[done:]:
            level = {"error": logging.ERROR, "warning": logging.WARNING}.get(p.severity, logging.INFO)
            vollog.log(level, f"kho: {p}")
        return len(items)
