"""The shell's control flow beyond ``if`` and loops: functions and their positional
parameters (``$1``, ``$#``, ``$@``, ``shift``, ``set --``, ``local``, ``return``), and
``break``/``continue``.

Each thread the shell runs a line on (its own, a pipeline stage's, a background job's)
has its own stack of calls (:class:`Flow`, thread-local), so that a function running as
one stage of a pipeline does not see the arguments of another. A call's ``local``
variables are the shell's variables, given back their values when it returns, as in
bash (dynamic scope). ``break``, ``continue`` and ``return`` unwind with exceptions that
are not ``Exception``s, so that no builtin's error handling takes them for a failure;
each is raised only where something catches it (a loop, a call, ``source``), and said
as an error elsewhere.
"""

from __future__ import annotations

import threading

from exo.shell.builtins import BUILTINS, HELP, builtin
from exo.shell.context import CommandContext, CommandError

#: Calls nested at most (``f() { f; }`` would recurse until the kernel's thread ran out
#: of stack; bash's own bound is FUNCNEST, unset by default).
MAX_FUNCTION_DEPTH = 100
#: Functions a session defines at most (each holds its parsed body in the kernel).
MAX_FUNCTIONS = 1024


class Frame:
    """One function call (or ``source FILE ARGS``): its arguments, and the values its
    ``local`` variables hid (None: the variable was not set)."""

    __slots__ = ("args", "hidden", "integers", "marked", "name")

    def __init__(self, args: list[str], name: str = "") -> None:
        self.args = args
        self.name = name  # the function's ("": a sourced file, a piped block)
        self.hidden: dict[str, str | None] = {}
        self.marked: set[str] = set()  # its locals made read-only: unmarked at return
        self.integers: set[str] = set()  # its locals made integers (-i): the same


class LoopControl(BaseException):
    """``break N`` / ``continue N``: caught by the enclosing loop, N loops out."""

    def __init__(self, kind: str, levels: int) -> None:
        self.kind, self.levels = kind, levels


class FunctionReturn(BaseException):
    """``return [N]``: caught by the function call or ``source`` it ends."""

    def __init__(self, status: int | None) -> None:
        self.status = status


class ErrExit(BaseException):
    """``set -e``: a command failed outside a condition; the line (or the sourced file)
    ends there with its status. A BaseException: no builtin's error handling takes it
    for a failure of its own."""

    def __init__(self, status: int) -> None:
        self.status = status


