"""Builtins that look at the system: ``posix-x``, ``top`` and ``sched``.

They only register here; what they need (POSIX-X's command line, rich, the host's
``/proc``) loads when they first run, so the shell reaches its prompt without them.
``top`` and ``sched`` read what the shell already reaches: the kernel's API
(``KernelApi.ps``) and the synthesised ``/proc/sched`` through the shell's Vfs.
"""

from __future__ import annotations

import os
import time
import weakref

from exo.shell.builtins import builtin
from exo.shell.context import CommandContext, CommandError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from rich.console import RenderableType

# ------------------------------------------------------------------- posix-x


@builtin("posix-x", "Linux programs under Exo capabilities: posix-x run [--cap NAME=RIGHTS]... "
         "[--manifest FILE] -- PROGRAM ARGS... | posix-x analyze PROGRAM [--json] [--deep] "
         "| posix-x profile [--manifest FILE] -- PROGRAM... [--json] | posix-x migrate "
         "PROGRAM [--json] | posix-x benchmark [--quick] [--json] "
         "| posix-x syscalls [NAME...] [--tier T] [--json]")
def _posix_x(ctx: CommandContext) -> int:
    import io

    from exo.posix_x.cli import main

    args = list(ctx.args)
    command = args[0] if args else ""
    if command == "run":
        # Inside the shell, through the shell's own run: the session's set bounds it, the
        # manifest is read by Exo path, and the job gets the shell's pipes and job control.
        from exo.shell.builtins import run_program

        return run_program(ctx, args[1:], posix_x=True, usage="posix-x run [--cap "
                           "NAME=RIGHTS]... [--manifest FILE] -- PROGRAM ARGS...")
    shown: dict[str, str] = {}  # host path -> the Exo path the user typed
    if command in ("profile", "migrate", "benchmark"):
        args = _posix_x_host_args(ctx, args, shown)
    if command == "analyze":
        for i, arg in enumerate(args[1:], 1):
            if not arg.startswith("-"):
                exo_path = ctx.path(arg)
                host = _analyzable(ctx, exo_path)
                shown[host] = exo_path
                args[i] = host
                break
    out, err = io.StringIO(), io.StringIO()
    if "-h" in args or "--help" in args:  # argparse prints help to sys.stdout itself
        import contextlib

        with contextlib.redirect_stdout(out):
            status = main(args, stdout=out, stderr=err)
    else:
        status = main(args, stdout=out, stderr=err)
    for stream, fd in ((out, ctx.stdout), (err, ctx.stderr)):
        text = stream.getvalue()
        for host, exo_path in shown.items():  # the user sees Exo paths, never the host's
            text = text.replace(host, exo_path)
        ctx.write(text, fd)
    return status


def _posix_x_host_args(ctx: CommandContext, args: list[str],
                       shown: dict[str, str]) -> list[str]:
    """``profile``, ``migrate`` and ``benchmark`` run on the host beside the kernel (strace,
    native runs), on this system's tree: files named by Exo path, within the session.
    ``migrate`` widens its own manifest and ``benchmark`` runs programs natively, so they
    are the administrator's; ``profile`` holds only what the session holds."""
    from exo.kernel.manifest import ManifestError, load_manifest, parse_grant

    command = args[0]
    if command != "profile" and ctx.shell.session.grants is not None:
        raise CommandError(f"posix-x {command}: only the administrator's session runs it "
                           f"(user {ctx.shell.session.user})", 126)
    out = [command]
    rest = args[1:]
    grants = []
    try:
        while rest:
            arg = rest.pop(0)
            out.append(arg)
            if arg == "--":
                out += rest
                break
            if arg in ("--manifest", "--output", "-o", "--cap") and rest:
                value = rest.pop(0)
                if arg == "--cap":
                    grants.append(parse_grant(value))
                else:
                    exo_path = ctx.path(value)
                    ctx.shell.session.check_path(exo_path,
                                                 "read" if arg == "--manifest" else "write")
                    value = str(ctx.shell.vfs.host_path(exo_path))
                    shown[value] = exo_path
                    if arg == "--manifest":
                        grants += load_manifest(value).grants
                out.append(value)
        for grant in grants:
            ctx.shell.session.require(grant)
    except ManifestError as exc:
        raise CommandError(str(exc), 2) from None
    except PermissionError as exc:
        raise CommandError(str(exc), 126) from None
    if command == "migrate" and not {"--output", "-o"} & set(out[:out.index("--")]
                                                             if "--" in out else out):
        program = next((a for a in out[1:] if not a.startswith("-")), "program")
        exo_path = ctx.path(f"{os.path.basename(program.rstrip('/')) or 'program'}.toml")
        host = str(ctx.shell.vfs.host_path(exo_path))
        shown[host] = exo_path
        out[1:1] = ["--output", host]
    if command != "benchmark":
        out[1:1] = ["--root", str(ctx.shell.vfs.root)]
    return out


