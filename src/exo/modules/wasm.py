"""WebAssembly modules: what the manifest may ask for, checked in the kernel before the
module's process starts, and the command line of that process.

A WebAssembly module is the same signed package with ``[binary] type = "wasm"`` and a
``.wasm`` entry. It runs inside a sandboxed Exo process like a Python module (so a bug in
the engine is still confined by Landlock, seccomp and namespaces), under wasmtime there
(``exo.modules.wasm_runner``), with two more fences that only WebAssembly gives: fuel and
an epoch deadline bound every call, and the instance can import only the host functions
its manifest's ``[wasm] imports`` lists — no WASI (files, clock, environment, random)
unless ``wasi = true``, and even then no directory, argument or environment variable.

```toml
[wasm]
imports = ["exo.log"]      # host functions it may call
wasi = false               # WASI without preopens (stdout/stderr to its log)
fuel = 10000000            # per call
memory = 16777216          # bytes of linear memory, at most
timeout = 1.0              # seconds per call (epoch deadline)
```

The ABI (all integers i32 unless said): exports ``memory``, ``alloc(len) -> ptr`` and
``handle(ptr, len) -> i64`` (the answer's ``ptr << 32 | len``); optionally
``health() -> i32`` (0: unhealthy), ``export_state() -> i64`` and
``import_state(ptr, len)``.
"""

from __future__ import annotations

import json
from typing import Any

from exo.modules import ModuleError

#: The host functions a module may be granted: name -> (params, results) as wasm types.
HOST_FUNCTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "exo.log": (("i32", "i32"), ()),  # a line to the module's log
    "exo.now_ms": ((), ("i64",)),  # wall clock, milliseconds
}
DEFAULTS: dict[str, Any] = {"imports": [], "wasi": False, "fuel": 10_000_000,
                            "memory": 16 << 20, "timeout": 1.0}
MAX_FUEL = 1_000_000_000
MAX_MEMORY = 256 << 20
MAX_TIMEOUT = 30.0


def config(name: str, raw: dict[str, Any]) -> dict[str, Any]:
    """The ``[wasm]`` table of a manifest, checked and completed; ModuleError says what
    is wrong or asked beyond the bounds."""
    table = raw.get("wasm", {})
    if not isinstance(table, dict):
        raise ModuleError(f"{name}: refused: [wasm] must be a table")
    unknown = set(table) - set(DEFAULTS)
    if unknown:
        raise ModuleError(f"{name}: refused: unknown [wasm] key {sorted(unknown)[0]!r} "
                          f"({', '.join(DEFAULTS)})")
    out = {**DEFAULTS, **table}
    imports = out["imports"]
    if not isinstance(imports, list) or not all(isinstance(i, str) for i in imports):
        raise ModuleError(f"{name}: refused: [wasm] imports must be a list of names")
    for imp in imports:
        if imp not in HOST_FUNCTIONS:
            raise ModuleError(f"{name}: refused: [wasm] imports {imp!r}, which is not a host "
                              f"function ({', '.join(HOST_FUNCTIONS)})")
    if type(out["wasi"]) is not bool:
        raise ModuleError(f"{name}: refused: [wasm] wasi must be true or false")
    for key, hi in (("fuel", MAX_FUEL), ("memory", MAX_MEMORY)):
        if type(out[key]) is not int or not 0 < out[key] <= hi:
            raise ModuleError(f"{name}: refused: [wasm] {key} must be 1..{hi}")
    if type(out["timeout"]) not in (int, float) or not 0 < out["timeout"] <= MAX_TIMEOUT:
        raise ModuleError(f"{name}: refused: [wasm] timeout must be in (0, {MAX_TIMEOUT:g}] s")
    return out


def runner_argv(python: str, entry: str, raw: dict[str, Any]) -> list[str]:
    """The module process's command: the runner, the entry and its checked config."""
    name = str(raw.get("package", {}).get("name", "?"))
    return [python, "-m", "exo.modules.wasm_runner", entry,
            json.dumps(config(name, raw), separators=(",", ":"))]
