"""exo.sandbox: confine a process with Linux mechanisms built from its capabilities.

One portable front (``SandboxSpec``, ``spawn``, ``probe``) over one back-end module per Linux
mechanism: ``_bwrap`` (namespaces, mount view), ``_landlock``, ``_seccomp``, ``_cgroups``.
See docs/sandbox.md for the layering and what each mechanism refuses.
"""

from ._probe import OPTIONAL_MECHANISMS, probe, warm_up
from .errors import ExecFailed, SandboxError, SandboxUnavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .launcher import (
        BWRAP_OVERHEAD_PIDS,
        SandboxedProcess,
        cleanup_all,
        default_boot_id,
        favor_dynamic_moves,
        hold_boot,
        release_boot,
        spawn,
        sweep_dead_boots,
    )
    from .spec import NetPolicy, SandboxSpec

_LAUNCHER = frozenset({"BWRAP_OVERHEAD_PIDS", "SandboxedProcess", "cleanup_all",
                       "default_boot_id", "favor_dynamic_moves", "hold_boot", "release_boot",
                       "spawn", "sweep_dead_boots"})
_SPEC = frozenset({"NetPolicy", "SandboxSpec"})


def __getattr__(name: str) -> object:
    # The launcher (subprocess, select, json...) and the spec (dataclasses) load at the
    # first spawn, not at import: the kernel imports this package while booting.
    if name in _LAUNCHER:
        from . import launcher

        return getattr(launcher, name)
    if name in _SPEC:
        from . import spec

        return getattr(spec, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "BWRAP_OVERHEAD_PIDS",
    "OPTIONAL_MECHANISMS",
    "ExecFailed",
    "NetPolicy",
    "SandboxError",
    "SandboxSpec",
    "SandboxUnavailable",
    "SandboxedProcess",
    "cleanup_all",
    "default_boot_id",
    "favor_dynamic_moves",
    "hold_boot",
    "probe",
    "release_boot",
    "spawn",
    "sweep_dead_boots",
    "warm_up",
]
