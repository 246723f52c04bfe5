"""Fixtures for the memory pool tests: every pool is closed, every child reaped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from exo.mm import SharedPool


@pytest.fixture
def pool() -> Iterator[SharedPool]:
    p = SharedPool.create(1 << 20)
    try:
        yield p
    finally:
        p.close()
