"""Talk to the local AI agents: ``Agent.connect("ai-res").query("sys.cpu_usage")``.

The kernel connects the app to the agent only if it holds ``agent://NAME`` with SEND
(else ``CapabilityDenied``, the kernel's refusal); the connection is a Fusion Ring
channel relayed by AI-Core, encrypted end to end with XChaCha20-Poly1305 under keys from
an X25519 + ML-KEM-768 exchange, rotated as it goes (``exo.agents.core.secure``).

Needs PyNaCl and ``cryptography`` (the Exo runtime's interpreter has them): an app run by
a bare ``python3`` without them gets ``ImportError`` naming what is missing.
"""

from __future__ import annotations

import os

from exo_std._kernel import call

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Agent:
    """A connection to one agent. ``query`` asks a question (a catalogue intent name such
    as ``sys.cpu_usage``, or a sentence when the intent engine is installed) and returns
    the agent's text answer; ``request`` sends and returns a raw JSON object."""

    def __init__(self, name: str, client: Any) -> None:
        self.name = name
        self._client = client

    @classmethod
    def connect(cls, name: str, *, timeout: float = 30.0) -> Agent:
        from exo_std.ipc import attach_endpoint

        try:
            from exo.agents.core.client import AgentClient
        except ImportError as exc:
            raise ImportError(f"exo_std.ai needs PyNaCl and cryptography ({exc}): run the "
                              "app with the Exo runtime's Python") from None
        _, fds = call("agent_connect", name=name)
        if len(fds) != 6:
            for fd in fds:
                os.close(fd)
            raise OSError(f"kernel returned {len(fds)} descriptors for one endpoint")
        endpoint = attach_endpoint(fds)
        endpoint.peer = 1  # the kernel's router holds the other end
        return cls(name, AgentClient(endpoint, name, timeout=timeout))

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = self._client.request(message)
        return answer

    def query(self, question: str, *, lang: str = "en", **slots: str) -> str:
        key = "intent" if question.replace("_", "").replace(".", "").isalnum() \
            and "." in question else "text"
        answer = self.request({key: question, "lang": lang, "slots": slots})
        if not answer.get("ok", False):
            from exo_std.errors import ExoError

            raise ExoError(str(answer.get("error") or answer.get("text") or "refused"))
        return str(answer.get("text", ""))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Agent"]
