"""Opening paths beneath a pinned directory descriptor, with openat2(2), never out of it.

Every path the kernel (or the root shell) opens on behalf of something an application can
write is resolved here, from a descriptor, by the Linux kernel in one system call: a
string checked and then reopened can be swapped for a symlink in between, a descriptor
cannot. The rules (``RESOLVE_*``) say what the walk may cross:

* ``STRICT`` for capabilities (syscalls, grants, the directory server): no symlink at all,
  no ``/proc`` magic link, no other mount, never above the starting directory. A
  ``storage://`` name is already free of ``..``, so with no symlinks the path the kernel
  opens is exactly the path the capability names.
* ``CONFINED`` for the shell: relative symlinks inside the tree are followed as a user
  expects, but nothing (``..``, an absolute link, a link pointing up) leaves the tree.

Opens never block and never reach a device: ``open_file`` opens with ``O_NONBLOCK`` and
refuses anything that is not a regular file or a directory before returning.

Stdlib only and no ``typing`` at run time: the shell imports this on the boot path.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import stat

from exo.kernel.rotating import own_plain_file

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

#: Capabilities: the whole path, the capability's own part included, is walked without
#: following any symlink, magic link or mount crossing, and never above the start.
STRICT = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV
#: The shell: symlinks inside the tree are followed, nothing leaves it.
CONFINED = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS

_SYS_OPENAT2 = 437  # the same number on every architecture (a "new" syscall)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def openat2(dirfd: int, path: str | bytes, flags: int, mode: int = 0,
            resolve: int = STRICT) -> int:
    """openat2(2): ``path`` resolved under ``dirfd`` by the ``resolve`` rules (close-on-exec).

    Raises ``OSError`` with the errno and ``path`` as its filename: ``EXDEV`` when the walk
    would leave ``dirfd`` (or cross a mount under ``RESOLVE_NO_XDEV``), ``ELOOP`` on a
    symlink under ``RESOLVE_NO_SYMLINKS``.
    """
    raw = os.fsencode(path) if path else b"."
    # openat2 refuses a mode without O_CREAT/O_TMPFILE (O_TMPFILE includes O_DIRECTORY's bit).
    creates = flags & os.O_CREAT or flags & os.O_TMPFILE == os.O_TMPFILE
    how = _OpenHow(flags | os.O_CLOEXEC, mode if creates else 0, resolve)
    fd = _libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd), raw,
                       ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), os.fsdecode(raw))
    return int(fd)


def kind_name(mode: int) -> str:
    """What a file of ``mode`` is, for an error message."""
    return {stat.S_IFDIR: "a directory", stat.S_IFREG: "a regular file",
            stat.S_IFLNK: "a symbolic link", stat.S_IFIFO: "a FIFO",
            stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
            stat.S_IFBLK: "a block device"}.get(stat.S_IFMT(mode), "a special file")


def is_plain(mode: int) -> bool:
    """Whether a file of ``mode`` may be opened or granted: a directory or regular file."""
    return stat.S_ISDIR(mode) or stat.S_ISREG(mode)


def open_file(dirfd: int, path: str | bytes, flags: int, mode: int = 0o644,
              resolve: int = STRICT) -> int:
    """Open a regular file or directory beneath ``dirfd``; never blocks, never a device.

    ``O_NONBLOCK`` makes opening a FIFO return at once instead of waiting for a peer (a
    kernel thread stuck forever); the result is then refused unless it is a directory or
    a regular file (``EACCES``, "... is a FIFO"), and ``O_NONBLOCK`` is cleared again
    unless the caller asked for it.
    """
    # (openat2 refuses O_PATH with any flag O_PATH ignores; an O_PATH open blocks nothing.)
    extra = 0 if flags & os.O_PATH else os.O_NONBLOCK | os.O_NOCTTY
    fd = openat2(dirfd, path, flags | extra, mode, resolve)
    try:
        st = os.fstat(fd)
        if not is_plain(st.st_mode):
            raise OSError(errno.EACCES, f"{os.fsdecode(path)} is {kind_name(st.st_mode)}: "
                          "only regular files and directories are opened")
        if not flags & os.O_NONBLOCK and not flags & os.O_PATH:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def reopen(fd: int, flags: int) -> int:
    """A new open file description of the file ``fd`` (an ``O_PATH`` descriptor, say).

    Goes through ``/proc/self/fd``: the magic link of *our own* descriptor, which names
    exactly that inode, however it has been renamed or replaced since.
    """
    return os.open(f"/proc/self/fd/{fd}", flags | os.O_CLOEXEC | os.O_NOCTTY)


def open_root(path: str | os.PathLike[str]) -> int:
    """An ``O_PATH`` descriptor of a trusted directory (the Exo tree) to resolve from."""
    return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def open_log(root: str | os.PathLike[str], relative: str, *, truncate: bool = False) -> int:
    """A descriptor to write the log file ``relative`` of the Exo tree ``root`` (such as
    ``var/log/agents/ai-res.log``), appended to or emptied, with its directories made.

    An app granted a directory of ``var/log`` can plant a symbolic link, a FIFO or a
    hard link there; the kernel and the ``exo`` commands run as root, so following one
    would create, append to or truncate any host file. So every component is resolved
    beneath the tree with no symbolic link at all (``ELOOP``), the open never blocks, and
    the file must be a regular file with a single link (``EACCES``), checked before it is
    emptied."""
    parts = [p for p in relative.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"{relative!r} is not a path inside the Exo tree")
    here = open_root(root)
    try:
        for part in parts[:-1]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=here)  # never follows a final symlink
            below = openat2(here, part, os.O_PATH | os.O_DIRECTORY, resolve=STRICT)
            os.close(here)
            here = below
        fd = open_file(here, parts[-1], os.O_WRONLY | os.O_CREAT
                       | (0 if truncate else os.O_APPEND), 0o600, resolve=STRICT)
    finally:
        os.close(here)
    try:
        own_plain_file(fd, relative)
        if truncate:
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd
