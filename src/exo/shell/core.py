"""The Exo shell: runs command lists, pipelines and redirections.

Builtins run as Python functions (in the shell's thread when alone, in threads when
part of a pipeline), wired with real OS pipes so that builtins and sandboxed
processes compose the same way. Ctrl-C cancels the foreground pipeline only.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import functools
import os
import posixpath
import re
import shlex
import signal
import threading
import time

from exo import _threadcache
from exo.shell.arrays import ELEMENTS, is_array
from exo.shell.arrays import scalar as _scalar
from exo.shell.context import MAX_LINE, CommandContext, CommandError, without_nul
from exo.shell.flow import (
    MAX_FUNCTION_DEPTH,
    MAX_FUNCTIONS,
    PIPEFAIL,
    ErrExit,
    Flow,
    Frame,
    FunctionReturn,
    LoopControl,
)
from exo.shell.jobs import Job, ShellJob, Stage
from exo.shell.parser import (
    ASSIGN,
    NAMES_QUERY,
    PROCESS_SUBSTITUTION,
    READS_STDIN,
    SET_QUERY,
    Command,
    IncompleteInput,
    ParseError,
    Pipeline,
    UnsetError,
    Word,
    current_ifs,
    parse_pipeline,
    posix_classes,
    split_list,
)
from exo.shell.session import Logout, Session, ShellExit, SwitchUser
from exo.shell.variables import Variables
from exo.shell.vfs import ListingTooLong, Vfs, VfsError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from typing import Any

    from exo.kernel.api import KernelApi
    from exo.kernel.manifest import Grant
    from exo.kernel.process import ExoProcess
    from exo.pkg.installed import InstalledApp
    from exo.shell.parser import Case, Group, If, ListItem, Loop, Node
    from exo.shell.sink import FileSink
    from exo.shell.terminal import Terminal
    from exo.shell.timing import Timer

    Builtin = Callable[[CommandContext], int]


#: Where installed packages' launchers are (``exo.pkg.store``): a command found there
#: that the current generation names starts the package's entry under its manifest.
PACKAGE_BIN = "/exo/bin"
NOT_FOUND = 127
INTERRUPTED = 130


STOPPED = 128 + signal.SIGTSTP
EX_SOFTWARE = 70  # an internal error (sysexits.h)
#: ``/dev/stdin``, ``/dev/stdout``, ``/dev/stderr`` in a redirection: that stream.
_STREAMS = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}
#: ``$(...)`` runs at most this deep (bash's own limit is the stack; ours is the kernel's).
MAX_SUBSTITUTION_DEPTH = 32
#: Lines of a session's history kept in the kernel (sh's HISTSIZE).
HISTORY_KEPT = 1000
#: A session's jobs (background or stopped) at most. Builtins and a job's waiter are
#: threads of the kernel: 1,200 `sleep 1000 &` made every other command take seconds
#: (a hostile review); a program's are processes, bounded by the kernel's own counts too.
MAX_JOBS = 64
#: Process substitutions (``<(LIST)``) running at once in a session (its shell and the
#: copies that run background blocks and other substitutions share the budget).
MAX_PIPES = 64
#: Redirections of one command at most (each into a file is a thread: exo.shell.sink),
#: of a session's jobs at once, and the descriptors a session's jobs hold at once (pipes
#: and redirections): 64 jobs of 128 stages of 16 redirections took 20,000 of the
#: kernel's descriptors, and root's next command failed (a hostile review).
MAX_REDIRECTS = 16
MAX_SINKS = 64
#: Descriptors a shell holds of its own (``exec 3> f``), at most.
MAX_SHELL_FDS = 32
MAX_SESSION_FDS = 1024
#: Glob patterns of one command at most, and what its words may expand to (execve's own
#: bound is about this: ARG_MAX).
MAX_GLOBS = 64
MAX_ARGV_BYTES = 2 << 20
#: Commands of one pipeline at most (a builtin stage is a thread, a program's a process:
#: 30,000 `cat |` stages held every kernel thread back for 8 s).
MAX_STAGES = 128
#: Builtins that end or change the session: never a background job's.
SESSION_BUILTINS = frozenset({"shutdown", "exit", "logout", "su"})
#: Builtins that start a program and wait: they run as jobs even alone.
#: (And `sleep`: a job, so that Ctrl-Z stops it and gives the prompt back, as bash's
#: /bin/sleep.)
JOB_BUILTINS = frozenset({"run", "sleep"})
#: Builtins that read the terminal themselves when it is their input: while they run the
#: shell keeps the terminal (reading it from a background process group would stop us).
#: The variables the shell computes when read (``Shell._dynamic``): always set.
DYNAMIC = frozenset({"RANDOM", "UID", "EUID", "SECONDS", "HOSTNAME", "FUNCNAME",
                     "PIPESTATUS", "LINENO"})
#: ``NAME=(…)`` and ``NAME+=(…)``: bash's array assignment (after ``local``/``declare``).
_ARRAY = re.compile(r"\s*((?:local|declare|typeset|readonly|export)(?:\s+-\w+)*\s+)?"
                    r"([A-Za-z_][A-Za-z0-9_]*)(\+?)=\(")
#: ``$(< FILE)``: bash's shortcut for ``$(cat FILE)``.
_READ_FILE = re.compile(r"\s*<\s*[^\s<>|;&()]+\s*")
#: ``NAME[SUBSCRIPT]=VALUE``: one element.
#: (SUBSCRIPT may hold ``${#a[@]}`` or ``$((i-1))``; each character has one way to match,
#: so a line of many ``${`` cannot make the match backtrack without end)
_ELEMENT = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)"
                      r"\[((?:\$\{[^}]*\}|\$\([^)]*\)|\$(?![{(])|[^\]$])+)\]=")
#: ``[KEY]=VALUE``, a word of ``NAME=(…)``: an element and where it goes.
_KEYED = re.compile(r"\[([^\]]*)\]=(.*)", re.DOTALL)
#: ``time [-p] PIPELINE`` (bash's reserved word; ``-p``: POSIX's layout)
_TIMED = re.compile(r"time(?:[ \t]+(-p))?(?=[ \t]|$)")
#: How long Ctrl-Z waits for a job's programs to stop themselves on SIGTSTP.
STOP_GRACE_S = 0.5
READS_TERMINAL = frozenset({"cat", "head", "tail", "wc", "grep", "passwd", "useradd", "su",
                            "sudo", "read", "source", ".", "fg", "top", "mapfile",
                            "readarray"})


class Shell:
    def __init__(self, kernel: KernelApi, vfs: Vfs, session: Session | None = None) -> None:
        from exo.shell.builtins import BUILTINS

        self.kernel = kernel  # all the shell reaches of the kernel: its API
        self.session = session or Session()
        # The kernel keeps the session: what it holds is the kernel's answer, and every
        # process started here is derived from it (a kernel with no capability space
        # cannot start processes anyway: the shell then checks alone).
        with contextlib.suppress(LookupError):
            self.session.attach(kernel)
        self._tree = vfs  # the whole tree, for `sudo`'s shell; ours is `self.vfs`
        # A user's shell sees the tree through the session's capabilities; root's, whole.
        # (Its /tmp is the user's own, as the kernel's for the user's processes.)
        self.vfs = vfs.own() if self.session.grants is None else vfs.restricted(
            self.session.check_path, None if self.session.uid == 0 else self.session.user)
        self.builtins: dict[str, Builtin] = dict(BUILTINS)
        self.cwd = self.session.home if self.vfs.is_dir(self.session.home) else "/"
        self.env = Variables({
            "HOME": self.session.home,
            "USER": self.session.user,
            "PATH": "/bin:/usr/bin:/exo/bin",
            "PWD": self.cwd,
            "SHELL": "/bin/exosh",
        })
        if self.session.grants is None:
            self.env["EXO_ROOT"] = str(kernel.root)
        self.env.readonly |= {"UID", "EUID"}  # the session's, as sh's: `UID=0` is refused
        #: The variables programs get (``export``; the kernel sets HOME, PATH, TERM and
        #: LANG of its own, inside the program's view), with a command's ``NAME=value``.
        self.exported: set[str] = {"HOME", "USER", "PWD"}
        #: What ``ulimit`` changed of the limits programs start with: resource ->
        #: (soft, hard), -1 unlimited (``exo.shell.ulimit``).
        self.rlimits: dict[int, tuple[int, int]] = {}
        self.env.evaluate = self._integer_value  # (`declare -i`'s variables)
        #: ``set -e``, ``${x?}`` or ``set -u`` ended the last outermost line (a script then
        #: ends: ``run_script``; an interactive session goes on).
        self.ends_script = False
        self.aliases: dict[str, str] = {}
        self.last_status = 0
        self.history: list[str] = []
        self.jobs: list[Job] = []
        #: Jobs ``disown`` took out of the table: still bounded by MAX_JOBS, still ended
        #: with the session (their capabilities are the session's)
        self.disowned: list[Job] = []
        #: The background jobs of this shell and of all its copies (a background block
        #: starts its own: nested, 64 each made 64^depth threads), MAX_JOBS in all
        self._live_jobs: list[Job] = []
        self._live_lock = threading.Lock()
        #: The sinks open in this shell and its copies (MAX_SINKS in all: a thread each)
        self._sink_total = [0]
        self.functions: dict[str, Group] = {}  # NAME() { ...; }
        self.script_args: list[str] = []  # $1... outside any function call (set --)
        self.last_background = ""  # $!: the pid of the last background job's program
        self.flow = Flow()  # this thread's calls and loops (exo.shell.flow)
        # Piped and background blocks, starting: the block, its $1…, the shell running it.
        self._blocks: dict[str, tuple[Group, list[str], Shell]] = {}
        self._timers: list[Timer] = []  # the `time`d commands running (exo.shell.timing)
        #: pushd's directories, the most recent first, below the working directory
        self.dirstack: list[str] = []
        #: The <(LIST)s running, this shell's and its copies' (one budget: a function
        #: calling itself through <(…) would otherwise make threads without end).
        self._producers = threading.BoundedSemaphore(MAX_PIPES)
        self.terminal: Terminal | None = None  # set by the interactive front end
        self._warned_jobs = False
        self._depth = threading.local()  # how deep in $(...) this thread's line runs
        self._plain = threading.local()  # `command NAME`: NAME skips functions (.name)
        self.subshells = 0  # how deep in ( ... ) the shell runs (`exit` ends the innermost)
        #: A background block's shell (_copy): its job's cancel event (`kill %N`, Ctrl-C
        #: after `fg`), which every job it runs shares and its lists check between commands.
        self.cancel_on: threading.Event | None = None
        self.started = time.monotonic()  # ($SECONDS)
        self.options: set[str] = set()  # set -e (errexit), set -x (xtrace)
        self.shopt: set[str] = set()  # bash's glob options on (`shopt -s`: nullglob...)
        self.getopts_at = (0, 1)  # getopts: (OPTIND, the character in that word) it left
        self.traps: dict[str, str] = {}  # trap CMD EXIT: what runs when the shell ends
        self.hinted: set[str] = set()  # programs the powerbox said how to grant more to
        self._lock = threading.Lock()
        # A redirection's pipe into its file (exo.shell.sink), by the descriptor the
        # command writes to: settled (drained into the file) when that is closed.
        # With each, where the line's errors go (its error is said there: exo.shell.sink).
        self._sinks: dict[int, tuple[FileSink, int]] = {}
        #: The shell's own descriptors by number (``exec 3> f``: 3 and up, for every later
        #: command's ``>&3`` or ``read -u 3``; ``exec > log``: 0, 1, 2 for what follows)
        self.fds: dict[int, int] = {}
        self._owned: list[int] = []  # what `exec` opened or copied for them, to close
        #: One budget of MAX_SHELL_FDS for `_owned` across this shell and its copies
        #: (background blocks each held 32 more, and a sink thread each: a review)
        self._fd_slots = threading.BoundedSemaphore(MAX_SHELL_FDS)
        self._fds_saved: list[dict[int, int]] = []  # the maps of the subshells it is in
        self._superseded: set[int] = set()  # `exec > a; exec > b` in a line: a, kept open
        #: The last pipeline's statuses, a command each (bash's PIPESTATUS); None: the
        #: last command was no pipeline the shell ran (``$?`` alone then)
        self.pipestatus: list[int] | None = None
        self._lines = 0  # lines the session (or script) ran so far, for $LINENO
        self.lineno = 0  # the line the command running starts on ($LINENO)

    @property
    def whole_tree(self) -> Vfs:
        """The tree as the kernel sees it, whatever the session holds: for what the
        system reads on a user's behalf (the administrator's powerbox policy)."""
        return self._tree

    def as_session(self, session: Session) -> Shell:
        """A shell for ``session`` in this one's working directory (``sudo``)."""
        other = type(self)(self.kernel, self._tree, session)
        if other.vfs.is_dir(self.cwd):
            other.cwd = other.env["PWD"] = self.cwd
        other.terminal = self.terminal
        return other

    # ------------------------------------------------------------------ api
    def lookup(self, name: str) -> str:
        target, assigning, assigned = name.partition(ASSIGN)
        if assigning and target.isidentifier():
            # ${x:=WORD} (first: the value may end like a query, "set"); only ever for
            # a name the parser checked, never for text a user spelled with NULs
            self.env[target] = assigned
            return assigned
        if name.endswith(NAMES_QUERY):  # ${!PREFIX*}
            self.between_steps()  # (a scan of every name: a line may hold many)
            prefix = name[:-len(NAMES_QUERY)]
            return " ".join(sorted(n for n in self.env if n.startswith(prefix)))
        if name.endswith(SET_QUERY):  # "1" when set (even to ""), else "": ${x-…}, ${x?}
            base = name[:-len(SET_QUERY)]
            if base.isdigit() and base != "0":
                return "1" if _position(base) <= len(self.positional()) else ""
            return "1" if base in "#?$!@*0-" or base in self.env or base in DYNAMIC else ""
        if name.endswith(ELEMENTS):  # ${a[…]}: the elements (exo.shell.arrays)
            from exo.shell import arrays

            base = name[:-len(ELEMENTS)]
            if base == "FUNCNAME" and base not in self.env:
                return arrays.encode(dict(enumerate(self._function_names())))
            if base == "PIPESTATUS" and base not in self.env:
                return arrays.encode(dict(enumerate(self._pipestatus())))
            value = self.env.get(base)
            if value is not None and is_array(value):
                return value  # (as it is: a read of ${a[i]} copies nothing)
            return arrays.encode(arrays.decode(value))
        if name == "?":  # (after a $(…) of the same command: its status, as in sh)
            flow = self.flow
            return str(flow.substituted if flow.substitutions else self.last_status)
        if name == "$":
            return str(os.getpid())
        if name == "!":
            return self.last_background
        if name == "-":  # the options set, and "i" in an interactive session, as in sh
            return "".join(sorted(o for o in self.options if len(o) == 1)) + \
                ("i" if self.terminal is not None else "")
        if name == "0":
            return "exosh"
        if name.isdigit():
            args = self.positional()
            if _position(name) <= len(args):
                return args[_position(name) - 1]
            if "u" in self.options:
                raise UnsetError(f"${name}: unbound variable")
            return ""
        if name == "#":
            return str(len(self.positional()))
        if name == "@":
            return " ".join(self.positional())
        if name == "*":  # joined by IFS's first character, as sh joins "$*"
            return current_ifs(self.lookup)[:1].join(self.positional())
        if name == "@\0":  # "$@": the words apart (a NUL is in no argument)
            return "\0".join(self.positional())
        value = self.env.get(name)
        if value is not None and name != "RANDOM":
            return value if value[:1] != "\0" else _scalar(value)  # $a: an array's [0]
        if "u" in self.options and name not in DYNAMIC and name.isidentifier():
            raise UnsetError(f"{name}: unbound variable")  # set -u
        return self._dynamic(name)

    def _pipestatus(self) -> list[str]:
        """bash's PIPESTATUS: the last pipeline's statuses, else ``$?`` alone."""
        return [str(s) for s in (self.pipestatus or [self.last_status])]

    def _function_names(self) -> list[str]:
        """The functions being called on this thread, innermost first (``FUNCNAME``)."""
        return [f.name for f in reversed(self.flow.frames) if f.name]

    def assign_variable(self, name: str, value: str) -> None:
        """``NAME=value`` from an arithmetic expansion (``$((i++))``)."""
        self.env[name] = value

    def _dynamic(self, name: str) -> str:
        """The variables sh computes when read: ``$RANDOM`` (0 to 32767), ``$UID`` and
        ``$EUID`` (the session's Exo uid), ``$HOSTNAME``, ``$SECONDS`` (since the shell
        started); "" for any other unset name."""
        if name == "RANDOM":
            return str(int.from_bytes(os.urandom(2), "little") & 0x7FFF)
        if name in ("UID", "EUID"):
            return str(self.session.uid)
        if name == "LINENO":
            return str(self.lineno)
        if name == "PIPESTATUS":  # (bash's array's first element)
            return self._pipestatus()[0]
        if name == "FUNCNAME":  # the function being called (bash's), "" outside one
            return next(iter(self._function_names()), "")
        if name == "SECONDS":
            return str(int(time.monotonic() - self.started))
        if name == "HOSTNAME":
            try:
                text = self._tree.read_bytes("/etc/hostname", limit=256)
            except OSError:
                return "exo-os"
            return text.decode(errors="replace").strip() or "exo-os"
        return ""

    def positional(self) -> list[str]:
        """$1...: the innermost call's arguments on this thread, else the shell's own
        (``set --``)."""
        frames = self.flow.frames
        return frames[-1].args if frames else self.script_args

    def run_line(self, line: str, stdin: int = 0, stdout: int = 1, stderr: int = 2) -> int:
        """Run one line (or several, newline-separated); returns its status (also kept in
        ``$?``). Raises ShellExit (``needs_more`` says whether a block is left open)."""
        from exo.shell.parser import parse_blocks

        depth = self._depth
        outermost = getattr(depth, "stdio", None) is None and \
            getattr(depth, "moves", None) is None
        if outermost:  # `exec > log` on an earlier line: the shell's own streams
            if self.fds:
                fds = self.fds
                stdin, stdout, stderr = (fds.get(0, stdin), fds.get(1, stdout),
                                         fds.get(2, stderr))
            depth.moves, depth.base = {}, (stdin, stdout, stderr)
            depth.shared = time.perf_counter()  # (a line shorter than that never sleeps)
        first = self._lines + 1 if outermost else 1  # ($LINENO: a sourced file's own)
        if outermost:
            self._lines += line.count("\n") + 1

        def say(text: str) -> None:
            with contextlib.suppress(OSError):
                os.write(self._stderr_now((stdin, stdout, stderr)),
                         text.encode(errors="replace"))

        try:
            self._exec_nodes(parse_blocks(split_list(line, 0, first)),
                             (stdin, stdout, stderr))
        except ParseError as exc:  # the line's syntax, or an expansion while it ran
            say(f"exo: {exc}\n")
            self.last_status = 1 if isinstance(exc, UnsetError) else 2
            # ${x?}, set -u: an unset parameter ends a script too, as sh's (a read-only
            # name or the variables' bound, the same class, end the line only)
            self.ends_script = outermost and type(exc) is UnsetError
        except ErrExit as exc:  # set -e: a command failed; its status is the line's
            self.last_status = exc.status
            self.ends_script = outermost  # (a script ends there: run_script)
        except RecursionError:  # a line nested deeper than the parser goes: refused
            say("exo: the line is nested too deeply\n")
            self.last_status = 2
        except (ShellExit, SwitchUser):
            raise
        except Exception as exc:  # the shell runs in the kernel: a bug here is said, once
            if self._substituting:
                raise  # (said by the outermost line)
            say(f"exo: {self._crashed(repr(line), exc)}\n")
            self.last_status = EX_SOFTWARE
        finally:
            if outermost:
                depth.moves = depth.base = None
                if self._superseded:
                    self._superseded.clear()
                    self._sweep_fds()
        return self.last_status

    def _stderr_now(self, stdio: tuple[int, int, int]) -> int:
        """Where an error of what ran with ``stdio`` goes now: an ``exec 2> f`` in the
        line may have moved its stderr (``_moved``)."""
        moves = getattr(self._depth, "moves", None)
        return _moved(stdio, moves)[2] if moves else stdio[2]

    def between_steps(self) -> None:
        """Between two commands, and two steps of one command's long work in the kernel
        (each element through a ``"${a[@]…}"`` operator, each ``${!PREFIX*}`` scan): the
        kernel's other threads run (``_share_interpreter``), and a killed background
        job's copy stops there."""
        _share_interpreter(self._depth)
        if self.cancel_on is not None and self.cancel_on.is_set():
            raise KeyboardInterrupt

    def _integer_value(self, text: str) -> str:
        """A value assigned to a ``declare -i`` variable: its arithmetic value."""
        from exo.shell.arith import evaluate

        return str(evaluate(text, self.lookup, self.assign_variable))

    def appended(self, name: str, value: str) -> str:
        """What ``NAME+=value`` makes of NAME: its value and ``value``; for an array,
        the array with ``value`` after its first element (bash's)."""
        from exo.shell import arrays

        old = self.env.get(name)
        if old is not None and arrays.is_assoc(old):
            return arrays.assoc_with(old, {"0": arrays.assoc_view(old).get("0", "") + value})
        if old is not None and is_array(old):
            elements = arrays.decode(old)
            elements[0] = elements.get(0, "") + value
            return arrays.encode(elements)
        if name in self.env.integers:  # (`declare -i n`: n+=2 adds)
            return str(int(self.lookup(name) or 0) + int(self._integer_value(value)))
        return self.lookup(name) + value

    def lines_skipped(self, count: int) -> None:
        """Lines of a script or session not run (blank ones): ``$LINENO`` counts them."""
        self._lines += count

    def needs_more(self, text: str) -> bool:
        """Whether ``text`` leaves a quote, ``$(`` or a block open (read another line)."""
        from exo.shell.parser import parse_blocks

        try:
            parse_blocks(split_list(text))
        except IncompleteInput:
            return True
        except ParseError:
            return False
        return False

    def expand_history(self, line: str) -> str:
        """History expansion, as in bash's interactive mode (``exo.shell.histexpand``'s
        ``expand``): ``!!``, ``!N``, ``!-N``, ``!PREFIX``, ``!$``; ParseError for an
        event not found."""
        from exo.shell.histexpand import expand

        return expand(line, self.history, MAX_LINE)

    def remember(self, line: str) -> None:
        """``line`` into the session's history (the last ``HISTORY_KEPT`` lines)."""
        self.history.append(line)
        if len(self.history) > HISTORY_KEPT:
            del self.history[:len(self.history) - HISTORY_KEPT]

    def _exec_nodes(self, nodes: list[Node], stdio: tuple[int, int, int]) -> None:
        moves = getattr(self._depth, "moves", None)
        for k, node in enumerate(nodes):
            self.between_steps()  # (the kernel's other threads; a killed block stops)
            if moves:  # `exec > log` ran: the streams it moved, from the next command on
                stdio = _moved(stdio, moves)
            # set -e spares what an && or || list tests, to its depths (a function's
            # body, a block): as an if's condition
            listed = k + 1 < len(nodes) and _connector(nodes[k + 1]) in ("&&", "||")
            if listed:
                self.flow.conditions += 1
            try:
                self._exec_node(node, stdio)
            finally:
                if listed:
                    self.flow.conditions -= 1

    def _exec_node(self, node: Node, stdio: tuple[int, int, int]) -> None:
        from exo.shell.parser import Group, Simple

        # What the node's expansions open for it (a `<(LIST)`'s pipe) lives as long as it
        # runs: a job it starts takes them (_launch), and what none took is closed here.
        # (Here, not in a wrapper: a frame more a node costs functions 10% of their depth.)
        depth = self._depth
        outer = getattr(depth, "pipes", None), getattr(depth, "stdio", None)
        depth.pipes, depth.stdio = [], stdio
        try:
            if isinstance(node, Simple):
                connector = node.item.connector
                ran = not ((connector == "&&" and self.last_status != 0)
                           or (connector == "||" and self.last_status == 0))
                self._exec_item(node.item, stdio)
                if ran and self.last_status and "e" in self.options \
                        and not self.flow.conditions and not self.flow.negated:
                    raise ErrExit(self.last_status)  # set -e: the rest is not run
            elif (node.connector == "&&" and self.last_status != 0) or (
                    node.connector == "||" and self.last_status == 0):
                return  # `false && if …; fi`: the block does not run
            elif isinstance(node, Group) and node.name:
                self._define(node, stdio[2])
            elif node.background:  # `{ …; } &`, `( … ) &`, `done &`
                self._background_block(node, stdio)
            elif node.timed is not None:  # `time { LIST; }`: its times said after it
                import copy

                plain = copy.copy(node)
                plain.timed = None
                with self._timing(node.timed, stdio[2]):
                    self._exec_node(plain, stdio)
            elif node.negated:  # `! { LIST; }`: a failure inside is an answer, as a condition's
                import copy

                plain = copy.copy(node)  # (a frame more only here: recursion costs the stack)
                plain.negated = False
                self.flow.conditions += 1
                try:
                    self._exec_node(plain, stdio)
                finally:
                    self.flow.conditions -= 1
                self.last_status = int(self.last_status == 0)
            elif node.prefix or node.feeder is not None:  # `cat f | while read l; …`
                streams = self._block_streams(node, stdio)
                if streams is not None:
                    self.last_status = self._pipe_block(node, streams[1], stdio, streams[0])
            elif not node.redirects:
                self._exec_block(node, stdio)
            else:  # `done > out`: the whole block's streams
                opened: list[int] = []
                try:
                    after = parse_pipeline(": " + node.redirects, self.lookup,
                                           self._substitute).commands
                    if len(after) > 1:  # `done | sort`
                        self.last_status = self._pipe_block(node, after, stdio)
                        return
                    numbered: dict[int, int] = {}
                    mine: set[int] = set()
                    inner = self._redirect(after[0], *stdio, opened, numbered, mine)
                    # `done 3< f`: 3 is the block's while it runs (`read -u 3`)
                    own = {n: numbered[n] for n in mine}
                    shell_fds = dict(self.fds)
                    self.fds.update(own)
                    try:
                        self._exec_block(node, inner)
                    finally:
                        for n in own:  # (only what it set: an exec in it stays)
                            if shell_fds.get(n) in self._owned:
                                self.fds[n] = shell_fds[n]
                            else:
                                self.fds.pop(n, None)
                        if own:
                            self._sweep_fds()
                except (ParseError, _RedirectError) as exc:
                    os.write(stdio[2], f"exo: {exc}\n".encode())
                    self.last_status = 1
                finally:
                    self._close(list(opened), opened)
        finally:
            left = depth.pipes
            depth.pipes, depth.stdio = outer
            if left:
                self._close(list(left), left)

    @contextlib.contextmanager
    def _timing(self, layout: str, stderr: int) -> Iterator[None]:
        """``time``: the body's real, user and sys times said on ``stderr`` when it ends
        (interrupted or failed too, as bash says them), in ``$TIMEFORMAT``'s layout (set
        and empty: nothing said) or ``time -p``'s."""
        from exo.shell import timing

        timer = timing.Timer()
        self._timers.append(timer)
        try:
            yield
        finally:
            self._timers.remove(timer)
            layout = timing.POSIX_FORMAT if layout == "posix" else \
                _scalar(self.env.get("TIMEFORMAT", timing.DEFAULT_FORMAT))
            with contextlib.suppress(OSError):
                os.write(stderr, timing.report(layout, *timer.times()).encode())

    def _pipe_block(self, node: If | Loop | Group | Case, after: list[Command],
                    stdio: tuple[int, int, int], before: list[Command] | None = None,
                    runner: Shell | None = None) -> int:
        """``for …; done | sort`` (``after``: the block's redirections, then the stages
        after it), ``cat f | while read l; …`` (``before``): the block is a stage of the
        pipeline, run as a function's body on a thread of its own (sh's subshell: its
        ``$1``… are the shell's, and so are its variables, unlike a subshell's)."""
        import copy

        from exo.shell.parser import Group, Word

        tokens: list[str] = []

        def enlist(block: If | Loop | Group | Case) -> str:
            """``block`` as the command word of a stage (``_start`` runs it)."""
            body = copy.copy(block)
            body.redirects = body.prefix = ""
            body.feeder = None
            body.negated = False  # (a `!` inverts the whole pipeline's status: _exec_node)
            body.background = False
            group = Group([body], name=block.__class__.__name__.lower())
            token = f"\0block{id(group)}"  # (no word typed has a NUL)
            self._blocks[token] = (group, list(self.positional()), runner or self)
            tokens.append(token)
            return token

        try:
            feeding: list[Command] = []
            if node.feeder is not None:  # `done | while read l; …`: the first stage too
                feeding = [Command([Word(enlist(node.feeder))], parse_pipeline(
                    ": " + node.feeder.redirects, self.lookup, self._substitute
                ).commands[0].redirects)]
            stage = Command([Word(enlist(node))], after[0].redirects)
            pipeline = Pipeline([*feeding, *(before or []), stage, *after[1:]])
            if runner is None:
                return self._run_pipeline(pipeline, *stdio)
            self._background(_block_source(node), pipeline, stdio[1], stdio[2])
            return self.last_status
        except ParseError as exc:  # (the first block's redirections)
            os.write(stdio[2], f"exo: {exc}\n".encode())
            return 2
        finally:
            for name in tokens:
                del self._blocks[name]

    def _background_block(self, node: If | Loop | Group | Case,
                          stdio: tuple[int, int, int]) -> None:
        """``{ …; } &``, ``( … ) &``, ``for …; done &``: the block as a job of its own
        (``jobs``, ``wait``, ``$!``), run on the job's thread by a copy of this shell, as
        sh forks a subshell for it: what it changes of the shell stays its own, and the
        shell goes on at once (the ``&`` was dropped: the block ran in the foreground)."""
        streams = self._block_streams(node, stdio)
        if streams is not None:
            self.last_status = self._pipe_block(node, streams[1], stdio, streams[0],
                                                runner=self._copy())

    def _block_streams(self, node: If | Loop | Group | Case, stdio: tuple[int, int, int]
                       ) -> tuple[list[Command] | None, list[Command]] | None:
        """A block's stages: the pipeline piped into it, if any, and its redirections
        then the stages after it; None (said, status 2) when either does not parse."""
        try:
            before = parse_pipeline(node.prefix, self.lookup, self._substitute).commands \
                if node.prefix else None
            after = parse_pipeline(": " + node.redirects, self.lookup,
                                   self._substitute).commands
        except ParseError as exc:
            os.write(stdio[2], f"exo: {exc}\n".encode())
            self.last_status = 2
            return None
        return before, after

    def _copy(self) -> Shell:
        """This shell's state in a shell of its own (a background block's subshell)."""
        other = type(self)(self.kernel, self._tree, self.session)
        other._put(self._state())
        other.env.for_copy()
        other._producers = self._producers  # (one budget for <(…)s: MAX_PIPES)
        other._fd_slots = self._fd_slots  # (and one for what `exec` holds: MAX_SHELL_FDS)
        other._live_jobs, other._live_lock = self._live_jobs, self._live_lock  # (MAX_JOBS)
        other._sink_total = self._sink_total  # (MAX_SINKS, for them all)
        for n, fd in self.fds.items():  # its own copies of `exec 3> f`'s (not 0, 1, 2:
            # its streams are the caller's already); past the budget, not copied
            if n > 2 and other._fd_slots.acquire(blocking=False):
                other.fds[n] = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
                other._owned.append(other.fds[n])
        other.last_status = self.last_status
        other.subshells = self.subshells + 1  # (`exit` in it ends it alone)
        return other

    def _exec_block(self, node: If | Loop | Group | Case,
                    stdio: tuple[int, int, int]) -> None:
        from exo.shell.parser import Case, Group, If

        if isinstance(node, Group):
            if node.subshell:
                self._subshell(node.body, stdio)
                # set -e: a subshell that failed is a command that failed (sh's rule for
                # compound commands takes this one alone: the others' failures were seen
                # inside them)
                if self.last_status and "e" in self.options \
                        and not self.flow.conditions and not self.flow.negated:
                    raise ErrExit(self.last_status)
            else:
                self._exec_nodes(node.body, stdio)
            return
        if isinstance(node, Case):
            self._exec_case(node, stdio)
            return
        if not isinstance(node, If):
            flow = self.flow
            flow.loops += 1
            try:
                self._exec_loop(node, stdio)
            finally:
                flow.loops -= 1
            return
        for condition, body in node.clauses:
            self._condition(condition, stdio)
            if self.last_status == 0:
                self._exec_nodes(body, stdio)
                return
        self.last_status = 0
        self._exec_nodes(node.otherwise, stdio)

    def _condition(self, nodes: list[Node], stdio: tuple[int, int, int]) -> None:
        """An if's or a loop's condition: a failure there is an answer, never the end
        ``set -e`` makes."""
        self.flow.conditions += 1
        try:
            self._exec_nodes(nodes, stdio)
        finally:
            self.flow.conditions -= 1

    def _exec_loop(self, loop: Loop, stdio: tuple[int, int, int]) -> None:
        status = 0
        if loop.kind == "arith":  # for (( INIT; TEST; STEP )): TEST empty is true
            init, test, step = loop.words.split(";")
            if self._arithmetic(init, stdio[2]) == 2:
                self.last_status = 1
                return
            while not test.strip() or (tested := self._arithmetic(test, stdio[2])) == 0:
                if not self._round(loop.body, stdio):
                    return
                status = self.last_status
                if self._arithmetic(step, stdio[2]) == 2:
                    self.last_status = 1
                    return
            if test.strip() and tested == 2:
                status = 1
        elif loop.kind == "for":
            try:
                words = self._argv(parse_pipeline(loop.words, self.lookup, self._substitute)
                                   .commands[0]) if loop.words else []
            except _RedirectError as exc:  # (too many patterns, or words)
                os.write(stdio[2], f"exo: {exc}\n".encode())
                self.last_status = 1
                return
            for word in words:
                self.env[loop.name] = word
                if not self._round(loop.body, stdio):
                    return
                status = self.last_status
        else:
            while True:
                self._condition(loop.condition, stdio)
                if (self.last_status == 0) != (loop.kind == "while"):
                    break
                if not self._round(loop.body, stdio):
                    return
                status = self.last_status
        self.last_status = status

    def _exec_case(self, case: Case, stdio: tuple[int, int, int]) -> None:
        """The body of the first clause one of whose patterns (globs, expanded) matches
        the word; status 0 when none does. A body ended by ``;&`` goes on into the next
        body, one ended by ``;;&`` on to test the next clauses (bash's)."""
        subject = self._word(case.subject)
        self.last_status = 0
        into = False  # (the last body ran and ended with ;&)
        for (patterns, body), end in zip(case.clauses, case.ends, strict=True):
            if into or any(fnmatch.fnmatchcase(subject, self._word(p, pattern=True))
                           for p in patterns):
                self.last_status = 0
                self._exec_nodes(body, stdio)
                into = end == ";&"
                if end == ";;":
                    return

    def _word(self, text: str, *, pattern: bool = False) -> str:
        """``text`` expanded as one word (no splitting, no globbing); ``pattern``: as a
        pattern, its quoted parts literal (``parser.expand_word``)."""
        from exo.shell.parser import expand_word

        return expand_word(text, self.lookup, self._substitute, pattern=pattern)

    def _round(self, body: list[Node], stdio: tuple[int, int, int]) -> bool:
        """One round of a loop's body; False when a ``break`` ends the loop (its status
        0), True to go on (a ``continue`` too). ``break 2`` is passed on as ``break``."""
        try:
            self._exec_nodes(body, stdio)
        except LoopControl as control:
            if control.levels > 1:
                control.levels -= 1
                raise
            if control.kind == "break":
                self.last_status = 0
                return False
        return True

    def _define(self, group: Group, stderr: int) -> None:
        """``NAME() { ...; }``: the function ``NAME`` (its redirections apply to each
        call)."""
        if group.name not in self.functions and len(self.functions) >= MAX_FUNCTIONS:
            os.write(stderr, f"exo: {group.name}: too many functions (at most "
                             f"{MAX_FUNCTIONS}; unset -f one)\n".encode())
            self.last_status = 1
            return
        self.functions[group.name] = group
        self.last_status = 0

    def call_function(self, group: Group, args: list[str],
                      stdio: tuple[int, int, int]) -> int:
        """Run the function ``group`` with ``args`` as $1...; its status (``return N``'s,
        or its last command's). Its ``local`` variables get their values back after."""
        from exo.shell.parser import Group

        flow = self.flow
        if len(flow.frames) >= MAX_FUNCTION_DEPTH:
            os.write(stdio[2], f"exo: {group.name}: functions nested more than "
                               f"{MAX_FUNCTION_DEPTH} deep\n".encode())
            self.last_status = 1
            return 1
        frame = Frame(args, group.name if self.functions.get(group.name) is group else "")
        flow.frames.append(frame)
        flow.returnable += 1
        body = Group(group.body)
        body.redirects = group.redirects
        try:
            self._exec_nodes([body], stdio)
        except FunctionReturn as ret:
            if ret.status is not None:
                self.last_status = ret.status
        finally:
            flow.frames.pop()
            flow.returnable -= 1
            self.env.integers -= frame.integers  # (before the outer values come back)
            self._restore(frame.hidden)
            self.env.readonly -= frame.marked  # (`local -r`: the call's own)
        return self.last_status

    def _exec_item(self, item: ListItem, stdio: tuple[int, int, int]) -> None:
        if item.connector == "&&" and self.last_status != 0:
            return
        if item.connector == "||" and self.last_status == 0:
            return
        stdin, stdout, stderr = stdio
        if item.line:
            self.lineno = item.line
        self.flow.substituted = self.flow.substitutions = 0
        self._depth.err = stderr  # a $(…) of this line says its errors (and set -x) there
        timed = _TIMED.match(item.source)
        if timed is not None:  # `time [-p] PIPELINE`: bash's reserved word
            if item.background:
                os.write(stderr, b"exo: time: not with '&' (time it in the job: "
                         b"{ time COMMAND; } &)\n")
                self.last_status = 2
                return
            from exo.shell.parser import ListItem

            inner = ListItem(";", item.source[timed.end():].lstrip(), line=item.line)
            with self._timing("posix" if timed.group(1) else "default", stderr):
                if inner.source:
                    self._exec_item(inner, stdio)
                else:
                    self.last_status = 0
            return
        pieces = _assignments_apart(item.source) if "=(" in item.source else None
        if pieces is not None and not item.background:
            # `IFS=$'\n' a=($(…))`, `b=(x y) n=2`: assignments alone, one after the other
            from exo.shell.parser import ListItem

            for piece in pieces:
                self._exec_item(ListItem(";", piece, line=item.line), stdio)
            return
        array = _ARRAY.match(item.source) or _ELEMENT.match(item.source)
        if array is not None and not item.background:
            try:
                self._assign_array(item.source, array, stdio)
            except (ParseError, ValueError) as exc:
                if isinstance(exc, UnsetError):
                    raise  # (a read-only NAME: the rest of the line is not run)
                os.write(stderr, f"exo: {exc}\n".encode())
                self.last_status = 1 if isinstance(exc, ValueError) else 2
            return
        if item.source.startswith("((") and item.source.endswith("))") and \
                not item.background:  # (( EXPR )): `let EXPR`, as bash's
            self.last_status = self._arithmetic(item.source[2:-2], stderr)
            return
        # `! PIPELINE`: its status negated (and never the end `set -e` makes)
        source = item.source
        negated = False
        while source[:1] == "!" and source[1:2] in (" ", "\t"):  # (`! ! cmd`, as bash's)
            negated, source = not negated, source[1:].lstrip()
        self.flow.negated = item.source.startswith(("! ", "!\t"))  # (set -e spares it)
        if source.startswith("[[") and source[2:3] in (" ", "\t", "") and \
                not item.background:
            status = self._conditional(source, stdio)
            self.last_status = int(status == 0) if negated else status
            return
        try:
            pipeline = parse_pipeline(self._alias(source), self.lookup, self._substitute)
        except UnsetError:
            raise  # ${NAME:?}: the rest of the line is not run (run_line says it)
        except ParseError as exc:
            os.write(stderr, f"exo: {exc}\n".encode())
            self.last_status = 2
            return
        if not pipeline.commands[0].argv:
            return
        if item.background:
            pipeline = self._host_twins(pipeline)
            self.last_status = 0
            self._background(item.source, pipeline, stdout, stderr)
            return
        status = self._run_pipeline(pipeline, stdin, stdout, stderr, item.source)
        self.last_status = int(status == 0) if negated else status

    def _assign_array(self, source: str, m: re.Match[str],
                      stdio: tuple[int, int, int]) -> None:
        """``NAME=(WORDS)``, ``NAME+=(WORDS)`` (after ``local``/``declare``: the name is
        declared first) and ``NAME[SUBSCRIPT]=VALUE`` (exo.shell.arrays)."""
        from exo.shell import arrays
        from exo.shell.parser import array_index, expand_word, matching_paren, word_end

        if m.re is _ELEMENT:
            name, subscript = m.groups()
            end = word_end(source, m.end())
            if source[end:].strip():
                raise ParseError(f"{name}[{subscript}]=…: one word, then ';' or a newline")
            current = self.env.get(name)
            if arrays.is_assoc(current):  # m[KEY]=VALUE: the key a word, expanded
                key = expand_word(subscript, self.lookup, self._substitute)
                value = expand_word(source[m.end():end], self.lookup, self._substitute)
                self.env[name] = arrays.assoc_with(current, {key: value})
                self.last_status = self.flow.substituted
                return
            index = array_index(subscript, arrays.view(current), self.lookup, self._substitute)
            value = expand_word(source[m.end():end], self.lookup, self._substitute)
            self.env[name] = arrays.with_items(current, {index: value})
            self.last_status = self.flow.substituted
            return
        declaration, name, append = m.groups()
        self.last_status = 0
        opening = m.end() - 1
        try:
            closing = matching_paren(source, opening)
        except ParseError:
            closing = len(source)
        if closing >= len(source) or source[closing:closing + 1] != ")":
            raise ParseError(f"{name}=(…): ')' expected")
        if source[closing + 1:].strip():
            raise ParseError(f"syntax error near '{source[closing + 1:].split()[0]}' "
                             f"after {name}=(…)")
        # (over several lines: a line that is a comment is none of its words)
        inner = "\n".join(line for line in source[opening + 1:closing].split("\n")
                          if not line.lstrip().startswith("#"))
        words = self._argv(parse_pipeline(inner, self.lookup, self._substitute)
                           .commands[0]) if inner.strip() else []
        # `local a=(…)`: the local (or declared) NAME first, then its elements; read-only
        # (`-r`, `readonly`) and exported once it holds them.
        command, *flags = declaration.split() if declaration else [""]
        letters = "".join(f.lstrip("-") for f in flags)
        after = [f"{command} -r {name}"] if "r" in letters else []
        if command in ("local", "declare", "typeset"):
            before = "".join(c for c in letters if c != "r")
            self._declare(f"{command} {'-' + before if before else ''} {name}", stdio)
        elif command:
            after.append(f"{command} {name}")
        if self.last_status:
            return
        current = self.env.get(name)
        if arrays.is_assoc(current):  # m=([KEY]=VALUE …), m+=(…)
            pairs = {}
            for word in words:
                keyed = _KEYED.fullmatch(word)
                if keyed is None:
                    raise ParseError(f"{name}=(…): {word}: an associative array's words "
                                     "are [KEY]=VALUE")
                pairs[keyed.group(1)] = keyed.group(2)
            grown = arrays.assoc_with(current, pairs) if append else \
                arrays.encode_assoc(pairs)
        else:  # a=(x y), a=([3]=x y): each word the next index, or the one it names
            current = current if append else None
            items: dict[int, str] = {}
            at = max(arrays.view(current), default=-1) + 1
            for word in words:
                keyed = _KEYED.fullmatch(word)
                if keyed is not None:
                    at = array_index(keyed.group(1), arrays.view(current), self.lookup,
                                     self._substitute)
                    word = keyed.group(2)
                items[at] = word
                at += 1
            grown = arrays.with_items(current, items)
        if "x" in self.options:
            os.write(stdio[2], f"+ {name}{'+' if append else ''}=({shlex.join(words)})\n"
                     .encode(errors="replace"))
        self.env[name] = grown
        for line in after:
            self._declare(line, stdio)
            if self.last_status:
                return
        self.last_status = self.flow.substituted

    def _declare(self, line: str, stdio: tuple[int, int, int]) -> None:
        from exo.shell.parser import ListItem

        self.last_status = 0
        self._exec_item(ListItem(";", line, False), stdio)

    def _conditional(self, source: str, stdio: tuple[int, int, int]) -> int:
        """``[[ … ]] [REDIRECTIONS]``'s status (exo.shell.conditional): 0 true, 1 false,
        2 malformed."""
        from exo.shell.conditional import ConditionError, evaluate
        from exo.shell.parser import conditional_end

        end = conditional_end(source, 0)
        if end < 0:
            os.write(stdio[2], b"exo: [[: ']]' expected\n")
            return 2
        text = source[2 : end - 2]
        opened: list[int] = []
        try:
            if source[end:].strip():  # `[[ … ]] 2>/dev/null`
                after = parse_pipeline(": " + source[end:], self.lookup,
                                       self._substitute).commands
                if len(after) > 1:
                    raise ParseError("[[ … ]] | …: a conditional is not piped")
                stdio = self._redirect(after[0], *stdio, opened)
            if "x" in self.options:
                os.write(stdio[2], f"+ [[ {text.strip()} ]]\n".encode(errors="replace"))
            ctx = CommandContext(self, ["[["], *stdio, threading.Event())
            return 0 if evaluate(ctx, text) else 1
        except (ConditionError, ParseError, _RedirectError) as exc:
            if isinstance(exc, UnsetError):
                raise
            os.write(stdio[2], f"exo: [[: {exc}\n".encode())
            return 2
        finally:
            self._close(list(opened), opened)

    @staticmethod
    def _trace(argv: list[str], assignments: list[tuple[str, str]], stderr: int) -> None:
        """``set -x``'s line for a command (its ``NAME=value`` words first), or for an
        assignment alone."""
        words = [f"{name}={shlex.quote(value)}" for name, value in assignments]
        os.write(stderr, ("+ " + " ".join([*words, *map(shlex.quote, argv)]) + "\n")
                 .encode(errors="replace"))

    def _arithmetic(self, expr: str, stderr: int) -> int:
        """``(( EXPR ))``: 0 when EXPR's value is not 0, else 1; 2 when malformed. An
        empty EXPR is 0 (for ((;;)))."""
        if not expr.strip():
            return 1
        from exo.shell.arith import execute
        from exo.shell.parser import _arith_text

        try:
            text = _arith_text(expr, self.lookup, self._substitute)
            return 0 if execute(text, self.lookup, self.env.__setitem__) else 1
        except ParseError as exc:
            os.write(stderr, f"exo: (( {expr.strip()} )): {exc}\n".encode())
            return 2

    def function(self, name: str) -> Group | None:
        """The function ``name`` runs, unless ``command`` is running it (``plain``)."""
        if getattr(self._plain, "name", None) == name:
            return None
        return self.functions.get(name)

    @contextlib.contextmanager
    def plain(self, name: str) -> Iterator[None]:
        """While this thread runs ``command NAME``, ``NAME`` is not a function's."""
        saved = getattr(self._plain, "name", None)
        self._plain.name = name
        try:
            yield
        finally:
            self._plain.name = saved

    def _alias(self, source: str) -> str:
        """Each command's first word replaced by its alias (once: an alias may name
        itself); every command of a pipeline, not only the first (`echo x | g` was
        "g: command not found")."""
        if not self.aliases:
            return source
        from exo.shell.parser import pipe_split

        out = []
        for part in pipe_split(source):
            lead = part[:len(part) - len(part.lstrip())]
            word, sep, rest = part.lstrip().partition(" ")
            value = self.aliases.get(word)
            out.append(part if value is None else lead + value + sep + rest)
        return "|".join(out)

    @property
    def _substituting(self) -> int:
        """How deep in ``$(...)`` this thread's line runs (a background job's thread has
        its own count)."""
        return int(getattr(self._depth, "n", 0))

    def _substitute(self, command: str) -> str:
        """``$(command)``: run it with its standard output captured, as sh does; at most
        ``MAX_SUBSTITUTION_DEPTH`` deep (an alias that runs itself through ``$(...)``
        would otherwise recurse until the shell's thread ran out of stack)."""
        if self._substituting >= MAX_SUBSTITUTION_DEPTH:
            raise ParseError(f"$(...) nested more than {MAX_SUBSTITUTION_DEPTH} deep")
        if command.startswith(PROCESS_SUBSTITUTION):  # <(LIST), >(LIST)
            return self._process_substitution(command[1], command[2:])
        if _READ_FILE.fullmatch(command):  # $(< FILE): the file, as bash's shortcut
            command = "command cat " + command.strip()
        read_fd, write_fd = os.pipe()
        os.fchmod(read_fd, 0o666)  # (`x=$(prog /dev/stdout)`: as a pipeline's, _launch)
        chunks: list[bytes] = []
        held = [0]  # bytes in chunks; past MAX_LINE: the read end is closed (EPIPE)

        def drain() -> None:
            try:
                while chunk := os.read(read_fd, 65536):
                    held[0] += len(chunk)
                    if held[0] > MAX_LINE:  # `echo $(yes)` grew the kernel without end
                        return
                    chunks.append(chunk)
            finally:
                os.close(read_fd)

        reader = threading.Thread(target=drain, name="exosh-subst", daemon=True)
        reader.start()
        saved, options = self.last_status, set(self.options)  # (its set -e is its own)
        self._depth.n = self._substituting + 1
        status = 0
        err = getattr(self._depth, "err", 2)
        try:
            # A subshell, as sh's: `DIR=$(cd "$d" && pwd)` moved the shell itself, and
            # `y=$(x=2)` changed x (it ran in the shell, with nothing put back)
            with self._kept((0, write_fd, err)):
                status = self.run_line(command, 0, write_fd, err)
        except (ShellExit, SwitchUser, LoopControl, FunctionReturn) as exc:
            # `$(exit)`, `$(break)`, `$(return)` end the substitution, as sh's subshell
            # does, not the session, the loop or the function around it
            ended = getattr(exc, "status", None)
            status = self.last_status if ended is None else ended
        finally:
            self._depth.n -= 1
            self.options.clear()
            self.options.update(options)
            self.flow.substituted = status  # `x=$(false)` ends with its status
            self.flow.substitutions += 1
            os.close(write_fd)
            reader.join()
        self.last_status = saved
        if held[0] > MAX_LINE:
            raise ParseError(f"$(...): its output is longer than {MAX_LINE >> 20} MiB")
        return without_nul(b"".join(chunks).decode(errors="replace"))

    def _process_substitution(self, direction: str, command: str) -> str:
        """``<(LIST)`` (``direction`` ``<``) and ``>(LIST)``: LIST run by a copy of the shell
        (sh's subshell) on a thread of its own, its output into a pipe (its input from
        one); the word is the pipe's other end as ``/dev/fd/N``, which a builtin opens
        through the Vfs (``Vfs.pipes``) and a program gets as its own descriptor N
        (``start_process``). That end lives as long as the command that named it
        (``_exec_node``); LIST goes on until it ends by itself, as bash's does (``>(gzip
        > f)`` finishes its file). Its input is /dev/null (``<(…)``), never the
        terminal the shell reads."""
        pending = getattr(self._depth, "pipes", None)
        if pending is None:  # (only a command's expansion makes one: _exec_node)
            raise ParseError(f"{direction}(…): not here")
        if not self._producers.acquire(blocking=False):
            raise ParseError(f"{direction}(…): more than {MAX_PIPES} process "
                             "substitutions running at once")
        _, line_out, line_err = getattr(self._depth, "stdio", None) or (0, 1, 2)
        try:
            read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        except OSError as exc:  # (no descriptor left: EMFILE)
            self._producers.release()
            raise ParseError(f"{direction}(…): {exc.strerror}") from None
        mine, theirs = (read_fd, write_fd) if direction == "<" else (write_fd, read_fd)
        owned = [theirs]
        try:
            # A program opens it again as /dev/fd/N (/proc/self/fd/N), as another uid
            # than the kernel's: the pipe's inode must let it (only a holder of the
            # descriptor can name the pipe, through its own /proc/self/fd).
            os.fchmod(read_fd, 0o666)
            err = fcntl.fcntl(line_err, fcntl.F_DUPFD_CLOEXEC, 3)
            owned.append(err)
            if direction == "<":
                stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                owned.append(stdin)
                stdio = (stdin, theirs, err)
            else:
                out = fcntl.fcntl(line_out, fcntl.F_DUPFD_CLOEXEC, 3)
                owned.append(out)
                stdio = (theirs, out, err)
            runner = self._copy()
            runner.cancel_on = self.cancel_on  # (a background block's end ends it too)
        except BaseException:
            for fd in (mine, *owned):
                os.close(fd)
            self._producers.release()
            raise

        def produce() -> None:
            try:
                runner.run_line(command, *stdio)
            except (ShellExit, SwitchUser, KeyboardInterrupt, LoopControl, FunctionReturn):
                pass  # (an `exit` in it ends it alone, as a subshell's)
            finally:
                runner.close_fds()
                for fd in owned:
                    os.close(fd)
                self._producers.release()

        path = f"/dev/fd/{mine}"
        self.vfs.pipes[path] = mine
        pending.append(mine)
        try:
            _threadcache.start(produce, "exosh-procsub")
        except RuntimeError:  # no thread (the host's limit): nothing runs, nothing leaks
            for fd in owned:
                os.close(fd)
            self._producers.release()
            raise ParseError(f"{direction}(…): no thread to run it") from None
        return path

    def _background(self, source: str, pipeline: Pipeline, stdout: int, stderr: int) -> None:
        """``cmd &``: run with stdin from /dev/null; ``jobs``, ``fg``, ``kill %N`` reach it.
        The job owns copies of its streams: the caller may close its own meanwhile."""
        name = self._argv_name(pipeline.commands[0])
        if name in SESSION_BUILTINS and len(pipeline.commands) == 1:
            # (in a job's thread its ShellExit would end only that thread: nothing)
            os.write(stderr, f"exo: {name}: not in the background\n".encode())
            self.last_status = 1
            return
        if len(self._busy_jobs()) >= MAX_JOBS:
            os.write(stderr, f"exo: too many jobs ({MAX_JOBS}): wait for one, or kill "
                             "one (jobs lists them)\n".encode())
            self.last_status = 1
            return
        owned = [os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), os.dup(stdout),
                 os.dup(stderr)]
        devnull, out, err = owned
        try:
            job = self._launch(pipeline, devnull, out, err, source, inline=False,
                               owned=owned)
        except _RedirectError as exc:  # as in the foreground: said, and no job
            os.write(stderr, f"exo: {exc}\n".encode())
            self.last_status = 1
            return
        self._add_job(job)
        with self._live_lock:
            self._live_jobs.append(job)
        # As sh: the job's number and its last process's pid (for `kill PID`); a job of
        # builtins alone (or one whose program a builtin starts later) shows its line,
        # and its $! is its job (%N), which `wait $!` and `kill $!` take as sh's pid.
        procs = job.processes()
        self.last_background = str(procs[-1].proc.pid) if procs else f"%{job.number}"
        shown = str(procs[-1].proc.pid) if procs else source
        os.write(stderr, f"[{job.number}] {shown}\n".encode())

    def _within_budget(self, opened: list[int]) -> None:
        """Refuse a stage when the session's jobs hold ``MAX_SESSION_FDS`` descriptors
        (``opened``: those of the job being started)."""
        held = len(opened) + sum(len(j.opened) for j in self._busy_jobs())
        if held >= MAX_SESSION_FDS:
            raise _RedirectError(f"too many streams open in this session ({held}): wait "
                                 "for a job, or kill one (jobs lists them)")

    def _busy_jobs(self) -> set[Job]:
        """The jobs not ended that the session's budgets count: this shell's table, those
        it disowned, and the background jobs of it and of all its copies."""
        with self._live_lock:
            self._live_jobs[:] = [j for j in self._live_jobs if not j.done.is_set()]
            live = list(self._live_jobs)
        self.disowned[:] = [j for j in self.disowned if not j.done.is_set()]
        return {j for j in (*live, *self.jobs, *self.disowned) if not j.done.is_set()}

    def _add_job(self, job: Job) -> None:
        if job.number == 0:
            if len(self.jobs) >= MAX_JOBS:  # ended ones the prompt has not said yet go
                self.jobs[:] = [j for j in self.jobs if not j.done.is_set()]
            job.number = max((j.number for j in self.jobs), default=0) + 1
            self.jobs.append(job)

    def keep_for_jobs(self) -> bool:
        """At a terminal, the first ``exit`` with jobs left warns instead (as sh does);
        the next one ends them with the session."""
        live = [j for j in self.jobs if not j.done.is_set()]
        if self.terminal is None or not live or self._warned_jobs:
            return False
        self._warned_jobs = True
        return True

    def finished_jobs(self) -> list[Job]:
        """Background jobs that ended since last asked, removed from the table (the
        interactive prompt reports them, as sh does, before the next prompt)."""
        done = [j for j in self.jobs if j.done.is_set()]
        for job in done:
            self.jobs.remove(job)
        return done

    # ------------------------------------------------------------ execution
    def _argv(self, cmd: Command) -> list[str]:
        """The command's words, globs expanded: at most ``MAX_GLOBS`` patterns (each
        lists a directory, in the kernel) and ``MAX_ARGV_BYTES`` in all (what execve
        takes): `* * * …` on a 1 MiB line was half a million listings and words."""
        argv: list[str] = []
        if sum(w.globbable for w in cmd.argv) > MAX_GLOBS:
            raise _RedirectError(f"too many patterns in one command (at most {MAX_GLOBS})")
        listed: dict[str, list[str]] = {}  # one listing of a directory per command
        size = 0
        for w in cmd.argv:
            if not w.globbable:
                words = [w.text]
            else:  # (no match: the pattern as typed, or no word with `shopt -s nullglob`)
                words = self._glob(w.text, listed) or \
                    ([] if "nullglob" in self.shopt else [w.text])
            size += sum(len(x) + 1 for x in words)
            if size > MAX_ARGV_BYTES:
                raise _RedirectError(f"the command's words are longer than "
                                     f"{MAX_ARGV_BYTES >> 20} MiB")
            argv.extend(words)
        return argv

    def _glob(self, pattern: str, listed: dict[str, list[str]] | None = None) -> list[str]:
        """Expand one glob pattern against the Exo tree (last component only);
        ``listed``: directories listed already, by Exo path."""
        head, tail = posixpath.split(pattern)
        base = self.vfs.normalize(head or ".", self.cwd)
        names = listed.get(base) if listed is not None else None
        if names is None:
            try:
                names = [e.name for e in self.vfs.listdir(base)]
            except ListingTooLong as exc:  # not a pattern left as typed: said
                raise _RedirectError(str(exc)) from None
            except (OSError, VfsError):
                return []
            if listed is not None:
                listed[base] = names
        hidden = tail.startswith(".") or "dotglob" in self.shopt
        tail = posix_classes(tail)  # ([[:digit:]]: fnmatch knows no POSIX class)
        hits = [n for n in names if fnmatch.fnmatchcase(n, tail) and (hidden or n[0] != ".")]
        return [posixpath.join(head, n) if head else n for n in sorted(hits)]

    def _run_pipeline(self, pipeline: Pipeline, stdin: int, stdout: int, stderr: int,
                      source: str = "") -> int:
        pipeline = self._host_twins(pipeline)  # (a pipeline into a block comes here too)
        cmds = pipeline.commands
        self.pipestatus = None
        assignments = _assignments(cmds[0], self) if len(cmds) == 1 else []
        if assignments and len(assignments) == len(cmds[0].argv):
            for name, value in assignments:  # `a=5`: shell variables
                if "x" in self.options:
                    self._trace([], [(name, value)], stderr)
                self.env[name] = value
            # (with a $(...) in it: the last one's status, as POSIX says)
            return self.flow.substituted
        name = self._argv_name(cmds[0])
        if name == "exec" and len(cmds) == 1 and len(cmds[0].argv) == 1 \
                and cmds[0].redirects:
            return self._exec_fds(cmds[0], (stdin, stdout, stderr))
        # A builtin alone runs in the shell's thread (so `cd` and `export` work), except
        # one that runs a program (`run`): a job, so Ctrl-Z, fg and bg reach it too.
        inline = len(cmds) == 1 and name in self.builtins and name not in JOB_BUILTINS
        if inline and assignments:  # `VAR=x builtin`: only for that command, exported
            saved = {var: self.env.get(var) for var, _ in assignments}
            exported = set(self.exported)
            try:
                self.env.update(assignments)
                self.exported.update(var for var, _ in assignments)
                return self._run_pipeline(Pipeline([_without_assignments(cmds[0])]),
                                          stdin, stdout, stderr, source)
            finally:
                self._restore(saved)
                self.exported = exported
        try:
            function = self.function(name) if len(cmds) == 1 else None
            if function is not None:
                return self._run_function(function, cmds[0], stdin, stdout, stderr)
            if inline:
                # A builtin that does not read the terminal itself (``sleep``, ``wait``,
                # ``exo run``) runs with the keys going to the relay: Ctrl-C stops it,
                # and never reaches a background job's sandbox.
                reads = os.isatty(stdin) and self._reads_terminal(cmds[0])
                with contextlib.ExitStack() as stack:
                    if self.terminal is not None and not reads:
                        stack.enter_context(self.terminal.job_in_foreground())
                    job = self._launch(pipeline, stdin, stdout, stderr, source, inline)
                    self.pipestatus = [stage.status for stage in job.stages]
                    return job.status
            # The keys go to the relay before the job starts: a Ctrl-C typed while it
            # starts reaches it, never the kernel's group (a background job's sandbox).
            reads = os.isatty(stdin) and self._reads_terminal(cmds[0]) and not any(
                r.op in READS_STDIN and r.target != "/dev/tty" for r in cmds[0].redirects)
            with contextlib.ExitStack() as stack:
                if self.terminal is not None and not reads:
                    self.terminal.take_suspend()  # a Ctrl-Z from before is not for this job
                    stack.enter_context(self.terminal.job_in_foreground())
                job = self._launch(pipeline, stdin, stdout, stderr, source, inline)
                status = self.foreground(job, stderr)
                self.pipestatus = [stage.status for stage in job.stages]
                return status
        except _RedirectError as exc:
            os.write(stderr, f"exo: {exc}\n".encode())
            return 1

    def _run_function(self, function: Group, cmd: Command, stdin: int, stdout: int,
                      stderr: int) -> int:
        """A function called alone: in the shell's thread, as its body's commands would
        run typed, with the call's redirections and ``VAR=x`` for it alone."""
        opened: list[int] = []
        saved: dict[str, str | None] = {}
        try:
            stdio = self._redirect(cmd, stdin, stdout, stderr, opened)
            args = self._argv(_without_assignments(cmd))[1:]
            for var, value in _assignments(cmd, self):
                saved.setdefault(var, self.env.get(var))
                self.env[var] = value
            return self.call_function(function, args, stdio)
        finally:
            self._restore(saved)
            self._close(list(opened), opened)

    def run_exit_trap(self, stdio: tuple[int, int, int] = (0, 1, 2)) -> int:
        """Run ``trap … EXIT``'s command once, as the shell (a script, a session, a
        subshell) ends; the status is the shell's, unless the trap says ``exit N``."""
        command = self.traps.pop("EXIT", None)
        status = self.last_status
        if command:
            try:
                self.run_line(command, *stdio)
            except ShellExit as exc:
                status = exc.status
            except (LoopControl, FunctionReturn, ErrExit):
                pass
        self.last_status = status
        return status

    def run_interrupt_trap(self, stdio: tuple[int, int, int] = (0, 1, 2)) -> None:
        """A Ctrl-C ended what ran (the job died of its SIGINT): ``trap … INT``'s command
        runs, with ``$?`` 130, as sh runs it on the SIGINT (an ``exit`` in it ends the
        script or session, as there)."""
        self.last_status = 130
        command = self.traps.get("INT")
        if command:
            with contextlib.suppress(LoopControl, FunctionReturn, ErrExit, KeyboardInterrupt):
                self.run_line(command, *stdio)
            self.last_status = 130

    def _subshell(self, body: list[Node], stdio: tuple[int, int, int]) -> None:
        """``( LIST )``: run in this shell's thread, what it changes of the shell put
        back when it ends (its variables, which are exported, the working directory,
        functions, aliases, ``$1``…); an ``exit`` in it ends it alone, with its status.
        (sh forks; the shell is the kernel's thread, so it keeps a copy instead.)"""
        with self._kept(stdio):
            # A `break`, `continue` or `return` in it ends the subshell alone, as in sh's
            # forked one (the loop or function around it goes on).
            try:
                self._exec_nodes(body, stdio)
            except Logout as exc:  # `exit N` (a shutdown goes on up)
                self.last_status = exc.status
            except (ErrExit, FunctionReturn) as exc:  # its set -e, a `return` in it
                self.last_status = exc.status if exc.status is not None \
                    else self.last_status
            except LoopControl:
                self.last_status = 0
            except UnsetError as exc:  # ${x:?} ends the subshell, not the line
                with contextlib.suppress(OSError):
                    os.write(self._stderr_now(stdio), f"exo: {exc}\n".encode())
                self.last_status = 1

    @contextlib.contextmanager
    def _kept(self, stdio: tuple[int, int, int]) -> Iterator[None]:
        """A subshell's (``( … )``, ``$(…)``) run: what it changes of the shell (its
        variables, which are exported, the working directory, functions, aliases,
        ``$1``…, options, traps) is put back at its end, its EXIT trap run then."""
        saved = self._state()
        traps, self.traps = self.traps, {}  # (a subshell's traps are its own, as in sh)
        self.subshells += 1
        # its `exec 3> f` and `exec > log` are its own too
        fds = dict(self.fds)
        self._fds_saved.append(fds)
        moves = getattr(self._depth, "moves", None)
        moved = {i: (set(olds), fd) for i, (olds, fd) in moves.items()} if moves else {}
        try:
            yield
        finally:
            self.subshells -= 1
            with contextlib.suppress(Logout):
                self.run_exit_trap(stdio)
            self.traps = traps
            self._put(saved)
            self._fds_saved.pop()
            if self.fds != fds:
                self.fds.clear()
                self.fds.update(fds)
            if moves is not None and moves != moved:
                moves.clear()
                moves.update(moved)
            self._sweep_fds()

    def _state(self) -> _State:
        """A copy of what a subshell may change of the shell (``_put`` puts it back, or
        into another shell)."""
        return _State(self)

    def _put(self, state: _State) -> None:
        """Make ``state`` (``_state``) this shell's, in place: the containers other code
        holds (this call's ``$1``… list, the option set) stay the same objects."""
        self.cwd = state.cwd
        self.vfs.umask = state.umask
        self.rlimits = dict(state.rlimits)
        self.limits_changed()
        self.dirstack = list(state.dirstack)
        self.shopt = set(state.shopt)
        self.positional()[:] = state.args
        self.options.clear()
        self.options.update(state.options)
        self.env.restore(state.env, state.readonly)
        self.env.integers = set(state.integers)
        self.exported = set(state.exported)
        self.functions.clear()
        self.functions.update(state.functions)
        self.aliases.clear()
        self.aliases.update(state.aliases)

    def _restore(self, saved: dict[str, str | None]) -> None:
        """Give variables back the values ``saved`` (None: the variable was unset), read-only
        or not (``x=1 readonly x``: the mark stays, the value is the one before)."""
        values = self.env.data
        for var, old in saved.items():
            if old is None:
                values.pop(var, None)
            else:
                values[var] = old

    def _reads_terminal(self, cmd: Command) -> bool:
        """Whether the command reads the terminal itself (READS_TERMINAL; ``exo install``
        and the other administrator's commands ask y/N there)."""
        from exo.shell.builtins import ADMIN_SUBCOMMANDS

        words = [w.text for w in _without_assignments(cmd).argv[:2]]
        return bool(words) and (words[0] in READS_TERMINAL or (
            words[0] == "exo" and words[1:] != [] and words[1] in ADMIN_SUBCOMMANDS))

    def _host_twins(self, pipeline: Pipeline) -> Pipeline:
        """Each command naming a builtin with an option the builtin lacks (``ls -lh``,
        ``cat -n``, ``grep -r``) names the host's program of that name instead, run
        through the powerbox: the builtin only said "invalid option", or took ``-n``
        for a file. A function of that name still wins (``_start``)."""
        from exo.shell.builtins import wants_host
        from exo.shell.powerbox import Powerbox

        commands = []
        for cmd in pipeline.commands:
            at = len(cmd.argv) - len(_without_assignments(cmd).argv)
            words = [w.text for w in cmd.argv[at:]]
            host = Powerbox.find(words[0]) if words and words[0] not in self.functions \
                and wants_host(words[0], words[1:]) else None
            if host is not None:
                cmd = Command([*cmd.argv[:at], Word(host), *cmd.argv[at + 1:]],
                              cmd.redirects)
            commands.append(cmd)
        return Pipeline(commands)

    def _argv_name(self, cmd: Command) -> str:
        """The command's name: its first word after any ``NAME=value``."""
        words = _without_assignments(cmd).argv
        return words[0].text if words else ""

    def foreground(self, job: Job, stderr: int = 2) -> int:
        """Wait for ``job`` with the terminal's Ctrl-C and Ctrl-Z going to it alone:
        Ctrl-C interrupts it, Ctrl-Z stops it into the job table (status 148)."""
        terminal = self.terminal if not job.reads_terminal else None
        interrupted = False
        try:
            with contextlib.ExitStack() as stack:
                if terminal is not None:
                    stack.enter_context(terminal.job_in_foreground())
                while True:
                    try:
                        if job.done.wait(0.05):
                            break
                        if self.cancel_on is not None and self.cancel_on.is_set():
                            raise KeyboardInterrupt  # (a background block's, killed)
                    except KeyboardInterrupt:
                        # The first Ctrl-C is SIGINT, as the terminal sends it: a program
                        # that takes it (python's prompt, less) goes on. A second one
                        # while it runs ends the job (SIGKILL after the grace).
                        if interrupted or not job.processes():
                            raise
                        interrupted = True
                        job.cancel.set()  # (its builtins: as the terminal's SIGINT)
                        for proc in job.processes():
                            proc.signal(signal.SIGCONT, group=True)
                            proc.signal(signal.SIGINT, group=True)
                        continue
                    suspended = terminal is not None and terminal.take_suspend()
                    # A job stopped by itself (or by a kill -STOP from elsewhere) is
                    # stopped all the same: the prompt comes back, as in sh.
                    states = [p.state for p in job.processes()]
                    if suspended or ("stopped" in states and "running" not in states):
                        self.stop(job)
                        os.write(stderr, f"\n[{job.number}]+ Stopped  {job.source}\n"
                                 .encode())
                        return STOPPED
        except KeyboardInterrupt:
            self.interrupt(job)  # then on up: a loop around it stops too, as in sh
            self._forget(job)
            raise
        self._forget(job)
        if interrupted and job.status == 128 + signal.SIGINT:
            raise KeyboardInterrupt  # it died of the Ctrl-C: the line stops, as in sh
        _say_signal(job, stderr)
        return job.status

    def _forget(self, job: Job) -> None:
        with contextlib.suppress(ValueError):
            self.jobs.remove(job)

    def stop(self, job: Job) -> None:
        """Ctrl-Z: SIGTSTP first, as the terminal sends it, so that a full-screen program
        (less, vi) puts the terminal back before it stops itself; SIGSTOP to those that
        are not stopped within ``STOP_GRACE_S`` (SIGTSTP may be ignored)."""
        procs = job.processes()
        for proc in procs:
            proc.signal(signal.SIGTSTP, group=True)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and any(p.state == "running" for p in procs):
            time.sleep(0.01)
        for proc in procs:
            if proc.state == "running":
                proc.signal(signal.SIGSTOP, group=True)
        job.running.clear()  # (its builtins wait: CommandContext.running)
        job.state = "Stopped"
        self._add_job(job)

    def resume(self, job: Job) -> None:
        job.state = "Running"
        job.running.set()
        for proc in job.processes():
            proc.signal(signal.SIGCONT, group=True)

    def interrupt(self, job: Job) -> None:
        """Ctrl-C: builtins see the cancel event, processes get SIGINT, then SIGKILL."""
        from exo.kernel.api import INTERRUPT_GRACE_S

        job.cancel.set()
        procs = job.processes()
        for proc in procs:
            proc.signal(signal.SIGCONT)
            proc.signal(signal.SIGINT)
        if not job.done.wait(INTERRUPT_GRACE_S):
            for proc in procs:
                proc.signal(signal.SIGKILL)
            self._close(list(job.opened), job.opened)
        job.done.wait(5.0)

    def _launch(self, pipeline: Pipeline, stdin: int, stdout: int, stderr: int,
                source: str, inline: bool, owned: list[int] | None = None) -> Job:
        """Start every stage of ``pipeline``; a thread collects their statuses (an inline
        builtin runs to its end here, in the shell's thread). ``owned`` descriptors are
        closed when the job ends."""
        cmds = pipeline.commands
        if len(cmds) > MAX_STAGES:
            for fd in owned or []:
                os.close(fd)
            raise _RedirectError(f"too many commands in one pipeline ({len(cmds)}; at most "
                                 f"{MAX_STAGES})")
        job = Job(source or " | ".join(" ".join(w.text for w in c.argv) for c in cmds))
        pipes = getattr(self._depth, "pipes", None)
        if pipes:  # (<(LIST) pipes its words name: the job's until it ends)
            job.opened += pipes
            pipes.clear()
        for timer in self._timers:  # (`time`: what the job's parts cost is its own)
            timer.jobs.append(job)
        if self.cancel_on is not None:  # (a background block's: its job's end ends this)
            job.cancel = self.cancel_on
        stages = job.stages
        prev_read = stdin
        opened = job.opened
        opened += owned or []
        # The programs of a pipeline are started one after the other, on this thread. (They
        # were started side by side, a thread each: since a start waits little on its
        # sandbox (the zygote's spares), two starts only fought over the GIL, each syscall
        # of one handing the GIL to the other: 4 ms more kernel CPU and 3 ms more per
        # `cat | wc`, measured in one interleaved run.)
        # Each program's start returns once its sandbox is forked; whether its exec went
        # through is taken after the last start (zygote.deferring), so that the kernel
        # prepares the next program while the last one's sandbox sets itself up.
        confirmations: list[tuple[Stage, CommandContext, int]] = []
        deferred = contextlib.ExitStack()
        pending = None
        if len(cmds) > 1:
            from exo.sandbox.zygote import deferring

            pending = deferred.enter_context(deferring())
        try:
            for idx, cmd in enumerate(cmds):
                last = idx == len(cmds) - 1
                self._within_budget(opened)
                if last:
                    out_fd, next_read = stdout, -1
                else:
                    next_read, out_fd = os.pipe()
                    opened += [next_read, out_fd]
                    # A program reopens its end as /dev/stdin or /dev/stdout (through
                    # /proc/self/fd, as another uid): only its holder reaches it there.
                    os.fchmod(next_read, 0o666)
                held = len(opened)
                numbered: dict[int, int] = {}
                mine: set[int] = set()
                in_fd, o_fd, e_fd = self._redirect(cmd, prev_read, out_fd, stderr, opened,
                                                   numbered, mine)
                # The stage's own descriptors, closed when it no longer needs them (a copy
                # of the pipe's end, `> /dev/stdout`, kept the next stage from ever
                # reading to its end: `echo hi > /dev/stdout | wc -l` hung); a file's
                # sink is settled with the job, as before (its error is said then).
                redirected = [fd for fd in opened[held:] if fd not in self._sinks]
                env = exported_env(self)
                assigned = _assignments(cmd, self)
                env.update(assigned)
                argv = self._argv(_without_assignments(cmd))
                if "x" in self.options:  # set -x: each command as it runs
                    self._trace(argv, assigned, stderr)
                stage = Stage()
                stage.close_after += redirected
                if not last:
                    stage.close_after.append(out_fd)
                if idx > 0:
                    stage.close_after.append(prev_read)
                if idx == 0 and argv[0] in READS_TERMINAL and os.isatty(in_fd):
                    job.reads_terminal = True
                ctx = CommandContext(self, argv, in_fd, o_fd, e_fd, job.cancel)
                ctx.fds, ctx.own_fds = numbered, mine
                ctx.running = job.running
                ctx.adopt = functools.partial(self._adopt, stage)
                stages.append(stage)
                before = len(pending) if pending is not None else 0
                self._start(ctx, stage, inline, opened, env)
                if pending is not None and len(pending) > before:
                    confirmations.append((stage, ctx, before))
                prev_read = next_read
        except BaseException:
            confirmations.clear()  # the job is being torn down: nothing more to say of it
            if job.processes():
                self.interrupt(job)
            job.cancel.set()
            self._close(list(opened), opened)
            raise
        finally:
            deferred.close()
            if pending is not None:
                self._confirm(pending, confirmations)
        if inline:
            self._close(list(opened), opened)
            job.status = self._pipeline_status(stages)
            job.done.set()
            return job

        def collect() -> None:
            try:
                for stage in stages:
                    if stage.thread is not None:
                        stage.thread.join()  # a builtin waits for what it adopted itself
                    elif stage.job is not None:
                        stage.status = stage.job.wait()
                job.status = self._pipeline_status(stages)
            finally:
                self._close(list(opened), opened)
                job.state = "Done"
                job.done.set()

        _threadcache.start(collect, "exosh-job")
        return job

    def _pipeline_status(self, stages: list[Stage]) -> int:
        """The last command's status; under ``set -o pipefail`` the last failing one's
        (0 when every command succeeded), as in bash."""
        if PIPEFAIL in self.options:
            return next((stage.status for stage in reversed(stages) if stage.status), 0)
        return stages[-1].status if stages else 0

    def _confirm(self, pending: list[Callable[[], None]],
                 confirmations: list[tuple[Stage, CommandContext, int]]) -> None:
        """Take each deferred start's outcome (``_launch``): a program that could not be
        exec'd is reported as ``_start`` reports it, and its stage takes the status a
        start that failed at once would have had (the process ends by itself)."""
        from exo.kernel.api import failure_status

        by_index = {index: (stage, ctx) for stage, ctx, index in confirmations}
        for index, confirm in enumerate(pending):
            try:
                confirm()
            except Exception as exc:
                if index not in by_index:
                    continue
                stage, ctx = by_index[index]
                ctx.write(f"exo: {ctx.argv[0]}: {exc}\n", ctx.stderr)
                stage.status, stage.job = failure_status(exc), None

    def _adopt(self, stage: Stage, proc: ExoProcess) -> None:
        """A builtin's process (``run``) joins the builtin's job."""
        stage.job = ShellJob(self.kernel, proc)

    def _close(self, fds: list[int], opened: list[int]) -> None:
        """Close fds this pipeline opened, each exactly once (threads race here). A
        redirection's first: once what was written there is in its file, its error (the
        disk reserve) is said where the line's errors go, which may be one of ``fds``."""
        sinks = []
        with self._lock:
            for fd in fds:
                if fd in opened and fd in self._sinks:
                    opened.remove(fd)
                    os.close(fd)
                    sinks.append(self._sinks.pop(fd))
        if sinks:
            with self._live_lock:
                self._sink_total[0] -= len(sinks)
        for sink, report in sinks:
            sink.settle()
            if sink.error is not None:
                with contextlib.suppress(OSError):
                    os.write(report, f"exo: {sink.error}\n".encode())
        with self._lock:
            for fd in fds:
                if fd in opened:
                    opened.remove(fd)
                    if self.vfs.pipes and self.vfs.pipes.get(f"/dev/fd/{fd}") == fd:
                        del self.vfs.pipes[f"/dev/fd/{fd}"]  # (before its number is reused)
                    os.close(fd)

    def _exec_fds(self, cmd: Command, stdio: tuple[int, int, int]) -> int:
        """``exec`` with redirections and no command: they stay the shell's. 3 and up
        (``exec 3> f``, ``exec 4<&0``, ``exec 3>&-``) for every later command's ``>&3``
        and ``read -u 3``; 0, 1 and 2 (``exec > log 2>&1``, ``exec 2>/dev/null``) for
        every command after it, at the shell's own level: not inside a redirected block
        or a pipeline (there sh changes only that block's; this shell refuses)."""
        opened: list[int] = []
        numbered: dict[int, int] = {}
        mine: set[int] = set()
        try:
            if getattr(self._depth, "beside", False):
                # (a pipeline's stage, a background job's: the shell's table is the
                # line's, which other stages read; sh changes only that stage's own)
                raise _RedirectError("exec: the shell's own descriptors are not changed "
                                     "from a pipeline's stage or a background job")
            new = self._redirect(cmd, *stdio, opened, numbered, mine)
            depth = self._depth
            base, moves = getattr(depth, "base", None), getattr(depth, "moves", None)
            streams = [i for i in range(3) if new[i] != stdio[i]]
            if streams and (moves is None or base is None or any(
                    stdio[i] != _moved(base, moves)[i] for i in streams)):
                raise _RedirectError("exec: moving the shell's own 0, 1 or 2 inside a "
                                     "redirected block or a pipeline is not supported")
            wanted = {n: numbered[n] for n in mine}
            wanted.update((i, new[i]) for i in streams)
            for n, fd in wanted.items():  # the shell's own from now on
                fresh = fd in opened  # (opened here: taken over, else copied)
                if fresh:
                    opened.remove(fd)
                elif fd in self._owned:  # (`exec 3> f 4>&3`: one descriptor, twice)
                    continue
                if not self._fd_slots.acquire(blocking=False):
                    if fresh:
                        opened.append(fd)  # (closed with the rest of what it opened)
                    self._sweep_fds()  # (those taken so far, named by no number yet)
                    raise _RedirectError(f"exec: more than {MAX_SHELL_FDS} descriptors of "
                                         "the shell's own (its background blocks' too)")
                if not fresh:  # a copy: the one it duplicates is another's (`exec 3>&1`)
                    fd = wanted[n] = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
                self._owned.append(fd)
            if streams:
                assert moves is not None and base is not None
                for i in streams:
                    olds, _ = moves.get(i, (set(), -1))
                    olds.add(base[i])
                    olds.add(stdio[i])
                    self._superseded.add(stdio[i])
                    moves[i] = (olds, wanted[i])
            for n in [n for n in self.fds if n > 2 and n not in numbered]:  # 3>&-
                del self.fds[n]
            self.fds.update(wanted)
            self._sweep_fds()
            return 0
        except _RedirectError as exc:
            os.write(stdio[2], f"exo: {exc}\n".encode())
            return 1
        finally:
            self._close(list(opened), opened)

    def _terminal_fd(self, fds: dict[int, int]) -> int:
        """``/dev/tty``: the session's terminal (else a stream of the command's that is
        a terminal); a line saying there is none, as ENXIO says it in sh."""
        if self.terminal is not None:
            return self.terminal.fd
        for n in (0, 1, 2):
            if os.isatty(fds[n]):
                return fds[n]
        raise _RedirectError("/dev/tty: no terminal here (no such device or address)")

    def _sweep_fds(self) -> None:
        """Close what ``exec`` opened that no number of the shell's (or of a subshell
        it is in, or a stream moved earlier in the line) names any longer."""
        named = set(self.fds.values()) | self._superseded
        for saved in self._fds_saved:
            named.update(saved.values())
        self._drop_owned([fd for fd in self._owned if fd not in named])

    def close_fds(self) -> None:
        """The shell ends: its own descriptors (``exec 3> f``'s) closed, files settled."""
        self.fds.clear()
        self._fds_saved.clear()
        self._superseded.clear()
        self._drop_owned(list(self._owned))

    def _drop_owned(self, fds: list[int]) -> None:
        """Close ``fds`` (of ``_owned``), their slots of ``_fd_slots`` given back."""
        self._close(fds, self._owned)
        for _ in fds:
            self._fd_slots.release()

    def _redirect(
        self, cmd: Command, in_fd: int, out_fd: int, err_fd: int, opened: list[int],
        numbered: dict[int, int] | None = None, own: set[int] | None = None,
    ) -> tuple[int, int, int]:
        """``cmd``'s redirections applied in order to its descriptors (0, 1, 2 from the
        arguments; 3 and up the shell's own, ``exec 3> f``'s): the new 0, 1 and 2. What
        it opens goes into ``opened``. ``numbered``, if given, gets the descriptors 3 and
        up it ends with (``done 3< f``: a block's, for its ``read -u 3``)."""
        sinks: list[FileSink] = []
        report = err_fd  # the line's own stderr, before this command's redirections
        if len(cmd.redirects) > MAX_REDIRECTS:
            raise _RedirectError(f"too many redirections ({len(cmd.redirects)}; at most "
                                 f"{MAX_REDIRECTS} a command)")
        fds = {0: in_fd, 1: out_fd, 2: err_fd}
        inherited: dict[int, int] = {}
        if self.fds:  # (the command's own copies: the shell may close its numbers meanwhile)
            with self._lock:
                shared = [(n, fd) for n, fd in self.fds.items() if n > 2]
            for n, fd in shared:
                opened.append(copy := fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3))
                fds[n] = inherited[n] = copy
        for r in cmd.redirects:
            op = r.op
            if op == "2>&1":
                fds[2] = fds[1]
                continue
            if op in (">&2", "1>&2"):
                fds[1] = fds[2]
                continue
            number = 0 if op[0] == "<" else 1 if op[0] == ">" else int(op.rstrip("<>&"))
            if op.endswith(">&"):  # N>&M: M's descriptor; N>&-: none
                if r.target == "-":
                    if number > 2:
                        fds.pop(number, None)
                        continue
                    # (a closed stream: /dev/null, where sh's would fail with EBADF; the
                    # shell's own messages there are dropped, never an internal error)
                    opened.append(fd := os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
                    fds[number] = fd
                    continue
                source = fds.get(int(r.target)) if r.target.isascii() else None
                if source is None:
                    raise _RedirectError(f"{r.target}: bad file descriptor")
                fds[number] = source
                continue
            if op in ("<<", "<<<"):  # a here-document, a here-string
                opened.append(fd := _text_file(r.target + ("\n" if op == "<<<" else "")))
                fds[0] = fd
                continue
            try:
                path = self.vfs.normalize(r.target, self.cwd)
                stream = _STREAMS.get(path)
                if stream is not None:  # the command's own: as it stands at this point
                    fd = fcntl.fcntl(fds[stream], fcntl.F_DUPFD_CLOEXEC, 3)
                elif path == "/dev/tty":  # the session's terminal (not a file of the tree)
                    fd = fcntl.fcntl(self._terminal_fd(fds), fcntl.F_DUPFD_CLOEXEC, 3)
                elif op.endswith("<"):
                    fd = self.vfs.open_read(path)
                else:
                    with self._live_lock:  # (a slot, its sink's: given back if none)
                        if self._sink_total[0] >= MAX_SINKS:
                            raise _RedirectError(f"too many redirections into files open "
                                                 f"in this session ({MAX_SINKS})")
                        self._sink_total[0] += 1
                    sink = None
                    try:
                        fd, sink = self.vfs.open_sink(path, append=op.endswith(">>"),
                                                      name=r.target)
                    finally:
                        if sink is None:
                            with self._live_lock:
                                self._sink_total[0] -= 1
                    if sink is not None:
                        sinks.append(sink)
                        with self._lock:
                            self._sinks[fd] = (sink, report)
            except (OSError, VfsError) as exc:
                reason = _reason(exc)  # (which names the path itself, most often)
                named = reason.startswith((f"{r.target}: ", f"{path}: "))
                raise _RedirectError(reason if named else f"{r.target}: {reason}") from None
            opened.append(fd)
            fds[number] = fd
        if numbered is not None:
            numbered.update((n, fd) for n, fd in fds.items() if n > 2)
        if own is not None:  # (what the command set itself, not the shell's it copied)
            own.update(n for n, fd in fds.items() if n > 2 and inherited.get(n) != fd)
        # A file a later redirection overrode (`> a > b`) is made, as in sh, but its
        # pipe and thread go now: nothing will write there.
        unused = [s.fd for s in sinks if s.fd not in fds.values()]
        if unused:
            self._close(unused, opened)
        return fds[0], fds[1], fds[2]

    def _start(self, ctx: CommandContext, stage: Stage, inline: bool, opened: list[int],
               env: dict[str, str]) -> None:
        """Start one stage: a builtin in a thread (or inline), a program through the
        kernel."""
        name = ctx.argv[0]
        builtin = self.builtins.get(name)
        function = self.function(name)
        if function is not None:  # (a function's name hides a builtin's, as in sh)
            def builtin(ctx: CommandContext, function: Group = function) -> int:
                return self.call_function(function, ctx.args,
                                          (ctx.stdin, ctx.stdout, ctx.stderr))
        elif name in self._blocks:  # a block piped into the rest, or run in the background
            def builtin(ctx: CommandContext, block: tuple[Group, list[str], Shell] =
                        self._blocks[name]) -> int:
                group, args, runner = block
                if runner is not self:
                    runner.cancel_on = ctx.cancelled
                try:
                    return runner.call_function(group, args,
                                                (ctx.stdin, ctx.stdout, ctx.stderr))
                except Logout as exc:  # `exit` in a background block ends it alone
                    return exc.status
                except KeyboardInterrupt:  # its job killed (`kill %N`): as by SIGTERM
                    return 128 + signal.SIGTERM
                finally:
                    if runner is not self:  # (a background block's copy ends with it)
                        runner.close_fds()
        if builtin is None:
            try:
                job = self._spawn_external(ctx, env)
            except (PermissionError, ValueError) as exc:  # refused; a bad policy file
                ctx.write(f"exo: {name}: {exc}\n", ctx.stderr)
                stage.status, job = 126, None
            except Exception as exc:  # the kernel could not start it: said, with sh's status
                from exo.kernel.api import failure_status

                ctx.write(f"exo: {name}: {exc}\n", ctx.stderr)
                stage.status, job = failure_status(exc), None
            else:
                if job is None:
                    ctx.write(f"exo: {name}: command not found\n", ctx.stderr)
                    stage.status = NOT_FOUND
            stage.job = job
            # The child holds its own copies; ours must go so readers see EOF.
            self._close(stage.close_after, opened)
            return

        timed = bool(self._timers) and not inline  # (inline: the shell's thread's own)

        def run() -> None:
            if timed:
                from exo.shell.timing import thread_cpu

                before = thread_cpu()
            if not inline:  # a stage beside others, in this shell: no `exec 3> f` here
                self._depth.beside = True
                # A read of the terminal from here (a background job's `read -u 3` of an
                # `exec 3</dev/tty`) fails (EIO) rather than stop the kernel (SIGTTIN).
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTIN})
            try:
                stage.status = self._call(builtin, ctx)
            except (ShellExit, SwitchUser) as exc:
                if inline:
                    raise
                stage.status = getattr(exc, "status", 1)  # ends only its stage
            except (LoopControl, FunctionReturn, ErrExit) as exc:
                if inline:
                    raise
                stage.status = getattr(exc, "status", None) or 0  # as in a subshell
            except OSError:
                if inline:
                    raise
                # Saying what went wrong failed too: its streams were closed under it
                # (a session that ended, its jobs' descriptors closed). Nothing to say
                # it to; never a traceback on the console.
                stage.status = 1
            finally:
                self._close(stage.close_after, opened)
                if timed:
                    after = thread_cpu()
                    stage.cpu = (after[0] - before[0], after[1] - before[1])

        if inline:
            run()
        else:
            stage.thread = threading.Thread(target=run, name=f"exosh-{name}", daemon=True)
            stage.thread.start()

    def _call(self, builtin: Builtin, ctx: CommandContext) -> int:
        from exo.shell.builtins import usage

        if ctx.args[:1] == ["--help"] and self.builtins.get(ctx.argv[0]) is builtin:
            ctx.out(usage(ctx.name))
            return 0
        try:
            return builtin(ctx)
        except (ShellExit, SwitchUser):
            raise
        except CommandError as exc:
            ctx.err(str(exc))
            return exc.status
        except BrokenPipeError:
            return 141
        except ParseError as exc:  # (a function's, in a pipeline's stage: ${NAME:?})
            ctx.err(str(exc))
            return 1 if isinstance(exc, UnsetError) else 2
        except RecursionError:  # (functions calling functions, in a pipeline's stage)
            ctx.err("nested too deeply")
            return 2
        except (OSError, VfsError) as exc:
            ctx.err(_reason(exc))
            return 1
        except ValueError as exc:
            if "integer string conversion" not in str(exc):
                ctx.err(self._crashed(ctx.name, exc))
                return EX_SOFTWARE
            # Python refuses to read a number of more than 4300 digits (its conversion is
            # quadratic): `shift 9999…` is an argument out of range, not a bug.
            ctx.err("a number with too many digits")
            return 2
        except Exception as exc:  # a bug in one command must not take the shell down
            ctx.err(self._crashed(ctx.name, exc))
            return EX_SOFTWARE

    def _crashed(self, what: str, exc: Exception) -> str:
        """Log the traceback of ``exc`` (raised by ``what``) to the kernel's log; the one
        line to say instead."""
        import traceback

        self.kernel.log(f"shell: {what} crashed:\n{traceback.format_exc()}")
        return f"internal error: {type(exc).__name__}: {exc} (details in dmesg)"

    def _spawn_external(self, ctx: CommandContext, env: dict[str, str]) -> ShellJob | None:
        """Programs installed in the Exo tree's PATH run as sandboxed processes holding
        the working directory and themselves; the host's everyday programs run through
        the powerbox (``exo.shell.powerbox``), holding what their command line names."""
        own = min(ctx.own_fds, default=None)
        if own is not None:  # `prog 3> f`: the sandbox passes no such number
            raise ValueError(f"descriptor {own}: a program gets 0, 1 and 2 here (and the "
                             "pipes of <(…)), not a redirection of its own numbered "
                             f"{own}")
        # An installed package first: its /exo/bin launcher is not run, the app is.
        app = self.find_app(ctx.argv[0])
        if app is not None:
            return self._start_app(ctx, app, env)
        program = self.find_program(ctx.argv[0])
        if program is not None:
            return self._start_program(ctx, self.vfs.host_path(program), env)
        from exo.shell.powerbox import Powerbox

        return Powerbox.for_shell(self).start(ctx, env)

    def find_program(self, name: str) -> str | None:
        """The Exo path of the executable ``name`` names in the Exo tree (``$PATH``)."""
        candidates = [name] if "/" in name else [
            posixpath.join(d, name) for d in self.env.get("PATH", "").split(":") if d
        ]
        for cand in candidates:
            path = self.vfs.normalize(cand, self.cwd)
            if self.vfs.is_executable(path):
                return path
        return None

    def find_app(self, name: str) -> InstalledApp | None:
        """The installed package ``name`` (or ``/exo/bin/NAME``) stands for, when
        ``/exo/bin`` is on ``$PATH``. Asked of the current generation's record, which is
        what ``/exo/bin`` shows: the Vfs does not follow the store's ``exo/bin`` link."""
        if "/" in name:
            path = self.vfs.normalize(name, self.cwd)
            if posixpath.dirname(path) != PACKAGE_BIN:
                return None
            name = posixpath.basename(path)
        elif PACKAGE_BIN not in self.env.get("PATH", "").split(":"):
            return None
        from exo.pkg.installed import installed_app

        return installed_app(self.kernel.root, name)

    def _start_program(self, ctx: CommandContext, program: Path,
                       env: dict[str, str]) -> ShellJob | None:
        """Run ``program`` holding read-write access to the working directory and
        read-execute access to itself, nothing more."""
        from exo.kernel.manifest import parse_grant

        root = self.kernel.root
        cwd = self.vfs.host_path(self.cwd).relative_to(root).as_posix()
        grants = [parse_grant(f"storage://{cwd if cwd != '.' else ''}=READ,WRITE"),
                  parse_grant(f"storage://{program.relative_to(root).as_posix()}"
                              "=READ,EXECUTE")]
        if not self.session.holds(str(grants[0].name), "WRITE"):
            grants[0] = parse_grant(f"storage://{cwd if cwd != '.' else ''}=READ")
        # Inside, the Exo tree is / (exo.sandbox.namespace): the program by its Exo path.
        return self.start_process([f"/{grants[1].name.path}", *ctx.args], grants, ctx, env)

    def _start_app(self, ctx: CommandContext, app: InstalledApp,
                   env: dict[str, str]) -> ShellJob | None:
        """An installed package, started as its ``/exo/bin`` launcher would (``exo run``
        of its entry): holding exactly its manifest's capabilities plus reading and
        executing its own files, under the manifest's limits. Started here, through the
        kernel's API, rather than by running the launcher, which would nest ``exo run``
        (and an ephemeral kernel) inside a sandbox."""
        from exo.kernel.api import ProcessesUnavailable
        from exo.kernel.manifest import parse_grant, read_manifest
        from exo.shell.builtins import visible_cwd

        manifest = read_manifest(lambda: self.vfs.read_bytes(app.manifest), app.manifest)
        own = parse_grant(app.own_capability)
        for grant in (*manifest.grants, own):  # the session bounds what the app asks for
            self.session.require(grant)
        cwd = visible_cwd(self.cwd, [*manifest.grants, own])
        from exo.sandbox.zygote import prefer

        try:
            with prefer():  # from the session's zygote when it can be, as `run`
                proc = self.kernel.start([app.program, *ctx.args], [own], manifest=manifest,
                                         stdio=(ctx.stdin, ctx.stdout, ctx.stderr), cwd=cwd,
                                         env=env or None, session=self.session.token,
                                         **self.program_settings())
        except ProcessesUnavailable:
            return None
        return ShellJob(self.kernel, proc)

    def limits_changed(self) -> None:
        """``ulimit`` changed ``rlimits``: a redirection's file is bounded by ``-f`` too,
        as the shell's own writes are in sh (``exo.shell.sink``)."""
        import resource

        size = self.rlimits.get(resource.RLIMIT_FSIZE, (-1, -1))[0]
        self.vfs.max_file = None if size < 0 else size

    def program_settings(self) -> dict[str, Any]:
        """What every program the shell starts takes of it (``KernelApi.start``'s
        keywords): its ``umask`` and its ``ulimit`` limits."""
        from exo.shell.ulimit import records

        return {"umask": self.vfs.umask,
                "rlimits": records(self.rlimits) if self.rlimits else ()}

    def start_process(self, argv: list[str], grants: list[Grant], ctx: CommandContext,
                      env: dict[str, str], *, passthrough: bool = False,
                      syscalls: bool = True) -> ShellJob | None:
        """Start ``argv`` through the kernel's API, holding ``grants`` — each checked
        against the session's set first — in the shell's working directory
        (``passthrough``, ``syscalls``: as ``KernelApi.start``'s)."""
        from exo.kernel.api import ProcessesUnavailable

        for grant in grants:
            self.session.require(grant)
        # the pipes of the <(LIST)s it names, at their own numbers (/dev/fd/N is N)
        pipes = self.vfs.pipes
        keep = tuple(fd for path, fd in list(pipes.items()) if any(path in a for a in argv)
                     ) if pipes else ()
        try:
            # in the shell's working directory; `NAME=value program` sets env
            proc = self.kernel.start(argv, grants, stdio=(ctx.stdin, ctx.stdout, ctx.stderr),
                                     cwd=self.cwd, env=env or None, extra_fds=keep,
                                     session=self.session.token, passthrough=passthrough,
                                     syscalls=syscalls, **self.program_settings())
        except ProcessesUnavailable:  # this kernel cannot run programs: not found
            return None
        return ShellJob(self.kernel, proc)