def _analyzable(ctx: CommandContext, exo_path: str) -> str:
    """The host path of ``exo_path`` for POSIX-X to read: the host's own for the system
    directories (inside every Exo process ``/usr`` *is* the host's), else the Exo tree's,
    if the session may read it."""
    from exo.sandbox.namespace import SYSTEM_DIRS
    from exo.shell.vfs import VfsError

    if any(exo_path == d or exo_path.startswith(d + "/") for d in SYSTEM_DIRS):
        return exo_path
    try:
        ctx.shell.session.check_path(exo_path, "read")
        return str(ctx.shell.vfs.host_path(exo_path))
    except VfsError as exc:
        raise CommandError(f"analyze: {exc}", 1) from None
    except PermissionError as exc:
        raise CommandError(f"analyze: {exc}", 126) from None


# ---------------------------------------------------------------- sched, top

SCHED = "/proc/sched"
_TASK_HEADER = "   ID NAME"


def _sched_text(ctx: CommandContext) -> str | None:
    try:
        return ctx.shell.vfs.read_bytes(SCHED).decode()
    except (OSError, ValueError):
        return None


@builtin("sched", "the kernel scheduler and Eco++ placement: sched [-a] [--json] (-a: the "
         "scheduler's tasks too) | sched place PID batch|interactive|auto")
def _sched(ctx: CommandContext) -> int:
    args = list(ctx.args)
    if args and args[0] == "place":
        return _sched_place(ctx, args[1:])
    unknown = [a for a in args if a not in ("-a", "--all", "--json")]
    if unknown:
        raise CommandError(f"unknown option {unknown[0]!r}; usage: sched [-a] [--json]"
                           " | sched place PID batch|interactive|auto", 2)
    text = _sched_text(ctx)
    if text is None:
        raise CommandError(f"{SCHED}: the Scheduler step did not start (see dmesg)")
    placer = _placer(ctx)
    if "--json" in args:
        import json

        ctx.out(json.dumps({"scheduler": text, "placement": None if placer is None
                            else _visible(ctx, placer.to_json())}))
        return 0
    every = "-a" in args or "--all" in args
    for line in text.splitlines():
        if line.startswith(_TASK_HEADER) and not every:
            break
        ctx.out(line)
    for line in _placement_lines(ctx, placer):
        ctx.out(line)
    return 0


def _placer(ctx: CommandContext) -> Any:
    from exo.sched.placement import running

    return running(ctx.shell.kernel.boot_id)


def _mine(ctx: CommandContext) -> set[int] | None:
    """The Exo pids this session may see and place (None: all, the administrator)."""
    if ctx.shell.session.grants is None:
        return None
    return {p.pid for j in ctx.shell.jobs for p in j.processes()}


def _visible(ctx: CommandContext, data: dict[str, Any]) -> dict[str, Any]:
    mine = _mine(ctx)
    if mine is not None:
        data["processes"] = [r for r in data["processes"] if r["pid"] in mine]
    return data


