"""What runs inside a WebAssembly module's sandboxed process:
``python -m exo.modules.wasm_runner ENTRY.wasm CONFIG_JSON``.

Compiles the module with fuel and epoch interruption on, links only the host functions
the config grants (and WASI without preopens when ``wasi`` is true), and refuses to
start when the module imports anything else. Then it serves frames exactly as a Python
module does (``exo.modules.runner.serve``). A trap in a call (out of fuel, past its
deadline, ``unreachable``, a bad pointer) answers ERROR for that request only.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from typing import Any

EPOCH_TICK_S = 0.01


class WasmModule:
    """A wasmtime instance behind the ``handle``/``health``/``export_state``/
    ``import_state`` functions the runner calls (see ``exo.modules.wasm`` for the ABI)."""

    def __init__(self, path: str, cfg: dict[str, Any]) -> None:
        import wasmtime

        self._w = wasmtime
        conf = wasmtime.Config()
        conf.consume_fuel = True
        conf.epoch_interruption = True
        self.engine = wasmtime.Engine(conf)
        self.fuel = int(cfg["fuel"])
        self.deadline_ticks = max(1, int(float(cfg["timeout"]) / EPOCH_TICK_S))
        module = wasmtime.Module.from_file(self.engine, path)
        granted = set(cfg["imports"])
        wasi = bool(cfg["wasi"])
        for imp in module.imports:
            full = f"{imp.module}.{imp.name}"
            if imp.module == "wasi_snapshot_preview1" and wasi:
                continue
            if full not in granted:
                raise PermissionError(f"the module imports {full}, which its manifest does "
                                      f"not grant ([wasm] imports = {sorted(granted)}"
                                      f"{', wasi' if wasi else ''})")
        self.store = wasmtime.Store(self.engine)
        self.store.set_limits(memory_size=int(cfg["memory"]), instances=1, tables=4,
                              memories=1)
        if wasi:
            w = wasmtime.WasiConfig()
            w.inherit_stdout()
            w.inherit_stderr()  # both are the module's log; no preopens, args or env
            self.store.set_wasi(w)
        linker = wasmtime.Linker(self.engine)
        if wasi:
            linker.define_wasi()
        i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
        if "exo.log" in granted:
            linker.define_func("exo", "log", wasmtime.FuncType([i32, i32], []), self._log,
                               access_caller=True)
        if "exo.now_ms" in granted:
            linker.define_func("exo", "now_ms", wasmtime.FuncType([], [i64]),
                               lambda: int(time.time() * 1000))
        ticker = threading.Thread(target=self._tick, daemon=True, name="wasm-epoch")
        ticker.start()
        self._arm()
        self.instance = linker.instantiate(self.store, module)
        exports: Any = self.instance.exports(self.store)  # their types: checked by use
        missing = [n for n in ("memory", "alloc", "handle") if exports.get(n) is None]
        if missing:
            raise ImportError(f"the module does not export {', '.join(missing)} (a module "
                              "exports memory, alloc(len) and handle(ptr, len))")
        self.memory: Any = exports["memory"]
        self._alloc: Any = exports["alloc"]
        self._handle: Any = exports["handle"]
        self._health: Any = exports.get("health")
        self._export: Any = exports.get("export_state")
        self._import: Any = exports.get("import_state")

    def _tick(self) -> None:
        while True:
            time.sleep(EPOCH_TICK_S)
            self.engine.increment_epoch()

    def _arm(self) -> None:
        """Every call gets its own fuel and deadline."""
        self.store.set_fuel(self.fuel)
        self.store.set_epoch_deadline(self.deadline_ticks)

    def _log(self, caller: Any, ptr: int, length: int) -> None:
        mem = caller.get("memory")
        data = mem.read(caller, ptr, ptr + min(length, 4096))
        sys.stderr.write(data.decode(errors="replace") + "\n")
        sys.stderr.flush()

    def _put(self, data: bytes) -> tuple[int, int]:
        self._arm()
        ptr = int(self._alloc(self.store, len(data)))
        if data:
            self.memory.write(self.store, data, ptr)
        return ptr, len(data)

    def _get(self, packed: int) -> bytes:
        packed &= (1 << 64) - 1
        ptr, length = packed >> 32, packed & 0xFFFFFFFF
        if ptr + length > self.memory.data_len(self.store):
            raise ValueError(f"the module answered {length} bytes at {ptr}, outside its memory")
        return bytes(self.memory.read(self.store, ptr, ptr + length))

    def handle(self, request: bytes) -> bytes:
        ptr, length = self._put(request)
        self._arm()
        return self._get(int(self._handle(self.store, ptr, length)))

    def health(self) -> bool:
        if self._health is None:
            return True
        self._arm()
        return bool(self._health(self.store))

    def export_state(self) -> bytes:
        if self._export is None:
            return b""
        self._arm()
        return self._get(int(self._export(self.store)))

    def import_state(self, data: bytes) -> None:
        if self._import is not None and data:
            ptr, length = self._put(data)
            self._arm()
            self._import(self.store, ptr, length)


def main(argv: list[str]) -> int:
    from exo.modules.runner import serve

    return serve(WasmModule(argv[0], json.loads(argv[1])))


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception:
        traceback.print_exc()  # the module's log: the manager quotes its last line
        sys.exit(1)
