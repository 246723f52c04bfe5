"""The process's bootstrap channel to the kernel, and the one ``call`` over it.

The kernel starts every Exo process with the channel at a known descriptor (named
by ``EXO_BOOTSTRAP_FD``). Calls are serialised by a lock: one request, one reply.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
from typing import Any

from exo.abi import BOOTSTRAP_FD_ENV, ProtocolError, recv_message, send_message
from exo_std.errors import KernelUnavailable, error_from_reply


class KernelConnection:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def call(self, op: str, fds: list[int] | None = None, **args: Any) -> tuple[Any, list[int]]:
        with self._lock:
            req_id = next(self._ids)
            try:
                send_message(self._sock, {"id": req_id, "op": op, "args": args}, fds)
                reply = recv_message(self._sock)
            except OSError as exc:
                raise KernelUnavailable(f"kernel channel failed: {exc}") from None
            except ProtocolError as exc:
                raise KernelUnavailable(f"kernel sent a malformed reply: {exc}") from None
        if reply is None:
            raise KernelUnavailable("the kernel closed the channel")
        msg, got = reply
        if msg.get("id") != req_id:
            raise KernelUnavailable("reply does not match the request")
        if not msg.get("ok"):
            for fd in got:
                os.close(fd)
            raise error_from_reply(str(msg.get("error")), str(msg.get("message")))
        return msg.get("result"), got

    def close(self) -> None:
        self._sock.close()


_connection: KernelConnection | None = None
_connection_lock = threading.Lock()


def connection() -> KernelConnection:
    """The process's kernel connection, opened on first use."""
    global _connection
    with _connection_lock:
        if _connection is None:
            raw = os.environ.get(BOOTSTRAP_FD_ENV)
            if raw is None:
                raise KernelUnavailable(
                    f"not running under Exo-OS ({BOOTSTRAP_FD_ENV} is not set); "
                    "start the program with `exo run`"
                )
            try:
                sock = socket.socket(fileno=int(raw))
            except (ValueError, OSError) as exc:
                raise KernelUnavailable(f"bad bootstrap channel {raw!r}: {exc}") from None
            _connection = KernelConnection(sock)
        return _connection


def call(op: str, fds: list[int] | None = None, **args: Any) -> tuple[Any, list[int]]:
    return connection().call(op, fds, **args)


def reset() -> None:
    """Forget the connection (tests, or after the kernel handed over a new channel)."""
    global _connection
    with _connection_lock:
        if _connection is not None:
            _connection.close()
        _connection = None
