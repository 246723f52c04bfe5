"""The directory exports' user.* extended attributes and shared mappings (POSIX-X's
compatibility suite needs both): what is allowed, what is refused, and that revocation
still cuts them."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.unit.revocable.served import PID, served
from tests.unit.revocable.test_dirs import World

from exo.kernel.caps import Capability
from exo.kernel.revocable import REVOKED_ERRNO, RevocableDirs

pytestmark = pytest.mark.skipif(
    not os.path.exists("/dev/fuse") or os.geteuid() != 0,
    reason="needs /dev/fuse and root (mount(2) of a FUSE file system)",
)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


@pytest.fixture
def server(world: World) -> Iterator[RevocableDirs]:
    with served(RevocableDirs, world.tmp / "mnt", world.caps) as srv:
        yield srv


def _export(srv: RevocableDirs, world: World, rights: str = "READ,WRITE"
            ) -> tuple[Path, Capability]:
    pin = world.pin(rights)
    fd = os.open(world.grant, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return srv.export(fd, pin, writable="WRITE" in rights, owner=PID), pin


def _errno(fn: object) -> int:
    try:
        fn()  # type: ignore[operator]
    except OSError as exc:
        return exc.errno or 0
    return 0


def test_user_xattrs_reach_the_real_file_and_nothing_else_does(server: RevocableDirs,
                                                               world: World) -> None:
    p, pin = _export(server, world)
    f = p / "f.txt"
    os.setxattr(f, "user.k", b"v")
    assert os.getxattr(f, "user.k") == b"v"
    assert os.getxattr(world.grant / "f.txt", "user.k") == b"v"  # the real file's
    os.setxattr(p / "sub", "user.d", b"dir")
    assert os.getxattr(p / "sub", "user.d") == b"dir"
    assert "user.k" in os.listxattr(f)
    with pytest.raises(FileExistsError):
        os.setxattr(f, "user.k", b"w", os.XATTR_CREATE)
    assert _errno(lambda: os.getxattr(f, "user.none")) == errno.ENODATA
    # The host's namespaces are never a grant's: capabilities, labels, trusted.*.
    os.setxattr(world.grant / "f.txt", "trusted.secret", b"host")
    assert _errno(lambda: os.getxattr(f, "trusted.secret")) == errno.ENODATA
    assert "trusted.secret" not in os.listxattr(f)
    for name in ("trusted.x", "security.capability", "system.posix_acl_access"):
        assert _errno(lambda n=name: os.setxattr(f, n, b"\0" * 20)) in (
            errno.EOPNOTSUPP, errno.EPERM, errno.EINVAL), name
    assert os.getxattr(world.grant / "f.txt", "trusted.secret") == b"host"
    os.removexattr(f, "user.k")
    assert _errno(lambda: os.getxattr(f, "user.k")) == errno.ENODATA
    # Symlinks: Linux allows no user.* attributes on them; nothing is followed out.
    os.symlink("../outside.txt", world.grant / "ln")
    assert _errno(lambda: os.setxattr(p / "ln", "user.k", b"v", follow_symlinks=False)) \
        == errno.EPERM
    world.caps.revoke(PID, world.root)
    assert pin.revoked


def test_a_read_only_export_refuses_xattr_changes(server: RevocableDirs,
                                                  world: World) -> None:
    os.setxattr(world.grant / "f.txt", "user.k", b"v")
    p, _ = _export(server, world, "READ")
    assert os.getxattr(p / "f.txt", "user.k") == b"v"
    assert _errno(lambda: os.setxattr(p / "f.txt", "user.k", b"w")) in (errno.EACCES,
                                                                         errno.EROFS)
    assert _errno(lambda: os.removexattr(p / "f.txt", "user.k")) in (errno.EACCES,
                                                                      errno.EROFS)
    assert os.getxattr(world.grant / "f.txt", "user.k") == b"v"


def test_xattrs_are_cut_at_revocation(server: RevocableDirs, world: World) -> None:
    p, _ = _export(server, world)
    fd = os.open(p / "f.txt", os.O_RDWR)
    try:
        world.caps.revoke(PID, world.root)
        path = f"/proc/self/fd/{fd}"
        assert _errno(lambda: os.getxattr(path, "user.k")) == REVOKED_ERRNO
        assert _errno(lambda: os.setxattr(path, "user.k", b"v")) == REVOKED_ERRNO
    finally:
        os.close(fd)


MAP_CHILD = """
import mmap, sys
f = open(sys.argv[1], "r+b")
m = mmap.mmap(f.fileno(), 8 << 20)  # MAP_SHARED: ENODEV before DIRECT_IO_ALLOW_MMAP
m[0:2] = b"hi"
m.flush()
print(open(sys.argv[1], "rb").read(2).decode(), flush=True)
sys.stdin.readline()
print(m[6 << 20], flush=True)  # a page never touched: a READ request now
"""


def test_a_served_file_maps_shared_and_revocation_stops_new_faults(
        server: RevocableDirs, world: World) -> None:
    """In a child: the test process serves the mount, and a page fault taken while
    holding the GIL would wait for a server thread that needs it."""
    p, _ = _export(server, world)
    (world.grant / "m").write_bytes(b"\0" * (8 << 20))
    child = subprocess.Popen([sys.executable, "-c", MAP_CHILD, str(p / "m")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline() == "hi\n"
        assert (world.grant / "m").read_bytes()[:2] == b"hi"  # written back to the file
        world.caps.revoke(PID, world.root)
        child.stdin.write("\n")
        child.stdin.flush()
        child.wait(timeout=30)
        # The documented limit: pages already mapped stay readable; a new one is refused.
        assert child.returncode == -signal.SIGBUS, child.stderr.read()  # type: ignore[union-attr]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


TMPFILE_CHILD = """
import ctypes, os, sys
d = sys.argv[1]
fd = os.open(d, os.O_TMPFILE | os.O_RDWR, 0o600)
os.write(fd, b"unnamed")
print(os.fstat(fd).st_size, os.pread(fd, 7, 0).decode(), sorted(os.listdir(d)))
try:  # Linux answers EXDEV itself for this form (no LINK request reaches the server)
    os.link(f"/proc/self/fd/{fd}", os.path.join(d, "via-proc"), follow_symlinks=True)
    print("proc linked")
except OSError as e:
    print("proc", e.errno)
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, AT_EMPTY_PATH = -100, 0x1000
r = libc.linkat(fd, b"", AT_FDCWD, os.path.join(d, "named").encode(), AT_EMPTY_PATH)
print("empty path", r, ctypes.get_errno() if r else 0)
"""


def test_o_tmpfile_makes_an_unnamed_file_that_linkat_can_name(server: RevocableDirs,
                                                               world: World) -> None:
    p, _ = _export(server, world)
    done = subprocess.run([sys.executable, "-c", TMPFILE_CHILD, str(p / "sub")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "7 unnamed ['g.txt']"
    assert lines[2] == "empty path 0 0"
    assert (world.grant / "sub" / "named").read_bytes() == b"unnamed"


def test_o_tmpfile_in_a_read_only_export_is_refused(server: RevocableDirs,
                                                    world: World) -> None:
    p, _ = _export(server, world, "READ")
    done = subprocess.run([sys.executable, "-c",
                           "import os, sys\ntry:\n    os.open(sys.argv[1], os.O_TMPFILE | "
                           "os.O_RDWR, 0o600)\nexcept OSError as e:\n    print(e.errno)",
                           str(p)], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip() in (str(errno.EACCES), str(errno.EROFS)), done.stderr
