"""``[[ EXPRESSION ]]``: bash's conditional command.

Its words are expanded one word each, never split or globbed (``[[ -n $x ]]`` holds
whatever ``$x`` holds), and only as far as they are reached (``[[ -z $a || $(cmd) ]]``
runs no ``cmd`` when ``$a`` is empty). ``&&``, ``||``, ``!`` and parentheses combine
them; the line splitter keeps the whole command one item (``parser.split_list``: its
``&&``, ``<`` and ``(`` are its own). ``==``/``=``/``!=`` match the right side as a
pattern (its quoted parts literal, as ``case`` does); ``=~`` as an extended regular
expression (Python's ``re``, whose syntax agrees with POSIX ERE on what scripts write;
a right side quoted whole is literal), its match and groups left in ``BASH_REMATCH``;
``<``/``>`` compare strings; ``-eq``, ``-lt``… compare arithmetic expressions; the file
and string tests are ``test``'s (``testexpr``), over the session's view of files.
"""

from __future__ import annotations

import fnmatch
import re

from exo.shell import arrays
from exo.shell.testexpr import TestError
from exo.shell.testexpr import evaluate as test

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from exo.shell.context import CommandContext

_OPERATORS = ("&&", "||", "(", ")", "!")
_STRING = frozenset({"==", "=", "!=", "=~", "<", ">"})
_NUMERIC = {"-eq": int.__eq__, "-ne": int.__ne__, "-lt": int.__lt__, "-le": int.__le__,
            "-gt": int.__gt__, "-ge": int.__ge__}
_FILES = frozenset({"-nt", "-ot", "-ef"})
_UNARY = frozenset({"-e", "-a", "-f", "-d", "-r", "-w", "-x", "-s", "-L", "-h", "-p", "-S",
                    "-b", "-c", "-t", "-z", "-n", "-v", "-o"})
#: Nesting of ``!`` and parentheses.
MAX_DEPTH = 64


class ConditionError(Exception):
    """A malformed ``[[ … ]]``: said, status 2."""


def _word_end(text: str, i: int) -> int:
    """The end of the word at ``text[i]``: at unquoted white space (quotes, ``$(…)``,
    ``${…}`` and backslashes kept whole)."""
    from exo.shell.parser import dquote_end, matching_brace, matching_paren

    n = len(text)
    while i < n and not text[i].isspace():
        c = text[i]
        if c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ConditionError("unterminated ' quote")
            i = end + 1
        elif c == '"':
            i = dquote_end(text, i)
        elif c == "\\":
            i += 2
        elif c == "$" and text.startswith(("(", "{"), i + 1):
            i = (matching_paren if text[i + 1] == "(" else matching_brace)(text, i + 1) + 1
        else:
            i += 1
    return min(i, n)


def tokens(text: str) -> list[tuple[str, bool]]:
    """``text``'s words and operators, unexpanded: (raw text, is an operator)."""
    out: list[tuple[str, bool]] = []
    i, n = 0, len(text)
    regex_next = False
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
        if op is not None and not regex_next and not (op == "!" and text.startswith("!=", i)):
            out.append((op, True))
            i += len(op)
            continue
        end = _word_end(text, i)
        word = text[i:end]
        # (an unquoted `)` closing a group may end a word: `[[ (-f x) ]]`)
        closing = 0
        if not regex_next:  # (cut once: a word of a million `)` stays linear)
            extra = word.count(")") - word.count("(")
            trailing = len(word) - len(word.rstrip(")"))
            closing = max(0, min(extra, trailing - (word[:len(word) - trailing]
                                                    .endswith("\\"))))
            word = word[:len(word) - closing]
        out.append((word, False))
        out += [(")", True)] * closing
        regex_next = word == "=~"
        i = end
    return out