class _State:
    """What a subshell may change of the shell (``Shell._state``), copied: variables and
    their read-only marks, what is exported, the working directory, functions, aliases,
    ``$1``… (a function's or the shell's), options (``set``, ``shopt``). (A plain class:
    ``typing`` is not imported before the shell is ready.)"""

    __slots__ = ("aliases", "args", "cwd", "dirstack", "env", "exported", "functions",
                 "integers", "options", "readonly", "rlimits", "shopt", "umask")

    def __init__(self, shell: Shell) -> None:
        self.env = dict(shell.env)
        self.readonly = set(shell.env.readonly)
        self.integers = set(shell.env.integers)
        self.exported = set(shell.exported)
        self.cwd = shell.cwd
        self.dirstack = list(shell.dirstack)
        self.functions = dict(shell.functions)
        self.aliases = dict(shell.aliases)
        self.args = list(shell.positional())
        self.options = set(shell.options)
        self.shopt = set(shell.shopt)
        self.umask = shell.vfs.umask
        self.rlimits = dict(shell.rlimits)


#: A shell thread running commands lets the kernel's other threads have the interpreter
#: (a real sleep: ``time.sleep(0)`` sleeps the timer slack, ~60 us) this often.
SHARE_EVERY_S = 0.001


def _share_interpreter(depth: threading.local) -> None:
    """Before each command: the shell runs in the kernel, on threads of its one
    interpreter, and a builtin loop (``while :; do :; done``) holding the interpreter
    lock made every other session's commands, and every process's syscalls and file
    requests, wait for it at each system call (each took the lock back only after the
    loop's switch interval): another session's ``ls`` took 2.1 s, ``/bin/true`` 2.8 s.
    A ``sched_yield`` (the lock released, ~1 us) before each command and a real sleep
    each ``SHARE_EVERY_S`` of running bring them to 5.6 and 9.1 ms, for 8 % of a lone
    loop's speed (``bench/shell_neighbor.py``)."""
    os.sched_yield()
    now = time.perf_counter()
    if now - getattr(depth, "shared", 0.0) > SHARE_EVERY_S:
        depth.shared = now
        time.sleep(0)


