"""Front ends of the shell: a login + prompt_toolkit prompt on a terminal, and a
script reader (``sh < script`` semantics) when standard input is not a terminal."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

from exo.shell.context import MAX_LINE, read_line, without_nul
from exo.shell.core import Shell, install_sigint_default
from exo.shell.session import Logout, Session, ShellExit, SwitchUser

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from prompt_toolkit import PromptSession

    from exo.kernel.api import KernelApi
    from exo.kernel.users import UserDatabase
    from exo.shell.terminal import Terminal
    from exo.shell.vfs import Vfs


def run_script(shell: Shell, lines: Iterable[str],
               after_first: Callable[[], None] | None = None) -> int:
    """Run lines until input ends; the status is the last command's, like sh. A block
    (``if``, ``for``, ``while``) or a quote left open continues on the next lines.
    ``after_first`` runs once, after the first command (or at the end of a script that
    has none): the kernel's DEFERRED phase, which would otherwise compete with it for the
    interpreter (bench/boot.py measures boot to the first command's output)."""
    try:
        return _run_lines(shell, lines, after_first)
    finally:
        shell.close_fds()  # (after its EXIT trap, which may still write there)


def _run_lines(shell: Shell, lines: Iterable[str],
               after_first: Callable[[], None] | None) -> int:
    pending = ""
    first = [after_first] if after_first is not None else []
    try:
        for raw in lines:
            line = pending + without_nul(raw.rstrip("\n"))
            if not line.strip():
                shell.lines_skipped(1 + line.count("\n"))  # ($LINENO counts them)
                continue
            if shell.needs_more(line):
                pending = line + "\n"
                continue
            try:
                try:
                    shell.ends_script = False
                    shell.run_line(line)
                finally:
                    while first:
                        first.pop()()
                if shell.ends_script:  # set -e, ${x?}: the script ends there, as sh's
                    return shell.run_exit_trap()
            except ShellExit as exc:
                shell.last_status = exc.status
                return shell.run_exit_trap()
            except SwitchUser:
                os.write(2, b"su: needs a terminal\n")
                shell.last_status = 1
            except KeyboardInterrupt:
                try:
                    shell.run_interrupt_trap()
                except ShellExit as exc:
                    shell.last_status = exc.status
                return shell.run_exit_trap()
            pending = ""
    finally:
        while first:
            first.pop()()
    if pending:
        os.write(2, b"exo: unexpected end of input (a block or a quote is open)\n")
        shell.last_status = 2
    return shell.run_exit_trap()


def prompt_text(shell: Shell) -> str:
    home = shell.session.home
    cwd = shell.cwd
    if cwd == home or cwd.startswith(home + "/"):
        cwd = "~" + cwd[len(home):]
    return f"exo-os:{cwd}{'#' if shell.session.uid == 0 else '$'} "


#: After this many failed logins in a row the prompt waits ``LOGIN_DELAY_S`` (as login(1)).
LOGIN_ATTEMPTS = 3
LOGIN_DELAY_S = 3.0


def login(kernel: KernelApi) -> Session | None:
    """getty-style login: a user name, then a password when the account has one. Wrong
    answers never end the system: after three in a row the prompt waits, then asks again.
    ``None`` only when input ends (^D at the prompt, the terminal gone).

    Plain ``input``/``getpass`` rather than prompt_toolkit, so the login prompt is up
    before the line editor is even imported (it loads in the background meanwhile).
    """
    db: UserDatabase | None = None
    failures = 0
    while True:
        if failures >= LOGIN_ATTEMPTS:
            print(f"Too many failed logins; wait {LOGIN_DELAY_S:.0f} s", flush=True)
            time.sleep(LOGIN_DELAY_S)
            failures = 0
        try:
            name = input("exo-os login: ").strip()
        except EOFError:
            print()
            return None
        except KeyboardInterrupt:
            print()
            continue
        if not name:
            continue
        if db is None:
            # Loaded once the prompt is up: showing it must not wait for the user database.
            from exo.kernel.users import UserDatabase

            db = UserDatabase(kernel.root)
        user = db.get(name)
        password = ""
        if user is None or user.password_hash or not kernel.dev_mode:
            import getpass  # here, after the first prompt: it is not needed to show it

            try:
                password = getpass.getpass("Password: ")
            except (EOFError, KeyboardInterrupt):
                print()
                continue
        from exo.kernel.users import UserError

        try:  # the kernel authenticates and keeps the session
            opened = kernel.login(name, password)
        except UserError as exc:  # the administrator's file, not this password: no failure
            print(f"login: {exc}; the administrator must fix it before {name} can log in")
            continue
        if opened is not None:
            return Session.of(kernel, opened)
        print("Login incorrect")
        failures += 1


def _preload_line_editor() -> threading.Thread:
    def load() -> None:
        import prompt_toolkit  # noqa: F401

        import exo.shell.completion  # noqa: F401

    t = threading.Thread(target=load, name="exo-preload", daemon=True)
    t.start()
    return t


def interactive(kernel: KernelApi, vfs: Vfs, shell_factory: type[Shell] = Shell) -> int:
    """Login prompt, then the user's shell, then the login prompt again, until someone
    who may (``device://power``) runs ``shutdown`` or input ends at the login prompt."""
    from exo.shell.terminal import give_back, take_terminal

    preload = _preload_line_editor()
    install_sigint_default()
    previous = take_terminal(0)  # Ctrl-C and Ctrl-Z never reach `make run` above us
    terminal: Terminal | None = None
    try:
        while True:
            session = login(kernel)
            if session is None:
                return 0
            preload.join()
            if terminal is None:
                from exo.shell.terminal import Terminal

                try:
                    terminal = Terminal(0)
                except OSError:
                    terminal = None
            status = _session(kernel, vfs, session, shell_factory, terminal)
            if status is not None:
                return status
    finally:
        if terminal is not None:
            terminal.close()
        give_back(0, previous)


def _session(kernel: KernelApi, vfs: Vfs, session: Session, shell_factory: type[Shell],
             terminal: Terminal | None) -> int | None:
    """One login's shells (``su`` stacks another); None when it logs out, the status
    to power off with after ``shutdown``."""
    shells = [_new_shell(kernel, vfs, session, shell_factory, terminal)]
    with contextlib.suppress(OSError):
        sys.stdout.write(shells[0][0].vfs.read_bytes("/etc/motd").decode(errors="replace"))
    owner = _TerminalOwner(kernel)
    try:
        while shells:
            shell, prompt = shells[-1]
            owner.give(shell.session)
            try:
                _loop(shell, prompt)
            except SwitchUser as exc:
                shells.append(_new_shell(kernel, vfs, exc.session, shell_factory, terminal))
                continue
            except Logout:
                pass
            except ShellExit as exc:
                for s, _ in shells:
                    _end(s)
                return exc.status
            _end(shell)
            shells.pop()
        return None
    finally:
        owner.restore()


class _TerminalOwner:
    """The terminal belongs to the user logged in on it, as login(1) makes it: its
    processes open ``/dev/tty`` (the terminal's own node, exo.sandbox) as members of the
    session's group, the account's host gid (each runs under a host uid of its own,
    ``exo.kernel.sessions.ProcessUids``), so it is the account's, mode 0660. Given back to
    its owner at logout."""

    def __init__(self, kernel: KernelApi) -> None:
        self._kernel = kernel
        self._path: str | None = None
        self._saved: tuple[int, int, int] | None = None
        if os.geteuid() == 0 and os.isatty(0):
            with contextlib.suppress(OSError):
                path = os.ttyname(0)
                st = os.stat(path)
                self._path, self._saved = path, (st.st_uid, st.st_gid, st.st_mode)

    def give(self, session: Session) -> None:
        if self._path is None or session.token is None:
            return
        with contextlib.suppress(OSError, LookupError):
            uid = self._kernel.session(session.token).host_uid
            os.chown(self._path, uid, uid)
            os.chmod(self._path, 0o660)

    def restore(self) -> None:
        if self._path is None or self._saved is None:
            return
        uid, gid, mode = self._saved
        with contextlib.suppress(OSError):
            os.chown(self._path, uid, gid)
            os.chmod(self._path, mode & 0o7777)


def _end(shell: Shell) -> None:
    """A session that ends runs its ``trap … EXIT``, then takes its jobs with it (as a
    hang-up does)."""
    shell.run_exit_trap()
    for job in [*shell.jobs, *shell.disowned]:
        shell.interrupt(job)
    shell.close_fds()
    shell.jobs.clear()
    shell.session.end()  # the kernel revokes what the session's processes derived


def _new_shell(kernel: KernelApi, vfs: Vfs, session: Session, shell_factory: type[Shell],
               terminal: Terminal | None) -> tuple[Shell, PromptSession[str]]:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import InMemoryHistory

    from exo.shell.completion import ShellCompleter
    from exo.shell.histfile import TailFileHistory

    shell = shell_factory(kernel, vfs, session)
    shell.terminal = terminal
    # Root reads and appends these in homes apps may write: through the Vfs's descriptors
    # only, so a link planted there cannot aim root's writes at a host file. A user's
    # shell opens its own through the session's capabilities, so never root's.
    try:
        hist_fd = shell.vfs.open_write(session.home.rstrip("/") + "/.exo_history",
                                       append=True)
        # FileHistory reopens its file by name for each read and append: the name of our
        # own descriptor reopens exactly that inode, whatever is done to the path since.
        history: TailFileHistory | InMemoryHistory = TailFileHistory(
            f"/proc/self/fd/{hist_fd}")
    except OSError:
        history = InMemoryHistory()
    ps: PromptSession[str] = PromptSession(
        history=history, completer=ShellCompleter(shell), complete_while_typing=False
    )
    return shell, ps


def _loop(shell: Shell, ps: PromptSession[str]) -> None:
    """Read and run lines until ``exit`` (Logout), ^D (Logout), ``su`` or ``shutdown``."""
    while True:
        for job in shell.finished_jobs():
            print(f"[{job.number}]+ {job.outcome():<10} {job.source}")
        try:
            line = ps.prompt(prompt_text(shell))
            while shell.needs_more(line):
                line += "\n" + ps.prompt("> ")
        except KeyboardInterrupt:
            continue  # Ctrl-C at the prompt clears the line
        except EOFError:
            if shell.keep_for_jobs():
                print("There are jobs; ^D again ends them with the session.")
                continue
            raise Logout(shell.last_status) from None
        if not line.strip():
            continue
        if len(line) > MAX_LINE:  # (parsing costs ~70 times a line's size, in the kernel)
            print(f"exo: a line longer than {MAX_LINE >> 20} MiB")
            shell.last_status = 1
            continue
        line = without_nul(line)
        try:
            expanded = shell.expand_history(line)
        except ValueError as exc:  # (ParseError) no previous line for !!
            print(f"exo: {exc}")
            shell.last_status = 1
            continue
        if expanded != line:
            print(expanded)
        shell.remember(expanded)
        try:
            shell.run_line(expanded)
        except KeyboardInterrupt:
            print("^C")
            shell.run_interrupt_trap()


def stdin_lines(fd: int = 0) -> Iterator[str]:
    """The script's lines from ``fd``, taking no more of it than each line, as sh does.

    A command that reads standard input (``useradd`` asking for a password, ``cat``, a
    program) then gets the script's next lines, exactly as under ``sh < script``. From a
    seekable file we read ahead and seek back to the end of the line; from a pipe we read
    one byte at a time (bash does the same).
    """
    try:
        os.lseek(fd, 0, os.SEEK_CUR)
        seekable = True
    except OSError:
        seekable = False
    try:
        while line := (_seek_line(fd) if seekable else read_line(fd)):
            yield line.decode(errors="replace")
    except ValueError as exc:  # a line past MAX_LINE: the script ends there, said
        sys.stderr.write(f"exo: {exc}; the script stops here\n")


def _seek_line(fd: int) -> bytes:
    start = os.lseek(fd, 0, os.SEEK_CUR)
    data = b""
    while chunk := os.read(fd, 4096):
        end = chunk.find(b"\n")
        if end >= 0:
            data += chunk[: end + 1]
            os.lseek(fd, start + len(data), os.SEEK_SET)
            break
        data += chunk
        if len(data) > MAX_LINE:
            raise ValueError(f"a line longer than {MAX_LINE >> 20} MiB")
    return data