def _placement_lines(ctx: CommandContext, placer: Any) -> list[str]:
    if placer is None:
        return ["placement (Eco++): not running yet (AI-Res starts it in the DEFERRED phase;"
                " see dmesg)"]
    mine = _mine(ctx)
    rows = [r for r in placer.rows() if mine is None or r["pid"] in mine]
    lines = [placer.summary()]
    if rows:
        lines.append(f"{'PID':>5} {'ROLE':<11} {'MODE':<8} {'CLASS':<6} {'CPU_EMA':>7} "
                     f"{'CPUS':<8} {'WEIGHT':>6} {'MOVES':>5} COMMAND")
        for r in rows:
            cpus = ",".join(str(c) for c in r["cpus"]) or "-"
            weight = "-" if r["weight"] is None else str(r["weight"])
            lines.append(f"{r['pid']:>5} {r['role']:<11} {r['mode']:<8} {r['class']:<6} "
                         f"{r['cpu_ema']:>7.1f} {cpus:<8} {weight:>6} {r['moves']:>5} "
                         f"{str(r['command'])[:40]}")
    return lines


def _sched_place(ctx: CommandContext, args: list[str]) -> int:
    from exo.sched.placement import MODES

    usage = "usage: sched place PID batch|interactive|auto"
    if len(args) != 2 or args[1] not in MODES:
        raise CommandError(usage, 2)
    try:
        pid = int(args[0])
    except ValueError:
        raise CommandError(f"{args[0]!r} is not a process id; {usage}", 2) from None
    placer = _placer(ctx)
    if placer is None:
        raise CommandError("placement is not running yet (AI-Res starts it in the "
                           "DEFERRED phase; see dmesg)")
    mine = _mine(ctx)
    if mine is not None and pid not in mine:
        raise CommandError(f"process {pid}: permission denied (not one of your jobs)",
                           126)
    try:
        row = placer.override(pid, args[1])
    except KeyError:
        raise CommandError(f"no running Exo process {pid}") from None
    cpus = ",".join(str(c) for c in row["cpus"]) or "-"
    weight = "-" if row["weight"] is None else row["weight"]
    ctx.out(f"process {pid}: {row['role']} ({row['mode']}), CPUs {cpus}, weight {weight}")
    return 0


