"""The shell's history file (``~/.exo_history``), read from its end only.

The file lies in the user's home, which the user's programs write: prompt_toolkit's
``FileHistory`` read it whole at each login, a line at a time, into the kernel (the shell
runs there); ``/usr/bin/yes | /usr/bin/tr -d '\\n' > ~/.exo_history`` made the next login
read one "line" of as many GB as the disk held. Here only its last ``TAIL`` bytes are
read, and a line is at most that long. Appends go on as prompt_toolkit writes them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prompt_toolkit.history import FileHistory

#: The most of the history file read at a login (about 10,000 typical lines).
TAIL = 1 << 20


class TailFileHistory(FileHistory):
    def load_history_strings(self) -> Iterable[str]:
        try:
            with open(self.filename, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                f.seek(max(0, size - TAIL))
                data = f.read(TAIL)
        except OSError:
            return []
        lines = data.split(b"\n")
        if size > TAIL:
            lines = lines[1:]  # the first was cut: not a whole line
        strings: list[str] = []
        entry: list[str] = []
        # prompt_toolkit's format: "# <date>" opens an entry, "+<text>" is one of its lines
        for raw in lines:
            line = raw.decode("utf-8", errors="replace")
            if line.startswith("+"):
                entry.append(line[1:])
            elif entry:
                strings.append("\n".join(entry))
                entry = []
        if entry:
            strings.append("\n".join(entry))
        return reversed(strings)  # the newest first
