"""Fixtures of the security tests: a real swtpm and a real SoftHSM2 token in a temp dir,
started for the test and stopped after (no mocks)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def swtpm_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An Exo tree with its own swtpm running (stopped, and checked gone, after)."""
    if shutil.which("swtpm") is None:
        pytest.skip("swtpm not installed (make setup installs it)")
    from exo.security import tpm

    if os.path.exists(tpm.DEVICE):
        pytest.skip("a hardware TPM is present: these tests drive swtpm")
    root = tmp_path / "exo-root"
    monkeypatch.setenv("EXO_ROOT", str(root))
    monkeypatch.delenv(tpm.ENV_SWITCH, raising=False)
    info = tpm.start_swtpm(root)
    try:
        yield root
    finally:
        tpm.stop_swtpm(root)
        assert not Path(f"/proc/{info['pid']}").exists() or \
            b"swtpm" not in Path(f"/proc/{info['pid']}/cmdline").read_bytes()