class _Sampler:
    """CPU time and memory of Exo processes, from the host's ``/proc``: a process is its
    sandbox's outer process and everything under it (the kernel: itself only). Memory is
    the process's cgroup's when the shell can read it (the kernel puts each process in
    one), else the resident sets summed. Keeps the previous sample for ``%CPU``."""

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK")
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.previous: dict[int, tuple[float, float]] = {}  # host pid -> (when, cpu s)

    def sample(self, host_pid: int, whole_tree: bool) -> tuple[float | None, float | None,
                                                                int | None]:
        """(CPU seconds, %CPU since the last sample, memory bytes); None: unknown."""
        from exo.kernel.process import host_stat

        pids = self._tree(host_pid) if whole_tree else [host_pid]
        cpu, rss, seen = 0.0, 0, False
        for pid in pids:
            fields = host_stat(pid)
            if len(fields) < 13:
                continue
            try:
                with open(f"/proc/{pid}/statm", "rb") as f:
                    rss += int(f.read().split()[1]) * self.page
            except (OSError, IndexError, ValueError):
                continue
            cpu += (int(fields[11]) + int(fields[12])) / self.tick  # utime + stime
            seen = True
        if not seen:
            return None, None, None
        now = time.monotonic()
        before = self.previous.get(host_pid)
        self.previous[host_pid] = (now, cpu)
        percent = None if before is None or now <= before[0] else max(
            0.0, 100.0 * (cpu - before[1]) / (now - before[0]))
        memory = self._cgroup_memory(host_pid) if whole_tree else None
        return cpu, percent, rss if memory is None else memory

    @staticmethod
    def _tree(pid: int) -> list[int]:
        out: list[int] = []
        todo = [pid]
        while todo and len(out) < 4096:
            p = todo.pop()
            out.append(p)
            try:
                for tid in os.listdir(f"/proc/{p}/task"):
                    with open(f"/proc/{p}/task/{tid}/children") as f:
                        todo.extend(int(c) for c in f.read().split())
            except (OSError, ValueError):
                continue
        return out

    @staticmethod
    def _cgroup_memory(pid: int) -> int | None:
        """The memory charged to ``pid``'s Exo cgroup (v2 ``memory.current``, v1
        ``memory.usage_in_bytes``). Paths in ``/proc/PID/cgroup`` are from the hierarchy's
        root; ``/sys/fs/cgroup`` may show only our own cgroup (in a container): both tried."""
        own = _cgroups(os.getpid())
        for controllers, path in _cgroups(pid).items():
            if "exo" not in path:
                continue
            if controllers == "":
                base, name = "/sys/fs/cgroup", "memory.current"
            elif "memory" in controllers.split(","):
                base, name = "/sys/fs/cgroup/memory", "memory.usage_in_bytes"
            else:
                continue
            mine = own.get(controllers, "/")
            relative = path[len(mine):] if mine != "/" and path.startswith(mine + "/") else ""
            for where in (relative, path):
                if not where:
                    continue
                try:
                    with open(f"{base}{where}/{name}") as f:
                        return int(f.read())
                except (OSError, ValueError):
                    continue
        return None


def _cgroups(pid: int) -> dict[str, str]:
    """``/proc/PID/cgroup``: controllers (``""`` for v2) -> path."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            out[parts[1]] = parts[2]
    return out


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    if n < 1024:
        return f"{n}B"
    size = n / 1024
    for unit in ("K", "M"):
        if size < 1024:
            return f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}G"


def _frame(ctx: CommandContext, sampler: _Sampler) -> RenderableType:
    """One screen of ``top``: the processes, then the scheduler's summary and tasks."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    rows: list[dict[str, Any]] = ctx.shell.kernel.ps()
    if ctx.shell.session.grants is not None:  # a user sees the kernel and their own jobs
        mine = {p.pid for j in ctx.shell.jobs for p in j.processes()}
        rows = [r for r in rows if r["pid"] == 1 or r["pid"] in mine]
    states: dict[str, int] = {}
    placer = _placer(ctx)
    placed = {r["pid"]: r for r in placer.rows()} if placer is not None else {}
    procs = Table("PID", "STATE", "CLASS", "PRED_MS", "CPU_S", "%CPU", "MEM", "TIME",
                  "COMMAND", box=None, header_style="bold", pad_edge=False)
    for r in rows:
        states[str(r["state"])] = states.get(str(r["state"]), 0) + 1
        cpu, percent, memory = sampler.sample(int(r["host_pid"]), whole_tree=r["pid"] != 1)
        # A process's class is AI-Res's (its CPU share's EMA), shown with the role Eco++
        # placement gave it; its prediction is a CPU share, not a burst: none in ms.
        p = placed.get(r["pid"])
        klass = "-" if p is None else f"{p['class']}:{p['role']}"
        procs.add_row(str(r["pid"]), str(r["state"]), klass, "-",
                      "-" if cpu is None else f"{cpu:.2f}",
                      "-" if percent is None else f"{percent:.0f}", _size(memory),
                      f"{r['elapsed_s']:.1f}s", str(r["command"])[:60])
    head = Text(f"top - {time.strftime('%H:%M:%S')}  processes {len(rows)} ("
                + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) + ")")
    parts: list[RenderableType] = [head, procs, Text(_placement_lines(ctx, placer)[0])]
    text = _sched_text(ctx)
    if text is None:
        parts.append(Text("scheduler: not running (see dmesg)"))
        return Group(*parts)
    lines = text.splitlines()
    split = next((i for i, line in enumerate(lines) if line.startswith(_TASK_HEADER)),
                 len(lines))
    parts.append(Text(""))
    parts.extend(Text(line) for line in lines[:split])
    tasks = Table("ID", "NAME", "STATE", "CLASS", "PRED_MS", "BURSTS", "CPU_MS", "ACC",
                  box=None, header_style="bold", pad_edge=False)
    for line in lines[split + 1:]:
        cells = line.split()
        if len(cells) >= 8:  # names have no spaces (the scheduler truncates them)
            tasks.add_row(cells[0], " ".join(cells[1:-6]), *cells[-6:])
    parts.append(tasks if tasks.row_count else Text("(no scheduler tasks)"))
    return Group(*parts)


