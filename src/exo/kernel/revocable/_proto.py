"""The FUSE kernel protocol, spoken directly over ``/dev/fuse`` (the parts we need).

Why not a library: pyfuse3 keeps its session in module-level state (one mount per process)
and wants trio; fusepy/mfusepy/refuse drive libfuse's ``fuse_main`` loop, which installs
signal handlers and is hard to stop from another thread. The kernel needs several
independent file servers per process (tests boot many kernels), started and stopped at
will, on plain daemon threads. The wire protocol for a flat directory of already-open
files is small, so we speak it ourselves: layouts below follow ``<linux/fuse.h>``
(protocol 7.31, which every kernel since 5.4 speaks), and we run as root, so ``mount(2)``
with ``fd=`` needs no ``fusermount`` helper. Nothing here knows about capabilities.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
from collections.abc import Iterable

from exo.kernel.beneath import RESOLVE_BENEATH as RESOLVE_BENEATH
from exo.kernel.beneath import RESOLVE_NO_MAGICLINKS as RESOLVE_NO_MAGICLINKS
from exo.kernel.beneath import RESOLVE_NO_SYMLINKS as RESOLVE_NO_SYMLINKS
from exo.kernel.beneath import RESOLVE_NO_XDEV as RESOLVE_NO_XDEV
from exo.kernel.beneath import openat2 as openat2

TYPE_CHECKING = False  # no typing import at run time: boot path (exo/_value.py)
if TYPE_CHECKING:
    from typing import Final

# --- opcodes (enum fuse_opcode) ----------------------------------------------------------
LOOKUP: Final = 1
FORGET: Final = 2
GETATTR: Final = 3
SETATTR: Final = 4
READLINK: Final = 5
SYMLINK: Final = 6
MKNOD: Final = 8
MKDIR: Final = 9
UNLINK: Final = 10
RMDIR: Final = 11
RENAME: Final = 12
LINK: Final = 13
OPEN: Final = 14
READ: Final = 15
WRITE: Final = 16
STATFS: Final = 17
RELEASE: Final = 18
FSYNC: Final = 20
SETXATTR: Final = 21        # the directory exports: user.* names only
GETXATTR: Final = 22
LISTXATTR: Final = 23
REMOVEXATTR: Final = 24
FLUSH: Final = 25
INIT: Final = 26
OPENDIR: Final = 27
READDIR: Final = 28
RELEASEDIR: Final = 29
FSYNCDIR: Final = 30
ACCESS: Final = 34
CREATE: Final = 35
INTERRUPT: Final = 36
DESTROY: Final = 38
IOCTL: Final = 39           # not handled (ENOSYS; isatty() on a file sends one)
BATCH_FORGET: Final = 42
RENAME2: Final = 45
TMPFILE: Final = 51         # O_TMPFILE (the directory exports)

#: Opcode names, for the per-opcode request counts (``stats()["ops"]``).
OPCODE_NAMES: Final[dict[int, str]] = {v: k for k, v in dict(globals()).items()
                       if k.isupper() and isinstance(v, int) and 0 < v < 64}

#: Requests that change the name space: our directory is fixed, so these are refused.
NAMESPACE_OPS: Final = frozenset({
    6,   # SYMLINK
    8,   # MKNOD
    9,   # MKDIR
    10,  # UNLINK
    11,  # RMDIR
    12,  # RENAME
    13,  # LINK
    35,  # CREATE
    45,  # RENAME2
    51,  # TMPFILE
})
#: Requests the kernel sends no reply for.
NO_REPLY: Final = frozenset({FORGET, BATCH_FORGET, INTERRUPT})

ROOT_ID: Final = 1
KERNEL_MAJOR: Final = 7
OUR_MINOR: Final = 31

# --- FUSE_INIT flags we may accept ------------------------------------------------------
INIT_ATOMIC_O_TRUNC: Final = 1 << 3
INIT_BIG_WRITES: Final = 1 << 5
INIT_PARALLEL_DIROPS: Final = 1 << 18
INIT_MAX_PAGES: Final = 1 << 22
#: The server drops set-id bits and file capabilities on write, truncate and chown
#: (``dirs._drop_privileges``); the client then stops asking GETXATTR
#: ``security.capability`` before every write.
INIT_HANDLE_KILLPRIV_V2: Final = 1 << 28
WRITE_KILL_SUIDGID: Final = 1 << 2          # FUSE_WRITE_IN.write_flags
WANTED_INIT_FLAGS: Final = INIT_ATOMIC_O_TRUNC | INIT_BIG_WRITES | INIT_MAX_PAGES
#: FUSE_DIRECT_IO_ALLOW_MMAP (7.39): bit 36 of the 64-bit flags, bit 4 of ``flags2``.
INIT2_DIRECT_IO_ALLOW_MMAP: Final = 1 << (36 - 32)

# --- open reply flags ---------------------------------------------------------------------
#: Bypass the page cache: every read/write is a request we answer, so nothing cached can
#: be served after a revocation.
FOPEN_DIRECT_IO: Final = 1 << 0
#: No FLUSH request on close(2): we write through, so there is nothing to flush, a close
#: costs no round trip, and a close after the server is gone still returns 0.
FOPEN_NOFLUSH: Final = 1 << 5

# --- setattr valid bits -------------------------------------------------------------------
FATTR_MODE: Final = 1 << 0
FATTR_UID: Final = 1 << 1
FATTR_GID: Final = 1 << 2
FATTR_SIZE: Final = 1 << 3
FATTR_ATIME: Final = 1 << 4
FATTR_MTIME: Final = 1 << 5
FATTR_FH: Final = 1 << 6
FATTR_ATIME_NOW: Final = 1 << 7
FATTR_MTIME_NOW: Final = 1 << 8
FATTR_LOCKOWNER: Final = 1 << 9
FATTR_CTIME: Final = 1 << 10
FATTR_KILL_SUIDGID: Final = 1 << 11

NOTIFY_INVAL_INODE: Final = 2
NOTIFY_INVAL_ENTRY: Final = 3
GETATTR_FH: Final = 1 << 0

# --- wire layouts ---------------------------------------------------------------------------
IN_HEADER = struct.Struct("<IIQQIIIHH")      # len opcode unique nodeid uid gid pid extlen pad
OUT_HEADER = struct.Struct("<IiQ")           # len error unique
INIT_IN = struct.Struct("<IIII")             # major minor max_readahead flags
INIT_IN2 = struct.Struct("<I")               # flags2 (7.36+, after INIT_IN)
INIT_OUT = struct.Struct("<IIIIHHIIHHII6I")  # ... flags2 max_stack_depth unused: 64 bytes
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")    # fuse_attr, 88 bytes
ENTRY_OUT_HEAD = struct.Struct("<QQQQII")    # nodeid generation entry_valid attr_valid nsecs
ATTR_OUT_HEAD = struct.Struct("<QII")        # attr_valid attr_valid_nsec dummy
GETATTR_IN = struct.Struct("<IIQ")           # flags dummy fh
SETATTR_IN = struct.Struct("<IIQQQQQQIIIIIIII")
OPEN_IN = struct.Struct("<II")               # flags open_flags
OPEN_OUT = struct.Struct("<QIi")             # fh open_flags backing_id
READ_IN = struct.Struct("<QQIIQII")          # fh offset size read_flags lock_owner flags pad
WRITE_IN = struct.Struct("<QQIIQII")         # fh offset size write_flags lock_owner flags pad
WRITE_OUT = struct.Struct("<II")
RELEASE_IN = struct.Struct("<QIIQ")          # fh flags release_flags lock_owner
FSYNC_IN = struct.Struct("<QII")             # fh fsync_flags padding
KSTATFS = struct.Struct("<QQQQQIIII6I")      # 80 bytes
DIRENT_HEAD = struct.Struct("<QQII")         # ino off namelen type
INVAL_INODE_OUT = struct.Struct("<Qqq")
INVAL_ENTRY_OUT = struct.Struct("<QII")      # parent namelen flags, then name and NUL
FORGET_IN = struct.Struct("<Q")              # nlookup
BATCH_FORGET_IN = struct.Struct("<II")       # count dummy, then count FORGET_ONEs
FORGET_ONE = struct.Struct("<QQ")            # nodeid nlookup
MKNOD_IN = struct.Struct("<IIII")            # mode rdev umask padding
MKDIR_IN = struct.Struct("<II")              # mode umask
RENAME_IN = struct.Struct("<Q")              # newdir
RENAME2_IN = struct.Struct("<QII")           # newdir flags padding
LINK_IN = struct.Struct("<Q")                # oldnodeid
SETXATTR_IN = struct.Struct("<II")           # size flags (no FUSE_SETXATTR_EXT), then name, value
GETXATTR_IN = struct.Struct("<II")           # size padding, then the name (getxattr)
GETXATTR_OUT = struct.Struct("<II")          # size padding (the answer to a size query)
CREATE_IN = struct.Struct("<IIII")           # flags mode umask open_flags
ACCESS_IN = struct.Struct("<II")             # mask padding

assert INIT_OUT.size == 64 and ATTR.size == 88 and SETATTR_IN.size == 88
assert IN_HEADER.size == 40 and OUT_HEADER.size == 16 and KSTATFS.size == 80


def attr_from_stat(st: os.stat_result, ino: int,
                   owner: tuple[int, int] | None = None) -> bytes:
    """A ``fuse_attr`` describing the real file, under our inode number (and ``owner``'s
    uid and gid instead of the file's, when given)."""
    uid, gid = owner if owner is not None else (st.st_uid, st.st_gid)
    return ATTR.pack(
        ino, st.st_size, st.st_blocks,
        int(st.st_atime), int(st.st_mtime), int(st.st_ctime),
        st.st_atime_ns % 1_000_000_000, st.st_mtime_ns % 1_000_000_000,
        st.st_ctime_ns % 1_000_000_000,
        st.st_mode, st.st_nlink, uid, gid, 0, st.st_blksize, 0,
    )


def dirent(ino: int, next_off: int, name: bytes, dtype: int) -> bytes:
    """One ``fuse_dirent``, padded to 8 bytes as the kernel expects."""
    raw = DIRENT_HEAD.pack(ino, next_off, len(name), dtype) + name
    return raw + b"\0" * (-len(raw) % 8)


def dirent_page(entries: Iterable[tuple[bytes, int, int, int]], size: int
                ) -> list[bytes | memoryview]:
    """A READDIR reply: ``(name, ino, dtype, next_off)`` entries packed until ``size``
    bytes are full (the client asks again from the last one it took).

    One buffer, not one per entry: writev(2) takes at most IOV_MAX (1024) buffers, and a
    large READDIR holds more entries than that (the reply failed and the reader hung)."""
    records: list[bytes] = []
    used = 0
    for name, ino, dtype, next_off in entries:
        rec = dirent(ino or 1, next_off, name, dtype)
        if used + len(rec) > size:
            break
        records.append(rec)
        used += len(rec)
    return [b"".join(records)]


# --- mount(2) / umount2(2) --------------------------------------------------------------------
MS_NOSUID: Final = 2
MS_NODEV: Final = 4
MS_NOEXEC: Final = 8
MNT_DETACH: Final = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def mount_fuse(devfd: int, target: str, *, source: str = "exo-files",
               flags: int = MS_NOSUID | MS_NODEV | MS_NOEXEC) -> None:
    """Mount a FUSE file system served through ``devfd`` on ``target`` (needs CAP_SYS_ADMIN).

    ``allow_other`` so processes in other user namespaces (sandboxes) may use the fds we
    hand them; no ``default_permissions``: the server decides every access itself.
    """
    opts = (f"fd={devfd},rootmode=40000,user_id={os.getuid()},group_id={os.getgid()},"
            "allow_other")
    if _libc.mount(source.encode(), target.encode(), b"fuse", flags, opts.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount fuse on {target}: {os.strerror(err)}")


def umount_detach(target: str) -> None:
    """Lazy unmount: gone from the name space now, freed when the last open file closes."""
    if _libc.umount2(target.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


# --- openat2(2) / renameat2(2) -------------------------------------------------------------
# openat2 and the RESOLVE_* flags come from exo.kernel.beneath (imported above), shared
# with the syscalls, the grants and the shell.
RENAME_NOREPLACE: Final = 1 << 0
RENAME_EXCHANGE: Final = 1 << 1

_libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                            ctypes.c_uint]


def renameat2(olddir: int, old: bytes, newdir: int, new: bytes, flags: int) -> None:
    if _libc.renameat2(olddir, old, newdir, new, flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
