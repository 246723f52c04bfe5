"""The kernel side of encrypted areas: apps open their files through the ``open`` syscall
and read or write plaintext; the host disk only ever holds ciphertext.

The boot row "Encrypted storage" (NORMAL, before any app can run) starts
``EncryptedStorage``, which adds ``open_hook`` to ``exo.kernel.syscalls.storage``'s
``OPEN_HOOKS``; every ``open`` of a file inside an area (``areas`` registry) is served
here, after the kernel has checked the capability. Why this shape (docs/security.md,
"Encrypted areas"):

* **Reading** (READ): the kernel authenticates and decrypts the *whole* file into a
  sealed memfd (``F_SEAL_WRITE | GROW | SHRINK``) before the app sees a byte, so a flipped
  byte is an error of the ``open`` (EIO, "tampered"), never garbage half-way through a
  read. The memfd goes to the app through the revocable file server like any opened file
  (seekable, ``fstat`` gives the plaintext size, revocation cuts it off). Plaintext lives
  only in kernel memory, bounded: a file at most ``EXO_AREA_MAX_FILE_MB`` (256 MiB), all
  files open at once at most ``EXO_AREA_MEMORY_MB`` (512 MiB), and no process with its
  descendants more than half of that (one app cannot refuse every other); past that,
  EFBIG/ENOMEM.
* **Writing** (WRITE, with truncate, append, or create of a new file): the app gets the
  write end of a pipe; a kernel thread seals what arrives, chunk by chunk, into an
  unnamed ``O_TMPFILE`` beside the file, and when the app closes its end (all copies:
  EOF) fsyncs it and renames it over the file: the old version or the new one, never a
  mix. A revoked capability stops the thread: the app's next write fails (EPIPE) and the
  file keeps its previous content. Memory per writer: three 1 MiB buffers; at most 8
  writers per process, its descendants' included, and 64 in the kernel (EMFILE past
  that). Append first decrypts and authenticates the existing file (into a memfd) at
  ``open``.
* READ and WRITE together (random-access rewriting of a ciphertext file) is refused with
  a clear error rather than emulated.

Every byte read from disk is authenticated; sizes are checked before memory is spent.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import stat
import threading
import weakref
from pathlib import Path

from exo.kernel.bootlog import SkipStep
from exo.kernel.subsystem import Subsystem
from exo.security import areas
from exo.security import sealedfile as sf

TYPE_CHECKING = False  # no typing import at run time: the boot table loads this module
if TYPE_CHECKING:
    from typing import Any

    from exo.kernel.caps import ResourceName, Rights
    from exo.kernel.core import KernelCore
    from exo.kernel.process import ExoProcess
    from exo.kernel.syscalls.host import SyscallHost

MEMORY_ENV = "EXO_AREA_MEMORY_MB"
DEFAULT_MEMORY_MB = 512
MAX_WRITERS_PER_PROCESS = 8
MAX_WRITERS = 64

#: One server per Exo tree served by a kernel of this process (tests boot many kernels).
_SERVERS: dict[str, AreaServer] = {}
_SERVERS_LOCK = threading.Lock()


class _Stop(Exception):
    """A writer must stop without committing (revoked, too large)."""


class _Registry:
    """The registry, re-read only when its file changed (one ``stat`` per open)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._key: tuple[int, int, int] | None = None
        self._areas: dict[str, Any] = {}

    def areas(self) -> dict[str, Any]:
        try:
            st = os.stat(areas.registry_path(self.root))
        except FileNotFoundError:
            self._key, self._areas = None, {}
            return self._areas
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key != self._key:
            self._areas = dict(areas.load(self.root)["areas"])
            self._key = key
        return self._areas


