"""A tree with its own swtpm, and an in-process kernel booted on a tree with its DEFERRED
steps started: what the security, audit and scheduler tests share."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exo.kernel.config import KernelConfig
from exo.kernel.kernel import Kernel


@contextlib.contextmanager
def swtpm_tree(root: Path, monkeypatch: pytest.MonkeyPatch, *,
               hsm: bool = False) -> Iterator[dict[str, Any]]:
    """``root`` (``EXO_ROOT`` for the test) with its own swtpm running, stopped and
    checked gone on the way out; yields what ``tpm.start_swtpm`` said. Skips the test
    when swtpm (or, with ``hsm``, SoftHSM2) is missing or a hardware TPM is present."""
    from exo.security import tpm

    if shutil.which("swtpm") is None:
        pytest.skip("swtpm not installed (make setup installs it)")
    if hsm and shutil.which("softhsm2-util") is None:
        pytest.skip("softhsm2 not installed (make setup installs it)")
    if os.path.exists(tpm.DEVICE):
        pytest.skip("a hardware TPM is present: these tests drive swtpm")
    monkeypatch.setenv("EXO_ROOT", str(root))
    monkeypatch.delenv(tpm.ENV_SWITCH, raising=False)
    info = tpm.start_swtpm(root)
    try:
        yield info
    finally:
        tpm.stop_swtpm(root)
        assert not Path(f"/proc/{info['pid']}").exists() or \
            b"swtpm" not in Path(f"/proc/{info['pid']}/cmdline").read_bytes()


@contextlib.contextmanager
def deferred_kernel(root: Path) -> Iterator[Kernel]:
    """An ephemeral kernel booted on ``root`` with its DEFERRED steps started (the module
    manager, the agents, the audit anchors...); shut down on the way out."""
    kernel = Kernel(KernelConfig(root=root), ephemeral=True)
    kernel.boot()
    try:
        kernel.start_deferred()
        kernel.wait_deferred(60)
        yield kernel
    finally:
        kernel.shutdown()