@builtin("top", "processes and scheduler tasks, live: top [-b] [-n N | --once] [-d SECONDS] "
         "(q or Ctrl-C quits)")
def _top(ctx: CommandContext) -> int:
    p = _top_parser(ctx)
    ns = p.parse_args(ctx.args)
    frames: int | None = 1 if ns.once else ns.n
    if frames is not None and frames < 1:
        raise CommandError("-n: at least one frame", 2)
    if ns.d <= 0:
        raise CommandError("-d: a positive number of seconds", 2)
    sampler = _Sampler()
    live = ctx.isatty() and os.isatty(ctx.stdin) and frames != 1 and not ns.b
    with os.fdopen(os.dup(ctx.stdout), "w") as fh:
        from rich.console import Console

        console = Console(file=fh, force_terminal=live or ctx.isatty(),
                          width=None if ctx.isatty() else 120)
        if not live:  # for scripts and tests: frames printed one after another
            shown = 0
            while True:
                with console.capture() as frame:
                    console.print(_frame(ctx, sampler))
                fh.write("".join(line.rstrip() + "\n"
                                 for line in frame.get().splitlines()))
                fh.flush()
                shown += 1
                if (frames is not None and shown >= frames) or ctx.cancelled.wait(ns.d):
                    return 0
                fh.write("\n")
        return _live(ctx, console, sampler, frames, ns.d)


def _top_parser(ctx: CommandContext) -> Any:
    from exo.shell.builtins import _parser

    p = _parser(ctx, "processes and scheduler tasks, refreshed every second")
    p.add_argument("-n", type=int, default=None, help="frames to show, then exit")
    p.add_argument("--once", action="store_true", help="one frame (as -n 1)")
    p.add_argument("-b", action="store_true",
                   help="batch mode, as procps top's: frames printed one after another")
    p.add_argument("-d", type=float, default=1.0, help="seconds between frames")
    return p


def _live(ctx: CommandContext, console: Any, sampler: _Sampler, frames: int | None,
          delay: float) -> int:
    """The terminal view: redrawn every ``delay`` seconds until ``q``, Ctrl-C (read as
    a key: the terminal's signals are off meanwhile) or ``frames`` frames."""
    import select
    import termios

    from rich.live import Live

    fd = ctx.stdin
    saved = termios.tcgetattr(fd)
    mode = termios.tcgetattr(fd)
    mode[3] &= ~(termios.ICANON | termios.ECHO | termios.ISIG)
    mode[6][termios.VMIN], mode[6][termios.VTIME] = 1, 0
    termios.tcsetattr(fd, termios.TCSANOW, mode)
    shown = 0
    try:
        with Live(_frame(ctx, sampler), console=console, auto_refresh=False,
                  screen=True) as view:
            while True:
                shown += 1
                if frames is not None and shown >= frames:
                    return 0
                deadline = time.monotonic() + delay
                while (left := deadline - time.monotonic()) > 0:
                    if ctx.cancelled.is_set():
                        return 0
                    ready, _, _ = select.select([fd], [], [], min(left, 0.2))
                    if ready and os.read(fd, 1) in (b"q", b"Q", b"\x03", b""):
                        return 0
                view.update(_frame(ctx, sampler), refresh=True)
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


