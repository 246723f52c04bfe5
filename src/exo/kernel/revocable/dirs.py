"""Revocable directory grants: a FUSE passthrough of granted directories, one export each.

A process holding ``storage://`` on a directory used to get the real directory bind-mounted
into its sandbox, and Linux cannot take a bind mount (or the cwd and descriptors inside it)
back from a running process. So the kernel exports the directory here instead, under a
random name at the root of this mount, and the sandbox binds *that* at the usual path.
Every lookup, stat, readdir, open, read, write, create, rename, unlink... on it is then a
request this server answers after testing the export's capability pin: once the pin is
revoked (or its process has exited) the next operation fails with ``EACCES`` -- path
lookups, the working directory and descriptors already open alike.

Safety of the passthrough:

* Each inode the kernel knows is an ``O_PATH`` descriptor obtained beneath the export's
  root one component at a time, with ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
  RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`` and ``O_NOFOLLOW``: a symlink is returned to the
  client *as a symlink* and never followed here, ``..`` is never sent to us (the client
  VFS handles it, and a bind mount's root is its ceiling), and no other mount (our own
  FUSE mounts included) is entered.
* Every other operation is an ``*at()`` call on such a descriptor with a single validated
  name component (no ``/``, not ``.``/``..``), or a reopen of the descriptor itself through
  ``/proc/self/fd`` in the kernel process.
* READ-only exports refuse every change (EACCES); chown is refused, chmod drops
  setuid/setgid; devices cannot be created.
* Attribute timeouts are zero and files are opened ``FOPEN_DIRECT_IO``, so the client kernel
  asks us for every operation instead of answering from its caches; only names (dentries)
  are cached, for ``_ENTRY_VALID_S``, which saves LOOKUPs in path walks and nothing else.
  An export made with ``passthrough=True`` opens its regular files with FUSE passthrough
  instead (reads and writes go to the real file without us; one backing file per node
  while it is open) and lets the client cache attributes for ``_PT_ATTR_VALID_S``;
  revoking it drops every node's cached attributes (FUSE_NOTIFY_INVAL_INODE, before
  ``revoke`` returns) and marks its open files' FUSE inodes bad (``_cut``), which stops
  stat, reads and writes but not mappings, splice or sendfile (docs/revocable-files.md).
* Descriptors are closed only when no request of their export is running (per-export
  ``busy`` count), so a revocation never closes an fd under a concurrent request.
* One process cannot exhaust the kernel's descriptors through its exports: each export
  keeps at most ``max_fds`` node descriptors open -- past that, the least recently used
  idle nodes are *parked* (their ``O_PATH`` fd closed, reopened beneath their parent by
  name, with the same checks, when next used; invisible to the client) -- and knows at most
  ``max_nodes`` nodes (past half the client is asked to drop the oldest names, whose
  FORGETs then come: ``_make_room``) and ``max_handles`` open files (then ``ENFILE``
  / ``EMFILE``).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from exo import _threadcache
from exo._umask import process_umask
from exo.kernel import exportguards as _guards
from exo.kernel.caps import Rights

from . import _getdents
from . import _passthrough as _pt
from . import _proto as P
from ._base import REVOKED_ERRNO, FuseServer, Parts, log
from .server import Pin

TYPE_CHECKING = False  # no typing import at run time: boot path (exo/_value.py)
if TYPE_CHECKING:
    from typing import Any

_RESOLVE = (P.RESOLVE_BENEATH | P.RESOLVE_NO_SYMLINKS | P.RESOLVE_NO_MAGICLINKS
            | P.RESOLVE_NO_XDEV)
_LOOKUP_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_PASS = os.O_ACCMODE | os.O_APPEND | os.O_TRUNC | os.O_SYNC | os.O_DSYNC
_MODE_BITS = 0o1777                      # permission bits we let a client set (no suid/sgid)


def _as_asked(fd: int, mode: int) -> None:
    """A file just made (``fd``) with the mode its client asked for. FUSE applied the
    client's umask to it already (we do not ask for FUSE_DONT_MASK); the kernel process's
    own must not take more bits (a program's ``umask 002`` made 0644 files, not 0664)."""
    if mode & _MODE_BITS & process_umask():
        os.fchmod(fd, mode & _MODE_BITS)


def _mkdir_as_asked(d: int, nm: bytes, *, mode: int) -> None:
    """MKDIR: the directory with the mode its client asked (``_as_asked``). Changed only
    if what the name holds now is still an empty directory of the mode we just made
    (another client may have put something else there since)."""
    os.mkdir(nm, mode & _MODE_BITS, dir_fd=d)
    stripped = mode & _MODE_BITS & process_umask()
    if not stripped:
        return
    try:
        fd = os.open(nm, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=d)
    except OSError:
        return  # (gone, or not a directory now: not ours to change)
    try:
        st = os.fstat(fd)
        if st.st_nlink == 2 and stat.S_IMODE(st.st_mode) == mode & _MODE_BITS & ~stripped:
            os.fchmod(fd, mode & _MODE_BITS)
    finally:
        os.close(fd)
# Names (dentries) may be cached by the client for this long, attributes never. Safe for
# revocation: a cached name only saves the LOOKUP of a path walk, and whatever the walk then
# does (stat, open, readdir, create...) is a request we answer after checking the pin. The
# cost is staleness for changes made outside this mount (the host, another export): a name
# removed there still resolves for up to this long, as with libfuse's default entry timeout.
_ENTRY_VALID_S = 1
# Attributes of a passthrough export's nodes may be cached this long (served exports: never).
# A database asks for a file's size (lseek SEEK_END, fstat) on almost every query: two
# GETATTRs per pgbench transaction, measured. Safe for revocation because ``_kill`` drops
# every node's cached attributes (FUSE_NOTIFY_INVAL_INODE) before ``revoke`` returns, so the
# next stat is a request again and is refused. Only GETATTR replies carry it: Linux drops a
# GETATTR reply older than an invalidation (``attr_version``), but not a LOOKUP, CREATE or
# SETATTR reply that made a new inode or raced one, so those stay uncached (timeout 0).
# Writes through the mount (passthrough ones included) update the client's size at once;
# changes made outside it show within this.
_PT_ATTR_VALID_S = 1
_READ_RIGHTS = Rights.READ | Rights.EXECUTE
_USER_XATTR = b"user."
_XATTR_FLAGS = os.XATTR_CREATE | os.XATTR_REPLACE
_W_OK = 2
#: Per export: node descriptors kept open (more are parked), nodes known, files open.
MAX_FDS = 256
MAX_NODES = 32768
MAX_HANDLES = 1024
#: Root names only the kernel's own cutting thread may look up: ``<prefix><nodeid>``.
_CUT_PREFIX = b".exo-cut-"


def _dtype(mode: int) -> int:
    return stat.S_IFMT(mode) >> 12          # DT_* == S_IF* >> 12 on Linux


def _attr_valid(ex: _Export) -> int:
    """Seconds the client may cache the attributes a GETATTR of ``ex`` returns."""
    return _PT_ATTR_VALID_S if ex.passthrough else 0


def _name(raw: bytes | memoryview) -> bytes:
    """One path component from a request, refused if it could name anything else."""
    name = bytes(raw)
    if not name or b"/" in name or name in (b".", b".."):
        raise OSError(errno.EINVAL, "invalid name")
    return name


def _names(body: memoryview, count: int) -> list[bytes]:
    parts = bytes(body).split(b"\0")
    if len(parts) < count + 1:
        raise OSError(errno.EINVAL, "malformed request")
    return parts[:count]


_SXID = stat.S_ISUID | stat.S_ISGID
_CAPS_XATTR = "security.capability"


def _drop_privileges(file: int | str) -> None:
    """Clear the set-user-ID and set-group-ID bits and the file capabilities of
    ``file`` (a regular file's descriptor, or its ``/proc/self/fd`` path), as Linux does
    when an unprivileged process writes, truncates or chowns a file. This server writes
    as root, which keeps them (CAP_FSETID), and under FUSE_HANDLE_KILLPRIV_V2 the client
    leaves it to the server: done when a file is opened for writing — before a byte can
    change, so passthrough writes, which never reach the server, are covered — when it
    is created over, truncated, chowned, or written with FUSE_WRITE_KILL_SUIDGID. Asked
    of the client instead, it was a GETXATTR ``security.capability`` round trip before
    every write (18 of a gcc compile's 33 requests, measured)."""
    st = os.stat(file)
    if st.st_mode & _SXID:
        os.chmod(file, stat.S_IMODE(st.st_mode) & ~_SXID)
    try:
        os.removexattr(file, _CAPS_XATTR)
    except OSError as exc:
        if exc.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise


def _check_guards(dir_fd: int, name: bytes) -> None:
    """EACCES if ``name`` in ``dir_fd`` is something a mount must not show (``guards``):
    it is not renamed away, replaced or removed through one either."""
    if not _guards.GUARDS:
        return
    try:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    try:
        if _guards.refused(fd) is not None:
            raise OSError(errno.EACCES, "not shown through a mount")
    finally:
        os.close(fd)


def _proc(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


@dataclass(eq=False)
class _Node:
    nodeid: int
    export: _Export
    fd: int                     # O_PATH, beneath the export's root (-1 once released)
    key: tuple[int, int]        # (st_dev, st_ino) of the real inode
    kind: int                   # S_IFMT bits
    parent: _Node | None = None  # where it was last looked up: a parked node is reopened
    name: bytes = b""           # ... as this name beneath its parent
    nlookup: int = 0
    users: int = 0              # requests using its fd now (never parked while > 0)
    opened: bool = False        # opened for I/O once: a private mapping may hold its pages
    backing_id: int = 0         # passthrough: registered while pt_opens > 0
    pt_opens: int = 0           # passthrough files of this node the client holds open
    dropped: bool = False       # the client was asked to drop its name (_evict), not since
                                # looked up again: never asked twice (a flood otherwise)


@dataclass(eq=False)
class _Handle:
    fh: int
    export: _Export
    fd: int                     # a real open file or directory (-1 once released)
    node: _Node | None = None   # passthrough: the node whose backing file it uses


@dataclass(eq=False)
class _Export:
    token: bytes
    path: str
    pin: Pin
    writable: bool
    owner: int | None
    root: _Node | None = None
    dead: bool = False
    busy: int = 0               # requests of this export running now
    nodes: dict[tuple[int, int], _Node] = field(default_factory=dict)
    live: dict[int, _Node] = field(default_factory=dict)  # nodes holding an fd, LRU first
    handles: set[int] = field(default_factory=set)
    graveyard: list[int] = field(default_factory=list)  # fds to close once busy == 0
    passthrough: bool = False   # its regular files open with FUSE passthrough
    evicting: bool = False      # names being dropped from the client now (_make_room)


class RevocableDirs(FuseServer):
    """A FUSE mount at ``mount_dir`` whose top-level entries are revocable directory exports.

    ``export(dirfd, pin, writable=..., owner=...)`` returns the path to bind into a sandbox.
    The mount's root lists nothing; an export is reached only by its random name, and only
    the kernel's own processes (bubblewrap, before it pivots) ever see the mount.
    """

    mount_flags = P.MS_NOSUID | P.MS_NODEV   # exec of a program inside an EXECUTE grant works
    mount_source = "exo-dirs"
    init_flags = P.WANTED_INIT_FLAGS | P.INIT_PARALLEL_DIROPS | P.INIT_HANDLE_KILLPRIV_V2

    # Shared mappings of served files (a database's or a compiler's MAP_SHARED): each fault
    # is a READ and each writeback a WRITE, checked against the pin like any request.
    want_direct_io_mmap = True

    def __init__(self, mount_dir: Path, *, threads: int = 2, device: str = "/dev/fuse",
                 on_release: Callable[[Pin], None] | None = None, max_fds: int = MAX_FDS,
                 max_nodes: int = MAX_NODES, max_handles: int = MAX_HANDLES,
                 passthrough: bool = True, min_free: int | None = None) -> None:
        super().__init__(mount_dir, threads=threads, device=device, on_release=on_release)
        self.want_passthrough = passthrough
        self._cutters: set[int] = set()  # kernel threads cutting passthrough files now
        if max_fds < 1 or max_nodes < 2 or max_handles < 1:
            raise ValueError("an export needs room for at least its root and one file")
        self._max_fds, self._max_nodes, self._max_handles = max_fds, max_nodes, max_handles
        self._min_free = min_free  # bytes a write must leave free (None: _keep_free's)
        self._exports: dict[bytes, _Export] = {}
        self._by_pin: dict[int, _Export] = {}
        self._nodes: dict[int, _Node] = {}
        self._handles: dict[int, _Handle] = {}
        self._ids = itertools.count(P.ROOT_ID + 1)
        self._dev_no: int | None = None  # _mount_dev
        self._counts.update({"exported": 0, "revoked": 0, "released": 0, "parked": 0,
                             "reopened": 0, "full": 0, "evicted": 0,
                             "passthrough_opened": 0, "cut": 0,
                             "cut_failed": 0, "cut_unneeded": 0})
        self._handlers = {
            P.LOOKUP: self._lookup, P.GETATTR: self._getattr, P.SETATTR: self._setattr,
            P.READLINK: self._readlink, P.SYMLINK: self._symlink, P.MKNOD: self._mknod,
            P.MKDIR: self._mkdir, P.UNLINK: self._unlink, P.RMDIR: self._rmdir,
            P.RENAME: self._rename, P.RENAME2: self._rename2, P.LINK: self._link,
            P.OPEN: self._open, P.READ: self._read, P.WRITE: self._write,
            P.STATFS: self._statfs, P.RELEASE: self._release, P.FSYNC: self._fsync,
            P.FLUSH: self._ok, P.OPENDIR: self._opendir, P.READDIR: self._readdir,
            P.RELEASEDIR: self._release, P.FSYNCDIR: self._fsync, P.ACCESS: self._access,
            P.CREATE: self._create, P.DESTROY: self._ok,
            P.SETXATTR: self._setxattr, P.GETXATTR: self._getxattr,
            P.LISTXATTR: self._listxattr, P.REMOVEXATTR: self._removexattr,
            P.TMPFILE: self._tmpfile,
        }

    # ------------------------------------------------------------------ kernel-side API
    def _mount_dev(self) -> int:
        """The device number of this server's mount, looked up once: a ``stat`` of the
        mount's root is a GETATTR to this very server (attributes are never cached), a
        round trip through its thread on every export (~0.5 ms of a powerbox command's
        start, measured with py-spy)."""
        if self._dev_no is None:
            self._dev_no = os.stat(self.mount_dir).st_dev
        return self._dev_no

    def export(self, dirfd: int, pin: Pin, *, writable: bool, owner: int | None = None,
               label: str = "", passthrough: bool = False) -> Path:
        """Export the directory or regular file ``dirfd`` (any fd on it; the server owns it).

        Returns the path, on this mount, to bind into the sandbox (a directory or a file,
        as the export is). The caller should have opened ``dirfd`` beneath its own root
        (``openat2(RESOLVE_BENEATH)``): everything below is reached from it only.
        ``writable`` needs WRITE in ``pin.rights``. A file export is the same passthrough
        with a file as its root: every open, read, write and stat of it is checked.
        ``passthrough``: its regular files open with FUSE passthrough, if negotiated
        (``self.passthrough``): native reads and writes, cut off at revocation (EIO) except
        for mappings, splice and sendfile.
        """
        if not self.running:
            raise RuntimeError("the revocable directory server is not running")
        if writable and not pin.rights & Rights.WRITE:
            raise ValueError("a writable export needs a pin with WRITE")
        st = os.fstat(dirfd)
        kind = stat.S_IFMT(st.st_mode)
        if kind not in (stat.S_IFDIR, stat.S_IFREG):
            raise OSError(errno.EINVAL, f"{label or dirfd}: not a directory or regular file")
        if st.st_dev == self._mount_dev():
            raise OSError(errno.ELOOP, f"{label}: cannot export this server's own mount")
        if _guards.GUARDS and (why := _guards.refused(dirfd)) is not None:
            raise _guards.Refused(errno.EACCES, why)
        path_fd = os.open(_proc(dirfd), os.O_PATH | os.O_CLOEXEC)
        os.close(dirfd)
        token = os.urandom(12).hex().encode()
        with self._lock:
            ex = _Export(token, label, pin, writable, owner,
                         passthrough=passthrough and self.passthrough)
            root = _Node(next(self._ids), ex, path_fd, (st.st_dev, st.st_ino), kind)
            ex.root = root
            ex.nodes[root.key] = root
            self._nodes[root.nodeid] = root
            self._exports[token] = ex
            self._by_pin[id(pin)] = ex
            self._counts["exported"] += 1
        return self.mount_dir / token.decode()

    def revoke(self, pins: Iterable[object]) -> None:
        """Cut the exports pinned by ``pins`` now (fits ``CapabilityManager.on_revoke``)."""
        with self._lock:
            hits: list[_Export] = self._pinned(pins, self._by_pin)
        for ex in hits:
            self._cut(self._kill(ex, "revoked"))

    def release_for(self, owner: int) -> int:
        """The process ``owner`` exited: its exports die."""
        with self._lock:
            hits = [ex for ex in self._exports.values() if ex.owner == owner]
        for ex in hits:
            self._cut(self._kill(ex, "released"))
        return len(hits)

    def release(self, path: Path) -> bool:
        """Drop one export by the path ``export`` returned (spawn failed, say)."""
        with self._lock:
            ex = self._exports.get(Path(path).name.encode())
        if ex is None:
            return False
        self._cut(self._kill(ex, "released"))
        return True

    def stats(self) -> dict[str, Any]:
        with self._lock:
            live = len(self._exports)
            nodes, handles = len(self._nodes), len(self._handles)
            fds = sum(len(ex.live) + 1 for ex in self._exports.values())
        return {**self._base_stats(), "exports": live, "nodes": nodes, "handles": handles,
                "node_fds": fds}

    # ------------------------------------------------------------------ bookkeeping
    def _kill(self, ex: _Export, why: str) -> list[int]:
        """Mark ``ex`` dead once; its descriptors close when no request is using them.

        Returns the nodes whose passthrough files are open: the caller (a kernel thread,
        never a worker) cuts them off with ``_cut``.
        """
        with self._lock:
            if ex.dead:
                return []
            ex.dead = True
            to_cut = [n.nodeid for n in ex.nodes.values() if n.pt_opens > 0]
            self._exports.pop(ex.token, None)
            if self._by_pin.get(id(ex.pin)) is ex:
                del self._by_pin[id(ex.pin)]
            known = [(n.nodeid, n.opened) for n in ex.nodes.values()]
            ex.live.clear()
            for n in ex.nodes.values():
                if n.fd >= 0:
                    ex.graveyard.append(n.fd)
                    n.fd = -1
            for fh in ex.handles:
                h = self._handles.get(fh)
                if h is not None and h.fd >= 0:
                    ex.graveyard.append(h.fd)
                    h.fd = -1
            doomed = self._collect(ex)
            self._counts[why] += 1
        for fd in doomed:
            os.close(fd)
        # Every attribute the client cached (attr_valid is 0, but an answer stays valid until
        # the next clock tick) and the pages a private mapping (an exec'd program, a loaded
        # library) still holds: each is refused from the next operation on. Offset -1 drops
        # attributes only; a node opened for I/O loses its pages too.
        for nodeid, opened in known:
            self._notify(P.NOTIFY_INVAL_INODE,
                         P.INVAL_INODE_OUT.pack(nodeid, 0 if opened else -1, 0))
        self._notify(P.NOTIFY_INVAL_ENTRY, P.INVAL_ENTRY_OUT.pack(P.ROOT_ID, len(ex.token), 0)
                     + ex.token + b"\0")
        self._released(ex.pin)
        return to_cut

    def _cut(self, nodeids: list[int]) -> None:
        """Mark the client's inodes of ``nodeids`` bad: their passthrough files' reads and
        writes fail with EIO from now on.

        How: this thread looks up ``<mount>/.exo-cut-<nodeid>``, and the root LOOKUP answers
        (to this thread only) with that nodeid under a new generation; Linux then takes the
        inode it has for the nodeid as stale, marks it bad and makes a new one
        (``fuse_iget``). Only a kernel thread may call this: a worker answers the LOOKUP.
        """
        if not nodeids:
            return
        tid = threading.get_native_id()
        with self._lock:
            self._cutters.add(tid)
        try:
            for nodeid in nodeids:
                if not self._pt_open(nodeid):
                    # Its passthrough files were released since the export died (a
                    # command's RELEASE racing its reclaim): nothing is open to cut.
                    self._counts["cut_unneeded"] += 1
                    continue
                name = _CUT_PREFIX + str(nodeid).encode()
                why: OSError | None = None
                try:
                    ok = stat.S_ISFIFO(os.lstat(os.path.join(
                        os.fsencode(self.mount_dir), name)).st_mode)
                except OSError as exc:
                    ok, why = False, exc
                # The name is ours alone: drop it, so the new inode goes (and is forgotten).
                self._notify(P.NOTIFY_INVAL_ENTRY,
                             P.INVAL_ENTRY_OUT.pack(P.ROOT_ID, len(name), 0) + name + b"\0")
                if ok:
                    self._counts["cut"] += 1
                elif not self._pt_open(nodeid):  # released (or forgotten) meanwhile
                    self._counts["cut_unneeded"] += 1
                else:
                    self._counts["cut_failed"] += 1
                    log.error("revocable dirs: passthrough node %d NOT cut off (%s)",
                              nodeid, why or "not marked")
        finally:
            with self._lock:
                self._cutters.discard(tid)

    def _pt_open(self, nodeid: int) -> bool:
        """Node ``nodeid`` is known and has a passthrough file open (its RELEASE not in)."""
        with self._lock:
            n = self._nodes.get(nodeid)
            return n is not None and n.pt_opens > 0

    def _before_stop(self) -> None:
        """Shutdown: cut off every open passthrough file while the workers still answer (an
        aborted connection does not stop passthrough reads and writes)."""
        with self._lock:
            nodeids = [n.nodeid for n in self._nodes.values() if n.pt_opens > 0]
        self._cut(nodeids)

    def _lookup_cut(self, name: bytes, pid: int) -> Parts:
        """The root LOOKUP of ``_cut``: the node again, under generation 1, as a FIFO."""
        with self._lock:
            if pid not in self._cutters:
                raise OSError(errno.ENOENT, "no such export")
            try:
                n = self._nodes.get(int(name[len(_CUT_PREFIX):]))
            except ValueError:
                n = None
            if n is None:
                raise OSError(errno.ENOENT, "no such node")
            n.nlookup += 1  # the new inode's lookup: its FORGET will come
        attr = _pt.wrong_type(P.ATTR.pack(n.nodeid, *([0] * 8), 0o600, 1, *([0] * 5)))
        # attr_valid 1 s: the lstat that sent this LOOKUP takes these attributes as they are
        # (a GETATTR of the node would be refused: its export is dead).
        return [P.ENTRY_OUT_HEAD.pack(n.nodeid, 1, 0, 1, 0, 0), attr]

    @staticmethod
    def _collect(ex: _Export) -> list[int]:
        """Descriptors of ``ex`` that may be closed now (lock held)."""
        if ex.busy or not ex.graveyard:
            return []
        doomed, ex.graveyard = ex.graveyard, []
        return doomed

    def _release_all(self) -> None:
        with self._lock:
            victims = list(self._exports.values())
        for ex in victims:
            self._kill(ex, "released")  # (passthrough files were cut in _before_stop)
        with self._lock:  # (backing ids went with the connection)
            self._nodes.clear()
            self._handles.clear()

    def _alive(self, ex: _Export, right: Rights) -> None:
        """Raise unless ``ex`` may be used for ``right`` now (lock held)."""
        if ex.dead or ex.pin.revoked:
            self._counts["denied"] += 1
            raise OSError(REVOKED_ERRNO, "revoked")
        if right == Rights.WRITE and not ex.writable:
            self._counts["denied"] += 1
            raise OSError(errno.EACCES, "read-only grant")
        if right == Rights.READ and not ex.pin.rights & _READ_RIGHTS:
            self._counts["denied"] += 1
            raise OSError(errno.EACCES, "no read right")

    def _owner(self, opcode: int, nodeid: int, body: memoryview) -> int | None:
        """The process an export belongs to, for its fair share of the kernel's time (a
        lock-free dict read: the answer only decides who waits)."""
        n = self._nodes.get(nodeid)
        return n.export.owner if n is not None else None

    def _enter(self, nodeid: int, right: Rights = Rights.NONE) -> _Node:
        """Take ``nodeid`` (and its export) for one request; pair with ``_leave(node)``.

        Its descriptor is open (reopened if it was parked) and stays so until ``_leave``.
        """
        with self._lock:
            n = self._nodes.get(nodeid)
            if n is None:
                raise OSError(errno.ENOENT, "unknown node")
            self._alive(n.export, right)
            self._hold(n)
            n.export.busy += 1
            parked = self._trim(n.export)
        for fd in parked:
            os.close(fd)
        return n

    def _enter_handle(self, fh: int, right: Rights = Rights.NONE) -> _Handle:
        with self._lock:
            h = self._handles.get(fh)
            if h is None:
                raise OSError(errno.EBADF, "unknown file handle")
            self._alive(h.export, right)
            if h.fd < 0:
                raise OSError(REVOKED_ERRNO, "released")
            h.export.busy += 1
        return h

    def _leave(self, held: _Node | _Export) -> None:
        """End a request that ``_enter`` (a node) or ``_enter_handle`` (its export) began."""
        with self._lock:
            if isinstance(held, _Node):
                held.users -= 1
                ex = held.export
            else:
                ex = held
            ex.busy -= 1
            doomed = self._collect(ex)
        for fd in doomed:
            os.close(fd)

    # ------------------------------------------------------------------ node descriptors
    def _hold(self, n: _Node) -> int:
        """``n``'s descriptor, reopened if parked, marked in use (lock held)."""
        self._reopen(n)
        n.users += 1
        return n.fd

    def _unhold(self, n: _Node) -> None:
        with self._lock:
            n.users -= 1

    def _reopen(self, n: _Node) -> None:
        """Give a parked node its descriptor back (lock held; the parent chain too).

        By name beneath its parent, with the same rules as a LOOKUP; a name that now leads
        elsewhere (renamed or replaced outside this export) is ESTALE, never followed.
        """
        ex = n.export
        if n.fd >= 0:
            ex.live[n.nodeid] = ex.live.pop(n.nodeid, n)  # most recently used
            return
        if ex.dead or ex.nodes.get(n.key) is not n or n.parent is None:
            raise OSError(REVOKED_ERRNO if ex.dead else errno.ESTALE, "node is gone")
        self._reopen(n.parent)
        try:
            fd = P.openat2(n.parent.fd, n.name, _LOOKUP_FLAGS, 0, _RESOLVE)
        except OSError as exc:
            raise OSError(errno.ESTALE, "renamed or removed outside this export") from exc
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != n.key:
            os.close(fd)
            raise OSError(errno.ESTALE, "replaced outside this export")
        n.fd = fd
        ex.live[n.nodeid] = n
        self._counts["reopened"] += 1

    def _trim(self, ex: _Export) -> list[int]:
        """Park least recently used idle nodes past ``max_fds`` (lock held); fds to close.

        Closing at once is safe: a node with no user has no request holding its fd (every
        use goes through ``_hold``), and it is out of ``live`` before the lock is released.
        """
        excess = len(ex.live) - self._max_fds
        if excess <= 0:
            return []
        parked: list[int] = []
        for nodeid, n in list(ex.live.items()):
            if len(parked) >= excess:
                break
            if n.users or n is ex.root:
                continue
            del ex.live[nodeid]
            parked.append(n.fd)
            n.fd = -1
        self._counts["parked"] += len(parked)
        return parked

    def _entry(self, ex: _Export, fd: int, parent: _Node | None = None,
               name: bytes = b"") -> Parts:
        """Reply to a lookup-like request for the inode ``fd`` (O_PATH; we take it), found
        as ``name`` in ``parent``."""
        try:
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        key = (st.st_dev, st.st_ino)
        extra = -1
        parked: list[int] = []
        with self._lock:
            if ex.dead:
                ex.graveyard.append(fd)
                raise OSError(REVOKED_ERRNO, "revoked")
            n = ex.nodes.get(key)
            if n is not None and n.fd >= 0:
                extra = fd
            elif n is not None:  # parked: this fresh descriptor is its own again
                n.fd = fd
            else:
                self._make_room(ex)
                if len(ex.nodes) >= self._max_nodes:
                    self._counts["full"] += 1
                    extra = fd
                else:
                    n = _Node(next(self._ids), ex, fd, key, stat.S_IFMT(st.st_mode))
                    ex.nodes[key] = n
                    self._nodes[n.nodeid] = n
            if n is not None:
                if parent is not None and n is not ex.root:
                    n.parent, n.name = parent, name  # the freshest way back to it
                n.nlookup += 1
                n.dropped = False
                if n is not ex.root:
                    ex.live[n.nodeid] = ex.live.pop(n.nodeid, n)
                parked = self._trim(ex)
        if extra >= 0:
            os.close(extra)
        if n is None:
            raise OSError(errno.ENFILE, f"this grant already has {self._max_nodes} names "
                          "in use")
        for old in parked:
            os.close(old)
        return [P.ENTRY_OUT_HEAD.pack(n.nodeid, 0, _ENTRY_VALID_S, 0, 0, 0),
                P.attr_from_stat(st, st.st_ino, self.owner())]

    def _make_room(self, ex: _Export) -> None:
        """Keep ``ex`` below ``max_nodes`` names (lock held): past half, ask the client,
        from a thread of its own, to drop the oldest names it looked up
        (FUSE_NOTIFY_INVAL_ENTRY) down to a quarter, so that their FORGETs come. A
        program that makes more files than that in a grant (a checkout, a build) so
        works, as long as it does not hold them all at once; names it holds (open, a
        working directory) stay, and past ``max_nodes`` of them a LOOKUP is ENFILE at
        once (a worker never waits here: the two serve every process). Half, not three
        quarters as before: the names between the start and ``max_nodes`` are what the
        thread's lag has, and at a quarter of them (50 of a 200-name test export) a
        tight ``stat`` loop on a loaded machine outran it to ENFILE (in CI, 2026-12-04)."""
        if len(ex.nodes) >= self._max_nodes // 2 and not ex.evicting and not ex.dead:
            ex.evicting = True
            _threadcache.start(functools.partial(self._evict, ex), "exo-files-evict")

    def _evict(self, ex: _Export) -> None:
        """Ask the client to drop names of ``ex``, oldest first (``_make_room``), until the
        names it has not been asked to drop are under half again: names looked up while
        it asks count too. Never on a worker: the client takes the directory's lock to
        drop a name, which a request it is waiting on may hold."""
        try:
            while True:
                with self._lock:
                    if ex.dead:
                        return
                    kept = [n for n in ex.nodes.values() if not n.dropped]
                    if len(kept) < self._max_nodes // 2:
                        return
                    excess = len(kept) - self._max_nodes // 4
                    chosen = [n for n in kept
                              if n is not ex.root and n.parent is not None and n.name
                              and not n.users and not n.pt_opens][:excess]
                    if not chosen:
                        return  # every name is held: ENFILE past max_nodes
                    for n in chosen:
                        n.dropped = True
                    gone = [(n.parent.nodeid, n.name) for n in chosen if n.parent is not None]
                for parent, name in gone:
                    self._notify(P.NOTIFY_INVAL_ENTRY,
                                 P.INVAL_ENTRY_OUT.pack(parent, len(name), 0) + name + b"\0")
                self._counts["evicted"] += len(gone)
        finally:
            with self._lock:
                ex.evicting = False

    def _new_handle(self, ex: _Export, fd: int) -> int:
        return self._new_file(ex, fd, None)[0]

    def _new_file(self, ex: _Export, fd: int, node: _Node | None) -> tuple[int, int]:
        """A handle for the real open file ``fd`` (ours now); with ``node`` (a regular file
        of a passthrough export), also the backing id to open it with (0: served)."""
        fresh = self._backing_open(fd) if node is not None and not node.backing_id else 0
        with self._lock:
            if ex.dead:
                ex.graveyard.append(fd)
                full, dead = False, True
            else:
                dead = False
                full = len(ex.handles) >= self._max_handles
            backing = 0
            if not full and not dead:
                h = _Handle(next(self._ids), ex, fd)
                self._handles[h.fh] = h
                ex.handles.add(h.fh)
                if node is not None and not node.backing_id and fresh:
                    node.backing_id, fresh = fresh, 0
                if node is not None and node.backing_id:
                    backing, h.node = node.backing_id, node
                    node.pt_opens += 1
                    self._counts["passthrough_opened"] += 1
            elif full:
                self._counts["full"] += 1
        if fresh:  # not needed after all (another open registered one, or refused)
            self._close_backing(fresh)
        if dead:
            raise OSError(REVOKED_ERRNO, "revoked")
        if full:
            os.close(fd)  # ours alone: never shared with another request
            raise OSError(errno.EMFILE, f"{self._max_handles} files of this grant are "
                          "already open")
        return h.fh, backing

    def _close_backing(self, backing_id: int) -> None:
        if self._dev < 0:
            return  # the connection is gone, and its backing ids with it
        try:
            _pt.backing_close(self._dev, backing_id)
        except OSError as exc:
            log.warning("revocable dirs: closing backing id %d: %s", backing_id, exc)

    @staticmethod
    def _open_reply(fh: int, backing: int) -> bytes:
        if backing:
            return P.OPEN_OUT.pack(fh, _pt.FOPEN_PASSTHROUGH | P.FOPEN_NOFLUSH, backing)
        return P.OPEN_OUT.pack(fh, P.FOPEN_DIRECT_IO | P.FOPEN_NOFLUSH, 0)

    def _on_forget(self, opcode: int, nodeid: int, body: memoryview) -> None:
        if opcode == P.FORGET:
            self._drop(nodeid, P.FORGET_IN.unpack_from(body)[0])
            return
        count = P.BATCH_FORGET_IN.unpack_from(body)[0]
        at = P.BATCH_FORGET_IN.size
        for _ in range(count):
            node, nlookup = P.FORGET_ONE.unpack_from(body, at)
            at += P.FORGET_ONE.size
            self._drop(node, nlookup)

    def _drop(self, nodeid: int, nlookup: int) -> None:
        """The client kernel forgot ``nlookup`` lookups of ``nodeid``."""
        with self._lock:
            n = self._nodes.get(nodeid)
            if n is None:
                return
            n.nlookup -= nlookup
            ex = n.export
            if n.nlookup > 0 or (n is ex.root and not ex.dead):
                return  # an export's root stays while the export lives
            del self._nodes[nodeid]
            if ex.nodes.get(n.key) is n:
                del ex.nodes[n.key]
            ex.live.pop(nodeid, None)
            if n.fd >= 0:
                ex.graveyard.append(n.fd)
                n.fd = -1
            doomed = self._collect(ex)
        for fd in doomed:
            os.close(fd)

    # ------------------------------------------------------------------ handlers
    # Each takes (nodeid, request body, caller tid, this thread's out buffer) and returns
    # the reply's parts, or raises OSError(errno) for an error reply.

    def _lookup(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        name = _names(body, 1)[0]
        if nodeid == P.ROOT_ID and name.startswith(_CUT_PREFIX):
            return self._lookup_cut(name, pid)
        if nodeid == P.ROOT_ID:
            with self._lock:
                ex = self._exports.get(name)
                if ex is None or ex.root is None:
                    raise OSError(errno.ENOENT, "no such export")
                root = ex.root
            n = self._enter(root.nodeid)
            try:
                return self._entry(ex, os.open(_proc(n.fd), os.O_PATH | os.O_CLOEXEC))
            finally:
                self._leave(n)
        parent = self._enter(nodeid)
        try:
            fd = P.openat2(parent.fd, _name(name), _LOOKUP_FLAGS, 0, _RESOLVE)
            if _guards.GUARDS and _guards.refused(fd) is not None:
                os.close(fd)
                raise OSError(errno.EACCES, "not shown through a mount")
            return self._entry(parent.export, fd, parent, name)
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.ELOOP):
                raise OSError(errno.EACCES, "outside the grant") from exc
            raise
        finally:
            self._leave(parent)

    def _getattr(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        if nodeid == P.ROOT_ID:
            return [P.ATTR_OUT_HEAD.pack(0, 0, 0), self._root_attr()]
        flags, _dummy, fh = P.GETATTR_IN.unpack_from(body)
        if flags & P.GETATTR_FH and fh in self._handles:
            h = self._enter_handle(fh)
            ex = h.export
            try:
                st = os.fstat(h.fd)
            finally:
                self._leave(ex)
        else:
            n = self._enter(nodeid)
            ex = n.export
            try:
                st = os.fstat(n.fd)
            finally:
                self._leave(n)
        return [P.ATTR_OUT_HEAD.pack(_attr_valid(ex), 0, 0),
                P.attr_from_stat(st, st.st_ino, self.owner())]

    def _setattr(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        (valid, _pad, _fh, size, _lo, atime, mtime, _ct, atime_ns, mtime_ns, _ctns, mode,
         _u4, uid, gid, _u5) = P.SETATTR_IN.unpack_from(body)
        if nodeid == P.ROOT_ID:
            raise OSError(errno.EPERM, "the mount's root is the kernel's")
        valid = self._chown_to_self(valid, uid, gid)
        n = self._enter(nodeid, Rights.WRITE)
        try:
            if n.kind == stat.S_IFLNK and valid & (P.FATTR_MODE | P.FATTR_SIZE):
                raise OSError(errno.EPERM, "not on a symlink")
            if valid & P.FATTR_MODE:
                os.chmod(_proc(n.fd), mode & _MODE_BITS)
            if valid & P.FATTR_SIZE:
                if n.kind != stat.S_IFREG:
                    raise OSError(errno.EINVAL, "not a regular file")
                wfd = os.open(_proc(n.fd), os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY)
                try:
                    _drop_privileges(wfd)
                    os.ftruncate(wfd, size)
                finally:
                    os.close(wfd)
            elif valid & (P.FATTR_KILL_SUIDGID | P.FATTR_UID | P.FATTR_GID) \
                    and n.kind == stat.S_IFREG:
                _drop_privileges(_proc(n.fd))
            if valid & (P.FATTR_ATIME | P.FATTR_MTIME) and n.kind != stat.S_IFLNK:
                st, now = os.fstat(n.fd), time.time_ns()
                a, m = st.st_atime_ns, st.st_mtime_ns
                if valid & P.FATTR_ATIME:
                    a = now if valid & P.FATTR_ATIME_NOW else atime * 10**9 + atime_ns
                if valid & P.FATTR_MTIME:
                    m = now if valid & P.FATTR_MTIME_NOW else mtime * 10**9 + mtime_ns
                os.utime(_proc(n.fd), ns=(a, m))
            st = os.fstat(n.fd)
        finally:
            self._leave(n)
        return [P.ATTR_OUT_HEAD.pack(0, 0, 0), P.attr_from_stat(st, st.st_ino, self.owner())]

    def _readlink(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        n = self._enter(nodeid, Rights.READ)
        try:
            return [os.readlink(b"", dir_fd=n.fd)]
        finally:
            self._leave(n)

    def _make(self, nodeid: int, name: bytes, make: Callable[[int, bytes], None]) -> Parts:
        """Create ``name`` in ``nodeid`` with ``make(dirfd, name)``; reply with its entry."""
        parent = self._enter(nodeid, Rights.WRITE)
        try:
            self._keep_free(parent.fd, 0, names=1)
            make(parent.fd, _name(name))
            fd = P.openat2(parent.fd, name, _LOOKUP_FLAGS, 0, _RESOLVE)
            return self._entry(parent.export, fd, parent, name)
        finally:
            self._leave(parent)

    def _symlink(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        name, target = _names(body, 2)
        return self._make(nodeid, name, lambda d, nm: os.symlink(target, nm, dir_fd=d))

    def _mknod(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        mode, _rdev, _umask, _pad = P.MKNOD_IN.unpack_from(body)
        name = _names(body[P.MKNOD_IN.size:], 1)[0]
        kind = stat.S_IFMT(mode)
        if kind not in (stat.S_IFREG, stat.S_IFIFO, stat.S_IFSOCK):
            raise OSError(errno.EPERM, "no device nodes")

        def make(d: int, nm: bytes) -> None:
            if kind == stat.S_IFREG:
                fd = P.openat2(d, nm, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC,
                               mode & _MODE_BITS, _RESOLVE)
                try:
                    _as_asked(fd, mode)
                finally:
                    os.close(fd)
            else:
                os.mknod(nm, kind | (mode & _MODE_BITS), dir_fd=d)
        return self._make(nodeid, name, make)

    def _mkdir(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        mode, _umask = P.MKDIR_IN.unpack_from(body)
        name = _names(body[P.MKDIR_IN.size:], 1)[0]
        return self._make(nodeid, name, functools.partial(_mkdir_as_asked, mode=mode))

    def _remove(self, nodeid: int, body: memoryview, rm: Callable[..., None]) -> Parts:
        name = _name(_names(body, 1)[0])
        parent = self._enter(nodeid, Rights.WRITE)
        try:
            _check_guards(parent.fd, name)
            rm(name, dir_fd=parent.fd)
        finally:
            self._leave(parent)
        return None

    def _unlink(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        return self._remove(nodeid, body, os.unlink)

    def _rmdir(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        return self._remove(nodeid, body, os.rmdir)

    def _rename(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        newdir = P.RENAME_IN.unpack_from(body)[0]
        return self._do_rename(nodeid, newdir, 0, body[P.RENAME_IN.size:])

    def _rename2(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        newdir, flags, _pad = P.RENAME2_IN.unpack_from(body)
        if flags & ~(P.RENAME_NOREPLACE | P.RENAME_EXCHANGE):
            raise OSError(errno.EINVAL, "unsupported rename flags")
        return self._do_rename(nodeid, newdir, flags, body[P.RENAME2_IN.size:])

    def _do_rename(self, nodeid: int, newdir: int, flags: int, names: memoryview) -> Parts:
        old, new = (_name(x) for x in _names(names, 2))
        src = self._enter(nodeid, Rights.WRITE)
        try:
            with self._lock:
                dst = self._nodes.get(newdir)
                if dst is None or dst.export is not src.export:
                    raise OSError(errno.EXDEV, "rename across grants")
                dst_fd = self._hold(dst)  # open (reopened if parked) until _unhold
            try:
                _check_guards(src.fd, old)
                _check_guards(dst_fd, new)
                P.renameat2(src.fd, old, dst_fd, new, flags)
                self._renamed(src, old)  # nodes of the moved names: their new way back
                self._renamed(dst, new)
            finally:
                self._unhold(dst)
        finally:
            self._leave(src)
        return None

    def _renamed(self, parent: _Node, name: bytes) -> None:
        """``name`` in ``parent`` (held) now names what it names: if that is a node we know,
        this is where it is reopened from when parked."""
        try:
            st = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
        except OSError:
            return
        with self._lock:
            n = parent.export.nodes.get((st.st_dev, st.st_ino))
            if n is not None and n is not parent.export.root:
                n.parent, n.name = parent, name

    def _link(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        oldnode = P.LINK_IN.unpack_from(body)[0]
        name = _name(_names(body[P.LINK_IN.size:], 1)[0])
        parent = self._enter(nodeid, Rights.WRITE)
        try:
            with self._lock:
                old = self._nodes.get(oldnode)
                if old is None or old.export is not parent.export:
                    raise OSError(errno.EXDEV, "link across grants")
                if old.kind == stat.S_IFDIR:
                    raise OSError(errno.EPERM, "no hard links to directories")
                old_fd = self._hold(old)
            try:
                os.link(_proc(old_fd), name, dst_dir_fd=parent.fd, follow_symlinks=True)
            finally:
                self._unhold(old)
            fd = P.openat2(parent.fd, name, _LOOKUP_FLAGS, 0, _RESOLVE)
            return self._entry(parent.export, fd, parent, name)
        finally:
            self._leave(parent)

    def _open(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        flags, _open_flags = P.OPEN_IN.unpack_from(body)
        acc = flags & os.O_ACCMODE
        writes = acc != os.O_RDONLY or flags & os.O_TRUNC
        n = self._enter(nodeid, Rights.WRITE if writes else Rights.READ)
        try:
            if acc != os.O_WRONLY:
                with self._lock:
                    self._alive(n.export, Rights.READ)
            if n.kind != stat.S_IFREG:
                raise OSError(errno.EACCES, "not a regular file")
            fd = os.open(_proc(n.fd), (flags & _OPEN_PASS) | os.O_CLOEXEC | os.O_NOCTTY)
            if writes:
                try:
                    _drop_privileges(fd)
                except BaseException:
                    os.close(fd)
                    raise
            fh, backing = self._new_file(n.export, fd, n if n.export.passthrough else None)
            n.opened = True
        finally:
            self._leave(n)
        return [self._open_reply(fh, backing)]

    def _create(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        flags, mode, _umask, _open_flags = P.CREATE_IN.unpack_from(body)
        name = _name(_names(body[P.CREATE_IN.size:], 1)[0])
        parent = self._enter(nodeid, Rights.WRITE)
        try:
            self._keep_free(parent.fd, 0, names=1)
            return self._created(parent, self._create_at(parent.fd, name, flags, mode), name)
        finally:
            self._leave(parent)

    @staticmethod
    def _create_at(dirfd: int, name: bytes, flags: int, mode: int) -> int:
        """Create ``name`` (O_EXCL), or open the regular file already there. Never an open
        of anything else: a FIFO another export of the directory made there since the
        client's LOOKUP would block this worker until a writer came (and the server has
        two, shared by every process), a device would be a device's open."""
        oflags = ((flags & _OPEN_PASS) | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                  | os.O_CLOEXEC | os.O_NOCTTY)
        for _ in range(3):  # (a name that comes and goes meanwhile: asked again)
            try:
                made = P.openat2(dirfd, name, oflags, mode & _MODE_BITS, _RESOLVE)
            except FileExistsError:
                if flags & os.O_EXCL:
                    raise
            else:
                try:
                    _as_asked(made, mode)
                except BaseException:
                    os.close(made)
                    raise
                return made
            try:
                there = P.openat2(dirfd, name, _LOOKUP_FLAGS, 0, _RESOLVE)
            except FileNotFoundError:
                continue
            try:
                kind = stat.S_IFMT(os.fstat(there).st_mode)
                if kind == stat.S_IFLNK:
                    raise OSError(errno.ELOOP, "a symbolic link")  # as O_NOFOLLOW says
                if kind == stat.S_IFDIR:
                    raise OSError(errno.EISDIR, "a directory")
                if kind != stat.S_IFREG:
                    raise OSError(errno.EACCES, "not a regular file")
                fd = os.open(_proc(there), (flags & _OPEN_PASS) | os.O_CLOEXEC
                             | os.O_NOCTTY)
                if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
                    try:
                        _drop_privileges(fd)
                    except BaseException:
                        os.close(fd)
                        raise
                return fd
            finally:
                os.close(there)
        raise OSError(errno.EAGAIN, "the name kept changing")

    def _created(self, parent: _Node, fd: int, name: bytes | None) -> Parts:
        """The reply to CREATE or TMPFILE for ``fd``, just made in ``parent`` (named
        ``name``, or unnamed): its entry and its open file (owns ``fd``)."""
        try:
            path_fd = os.open(_proc(fd), os.O_PATH | os.O_CLOEXEC)
            entry = self._entry(parent.export, path_fd, None if name is None else parent,
                                name or b"")
            node = None
            if parent.export.passthrough:
                st = os.fstat(fd)
                with self._lock:
                    node = parent.export.nodes.get((st.st_dev, st.st_ino))
        except BaseException:
            os.close(fd)
            raise
        fh, backing = self._new_file(parent.export, fd, node)
        assert entry is not None
        return [*entry, self._open_reply(fh, backing)]

    def _tmpfile(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        """O_TMPFILE: an unnamed file in the directory, opened as CREATE opens (its node
        has no name to be reopened by: parked, it is ESTALE until ``linkat`` names it;
        its open file is unaffected)."""
        flags, mode, _umask, _open_flags = P.CREATE_IN.unpack_from(body)
        parent = self._enter(nodeid, Rights.WRITE)
        try:
            if parent.kind != stat.S_IFDIR:
                raise OSError(errno.ENOTDIR, "not a directory")
            self._keep_free(parent.fd, 0, names=1)
            oflags = ((flags & _OPEN_PASS & ~os.O_TRUNC) | os.O_TMPFILE | os.O_CLOEXEC
                      | os.O_NOCTTY)
            if flags & os.O_EXCL:
                oflags |= os.O_EXCL  # never linkable: as the caller asked
            fd = os.open(".", oflags, mode & _MODE_BITS, dir_fd=parent.fd)
            return self._created(parent, fd, None)
        finally:
            self._leave(parent)

    def _read(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        fh, offset, size, *_ = P.READ_IN.unpack_from(body)
        h = self._enter_handle(fh, Rights.READ)
        try:
            n = os.preadv(h.fd, [out[:min(size, len(out))]], offset)
        finally:
            self._leave(h.export)
        return [out[:n]]

    def _write(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        fh, offset, size, write_flags, *_ = P.WRITE_IN.unpack_from(body)
        data = body[P.WRITE_IN.size:P.WRITE_IN.size + size]
        h = self._enter_handle(fh, Rights.WRITE)
        done = 0
        try:
            if write_flags & P.WRITE_KILL_SUIDGID:  # (set on the host since it was opened)
                _drop_privileges(h.fd)
            self._keep_free(h.fd, len(data))
            while done < len(data):
                k = os.pwrite(h.fd, data[done:], offset + done)
                if k == 0:
                    break
                done += k
        except OSError:
            if done == 0:
                raise
        finally:
            self._leave(h.export)
        return [P.WRITE_OUT.pack(done, 0)]

    def _fsync(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        fh, fsync_flags, _pad = P.FSYNC_IN.unpack_from(body)
        h = self._enter_handle(fh)
        try:
            (os.fdatasync if fsync_flags & 1 else os.fsync)(h.fd)
        finally:
            self._leave(h.export)
        return None

    def _release(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        fh = P.RELEASE_IN.unpack_from(body)[0]
        backing = 0
        with self._lock:
            h = self._handles.pop(fh, None)
            if h is None:
                return None
            h.export.handles.discard(fh)
            if h.fd >= 0:
                h.export.graveyard.append(h.fd)
                h.fd = -1
            if h.node is not None:
                h.node.pt_opens -= 1
                if h.node.pt_opens == 0:  # its last passthrough file: drop the backing
                    backing, h.node.backing_id = h.node.backing_id, 0
            doomed = self._collect(h.export)
        for fd in doomed:
            os.close(fd)
        if backing:
            self._close_backing(backing)
        return None

    def _opendir(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        if nodeid == P.ROOT_ID:
            return [P.OPEN_OUT.pack(0, 0, 0)]  # the root lists nothing
        n = self._enter(nodeid, Rights.READ)
        try:
            fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=n.fd)
            fh = self._new_handle(n.export, fd)
        finally:
            self._leave(n)
        return [P.OPEN_OUT.pack(fh, 0, 0)]

    def _readdir(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        fh, offset, size, *_ = P.READ_IN.unpack_from(body)
        if nodeid == P.ROOT_ID:
            return P.dirent_page(((name, P.ROOT_ID, 4, i + 1) for i, name in
                                  enumerate((b".", b"..")) if i >= offset), size)
        # A page of the real directory at the client's offset, which is the real
        # filesystem's cookie of the last entry it took (0 at the start): nothing is kept
        # between requests, so open directories cost the kernel no memory for their names.
        h = self._enter_handle(fh, Rights.READ)

        def entries() -> Iterator[tuple[bytes, int, int, int]]:
            for name, ino, dtype, next_off in _getdents.read_at(h.fd, offset, size):
                if name == b"..":
                    ino = 1                     # the parent is none of the client's business
                elif dtype == 0 and name != b".":
                    # DT_UNKNOWN (some filesystems): the type from the entry itself, unfollowed
                    with contextlib.suppress(OSError):
                        dtype = _dtype(os.stat(name, dir_fd=h.fd,
                                               follow_symlinks=False).st_mode)
                yield name, ino, dtype, next_off

        try:
            return P.dirent_page(entries(), size)
        finally:
            self._leave(h.export)

    def _statfs(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        if nodeid == P.ROOT_ID:
            return [P.KSTATFS.pack(0, 0, 0, 0, 0, 4096, 255, 4096, 0, *([0] * 6))]
        n = self._enter(nodeid)
        try:
            v = os.statvfs(n.fd)
        finally:
            self._leave(n)
        return [P.KSTATFS.pack(v.f_blocks, v.f_bfree, v.f_bavail, v.f_files, v.f_ffree,
                               v.f_bsize, v.f_namemax, v.f_frsize, 0, *([0] * 6))]

    def _access(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        if nodeid == P.ROOT_ID:
            return None
        mask, _pad = P.ACCESS_IN.unpack_from(body)
        n = self._enter(nodeid, Rights.WRITE if mask & _W_OK else Rights.NONE)
        self._leave(n)
        return None

    # ------------------------------------------------------------------ extended attributes
    # Only ``user.*`` names, on regular files and directories (Linux allows them nowhere
    # else): security.*, trusted.* and system.* (capabilities, ACLs, SELinux labels) are
    # the host's, never a grant's. Another name reads as absent (ENODATA, which also keeps
    # the client's security.capability checks cheap) and cannot be written (EOPNOTSUPP).
    def _xattr_node(self, nodeid: int, right: Rights) -> _Node:
        if nodeid == P.ROOT_ID:
            raise OSError(errno.EOPNOTSUPP, "the root has no attributes")
        n = self._enter(nodeid, right)
        if n.kind not in (stat.S_IFREG, stat.S_IFDIR):
            self._leave(n)
            raise OSError(errno.EPERM if right == Rights.WRITE else errno.ENODATA,
                          "user attributes only on files and directories")
        return n

    def _setxattr(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        size, flags = P.SETXATTR_IN.unpack_from(body)
        rest = bytes(body[P.SETXATTR_IN.size:])
        end = rest.find(b"\0")
        if end <= 0 or len(rest) < end + 1 + size:
            raise OSError(errno.EINVAL, "malformed request")
        name, value = rest[:end], rest[end + 1:end + 1 + size]
        if not name.startswith(_USER_XATTR):
            raise OSError(errno.EOPNOTSUPP, "only user.* attributes")
        n = self._xattr_node(nodeid, Rights.WRITE)
        try:
            self._keep_free(n.fd, len(value))
            os.setxattr(_proc(n.fd), name, value, flags & _XATTR_FLAGS)
        finally:
            self._leave(n)
        return None

    def _getxattr(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        size = P.GETXATTR_IN.unpack_from(body)[0]
        name = _names(body[P.GETXATTR_IN.size:], 1)[0]
        n = self._xattr_node(nodeid, Rights.READ)
        try:
            if not name.startswith(_USER_XATTR):
                raise OSError(errno.ENODATA, "only user.* attributes")
            value = os.getxattr(_proc(n.fd), name)
        finally:
            self._leave(n)
        return self._sized(value, size)

    def _listxattr(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        size = P.GETXATTR_IN.unpack_from(body)[0]
        if nodeid == P.ROOT_ID:
            return self._sized(b"", size)
        n = self._enter(nodeid, Rights.READ)
        try:
            names = (os.listxattr(_proc(n.fd))
                     if n.kind in (stat.S_IFREG, stat.S_IFDIR) else [])
        finally:
            self._leave(n)
        listed = b"".join(os.fsencode(x) + b"\0" for x in names
                          if os.fsencode(x).startswith(_USER_XATTR))
        return self._sized(listed, size)

    def _removexattr(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        name = _names(body, 1)[0]
        if not name.startswith(_USER_XATTR):
            raise OSError(errno.EOPNOTSUPP, "only user.* attributes")
        n = self._xattr_node(nodeid, Rights.WRITE)
        try:
            os.removexattr(_proc(n.fd), name)
        finally:
            self._leave(n)
        return None

    @staticmethod
    def _sized(value: bytes, size: int) -> Parts:
        """A getxattr/listxattr answer: its size for a size query (0), else the bytes."""
        if size == 0:
            return [P.GETXATTR_OUT.pack(len(value), 0)]
        if len(value) > size:
            raise OSError(errno.ERANGE, "larger than the caller's buffer")
        return [value]
