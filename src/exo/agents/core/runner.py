"""What runs inside an agent's sandboxed process: ``python -m exo.agents.core.runner NAME``.

It says READY on the channel AI-Core handed over, then serves connections: each OPEN
starts a ``SecureSession`` (server side); the first DATA of a connection is the client's
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

MAX_SESSIONS = 256
Handler = Callable[[dict[str, Any], "KernelLink"], dict[str, Any]]


class KernelLink:
    """The agent's way to ask the kernel for a service (one request at a time: the agent
    is single-threaded, frames arriving meanwhile wait in ``backlog``)."""

    def __init__(self, endpoint: Any) -> None:
        self.ep = endpoint
        self.backlog: collections.deque[tuple[int, int, bytes]] = collections.deque()
        self._next = 0

    def ask(self, service: str, **args: Any) -> Any:
        self._next = (self._next + 1) & wire.MAX_ID
        rid = self._next
        self.ep.send(wire.frame(wire.SYS, rid, json.dumps({"service": service,
                                                          "args": args}).encode()))
        while True:
            kind, ident, body = wire.parse(self.ep.recv(timeout=30)[0])
            if kind in (wire.SYS_REPLY, wire.SYS_ERROR) and ident == rid:
                if kind == wire.SYS_ERROR:
                    raise RuntimeError(body.decode("utf-8", "replace"))
                return json.loads(body)
            if kind == wire.STOP:
                raise SystemExit(0)
            if len(self.backlog) >= 4 * MAX_SESSIONS:
                raise RuntimeError("too many frames waiting")
            self.backlog.append((kind, ident, body))


def load(path: str) -> Handler:
    module, _, attr = path.partition(":")
    handler: Handler = getattr(importlib.import_module(module), attr)
    return handler


def serve(endpoint: Any, handler: Handler) -> int:
    from exo.ipc import PeerGoneError

    link = KernelLink(endpoint)
    sessions: dict[int, SecureSession] = {}
    endpoint.send(wire.frame(wire.READY, 0))
    while True:
        if link.backlog:
            kind, conn, body = link.backlog.popleft()
        else:
            try:
                kind, conn, body = wire.parse(endpoint.recv()[0])
            except PeerGoneError:
                return 0
        if kind == wire.STOP:
            return 0
        if kind == wire.OPEN:
            if len(sessions) >= MAX_SESSIONS:
                endpoint.send(wire.frame(wire.CLOSE, conn, b"too many connections"))
                continue
            sessions[conn] = SecureSession("server")
        elif kind == wire.CLOSE:
            sessions.pop(conn, None)
        elif kind == wire.DATA and conn in sessions:
            reply = _on_data(sessions[conn], body, handler, link)
            if reply is None:
                del sessions[conn]
                endpoint.send(wire.frame(wire.CLOSE, conn, b"refused"))
            else:
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
        print(f"connection refused: {exc}", file=sys.stderr, flush=True)
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
