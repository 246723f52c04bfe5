"""The sandbox's exceptions (a module of their own so the boot path need not load ``spec``)."""

from exo.abi.errors import AbiError, ErrorCode


class SandboxError(AbiError):
    """A sandbox could not be built or started; the message says why, in one line."""

    code = ErrorCode.SANDBOX


class SandboxUnavailable(SandboxError):
    """A Linux mechanism the sandbox needs is missing on this host (never silently skipped)."""


class ExecFailed(SandboxError):
    """The sandbox was built but the target could not be executed; ``errno`` says why
    (``ENOENT``: no such program, as a shell's 127; anything else, as its 126)."""

    code = ErrorCode.EXEC_FAILED

    def __init__(self, message: str, errno: int) -> None:
        super().__init__(message)
        self.errno = errno
