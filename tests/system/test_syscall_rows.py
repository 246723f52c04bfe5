"""Every row of the syscall table against hostile arguments: each request gets its error
reply with the right code, and the kernel keeps serving.

For every row: each argument missing, mistyped, out of bounds or huge (integers past
2**63, 60 KiB strings, lists one item too long), an unknown argument added, the wrong
number of descriptors; then unknown names and malformed requests. The bootstrap rows
are sent by one sandboxed app over its real channel; the control rows go through the
control socket's dispatch (``ControlServer._handle``). The cases come from the table
itself (``hostile_cases``, run inside the app from its source), so a new row is covered
the day it is added.
"""

from __future__ import annotations

import inspect
import json
import socket
import threading
from typing import Any

from tests.system.helpers import run_app

from exo.abi import syscalls as table
from exo.abi.errors import ErrorCode, code_of
from exo.abi.syscalls import CONTROL_OPS
from exo.kernel.control import ControlServer
from exo.kernel.kernel import Kernel


def hostile_cases(rows: Any, T: Any, E: Any) -> list[tuple[str, str, dict[str, Any], int, int]]:
    """(label, op, args, descriptors to send, expected code) for every hostile request
    the table implies. ``T`` is ``exo.abi.syscalls``, ``E`` the ErrorCode enum (passed in:
    this function also runs, from its source, inside a sandboxed app)."""
    huge_str = {"name": E.INVALID_NAME}  # bounded by the name parser, not the table

    def sample(arg: Any) -> Any:
        kind = arg.kind
        if kind == T.INT:
            return max(arg.lo, min(0, arg.hi))
        if kind == T.STR:
            return ""
        if kind == T.BOOL:
            return False
        if kind == T.TIMEOUT:
            return 0
        if kind == T.LIST:
            return [sample(arg.item)] * arg.lo if arg.item is not None else []
        return {f.name: sample(f) for f in arg.fields} if arg.fields else {}

    bad = {T.INT: ["1", 1.5, True, [], {}], T.STR: [1, True, [], {}],
           T.BOOL: [1, "true", []], T.TIMEOUT: ["1", True, -1, -1e308, []],
           T.LIST: ["x", 1, {}], T.OBJECT: ["x", 1, []]}
    cases = []
    for row in rows:
        refused = E.NOT_IMPLEMENTED if row.status == T.NOT_YET else None
        valid = {a.name: sample(a) for a in row.args}
        fds = row.fds_in[0]

        def case(label: str, args: Any, code: int, nfds: int = fds, row: Any = row,
                 refused: Any = refused) -> None:
            cases.append((f"{row.name}: {label}", row.name, args, nfds, refused or code))

        case("unknown argument", {**valid, "zz_unknown": 1}, E.INVALID_ARGUMENT)
        lo, hi = row.fds_in
        case("too few descriptors" if lo else "too many descriptors", valid,
             E.INVALID_ARGUMENT, lo - 1 if lo else hi + 1)
        for arg in row.args:
            name = arg.name
            if arg.required:
                case(f"missing {name}", {k: v for k, v in valid.items() if k != name},
                     E.INVALID_ARGUMENT)
                case(f"{name} null", {**valid, name: None}, E.INVALID_ARGUMENT)
            for value in bad[arg.kind]:
                case(f"{name}={value!r}", {**valid, name: value}, E.INVALID_ARGUMENT)
            if arg.kind == T.INT:
                for value in (2**63, -2**63 - 1, 2**64 + 1, 10**30, arg.hi + 1):
                    case(f"{name} huge {value}", {**valid, name: value}, E.INVALID_ARGUMENT)
            elif arg.kind == T.STR:
                code = E.INVALID_ARGUMENT if arg.hi < 60_000 else huge_str[name]
                case(f"{name} 60 KiB", {**valid, name: "x" * 60_000}, code)
            elif arg.kind == T.LIST and arg.item is not None:
                item = arg.item
                case(f"{name} one item too many",
                     {**valid, name: [sample(item)] * (arg.hi + 1)}, E.INVALID_ARGUMENT)
                case(f"{name} a bad item", {**valid, name: [bad[item.kind][0]]},
                     E.INVALID_ARGUMENT)
                if item.fields:
                    case(f"{name} an item with an unknown field",
                         {**valid, name: [{**sample(item), "zz": 0}]}, E.INVALID_ARGUMENT)
            elif arg.kind == T.OBJECT and not arg.fields:
                case(f"{name} too many fields",
                     {**valid, name: {f"k{i}": 0 for i in range(arg.hi + 1)}},
                     E.INVALID_ARGUMENT)
    return cases


