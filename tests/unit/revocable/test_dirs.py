"""The directory passthrough (RevocableDirs): a real FUSE mount, real capabilities.

The test process itself is the client here (it is root and sees the mount); the system
tests (tests/system/test_revocable_dirs.py) do the same from inside sandboxes.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import threading
import time
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
from exo.kernel.revocable import REVOKED_ERRNO, RevocableDirs

pytestmark = pytest.mark.skipif(
    not os.path.exists("/dev/fuse") or os.geteuid() != 0,
    reason="needs /dev/fuse and root (mount(2) of a FUSE file system)",
)

class World(Holder):
    """The holder, and a granted directory with a file and a subdirectory."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.grant = tmp / "grant"
        self.grant.mkdir()
        (self.grant / "f.txt").write_text("hello\n")
        (self.grant / "sub").mkdir()
        (self.grant / "sub" / "g.txt").write_text("deeper\n")
        (tmp / "outside.txt").write_text("outside\n")


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


@pytest.fixture
def server(world: World) -> Iterator[RevocableDirs]:
    with served(RevocableDirs, world.tmp / "mnt", world.caps) as srv:
        yield srv


def _export(srv: RevocableDirs, world: World, rights: str = "READ,WRITE",
            path: Path | None = None) -> tuple[Path, Capability]:
    pin = world.pin(rights)
    fd = os.open(path or world.grant, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return srv.export(fd, pin, writable="WRITE" in rights, owner=PID), pin


def test_every_operation_reaches_the_real_directory(server: RevocableDirs, world: World
                                                    ) -> None:
    p, _ = _export(server, world)
    g = world.grant
    assert sorted(os.listdir(p)) == ["f.txt", "sub"]
    assert (p / "f.txt").read_text() == "hello\n"
    assert (p / "sub" / "g.txt").read_text() == "deeper\n"
    assert os.stat(p / "f.txt").st_ino == os.stat(g / "f.txt").st_ino
    (p / "new.txt").write_bytes(b"n" * 300_000)                     # create + big writes
    assert (g / "new.txt").read_bytes() == b"n" * 300_000
    with open(p / "new.txt", "r+b") as fh:                           # read back, seek, write
        fh.seek(10)
        fh.write(b"XY")
    assert (g / "new.txt").read_bytes()[8:14] == b"nnXYnn"
    os.truncate(p / "new.txt", 5)                                    # setattr size
    assert (g / "new.txt").read_bytes() == b"nnnnn"
    os.chmod(p / "new.txt", 0o6755)                                  # suid/sgid dropped
    assert stat.S_IMODE(os.stat(g / "new.txt").st_mode) == 0o755
    os.utime(p / "new.txt", (1_000_000, 2_000_000))
    assert os.stat(g / "new.txt").st_mtime == 2_000_000
    os.mkdir(p / "d")
    os.rename(p / "new.txt", p / "d" / "moved.txt")
    assert (g / "d" / "moved.txt").exists() and not (g / "new.txt").exists()
    os.symlink("moved.txt", p / "d" / "link")
    assert os.readlink(p / "d" / "link") == "moved.txt"
    assert (p / "d" / "link").read_text() == "nnnnn"
    os.link(p / "f.txt", p / "hard")
    assert os.stat(g / "f.txt").st_nlink == 2
    os.mkfifo(p / "fifo")
    assert stat.S_ISFIFO(os.lstat(g / "fifo").st_mode)
    for name in ("hard", "fifo", "d/link", "d/moved.txt"):
        os.unlink(p / name)
    os.rmdir(p / "d")
    assert sorted(os.listdir(g)) == ["f.txt", "sub"]
    fd = os.open(p / "f.txt", os.O_RDWR)
    try:
        os.fsync(fd)
        assert os.fstat(fd).st_size == 6
    finally:
        os.close(fd)
    assert os.statvfs(p).f_bsize == os.statvfs(g).f_bsize
    with pytest.raises(FileExistsError):
        os.open(p / "f.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    with pytest.raises(PermissionError):
        os.chown(p / "f.txt", 1000, 1000)
    with pytest.raises(PermissionError):
        os.mknod(p / "dev", 0o600 | stat.S_IFCHR, os.makedev(1, 3))


def test_revocation_cuts_paths_cwd_and_open_descriptors(server: RevocableDirs, world: World
                                                        ) -> None:
    p, pin = _export(server, world)
    fd = os.open(p / "f.txt", os.O_RDWR)
    dfd = os.open(p / "sub", os.O_RDONLY | os.O_DIRECTORY)
    child = subprocess.Popen(  # another process, its cwd inside the export
        [sys.executable, "-c", "import os,sys; sys.stdin.readline(); print(os.listdir('.'))"],
        cwd=p / "sub", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        world.caps.revoke(PID, world.root)
        assert pin.revoked
        for op in (lambda: os.pread(fd, 5, 0), lambda: os.pwrite(fd, b"x", 0),
                   lambda: os.fstat(fd), lambda: os.listdir(dfd),
                   lambda: os.stat("g.txt", dir_fd=dfd),
                   lambda: os.open("g.txt", os.O_RDONLY, dir_fd=dfd),
                   lambda: os.open("new", os.O_WRONLY | os.O_CREAT, dir_fd=dfd)):
            with pytest.raises(OSError) as info:
                op()
            assert info.value.errno == REVOKED_ERRNO
        # The export's name is gone from the mount too.
        assert not (p / "f.txt").exists()
        _, err = child.communicate("\n", timeout=30)
        assert child.returncode != 0 and "PermissionError" in err
    finally:
        os.close(fd)
        os.close(dfd)
        if child.poll() is None:
            child.kill()
    assert (world.grant / "f.txt").read_text() == "hello\n"
    assert server.released == [pin]  # type: ignore[attr-defined]
    # close(2) on a FUSE file does not wait for RELEASE: the kernel queues it and returns,
    # so the server may still hold the handles for a moment.
    deadline = time.monotonic() + 10
    while server.stats()["handles"] and time.monotonic() < deadline:
        time.sleep(0.01)
    st = server.stats()
    assert st["exports"] == 0 and st["revoked"] == 1 and st["handles"] == 0


def test_attributes_answered_just_before_revocation_are_not_served_after(
        server: RevocableDirs, world: World) -> None:
    # attr_valid is 0, yet the client keeps an answer until the next clock tick, and names
    # are cached: so revocation invalidates every node's attributes before it returns. (The
    # window is a tick at most, so without that invalidation this fails only sometimes.)
    for _ in range(20):
        world.root = world.caps.grant_root(PID, "storage://", "ALL")
        p, _pin = _export(server, world)
        dfd = os.open(p / "sub", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.stat("g.txt", dir_fd=dfd)
            world.caps.revoke(PID, world.root)
            with pytest.raises(OSError) as info:
                os.stat("g.txt", dir_fd=dfd)
            assert info.value.errno == REVOKED_ERRNO
        finally:
            os.close(dfd)


def test_per_request_check_alone_refuses_after_revoke(world: World) -> None:
    srv = RevocableDirs(world.tmp / "mnt2")  # no on_revoke listener: only pin.revoked
    srv.start()
    try:
        p, _ = _export(srv, world)
        fd = os.open(p / "f.txt", os.O_RDONLY)
        world.caps.revoke(PID, world.root)
        with pytest.raises(PermissionError):
            os.read(fd, 3)
        with pytest.raises(PermissionError):
            os.listdir(p)
        os.close(fd)
    finally:
        srv.close()


def test_read_only_export_refuses_every_change(server: RevocableDirs, world: World) -> None:
    p, _ = _export(server, world, "READ")
    assert (p / "f.txt").read_text() == "hello\n"
    changes = [
        lambda: os.open(p / "f.txt", os.O_RDWR), lambda: os.open(p / "f.txt", os.O_WRONLY),
        lambda: os.open(p / "f.txt", os.O_RDONLY | os.O_TRUNC),
        lambda: os.open(p / "new", os.O_WRONLY | os.O_CREAT), lambda: os.mkdir(p / "d"),
        lambda: os.unlink(p / "f.txt"), lambda: os.rmdir(p / "sub"),
        lambda: os.rename(p / "f.txt", p / "g"), lambda: os.truncate(p / "f.txt", 0),
        lambda: os.chmod(p / "f.txt", 0o777), lambda: os.utime(p / "f.txt", (1, 1)),
        lambda: os.symlink("f.txt", p / "l"), lambda: os.link(p / "f.txt", p / "h"),
        lambda: os.mkfifo(p / "fifo"),
    ]
    for change in changes:
        with pytest.raises(PermissionError):
            change()
    assert sorted(os.listdir(world.grant)) == ["f.txt", "sub"]
    assert (world.grant / "f.txt").read_text() == "hello\n"


def test_symlinks_are_returned_not_followed_and_nothing_escapes(server: RevocableDirs,
                                                                world: World) -> None:
    os.symlink(world.tmp / "outside.txt", world.grant / "abs")
    os.symlink("../outside.txt", world.grant / "rel")
    os.symlink(world.tmp, world.grant / "dirlink")
    p, _ = _export(server, world)
    assert os.readlink(p / "abs") == str(world.tmp / "outside.txt")
    assert os.readlink(p / "rel") == "../outside.txt"
    assert stat.S_ISLNK(os.lstat(p / "dirlink").st_mode)
    # Relative links resolve in the client's view: here one level up is the mount root,
    # which lists nothing and holds no such name.
    with pytest.raises(FileNotFoundError):
        (p / "rel").read_text()
    assert os.listdir(p.parent) == []
    # Writing through a symlink the client resolved is the client's business; creating
    # over a symlink name with O_NOFOLLOW semantics is refused by the server.
    with pytest.raises(OSError) as info:
        os.open(p / "abs", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW)
    assert info.value.errno == errno.ELOOP
    assert (world.tmp / "outside.txt").read_text() == "outside\n"


def test_renames_and_links_stay_within_one_export(server: RevocableDirs, world: World) -> None:
    other = world.tmp / "other"
    other.mkdir()
    a, _ = _export(server, world)
    b, _ = _export(server, world, path=other)
    for op in (lambda: os.rename(a / "f.txt", b / "f.txt"),
               lambda: os.link(a / "f.txt", b / "f.txt")):
        with pytest.raises(OSError) as info:
            op()
        assert info.value.errno == errno.EXDEV
    assert (world.grant / "f.txt").exists() and not (other / "f.txt").exists()


def test_a_file_export_is_that_file_and_nothing_beside_it(server: RevocableDirs,
                                                          world: World) -> None:
    fifo = world.tmp / "fifo"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
    with pytest.raises(OSError) as info:  # only directories and regular files
        server.export(fd, world.pin("READ"), writable=False, owner=PID)
    assert info.value.errno == errno.EINVAL
    os.close(fd)
    rw = server.export(os.open(world.grant / "f.txt", os.O_PATH | os.O_CLOEXEC),
                       world.pin("READ,WRITE"), writable=True, owner=PID)
    ro = server.export(os.open(world.grant / "f.txt", os.O_PATH | os.O_CLOEXEC),
                       world.pin("READ"), writable=False, owner=PID)
    assert rw.is_file() and rw.read_text() == "hello\n"
    with open(rw, "r+") as fh:
        fh.write("HELLO")
    assert (world.grant / "f.txt").read_text() == "HELLO\n"
    for op in (lambda: os.listdir(rw), lambda: os.stat(rw / "sub")):
        with pytest.raises(NotADirectoryError):
            op()
    assert ro.read_text() == "HELLO\n"
    with pytest.raises(PermissionError):
        os.open(ro, os.O_WRONLY)
    kept = os.open(ro, os.O_RDONLY)
    try:
        world.caps.revoke(PID, world.root)
        with pytest.raises(OSError) as info:
            os.pread(kept, 5, 0)
        assert info.value.errno == REVOKED_ERRNO
    finally:
        os.close(kept)
    assert not rw.exists() and not ro.exists()  # their names left the mount
    assert (world.grant / "f.txt").read_text() == "HELLO\n"


def test_names_made_outside_show_at_once_and_removed_ones_within_a_second(
        server: RevocableDirs, world: World) -> None:
    # Names may be cached for _ENTRY_VALID_S (attributes never; revocation does not depend on
    # either): a new name is looked up at once, a removed one can linger that long at most.
    p, _ = _export(server, world)
    assert (p / "f.txt").stat().st_size == 6
    (world.grant / "new.txt").write_text("fresh")
    assert (p / "new.txt").read_text() == "fresh"  # no negative caching
    (world.grant / "f.txt").write_text("longer text\n")
    assert (p / "f.txt").stat().st_size == 12  # attributes are asked for every time
    os.unlink(world.grant / "new.txt")
    time.sleep(1.5)
    assert not (p / "new.txt").exists()


def test_own_mount_cannot_be_exported(server: RevocableDirs, world: World) -> None:
    p, _ = _export(server, world)
    with pytest.raises(OSError) as info:
        _export(server, world, path=p)
    assert info.value.errno == errno.ELOOP


def test_concurrent_requests_from_many_threads(server: RevocableDirs, world: World) -> None:
    p, _ = _export(server, world)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            d = p / f"t{i}"
            os.mkdir(d)
            for j in range(30):
                f = d / f"{j}.txt"
                f.write_text(f"{i}-{j}" * 100)
                assert f.read_text() == f"{i}-{j}" * 100
                os.rename(f, d / f"{j}.done")
            assert len(os.listdir(d)) == 30
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sum(len(os.listdir(world.grant / f"t{i}")) for i in range(6)) == 180


def test_release_for_owner_and_close(world: World) -> None:
    srv = RevocableDirs(world.tmp / "mnt3")
    srv.start()
    p, _ = _export(srv, world)
    fd = os.open(p / "f.txt", os.O_RDONLY)
    assert srv.release_for(PID) == 1
    with pytest.raises(PermissionError):
        os.read(fd, 1)
    p2, _ = _export(srv, world)
    fd2 = os.open(p2 / "f.txt", os.O_RDONLY)
    srv.close()
    assert not mounted(world.tmp / "mnt3")
    with pytest.raises(OSError) as info:
        os.read(fd2, 1)
    assert info.value.errno == errno.ENOTCONN
    os.close(fd)
    os.close(fd2)
    srv.close()  # idempotent


def test_table_exports_unpins_and_falls_back(world: World) -> None:
    table = OpenFileTable(world.caps)
    said: list[str] = []
    pin = world.pin("READ")
    fd = os.open(world.grant, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    path = table.export_dir(PID, pin, fd, writable=False, mount_dir=world.tmp / "dirs-x",
                            log=said.append)
    assert path is not None and (path / "f.txt").read_text() == "hello\n"
    assert table.stats()["pinned"] == 1
    assert table.release_exports(PID) == 1
    assert table.stats()["pinned"] == 0
    table.close()
    assert not mounted(world.tmp / "dirs-x")

    none = OpenFileTable(world.caps, fuse_device="/dev/exo-no-such-fuse")
    pin = world.pin("READ")
    fd = os.open(world.grant, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    for _ in range(2):
        assert none.export_dir(PID, pin, fd, writable=False, mount_dir=world.tmp / "dirs-y",
                               log=said.append) is None
    os.close(fd)
    world.caps.unpin(pin)
    assert len([m for m in said if "NOT revocable" in m]) == 1
    assert none.stats()["dirs_unavailable"]
    none.close()


_KILLED = """
import os, sys
from pathlib import Path
from exo.kernel.revocable import RevocableDirs
srv = RevocableDirs(Path(sys.argv[1]))
srv.start()
print("up", flush=True)
sys.stdin.readline()
"""


def test_a_killed_server_does_not_leave_its_mount_behind(tmp_path: Path) -> None:
    mnt = tmp_path / "dirs-killed"
    child = subprocess.Popen([sys.executable, "-c", _KILLED, str(mnt)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "up"
    assert mounted(mnt)
    child.kill()
    child.wait()
    deadline = time.monotonic() + 10
    # The watchdog unmounts, then removes the directory: wait for both, not just the first.
    while (mounted(mnt) or mnt.exists()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not mounted(mnt)
    assert not mnt.exists()


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_an_export_holds_a_bounded_number_of_descriptors(world: World) -> None:
    """Past ``max_fds`` the least recently used nodes are parked (fd closed) and reopened
    beneath their parent when used again, invisibly; names and open files have hard
    bounds with a clear errno."""
    for i in range(120):
        (world.grant / f"n{i}.txt").write_text(f"file {i}\n")
    with served(RevocableDirs, world.tmp / "mnt", world.caps, max_fds=8, max_nodes=1000,
                max_handles=4) as srv:
        p, _ = _export(srv, world)
        before = _fds()
        for rounds in range(2):  # the second round reopens parked nodes
            for i in range(120):
                assert (p / f"n{i}.txt").read_text() == f"file {i}\n", (rounds, i)
                assert srv.stats()["node_fds"] <= 8 + 1  # + the export's root
        assert _fds() - before <= 8 + 1
        st = srv.stats()
        assert st["parked"] > 0 and st["reopened"] > 0, st
        # A parked node renamed through the export is reopened by its new name.
        os.rename(p / "n0.txt", p / "sub" / "moved.txt")
        for i in range(1, 60):
            os.stat(p / f"n{i}.txt")  # park the moved node again
        assert (p / "sub" / "moved.txt").read_text() == "file 0\n"
        # Open files: at most max_handles at once (EMFILE), free again once closed.
        held = [os.open(p / f"n{i}.txt", os.O_RDONLY) for i in range(1, 5)]
        with pytest.raises(OSError) as too_many:
            os.open(p / "n5.txt", os.O_RDONLY)
        assert too_many.value.errno == errno.EMFILE
        for fd in held:
            os.close(fd)
        assert (p / "n5.txt").read_bytes() == b"file 5\n"
        # Names: at most max_nodes per export. The client keeps what it looked up, so
        # past half it is asked to drop the oldest names (their FORGETs come):
        # 3,000 names go through 1,000 (a checkout or a build makes more files than that).
        # (1,000, not 200: the names from half to the bound are what the eviction thread's
        # lag has, and 50 of them were outrun by this loop on a loaded machine.)
        for i in range(120, 3120):
            (world.grant / f"n{i}.txt").write_text("x")
        full = srv.stats()["full"]  # (the EMFILE above)
        for i in range(120, 3120):
            os.stat(p / f"n{i}.txt")
        st = srv.stats()
        assert st["nodes"] <= 1000 and st["evicted"] > 0 and st["full"] == full, st
        # Names the client cannot drop (each held by a descriptor) still stop at the
        # bound, with ENFILE.
        held, errors = [], set()
        try:
            for i in range(120, 3120):
                try:
                    held.append(os.open(p / f"n{i}.txt", os.O_PATH))
                except OSError as exc:
                    errors.add(exc.errno)
                    break
        finally:
            for fd in held:
                os.close(fd)
        assert errors == {errno.ENFILE} and len(held) < 1000
        assert srv.stats()["nodes"] <= 1000


def test_create_never_opens_a_fifo_that_appeared_in_its_place(server: RevocableDirs,
                                                              world: World) -> None:
    """Two exports of one directory: a FIFO made through one between the other's LOOKUP
    and CREATE was opened by the worker (O_CREAT without O_EXCL), which then waited for a
    reader forever; with both workers parked so, every export of every process froze
    (a hostile review's race, 2026-12-04). The handler is asked directly, as that race
    leaves it; it answers at once."""
    os.mkfifo(world.grant / "x")
    (world.grant / "regular").write_text("kept\n")
    dirfd = os.open(world.grant, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    outcome: list[object] = []

    def create(name: bytes, flags: int) -> None:
        try:
            outcome.append(RevocableDirs._create_at(dirfd, name, flags, 0o644))
        except OSError as exc:
            outcome.append(exc.errno)

    try:
        for flags in (os.O_WRONLY, os.O_RDONLY, os.O_RDWR | os.O_TRUNC):
            worker = threading.Thread(target=create, args=(b"x", flags), daemon=True)
            worker.start()
            worker.join(5.0)
            assert not worker.is_alive(), "the worker is parked on the FIFO"
        assert outcome == [errno.EACCES] * 3
        outcome.clear()
        create(b"regular", os.O_WRONLY | os.O_APPEND)  # an existing file: opened
        create(b"regular", os.O_WRONLY | os.O_EXCL)  # ... unless the caller said O_EXCL
        create(b"sub", os.O_WRONLY)
        fd = outcome[0]
        assert isinstance(fd, int)
        os.write(fd, b"more\n")
        os.close(fd)
        assert outcome[1:] == [errno.EEXIST, errno.EISDIR]
        assert (world.grant / "regular").read_text() == "kept\nmore\n"
    finally:
        os.close(dirfd)


def test_a_file_is_its_askers_own_and_chown_to_oneself_changes_nothing(
        server: RevocableDirs, world: World) -> None:
    """The host's owner (the kernel, or another of the user's process uids) shown to the
    grant's holder made Linux refuse it what it checks on an owner before asking the
    server: `sed -i` warned on every edit (its ACL, EPERM). Now the asker is the owner
    shown, a chown to oneself is a no-op (`cp -p`), to anyone else EPERM, and an ACL is
    "not supported" (the server keeps none)."""
    p, _ = _export(server, world)
    fd = os.open(p / "f.txt", os.O_RDWR)  # (the test's directories are root's, 0700)
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # a process of another uid, as a sandboxed program is
        os.close(r)
        try:
            os.setgroups([])
            os.setresgid(4343, 4343, 4343)
            os.setresuid(4242, 4242, 4242)
            st = os.fstat(fd)
            said = [f"{st.st_uid}:{st.st_gid}"]
            for call in (lambda: os.fchown(fd, 4242, 4343), lambda: os.fchown(fd, 0, -1),
                         lambda: os.fchown(fd, -1, 0), lambda: os.fchmod(fd, 0o600),
                         lambda: os.setxattr(fd, "system.posix_acl_access",
                                             b"\x02\x00\x00\x00")):
                try:
                    call()
                    said.append("ok")
                except OSError as exc:
                    said.append(errno.errorcode[exc.errno or 0])
            os.write(w, " ".join(said).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.close(fd)
    with os.fdopen(r) as f:
        said = f.read()
    os.waitpid(child, 0)
    assert said == f"4242:4343 ok EPERM EPERM ok {errno.errorcode[errno.EOPNOTSUPP]}"
    st = (world.grant / "f.txt").stat()
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())  # nothing changed owner
    assert st.st_mode & 0o777 == 0o600


def test_a_grants_writes_leave_the_file_systems_reserve(world: World) -> None:
    """A WRITE grant could fill the host's disk (a hostile review, 2026-12-04): a write
    that would leave less than the reserve is ENOSPC, and nothing of it is written."""
    with served(RevocableDirs, world.tmp / "mnt", world.caps,
                min_free=reserve_past(world.grant)) as srv:
        p, _ = _export(srv, world)
        write_refused_for_room(os.open(p / "f.txt", os.O_WRONLY | os.O_APPEND))
        assert (world.grant / "f.txt").read_text() == "hello\n"
        # nor new names: directories, links, files (each an inode, and blocks)
        for make in (lambda: os.mkdir(p / "d"), lambda: os.symlink("x" * 4000, p / "l"),
                     lambda: os.close(os.open(p / "new", os.O_CREAT | os.O_WRONLY))):
            with pytest.raises(OSError) as full:
                make()
            assert full.value.errno == errno.ENOSPC
        assert sorted(os.listdir(world.grant)) == ["f.txt", "sub"]
        assert srv.stats()["no_space"] >= 4
    with served(RevocableDirs, world.tmp / "mnt", world.caps) as srv:  # the default
        p, _ = _export(srv, world)
        with open(p / "f.txt", "a") as fh:
            fh.write("more\n")
        assert (world.grant / "f.txt").read_text() == "hello\nmore\n"


@pytest.mark.parametrize("passthrough", [False, True])
def test_writing_a_file_takes_its_set_id_bits_and_capabilities_away(
        server: RevocableDirs, world: World, passthrough: bool) -> None:
    """The server writes as root, which keeps set-id bits (CAP_FSETID), and under
    FUSE_HANDLE_KILLPRIV_V2 the client leaves dropping them to it: a file opened for
    writing, truncated or created over loses its set-user-ID and set-group-ID bits and its
    file capability, as after an unprivileged write on Linux (``: > f`` kept them
    before); opened to read it keeps them, and a set-group-ID directory keeps its bit.
    The client no longer asks GETXATTR ``security.capability`` before each write."""
    if passthrough and not server.passthrough:
        pytest.skip(f"no FUSE passthrough here ({server.passthrough_unavailable})")
    pin = world.pin()
    fd = os.open(world.grant, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    p = server.export(fd, pin, writable=True, owner=PID, passthrough=passthrough)
    names = ("append", "trunc", "path-trunc", "create", "read", "cap")
    for name in names:
        (world.grant / name).write_bytes(b"x")
        os.chmod(world.grant / name, 0o6755)
    os.setxattr(world.grant / "cap", "security.capability",
                bytes.fromhex("0100000200200000000000000000000000000000"))
    (world.grant / "sgid-dir").mkdir()
    os.chmod(world.grant / "sgid-dir", 0o2775)
    with open(p / "append", "ab") as f:
        f.write(b"y")
    os.close(os.open(p / "trunc", os.O_WRONLY | os.O_TRUNC))
    os.truncate(p / "path-trunc", 0)
    os.close(os.open(p / "create", os.O_WRONLY | os.O_CREAT, 0o644))
    assert (p / "read").read_bytes() == b"x"
    with open(p / "cap", "r+b") as f:
        f.write(b"z")
    (p / "sgid-dir" / "new").write_bytes(b"n")
    mode = {name: stat.S_IMODE(os.stat(world.grant / name).st_mode) for name in names}
    assert mode == {"append": 0o755, "trunc": 0o755, "path-trunc": 0o755, "create": 0o755,
                    "read": 0o6755, "cap": 0o755}
    assert "security.capability" not in os.listxattr(world.grant / "cap")
    assert stat.S_IMODE(os.stat(world.grant / "sgid-dir").st_mode) == 0o2775
    # Writes after the first ask nothing more (passthrough: nothing at all).
    with open(p / "append", "r+b", buffering=0) as f:
        f.write(b"a")
        before = server.stats()["requests"]
        for _ in range(50):
            f.write(b"b")
        after = server.stats()["requests"]
    assert after - before == (0 if passthrough else 50)
