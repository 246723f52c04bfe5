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
