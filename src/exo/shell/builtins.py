"""The shell's built-in commands. Each takes a CommandContext and returns a status."""

from __future__ import annotations

import errno
import functools
import json
import os
import posixpath
import re
import signal
import stat
import threading
import time

from exo import __version__
from exo.shell.context import (
    MAX_LINE,
    CommandContext,
    CommandError,
    ReadTimeout,
    read_line,
    without_nul,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterator
    from typing import Any, NoReturn

    from exo.kernel.manifest import Grant, Manifest
    from exo.shell.jobs import Job
    from exo.shell.session import Session
    from exo.shell.vfs import Entry, Vfs

#: The largest script ``source`` runs.
SCRIPT_MAX = 1 << 20
BUILTINS: dict[str, Callable[[CommandContext], int]] = {}
HELP: dict[str, str] = {}


def builtin(name: str, summary: str) -> Callable[[Callable[[CommandContext], int]],
                                                  Callable[[CommandContext], int]]:
    def register(fn: Callable[[CommandContext], int]) -> Callable[[CommandContext], int]:
        BUILTINS[name] = fn
        HELP[name] = summary
        return fn

    return register


def usage(name: str) -> str:
    """``NAME --help``: what the command does and how it is called."""
    twin = (f" (other options: the host's {name}, through the powerbox)"
            if name in HOST_TWINS else "")
    return f"{name}: {HELP.get(name, 'no help')}{twin}"


def _parser(ctx: CommandContext, description: str) -> argparse.ArgumentParser:
    """An argparse parser that reports errors as CommandError instead of exiting the shell."""
    return _parser_class()(prog=ctx.name, description=description, add_help=False)


@functools.cache
def _parser_class() -> type[argparse.ArgumentParser]:
    # argparse is imported here, on first use, not at module level: it costs ~4 ms at
    # import and the shell must reach its prompt before any command needs it.
    import argparse

    class _ArgParser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            raise CommandError(message, 2)

        def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
            raise CommandError(message or "", status)

    return _ArgParser


#: The builtins the host has a program of the same name for, and the short options
#: each takes: given another (or any long option), the host's program runs instead,
#: through the powerbox (``Shell._host_twins``).
HOST_TWINS: dict[str, str] = {
    "ls": "la1", "cat": "", "wc": "lwc", "cp": "rR", "mv": "f", "rm": "rRf", "mkdir": "p",
    "touch": "", "grep": "vicnqoslLhHwxEFe", "head": "nc0123456789",
    "tail": "nc0123456789", "env": ""}


def wants_host(name: str, args: list[str]) -> bool:
    """Whether builtin ``name`` lacks an option ``args`` give (``HOST_TWINS``)."""
    flags = HOST_TWINS.get(name)
    if flags is None:
        return False
    if args == ["--help"]:
        return False  # (the builtin's own help)
    for arg in args:
        if arg == "--":
            return False
        if arg.startswith("--") or (arg.startswith("-") and len(arg) > 1
                                    and any(ch not in flags for ch in arg[1:])):
            return True
    return False


def _split_flags(args: list[str], allowed: str) -> tuple[set[str], list[str]]:
    """Short flags like ``-rf`` and operands; ``--`` ends flags."""
    flags: set[str] = set()
    rest: list[str] = []
    it = iter(args)
    for a in it:
        if a == "--":
            rest.extend(it)
            break
        if a.startswith("-") and len(a) > 1 and not rest:
            for ch in a[1:]:
                if ch not in allowed:
                    raise CommandError(f"invalid option -- '{ch}'", 2)
                flags.add(ch)
        else:
            rest.append(a)
    return flags, rest


# --------------------------------------------------------------------- files
@builtin("pwd", "print the working directory")
def _pwd(ctx: CommandContext) -> int:
    ctx.out(ctx.shell.cwd)
    return 0


@builtin("cd", "change the working directory: cd [DIR | -] (default: $HOME; -: the previous)")
def _cd(ctx: CommandContext) -> int:
    if len(ctx.args) > 1:
        raise CommandError("too many arguments")
    back = ctx.args[:1] == ["-"]
    if back and not ctx.shell.env.get("OLDPWD"):
        raise CommandError("OLDPWD not set")
    raw = ctx.shell.env["OLDPWD"] if back else (
        ctx.args[0] if ctx.args else ctx.shell.env.get("HOME", "/"))
    target = ctx.path(raw)
    try:  # a user enters only what the session may list
        ctx.shell.vfs.check_list(target)
    except FileNotFoundError:
        raise CommandError(f"{raw}: no such directory") from None
    except NotADirectoryError:
        raise CommandError(f"{raw}: not a directory") from None
    ctx.shell.env["OLDPWD"] = ctx.shell.cwd
    ctx.shell.cwd = target
    ctx.shell.env["PWD"] = target
    if back:
        ctx.out(target)
    return 0


@builtin("ls", "list a directory: ls [-l] [-a] [-A] [-1] [PATH...] (-a: names starting "
         "with a dot too, and . and ..; -A: without . and ..)")
def _ls(ctx: CommandContext) -> int:
    flags, paths = _split_flags(ctx.args, "la1A")
    status = 0
    targets = paths or ["."]
    for n, raw in enumerate(targets):
        p = ctx.path(raw)
        vfs = ctx.shell.vfs
        if vfs.hidden(p):  # (said the same whether it is there or not)
            ctx.err(f"cannot access '{raw}': permission denied")
            status = 1
            continue
        if not vfs.is_dir(p):
            # A file (or a link, which the shell never follows) is shown as its
            # directory's listing shows it.
            try:
                entry = vfs.entry(p)
            except OSError:  # not the session's to list: not found, as before
                entry = None
            if entry is None:
                ctx.err(f"cannot access '{raw}': no such file or directory")
                status = 1
            else:
                ctx.out(_long_line(entry, raw) if "l" in flags else raw)
            continue
        if len(targets) > 1:
            ctx.out(("\n" if n else "") + f"{raw}:")
        dots = "a" in flags or "A" in flags
        entries = [e for e in vfs.listdir(p) if dots or not e.name.startswith(".")]
        if "a" in flags:  # and the directory itself and its parent, as ls -a shows them
            entries[:0] = [_dot(vfs, p, "."), _dot(vfs, posixpath.dirname(p), "..")]
        if "l" in flags:
            for e in entries:
                ctx.out(_long_line(e))
        elif "1" in flags or not ctx.isatty():
            for e in entries:
                ctx.out(e.name)
        else:
            ctx.out("  ".join(e.name for e in entries))
    return status


def _dot(vfs: Vfs, p: str, name: str) -> Entry:
    """The directory ``p`` as ``ls -a`` lists it under ``name`` (``.``, ``..``)."""
    from exo.shell.vfs import Entry

    try:
        own = vfs.entry(p)
    except OSError:  # (a parent the session may not list: shown plainly)
        own = None
    if own is None or not own.is_dir:
        return Entry(name, True, 0)
    return Entry(name, True, own.size, None, own.mode, own.mtime)


def _long_line(e: Entry, shown: str | None = None) -> str:
    """``ls -l``'s line: mode, size, time and name (no owner: every file of the tree is
    the kernel's on the host; who may reach it is a matter of capabilities). ``shown``:
    the name as typed, for a file given by path."""
    name = e.name if shown is None else shown
    if e.link is not None:  # a link: its own text, as ls -l shows it
        mode, size, name = "lrwxrwxrwx", len(e.link), f"{name} -> {e.link}"
    else:
        kind = stat.S_IFDIR if e.is_dir else stat.S_IFREG
        mode = stat.filemode(e.mode if e.mode else kind | (0o555 if e.is_dir else 0o444))
        size, name = e.size, name + ("/" if e.is_dir else "")
    when = time.localtime(e.mtime or time.time())
    recent = abs(time.time() - (e.mtime or time.time())) < 182 * 86400
    shown = time.strftime("%b %e %H:%M" if recent else "%b %e  %Y", when)
    return f"{mode} {size:>10} {shown} {name}"


@builtin("cat", "print files (or stdin) to stdout")
def _cat(ctx: CommandContext) -> int:
    if not ctx.args:
        for chunk in ctx.read_stdin():
            ctx.write(chunk)
        return 0
    status = 0
    for raw in ctx.args:
        if _is_stdin(ctx, raw):
            for chunk in ctx.read_stdin():
                ctx.write(chunk)
            continue
        try:
            fd = ctx.shell.vfs.open_read(ctx.path(raw))
            try:
                if _send_file(ctx, fd):
                    return 130
            finally:
                os.close(fd)
        except BrokenPipeError:
            raise
        except OSError as exc:  # (refused, missing, a directory: the next file still)
            ctx.err(f"{raw}: {_strip(exc, ctx.path(raw))}")
            status = 1
    return status


def _send_file(ctx: CommandContext, fd: int) -> bool:
    """Copy ``fd`` to stdout in the kernel (``sendfile``) when it can, else by chunks;
    True if cancelled on the way."""
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode):
        raise IsADirectoryError("is a directory")
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):  # (a <(LIST)'s pipe: no offsets)
        while not ctx.cancelled.is_set():
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return False
            ctx.write(chunk)
        return True
    offset = 0
    while not ctx.cancelled.is_set():
        try:
            sent = os.sendfile(ctx.stdout, fd, offset, 1 << 20)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOSYS):
                raise
            break  # not a target sendfile takes: copy through user space
        if sent == 0:
            return False
        offset += sent
    while not ctx.cancelled.is_set():
        chunk = os.pread(fd, 1 << 16, offset)
        if not chunk:
            return False
        ctx.write(chunk)
        offset += len(chunk)
    return True


def _strip(exc: BaseException, path: str) -> str:
    text = str(exc)
    return text[len(path) + 2:] if text.startswith(path + ": ") else text


@builtin("echo", "print arguments: echo [-n] [-e] ARG... (-e: \\n \\t \\\\ ... escapes)")
def _echo(ctx: CommandContext) -> int:
    args = list(ctx.args)
    newline, escapes = True, False
    while args and args[0] in ("-n", "-e", "-E", "-ne", "-en"):
        flag = args.pop(0)
        newline = newline and "n" not in flag
        escapes = "e" in flag if flag != "-E" else False
    text = " ".join(args)
    if escapes:  # as bash's echo -e; \c ends the output there
        text, cut, _ = text.partition("\\c")
        newline = newline and not cut
        text = text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    ctx.write(text + ("\n" if newline else ""))
    return 0


