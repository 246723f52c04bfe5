"""Fixtures of the security tests: a real swtpm and a real SoftHSM2 token in a temp dir,
started for the test and stopped after (no mocks)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests._support.kernels import swtpm_tree


@pytest.fixture
def swtpm_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An Exo tree with its own swtpm running (stopped, and checked gone, after)."""
    root = tmp_path / "exo-root"
    with swtpm_tree(root, monkeypatch):
        yield root
