"""``printf [-v NAME] FORMAT [ARGUMENT...]``: bash's builtin printf.

A builtin rather than the host's ``/usr/bin/printf`` through the powerbox: scripts call
it in loops (a sandboxed start each, ~4 ms), and ``-v NAME`` sets a shell variable,
which no program can. The format is C's, as coreutils and bash read it: ``%s %b %c %d
%i %o %u %x %X %e %E %f %F %g %G %q %%`` with flags ``-+ #0``, a width and a precision
(``*`` takes them from the arguments), bash's ``%(FORMAT)T`` (a time as ``strftime``
makes it: the argument in seconds since 1970, ``-1`` or none for now), and the
escapes ``\\n \\t \\\\ \\NNN \\xHH \\uHHHH``…; the format is used again while arguments
are left; a missing argument is empty or 0. A number that is not one is said (``invalid
number``), 0 is used, and the status is 1, as bash does.
"""

from __future__ import annotations

import re
import shlex

from exo.shell.parser import backslash_escapes

_SPEC = re.compile(r"%([-+ #0]*)(\*|[0-9]+)?(?:\.(\*|[0-9]*))?([sbcdiouxXeEfFgGq%(])")
#: The longest FORMAT of a ``%(FORMAT)T``.
MAX_TIME_FORMAT = 4096
#: Output one printf may make (the format repeated over many arguments is bounded by them).
MAX_OUTPUT = 4 << 20


class PrintfError(ValueError):
    """A format printf cannot use (said, status 1)."""


def unescape(text: str, *, for_b: bool = False) -> tuple[str, bool]:
    r"""``text`` with its backslash escapes made; and whether a ``\c`` (``%b``'s "stop
    here") was met. ``%b`` takes octal as ``\0NNN``, the format as ``\NNN``."""
    return backslash_escapes(text, percent_b=for_b)


def _number(arg: str, errors: list[str]) -> int:
    if arg[:1] in ("'", '"'):  # 'A: the character's code, as C's printf(1)
        return ord(arg[1]) if len(arg) > 1 else 0
    text = arg.strip()
    try:
        sign = -1 if text.startswith("-") else 1
        body = text.lstrip("+-")
        if body[:2].lower() == "0x":
            return sign * int(body[2:], 16)
        if body.startswith("0") and len(body) > 1:
            return sign * int(body[1:], 8)
        return sign * int(body or "0", 10)
    except ValueError:
        errors.append(f"{arg}: invalid number")
        return 0


def _float(arg: str, errors: list[str]) -> float:
    if arg[:1] in ("'", '"'):
        return float(ord(arg[1])) if len(arg) > 1 else 0.0
    try:
        return float(arg.strip() or "0")
    except ValueError:
        errors.append(f"{arg}: invalid number")
        return 0.0


def render(fmt: str, args: list[str]) -> tuple[str, list[str]]:
    """The output of ``printf FMT ARGS...`` and the errors to say (their status is 1)."""
    errors: list[str] = []
    out: list[str] = []
    size = 0
    pending = list(args)
    while True:
        used = 0
        stop = False
        pos = 0
        while (m := _SPEC.search(fmt, pos)) is not None:
            literal, _ = unescape(fmt[pos:m.start()])
            out.append(literal)
            pos = m.end()
            flags, width, precision, conv = m.groups()
            strftime = None
            if conv == "(":  # %(FORMAT)T, found by hand: each character looked at once
                close = fmt.find(")", pos, pos + MAX_TIME_FORMAT + 1)
                if close < 0 or fmt[close + 1:close + 2] != "T":
                    raise PrintfError(f"`{fmt[m.start():m.end() + 8]}…': a time format is "
                                      f"%(FORMAT)T, FORMAT at most {MAX_TIME_FORMAT} long")
                strftime, conv, pos = fmt[pos:close], "T", close + 2
            if conv == "%":
                out.append("%")
                continue

            def take() -> str:
                nonlocal used
                used += 1
                return pending.pop(0) if pending else ""

            if width == "*":
                width = str(_number(take() or "0", errors))
            if precision == "*":
                precision = str(max(_number(take() or "0", errors), 0))
            arg = take()
            for number in (width, precision):
                if number and number.lstrip("-").isdigit() and \
                        abs(int(number)) > MAX_OUTPUT:
                    raise PrintfError(f"{number}: a width past {MAX_OUTPUT >> 20} MiB")
            spec = "%" + flags + (width or "") + ("." + precision if precision is not None
                                                   else "")
            if conv in "diouxX":
                value = _number(arg, errors) if arg else 0
                if conv in "ouxX" and value < 0:
                    value += 1 << 64
                text = (spec + ("d" if conv in "iu" else conv)) % value
            elif conv in "eEfFgG":
                text = (spec + conv) % (_float(arg, errors) if arg else 0.0)
            elif conv == "c":
                text = (spec + "s") % arg[:1]
            elif conv == "b":
                expanded, stop = unescape(arg, for_b=True)
                text = (spec + "s") % expanded
            elif conv == "T":
                import time

                assert strftime is not None
                when = _number(arg, errors) if arg else -1
                stamp = time.time() if when in (-1, -2) else when
                try:
                    text = (spec + "s") % time.strftime(strftime, time.localtime(stamp))
                except (OverflowError, OSError, ValueError):
                    errors.append(f"{arg}: a time out of range")
                    text = ""
            elif conv == "q":
                text = (spec + "s") % (shlex.quote(arg) if arg else "''")
            else:
                text = (spec + "s") % arg
            out.append(text)
            size += len(text)
            if size > MAX_OUTPUT:  # (each conversion: `%4000000s` a hundred thousand times)
                raise PrintfError(f"the output would pass {MAX_OUTPUT >> 20} MiB")
            if stop:
                return "".join(out), errors
        literal, cut = unescape(fmt[pos:])
        out.append(literal)
        if cut or not pending or used == 0:
            return "".join(out), errors
