"""AI-Core: the agents' registry (``registry``), the router that starts them as sandboxed
Exo processes and relays ``agent://NAME`` connections (``router``), the encryption of
each connection (``secure``) and its client end (``client``).

Names are exported lazily: the kernel's router needs neither PyNaCl nor ``cryptography``
(it relays sealed frames it cannot read), so booting does not load them.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from exo.agents.core.client import AgentClient, AgentError
    from exo.agents.core.registry import AGENTS, AgentSpec
    from exo.agents.core.secure import ChannelSecurityError, SecureSession

_WHERE = {"AgentClient": "client", "AgentError": "client", "AGENTS": "registry",
          "AgentSpec": "registry", "ChannelSecurityError": "secure",
          "SecureSession": "secure"}


def __getattr__(name: str) -> object:
    if name in _WHERE:
        return getattr(importlib.import_module(f"exo.agents.core.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'exo.agents.core' has no attribute {name!r}")


__all__ = ["AGENTS", "AgentClient", "AgentError", "AgentSpec", "ChannelSecurityError",
           "SecureSession"]
