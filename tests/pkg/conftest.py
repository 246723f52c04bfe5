"""Fixtures of the package manager's tests that drive the real ``exo`` command."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of an ``exo`` command on the test's own tree (``exo-root`` in
    ``tmp_path``), with no crash injection and a terminal wide enough for tables."""
    e = dict(os.environ, EXO_ROOT=str(tmp_path / "exo-root"), COLUMNS="160")
    e.pop("EXO_PKG_CRASH_AT", None)
    return e
