"""Local AI agents: the intent catalogue, the intent engine, AI-Core, AI-Res, the assistant."""

from exo.agents.intents import BY_NAME, CATALOGUE, Intent, IntentSpec

__all__ = ["BY_NAME", "CATALOGUE", "Intent", "IntentSpec"]
