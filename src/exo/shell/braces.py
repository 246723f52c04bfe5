"""Brace expansion, as bash does it first on each word: ``a{b,c}d`` is ``abd acd``,
``f{,.bak}`` is ``f f.bak``, ``{1..3}`` is ``1 2 3`` (and ``{a..e}``, ``{10..0..5}``),
nested and side by side. It works on a word's raw text, before quotes and ``$``
expansions are taken: a quoted or backslashed brace or comma is text, ``${…}`` and
``$(…)`` are left whole, and a brace with neither a comma nor a range inside is text
(``{}``, ``{x}``). The words it makes are bounded in number and in size: ``{a,b}`` forty
times over was 2⁴⁰ words.
"""

from __future__ import annotations

import itertools
import re

from exo.shell.parser import ParseError, unit_end

#: The most words one word may expand to, their most bytes in all (as the line's
#: expansions: parser.MAX_EXPANSION), and the deepest braces in braces.
MAX_WORDS = 65_536
MAX_BYTES = 4 << 20
MAX_DEPTH = 64
_RANGE = re.compile(r"(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?|([A-Za-z])\.\.([A-Za-z])(?:\.\.(-?\d+))?")


def expand(raw: str) -> list[str] | None:
    """The words ``raw`` expands to, or None when it has no brace expression."""
    if "{" not in raw:
        return None
    try:
        words = _expand(raw)
    except RecursionError:  # (a group after a group, thousands of times: one level each)
        raise ParseError("too many brace expressions in one word") from None
    return None if words == [raw] else words


def _expand(raw: str) -> list[str]:
    if "{" not in raw:  # (each word made is looked at again: most have no brace)
        return [raw]
    found = _first_group(raw)
    if found is None:
        return [raw]
    start, end, alternatives = found
    prefix, rest = raw[:start], _expand(raw[end + 1:])
    out: list[str] = []
    size = 0
    for alternative in alternatives:
        for middle in _expand(alternative):
            for tail in rest:
                out.append(prefix + middle + tail)
                size += len(out[-1])
                if len(out) > MAX_WORDS:
                    raise ParseError(f"a brace expansion makes more than {MAX_WORDS} words")
                if size > MAX_BYTES:  # (65536 words of 4 KB each were 256 MB)
                    raise ParseError(f"a brace expansion makes more than "
                                     f"{MAX_BYTES >> 20} MiB")
    return out


def _first_group(raw: str) -> tuple[int, int, list[str]] | None:
    """(index of ``{``, index of its ``}``, the alternatives) of the first brace
    expression of ``raw`` (the leftmost ``{`` whose group holds a comma or is a range);
    None when there is none. One pass, with a stack: a ``{`` looked for its ``}`` alone
    made ``{{{{…`` quadratic."""
    stack: list[list[int]] = []  # per open brace: its index, then its commas' indices
    best: tuple[int, int, list[str]] | None = None
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == "{":
            stack.append([i])
            if len(stack) > MAX_DEPTH:  # (each level is expanded again, recursively)
                raise ParseError(f"braces nested more than {MAX_DEPTH} deep")
        elif c == "}" and stack:
            marks = stack.pop()
            start = marks[0]
            if best is None or start < best[0]:
                if len(marks) > 1:
                    cuts = [*marks, i]
                    best = start, i, [raw[a + 1:b] for a, b in itertools.pairwise(cuts)]
                else:
                    seq = _sequence(raw[start + 1:i])
                    if seq is not None:
                        best = start, i, seq
            if not stack and best is not None:
                return best  # (no group further on can start before this one)
        elif c == "," and stack:
            stack[-1].append(i)
        if c in "{},":
            i += 1
        else:
            i = unit_end(raw, i)
    return best


def _sequence(body: str) -> list[str] | None:
    m = _RANGE.fullmatch(body)
    if m is None:
        return None
    if m.group(1) is not None:
        first, last = _integer(m.group(1), body), _integer(m.group(2), body)
        step = abs(_integer(m.group(3) or "1", body)) or 1
        if abs(last - first) // step > MAX_WORDS:
            raise ParseError(f"{{{body}}}: more than {MAX_WORDS} words")
        width = max(len(m.group(1)), len(m.group(2))) if m.group(1).lstrip("-").startswith(
            "0") or m.group(2).lstrip("-").startswith("0") else 0
        if (abs(last - first) // step + 1) * max(width, 20) > MAX_BYTES:
            raise ParseError(f"{{{body}}}: more than {MAX_BYTES >> 20} MiB")
        numbers = range(first, last + (1 if last >= first else -1),
                        step if last >= first else -step)
        return [str(k).zfill(width) if width else str(k) for k in numbers]
    a, b = ord(m.group(4)), ord(m.group(5))
    step = abs(_integer(m.group(6) or "1", body)) or 1
    letters = range(a, b + (1 if b >= a else -1), step if b >= a else -step)
    return [chr(k) for k in letters]


def _integer(text: str, body: str) -> int:
    """A bound or step of ``{A..B..STEP}``: at most 18 digits past its zeros (Python's
    int() refuses more than 4300, and no range that long is made anyway)."""
    digits = text.lstrip("-").lstrip("0")
    if len(digits) > 18:
        raise ParseError(f"{{{body}}}: a number out of range")
    return -int(digits or "0") if text.startswith("-") else int(digits or "0")
