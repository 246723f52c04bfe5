"""History expansion at an interactive prompt, as bash does it before parsing a line.

Events: ``!!`` (the previous line), ``!N`` (line N of ``history``), ``!-N`` (N lines
back), ``!PREFIX`` (the latest line starting with PREFIX); word: ``!$`` (the previous
line's last word). Nothing between single quotes is expanded, nor a ``!`` before a blank,
``=``, ``(``, a quote, an operator or the end (``[ ! -e f ]``, ``!=``, ``"hi!"``), nor
one after a backslash.
"""

from __future__ import annotations

import shlex

from exo.shell.parser import ParseError

#: What may follow ``!`` and still leave it a plain character.
_LITERAL_AFTER = frozenset(" \t\n=(\"';|&<>)")


def expand(line: str, history: list[str], limit: int) -> str:
    """``line`` with its history references replaced from ``history`` (oldest first);
    ParseError naming an event not found, or when the result passes ``limit``
    characters (a line of ``!!`` after a long one made GBs in the kernel)."""
    if "!" not in line:
        return line
    out: list[str] = []
    size = 0
    i, quote = 0, ""
    while i < len(line):
        c = line[i]
        piece, step = c, 1
        if quote:
            if c == quote:
                quote = ""
        elif c == "'":
            quote = c
        elif c == "\\" and i + 1 < len(line):
            piece, step = line[i:i + 2], 2
        elif c == "!" and i + 1 < len(line) and line[i + 1] not in _LITERAL_AFTER:
            piece, step = _event(line, i + 1, history)
            step += 1
        out.append(piece)
        size += len(piece)
        if size > limit:
            raise ParseError(f"!: the line would be longer than {limit >> 20} MiB")
        i += step
    return "".join(out)


def _event(line: str, i: int, history: list[str]) -> tuple[str, int]:
    """The text ``line[i:]`` names after a ``!``, and how many characters name it."""
    c = line[i]
    if c == "!":
        return _nth(history, len(history), "!!"), 1
    if c == "$":
        previous = _nth(history, len(history), "!$")
        try:
            words = shlex.split(previous)
        except ValueError:
            words = previous.split()
        return (words[-1] if words else ""), 1
    j = i + 1 if c == "-" else i
    while j < len(line) and line[j].isdigit():
        j += 1
    if j > i and line[i:j] != "-":
        number = int(line[i:j])
        index = len(history) + number + 1 if number < 0 else number
        return _nth(history, index, "!" + line[i:j]), j - i
    j = i
    while j < len(line) and not line[j].isspace() and line[j] not in ";|&()<>'\"":
        j += 1
    prefix = line[i:j]
    for previous in reversed(history):
        if previous.startswith(prefix):
            return previous, j - i
    raise ParseError(f"!{prefix}: event not found")


def _nth(history: list[str], number: int, said: str) -> str:
    """Line ``number`` (from 1) of ``history``."""
    if not 1 <= number <= len(history):
        raise ParseError(f"{said}: event not found")
    return history[number - 1]
