"""Running shell lines on a booted kernel, as the unit tests of the shell do."""

from __future__ import annotations

import tempfile

from exo.shell import Shell


def run(shell: Shell, line: str, stdin: bytes = b"") -> tuple[int, str, str]:
    """``line``'s status, standard output and standard error."""
    with tempfile.TemporaryFile() as i, tempfile.TemporaryFile() as o, \
            tempfile.TemporaryFile() as e:
        i.write(stdin)
        i.seek(0)
        status = shell.run_line(line, i.fileno(), o.fileno(), e.fileno())
        o.seek(0)
        e.seek(0)
        return status, o.read().decode(), e.read().decode()


def script_output(shell: Shell, lines: list[str]) -> tuple[int, bytes]:
    """``run_script`` of ``lines``: its status, and what it wrote to descriptor 1 (where
    a script's output goes)."""
    import os

    from exo.shell.repl import run_script

    with tempfile.TemporaryFile() as out:
        saved = os.dup(1)
        os.dup2(out.fileno(), 1)
        try:
            status = run_script(shell, lines)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        out.seek(0)
        return status, out.read()
