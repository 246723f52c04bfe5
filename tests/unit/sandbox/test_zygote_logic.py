"""The zygote's kernel side: which commands it takes, how a command's view is split into
the session's base and its grants, and that every malformed answer from the zygote ends
it rather than being believed."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pytest

from exo.sandbox import zygote
from exo.sandbox._zygote_main import _Request
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


def test_a_malformed_request_is_refused_by_the_zygote() -> None:
    good = (b'{"id": 1, "mounts": [["/home/a", true, true]], "keep": [5], "cwd": "/",'
            b' "status_fd": 6, "config_fd": 7, "await_fd": 8, "stage2": "/s", "procs": 2}')

    def parse(raw: bytes) -> _Request:  # as the zygote's _handle does
        req = json.loads(raw)
        return _Request(req, int(req["id"]))

    assert parse(good).mounts == [("/home/a", True, True)]
    for bad in (b"{}", b"[]", good.replace(b'"/home/a"', b'"home/a"'),
                good.replace(b'"keep": [5]', b'"keep": [1]'),
                good.replace(b'[["/home/a", true, true]]', b'[["/a"]]'),
                good.replace(b'"procs": 2', b'"procs": 9')):
        with pytest.raises((ValueError, KeyError, TypeError)):
            parse(bad)


class _FakeZygote:
    """Only what ``Zygote._answer`` and ``_died`` use: the checks run on the real code."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[int, zygote.ZygoteProcess] = {}
        self.dead = False
        self.sock, self.peer = socket.socketpair()


def test_every_malformed_answer_ends_the_zygote() -> None:
    fake = _FakeZygote()
    proc = zygote.ZygoteProcess(fake, 7, None, "p2")  # type: ignore[arg-type]
    fake.pending[7] = proc
    answer = zygote.Zygote._answer
    r, w = os.pipe()
    try:
        for msg, fds in ((b"S 7 12", []),           # a start without its pidfd
                         (b"X 8 0", []),            # an id nobody asked about
                         (b"Q 7 0", []),            # an unknown kind
                         (b"\xff\xfe", []),         # not ASCII
                         (b"X 7 zero", []),         # a status that is no number
                         (b"F 7 fork failed", [r])):  # a descriptor with no place
            assert answer(fake, msg, fds) is False, msg
        with pytest.raises(OSError):
            os.fstat(r)  # the stray descriptor was closed, not kept
        r = -1
        # A start whose descriptor is no pidfd: the kernel would signal and watch it.
        assert answer(fake, b"S 7 12", [w]) is False
        with pytest.raises(OSError):
            os.fstat(w)
        w = -1
        assert proc.pidfd == -1 and not proc._started.is_set()
        assert answer(fake, b"X 7 256", []) is True
        assert proc.wait(1) == 1  # raw wait status 256: exit 1
    finally:
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)
        zygote.Zygote._died(fake)  # type: ignore[arg-type]
        fake.peer.close()


_SPARES = r'''
import os, sys
from exo.sandbox import _zygote_main as z
z._KEEP[:] = [sys.argv[1]]  # a runtime path that is not there: no spare can prepare
spawned = []
spawn = z._Spares._spawn
z._Spares._spawn = lambda self: spawned.append(1) or spawn(self)
spares = z._Spares(os.open("/proc/self/ns/pid", os.O_RDONLY))
spares.fork()
try:
    spares.take()
except OSError as exc:
    print(exc)
print(os.readlink("/proc/self/ns/pid_for_children") == os.readlink("/proc/self/ns/pid"))
print(len(spawned))
'''


@pytest.mark.skipif(os.geteuid() != 0, reason="a spare's pid namespace needs root")
def test_a_spare_that_cannot_be_prepared_says_why_and_a_fresh_one_is_tried() -> None:
    """The zygote's kept spare (the real exo-stage2) fails to prepare itself (it says why,
    "E...", and exits): the command takes a fresh one, and when that fails too, the
    start fails with the spare's reason; the zygote's children go back to its own pid
    namespace after each spare."""
    import subprocess
    import sys
    import tempfile

    missing = tempfile.mktemp(dir="/tmp", prefix="exo-missing-")
    done = subprocess.run([sys.executable, "-c", _SPARES, missing], capture_output=True,
                          text=True, timeout=60, check=True)
    reason, same_ns, spawned = done.stdout.splitlines()
    assert reason == ("no sandbox could be prepared for the command: zygote: open_tree "
                      f"{missing}: No such file or directory")
    assert same_ns == "True"
    assert spawned == "2"  # the kept spare, then a fresh one
