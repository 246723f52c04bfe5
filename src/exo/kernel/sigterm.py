"""SIGTERM as an exception: a kernel started from the command line (``exo boot``, the
one-command kernel of ``exo run`` and ``posix-x run``) unwinds through every ``finally``
and shuts down cleanly, instead of dying with its processes' cgroups and mounts left to
the next boot's sweep. Stdlib only: it is on the boot path."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType


class Terminated(BaseException):
    """SIGTERM arrived: unwind through every ``finally`` and shut down cleanly."""


def raise_terminated(signum: int, frame: FrameType | None) -> None:
    """The SIGTERM handler: :class:`Terminated` in the main thread."""
    raise Terminated()
