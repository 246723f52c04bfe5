"""CRITICAL: the Exo file tree under EXO_ROOT, created on first boot."""

from __future__ import annotations

from exo.kernel.subsystem import Subsystem
from exo.kernel.tree import ensure_tree

TYPE_CHECKING = False
if TYPE_CHECKING:
    from exo.kernel.core import KernelCore


class ExoTree(Subsystem):
    __slots__ = ("first_boot", "root")

    def __init__(self, core: KernelCore) -> None:
        self.root = core.root
        self.first_boot = False

    def start(self) -> str:
        self.first_boot = ensure_tree(self.root)  # never overwrites
        return f"{self.root}{', first boot: created' if self.first_boot else ''}"
