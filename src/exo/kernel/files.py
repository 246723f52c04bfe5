"""Files the kernel opened for processes, kept so revocation and exit can find them.

The table owns the revocable-file server (``exo.kernel.revocable``), started on the first
open: a process receives a descriptor on the server's FUSE mount, never the real file, so
revoking the capability it was opened through cuts it off from the next operation on. If
FUSE cannot be used on this host the real descriptor is passed instead and the file is
marked non-revocable (the ``open`` reply says so and the kernel log says why, once).

It also owns the directory server (``RevocableDirs``), started on the first spawn that
holds a ``storage://`` directory or file: the process manager asks ``export_dir`` for a
revocable export of each granted path and binds that into the sandbox instead of the real
one. Without FUSE, ``export_dir`` returns None, the caller binds the real path and the
kernel log says once that directory and file grants are NOT revocable.

And it holds the kernel's pinned descriptor of the Exo tree (``tree_fd``), opened once at
boot: every path the kernel opens for a process, a grant's included, is resolved from it
with ``exo.kernel.beneath`` (no symlink, no mount crossing, never above it).
"""

from __future__ import annotations

import errno
import functools
import os
import threading
from collections.abc import Callable
from pathlib import Path

TYPE_CHECKING = False  # no typing import at run time: boot path (exo/_value.py)
if TYPE_CHECKING:
    from typing import Any, Protocol, TypeVar

    from exo.kernel.fairshare import FairShare
    from exo.kernel.revocable import RevocableDirs, RevocableFiles

    _S = TypeVar("_S", RevocableFiles, RevocableDirs)

    class ExoProcess(Protocol):
        """What the table needs of a process (``exo.kernel.process.ExoProcess``): its pid
        and its exit hooks. Structural, so the process manager's module, which uses this
        table, is not imported here."""

        @property
        def pid(self) -> int: ...
        @property
        def on_exit(self) -> list[Callable[[Any], None]]: ...


class _Pins:
    """Pins (kernel-held derived capabilities) by the process they are kept for.

    Not locked itself: the table calls it under its own lock.
    """

    __slots__ = ("_by_pid", "_pid_of")

    def __init__(self) -> None:
        self._by_pid: dict[int, dict[int, Any]] = {}  # pid -> {id(pin): pin}
        self._pid_of: dict[int, int] = {}  # id(pin) -> pid

    def add(self, pid: int, pin: Any) -> bool:
        """Keep ``pin`` for ``pid``; True if it is the first pin ever kept for ``pid``."""
        first = pid not in self._by_pid
        self._by_pid.setdefault(pid, {})[id(pin)] = pin
        self._pid_of[id(pin)] = pid
        return first

    def forget(self, pin: Any) -> bool:
        """Drop ``pin``; False if it was not kept (already forgotten)."""
        pid = self._pid_of.pop(id(pin), None)
        if pid is None:
            return False
        self._by_pid.get(pid, {}).pop(id(pin), None)
        return True

    def count(self, pid: int) -> int:
        return len(self._by_pid.get(pid, ()))

    def pop_pid(self, pid: int) -> list[Any]:
        pins = list(self._by_pid.pop(pid, {}).values())
        for pin in pins:
            self._pid_of.pop(id(pin), None)
        return pins

    def pop_all(self) -> list[Any]:
        pins = [pin for kept in self._by_pid.values() for pin in kept.values()]
        self._by_pid.clear()
        self._pid_of.clear()
        return pins

    def __len__(self) -> int:
        return len(self._pid_of)


class _Slot:
    """One of the table's FUSE servers: started on first use, or why it could not be."""

    __slots__ = ("fallback", "name", "server", "unavailable", "unsubscribe")

    def __init__(self, name: str, fallback: str) -> None:
        self.name = name  # for messages: "file", "directory"
        self.fallback = fallback  # what happens instead when FUSE cannot be used
        self.server: Any = None  # RevocableFiles or RevocableDirs once started
        self.unavailable: str | None = None  # why it could not be started
        self.unsubscribe: Callable[[], None] | None = None  # its on_revoke listener


#: Files one process may hold open through the kernel's ``open`` syscall at once: each is a
#: real descriptor in the kernel process, so without a bound one app could exhaust them all.
MAX_OPEN_PER_PROCESS = 1024

