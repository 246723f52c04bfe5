"""The client end of an agent connection, over any connected endpoint: the handshake,
sealed requests and answers, and key rotation before a key gets old.

``exo_std.ai.Agent`` wraps it for applications; the shell's assistant uses it on an
endpoint the router gives it directly. Requests and answers are JSON objects.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from exo.agents.core import wire
from exo.agents.core.secure import ChannelSecurityError, SecureSession

TIMEOUT_S = 30.0


class AgentError(Exception):
    """The agent refused the request, the connection broke, or an answer was not one."""


class AgentClient:
    def __init__(self, endpoint: Any, name: str, *, timeout: float = TIMEOUT_S,
                 max_messages: int | None = None, max_age: float | None = None) -> None:
        self.endpoint = endpoint
        self.name = name
        self.timeout = timeout
        kwargs: dict[str, Any] = {}
        if max_messages is not None:
            kwargs["max_messages"] = max_messages
        if max_age is not None:
            kwargs["max_age"] = max_age
        self.session = SecureSession("client", **kwargs)
        self._lock = threading.Lock()  # one request at a time on a connection
        try:
            endpoint.send(self.session.hello(), timeout=timeout)
            self.session.finish(self._recv())
        except Exception:
            endpoint.close()
            raise

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one JSON request, return the agent's JSON answer."""
        with self._lock:
            if self.session.needs_rotation():
                self.endpoint.send(self.session.rekey(), timeout=self.timeout)
                if self.session.open(self._recv()) is not None:
                    raise AgentError(f"agent://{self.name}: no answer to the key rotation")
            self.endpoint.send(self.session.seal(json.dumps(message).encode()),
                               timeout=self.timeout)
            plain = self.session.open(self._recv())
        try:
            answer = json.loads(plain or b"")
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise AgentError(f"agent://{self.name}: the answer is not a JSON object")
        return answer

    def _recv(self) -> bytes:
        from exo.ipc import PeerGoneError

        try:
            data, _ = self.endpoint.recv(timeout=self.timeout)
        except PeerGoneError:
            raise AgentError(f"agent://{self.name} closed the connection") from None
        except TimeoutError:
            raise AgentError(f"agent://{self.name} did not answer within "
                             f"{self.timeout:g} s") from None
        return wire.to_bytes(data)

    def close(self) -> None:
        self.endpoint.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["AgentClient", "AgentError", "ChannelSecurityError"]
