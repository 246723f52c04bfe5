"""Revocable open files: a real FUSE server, real capabilities, real child processes."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.revocable.served import (
    PID,
    Holder,
    mounted,
    reserve_past,
    served,
    write_refused_for_room,
)

from exo.kernel.caps import Capability
from exo.kernel.files import OpenFileTable
from exo.kernel.process import ExoProcess
from exo.kernel.revocable import REVOKED_ERRNO, RevocableFiles, cleanup_stale

pytestmark = pytest.mark.skipif(
    not os.path.exists("/dev/fuse") or os.geteuid() != 0,
    reason="needs /dev/fuse and root (mount(2) of a FUSE file system)",
)

def _server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("exo-files-")]


class World(Holder):
    """The holder, and a file to open."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.file = tmp / "data.txt"
        self.file.write_bytes(b"hello, world\n")


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


@pytest.fixture
def server(world: World) -> Iterator[RevocableFiles]:
    with served(RevocableFiles, world.tmp / "mnt", world.caps) as srv:
        yield srv
    assert not _server_threads()


def _open(srv: RevocableFiles, world: World, flags: int, rights: str = "READ,WRITE"
          ) -> tuple[int, Capability]:
    pin = world.pin(rights)
    real = os.open(world.file, flags | os.O_CLOEXEC)
    return srv.open(real, pin, flags, owner=PID), pin


def test_read_write_seek_fstat_ftruncate_reach_the_real_file(server: RevocableFiles,
                                                             world: World) -> None:
    fd, _ = _open(server, world, os.O_RDWR)
    try:
        assert os.read(fd, 5) == b"hello"
        assert os.lseek(fd, 0, os.SEEK_SET) == 0
        assert os.write(fd, b"HELLO") == 5
        assert world.file.read_bytes() == b"HELLO, world\n"
        world.file.write_bytes(b"changed behind our back, longer\n")
        assert os.fstat(fd).st_size == len(b"changed behind our back, longer\n")  # no cache
        assert os.pread(fd, 7, 0) == b"changed"                                # direct I/O
        os.ftruncate(fd, 7)
        assert world.file.read_bytes() == b"changed"
        assert os.lseek(fd, 0, os.SEEK_END) == 7
        os.fsync(fd)
        big = os.urandom(3 * 1024 * 1024 + 17)  # several FUSE requests each way
        assert os.pwrite(fd, big, 0) == len(big)
        assert world.file.read_bytes() == big
        assert os.lseek(fd, 0, os.SEEK_SET) == 0
        assert b"".join(iter(lambda: os.read(fd, 1 << 20), b"")) == big
    finally:
        os.close(fd)


def test_append_mode_appends(server: RevocableFiles, world: World) -> None:
    fd, _ = _open(server, world, os.O_WRONLY | os.O_APPEND, "WRITE")
    try:
        os.write(fd, b"more\n")
        os.write(fd, b"again\n")
    finally:
        os.close(fd)
    assert world.file.read_bytes() == b"hello, world\nmore\nagain\n"


def test_a_served_files_writes_leave_the_file_systems_reserve(world: World) -> None:
    """A WRITE grant of one file could fill the host's disk (only directory grants kept
    the reserve): past it a write is ENOSPC and nothing of it is written."""
    with served(RevocableFiles, world.tmp / "mnt", world.caps,
                min_free=reserve_past(world.file)) as srv:
        write_refused_for_room(_open(srv, world, os.O_WRONLY | os.O_APPEND, "WRITE")[0])
        assert world.file.read_bytes() == b"hello, world\n"
        assert srv.stats()["no_space"] == 1


def test_after_revoke_next_read_write_fstat_fail(server: RevocableFiles, world: World) -> None:
    fd, pin = _open(server, world, os.O_RDWR)
    try:
        assert os.pread(fd, 5, 0) == b"hello"
        world.revoke()
        assert pin.revoked
        for op in (lambda: os.pread(fd, 5, 0), lambda: os.pwrite(fd, b"x", 0),
                   lambda: os.fstat(fd), lambda: os.ftruncate(fd, 0), lambda: os.fsync(fd)):
            with pytest.raises(OSError) as info:
                op()
            assert info.value.errno == REVOKED_ERRNO == errno.EACCES
        assert world.file.read_bytes() == b"hello, world\n"  # nothing got through
        assert server.stats()["revoked"] == 1                # real file closed at once
        assert server.released == [pin]  # type: ignore[attr-defined]
    finally:
        os.close(fd)


