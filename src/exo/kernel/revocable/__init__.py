"""Revocable open files: the kernel passes FUSE-backed fds it can cut off at any time."""

from .server import REVOKED_ERRNO, Pin, RevocableFiles, cleanup_stale

__all__ = ["REVOKED_ERRNO", "Pin", "RevocableFiles", "cleanup_stale"]
