"""Fixtures for the Fusion Ring tests: a real shared pool, and /dev/shm snapshots."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from ipc_pool_double import MemfdPool


def pool_class() -> Any:
    """``exo.mm.SharedPool`` when importable (and not overridden), else the test double."""
    if os.environ.get("EXO_IPC_POOL") != "double":
        try:
            from exo.mm import SharedPool

            return SharedPool
        except ImportError:
            pass
    return MemfdPool


@pytest.fixture
def make_pool() -> Iterator[Callable[[int], Any]]:
    pools: list[Any] = []

    def make(size: int = 8 << 20) -> Any:
        pool = pool_class().create(size)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


@pytest.fixture
def pool(make_pool: Callable[[int], Any]) -> Any:
    return make_pool(8 << 20)


def dev_shm() -> set[str]:
    try:
        return set(os.listdir("/dev/shm"))
    except FileNotFoundError:
        return set()


def own_memfds(name: str = "fusion-ring") -> int:
    """Number of this process's mappings of ring memfds (0 once every ring is closed)."""
    with open("/proc/self/maps") as f:
        return sum(1 for line in f if f"memfd:{name}" in line)
