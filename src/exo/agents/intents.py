"""The intent catalogue: what the assistant can be asked, as data.

The names and slot names are a contract (issue 15): scripts outside this tree read
``exo ai parse --json`` output. The parser (``exo.agents.intent``) maps a sentence to one
:class:`Intent`; the assistant (``exo.agents.assistant``) acts on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final


@dataclass(frozen=True, slots=True)
class IntentSpec:
    """One row of the catalogue."""

    name: str
    slots: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    destructive: bool = False
    summary: str = ""


CATALOGUE: Final[tuple[IntentSpec, ...]] = (
    IntentSpec("sys.cpu_usage", summary="CPU usage, overall and per core"),
    IntentSpec("sys.memory_usage", summary="memory in use and available"),
    IntentSpec("sys.disk_usage", summary="disk space used and free"),
    IntentSpec("sys.info", summary="uptime, version, hardware"),
    IntentSpec("proc.list", summary="the running Exo processes"),
    IntentSpec("proc.top_cpu", summary="the processes using the most CPU"),
    IntentSpec("proc.top_memory", summary="the processes using the most memory"),
    IntentSpec("proc.kill", ("target",), destructive=True, summary="stop a process"),
    IntentSpec("power.save", summary="power-saver profile"),
    IntentSpec("power.performance", summary="performance profile"),
    IntentSpec("power.balanced", summary="balanced profile"),
    IntentSpec("pkg.install", ("package",), summary="install a package"),
    IntentSpec("pkg.remove", ("package",), destructive=True, summary="remove a package"),
    IntentSpec("pkg.upgrade", (), ("package",), summary="upgrade one package or all"),
    IntentSpec("pkg.search", ("query",), summary="search the repositories"),
    IntentSpec("module.list", summary="the loaded kernel modules"),
    IntentSpec("module.upgrade", ("module",), ("version",), summary="hot-upgrade a module"),
    IntentSpec("module.rollback", ("module",), summary="roll a module back"),
    IntentSpec("cap.list", (), ("target",), summary="capabilities held"),
    IntentSpec("cap.revoke", ("target",), ("capability",), destructive=True,
               summary="revoke a capability"),
    IntentSpec("sec.status", summary="TPM, HSM and post-quantum status"),
    IntentSpec("sec.audit", summary="the latest audit records"),
    IntentSpec("net.status", summary="network status"),
    IntentSpec("fs.find", ("name",), summary="find a file by name"),
    IntentSpec("sys.shutdown", destructive=True, summary="shut Exo-OS down"),
    IntentSpec("help", summary="what the assistant can do"),
    IntentSpec("unknown", summary="anything outside the catalogue"),
)

BY_NAME: Final[dict[str, IntentSpec]] = {spec.name: spec for spec in CATALOGUE}


@dataclass(frozen=True, slots=True)
class Intent:
    """A parsed sentence: one catalogue intent, its slots, a confidence in [0, 1].

    ``lang`` is ``"fr"`` or ``"en"``: the assistant answers in the language asked.
    ``candidates`` names the intents the parser hesitated between (best first; empty when
    it is sure): the assistant asks back with them. Not part of the JSON contract.
    """

    name: str
    slots: dict[str, str] = field(default_factory=dict)
    confidence: float = 1.0
    lang: str = "en"
    candidates: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"intent": self.name, "slots": dict(self.slots),
                "confidence": round(self.confidence, 4)}
