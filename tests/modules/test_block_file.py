"""The ``block/file`` driver as a module: blocks written through version 1.0.0 are read
back through 1.1.0 after an upgrade, and through 1.0.0 again after a rollback."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

from exo.kernel.kernel import Kernel
from exo.modules.manager import ModuleManager
from exo.pkg import sdk

DRIVER = Path(__file__).resolve().parents[2] / "src" / "exo" / "modules" / "drivers" / "block_file"


def build_version(tmp: Path, root: Path, version: str) -> Path:
    """``exo build`` of the driver's source at ``version``, signed with the root's key."""
    project = tmp / f"block-file-{version}"
    shutil.copytree(DRIVER, project, ignore=shutil.ignore_patterns("__pycache__"))
    toml = project / "exopkg.toml"
    toml.write_text(toml.read_text().replace('version = "1.0.0"', f'version = "{version}"'))
    return sdk.build(project, root=root)


def test_block_file_survives_upgrade_and_rollback(kernel: Kernel, manager: ModuleManager,
                                                   tmp_path: Path) -> None:
    manager.load(str(build_version(tmp_path, kernel.root, "1.0.0")))
    manager.load(str(build_version(tmp_path, kernel.root, "1.1.0")))
    block = bytes(range(256)) * 2
    assert manager.request("block/file", b"W" + struct.pack(">Q", 3) + block) == b"ok"
    assert manager.upgrade("block/file", "1.1.0", canary=50, step=50, interval=0.05)["to"] \
        == "1.1.0"
    assert manager.request("block/file", b"R" + struct.pack(">Q", 3)) == block
    assert manager.request("block/file", b"R" + struct.pack(">Q", 9)) == bytes(512)
    assert manager.request("block/file", b"S") == struct.pack(">Q", 4)
    manager.rollback("block/file")
    assert manager.request("block/file", b"R" + struct.pack(">Q", 3)) == block
    image = kernel.root / "var" / "lib" / "modules" / "block-file" / "disk.img"
    assert image.read_bytes()[3 * 512:4 * 512] == block
