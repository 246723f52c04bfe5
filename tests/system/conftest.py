"""Fixtures of the system tests that drive an in-process kernel directly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests._support.kernels import booted_kernel

from exo.kernel.kernel import Kernel


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Kernel]:
    """A booted ephemeral kernel with app homes /home/a, /home/b and /home/demo."""
    with booted_kernel(tmp_path / "root") as k:
        for home in ("a", "b", "demo"):
            (k.root / "home" / home).mkdir(parents=True)
        yield k
