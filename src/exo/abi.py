"""The application binary interface between the kernel and Exo processes.

Both sides import this module: the kernel, and ``exo_std`` inside sandboxed
processes, where only the standard library is available (the sandbox exposes the
host's Python and the ``exo``/``exo_std`` sources, not the kernel's virtualenv).
So this module uses the standard library only.

Wire format of the bootstrap channel: one JSON object per SOCK_SEQPACKET message,
file descriptors attached with SCM_RIGHTS. Requests are
``{"id": n, "op": name, "args": {...}}``; replies are ``{"id": n, "ok": true,
"result": ...}`` or ``{"id": n, "ok": false, "error": type, "message": text}``.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import socket
from typing import Any

BOOTSTRAP_FD_ENV = "EXO_BOOTSTRAP_FD"
PID_ENV = "EXO_PID"
BOOTSTRAP_FD = 3
MAX_MESSAGE = 64 * 1024
MAX_FDS = 16


class ProtocolError(Exception):
    """A malformed message on a kernel channel."""


def send_message(sock: socket.socket, obj: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(obj, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def recv_message(sock: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """One message and its fds; None when the peer has closed the channel."""
    data, fds, flags, _ = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS)
    if not data:
        for fd in fds:
            _close(fd)
        return None
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        for fd in fds:
            _close(fd)
        raise ProtocolError("message or descriptors truncated")
    try:
        obj = json.loads(data)
    except ValueError as exc:
        for fd in fds:
            _close(fd)
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        for fd in fds:
            _close(fd)
        raise ProtocolError("message is not a JSON object")
    return obj, fds


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


class Rights(enum.IntFlag):
    """What a capability lets its holder do with the resource it names.

    Defined here, in the ABI, because the bit values are the contract between the
    kernel and applications: both sides must agree on them.
    """

    NONE = 0
    READ = 1 << 0
    WRITE = 1 << 1
    EXECUTE = 1 << 2
    SEND = 1 << 3
    RECV = 1 << 4
    DUPLICATE = 1 << 5
    TRANSFER = 1 << 6
    GRANT = 1 << 7