class AreaServer:
    """Encrypted areas of one Exo tree, as one kernel serves them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.registry = _Registry(root)
        self._lock = threading.Lock()
        self._master: bytes | None = None
        self._unsubscribe: Any = None
        self._writers: dict[int, _Writer] = {}  # id -> writer
        self.memory_used = 0
        self._held: dict[int, int] = {}  # pid -> decrypted bytes charged to it
        self.served = {"read": 0, "written": 0, "tampered": 0, "aborted": 0}

    # ----------------------------------------------------------------- keys
    def master(self) -> bytes:
        with self._lock:
            if self._master is None:
                from exo.security import tpm

                try:
                    self._master, _ = areas.master_key(self.root)
                except (areas.AreaError, tpm.TpmError) as exc:
                    raise PermissionError(errno.EACCES, "encrypted area locked: the storage "
                                          f"master key is unavailable ({exc})") from None
            return self._master

    def _watch_revocations(self, host: SyscallHost) -> None:
        with self._lock:
            if self._unsubscribe is None:
                self._unsubscribe = host.caps.on_revoke(self._revoked)

    def _revoked(self, caps: frozenset[Any]) -> None:
        with self._lock:
            hit = [w for w in self._writers.values() if w.pin in caps]
        for writer in hit:
            writer.stop()

    # ----------------------------------------------------------------- memory budget
    @property
    def memory_limit(self) -> int:
        """Bytes of decrypted files the kernel holds at once (read at each open, so the
        operator can change it without a reboot)."""
        return _env_mb(MEMORY_ENV, DEFAULT_MEMORY_MB)

    def _reserve(self, size: int, res: ResourceName, lineage: tuple[int, ...]) -> _Charge:
        """Charge ``size`` decrypted bytes to the kernel's budget and to each process of
        ``lineage`` (the opener and its ancestors: children do not multiply a share)."""
        limit = self.memory_limit
        share = limit // 2
        with self._lock:
            if self.memory_used + size > limit:
                raise OSError(errno.ENOMEM, f"{res}: encrypted files open at once would "
                              f"exceed the kernel's {limit >> 20} MiB for decrypted data "
                              f"({MEMORY_ENV})")
            if any(self._held.get(pid, 0) + size > share for pid in lineage):
                raise OSError(errno.ENOMEM, f"{res}: this process and its children would "
                              f"hold more than {share >> 20} MiB of decrypted data, half "
                              f"the kernel's ({MEMORY_ENV}); close some files")
            self.memory_used += size
            for pid in lineage:
                self._held[pid] = self._held.get(pid, 0) + size
        return _Charge(size, lineage)

    def _unreserve(self, charge: _Charge) -> None:
        with self._lock:
            self.memory_used -= charge.size
            for pid in charge.lineage:
                left = self._held.get(pid, 0) - charge.size
                if left > 0:
                    self._held[pid] = left
                else:
                    self._held.pop(pid, None)

    # ----------------------------------------------------------------- opening
    def open(self, host: SyscallHost, proc: ExoProcess, res: ResourceName, want: Rights,
             args: dict[str, Any], handle: int, entry: dict[str, Any], mount_dir: Path
             ) -> tuple[Any, list[int]] | None:
        from exo.kernel.caps import Rights

        self._watch_revocations(host)
        self._settle(res.path)
        if want == Rights.READ:
            return self._open_read(host, proc, res, want, handle, entry, mount_dir)
        if want == Rights.WRITE:
            return self._open_write(host, proc, res, want, args, handle, entry)
        raise OSError(errno.EOPNOTSUPP, f"{res}: a file of an encrypted area is opened for "
                      "reading or for writing, not both")

    def _settle(self, path: str, timeout: float = 30.0) -> None:
        """Wait for writers of ``path`` whose app has closed the stream: an app that
        writes, closes and opens again must find what it wrote (close-to-open)."""
        with self._lock:
            mine = [w for w in self._writers.values() if w.res.path == path]
        for writer in mine:
            if writer.closed_by_app():
                writer.join(timeout)

    def _open_read(self, host: SyscallHost, proc: ExoProcess, res: ResourceName,
                   want: Rights, handle: int, entry: dict[str, Any], mount_dir: Path
                   ) -> tuple[Any, list[int]] | None:
        from exo.kernel.syscalls.storage import open_beneath

        fd = open_beneath(host, res, os.O_RDONLY, proc=proc)
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                return None  # a directory: the kernel opens it as usual
            memfd, charge = self._decrypt(fd, res, entry, _lineage(host, proc))
        finally:
            os.close(fd)
        try:
            pin = host.caps.pin(proc.pid, handle, want)
        except BaseException:
            os.close(memfd)
            self._unreserve(charge)
            raise
        # the budget comes back when the file server lets go of the pin (closed, revoked,
        # process gone): nothing else holds it
        weakref.finalize(pin, self._unreserve, charge)
        try:
            out_fd, revocable = host.files.open_revocable(
                proc, pin, memfd, os.O_RDONLY, mount_dir=mount_dir, log=host.log,
                passthrough=False)
        except BaseException:
            os.close(memfd)
            host.caps.unpin(pin)
            raise
        self.served["read"] += 1
        return {"resource": str(res), "rights": int(want), "revocable": revocable,
                "encrypted": True}, [out_fd]

    def _decrypt(self, fd: int, res: ResourceName, entry: dict[str, Any],
                 charged: tuple[int, ...]) -> tuple[int, _Charge]:
        """A sealed memfd holding the authenticated plaintext of ``fd``, and its size's
        charge to the budget and to the processes ``charged`` (the caller gives it back)."""
        sealed_size = os.fstat(fd).st_size
        size = sf.plain_size(sealed_size)
        limit = areas.max_file_bytes()
        if size > limit:
            raise OSError(errno.EFBIG, f"{res}: {size >> 20} MiB, larger than an encrypted "
                          f"area file may be ({limit >> 20} MiB, {areas.MAX_FILE_ENV})")
        master = self.master()
        charge = self._reserve(size, res, charged)
        memfd = -1
        try:
            head = os.pread(fd, sf.HEADER, 0)
            memfd = os.memfd_create("exo-area", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            try:
                key = areas.key_for(master, entry, head)
                os.lseek(fd, sf.HEADER, os.SEEK_SET)
                sf.open_stream(key, sf.fd_reader(fd), sf.fd_writer(memfd), sealed_size, head)
            except sf.TamperedError as exc:
                self.served["tampered"] += 1
                raise OSError(errno.EIO, f"{res}: tampered or corrupt ciphertext ({exc}): "
                              "not served") from None
            os.lseek(memfd, 0, os.SEEK_SET)
            fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW
                        | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
        except BaseException:
            if memfd >= 0:
                os.close(memfd)
            self._unreserve(charge)
            raise
        return memfd, charge

    def _open_write(self, host: SyscallHost, proc: ExoProcess, res: ResourceName,
                    want: Rights, args: dict[str, Any], handle: int, entry: dict[str, Any]
                    ) -> tuple[Any, list[int]]:
        from exo.kernel import beneath
        from exo.kernel.syscalls.storage import open_beneath
        from exo.kernel.tree import instance_user
        from exo.sandbox.namespace import instance_path

        parent, _, name = instance_path(res.path, instance_user(proc.account)).rpartition("/")
        chain = _lineage(host, proc)  # a writer counts against each: children do not multiply
        with self._lock:
            mine = max(sum(1 for w in self._writers.values() if pid in w.lineage)
                       for pid in chain)
            if mine >= MAX_WRITERS_PER_PROCESS or len(self._writers) >= MAX_WRITERS:
                raise OSError(errno.EMFILE, f"{res}: too many encrypted files being written "
                              f"at once (at most {MAX_WRITERS_PER_PROCESS} per process, "
                              "its children included)")
        try:
            lock = areas.lock_area(self.root, entry["id"], exclusive=False)
        except BlockingIOError as exc:
            raise OSError(errno.EBUSY, f"{res}: {exc.strerror}") from None
        fds: list[int] = [lock]
        prefix, prefix_charge = -1, _Charge(0, ())
        try:
            try:
                existing = open_beneath(host, res, os.O_RDONLY, proc=proc)
            except FileNotFoundError:
                existing = -1
                if not args["create"]:
                    raise
            if existing >= 0:
                fds.append(existing)
                if stat.S_ISDIR(os.fstat(existing).st_mode):
                    raise IsADirectoryError(errno.EISDIR, f"{res}: is a directory")
                if not args["truncate"] and not args["append"]:
                    raise OSError(errno.EOPNOTSUPP, f"{res}: a file of an encrypted area is "
                                  "written whole (truncate) or appended to, not overwritten "
                                  "in place")
            dir_fd = beneath.open_file(host.files.tree_fd, parent, os.O_RDONLY
                                       | os.O_DIRECTORY, 0, beneath.STRICT)
            fds.append(dir_fd)
            if existing >= 0 and args["append"] and not args["truncate"]:
                prefix, prefix_charge = self._decrypt(existing, res, entry, chain)
                fds.append(prefix)
            master = self.master()
            generation = int(entry["generation"])
            key = areas.area_key(master, entry, generation)
            rfd, wfd = os.pipe2(os.O_CLOEXEC)
            fds += [rfd, wfd]
            pin = host.caps.pin(proc.pid, handle, want)
        except BaseException:
            for fd in fds:
                os.close(fd)
            if prefix >= 0:
                self._unreserve(prefix_charge)
            raise
        if existing >= 0:
            os.close(existing)
        with contextlib.suppress(OSError):
            fcntl.fcntl(wfd, fcntl.F_SETPIPE_SZ, 1 << 20)
        writer = _Writer(self, host, proc.pid, pin, res, rfd, dir_fd, name, key, generation,
                         lock, prefix, prefix_charge, chain)
        with self._lock:
            self._writers[id(writer)] = writer
        writer.start()
        return {"resource": str(res), "rights": int(want), "revocable": True,
                "encrypted": True, "stream": True}, [wfd]

    def _finished(self, writer: _Writer, committed: bool) -> None:
        with self._lock:
            self._writers.pop(id(writer), None)
            self.served["written" if committed else "aborted"] += 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"areas": len(self.registry.areas()), "writers": len(self._writers),
                    "memory_used": self.memory_used, "memory_limit": self.memory_limit,
                    **self.served}

    def close(self) -> None:
        with self._lock:
            writers = list(self._writers.values())
            unsubscribe, self._unsubscribe = self._unsubscribe, None
            self._master = None
        for writer in writers:
            writer.stop()
        for writer in writers:
            writer.join(5)
        if unsubscribe is not None:
            unsubscribe()


class _Charge:
    """Decrypted bytes held, and the processes they count against."""

    __slots__ = ("lineage", "size")

    def __init__(self, size: int, lineage: tuple[int, ...]) -> None:
        self.size, self.lineage = size, lineage


class _Writer(threading.Thread):
    """Seals one app's plaintext stream into the area, committed at end of stream."""

    def __init__(self, server: AreaServer, host: SyscallHost, pid: int, pin: Any,
                 res: ResourceName, rfd: int, dir_fd: int, name: str, key: bytes,
                 generation: int, lock: int, prefix: int, prefix_charge: _Charge,
                 lineage: tuple[int, ...]) -> None:
        super().__init__(name=f"exo-area-writer-{pid}", daemon=True)
        self.server, self.host, self.pid, self.pin, self.res = server, host, pid, pin, res
        self.rfd, self.dir_fd, self.fname = rfd, dir_fd, name
        self.key, self.generation, self.lock = key, generation, lock
        self.prefix, self.prefix_charge = prefix, prefix_charge
        self.lineage = lineage
        self.limit = areas.max_file_bytes()
        self.received = 0
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._fd_lock = threading.Lock()  # rfd and _wake_w are closed under it

    def stop(self) -> None:
        with self._fd_lock, contextlib.suppress(OSError):
            if self._wake_w >= 0:
                os.write(self._wake_w, b"x")

    def closed_by_app(self) -> bool:
        """Whether every copy of the stream's write end is closed (the pipe hangs up)."""
        with self._fd_lock:
            if self.rfd < 0:
                return True
            poller = select.poll()
            poller.register(self.rfd, select.POLLIN)
            return any(ev & select.POLLHUP for _fd, ev in poller.poll(0))

    def _read_into(self, view: memoryview) -> int:
        if self.prefix >= 0:
            n = os.readv(self.prefix, [view])
            if n:
                return n
            os.close(self.prefix)
            self.prefix = -1
            self.server._unreserve(self.prefix_charge)
        poller = select.poll()
        poller.register(self.rfd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            ready = dict(poller.poll())
            if self._wake_r in ready or self.pin.revoked:
                raise _Stop("the capability was revoked")
            if self.rfd in ready:  # never more than one byte past the limit
                n = os.readv(self.rfd, [view[:self.limit - self.received + 1]])
                self.received += n
                if self.received > self.limit:
                    raise _Stop(f"larger than an encrypted area file may be "
                                f"({self.limit >> 20} MiB)")
                return n

    def run(self) -> None:
        committed = False
        tmp = -1
        try:
            tmp = _tmpfile(self.dir_fd)
            sf.seal_stream(self.key, sf.new_header(self.generation), self._read_into,
                           sf.fd_writer(tmp, write_behind=True))
            if self.pin.revoked:
                raise _Stop("the capability was revoked")
            os.fsync(tmp)
            _commit(tmp, self.dir_fd, self.fname)
            committed = True
        except (_Stop, OSError) as exc:
            self.host.log(f"areas: {self.res} not written ({exc}); the file keeps its "
                          "previous content")
        finally:
            with self._fd_lock:
                for fd in (tmp, self.rfd, self.dir_fd, self.prefix, self._wake_r,
                           self._wake_w):
                    if fd >= 0:
                        with contextlib.suppress(OSError):
                            os.close(fd)
                self.rfd = self._wake_w = -1
            if self.prefix >= 0:
                self.server._unreserve(self.prefix_charge)
                self.prefix = -1
            os.close(self.lock)  # after the commit: a rotation waits for it
            self.host.caps.unpin(self.pin)
            self.server._finished(self, committed)


def _lineage(host: SyscallHost, proc: ExoProcess) -> tuple[int, ...]:
    from exo.kernel.syscalls.ipc import lineage

    return lineage(host, proc)


def _tmpfile(dir_fd: int) -> int:
    """An unnamed file in the area's directory (nothing to clean if we die), or a named
    temporary where O_TMPFILE is not supported (removed by the next rotation)."""
    try:
        return os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise
    name = areas.TMP_PREFIX + os.urandom(6).hex()
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600,
                 dir_fd=dir_fd)
    os.unlink(name, dir_fd=dir_fd)  # still open: linked again at commit
    return fd


