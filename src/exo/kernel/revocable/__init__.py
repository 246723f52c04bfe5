"""Revocable files and directories: the kernel serves them over FUSE and can cut them off."""

from .dirs import RevocableDirs
from .server import REVOKED_ERRNO, Pin, RevocableFiles, cleanup_stale

__all__ = ["REVOKED_ERRNO", "Pin", "RevocableDirs", "RevocableFiles", "cleanup_stale"]
