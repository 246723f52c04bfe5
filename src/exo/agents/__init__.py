"""Local AI agents: the intent catalogue, the intent engine, AI-Core, AI-Res, the assistant."""

from exo.agents.intents import BY_NAME, CATALOGUE, Intent, IntentSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from exo.agents.assistant import Answer, answer


def __getattr__(name: str) -> object:
    """``answer`` and ``Answer`` load the assistant on first use (not at boot)."""
    if name in ("answer", "Answer"):
        from exo.agents import assistant

        return getattr(assistant, name)
    raise AttributeError(f"module 'exo.agents' has no attribute {name!r}")


__all__ = ["BY_NAME", "CATALOGUE", "Answer", "Intent", "IntentSpec", "answer"]