def _commit(tmp: int, dir_fd: int, name: str) -> None:
    """Give the sealed file its name atomically: link it under a temporary name, then
    rename that over the file, then fsync the directory."""
    tmpname = areas.TMP_PREFIX + os.urandom(6).hex()
    os.link(f"/proc/self/fd/{tmp}", tmpname, dst_dir_fd=dir_fd, follow_symlinks=True)
    try:
        os.rename(tmpname, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmpname, dir_fd=dir_fd)
        raise
    os.fsync(dir_fd)


def _env_mb(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default))) << 20
    except ValueError:
        return default << 20


# ----------------------------------------------------------------------- the hook


def install(root: Path | None = None) -> AreaServer | None:
    """Add ``open_hook`` to the ``open`` syscall (once per process) and, with ``root``,
    serve that tree's areas (once per tree)."""
    from exo.kernel.syscalls import storage

    if open_hook not in storage.OPEN_HOOKS:
        storage.OPEN_HOOKS.append(open_hook)
    if root is None:
        return None
    with _SERVERS_LOCK:
        server = _SERVERS.get(str(root))
        if server is None:
            server = _SERVERS[str(root)] = AreaServer(root)
    return server


#: Trees whose areas no directory export may show (their kernel runs in this process).
_GUARDED: dict[str, tuple[str, _Registry]] = {}