def _say_signal(job: Job, stderr: int) -> None:
    """A foreground job whose last program a signal ended, as sh says it: ``Segmentation
    fault (core dumped)``, ``Killed``, ``Terminated``... on a line of its own; not for
    SIGINT (the Ctrl-C was seen) or SIGPIPE (its reader went first, as meant), nor when
    the kernel said why already (``exo: killed: memory limit 64M reached``)."""
    from exo.shell.jobs import describe_signal

    ended = job.end_signal()  # (the last stage is a program's, then)
    if ended is None or ended[0] in (signal.SIGINT, signal.SIGPIPE):
        return
    last = job.stages[-1].job
    if last is not None and last.proc.end_reason:
        return
    with contextlib.suppress(OSError):
        os.write(stderr, f"{describe_signal(*ended)}\n".encode())


def _assignments_apart(source: str) -> list[str] | None:
    """``source`` cut into its words when it is only assignments, two or more, one of
    them an array's (``A=1 b=(x y)``: sh assigns them in turn); else None."""
    from exo.shell.parser import _ASSIGN_OR_APPEND, ParseError, matching_paren, word_end

    pieces: list[str] = []
    arrays = False
    i, n = 0, len(source)
    while True:
        while i < n and source[i] in " \t":
            i += 1
        if i >= n:
            break
        m = _ASSIGN_OR_APPEND.match(source, i)
        if m is None:
            return None  # a command's word: its assignments are its environment
        if source.startswith("(", m.end()):
            try:
                end = matching_paren(source, m.end()) + 1
            except ParseError:
                return None
            arrays = True
        else:
            end = word_end(source, m.end())
        if end < n and source[end] not in " \t":
            return None  # (`a=(x)y`, an operator: as it was)
        pieces.append(source[i:end])
        i = end
    return pieces if arrays and len(pieces) > 1 else None


