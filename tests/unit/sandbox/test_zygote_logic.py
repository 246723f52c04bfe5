"""The zygote's kernel side: which commands it takes, how a command's view is split into
the session's base and its grants, and that every malformed answer from the zygote ends
it rather than being believed."""

from __future__ import annotations

import collections
import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from exo.sandbox import zygote
from exo.sandbox.spec import NetPolicy, SandboxSpec


def test_commands_it_cannot_keep_every_property_of_take_the_full_launcher() -> None:
    account = ("alice", 301000)
    plain = SandboxSpec(net=NetPolicy.none(), account=account)
    root = os.geteuid() == 0
    # (a checkout under /tmp too: the zygote keeps the runtime visible in its commands)
    assert (zygote.eligible(plain) is None) == root
    if not root:
        return
    assert "account" in str(zygote.eligible(SandboxSpec(net=NetPolicy.none())))
    assert "network" in str(zygote.eligible(
        SandboxSpec(net=NetPolicy.tcp(connect=(443,)), account=account)))
    assert "POSIX-X" in str(zygote.eligible(
        SandboxSpec(net=NetPolicy.none(), account=account, host_etc=(Path("/etc/hosts"),))))


def test_the_view_is_the_base_plus_the_grants() -> None:
    base = ["--tmpfs", "/dev", "--perms", "0755", "--dir", "/etc",
            "--ro-bind", "/usr", "/usr", "--proc", "/proc"]
    command = ["--tmpfs", "/dev", "--perms", "0755", "--dir", "/etc",
               "--perms", "0755", "--dir", "/home", "--ro-bind", "/usr", "/usr",
               "--bind", "/x/exports/3", "/home/alice", "--proc", "/proc"]
    binds = zygote._binds(command)
    assert ("--bind", "/x/exports/3", "/home/alice") in binds
    grants = {d for _, _, d in binds} - {d for _, _, d in zygote._binds(base)}
    assert grants == {"/home/alice"}
    assert zygote._skeleton(command, grants) == zygote._skeleton(base, set())
    # Anything else that differs (here /etc/hosts bound) is not the session's view.
    other = [*command, "--ro-bind", "/etc/hosts", "/etc/hosts"]
    assert zygote._skeleton(other, grants) != zygote._skeleton(base, set())


def test_a_request_is_records_for_the_descriptors_in_their_order() -> None:
    """The records the kernel sends a spare (``_stage2.c``'s header): indices into the
    descriptors as sent (stdin, stdout, stderr, go, status, config, seccomp, kept ones,
    grants' mounts, the terminal's node last)."""
    mounts = [("/home/a", "/x/1", True, True), (zygote.TTY, "/dev/pts/3", False, False)]
    raw = zygote._records(mounts, [5], "/home/a", True, status_fd=6, config_fd=7,
                          await_fd=8)
    assert raw.split(b"\0")[:-1] == [
        b"status", b"4", b"seccomp", b"6", b"dev", b"9",
        b"mount", b"/home/a", b"1", b"1", b"8", b"cwd", b"/home/a",
        b"fd", b"0", b"0", b"fd", b"1", b"1", b"fd", b"2", b"2", b"fd", b"6", b"4",
        b"fd", b"7", b"5", b"fd", b"8", b"3", b"fd", b"5", b"7", b"config", b"7"]
    with pytest.raises(zygote.SandboxError, match="NUL"):
        zygote._records([("/a\0b", "/x", True, True)], [], "/", False, status_fd=3,
                        config_fd=4, await_fd=5)


