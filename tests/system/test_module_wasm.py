"""WebAssembly modules: a signed .wasm loaded, called, upgraded with its state handed
over and rolled back like a Python module, inside its sandboxed process under wasmtime —
with fuel and a deadline on every call, its memory bounded, and only the imports its
manifest grants."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.modules.conftest import kernel, manager  # noqa: F401  (fixtures)
from tests.modules.wasmlib import build_wasm

from exo.kernel.kernel import Kernel
from exo.modules import ModuleError
from exo.modules.manager import ModuleManager, RequestFailed

pytest.importorskip("wasmtime")


def test_a_wasm_module_loads_upgrades_and_rolls_back(
        kernel: Kernel, manager: ModuleManager, tmp_path: Path) -> None:  # noqa: F811
    loaded = manager.load(str(build_wasm(tmp_path, kernel.root, "1.0")))
    assert loaded["message"].startswith("wecho 1.0 serving ipc://wecho")
    manager.load(str(build_wasm(tmp_path, kernel.root, "2.0", "logs",
                                wasm_toml='imports = ["exo.log"]\n')))
    for i in range(5):
        assert manager.request("wecho", f"m{i}".encode()) == f"v1.0:m{i}".encode()
    assert manager.upgrade("wecho", "2.0", canary=50, step=50, interval=0.05)["to"] == "2.0"
    assert manager.request("wecho", b"hello") == b"v2.0:hello"
    log = kernel.root / "var" / "log" / "modules" / "wecho-2.0.log"
    assert "hello" in log.read_text()  # through exo.log, the one import it was granted
    back = manager.rollback("wecho")
    assert (back["from"], back["to"]) == ("2.0", "1.0")
    # the request count went 1.0 -> 2.0 -> 1.0 with the state: 5 + 1 (+ health checks: 0)
    state = manager.service_named("wecho").instances["1.0"].call(3, control=True)
    assert int.from_bytes(state, "little") == 6
    manager.unload("wecho")


def test_fuel_and_deadline_stop_a_call_not_the_module(
        kernel: Kernel, manager: ModuleManager, tmp_path: Path) -> None:  # noqa: F811
    manager.load(str(build_wasm(tmp_path, kernel.root, "1.0", "spins",
                                wasm_toml="fuel = 1000000\n")))
    with pytest.raises(RequestFailed, match="fuel"):
        manager.request("wecho", b"loop")
    assert manager.request("wecho", b"after") == b"v1.0:after"
    manager.unload("wecho")
    # with fuel to spare, the epoch deadline ends it
    manager.load(str(build_wasm(tmp_path / "d", kernel.root, "1.1", "spins",
                                wasm_toml="fuel = 1000000000\ntimeout = 0.2\n")))
    with pytest.raises(RequestFailed, match="interrupt"):
        manager.request("wecho", b"loop")
    assert manager.request("wecho", b"after") == b"v1.1:after"
    manager.unload("wecho")


def test_memory_is_bounded_and_imports_must_be_granted(
        kernel: Kernel, manager: ModuleManager, tmp_path: Path) -> None:  # noqa: F811
    manager.load(str(build_wasm(tmp_path, kernel.root, "1.0", "grows",
                                wasm_toml="memory = 1048576\n")))
    assert manager.request("wecho", b"g") == b"v1.0:g"  # memory.grow answered -1
    manager.unload("wecho")
    with pytest.raises(ModuleError, match=r"crashed on start .*imports exo\.log, which its "
                                          r"manifest does not grant"):
        manager.load(str(build_wasm(tmp_path / "l", kernel.root, "2.0", "logs")))
    with pytest.raises(ModuleError, match=r"imports wasi_snapshot_preview1\.fd_write"):
        manager.load(str(build_wasm(tmp_path / "w", kernel.root, "3.0", "wasi")))
    with pytest.raises(ModuleError, match=r"\[wasm\] imports 'exo\.files'"):
        manager.load(str(build_wasm(tmp_path / "f", kernel.root, "4.0",
                                    wasm_toml='imports = ["exo.files"]\n')))
    with pytest.raises(ModuleError, match=r"\[wasm\] fuel must be"):
        manager.load(str(build_wasm(tmp_path / "x", kernel.root, "5.0",
                                    wasm_toml="fuel = 0\n")))
    with pytest.raises(ModuleError, match=r"does not export alloc, handle"):
        manager.load(str(build_wasm(tmp_path / "e", kernel.root, "6.0",
                                    wat='(module (memory (export "memory") 1))')))
    assert manager.list() == []
