"""The Exo network namespace of hosted network drivers: a fresh Linux network namespace
made by one short-lived thread (``unshare`` changes the calling thread only), kept alive
by a descriptor on it, so the host's interfaces and addresses are never touched and two
kernels on one machine never collide. A thread joins it with ``enter`` (``setns``), as
``nsenter --net=/proc/PID/fd/FD`` does from a shell.

ctypes because Python 3.11's ``os`` has neither ``unshare`` nor ``setns`` (3.12 does).
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def enter(ns_fd: int) -> None:
    """Move the calling thread into the namespace ``ns_fd`` names (sockets it creates
    afterwards live there)."""
    _check(_libc.setns(ns_fd, CLONE_NEWNET), "setns(CLONE_NEWNET)")


def create(setup: Callable[[], object] | None = None) -> int:
    """A descriptor on a new, empty network namespace (loopback down). ``setup``, if
    given, is called inside it (on the creating thread) before the thread ends."""

    def make() -> int:
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        fd = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net",
                     os.O_RDONLY | os.O_CLOEXEC)
        try:
            if setup is not None:
                setup()
        except BaseException:
            os.close(fd)
            raise
        return fd

    fd = _on_thread("exo-netns", make)
    assert isinstance(fd, int)
    return fd


def run_inside(ns_fd: int, fn: Callable[[], object]) -> object:
    """``fn()`` called on a thread that joined ``ns_fd``; its result (or exception)."""

    def go() -> object:
        enter(ns_fd)
        return fn()

    return _on_thread("exo-netns-call", go)


def _on_thread(name: str, fn: Callable[[], object]) -> object:
    """``fn()`` on a short-lived thread of its own (a namespace change stays with that
    thread); its result, or its exception raised here."""
    box: dict[str, object] = {}

    def go() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # reported on the caller's thread
            box["error"] = exc

    t = threading.Thread(target=go, name=name)
    t.start()
    t.join()
    error = box.get("error")
    if isinstance(error, BaseException):
        raise error
    return box.get("value")
