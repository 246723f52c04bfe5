"""History expansion at an interactive prompt, as bash does it before parsing a line.

Events: ``!!`` (the previous line), ``!N`` (line N of ``history``), ``!-N`` (N lines
back), ``!PREFIX`` (the latest line starting with PREFIX); word: ``!$`` (the previous
line's last word, as it was typed: quotes kept). Nothing between single quotes is
expanded, nor a ``!`` before a blank, ``=``, ``(``, a quote, an operator or the end
(``[ ! -e f ]``, ``!=``, ``"hi!"``), nor one after a backslash. Each event is looked up
once a line, however often it is named: a line of a million ``!$`` after a long one
split that one each time (two minutes in the kernel, a review found).
"""

from __future__ import annotations

from exo.shell.parser import ParseError

#: What may follow ``!`` and still leave it a plain character.
_LITERAL_AFTER = frozenset(" \t\n=(\"';|&<>)")
#: Characters that end a word of a line, outside quotes (operators end one too).
_WORD_ENDS = frozenset(" \t\n|&;<>()")
#: ``!N`` with more digits than this names no line (and never makes a huge int).
_MAX_DIGITS = 9


def expand(line: str, history: list[str], limit: int) -> str:
    """``line`` with its history references replaced from ``history`` (oldest first);
    ParseError naming an event not found, or when the result passes ``limit``
    characters (a line of ``!!`` after a long one made GBs in the kernel)."""
    if "!" not in line:
        return line
    out: list[str] = []
    found: dict[str, str] = {}  # each event's text, looked up once
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
            name = _event_name(line, i + 1)
            if name not in found:
                found[name] = _event(name, history)
            piece, step = found[name], len(name) + 1
        out.append(piece)
        size += len(piece)
        if size > limit:
            raise ParseError(f"!: the line would be longer than {limit >> 20} MiB")
        i += step
    return "".join(out)


def _event_name(line: str, i: int) -> str:
    """What names the event after a ``!`` at ``line[i]``: ``!``, ``$``, digits
    (``-`` first for ``!-N``) or a prefix."""
    c = line[i]
    if c in "!$":
        return c
    j = i + 1 if c == "-" else i
    while j < len(line) and line[j].isdigit():
        j += 1
    if j > i and line[i:j] != "-":
        return line[i:j]
    j = i
    while j < len(line) and line[j] not in _WORD_ENDS and line[j] not in "'\"":
        j += 1
    return line[i:j]


def _event(name: str, history: list[str]) -> str:
    if name == "!":
        return _nth(history, len(history), "!!")
    if name == "$":
        words = _words(_nth(history, len(history), "!$"))
        return words[-1] if words else ""
    digits = name.removeprefix("-")
    if digits.isdigit():
        if len(digits) > _MAX_DIGITS:
            raise ParseError(f"!{name}: event not found")
        number = int(name)
        index = len(history) + number + 1 if number < 0 else number
        return _nth(history, index, "!" + name)
    for previous in reversed(history):
        if previous.startswith(name):
            return previous
    raise ParseError(f"!{name}: event not found")


def _words(line: str) -> list[str]:
    """``line``'s words as typed (quotes kept), operators apart: ``echo hi>out`` is
    ``echo``, ``hi``, ``>``, ``out``."""
    words: list[str] = []
    i = 0
    while i < len(line):
        c = line[i]
        if c in " \t\n":
            i += 1
            continue
        if c in _WORD_ENDS:
            j = i + 1
            while j < len(line) and line[j] in "|&;<>" and line[j] == c:
                j += 1
            words.append(line[i:j])
            i = j
            continue
        j = i
        while j < len(line) and line[j] not in _WORD_ENDS:
            if line[j] in "'\"":
                end = line.find(line[j], j + 1)
                j = len(line) if end < 0 else end + 1
            elif line[j] == "\\":
                j += 2
            else:
                j += 1
        words.append(line[i:min(j, len(line))])
        i = j
    return words


def _nth(history: list[str], number: int, said: str) -> str:
    """Line ``number`` (from 1) of ``history``."""
    if not 1 <= number <= len(history):
        raise ParseError(f"{said}: event not found")
    return history[number - 1]
