"""An in-process kernel with its DEFERRED steps (the module manager) started."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from exo.kernel.config import KernelConfig
from exo.kernel.kernel import Kernel
from exo.modules.manager import ModuleManager


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Kernel]:
    k = Kernel(KernelConfig(root=tmp_path / "root"), ephemeral=True)
    k.boot()
    k.start_deferred()
    k.wait_deferred(60)
    try:
        yield k
    finally:
        k.shutdown()


@pytest.fixture
def manager(kernel: Kernel) -> ModuleManager:
    sub = kernel._by_key["modules"]
    assert isinstance(sub.manager, ModuleManager)  # type: ignore[attr-defined]
    return sub.manager  # type: ignore[attr-defined]
