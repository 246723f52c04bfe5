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
BOOTSTRAP_RING_ENV = "EXO_BOOTSTRAP_RING"  # rings + both segments (6 fds, kernel/bootstrap.py)
PID_ENV = "EXO_PID"
PARENT_PID_ENV = "EXO_PARENT_PID"  # a spawned process's parent: its inherited channels' peer
BOOTSTRAP_FD = 3
MAX_MESSAGE = 64 * 1024
MAX_FDS = 16
# JSON values one request may hold. Decoding runs with the GIL held, so its cost is time
# stolen from every other process the kernel serves: 64 KiB of "[0,0,0,...]" costs ~3 ms,
# 2,048 values ~0.1 ms. No syscall needs more (a spawn's argv and caps included).
MAX_REQUEST_VALUES = 2048


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
    except ValueError as exc:  # also bad UTF-8, and numbers past int's digit limit
        raise ProtocolError(f"not JSON: {str(exc)[:200]}") from None
    except RecursionError:  # "[[[[...": nesting past the interpreter's limit
        raise ProtocolError("not JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise ProtocolError("message is not a JSON object")
    return obj


def decode_request(data: bytes) -> dict[str, Any]:
    """``decode_message`` for what an app sends the kernel: bounded in what it costs.

    Counting the bytes that open or separate JSON values is a C-speed scan (~10 µs for
    64 KiB) and an upper bound on the values (commas inside strings count too, which
    only errs on the safe side)."""
    if len(data) > 256:  # small requests cannot hold many values: skip the scan
        values = data.count(b",") + data.count(b"[") + data.count(b"{")
        if values > MAX_REQUEST_VALUES:
            raise ProtocolError(f"request holds more than {MAX_REQUEST_VALUES} JSON values")
    return decode_message(data)


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
