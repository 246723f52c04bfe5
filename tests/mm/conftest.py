"""Fixtures for the memory pool tests: every pool is closed, every child reaped."""

from __future__ import annotations

import subprocess
import sys
import textwrap
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


def run_child(code: str, fd: int, *, timeout: float = 60) -> subprocess.Popen[str]:
    """Start a Python child that has the pool's fd (as `FD`) and `SharedPool` imported."""
    prelude = "import os, sys\nfrom exo.mm import SharedPool\nFD = int(sys.argv[1])\n"
    return subprocess.Popen(
        [sys.executable, "-c", prelude + textwrap.dedent(code), str(fd)],
        pass_fds=[fd],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(child: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    """Wait for a child; return (exit code, stdout); its stderr is shown on failure."""
    if child.stdin is not None and child.stdin.closed:
        child.stdin = None  # communicate() would flush it
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise
    if err.strip():
        print(err)
    return child.returncode, out
