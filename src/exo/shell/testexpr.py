"""``test EXPR`` and ``[ EXPR ]``: POSIX's conditions, over the session's view of files.

The grammar is POSIX's with its XSI extensions (``!``, ``-a``, ``-o``, parentheses),
parsed by recursive descent; a binary operator in second place wins over a unary one in
first (``[ "$x" = -e ]`` compares strings, as POSIX's rule for three arguments says).
File tests look through the shell's ``Vfs``: a name the user holds nothing over is
absent whatever is there (``Vfs.hidden``), and ``-r``/``-w`` say what the session's
capabilities allow, not the host's mode bits alone. Links are not followed, as nowhere
in the shell: ``-L`` is true of a link, and ``-e`` of a link is true of the link itself.
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from exo.shell.context import CommandContext
    from exo.shell.vfs import Entry

#: The integer comparisons.
_NUMERIC: dict[str, Callable[[int, int], bool]] = {
    "-eq": int.__eq__, "-ne": int.__ne__, "-lt": int.__lt__,
    "-le": int.__le__, "-gt": int.__gt__, "-ge": int.__ge__}
_STRING: dict[str, Callable[[str, str], bool]] = {
    "=": str.__eq__, "==": str.__eq__, "!=": str.__ne__, "<": str.__lt__, ">": str.__gt__}
_BINARY = frozenset({*_NUMERIC, *_STRING, "-nt", "-ot"})
_UNARY = frozenset({"-e", "-f", "-d", "-r", "-w", "-x", "-s", "-L", "-h", "-p", "-S",
                    "-b", "-c", "-t", "-z", "-n"})
#: Nesting of ``!`` and parentheses: deeper is refused, not a RecursionError.
MAX_DEPTH = 64


class TestError(Exception):
    """A malformed expression: ``test`` says it and exits 2."""


def evaluate(ctx: CommandContext, args: list[str]) -> bool:
    """The truth of ``args`` (``test``'s operands, ``]`` removed); TestError if
    malformed."""
    parser = _Parser(ctx, args)
    if not args:
        return False
    value = parser.or_()
    if parser.pos != len(args):
        token = args[parser.pos]
        raise TestError(f"{token}: binary operator expected" if parser.pos == 1
                        else "too many arguments")
    return value


class _Parser:
    __slots__ = ("args", "ctx", "depth", "pos")

    def __init__(self, ctx: CommandContext, args: list[str]) -> None:
        self.ctx, self.args, self.pos, self.depth = ctx, args, 0, 0

    def _peek(self, ahead: int = 0) -> str | None:
        i = self.pos + ahead
        return self.args[i] if i < len(self.args) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise TestError("argument expected")
        self.pos += 1
        return token

    def or_(self) -> bool:
        value = self.and_()
        while self._peek() == "-o" and self._peek(1) is not None:
            self.pos += 1
            value = self.and_() or value
        return value

    def and_(self) -> bool:
        value = self.not_()
        while self._peek() == "-a" and self._peek(1) is not None:
            self.pos += 1
            value = self.not_() and value
        return value

    def not_(self) -> bool:
        if self._peek() == "!" and self._peek(1) is not None and \
                self._peek(1) not in _BINARY_AFTER_BANG:
            self.pos += 1
            self._nest()
            try:
                return not self.not_()
            finally:
                self.depth -= 1
        return self.primary()

    def _nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise TestError(f"expression nested deeper than {MAX_DEPTH}")

    def primary(self) -> bool:
        token = self._take()
        following = self._peek()
        if following in _BINARY and self._peek(1) is not None:
            self.pos += 1
            return self._binary(token, following, self._take())
        if token == "(" and following is not None:
            self._nest()
            try:
                value = self.or_()
            finally:
                self.depth -= 1
            if self._peek() != ")":
                raise TestError("')' expected")
            self.pos += 1
            return value
        if token in _UNARY and following is not None:
            self.pos += 1
            return self._unary(token, following)
        return token != ""

    def _binary(self, left: str, op: str, right: str) -> bool:
        if op in _STRING:
            return _STRING[op](left, right)
        if op in _NUMERIC:
            return _NUMERIC[op](_integer(left), _integer(right))
        mine, theirs = self._entry(left), self._entry(right)
        if op == "-nt":
            return mine is not None and (theirs is None or mine.mtime > theirs.mtime)
        return theirs is not None and (mine is None or mine.mtime < theirs.mtime)

    def _unary(self, op: str, operand: str) -> bool:
        if op in ("-z", "-n"):
            return (operand == "") == (op == "-z")
        if op == "-t":
            try:
                return os.isatty(self._fd(_integer(operand)))
            except OSError:
                return False
        vfs = self.ctx.shell.vfs
        path = self.ctx.path(operand)
        if op in ("-b", "-c"):
            return op == "-c" and vfs.device(path) is not None
        entry = self._entry(operand)
        if entry is None:
            return False
        if op in ("-L", "-h"):
            return entry.link is not None
        mode = entry.mode
        checks: dict[str, Callable[[], bool]] = {
            "-e": lambda: True,
            "-f": lambda: stat.S_ISREG(mode) if mode else (entry.link is None
                                                          and not entry.is_dir),
            "-d": lambda: entry.is_dir,
            "-s": lambda: entry.size > 0 or entry.is_dir,
            "-p": lambda: stat.S_ISFIFO(mode),
            "-S": lambda: stat.S_ISSOCK(mode),
            "-r": lambda: self._may(path, "list" if entry.is_dir else "read"),
            "-w": lambda: bool(mode & 0o222) and self._may(path, "write"),
            "-x": lambda: (self._may(path, "list") if entry.is_dir
                           else bool(mode & 0o111) and self._may(path, "read")),
        }
        return checks[op]()

    def _fd(self, number: int) -> int:
        """The descriptor the command has as ``number`` (its 0, 1 and 2)."""
        ctx = self.ctx
        return {0: ctx.stdin, 1: ctx.stdout, 2: ctx.stderr}.get(number, -1)

    def _entry(self, operand: str) -> Entry | None:
        from exo.shell.vfs import Entry

        vfs = self.ctx.shell.vfs
        path = self.ctx.path(operand)
        if path == "/":  # (no name in a directory: entry has none to give)
            return Entry("/", True, 0, None, stat.S_IFDIR | 0o755)
        if vfs.device(path) is not None:  # /dev/null...: a character device
            return Entry(path.rsplit("/", 1)[-1], False, 0, None, stat.S_IFCHR | 0o666)
        if vfs.hidden(path):
            return None
        try:
            return vfs.entry(path)
        except OSError:
            return None

    def _may(self, path: str, mode: str) -> bool:
        try:
            self.ctx.shell.session.check_path(path, mode)
        except PermissionError:
            return False
        return True


#: After ``!``, these make ``!`` a string being compared (``[ ! = x ]``).
_BINARY_AFTER_BANG = _BINARY - {"-a", "-o"}


def _integer(text: str) -> int:
    """``text`` as bash's ``test`` takes an integer: a signed 64-bit one (a number past
    that range is no integer, as there; Python's have no bound)."""
    digits = text.strip()
    try:
        if len(digits) > 20:  # (int() of thousands of digits costs, and refuses 4300+)
            raise ValueError
        value = int(digits)
    except ValueError:
        raise TestError(f"{text}: integer expression expected") from None
    if not -(1 << 63) <= value < 1 << 63:
        raise TestError(f"{text}: integer expression expected")
    return value
