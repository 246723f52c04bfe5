"""exo.sandbox: confine a process with Linux mechanisms built from its capabilities.

One portable front (``SandboxSpec``, ``spawn``, ``probe``) over one back-end module per Linux
mechanism: ``_bwrap`` (namespaces, mount view), ``_landlock``, ``_seccomp``, ``_cgroups``.
See docs/sandbox.md for the layering and what each mechanism refuses.
"""

from ._probe import OPTIONAL_MECHANISMS, probe, warm_up
from .launcher import (
    BWRAP_OVERHEAD_PIDS,
    SandboxedProcess,
    cleanup_all,
    default_boot_id,
    spawn,
)
from .spec import NetPolicy, SandboxError, SandboxSpec, SandboxUnavailable

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
