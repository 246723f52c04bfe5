"""The application binary interface between the kernel and Exo processes.

Both sides import this module: the kernel, and ``exo_std`` inside sandboxed
processes, where only the standard library is available (the sandbox exposes the
host's Python and the ``exo``/``exo_std`` sources, not the kernel's virtualenv).
So this module uses the standard library only.

Wire format of the bootstrap channel: one JSON object per message over a Fusion Ring
channel; file descriptors go beside it on a SOCK_SEQPACKET socket with SCM_RIGHTS (see
``exo.kernel.bootstrap``); the control socket carries the same JSON. Requests are
``{"id": n, "op": name, "args": {...}}``; replies are ``{"id": n, "ok": true,
"result": ...}`` or ``{"id": n, "ok": false, "error": type, "code": n, "message":
text}`` (``exo.abi.errors``). The syscalls, their arguments and what they need are one
table, ``exo.abi.syscalls`` (loaded by those who use it, not by this package).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket

from exo._fdpass import recv_fds
from exo.abi.errors import AbiError as AbiError
from exo.abi.errors import ErrorCode as ErrorCode
from exo.abi.errors import ProtocolError as ProtocolError
from exo.abi.rights import Rights as Rights

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


# Built once: ``json.dumps`` with any option builds a JSONEncoder per call (~0.7 µs of a
# ~2.4 µs encode on this machine). Same options, same output.
_dumps = json.JSONEncoder(separators=(",", ":")).encode
# The C scanner ``json.loads`` ends up in, without the encoding sniffing and the two
# whitespace regexes around it (~1.7 µs -> ~0.5 µs for a reply).
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set in __init__


def encode_message(obj: dict[str, Any], dumps: Callable[[Any], bytes] | None = None) -> bytes:
    """``obj`` as one message. ``dumps`` (obj -> bytes) replaces the standard library's
    encoder where a faster one is installed (the kernel: msgspec)."""
    data = _dumps(obj).encode() if dumps is None else dumps(obj)
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    return data


def _loads(data: bytes) -> Any:
    """``json.loads(data)``, fast for the compact UTF-8 form both sides send. Anything
    else (whitespace around the value, other encodings, errors) goes through
    ``json.loads`` itself, so the accepted language and the errors are exactly its."""
    try:
        text = data.decode()
        obj, end = _scan(text, 0)
        if end == len(text):
            return obj
    except (StopIteration, ValueError):
        pass
    return json.loads(data)


def decode_message(data: bytes, loads: Callable[[bytes], Any] | None = None
                   ) -> dict[str, Any]:
    """One message as a dict, or ProtocolError. ``loads`` replaces the JSON parser where
    a faster one is installed (the kernel: msgspec); it must raise ValueError or
    RecursionError on bad input, as ``json.loads`` does."""
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    try:
        obj = _loads(data) if loads is None else loads(data)
    except ValueError as exc:  # also bad UTF-8, and numbers past int's digit limit
        raise ProtocolError(f"not JSON: {str(exc)[:200]}") from None
    except RecursionError:  # "[[[[...": nesting past the interpreter's limit
        raise ProtocolError("not JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise ProtocolError("message is not a JSON object")
    return obj


#: The bytes that open or separate JSON values (``decode_request`` counts them).
_VALUE_BYTES = b",[{"


def decode_request(data: bytes, loads: Callable[[bytes], Any] | None = None
                   ) -> dict[str, Any]:
    """``decode_message`` for what an app sends the kernel: bounded in what it costs.

    Counting the bytes that open or separate JSON values is an upper bound on the values
    (commas inside strings count too, which only errs on the safe side). It is one
    C-speed pass (``translate`` deleting them): three ``count`` calls were three passes,
    ~115 µs for a 60 KiB name against ~25-90 µs, and more than msgspec's whole decode
    (~25 µs), all with the interpreter lock held while other processes wait for it."""
    if len(data) > 256:  # small requests cannot hold many values: skip the scan
        values = len(data) - len(data.translate(None, _VALUE_BYTES))
        if values > MAX_REQUEST_VALUES:
            raise ProtocolError(f"request holds more than {MAX_REQUEST_VALUES} JSON values")
    return decode_message(data, loads)


def send_message(sock: socket.socket, obj: dict[str, Any], fds: list[int] | None = None) -> None:
    data = encode_message(obj)
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def recv_message(sock: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """One message and its fds; None when the peer has closed the channel."""
    data, fds, flags = recv_fds(sock, MAX_MESSAGE, MAX_FDS)
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


class AdaptiveSpin:
    """How long one end of the bootstrap channel spins before it sleeps: adapted to the
    waits it sees, within ``[floor_us, cap_us]``.

    A waiter that sleeps on the ring's futex costs its peer a ``FUTEX_WAKE`` and itself a
    wake-up (a membarrier or a fence, a context switch: ~10 us a round trip here) at
    every message. When the peer answers within a few microseconds -- the kernel serving
    a null syscall, or an app calling in a loop -- a short spin catches the message
    instead. So each observed wait that ended within ``cap_us`` sets the budget to twice
    that wait (the next one is caught), and each longer wait (the peer was busy
    elsewhere or idle: the spin was wasted) halves it, back to ``floor_us``, the ring's
    default. The spin itself runs in ``_fring.c``: bounded by the budget, without the
    GIL, and skipped while the peer last ran on the waiter's CPU.

    A Fusion Ring adapts by itself (``ring.configure(spin_us=floor, spin_max_us=cap)``:
    the same rule, applied in C to the waits it times, with no clock read or Python call
    per message): then ``native`` is true and ``observe`` need not be called. Any other
    ring-like object (``configure(spin_us=)`` only) is driven from Python through
    ``observe``."""

    __slots__ = ("_configure", "budget_ns", "cap_ns", "floor_ns", "native")

    def __init__(self, ring: Any, floor_us: float = 5.0, cap_us: float = 50.0) -> None:
        self._configure = ring.configure
        self.floor_ns = int(floor_us * 1000)
        self.cap_ns = int(cap_us * 1000)
        self.budget_ns = self.floor_ns
        try:
            ring.configure(spin_us=floor_us, spin_max_us=cap_us)
            self.native = True
        except TypeError:  # a ring without the adaptive wait
            ring.configure(spin_us=floor_us)
            self.native = False

    def observe(self, waited_ns: int) -> None:
        """Account one wait of ``waited_ns`` (the time ``recv`` took to return); only
        for a ring that does not adapt by itself (``native`` false)."""
        budget = self.budget_ns
        if waited_ns <= self.cap_ns:
            new = max(self.floor_ns, min(self.cap_ns, 2 * waited_ns))
            if budget >= new and waited_ns <= budget:
                return  # caught by the current budget: keep it (no configure call)
        else:
            new = max(self.floor_ns, budget // 2)
        if new != budget:
            self.budget_ns = new
            self._configure(spin_us=new / 1000)


TYPE_CHECKING = False  # no typing import at run time: boot path (exo/_value.py)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any
