"""Parsing a command line: words, quotes, variables, pipes, redirections, lists.

Grammar (a useful subset of POSIX sh)::

    list      := and_or ((';' | '&' | '&&' | '||') and_or)* ['&']
    pipeline  := command ('|' command)*
    command   := (word | redirect)+
    redirect  := ('<' | '>' | '>>' | '2>' | '2>>' | '<<' | '<<<') word | '2>&1' | '>&2'

Expansion of ``$NAME``, ``${NAME}``, ``$?``, ``$$``, ``$!`` and the positional
parameters (``$1``…, ``${10}``, ``$#``, ``$@``, ``$*``, ``$0``) happens while lexing,
with the values current when the list item runs (each item is expanded just before it runs, so
``false; echo $?`` prints 1). Single quotes suppress expansion; double quotes keep it.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

#: What the expansions of one line may bring in at most ($VAR, $(...), ~).
MAX_EXPANSION = 4 << 20
OPERATORS = ("2>&1", "1>&2", ">&2", "2>>", "&>>", "&>", "&&", "||", ">>", "2>", "<<<", "<<",
             "|", ";", ">", "<")
#: What a ``substitute`` callback is given before ``<`` or ``>`` and LIST for ``<(LIST)``
#: and ``>(LIST)`` (bash's process substitution; no typed word has a NUL): it answers
#: with a path (``/dev/fd/N``), where ``$(LIST)`` is answered with LIST's output.
PROCESS_SUBSTITUTION = "\0"
#: Both streams into one file: ``&> f`` is ``> f 2>&1`` (bash's).
_BOTH = {"&>": ">", "&>>": ">>"}
#: ``lookup(NAME + SET_QUERY)`` is "1" when NAME is set (even to ""), else "".
SET_QUERY = "\0set"
#: ``lookup(PREFIX + NAMES_QUERY)``: the set variables' names that start with PREFIX,
#: sorted, a space between (``${!PREFIX*}``).
NAMES_QUERY = "\0names"
#: ``lookup(NAME + ASSIGN + VALUE)`` assigns VALUE to NAME and answers it: ``${x:=d}``.
ASSIGN = "\0assign\0"
#: Redirections of one stream onto the other, with no file.
_DUPS = ("2>&1", "1>&2", ">&2")
#: ``<<`` (a here-document, its body in place of the word: ``split_list`` puts it there)
#: and ``<<<`` (a here-string: the word and a newline) are the command's input.
_REDIRECTS = {"<", ">", ">>", "2>", "2>>", "<<", "<<<", *_DUPS, *_BOTH}
#: A redirection of a numbered descriptor, or a duplication: ``3> f``, ``4>> f``,
#: ``3< f``, ``2>&1``, ``>&3``, ``<&3``, ``3>&-`` (closed), ``>| f`` (as ``>``). Its op is
#: the number (or none) and the operator as typed; ``redirections`` makes it a Redirect.
_NUMBERED = re.compile(r"([0-9]+)?(>>|>&|<&|<>|>\||>|<(?![<(]))")
#: The highest descriptor number a redirection may name (bash's "use with care" is 9).
MAX_FD = 255
#: The op of a redirection that reads into the command's stdin.
READS_STDIN = frozenset({"<", "<<", "<<<", "0<", "0>&"})


class ParseError(ValueError):
    """The line is not valid shell syntax; the message says where."""


class UnsetError(ParseError):
    """``${NAME:?WORD}`` of an unset NAME: said, and the rest of the line is not run
    (as in sh, where a script ends there)."""


class IncompleteInput(ParseError):
    """The line ends inside a construct (a quote, ``$(``, ``if`` without ``fi``): an
    interactive shell asks for the next line rather than failing."""


# Plain classes, not dataclasses: each @dataclass costs ~1.3 ms at import, on the boot path.
class Word:
    __slots__ = ("assign", "globbable", "text")

    def __init__(self, text: str, globbable: bool = False, assign: bool = False) -> None:
        self.text = text
        self.globbable = globbable  # contains an unquoted * ? or [
        self.assign = assign  # starts with an unquoted NAME=


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
    __slots__ = ("background", "connector", "line", "source")

    def __init__(self, connector: str, source: str, background: bool = False,
                 line: int = 0) -> None:
        self.connector = connector  # ";" for the first item, else the operator before it
        self.source = source  # the raw text of the pipeline, expanded just before it runs
        self.background = background  # terminated by a lone "&"
        self.line = line  # the line it starts on ($LINENO)


def split_list(line: str, depth: int = 0, first_line: int = 1) -> list[ListItem]:
    """Split a line at ``;``, ``&&`` and ``||`` (outside quotes), unexpanded. A
    here-document's body (the lines after the one with ``<<WORD``, up to WORD alone) is
    put in place of WORD, as one word (``_heredoc_word``). ``depth``: in how many
    subshells the line is (at most ``MAX_SUBSHELL_DEPTH``). Each item knows the line it
    starts on, ``line`` being line ``first_line``."""
    items: list[ListItem] = []
    buf: list[str] = []
    connector = ";"
    i, quote = 0, ""
    heredocs: list[tuple[str, str, bool, bool]] = []  # (marker, WORD, quoted, <<-)
    bodies: dict[str, str] = {}  # marker -> the body's word
    start = -1  # where the item being read starts
    counted = [0, first_line]  # (a position, its line): newlines are counted once

    def line_at(pos: int) -> int:
        counted[1] += line.count("\n", counted[0], pos)
        counted[0] = max(pos, counted[0])
        return counted[1]

    while i < len(line):
        c = line[i]
        if start < 0 and c not in " \t\n":
            start = i
        if c == "\n" and heredocs and not quote:
            i = _heredoc_bodies(line, i + 1, heredocs, bodies) - 1
            heredocs = []  # (the newline ends the item below, as any)
        elif not quote and line.startswith("<<<", i):
            buf.append("<<<")
            i += 3
            continue
        elif not quote and line.startswith("<<", i):
            i = _heredoc_start(line, i, heredocs, buf, len(bodies) + len(heredocs))
            continue
        if quote:
            buf.append(c)
            if c == "\\" and quote == '"' and i + 1 < len(line):
                buf.append(line[i + 1])
                i += 1
            elif c == quote:
                quote = ""
        elif c == '"':  # one string, whatever its $(…) holds ("$(echo "a;b")")
            end = dquote_end(line, i)
            buf.append(line[i:end])
            i = end
            continue
        elif c == "'":
            quote = c
            buf.append(c)
        elif c == "\\" and i + 1 < len(line):
            buf.append(line[i : i + 2])
            i += 1
        elif c == "$" and line.startswith(("(", "{"), i + 1):
            # $( ... ) and ${ ... } are one word: a ; inside stays there
            end = (matching_paren if line[i + 1] == "(" else matching_brace)(line, i + 1)
            buf.append(line[i : end + 1])
            i = end + 1
            continue
        elif c in "<>" and line.startswith("(", i + 1) and line[i - 1 : i] not in ("<", ">"):
            # <( … ) and >( … ), a process substitution: one word, its ; inside
            try:
                end = matching_paren(line, i + 1)
            except IncompleteInput:
                raise IncompleteInput(f"unterminated {c}( … ): ')' expected") from None
            buf.append(line[i : end + 1])
            i = end + 1
            continue
        elif c == "`":  # `…`: one word too (`cd /tmp; pwd` split at its ;)
            end = _backquote_end(line, i)
            buf.append(line[i : end + 1])
            i = end + 1
            continue
        elif c == "[" and line.startswith("[[", i) and line[i + 2 : i + 3] in (" ", "\t") \
                and (i == 0 or line[i - 1].isspace() or line[i - 1] in "!;&|(") \
                and (_last_word(buf) in _BEFORE_COMMAND or not "".join(buf).strip()) \
                and (end := conditional_end(line, i)) > i:
            # [[ EXPRESSION ]]: one word to the line, its && || < > ( ) its own (with no
            # `]]` after it, a word as any: `type if [[`)
            buf.append(line[i:end])
            i = end
            continue
        elif c == "(" and _arith_at(line, i):
            # (( EXPR )) and for (( A; B; C )): one word, its ; inside
            try:
                end = matching_paren(line, i)
            except IncompleteInput:
                raise IncompleteInput("unterminated (( ))") from None
            buf.append(line[i : end + 1])
            i = end + 1
            continue
        elif c == "(" and _ARRAY_OPEN.fullmatch(_last_word(buf)) and buf[-1].endswith("="):
            # NAME=( … ): one word to the line, over as many lines as it takes (a list of
            # files, one a line, as scripts write it)
            try:
                end = matching_paren(line, i)
            except IncompleteInput:
                raise IncompleteInput("unterminated NAME=( … ): ')' expected") from None
            buf.append(line[i : end + 1])
            i = end + 1
            continue
        elif c == "(" and _subshell_at(line, i, _last_word(buf)):
            # ( LIST ): its list split as a line of its own, between the words SUBSHELL
            # and END_SUBSHELL, which parse_blocks makes a Group run in a subshell.
            try:
                end = matching_paren(line, i)
            except IncompleteInput:
                raise IncompleteInput("unterminated ( subshell: ')' expected") from None
            if depth >= MAX_SUBSHELL_DEPTH:
                raise ParseError(f"subshells nested more than {MAX_SUBSHELL_DEPTH} deep")
            items.append(ListItem(connector, ("".join(buf) + " " + SUBSHELL).strip(),
                                  line=line_at(start)))
            items += split_list(line[i + 1 : end], depth + 1, line_at(i + 1))
            connector, buf, start = ";", [END_SUBSHELL], end
            i = end + 1
            continue
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            end = line.find("\n", i)  # comment to end of line
            if end < 0:
                break
            i = end
            continue
        elif c == "\n":
            text = "".join(buf).strip()
            if text:
                items.append(ListItem(connector, text, line=line_at(start)))
                connector, buf = ";", []
            elif connector in ("&&", "||"):
                pass  # `a &&` continues on the next line
            start = -1
            i += 1
            continue
        elif not quote and (clause_end := _clause_end(line, i)):  # ;; ;& ;;&: a case
            text = "".join(buf).strip()                             # clause's end
            if text:
                items.append(ListItem(connector, text, line=line_at(start)))
            items.append(ListItem(";", clause_end, line=line_at(i)))
            connector, buf, start = ";", [], -1
            i += len(clause_end)
            continue
        elif line.startswith(("&&", "||"), i) or c == ";" or (
            c == "&" and (i == 0 or line[i - 1] not in "<>")  # not the & of 2>&1, <&3
            and not line.startswith("&>", i)  # nor &> FILE
        ):
            op = line[i : i + 2] if line.startswith(("&&", "||"), i) else c
            text = "".join(buf).strip()
            if not text:
                raise ParseError(f"syntax error near '{op}'")
            items.append(ListItem(connector, text, background=op == "&",
                                  line=line_at(start)))
            connector, buf, start = (";" if op == "&" else op), [], -1
            i += len(op)
            continue
        else:
            buf.append(c)
        i += 1
    if quote:
        raise IncompleteInput(f"unterminated {quote} quote")
    if heredocs:
        raise IncompleteInput(f"here-document: '{heredocs[0][1]}' expected")
    text = "".join(buf).strip()
    if text:
        items.append(ListItem(connector, text, line=line_at(max(start, 0))))
    elif connector in ("&&", "||"):
        raise IncompleteInput(f"syntax error: '{connector}' at end of line")
    for item in items if bodies else ():
        for marker, word in bodies.items():  # (a line of many items: each its own)
            item.source = item.source.replace(marker, word)
    return items


def _clause_end(line: str, i: int) -> str:
    """The end of a case clause at ``line[i]``: ``;;``, ``;&`` (bash's: on into the next
    clause's body) or ``;;&`` (on to test the next clauses); "" for none."""
    if line.startswith(";;&", i):
        return ";;&"
    if line.startswith((";;", ";&"), i):
        return line[i : i + 2]
    return ""


def conditional_end(line: str, i: int) -> int:
    """The index after the ``]]`` closing the ``[[`` at ``line[i]`` (a word ``]]`` of its
    own, outside quotes and substitutions); -1 when the line has none."""
    from exo.shell.conditional import ConditionError, _word_end

    k = i + 2
    n = len(line)
    while True:
        while k < n and line[k] in " \t\n":
            k += 1
        if k >= n:
            return -1
        try:
            end = _word_end(line, k)
        except (ConditionError, ParseError):  # (an unterminated quote: said later)
            return -1
        if line[k:end] == "]]" or (line.startswith("]]", k) and line[k + 2 : k + 3] in
                                   (";", "&", "|", ")")):
            return k + 2
        k = max(end, k + 1)


#: The word before an array's ``(``: ``NAME=`` or ``NAME+=``.
_ARRAY_OPEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\+?=")
#: The words a subshell's ``(`` and ``)`` become (no word typed has a NUL).
SUBSHELL, END_SUBSHELL = "\0(", "\0)"
#: Subshells in subshells (each level scans the rest of its line once more).
MAX_SUBSHELL_DEPTH = 32
#: The words after which a command starts (so a ``(`` there opens a subshell).
_BEFORE_COMMAND = frozenset({"if", "elif", "while", "until", "then", "do", "else", "{", "!",
                             "time", SUBSHELL})


def _last_word(buf: list[str]) -> str:
    """The end of the last word in ``buf`` (at most 8 of its pieces: enough for a
    keyword), "" when ``buf`` is blank; without joining all of it (a line of a million
    ``(x)`` was quadratic)."""
    j = len(buf) - 1
    words: list[str] = []
    while len(words) < 2:
        while j >= 0 and buf[j].isspace():
            j -= 1
        parts: list[str] = []
        while j >= 0 and not buf[j].isspace() and len(parts) < 8:
            parts.append(buf[j])
            j -= 1
        words.append("".join(reversed(parts)))
        if words[0] != "-p":
            break
    # `time -p ( … )`: that -p is time's, and a command starts after it
    return "time" if words == ["-p", "time"] else words[0]


def _arith_at(line: str, i: int) -> bool:
    """Whether ``line[i:]`` opens ``(( EXPR ))``, as sh decides: its two parentheses close
    together. ``((echo a); echo b)`` is a subshell in a subshell (its inner one closes
    first); an unterminated one is arithmetic still being typed."""
    if not line.startswith("((", i):
        return False
    try:
        inner = matching_paren(line, i + 1)  # (then the outer one closes right after it)
    except IncompleteInput:
        return True
    return line.startswith(")", inner + 1)


def _subshell_at(line: str, i: int, before: str) -> bool:
    """Whether the ``(`` at ``line[i]`` opens a subshell: at the start of a command
    (``before``, the last word before it, is blank, ends a pipe or is a keyword), not
    ``((`` (arithmetic), and its ``)`` followed by the end of the command (an operator, a
    redirection or nothing): ``(a|b) echo x`` is a case clause's patterns."""
    text = before
    if not (not text or text.endswith("|") or text in _BEFORE_COMMAND
            or _FUNCTION.fullmatch(text)):  # (`f() ( LIST )`: a function's body)
        return False
    if _arith_at(line, i):
        return False
    try:
        end = matching_paren(line, i)
    except IncompleteInput:
        return not text.endswith("|") and "|" not in line[i:]  # (a line to come)
    rest = line[end + 1:].lstrip(" \t")
    return not rest or rest[0] in ";&|)\n<>" or (rest[0].isdigit() and rest[1:2] in ("<", ">"))


def _heredoc_start(line: str, i: int, heredocs: list[tuple[str, str, bool, bool]],
                   buf: list[str], number: int) -> int:
    """``<<WORD`` or ``<<-WORD`` at ``line[i]``: noted, a marker in ``buf`` in place of
    its word until the body is read; the index after it."""
    j = i + 2
    strip = line.startswith("-", j)
    j += strip
    while j < len(line) and line[j] in " \t":
        j += 1
    k = j
    while k < len(line) and not line[k].isspace() and line[k] not in ";&|<>()":
        k += 1
    raw = line[j:k]
    word = raw.replace("'", "").replace('"', "").replace("\\", "")
    if not word:
        raise ParseError("here-document: a word is expected after <<")
    marker = f"\0here{number}\0"  # (no line typed has a NUL)
    buf.append("<< " + marker)
    heredocs.append((marker, word, word != raw, strip))
    return k


def _heredoc_bodies(line: str, i: int, heredocs: list[tuple[str, str, bool, bool]],
                    bodies: dict[str, str]) -> int:
    """Read each here-document's body from ``line[i]`` on (each ends at a line that is
    its WORD alone; ``<<-`` strips leading tabs) into ``bodies``, by marker; the index
    after the line that ends the last one."""
    for marker, word, quoted, strip in heredocs:
        body: list[str] = []
        while True:
            if i >= len(line):
                raise IncompleteInput(f"here-document: '{word}' expected")
            end = line.find("\n", i)
            end = len(line) if end < 0 else end
            text = line[i:end]
            i = end + 1
            if strip:
                text = text.lstrip("\t")
            if text == word:
                break
            body.append(text + "\n")
        bodies[marker] = _heredoc_word("".join(body), quoted)
    return min(i, len(line) + 1)


def _heredoc_word(body: str, quoted: bool) -> str:
    """A here-document's body as one word of the command line: single-quoted when its
    WORD was quoted (taken as it is), else double-quoted, so that ``$``, ``$(...)`` and
    backquotes expand and a backslash escapes only ``$``, a backquote and itself, as in
    a here-document."""
    if quoted:
        return "'" + body.replace("'", "'\\''") + "'"
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body) and body[i + 1] in "$`\\":
            out.append(body[i : i + 2])
            i += 2
            continue
        out.append("\\\\" if c == "\\" else '\\"' if c == '"' else c)
        i += 1
    return '"' + "".join(out) + '"'


def parse_pipeline(source: str, lookup: Callable[[str], str],
                   substitute: Callable[[str], str] | None = None) -> Pipeline:
    """Lex and expand one pipeline. ``lookup(name)`` returns a variable's value;
    ``substitute(command)`` runs ``$(command)`` and returns its output."""
    tokens = _lex(source, lookup, substitute)
    commands: list[Command] = [Command()]
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if isinstance(tok, _Op):
            if tok.op == "|":
                if not commands[-1].argv:
                    raise ParseError("syntax error near '|'")
                commands.append(Command())
            elif tok.op in _DUPS:
                commands[-1].redirects.append(Redirect(tok.op, ""))
            elif _redirection_op(tok.op):
                if i + 1 >= len(tokens) or not isinstance(tokens[i + 1], Word):
                    raise ParseError(f"syntax error: '{tok.op}' needs a file name")
                target = tokens[i + 1]
                assert isinstance(target, Word)
                if tok.op in _REDIRECTS:
                    commands[-1].redirects.append(Redirect(_BOTH.get(tok.op, tok.op),
                                                           target.text))
                    if tok.op in _BOTH:
                        commands[-1].redirects.append(Redirect("2>&1", ""))
                else:
                    commands[-1].redirects += redirections(tok.op, target.text)
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


def _redirection_op(op: str) -> bool:
    return op in _REDIRECTS or _NUMBERED.fullmatch(op) is not None


def redirections(op: str, target: str) -> list[Redirect]:
    """What a numbered redirection (``_NUMBERED``'s op) and its expanded target word do,
    as Redirects: 0, 1 and 2's plain forms keep their ops (``<``, ``>``, ``2>>``,
    ``2>&1``, ``>&2``); another is ``N<``, ``N>``, ``N>>``, or ``N>&`` whose target is a
    descriptor number or ``-`` (closed). ``>&FILE`` is bash's ``&> FILE``."""
    m = _NUMBERED.fullmatch(op)
    if m is None:  # pragma: no cover - the lexer made it
        raise ParseError(f"syntax error near '{op}'")
    number, kind = m.groups()
    if kind == "<>":
        raise ParseError(f"'{op}': read-write redirections are not supported")
    kind = ">" if kind == ">|" else kind
    fd = int(number) if number else (0 if kind[0] == "<" else 1)
    if fd > MAX_FD:
        raise ParseError(f"{number}: bad file descriptor (at most {MAX_FD} here)")
    if kind in (">&", "<&"):
        if re.fullmatch("[0-9]+", target) or target == "-":
            if (fd, target) == (2, "1"):
                return [Redirect("2>&1", "")]
            if (fd, target) == (1, "2"):
                return [Redirect(">&2", "")]
            if target != "-" and int(target) > MAX_FD:
                raise ParseError(f"{target}: bad file descriptor")
            return [Redirect(f"{fd}>&", target)]
        if kind == ">&" and not number:
            return [Redirect(">", target), Redirect("2>&1", "")]
        raise ParseError(f"{target}: ambiguous redirect (a descriptor number expected)")
    plain = {(0, "<"): "<", (1, ">"): ">", (1, ">>"): ">>", (2, ">"): "2>", (2, ">>"): "2>>"}
    return [Redirect(plain.get((fd, kind), f"{fd}{kind}"), target)]


class _Op:
    __slots__ = ("op",)

    def __init__(self, op: str) -> None:
        self.op = op


def _lex(s: str, lookup: Callable[[str], str],
         substitute: Callable[[str], str] | None = None,
         brace: bool = True) -> list[Word | _Op]:
    """``s``'s words and operators, expanded; ``brace``: a command's words are brace
    expanded first (``exo.shell.braces``), a pattern's or a ``${…:-WORD}``'s are not."""
    brace = brace and "{" in s
    if brace:
        from exo.shell import braces  # (it imports this module)
    out: list[Word | _Op] = []
    buf: list[str] = []
    in_word = globbable = assign = False
    solid = False  # the word has more than unquoted expansions: kept even when empty
    leading = True  # no command name yet: a NAME=value word is an assignment
    # The command is a declaration (`export NAME=$(...)`): its NAME=value words expand as
    # assignments too, whole, as in bash and POSIX.1-2024 (dash split them).
    declaring = False
    target = False  # the next word is a redirection's target, not the command's name
    expanded = 0  # bytes the expansions brought in so far (MAX_EXPANSION)
    ifs: str | None = None  # $IFS, looked up at the first expansion that splits
    i, n = 0, len(s)

    def grow(value: str) -> str:
        nonlocal expanded
        expanded += len(value)
        if expanded > MAX_EXPANSION:  # `echo $x$x$x…` of a 1 MiB $x: GBs in the kernel
            raise ParseError(f"the line expands to more than {MAX_EXPANSION >> 20} MiB")
        return value

    def flush() -> None:
        nonlocal in_word, globbable, assign, solid, buf, leading, declaring, target
        if in_word and (solid or any(buf)):  # `$(true)` alone is no word, as in sh
            text = "".join(buf)
            if leading and not assign and not target:  # the command's name
                declaring = text in DECLARATIONS
            target = False
            out.append(Word(text, globbable and not (assign and declaring), assign))
            leading = leading and assign
        buf, in_word, globbable, assign, solid = [], False, False, False, False

    # The rest of the line while a brace word's words are read, innermost last: the line
    # is not rebuilt for each such word (170,000 of them took 11.6 s).
    rest: list[tuple[str, int]] = []
    while i < n or rest:
        if i >= n:
            s, i = rest.pop()
            n = len(s)
            continue
        c = s[i]
        if c.isspace():
            flush()
            i += 1
            continue
        if c in "<>" and s.startswith("(", i + 1) and substitute is not None:
            # <(LIST) / >(LIST): the path of a pipe LIST writes into / reads from
            end = matching_paren(s, i + 1)
            buf.append(grow(substitute(PROCESS_SUBSTITUTION + c + s[i + 2 : end])))
            in_word = solid = True
            i = end + 1
            continue
        op = next((o for o in OPERATORS if s.startswith(o, i)), None)
        if (c in "<>" or (c.isdigit() and not in_word)) and op not in ("<<", "<<<"):
            # `3> f`, `>&3`, `<&3`, `3>&-`, `2>&1`: a number counts only at a word's start
            numbered = _NUMBERED.match(s, i)
            if numbered is not None and numbered.group() not in ("<", ">", ">>", "2>",
                                                                  "2>>"):
                op = numbered.group()
        # "2>" (and "1>&2") is an operator only at the start of a word.
        if op is not None and not (op[0] in "0123456789" and in_word):
            flush()
            out.append(_Op(op))
            i += len(op)
            target = _redirection_op(op) and op not in _DUPS
            if not _redirection_op(op):  # a new command follows
                leading, declaring = True, False
            continue
        if not in_word:
            m = (_ASSIGN_OR_APPEND if leading else _ASSIGN_RE).match(s, i)
            assign = m is not None
            if brace and not (assign and (leading or declaring)):
                end = word_end(s, i)
                words = braces.expand(s[i:end]) if "{" in s[i:end] else None
                if words is not None:  # a{b,c}: the words it makes, lexed in its place
                    rest.append((s, end))
                    s, i = grow(" ".join(words)), 0
                    n = len(s)
                    continue
        in_word = True
        solid = solid or c not in "$`"  # (an unquoted expansion alone may be no word)
        if c == "'":
            end = s.find("'", i + 1)
            if end < 0:
                raise ParseError("unterminated ' quote")
            buf.append(s[i + 1 : end])
            i = end + 1
        elif c == '"':
            # "$@", "${a[@]}", "${a[@]^^}", "x${@%d}y": each positional parameter or
            # element a word of its own (none when there are none and nothing is around
            # them), the text around joined to the first and the last, as in sh
            parts, every, i = _dquoted_fields(s, i, lookup, substitute, grow)
            if every and assign and (leading or declaring):
                parts, every = [" ".join(parts)], False  # `x="$@"`: one value, joined
            if not every:
                buf.append(parts[0])
            else:
                for k, part in enumerate(parts):
                    if k:
                        flush()
                        in_word = True
                    solid = True
                    buf.append(part)
                if not parts and not buf:
                    in_word = False  # (unless the text around it makes a word)
        elif c == "\\":
            if i + 1 < n:
                buf.append(s[i + 1])
            i += 2
        elif c == "$" and s.startswith("'", i + 1):  # $'…': bash's ANSI-C quoting
            value, i = _ansi_c(s, i + 1)
            buf.append(grow(value))
            solid = True
        elif c in "$`":
            assigning = assign and (leading or declaring)
            found = _every_at(s, i) if c == "$" and not assigning else None
            if c == "`":  # `command`: the old spelling of $(command)
                value, i = _backquoted(s, i, substitute)
                values, split = [value], True
            elif found is not None:  # unquoted $@, ${a[@]…}: each word split on its own
                every_target, every_op, i = found
                values = _every_words(every_target, every_op, lookup, substitute)
                split = True
            else:
                value, i, split = _expand(s, i, lookup, substitute)
                values = [value]
            # Unquoted, a variable's or a command's output splits into words (as in sh),
            # but not in an assignment (`x=$(seq 3)` is one value, as in sh).
            split = split and not assigning
            if split and ifs is None:
                ifs = current_ifs(lookup)
            for nth, value in enumerate(values):
                if nth and (solid or any(buf)):
                    flush()  # (between two parameters: a cut, whatever IFS holds)
                grow(value)
                parts = split_fields(value, ifs) if split and ifs is not None else [value]
                # A delimiter at either end of the value cuts the word there too: `[$x]`
                # of " a b " is `[ a b ]`, four words (it was `[a b]`). (A leading one
                # that is not white space made an empty first field, which joins the
                # text before.)
                cut_before = split and bool(value) and ifs is not None \
                    and value[0] in ifs and value[0] in DEFAULT_IFS \
                    and not _delimited_first(value, ifs)
                cut_after = split and bool(value) and ifs is not None and value[-1] in ifs
                if cut_before and (solid or any(buf)):
                    flush()
                # (an empty field between two IFS delimiters, `a::b` at `:`, is a word)
                solid = solid or not split or len(parts) > 1
                for k, part in enumerate(parts):
                    if k:
                        flush()
                    in_word = True
                    solid = solid or k > 0
                    buf.append(part)
                if cut_after:
                    flush()
        elif c == "~" and not buf and (i + 1 == n or s[i + 1] in "/ \t"):
            buf.append(grow(lookup("HOME") or "/"))
            i += 1
        else:
            if c in "*?[":
                globbable = True
            buf.append(c)
            i += 1
    flush()
    return out


_ASSIGN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
#: A command's leading ``NAME=value`` or ``NAME+=value`` (appended to NAME's value).
_ASSIGN_OR_APPEND = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\+?=")
#: What splits an unquoted expansion when IFS is unset.
DEFAULT_IFS = " \t\n"
_DEFAULT_CUT = re.compile(r"[ \t\n]+")


def _delimited_first(value: str, ifs: str) -> bool:
    """``value`` opens with IFS white space then another IFS character (`` :a`` at
    ``IFS=': '``): that delimiter makes an empty first field, which joins the text
    before the expansion (no cut there)."""
    rest = value.lstrip("".join(c for c in ifs if c in DEFAULT_IFS))
    return bool(rest) and rest[0] in ifs


def current_ifs(lookup: Callable[[str], str]) -> str:
    """``$IFS`` as splitting and joining read it: unset is ``DEFAULT_IFS``; set, even to
    "", as it is (its first character joins ``"$*"``, none when it is empty)."""
    return lookup("IFS") if lookup("IFS" + SET_QUERY) == "1" else DEFAULT_IFS


def split_fields(value: str, ifs: str) -> list[str]:
    """An unquoted expansion's fields, as POSIX splits them at ``ifs`` (2.6.5): runs of
    IFS white space are one cut and are dropped at both ends; each other IFS character
    is a cut of its own (``a::b`` is three fields, ``:a`` two), a last one makes no
    empty field; an empty IFS splits nothing. (``str.split()`` ignored IFS: ``IFS=:``
    and ``IFS=$'\n'`` changed nothing.)"""
    if not ifs:
        return [value] if value else []
    blanks = "".join(c for c in ifs if c in DEFAULT_IFS)
    if len(blanks) == len(ifs):  # white space alone: the common case, in C
        cut = _DEFAULT_CUT if blanks == DEFAULT_IFS else \
            re.compile("[" + re.escape(blanks) + "]+")
        return [f for f in cut.split(value) if f]
    fields: list[str] = []
    i, n = 0, len(value)
    while i < n and value[i] in blanks:
        i += 1
    start = i
    while i < n:
        if value[i] not in ifs:
            i += 1
            continue
        fields.append(value[start:i])
        was_blank = value[i] in blanks
        i += 1
        while i < n and value[i] in blanks:
            i += 1
        if was_blank and i < n and value[i] in ifs:  # `a : b`: one cut
            i += 1
            while i < n and value[i] in blanks:
                i += 1
        start = i
    if start < n:
        fields.append(value[start:])
    return fields
_C_ESCAPES = {"a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "n": "\n",
              "r": "\r", "t": "\t", "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}
_C_NUMERIC = re.compile(r"([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|u([0-9A-Fa-f]{1,4})"
                        r"|U([0-9A-Fa-f]{1,8})|c(.)", re.DOTALL)


def _ansi_c(s: str, j: int) -> tuple[str, int]:
    r"""``$'…'`` with its quote at ``s[j]``: the text with bash's backslash escapes
    made (``backslash_escapes``), cut at a NUL as bash cuts it; and the index after the
    closing quote. (``\'`` inside is not supported: the line's splitters read ``'`` as
    the end of a quote.)"""
    end = s.find("'", j + 1)
    if end < 0:
        raise ParseError("unterminated $' quote")
    return backslash_escapes(s[j + 1 : end], dollar_quote=True)[0], end + 1


def backslash_escapes(text: str, *, dollar_quote: bool = False,
                      percent_b: bool = False) -> tuple[str, bool]:
    r"""``text`` with C's backslash escapes made (``\n``, ``\t``, ``\e``, ``\x41``,
    ``\u00e9``, ``\101``…), and whether it was cut short. ``dollar_quote``: ``$'…'``'s
    rules (``\cA`` is a control character; a NUL ends the text); ``percent_b``:
    printf ``%b``'s (``\c`` ends all output, octal is ``\0NNN``)."""
    out: list[str] = []
    k, n = 0, len(text)
    while k < n:
        c = text[k]
        if c != "\\" or k + 1 >= n:
            out.append(c)
            k += 1
            continue
        nxt = text[k + 1]
        if percent_b and nxt == "c":
            return "".join(out), True
        if nxt in _C_ESCAPES:
            out.append(_C_ESCAPES[nxt])
            k += 2
            continue
        m = _C_NUMERIC.match(text, k + 2 if percent_b and nxt == "0" else k + 1)
        if m is None or (m.group(5) is not None and not dollar_quote):
            out.append("\\" + nxt)
            k += 2
            continue
        octal, hex2, u4, u8, ctl = m.groups()
        if ctl is not None:
            code = ord(ctl.upper()) ^ 0x40 if ctl != "?" else 0x7F
        else:
            code = int(octal, 8) if octal else int(hex2 or u4 or u8, 16)
        if code == 0 and dollar_quote:  # bash's string ends there
            return "".join(out), True
        out.append(chr(code) if code < 0x110000 else "\ufffd")
        k = m.end()
    return "".join(out), False


#: The target of an expansion of every word in a double-quoted string: ``${@…}``,
#: ``${NAME[@]…}``, ``${!NAME[@]…}`` (the indices), ``${!PREFIX@}`` (the names).
_EVERY_TARGET = re.compile(r"(@|!?[A-Za-z_][A-Za-z0-9_]*\[@\]|![A-Za-z_][A-Za-z0-9_]*@)(.*)",
                           re.DOTALL)
#: ``${@:OFF[:LEN]}``, ``${*:…}``, ``${a[@]:…}``, ``${a[*]:…}``: a slice of the words.
_SLICED = re.compile(r"([@*]|[A-Za-z_][A-Za-z0-9_]*\[[@*]\]):(?![-+?=])(.*)", re.DOTALL)
#: ``${@:-WORD}``, ``${a[@]:+WORD}``, ``${*-WORD}``: a default for all the words (not
#: a slice: bash reads ``:-`` first; ``${@: -1}`` is the last word)
_DEFAULTED = re.compile(r"([@*]|[A-Za-z_][A-Za-z0-9_]*\[[@*]\])(:?)([-+?=])(.*)", re.DOTALL)


def _words_of(target: str, spec: str | None, lookup: Callable[[str], str],
              substitute: Callable[[str], str] | None) -> list[str]:
    """The words of ``$@`` (``target`` ``@`` or ``*``) or of an array (``a[@]``), or the
    slice ``spec`` (``OFF[:LEN]``, arithmetic) of them, as bash slices: ``$@``'s offsets
    count from ``$0`` (``${@:1}`` is every parameter), an array's are indices (its
    elements at OFF and after); a negative OFF counts back from the end."""
    if target.startswith("!") and not target.endswith("]"):  # "${!PREFIX@}": the names
        if spec is not None:
            raise ParseError(f"bad substitution: ${{{target}:{spec}}}")
        names = lookup(target[1:-1] + NAMES_QUERY)
        return names.split(" ") if names else []
    if target.startswith("!"):  # "${!a[@]}": its indices, a word each
        from exo.shell import arrays

        if spec is not None:
            raise ParseError(f"bad substitution: ${{{target}:{spec}}}")
        raw = lookup(target[1:-3] + arrays.ELEMENTS)
        if arrays.is_assoc(raw):  # (its keys, in the order they were set)
            return list(arrays.assoc_view(raw))
        return [str(i) for i in sorted(arrays.view(raw))]
    if target in ("@", "*"):
        args = lookup("@\0")
        words = args.split("\0") if args else []
        if spec is None:
            return words
        indexed = list(enumerate([lookup("0"), *words]))
    else:
        from exo.shell import arrays

        raw = lookup(target[:-3] + arrays.ELEMENTS)
        if arrays.is_assoc(raw):
            if spec is not None:
                raise ParseError(f"bad substitution: ${{{target}:{spec}}}")
            return list(arrays.assoc_view(raw).values())
        elements = arrays.view(raw)
        if spec is None:
            return list(elements.values())
        indexed = sorted(elements.items())
    from exo.shell.arith import evaluate

    assign = _assigner(lookup)
    off_text, colon, len_text = spec.partition(":")
    offset = evaluate(_arith_text(off_text, lookup, substitute), lookup, assign)
    if offset < 0:
        offset += (indexed[-1][0] + 1) if indexed else 0
    chosen = [value for index, value in indexed if index >= offset]
    if colon:
        length = evaluate(_arith_text(len_text, lookup, substitute), lookup, assign)
        if length < 0:
            raise ParseError(f"{len_text.strip()}: substring expression < 0")
        chosen = chosen[:length]
    return chosen


def is_assignment(word: str) -> bool:
    """Whether ``word`` (expanded) has the form NAME=VALUE."""
    return _ASSIGN_RE.match(word) is not None
#: Builtins whose NAME=value arguments are assignments (``_lex``'s ``declaring``).
DECLARATIONS = frozenset({"export", "readonly", "local"})


def _backquoted(s: str, i: int, substitute: Callable[[str], str] | None) -> tuple[str, int]:
    """```command``` at ``s[i]``: its output (as ``$(command)``) and the next index."""
    end = _backquote_end(s, i)
    if substitute is None:
        raise ParseError("command substitution is not available here")
    inner = re.sub(r"\\([$`\\])", r"\1", s[i + 1 : end])
    return substitute(inner).rstrip("\n"), end + 1


#: The deepest ``${…}`` inside ``${…}`` (bash's scripts use two or three).
MAX_BRACED_NESTING = 64


def matching_brace(s: str, j: int) -> int:
    """The index of the ``}`` closing the ``${`` whose ``{`` is at ``s[j]``, as sh reads
    it: quoted text, escaped characters, ``$(…)``, backquotes and inner ``${…}`` are
    skipped (a plain ``{`` nests nothing: ``${u:-{a}`` is ``{a``). Iterative: nesting a
    hostile line deep costs no stack."""
    stack = ["{"]  # "{": a ${ open; '"': a double-quoted string open inside one
    i, n = j + 1, len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
        elif c == "$" and s.startswith("(", i + 1):
            i = matching_paren(s, i + 1) + 1
        elif c == "$" and s.startswith("{", i + 1):
            stack.append("{")
            if len(stack) > MAX_BRACED_NESTING:  # each level is read again as it expands
                raise ParseError(f"${{…}} nested more than {MAX_BRACED_NESTING} deep")
            i += 2
        elif c == "`":
            i = _backquote_end(s, i) + 1
        elif stack[-1] == '"':
            if c == '"':
                stack.pop()
            i += 1
        elif c == "'":
            end = s.find("'", i + 1)
            if end < 0:
                break
            i = end + 1
        elif c == '"':
            stack.append('"')
            i += 1
        elif c == "}":
            stack.pop()
            if not stack:
                return i
            i += 1
        else:
            i += 1
    raise ParseError("unterminated ${")


def dquote_end(s: str, i: int) -> int:
    """The index after the ``"`` closing the double-quoted string opened at ``s[i]``: a
    ``"`` inside its ``$(…)``, ``${…}`` or backquotes closes nothing
    (``"$(echo "a;b")"`` is one string)."""
    j, n = i + 1, len(s)
    while j < n:
        c = s[j]
        if c == '"':
            return j + 1
        if c == "\\":
            j += 2
        elif c == "$" and s.startswith("(", j + 1):
            j = matching_paren(s, j + 1) + 1
        elif c == "$" and s.startswith("{", j + 1):
            j = matching_brace(s, j + 1) + 1
        elif c == "`":
            j = _backquote_end(s, j) + 1
        else:
            j += 1
    raise IncompleteInput('unterminated " quote')


#: Characters that end a word's raw text (outside quotes); a case pattern's too.
WORD_ENDS = frozenset(" \t\n|&;<>")
_PATTERN_ENDS = WORD_ENDS | frozenset("()")


def word_end(s: str, i: int, ends: frozenset[str] = WORD_ENDS) -> int:
    """The index just past the raw (unexpanded) word starting at ``s[i]``: its quoted
    strings, escapes, ``$(…)``, ``${…}`` and backquotes are part of it."""
    n = len(s)
    while i < n and s[i] not in ends:
        i = unit_end(s, i)
    return i


def unit_end(s: str, i: int) -> int:
    """The index after the unit at ``s[i]``: a quoted string, an escaped character, a
    ``$(…)``, ``${…}`` or backquoted command, or one character (an unterminated one runs
    to the end)."""
    c, n = s[i], len(s)
    try:
        if c == "'":
            end = s.find("'", i + 1)
            return n if end < 0 else end + 1
        if c == '"':
            return dquote_end(s, i)
        if c == "\\":
            return min(i + 2, n)
        if c == "$" and s.startswith("(", i + 1):
            return matching_paren(s, i + 1) + 1
        if c == "$" and s.startswith("{", i + 1):
            return matching_brace(s, i + 1) + 1
        if c == "`":
            return _backquote_end(s, i) + 1
    except ParseError:
        return n
    return i + 1


def _backquote_end(s: str, i: int) -> int:
    """The index of the backquote closing the one at ``s[i]``."""
    end = i + 1
    while end < len(s) and s[end] != "`":
        end += 2 if s[end] == "\\" else 1
    if end >= len(s):
        raise IncompleteInput("unterminated `")
    return end


def matching_paren(s: str, i: int) -> int:
    """The index of the ``)`` closing the ``(`` at ``s[i]`` (quotes and nesting kept)."""
    depth, quote = 0, ""
    while i < len(s):
        c = s[i]
        if quote:
            if c == quote:
                quote = ""
            elif c == "\\" and quote == '"':
                i += 1
        elif c in "'\"":
            quote = c
        elif c == "\\":
            i += 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise IncompleteInput("unterminated $(")


#: The longest arithmetic expression once its ``$`` references are expanded.
MAX_ARITHMETIC = 64 << 10


def _arith_text(inner: str, lookup: Callable[[str], str],
                substitute: Callable[[str], str] | None) -> str:
    """``$((…))``'s text with its ``$x``, ``${x}``, ``$(…)`` and inner ``$((…))``
    expanded first, as sh does (``$(( $x + 1 ))`` was "bad arithmetic")."""
    if "$" not in inner:
        return inner
    out: list[str] = []
    k = size = 0
    while k < len(inner):
        if inner[k] == "$":
            value, k, _ = _expand(inner, k, lookup, substitute)
        else:
            value, k = inner[k], k + 1
        size += len(value)
        if size > MAX_ARITHMETIC:
            raise ParseError(f"bad arithmetic: longer than {MAX_ARITHMETIC >> 10} KiB "
                             "once expanded")
        out.append(value)
    return "".join(out)


def _assigner(lookup: Callable[[str], str]) -> Callable[[str, str], None] | None:
    """How an arithmetic expansion assigns (``$((i++))``): through the shell whose
    ``lookup`` this is; None (assignments refused) for any other lookup."""
    assign: Callable[[str, str], None] | None = getattr(
        getattr(lookup, "__self__", None), "assign_variable", None)
    return assign


def _expand(s: str, i: int, lookup: Callable[[str], str],
            substitute: Callable[[str], str] | None) -> tuple[str, int, bool]:
    """Expand the reference at ``s[i] == '$'``: (value, next index, whether an unquoted
    value is split into words)."""
    j = i + 1
    if j < len(s) and s[j] in "?$!#-":
        return lookup(s[j]), j + 1, False
    if j < len(s) and (s[j] in "@*" or s[j].isdigit()):  # $@ $* $0 $1 ... $9
        return lookup(s[j]), j + 1, True
    if s.startswith("((", j):
        end = matching_paren(s, j)
        if s[end - 1] != ")":
            raise ParseError("bad arithmetic: expected '))'")
        from exo.shell.arith import evaluate

        inner = _arith_text(s[j + 2 : end - 1], lookup, substitute)
        # ($((x=3)), $((i++)) assign, as in sh: through the shell whose lookup this is)
        return str(evaluate(inner, lookup, _assigner(lookup))), end + 1, False
    if j < len(s) and s[j] == "(":
        end = matching_paren(s, j)
        if substitute is None:
            raise ParseError("command substitution is not available here")
        return substitute(s[j + 1 : end]).rstrip("\n"), end + 1, True
    if j < len(s) and s[j] == "{":
        end = matching_brace(s, j)
        return _braced(s[j + 1 : end], lookup, substitute), end + 1, True
    k = j
    while k < len(s) and (s[k].isalnum() or s[k] == "_"):
        k += 1
    if k == j:
        return "$", j, False
    return lookup(s[j:k]), k, True


_INDEXED = re.compile(r"([#!]?)([A-Za-z_][A-Za-z0-9_]*)\[([^\]]+)\]")


def _element(inner: str, how: str, name: str, subscript: str,
             lookup: Callable[[str], str], substitute: Callable[[str], str] | None) -> str:
    """``${NAME[SUBSCRIPT]}`` and its ``#`` (length, count) and ``!`` (indices) forms."""
    from exo.shell import arrays

    raw = lookup(name + arrays.ELEMENTS)
    assoc = arrays.is_assoc(raw)
    elements: Mapping[Any, str] = arrays.assoc_view(raw) if assoc else arrays.view(raw)
    if subscript in ("@", "*"):
        if how == "#":
            return str(len(elements))
        # ("${a[*]}": joined as "$*" is)
        joiner = current_ifs(lookup)[:1] if subscript == "*" and how != "!" else " "
        return joiner.join(map(str, elements) if how == "!" else elements.values())
    if how == "!":
        raise ParseError(f"bad substitution: ${{{inner}}}")
    # (an associative array's key is a word, expanded; an indexed one's, arithmetic)
    index = expand_word(subscript, lookup, substitute) if assoc else \
        array_index(subscript, elements, lookup, substitute)
    value = elements.get(index, "")
    return str(len(value)) if how == "#" else value


def array_index(subscript: str, elements: Mapping[int, str], lookup: Callable[[str], str],
                substitute: Callable[[str], str] | None) -> int:
    """An array's subscript: an arithmetic expression (negative: from the end)."""
    from exo.shell import arrays
    from exo.shell.arith import evaluate

    value = evaluate(_arith_text(subscript, lookup, substitute), lookup, _assigner(lookup))
    try:
        return arrays.index_of(elements, value)
    except ValueError:
        raise ParseError(f"[{subscript}]: bad array subscript") from None


def _braced(inner: str, lookup: Callable[[str], str],
            substitute: Callable[[str], str] | None) -> str:
    """``${NAME}``, ``${#NAME}`` (its length), and ``${NAME:-WORD}``, ``${NAME:+WORD}``,
    ``${NAME:?WORD}`` (and without the colon: for an unset NAME only), as sh expands
    them; WORD is expanded in its turn."""
    if inner.startswith("#") and (inner[1:].isidentifier() or inner[1:].isdigit()):
        return str(len(lookup(inner[1:])))
    if inner in ("#@", "#*"):  # (the number of positional parameters, as $#)
        return lookup("#")
    if inner[:1] == "!" and inner[-1:] in "*@" and inner[1:-1].isidentifier():
        return lookup(inner[1:-1] + NAMES_QUERY)  # ${!PREFIX*}: the names it starts
    defaulted = _DEFAULTED.fullmatch(inner)
    if defaulted is not None:  # ${@:-none}, ${a[@]:+set}
        target, colon, op, word = defaulted.groups()
        words = _words_of(target, None, lookup, substitute)
        value = (current_ifs(lookup)[:1] if "*" in target else " ").join(words)
        if op == "=":
            raise ParseError(f"${{{inner}}}: ${target} cannot be assigned this way")
        return _by_default(target, value, value == "" if colon else not words, op, word,
                           lookup, substitute)
    sliced = _SLICED.fullmatch(inner)
    if sliced is not None:  # ${@:2}, ${a[@]:1:2}
        target, spec = sliced.groups()
        joiner = current_ifs(lookup)[:1] if "*" in target else " "
        return joiner.join(_words_of(target, spec, lookup, substitute))
    each = _EACH_WORD.fullmatch(inner)
    if each is not None:  # ${a[@]/x/y}, ${*^}, ${@%d}: each word through it, joined
        target, op = each.groups()
        joiner = current_ifs(lookup)[:1] if "*" in target else " "
        return joiner.join(_every_words(target.replace("*", "@"), op, lookup, substitute))
    indexed = _INDEXED.fullmatch(inner)
    if indexed is not None:  # ${a[1]}, ${a[@]}, ${#a[@]}, ${!a[@]}: bash's arrays
        how, name, subscript = indexed.groups()
        return _element(inner, how, name, subscript, lookup, substitute)
    trim = _TRIM_RE.fullmatch(inner)
    if trim is not None:
        name, op, word = trim.groups()
        return _trimmed(lookup(name), op, expand_word(word, lookup, substitute, pattern=True),
                        inner)
    edited = _edited(inner, lookup, substitute)
    if edited is not None:
        return edited
    if inner[:1] == "!" and (inner[1:].isidentifier() or inner[1:].isdigit()):
        # ${!x}: the variable x names (bash's indirection)
        target = lookup(inner[1:])
        if not (target.isidentifier() or target.isdigit() or target in _SPECIAL):
            raise ParseError(f"${{{inner}}}: {inner[1:]} holds {target!r}, not a "
                             "variable's name")
        return lookup(target)
    m = _BRACED_RE.fullmatch(inner)
    if m is None:
        raise ParseError(f"bad substitution: ${{{inner}}}")
    name, colon, op, word = m.groups()
    # (an unset NAME is never looked up with an operator: set -u spares ${x:-…})
    value = "" if op and lookup(name + SET_QUERY) != "1" else lookup(name)
    if not op:
        return value
    # Without the colon, only an unset NAME counts (``x=; ${x-d}`` is empty).
    unset = value == "" if colon else lookup(name + SET_QUERY) != "1"
    if op == "=":  # ${x:=WORD}: WORD assigned to an unset (or empty) x, and answered
        if not unset:
            return value
        if not name.isidentifier():
            raise ParseError(f"${{{inner}}}: ${name} cannot be assigned this way")
        return lookup(name + ASSIGN + expand_word(word, lookup, substitute))
    return _by_default(name, value, unset, op, word, lookup, substitute)


def _by_default(name: str, value: str, unset: bool, op: str, word: str,
                lookup: Callable[[str], str], substitute: Callable[[str], str] | None
                ) -> str:
    """``${NAME-WORD}``, ``${NAME+WORD}``, ``${NAME?WORD}`` (``op``), NAME's ``value``
    being ``unset`` (or empty, with the colon: the caller says which): WORD expanded
    only when it is the answer."""
    if op == "+":
        return expand_word(word, lookup, substitute) if not unset else ""
    if not unset:
        return value
    if op == "?":
        said = expand_word(word, lookup, substitute)
        raise UnsetError(f"{name}: {said or 'parameter null or not set'}")
    return expand_word(word, lookup, substitute)


def _dquoted_fields(s: str, i: int, lookup: Callable[[str], str],
                    substitute: Callable[[str], str] | None,
                    grow: Callable[[str], str]) -> tuple[list[str], bool, int]:
    """The double-quoted string opened at ``s[i]``, expanded: its fields, whether an
    expansion of every word (``$@``, ``${a[@]…}``) is in it (else it is one field), and
    the index after its closing quote."""
    fields: list[str] = []
    out: list[str] = []
    every = False
    i += 1
    n = len(s)
    while i < n and s[i] != '"':
        if s[i] == "\\" and i + 1 < n and s[i + 1] in '"\\$`':
            out.append(s[i + 1])
            i += 2
        elif s[i] == "$" and (found := _every_at(s, i)) is not None:
            target, op, i = found
            words = [grow(w) for w in _every_words(target, op, lookup, substitute)]
            every = True
            for k, word in enumerate(words):
                if k:
                    fields.append("".join(out))
                    out = []
                out.append(word)
        elif s[i] == "$":
            value, i, _ = _expand(s, i, lookup, substitute)
            out.append(grow(value))
        elif s[i] == "`":
            value, i = _backquoted(s, i, substitute)
            out.append(grow(value))
        else:
            out.append(s[i])
            i += 1
    if i >= n:
        raise ParseError('unterminated " quote')
    if out or fields or not every:
        fields.append("".join(out))
    return fields, every, i + 1


def _every_at(s: str, i: int) -> tuple[str, str, int] | None:
    """At ``s[i] == "$"``: ``$@`` or ``${TARGET OP}`` of every word (``_EVERY_TARGET``):
    its target, operator and the index after it; else None."""
    if s.startswith("$@", i):
        return "@", "", i + 2
    if not s.startswith("${", i):
        return None
    end = matching_brace(s, i + 1)
    m = _EVERY_TARGET.fullmatch(s, i + 2, end)
    return None if m is None else (m.group(1), m.group(2), end + 1)


#: Names no script uses, for one element while an operator is applied to it.
_ONE = "_exo_each_word_"


def _every_words(target: str, op: str, lookup: Callable[[str], str],
                 substitute: Callable[[str], str] | None) -> list[str]:
    """The words of ``"${TARGET OP}"`` (``"$@"``, ``"${a[@]}"``): a slice of them
    (``:OFF[:LEN]``), a default for all of them (``:-WORD``, ``:+WORD``...), or each
    one through a string operator (``^^``, ``/PAT/REP``, ``#PAT``, ``%%PAT``...)."""
    if not op:
        return _words_of(target, None, lookup, substitute)
    sliced = re.fullmatch(r":(?![-+?=])(.*)", op, re.DOTALL)
    if sliced is not None:
        return _words_of(target, sliced.group(1), lookup, substitute)
    defaulted = re.fullmatch(r"(:?)([-+?=])(.*)", op, re.DOTALL)
    if defaulted is not None:
        colon, how, word = defaulted.groups()
        words = _words_of(target, None, lookup, substitute)
        unset = " ".join(words) == "" if colon else not words  # (bash: ("" "") is set)
        if how == "=":
            raise ParseError(f"${{{target}{op}}}: ${target} cannot be assigned this way")
        if how == "+":
            return [expand_word(word, lookup, substitute)] if not unset else []
        if not unset:
            return words
        return [_by_default(target, "", True, how, word, lookup, substitute)]
    if target.startswith("!") or op.startswith("@A"):  # (@A would name the stand-in)
        raise ParseError(f"bad substitution: ${{{target}{op}}}")
    # Each word is a pattern match or an edit of up to MAX_TRIMMED characters (a
    # backtracking pattern takes ~0.1 s of one): between two, the shell whose lookup
    # this is lets the kernel's other threads run and stops when its job is killed.
    between = getattr(getattr(lookup, "__self__", None), "between_steps", None)
    out = []
    for word in _words_of(target, None, lookup, substitute):
        def one(name: str, word: str = word) -> str:
            if name == _ONE:
                return word
            return "1" if name == _ONE + SET_QUERY else lookup(name)

        if between is not None:
            between()
        out.append(_braced(_ONE + op, one, substitute))
    return out


def _dquoted(s: str, i: int, lookup: Callable[[str], str],
             substitute: Callable[[str], str] | None,
             grow: Callable[[str], str]) -> tuple[str, int]:
    """The double-quoted string opened at ``s[i]`` as one string (an assignment's, a
    pattern's: ``"$@"`` and ``"${a[@]…}"`` joined by spaces, as sh joins them there),
    and the index after its closing quote."""
    fields, _, end = _dquoted_fields(s, i, lookup, substitute, grow)
    return " ".join(fields), end


#: POSIX bracket classes (``[[:space:]]``) as the characters ``fnmatch`` takes in their
#: place (it knows none): the C locale's sets. ``[:punct:]`` lacks ``[``, ``]`` and ``-``,
#: which a set cannot hold as plain characters there.
_CLASSES = {"alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z",
            "lower": "a-z", "space": " \t\n\r\f\v", "blank": " \t", "xdigit": "0-9A-Fa-f",
            "punct": "\"!#$%&'()*+,./:;<=>?@\\^_`{|}~", "cntrl": "\x01-\x1f\x7f",
            "print": " -~", "graph": "!-~", "word": "a-zA-Z0-9_"}
_CLASS_RE = re.compile(r"\[:(" + "|".join(_CLASSES) + r"):\]")


def posix_classes(pattern: str) -> str:
    """``pattern`` with its POSIX classes spelled out for ``fnmatch`` (``[![:space:]]``:
    any character but white space), as sh's patterns take them."""
    return _CLASS_RE.sub(lambda m: _CLASSES[m.group(1)], pattern) if "[:" in pattern \
        else pattern


def glob_escaped(text: str) -> str:
    """``text`` as an ``fnmatch`` pattern matching exactly itself."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def expand_word(text: str, lookup: Callable[[str], str],
                substitute: Callable[[str], str] | None, *, pattern: bool = False) -> str:
    """``text`` expanded as one word, as sh expands a ``${…:-WORD}``'s WORD, a pattern, a
    replacement or a ``case`` subject: parameters, ``$(…)``, ``$((…))``, a leading ``~``,
    quotes removed; no field splitting (its spaces stay: ``"${u:-a  b}"``), no globbing,
    at most ``MAX_EXPANSION`` bytes brought in. ``pattern``: the result is an ``fnmatch``
    pattern whose quoted and escaped parts match only themselves (``"*"`` is a star, as
    in sh; an unquoted ``$x`` holding ``*`` is a glob)."""
    literal = glob_escaped if pattern else str
    out: list[str] = []
    expanded = 0

    def grow(value: str) -> str:
        nonlocal expanded
        expanded += len(value)
        if expanded > MAX_EXPANSION:
            raise ParseError(f"the word expands to more than {MAX_EXPANSION >> 20} MiB")
        return value

    i, n = 0, len(text)
    if text.startswith("~") and (n == 1 or text[1] == "/"):
        out.append(grow(lookup("HOME") or "/"))
        i = 1
    while i < n:
        c = text[i]
        if c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ParseError("unterminated ' quote")
            out.append(literal(text[i + 1 : end]))
            i = end + 1
        elif c == '"':
            value, i = _dquoted(text, i, lookup, substitute, grow)
            out.append(literal(value))
        elif c == "\\":
            out.append(literal(text[i + 1 : i + 2]))
            i += 2
        elif c == "$":
            value, i, _ = _expand(text, i, lookup, substitute)
            out.append(grow(value))
        elif c == "`":
            value, i = _backquoted(text, i, substitute)
            out.append(grow(value))
        else:
            out.append(c)
            i += 1
    return posix_classes("".join(out)) if pattern else "".join(out)


def _trimmed(value: str, op: str, pattern: str, inner: str) -> str:
    """``${NAME#PATTERN}`` (the shortest prefix matching PATTERN removed), ``##`` (the
    longest), ``%`` and ``%%`` (suffixes), PATTERN a glob. Each length is tried: at
    most ``MAX_TRIMMED`` characters (a value of megabytes was a million matches)."""
    import fnmatch

    if len(value) > MAX_TRIMMED:
        raise ParseError(f"${{{inner}}}: the value is longer than {MAX_TRIMMED} characters")
    sizes = range(len(value) + 1)
    if op in ("##", "%%"):  # the longest first
        sizes = range(len(value), -1, -1)
    for size in sizes:
        if op.startswith("#") and fnmatch.fnmatchcase(value[:size], pattern):
            return value[size:]
        if op.startswith("%") and fnmatch.fnmatchcase(value[len(value) - size:], pattern):
            return value[:len(value) - size]
    return value


#: The longest value ``${NAME#PATTERN}`` and its kin trim.
MAX_TRIMMED = 4096
_TRIM_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*|[0-9]+)(##|#|%%|%)(.*)", re.DOTALL)
_NAME = r"([A-Za-z_][A-Za-z0-9_]*|[0-9]+)"
#: ${NAME^^} ${NAME,,} ${NAME^} ${NAME,}: case.
_CASE_RE = re.compile(_NAME + r"(\^\^|,,|\^|,)")
#: ${NAME@Q} (quoted for the shell), @U @L @u (case), @E (escapes made), @A (as an
#: assignment): bash's transformations.
_AT_RE = re.compile(_NAME + r"@([QULuEA])")
#: ${@OP}, ${*OP}, ${a[@]OP}, ${a[*]OP} with a word's operator (case, /, #, %, @): each
#: word through it (``_every_words``), then joined as the words are.
_EACH_WORD = re.compile(r"(@|\*|[A-Za-z_][A-Za-z0-9_]*\[[@*]\])([\^,/#%@].*)", re.DOTALL)
#: ${NAME:OFFSET} ${NAME:OFFSET:LENGTH} (not ${NAME:-…}, :=, :?, :+): a slice.
_SLICE_RE = re.compile(_NAME + r":(?![-=?+])([^:]*)(?::(.*))?", re.DOTALL)
#: ${NAME/PATTERN/STRING} (first), //: every match, /#: at the start, /%: at the end.
_REPLACE_RE = re.compile(_NAME + r"/([/#%]?)((?:\\.|[^/\\])*)(?:/(.*))?", re.DOTALL)


def _transformed(op: str, name: str, value: str) -> str:
    """``value`` (of ``name``) through a case change (``^^ ,, ^ ,``) or one of bash's
    ``@`` transformations."""
    if op in ("^^", "@U"):
        return value.upper()
    if op in (",,", "@L"):
        return value.lower()
    if op in ("^", "@u"):
        return value[:1].upper() + value[1:]
    if op == ",":
        return value[:1].lower() + value[1:]
    if op == "@E":
        return backslash_escapes(value, dollar_quote=True)[0]
    quoted = shell_quoted(value)
    return f"{name}={quoted}" if op == "@A" else quoted


#: How ``shell_quoted`` spells a control character inside ``$'…'``.
_C_SPELLED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\x1b": "\\E", "\\": "\\\\",
              "'": "\\'"}


def shell_quoted(value: str) -> str:
    """``value`` as bash's ``${v@Q}`` quotes it, to be read back by a shell: in single
    quotes, or as ``$'…'`` when it holds a control character."""
    if any(c < " " or c == "\x7f" for c in value):
        body = "".join(_C_SPELLED.get(c) or (f"\\{ord(c):03o}" if c < " " or c == "\x7f"
                                               else c) for c in value)
        return f"$'{body}'"
    return "'" + value.replace("'", "'\\''") + "'"


def _edited(inner: str, lookup: Callable[[str], str],
            substitute: Callable[[str], str] | None) -> str | None:
    """bash's case, slice and replace forms of ``${…}``; None for any other form. A
    replaced value is at most ``MAX_TRIMMED`` characters, as a trimmed one (a pattern is
    tried at each place of it); a slice or a case change costs its length only."""
    import fnmatch

    from exo.shell.arith import evaluate

    for regex in (_CASE_RE, _AT_RE, _SLICE_RE, _REPLACE_RE):
        m = regex.fullmatch(inner)
        if m is not None:
            break
    else:
        return None
    value = lookup(m.group(1))
    if regex is _REPLACE_RE and len(value) > MAX_TRIMMED:  # (a pattern at each place)
        raise ParseError(f"${{{inner}}}: the value is longer than {MAX_TRIMMED} characters")
    if regex is _CASE_RE:
        return _transformed(m.group(2), m.group(1), value)
    if regex is _AT_RE:
        return _transformed("@" + m.group(2), m.group(1), value)
    if regex is _SLICE_RE:
        offset = evaluate(expand_word(m.group(2), lookup, substitute), lookup)
        start = max(len(value) + offset, 0) if offset < 0 else offset
        if m.group(3) is None:
            return value[start:]
        length = evaluate(expand_word(m.group(3), lookup, substitute), lookup)
        end = len(value) + length if length < 0 else start + length
        if end < start:
            raise ParseError(f"${{{inner}}}: substring expression < 0")
        return value[start:end]
    how, pattern = m.group(2), expand_word(m.group(3), lookup, substitute, pattern=True)
    replacement = expand_word(m.group(4) or "", lookup, substitute)
    if not pattern:  # ${x/#/p}, ${x/%/s}: the empty string at the start, at the end
        return {"#": replacement + value, "%": value + replacement}.get(how, value)
    body = fnmatch.translate(pattern).removeprefix("(?s:").removesuffix(")\\Z")
    regex_text = {"#": f"\\A(?:{body})", "%": f"(?:{body})\\Z"}.get(how, body)
    try:
        compiled = re.compile(regex_text, re.DOTALL)
    except re.error:
        return value
    count = 0 if how == "/" else 1
    # Bounded before it is built: 4096 places of a replacement of megabytes were GBs.
    places = min(sum(1 for _ in compiled.finditer(value)), count or len(value) + 1)
    if len(value) + places * len(replacement) > MAX_EXPANSION:
        raise ParseError(f"${{{inner}}}: the result is longer than "
                         f"{MAX_EXPANSION >> 20} MiB")
    return compiled.sub(lambda _: replacement, value, count=count)
_SPECIAL = frozenset("#@*?$!-0")
_BRACED_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*|[0-9]+|[#@*?$!])(?:(:?)([-+?=])(.*))?",
                        re.DOTALL)


# ------------------------------------------------------------ compound commands
# ``if``/``while``/``for`` are recognised at the start of list items, so the same line
# splitter serves ``for i in 1 2; do echo $i; done`` and the same over several lines.
_OPENERS = ("if", "while", "until", "for", "{", "case", SUBSHELL)
_CLAUSE_ENDS = (";;", ";&", ";;&")
_RESERVED = ("then", "elif", "else", "fi", "do", "done")
#: each may take redirections for its whole block
_CLOSERS = ("fi", "done", "}", "esac", END_SUBSHELL)
#: Between the patterns of a case clause, as parsed (a quoted "a|b" is one pattern).
PATTERN_SEP = "\x1e"


def _case_clause(source: str) -> tuple[list[str], str] | None:
    """``[(]PATTERN[ | PATTERN…]) REST`` at the start of ``source``: the raw patterns
    (quoted ones may hold spaces, ``|`` and ``)``) and REST; None when it is not one."""
    i, n = (1 if source.startswith("(") else 0), len(source)
    patterns: list[str] = []
    while True:
        while i < n and source[i] in " \t":
            i += 1
        end = word_end(source, i, _PATTERN_ENDS)
        if end == i:
            return None
        patterns.append(source[i:end])
        i = end
        while i < n and source[i] in " \t":
            i += 1
        if i < n and source[i] == "|":
            i += 1
        elif i < n and source[i] == ")":
            return patterns, source[i + 1 :].strip()
        else:
            return None
_FUNCTION = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*)\s*\(\s*\)")


class Simple:
    """One list item: a pipeline, expanded only when it runs."""

    __slots__ = ("item",)

    def __init__(self, item: ListItem) -> None:
        self.item = item


class _Block:
    """What every compound command has around its body."""

    __slots__ = ("background", "connector", "feeder", "negated", "prefix", "redirects",
                 "timed")

    def __init__(self) -> None:
        self.background = False  # ``done &``: run as a job, the shell going on
        self.redirects = ""  # after its closing word: ``fi > out`` (unexpanded)
        self.prefix = ""  # the pipeline piped into it: ``cat f | while read l; …``
        #: A block piped into it, first (``done | while read l; …``); ``prefix`` then
        #: holds the commands between the two, if any
        self.feeder: If | Loop | Group | Case | None = None
        self.connector = ";"  # ``&&``, ``||``: run after a success, a failure only
        self.negated = False  # ``! { LIST; }``: its status inverted, as a pipeline's
        #: ``time { LIST; }``: its times said after it ("posix": ``time -p``'s layout)
        self.timed: str | None = None


class If(_Block):
    __slots__ = ("clauses", "otherwise")

    def __init__(self, clauses: list[tuple[list[Node], list[Node]]],
                 otherwise: list[Node]) -> None:
        super().__init__()
        self.clauses = clauses  # (condition, body) for the if and each elif
        self.otherwise = otherwise


class Group(_Block):
    """``{ LIST; }``: a list run in this shell, its redirections applying to all of it;
    ``NAME() { LIST; }`` defines it as the function ``name``; ``( LIST )`` (``subshell``):
    what it changes of the shell (variables, the working directory, functions,
    aliases) is undone when it ends, and ``exit`` ends it alone."""

    __slots__ = ("body", "name", "subshell")

    def __init__(self, body: list[Node], name: str = "", subshell: bool = False) -> None:
        super().__init__()
        self.body = body
        self.name = name
        self.subshell = subshell


class Case(_Block):
    """``case WORD in PATTERN|PATTERN) LIST;; … esac``."""

    __slots__ = ("clauses", "ends", "subject")

    def __init__(self, subject: str, clauses: list[tuple[list[str], list[Node]]],
                 ends: list[str] | None = None) -> None:
        super().__init__()
        self.subject = subject  # unexpanded, as each pattern
        self.clauses = clauses
        #: How each clause ends: ``;;``, ``;&`` (on into the next body) or ``;;&`` (on
        #: to test the next patterns).
        self.ends = ends or [";;"] * len(clauses)


class Loop(_Block):
    """``while``/``until`` (``condition``) or ``for NAME in WORDS`` (``name``, ``words``)."""

    __slots__ = ("body", "condition", "kind", "name", "words")

    def __init__(self, kind: str, body: list[Node], condition: list[Node] | None = None,
                 name: str = "", words: str = "") -> None:
        super().__init__()
        self.kind = kind
        self.body = body
        self.condition = condition or []
        self.name = name
        self.words = words  # unexpanded: expanded when the loop starts


if TYPE_CHECKING:
    Node = Simple | If | Loop | Group | Case


class _Kw:
    __slots__ = ("arg", "background", "connector", "word")

    def __init__(self, word: str, arg: str = "", connector: str = ";",
                 background: bool = False) -> None:
        self.word = word
        self.arg = arg
        self.connector = connector  # an opening word's: `false && if …` runs no block
        self.background = background  # a closing word's: `} &`


def parse_blocks(items: list[ListItem]) -> list[Node]:
    """Group list items into compound commands; ``IncompleteInput`` when a block is open
    at the end (an interactive shell then reads more lines)."""
    stream = [tok for item in items for tok in _explode(item)]
    nodes, pos = _sequence(stream, 0, ())
    if pos < len(stream):
        tok = stream[pos]
        raise ParseError(f"syntax error near unexpected '{_shown(tok.word)}'"
                         if isinstance(tok, _Kw) else "syntax error")
    return nodes


def _explode(item: ListItem) -> list[_Kw | ListItem]:
    out: list[_Kw | ListItem] = []
    source, connector = item.source, item.connector
    while source:
        word, _, rest = source.partition(" ")
        word, rest = word.strip(), rest.strip()
        if word.startswith("for((") and _arith_at(source, 3):  # for((…)) as bash takes it
            word, rest = "for", source[3:].strip()
        if word == "for":
            if rest.startswith("((") and _arith_at(rest, 0):
                # for ((…)) do …: bash needs no ';' before its do
                end = matching_paren(rest, 0) + 1
                after = rest[end:].strip()
                if after == "do" or after.startswith(("do ", "do\t")):
                    out.append(_Kw("for", rest[:end], connector))
                    source, connector = after, ";"
                    continue
            out.append(_Kw("for", rest, connector))
            return out
        if source in _CLAUSE_ENDS:
            out.append(_Kw(source))
            return out
        if word == "time":  # `time { LIST; }`, `time -p ( LIST )`, `time ! while …`
            after = rest[2:].lstrip() if rest == "-p" or rest.startswith("-p ") else rest
            first, _, then = after.partition(" ")
            if first in _OPENERS or (first == "!" and then.partition(" ")[0] in _OPENERS):
                out.append(_Kw("time", "posix" if after is not rest else "default",
                               connector))
                source, connector = after, ";"
                continue
        if word == "!" and rest.partition(" ")[0] in _OPENERS:  # `! { LIST; }`
            out.append(_Kw("!", "", connector))
            source, connector = rest, ";"
            continue
        if word == "case":  # case WORD in [PATTERN) COMMAND…]
            end = word_end(rest, 0)
            subject, rest = rest[:end], rest[end:].strip()
            if not subject or not (rest == "in" or rest.startswith("in ")):
                raise ParseError("case: expected 'case WORD in'")
            out.append(_Kw("case", subject, connector))
            source, connector = rest[2:].strip(), ";"
            continue
        clause = _case_clause(source) if ")" in source and \
            not word.startswith("\0") else None
        if clause is not None and not source.startswith("$("):
            out.append(_Kw("pattern", PATTERN_SEP.join(clause[0])))
            source, connector = clause[1], ";"
            continue
        fed = _piped_into_block(": " + rest) if word in _CLOSERS and "|" in rest else None
        if fed is not None:  # `done | while read l`: this block feeds the next one
            redirects, between = _split_feed(fed[0][2:])
            out.append(_Kw(word, redirects))
            out.append(_Kw("feed", between))
            source, connector = fed[1], ";"
            continue
        piped = _piped_into_block(source) if word not in _OPENERS else None
        if piped is not None:  # `cat f | while read l` (the block is the last stage)
            out.append(_Kw("pipe", piped[0], connector))
            source, connector = piped[1], ";"
            continue
        header = _FUNCTION.match(source)
        if word == "function" or (header and header.group(1) == word.partition("(")[0]):
            # NAME() { LIST; }, or function NAME [()] { LIST; } (ksh's and bash's)
            if word == "function":
                name, _, rest = rest.partition(" ")
                name, rest = name.removesuffix("()"), rest.strip()
                rest = rest[2:].strip() if rest.startswith("()") else rest
            else:
                assert header is not None
                name, rest = header.group(1), source[header.end():].strip()
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name):
                raise ParseError(f"'{name}': not a valid function name")
            out.append(_Kw("function", name))
            source, connector = rest, ";"
            continue
        if word in _CLOSERS:
            if rest and not re.match(r"[0-9]*[<>]|\||&>", rest):
                raise ParseError(f"syntax error near '{rest.split()[0]}' after '{word}' "
                                 "(a block takes redirections and pipes, not arguments)")
            out.append(_Kw(word, rest, background=item.background))
            return out
        if word in _OPENERS or word in _RESERVED:
            out.append(_Kw(word, "", connector))
            source, connector = rest, ";"
            continue
        out.append(ListItem(connector, source, item.background, item.line))
        break
    return out


def pipe_split(source: str) -> list[str]:
    """``source`` cut at each ``|`` outside quotes and ``$(…)`` (never ``||``)."""
    parts: list[str] = []
    start, i, quote = 0, 0, ""
    while i < len(source):
        c = source[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c == "\\":
            i += 1
        elif c == "$" and source.startswith("(", i + 1):
            i = matching_paren(source, i + 1)
        elif source.startswith("||", i):
            i += 1
        elif c == "|":
            parts.append(source[start:i])
            start = i + 1
        i += 1
    parts.append(source[start:])
    return parts


def _split_feed(text: str) -> tuple[str, str]:
    """What a block that feeds another has after its closing word (``> /dev/null``?
    ``| sort``): its own redirections, and the commands between the two blocks."""
    parts = pipe_split(text)
    return parts[0].strip(), "|".join(parts[1:]).strip()


def _piped_into_block(source: str) -> tuple[str, str] | None:
    """``(PIPELINE, BLOCK…)`` when ``source`` pipes into a block (``cat f | while read
    l``): split at the last ``|`` outside quotes and ``$(…)`` that an opening word
    follows."""
    parts = pipe_split(source)
    for k in range(len(parts) - 1, 0, -1):
        if parts[k].strip().split(" ", 1)[0] in _OPENERS:
            return "|".join(parts[:k]).strip(), "|".join(parts[k:]).strip()
    return None


def _attach(nodes: list[Node],
            piped: tuple[str, int, str] | None) -> tuple[str, int, str] | None:
    """The pipeline ``piped`` (its source, the index its block will have, its connector)
    given to that block once it is parsed; None then, else ``piped`` still waiting."""
    if piped is None or len(nodes) <= piped[1]:
        return piped
    node = nodes[piped[1]]
    if isinstance(node, Simple):
        raise ParseError("syntax error near '|'")
    node.prefix, node.connector = piped[0], piped[2]
    return None


def _feed(nodes: list[Node], fed: tuple[If | Loop | Group | Case, str, int] | None
          ) -> tuple[If | Loop | Group | Case, str, int] | None:
    """The block ``fed`` holds (with the commands between) given to the block after it
    (``done | while …``) once that is parsed; None then, else ``fed`` still waiting."""
    if fed is None or len(nodes) <= fed[2]:
        return fed
    node = nodes[fed[2]]
    if isinstance(node, Simple):  # (the lexer only feeds an opening word)
        raise ParseError("syntax error near '|'")
    node.feeder, node.prefix, node.connector = fed[0], fed[1], fed[0].connector
    node.negated = node.negated or fed[0].negated  # (`! A | B`: the whole pipeline's)
    return None


def _sequence(stream: list[_Kw | ListItem], pos: int,
              stops: tuple[str, ...]) -> tuple[list[Node], int]:
    nodes: list[Node] = []
    piped: tuple[str, int, str] | None = None  # a pipeline, piped into the next node
    opened: tuple[str, int] | None = None  # the connector of the block being parsed
    negate: int | None = None  # the index of the block a `!` inverts
    timed: tuple[int, str] | None = None  # the block a `time` times, and its layout
    # a block piped into the next node (`done | while …`), what is between, its index
    fed: tuple[If | Loop | Group | Case, str, int] | None = None
    while pos < len(stream):
        tok = stream[pos]
        piped = _attach(nodes, piped)
        fed = _feed(nodes, fed)
        if opened is not None and len(nodes) > opened[1]:
            node = nodes[opened[1]]
            if not isinstance(node, Simple) and node.connector == ";":
                node.connector = opened[0]
            opened = None
        if negate is not None and len(nodes) > negate:
            _negate(nodes[negate])
            negate = None
        if timed is not None and len(nodes) > timed[0]:
            _time(nodes[timed[0]], timed[1])
            timed = None
        if isinstance(tok, _Kw) and tok.word == "time":  # (an opening word follows: _explode)
            opened, timed = (tok.connector, len(nodes)), (len(nodes), tok.arg)
            pos += 1
            continue
        after_time = timed is not None and timed[0] == len(nodes)  # (its connector holds)
        if isinstance(tok, _Kw) and tok.word == "!":  # (an opening word follows: _explode)
            if not after_time:
                opened = (tok.connector, len(nodes))
            negate = len(nodes)
            pos += 1
            continue
        if isinstance(tok, _Kw) and tok.word == "feed":
            feeder = nodes.pop() if nodes else None
            if feeder is None or isinstance(feeder, Simple) or feeder.feeder is not None \
                    or feeder.prefix or feeder.background:
                raise ParseError("syntax error near '|' (one block piped into another, "
                                 "at most)")
            fed = (feeder, tok.arg, len(nodes))
            pos += 1
            continue
        if isinstance(tok, _Kw) and tok.word == "pipe":
            if not tok.arg:
                raise ParseError("syntax error near '|'")
            piped = (tok.arg, len(nodes), tok.connector)
            pos += 1
            continue
        if isinstance(tok, _Kw) and tok.word in _OPENERS and negate != len(nodes) \
                and not after_time:
            opened = (tok.connector, len(nodes))  # (after a `!`: the `!`'s connector)
        if isinstance(tok, ListItem):
            nodes.append(Simple(tok))
            pos += 1
        elif tok.word in stops:
            if _feed(nodes, fed) is not None:
                raise ParseError(f"a block expected after '|', not '{_shown(tok.word)}'")
            return nodes, pos
        elif tok.word == "if":
            clauses: list[tuple[list[Node], list[Node]]] = []
            otherwise: list[Node] = []
            word = "if"
            while word in ("if", "elif"):
                cond, pos = _expect(stream, pos + 1, ("then",))
                body, pos = _sequence(stream, pos + 1, ("elif", "else", "fi"))
                clauses.append((cond, body))
                word = _word_at(stream, pos, "fi")
            if word == "else":
                otherwise, pos = _expect(stream, pos + 1, ("fi",))
            block = If(clauses, otherwise)
            _close(block, stream, pos)
            nodes.append(block)
            pos += 1
        elif tok.word in ("while", "until"):
            cond, pos = _expect(stream, pos + 1, ("do",))
            body, pos = _expect(stream, pos + 1, ("done",))
            loop = Loop(tok.word, body, condition=cond)
            _close(loop, stream, pos)
            nodes.append(loop)
            pos += 1
        elif tok.word == "for" and tok.arg.startswith("(("):  # for ((A; B; C))
            m = re.fullmatch(r"\(\((.*)\)\)\s*", tok.arg, re.DOTALL)
            if m is None or m.group(1).count(";") != 2:
                raise ParseError("for: expected for (( INIT; TEST; STEP ))")
            if _word_at(stream, pos + 1, "do") != "do":
                raise ParseError("for: 'do' expected")
            body, pos = _expect(stream, pos + 2, ("done",))
            loop = Loop("arith", body, words=m.group(1))
            _close(loop, stream, pos)
            nodes.append(loop)
            pos += 1
        elif tok.word == "for":
            name, _, rest = tok.arg.partition(" ")
            rest = rest.strip()
            if not name.isidentifier():
                raise ParseError(f"for: '{name}': not a valid identifier")
            if rest and not rest.startswith("in"):
                raise ParseError("for: expected 'in' after the name")
            if _word_at(stream, pos + 1, "do") != "do":
                raise ParseError("for: 'do' expected")
            body, pos = _expect(stream, pos + 2, ("done",))
            # `for NAME; do`, with no `in`: over "$@", as sh's
            loop = Loop("for", body, name=name, words=rest[2:].strip() if rest else '"$@"')
            _close(loop, stream, pos)
            nodes.append(loop)
            pos += 1
        elif tok.word == "function":
            opening = _word_at(stream, pos + 1, "{")
            if opening not in ("{", SUBSHELL):
                raise ParseError(f"{tok.arg}(): a function's body is a {{ ...; }} group "
                                 "or a ( ... ) subshell")
            body, pos = _expect(stream, pos + 2,
                                ("}",) if opening == "{" else (END_SUBSHELL,))
            if opening == SUBSHELL:  # f() ( LIST ): each call runs LIST in a subshell
                body = [Group(body, subshell=True)]
            group = Group(body, name=tok.arg)
            _close(group, stream, pos)
            nodes.append(group)
            pos += 1
        elif tok.word == "case":
            arms: list[tuple[list[str], list[Node]]] = []
            ends: list[str] = []
            pos += 1
            while _word_at(stream, pos, "esac") == "pattern":
                patterns = _arg(stream, pos).split(PATTERN_SEP)
                body, pos = _sequence(stream, pos + 1, (*_CLAUSE_ENDS, "esac", "pattern"))
                arms.append((patterns, body))
                end = _word_at(stream, pos, "esac")
                ends.append(end if end in _CLAUSE_ENDS else ";;")
                if end in _CLAUSE_ENDS:
                    pos += 1
            if _word_at(stream, pos, "esac") != "esac":
                raise ParseError("case: 'esac' expected")
            choice = Case(tok.arg, arms, ends)
            _close(choice, stream, pos)
            nodes.append(choice)
            pos += 1
        elif tok.word in ("{", SUBSHELL):
            closer = "}" if tok.word == "{" else END_SUBSHELL
            body, pos = _expect(stream, pos + 1, (closer,))
            group = Group(body, subshell=tok.word == SUBSHELL)
            _close(group, stream, pos)
            nodes.append(group)
            pos += 1
        else:
            shown = f"{tok.arg.replace(PATTERN_SEP, '|')})" if tok.word == "pattern" \
                else tok.word.replace("\0", "")
            raise ParseError(f"syntax error near unexpected '{shown}'")
    if opened is not None and len(nodes) > opened[1]:
        node = nodes[opened[1]]
        if not isinstance(node, Simple) and node.connector == ";":
            node.connector = opened[0]
    if negate is not None and len(nodes) > negate:
        _negate(nodes[negate])
    if timed is not None and len(nodes) > timed[0]:
        _time(nodes[timed[0]], timed[1])
    if _attach(nodes, piped) is not None or _feed(nodes, fed) is not None:
        raise IncompleteInput("a block expected after '|'")
    if stops:
        raise IncompleteInput(f"'{_shown(stops[-1])}' expected")
    return nodes, pos


def _time(node: Node, layout: str) -> None:
    if isinstance(node, Simple) or (isinstance(node, Group) and node.name):
        raise ParseError("syntax error near 'time' (it times a command)")
    node.timed = layout


def _negate(node: Node) -> None:
    if isinstance(node, Simple) or (isinstance(node, Group) and node.name):
        raise ParseError("syntax error near '!' (it inverts a command's status)")
    node.negated = True


def _expect(stream: list[_Kw | ListItem], pos: int,
            stops: tuple[str, ...]) -> tuple[list[Node], int]:
    nodes, pos = _sequence(stream, pos, stops)
    if not nodes:
        raise ParseError("syntax error: empty block before "
                         f"'{_shown(_word_at(stream, pos, ''))}'")
    return nodes, pos


def _close(block: If | Loop | Group | Case, stream: list[_Kw | ListItem], pos: int) -> None:
    """What the closing word at ``pos`` gives its block: redirections, pipes, ``&``."""
    block.redirects = _arg(stream, pos)
    tok = stream[pos]
    block.background = isinstance(tok, _Kw) and tok.background


def _arg(stream: list[_Kw | ListItem], pos: int) -> str:
    tok = stream[pos]
    return tok.arg if isinstance(tok, _Kw) else ""


def _word_at(stream: list[_Kw | ListItem], pos: int, expected: str) -> str:
    if pos >= len(stream):
        raise IncompleteInput(f"'{_shown(expected)}' expected")
    tok = stream[pos]
    if not isinstance(tok, _Kw):
        raise ParseError(f"syntax error: '{_shown(expected)}' expected")
    return tok.word


def _shown(word: str) -> str:
    """A keyword as it was typed (a subshell's are ``(`` and ``)``)."""
    return word.replace("\0", "")
