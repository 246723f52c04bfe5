"""The ``exo`` command.

``exo boot`` is on the boot-time budget (≤ 300 ms), so this module imports only
click at the top; everything else is imported inside the command that needs it.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

import click

from exo import __version__

_ROOT_HELP = "Exo file tree (default: $EXO_ROOT, else ~/.local/share/exo)."


def _fail(message: str, status: int = 1) -> None:
    click.echo(f"exo: {message}", err=True)
    raise SystemExit(status)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="Exo-OS")
def main() -> None:
    """Exo-OS: a hosted microkernel operating environment.

    One kernel process; every application a sandboxed Linux process holding only
    the capabilities it was granted.
    """


@main.command()
@click.option("--root", type=click.Path(file_okay=False), help=_ROOT_HELP)
@click.option("--quiet", "-q", is_flag=True, help="Print only command output, no boot log.")
@click.option("--json-boot", is_flag=True,
              help="Boot, print the boot phases and timings as JSON, and exit.")
def boot(root: str | None, quiet: bool, json_boot: bool) -> None:
    """Boot Exo-OS into its login shell.

    On a terminal you get the login prompt; when standard input is not a terminal,
    commands are read from it and run like `sh < script`, and the exit status is the
    last command's.
    """
    from exo.cli.boot import boot_and_run

    raise SystemExit(boot_and_run(root, quiet=quiet, json_boot=json_boot))


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--cap", "caps", multiple=True, metavar="NAME=RIGHTS",
              help="Grant a capability, e.g. storage://home/demo=READ,WRITE (repeatable).")
@click.option("--manifest", type=click.Path(dir_okay=False),
              help="TOML manifest with [sandbox] capabilities and limits.")
@click.option("--root", type=click.Path(file_okay=False), help=_ROOT_HELP)
@click.option("--cwd", default="/", metavar="DIR",
              help="Working directory, an Exo path the capabilities cover (default /).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(caps: tuple[str, ...], manifest: str | None, root: str | None, cwd: str,
        command: tuple[str, ...]) -> None:
    """Run COMMAND as a sandboxed Exo process holding exactly the given capabilities.

    Inside, the Exo tree is /: storage://home/demo is /home/demo.

    Example: exo run --cap storage://home/demo=READ,WRITE --cwd /home/demo -- python3 app.py

    Uses the running kernel when there is one, else boots an ephemeral kernel.
    """
    from exo.kernel.api import failure_status
    from exo.kernel.launch import run_command
    from exo.kernel.manifest import ManifestError
    from exo.sandbox import SandboxError

    try:
        status = run_command(list(command), list(caps), manifest, root, cwd)
    except ManifestError as exc:
        _fail(str(exc), 2)
    except (SandboxError, RuntimeError, OSError, LookupError, ValueError) as exc:
        _fail(str(exc), failure_status(exc))
    raise SystemExit(status)


@main.command()
@click.option("--root", type=click.Path(file_okay=False), help=_ROOT_HELP)
def shutdown(root: str | None) -> None:
    """Ask the running kernel to stop every Exo process and exit."""
    from exo.kernel.control import ControlClient, KernelNotRunning

    try:
        ControlClient.connect(root).call("shutdown")
    except KernelNotRunning as exc:
        _fail(str(exc))
    click.echo("Exo-OS: shutdown requested")


@main.command()
@click.option("--root", type=click.Path(file_okay=False), help=_ROOT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def ps(root: str | None, as_json: bool) -> None:
    """List the processes of the running kernel."""
    from exo.kernel.control import ControlClient, KernelNotRunning

    try:
        rows: list[dict[str, Any]] = ControlClient.connect(root).call("ps")
    except KernelNotRunning as exc:
        _fail(str(exc))
        return
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("PID", "HOST_PID", "STATE", "CAPS", "TIME", "COMMAND",
                  header_style="bold cyan")
    for r in rows:
        cpu = r.get("cpu_s")  # CPU time, as ps's TIME (stops at the process's exit)
        seconds = int(cpu) if cpu is not None else None
        table.add_row(str(r["pid"]), str(r["host_pid"]), r["state"], str(r["caps"]),
                      "-" if seconds is None else f"{seconds // 60}:{seconds % 60:02d}",
                      r["command"])
    Console().print(table)


@main.command("posix-x", add_help_option=False,
              context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def posix_x(args: tuple[str, ...]) -> None:
    """Linux programs under POSIX-X: run, analyze, profile, migrate, benchmark, syscalls
    (--help for more)."""
    from exo.posix_x.cli import main as posix_x_main  # its own parser: one place for usage

    raise SystemExit(posix_x_main(_with_separator(list(args))))


def _with_separator(args: list[str]) -> list[str]:
    """``args`` with the ``--`` click took out put back (``posix-x migrate PROG --json --
    ARGS``: what follows it is the program's), found in ``sys.argv``."""
    for i, word in enumerate(sys.argv):
        tail = sys.argv[i + 1:]
        if word == "posix-x" and "--" in tail:
            cut = tail.index("--")
            if tail[:cut] + tail[cut + 1:] == args:
                return tail
    return args


def _restore_sigpipe() -> None:
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)


# --- security commands (exo tpm/attest/keys/crypto/audit), owned by exo.security --------
from exo.security.cli import register as _register_security  # noqa: E402

_register_security(main)
# --- end of security commands ------------------------------------------------------------

# --- package commands (exo new/build/publish/repo/install/...), owned by exo.pkg ---------
from exo.pkg.cli import register as _register_pkg  # noqa: E402

_register_pkg(main)
# --- end of package commands -------------------------------------------------------------

# --- module commands (exo module load/list/upgrade/rollback/unload), owned by exo.modules -
from exo.modules.cli import register as _register_modules  # noqa: E402

_register_modules(main)
# --- end of module commands --------------------------------------------------------------

# --- AI agents (exo ai, exo ai parse), owned by exo.agents --------------------------------
from exo.agents.cli import register as _register_ai  # noqa: E402

_register_ai(main)
# --- end of AI agents --------------------------------------------------------------------


if __name__ == "__main__":  # pragma: no cover
    _restore_sigpipe()
    main()
