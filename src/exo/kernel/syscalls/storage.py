"""Files through capabilities: ``open`` and ``listdir`` (rows of family "storage" in
``exo.abi.syscalls``). Arguments arrive validated against their row.

Every path is resolved from the kernel's pinned descriptor of the Exo tree, the
capability's own part included, with beneath.STRICT: no symlink anywhere (a link an app
planted in its own directory cannot lead the kernel, which runs as root, anywhere), no
mount crossing, nothing above the tree. A storage:// name has no ``..`` (the parser
resolves it), so what is opened is exactly what the capability names.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
from typing import TYPE_CHECKING, Any

from exo.kernel.caps import ResourceName, Rights
from exo.kernel.syscalls.host import Handler, SyscallError, SyscallHost

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from exo.kernel.process import ExoProcess


def open_beneath(host: SyscallHost, res: ResourceName, flags: int, mode: int = 0o644, *,
                 proc: ExoProcess | None = None) -> int:
    """Open the Exo path of ``res`` (a regular file or directory only; never blocks), as
    ``proc`` sees it (its user's ``/tmp``: ``exo.kernel.tree.instance_path``)."""
    from exo.kernel import beneath
    from exo.kernel.tree import instance_user
    from exo.sandbox.namespace import instance_path

    path = instance_path(res.path, None if proc is None else instance_user(proc.account))
    try:
        return beneath.open_file(host.files.tree_fd, path, flags, mode, beneath.STRICT)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PermissionError(errno.EACCES, f"{res}: a symbolic link is on the path "
                                  "(the kernel never follows links)") from None
        if exc.errno == errno.EXDEV:
            raise PermissionError(errno.EACCES, f"{res}: the path crosses a mount or leaves "
                                  "the Exo tree") from None
        raise OSError(exc.errno, f"{res}: {exc.strerror}") from None


@functools.lru_cache(maxsize=4)
def _files_mount(root: Path, boot_id: str) -> Path:
    """The file server's mount point (built once: four pathlib joins were ~8 us of a
    kernel-side open)."""
    return root / "var" / "run" / f"files-{boot_id}"


def _covering(host: SyscallHost, pid: int, res: ResourceName, want: Rights) -> tuple[int, Any]:
    """The handle whose capability covers ``res`` with ``want``, most specific first."""
    best: tuple[int, Any] | None = None
    for info in host.caps.handles(pid):
        if info.resource.covers(res) and (info.rights & want) == want and (
            best is None or len(info.resource.path) > len(best[1].resource.path)
        ):
            best = (info.handle, info)
    if best is None:
        raise PermissionError(errno.EACCES, f"no capability grants {want.format()} on {res}")
    return best


def _storage_name(op: str, text: str) -> ResourceName:
    res = ResourceName.parse(text)
    if res.scheme != "storage":
        raise SyscallError(f"{op}: {res} is not a storage:// name")
    return res


#: Subsystems that serve some files themselves: encrypted areas (``exo.security.areaserve``,
#: added by its boot row). ``hook(host, proc, res, want, args, handle, mount_dir)`` returns
#: the reply, or None to let the kernel open the file.
OPEN_HOOKS: list[Callable[..., tuple[Any, list[int]] | None]] = []


def _served_by_hook(host: SyscallHost, proc: ExoProcess, res: ResourceName, want: Rights,
                    args: dict[str, Any], handle: int) -> tuple[Any, list[int]] | None:
    for hook in OPEN_HOOKS:
        served = hook(host, proc, res, want, args, handle,
                      host.root / "var" / "run" / f"files-{host.boot_id}")
        if served is not None:
            return served
    return None


def open_(host: SyscallHost, proc: ExoProcess, args: dict[str, Any], fds: list[int]
          ) -> tuple[Any, list[int]]:
    res = _storage_name("open", args["name"])
    want = Rights.parse(args["rights"]) & (Rights.READ | Rights.WRITE)
    if not want:
        raise SyscallError("open: rights must include READ or WRITE")
    # Creating and truncating change the file: WRITE, checked before anything is touched.
    changes = [what for what in ("create", "truncate") if args[what]]
    if changes and Rights.WRITE not in want:
        raise PermissionError(errno.EACCES, f"open: {' and '.join(changes)} of {res} needs "
                              "WRITE")
    handle, _ = _covering(host, proc.pid, res, want)
    host.files.check_open_quota(proc.pid)
    served = _served_by_hook(host, proc, res, want, args, handle)
    if served is not None:
        return served
    flags = {Rights.READ: os.O_RDONLY, Rights.WRITE: os.O_WRONLY}.get(want, os.O_RDWR)
    if args["create"]:
        flags |= os.O_CREAT
    if args["truncate"]:
        flags |= os.O_TRUNC
    if args["append"]:
        flags |= os.O_APPEND
    pin = host.caps.pin(proc.pid, handle, want)
    try:
        fd = open_beneath(host, res, flags, proc=proc)
    except BaseException:
        host.caps.unpin(pin)
        raise
    # (only a write open can be refused as a directory: a read needs no fstat here)
    if want & Rights.WRITE and stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        host.caps.unpin(pin)
        raise IsADirectoryError(errno.EISDIR, f"{res}: is a directory")
    # The process gets a descriptor on the kernel's FUSE file server, not the real file,
    # so revoking the capability cuts it off from its next read/write (docs/revocable-files.md).
    # Without FUSE the real fd is passed and the reply says the file is not revocable.
    mount_dir = _files_mount(host.root, host.boot_id)
    try:
        out_fd, revocable = host.files.open_revocable(proc, pin, fd, flags,
                                                      mount_dir=mount_dir, log=host.log)
    except BaseException:
        os.close(fd)
        host.caps.unpin(pin)
        raise
    return {"resource": str(res), "rights": int(want), "revocable": revocable}, [out_fd]


def listdir(host: SyscallHost, proc: ExoProcess, args: dict[str, Any], fds: list[int]
            ) -> tuple[Any, list[int]]:
    res = _storage_name("listdir", args["name"])
    _covering(host, proc.pid, res, Rights.READ)
    fd = open_beneath(host, res, os.O_RDONLY | os.O_DIRECTORY, proc=proc)
    try:
        return sorted(os.listdir(fd)), []
    finally:
        os.close(fd)


HANDLERS: dict[str, Handler] = {
    "open": open_,
    "listdir": listdir,
}
