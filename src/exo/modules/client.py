"""An app's end of a module's service: ``ServiceClient("ipc://echo").call(b"hi")``.

``open_service`` (a syscall: the app must hold a capability covering the name with SEND)
returns a channel whose other end the kernel serves (``exo.modules.bridge``); requests
and answers are ``exo.modules.wire`` frames. The app never sees which version answers or
that an upgrade is under way.
"""

from __future__ import annotations

import itertools
from typing import Any

from exo.modules import wire


class ServiceError(Exception):
    """The service answered with an error (the module's, or the kernel's refusal)."""


class ServiceClient:
    def __init__(self, name: str) -> None:
        from exo_std._kernel import call
        from exo_std.ipc import attach_endpoint

        result, fds = call("open_service", name=name)
        self.info: dict[str, Any] = result
        self._ep = attach_endpoint(fds)
        self._ids = itertools.count(1)

    def call(self, body: bytes, timeout: float | None = 30.0) -> bytes:
        rid = next(self._ids)
        self._ep.send(wire.frame(wire.REQUEST, rid, body), timeout=timeout)
        while True:
            data, _ = self._ep.recv(timeout=timeout)
            kind, got, reply = wire.parse(data)
            if got != rid:
                continue  # an answer to a call that timed out
            if kind == wire.OK:
                return reply
            raise ServiceError(reply.decode(errors="replace"))

    def close(self) -> None:
        self._ep.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
