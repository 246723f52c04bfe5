"""What runs inside an agent's sandboxed process: ``python -m exo.agents.core.runner NAME``.

It says READY on the channel AI-Core handed over, then serves connections, each an Exo
task on the process's one serving thread (``serve``): each OPEN starts a
``SecureSession`` (server side); the first DATA of a connection is the client's
HELLO, later ones are sealed frames whose plaintext is one JSON request, answered by the
agent's handler. A frame that fails authentication or arrives twice closes that
connection only. What the handler needs from the kernel it asks with SYS frames
(``KernelLink.ask``), answered by the router within the services the agent may use.
"""

from __future__ import annotations

import collections
import importlib
import json
import sys
import traceback
from collections.abc import Callable
from typing import Any

from exo.agents.core import wire
from exo.agents.core.secure import ChannelSecurityError, SecureSession
from exo_std import task

MAX_SESSIONS = 256
#: The agent's log (its stderr, a file the kernel appends to) takes at most this many
#: "connection refused" lines per ``REFUSALS_WINDOW_S``; past that they are counted and
#: the count is written once the window is over: a client reconnecting to send garbage
#: forever cannot fill the disk.
MAX_REFUSAL_LINES = 20
REFUSALS_WINDOW_S = 60.0
MAX_QUEUED = 64        # frames waiting for one connection's task before it is closed
ASK_TIMEOUT_S = 30.0   # a kernel service that does not answer within this fails the request
Handler = Callable[[dict[str, Any], "KernelLink"], dict[str, Any]]


class KernelLink:
    """The agent's way to ask the kernel for a service. Each connection is an Exo task, so
    a handler waiting here blocks only its own connection: the dispatcher hands the
    SYS_REPLY with its id to this task's event and the other connections keep going."""

    def __init__(self, endpoint: Any) -> None:
        self.ep = endpoint
        self._next = 0
        self.waiting: dict[int, tuple[task.Event, list[tuple[int, bytes]]]] = {}

    def ask(self, service: str, **args: Any) -> Any:
        self._next = (self._next + 1) & wire.MAX_ID
        rid = self._next
        done, slot = task.Event(), list[tuple[int, bytes]]()
        self.waiting[rid] = (done, slot)
        try:
            self.ep.send(wire.frame(wire.SYS, rid, json.dumps({"service": service,
                                                              "args": args}).encode()))
            if not done.wait(ASK_TIMEOUT_S):
                raise TimeoutError(f"the kernel did not answer {service!r} in "
                                   f"{ASK_TIMEOUT_S:g} s")
        finally:
            self.waiting.pop(rid, None)
        kind, body = slot[0]
        if kind == wire.SYS_ERROR:
            raise RuntimeError(body.decode("utf-8", "replace"))
        return json.loads(body)

    def answer(self, kind: int, rid: int, body: bytes) -> None:
        """A SYS_REPLY or SYS_ERROR: wake the task that asked (a late or unknown id, after
        its timeout, is dropped)."""
        entry = self.waiting.pop(rid, None)
        if entry is not None:
            entry[1].append((kind, body))
            entry[0].set()


class _RefusalLog:
    """At most ``MAX_REFUSAL_LINES`` lines per window; the rest is one count."""

    def __init__(self) -> None:
        self.window = 0.0
        self.written = 0
        self.dropped = 0

    def say(self, line: str) -> None:
        import time

        now = time.monotonic()
        if now - self.window >= REFUSALS_WINDOW_S:
            if self.dropped:
                print(f"... {self.dropped} more connections refused (not logged)",
                      file=sys.stderr, flush=True)
            self.window, self.written, self.dropped = now, 0, 0
        if self.written >= MAX_REFUSAL_LINES:
            self.dropped += 1
            return
        self.written += 1
        print(line[:300], file=sys.stderr, flush=True)


_refusals = _RefusalLog()