@builtin("mkdir", "create directories: mkdir [-p] DIR...")
def _mkdir(ctx: CommandContext) -> int:
    flags, paths = _split_flags(ctx.args, "p")
    if not paths:
        raise CommandError("missing operand", 2)
    status = 0
    for raw in paths:
        try:
            ctx.shell.vfs.mkdir(ctx.path(raw), parents="p" in flags)
        except FileExistsError:
            ctx.err(f"cannot create directory '{raw}': file exists")
            status = 1
        except FileNotFoundError:
            ctx.err(f"cannot create directory '{raw}': no such file or directory")
            status = 1
    return status


@builtin("rm", "remove files: rm [-r] [-f] PATH...")
def _rm(ctx: CommandContext) -> int:
    flags, paths = _split_flags(ctx.args, "rRf")
    if not paths:
        raise CommandError("missing operand", 2)
    status = 0
    for raw in paths:
        try:
            ctx.shell.vfs.remove(ctx.path(raw), recursive=bool(flags & {"r", "R"}))
        except FileNotFoundError:
            if "f" not in flags:
                ctx.err(f"cannot remove '{raw}': no such file or directory")
                status = 1
        except IsADirectoryError:
            ctx.err(f"cannot remove '{raw}': is a directory")
            status = 1
    return status


@builtin("cp", "copy: cp [-r] SRC... DEST")
def _cp(ctx: CommandContext) -> int:
    flags, paths = _split_flags(ctx.args, "rR")
    if len(paths) < 2:
        raise CommandError("missing destination operand", 2)
    *srcs, dst = paths
    for s in _sources_for(ctx, srcs, dst):
        try:
            ctx.shell.vfs.copy(ctx.path(s), ctx.path(dst), recursive=bool(flags))
        except FileNotFoundError:
            raise CommandError(f"cannot create '{dst}': no such directory") from None
        except IsADirectoryError:
            raise CommandError(f"-r not specified; omitting directory '{s}'") from None
    return 0


def _sources_for(ctx: CommandContext, srcs: list[str], dst: str) -> list[str]:
    """cp and mv: ``srcs``, each checked to exist, for ``dst``, which must be a directory
    for several of them or when spelt with a final ``/`` (``mv f /nodir/`` renamed f to
    /nodir)."""
    vfs, session = ctx.shell.vfs, ctx.shell.session
    for path, mode in ((dst, "write"), *((s, "read") for s in srcs)):
        if vfs.hidden(ctx.path(path)):  # refused, whether it is there or not
            session.check_path(ctx.path(path), mode)
    if (len(srcs) > 1 or dst.endswith("/")) and not vfs.is_dir(ctx.path(dst)):
        raise CommandError(f"target '{dst}' is not a directory")
    for s in srcs:
        if not vfs.exists(ctx.path(s)):
            raise CommandError(f"cannot stat '{s}': no such file or directory")
    return srcs


@builtin("mv", "move or rename: mv SRC... DEST")
def _mv(ctx: CommandContext) -> int:
    _, paths = _split_flags(ctx.args, "f")
    if len(paths) < 2:
        raise CommandError("missing destination operand", 2)
    *srcs, dst = paths
    for s in _sources_for(ctx, srcs, dst):
        try:
            ctx.shell.vfs.move(ctx.path(s), ctx.path(dst))
        except FileNotFoundError:
            raise CommandError(f"cannot move '{s}' to '{dst}': no such directory") from None
    return 0


@builtin("touch", "create empty files or update their times")
def _touch(ctx: CommandContext) -> int:
    if not ctx.args:
        raise CommandError("missing file operand", 2)
    for raw in ctx.args:
        ctx.shell.vfs.touch(ctx.path(raw))
    return 0


@builtin("head", "first lines of files or stdin: head [-n [-]N | -N | -c [-]N] [FILE...]")
@builtin("tail", "last lines of files or stdin: tail [-n [+]N | -N | -c [+]N] [FILE...]")
def _head_tail(ctx: CommandContext) -> int:
    """head (``-N``: all but the last N) and tail (``+N``: from the Nth on), streamed."""
    from exo.shell import textutils

    head = ctx.name == "head"
    ns, by_bytes, count, signed = _count_options(
        ctx, f"print the {'first' if head else 'last'} lines (or bytes)")

    def one(chunks: Iterator[bytes]) -> Iterator[bytes]:
        if head:
            return textutils.head(chunks, count, by_bytes=by_bytes, all_but=signed == "-")
        return textutils.tail(chunks, count, by_bytes=by_bytes, from_start=signed == "+")

    return _per_input(ctx, ns.files, one)


def _count_options(ctx: CommandContext, description: str) -> tuple[Any, bool, int, str]:
    """head and tail: ``-n N`` or ``-c N`` (a sign kept apart: head's ``-N`` is "all but
    the last N", tail's ``+N`` "from the Nth on"), or the traditional ``-N``."""
    args: list[str] = []
    for a in ctx.args:
        traditional = a[:1] == "-" and a[1:].isdigit() and args[-1:] not in (["-n"], ["-c"])
        args.append(f"-n{a[1:]}" if traditional else a)
    args = [f"{a[:2]}={a[2:]}" if a[:2] in ("-n", "-c") and a[2:3] == "-" else a
            for a in args]  # -n-2: a value, not an option
    p = _parser(ctx, description)
    p.add_argument("-n", default="10")
    p.add_argument("-c", default=None)
    p.add_argument("files", nargs="*")
    ns = p.parse_args(args)
    by_bytes = ns.c is not None
    raw = ns.c if by_bytes else ns.n
    signed = raw[:1] if raw[:1] in ("+", "-") else ""
    digits = raw[len(signed):]
    if not digits.isdigit():
        raise CommandError(f"invalid number of {'bytes' if by_bytes else 'lines'}: "
                           f"'{raw}'", 1)
    return ns, by_bytes, int(digits), signed


def _per_input(ctx: CommandContext,
               files: list[str], run: Callable[[Iterator[bytes]], Iterator[bytes]]) -> int:
    """``run`` over each input in turn (stdin without files), written out as it comes;
    with several files, each under ``==> NAME <==`` as coreutils does."""
    status = 0
    names = files or ["-"]
    for index, raw in enumerate(names):
        if len(names) > 1:
            ctx.write(f"{chr(10) if index else ''}==> {_shown(raw)} <==\n")
        try:
            for part in run(_chunks(ctx, raw)):
                ctx.write(part)
        except FileNotFoundError:
            ctx.err(f"cannot open '{raw}' for reading: no such file or directory")
            status = 1
        except BrokenPipeError:
            raise
        except OSError as exc:
            ctx.err(f"{raw}: {_strip(exc, ctx.path(raw))}")
            status = 1
    return status


def _shown(raw: str) -> str:
    return "standard input" if raw == "-" else raw


def _is_stdin(ctx: CommandContext, raw: str) -> bool:
    """``-``, ``/dev/stdin`` or ``/dev/fd/0``: the command's standard input (they name no
    file of the tree)."""
    return raw == "-" or ctx.path(raw) in ("/dev/stdin", "/dev/fd/0")


def _chunks(ctx: CommandContext, raw: str) -> Iterator[bytes]:
    """One input's bytes as they come (``-``, ``/dev/stdin``: stdin), until Ctrl-C."""
    if _is_stdin(ctx, raw):
        yield from ctx.read_stdin(1 << 20)
        return
    for chunk in ctx.shell.vfs.iter_chunks(ctx.path(raw), 1 << 20):
        if ctx.cancelled.is_set():
            return
        yield chunk


@builtin("wc", "count lines, words and bytes: wc [-l|-w|-c] [FILE...]")
def _wc(ctx: CommandContext) -> int:
    from exo.shell import textutils

    flags, files = _split_flags(ctx.args, "lwc")
    shown = [k for k in "lwc" if not flags or k in flags]
    rows: list[tuple[tuple[int, int, int], str | None]] = []
    status = 0
    for raw in files or ["-"]:
        try:
            counts = textutils.wc(_chunks(ctx, raw), words="w" in shown)
        except FileNotFoundError:
            ctx.err(f"{raw}: no such file or directory")
            status = 1
            continue
        except BrokenPipeError:
            raise
        except OSError as exc:
            ctx.err(f"{raw}: {_strip(exc, ctx.path(raw))}")
            status = 1
            continue
        rows.append((counts, raw if files else None))
    if len(rows) > 1:
        total = tuple(sum(c[i] for c, _ in rows) for i in range(3))
        rows.append(((total[0], total[1], total[2]), "total"))
    # As coreutils: one number alone unpadded, else columns as wide as the widest.
    width = 0 if len(shown) == 1 and len(rows) == 1 else \
        max((len(str(c[i])) for c, _ in rows for i in range(3)), default=0)
    for counts, name in rows:
        cells = [str(counts["lwc".index(k)]).rjust(width) for k in shown]
        ctx.out(" ".join(cells + ([name] if name is not None else [])))
    return status


@builtin("grep", "lines matching a regular expression: grep [-vicnqoslLhHwxEF] "
                 "[-e PATTERN]... PATTERN [FILE...]")
