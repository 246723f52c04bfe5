"""WebAssembly test modules written in WAT (compiled by wasmtime.wat2wasm) and packaged
and signed like any module: an echo service that prefixes its version, counts requests
(state handed over) and logs through the one host function it may be granted; variants
that loop forever, import what they were not granted, or grow memory past the limit."""

from __future__ import annotations

import hashlib
from pathlib import Path

from exo.pkg import format as fmt
from exo.pkg import sign

#: ``TAG`` is replaced by the version ("v1.0:"), ``IMPORTS`` and ``EXTRA`` by variants.
ECHO = r'''
(module
  IMPORTS
  (memory (export "memory") 2)
  (global $next (mut i32) (i32.const 4096))
  (global $count (mut i32) (i32.const 0))
  (data (i32.const 0) "TAG")
  (func $alloc (export "alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $n)))
    (if (i32.gt_u (global.get $next) (i32.const 65536)) (then (global.set $next (i32.const 4096))
      (local.set $p (i32.const 4096)) (global.set $next (i32.add (i32.const 4096) (local.get $n)))))
    (local.get $p))
  (func (export "handle") (param $p i32) (param $n i32) (result i64)
    (local $out i32)
    EXTRA
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (local.set $out (call $alloc (i32.add (local.get $n) (i32.const TAGLEN))))
    (memory.copy (local.get $out) (i32.const 0) (i32.const TAGLEN))
    (memory.copy (i32.add (local.get $out) (i32.const TAGLEN)) (local.get $p) (local.get $n))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
            (i64.extend_i32_u (i32.add (local.get $n) (i32.const TAGLEN)))))
  (func (export "export_state") (result i64)
    (local $out i32)
    (local.set $out (call $alloc (i32.const 4)))
    (i32.store (local.get $out) (global.get $count))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32)) (i64.const 4)))
  (func (export "import_state") (param $p i32) (param $n i32)
    (if (i32.eq (local.get $n) (i32.const 4))
      (then (global.set $count (i32.load (local.get $p))))))
  (func (export "count") (result i32) (global.get $count))
)
'''

LOG_IMPORT = '(import "exo" "log" (func $log (param i32 i32)))'
VARIANTS = {
    "good": ("", ""),
    # logs each request through the granted host function
    "logs": (LOG_IMPORT, "(call $log (local.get $p) (local.get $n))"),
    # a request "loop" spins forever: fuel or the epoch deadline must stop it
    "spins": ("", "(if (i32.eq (i32.load8_u (local.get $p)) (i32.const 108)) "
                  "(then (loop $l (br $l))))"),
    # asks for WASI's file functions without being granted WASI
    "wasi": ('(import "wasi_snapshot_preview1" "fd_write" '
             '(func $w (param i32 i32 i32 i32) (result i32)))', ""),
    # grows its memory by 1 GiB on a request "g": past its limit, the grow fails (-1)
    "grows": ("", "(if (i32.eq (i32.load8_u (local.get $p)) (i32.const 103)) "
                  "(then (if (i32.ne (memory.grow (i32.const 16384)) (i32.const -1)) "
                  "(then unreachable))))"),
}


def wasm(version: str, variant: str = "good") -> bytes:
    import wasmtime

    tag = f"v{version}:"
    imports, extra = VARIANTS[variant]
    text = (ECHO.replace("IMPORTS", imports).replace("EXTRA", extra)
            .replace("TAGLEN", str(len(tag))).replace("TAG", tag))
    return bytes(wasmtime.wat2wasm(text))


def build_wasm(directory: Path, root: Path, version: str, variant: str = "good", *,
               name: str = "wecho", wasm_toml: str = "", wat: str | None = None) -> Path:
    """A signed module package of ``wasm(version, variant)``, or of the module ``wat``."""
    import wasmtime

    code = wasm(version, variant) if wat is None else bytes(wasmtime.wat2wasm(wat))
    manifest = (f'[package]\nname = "{name}"\nversion = "{version}"\n\n'
                f'[binary]\ntype = "wasm"\nkind = "module"\nentry = "main.wasm"\n\n'
                f'[module]\nservice = "ipc://{name}"\n\n[sandbox]\ncapabilities = []\n\n'
                f'[wasm]\n{wasm_toml}').encode()
    entry = fmt.Entry("main.wasm", size=len(code), sha256=hashlib.sha256(code).hexdigest())
    directory.mkdir(parents=True, exist_ok=True)
    return fmt.write_package(directory / f"{name}-{version}.exopkg", manifest,
                             [(entry, code)], sign.load_signer(root))
