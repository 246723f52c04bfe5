"""Front ends of the shell: a login + prompt_toolkit prompt on a terminal, and a
script reader (``sh < script`` semantics) when standard input is not a terminal."""

from __future__ import annotations

import contextlib
import os
import sys
import threading

from exo.shell.context import read_line
from exo.shell.core import Session, Shell, ShellExit, install_sigint_default

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from exo.kernel.api import KernelApi
    from exo.kernel.users import UserDatabase
    from exo.shell.vfs import Vfs


def run_script(shell: Shell, lines: Iterable[str]) -> int:
    """Run lines until input ends; the status is the last command's, like sh."""
    for raw in lines:
        line = raw.rstrip("\n")
        if not line.strip():
            continue
        try:
            shell.run_line(line)
        except ShellExit as exc:
            return exc.status
        except KeyboardInterrupt:
            return 130
    return shell.last_status


def prompt_text(shell: Shell) -> str:
    home = shell.session.home
    cwd = shell.cwd
    if cwd == home or cwd.startswith(home + "/"):
        cwd = "~" + cwd[len(home):]
    return f"exo-os:{cwd}{'#' if shell.session.uid == 0 else '$'} "


def login(kernel: KernelApi) -> Session | None:
    """getty-style login: a user name, then a password when the account has one.

    Plain ``input``/``getpass`` rather than prompt_toolkit, so the login prompt is up
    before the line editor is even imported (it loads in the background meanwhile).
    """
    db: UserDatabase | None = None
    for _ in range(3):
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
        account = db.authenticate(name, password, dev_mode=kernel.dev_mode)
        if account is not None:
            return Session(account.name, account.uid, account.home)
        print("Login incorrect")
    return None


def _preload_line_editor() -> threading.Thread:
    def load() -> None:
        import prompt_toolkit  # noqa: F401

        import exo.shell.completion  # noqa: F401

    t = threading.Thread(target=load, name="exo-preload", daemon=True)
    t.start()
    return t


def interactive(kernel: KernelApi, vfs: Vfs, shell_factory: type[Shell] = Shell) -> int:
    preload = _preload_line_editor()
    install_sigint_default()
    session = login(kernel)
    if session is None:
        return 1
    preload.join()
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    from exo.shell.completion import ShellCompleter

    shell = shell_factory(kernel, vfs, session)
    # Root reads and appends these in homes apps may write: through the Vfs's descriptors
    # only, so a link planted there cannot aim root's writes at a host file.
    with contextlib.suppress(OSError):
        sys.stdout.write(shell.vfs.read_bytes("/etc/motd").decode(errors="replace"))
    try:
        hist_fd = shell.vfs.open_write(session.home.rstrip("/") + "/.exo_history",
                                       append=True)
        # FileHistory reopens its file by name for each read and append: the name of our
        # own descriptor reopens exactly that inode, whatever is done to the path since.
        history: FileHistory | InMemoryHistory = FileHistory(f"/proc/self/fd/{hist_fd}")
    except OSError:
        history = InMemoryHistory()
    ps: PromptSession[str] = PromptSession(
        history=history, completer=ShellCompleter(shell), complete_while_typing=False
    )
    while True:
        try:
            line = ps.prompt(prompt_text(shell))
        except KeyboardInterrupt:
            continue  # Ctrl-C at the prompt clears the line
        except EOFError:
            return shell.last_status
        if not line.strip():
            continue
        shell.history.append(line)
        try:
            shell.run_line(line)
        except ShellExit as exc:
            return exc.status
        except KeyboardInterrupt:
            print("^C")
            shell.last_status = 130


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
    while line := (_seek_line(fd) if seekable else read_line(fd)):
        yield line.decode(errors="replace")


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
    return data
