"""Errors an Exo application sees: one class per ``exo.abi.ErrorCode`` a kernel refusal
carries (``error_from_reply``); host file errors as Python's own ``OSError`` kinds."""

from __future__ import annotations

from exo.abi.errors import ErrorCode


class ExoError(Exception):
    """Base of every error raised by exo_std. ``code``: the ``exo.abi.ErrorCode`` of the
    kernel's refusal it stands for (None for errors of this side)."""

    code: ErrorCode | None = None


class KernelUnavailable(ExoError):
    """There is no kernel to talk to, or the channel to it broke."""


class RequestTooLarge(ExoError, ValueError):
    """A call's arguments do not fit in one message to the kernel (64 KiB); nothing was
    sent."""


class CapabilityError(ExoError):
    """The kernel refused a capability operation (the message says why)."""

    code = ErrorCode.CAPABILITY


class InvalidHandle(CapabilityError):
    code = ErrorCode.NO_SUCH_HANDLE


class InsufficientRights(CapabilityError):
    code = ErrorCode.INSUFFICIENT_RIGHTS


class CapabilityDenied(CapabilityError):
    code = ErrorCode.DENIED


class CapabilityRevoked(CapabilityError):
    code = ErrorCode.REVOKED


class InvalidResourceName(CapabilityError, ValueError):
    code = ErrorCode.INVALID_NAME


class InvalidRights(CapabilityError, ValueError):
    code = ErrorCode.INVALID_RIGHTS


class ProcessError(ExoError):
    """Spawning or waiting for a process failed."""


class InternalError(ExoError):
    """The kernel failed while serving the call (a kernel bug: its log has the details).
    The kernel keeps serving; the call had no effect it reports."""

    code = ErrorCode.INTERNAL


class QuotaExceeded(CapabilityError, ProcessError):
    """A bound on what this process may make the kernel spend was reached (children,
    handles, capabilities received or in flight, an inbox, pids): the message names the
    quota and its value, e.g. "quota 'children' (4) reached: ...". Both a capability and
    a process error, so code catching either for those operations still does."""

    code = ErrorCode.QUOTA_EXCEEDED

    @property
    def quota(self) -> str:
        """The quota's name, from the kernel's message."""
        text = str(self)
        return text.split("'")[1] if text.startswith("quota '") else ""


class InvalidArgument(ExoError, ValueError):
    """The kernel refused the call's arguments (missing, unknown, mistyped or out of
    bounds: the syscall's row in ``exo.abi.syscalls`` says what it takes)."""

    code = ErrorCode.INVALID_ARGUMENT


class UnknownSyscall(ExoError):
    """No syscall of that name."""

    code = ErrorCode.UNKNOWN_SYSCALL


class NotImplementedYet(ExoError):
    """The syscall is in the table but the kernel does not serve it yet."""

    code = ErrorCode.NOT_IMPLEMENTED


class MalformedRequest(ExoError):
    """The kernel could not parse what was sent (exo_std never sends such a request)."""

    code = ErrorCode.PROTOCOL


class ReplyTooLarge(ExoError):
    """The result does not fit in one message (e.g. a huge handle table asked whole)."""

    code = ErrorCode.REPLY_TOO_LARGE


class NotFound(ProcessError, LookupError):
    """No such process, child or token."""

    code = ErrorCode.NOT_FOUND


class TimedOut(ProcessError, TimeoutError):
    """Nothing arrived before the timeout."""

    code = ErrorCode.TIMEOUT


class SandboxError(ProcessError):
    """The child's sandbox could not be built."""

    code = ErrorCode.SANDBOX


class ExecFailed(SandboxError):
    """The sandbox was built but the program could not be executed (no such program...)."""

    code = ErrorCode.EXEC_FAILED


class ManifestError(ProcessError, ValueError):
    """Limits (or a manifest) that cannot be used as given."""

    code = ErrorCode.INVALID_MANIFEST


# One class per code. Host file errors arrive as the built-in exceptions Python itself
# raises for them (code that catches PermissionError or FileNotFoundError around
# fs.File.open works unchanged).
_BY_CODE: dict[int, type[Exception]] = {
    int(cls.code): cls
    for cls in (InvalidArgument, UnknownSyscall, NotImplementedYet, MalformedRequest,
                ReplyTooLarge, InternalError, InvalidHandle, InsufficientRights, InvalidRights,
                InvalidResourceName, CapabilityDenied, CapabilityRevoked, QuotaExceeded,
                CapabilityError, NotFound, TimedOut, ExecFailed, SandboxError, ManifestError)
    if cls.code is not None
}
_BY_CODE.update({
    ErrorCode.NO_SUCH_FILE: FileNotFoundError,
    ErrorCode.PERMISSION: PermissionError,
    ErrorCode.EXISTS: FileExistsError,
    ErrorCode.IS_DIRECTORY: IsADirectoryError,
    ErrorCode.NOT_DIRECTORY: NotADirectoryError,
    ErrorCode.OS_ERROR: OSError,
})


def error_from_reply(kind: str, message: str, code: object = None) -> Exception:
    """The exception for a refusal: the class of its ``code`` (``kind``, the kernel's
    class name, is for messages; a reply without a known code is an ``ExoError``)."""
    cls = _BY_CODE.get(code) if isinstance(code, int) else None
    if cls is None or not isinstance(code, int):
        return ExoError(f"{kind}: {message}")
    exc = cls(message)
    if not isinstance(exc, ExoError):  # a built-in OSError kind: it carries the code too
        exc.code = ErrorCode(code)  # type: ignore[attr-defined]
    return exc
