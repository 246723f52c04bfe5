"""One error model at the boundary: every refusal crosses it as an ``ErrorCode``.

A reply that refuses a request carries the class name of the kernel's exception
(``error``, as before: scripts and tests match on it), its ``code`` and a ``message``.
The code is what a program should branch on: a class name is the kernel's business and
may be refined, a code is the contract, like an errno.

Every exception the kernel raises on purpose carries its code as the class attribute
``code`` (``AbiError`` and its subclasses here, the kernel's capability, sandbox and
manifest errors). The few built-in exceptions a handler may let through (``OSError`` and
its kinds, ``LookupError``, ``TimeoutError``, ``ValueError``, ``TypeError``) get theirs
from ``code_of``; anything else is a kernel bug, answered ``INTERNAL``.

Standard library only: ``exo_std`` imports this inside every sandboxed process.
"""

from __future__ import annotations

import enum
import errno


class ErrorCode(enum.IntEnum):
    """Why a request was refused. The values are part of the wire format: never reuse
    one; add new codes at the end of their group."""

    # the request itself
    INVALID_ARGUMENT = 1
    UNKNOWN_SYSCALL = 2
    NOT_IMPLEMENTED = 3
    PROTOCOL = 4
    REPLY_TOO_LARGE = 5
    INTERNAL = 6
    # capabilities
    NO_SUCH_HANDLE = 10
    INSUFFICIENT_RIGHTS = 11
    INVALID_RIGHTS = 12
    INVALID_NAME = 13
    DENIED = 14
    REVOKED = 15
    QUOTA_EXCEEDED = 16
    CAPABILITY = 17
    # processes
    NOT_FOUND = 20
    TIMEOUT = 21
    EXEC_FAILED = 22
    SANDBOX = 23
    INVALID_MANIFEST = 24
    # files (from the host's errno)
    NO_SUCH_FILE = 30
    PERMISSION = 31
    EXISTS = 32
    IS_DIRECTORY = 33
    NOT_DIRECTORY = 34
    OS_ERROR = 35


#: What each code means (docs/syscalls.md lists them).
MEANING: dict[ErrorCode, str] = {
    ErrorCode.INVALID_ARGUMENT: "a missing, unknown, mistyped or out-of-range argument",
    ErrorCode.UNKNOWN_SYSCALL: "no syscall of that name",
    ErrorCode.NOT_IMPLEMENTED: "a syscall the table lists but the kernel does not serve yet",
    ErrorCode.PROTOCOL: "not a well-formed message (not JSON, no 'op', bad descriptors...)",
    ErrorCode.REPLY_TOO_LARGE: "the result does not fit in one message",
    ErrorCode.INTERNAL: "the kernel failed (a bug: its log has the traceback)",
    ErrorCode.NO_SUCH_HANDLE: "stale, forged, guessed or foreign handle",
    ErrorCode.INSUFFICIENT_RIGHTS: "the capability lacks a right (or asked to add one)",
    ErrorCode.INVALID_RIGHTS: "a rights text that names no known right",
    ErrorCode.INVALID_NAME: "a resource name that does not parse",
    ErrorCode.DENIED: "refused by authority or policy (no covering capability...)",
    ErrorCode.REVOKED: "the capability was revoked",
    ErrorCode.QUOTA_EXCEEDED: "a per-process bound was reached (exo.kernel.quota)",
    ErrorCode.CAPABILITY: "another refusal of the capability engine",
    ErrorCode.NOT_FOUND: "no such process, child or token",
    ErrorCode.TIMEOUT: "nothing arrived before the timeout",
    ErrorCode.EXEC_FAILED: "the sandbox was built but the program could not be executed",
    ErrorCode.SANDBOX: "the sandbox could not be built",
    ErrorCode.INVALID_MANIFEST: "limits or a manifest that do not parse",
    ErrorCode.NO_SUCH_FILE: "ENOENT: no such file or directory",
    ErrorCode.PERMISSION: "EACCES, EPERM; a path with a link or leaving the tree",
    ErrorCode.EXISTS: "EEXIST: the file exists",
    ErrorCode.IS_DIRECTORY: "EISDIR: a directory opened for writing",
    ErrorCode.NOT_DIRECTORY: "ENOTDIR: not a directory",
    ErrorCode.OS_ERROR: "any other errno",
}


