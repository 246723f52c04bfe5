"""One FUSE connection served on daemon threads: mount, INIT, request loop, unmount.

Shared by the two revocable servers (``server.RevocableFiles`` for already-open files,
``dirs.RevocableDirs`` for whole granted directories). A subclass fills ``_handlers``
(opcode -> handler) and says what happens to its objects at ``close``; everything about
the connection's life cycle lives here once.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import select
import stat
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

from exo.kernel import diskreserve

from . import _passthrough as _pt
from . import _proto as P

TYPE_CHECKING = False  # no typing import at run time: boot path (exo/_value.py)
if TYPE_CHECKING:
    from typing import Any

    from exo.kernel.fairshare import FairShare

log = logging.getLogger("exo.kernel.revocable")

#: errno a process sees on a file whose capability was revoked (or whose process exited).
#: EACCES, not EIO: nothing is broken, the authority is gone, and that is what EACCES means.
REVOKED_ERRNO = errno.EACCES

MAX_WRITE = 1 << 20          # bytes per READ/WRITE request (256 pages, FUSE_MAX_PAGES)
#: Bytes of one process's requests a server may hold put aside (fair shares).
MAX_DEFERRED_BYTES = 4 << 20
_INIT_TIMEOUT_MS = 5000

#: A reply body, as buffers for one writev (None: header only).
Parts = list[bytes | memoryview] | None
Handler = Callable[[int, memoryview, int, memoryview], Parts]

#: Servers started and not yet closed: closed at interpreter exit if nobody did, so a kernel
#: that forgot (or failed) to shut down does not leave a dead mount behind.
_live: weakref.WeakSet[FuseServer] = weakref.WeakSet()


def _close_all_at_exit() -> None:
    for srv in list(_live):
        with contextlib.suppress(Exception):
            srv.close()


atexit.register(_close_all_at_exit)


class FuseServer:
    """A FUSE mount at ``mount_dir`` whose requests are answered by ``_handlers``.

    Started once and closed once (``close`` is idempotent); any number may run in one
    process, each on its own mount.
    """

    #: mount(2) flags and source name; FUSE_INIT flags we accept.
    mount_flags = P.MS_NOSUID | P.MS_NODEV | P.MS_NOEXEC
    mount_source = "exo-files"
    init_flags = P.WANTED_INIT_FLAGS
    #: Ask for FUSE passthrough at INIT (``_passthrough``); ``self.passthrough`` says
    #: whether the kernel agreed.
    want_passthrough = False
    #: Ask for FUSE_DIRECT_IO_ALLOW_MMAP: files opened FOPEN_DIRECT_IO may then be mapped
    #: MAP_SHARED (faults and writeback are READ and WRITE requests, checked like any).
    want_direct_io_mmap = False

    def __init__(self, mount_dir: Path, *, threads: int = 2, device: str = "/dev/fuse",
                 on_release: Callable[[Any], None] | None = None) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.mount_dir = Path(mount_dir)
        self._nthreads = threads
        self._device = device
        self._lock = threading.Lock()
        # The uid and gid of the request a worker is answering (_dispatch): what a node's
        # attributes name as its owner (owner()).
        self._caller = threading.local()
        self._dev = -1
        self._wake_r = self._wake_w = -1
        self._threads: list[threading.Thread] = []
        self._mounted = False
        self._made_dir = False
        self._started = False
        self._closed = False
        self._stopping = False
        self._bufsize = MAX_WRITE + 4096
        self._counts: dict[str, int] = {"requests": 0, "errors": 0, "denied": 0,
                                        "no_space": 0}
        self._min_free: int | None = None  # the disk reserve in bytes (None: the default)
        # Requests per opcode (stats()["ops"]): which operations a program costs us.
        self._ops: dict[int, int] = {}
        self._handlers: dict[int, Handler] = {}
        self.passthrough = False  # negotiated at INIT (want_passthrough and offered)
        self.passthrough_unavailable: str | None = None  # why not, when it was wanted
        self._watchdog: Any = None        # subprocess.Popen of the unmount watchdog
        self._watchdog_w = -1
        self._on_release = on_release  # hears each pin this server lets go of, once
        # Fair shares of kernel time (exo.kernel.fairshare), when the kernel sets one:
        # requests of a process in debt wait here, copied, while others are served.
        self.fair_share: FairShare | None = None
        self._deferred: dict[int, deque[bytes]] = {}
        self._deferred_bytes: dict[int, int] = {}
        self._deferred_lock = threading.Lock()

    # ------------------------------------------------------------------ pins
    @staticmethod
    def _pinned(pins: Iterable[object], by_pin: dict[int, Any]) -> list[Any]:
        """The objects of ``by_pin`` (keyed by ``id(pin)``) whose pin is among ``pins``,
        walking whichever side is smaller (a revocation may name 10,000 pins)."""
        pins = pins if isinstance(pins, set | frozenset) else set(pins)
        if len(pins) < len(by_pin):
            return [x for p in pins if (x := by_pin.get(id(p))) is not None and x.pin is p]
        return [x for x in by_pin.values() if x.pin in pins]

    def _released(self, pin: object) -> None:
        """Hand ``pin`` back to whoever pinned it (the open-file table unpins it)."""
        if self._on_release is not None:
            try:
                self._on_release(pin)
            except Exception:
                log.exception("%s: release callback failed", type(self).__name__)

    # ------------------------------------------------------------------ life cycle
    @property
    def running(self) -> bool:
        return self._started and not self._closed

    def start(self) -> None:
        """Mount and answer FUSE_INIT, then serve on ``threads`` daemon threads.

        Raises ``OSError`` with a one-line reason (no /dev/fuse, not permitted, ...); on
        failure nothing is left mounted or open.
        """
        if self._closed:
            raise RuntimeError("this FUSE server was closed; create a new one")
        if self._started:
            return
        try:
            if not self.mount_dir.exists():
                self.mount_dir.mkdir(mode=0o700)
                self._made_dir = True
            self._dev = os.open(self._device, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
            P.mount_fuse(self._dev, str(self.mount_dir), source=self.mount_source,
                         flags=self.mount_flags)
            self._mounted = True
            self._handshake()
        except BaseException:
            self._teardown()
            raise
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._start_watchdog()
        self._started = True
        _live.add(self)
        for i in range(self._nthreads):
            t = threading.Thread(target=self._serve, name=f"exo-files-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def close(self) -> None:
        """Unmount (lazily), stop the threads, abort the connection, release everything.

        Descriptors still held by processes then fail (ENOTCONN). Idempotent.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _live.discard(self)
        if self._threads:
            try:
                self._before_stop()
            except Exception:
                log.exception("%s: closing failed", type(self).__name__)
        self._stopping = True
        if self._wake_w >= 0:
            os.write(self._wake_w, b"x")
        self._teardown()
        for t in self._threads:
            t.join(timeout=10)
        self._threads.clear()
        for fd in (self._dev, self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)  # the last /dev/fuse fd: the kernel aborts the connection
        self._dev = self._wake_r = self._wake_w = -1
        self._stop_watchdog()
        self._release_all()
        self._dump_ops()

    def _dump_ops(self) -> None:
        """Append this server's request counts per opcode to ``$EXO_FUSE_OPS_LOG`` (one
        JSON line), if set: how a benchmark learns what a program asked of the server."""
        dest = os.environ.get("EXO_FUSE_OPS_LOG")
        if not dest:
            return
        import json

        line = json.dumps({"server": type(self).__name__,
                           "ops": self._base_stats()["ops"]})
        try:
            with open(dest, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError as exc:
            log.warning("%s: EXO_FUSE_OPS_LOG: %s", type(self).__name__, exc)

    def _start_watchdog(self) -> None:
        """A tiny process that unmounts us if this process dies without ``close``.

        A SIGKILLed kernel cannot unmount, and a dead FUSE mount answers only ENOTCONN
        until someone does (libfuse's ``auto_unmount`` exists for the same reason). The
        watchdog waits on a pipe whose only write end is ours (close-on-exec): EOF means
        we are gone or closed, and it runs ``umount -l`` (a no-op after a clean close).
        """
        umount = next((p for p in ("/usr/bin/umount", "/bin/umount") if os.path.exists(p)),
                      None)
        if umount is None:
            log.warning("no umount(8): a killed kernel will leave %s mounted",
                        self.mount_dir)
            return
        import subprocess

        r, w = os.pipe2(os.O_CLOEXEC)
        script = 'read _ ; "$1" -l -- "$2" 2>/dev/null && rmdir -- "$2" 2>/dev/null; exit 0'
        try:
            self._watchdog = subprocess.Popen(
                ["/bin/sh", "-c", script, "exo-fuse-watchdog", umount, str(self.mount_dir)],
                stdin=r, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                close_fds=True, start_new_session=True, cwd="/")
        except OSError as exc:
            os.close(w)
            log.warning("FUSE watchdog not started (%s)", exc)
            return
        finally:
            os.close(r)
        self._watchdog_w = w

    def _stop_watchdog(self) -> None:
        if self._watchdog_w >= 0:
            os.close(self._watchdog_w)
            self._watchdog_w = -1
        if self._watchdog is not None:
            try:
                self._watchdog.wait(timeout=5)
            except Exception:
                self._watchdog.kill()
                self._watchdog.wait()
            self._watchdog = None

    def _before_stop(self) -> None:
        """Subclass: ``close`` has begun and the threads still answer requests."""

    def _release_all(self) -> None:
        """Subclass: the server is closed; let go of every object (threads are stopped)."""

    def _teardown(self) -> None:
        if self._mounted:
            try:
                P.umount_detach(str(self.mount_dir))
            except OSError as exc:
                log.warning("%s", exc)
            self._mounted = False
        if self._made_dir:
            try:
                self.mount_dir.rmdir()
            except OSError as exc:
                log.warning("could not remove %s: %s", self.mount_dir, exc)
            self._made_dir = False
        if not self._started and self._dev >= 0:
            os.close(self._dev)
            self._dev = -1

    def _handshake(self) -> None:
        poller = select.poll()
        poller.register(self._dev, select.POLLIN)
        if not poller.poll(_INIT_TIMEOUT_MS):
            raise OSError(errno.ETIMEDOUT, "FUSE: no INIT request from the kernel")
        buf = bytearray(self._bufsize)
        n = os.readv(self._dev, [buf])
        _, opcode, unique, *_ = P.IN_HEADER.unpack_from(buf)
        if opcode != P.INIT or n < P.IN_HEADER.size + P.INIT_IN.size:
            raise OSError(errno.EPROTO, f"FUSE: expected INIT, got opcode {opcode}")
        major, minor, readahead, flags = P.INIT_IN.unpack_from(buf, P.IN_HEADER.size)
        if major != P.KERNEL_MAJOR:
            raise OSError(errno.EPROTO, f"FUSE: kernel protocol {major}.{minor} unsupported")
        accepted = flags & self.init_flags
        flags2 = stack_depth = 0
        offered2 = (P.INIT_IN2.unpack_from(buf, P.IN_HEADER.size + P.INIT_IN.size)[0]
                    if n >= P.IN_HEADER.size + P.INIT_IN.size + P.INIT_IN2.size else 0)
        if (self.want_direct_io_mmap and flags & _pt.INIT_EXT
                and offered2 & P.INIT2_DIRECT_IO_ALLOW_MMAP):
            accepted |= _pt.INIT_EXT
            flags2 |= P.INIT2_DIRECT_IO_ALLOW_MMAP
        if self.want_passthrough:
            if _pt.kernel_offers(flags, offered2):
                accepted |= _pt.INIT_EXT
                flags2 |= _pt.INIT2_PASSTHROUGH
                stack_depth = _pt.MAX_STACK_DEPTH
                self.passthrough = True
            else:
                self.passthrough_unavailable = "this kernel does not offer FUSE_PASSTHROUGH"
        max_write = MAX_WRITE if accepted & P.INIT_MAX_PAGES else 128 * 1024
        body = P.INIT_OUT.pack(P.KERNEL_MAJOR, min(minor, P.OUR_MINOR), readahead, accepted,
                               16, 12, max_write, 1, max_write // 4096, 0, flags2,
                               stack_depth, *([0] * 6))
        os.write(self._dev, P.OUT_HEADER.pack(P.OUT_HEADER.size + len(body), 0, unique) + body)

    def _backing_open(self, real_fd: int) -> int:
        """Register ``real_fd`` as a passthrough backing file; 0 if it cannot be (then the
        file is served). EPERM turns passthrough off for this server: every later file
        would be refused the same way."""
        if not self.passthrough:
            return 0
        try:
            return _pt.backing_open(self._dev, real_fd)
        except OSError as exc:  # ELOOP (stacked too deep), EINVAL (no read_iter), ...
            if exc.errno == errno.EPERM:
                self.passthrough = False
                self.passthrough_unavailable = f"FUSE_DEV_IOC_BACKING_OPEN: {exc.strerror}"
                log.warning("%s: FUSE passthrough refused (%s): files are served",
                            type(self).__name__, exc.strerror)
            else:
                log.info("%s: no passthrough for this file (%s); served",
                         type(self).__name__, exc.strerror)
            return 0

    def _notify(self, code: int, body: bytes) -> None:
        """Send an unsolicited notification (cache invalidation) to the kernel."""
        if self._dev < 0:
            return
        # ENOENT: nothing cached; ENODEV: connection gone. Nothing to drop then.
        with contextlib.suppress(OSError):
            os.write(self._dev, P.OUT_HEADER.pack(P.OUT_HEADER.size + len(body), code, 0)
                     + body)

    # ------------------------------------------------------------------ the request loop
    def _serve(self) -> None:
        buf = bytearray(self._bufsize)
        out = memoryview(bytearray(MAX_WRITE))
        view = memoryview(buf)
        # EPOLLEXCLUSIVE: one request wakes one thread, not all of them (measured: the
        # thundering herd cost a third of the throughput with two threads). The wake-up
        # pipe is level-triggered and shared, so close() reaches every thread.
        ep = select.epoll()
        ep.register(self._dev, select.EPOLLIN | select.EPOLLEXCLUSIVE)
        ep.register(self._wake_r, select.EPOLLIN)
        try:
            while not self._stopping:
                timeout = self._serve_deferred(out) if self._deferred else -1.0
                if not ep.poll(timeout) or self._stopping:
                    continue
                try:
                    n = os.readv(self._dev, [buf])
                except (BlockingIOError, InterruptedError):
                    continue  # another thread took it
                except OSError as exc:
                    if exc.errno == errno.ENOENT:
                        continue  # interrupted before we read it
                    if exc.errno == errno.ENODEV:  # connection aborted / unmounted
                        break
                    # Anything else (ENOMEM, ...) must not end the thread: every file of
                    # every process depends on it. Say so and retry after a pause.
                    log.error("revocable files: reading /dev/fuse: %s (retrying)", exc)
                    time.sleep(0.05)
                    continue
                try:
                    self._admit(view[:n], out)
                except Exception:  # a reply that could not even be formed: keep serving
                    log.exception("revocable files: request failed")
        finally:
            ep.close()

    # ------------------------------------------------------------------ fair shares
    def _owner(self, opcode: int, nodeid: int, body: memoryview) -> int | None:
        """Subclass: the Exo pid a request works for (None: nobody's in particular)."""
        return None

    def _admit(self, req: memoryview, out: memoryview) -> None:
        """Serve ``req`` now, or put it aside while its process is over its share."""
        share = self.fair_share
        if share is None:
            self._dispatch(req, out)
            return
        _, opcode, _, nodeid, *_ = P.IN_HEADER.unpack_from(req)
        owner = None if opcode in P.NO_REPLY else self._owner(
            opcode, nodeid, req[P.IN_HEADER.size:])
        if owner is None:
            self._dispatch(req, out)
            return
        share.seen(owner)
        if share.debt(owner) > 0:
            with self._deferred_lock:
                queue = self._deferred.setdefault(owner, deque())
                held = self._deferred_bytes.get(owner, 0)
                # What is put aside is a copy (a WRITE carries up to 1 MiB): bounded per
                # process, past which its requests are served at once (and still charged).
                if held + len(req) <= MAX_DEFERRED_BYTES:
                    queue.append(bytes(req))
                    self._deferred_bytes[owner] = held + len(req)
                    share.deferred(owner)
                    return
                if not queue:
                    del self._deferred[owner]
        self._dispatch_charged(owner, req, out)

    def _dispatch_charged(self, owner: int, req: memoryview, out: memoryview) -> None:
        assert self.fair_share is not None
        t0 = time.thread_time()
        try:
            self._dispatch(req, out)
        finally:
            self.fair_share.charge(owner, time.thread_time() - t0)

    def _serve_deferred(self, out: memoryview) -> float:
        """Serve one put-aside request whose process has paid its debt; return how long
        (seconds, epoll's unit) the caller may wait for new requests before looking again
        (-1: forever)."""
        share = self.fair_share
        if share is None:
            return -1
        with self._deferred_lock:
            owners = list(self._deferred)
        wait: float | None = None
        for owner in owners:
            debt = share.debt(owner)
            if debt > 0:
                wait = debt if wait is None else min(wait, debt)
                continue
            with self._deferred_lock:
                queue = self._deferred.get(owner)
                if not queue:
                    continue
                req = queue.popleft()
                left = self._deferred_bytes.pop(owner, 0) - len(req)
                if queue:
                    self._deferred_bytes[owner] = left
                else:
                    del self._deferred[owner]
            try:
                self._dispatch_charged(owner, memoryview(req), out)
            except Exception:
                log.exception("revocable files: request failed")
            return 0.0  # look again at once (new requests first, then the rest)
        return -1.0 if wait is None else max(0.001, wait)

    def owner(self) -> tuple[int, int] | None:
        """Who a node's attributes say owns it: the process asking (its uid and gid).

        A file of a grant belongs, on the host, to the kernel (which made it) or to
        whichever of the user's process uids wrote it; to the process holding the grant
        it is its own, whatever that is: the capability is the authority, and the server
        decides every change itself (no ``default_permissions``). Shown as the host's
        owner, the Linux kernel refused the holder what it checks on an owner before any
        request comes here: ``sed -i`` could not set its new file's ACL (EPERM, and
        a warning on every edit) where the server answers that it keeps none."""
        ids: tuple[int, int] | None = getattr(self._caller, "ids", None)
        return ids

    def _chown_to_self(self, valid: int, uid: int, gid: int) -> int:
        """``valid`` without its owner bits when they name the asking process (``owner``):
        a chown to oneself changes nothing, as on any file system (``cp -p``, ``tar x``
        and ``rsync`` do it); EPERM for any other owner: ownership is the kernel's."""
        if not valid & (P.FATTR_UID | P.FATTR_GID):
            return valid
        ids = self.owner()
        if ids is None or (valid & P.FATTR_UID and uid != ids[0]) or \
                (valid & P.FATTR_GID and gid != ids[1]):
            raise OSError(errno.EPERM, "ownership is the kernel's")
        return valid & ~(P.FATTR_UID | P.FATTR_GID)

    def _keep_free(self, fd: int, size: int, names: int = 0) -> None:
        """ENOSPC for a write that would leave the file system with less than the
        reserve (``exo.kernel.diskreserve``; ``_min_free``: the reserve in bytes, for
        tests): a grant's writes cannot fill the host's disk, nor take the room the
        kernel's own logs and the other users need. (A passthrough file's writes do not
        come here: ``[posix_x] passthrough`` trades this for native speed;
        docs/revocable-files.md.)"""
        try:
            diskreserve.check(fd, size, names=names, min_free=self._min_free)
        except OSError:
            self._counts["no_space"] += 1
            raise

    def _on_forget(self, opcode: int, nodeid: int, body: memoryview) -> None:
        """Subclass: FORGET / BATCH_FORGET (no reply). Default: nothing kept per lookup."""

    def _dispatch(self, req: memoryview, out: memoryview) -> None:
        _, opcode, unique, nodeid, uid, gid, pid, _, _ = P.IN_HEADER.unpack_from(req)
        body = req[P.IN_HEADER.size:]
        self._caller.ids = (uid, gid)
        self._counts["requests"] += 1
        self._ops[opcode] = self._ops.get(opcode, 0) + 1
        if opcode in P.NO_REPLY:
            if opcode != P.INTERRUPT:  # we never block, so nothing to interrupt
                try:
                    self._on_forget(opcode, nodeid, body)
                except Exception:
                    log.exception("revocable files: forget failed")
            return
        handler = self._handlers.get(opcode)
        err, parts = 0, None
        try:
            if handler is None:
                err = self._unhandled(opcode)
            else:
                parts = handler(nodeid, body, pid, out)
        except OSError as exc:
            err = exc.errno or errno.EIO
        except Exception:
            log.exception("revocable files: opcode %d failed", opcode)
            self._counts["errors"] += 1
            err = errno.EIO
        self._reply(unique, err, parts or [])

    def _unhandled(self, opcode: int) -> int:
        return errno.ENOSYS

    def _reply(self, unique: int, err: int, parts: list[bytes | memoryview]) -> None:
        size = P.OUT_HEADER.size + sum(len(p) for p in parts)
        try:
            os.writev(self._dev, [P.OUT_HEADER.pack(size, -err, unique), *parts])
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENODEV):  # interrupted / aborted
                log.error("revocable files: reply: %s", exc)

    # ------------------------------------------------------------------ common handlers
    def _ok(self, nodeid: int, body: memoryview, pid: int, out: memoryview) -> Parts:
        return None

    def _root_attr(self) -> bytes:
        return P.ATTR.pack(P.ROOT_ID, 0, 0, 0, 0, 0, 0, 0, 0, stat.S_IFDIR | 0o500, 2,
                           os.getuid(), os.getgid(), 0, 4096, 0)

    def _base_stats(self) -> dict[str, Any]:
        return {"mounted": self._mounted, "mount_dir": str(self.mount_dir),
                "threads": len(self._threads), "passthrough": self.passthrough,
                **self._counts,
                "ops": {P.OPCODE_NAMES.get(op, str(op)): n
                        for op, n in sorted(self._ops.items())}}