def _grep(ctx: CommandContext) -> int:
    from exo.shell import textutils

    patterns: list[str] = []
    args: list[str] = []
    it = iter(ctx.args)
    for a in it:  # -e PATTERN (any number), the rest short flags and operands
        if a == "-e" or (a.startswith("-e") and len(a) > 2 and not args):
            value = a[2:] or next(it, None)
            if value is None:
                raise CommandError("option requires an argument -- 'e'", 2)
            patterns.append(value)
        else:
            args.append(a)
    if any(a.startswith("-") and set(a[1:]) & set("rR") for a in args if a != "-"):
        raise CommandError("-r: use /usr/bin/grep -r (the host's grep, through the "
                           "powerbox)", 2)
    flags, rest = _split_flags(args, "vicnqoslLhHwxEFG")
    if not patterns:
        if not rest:
            raise CommandError("usage: grep [OPTION]... PATTERN [FILE...]", 2)
        patterns, rest = [rest[0]], rest[1:]
    matcher = textutils.Grep(patterns, flags)
    names = rest or ["-"]
    prefixed = ("H" in flags or len(names) > 1) and "h" not in flags
    found = 0
    status = 0
    for raw in names:
        try:
            n = textutils.grep(matcher, _chunks(ctx, raw), flags,
                               _shown(raw) if prefixed else None, ctx.write)
        except FileNotFoundError:
            if "s" not in flags:
                ctx.err(f"{raw}: no such file or directory")
            status = 2
            continue
        except BrokenPipeError:
            raise
        except OSError as exc:
            if "s" not in flags:
                ctx.err(f"{raw}: {_strip(exc, ctx.path(raw))}")
            status = 2
            continue
        found += n
        if "q" in flags and n:
            return 0
        if ("l" in flags and n) or ("L" in flags and not n):
            ctx.out(_shown(raw))
        if "c" in flags:
            ctx.out(f"{_shown(raw)}:{n}" if prefixed else str(n))
    if status and "q" not in flags:
        return status
    return 0 if found else (status or 1)


# ------------------------------------------------------------------ session
#: Builtins that act on the shell itself (its directory, variables, jobs, flow): no
#: program has their name, so ``env NAME`` refuses them as sh's env finds nothing.
SHELL_STATE = frozenset({
    ".", "alias", "bg", "break", "cd", "command", "continue", "declare", "eval", "exit",
    "export", "fg", "getopts", "jobs", "let", "local", "logout", "read", "readonly",
    "return", "set", "shift", "shopt", "source", "trap", "typeset", "unalias", "unset",
    "wait"})


@builtin("env", "print the environment programs get (the exported variables), or run "
         "a command with more: env [NAME=VALUE]... [COMMAND [ARGS...]] (its other options: "
         "the host's env)")
def _env(ctx: CommandContext) -> int:
    import shlex

    from exo.shell.parser import is_assignment

    args = list(ctx.args)
    extra: dict[str, str] = {}
    skip = 0
    while skip < len(args) and (is_assignment(args[skip]) or args[skip] == "env"):
        name, eq, value = args[skip].partition("=")  # (env env X: env X)
        if eq:
            extra[name] = value
        skip += 1
    args = args[skip + (args[skip:skip + 1] == ["--"]):]
    if args and args[0] in SHELL_STATE:  # (sh's env finds no program of that name)
        raise CommandError(f"{args[0]}: a builtin of the shell's own state, not a "
                           "program env can run", 127)
    if args:  # NAME=VALUE COMMAND: the shell's own `NAME=VALUE COMMAND`, with no
        # alias or function of that name (env runs programs), as `command` does
        line = " ".join([*(f"{k}={shlex.quote(v)}" for k, v in extra.items()),
                         "\\" + shlex.join(args)])
        with ctx.shell.plain(args[0]):
            return _rerun(ctx, line)
    from exo.shell.core import exported_env

    env = exported_env(ctx.shell)
    env.update(extra)  # (`i=3` is the shell's alone)
    for k in sorted(env):
        ctx.out(f"{k}={env[k]}")
    return 0


@builtin("export", "pass variables to the programs started from here: export NAME[=VALUE]...")
def _export(ctx: CommandContext) -> int:
    shell = ctx.shell
    if not ctx.args:
        from exo.shell.core import exported_env

        env = exported_env(shell)
        for name in sorted(env):
            ctx.out(f"export {name}={env[name]}")
        return 0
    for assignment in ctx.args:
        name, sep, value = assignment.partition("=")
        if sep and name.endswith("+"):  # export PATH+=:/opt/bin
            name = name[:-1]
            value = shell.appended(name, value) if name.isidentifier() else value
        if not name.isidentifier():
            raise CommandError(f"'{assignment}': not a valid identifier")
        if sep:
            shell.env[name] = value
        else:
            shell.env.setdefault(name, "")
        shell.exported.add(name)
    return 0


@builtin("readonly", "mark variables so that nothing changes or unsets them again "
         "until the shell ends: readonly NAME[=VALUE]...; alone or with -p, list them")
def _readonly(ctx: CommandContext) -> int:
    from exo.shell import arrays
    from exo.shell.core import DYNAMIC

    variables = ctx.shell.env
    args = list(ctx.args)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args or args == ["-p"]:
        for name in sorted(variables.readonly):
            value = variables.get(name, ctx.shell.lookup(name) if name in DYNAMIC else None)
            ctx.out(f"readonly {name}" if value is None
                    else f"readonly {arrays.shown(name, value)}")
        return 0
    for arg in args:
        name, eq, value = arg.partition("=")
        if not name.isidentifier():
            raise CommandError(f"'{arg}': not a valid identifier", 1)
        if eq:
            variables[name] = value  # (ReadonlyError if it is already: said, status 1)
        variables.readonly.add(name)
    return 0


@builtin("read", "read a line into variables: read [-r] [-p PROMPT] [-a ARRAY] [-d DELIM] "
         "[-u FD] [-t SECONDS] NAME... (-d: up to DELIM's first character instead of a "
         "newline; '': a NUL; -u: from descriptor FD, as exec 3< FILE opened it; -t: "
         "status 142 when no line came in time)")
def _read(ctx: CommandContext) -> int:
    args = list(ctx.args)
    raw, prompt, array, delimiter = False, "", None, b"\n"
    source = ctx.stdin
    deadline: float | None = None
    timed_out = False
    while args and args[0].startswith("-") and len(args[0]) > 1 and args[0] != "--":
        letters = args.pop(0)[1:]  # (`-ra NAME`: letters together, as getopt takes them)
        for k, letter in enumerate(letters):
            if letter == "r":
                raw = True
                continue
            if letter not in "padut" or not (letters[k + 1:] or args):
                raise CommandError(f"usage: {HELP['read']}", 2)
            value = letters[k + 1:] or args.pop(0)
            if letter == "t":
                try:
                    seconds = float(value)
                except ValueError:
                    seconds = -1.0
                if not 0 <= seconds <= threading.TIMEOUT_MAX:
                    raise CommandError(f"{value}: invalid timeout specification", 1)
                deadline = time.monotonic() + seconds
            elif letter == "u":
                if not re.fullmatch("[0-9]{1,3}", value) or int(value) > 255:
                    raise CommandError(f"-u {value}: not a descriptor number", 2)
                source = ctx.descriptor(int(value))
            elif letter == "p":
                prompt = value
            elif letter == "d":  # (its first character; none: a NUL, as bash's -d '')
                delimiter = value[:1].encode() or b"\0"
            else:  # bash's -a: each field an element of ARRAY
                array = value
            break
    if args[:1] == ["--"]:
        args = args[1:]
    if array is not None:
        args = [array]
    if prompt:
        ctx.write(prompt, ctx.stderr)
    names = args or ["REPLY"]
    for name in names:
        if not name.isidentifier():
            raise CommandError(f"'{name}': not a valid identifier")
    # Byte by byte: the next command reads on from there. Without -r a backslash at the
    # end of a line joins the next one to it; the line counts even without its newline
    # (status 1, as at the end of input, where every NAME is emptied).
    data = bytearray()
    ended = False
    try:
        while True:
            try:
                line = read_line(source, ctx.cancelled, delimiter, deadline)
            except ReadTimeout as late:  # what came is kept, as bash keeps it
                data += late.partial
                ended = timed_out = True
                break
            ended = not line.endswith(delimiter)
            data += line.removesuffix(delimiter)
            if raw or ended or delimiter != b"\n" or not _continued(data) or \
                    len(data) > MAX_LINE:
                break
            del data[-1:]
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if len(data) > MAX_LINE:
        raise CommandError(f"a line longer than {MAX_LINE >> 20} MiB")
    text = without_nul(data.decode(errors="replace"))
    if not raw:  # a backslash keeps the next character as it is, and goes
        text = re.sub(r"\\(.)", r"\1", text)
    ifs = ctx.shell.env.get("IFS", " \t\n")  # (`IFS=: read a b`, `IFS= read -r line`)
    if array is not None:
        from exo.shell import arrays
        from exo.shell.parser import split_fields

        try:
            ctx.shell.env[array] = arrays.encode(dict(enumerate(split_fields(text, ifs))))
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    else:
        fields = _ifs_fields(text, ifs, len(names))
        for name, value in zip(names, [*fields, *[""] * len(names)], strict=False):
            ctx.shell.env[name] = value
    return 128 + signal.SIGALRM if timed_out else 1 if ended else 0


@builtin("printf", "format and print: printf [-v NAME] FORMAT [ARGUMENT...] (C's "
         "formats: %s %d %x %f %c %b %q, flags, widths; the format again while arguments "
         "are left; -v NAME: into the variable NAME)")
def _printf(ctx: CommandContext) -> int:
    from exo.shell.printf import PrintfError, render

    args = list(ctx.args)
    name = None
    if args[:1] == ["-v"] and len(args) > 1:
        name, args = args[1], args[2:]
        if not name.isidentifier():
            raise CommandError(f"'{name}': not a valid identifier", 2)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        raise CommandError(f"usage: {HELP['printf']}", 2)
    try:
        text, errors = render(args[0], args[1:])
    except PrintfError as exc:
        raise CommandError(str(exc)) from None
    for error in errors:
        ctx.err(error)
    if name is not None:
        # (a variable holds no NUL: bash keeps what comes before one; the shell's own
        # markers are NUL-separated, and a value must never read as one)
        ctx.shell.env[name] = text.partition("\0")[0]
    else:
        ctx.write(text)
    return 1 if errors else 0


@builtin("mapfile", "read lines into an array: mapfile [-t] [-n COUNT] [-s SKIP] "
         "[ARRAY] (MAPFILE by default; -t drops each newline); readarray is the same")
