"""The project's own bilingual training set: templates (data/examples.txt) expanded with
slot values (data/values.toml) into sentences with their gold intent and slots.

The held-out split is by template, not by sentence: a template's expansions differ only in
their slot values, so splitting sentences would test the model on sentences it has seen.
"""

from __future__ import annotations

import hashlib
import random
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from exo.agents.intents import BY_NAME

#: Share of templates kept out of training for our own evaluation (bench/ai.py reports it).
HELDOUT_SHARE = 0.15
#: Sentences generated from each template that has placeholders.
EXPANSIONS = 4
_PLACEHOLDER_RE = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Example:
    text: str
    intent: str
    lang: str
    slots: dict[str, str] = field(default_factory=dict)
    template: str = ""


class DatasetError(ValueError):
    """The shipped data files are malformed (a packaging bug, reported by line)."""


def data_bytes() -> bytes:
    """Both data files, as the model's cache key hashes them."""
    pkg = resources.files("exo.agents.intent") / "data"
    return (pkg / "examples.txt").read_bytes() + b"\0" + (pkg / "values.toml").read_bytes()


def _values() -> dict[str, Any]:
    text = (resources.files("exo.agents.intent") / "data" / "values.toml").read_text("utf-8")
    return tomllib.loads(text)


def templates() -> Iterator[tuple[str, str, str]]:
    """(intent, lang, template) for each line of examples.txt."""
    text = (resources.files("exo.agents.intent") / "data" / "examples.txt").read_text("utf-8")
    intent = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            intent = line[1:].strip()
            if intent not in BY_NAME:
                raise DatasetError(f"examples.txt:{number}: {intent!r} is not in the catalogue")
            continue
        lang, sep, sentence = line.partition(":")
        if not sep or lang not in ("en", "fr") or not intent:
            raise DatasetError(f"examples.txt:{number}: expected 'en: …' or 'fr: …' after '@ NAME'")
        yield intent, lang, sentence.strip()


def _choices(values: dict[str, Any], name: str, lang: str) -> list[tuple[str, str]]:
    """(surface text, gold slot value) pairs a placeholder can take."""
    table = values["values"].get(name)
    if table is None:
        raise DatasetError(f"values.toml has no [values.{name}]")
    if isinstance(table, list):
        return [(str(v), str(v)) for v in table]
    per_lang = table.get(lang, table)
    if "phrases" in per_lang:
        return [(str(p), str(p)) for p in per_lang["phrases"]]
    return [(str(k), str(v)) for k, v in per_lang.items()]


def expand(intent: str, lang: str, template: str, values: dict[str, Any],
           count: int = EXPANSIONS) -> list[Example]:
    """The template's sentences; its placeholders filled from values, seeded by the template."""
    names = _PLACEHOLDER_RE.findall(template)
    if not names:
        return [Example(template, intent, lang, {}, template)]
    rng = random.Random(hashlib.sha256(template.encode()).digest())
    out: list[Example] = []
    seen: set[str] = set()
    for _ in range(count * 3):
        if len(out) == count:
            break
        slots: dict[str, str] = {}
        allowed = set(BY_NAME[intent].slots) | set(BY_NAME[intent].optional)
        text = template
        for name in names:
            surface, gold = rng.choice(_choices(values, name, lang))
            text = text.replace("{" + name + "}", surface, 1)
            if values["slots"][name] in allowed:
                slots[values["slots"][name]] = gold
        if text not in seen:
            seen.add(text)
            out.append(Example(text, intent, lang, slots, template))
    return out


def slot_value_words() -> set[str]:
    """Folded words of every slot value in values.toml (they must stay extractable)."""
    from exo.agents.intent.normalise import fold

    values = _values()["values"]
    words: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                if isinstance(value, str):
                    words.update(fold(value).split())
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, str):
            words.update(fold(node).split())

    walk(values)
    return words


def is_heldout(template: str) -> bool:
    digest = hashlib.sha256(template.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < HELDOUT_SHARE


def _pid_values(values: dict[str, Any]) -> None:
    """pids are numbers: a fixed, seeded spread from 2 to 6 digits."""
    rng = random.Random(4242)
    values["values"]["pid"] = [str(rng.randrange(2, 10 ** rng.randint(2, 6))) for _ in range(40)]


def load() -> tuple[list[Example], list[Example]]:
    """(train, heldout) examples, deterministic."""
    values = _values()
    _pid_values(values)
    train: list[Example] = []
    heldout: list[Example] = []
    for intent, lang, template in templates():
        (heldout if is_heldout(template) else train).extend(
            expand(intent, lang, template, values))
    return train, heldout
