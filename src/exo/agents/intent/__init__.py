"""AI-User: the intent engine (issue 15). ``parse("installe nginx")`` ->
``Intent("pkg.install", {"package": "nginx"}, 1.0, "fr")``.

grammar.py matches exact command forms, model.py classifies free phrasing, slots.py finds
the slot values, lang.py picks the answer language; parser.py puts them together.
"""

from exo.agents.intent.lang import detect_language
from exo.agents.intent.normalise import MAX_CHARS
from exo.agents.intent.parser import (
    CONFIDENCE_THRESHOLD,
    IntentInputError,
    Parser,
    default_parser,
    parse,
)

__all__ = ["CONFIDENCE_THRESHOLD", "MAX_CHARS", "IntentInputError", "Parser",
           "default_parser", "detect_language", "parse"]