class _Condition:
    def __init__(self, ctx: CommandContext, toks: list[tuple[str, bool]]) -> None:
        self.ctx, self.toks, self.pos, self.depth = ctx, toks, 0, 0

    def _peek(self, ahead: int = 0) -> tuple[str, bool] | None:
        i = self.pos + ahead
        return self.toks[i] if i < len(self.toks) else None

    def _is(self, text: str, ahead: int = 0) -> bool:
        tok = self._peek(ahead)
        return tok is not None and tok[1] and tok[0] == text

    def _word(self) -> str:
        tok = self._peek()
        if tok is None or tok[1]:
            shown = "end of expression" if tok is None else f"'{tok[0]}'"
            raise ConditionError(f"syntax error: a word expected, not {shown}")
        self.pos += 1
        return tok[0]

    def _expand(self, raw: str, *, pattern: bool = False) -> str:
        return self.ctx.shell._word(raw, pattern=pattern)

    def or_(self, run: bool) -> bool:
        value = self.and_(run)
        while self._is("||"):
            self.pos += 1
            value = self.and_(run and not value) or value
        return value

    def and_(self, run: bool) -> bool:
        value = self.not_(run)
        while self._is("&&"):
            self.pos += 1
            value = self.not_(run and value) and value
        return value

    def not_(self, run: bool) -> bool:
        if self._is("!"):
            self.pos += 1
            return not self._nested(lambda: self.not_(run))
        return self.primary(run)

    def _nested(self, rule: Callable[[], bool]) -> bool:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ConditionError(f"expression nested deeper than {MAX_DEPTH}")
        try:
            return rule()
        finally:
            self.depth -= 1

    def primary(self, run: bool) -> bool:
        if self._is("("):
            self.pos += 1
            value = self._nested(lambda: self.or_(run))
            if not self._is(")"):
                raise ConditionError("syntax error: ')' expected")
            self.pos += 1
            return value
        first = self._word()
        following = self._peek()
        if following is not None and not following[1] and \
                following[0] in (_STRING | _NUMERIC.keys() | _FILES):
            self.pos += 1
            return self._binary(first, following[0], self._word(), run)
        if first in _UNARY and following is not None and not following[1]:
            operand = self._word()
            return run and self._unary(first, operand)
        return run and self._expand(first) != ""

    def _unary(self, op: str, raw: str) -> bool:
        value = self._expand(raw)
        if op == "-v":  # the variable is set (a name: no NUL, no marker of the shell's)
            from exo.shell.parser import SET_QUERY

            if not value or "\0" in value:
                return False
            return self.ctx.shell.lookup(value + SET_QUERY) == "1"
        if op == "-o":
            return value in self.ctx.shell.options
        return self._test(["-e" if op == "-a" else op, value])

    def _test(self, args: list[str]) -> bool:
        try:
            return test(self.ctx, args)
        except TestError as exc:
            raise ConditionError(str(exc)) from None

    def _binary(self, left_raw: str, op: str, right_raw: str, run: bool) -> bool:
        if not run:
            return False
        left = self._expand(left_raw)
        if op in ("==", "=", "!="):
            matched = fnmatch.fnmatchcase(left, self._expand(right_raw, pattern=True))
            return matched if op != "!=" else not matched
        if op == "=~":
            return self._regex(left, right_raw)
        right = self._expand(right_raw)
        if op in ("<", ">"):
            return left < right if op == "<" else left > right
        if op in _NUMERIC:
            return _NUMERIC[op](self._integer(left), self._integer(right))
        return self._test([left, op, right])

    def _integer(self, text: str) -> int:
        from exo.shell.arith import evaluate
        from exo.shell.parser import ParseError

        shell = self.ctx.shell
        try:
            return evaluate(text, shell.lookup, shell.assign_variable)
        except ParseError as exc:
            raise ConditionError(str(exc)) from None

    def _regex(self, value: str, raw: str) -> bool:
        """``=~``: RE2 (``google-re2``), as the builtin grep, not Python's ``re``, which
        backtracks holding the GIL: ``[[ $x =~ ^(a+)+$ ]]`` on 40 letters would have
        stopped every thread of the kernel (grep's hostile review); its program's size
        is bounded as grep's."""
        import re2

        from exo.shell.textutils import GREP_LINE, MAX_PROGRAM

        quoted_whole = len(raw) > 1 and raw[0] in "'\"" and _word_end(raw, 0) == len(raw) \
            and raw[-1] == raw[0]
        pattern = self._expand(raw)
        options = re2.Options()
        options.log_errors = False  # (it writes to the kernel's stderr)
        try:
            rx = re2.compile((re.escape(pattern) if quoted_whole else pattern).encode(),
                             options=options)
        except re2.error as exc:
            detail = exc.args[0].decode(errors="replace") if exc.args and isinstance(
                exc.args[0], bytes) else str(exc)
            raise ConditionError(f"=~: {pattern}: bad regular expression ({detail})"
                                 ) from None
        if rx.programsize > MAX_PROGRAM:
            raise ConditionError(f"=~: {pattern}: too complex ({MAX_PROGRAM} steps)")
        subject = value.encode(errors="surrogateescape")
        if len(subject) > GREP_LINE:  # (linear, times the program: bounded as grep's lines)
            raise ConditionError(f"=~: a string longer than {GREP_LINE >> 20} MiB")
        m = rx.search(subject)
        groups = [] if m is None else [
            (g or b"").decode(errors="replace") for g in (m.group(0), *m.groups())]
        self.ctx.shell.env["BASH_REMATCH"] = arrays.encode(dict(enumerate(groups)))
        return m is not None


def evaluate(ctx: CommandContext, text: str) -> bool:
    """The truth of ``[[ text ]]``; ConditionError when it is malformed."""
    toks = tokens(text)
    if not toks:
        raise ConditionError("syntax error: an expression expected")
    cond = _Condition(ctx, toks)
    value = cond.or_(True)
    if cond.pos != len(toks):
        raise ConditionError(f"syntax error near '{toks[cond.pos][0]}'")
    return value
