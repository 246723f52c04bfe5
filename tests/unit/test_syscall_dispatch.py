"""The dispatcher against a stand-in kernel (a ``SyscallHost``): every request gets a
reply with its code, a handle's rights from the row are checked before the handler, a
kernel bug is logged and answered INTERNAL, and unused descriptors are closed."""

from __future__ import annotations

import os
from typing import Any, cast

import pytest

from exo.abi.errors import ErrorCode
from exo.kernel import syscalls
from exo.kernel.caps import Rights
from exo.kernel.caps.errors import InsufficientRights
from exo.sandbox.errors import ExecFailed


class _Caps:
    def __init__(self) -> None:
        self.checked: list[tuple[int, int, Rights]] = []

    def check(self, pid: int, handle: int, rights: Rights = Rights.NONE) -> None:
        self.checked.append((pid, handle, rights))
        raise InsufficientRights(f"handle {handle:#x} lacks {rights.format()}")


class _Host:
    def __init__(self) -> None:
        self.caps = _Caps()
        self.messages: list[str] = []

    def log(self, message: str) -> None:
        self.messages.append(message)


class _Proc:
    pid = 7


def _dispatch(host: _Host, msg: dict[str, Any], fds: list[int] | None = None
              ) -> dict[str, Any]:
    reply, out = syscalls._dispatch(cast(syscalls.SyscallHost, host), cast(Any, _Proc()),
                                    msg, fds if fds is not None else [])
    assert out == []
    return reply


def test_a_served_call_and_the_dispatchers_own_refusals(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    # a row whose handler is not there yet (every row has one today): NOT_IMPLEMENTED
    monkeypatch.delitem(syscalls.HANDLERS, "kill")
    host = _Host()
    assert _dispatch(host, {"id": 1, "op": "getpid", "args": {}}) == \
        {"id": 1, "ok": True, "result": {"pid": 7}}
    for msg, error, code in (
            ({"id": 2, "op": "nosuch"}, "SyscallError", ErrorCode.UNKNOWN_SYSCALL),
            ({"id": 3, "op": "kill", "args": {"pid": 1, "signal": 9}}, "SyscallError",
             ErrorCode.NOT_IMPLEMENTED),
            ({"id": 4, "op": 5}, "SyscallError", ErrorCode.PROTOCOL),
            ({"id": 5, "op": "close", "args": {}}, "KeyError", ErrorCode.INVALID_ARGUMENT),
            ({"id": 6, "op": "close", "args": {"handle": "x"}}, "TypeError",
             ErrorCode.INVALID_ARGUMENT),
    ):
        reply = _dispatch(host, msg)
        assert (reply["id"], reply["ok"], reply["error"], reply["code"]) == \
            (msg["id"], False, error, code), reply
    assert _dispatch(host, {"id": 5, "op": "close", "args": {}})["message"] == \
        "missing argument 'handle'"
    assert host.caps.checked == [] and host.messages == []


def test_a_handles_rights_are_checked_from_the_row_before_the_handler(
        monkeypatch: pytest.MonkeyPatch) -> None:
    called = []
    monkeypatch.setitem(syscalls.HANDLERS, "send_capability",
                        lambda *a: called.append(a) or ({}, []))
    host = _Host()
    reply = _dispatch(host, {"id": 1, "op": "send_capability",
                             "args": {"handle": 3, "pid": 2}})
    assert reply["error"] == "InsufficientRights"
    assert reply["code"] == ErrorCode.INSUFFICIENT_RIGHTS
    assert host.caps.checked == [(7, 3, Rights.TRANSFER)] and called == []


def test_every_exception_gets_a_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    def exec_failed(*_: object) -> tuple[object, list[int]]:
        raise ExecFailed("/nonexistent/prog: No such file or directory", 2)

    def bug(*_: object) -> tuple[object, list[int]]:
        raise ZeroDivisionError("a bug in a handler")

    host = _Host()
    monkeypatch.setitem(syscalls.HANDLERS, "getpid", exec_failed)
    reply = _dispatch(host, {"id": 1, "op": "getpid", "args": {}})
    assert (reply["error"], reply["code"]) == ("ExecFailed", ErrorCode.EXEC_FAILED)
    monkeypatch.setitem(syscalls.HANDLERS, "getpid", bug)
    reply = _dispatch(host, {"id": 2, "op": "getpid", "args": {}})
    assert (reply["error"], reply["code"]) == ("InternalError", ErrorCode.INTERNAL)
    assert "ZeroDivisionError: a bug in a handler" in host.messages[-1]
    assert "Traceback" in host.messages[-1]


def test_descriptors_a_request_should_not_carry_are_refused_and_closed() -> None:
    r, w = os.pipe()
    try:
        reply = _dispatch(_Host(), {"id": 1, "op": "getpid", "args": {}}, [r])
        assert reply["code"] == ErrorCode.INVALID_ARGUMENT
        assert "takes 0 descriptors" in reply["message"]
        with pytest.raises(OSError):
            os.fstat(r)
    finally:
        os.close(w)
