"""Errors raised by the capability engine.

One small hierarchy so that the syscall server can catch ``CapabilityError`` once and turn
it into a one-line error for the calling process; the subclasses let callers (and tests)
tell the cases apart without parsing messages.
"""

from __future__ import annotations


class CapabilityError(Exception):
    """Base class: every refusal of the capability engine is one of these."""


class InvalidResourceName(CapabilityError, ValueError):
    """A resource name that does not parse (unknown scheme, malformed, escapes its root)."""


class InvalidRights(CapabilityError, ValueError):
    """A rights string or value that names no known right."""


class InvalidHandle(CapabilityError):
    """A handle number that is not (or no longer) valid in the calling process's space.

    Stale, forged, guessed and foreign handles all end here: the caller cannot tell them
    apart, which is deliberate (no oracle for guessing).
    """


class InsufficientRights(CapabilityError):
    """The capability exists but lacks a right the operation needs."""


class RightsEscalation(CapabilityError):
    """Asked for rights the source capability does not hold (attenuation only narrows)."""


class CapabilityDenied(CapabilityError):
    """A request refused by authority or policy (no covering capability, policy said no)."""


class CapabilityRevoked(CapabilityError):
    """The capability was revoked; every use from now on fails."""


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

    def __init__(self, quota: str, limit: int, detail: str) -> None:
        super().__init__(f"quota {quota!r} ({limit}) reached: {detail}")
        self.quota = quota
        self.limit = limit


class SpaceFull(QuotaExceeded):
    """The process already holds the maximum number of handles (quota ``handles``)."""