def _block_source(node: If | Loop | Group | Case) -> str:
    """How ``jobs`` names a background block."""
    from exo.shell.parser import Case, Group, If

    if isinstance(node, Group):
        return "( … )" if node.subshell else "{ …; }"
    if isinstance(node, If):
        return "if …; fi"
    if isinstance(node, Case):
        return "case …; esac"
    return f"{node.kind if node.kind != 'arith' else 'for'} …; done"


def exported_env(shell: Shell) -> dict[str, str]:
    """The variables ``export`` marked, as programs get them (never an array, as bash)."""
    return {name: value for name in shell.exported
            if (value := shell.env.get(name)) is not None and not is_array(value)}


def _connector(node: Node) -> str:
    """What joins ``node`` to the one before it: ``;``, ``&&`` or ``||``."""
    from exo.shell.parser import Simple

    return node.item.connector if isinstance(node, Simple) else node.connector


def _moved(stdio: tuple[int, int, int], moves: dict[int, tuple[set[int], int]]
           ) -> tuple[int, int, int]:
    """``stdio`` with each stream an ``exec`` moved (from any of its former descriptors
    to its new one) moved."""
    a, b, c = (moves[i][1] if i in moves and stdio[i] in moves[i][0] else stdio[i]
               for i in range(3))
    return a, b, c