class AbiError(Exception):
    """Base of the errors defined at the boundary; ``code`` says which one."""

    code: ErrorCode = ErrorCode.INTERNAL


class ProtocolError(AbiError):
    """A malformed message on a kernel channel."""

    code = ErrorCode.PROTOCOL


class SyscallError(AbiError):
    """A request refused for a reason other than capabilities.

    ``INVALID_ARGUMENT`` unless said otherwise: the dispatchers' own refusals (an
    unknown or unimplemented syscall, a malformed request) keep this class name on the
    wire, as before the codes existed, and carry their code on the instance."""

    code = ErrorCode.INVALID_ARGUMENT

    def __init__(self, message: str, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class CapabilityError(AbiError):
    """Base class: every refusal of the capability engine is one of these.

    Defined here rather than in ``exo.kernel.caps.errors`` (which re-exports it and
    builds the rest of the hierarchy on it) because ``Rights.parse``, shared by the
    kernel and applications, raises ``InvalidRights``, and that must be a
    ``CapabilityError`` wherever the kernel catches one."""

    code = ErrorCode.CAPABILITY


class InvalidRights(CapabilityError, ValueError):
    """A rights string or value that names no known right."""

    code = ErrorCode.INVALID_RIGHTS


# errno -> code for the OSErrors a handler lets through (the host refused a file
# operation). ELOOP and EXDEV are refusals too: the kernel never follows a link nor
# leaves the Exo tree (exo.kernel.beneath).
_ERRNO_CODES: dict[int, ErrorCode] = {
    errno.ENOENT: ErrorCode.NO_SUCH_FILE,
    errno.EACCES: ErrorCode.PERMISSION,
    errno.EPERM: ErrorCode.PERMISSION,
    errno.ELOOP: ErrorCode.PERMISSION,
    errno.EXDEV: ErrorCode.PERMISSION,
    errno.EEXIST: ErrorCode.EXISTS,
    errno.EISDIR: ErrorCode.IS_DIRECTORY,
    errno.ENOTDIR: ErrorCode.NOT_DIRECTORY,
    errno.ETIMEDOUT: ErrorCode.TIMEOUT,
}
# The same for the OSError subclasses Python raises without an errno of ours.
_OS_CLASS_CODES: dict[type[OSError], ErrorCode] = {
    FileNotFoundError: ErrorCode.NO_SUCH_FILE,
    PermissionError: ErrorCode.PERMISSION,
    FileExistsError: ErrorCode.EXISTS,
    IsADirectoryError: ErrorCode.IS_DIRECTORY,
    NotADirectoryError: ErrorCode.NOT_DIRECTORY,
    TimeoutError: ErrorCode.TIMEOUT,
}


def code_of(exc: BaseException) -> ErrorCode | None:
    """The code a refusal crosses the boundary with; None: not a refusal (a kernel bug,
    to be logged and answered ``INTERNAL``)."""
    code = getattr(exc, "code", None)
    if isinstance(code, ErrorCode):
        return code
    if isinstance(exc, OSError):
        by_class = _OS_CLASS_CODES.get(type(exc))
        if by_class is not None:
            return by_class
        return _ERRNO_CODES.get(exc.errno or 0, ErrorCode.OS_ERROR)
    if isinstance(exc, KeyError):  # a missing argument
        return ErrorCode.INVALID_ARGUMENT
    if isinstance(exc, LookupError):
        return ErrorCode.NOT_FOUND
    if isinstance(exc, ValueError | TypeError | OverflowError):
        return ErrorCode.INVALID_ARGUMENT
    return None


def refusal(req_id: object, exc: BaseException, code: ErrorCode) -> dict[str, object]:
    """The reply refusing a request with ``exc`` (message cut to 1 KiB)."""
    kind = type(exc).__name__
    if isinstance(exc, KeyError) and exc.args:
        message = f"missing argument {str(exc.args[0])[:64]!r}"
    else:
        message = str(exc) or kind
    return {"id": req_id, "ok": False, "error": kind, "code": int(code),
            "message": message[:1024]}
