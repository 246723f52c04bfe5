"""The bootstrap channel between the kernel and one process.

Messages (syscall requests and replies, JSON per ``exo.abi``) travel over a Fusion Ring
channel; the ones above the inline size go zero-copy through one segment per direction,
owned by its sender (docs/memory-pool.md, "Trust model"):

* kernel -> app: a segment the kernel owns (``SharedPool.create``: its allocator in the
  kernel's private memory, the memfd sealed F_SEAL_FUTURE_WRITE); the app maps it
  read-only and hands blocks back through the ring's return queue, which the kernel
  validates against the blocks it sent.
* app -> kernel: a fresh memfd the kernel creates at spawn (size-sealed) and hands over;
  the app builds its own allocator over it (``SharedPool.own``), the kernel maps it
  read-only (``PoolView``) and copies out what it parses.

Nothing the kernel acts on lives in memory the app can write: ring indices and slot
words are validated by ``fring.c`` before use, descriptors are bounds-checked against
the kernel's own view of the segment, and no wait holds the GIL.

``EXO_BOOTSTRAP_RING`` (internal between this module and ``exo_std._kernel``): six
comma-separated fds, ``tx,tx_live,rx,rx_live,own,peer`` from the app's side — its
sending ring and liveness socket, its receiving ring and liveness socket, the segment
it owns (app -> kernel), the kernel's segment it maps read-only (kernel -> app).

Descriptors
cannot travel in shared memory, so a SOCK_SEQPACKET socketpair beside the rings carries
them with SCM_RIGHTS: a message that comes with descriptors says how many (``nfds``),
and they were sent on the socket just before it. The channel's liveness sockets tell
the kernel the process died (``PeerGoneError``) without any polling.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time

from exo._fdpass import recv_fds
from exo.abi import (
    BOOTSTRAP_FD_ENV,
    BOOTSTRAP_RING_ENV,
    MAX_FDS,
    MAX_MESSAGE,
    AdaptiveSpin,
    ProtocolError,
    decode_request,
    encode_message,
    message_bytes,
)

TYPE_CHECKING = False  # no typing import at run time: boot path (exo/_value.py)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

RING_CAPACITY = 16
POOL_SIZE = 256 * 1024


class BootstrapChannel:
    """The kernel's end. Used by one thread at a time (the process's syscall thread)."""

    def __init__(self) -> None:
        from exo.ipc import Channel, PeerGoneError
        from exo.mm import PoolView, SharedPool, new_segment

        self.pool = SharedPool.create(POOL_SIZE)  # kernel -> app: ours, sealed
        app_seg = new_segment(POOL_SIZE, "exo-app-segment")  # app -> kernel: the app's
        try:
            self.app_view = PoolView.attach(app_seg)
        except BaseException:
            os.close(app_seg)
            self.pool.close()
            raise
        self._app_seg: int | None = app_seg
        self.ring, self._child_ring = Channel.pair(RING_CAPACITY, name="bootstrap")
        self.ring.use_pools(self.pool, self.app_view)
        # The serving thread's wait for the next request: spins while the app calls in
        # a loop, sleeps while it is idle or descheduled (exo.abi.AdaptiveSpin).
        self.spin = AdaptiveSpin(self.ring.rx)
        self._rx = self.ring.rx
        self._tx = self.ring.tx
        # A Fusion Ring adapts its spin by itself; anything else is told each wait.
        self._observe = None if self.spin.native else self.spin.observe
        self._gone = PeerGoneError
        # The codec: the standard library's until the syscall server installs msgspec's
        # (``use_codec``; msgspec stays off the boot path).
        self._loads: Callable[[bytes], Any] | None = None
        self._dumps: Callable[[Any], bytes] | None = None
        self.sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._child_sock: socket.socket | None = child_sock

    def _child_ring_fds(self) -> tuple[int, ...]:
        assert self._app_seg is not None
        return (*self._child_ring.fds, self._app_seg, self.pool.peer_fd())

    def child_fds(self) -> tuple[int, ...]:
        assert self._child_sock is not None
        return (self._child_sock.fileno(), *self._child_ring_fds())

    def child_env(self) -> dict[str, str]:
        assert self._child_sock is not None
        return {BOOTSTRAP_FD_ENV: str(self._child_sock.fileno()),
                BOOTSTRAP_RING_ENV: ",".join(str(fd) for fd in self._child_ring_fds())}

    def forget_child_end(self) -> None:
        """After the spawn: the child holds its copies; ours would hide its death."""
        self._child_ring.detach()
        if self._child_sock is not None:
            self._child_sock.close()
            self._child_sock = None
        if self._app_seg is not None:  # the app owns it now; we keep our read-only view
            os.close(self._app_seg)
            self._app_seg = None

    def use_codec(self, loads: Callable[[bytes], Any], dumps: Callable[[Any], bytes]) -> None:
        """Decode requests with ``loads`` (bytes -> object; ValueError or RecursionError
        on bad input) and encode replies with ``dumps`` (object -> bytes). The bounds of
        ``exo.abi.decode_request``/``encode_message`` apply around them all the same."""
        self._loads, self._dumps = loads, dumps

    def recv(self) -> tuple[dict[str, Any], list[int]] | None:
        """The next request and its descriptors; None once the process is gone."""
        observe = self._observe
        try:
            # the receiving ring itself, not Channel.recv: no handle hooks on this channel
            # (handles an app puts in a request are taken with it and ignored)
            if observe is None:
                data, _ = self._rx.recv_msg()
            else:
                t0 = time.perf_counter_ns()
                data, _ = self._rx.recv_msg()
                observe(time.perf_counter_ns() - t0)
        except self._gone:
            return None
        return self._request(data)

    @property
    def answers_natively(self) -> bool:
        """Whether ``answer_or_recv`` can be used (the rings are Fusion Rings)."""
        return self._observe is None

    def answer_or_recv(self, question: tuple[bytes, bytes], answer: tuple[bytes, bytes],
                       budget_us: float) -> int | tuple[dict[str, Any], list[int]] | None:
        """``recv``, except that requests exactly ``question[0] + ID + question[1]`` are
        answered ``answer[0] + ID + answer[1]`` by the ring binding without the GIL
        (``_fring.Ring.recv_msg_or_answer``); returns how many once ``budget_us`` has
        passed since the first, so the caller can account for them."""
        try:
            got = self._rx.recv_msg_or_answer(self._tx, question[0], question[1], answer[0],
                                              answer[1], budget_us)
        except self._gone:
            return None
        if isinstance(got, int):
            return got
        return self._request(got[0])

    def _request(self, data: Any) -> tuple[dict[str, Any], list[int]]:
        """A received message as a checked request and its descriptors."""
        if type(data) is not bytes:  # a zero-copy Block: copied out, given back
            data = message_bytes(data)
        loads = self._loads
        msg: Any = None
        if loads is not None and len(data) <= 256:
            # small (every request but a spawn's or an open's with a long name): what
            # decode_request does for it, minus two calls; errors take its path
            try:
                msg = loads(data)
            except (ValueError, RecursionError):
                msg = None
        if type(msg) is not dict:
            msg = decode_request(data, loads)
        nfds = msg.pop("nfds", 0)
        fds: list[int] = []
        if nfds:
            if not isinstance(nfds, int) or not 0 < nfds <= MAX_FDS:
                raise ProtocolError(f"bad descriptor count {nfds!r}")
            _, fds, _ = recv_fds(self.sock, 1, nfds)
            if len(fds) != nfds:
                for fd in fds:
                    os.close(fd)
                raise ProtocolError(f"expected {nfds} descriptors, got {len(fds)}")
        return msg, fds

    def send(self, obj: dict[str, Any], fds: list[int] | None = None) -> None:
        if fds:
            socket.send_fds(self.sock, [b"F"], fds)
            obj = {**obj, "nfds": len(fds)}
        dumps = self._dumps
        if dumps is None:
            data = encode_message(obj)
        else:  # what encode_message(obj, dumps) does, one call less
            data = dumps(obj)
            if len(data) > MAX_MESSAGE:
                raise ProtocolError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
        self._tx.send(data)  # one argument: the binding's fast path

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ring.close()
        with contextlib.suppress(Exception):
            self._child_ring.detach()
        for s in (self.sock, self._child_sock):
            if s is not None:
                s.close()
        if self._app_seg is not None:
            os.close(self._app_seg)
            self._app_seg = None
        self.app_view.close()
        self.pool.close()

