"""The kernel process's file mode mask, read once (``os.umask`` reads it only by setting
it, which would race every other thread's file creations)."""

from __future__ import annotations

#: A new shell's umask (a login's, as Debian's), and the fallback when /proc says none.
DEFAULT_UMASK = 0o022
_READ: list[int] = []


def process_umask() -> int:
    """The umask every file this process creates gets first (``Umask:`` of /proc)."""
    if not _READ:
        mask = DEFAULT_UMASK
        try:
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("Umask:"):
                        mask = int(line.split()[1], 8)
        except (OSError, ValueError, IndexError):
            pass
        _READ.append(mask)
    return _READ[0]
