"""The sandbox's exceptions (a module of their own so the boot path need not load ``spec``)."""


class SandboxError(Exception):
    """A sandbox could not be built or started; the message says why, in one line."""


class SandboxUnavailable(SandboxError):
    """A Linux mechanism the sandbox needs is missing on this host (never silently skipped)."""
