"""Revocable open files: a FUSE file server inside the kernel process.

Linux cannot take back a file descriptor another process holds. So the kernel never hands a
process the real file: it opens the real file itself, registers it here, opens the matching
file on our private FUSE mount and passes *that* descriptor. Every read, write, fstat,
ftruncate and fsync on it is then a request this server answers, after testing the
capability pin the file was opened through: once the pin is revoked (or its process has
exited) the next operation fails with ``EACCES``, in whatever process holds the descriptor.
Files are opened with ``FOPEN_DIRECT_IO`` so the page cache never answers on our behalf.

A file may instead be opened in *passthrough* mode (``open(..., passthrough=True)``, when the
kernel negotiated FUSE passthrough): its reads and writes go straight from the client
kernel to the real file, at native speed, and never reach us. Revoking it marks its FUSE
inode bad (``_passthrough``), which makes read, write, fstat, ftruncate and fsync fail with
EIO; memory mappings, splice and sendfile are not cut (docs/revocable-files.md).

Each registered file can be opened on the mount exactly once, by the kernel thread that
registered it, with the access mode it was registered with: re-opening it through
``/proc/PID/fd/N`` (which would otherwise let a read-only holder ask for write access) is
refused. Directories get READDIR only; lookups beneath them are refused, so a directory
descriptor grants listing and nothing else.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from exo.kernel.caps import Rights
from exo.sandbox._mountinfo import mounts

from . import _getdents
from . import _passthrough as _pt
from . import _proto as P
from ._base import REVOKED_ERRNO, FuseServer, Parts, log

__all__ = ["REVOKED_ERRNO", "Pin", "RevocableFiles", "cleanup_stale"]

_DT_DIR = 4
#: Attribute timeout of passthrough files (seconds). Checked files have 0 (each fstat is a
#: request, refused after revocation); a passthrough file's cached attributes are safe to
#: keep, because revocation marks its inode bad and Linux tests that before any cache. The
#: file's own writes through passthrough refresh them; changes made elsewhere show after
#: at most this long.
_PT_ATTR_VALID_S = 1

#: Mount-point name prefixes of our servers under the kernel's run directory.
_MOUNT_PREFIXES = ("files-", "dirs-")


def cleanup_stale(run_dir: Path) -> list[str]:
    """Unmount dead ``files-*``/``dirs-*`` FUSE mounts left under ``run_dir`` by a killed kernel.

    A SIGKILLed kernel cannot unmount; its connection died with it, so its mount answers
    only ENOTCONN. Live mounts (another kernel's) answer and are left alone. Returns the
    mount points removed. ``OpenFileTable`` calls it before starting its servers.
    """
    base = os.path.realpath(run_dir)
    found: list[str] = []
    for _, point, fstype, _, _ in mounts():
        if (fstype == "fuse" and os.path.dirname(point) == base
                and os.path.basename(point).startswith(_MOUNT_PREFIXES)):
            try:
                os.stat(point)
            except OSError as exc:
                if exc.errno in (errno.ENOTCONN, errno.ECONNABORTED):
                    found.append(point)
    for point in found:
        with contextlib.suppress(OSError):
            P.umount_detach(point)
        with contextlib.suppress(OSError):
            os.rmdir(point)
    return found


class Pin(Protocol):
    """What the server needs from a capability pin (``exo.kernel.caps.Capability``)."""

    @property
    def revoked(self) -> bool: ...
    @property
    def rights(self) -> Rights: ...


@dataclass(eq=False)
class _Entry:
    ino: int
    real_fd: int
    pin: Pin
    accmode: int
    is_dir: bool
    owner: int | None
    opener_tid: int
    opened: bool = False
    dead: bool = False          # revoked, released, owner gone or server closing
    busy: int = 0               # requests currently using real_fd
    passthrough: bool = False   # opened with FOPEN_PASSTHROUGH: reads/writes skip us
    backing_id: int = 0         # passthrough: registered with the connection until opened
    path_fd: int = -1           # passthrough: our O_PATH fd on the file's FUSE inode
    cut: bool = False           # passthrough: GETATTR answers a wrong type (inode bad)


class RevocableFiles(FuseServer):
    """A FUSE mount at ``mount_dir`` serving already-open real files, revocably.

    One instance is started once and closed once (``close`` is idempotent); a kernel that
    boots again makes a new one. Any number may run in one process, each on its own mount.
    """

    def __init__(self, mount_dir: Path, *, threads: int = 2, device: str = "/dev/fuse",
                 on_release: Callable[[Pin], None] | None = None,
                 passthrough: bool = True, min_free: int | None = None) -> None:
        super().__init__(mount_dir, threads=threads, device=device, on_release=on_release)
        self.want_passthrough = passthrough
        self._min_free = min_free
        self._entries: dict[int, _Entry] = {}
        self._by_name: dict[bytes, _Entry] = {}
        self._by_pin: dict[int, _Entry] = {}
        self._inos = itertools.count(P.ROOT_ID + 1)
        self._counts.update({"opened": 0, "revoked": 0, "released": 0,
                             "passthrough_opened": 0, "cut": 0, "cut_failed": 0})
        self._handlers = {
            P.LOOKUP: self._lookup, P.GETATTR: self._getattr, P.SETATTR: self._setattr,
            P.OPEN: self._open, P.OPENDIR: self._open, P.READ: self._read,
            P.WRITE: self._write, P.FLUSH: self._ok, P.FSYNC: self._fsync,
            P.FSYNCDIR: self._ok, P.RELEASE: self._release, P.RELEASEDIR: self._release,
            P.READDIR: self._readdir, P.STATFS: self._statfs, P.DESTROY: self._ok,
        }

    def _release_all(self) -> None:
        with self._lock:
            victims = list(self._entries.values())
        for e in victims:
            self._kill(e, "released")
            if e.path_fd >= 0:  # not cut: the threads were gone (or never started)
                os.close(e.path_fd)
                e.path_fd = -1

    def _unhandled(self, opcode: int) -> int:
        return errno.EACCES if opcode in P.NAMESPACE_OPS else errno.ENOSYS

    # ------------------------------------------------------------------ kernel-side API
    def open(self, real_fd: int, pin: Pin, flags: int, *, owner: int | None = None,
             passthrough: bool = False) -> int:
        """Register ``real_fd`` and return a new fd on the mount for it (owned by the caller).

        On success the server owns ``real_fd`` (closed when the file is released, revoked
        or the server closes); on an exception the caller still owns it. ``flags`` are the
        real file's open flags (its access mode and O_APPEND matter); ``owner`` is the pid
        ``release_for`` will match. ``passthrough``: see ``open_mode``.
        """
        return self.open_mode(real_fd, pin, flags, owner=owner, passthrough=passthrough)[0]

    def open_mode(self, real_fd: int, pin: Pin, flags: int, *, owner: int | None = None,
                  passthrough: bool = False) -> tuple[int, bool]:
        """``open``, also saying whether the file got passthrough: ``(fd, passthrough)``.

        Passthrough is used when asked, negotiated with the kernel and the file is a regular
        file the kernel accepts as a backing file; otherwise the file is served (checked
        mode), which is never less revocable.
        """
        if not self.running:
            raise RuntimeError("the revocable file server is not running")
        is_dir = stat.S_ISDIR(os.fstat(real_fd).st_mode)
        accmode = flags & os.O_ACCMODE
        if is_dir and accmode != os.O_RDONLY:
            raise IsADirectoryError(errno.EISDIR, "a directory can only be opened for reading")
        backing_id = self._backing_open(real_fd) if passthrough and not is_dir else 0
        with self._lock:
            e = _Entry(next(self._inos), real_fd, pin, accmode, is_dir, owner,
                       threading.get_native_id(), backing_id=backing_id)
            self._entries[e.ino] = e
            self._by_name[str(e.ino).encode()] = e
            self._by_pin[id(pin)] = e
        oflags = accmode | (flags & os.O_APPEND) | os.O_CLOEXEC | os.O_NOCTTY
        if is_dir:
            oflags |= os.O_DIRECTORY
        try:
            fd = os.open(self.mount_dir / str(e.ino), oflags)
        except BaseException:
            self._drop_backing(e)
            with self._lock:
                e.real_fd = -1  # still the caller's
                e.dead = True
                self._forget(e)
            raise
        self._counts["opened"] += 1
        if not backing_id:
            return fd, False
        # The open file holds its own reference to the backing file now.
        self._drop_backing(e)
        try:
            # Our handle on the FUSE inode for cutting it off later: O_PATH sends no OPEN.
            path_fd = os.open(f"/proc/self/fd/{fd}", os.O_PATH | os.O_CLOEXEC)
        except BaseException:
            os.close(fd)
            raise
        with self._lock:
            e.passthrough, e.path_fd = True, path_fd
            late = e.dead or e.pin.revoked  # revoked while we were opening
        self._counts["passthrough_opened"] += 1
        if late:
            self._cut_off([e])
        return fd, True

    def _drop_backing(self, e: _Entry) -> None:
        if e.backing_id:
            backing_id, e.backing_id = e.backing_id, 0
            if self._dev < 0:
                return  # the connection is gone, and its backing ids with it
            try:
                _pt.backing_close(self._dev, backing_id)
            except OSError as exc:
                log.warning("revocable files: closing backing id %d: %s", backing_id, exc)

    def _cut_off(self, entries: Iterable[_Entry]) -> None:
        """Mark the FUSE inodes of passthrough ``entries`` bad: their reads and writes fail.

        Called by a kernel thread, never by a worker (it waits for a GETATTR a worker
        answers). Each entry is cut once; its O_PATH descriptor is closed.
        """
        for e in entries:
            with self._lock:
                path_fd, e.path_fd = e.path_fd, -1
                if path_fd >= 0:
                    e.cut = True
            if path_fd < 0:
                continue
            try:
                err = _pt.force_getattr(path_fd)
            finally:
                os.close(path_fd)
            if err == errno.EIO:
                self._counts["cut"] += 1
            elif e.ino not in self._entries:
                pass  # its last descriptor was closed meanwhile (RELEASE): nothing to cut
            else:  # the inode was not marked bad: say so loudly
                self._counts["cut_failed"] += 1
                log.error("revocable files: passthrough file %d NOT cut off (GETATTR "
                          "ended with %s)", e.ino, errno.errorcode.get(err, err))

    def _before_stop(self) -> None:
        """Shutdown: cut off every passthrough file while the workers still answer (an
        aborted connection does not stop passthrough reads and writes)."""
        with self._lock:
            victims = [e for e in self._entries.values() if e.path_fd >= 0]
        self._cut_off(victims)

    def revoke(self, pins: Iterable[object]) -> None:
        """Close the files opened through ``pins`` now; their next operation fails.

        (Operations already test ``pin.revoked``; this frees the real files at once and
        drops pages a private mmap may still hold.) Fits ``CapabilityManager.on_revoke``.
        """
        with self._lock:
            hits: list[_Entry] = self._pinned(pins, self._by_pin)
        for e in hits:
            self._kill(e, "revoked")
            self._invalidate(e)
        self._cut_off(hits)

    def _owner(self, opcode: int, nodeid: int, body: memoryview) -> int | None:
        """The process a file was opened for (its fair share of the kernel's time)."""
        e = self._entries.get(nodeid)
        if e is None or e.cut:  # a cut's GETATTR: the kernel's own, never put aside
            return None
        return e.owner

    def release_for(self, owner: int) -> int:
        """The process ``owner`` exited: its files die (whoever else holds a copy)."""
        with self._lock:
            hits = [e for e in self._entries.values() if e.owner == owner]
        for e in hits:
            self._kill(e, "released")
        self._cut_off(hits)
        return len(hits)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            live = sum(1 for e in self._entries.values() if not e.dead)
        return {**self._base_stats(), "open": live}

    # ------------------------------------------------------------------ entry bookkeeping
    def _forget(self, e: _Entry) -> None:
        """Drop ``e`` from the tables (lock held)."""
        self._entries.pop(e.ino, None)
        self._by_name.pop(str(e.ino).encode(), None)
        if self._by_pin.get(id(e.pin)) is e:
            del self._by_pin[id(e.pin)]

    def _kill(self, e: _Entry, why: str) -> None:
        """Mark ``e`` dead once; close its real fd when no request is using it."""
        with self._lock:
            if e.dead:
                return
            e.dead = True
            self._by_name.pop(str(e.ino).encode(), None)
            fd, e.real_fd = (e.real_fd, -1) if e.busy == 0 else (-1, e.real_fd)
            self._counts[why] += 1
        if fd >= 0:
            os.close(fd)
        self._released(e.pin)

    def _invalidate(self, e: _Entry) -> None:
        """Ask the kernel to drop cached pages of ``e`` (a MAP_PRIVATE mapping's, say)."""
        if e.is_dir or not e.opened or e.passthrough or e.backing_id:
            return  # (a passthrough file's pages are the real file's, not ours)
        self._notify(P.NOTIFY_INVAL_INODE, P.INVAL_INODE_OUT.pack(e.ino, 0, 0))

    def _use(self, ino: int, right: Rights) -> _Entry:
        """Take ``ino`` for one request, or raise the errno the caller should see."""
        e = self._entries.get(ino)
        if e is None:
            raise OSError(errno.EBADF, "no such open file")
        with self._lock:
            if (e.dead or e.pin.revoked or e.real_fd < 0
                    or (right and not e.pin.rights & right)):
                self._counts["denied"] += 1
                raise OSError(REVOKED_ERRNO, "revoked")
            e.busy += 1
        return e

    def _done(self, e: _Entry) -> None:
        with self._lock:
            e.busy -= 1
            fd = -1
            if e.dead and e.busy == 0 and e.real_fd >= 0:
                fd, e.real_fd = e.real_fd, -1
        if fd >= 0:
            os.close(fd)

    # ------------------------------------------------------------------ handlers
    # Each takes (nodeid, request body, caller tid, this thread's out buffer) and returns
    # the reply's parts, or raises OSError(errno) for an error reply.

    def _attr_of(self, ino: int) -> bytes:
        e = self._use(ino, Rights.NONE)
        try:
            return P.attr_from_stat(os.fstat(e.real_fd), ino, self.owner())
        finally:
            self._done(e)

    def _lookup(self, nodeid: int, body: memoryview, pid: int,
                out: memoryview) -> Parts:
        if nodeid != P.ROOT_ID:
            raise OSError(errno.EACCES, "no lookups below an opened directory")
        name = bytes(body).split(b"\0", 1)[0]
        e = self._by_name.get(name)
        if e is None or e.opened or e.opener_tid != pid:
            self._counts["denied"] += 1
            raise OSError(errno.ENOENT, "not registered for this caller")
        return [P.ENTRY_OUT_HEAD.pack(e.ino, 0, 0, 0, 0, 0), self._attr_of(e.ino)]

    def _getattr(self, nodeid: int, body: memoryview, pid: int,
                 out: memoryview) -> Parts:
        e = self._entries.get(nodeid)
        if e is not None and e.cut:
            # The inode changed type, says this answer: the client marks it bad.
            attr = _pt.wrong_type(P.ATTR.pack(nodeid, *([0] * 8), 0o600, 1, *([0] * 5)))
            return [P.ATTR_OUT_HEAD.pack(0, 0, 0), attr]
        attr = self._root_attr() if nodeid == P.ROOT_ID else self._attr_of(nodeid)
        valid = _PT_ATTR_VALID_S if e is not None and e.passthrough else 0
        return [P.ATTR_OUT_HEAD.pack(valid, 0, 0), attr]

    def _open(self, nodeid: int, body: memoryview, pid: int,
              out: memoryview) -> Parts:
        flags, _open_flags = P.OPEN_IN.unpack_from(body)
        with self._lock:
            e = self._entries.get(nodeid)
            if (e is None or e.dead or e.opened or e.opener_tid != pid or e.pin.revoked
                    or flags & os.O_ACCMODE != e.accmode):
                self._counts["denied"] += 1
                raise OSError(errno.EACCES, "open refused")
            e.opened = True
        if e.backing_id:
            return [P.OPEN_OUT.pack(e.ino, _pt.FOPEN_PASSTHROUGH | P.FOPEN_NOFLUSH,
                                    e.backing_id)]
        flags = 0 if e.is_dir else P.FOPEN_DIRECT_IO | P.FOPEN_NOFLUSH
        return [P.OPEN_OUT.pack(e.ino, flags, 0)]

    def _read(self, nodeid: int, body: memoryview, pid: int,
              out: memoryview) -> Parts:
        fh, offset, size, *_ = P.READ_IN.unpack_from(body)
        e = self._use(fh, Rights.READ)
        try:
            n = os.preadv(e.real_fd, [out[:min(size, len(out))]], offset)
        finally:
            self._done(e)
        return [out[:n]]

    def _write(self, nodeid: int, body: memoryview, pid: int,
               out: memoryview) -> Parts:
        fh, offset, size, *_ = P.WRITE_IN.unpack_from(body)
        data = body[P.WRITE_IN.size:P.WRITE_IN.size + size]
        e = self._use(fh, Rights.WRITE)
        done = 0
        try:
            self._keep_free(e.real_fd, len(data))
            while done < len(data):
                n = os.pwrite(e.real_fd, data[done:], offset + done)
                if n == 0:
                    break
                done += n
        except OSError:
            if done == 0:
                raise
        finally:
            self._done(e)
        return [P.WRITE_OUT.pack(done, 0)]

    def _setattr(self, nodeid: int, body: memoryview, pid: int,
                 out: memoryview) -> Parts:
        (valid, _pad, _fh, size, _lo, atime, mtime, _ct, atime_ns, mtime_ns, _ctns, _mode,
         _u4, uid, gid, _u5) = P.SETATTR_IN.unpack_from(body)
        valid = self._chown_to_self(valid, uid, gid)
        if nodeid == P.ROOT_ID or valid & P.FATTR_MODE:
            raise OSError(errno.EPERM, "ownership and mode are the kernel's")
        e = self._use(nodeid, Rights.WRITE)
        try:
            if valid & P.FATTR_SIZE:
                os.ftruncate(e.real_fd, size)
            if valid & (P.FATTR_ATIME | P.FATTR_MTIME):
                st, now = os.fstat(e.real_fd), time.time_ns()
                a, m = st.st_atime_ns, st.st_mtime_ns
                if valid & P.FATTR_ATIME:
                    a = now if valid & P.FATTR_ATIME_NOW else atime * 10**9 + atime_ns
                if valid & P.FATTR_MTIME:
                    m = now if valid & P.FATTR_MTIME_NOW else mtime * 10**9 + mtime_ns
                os.utime(e.real_fd, ns=(a, m))
            attr = P.attr_from_stat(os.fstat(e.real_fd), nodeid, self.owner())
        finally:
            self._done(e)
        return [P.ATTR_OUT_HEAD.pack(_PT_ATTR_VALID_S if e.passthrough else 0, 0, 0), attr]

    def _fsync(self, nodeid: int, body: memoryview, pid: int,
               out: memoryview) -> Parts:
        fh, fsync_flags, _pad = P.FSYNC_IN.unpack_from(body)
        e = self._use(fh, Rights.NONE)
        try:
            (os.fdatasync if fsync_flags & 1 else os.fsync)(e.real_fd)
        finally:
            self._done(e)
        return None

    def _release(self, nodeid: int, body: memoryview, pid: int,
                 out: memoryview) -> Parts:
        fh = P.RELEASE_IN.unpack_from(body)[0]
        e = self._entries.get(fh)
        if e is not None:
            self._kill(e, "released")
            with self._lock:
                self._forget(e)
                path_fd, e.path_fd = e.path_fd, -1
            if path_fd >= 0:  # closed by its last holder: nothing left to cut off
                os.close(path_fd)
        return None

    def _readdir(self, nodeid: int, body: memoryview, pid: int,
                 out: memoryview) -> Parts:
        fh, offset, size, *_ = P.READ_IN.unpack_from(body)
        # A page of the real directory at the client's offset, which is the real
        # filesystem's cookie of the last entry it took (0 at the start): nothing is kept
        # between requests, so open directories cost the kernel no memory for their names.
        e = self._use(fh, Rights.READ)

        def entries() -> Iterator[tuple[bytes, int, int, int]]:
            for name, ino, dtype, next_off in _getdents.read_at(e.real_fd, offset, size):
                if name in (b".", b".."):       # our inodes, not the real ones
                    ino, dtype = (e.ino if name == b"." else P.ROOT_ID), _DT_DIR
                yield name, ino, dtype, next_off

        try:
            return P.dirent_page(entries(), size)
        finally:
            self._done(e)

    def _statfs(self, nodeid: int, body: memoryview, pid: int,
                out: memoryview) -> Parts:
        return [P.KSTATFS.pack(0, 0, 0, 0, 0, 4096, 255, 4096, 0, *([0] * 6))]
