"""What this host can enforce: reported in the boot log, checked before every spawn."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable

from . import _bwrap, _cgroups, _landlock, _seccomp
from .errors import SandboxError, SandboxUnavailable

TYPE_CHECKING = False  # no typing import at run time: boot path (exo/_value.py)
if TYPE_CHECKING:
    from typing import Any

    from .spec import NetMode

#: Mechanisms a caller may explicitly agree to go without (``allow_missing``).
OPTIONAL_MECHANISMS = frozenset({"landlock", "landlock-net", "landlock-scopes", "seccomp",
                                 "cgroup"})
_NAMESPACES = ("mnt", "pid", "net", "ipc", "uts", "cgroup", "user")


@functools.cache
def _bwrap_version(path: str) -> str:
    import subprocess

    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=5,
                             check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.strip().rsplit(" ", 1)[-1] or "unknown"


@functools.cache
def landlock_abi() -> int:
    return _landlock.abi_version()


@functools.cache
def seccomp_available() -> bool:
    return _seccomp.available()


def probe(*, quick: bool = False) -> dict[str, Any]:
    """Which isolation mechanisms this host offers, for the boot log and for callers.

    Keys: ``bwrap`` (path and version or None), ``landlock`` (ABI, 0 if absent, with what the
    ABI covers), ``seccomp`` (bool), ``namespaces`` (per kind), ``cgroup`` (version chosen,
    controllers, base directories, or an ``error``), ``uid``.

    ``quick`` (the kernel's boot) skips the two slow checks, running ``bwrap --version``
    and compiling the seccomp filter: it only checks that the host kernel supports
    seccomp and that libseccomp's binding is installed. The filter is compiled later,
    off the boot's critical path, by :func:`warm_up`.
    """
    bwrap = _bwrap.bwrap_path()
    abi = landlock_abi()
    result: dict[str, Any] = {
        "bwrap": {"path": bwrap, "version": None if quick else _bwrap_version(bwrap)}
        if bwrap else None,
        "landlock": {"abi": abi, "filesystem": abi >= 1, "tcp": abi >= 4, "scopes": abi >= 6},
        "seccomp": _seccomp.supported() if quick else seccomp_available(),
        "namespaces": {ns: os.path.exists(f"/proc/self/ns/{ns}") for ns in _NAMESPACES},
        "uid": os.geteuid(),
    }
    try:
        version, hs = _cgroups.select(_cgroups.CONTROLLERS)
        result["cgroup"] = {
            "version": version,
            "controllers": sorted(set().union(*(h.controllers for h in hs))
                                  & set(_cgroups.CONTROLLERS)),
            "bases": [str(h.base) for h in hs],
        }
    except SandboxError as exc:
        result["cgroup"] = {"version": None, "controllers": [], "error": str(exc)}
    return result


def check_requirements(net_mode: NetMode, *, limits: Iterable[str],
                       allow_missing: frozenset[str]) -> int:
    """Raise :class:`SandboxUnavailable` for any missing mechanism not explicitly allowed.

    Returns the Landlock ABI to use (0: Landlock skipped because the caller allowed it).
    """
    unknown = allow_missing - OPTIONAL_MECHANISMS
    if unknown:
        raise SandboxError(f"allow_missing has unknown mechanisms {sorted(unknown)}; "
                           f"known: {sorted(OPTIONAL_MECHANISMS)}")
    _bwrap.require_bwrap()
    abi = landlock_abi()
    if abi == 0 and "landlock" not in allow_missing:
        raise SandboxUnavailable("Landlock is not available on this kernel (enable "
                                 "CONFIG_SECURITY_LANDLOCK and lsm=landlock)")
    if net_mode == "tcp" and abi < 4 and "landlock-net" not in allow_missing:
        raise SandboxUnavailable(f"TCP port rules need Landlock ABI 4, this kernel has {abi}")
    if 0 < abi < 6 and "landlock-scopes" not in allow_missing:
        raise SandboxUnavailable(f"signal and abstract-socket scoping need Landlock ABI 6, "
                                 f"this kernel has {abi}")
    if not seccomp_available() and "seccomp" not in allow_missing:
        raise SandboxUnavailable("seccomp-bpf (libseccomp via pyseccomp) is not available")
    if "cgroup" not in allow_missing:
        _cgroups.select(limits)
    return abi


__all__ = ["OPTIONAL_MECHANISMS", "SandboxUnavailable", "check_requirements", "probe"]


def warm_up() -> None:
    """Load the spawn path and compile the seccomp filters (cached) so the first spawn is fast.

    The kernel calls this in its DEFERRED phase, after the prompt is up: the launcher and
    the spec (subprocess, dataclasses) are kept off the boot path.
    """
    from . import launcher, spec  # noqa: F401 - imported for their import cost, now

    for mode in ("none", "tcp", "any"):
        _seccomp.compiled_filter(mode)
