"""What runs inside a module's sandboxed process: ``python -m exo.modules.runner ENTRY``.

Loads the module's entry file (its Exo path), says READY on the channel the manager
handed over, then serves frames (``exo.modules.wire``) until STOP or the manager's end
closes. The entry provides ``handle(request: bytes) -> bytes`` and may provide
``health() -> bool``, ``export_state() -> bytes`` and ``import_state(bytes)``, Erlang's
``code_change`` idea. An exception in ``handle`` answers ERROR for that request only.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from types import ModuleType

from exo.modules import wire


def load(entry: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("exo_module", entry)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {entry}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "handle", None)):
        raise ImportError(f"{entry} defines no handle(request) function")
    return module


def _answer(module: object, kind: int, body: bytes) -> bytes:
    if kind == wire.REQUEST:
        out = module.handle(body)  # type: ignore[attr-defined]
        return bytes(out)
    if kind == wire.HEALTH:
        check = getattr(module, "health", None)
        if check is not None and not check():
            raise RuntimeError("health() returned false")
        return b"ok"
    if kind == wire.EXPORT:
        export = getattr(module, "export_state", None)
        return bytes(export()) if export is not None else b""
    if kind == wire.IMPORT:
        imp = getattr(module, "import_state", None)
        if imp is not None:
            imp(body)
        return b""
    raise ValueError(f"unknown frame kind {kind}")


def main(argv: list[str]) -> int:
    return serve(load(argv[0]))


def serve(module: object) -> int:
    """Say READY on the inherited channel, then answer frames with ``module``'s
    functions (a Python module, or ``exo.modules.wasm_runner``'s WebAssembly instance)
    until STOP or the manager is gone."""
    from exo.ipc import PeerGoneError
    from exo_std import ipc

    (ep,) = ipc.inherited()
    ep.send(wire.frame(wire.READY, 0))
    while True:
        try:
            data, _ = ep.recv()
        except PeerGoneError:
            return 0
        kind, rid, body = wire.parse(data)
        if kind == wire.STOP:
            return 0
        try:
            reply = wire.frame(wire.OK, rid, _answer(module, kind, body))
        except Exception as exc:
            reply = wire.frame(wire.ERROR, rid, f"{type(exc).__name__}: {exc}".encode()[:200])
        ep.send(reply)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception:
        traceback.print_exc()  # the module's log: the manager quotes its last line
        sys.exit(1)
