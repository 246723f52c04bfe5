"""Start a sandboxed service that talks to the kernel over one Fusion Ring channel.

The module manager (a module's process) and AI-Core (an agent's process) start their
services the same way: a channel pair, the child's end handed over as
``EXO_CHANNEL_FDS``, stdin from /dev/null, stdout and stderr to a log file, then wait for
the service's first frame to say READY. ``start_channel_service`` is that one way; each
caller keeps its own argv, grants, manifest, frame format and error wording. The log is
opened and read beneath the Exo tree with no symbolic link followed
(``KernelApi.open_log``): an app granted a ``var/log`` directory could plant one there,
and the kernel writes as root.
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


def last_log_line(root: Path, relative: str) -> str:
    """The last non-blank line (at most 300 characters) of the log ``relative`` to the Exo
    tree ``root``, read from its last 64 KiB; "" if it cannot be read safely (a link, a
    FIFO, missing)."""
    import stat

    from exo.kernel.beneath import STRICT, open_file, open_root

    try:
        here = open_root(root)
        try:
            fd = open_file(here, relative, os.O_RDONLY | os.O_CLOEXEC, resolve=STRICT)
        finally:
            os.close(here)
    except OSError:
        return ""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return ""
        tail = os.pread(fd, 64 * 1024, max(0, st.st_size - 64 * 1024))
    except OSError:
        return ""
    finally:
        os.close(fd)
    lines = [ln for ln in tail.decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1].strip()[:300] if lines else ""


def start_channel_service(api: KernelApi, argv: Sequence[str], grants: Sequence[Grant], *,
                          manifest: Manifest, log: str, append_log: bool,
                          ready_kind: Callable[[object], int], ready: int,
                          timeout: float, pool_size: int | None = None,
                          ) -> tuple[ExoProcess, Endpoint]:
    """Start ``argv`` through ``api`` with a channel to it, and wait up to ``timeout`` s
    for its first frame, whose kind (``ready_kind(frame)``) must be ``ready``.
    ``pool_size``: each direction's segment (None: ``exo_std.ipc``'s default).

    Returns the process and the kernel's end of the channel (its ``peer`` set). The log at
    ``log`` (a path relative to the Exo tree; its folders are made) is appended to, or
    emptied when not ``append_log``. Raises ``ServiceStartError``; nothing is left behind then (the
    process is killed and reaped, both ends of the channel closed).
    """
    from exo.abi import PARENT_PID_ENV
    from exo_std import ipc

    a, b = (ipc.channel(capacity=256) if pool_size is None
            else ipc.channel(capacity=256, pool_size=pool_size))
    try:
        log_fd = api.open_log(log, truncate=not append_log)
    except (OSError, ValueError) as exc:
        a.close()
        b.close()
        raise ServiceStartError(f"{log}: {exc}", started=False) from None
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
        raise ServiceStartError(last_log_line(api.root, log) or str(exc), started=True) from None
    return proc, a