class _Conn:
    """One connection: its session and the frames waiting for its task."""

    __slots__ = ("frames", "more", "session", "task")

    def __init__(self) -> None:
        self.session = SecureSession("server")
        self.frames: collections.deque[bytes | None] = collections.deque()  # None: closed
        self.more = task.Event()
        self.task: Any = None

    def put(self, body: bytes | None) -> None:
        self.frames.append(body)
        self.more.set()


def load(path: str) -> Handler:
    module, _, attr = path.partition(":")
    handler: Handler = getattr(importlib.import_module(module), attr)
    return handler


def serve(endpoint: Any, handler: Handler) -> int:
    """Serve until STOP or the kernel's end is gone: one thread runs an Exo scheduler, a
    dispatcher task blocks on the channel (``task.recv``: no spinning, the ring's futex
    is waited on by the scheduler's one watcher) and each connection is a task of its
    own blocking on its frames, so one slow request or kernel call holds up only its
    connection."""
    return int(task.run(_dispatch, endpoint, handler, name="agent-dispatch"))


def _dispatch(endpoint: Any, handler: Handler) -> int:
    from exo.ipc import PeerGoneError

    link = KernelLink(endpoint)
    conns: dict[int, _Conn] = {}
    endpoint.send(wire.frame(wire.READY, 0))
    while True:
        try:
            kind, conn, body = wire.parse(task.recv(endpoint)[0])
        except PeerGoneError:
            return 0
        if kind == wire.STOP:
            return 0
        if kind in (wire.SYS_REPLY, wire.SYS_ERROR):
            link.answer(kind, conn, body)
        elif kind == wire.OPEN:
            if len(conns) >= MAX_SESSIONS:
                endpoint.send(wire.frame(wire.CLOSE, conn, b"too many connections"))
                continue
            old = conns.pop(conn, None)
            if old is not None:
                old.put(None)
            new = conns[conn] = _Conn()
            new.task = task.spawn(_connection, conns, conn, new, handler, link,
                                  name=f"agent-conn-{conn}")
        elif kind == wire.CLOSE:
            gone = conns.pop(conn, None)
            if gone is not None:
                gone.put(None)
        elif kind == wire.DATA and conn in conns:
            c = conns[conn]
            if len(c.frames) >= MAX_QUEUED:  # a client flooding faster than it is served
                del conns[conn]
                c.put(None)
                endpoint.send(wire.frame(wire.CLOSE, conn, b"too many frames waiting"))
            else:
                c.put(body)


def _connection(conns: dict[int, _Conn], conn: int, c: _Conn, handler: Handler,
                link: KernelLink) -> None:
    """One connection's task: its frames in order, until CLOSE or a refused frame."""
    endpoint = link.ep
    while True:
        while not c.frames:
            c.more.clear()
            c.more.wait()
        body = c.frames.popleft()
        if body is None:
            return
        reply = _on_data(c.session, body, handler, link)
        if conns.get(conn) is not c:  # closed (or reopened) while the handler ran
            return
        if reply is None:
            del conns[conn]
            endpoint.send(wire.frame(wire.CLOSE, conn, b"refused"))
            return
        endpoint.send(wire.frame(wire.DATA, conn, reply))


def _on_data(session: SecureSession, body: bytes, handler: Handler,
             link: KernelLink) -> bytes | None:
    """The frame to send back, or None when the connection must close."""
    try:
        if not session.ready:
            return session.accept(body)
        plain = session.open(body)
        if plain is None:  # a rotation: answer it
            assert session.pending is not None
            return session.pending
        try:
            request = json.loads(plain)
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
            answer = handler(request, link)
        except Exception as exc:  # the handler's failure is this request's answer only
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        return session.seal(json.dumps(answer).encode())
    except ChannelSecurityError as exc:
        _refusals.say(f"connection refused: {exc}")
        return None


def main(argv: list[str]) -> int:
    from exo.agents.core.registry import spec
    from exo_std import ipc

    (endpoint,) = ipc.inherited()
    return serve(endpoint, load(spec(argv[0]).handler))


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception:
        traceback.print_exc()
        sys.exit(1)
