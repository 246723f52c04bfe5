"""The sandbox's exceptions (a module of their own so the boot path need not load ``spec``)."""


class SandboxError(Exception):
    """A sandbox could not be built or started; the message says why, in one line."""


class SandboxUnavailable(SandboxError):
    """A Linux mechanism the sandbox needs is missing on this host (never silently skipped)."""


class ExecFailed(SandboxError):
    """The sandbox was built but the target could not be executed; ``errno`` says why
    (``ENOENT``: no such program, as a shell's 127; anything else, as its 126)."""

    def __init__(self, message: str, errno: int) -> None:
        super().__init__(message)
        self.errno = errno