# ------------------------------------------------------------------- ai

AI_WAIT_S = 10.0  # how long a first `ai` waits for the DEFERRED phase to start the agents
#: Each shell's conversation with the assistant: it keeps the last question asked back,
#: so ``ai 1`` / ``ai yes`` answers it.
_AI_CONVERSATIONS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


@builtin("ai", 'ask the assistant: ai "Quel est l\'usage CPU ?" | ai --intent NAME '
         "[SLOT=VALUE]... [--lang fr|en] [--json] | ai --voice (listen once)")
def _ai(ctx: CommandContext) -> int:
    """The assistant of ``exo.agents.assistant``, acting for this session: destructive
    intents ask y/N at the terminal (or read the answer from standard input in a script)."""
    import json

    from exo.agents.assistant import Context, Conversation, act
    from exo.agents.intents import BY_NAME, Intent
    from exo.agents.subsystem import running
    from exo.shell.context import read_line

    args = list(ctx.args)
    as_json = "--json" in args
    args = [a for a in args if a != "--json"]
    lang: str | None = None
    if "--lang" in args:
        i = args.index("--lang")
        if i + 1 >= len(args) or args[i + 1] not in ("fr", "en"):
            raise CommandError("--lang takes fr or en", 2)
        lang = args[i + 1]
        del args[i:i + 2]
    if args == ["--voice"]:
        from exo.agents.voice import VoiceError, listen_once

        try:
            args = [listen_once()]
        except VoiceError as exc:
            raise CommandError(str(exc)) from exc
        ctx.write(f"heard: {args[0]}\n", ctx.stderr)
    if not args:
        raise CommandError('usage: ai "SENTENCE" | ai --intent NAME [SLOT=VALUE]...', 2)
    if not " ".join(args).strip():
        raise CommandError("empty sentence", 2)  # said before waiting for the agents
    kernel = ctx.shell.kernel
    agents = running(kernel.boot_id)
    deadline = time.monotonic() + AI_WAIT_S
    while agents is None and time.monotonic() < deadline and not ctx.cancelled.is_set():
        time.sleep(0.05)  # they start in the DEFERRED phase, just after the prompt
        agents = running(kernel.boot_id)
    context = Context(api=kernel, agents=agents, session=ctx.shell.session, root=kernel.root)

    def confirm(what: str) -> bool:
        question = f"ai: {what}? [y/N] "
        terminal = ctx.shell.terminal
        if terminal is not None:
            return terminal.ask(question)
        ctx.write(question, ctx.stderr)
        return read_line(ctx.stdin).strip().lower() in (b"y", b"yes", b"o", b"oui")

    if args[0] == "--intent":
        if len(args) < 2 or args[1] not in BY_NAME:
            raise CommandError(f"--intent takes one of: {', '.join(BY_NAME)}", 2)
        slots = {}
        for item in args[2:]:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise CommandError(f"{item!r}: slots are SLOT=VALUE", 2)
            slots[key] = value
        result = act(Intent(args[1], slots, 1.0, lang or "en"), confirm=confirm, lang=lang,
                     context=context)
    else:
        from exo.agents.intent import IntentInputError

        conversation = _AI_CONVERSATIONS.setdefault(ctx.shell, Conversation())
        try:
            result = conversation.answer(" ".join(args), confirm=confirm, lang=lang,
                                         context=context)
        except IntentInputError as exc:  # an empty or over-long sentence: the user's
            raise CommandError(str(exc), 2) from None
    if as_json:
        ctx.out(json.dumps(result.to_json(), ensure_ascii=False))
    else:
        ctx.write(result.line() + "\n", ctx.stdout if result.ok else ctx.stderr)
    return 0 if result.ok or result.question else 1
