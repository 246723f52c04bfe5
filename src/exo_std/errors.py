"""Errors an Exo application sees. Kernel refusals arrive as ``CapabilityError``s."""

from __future__ import annotations


class ExoError(Exception):
    """Base of every error raised by exo_std."""


class KernelUnavailable(ExoError):
    """There is no kernel to talk to, or the channel to it broke."""


class RequestTooLarge(ExoError, ValueError):
    """A call's arguments do not fit in one message to the kernel (64 KiB); nothing was
    sent."""


class CapabilityError(ExoError):
    """The kernel refused a capability operation (the message says why)."""


class InvalidHandle(CapabilityError):
    pass


class InsufficientRights(CapabilityError):
    pass


class CapabilityDenied(CapabilityError):
    pass


class CapabilityRevoked(CapabilityError):
    pass


class InvalidResourceName(CapabilityError, ValueError):
    pass


class ProcessError(ExoError):
    """Spawning or waiting for a process failed."""


class InternalError(ExoError):
    """The kernel failed while serving the call (a kernel bug: its log has the details).
    The kernel keeps serving; the call had no effect it reports."""


class QuotaExceeded(CapabilityError, ProcessError):
    """A bound on what this process may make the kernel spend was reached (children,
    handles, capabilities received or in flight, an inbox, pids): the message names the
    quota and its value, e.g. "quota 'children' (4) reached: ...". Both a capability and
    a process error, so code catching either for those operations still does."""

    @property
    def quota(self) -> str:
        """The quota's name, from the kernel's message."""
        text = str(self)
        return text.split("'")[1] if text.startswith("quota '") else ""


_BY_NAME: dict[str, type[ExoError]] = {
    cls.__name__: cls
    for cls in (CapabilityError, InvalidHandle, InsufficientRights, CapabilityDenied,
                CapabilityRevoked, InvalidResourceName, ProcessError, QuotaExceeded,
                InternalError)
}
_BY_NAME["SpaceFull"] = QuotaExceeded  # the 'handles' quota


def error_from_reply(kind: str, message: str) -> Exception:
    """Map the kernel's error type name to the closest exo_std exception."""
    cls = _BY_NAME.get(kind)
    if cls is None:
        if kind in ("RightsEscalation", "InvalidRights", "NoSuchSpace"):
            cls = CapabilityError
        elif kind in ("LookupError", "TimeoutError", "SandboxError", "SandboxUnavailable",
                      "ManifestError", "ExecFailed"):
            cls = ProcessError
        elif kind in ("FileNotFoundError", "PermissionError", "IsADirectoryError",
                      "NotADirectoryError", "FileExistsError", "OSError"):
            import builtins

            exc_type = getattr(builtins, kind)
            return exc_type(message)  # type: ignore[no-any-return]
        else:
            cls = ExoError
    return cls(message)
