"""CRITICAL: the shared memory pool that zero-copy messages use (``exo.mm``)."""

from __future__ import annotations

from exo.kernel.bootlog import SkipStep
from exo.kernel.subsystem import Subsystem

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from exo.kernel.core import KernelCore
    from exo.mm import SharedPool


class MemoryPool(Subsystem):
    __slots__ = ("pool", "size")

    def __init__(self, core: KernelCore) -> None:
        self.size = core.config.pool_size
        self.pool: SharedPool | None = None

    def start(self) -> str:
        try:
            from exo.mm import SharedPool  # a compiled extension: may be missing
        except ImportError as exc:
            raise SkipStep(f"exo.mm not available: {exc}") from None
        self.pool = SharedPool.create(self.size)
        return f"{self.size // (1024 * 1024)} MiB shared, memfd"

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.close()

    def proc_files(self) -> dict[str, Callable[[], str]]:
        return {"meminfo": self.pool.meminfo_text} if self.pool is not None else {}
