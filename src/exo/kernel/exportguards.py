"""What a directory export may not show: checks other parts of the kernel install.

``exo.security.areaserve`` adds one: the directories of encrypted ``storage://`` areas,
whose files on disk are ciphertext (only the ``open`` syscall decrypts them). Each check
takes an ``O_PATH`` descriptor (an export's root, or a name being looked up, renamed or
removed) and returns why it must not be reached through a mount, or None. No check
installed: nothing is called. Used by ``exo.kernel.revocable.dirs`` (and ``files`` for
plain bind mounts); kept outside that package, whose ``__init__`` imports the whole
directory server, so that installing a check at boot imports nothing more.
"""

from __future__ import annotations

TYPE_CHECKING = False  # no typing import at run time: boot path
if TYPE_CHECKING:
    from collections.abc import Callable

#: ``guard(fd, covering)``: ``covering`` asks about everything below ``fd`` too (a bind
#: mount, which cannot hide what lies inside it).
GUARDS: list[Callable[[int, bool], str | None]] = []


def refused(fd: int, *, covering: bool = False) -> str | None:
    """Why ``fd`` must not be shown through an export (None: it may); with ``covering``,
    also why nothing below it may (for a plain bind mount of it)."""
    for guard in GUARDS:
        why = guard(fd, covering)
        if why:
            return why
    return None


class Refused(PermissionError):
    """An export a guard refused (EACCES); its text is the guard's one-line reason."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()