def guard_mounts(root: Path) -> None:
    """No directory grant of ``root`` shows an area: its files on disk are ciphertext, and
    a mount would present them as the files. ``exo.kernel.revocable.dirs`` then refuses an
    export rooted in an area (the spawn fails, saying why) and, inside a wider export, the
    lookup, rename and removal of an area's directory (EACCES); the area's files open
    decrypted through the ``open`` syscall as before."""
    from exo.kernel import exportguards as guards

    with _SERVERS_LOCK:
        if str(root) not in _GUARDED:
            _GUARDED[str(root)] = (os.path.realpath(root), _Registry(Path(root)))
    if mount_guard not in guards.GUARDS:
        guards.GUARDS.append(mount_guard)


def mount_guard(fd: int, covering: bool = False) -> str | None:
    """Why ``fd`` (an O_PATH descriptor the directory server is about to show) must not
    be shown: it is an encrypted area or lies in one (``covering``: or holds one, for a
    bind mount). Fails closed on an unreadable registry."""
    path: str | None = None
    for real, registry in list(_GUARDED.values()):
        try:
            table = registry.areas()
        except areas.AreaError as exc:
            if path is None:
                path = os.readlink(f"/proc/self/fd/{fd}")
            if path == real or path.startswith(real + "/"):
                return f"{exc}: nothing of this tree is mounted"
            continue
        if not table:
            continue  # one stat: the registry's
        if path is None:
            path = os.readlink(f"/proc/self/fd/{fd}")
        for area in table:
            host = os.path.join(real, area)
            if path == host or path.startswith(host + "/"):
                rel = path[len(real) + 1:]
                where = (f"storage://{area} is an encrypted area" if path == host else
                         f"storage://{rel} lies in the encrypted area storage://{area}")
                return (f"{where}: a mount would show its files as ciphertext, so it is "
                        "not mounted; they open decrypted through the open syscall "
                        "(exo_std.fs.File.open)")
            if covering and host.startswith(path.rstrip("/") + "/"):
                rel = path[len(real) + 1:]
                return (f"storage://{rel} holds the encrypted area storage://{area} and "
                        "FUSE is unavailable: a bind mount would show its files as "
                        "ciphertext, so it is not mounted")
    return None


