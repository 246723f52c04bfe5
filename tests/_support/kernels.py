"""A tree with its own swtpm, and an in-process kernel booted on a tree (with or without
its DEFERRED steps started): what the system, security, audit and scheduler tests share."""

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
def swtpm_running(root: Path, *, ek_cert: bool = False,
                  needs: tuple[str, ...] = ("swtpm",)) -> Iterator[dict[str, Any]]:
    """``root``'s own swtpm (with an EK certificate when ``ek_cert``), stopped and checked
    gone on the way out; yields what ``tpm.start_swtpm`` said. Skips the test when a
    program of ``needs`` is missing or a hardware TPM is present."""
    from exo.security import tpm

    missing = [name for name in needs if shutil.which(name) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (make setup installs it)")
    if os.path.exists(tpm.DEVICE):
        pytest.skip("a hardware TPM is present: these tests drive swtpm")
    info = tpm.start_swtpm(root, ek_cert=ek_cert)
    try:
        yield info
    finally:
        tpm.stop_swtpm(root)
        assert not Path(f"/proc/{info['pid']}").exists() or \
            b"swtpm" not in Path(f"/proc/{info['pid']}/cmdline").read_bytes()


@contextlib.contextmanager
def swtpm_tree(root: Path, monkeypatch: pytest.MonkeyPatch, *,
               hsm: bool = False) -> Iterator[dict[str, Any]]:
    """``root``, the test's ``EXO_ROOT``, with its own swtpm running (``swtpm_running``;
    with ``hsm``, SoftHSM2 is needed too)."""
    from exo.security import tpm

    monkeypatch.setenv("EXO_ROOT", str(root))
    monkeypatch.delenv(tpm.ENV_SWITCH, raising=False)
    with swtpm_running(root, needs=("swtpm", "softhsm2-util") if hsm else ("swtpm",)) as info:
        yield info


@contextlib.contextmanager
def booted_kernel(root: Path) -> Iterator[Kernel]:
    """An ephemeral kernel booted on ``root`` (its DEFERRED steps not started); shut down
    on the way out."""
    kernel = Kernel(KernelConfig(root=root), ephemeral=True)
    kernel.boot()
    try:
        yield kernel
    finally:
        kernel.shutdown()


@contextlib.contextmanager
def deferred_kernel(root: Path) -> Iterator[Kernel]:
    """``booted_kernel`` with its DEFERRED steps started (the module manager, the agents,
    the audit anchors...)."""
    with booted_kernel(root) as kernel:
        kernel.start_deferred()
        kernel.wait_deferred(60)
        yield kernel
