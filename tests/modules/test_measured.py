"""A module load is measured: appended to the boot's event log and, with a TPM (a real
swtpm here), extended into PCR 23 so that the log still replays to the PCR."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from tests.modules.modlib import build

from exo.kernel.config import KernelConfig
from exo.kernel.kernel import Kernel
from exo.security import tpm


def test_module_loads_extend_the_pcr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("swtpm") is None or os.path.exists(tpm.DEVICE):
        pytest.skip("needs swtpm and no hardware TPM")
    monkeypatch.delenv(tpm.ENV_SWITCH, raising=False)
    root = tmp_path / "root"
    tpm.start_swtpm(root)
    try:
        kernel = Kernel(KernelConfig(root=root), ephemeral=True)
        kernel.boot()
        kernel.start_deferred()
        kernel.wait_deferred(60)
        try:
            manager = kernel._by_key["modules"].manager  # type: ignore[attr-defined]
            manager.load(str(build(tmp_path, root, "1.0")))
            events = tpm.read_event_log(root)
            assert events[-1]["kind"] == "module" and events[-1]["name"] == "echo 1.0"
            assert events[-1]["tpm"] == "swtpm"
            location = tpm.locate(root)
            assert location is not None
            assert tpm.read_pcr(location) == tpm.replay(events)
        finally:
            kernel.shutdown()
    finally:
        tpm.stop_swtpm(root)