def test_pin_revoked_without_listener_still_fails_next_op(world: World) -> None:
    srv = RevocableFiles(world.tmp / "mnt2")  # no on_revoke subscription: per-op check only
    srv.start()
    try:
        fd, _ = _open(srv, world, os.O_RDONLY, "READ")
        assert os.read(fd, 5) == b"hello"
        world.revoke()
        with pytest.raises(PermissionError):
            os.read(fd, 5)
        os.close(fd)
    finally:
        srv.close()


_CHILD = """
import os, sys
fd = int(sys.argv[1])
print(os.pread(fd, 5, 0).decode(), flush=True)
os.pwrite(fd, b"J", 0)
print("wrote", flush=True)
sys.stdin.readline()
for name, op in (("read", lambda: os.pread(fd, 5, 0)), ("write", lambda: os.pwrite(fd, b"K", 0))):
    try:
        op()
        print(name, "ok", flush=True)
    except OSError as exc:
        print(name, exc.errno, flush=True)
"""


def test_revocation_reaches_a_descriptor_held_by_another_process(server: RevocableFiles,
                                                                 world: World) -> None:
    fd, _ = _open(server, world, os.O_RDWR)
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(fd)], pass_fds=[fd],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    os.close(fd)  # as the kernel does after passing it: only the child holds it now
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "hello"
        assert child.stdout.readline().strip() == "wrote"
        assert world.file.read_bytes() == b"Jello, world\n"
        world.revoke()
        child.stdin.write("\n")
        child.stdin.flush()
        out = child.stdout.read().split("\n")
        assert out[:2] == [f"read {REVOKED_ERRNO}", f"write {REVOKED_ERRNO}"]
        assert child.wait(timeout=10) == 0
        assert world.file.read_bytes() == b"Jello, world\n"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


_MMAP_CHILD = """
import mmap, sys
m = mmap.mmap(int(sys.argv[1]), 8192, mmap.MAP_PRIVATE, mmap.PROT_READ)
print(m[:5].decode(), flush=True)
sys.stdin.readline()
print(m[:5], flush=True)
"""


def test_private_mapping_loses_its_pages_on_revoke(server: RevocableFiles, world: World) -> None:
    world.file.write_bytes(b"hello" * 2000)
    fd, _ = _open(server, world, os.O_RDONLY, "READ")
    child = subprocess.Popen([sys.executable, "-c", _MMAP_CHILD, str(fd)], pass_fds=[fd],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "hello"
        world.revoke()
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(timeout=10) == -signal.SIGBUS  # re-faulting a page is refused
        with pytest.raises(OSError) as info:  # and shared mappings are never allowed
            import mmap
            mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ)
        assert info.value.errno == errno.ENODEV
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(fd)


def test_close_releases_the_entry(server: RevocableFiles, world: World) -> None:
    fd, pin = _open(server, world, os.O_RDONLY, "READ")
    dup = os.dup(fd)
    os.close(fd)
    assert server.stats()["open"] == 1  # a copy is still open: no RELEASE yet
    os.close(dup)
    for _ in range(200):  # RELEASE is asynchronous after close(2)
        if server.stats()["open"] == 0:
            break
        threading.Event().wait(0.01)
    assert server.stats()["open"] == 0
    assert server.stats()["released"] == 1
    assert server.released == [pin]  # type: ignore[attr-defined]


