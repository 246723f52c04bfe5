"""exo.sandbox: confine a process with Linux mechanisms built from its capabilities.

One portable front (``SandboxSpec``, ``spawn``, ``probe``) over one back-end module per Linux
mechanism: ``_bwrap`` (namespaces, mount view), ``_landlock``, ``_seccomp``, ``_cgroups``.
See docs/sandbox.md for the layering and what each mechanism refuses.
"""

from typing import TYPE_CHECKING, Any

from ._probe import OPTIONAL_MECHANISMS, probe, warm_up
from .spec import NetPolicy, SandboxError, SandboxSpec, SandboxUnavailable

if TYPE_CHECKING:
    from .launcher import (
        BWRAP_OVERHEAD_PIDS,
        SandboxedProcess,
        cleanup_all,
        default_boot_id,
        spawn,
    )

_LAUNCHER = frozenset({"BWRAP_OVERHEAD_PIDS", "SandboxedProcess", "cleanup_all",
                       "default_boot_id", "spawn"})


def __getattr__(name: str) -> Any:
    # The launcher (subprocess, select, json...) loads at the first spawn, not at
    # import: the kernel imports this package while booting, before any spawn.
    if name in _LAUNCHER:
        from . import launcher

        return getattr(launcher, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "BWRAP_OVERHEAD_PIDS",
    "OPTIONAL_MECHANISMS",
    "NetPolicy",
    "SandboxError",
    "SandboxSpec",
    "SandboxUnavailable",
    "SandboxedProcess",
    "cleanup_all",
    "default_boot_id",
    "probe",
    "spawn",
    "warm_up",
]