def uninstall(root: Path) -> None:
    """The kernel of ``root`` stops: its writers stop, its key is forgotten."""
    with _SERVERS_LOCK:
        _GUARDED.pop(str(root), None)
        server = _SERVERS.pop(str(root), None)
    if server is not None:
        server.close()


def open_hook(host: SyscallHost, proc: ExoProcess, res: ResourceName, want: Rights,
              args: dict[str, Any], handle: int, mount_dir: Path
              ) -> tuple[Any, list[int]] | None:
    """Serve ``res`` if it lies in an encrypted area (None: the kernel opens it). Called
    by the ``open`` syscall after it checked the capability."""
    server = _SERVERS.get(str(host.root))
    if server is None:
        if not areas.registry_path(host.root).exists():
            return None  # this tree has no encrypted area
        server = install(host.root)  # an area created while the kernel runs
        assert server is not None
    try:
        table = server.registry.areas()
    except areas.AreaError as exc:  # fail closed: no file is served in clear by mistake
        raise PermissionError(errno.EACCES, f"{res}: {exc}") from None
    hit = areas.find(table, res.path)
    if hit is None or hit[0] == res.path:
        return None  # outside every area, or the area's directory itself
    return server.open(host, proc, res, want, args, handle, hit[1], mount_dir)


class EncryptedStorage(Subsystem):
    """Boot step "Encrypted storage": serves the files of encrypted areas."""

    __slots__ = ("core", "server")

    def __init__(self, core: KernelCore) -> None:
        self.core = core
        self.server: AreaServer | None = None

    def start(self) -> str:
        root = Path(self.core.root)
        guard_mounts(root)  # before any app runs: areas made later are covered too
        if not areas.registry_path(root).exists():
            # nothing to serve, and the syscall path stays off the boot path; the Security
            # step (DEFERRED) installs the hook anyway, for areas created while we run
            return "none yet: exo area create makes one"
        try:
            reg = areas.load(root)
        except areas.AreaError as exc:
            install()  # the hook then refuses every file of the tree: fail closed
            raise SkipStep(f"{exc}: every storage open is refused") from None
        self.server = install(root)
        n = len(reg["areas"])
        return f"{n} encrypted area{'s' if n != 1 else ''}, master key: {reg.get('master')}"

    def stop(self) -> None:
        uninstall(Path(self.core.root))
        self.server = None

    def proc_files(self) -> dict[str, Any]:
        return {"areas": self._proc}

    def _proc(self) -> str:
        server = _SERVERS.get(str(self.core.root))
        if server is None:
            return "no encrypted area served\n"
        return "".join(f"{k}:\t{v}\n" for k, v in server.stats().items())
