"""Shared helpers of the sandbox tests (a uniquely named module: conftest is not importable)."""


from __future__ import annotations

import json
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from exo.sandbox import SandboxSpec, spawn

# Runs inside the sandbox: executes each case's snippet and reports the outcome as JSON.
RUNNER = r'''
import ctypes, errno, json, os, sys
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
def sc(nr, *args):
    """Raw syscall; raises OSError like the os module does."""
    r = _libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a
                                           for a in args])
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r
cases = json.loads(sys.stdin.read())
ctx = json.loads(os.environ["EXO_TEST_CTX"])
out = {}
for name, code in cases.items():
    ns = {"sc": sc, "ctx": ctx, "os": os, "ctypes": ctypes, "errno": errno}
    try:
        exec(code, ns)
        out[name] = {"ok": True, "value": ns.get("result")}
    except OSError as e:
        out[name] = {"ok": False, "errno": errno.errorcode.get(e.errno, str(e.errno)),
                     "msg": str(e)}
    except BaseException as e:
        out[name] = {"ok": False, "exc": type(e).__name__, "msg": str(e)}
print("\n@@RESULT@@" + json.dumps(out))
'''


@dataclass
class World:
    """Host-side objects the sandboxed app must not reach (and a few it may)."""

    root: Path
    own_rw: Path
    own_ro: Path
    exec_dir: Path
    other_app: Path
    tcp_port: int
    tcp_port_allowed: int
    abstract_name: str
    secret_fd: int
    ctx: dict[str, object]


def _listener(port: int = 0) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(16)
    return s


def run_cases(spec: SandboxSpec, cases: dict[str, str], ctx: dict[str, object],
              timeout: float = 60, ablate: frozenset[str] = frozenset(),
              ) -> tuple[dict[str, dict[str, object]], int, str]:
    """Run every snippet in one sandbox; returns (outcomes, returncode, stderr)."""
    env = dict(spec.env)
    env["EXO_TEST_CTX"] = json.dumps(ctx)
    spec = SandboxSpec(**{**spec.__dict__, "env": env})
    import subprocess

    proc = spawn(spec, [sys.executable, "-c", RUNNER], name="battery", _ablate=ablate,
                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        proc.stdin.write(json.dumps(cases).encode())
        proc.stdin.close()
        out = proc.stdout.read().decode()
        err = proc.stderr.read().decode()
        rc = proc.wait(timeout)
    finally:
        proc.close()
    if "@@RESULT@@" not in out:
        raise AssertionError(f"runner produced no result (rc={rc}): {err[-2000:]}")
    return json.loads(out.rsplit("@@RESULT@@", 1)[1]), rc, err
