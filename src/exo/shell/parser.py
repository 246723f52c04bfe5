"""Parsing a command line: words, quotes, variables, pipes, redirections, lists.

Grammar (a useful subset of POSIX sh)::

    list      := and_or ((';' | '&' | '&&' | '||') and_or)* ['&']
    pipeline  := command ('|' command)*
    command   := (word | redirect)+
    redirect  := ('<' | '>' | '>>' | '2>' | '2>>' | '2>&1') word

Expansion of ``$NAME``, ``${NAME}`` and ``$?`` happens while lexing, with the values
current when the list item runs (each item is expanded just before it runs, so
``false; echo $?`` prints 1). Single quotes suppress expansion; double quotes keep it.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

OPERATORS = ("2>&1", "2>>", "&&", "||", ">>", "2>", "|", ";", ">", "<")
_REDIRECTS = {"<", ">", ">>", "2>", "2>>", "2>&1"}


class ParseError(ValueError):
    """The line is not valid shell syntax; the message says where."""


# Plain classes, not dataclasses: each @dataclass costs ~1.3 ms at import, on the boot path.
class Word:
    __slots__ = ("globbable", "text")

    def __init__(self, text: str, globbable: bool = False) -> None:
        self.text = text
        self.globbable = globbable  # contains an unquoted * ? or [


class Redirect:
    __slots__ = ("op", "target")

    def __init__(self, op: str, target: str) -> None:
        self.op = op
        self.target = target  # empty for 2>&1


class Command:
    __slots__ = ("argv", "redirects")

    def __init__(
        self, argv: list[Word] | None = None, redirects: list[Redirect] | None = None
    ) -> None:
        self.argv: list[Word] = [] if argv is None else argv
        self.redirects: list[Redirect] = [] if redirects is None else redirects


class Pipeline:
    __slots__ = ("commands",)

    def __init__(self, commands: list[Command]) -> None:
        self.commands = commands


class ListItem:
    __slots__ = ("background", "connector", "source")

    def __init__(self, connector: str, source: str, background: bool = False) -> None:
        self.connector = connector  # ";" for the first item, else the operator before it
        self.source = source  # the raw text of the pipeline, expanded just before it runs
        self.background = background  # terminated by a lone "&"


def split_list(line: str) -> list[ListItem]:
    """Split a line at ``;``, ``&&`` and ``||`` (outside quotes), unexpanded."""
    items: list[ListItem] = []
    buf: list[str] = []
    connector = ";"
    i, quote = 0, ""
    while i < len(line):
        c = line[i]
        if quote:
            buf.append(c)
            if c == "\\" and quote == '"' and i + 1 < len(line):
                buf.append(line[i + 1])
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
            buf.append(c)
        elif c == "\\" and i + 1 < len(line):
            buf.append(line[i : i + 2])
            i += 1
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            break  # comment to end of line
        elif line.startswith(("&&", "||"), i) or c == ";" or (
            c == "&" and (i == 0 or line[i - 1] != ">")  # not the & of 2>&1
        ):
            op = line[i : i + 2] if line.startswith(("&&", "||"), i) else c
            text = "".join(buf).strip()
            if not text:
                raise ParseError(f"syntax error near '{op}'")
            items.append(ListItem(connector, text, background=op == "&"))
            connector, buf = (";" if op == "&" else op), []
            i += len(op)
            continue
        else:
            buf.append(c)
        i += 1
    if quote:
        raise ParseError(f"unterminated {quote} quote")
    text = "".join(buf).strip()
    if text:
        items.append(ListItem(connector, text))
    elif connector in ("&&", "||"):
        raise ParseError(f"syntax error: '{connector}' at end of line")
    return items


def parse_pipeline(source: str, lookup: Callable[[str], str]) -> Pipeline:
    """Lex and expand one pipeline. ``lookup(name)`` returns a variable's value."""
    tokens = _lex(source, lookup)
    commands: list[Command] = [Command()]
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if isinstance(tok, _Op):
            if tok.op == "|":
                if not commands[-1].argv:
                    raise ParseError("syntax error near '|'")
                commands.append(Command())
            elif tok.op == "2>&1":
                commands[-1].redirects.append(Redirect("2>&1", ""))
            elif tok.op in _REDIRECTS:
                if i + 1 >= len(tokens) or not isinstance(tokens[i + 1], Word):
                    raise ParseError(f"syntax error: '{tok.op}' needs a file name")
                target = tokens[i + 1]
                assert isinstance(target, Word)
                commands[-1].redirects.append(Redirect(tok.op, target.text))
                i += 1
            else:  # pragma: no cover - split_list removed list operators
                raise ParseError(f"unexpected '{tok.op}'")
        else:
            commands[-1].argv.append(tok)
        i += 1
    if not commands[-1].argv:
        if len(commands) > 1:
            raise ParseError("syntax error: '|' at end of line")
        if commands[-1].redirects:
            raise ParseError("syntax error: redirection without a command")
    return Pipeline(commands)


class _Op:
    __slots__ = ("op",)

    def __init__(self, op: str) -> None:
        self.op = op


def _lex(s: str, lookup: Callable[[str], str]) -> list[Word | _Op]:
    out: list[Word | _Op] = []
    buf: list[str] = []
    in_word = globbable = False
    i, n = 0, len(s)

    def flush() -> None:
        nonlocal in_word, globbable, buf
        if in_word:
            out.append(Word("".join(buf), globbable))
        buf, in_word, globbable = [], False, False

    while i < n:
        c = s[i]
        if c.isspace():
            flush()
            i += 1
            continue
        op = next((o for o in OPERATORS if s.startswith(o, i)), None)
        # "2>" is an operator only at the start of a word.
        if op is not None and not (op.startswith("2") and in_word):
            flush()
            out.append(_Op(op))
            i += len(op)
            continue
        in_word = True
        if c == "'":
            end = s.find("'", i + 1)
            if end < 0:
                raise ParseError("unterminated ' quote")
            buf.append(s[i + 1 : end])
            i = end + 1
        elif c == '"':
            i += 1
            while i < n and s[i] != '"':
                if s[i] == "\\" and i + 1 < n and s[i + 1] in '"\\$`':
                    buf.append(s[i + 1])
                    i += 2
                elif s[i] == "$":
                    value, i = _expand(s, i, lookup)
                    buf.append(value)
                else:
                    buf.append(s[i])
                    i += 1
            if i >= n:
                raise ParseError('unterminated " quote')
            i += 1
        elif c == "\\":
            if i + 1 < n:
                buf.append(s[i + 1])
            i += 2
        elif c == "$":
            value, i = _expand(s, i, lookup)
            buf.append(value)
        elif c == "~" and not buf and (i + 1 == n or s[i + 1] in "/ \t"):
            buf.append(lookup("HOME") or "/")
            i += 1
        else:
            if c in "*?[":
                globbable = True
            buf.append(c)
            i += 1
    flush()
    return out


def _expand(s: str, i: int, lookup: Callable[[str], str]) -> tuple[str, int]:
    """Expand the variable reference at ``s[i] == '$'``; return (value, next index)."""
    j = i + 1
    if j < len(s) and s[j] == "?":
        return lookup("?"), j + 1
    if j < len(s) and s[j] == "{":
        end = s.find("}", j)
        if end < 0:
            raise ParseError("unterminated ${")
        name = s[j + 1 : end]
        if not name.isidentifier():
            raise ParseError(f"bad substitution: ${{{name}}}")
        return lookup(name), end + 1
    k = j
    while k < len(s) and (s[k].isalnum() or s[k] == "_"):
        k += 1
    if k == j:
        return "$", j
    return lookup(s[j:k]), k
