"""The POSIX-X boot step (DEFERRED): get unmodified Linux programs ready to start at once.

``posix-x run`` spawns through the process manager like any Exo process, plus a seccomp
filter that refuses ``fork`` (the ``[posix_x] fork = false`` default) and the exec
policy. This step compiles those filters and the broker's (libseccomp, tens of milliseconds)
after the prompt is up instead of on the first run, checks what the Hybrid tier and the
tools need on this host (seccomp user notification, pyelftools for ``analyze``, strace for
``profile``), and serves ``/proc/posix_x``: the syscall table's counts by tier and what
was found. A host without seccomp makes the step FAILED (no POSIX-X without it); a
missing tool is said in the detail, not a failure.
"""

from __future__ import annotations

import importlib.util
import shutil

from exo.kernel.subsystem import Subsystem

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from exo.kernel.core import KernelCore
    from exo.kernel.subsystems.processes import Processes


class PosixX(Subsystem):
    __slots__ = ("found",)

    def __init__(self, core: KernelCore, *, processes: Processes) -> None:
        self.found: dict[str, str] = {}

    def start(self) -> str:
        import errno

        from exo.sandbox import _seccomp

        from . import _seccomp_notify, table
        from .broker import compile_filter

        for mode in ("none", "tcp", "any"):
            for fork in (False, True):
                _seccomp.compiled_filter(mode, errno.EPERM, fork, True)
                compile_filter(mode, fork, exec_any=False)
                compile_filter(mode, fork, exec_any=True)
        counts = table.counts()
        self.found = {
            "syscalls": str(len(table.SYSCALLS)),
            **{tier: str(counts.get(tier, 0)) for tier in table.TIERS},
            "filters": "compiled",
            "seccomp_user_notification": "yes" if _seccomp_notify.supported() else "no",
            "analyze": "pyelftools" if importlib.util.find_spec("elftools") else
                       "unavailable (pyelftools missing)",
            "profile": "strace" if shutil.which("strace") else
                       "unavailable (strace missing: make posix-x-apps)",
        }
        f = self.found
        return (f"{f['syscalls']} syscalls ({f['fast']} fast, {f['hybrid']} hybrid, "
                f"{f['legacy']} legacy), filters compiled, seccomp user "
                f"notification {f['seccomp_user_notification']}, profile "
                f"{'strace' if f['profile'] == 'strace' else 'unavailable'}")

    def proc_files(self) -> dict[str, Callable[[], str]]:
        return {"posix_x": lambda: "".join(f"{k}: {v}\n" for k, v in self.found.items())}


__all__ = ["PosixX"]
