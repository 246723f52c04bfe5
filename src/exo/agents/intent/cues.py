"""Sentence-level cues the classifier gets as extra features, beside its n-grams.

The catalogue's nouns (CPU, memory, package, driver) also appear in sentences that ask
nothing of this system: a question ABOUT a concept ("what is a package manager?",
"explique comment fonctionne un cache"), shopping ("buy a new CPU"), arithmetic
("combien font 12 fois 8"). N-grams see the nouns and pull such a sentence into an
intent; these cues name the *form* of the sentence instead, so the model can learn that
a definition question or a sum is out of the catalogue whatever noun it carries. Each
cue is a few regular expressions over the folded text (normalise.for_model), so the
cost stays linear in the sentence.

Opposite cues mark a sentence about this system ("right now", "my", "ce système"):
together they let a short "what is the cpu doing" stay an intent.
"""

from __future__ import annotations

import re
from typing import Final

_ART = r"(?:a|an|un|une)"

#: cue name -> patterns over for_model() text (folded: no accents, numbers as "num").
_CUES: Final[dict[str, tuple[re.Pattern[str], ...]]] = {
    "concept": tuple(re.compile(p) for p in (
        rf"\b(?:what|whats|what's|who) (?:is|are) {_ART}\b",
        r"\bwhat (?:is|are) (?!the\b|my\b|our\b|this\b)\w+s?\b(?: in\b| and\b|\s*$)",
        r"\bwhat does \w+(?: \w+)? (?:mean|stand for)\b",
        rf"\bwhat does {_ART} \w+",
        r"\b(?:explain|define|definition|describe|summari[sz]e|teach me|tutorial)\b",
        rf"\bhow (?:does|do) {_ART}?\s*[\w -]{{0,40}}\bwork\b",
        r"\bdifference between\b",
        r"\b(?:history|theory|invented|founded)\b",
        rf"\bqu'est-ce (?:qu'{_ART}|que (?:la|le|les|l'))",
        rf"\bc'est quoi {_ART}\b",
        rf"\ba quoi sert {_ART}\b",
        r"\bque (?:veut dire|signifie)\b",
        r"\bcomment (?:fonctionne|marche)(?:nt)? (?:un|une|les)\b",
        r"\b(?:explique|definis|definition|decris|resume|apprends-moi|tutoriel)\b",
        r"\bdifference entre\b",
        r"\b(?:histoire|theorique|invente|fonde)\b",
    )),
    "shop": tuple(re.compile(p) for p in (
        r"\b(?:buy|purchase|order|shop|sell|price|cost|costs|cheap|expensive)\b",
        r"\b(?:achete|acheter|achat|commander|vendre|prix|coute|coutent|cher)\b",
        r"\b(?:recommend|compare|better than|best)\b",
        r"\b(?:conseille|compare|meilleure?s? que|meilleure?)\b",
    )),
    "arith": tuple(re.compile(p) for p in (
        r"\bnum (?:times|plus|minus|divided by|x|multiplied by|fois|moins|divise par)\b",
        r"\b(?:square root|racine carree|percent of|pour ?cent de)\b",
        r"\b(?:calculate|compute|calcule)\b",
        r"\b(?:how much|combien) (?:is|font|fait) (?:num|\w+ (?:plus|times|fois))\b",
    )),
    "self": tuple(re.compile(p) for p in (
        r"\b(?:right now|at the moment|currently|on this (?:system|machine)|here)\b",
        r"\b(?:en ce moment|actuellement|sur ce(?:tte)? (?:systeme|machine)|ici)\b",
        r"\b(?:my|mon|ma|mes|this system|ce systeme)\b",
    )),
}
#: How many times a cue's token is added: a cue is one token among a hundred n-grams
#: and needs a little weight of its own (sublinear tf keeps this bounded).
_REPEAT = 3


def cues(folded: str) -> list[str]:
    """The cue tokens of one sentence in for_model() form ("k:concept", …)."""
    out: list[str] = []
    for name, patterns in _CUES.items():
        if any(p.search(folded) for p in patterns):
            out.extend(f"k:{name}{i}" for i in range(_REPEAT))
    return out
