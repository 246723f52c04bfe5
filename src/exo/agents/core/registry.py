"""The agents AI-Core knows: each one's name (``agent://NAME``), the handler its process
runs, what it may hold, and which kernel services it may ask for.

An agent is an Exo process like any app: it holds only what its row grants (its own
``agent://`` name, nothing on the file tree, no network) under the row's limits, and it
reaches the kernel's figures only through the services listed here, over its channel.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AgentSpec:
    name: str  # agent://NAME
    label: str  # how answers are signed: "[AI-Res] ..."
    handler: str  # "module:function" run in the agent's process (exo.agents.core.runner)
    services: frozenset[str]  # kernel services it may ask for (exo.agents.core.router)
    grants: tuple[str, ...] = ()
    memory: str = "256M"
    pids: int = 8
    summary: str = ""


AGENTS: dict[str, AgentSpec] = {
    "ai-res": AgentSpec(
        "ai-res", "AI-Res", "exo.agents.res:handle",
        services=frozenset({"snapshot"}),
        grants=("agent://ai-res=RECV",),
        summary="resources: CPU, memory, disk, processes; power profiles"),
}


def spec(name: str) -> AgentSpec:
    try:
        return AGENTS[name]
    except KeyError:
        raise LookupError(f"agent://{name}: no such agent (known: "
                          f"{', '.join(sorted(AGENTS))})") from None
