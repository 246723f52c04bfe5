"""The zygote's kernel side: which commands it takes, how a command's view is split into
the session's base and its grants, and that every malformed answer from the zygote ends
it rather than being believed."""

from __future__ import annotations

import collections
import contextlib
import errno
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
        self.starved = False
        self.asking = False
        self.ask_after = 0.0
        self.sock, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def _ask(self) -> None:
        zygote.Zygote._ask(self)  # type: ignore[arg-type]

    def _replenish(self) -> None:
        zygote.Zygote._replenish(self)  # type: ignore[arg-type]

    def _ask_settled(self) -> None:
        zygote.Zygote._ask_settled(self)  # type: ignore[arg-type]

    def _pre_enter(self, spare: zygote._Spare, pid: int) -> None:
        """(No groups here: these spares are the test's own children.)"""

    def _supplied(self, msg: bytes, fds: list[int]) -> bool:
        return zygote.Zygote._supplied(self, msg, fds)  # type: ignore[arg-type]

    def _died(self) -> None:
        zygote.Zygote._died(self)  # type: ignore[arg-type]


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
                                          os.pidfd_open(os.getpid())]),
                          (b"R", lambda: [os.pipe()[0],                   # no socket
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


@pytest.mark.parametrize(("said", "raw"), [
    (b"X0 0 0", 0), (b"X256 0 0", 256), (b"X65280 0 0", 65280), (b"X9 0 0", 9),
    (b"X139 0 0", 139),
    # what no ended process's status is: a stop, a continue, stray bits, too big, junk
    (b"X127 0 0", 9), (b"X4991 0 0", 9), (b"X65535 0 0", 9), (b"X65536 0 0", 9),
    (b"X99999999999 0 0", 9), (b"X 0 0", 9), (b"X-1 0 0", 9), (b"Y0 0 0", 9), (b"", 9),
    # the CPU time after it: two counts of microseconds, or the report is not believed
    (b"X0", 9), (b"X0 1", 9), (b"X0 1 2 3", 9), (b"X0 -1 2", 9), (b"X0 1 " + b"9" * 19, 9),
])
def test_an_inits_report_is_believed_only_if_it_is_an_ended_processs_status(
        said: bytes, raw: int) -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours:
        if said:
            theirs.send(said)
        theirs.close()  # (no report at all: the socket's end)
        assert zygote._report(ours) == (raw, (0.0, 0.0) if raw != 9 or said == b"X9 0 0"
                                        else None)


def test_an_inits_report_carries_the_cpu_time_of_what_it_reaped() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, theirs:
        theirs.send(b"X256 1500000 250")
        assert zygote._report(ours) == (256, (1.5, 0.00025))


def test_a_command_whose_init_never_reports_counts_as_killed_after_the_grace(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The command ended (its pidfd says so) but its socket stays open and silent: its
    wait ends after ``REPORT_GRACE`` with SIGKILL, instead of never."""
    import time

    monkeypatch.setattr(zygote, "REPORT_GRACE", 0.2)
    fake = _FakeZygote()
    fake.pending = {}  # type: ignore[attr-defined]
    fake.ended = lambda proc: None  # type: ignore[attr-defined]
    proc = zygote.ZygoteProcess(fake, 3, None, "p3")  # type: ignore[arg-type]
    child = subprocess.Popen(["sleep", "0.05"])
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        proc.pidfd, proc.conn = os.pidfd_open(child.pid), ours
        assert proc.poll() is None  # running: no status from a look
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(0.01)
        started = time.monotonic()
        assert proc.exit_status() == 137
        assert 0.1 < time.monotonic() - started < 5
    finally:
        child.wait()
        theirs.close()
        proc._finish()
        fake.peer.close()


def test_descriptors_from_the_zygote_are_close_on_exec() -> None:
    from exo.sandbox._zygote_main import recv_fds

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r, w = os.pipe()
    with ours, theirs:
        os.set_inheritable(r, True)
        socket.send_fds(theirs, [b"R"], [r])
        msg, fds = recv_fds(ours, 64, 2)
        assert msg == b"R" and len(fds) == 1
        assert not os.get_inheritable(fds[0])
        # more descriptors than asked for: refused, none kept
        socket.send_fds(theirs, [b"R"], [r, w, r])
        with pytest.raises(OSError):
            recv_fds(ours, 64, 2)
    for fd in (r, w, *fds):
        os.close(fd)


def test_an_empty_message_ends_the_zygote_and_its_descriptors_are_closed() -> None:
    fake = _FakeZygote()
    r, w = os.pipe()
    try:
        socket.send_fds(fake.peer, [b""], [r])
        zygote.Zygote._read(fake)  # type: ignore[arg-type]
        assert fake.dead
        pipe = os.readlink(f"/proc/self/fd/{r}")
        holding = set()
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/self/fd/{fd}") == pipe:
                    holding.add(int(fd))
        assert holding == {r, w}  # the one that came with the message was closed
    finally:
        os.close(r)
        os.close(w)
        fake.peer.close()


def test_after_a_start_waited_in_vain_the_next_fail_at_once_until_a_spare_comes() -> None:
    import time

    fake = _FakeZygote()
    fake.coming = 0
    take = zygote.Zygote.take
    try:
        started = time.monotonic()
        with pytest.raises(zygote.SandboxError, match="no spare came"):
            take(fake, 0.2)  # type: ignore[arg-type]
        assert time.monotonic() - started >= 0.2 and fake.starved
        started = time.monotonic()
        with pytest.raises(zygote.SandboxError, match="no spare came"):
            take(fake, 5.0)  # type: ignore[arg-type]
        assert time.monotonic() - started < 1.0
        child = subprocess.Popen(["sleep", "60"])
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            assert zygote.Zygote._supplied(  # type: ignore[arg-type]
                fake, b"R", [ours.detach(), os.pidfd_open(child.pid)])
            assert not fake.starved
            spare, pid = take(fake, 1.0)  # type: ignore[arg-type]
            assert pid == child.pid
            spare.discard()
        assert child.wait(10) == -9
    finally:
        zygote.Zygote._died(fake)  # type: ignore[arg-type]
        fake.peer.close()


def test_warming_a_session_compiles_its_commands_seccomp_filter(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The libseccomp binding's import runs a subprocess (~35 ms): it was on a session's
    first command, and at a descriptor shortage it said "Unable to find libseccomp".
    A login's warm-up compiles the filter (the zygote's own start, here refused, aside)."""
    from exo.sandbox import _seccomp

    if os.geteuid() != 0:
        pytest.skip("a zygote is root's")
    made: list[tuple[object, ...]] = []
    monkeypatch.setattr(_seccomp, "compiled_filter", lambda *a: made.append(a) or b"")
    monkeypatch.setattr(zygote, "_base", lambda spec: (_ for _ in ()).throw(
        RuntimeError("no zygote in this test")))

    class Processes:
        root, boot_id = tmp_path, "warm-test"

        def __init__(self) -> None:
            self.said: list[str] = []

        def log(self, text: str) -> None:
            self.said.append(text)

    processes = Processes()
    zygote.warm(processes, ("alice", 301000))
    for t in threading.enumerate():
        if t.name == "exo-zygote-warm":
            t.join(10)
    assert made == [("none", errno.EPERM, True)]
    assert processes.said and "not started at login" in processes.said[0]


def test_replacement_spares_are_asked_for_after_a_burst_of_takes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A take that leaves a spare asks for its replacement ``SETTLE`` s after the last
    take (its preparation then falls after a pipeline's starts); one that leaves none asks
    at once; with no thread to wait on, a take asks at once too."""
    import time

    from exo import _threadcache

    monkeypatch.setattr(zygote, "SETTLE", 0.5)  # (a slow machine's takes stay in it)

    def spare() -> subprocess.Popen[bytes]:
        child = subprocess.Popen(["sleep", "60"])
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        theirs.close()
        assert zygote.Zygote._supplied(  # type: ignore[arg-type]
            fake, b"R", [ours.detach(), os.pidfd_open(child.pid)])
        return child

    def asked() -> int:
        n = 0
        with contextlib.suppress(BlockingIOError):
            while fake.peer.recv(8, socket.MSG_DONTWAIT) == b"N":
                n += 1
        return n

    fake = _FakeZygote()
    fake.coming = 3
    children = [spare() for _ in range(3)]
    take = zygote.Zygote.take
    try:
        for _ in range(2):  # a two-stage pipeline: one left, nothing asked yet
            take(fake, 1.0)[0].discard()  # type: ignore[arg-type]
        assert asked() == 0 and len(fake.spares) == 1
        deadline = time.monotonic() + 10
        while fake.asking and time.monotonic() < deadline:
            time.sleep(0.05)
        assert asked() == 2 and fake.coming == 2  # both replacements, once settled
        take(fake, 1.0)[0].discard()  # type: ignore[arg-type]
        assert asked() == 1  # none left: at once
        children.append(spare())

        def no_thread(fn: object, name: str) -> None:
            raise RuntimeError("can't start new thread")

        monkeypatch.setattr(_threadcache, "start", no_thread)
        fake.coming = 1
        children.append(spare())
        take(fake, 1.0)[0].discard()  # type: ignore[arg-type]
        assert asked() == 2 and not fake.asking  # asked now (up to three), not never
    finally:
        zygote.Zygote._died(fake)  # type: ignore[arg-type]
        fake.peer.close()
    for child in children:
        assert child.wait(10) == -9
