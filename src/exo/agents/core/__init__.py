"""AI-Core: the agents' registry (``registry``), the router that starts them as sandboxed
Exo processes and relays ``agent://NAME`` connections (``router``), the encryption of
each connection (``secure``) and its client end (``client``)."""

from exo.agents.core.client import AgentClient, AgentError
from exo.agents.core.registry import AGENTS, AgentSpec
from exo.agents.core.secure import ChannelSecurityError, SecureSession

__all__ = ["AGENTS", "AgentClient", "AgentError", "AgentSpec", "ChannelSecurityError",
           "SecureSession"]
