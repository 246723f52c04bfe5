"""Start a sandboxed service that talks to the kernel over one Fusion Ring channel.

The module manager (a module's process) and AI-Core (an agent's process) start their
services the same way: a channel pair, the child's end handed over as
``EXO_CHANNEL_FDS``, stdin from /dev/null, stdout and stderr to a log file, then wait for
the service's first frame to say READY. ``start_channel_service`` is that one way; each
caller keeps its own argv, grants, manifest, frame format and error wording.
"""

from __future__ import annotations

import contextlib
import os

TYPE_CHECKING = False  # no runtime typing import on the boot path (exo/_value.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from exo.kernel.api import KernelApi
    from exo.kernel.manifest import Grant, Manifest
    from exo.kernel.process import ExoProcess
    from exo_std.ipc import Endpoint


class ServiceStartError(Exception):
    """A service that did not come up. ``started`` False: the spawn itself raised (the
    message is its error); True: the process started but did not say READY (it was
    killed; the message is its log's last line, or why its first frame did not count)."""

    def __init__(self, message: str, *, started: bool) -> None:
        super().__init__(message)
        self.started = started


def last_log_line(path: Path) -> str:
    """The last non-blank line of a service's log (at most 300 characters), or ""."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:300] if lines else ""


def start_channel_service(api: KernelApi, argv: Sequence[str], grants: Sequence[Grant], *,
                          manifest: Manifest, log_path: Path, append_log: bool,
                          ready_kind: Callable[[object], int], ready: int,
                          timeout: float, pool_size: int | None = None,
                          ) -> tuple[ExoProcess, Endpoint]:
    """Start ``argv`` through ``api`` with a channel to it, and wait up to ``timeout`` s
    for its first frame, whose kind (``ready_kind(frame)``) must be ``ready``.
    ``pool_size``: each direction's segment (None: ``exo_std.ipc``'s default).

    Returns the process and the kernel's end of the channel (its ``peer`` set). The log at
    ``log_path`` (its folder must exist) is appended to, or truncated when not
    ``append_log``. Raises ``ServiceStartError``; nothing is left behind then (the
    process is killed and reaped, both ends of the channel closed).
    """
    from exo.abi import PARENT_PID_ENV
    from exo_std import ipc

    a, b = (ipc.channel(capacity=256) if pool_size is None
            else ipc.channel(capacity=256, pool_size=pool_size))
    mode = os.O_APPEND if append_log else os.O_TRUNC
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | mode | os.O_CLOEXEC, 0o600)
    null_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        proc = api.start(argv, grants, manifest=manifest, stdio=(null_fd, log_fd, log_fd),
                         env={"EXO_CHANNEL_FDS": ",".join(str(fd) for fd in b.fds),
                              PARENT_PID_ENV: "1"},
                         extra_fds=tuple(b.fds))
    except Exception as exc:
        a.close()
        b.close()
        raise ServiceStartError(str(exc), started=False) from None
    finally:
        os.close(log_fd)
        os.close(null_fd)
    b.detach()
    a.peer = proc.pid
    try:
        kind = ready_kind(a.recv(timeout=timeout)[0])
        if kind != ready:
            raise ValueError(f"said {kind} instead of READY")
    except Exception as exc:
        api.interrupt(proc, grace=0)
        with contextlib.suppress(Exception):
            api.wait(proc)
        a.close()
        raise ServiceStartError(last_log_line(log_path) or str(exc), started=True) from None
    return proc, a
