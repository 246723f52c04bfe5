"""The Exo shell: runs command lists, pipelines and redirections.

Builtins run as Python functions (in the shell's thread when alone, in threads when
part of a pipeline), wired with real OS pipes so that builtins and sandboxed
processes compose the same way. Ctrl-C cancels the foreground pipeline only.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import signal
import threading

from exo.shell.context import CommandContext, CommandError
from exo.shell.parser import Command, ParseError, Pipeline, parse_pipeline, split_list
from exo.shell.vfs import Vfs, VfsError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Protocol

    from exo.kernel.api import KernelApi
    from exo.kernel.process import ExoProcess

    Builtin = Callable[[CommandContext], int]

    class Job(Protocol):
        """A running external process (``ShellJob``): wait for it, or interrupt it."""

        def wait(self) -> int: ...
        def interrupt(self) -> None: ...


NOT_FOUND = 127
INTERRUPTED = 130


# Plain classes, not dataclasses: each @dataclass costs ~1.3 ms at import, on the boot path.
class Session:
    __slots__ = ("home", "uid", "user")

    def __init__(self, user: str = "root", uid: int = 0, home: str = "/home/root") -> None:
        self.user = user
        self.uid = uid
        self.home = home


class _Stage:
    __slots__ = ("close_after", "job", "status", "thread")

    def __init__(
        self,
        thread: threading.Thread | None = None,
        job: Job | None = None,
        status: int = 0,
        close_after: list[int] | None = None,
    ) -> None:
        self.thread = thread
        self.job = job
        self.status = status
        self.close_after: list[int] = [] if close_after is None else close_after


class BackgroundJob:
    __slots__ = ("done", "number", "source", "status", "thread")

    def __init__(
        self,
        number: int,
        source: str,
        status: int | None = None,
        done: threading.Event | None = None,
        thread: threading.Thread | None = None,
    ) -> None:
        self.number = number
        self.source = source
        self.status = status
        self.done = threading.Event() if done is None else done
        self.thread = thread


class ShellJob:
    """A sandboxed process in a pipeline: its exit status, or interrupted by Ctrl-C."""

    __slots__ = ("kernel", "proc")

    def __init__(self, kernel: KernelApi, proc: ExoProcess) -> None:
        self.kernel, self.proc = kernel, proc

    def wait(self) -> int:
        return self.kernel.wait(self.proc)

    def interrupt(self) -> None:
        self.kernel.interrupt(self.proc)


class ShellExit(Exception):
    """Raised by ``exit``: control flow, not an error."""

    def __init__(self, status: int) -> None:
        self.status = status


class Shell:
    def __init__(self, kernel: KernelApi, vfs: Vfs, session: Session | None = None) -> None:
        from exo.shell.builtins import BUILTINS

        self.kernel = kernel  # all the shell reaches of the kernel: its API
        self.vfs = vfs
        self.session = session or Session()
        self.builtins: dict[str, Builtin] = dict(BUILTINS)
        self.cwd = self.session.home if vfs.is_dir(self.session.home) else "/"
        self.env: dict[str, str] = {
            "HOME": self.session.home,
            "USER": self.session.user,
            "PATH": "/bin:/usr/bin:/exo/bin",
            "PWD": self.cwd,
            "SHELL": "/bin/exosh",
            "EXO_ROOT": str(kernel.root),
        }
        self.last_status = 0
        self.history: list[str] = []
        self.jobs: list[BackgroundJob] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ api
    def lookup(self, name: str) -> str:
        if name == "?":
            return str(self.last_status)
        return self.env.get(name, "")

    def run_line(self, line: str, stdin: int = 0, stdout: int = 1, stderr: int = 2) -> int:
        """Run one line; returns its status (also kept in ``$?``). Raises ShellExit."""
        try:
            items = split_list(line)
        except ParseError as exc:
            os.write(stderr, f"exo: {exc}\n".encode())
            self.last_status = 2
            return 2
        for item in items:
            if item.connector == "&&" and self.last_status != 0:
                continue
            if item.connector == "||" and self.last_status == 0:
                continue
            try:
                pipeline = parse_pipeline(item.source, self.lookup)
            except ParseError as exc:
                os.write(stderr, f"exo: {exc}\n".encode())
                self.last_status = 2
                return 2
            if not pipeline.commands[0].argv:
                continue
            if item.background:
                self._background(item.source, pipeline, stdout, stderr)
                self.last_status = 0
                continue
            self.last_status = self._run_pipeline(pipeline, stdin, stdout, stderr)
        return self.last_status

    def _background(self, source: str, pipeline: Pipeline, stdout: int, stderr: int) -> None:
        """``cmd &``: run with stdin from /dev/null in a thread; ``jobs`` lists it."""
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        out, err = os.dup(stdout), os.dup(stderr)
        job = BackgroundJob(len(self.jobs) + 1, source)

        def run() -> None:
            try:
                job.status = self._run_pipeline(pipeline, devnull, out, err)
            finally:
                for fd in (devnull, out, err):
                    os.close(fd)
                job.done.set()

        self.jobs.append(job)
        job.thread = threading.Thread(target=run, name=f"exosh-job-{job.number}", daemon=True)
        job.thread.start()
        os.write(stderr, f"[{job.number}] {source}\n".encode())

    # ------------------------------------------------------------ execution
    def _argv(self, cmd: Command) -> list[str]:
        argv: list[str] = []
        for w in cmd.argv:
            if w.globbable:
                matches = self._glob(w.text)
                argv.extend(matches or [w.text])
            else:
                argv.append(w.text)
        return argv

    def _glob(self, pattern: str) -> list[str]:
        """Expand one glob pattern against the Exo tree (last component only)."""
        head, tail = posixpath.split(pattern)
        base = self.vfs.normalize(head or ".", self.cwd)
        try:
            names = [e.name for e in self.vfs.listdir(base)]
        except (OSError, VfsError):
            return []
        hidden = tail.startswith(".")
        hits = [n for n in names if fnmatch.fnmatchcase(n, tail) and (hidden or n[0] != ".")]
        return [posixpath.join(head, n) if head else n for n in sorted(hits)]

    def _run_pipeline(self, pipeline: Pipeline, stdin: int, stdout: int, stderr: int) -> int:
        cmds = pipeline.commands
        stages: list[_Stage] = []
        cancel = threading.Event()
        prev_read = stdin
        opened: list[int] = []
        try:
            for idx, cmd in enumerate(cmds):
                last = idx == len(cmds) - 1
                if last:
                    out_fd, next_read = stdout, -1
                else:
                    next_read, out_fd = os.pipe()
                    opened += [next_read, out_fd]
                in_fd, o_fd, e_fd = self._redirect(cmd, prev_read, out_fd, stderr, opened)
                argv = self._argv(cmd)
                stage = _Stage()
                inline = len(cmds) == 1
                if not last:
                    stage.close_after.append(out_fd)
                if idx > 0:
                    stage.close_after.append(prev_read)
                ctx = CommandContext(self, argv, in_fd, o_fd, e_fd, cancel)
                self._start(ctx, stage, inline, opened)
                stages.append(stage)
                prev_read = next_read
            for stage in stages:
                if stage.thread is not None:
                    while stage.thread.is_alive():
                        stage.thread.join(0.05)
                elif stage.job is not None:
                    stage.status = stage.job.wait()
            return stages[-1].status if stages else 0
        except KeyboardInterrupt:
            cancel.set()
            for stage in stages:
                if stage.job is not None:
                    stage.job.interrupt()
            for fd in list(opened):
                self._close([fd], opened)
            for stage in stages:
                if stage.thread is not None:
                    stage.thread.join(1.0)
                if stage.job is not None:
                    stage.job.wait()
            os.write(stderr, b"^C\n")
            return INTERRUPTED
        except _RedirectError as exc:
            os.write(stderr, f"exo: {exc}\n".encode())
            return 1
        finally:
            for fd in list(opened):
                self._close([fd], opened)

    def _close(self, fds: list[int], opened: list[int]) -> None:
        """Close fds this pipeline opened, each exactly once (threads race here)."""
        with self._lock:
            for fd in fds:
                if fd in opened:
                    opened.remove(fd)
                    os.close(fd)

    def _redirect(
        self, cmd: Command, in_fd: int, out_fd: int, err_fd: int, opened: list[int]
    ) -> tuple[int, int, int]:
        for r in cmd.redirects:
            try:
                if r.op == "2>&1":
                    err_fd = out_fd
                    continue
                path = self.vfs.normalize(r.target, self.cwd)
                if r.op == "<":
                    fd = self.vfs.open_read(path)
                else:
                    fd = self.vfs.open_write(path, append=r.op.endswith(">>"))
            except (OSError, VfsError) as exc:
                raise _RedirectError(f"{r.target}: {_reason(exc)}") from None
            opened.append(fd)
            if r.op == "<":
                in_fd = fd
            elif r.op.startswith("2"):
                err_fd = fd
            else:
                out_fd = fd
        return in_fd, out_fd, err_fd

    def _start(
        self, ctx: CommandContext, stage: _Stage, inline: bool, opened: list[int]
    ) -> None:
        name = ctx.argv[0]
        builtin = self.builtins.get(name)
        if builtin is None:
            job = self._spawn_external(ctx)
            if job is None:
                ctx.write(f"exo: {name}: command not found\n", ctx.stderr)
                stage.status = NOT_FOUND
            stage.job = job
            # The child holds its own copies; ours must go so readers see EOF.
            self._close(stage.close_after, opened)
            return

        def run() -> None:
            try:
                stage.status = self._call(builtin, ctx)
            except ShellExit as exc:
                if inline:
                    raise
                stage.status = exc.status  # `exit` inside a pipeline ends only its stage
            finally:
                self._close(stage.close_after, opened)

        if inline:
            run()
        else:
            stage.thread = threading.Thread(target=run, name=f"exosh-{name}", daemon=True)
            stage.thread.start()

    def _call(self, builtin: Builtin, ctx: CommandContext) -> int:
        try:
            return builtin(ctx)
        except ShellExit:
            raise
        except CommandError as exc:
            ctx.err(str(exc))
            return exc.status
        except BrokenPipeError:
            return 141
        except (OSError, VfsError) as exc:
            ctx.err(_reason(exc))
            return 1
        except Exception as exc:  # a bug in one command must not take the shell down
            import traceback

            self.kernel.log(f"shell: {ctx.name} crashed:\n{traceback.format_exc()}")
            ctx.err(f"internal error: {type(exc).__name__}: {exc} (details in dmesg)")
            return 70  # EX_SOFTWARE

    def _spawn_external(self, ctx: CommandContext) -> Job | None:
        """Programs installed in the Exo tree's PATH run as sandboxed processes."""
        name = ctx.argv[0]
        candidates = [name] if "/" in name else [
            posixpath.join(d, name) for d in self.env.get("PATH", "").split(":") if d
        ]
        for cand in candidates:
            path = self.vfs.normalize(cand, self.cwd)
            try:
                host = self.vfs.host_path(path)
            except VfsError:
                continue
            if host.is_file() and os.access(host, os.X_OK):
                return self._start_program(ctx, host)
        return None

    def _start_program(self, ctx: CommandContext, program: Path) -> Job | None:
        """Run ``program`` holding read-write access to the working directory and
        read-execute access to itself, nothing more."""
        from exo.kernel.api import ProcessesUnavailable
        from exo.kernel.manifest import parse_grant

        root = self.kernel.root
        cwd = self.vfs.host_path(self.cwd).relative_to(root).as_posix()
        grants = [parse_grant(f"storage://{cwd if cwd != '.' else ''}=READ,WRITE"),
                  parse_grant(f"storage://{program.relative_to(root).as_posix()}"
                              "=READ,EXECUTE")]
        try:
            # Inside, the Exo tree is / (exo.sandbox.namespace): the program by its Exo
            # path, in the shell's working directory.
            proc = self.kernel.start([f"/{grants[1].name.path}", *ctx.args], grants,
                                     stdio=(ctx.stdin, ctx.stdout, ctx.stderr), cwd=self.cwd)
        except ProcessesUnavailable:  # this kernel cannot run programs: not found
            return None
        return ShellJob(self.kernel, proc)


class _RedirectError(Exception):
    pass


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, VfsError):
        name = exc.filename if exc.filename else ""
        if exc.args and isinstance(exc.args[0], str):
            return exc.args[0]
        return f"{name}: {exc.strerror}" if name else exc.strerror
    return str(exc)


def install_sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