class _FakeZygote:
    """Only what ``Zygote._supplied``, ``_ask`` and ``_died`` use: the checks run on the
    real code."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.supplied = threading.Condition(self.lock)
        self.spares: collections.deque[zygote._Spare] = collections.deque()
        self.errors: collections.deque[str] = collections.deque()
        self.coming = 2
        self.dead = False
        self.sock, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def _ask(self) -> None:
        zygote.Zygote._ask(self)  # type: ignore[arg-type]


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def test_every_malformed_message_from_the_zygote_ends_it() -> None:
    fake = _FakeZygote()
    supplied = zygote.Zygote._supplied
    try:
        for msg, make in ((b"R", lambda: []),                            # no descriptors
                          (b"Q", lambda: []),                            # an unknown kind
                          (b"E why", lambda: [os.pipe()[0]]),            # a stray one
                          (b"R", lambda: list(os.pipe())),               # no socket
                          (b"R", lambda: [*(s.detach() for s in socket.socketpair(
                              socket.AF_UNIX, socket.SOCK_SEQPACKET))]),  # no pidfd
                          (b"R", lambda: [socket.socket().detach(),       # a TCP socket
                                          os.pidfd_open(os.getpid())])):
            # (every descriptor is closed here, never signalled: this test's own pidfd)
            fds = make()
            assert supplied(fake, msg, fds) is False, (msg, fds)  # type: ignore[arg-type]
            assert all(_closed(fd) for fd in fds), msg  # nothing kept
        assert not fake.spares and fake.coming == 2
        # What it does send: why a spare is not coming, and a spare.
        assert supplied(fake, b"E zygote: no /proc", []) is True  # type: ignore[arg-type]
        assert list(fake.errors) == ["zygote: no /proc"] and fake.coming == 1
        # (a child standing for the command-to-be: the zygote's end discards it, killed)
        child = subprocess.Popen(["sleep", "60"])
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            pidfd = os.pidfd_open(child.pid)
            assert supplied(fake, b"R", [ours.detach(), pidfd]) is True  # type: ignore[arg-type]
            assert len(fake.spares) == 1 and fake.coming == 0 and not fake.errors
            assert fake.spares[0].pidfd == pidfd
        # Nothing more was asked for: one more spare, or one more reason, ends it.
        for msg, make in ((b"R", lambda: [*(s.detach() for s in socket.socketpair(
                socket.AF_UNIX, socket.SOCK_SEQPACKET))]), (b"E why", lambda: [])):
            fds = make()
            assert supplied(fake, msg, fds) is False, msg  # type: ignore[arg-type]
            assert all(_closed(fd) for fd in fds) and len(fake.spares) == 1
    finally:
        zygote.Zygote._died(fake)  # type: ignore[arg-type]
        fake.peer.close()
    assert fake.dead and not fake.spares
    assert child.wait(10) == -9 and _closed(pidfd)


_SPARES = r'''
import os, socket, sys
from exo.sandbox import _zygote_main as z
z._KEEP[:] = [sys.argv[1]]  # a runtime path that is not there: no spare can prepare
spawned = []
spawn = z._spawn_spare
z._spawn_spare = lambda pidns: spawned.append(1) or spawn(pidns)
kernel, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
supply = z._Supply(ours, os.open("/proc/self/ns/pid", os.O_RDONLY))
supply.owed = 1
supply.refill()
while supply.preparing:
    fd = next(iter(supply.preparing))
    os.waitpid(supply.preparing[fd].pid, 0)
    supply.settle(fd)
print(kernel.recv(1024).decode())
print(os.readlink("/proc/self/ns/pid_for_children") == os.readlink("/proc/self/ns/pid"))
print(len(spawned), supply.owed)
'''


@pytest.mark.skipif(os.geteuid() != 0, reason="a spare's pid namespace needs root")
def test_a_spare_that_cannot_be_prepared_says_why_and_a_fresh_one_is_tried() -> None:
    """A spare (the real exo-stage2) fails to prepare itself (it says why, "E...", and
    exits): the zygote tries a fresh one, and when that fails too, tells the kernel why
    the spare it owes is not coming; its children go back to its own pid namespace
    after each spare."""
    import sys
    import tempfile

    missing = tempfile.mktemp(dir="/tmp", prefix="exo-missing-")
    done = subprocess.run([sys.executable, "-c", _SPARES, missing], capture_output=True,
                          text=True, timeout=60, check=True)
    reason, same_ns, counts = done.stdout.splitlines()
    assert reason == ("E no sandbox could be prepared for the command: zygote: open_tree "
                      f"{missing}: No such file or directory")
    assert same_ns == "True"
    assert counts == "2 0"  # the first spare, then a fresh one; none owed any more