APP = """
import json, os, socket
from typing import Any
from exo.abi import syscalls as T
from exo.abi.errors import ErrorCode as E
from exo_std._kernel import connection
from exo_std import process

SOURCE

conn = connection()
rows = [r for r in T.TABLE if r.channel == T.BOOTSTRAP]
cases = hostile_cases(rows, T, E)
for name in ("nosuch", "", "GETPID", "getpid\\x00", "x" * 60_000, "__init__", "ping", "run"):
    cases.append((f"unknown {name[:20]!r}", name, {}, 0, E.UNKNOWN_SYSCALL))
r, w = os.pipe()
wrong, sent = [], 0
for label, op, args, nfds, code in cases:
    sent += 1
    msg = {"id": sent, "op": op, "args": args}
    if nfds:
        msg["nfds"] = nfds
        socket.send_fds(conn._sock, [b"F"], [r] * nfds)
    reply = conn.send_raw(json.dumps(msg).encode())
    good = (reply.get("ok") is False and reply.get("id") == sent
            and reply.get("code") == code and isinstance(reply.get("error"), str)
            and len(reply.get("message", "")) <= 1024)
    if not good:
        wrong.append([label, int(code), {k: str(v)[:200] for k, v in reply.items()}])
for raw, code in ((b'{"id": 1, "op": 5, "args": {}}', E.PROTOCOL),
                  (b'{"id": 2, "op": "getpid", "args": []}', E.PROTOCOL),
                  (b'{"id": 3, "op": "getpid", "args": {"x": NaN}}', E.PROTOCOL),
                  (b'not json', E.PROTOCOL)):
    sent += 1
    reply = conn.send_raw(raw)
    if reply.get("ok") is not False or reply.get("code") != code:
        wrong.append([raw.decode(), int(code), reply])
print(json.dumps({"sent": sent, "wrong": wrong}))
print("still served:", process.getpid() > 1)
"""


def test_every_syscall_row_refuses_hostile_arguments_with_its_code(kernel: Kernel) -> None:
    run_app(kernel, "pass")  # warm: the first spawn loads the sandbox and the servers
    threads = sum(1 for t in threading.enumerate() if t.name.startswith("exo-sys-"))
    source = inspect.getsource(hostile_cases)
    status, out, err = run_app(kernel, APP.replace("SOURCE", source))
    assert status == 0, err
    lines = out.splitlines()
    summary = json.loads(lines[0])
    assert summary["wrong"] == [], json.dumps(summary["wrong"][:20], indent=1)
    assert summary["sent"] > 250, summary["sent"]  # every row, many cases each
    assert lines[1] == "still served: True"
    assert not any("failed in the kernel" in m for m in kernel.messages)
    assert sum(1 for t in threading.enumerate() if t.name.startswith("exo-sys-")) <= threads


def test_every_control_row_refuses_hostile_arguments_with_its_code(kernel: Kernel) -> None:
    """The control socket checks its requests against the same rows, before running
    anything (the requests below never reach ``_run``'s spawn)."""
    server = ControlServer(kernel.api, kernel.root)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    wrong = []
    with a, b:
        cases = hostile_cases(CONTROL_OPS.values(), table, ErrorCode)
        cases += [("unknown", "getpid", {}, 0, ErrorCode.UNKNOWN_SYSCALL),
                  ("args not an object", "ping", [], 0, ErrorCode.PROTOCOL)]
        for label, op, args, nfds, code in cases:
            try:
                server._handle(a, op, args, [0] * nfds)
            except Exception as exc:
                if code_of(exc) != code:
                    wrong.append((label, code, type(exc).__name__, str(exc)[:200]))
            else:
                wrong.append((label, code, "served", ""))
    assert wrong == []
    assert len(cases) > 25
    assert server._handle(a, "ping", {}, [])["boot_id"] == kernel.boot_id
