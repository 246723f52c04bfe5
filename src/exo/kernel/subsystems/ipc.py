"""CRITICAL: the Fusion Rings extension (``exo.ipc``) and ``/proc/ipc``."""

from __future__ import annotations

from exo.kernel.bootlog import SkipStep
from exo.kernel.subsystem import Subsystem

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from exo.kernel.core import KernelCore


class Ipc(Subsystem):
    __slots__ = ("_text",)

    def __init__(self, core: KernelCore) -> None:
        self._text: Callable[[], str] | None = None

    def start(self) -> str:
        try:
            import exo.ipc as ipc  # a compiled extension: may be missing
        except ImportError as exc:
            raise SkipStep(f"exo.ipc not available: {exc}") from None
        self._text = ipc.proc_ipc_text
        return f"SPSC rings, {ipc.INLINE_MAX}-byte inline slots, zero-copy via the pool"

    def proc_files(self) -> dict[str, Callable[[], str]]:
        return {"ipc": self._text} if self._text is not None else {}