def test_cannot_reopen_through_proc_fd_with_more_access(server: RevocableFiles,
                                                        world: World) -> None:
    fd, _ = _open(server, world, os.O_RDONLY, "READ")
    try:
        with pytest.raises(OSError) as info:
            os.write(fd, b"x")
        assert info.value.errno == errno.EBADF
        for flags in (os.O_RDWR, os.O_RDONLY):
            with pytest.raises(PermissionError):
                os.open(f"/proc/self/fd/{fd}", flags)
        with pytest.raises(FileNotFoundError):  # names are not guessable from outside
            os.open(world.tmp / "mnt" / "2", os.O_RDONLY)
    finally:
        os.close(fd)
    assert world.file.read_bytes() == b"hello, world\n"


def test_directory_lists_but_opens_nothing_below(server: RevocableFiles, world: World) -> None:
    (world.tmp / "dir").mkdir()
    (world.tmp / "dir" / "a").write_text("a")
    real = os.open(world.tmp / "dir", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fd = server.open(real, world.pin("READ"), os.O_RDONLY, owner=PID)
    try:
        assert os.listdir(fd) == ["a"]
        with pytest.raises(PermissionError):
            os.open("a", os.O_RDONLY, dir_fd=fd)
        world.revoke()
        with pytest.raises(PermissionError):
            os.listdir(fd)
    finally:
        os.close(fd)


def test_bad_input_is_a_clear_error(server: RevocableFiles, world: World) -> None:
    real = os.open(world.tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with pytest.raises(IsADirectoryError):
            server.open(real, world.pin(), os.O_RDWR)
    finally:
        os.close(real)
    with pytest.raises(ValueError, match="threads"):
        RevocableFiles(world.tmp / "x", threads=0)
    with pytest.raises(RuntimeError, match="not running"):
        RevocableFiles(world.tmp / "x").open(0, world.pin(), os.O_RDONLY)


def test_close_unmounts_stops_threads_and_cuts_open_fds(world: World) -> None:
    servers = [RevocableFiles(world.tmp / f"m{i}") for i in range(3)]
    for s in servers:  # several at once, in one process
        s.start()
    fd, _ = _open(servers[1], world, os.O_RDONLY, "READ")
    assert all(mounted(s.mount_dir) for s in servers)
    for s in servers:
        s.close()
        s.close()  # idempotent
    assert not any(mounted(s.mount_dir) for s in servers)
    assert not any(s.mount_dir.exists() for s in servers)
    assert not _server_threads()
    with pytest.raises(OSError) as info:
        os.read(fd, 1)
    assert info.value.errno in (errno.ENOTCONN, errno.ECONNABORTED)
    os.close(fd)  # FOPEN_NOFLUSH: closing after the server is gone is not an error
    for _ in range(3):  # and again, repeatedly
        s = RevocableFiles(world.tmp / "again")
        s.start()
        fd, _ = _open(s, world, os.O_RDONLY, "READ")
        assert os.read(fd, 5) == b"hello"
        os.close(fd)
        s.close()
    assert not mounted(world.tmp / "again") and not _server_threads()
    with pytest.raises(RuntimeError, match="closed"):
        s.start()


# ---------------------------------------------------------------- OpenFileTable wiring
def _proc(pid: int = PID) -> ExoProcess:
    return ExoProcess(pid=pid, argv=["app"], parent=1)


def _exit(proc: ExoProcess) -> None:
    for hook in proc.on_exit:  # what ProcessManager._reclaim does
        hook(proc)


def test_table_serves_revocable_files_and_releases_on_exit(world: World) -> None:
    table = OpenFileTable(world.caps)
    proc = _proc()
    mount = world.tmp / "files-test"
    try:
        real = os.open(world.file, os.O_RDWR | os.O_CLOEXEC)
        pin = world.pin()
        fd, revocable = table.open_revocable(proc, pin, real, os.O_RDWR, mount_dir=mount)
        assert revocable and mounted(mount)
        assert table.count() == 1
        assert os.read(fd, 5) == b"hello"
        _exit(proc)
        assert table.count() == 0
        with pytest.raises(PermissionError):  # its process exited: the file died with it
            os.read(fd, 5)
        os.close(fd)

        real = os.open(world.file, os.O_RDONLY | os.O_CLOEXEC)
        proc2 = _proc(PID)
        fd, _ = table.open_revocable(proc2, world.pin("READ"), real, os.O_RDONLY,
                                     mount_dir=mount)
        world.revoke()  # through the table's on_revoke subscription
        assert table.count() == 0
        assert table.stats()["server"]["revoked"] == 1
        with pytest.raises(PermissionError):
            os.read(fd, 5)
        os.close(fd)
    finally:
        table.close()
        table.close()
    assert not mounted(mount) and not _server_threads() and not mount.exists()
    assert world.caps.handles(PID)  # the root capability itself is untouched


def test_table_falls_back_to_plain_fds_and_says_so(world: World) -> None:
    table = OpenFileTable(world.caps, fuse_device=str(world.tmp / "no-such-fuse"))
    said: list[str] = []
    proc = _proc()
    try:
        for _ in range(2):
            real = os.open(world.file, os.O_RDONLY | os.O_CLOEXEC)
            fd, revocable = table.open_revocable(proc, world.pin("READ"), real, os.O_RDONLY,
                                                 mount_dir=world.tmp / "m", log=said.append)
            assert not revocable and fd == real
            os.close(fd)
        assert len(said) == 1 and "NOT revocable" in said[0]
        assert table.stats()["revocable"] is False and table.unavailable
        assert table.count() == 2
        _exit(proc)
        assert table.count() == 0
    finally:
        table.close()


_KILLED_KERNEL = """
import sys, time
from pathlib import Path
from exo.kernel.revocable import RevocableFiles
srv = RevocableFiles(Path(sys.argv[1]))
srv.start()
# A kernel killed together with its unmount watchdog (kill -9 of everything, or a kernel
# from before the watchdog): only cleanup_stale can remove its mount.
srv._watchdog.kill()
srv._watchdog.wait()
print("up", flush=True)
time.sleep(60)
"""


def test_dead_mounts_of_a_killed_kernel_are_cleaned_and_live_ones_kept(world: World) -> None:
    run = world.tmp / "run"
    run.mkdir()
    live = RevocableFiles(run / "files-live")
    live.start()
    child = subprocess.Popen([sys.executable, "-c", _KILLED_KERNEL, str(run / "files-dead")],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "up"
        child.kill()  # SIGKILL: no chance to unmount
        child.wait()
        assert mounted(run / "files-dead")
        assert cleanup_stale(run) == [str(run / "files-dead")]
        assert not mounted(run / "files-dead") and not (run / "files-dead").exists()
        assert mounted(run / "files-live")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        live.close()
        cleanup_stale(run)
    assert not mounted(run / "files-live")


_APP = """
import os
from exo_std import caps
from exo_std.fs import File
root = caps.handles()[0]
f = File.open("storage://home/x.txt", "READ,WRITE", create=True)
print("via", os.path.basename(os.path.dirname(os.readlink(f"/proc/self/fd/{f.fd}"))))
f.write("hi there\\n")
f.seek(0)
print("read", f.read().decode().strip())
root.revoke()  # revokes everything derived from it, including the open file's pin
for name, op in (("read", lambda: os.pread(f.fd, 5, 0)), ("write", lambda: f.write("x"))):
    try:
        op()
        print(name, "ok")
    except OSError as exc:
        print(name, exc.errno)
"""


def test_end_to_end_through_a_sandboxed_exo_process(exo_cmd: list[str], tmp_path: Path) -> None:
    root = tmp_path / "root"
    env = dict(os.environ, EXO_ROOT=str(root))
    env.pop("EXO_BOOTSTRAP_FD", None)
    out = subprocess.run([*exo_cmd, "run", "--cap", "storage://home=READ,WRITE,GRANT", "--",
                          sys.executable, "-c", _APP], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("via files-")  # a FUSE fd, not the real file
    assert lines[1:] == ["read hi there", f"read {REVOKED_ERRNO}", f"write {REVOKED_ERRNO}"]
    assert (root / "home" / "x.txt").read_text() == "hi there\n"
    assert str(root) not in Path("/proc/self/mountinfo").read_text()
