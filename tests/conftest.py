"""Shared fixtures: a private Exo root per test, and the `exo` command."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def exo_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "exo-root"
    monkeypatch.setenv("EXO_ROOT", str(root))
    yield root


@pytest.fixture
def exo_cmd() -> list[str]:
    """How to invoke the `exo` command in a subprocess."""
    return [sys.executable, "-m", "exo"]


@pytest.fixture
def exo_env(exo_root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["EXO_ROOT"] = str(exo_root)
    env.pop("EXO_BOOTSTRAP_FD", None)
    return env
