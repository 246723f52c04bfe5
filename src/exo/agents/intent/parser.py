"""The AI-User intent engine: sentence -> catalogue intent, slots, confidence, language.

Two layers: the command grammar (certain, confidence 1.0) and the classifier for free
phrasing (its probability). Three rules decide what the classifier's ranking means:

* ``unknown`` ranked first, or given at least UNKNOWN_FLOOR, is ``unknown``: a sentence
  the model half-places outside the catalogue is not forced into an intent;
* below CONFIDENCE_THRESHOLD the answer is ``unknown`` too, but it carries the two likeliest
  intents as ``candidates`` (the assistant asks "did you mean A, or B?");
* above it, a top intent under ASK_BELOW, or a runner-up within ASK_RATIO of it, is
  returned with both as ``candidates``: close calls are asked back, not acted on.

The thresholds were chosen by 5-fold cross-validation grouped by template on the
project's own examples (docs/ARCHITECTURE.md, AI agents, gives the figures).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

from exo.agents.intent.grammar import CommandGrammar
from exo.agents.intent.lang import detect_language
from exo.agents.intent.model import IntentModel, load_or_train
from exo.agents.intent.normalise import MAX_CHARS, clean
from exo.agents.intent.slots import extract
from exo.agents.intents import Intent

#: Below this classifier probability the parser answers ``unknown`` (the assistant asks
#: back). Chosen on the project's own held-out templates (bench/ai.py reports them).
CONFIDENCE_THRESHOLD = 0.2
#: ``unknown`` at or above this probability wins even when an intent is ranked higher.
UNKNOWN_FLOOR = 0.25
#: Under this probability, or with a runner-up at ASK_RATIO of the top, ask back.
ASK_BELOW = 0.3
ASK_RATIO = 0.5

_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class IntentInputError(ValueError):
    """The sentence cannot be parsed at all: empty, too long, or not text."""


class Parser:
    """Load once, reuse; ``parse`` may be called from several threads at once.

    ``modules`` lists the installed module paths (``net/loop``…), when the caller knows
    them, so "the network driver" resolves to the one installed; without it the alias
    table of slots.MODULE_ALIASES is used.
    """

    def __init__(self, modules: Sequence[str] = (), model: IntentModel | None = None) -> None:
        self._grammar = CommandGrammar()
        self._model = model
        self._modules = tuple(modules)
        self._lock = threading.Lock()

    @property
    def model(self) -> IntentModel:
        """The classifier, loaded (or trained) on first use: exact commands never wait."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = load_or_train()
        return self._model

    def warm(self) -> None:
        """Load the model now (the assistant calls this in the DEFERRED boot phase)."""
        self.model.probabilities("help")

    @staticmethod
    def check(text: object) -> str:
        """The sentence, cleaned, or IntentInputError with a one-line reason."""
        if not isinstance(text, str):
            raise IntentInputError("the sentence must be text")
        if len(text) > MAX_CHARS:
            raise IntentInputError(f"sentence too long ({len(text)} characters, at most "
                                   f"{MAX_CHARS})")
        sentence = clean(_CONTROL_RE.sub(" ", text))
        if not sentence:
            raise IntentInputError("empty sentence")
        return sentence

    def parse(self, text: str, *, modules: Sequence[str] | None = None) -> Intent:
        """``modules``: the installed module paths for this call (else the Parser's)."""
        sentence = self.check(text)
        lang = detect_language(sentence)
        exact = self._grammar.match(sentence)
        if exact is not None:
            return Intent(exact[0], exact[1], 1.0, lang)
        ranked = self._rank(sentence)
        name, confidence = ranked[0]
        p_unknown = dict(ranked).get("unknown", 0.0)
        if name == "unknown" or p_unknown >= UNKNOWN_FLOOR:
            return Intent("unknown", {}, p_unknown, lang)
        known = [(n, p) for n, p in ranked if n != "unknown"][:2]
        close = tuple(n for n, _ in known)
        if confidence < CONFIDENCE_THRESHOLD:
            return Intent("unknown", {}, confidence, lang, candidates=close)
        ask = confidence < ASK_BELOW or (len(known) > 1 and known[1][1] >= ASK_RATIO *
                                        confidence)
        installed = self._modules if modules is None else tuple(modules)
        return Intent(name, extract(name, sentence, installed), confidence, lang,
                      candidates=close if ask else ())

    def candidates(self, text: str, k: int = 3) -> list[tuple[str, float]]:
        """The k likeliest intents with their probabilities, best first."""
        return self._rank(self.check(text))[:max(1, k)]

    def _rank(self, sentence: str) -> list[tuple[str, float]]:
        probs = self.model.probabilities(sentence)
        return sorted(probs.items(), key=lambda kv: kv[1], reverse=True)


_default: Parser | None = None
_default_lock = threading.Lock()


def default_parser() -> Parser:
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Parser()
    return _default


def parse(text: str) -> Intent:
    """Parse one sentence with the process-wide Parser."""
    return default_parser().parse(text)