#: Environment variable that makes passthrough the default for opened regular files.
PASSTHROUGH_ENV = "EXO_FILES_PASSTHROUGH"


class OpenFileTable:
    """Pins (kernel-held derived capabilities) of files opened through the kernel."""

    def __init__(self, caps: Any, *, fuse_device: str = "/dev/fuse",
                 root: Path | None = None,
                 max_open_per_process: int = MAX_OPEN_PER_PROCESS,
                 fair_share: FairShare | None = None,
                 passthrough: bool | None = None) -> None:
        self._caps = caps
        # Whether ``open_revocable`` asks for FUSE passthrough when its caller does not say:
        # off unless the host's operator says so (EXO_FILES_PASSTHROUGH=1), because a
        # passthrough file's mappings, splice and sendfile outlive revocation.
        if passthrough is None:
            passthrough = os.environ.get(PASSTHROUGH_ENV, "") == "1"
        self.passthrough_default = passthrough
        self._passthrough_logged = False
        self._fair_share = fair_share  # the file servers meter their work per process
        self._fuse_device = fuse_device
        self._max_open = max_open_per_process
        # Opened once, at boot, from a path only the host controls; every later path is
        # resolved from this descriptor, never from a string (exo.kernel.beneath).
        self._tree_fd = -1
        if root is not None:
            from exo.kernel.beneath import open_root

            self._tree_fd = open_root(root)
        self._lock = threading.Lock()
        self._files = _Pins()  # of files opened through the kernel
        self._exports = _Pins()  # of directories exported to sandboxes
        self._file_server = _Slot("file", "opened files are passed as plain descriptors and "
                                          "are NOT revocable")
        self._dir_server = _Slot("directory", "directory and file grants are plain bind "
                                              "mounts and are NOT revocable while a process runs")
        self._closed = False

    @property
    def unavailable(self) -> str | None:
        """Why opened files are not revocable here, if they are not."""
        return self._file_server.unavailable

    @property
    def dirs_unavailable(self) -> str | None:
        """Why directory and file grants are not revocable here, if they are not."""
        return self._dir_server.unavailable

    @property
    def tree_fd(self) -> int:
        """The pinned ``O_PATH`` descriptor of the Exo tree (raises once closed)."""
        fd = self._tree_fd
        if fd < 0:
            raise RuntimeError("the kernel's descriptor of the Exo tree is closed "
                               "(kernel shutting down, or no tree)")
        return fd

    # ------------------------------------------------------------------ opening
    def check_open_quota(self, pid: int) -> None:
        """Refuse (EMFILE) one more file for ``pid`` past its bound, before anything opens."""
        with self._lock:
            held = self._files.count(pid)
        if held >= self._max_open:
            raise OSError(errno.EMFILE, f"process {pid} already holds {self._max_open} files "
                          "opened through the kernel")

    def register(self, proc: ExoProcess, pin: Any, fd: int) -> None:
        """Track ``pin`` until ``proc`` exits (the file itself is not revocable)."""
        with self._lock:
            first = self._files.add(proc.pid, pin)
        if first:
            proc.on_exit.append(self._release)

    def open_revocable(self, proc: ExoProcess, pin: Any, real_fd: int, flags: int, *,
                       mount_dir: Path, log: Callable[[str], None] | None = None,
                       passthrough: bool | None = None) -> tuple[int, bool]:
        """Return ``(fd to pass to proc, revocable?)`` for the real file ``real_fd``.

        Revocable: ``real_fd`` now belongs to the file server and the returned fd is a new
        one on its mount (the caller passes it, then closes its copy). Not revocable (no
        FUSE here): the returned fd is ``real_fd`` itself. ``mount_dir`` is used when the
        server is started (first call); ``log`` hears, once, why FUSE is unavailable.

        ``passthrough`` (default: ``passthrough_default``): reads and writes of a regular
        file skip the server (native speed); revocation then cuts read/write/fstat/
        ftruncate/fsync (EIO) but not memory mappings, splice or sendfile
        (docs/revocable-files.md). Without kernel support the file is served as usual.
        """
        server = self._ensure_server(mount_dir, log)
        if server is None:
            self.register(proc, pin, real_fd)
            return real_fd, False
        with self._lock:
            first = self._files.add(proc.pid, pin)
        if first:
            proc.on_exit.append(self._release)
        want = self.passthrough_default if passthrough is None else passthrough
        self._say_no_passthrough(want, server, log)
        try:
            fd, _ = server.open_mode(real_fd, pin, flags, owner=proc.pid, passthrough=want)
        except BaseException:
            self._forget(self._files, pin)
            raise
        return fd, True

    def _say_no_passthrough(self, want: bool, server: Any,
                            log: Callable[[str], None] | None) -> None:
        """Log once that passthrough was asked for and cannot be had."""
        if want and not server.passthrough and not self._passthrough_logged:
            self._passthrough_logged = True
            if log is not None:
                why = server.passthrough_unavailable or "not negotiated"
                log(f"files: FUSE passthrough unavailable ({why}): files asked for it are "
                    "served by the kernel (every operation checked)")

    @property
    def passthrough_available(self) -> bool:
        """Whether the running file server can open files in passthrough mode."""
        server = self._file_server.server
        return server is not None and bool(server.passthrough)

    def _ensure_server(self, mount_dir: Path, log: Callable[[str], None] | None
                       ) -> RevocableFiles | None:
        from exo.kernel.revocable import RevocableFiles

        server: RevocableFiles | None = self._ensure(self._file_server, RevocableFiles,
                                                     self._files, mount_dir, log)
        return server

    def _ensure(self, slot: _Slot, cls: Any, pins: _Pins, mount_dir: Path,
                log: Callable[[str], None] | None) -> Any:
        """``slot``'s server, started now if this is the first use; None without FUSE."""
        with self._lock:
            if slot.server is not None or slot.unavailable is not None:
                return slot.server
            if self._closed:
                raise RuntimeError("the open-file table is closed (kernel shutting down)")
            try:
                server = _start_server(cls, mount_dir, self._fuse_device,
                                       functools.partial(self._forget_and_unpin, pins), log,
                                       self._fair_share)
            except OSError as exc:
                slot.unavailable = f"FUSE {slot.name} server unavailable ({exc})"
                if log is not None:
                    log(f"files: {slot.unavailable}: {slot.fallback}")
                return None
            slot.server = server
        slot.unsubscribe = self._caps.on_revoke(server.revoke)
        return server

    # ------------------------------------------------------------------ directories
    def export_dir(self, pid: int, pin: Any, dirfd: int, *, writable: bool, mount_dir: Path,
                   log: Callable[[str], None] | None = None, label: str = "",
                   passthrough: bool | None = None) -> Path | None:
        """A revocable export of the directory or file ``dirfd`` for process ``pid``, or None.

        On success the directory server owns ``dirfd`` and ``pin`` (unpinned when the export
        dies: revoked, released by ``release_exports`` or at ``close``) and the returned path
        is what to bind into the sandbox. None: FUSE is unavailable here (``log`` heard why,
        once); the caller still owns both and must bind the real path.

        ``passthrough`` (default: ``passthrough_default``): the export's regular files open
        with FUSE passthrough (native reads and writes; revocation cuts read/write/stat but
        not mappings, splice or sendfile: docs/revocable-files.md).
        """
        server = self._ensure_dirs(mount_dir, log)
        if server is None:
            from exo.kernel import exportguards as guards  # a bind mount hides nothing

            if guards.GUARDS and (why := guards.refused(dirfd, covering=True)) is not None:
                raise guards.Refused(errno.EACCES, why)
            return None
        want = self.passthrough_default if passthrough is None else passthrough
        self._say_no_passthrough(want, server, log)
        with self._lock:
            self._exports.add(pid, pin)
        try:
            return server.export(dirfd, pin, writable=writable, owner=pid, label=label,
                                 passthrough=want)
        except BaseException:
            self._forget(self._exports, pin)
            raise

    def release_exports(self, pid: int) -> int:
        """Process ``pid`` exited (or its spawn failed): its directory exports die."""
        server = self._dir_server.server
        n = server.release_for(pid) if server is not None else 0
        with self._lock:
            pins = self._exports.pop_pid(pid)
        for pin in pins:
            self._caps.unpin(pin)
        return n

    def _ensure_dirs(self, mount_dir: Path, log: Callable[[str], None] | None
                     ) -> RevocableDirs | None:
        from exo.kernel.revocable import RevocableDirs

        server: RevocableDirs | None = self._ensure(self._dir_server, RevocableDirs,
                                                    self._exports, mount_dir, log)
        return server

    # ------------------------------------------------------------------ releasing
    def _forget(self, pins: _Pins, pin: Any) -> bool:
        with self._lock:
            return pins.forget(pin)

    def _forget_and_unpin(self, pins: _Pins, pin: Any) -> None:
        """A file server let go of a file or an export (closed, revoked, owner gone)."""
        if self._forget(pins, pin):
            self._caps.unpin(pin)

    def _release(self, proc: ExoProcess) -> None:
        """Process exit: its files die (even copies it passed on) and its pins go."""
        server = self._file_server.server
        if server is not None:
            server.release_for(proc.pid)
        with self._lock:
            pins = self._files.pop_pid(proc.pid)
        for pin in pins:
            self._caps.unpin(pin)

    def close(self) -> None:
        """Kernel shutdown: unmount the file server and release every pin. Idempotent."""
        with self._lock:
            self._closed = True
            slots = [(slot.server, slot.unsubscribe)
                     for slot in (self._file_server, self._dir_server)]
            for slot in (self._file_server, self._dir_server):
                slot.server = slot.unsubscribe = None
        for _, unsubscribe in slots:
            if unsubscribe is not None:
                unsubscribe()
        for server, _ in slots:
            if server is not None:
                server.close()  # the pins it held come back through _forget_and_unpin
        with self._lock:
            pins = self._files.pop_all() + self._exports.pop_all()
            tree_fd, self._tree_fd = self._tree_fd, -1
        for pin in pins:
            self._caps.unpin(pin)
        if tree_fd >= 0:
            os.close(tree_fd)

    # ------------------------------------------------------------------ reporting
    def proc_files(self) -> dict[str, Callable[[], str]]:
        """``/proc/files``: what the kernel holds open for processes, and its file servers."""
        return {"files": self._proc_text}

    def _proc_text(self) -> str:
        st = self.stats()
        lines = [f"pinned:\t{st['pinned']}"]
        for label, key, what in (("files", "server", "unavailable"),
                                 ("dirs", "dirs", "dirs_unavailable")):
            server = st[key]
            if server is not None:
                # Its mount point by its Exo path (always var/run/NAME): no host path of
                # the tree inside Exo (DESIGN invariant 6).
                shown = {k: v if k != "mount_dir" else "/var/run/" + v.rsplit("/", 1)[-1]
                         for k, v in server.items()}
                lines += [f"{label}.{k}:\t{v}" for k, v in shown.items()]
            else:
                why = st[what] or "not started (nothing opened or exported yet)"
                lines.append(f"{label}:\t{why}")
        return "\n".join(lines) + "\n"

    def count(self) -> int:
        with self._lock:
            return len(self._files)

    def stats(self) -> dict[str, Any]:
        """Counts for ``/proc`` and tests: open pins, and the file servers' own numbers."""
        server, dirs = self._file_server.server, self._dir_server.server
        with self._lock:
            dir_pins = len(self._exports)
        return {"pinned": self.count() + dir_pins, "revocable": server is not None,
                "unavailable": self.unavailable,
                "server": server.stats() if server is not None else None,
                "dirs_unavailable": self.dirs_unavailable,
                "dirs": dirs.stats() if dirs is not None else None}


def _start_server(cls: type[_S], mount_dir: Path, device: str,
                  on_release: Callable[[Any], Any],
                  log: Callable[[str], None] | None,
                  fair_share: FairShare | None = None) -> _S:
    """Clear dead mounts of killed kernels, then mount and start one FUSE server.

    Raises OSError when FUSE cannot be used; the caller records why and falls back.
    """
    from exo.kernel.revocable import cleanup_stale

    stale = cleanup_stale(mount_dir.parent)
    if stale and log is not None:
        log(f"files: removed {len(stale)} dead file-server mount(s) of killed kernels")
    server = cls(mount_dir, device=device, on_release=on_release)
    server.fair_share = fair_share
    server.start()
    return server
