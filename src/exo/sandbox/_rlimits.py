"""Resource limits (``setrlimit``) a program starts with: which ones a caller may set,
and the check that none exceeds what the kernel itself holds.

A shell's ``ulimit`` reaches a program as ``SandboxSpec.rlimits``: ``(resource, soft,
hard)`` triples, ``-1`` for unlimited (Python's ``resource.RLIM_INFINITY``). exo-stage2
sets them just before ``execve``, after it dropped to the session's uid, so even a triple
that got past this check could only lower a limit. The check is the kernel's own: a
hard limit above the kernel's is refused here, before anything starts.
"""

from __future__ import annotations

import resource

from .errors import SandboxError

#: RLIMIT_LOCKS: Linux has it (10); Python's ``resource`` does not name it.
RLIMIT_LOCKS = 10

#: The limits a caller may set: every Linux one but RLIMIT_OFILE's alias.
SETTABLE = frozenset({
    resource.RLIMIT_CPU, resource.RLIMIT_FSIZE, resource.RLIMIT_DATA,
    resource.RLIMIT_STACK, resource.RLIMIT_CORE, resource.RLIMIT_RSS,
    resource.RLIMIT_NPROC, resource.RLIMIT_NOFILE, resource.RLIMIT_MEMLOCK,
    resource.RLIMIT_AS, RLIMIT_LOCKS, resource.RLIMIT_SIGPENDING,
    resource.RLIMIT_MSGQUEUE, resource.RLIMIT_NICE, resource.RLIMIT_RTPRIO,
    resource.RLIMIT_RTTIME,
})

#: C's RLIM_INFINITY, as exo-stage2 reads a number.
_INFINITY_C = (1 << 64) - 1


def _order(value: int) -> float:
    return float("inf") if value == resource.RLIM_INFINITY else value


def current(res: int) -> tuple[int, int]:
    """The kernel's own (soft, hard) limit ``res``: what a program inherits unless told."""
    return resource.getrlimit(res)  # (any number below RLIM_NLIMITS: RLIMIT_LOCKS too)


def check(limits: object) -> tuple[tuple[int, int, int], ...]:
    """``limits`` as a spec keeps them, or SandboxError saying which triple is wrong: a
    resource one may set, ``0 <= soft <= hard`` (-1 is unlimited), a hard limit no
    higher than the kernel's, each resource once."""
    if not isinstance(limits, tuple | list):
        raise SandboxError("rlimits must be (resource, soft, hard) triples")
    seen: set[int] = set()
    out = []
    for item in limits:
        if (not isinstance(item, tuple | list) or len(item) != 3
                or any(type(v) is not int for v in item)):
            raise SandboxError(f"rlimit {item!r}: expected (resource, soft, hard) integers")
        res, soft, hard = item
        if res not in SETTABLE or res in seen:
            raise SandboxError(f"rlimit {item!r}: resource {res} unknown or repeated")
        if min(soft, hard) < -1 or max(soft, hard) >= _INFINITY_C \
                or _order(soft) > _order(hard):
            raise SandboxError(f"rlimit {item!r}: soft and hard must be 0 <= soft <= hard "
                               "(-1: unlimited)")
        if _order(hard) > _order(current(res)[1]):
            raise SandboxError(f"rlimit {item!r}: above the kernel's own hard limit")
        seen.add(res)
        out.append((res, soft, hard))
    return tuple(out)


def records(limits: tuple[tuple[int, int, int], ...]) -> list[str]:
    """exo-stage2's ``rlimit RESOURCE SOFT HARD`` records for checked ``limits``."""
    out: list[str] = []
    for res, soft, hard in limits:
        out += ["rlimit", str(res), *(str(_INFINITY_C if v == -1 else v) for v in (soft, hard))]
    return out
