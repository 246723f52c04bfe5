"""``/proc/self/mountinfo``, read in one place (proc(5)): the cgroup back-end finds its
hierarchies there, the mount plan the kernel's FUSE exports, the file server its stale
mounts. Stdlib only: the cgroup scan is on the boot path."""

from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

_OCTAL = re.compile(r"\\([0-7]{3})")


def unescape(field: str) -> str:
    """A path field as the kernel escapes it (space, tab, newline, backslash as ``\\NNN``)."""
    return _OCTAL.sub(lambda m: chr(int(m[1], 8)), field)


def mounts() -> Iterator[tuple[str, str, str, str, list[str]]]:
    """Each mount of this process's namespace: ``(root, mount point, fstype, source,
    super options)``, the paths unescaped."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            yield (unescape(fields[3]), unescape(fields[4]), fields[sep + 1],
                   fields[sep + 2], fields[sep + 3].split(","))
