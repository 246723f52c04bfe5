"""Errors raised by the capability engine.

One small hierarchy so that the syscall server can catch ``CapabilityError`` once and turn
it into a one-line error for the calling process; the subclasses let callers (and tests)
tell the cases apart without parsing messages. Each carries its ``exo.abi.ErrorCode``.
The base and ``InvalidRights`` live in ``exo.abi.errors`` (``Rights.parse``, shared with
applications, raises the latter) and are re-exported here.
"""

from __future__ import annotations

from exo.abi.errors import CapabilityError as CapabilityError
from exo.abi.errors import ErrorCode
from exo.abi.errors import InvalidRights as InvalidRights


class InvalidResourceName(CapabilityError, ValueError):
    """A resource name that does not parse (unknown scheme, malformed, escapes its root)."""

    code = ErrorCode.INVALID_NAME


class InvalidHandle(CapabilityError):
    """A handle number that is not (or no longer) valid in the calling process's space.

    Stale, forged, guessed and foreign handles all end here: the caller cannot tell them
    apart, which is deliberate (no oracle for guessing).
    """

    code = ErrorCode.NO_SUCH_HANDLE


class InsufficientRights(CapabilityError):
    """The capability exists but lacks a right the operation needs."""

    code = ErrorCode.INSUFFICIENT_RIGHTS


class RightsEscalation(CapabilityError):
    """Asked for rights the source capability does not hold (attenuation only narrows)."""

    code = ErrorCode.INSUFFICIENT_RIGHTS


class CapabilityDenied(CapabilityError):
    """A request refused by authority or policy (no covering capability, policy said no)."""

    code = ErrorCode.DENIED


class CapabilityRevoked(CapabilityError):
    """The capability was revoked; every use from now on fails."""

    code = ErrorCode.REVOKED


class NoSuchSpace(CapabilityError):
    """No capability space exists for that process id (never created, or destroyed)."""


class SpaceExists(CapabilityError):
    """A capability space already exists for that process id."""


class QuotaExceeded(CapabilityError):
    """A per-process bound on a kernel resource was reached (``exo.kernel.quota``).

    A ``CapabilityError`` so that every syscall path already turns it into a one-line error
    for the caller; ``quota`` names the bound and ``limit`` is its value, both also in the
    message ("quota 'inbox' (64) reached: ...").
    """

    code = ErrorCode.QUOTA_EXCEEDED

    def __init__(self, quota: str, limit: int, detail: str) -> None:
        super().__init__(f"quota {quota!r} ({limit}) reached: {detail}")
        self.quota = quota
        self.limit = limit


class SpaceFull(QuotaExceeded):
    """The process already holds the maximum number of handles (quota ``handles``)."""
