"""CRITICAL: the capability space, with what lives and dies with it: the audit log, the
open-file table (and its revocable-file server) and the in-flight transfer tokens."""

from __future__ import annotations

from exo.kernel.caps import AuditLog, CapabilityManager
from exo.kernel.files import OpenFileTable
from exo.kernel.inflight import InFlight
from exo.kernel.subsystem import Subsystem

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from exo.kernel.core import KernelCore


class Capabilities(Subsystem):
    __slots__ = ("audit", "core", "files", "in_flight", "manager")

    def __init__(self, core: KernelCore) -> None:
        self.core = core
        self.audit: AuditLog | None = None
        self.manager: CapabilityManager | None = None
        self.files: OpenFileTable | None = None
        self.in_flight: InFlight | None = None

    def start(self) -> str:
        self.audit = AuditLog(self.core.root / "var" / "log" / "audit.jsonl")
        self.manager = CapabilityManager(audit=self.audit)
        # pins the Exo tree's descriptor; its file servers charge their work to each process
        self.files = OpenFileTable(self.manager, root=self.core.root,
                                   fair_share=self.core.fair_share)
        self.in_flight = InFlight(self.manager)
        return "per-process handle tables, derivation tree, audit log /var/log/audit.jsonl"

    def stop(self) -> None:
        if self.files is not None:
            self.files.close()  # unmounts the revocable-file server
        if self.audit is not None:
            self.audit.close()
        if self.in_flight is not None:
            self.in_flight.cancel_all()

    def proc_files(self) -> dict[str, Callable[[], str]]:
        return self.files.proc_files() if self.files is not None else {}
