"""The line tools the shell runs itself (``head``, ``tail``, ``grep``, ``wc``): streaming,
with bounded memory.

They run in the kernel's process (on the Exo tree, its virtual files included, which a
sandboxed host program would not see), so whatever they read is an app's bytes: an
endless ``yes | head -3`` stops after three lines, and nothing holds more than
``MAX_HELD`` bytes at once, whatever comes in (a longer line, or a ``tail -n`` of more,
is refused with the host program to use instead). Options beyond these are the host's
programs' (``/usr/bin/grep`` ... through the powerbox).
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable, Iterable, Iterator

from exo.shell.context import CommandError

#: The most a tool holds at once: one line, or the lines ``tail`` keeps.
MAX_HELD = 64 << 20
#: grep: the largest pattern program (RE2's steps) and line it takes (Grep).
MAX_PROGRAM = 4000
GREP_LINE = 1 << 20


def lines(chunks: Iterable[bytes], what: str, limit: int = MAX_HELD) -> Iterator[bytes]:
    """The lines of ``chunks``, each with its newline (the last one may lack it); a line
    longer than ``limit`` is refused."""
    pending = bytearray()
    for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if pending:
                pending += chunk[start:end + 1]
                yield bytes(pending)
                pending.clear()
            else:
                yield chunk[start:end + 1]
            start = end + 1
        pending += chunk[start:]
        if len(pending) > limit:
            raise CommandError(f"a line longer than {limit >> 20} MiB (the host's "
                               f"/usr/bin/{what} has no limit)", 2)
    if pending:
        yield bytes(pending)


def head(chunks: Iterable[bytes], count: int, *, by_bytes: bool = False,
         all_but: bool = False) -> Iterator[bytes]:
    """The first ``count`` lines (or bytes); ``all_but``: all but the last ``count``.
    Stops reading as soon as it has them."""
    if all_but:
        yield from _all_but(chunks, count, by_bytes)
        return
    left = count
    for chunk in chunks:
        if left <= 0:
            return
        if by_bytes:
            part = chunk[:left]
            left -= len(part)
        else:
            end = -1
            while left and (end := chunk.find(b"\n", end + 1)) >= 0:
                left -= 1
            part = chunk if left else chunk[:end + 1]
        yield part
        if left <= 0:
            return


def _all_but(chunks: Iterable[bytes], count: int, by_bytes: bool) -> Iterator[bytes]:
    if by_bytes:
        _hold(count, "head")
        held = b""
        for chunk in chunks:
            held += chunk
            if len(held) > count:
                yield held[:len(held) - count]
                held = held[len(held) - count:]
        return
    kept = _Window(count, "head")
    for line in lines(chunks, "head"):
        gone = kept.push(line)
        if gone is not None:
            yield gone


def tail(chunks: Iterable[bytes], count: int, *, by_bytes: bool = False,
         from_start: bool = False) -> Iterator[bytes]:
    """The last ``count`` lines (or bytes); ``from_start``: from line (byte) ``count`` on,
    as ``tail -n +N``."""
    if from_start:
        skip = max(count - 1, 0)
        if by_bytes:
            for chunk in chunks:
                part, skip = chunk[skip:], max(skip - len(chunk), 0)
                if part:
                    yield part
            return
        for line in lines(chunks, "tail"):
            if skip:
                skip -= 1
            else:
                yield line
        return
    if by_bytes:
        _hold(count, "tail")
        held = b""
        for chunk in chunks:
            held = (held + chunk)[-count:] if count else b""
        yield held
        return
    kept = _Window(count, "tail")
    for line in lines(chunks, "tail"):
        kept.push(line)
    yield from kept.lines


def _hold(size: int, what: str) -> None:
    """Refuse to hold ``size`` bytes past MAX_HELD (naming the host program to use)."""
    if size > MAX_HELD:
        raise CommandError(f"more than {MAX_HELD >> 20} MiB to hold (the host's "
                           f"/usr/bin/{what} has no limit)", 2)


class _Window:
    """The last ``count`` lines seen, at most MAX_HELD bytes of them."""

    def __init__(self, count: int, what: str) -> None:
        self.count, self.what = count, what
        self.lines: collections.deque[bytes] = collections.deque()
        self.size = 0

    def push(self, line: bytes) -> bytes | None:
        """Keep ``line``; the one that fell out of the window, if any."""
        if not self.count:
            return line
        self.lines.append(line)
        self.size += len(line)
        gone = None
        if len(self.lines) > self.count:
            gone = self.lines.popleft()
            self.size -= len(gone)
        _hold(self.size, self.what)
        return gone


class Grep:
    """``grep``'s matching: RE2 regular expressions (``-E``-like: no backreferences nor
    lookaround); ``-F`` fixed strings, ``-i``, ``-w`` whole words, ``-x`` whole lines,
    ``-v`` the others.

    RE2 (``google-re2``), not Python's ``re``: it matches in time linear in the line,
    where ``re`` backtracks, holding the GIL, so that ``grep -E '(a+)+$'`` on a line of
    40 letters a would have stopped every thread of the kernel for about a day (a hostile
    review, 2026-12-04: 5 s at 26)."""

    def __init__(self, patterns: list[str], flags: set[str]) -> None:
        import re2

        alts = [re.escape(p) if "F" in flags else p for p in patterns]
        body = "|".join(f"(?:{a})" for a in alts)
        if "w" in flags:
            body = rf"\b(?:{body})\b"
        options = re2.Options()
        options.log_errors = False  # (it writes to the kernel's stderr)
        options.case_sensitive = "i" not in flags
        try:
            self.rx = re2.compile(body.encode(), options=options)
        except re2.error as exc:
            detail = exc.args[0].decode(errors="replace") if exc.args and isinstance(
                exc.args[0], bytes) else str(exc)
            raise CommandError(f"bad pattern: {detail} (a pattern is RE2's: no "
                               "backreferences; /usr/bin/grep has them)", 2) from None
        # Linear in the line, but times the pattern's size, in one call that cannot be
        # interrupted: ((.*a){1,30}){1,30} (10,863) took 18 s a MB (a hostile review).
        # Bounded both ways: the pattern here, lines at GREP_LINE (grep()).
        if self.rx.programsize > MAX_PROGRAM:
            raise CommandError(f"pattern too complex for the builtin grep ({MAX_PROGRAM} "
                               "steps); /usr/bin/grep takes it", 2)
        self.whole = "x" in flags
        self.invert = "v" in flags

    def selects(self, line: bytes) -> bool:
        text = line.rstrip(b"\n")
        hit = self.rx.fullmatch(text) if self.whole else self.rx.search(text)
        return (hit is not None) != self.invert

    def matches(self, line: bytes) -> Iterator[bytes]:
        """``-o``: each non-empty match in ``line``."""
        for m in self.rx.finditer(line.rstrip(b"\n")):
            if m.group():
                yield m.group()


def grep(grep_: Grep, chunks: Iterable[bytes], flags: set[str], name: str | None,
         write: Callable[[bytes], None]) -> int:
    """Run ``grep_`` over one input (``name`` prefixes its lines when given); returns how
    many lines it selected (``-q``: stops at the first)."""
    found = 0
    prefix = f"{name}:".encode() if name is not None else b""
    for number, line in enumerate(lines(chunks, "grep", GREP_LINE), 1):
        if not grep_.selects(line):
            continue
        found += 1
        if "q" in flags or "l" in flags or "L" in flags:
            return found
        if "c" in flags:
            continue
        head_ = prefix + (f"{number}:".encode() if "n" in flags else b"")
        if "o" in flags and not grep_.invert:
            for m in grep_.matches(line):
                write(head_ + m + b"\n")
        else:
            write(head_ + (line if line.endswith(b"\n") else line + b"\n"))
    return found


def wc(chunks: Iterable[bytes], words: bool) -> tuple[int, int, int]:
    """Lines, words (when ``words``) and bytes of one input."""
    n_lines = n_words = n_bytes = 0
    tail_ = b""  # a word cut across two chunks is counted once, with the next chunk
    for chunk in chunks:
        n_lines += chunk.count(b"\n")
        n_bytes += len(chunk)
        if words:
            parts = (tail_ + chunk).split()
            tail_ = parts.pop() if parts and not chunk[-1:].isspace() else b""
            n_words += len(parts)
            if len(tail_) > MAX_HELD:
                tail_ = b"x"  # one word all the same; only its count matters
    return n_lines, n_words + (1 if tail_ else 0), n_bytes