def _mapfile(ctx: CommandContext) -> int:
    from exo.shell import arrays
    from exo.shell.parser import MAX_EXPANSION

    args = list(ctx.args)
    strip, count, skip = False, 0, 0
    while args and args[0].startswith("-") and len(args[0]) > 1:
        opt = args.pop(0)
        if opt == "-t":
            strip = True
        elif opt in ("-n", "-s") and args and args[0].isdigit() and len(args[0]) < 10:
            value = int(args.pop(0))
            count, skip = (value, skip) if opt == "-n" else (count, value)
        else:
            raise CommandError(f"usage: {HELP['mapfile']}", 2)
    name = args[0] if args else "MAPFILE"
    if len(args) > 1 or not name.isidentifier():
        raise CommandError(f"usage: {HELP['mapfile']}", 2)
    data = bytearray()
    for chunk in ctx.read_stdin():  # (bounded as an expansion: the lines land in memory)
        data += chunk
        if len(data) > MAX_EXPANSION:
            raise CommandError(f"more than {MAX_EXPANSION >> 20} MiB of input")
    parts = without_nul(data.decode(errors="replace")).split("\n")
    lines = [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    lines = lines[skip:]
    if count:
        lines = lines[:count]
    try:
        ctx.shell.env[name] = arrays.encode(dict(enumerate(
            line.removesuffix("\n") if strip else line for line in lines)))
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return 0


BUILTINS["readarray"] = BUILTINS["mapfile"]
HELP["readarray"] = HELP["mapfile"]


def _continued(line: bytearray) -> bool:
    """``line`` ends with a backslash that escapes the newline after it (an odd run)."""
    run = len(line) - len(line.rstrip(b"\\"))
    return run % 2 == 1


def _ifs_fields(text: str, ifs: str, count: int) -> list[str]:
    """``text`` cut into at most ``count`` fields at ``ifs``'s characters, as sh's
    ``read`` does: runs of IFS blanks are one cut and are trimmed at both ends, each
    other IFS character is a cut of its own, and the last field keeps the rest. An
    empty IFS cuts nothing and trims nothing."""
    if not ifs:
        return [text]
    blanks = "".join(c for c in ifs if c in " \t\n")
    text = text.strip(blanks) if blanks else text
    fields: list[str] = []
    i = 0
    while len(fields) < count - 1:
        j = i
        while j < len(text) and text[j] not in ifs:
            j += 1
        if j >= len(text):
            break
        fields.append(text[i:j])
        while j < len(text) and text[j] in blanks:
            j += 1
        if j < len(text) and text[j] in ifs and text[j] not in blanks:
            j += 1
            while j < len(text) and text[j] in blanks:
                j += 1
        i = j
    last = text[i:]
    # One field and the delimiter after it: the delimiter goes (`a:b:` into two names is
    # a and b), as in bash; `b:c:` stays whole.
    if last and last[-1] in ifs and last[-1] not in blanks:
        body = last[:-1].rstrip(blanks) if blanks else last[:-1]
        if not any(c in ifs for c in body):
            last = body
    fields.append(last)
    return fields


@builtin("unset", "remove variables, or functions: unset [-v] NAME... | unset -f NAME...")
def _unset(ctx: CommandContext) -> int:
    args = ctx.args
    functions = args[:1] == ["-f"]
    if args[:1] in (["-f"], ["-v"]):
        args = args[1:]
    status = 0
    for name in args:
        base, bracket, subscript = name.partition("[")
        if functions:
            ctx.shell.functions.pop(name, None)
        elif base in ctx.shell.env.readonly:
            ctx.err(f"{base}: cannot unset: readonly variable")
            status = 1
        elif bracket and subscript.endswith("]") and base.isidentifier():
            status |= _unset_element(ctx, base, subscript[:-1])
        else:
            ctx.shell.env.pop(name, None)
            ctx.shell.exported.discard(name)
    return status


def _unset_element(ctx: CommandContext, name: str, subscript: str) -> int:
    """``unset 'a[1]'``: one element of the array ``a`` (exo.shell.arrays)."""
    from exo.shell import arrays
    from exo.shell.parser import ParseError, array_index

    shell = ctx.shell
    value = shell.env.get(name)
    if value is None:
        return 0
    if arrays.is_assoc(value):  # unset 'm[KEY]'
        from exo.shell.parser import expand_word

        kept = arrays.Assoc(arrays.assoc_view(value))
        kept.pop(expand_word(subscript, shell.lookup, shell._substitute), None)
        shell.env[name] = arrays.encode_assoc(kept)
        return 0
    elements = arrays.decode(value)
    try:
        index = array_index(subscript, elements, shell.lookup, shell._substitute)
    except ParseError as exc:
        raise CommandError(str(exc), 1) from None
    elements.pop(index, None)
    shell.env[name] = arrays.encode(elements)
    return 0


@builtin("exit", "end the session (back to the login prompt): exit [STATUS]")
def _exit(ctx: CommandContext) -> int:
    from exo.shell.session import Logout

    try:
        status = int(ctx.args[0]) if ctx.args else ctx.shell.last_status
    except ValueError:
        raise CommandError(f"{ctx.args[0]}: numeric argument required", 2) from None
    if not ctx.shell.subshells and ctx.shell.keep_for_jobs():  # (a subshell's: its own)
        raise CommandError("there are jobs; exit again to end them with the session")
    raise Logout(status & 0xFF)


@builtin("logout", "end the session and return to the login prompt")
def _logout(ctx: CommandContext) -> int:
    from exo.shell.session import Logout

    if ctx.shell.keep_for_jobs():
        raise CommandError("there are jobs; logout again to end them with the session")
    raise Logout(0)


@builtin("shutdown", "stop every Exo process and power off (needs device://power)")
def _shutdown(ctx: CommandContext) -> int:
    from exo.kernel.users import POWER
    from exo.shell.session import ShellExit

    args = [a for a in ctx.args if a not in ("-h", "-P", "--poweroff", "now")]
    if args[:1] in (["-r"], ["--reboot"]):
        raise CommandError("rebooting is not supported: shut down, then boot again "
                           "(make run)", 2)
    if args:
        raise CommandError(f"unexpected argument '{args[0]}' (usage: shutdown [now])", 2)
    if not ctx.shell.session.holds(POWER, "WRITE"):
        raise CommandError(f"permission denied: powering off needs {POWER}=WRITE, which "
                           f"user {ctx.shell.session.user} does not hold")
    try:  # the kernel checks the session too
        ctx.shell.kernel.request_shutdown(session=ctx.shell.session.token)
    except PermissionError as exc:
        raise CommandError(str(exc)) from None
    raise ShellExit(0)


@builtin("test", "evaluate a condition: test EXPR, [ EXPR ] (files: -e -f -d -r -w -x -s "
         "-L -p -S -c -t; strings: -z -n = != < >; integers: -eq -ne -lt -le -gt -ge; "
         "-nt -ot; ! -a -o ( ))")
def _test(ctx: CommandContext) -> int:
    from exo.shell.testexpr import TestError, evaluate

    args = list(ctx.args)
    if ctx.name == "[":
        if args[-1:] != ["]"]:
            raise CommandError("missing ']'", 2)
        args.pop()
    try:
        return 0 if evaluate(ctx, args) else 1
    except TestError as exc:
        raise CommandError(str(exc), 2) from None


BUILTINS["["] = _test
HELP["["] = HELP["test"]


@builtin(":", "do nothing, successfully (its arguments are expanded)")
def _colon(ctx: CommandContext) -> int:
    return 0


@builtin("eval", "run its arguments, joined by spaces, as a command line: eval ARGS...")
def _eval(ctx: CommandContext) -> int:
    line = " ".join(ctx.args)
    if not line.strip():
        return 0
    return _rerun(ctx, line)


@builtin("command", "run a command, not a function or alias of its name: command NAME "
         "[ARGS...]; command -v NAME... says what NAME runs (-V: in words)")
def _command(ctx: CommandContext) -> int:
    import shlex

    args = list(ctx.args)
    if args[:1] in (["-v"], ["-V"]):
        if args[0] == "-V":
            return _type(CommandContext(ctx.shell, ["type", *args[1:]], ctx.stdin,
                                        ctx.stdout, ctx.stderr, ctx.cancelled))
        status = 0
        for name in args[1:]:
            where = _command_v(ctx, name)
            if where is None:
                status = 1
            else:
                ctx.out(where)
        return status
    skip = 0
    while skip < len(args) and args[skip] in ("--", "command"):  # (`command command X`)
        skip += 1
    args = args[skip:]
    if not args:
        return 0
    # \NAME: not an alias's (the line is read again); ctx.shell.plain: not a function's.
    with ctx.shell.plain(args[0]):
        return _rerun(ctx, "\\" + shlex.join(args))


@builtin("builtin", "run the shell's builtin NAME, not a function or alias of its name: "
         "builtin NAME [ARGS...]")
def _builtin(ctx: CommandContext) -> int:
    import shlex

    if not ctx.args:
        return 0
    if ctx.args[0] not in ctx.shell.builtins:
        raise CommandError(f"{ctx.args[0]}: not a shell builtin", 1)
    with ctx.shell.plain(ctx.args[0]):
        return _rerun(ctx, "\\" + shlex.join(ctx.args))


@builtin("hash", "check that each NAME is a command that can run: hash [-r] [NAME...] "
         "(status 1 if one is not; the shell keeps no table to forget: -r does nothing)")
def _hash(ctx: CommandContext) -> int:
    status = 0
    for name in ctx.args:
        if name == "-r":
            continue
        if name.startswith("-"):
            raise CommandError(f"{name}: invalid option (hash [-r] [NAME...])", 2)
        if _command_v(ctx, name) is None:
            ctx.err(f"{name}: not found")
            status = 1
    return status


def _dirs_line(ctx: CommandContext) -> str:
    """The directory stack as ``dirs`` prints it: the working directory first, the home
    directory as ``~``."""
    home = ctx.shell.env.get("HOME", "")

    def shown(d: str) -> str:
        return "~" + d[len(home):] if home and (d == home or d.startswith(home + "/")) \
            else d

    return " ".join(shown(d) for d in (ctx.shell.cwd, *ctx.shell.dirstack))


def _cd_to(ctx: CommandContext, target: str) -> None:
    """``cd target`` (an Exo path), as ``cd`` checks it (CommandError, said by the
    caller, if it cannot)."""
    _cd(CommandContext(ctx.shell, ["cd", target], ctx.stdin, ctx.stdout, ctx.stderr,
                       ctx.cancelled))


@builtin("pushd", "go to DIR, keeping the working directory on the stack: pushd [DIR] "
         "(alone: swap the top two)")
def _pushd(ctx: CommandContext) -> int:
    shell = ctx.shell
    if len(ctx.args) > 1:
        raise CommandError("too many arguments")
    here = shell.cwd
    if ctx.args:
        target = ctx.path(ctx.args[0])
    elif shell.dirstack:
        target = shell.dirstack.pop(0)
    else:
        raise CommandError("no other directory", 1)
    try:
        _cd_to(ctx, target)
    except CommandError:
        if not ctx.args:
            shell.dirstack.insert(0, target)
        raise
    if len(shell.dirstack) >= MAX_DIRSTACK:
        raise CommandError(f"the directory stack holds at most {MAX_DIRSTACK}")
    shell.dirstack.insert(0, here)
    ctx.out(_dirs_line(ctx))
    return 0


@builtin("popd", "go back to the directory on top of the stack (pushd's): popd")
def _popd(ctx: CommandContext) -> int:
    shell = ctx.shell
    if ctx.args:
        raise CommandError("popd takes no argument here", 2)
    if not shell.dirstack:
        raise CommandError("directory stack empty", 1)
    _cd_to(ctx, shell.dirstack[0])
    shell.dirstack.pop(0)
    ctx.out(_dirs_line(ctx))
    return 0


@builtin("umask", "the mode bits new files and directories go without: umask [-S] [MODE] "
                  "(MODE octal, 077, or symbolic, u=rwx,g=rx,o=; -S: said symbolic); "
                  "the shell's files and every program it starts")
def _umask(ctx: CommandContext) -> int:
    args = list(ctx.args)
    symbolic = args[:1] == ["-S"]
    if symbolic:
        args = args[1:]
    if len(args) > 1:
        raise CommandError(f"usage: {HELP['umask']}", 2)
    vfs = ctx.shell.vfs
    if args:
        vfs.umask = _umask_of(args[0], vfs.umask)
        return 0
    if symbolic:
        allowed = ~vfs.umask & 0o777
        clauses = []
        for who, shift in (("u", 6), ("g", 3), ("o", 0)):
            bits = allowed >> shift
            clauses.append(who + "=" + "".join(p for p, bit in (("r", 4), ("w", 2), ("x", 1))
                                               if bits & bit))
        ctx.out(",".join(clauses))
    else:
        ctx.out(f"{vfs.umask:04o}")
    return 0


@builtin("ulimit", "the resource limits of the programs the shell starts: "
                  "ulimit [-SH] [-a | -cdefilmnpqrstuvxR [LIMIT]]... (LIMIT a number, "
                  "unlimited, soft or hard; -S the soft limit, -H the hard one, both "
                  "when neither; a hard limit only goes down; builtins are bounded by "
                  "the kernel instead)")
def _ulimit(ctx: CommandContext) -> int:
    from exo.shell.ulimit import run

    try:
        return run(list(ctx.args), ctx.shell.rlimits, ctx.out)
    finally:
        ctx.shell.limits_changed()


def _umask_of(text: str, mask: int) -> int:
    """``umask``'s MODE: octal (``027``), or symbolic clauses on the bits allowed
    (``u=rwx,g=rx,o=``, ``g-w``, ``o+r``, ``a=rx``), as chmod's."""
    if re.fullmatch(r"[0-7]{1,4}", text):
        value = int(text, 8)
        if value > 0o777:
            raise CommandError(f"{text}: octal number out of range", 1)
        return value
    allowed = ~mask & 0o777
    for clause in text.split(","):
        m = re.fullmatch(r"([ugoa]*)([-+=])([rwx]*)", clause)
        if m is None:
            raise CommandError(f"{text}: invalid symbolic mode (u=rwx,g=rx,o= or 027)", 1)
        who, op, perms = m.groups()
        shifts = [s for w, s in (("u", 6), ("g", 3), ("o", 0)) if not who or "a" in who
                  or w in who]
        bits = sum({"r": 4, "w": 2, "x": 1}[p] for p in set(perms))
        for shift in shifts:
            if op == "=":
                allowed &= ~(7 << shift)
            if op in "=+":
                allowed |= bits << shift
            else:
                allowed &= ~(bits << shift)
    return ~allowed & 0o777


@builtin("dirs", "print the directory stack (pushd's): dirs [-c] (-c: empty it)")
def _dirs(ctx: CommandContext) -> int:
    if ctx.args == ["-c"]:
        ctx.shell.dirstack.clear()
        return 0
    if ctx.args:
        raise CommandError("usage: dirs [-c]", 2)
    ctx.out(_dirs_line(ctx))
    return 0


#: How deep `eval`, `command` and `env` may run one another, and how many bytes of
#: lines they may parse again in all, one inside another (`command command …`: each
#: level parsed the rest of a 1 MiB line again, for minutes in the kernel).
MAX_RERUN_DEPTH = 64
MAX_RERUN_BYTES = 2 << 20


@builtin("exec", "run COMMAND in place of the shell: exec COMMAND [ARG...] (the session, "
         "script or subshell ends with its status); with redirections alone, they stay "
         "the shell's: exec 3> FILE, exec 3>&-, exec > LOG 2>&1")
def _exec(ctx: CommandContext) -> int:
    import shlex

    from exo.shell.session import Logout

    if not ctx.args:  # (`exec 3> f` alone is the shell's: core.Shell._exec_fds)
        if ctx.own_fds:  # (ctx.fds holds the shell's own too, copied for the command)
            raise CommandError("redirections of the shell's own descriptors are not "
                               "piped: exec 3> FILE alone", 1)
        return 0
    # As `command`: a program or builtin, not a function of that name.
    with ctx.shell.plain(ctx.args[0]):
        status = _rerun(ctx, "\\" + shlex.join(ctx.args))
    raise Logout(status & 0xFF)


def _rerun(ctx: CommandContext, line: str) -> int:
    """Run ``line`` in this shell for ``eval``, ``command`` or ``env``, within
    ``MAX_RERUN_DEPTH`` and ``MAX_RERUN_BYTES``."""
    flow = ctx.shell.flow
    if flow.reruns == 0:
        flow.rerun_bytes = 0
    flow.rerun_bytes += len(line)
    if flow.reruns >= MAX_RERUN_DEPTH or flow.rerun_bytes > MAX_RERUN_BYTES:
        raise CommandError(f"eval, command and env nested too deeply (at most "
                           f"{MAX_RERUN_DEPTH} levels, {MAX_RERUN_BYTES >> 20} MiB)", 2)
    flow.reruns += 1
    try:
        return ctx.shell.run_line(line, ctx.stdin, ctx.stdout, ctx.stderr)
    finally:
        flow.reruns -= 1


def _command_v(ctx: CommandContext, name: str) -> str | None:
    """What ``command -v NAME`` prints, as sh: an alias's definition, a builtin's or a
    function's name, a program's path; None when nothing runs for it."""
    import shlex

    from exo.shell.powerbox import Powerbox

    shell = ctx.shell
    if name in shell.aliases:
        return f"alias {name}={shlex.quote(shell.aliases[name])}"
    if name in shell.functions or name in shell.builtins:
        return name
    if shell.find_app(name) is not None:
        return f"/exo/bin/{name}"
    return shell.find_program(name) or Powerbox.find(name)


@builtin("let", "integer arithmetic, assigning: let EXPR... (x=1+2, x+=3, i++); status 1 "
         "when the last value is 0")
def _let(ctx: CommandContext) -> int:
    from exo.shell.arith import execute
    from exo.shell.parser import ParseError

    if not ctx.args:
        raise CommandError("usage: let EXPR...", 2)
    value = 0
    for expr in ctx.args:
        try:
            value = execute(expr, ctx.shell.lookup, ctx.shell.env.__setitem__)
        except ParseError as exc:  # (status 1, as bash's)
            raise CommandError(str(exc), 1) from None
    return 0 if value else 1


@builtin("true", "do nothing, successfully")
def _true(ctx: CommandContext) -> int:
    return 0


@builtin("false", "do nothing, unsuccessfully")
def _false(ctx: CommandContext) -> int:
    return 1


@builtin("sleep", "wait SECONDS (Ctrl-C interrupts)")
def _sleep(ctx: CommandContext) -> int:
    try:
        seconds = float(ctx.args[0])
    except (IndexError, ValueError):
        raise CommandError("usage: sleep SECONDS", 2) from None
    left = max(0.0, min(seconds, threading.TIMEOUT_MAX))
    # In the shell's own thread (a function's) the terminal's Ctrl-C is a
    # KeyboardInterrupt raised there (_thread.interrupt_main), only between two waits; in
    # a job's, slices long enough not to matter (64 jobs at most: 128 wake-ups a second)
    # and short enough that a Ctrl-Z stops the clock within half a second: the time a job
    # is stopped does not count, as for a stopped /bin/sleep.
    step = 0.1 if threading.current_thread() is threading.main_thread() else 0.5
    while left > 0:
        if not ctx.running.is_set():  # stopped: wait to be resumed (or ended)
            if ctx.cancelled.wait(step):
                return _ended_by(ctx)
            continue
        started = time.monotonic()
        if ctx.cancelled.wait(min(left, step)):
            return _ended_by(ctx)
        left -= time.monotonic() - started
    return 0


def _ended_by(ctx: CommandContext) -> int:
    """A builtin's status when its job was ended: 128 + the signal (SIGINT's 130 for
    Ctrl-C, 143 for ``kill %N``), as a process's."""
    return 128 + int(getattr(ctx.cancelled, "signal", signal.SIGINT))


@builtin("whoami", "print the user name")
def _whoami(ctx: CommandContext) -> int:
    ctx.out(ctx.shell.session.user)
    return 0


@builtin("uname", "print system information: uname [-a]")
def _uname(ctx: CommandContext) -> int:
    if "-a" in ctx.args:
        u = os.uname()
        ctx.out(f"Exo-OS exo-os {__version__} hosted-linux-{u.release} {u.machine}")
    else:
        ctx.out("Exo-OS")
    return 0


@builtin("help", "list commands, or describe one: help [COMMAND]")
def _help(ctx: CommandContext) -> int:
    if ctx.args:
        name = ctx.args[0]
        if name not in HELP:
            raise CommandError(f"no help for '{name}'")
        ctx.out(usage(name))
        return 0
    width = max(len(n) for n in HELP)
    ctx.out("Exo-OS shell built-in commands:")
    for name in sorted(HELP):
        ctx.out(f"  {name:<{width}}  {HELP[name]}")
    ctx.out("Operators: | > >> < 2> 2>&1 ; && || &   Variables: $NAME ${NAME} $? $$ "
            "NAME=value   $(command) $((arithmetic))")
    ctx.out("Blocks: if/then/elif/else/fi, while/do/done, for NAME in WORDS; do ...; done")
    return 0


@builtin("history", "list the commands typed in this session")
def _history(ctx: CommandContext) -> int:
    for n, line in enumerate(ctx.shell.history, 1):
        ctx.out(f"{n:5}  {line}")
    return 0


# ---------------------------------------------------------------- processes
@builtin("ps", "list Exo processes: ps [--json]")
def _ps(ctx: CommandContext) -> int:
    rows = ctx.shell.kernel.ps()
    if ctx.shell.session.grants is not None:  # a user sees the kernel and their own jobs
        mine = {p.pid for j in ctx.shell.jobs for p in j.processes()}
        rows = [r for r in rows if r["pid"] == 1 or r["pid"] in mine]
    if "--json" in ctx.args:
        ctx.out(json.dumps(rows, indent=2))
        return 0
    headers = ["PID", "HOST_PID", "STATE", "CAPS", "TIME", "COMMAND"]
    # TIME: CPU time, as sh's ps (its cgroup's: what it started too); the JSON has both.
    table = [[str(r["pid"]), str(r["host_pid"]), str(r["state"]), str(r["caps"]),
              "-" if r.get("cpu_s") is None else f"{r['cpu_s']:.1f}s", str(r["command"])]
             for r in rows]
    _table(ctx, headers, table)
    return 0


#: Directories pushd keeps at most (each a path: bounded as everything a user makes).
MAX_DIRSTACK = 1024

#: Signals that stop a process.
_STOPS = (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)


@builtin("kill", "signal a process or job: kill [-SIGNAL | -s SIGNAL] PID|%N...")
def _kill(ctx: CommandContext) -> int:
    args = list(ctx.args)
    sig = signal.SIGTERM
    if args[:1] == ["-l"]:
        ctx.out(" ".join(s.name.removeprefix("SIG") for s in signal.Signals))
        return 0
    if args and args[0] == "-s" and len(args) > 1:
        args[:2] = ["-" + args[1]]
    if args and args[0].startswith("-"):
        spec = args.pop(0)[1:].upper()
        try:
            sig = signal.Signals(int(spec)) if spec.isdigit() else signal.Signals[
                spec if spec.startswith("SIG") else "SIG" + spec]
        except (KeyError, ValueError):
            raise CommandError(f"{spec}: invalid signal specification", 2) from None
    if not args:
        raise CommandError("usage: kill [-SIGNAL] PID...", 2)
    status = 0
    for raw in args:
        if raw.startswith("%"):
            job = _job(ctx, raw)
            if job.processes():
                for proc in job.processes():  # the job's process groups, as in sh
                    proc.signal(sig, group=True)
                if sig in _STOPS:
                    job.state = "Stopped"
                    job.running.clear()
                elif sig == signal.SIGCONT or (
                        sig in (signal.SIGTERM, signal.SIGHUP) and job.state == "Stopped"):
                    if sig != signal.SIGCONT:  # as bash: else it stays pending, stopped
                        for proc in job.processes():
                            proc.signal(signal.SIGCONT, group=True)
                    job.state = "Running"
                    job.running.set()
            elif sig in _STOPS:  # builtins only: they wait at their next check
                job.state = "Stopped"
                job.running.clear()
            elif sig == signal.SIGCONT:
                ctx.shell.resume(job)
            else:
                job.cancel.signal = sig  # type: ignore[attr-defined]  # (jobs.Cancel)
                job.cancel.set()  # they end at their next check
            continue
        if not _own_pid(ctx, raw):
            ctx.err(f"({raw}) - not a process of user {ctx.shell.session.user}")
            status = 1
            continue
        try:
            ctx.shell.kernel.kill(int(raw), sig)
        except ValueError:
            ctx.err(f"{raw}: arguments must be process ids")
            status = 1
        except LookupError as exc:
            ctx.err(str(exc.args[0]) if exc.args else f"({raw}) - no such process")
            status = 1
    return status


def _own_pid(ctx: CommandContext, raw: str) -> bool:
    """Root signals any process; a user only those of the jobs of this session."""
    if ctx.shell.session.grants is None or not raw.isdigit():
        return True
    return any(p.pid == int(raw) for j in ctx.shell.jobs for p in j.processes())


def _table(ctx: CommandContext, headers: list[str], rows: list[list[str]]) -> None:
    """A rich table on a terminal; aligned plain columns for pipes and files."""
    if not rows and ctx.isatty():
        ctx.out("(nothing to show)" + (" — `caps --session` lists what this session holds"
                                       if ctx.name == "caps" else ""))
        return
    if ctx.isatty():
        from rich.console import Console
        from rich.table import Table

        t = Table(*headers, header_style="bold cyan", box=None)
        for r in rows:
            t.add_row(*r)
        with os.fdopen(os.dup(ctx.stdout), "w") as fh:
            Console(file=fh, force_terminal=True).print(t)
        return
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for r in [headers, *rows]:
        ctx.out("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())




#: What reading the kernel's records takes: the files they are kept in.
AUDIT_LOG = "storage://var/log/audit.jsonl"
KERNEL_LOG = "storage://var/log/kernel.log"


@builtin("caps", "capabilities: caps [PID] | caps --session | caps --audit [--pid N] "
                 "[--event E] [--json]")
def _caps(ctx: CommandContext) -> int:
    p = _parser(ctx, "list capabilities or query the audit log")
    p.add_argument("pid", nargs="?", type=int)
    p.add_argument("--session", action="store_true")
    p.add_argument("--audit", action="store_true")
    p.add_argument("--event")
    p.add_argument("--resource")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    ns = p.parse_args(ctx.args)
    kernel = ctx.shell.kernel
    if ns.session:  # what this login holds: the most anything it starts can hold
        grants = ctx.shell.session.grants
        held = [{"resource": "(every root capability)", "rights": "ALL"}] if grants is None \
            else [{"resource": str(g.name), "rights": str(g.rights)} for g in grants]
        if ns.json:
            ctx.out(json.dumps(held, indent=2))
        else:
            _table(ctx, ["RESOURCE", "RIGHTS"], [[h["resource"], h["rights"]] for h in held])
        return 0
    if ns.audit and not ctx.shell.session.holds(AUDIT_LOG, "READ"):
        raise CommandError(f"permission denied: the audit log needs {AUDIT_LOG}=READ")
    if ns.audit:
        try:
            dicts = kernel.audit(event=ns.event, pid=ns.pid, resource=ns.resource,
                                 limit=ns.limit)
        except (LookupError, ValueError) as exc:  # an unknown pid or event: the user's
            raise CommandError(str(exc), 2 if isinstance(exc, ValueError) else 1) from None
        if ns.json:
            ctx.out(json.dumps(dicts, indent=2))
            return 0
        rows = [[time.strftime("%H:%M:%S", time.localtime(float(str(d.get("time") or 0)))),
                 _cell(d.get("event")), _cell(d.get("pid")), _cell(d.get("resource")),
                 _cell(d.get("rights")), _cell(d.get("reason"))] for d in dicts]
        _table(ctx, ["TIME", "EVENT", "PID", "RESOURCE", "RIGHTS", "REASON"], rows)
        return 0
    if ns.pid is not None and not _own_pid(ctx, str(ns.pid)):
        raise CommandError(f"({ns.pid}) - not a process of user {ctx.shell.session.user}")
    try:
        out = [r for r in kernel.caps(ns.pid) if _own_pid(ctx, str(r["pid"]))]
    except Exception as exc:
        raise CommandError(str(exc)) from None
    if ns.json:
        ctx.out(json.dumps(out, indent=2))
        return 0
    _table(ctx, ["PID", "HANDLE", "RESOURCE", "RIGHTS", "DERIVED"],
           [[str(r["pid"]), str(r["handle"]), str(r["resource"]), str(r["rights"]),
             str(r["derived"])] for r in out])
    return 0


def _cell(value: object) -> str:
    """A table cell: a field the record does not have is blank, never ``None``."""
    return "" if value is None else str(value)


@builtin("dmesg", "kernel messages (boot steps, spawns, exits)")
def _dmesg(ctx: CommandContext) -> int:
    if not ctx.shell.session.holds(KERNEL_LOG, "READ"):
        raise CommandError(f"permission denied: kernel messages need {KERNEL_LOG}=READ")
    for line in ctx.shell.kernel.dmesg():
        ctx.out(line)
    return 0


def _read_manifest(ctx: CommandContext, raw: str) -> Manifest:
    """The manifest at ``raw``, read through the Vfs's descriptor (the shell is root: a
    path re-opened by name could be swapped for a link to any host file meanwhile)."""
    from exo.kernel.manifest import read_manifest

    path = ctx.path(raw)
    return read_manifest(lambda: ctx.shell.vfs.read_bytes(path), path)


@builtin("run", "run a sandboxed process: run [--cap NAME=RIGHTS]... [--manifest F] "
                 "[--cwd DIR] -- CMD...")
def _run(ctx: CommandContext) -> int:
    return run_program(ctx, list(ctx.args), usage=HELP["run"])


def run_program(ctx: CommandContext, args: list[str], *, usage: str,
                posix_x: bool = False) -> int:
    """``[--cap NAME=RIGHTS]... [--manifest F] -- CMD...``: start CMD holding exactly those
    capabilities (each within the session's set) in the shell's directory, and wait.
    ``posix_x``: an unmodified Linux program (``posix-x run``): the manifest's ``[posix_x]``
    table applies, its defaults when it has none, and a bare program name is looked up
    in the host's system directories (the Exo PATH has no sbin)."""
    from exo.kernel.api import ProcessesUnavailable, failure_status
    from exo.kernel.caps.errors import CapabilityError
    from exo.kernel.manifest import Manifest, ManifestError, PosixX, parse_grant
    from exo.sandbox import SandboxError

    grants, manifest, cwd = [], None, None
    try:
        while args and args[0] != "--":
            opt = args.pop(0)
            if opt in ("--cap", "--manifest", "--cwd") and args:
                value = args.pop(0)
                if opt == "--cap":
                    grants.append(parse_grant(value))
                elif opt == "--cwd":  # as `exo run --cwd`: an Exo path it must hold
                    cwd = ctx.shell.vfs.normalize(value, ctx.shell.cwd)
                else:
                    manifest = _read_manifest(ctx, value)
            else:
                raise CommandError(f"unexpected argument {opt!r}; usage: {usage}", 2)
    except ManifestError as exc:
        raise CommandError(str(exc), 2) from None
    argv = args[1:]
    if not argv:
        raise CommandError(f"usage: {usage}", 2)
    if posix_x:
        from exo.posix_x.sandbox import in_system_dirs, resolve

        if manifest is None or manifest.posix_x is None:
            manifest = Manifest(manifest.grants, manifest.limits, PosixX()) if manifest \
                else Manifest(posix_x=PosixX())
        if "/" not in argv[0] or in_system_dirs(argv[0]):
            try:
                argv = [str(resolve(argv[0])), *argv[1:]]
            except SandboxError as exc:
                raise CommandError(str(exc), 127) from None
    # The session's set bounds what it starts: a user cannot ask the kernel for more.
    for grant in [*grants, *(manifest.grants if manifest is not None else ())]:
        try:
            ctx.shell.session.require(grant)
        except PermissionError as exc:
            raise CommandError(str(exc), 126) from None
    kernel = ctx.shell.kernel
    from exo.sandbox.zygote import prefer

    held = [*grants, *(manifest.grants if manifest is not None else ())]
    if cwd is not None and visible_cwd(cwd, held) != cwd:
        raise CommandError(f"--cwd {cwd}: the process holds no capability on it (add "
                           f"--cap storage://{cwd.strip('/')}=READ)", 2)
    try:
        # Started in a spare of the session's zygote when it can be (exo.sandbox.zygote:
        # no network capability, not POSIX-X), as the powerbox's commands are, each with
        # pid, mount, IPC, network and cgroup namespaces and a /proc of its own; else the
        # launcher.
        with prefer():
            proc = kernel.start(argv, grants, manifest=manifest,
                                stdio=(ctx.stdin, ctx.stdout, ctx.stderr),
                                cwd=cwd or visible_cwd(ctx.shell.cwd, held),
                                session=ctx.shell.session.token,
                                **ctx.shell.program_settings())
        if ctx.adopt is not None:
            ctx.adopt(proc)
        return kernel.wait(proc, cancelled=ctx.cancelled.is_set)
    except (SandboxError, ProcessesUnavailable) as exc:
        raise CommandError(str(exc), failure_status(exc)) from None
    except CapabilityError as exc:  # the kernel refused a grant the session lacks
        raise CommandError(str(exc), 126) from None


def visible_cwd(cwd: str, grants: list[Grant]) -> str:
    """The shell's working directory if the process will see it, else ``/``: `run` names
    exactly what the process holds, and a directory it holds nothing on does not exist in
    its world (it starts at the top of its tree, as a login does without a home)."""
    from exo.sandbox import SandboxError
    from exo.sandbox.namespace import check_cwd

    visible = [f"/{g.name.path}" for g in grants if g.name.scheme == "storage"]
    try:
        return check_cwd(cwd, visible)
    except SandboxError:
        return "/"


#: The host CLI's system-administration commands, run from the Exo shell as the same
#: ``exo`` command against this kernel's root (DESIGN.md §1: ``exo install nginx``,
#: ``exo module upgrade net/loop --version 2.1.5`` typed at the Exo prompt).
ADMIN_SUBCOMMANDS = frozenset({
    "install", "remove", "upgrade", "rollback", "list", "search", "info", "verify",
    "generations", "gc", "new", "build", "publish", "repo", "module", "area", "keys",
    "attest", "audit", "tpm", "crypto", "tunnel"})


@builtin("exo", "Exo-OS commands: exo shutdown | exo run ... | exo ps | exo caps | exo version"
                " | exo install|remove|upgrade|rollback|list|search|module|area|keys|attest|"
                "audit|... (the administrator's)")
def _exo(ctx: CommandContext) -> int:
    if not ctx.args or ctx.args[0] in ("-h", "--help", "help"):
        ctx.out(f"usage: {HELP['exo']}")
        return 0 if ctx.args else 2
    sub, rest = ctx.args[0], ctx.args[1:]
    target = {"shutdown": "shutdown", "run": "run", "ps": "ps", "caps": "caps"}.get(sub)
    if sub in ("version", "--version", "-V"):
        ctx.out(f"Exo-OS {__version__}")
        return 0
    if sub in ADMIN_SUBCOMMANDS:
        return _exo_admin(ctx, sub, rest)
    if target is None:
        raise CommandError(f"unknown subcommand '{sub}' (try: exo help)", 2)
    if rest[:1] in (["--help"], ["-h"]):  # as `shutdown --help`: never the command itself
        ctx.out(usage(target))
        return 0
    sub_ctx = CommandContext(ctx.shell, [target, *rest], ctx.stdin, ctx.stdout, ctx.stderr,
                             ctx.cancelled)
    sub_ctx.adopt = ctx.adopt
    return BUILTINS[target](sub_ctx)


def _exo_admin(ctx: CommandContext, sub: str, rest: list[str]) -> int:
    """Packages, modules, keys, attestation... change or read the whole system: only the
    administrator's session runs them, as the host's ``exo`` against this kernel's root,
    with the shell's descriptors (its prompts and output go to this terminal); Ctrl-C
    stops it."""
    import subprocess
    import sys

    session = ctx.shell.session
    if session.grants is not None:
        raise CommandError(f"{sub}: permission denied: only the administrator runs "
                           f"'exo {sub}' (user {session.user})")
    env = dict(os.environ, EXO_ROOT=str(ctx.shell.kernel.root))
    # In the shell's directory (`exo new hello` makes /home/root/hello, not a directory
    # of the host's); a path argument is still the host's (root's commands, on the host).
    child = subprocess.Popen([sys.executable, "-m", "exo", sub, *rest], stdin=ctx.stdin,
                             stdout=ctx.stdout, stderr=ctx.stderr, env=env,
                             cwd=ctx.shell.vfs.host_path(ctx.shell.cwd))
    while True:
        try:
            return child.wait(0.05)
        except subprocess.TimeoutExpired:
            if ctx.cancelled.is_set():
                child.terminate()
                try:
                    child.wait(5)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
                return 130


@builtin("jobs", "list jobs (started with &, or stopped with Ctrl-Z)")
def _jobs(ctx: CommandContext) -> int:
    for job in list(ctx.shell.jobs):
        state = job.state if not job.done.is_set() else job.outcome()
        ctx.out(f"[{job.number}] {state:<10} {job.source}")
    ctx.shell.finished_jobs()  # shown once as done, then forgotten (as sh does)
    return 0


def _job(ctx: CommandContext, spec: str | None) -> Job:
    """``%N``, ``N`` or (no spec) the newest job."""
    jobs = ctx.shell.jobs
    if spec is None:
        if not jobs:
            raise CommandError("no current job")
        return jobs[-1]
    raw = spec.removeprefix("%")
    if raw in ("+", "%", ""):
        return _job(ctx, None)
    for job in jobs:
        if raw.isdigit() and job.number == int(raw):
            return job
    raise CommandError(f"{spec}: no such job")


@builtin("fg", "bring a job to the foreground: fg [%N]")
def _fg(ctx: CommandContext) -> int:
    job = _job(ctx, ctx.args[0] if ctx.args else None)
    ctx.out(job.source)
    if ctx.shell.terminal is not None:
        ctx.shell.terminal.take_suspend()  # a Ctrl-Z from before is not for this job
    ctx.shell.resume(job)
    return ctx.shell.foreground(job, ctx.stderr)


@builtin("bg", "let a stopped job go on in the background: bg [%N]")
def _bg(ctx: CommandContext) -> int:
    job = _job(ctx, ctx.args[0] if ctx.args else None)
    ctx.out(f"[{job.number}]+ {job.source} &")  # first: what it prints comes after
    ctx.shell.resume(job)
    return 0


@builtin("wait", "wait for background jobs to end: wait [-n] [%N | PID]... (-n: for "
                 "the next one to end, its status; 127 when there is none)")
def _wait(ctx: CommandContext) -> int:
    if ctx.args[:1] == ["-n"]:
        return _wait_next(ctx, ctx.args[1:])
    targets = [_job(ctx, a) for a in ctx.args if a.startswith("%")]
    status = 0
    for arg in ctx.args:
        if arg.startswith("%"):
            continue
        if not arg.isdigit():  # said, as bash says it (it waited for nothing, silently)
            ctx.err(f"'{arg}': not a pid or a job (%N)")
            status = 1
            continue
        jobs = [j for j in ctx.shell.jobs if int(arg) in {p.pid for p in j.processes()}]
        if not jobs:
            ctx.err(f"pid {arg} is not a job of this shell")
            status = 127
        targets += jobs
    if not ctx.args:
        targets = [j for j in ctx.shell.jobs if j.state != "Stopped"]
    for job in targets:
        while not job.done.wait(0.05):
            if ctx.cancelled.is_set():
                return 130
        if ctx.args:  # (with none, wait answers 0 whatever the jobs did, as sh's)
            status = job.status
        if job in ctx.shell.jobs:
            ctx.shell.jobs.remove(job)
    return status


def _wait_next(ctx: CommandContext, args: list[str]) -> int:
    """``wait -n [%N…]``: the first of the jobs (all running ones) to end, out of the
    table, with its status."""
    shell = ctx.shell
    jobs = [_job(ctx, a) for a in args] if args else \
        [j for j in shell.jobs if j.state != "Stopped"]
    if not jobs:
        return 127
    while True:
        done = next((j for j in jobs if j.done.is_set()), None)
        if done is not None:
            if done in shell.jobs:
                shell.jobs.remove(done)
            return done.status
        if ctx.cancelled.wait(0.05):
            return 130


@builtin("disown", "forget jobs: disown [-a] [%N]... (none: the current one; they run "
                   "on, and end with the session)")
def _disown(ctx: CommandContext) -> int:
    shell = ctx.shell
    if ctx.args == ["-a"]:
        gone = list(shell.jobs)
    elif ctx.args:
        gone = [_job(ctx, a) for a in ctx.args]
    elif shell.jobs:
        gone = [shell.jobs[-1]]
    else:
        raise CommandError("current: no such job")
    shell.disowned += [j for j in gone if j in shell.jobs]
    shell.jobs[:] = [j for j in shell.jobs if j not in gone]
    return 0


def _read_secret(ctx: CommandContext, prompt: str) -> str:
    """A password from the terminal (not echoed), or one line of stdin in scripts."""
    if os.isatty(ctx.stdin):
        import getpass

        # getpass reads from the terminal itself; ``stream`` only takes the prompt. Write-only:
        # "r+" on a tty fails ("not seekable"), a buffered read-write file needs seek.
        with open(os.ttyname(ctx.stdin), "w") as tty:
            return getpass.getpass(prompt, stream=tty)
    return read_line(ctx.stdin).decode().rstrip("\n")


def _new_password(ctx: CommandContext) -> str:
    """A new password, typed twice on a terminal (the second, like the first, is read
    here: it never reaches the shell as a command, nor its history)."""
    password = _read_secret(ctx, "New password: ")
    if not password:
        raise CommandError("a password is required")
    if os.isatty(ctx.stdin) and _read_secret(ctx, "Retype new password: ") != password:
        raise CommandError("passwords do not match; nothing changed")
    return password


def _require_root(ctx: CommandContext) -> None:
    if not ctx.shell.session.holds("storage://etc/passwd", "WRITE"):
        raise CommandError("permission denied: only root manages users")


@builtin("useradd", "create a user: useradd NAME (asks for the password)")
def _useradd(ctx: CommandContext) -> int:
    from exo.kernel.users import UserDatabase, UserError

    _require_root(ctx)
    if len(ctx.args) != 1:
        raise CommandError("usage: useradd NAME", 2)
    name = ctx.args[0]
    if not name.isidentifier() or len(name) > 32:  # said before the password is asked
        raise CommandError(f"invalid user name: {name!r} (letters, digits and _, at most "
                           "32, not starting with a digit)")
    if UserDatabase(ctx.shell.kernel.root).get(name) is not None:
        raise CommandError(f"user {name!r} already exists")
    password = _new_password(ctx)
    try:  # the kernel checks the session's set again
        user = ctx.shell.kernel.add_user(_token(ctx), ctx.args[0], password)
    except (UserError, PermissionError) as exc:
        raise CommandError(str(exc)) from None
    ctx.shell.vfs.mkdir(user.home, parents=True)
    ctx.out(f"user {user.name} created (uid {user.uid}, home {user.home})")
    return 0


@builtin("passwd", "change a password: passwd [NAME] (asks twice on a terminal)")
def _passwd(ctx: CommandContext) -> int:
    from exo.kernel.users import UserError

    name = ctx.args[0] if ctx.args else ctx.shell.session.user
    admin = ctx.shell.session.holds("storage://etc/passwd", "WRITE")
    if name != ctx.shell.session.user and not admin:
        _require_root(ctx)
    current = None if admin else _read_secret(ctx, "Current password: ")
    password = _new_password(ctx)
    try:
        ctx.shell.kernel.set_password(_token(ctx), name, password, current)
    except (UserError, PermissionError) as exc:
        raise CommandError(str(exc)) from None
    ctx.out(f"password updated for {name}")
    return 0


def _other_session(ctx: CommandContext, name: str) -> Session:
    """The session of user ``name``, after their password (root needs none): what ``su``
    and ``sudo`` derive, from that user's own capability set."""
    from exo.kernel.users import UserDatabase, UserError
    from exo.shell.session import Session

    kernel = ctx.shell.kernel
    password: str | None = None
    known = UserDatabase(kernel.root).get(name) is not None
    if ctx.shell.session.grants is None and not known:
        raise CommandError(f"user {name!r} does not exist")  # (root may know who exists)
    if ctx.shell.session.grants is not None:
        # Root becomes anyone; anyone else proves they are the user. No password-less
        # accounts here: root's development-mode login is for the console only.
        password = _read_secret(ctx, "Password: ")
    try:  # the kernel decides, and derives the other user's set
        other = kernel.become(_token(ctx), name, password)
    except PermissionError:
        time.sleep(1.0)
        raise CommandError("authentication failure") from None
    except UserError as exc:
        raise CommandError(str(exc)) from None
    return Session.of(kernel, other)


def _token(ctx: CommandContext) -> str:
    """The kernel's name for this shell's session (every shell has one: Shell attaches)."""
    token = ctx.shell.session.token
    if token is None:
        raise CommandError("this shell has no kernel session (the capability space "
                           "did not start)")
    return token


@builtin("su", "become another user (asks their password): su [USER] (default root)")
def _su(ctx: CommandContext) -> int:
    from exo.shell.session import SwitchUser

    raise SwitchUser(_other_session(ctx, ctx.args[0] if ctx.args else "root"))


@builtin("sudo", "run one command as another user (asks their password): "
                 "sudo [-u USER] COMMAND...")
def _sudo(ctx: CommandContext) -> int:
    import shlex

    from exo.shell.session import ShellExit

    args = list(ctx.args)
    name = "root"
    if args[:1] == ["-u"]:
        if len(args) < 2:
            raise CommandError("-u needs a user name", 2)
        name, args = args[1], args[2:]
    if not args:
        raise CommandError(f"usage: {HELP['sudo']}", 2)
    other = ctx.shell.as_session(_other_session(ctx, name))
    try:
        return other.run_line(shlex.join(args), ctx.stdin, ctx.stdout, ctx.stderr)
    except ShellExit as exc:
        return exc.status
    finally:
        other.close_fds()
        other.session.end()  # the command's session ends with it


#: The words the shell's grammar reads itself (``type`` names them, as bash does).
KEYWORDS = frozenset({"if", "then", "elif", "else", "fi", "for", "while", "until", "do",
                      "done", "case", "esac", "in", "function", "{", "}", "!", "[[", "]]",
                      "time"})


@builtin("type", "say what a command name runs: type NAME...")
def _type(ctx: CommandContext) -> int:
    from exo.shell.powerbox import Powerbox

    status = 0
    args = list(ctx.args)
    if args[:1] == ["-t"]:  # one word each: alias, keyword, function, builtin, file
        for name in args[1:]:
            kind = "alias" if name in ctx.shell.aliases else "keyword" if \
                name in KEYWORDS else "function" if \
                name in ctx.shell.functions else "builtin" if name in ctx.shell.builtins \
                else "file" if _command_v(ctx, name) is not None else ""
            if kind:
                ctx.out(kind)
            else:
                status = 1
        return status
    for name in args:
        if name in ctx.shell.aliases:
            ctx.out(f"{name} is aliased to '{ctx.shell.aliases[name]}'")
        elif name in KEYWORDS:
            ctx.out(f"{name} is a shell keyword")
        elif name in ctx.shell.functions:
            from exo.shell.printer import function_text

            ctx.out(f"{name} is a function")
            ctx.out(function_text(name, ctx.shell.functions[name]))
        elif name in ctx.shell.builtins:
            ctx.out(f"{name} is a shell builtin")
        elif (app := ctx.shell.find_app(name)) is not None:  # (as the shell looks)
            ctx.out(f"{name} is /exo/bin/{app.name} (package {app.name} {app.version}: "
                    "its manifest's capabilities)")
        elif (program := ctx.shell.find_program(name)) is not None:
            ctx.out(f"{name} is {program} (in the Exo tree: its directory read-write)")
        elif (host := Powerbox.find(name)) is not None:
            known = name.rsplit("/", 1)[-1] in Powerbox.for_shell(ctx.shell).policies
            ctx.out(f"{name} is {host} (through the powerbox: "
                    f"{'the files its arguments name' if known else 'its directory read-only'})")
        else:
            ctx.err(f"{name}: not found")
            status = 1
    return status


@builtin("alias", "define or list aliases: alias [NAME=VALUE]...")
def _alias(ctx: CommandContext) -> int:
    aliases = ctx.shell.aliases
    if not ctx.args:
        for name in sorted(aliases):
            ctx.out(f"alias {name}='{aliases[name]}'")
        return 0
    status = 0
    for arg in ctx.args:
        name, sep, value = arg.partition("=")
        if sep:
            aliases[name] = value
        elif name in aliases:
            ctx.out(f"alias {name}='{aliases[name]}'")
        else:
            ctx.err(f"{name}: not found")
            status = 1
    return status


@builtin("unalias", "remove aliases: unalias NAME...")
def _unalias(ctx: CommandContext) -> int:
    for name in ctx.args:
        if ctx.shell.aliases.pop(name, None) is None:
            raise CommandError(f"{name}: not found")
    return 0


@builtin("source", "run the commands of a file in this shell: source FILE [ARGS...] "
         "(ARGS: its $1...)")
def _source(ctx: CommandContext) -> int:
    from exo.shell.flow import Frame, FunctionReturn

    if not ctx.args:
        raise CommandError("usage: source FILE [ARGS...]", 2)
    # At most 1 MiB: a script's words cost the kernel ~70 times their bytes to parse (a
    # 16 MiB one held 1.1 GiB, a hostile review).
    text = without_nul(ctx.shell.vfs.read_bytes(ctx.path(ctx.args[0]), limit=SCRIPT_MAX)
                       .decode(errors="replace"))
    shell, flow = ctx.shell, ctx.shell.flow
    frames = [Frame(ctx.args[1:])] if len(ctx.args) > 1 else []
    flow.frames += frames
    flow.returnable += 1
    try:
        return shell.run_line(text, ctx.stdin, ctx.stdout, ctx.stderr)
    except FunctionReturn as ret:  # `return` ends the file
        if ret.status is not None:
            shell.last_status = ret.status
        return shell.last_status
    finally:
        flow.returnable -= 1
        if frames:
            flow.frames.pop()


BUILTINS["."] = _source
HELP["."] = HELP["source"]


# The builtins that look at the system (posix-x, top, sched) register themselves here.
from exo.shell import tools as _tools  # noqa: E402, F401