class Flow(threading.local):
    """One thread's calls and loops. ``loops`` and ``returnable`` count what a
    ``break`` or ``return`` would end; in a ``$(...)`` either ends the substitution
    instead (sh's subshell: ``$(break)`` ends no loop of the line around it)."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.loops = 0
        self.returnable = 0
        self.substituted = 0  # the status of the last $(...) of the command being expanded
        self.substitutions = 0  # how many $(...) it has run so far
        self.conditions = 0  # how deep in an if's or a loop's condition (set -e)
        self.negated = False  # the last list item ran as `! PIPELINE` (set -e)
        self.reruns = 0  # eval, command and env running a line inside one another
        self.rerun_bytes = 0  # the bytes of lines they parsed again, since the outermost


def _count(ctx: CommandContext, what: str) -> int:
    if not ctx.args:
        return 1
    if len(ctx.args) > 1 or not ctx.args[0].isdigit() or int(ctx.args[0]) < 1:
        raise CommandError(f"{ctx.args[0]}: {what} count out of range", 1)
    return int(ctx.args[0])


@builtin("break", "leave the enclosing for, while or until loop: break [N] (N loops)")
def _break(ctx: CommandContext) -> int:
    return _leave(ctx, "break")


@builtin("continue", "go on with the next round of the enclosing loop: continue [N]")
def _continue(ctx: CommandContext) -> int:
    return _leave(ctx, "continue")


def _leave(ctx: CommandContext, kind: str) -> int:
    levels = _count(ctx, "loop")
    loops = ctx.shell.flow.loops
    if loops == 0:
        ctx.err("only meaningful in a for, while or until loop")
        return 0
    raise LoopControl(kind, min(levels, loops))


@builtin("return", "end the function (or the sourced file) with a status: return [N]")
def _return(ctx: CommandContext) -> int:
    if ctx.shell.flow.returnable == 0:
        raise CommandError("can only return from a function or a sourced file", 1)
    if ctx.args and not ctx.args[0].lstrip("-").isdigit():
        raise CommandError(f"{ctx.args[0]}: numeric argument required", 2)
    raise FunctionReturn(int(ctx.args[0]) & 0xFF if ctx.args else None)


@builtin("local", "a variable of this function call alone: local [-r] [-x] [-a] "
         "NAME[=VALUE]... (NAME=(WORDS...): an array)")
def _local(ctx: CommandContext) -> int:
    if not ctx.shell.flow.frames:
        raise CommandError("can only be used in a function", 1)
    flags, names = _attribute_flags(ctx.args, "rxiA")
    return _assign(ctx, names, flags, local=True)


def _attribute_flags(args: list[str], allowed: str) -> tuple[set[str], list[str]]:
    """``declare``'s and ``local``'s leading ``-rx…`` letters (of ``allowed``), and the
    rest."""
    args = list(args)
    flags: set[str] = set()
    while args and args[0][:1] in ("-", "+") and len(args[0]) > 1 and args[0] != "--":
        arg = args.pop(0)
        for letter in arg[1:]:
            if letter == "a":  # an indexed array: made by NAME=(…) (exo.shell.arrays)
                continue
            if letter not in allowed or arg[0] == "+":
                raise CommandError(f"{arg[0]}{letter}: invalid option", 2)
            flags.add(letter)
    return flags, args[args[:1] == ["--"]:]


def _assign(ctx: CommandContext, args: list[str], flags: set[str], *, local: bool) -> int:
    """Set each ``NAME[=VALUE]`` of ``args``: in this function call alone (``local``),
    exported (``x``), read-only (``r``), an integer (``i``: each value assigned is
    evaluated as arithmetic), an associative array (``A``)."""
    from exo.shell import arrays

    shell = ctx.shell
    env = shell.env
    frame = shell.flow.frames[-1] if local else None
    status = 0
    for arg in args:
        name, eq, value = arg.partition("=")
        if eq and name.endswith("+") and name[:-1].isidentifier():  # declare x+=v
            name = name[:-1]  # (a new local starts empty: `local x+=v` is v, as bash's)
            value = shell.appended(name, value) if frame is None else value
        if not name.isidentifier():
            ctx.err(f"'{arg}': not a valid identifier")
            status = 1
            continue
        if name in env.readonly and (eq or frame is not None):
            ctx.err(f"{name}: readonly variable")
            status = 1
            continue
        if "i" in flags and name not in env.integers:  # its values are arithmetic
            if frame is not None:
                frame.integers.add(name)
            env.integers.add(name)
        if "A" in flags:  # an associative array (its elements: NAME=([KEY]=VALUE …))
            current = env.get(name) if frame is None else None
            if arrays.is_array(current) and not arrays.is_assoc(current):
                ctx.err(f"{name}: cannot convert an indexed array to an associative one")
                status = 1
                continue
            if frame is not None:
                frame.hidden.setdefault(name, env.get(name))
            if not arrays.is_assoc(current) or eq:
                env[name] = arrays.encode_assoc({"0": value} if eq else {})
        elif frame is not None:
            frame.hidden.setdefault(name, env.get(name))
            env[name] = value if eq else env.get(name, "")
        elif eq:
            env[name] = value
        if "x" in flags:
            shell.exported.add(name)
            env.setdefault(name, "")
        if "r" in flags:
            if frame is not None and name not in env.readonly:
                frame.marked.add(name)
            env.readonly.add(name)
    return status


@builtin("declare", "set variables and their attributes: declare [-r] [-x] [-i] [-g] [-a] "
         "NAME[=VALUE]... (in a function, of that call alone, unless -g; NAME=(WORDS...): "
         "an indexed array; -A NAME: an associative one, NAME=([KEY]=VALUE...)); declare -p "
         "[NAME...] shows them, declare -f [NAME...] the functions' definitions, declare -F "
         "their names; -i: each value assigned is evaluated as arithmetic, n=n+1)")
def _declare(ctx: CommandContext) -> int:
    from exo.shell import arrays

    flags, names = _attribute_flags(ctx.args, "rxigpfFA")
    shell = ctx.shell
    if "f" in flags or "F" in flags:  # the functions: their definitions, or names (-F)
        from exo.shell.printer import function_text

        wanted = names or sorted(shell.functions)
        for name in wanted:
            if name in shell.functions:
                ctx.out(f"declare -f {name}" if "F" in flags
                        else function_text(name, shell.functions[name]))
        return 0 if all(n in shell.functions for n in wanted) else 1
    if "p" in flags or not names:
        env, status = shell.env, 0
        for name in names or sorted(env):
            if name not in env and name in env.integers:  # (marked, no value yet)
                ctx.out(f"declare -i {name}")
                continue
            if name not in env:
                ctx.err(f"{name}: not found")
                status = 1
                continue
            marks = ("i" if name in env.integers else "") + \
                ("r" if name in env.readonly else "") + \
                ("x" if name in shell.exported else "")
            if arrays.is_array(env[name]):
                marks = ("A" if arrays.is_assoc(env[name]) else "a") + marks
            ctx.out(f"declare -{marks or '-'} {arrays.shown(name, env[name])}")
        return status
    return _assign(ctx, names, flags, local=bool(shell.flow.frames) and "g" not in flags)


BUILTINS["typeset"] = BUILTINS["declare"]
HELP["typeset"] = HELP["declare"]


@builtin("shift", "drop the first N positional parameters ($1...): shift [N]")
def _shift(ctx: CommandContext) -> int:
    count = int(ctx.args[0]) if ctx.args and ctx.args[0].isdigit() else None
    if ctx.args and count is None:
        raise CommandError(f"{ctx.args[0]}: numeric argument required", 2)
    args = ctx.shell.positional()
    count = 1 if count is None else count
    if count > len(args):
        raise CommandError("shift count out of range", 1)
    del args[:count]
    return 0


PIPEFAIL = "pipefail"
#: ``set -o NAME``'s names for the options ``set`` takes: their letters in
#: ``Shell.options`` (pipefail has none: its whole name, which ``$-`` leaves out).
OPTIONS = {"errexit": "e", "nounset": "u", "xtrace": "x", "pipefail": PIPEFAIL}


@builtin("set", "shell options and positional parameters: set [-e|+e] [-u|+u] [-x|+x] "
         "[-o errexit|nounset|xtrace|pipefail] [-- ARGS...]; alone, list the variables "
         "(-e: a failing command ends the line or script; -u: so does an unset variable; "
         "-x: each command is shown as it runs; pipefail: a pipeline fails when any of "
         "its commands does)")
def _set(ctx: CommandContext) -> int:
    if not ctx.args:
        env = ctx.shell.env
        from exo.shell import arrays

        ctx.write("".join((arrays.shown(name, env[name]) if arrays.is_array(env[name])
                           else f"{name}={env[name]}") + "\n" for name in sorted(env)))
        return 0
    args = list(ctx.args)
    options = ctx.shell.options
    if args in (["-o"], ["+o"]):  # the options, as bash lists them (+o: as commands)
        for name, letter in OPTIONS.items():
            on = letter in options
            ctx.out(f"{name:<15} {'on' if on else 'off'}" if args == ["-o"]
                    else f"set {'-' if on else '+'}o {name}")
        return 0
    while args and args[0][:1] in ("-", "+") and args[0] not in ("--", "-", "+"):
        arg = args.pop(0)
        letters: list[str] = []
        for letter in arg[1:]:  # (set -euo pipefail: -o takes the next word)
            if letter == "o":
                if not args or args[0] not in OPTIONS:
                    raise CommandError(f"-o: one of {', '.join(OPTIONS)} expected", 2)
                letters.append(OPTIONS[args.pop(0)])
            elif letter in ("e", "u", "x"):
                letters.append(letter)
            else:
                raise CommandError(f"{arg[0]}{letter}: not supported (set -e, -u, -x, "
                                   "-o NAME, -- ARGS)", 2)
        for letter in letters:
            (options.add if arg[0] == "-" else options.discard)(letter)
    if args[:1] in (["--"], ["-"]):
        positional = ctx.shell.positional()
        positional[:] = args[1:]
    elif args:
        raise CommandError(f"{args[0]}: not supported (set -- ARGS sets $1...)", 2)
    return 0


@builtin("getopts", "parse a script's options, one a call: getopts OPTSTRING NAME [ARGS...] "
         "(OPTIND: the next argument; OPTARG: the option's value; a leading ':' in "
         "OPTSTRING: say nothing of errors)")
def _getopts(ctx: CommandContext) -> int:
    if len(ctx.args) < 2:
        raise CommandError("usage: getopts OPTSTRING NAME [ARGS...]", 2)
    spec, name, *given = ctx.args
    if not name.isidentifier():
        raise CommandError(f"'{name}': not a valid identifier", 2)
    shell, env = ctx.shell, ctx.shell.env
    args = given or shell.positional()
    silent, spec = spec.startswith(":"), spec.removeprefix(":")
    try:
        index = max(int(env.get("OPTIND", "1")), 1)
    except ValueError:
        index = 1
    # Where in a cluster of flags (-abc) the last call stopped: sh keeps it hidden,
    # and a script that sets OPTIND=1 again starts over.
    char = shell.getopts_at[1] if shell.getopts_at[0] == index else 1
    env.pop("OPTARG", None)
    word = args[index - 1] if index <= len(args) else ""
    if not word.startswith("-") or word == "-" or word == "--":
        if word == "--":
            index += 1
        env["OPTIND"], env[name] = str(index), "?"
        shell.getopts_at = (0, 1)
        return 1
    letter = word[char]
    char += 1
    if char >= len(word):
        index, char = index + 1, 1
    env[name] = letter
    if letter not in spec or letter == ":":
        env[name] = "?"
        if silent:
            env["OPTARG"] = letter
        else:
            ctx.err(f"illegal option -- {letter}")
    elif spec[spec.index(letter) + 1:spec.index(letter) + 2] == ":":
        if char > 1:  # the rest of this word is its value (-fFILE)
            env["OPTARG"], index, char = word[char:], index + 1, 1
        elif index <= len(args):
            env["OPTARG"], index = args[index - 1], index + 1
        elif silent:
            env[name], env["OPTARG"] = ":", letter
        else:
            env[name] = "?"
            ctx.err(f"option requires an argument -- {letter}")
    env["OPTIND"] = str(index)
    shell.getopts_at = (index, char)
    return 0


#: The signals a trap may name, and what happens to one set: INT's command runs when a
#: Ctrl-C ends the line or script it interrupted (the job died of it); the others are
#: kept and listed (scripts set them beside EXIT) but never run: the shell is a thread
#: of the kernel, and a signal goes to the job that runs, never to the shell.
TRAPPABLE = {"EXIT": 0, "HUP": 1, "INT": 2, "QUIT": 3, "USR1": 10, "USR2": 12,
             "PIPE": 13, "ALRM": 14, "TERM": 15}


def trap_name(spec: str) -> str | None:
    """``spec`` (INT, SIGINT, int, 2, EXIT, 0) as ``TRAPPABLE`` names it, else None."""
    name = spec.upper().removeprefix("SIG")
    if name in TRAPPABLE:
        return name
    by_number = {str(n): k for k, n in TRAPPABLE.items()}
    return by_number.get(spec)


@builtin("trap", "run a command when the shell ends (EXIT: a script, a session, a "
         "subshell) or when a Ctrl-C ends what runs (INT): trap COMMAND SIGNAL...; "
         "trap - SIGNAL forgets it; trap alone or trap -p [SIGNAL...] lists them (HUP, "
         "QUIT, TERM, USR1, USR2, PIPE and ALRM are kept but never run: signals go to the "
         "job, not the shell)")
def _trap(ctx: CommandContext) -> int:
    import shlex

    traps = ctx.shell.traps
    args = list(ctx.args)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args or args[0] == "-p":  # trap -p [SIGNAL...]: those only
        wanted = None
        if args[1:]:
            wanted = {trap_name(sig) for sig in args[1:]}
            if None in wanted:
                raise CommandError(f"invalid signal specification (one of "
                                   f"{' '.join(TRAPPABLE)})", 1)
        for sig, command in traps.items():
            if wanted is None or sig in wanted:
                ctx.out(f"trap -- {shlex.quote(command)} {sig}")
        return 0
    if len(args) < 2:
        raise CommandError("usage: trap COMMAND SIGNAL...", 2)
    command, *signals = args
    names = []
    for sig in signals:
        name = trap_name(sig)
        if name is None:
            raise CommandError(f"{sig}: invalid signal specification (one of "
                               f"{' '.join(TRAPPABLE)})", 1)
        names.append(name)
    for name in names:
        if command == "-":
            traps.pop(name, None)
        else:
            traps[name] = command  # ("": nothing runs for it)
    return 0


#: ``shopt``'s options this shell has; bash's others are refused by name.
SHOPT = {"dotglob": "a pattern matches names that start with a dot too",
         "nullglob": "a pattern that matches nothing is no word (not itself)"}


@builtin("shopt", "bash's glob options: shopt -s|-u [-q] NAME... sets or unsets them, "
         "shopt [-p] [NAME...] shows them, shopt -q NAME... answers by its status alone "
         f"({', '.join(f'{k}: {v}' for k, v in SHOPT.items())})")
def _shopt(ctx: CommandContext) -> int:
    args = list(ctx.args)
    mode, quiet, printed = "", False, False
    while args and args[0].startswith("-") and len(args[0]) > 1:
        for letter in args.pop(0)[1:]:
            if letter in "su" and mode in ("", letter):
                mode = letter
            elif letter == "q":
                quiet = True
            elif letter == "p":
                printed = True
            else:
                raise CommandError(f"-{letter}: invalid option (shopt -s|-u [-q] [-p] "
                                   "[NAME...])", 2)
    for name in args:
        if name not in SHOPT:
            raise CommandError(f"{name}: not an option this shell has (it has "
                               f"{', '.join(SHOPT)})", 1)
    shopt = ctx.shell.shopt
    if mode == "s":
        shopt.update(args)
        return 0
    if mode == "u":
        shopt.difference_update(args)
        return 0
    names = args or list(SHOPT)
    if not quiet:
        for name in names:
            on = name in shopt
            ctx.out(f"shopt -{'s' if on else 'u'} {name}" if printed
                    else f"{name:<15} {'on' if on else 'off'}")
    return 0 if not args or all(n in shopt for n in names) else 1  # (listing all: 0)
