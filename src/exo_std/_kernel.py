"""The process's bootstrap channel to the kernel, and the one ``call`` over it.

The kernel starts every Exo process with a Fusion Ring channel (and its small pool)
at the descriptors named by ``EXO_BOOTSTRAP_RING``, and a descriptor-passing socket
at ``EXO_BOOTSTRAP_FD`` (see ``exo.kernel.bootstrap``). Calls are serialised by a
lock: one request, one reply.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import threading
import time

from exo.abi import (
    BOOTSTRAP_FD_ENV,
    BOOTSTRAP_RING_ENV,
    MAX_FDS,
    AdaptiveSpin,
    ProtocolError,
    decode_message,
    encode_message,
    message_bytes,
)
from exo.abi.syscalls import SYSCALLS
from exo_std.errors import (
    InvalidArgument,
    KernelUnavailable,
    RequestTooLarge,
    UnknownSyscall,
    error_from_reply,
)

# The C scanner json.loads ends up in (as exo.abi uses it): one JSON value from an index.
_scan_value = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set in __init__
_NO_VALUE = object()


def _value(body: bytes) -> Any:
    """The one JSON value ``body`` holds, exactly as json.loads reads it inside an
    object; ``_NO_VALUE`` if it is anything else (then the caller decodes the whole
    message, which raises as json.loads does)."""
    try:
        text = body.decode()
        value, end = _scan_value(text, 0)
    except (StopIteration, ValueError, RecursionError):
        return _NO_VALUE
    return value if end == len(text) else _NO_VALUE


TYPE_CHECKING = False  # no typing import at run time: every app imports this (exo/_value.py)
if TYPE_CHECKING:
    from typing import Any


class KernelConnection:
    def __init__(self, sock: socket.socket, endpoint: Any) -> None:
        from exo.ipc import IpcError  # loaded with the endpoint already: no import per call

        self._sock = sock
        self._endpoint = endpoint  # exo_std.ipc.Endpoint: the rings and their pool
        # Its two rings, called directly: the bootstrap channel carries no capabilities,
        # so the Endpoint and Channel layers (two Python frames each way) have nothing to do.
        self._tx = endpoint._channel.tx
        self._rx = endpoint._channel.rx
        # The wait for a reply: a spin catches the kernel's answer to a short syscall
        # instead of a futex sleep and wake-up (exo.abi.AdaptiveSpin). A Fusion Ring
        # adapts it by itself; anything else is told each wait (``_observe``).
        spin = AdaptiveSpin(self._rx)
        self._observe = None if spin.native else spin.observe
        self._failures = (OSError, IpcError)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        # The null syscall's whole round trip in one C call (``Ring.call_int``): the
        # request written around its id, the reply matched around it, the pid returned
        # as an int; any other reply comes back as bytes and is read as ``call`` reads it.
        self._call_int = getattr(self._tx, "call_int", None) if self._observe is None else None

    def call(self, op: str, fds: list[int] | None = None, **args: Any) -> tuple[Any, list[int]]:
        with self._lock:
            req_id = next(self._ids)
            # Encoded before anything is sent: a request that cannot be sent (too large)
            # must not leave its descriptors queued on the socket, where the next call's
            # reply would be matched with them.
            try:
                if fds:
                    data = encode_message({"id": req_id, "op": op, "args": args,
                                           "nfds": len(fds)})
                elif not args and isinstance(op, str) and op.isascii() and op.isidentifier():
                    # no arguments (getpid, handles): the exact bytes the encoder would
                    # write, formatted (~0.15 us against ~1.6 us); an identifier needs
                    # no JSON escaping
                    data = b'{"id":%d,"op":"%s","args":{}}' % (req_id, op.encode())
                else:
                    data = encode_message({"id": req_id, "op": op, "args": args})
            except ProtocolError as exc:
                raise RequestTooLarge(f"{op}: {exc}") from None
            try:
                if fds:
                    socket.send_fds(self._sock, [b"F"], fds)
                # one positional argument each: the binding's fast path (no keyword parsing)
                self._tx.send(data)
                if self._observe is None:
                    reply, _ = self._rx.recv_msg()
                else:
                    t0 = time.perf_counter_ns()
                    reply, _ = self._rx.recv_msg()
                    self._observe(time.perf_counter_ns() - t0)
                if type(reply) is not bytes:  # a zero-copy Block: copied out, given back
                    reply = message_bytes(reply)
                # A successful reply without descriptors, as the kernel writes it:
                # ``{"id":<req_id>,"ok":true,"result":<value>}``. Its value is read alone
                # (a non-negative integer by int(), ~0.25 us against ~0.7 us for the
                # whole object); anything else, or anything not exactly so, is decoded
                # whole below. The same language: a value the scanner reads to the end
                # is the value json.loads would put under "result".
                head = b'{"id":%d,"ok":true,"result":' % req_id
                if reply.startswith(head) and reply.endswith(b"}"):
                    body = reply[len(head):-1]
                    if body.isdigit() and (len(body) == 1 or body[0] != 48) and len(body) < 19:
                        return int(body), []
                    value = _value(body)
                    if value is not _NO_VALUE:
                        return value, []
                msg = decode_message(reply)
                got: list[int] = []
                nfds = msg.get("nfds", 0)
                if isinstance(nfds, int) and 0 < nfds <= MAX_FDS:
                    _, got, _, _ = socket.recv_fds(self._sock, 1, nfds)
            except self._failures as exc:
                raise KernelUnavailable(f"kernel channel failed: {exc}") from None
            except ProtocolError as exc:
                raise KernelUnavailable(f"kernel sent a malformed reply: {exc}") from None
        if msg.get("id") != req_id:
            raise KernelUnavailable("reply does not match the request")
        if not msg.get("ok"):
            for fd in got:
                os.close(fd)
            raise error_from_reply(str(msg.get("error")), str(msg.get("message")),
                                   msg.get("code"))
        return msg.get("result"), got

    def getpid(self) -> Any:
        """``call("getpid")[0]``, without building or decoding a message in Python: the
        request's bytes are those ``call`` writes, and a reply of any other shape than
        ``{"id":<id>,"ok":true,"result":{"pid":<n>}}`` is read exactly as ``call`` reads it."""
        call_int = self._call_int
        if call_int is None:
            return self.call("getpid")[0]
        with self._lock:
            req_id = next(self._ids)
            try:
                got = call_int(self._rx, req_id, *_GETPID)
                if type(got) is int:
                    return {"pid": got}
                if type(got) is not bytes:  # a zero-copy Block: copied out, given back
                    got = message_bytes(got)
                msg = decode_message(got)
            except self._failures as exc:
                raise KernelUnavailable(f"kernel channel failed: {exc}") from None
            except ProtocolError as exc:
                raise KernelUnavailable(f"kernel sent a malformed reply: {exc}") from None
            got_fds: list[int] = []
            nfds = msg.get("nfds", 0)
            if isinstance(nfds, int) and 0 < nfds <= MAX_FDS:
                try:
                    _, got_fds, _, _ = socket.recv_fds(self._sock, 1, nfds)
                except OSError as exc:
                    raise KernelUnavailable(f"kernel channel failed: {exc}") from None
        for fd in got_fds:  # getpid takes and gives no descriptor
            os.close(fd)
        if msg.get("id") != req_id:
            raise KernelUnavailable("reply does not match the request")
        if not msg.get("ok"):
            raise error_from_reply(str(msg.get("error")), str(msg.get("message")),
                                   msg.get("code"))
        return msg.get("result")

    def send_raw(self, data: bytes) -> dict[str, Any]:
        """Send bytes as they are and return the reply (tests of the kernel's parser)."""
        with self._lock:
            self._endpoint.send(data)
            reply, _ = self._endpoint.recv()
            return decode_message(message_bytes(reply))

    def close(self) -> None:
        self._endpoint.close()
        self._sock.close()


_connection: KernelConnection | None = None
_connection_lock = threading.Lock()


def connection() -> KernelConnection:
    """The process's kernel connection, opened on first use."""
    global _connection
    with _connection_lock:
        if _connection is None:
            raw = os.environ.get(BOOTSTRAP_FD_ENV)
            ring = os.environ.get(BOOTSTRAP_RING_ENV)
            if raw is None or ring is None:
                raise KernelUnavailable(
                    f"not running under Exo-OS ({BOOTSTRAP_FD_ENV} is not set); "
                    "start the program with `exo run`"
                )
            from exo_std.ipc import attach_endpoint

            try:
                sock = socket.socket(fileno=int(raw))
                endpoint = attach_endpoint([int(x) for x in ring.split(",")])
            except (ValueError, OSError) as exc:
                raise KernelUnavailable(f"bad bootstrap channel {raw!r}: {exc}") from None
            _connection = KernelConnection(sock, endpoint)
        return _connection


#: getpid's request around its id, and its reply around the id and the pid, exactly as
#: ``KernelConnection.call`` writes the one and the kernel's encoder writes the other.
_GETPID = (b'{"id":', b',"op":"getpid","args":{}}', b'{"id":', b',"ok":true,"result":{"pid":',
           b"}}")


def call(op: str, fds: list[int] | None = None, **args: Any) -> tuple[Any, list[int]]:
    """Make syscall ``op`` (a row of ``exo.abi.syscalls``): its name and argument names
    are checked against the row first (two set comparisons), so a typo fails here, not
    as a refusal from the kernel; the values are the kernel's to check."""
    if op == "getpid" and not args and not fds:  # the null syscall: its own fast path
        conn = _connection
        return (conn if conn is not None else connection()).getpid(), []
    row = SYSCALLS.get(op)
    if row is None or not row.required <= args.keys() <= row.names:
        _refuse(op, args)
    return connection().call(op, fds, **args)


def _refuse(op: str, args: dict[str, Any]) -> None:
    """Raise what the kernel would answer to a call ``call`` will not send."""
    row = SYSCALLS.get(op)
    if row is None:
        raise UnknownSyscall(f"unknown syscall {op[:64]!r}")
    unknown = sorted(set(args) - row.names)
    if unknown:
        raise InvalidArgument(f"{op}: unknown argument {unknown[0][:64]!r}")
    missing = sorted(row.required - set(args))
    raise InvalidArgument(f"{op}: missing argument {missing[0]!r}")


def reset() -> None:
    """Forget the connection (tests, or after the kernel handed over a new channel)."""
    global _connection
    with _connection_lock:
        if _connection is not None:
            _connection.close()
        _connection = None
