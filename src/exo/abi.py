"""The application binary interface between the kernel and Exo processes.

Both sides import this module: the kernel, and ``exo_std`` inside sandboxed
processes, where only the standard library is available (the sandbox exposes the
host's Python and the ``exo``/``exo_std`` sources, not the kernel's virtualenv).
So this module uses the standard library only.

Wire format of the bootstrap channel: one JSON object per message over a Fusion Ring
channel; file descriptors go beside it on a SOCK_SEQPACKET socket with SCM_RIGHTS (see
``exo.kernel.bootstrap``); the control socket carries the same JSON. Requests are
``{"id": n, "op": name, "args": {...}}``; replies are ``{"id": n, "ok": true,
"result": ...}`` or ``{"id": n, "ok": false, "error": type, "message": text}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket

BOOTSTRAP_FD_ENV = "EXO_BOOTSTRAP_FD"  # the descriptor-passing socket
BOOTSTRAP_RING_ENV = "EXO_BOOTSTRAP_RING"  # the Fusion Ring channel + its pool (5 fds)
PID_ENV = "EXO_PID"
PARENT_PID_ENV = "EXO_PARENT_PID"  # a spawned process's parent: its inherited channels' peer
BOOTSTRAP_FD = 3
MAX_MESSAGE = 64 * 1024
MAX_FDS = 16


class ProtocolError(Exception):
    """A malformed message on a kernel channel."""


def encode_message(obj: dict[str, Any]) -> bytes:
    data = json.dumps(obj, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    return data


def decode_message(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("message is not a JSON object")
    return obj


def send_message(sock: socket.socket, obj: dict[str, Any], fds: list[int] | None = None) -> None:
    data = encode_message(obj)
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
        return decode_message(data), fds
    except ProtocolError:
        for fd in fds:
            _close(fd)
        raise


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def message_bytes(data: Any) -> bytes:
    """The bytes of a received ring message: inline messages arrive as bytes, larger
    ones as a pool ``Block``, which is copied out and handed back to the pool here."""
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    with data as view:
        return bytes(view)


# The rights bits are the contract between the kernel and applications; both sides use
# the kernel's definition (its module and its package import only the standard library).
from exo.kernel.caps.rights import Rights as Rights  # noqa: E402

TYPE_CHECKING = False  # no typing import at run time: boot path (exo/_value.py)
if TYPE_CHECKING:
    from typing import Any
