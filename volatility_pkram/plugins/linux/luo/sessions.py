"""luo.sessions: one row per file a LUO session preserves."""

from dataclasses import dataclass
from typing import Optional

from volatility3.framework import interfaces

from volatility3.plugins.linux.kho._shared import FileId, KhoPlugin
from volatility_pkram.kho.format import seal_names
from volatility_pkram.vol3 import rows


@dataclass(frozen=True)
class SessionRow:
    """One preserved file: its session, token and handler; a memfd's size, pages and seals."""

    file_id: FileId
    handler: str
    compatible: str
    size: Optional[int]
    pages: Optional[int]
    seals: Optional[str]
    status: str


class Sessions(KhoPlugin, interfaces.plugins.PluginInterface):
    """Lists the files preserved by LUO (Live Update Orchestrator, Linux 6.19+) sessions.

    One row per preserved file: session name (control bytes escaped), the
    user's token, the handler (memfd, or unknown: listed, never dropped)
    and its compatible, a memfd's recorded size, pages and F_SEAL_* seals.
    Before liveupdate_reboot() serialises them, sessions have no records:
    memfds are then found by their shape, in session "(unserialised)".
    """

    def run(self):
        kho = self.open_kho()

        def generate():
            for pf in kho.files():
                m = pf.memfd
                status = m.status if m is not None else "handler not decoded; data raw in luo.extract"
                if not pf.file.clean:
                    status = f"compatible not a clean string; {status}"
                yield SessionRow(FileId(pf.session.name, pf.file.token), pf.handler, pf.file.compatible,
                                 m.size if m else None, m.pages if m else None,
                                 seal_names(m.seals) if m and m.seals is not None else None, status)
            self.log_findings(kho)

        return rows.tree_grid(SessionRow, generate())