def _text_file(text: str) -> int:
    """A descriptor reading ``text`` from its start: an anonymous file (a memfd), so
    that a program reading it may seek, and a body of any size never blocks a pipe."""
    fd = os.memfd_create("exo-here-document", os.MFD_CLOEXEC)
    try:
        data = memoryview(text.encode())
        while data:
            data = data[os.write(fd, data):]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _position(digits: str) -> int:
    """``$N``'s N: a number of more digits than any count of arguments is past them all
    (Python's int() refuses more than 4300 digits)."""
    return int(digits) if len(digits) < 19 else 1 << 63


def _assignments(cmd: Command, shell: Shell | None = None) -> list[tuple[str, str]]:
    """The leading ``NAME=value`` words of ``cmd``; ``NAME+=value`` appends to NAME's
    value in ``shell`` (to an array's first element, as bash's)."""
    out: list[tuple[str, str]] = []
    for w in cmd.argv:
        if not w.assign:
            break
        name, _, value = w.text.partition("=")
        if name.endswith("+"):
            name = name[:-1]
            if shell is not None:
                value = shell.appended(name, value)
        out.append((name, value))
    return out


def _without_assignments(cmd: Command) -> Command:
    n = len(_assignments(cmd))
    return cmd if n == 0 else type(cmd)(cmd.argv[n:], cmd.redirects)


class _RedirectError(Exception):
    """A command that cannot start, said before any of its pipeline runs (a redirection
    that failed, too many of them, too many stages): status 1, no job."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, VfsError):
        name = exc.filename if exc.filename else ""
        if exc.args and isinstance(exc.args[0], str):
            return exc.args[0]
        return f"{name}: {exc.strerror}" if name else exc.strerror
    return str(exc)


def install_sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
