"""Where the Exo file tree lives and the few settings the kernel reads at boot.

Resolution order for the root, most specific first: an explicit ``--root``, the
``EXO_ROOT`` environment variable, then ``$XDG_DATA_HOME/exo`` (default
``~/.local/share/exo``), the user's data directory.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT_ENV = "EXO_ROOT"
DEV_MODE_ENV = "EXO_DEV"


def default_root() -> Path:
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return Path(data_home) / "exo"


def resolve_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser().absolute()
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env).expanduser().absolute()
    return default_root()


class KernelConfig:
    """Settings fixed for the lifetime of one kernel.

    A plain class rather than a dataclass, like every class on the boot path: importing
    ``dataclasses`` costs ~14 ms and each decorated class ~1.3 ms more (docs/ARCHITECTURE.md,
    "Boot budget").
    """

    __slots__ = ("dev_mode", "pool_size", "root")

    def __init__(self, root: Path, dev_mode: bool = True,
                 pool_size: int = 64 * 1024 * 1024) -> None:
        self.root = root
        self.dev_mode = dev_mode  # root logs in without a password; the boot log says so
        self.pool_size = pool_size

    def __repr__(self) -> str:
        return f"KernelConfig(root={self.root!r}, dev_mode={self.dev_mode})"

    @classmethod
    def load(cls, root: str | os.PathLike[str] | None = None) -> KernelConfig:
        dev = os.environ.get(DEV_MODE_ENV, "1") not in ("0", "false", "no")
        return cls(root=resolve_root(root), dev_mode=dev)
