"""One page of a real directory, read at a directory cookie: Linux ``getdents64(2)``.

The FUSE servers answer READDIR by passing the real directory through page by page instead
of keeping a listing per open handle (a listing per handle let a process with 1,024 open
directories of 30,000 long names grow the kernel by gigabytes). A READDIR asks for the
entries after an offset; we make those offsets the real filesystem's own directory cookies
(``d_off``: a position on tmpfs, a name hash on ext4) and resume with ``lseek(fd, cookie)``,
as libfuse's passthrough_ll does with telldir/seekdir. So each request costs one buffer of
its reply's size and nothing is kept between requests but the descriptor; a directory that
changes between requests reads as it would through getdents on the real filesystem.

``os.scandir`` cannot do this: it hides ``d_off`` and reads ahead into its own buffer, so
its position is not where the last entry it returned ends. Hence the raw system call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import struct

#: getdents64's number on the architectures we run on (ENOSYS elsewhere, at first use).
_SYS_GETDENTS64 = {"x86_64": 217, "aarch64": 61}.get(platform.machine())
#: struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
_HEAD = struct.Struct("=QqHB")
#: Enough for one entry of the longest name (19 + 255 + NUL, padded): a smaller buffer is
#: EINVAL. More than this per call only reads ahead what the caller will drop.
MIN_BUFFER = 512
MAX_BUFFER = 1 << 16

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long


def read_at(fd: int, cookie: int, size: int) -> list[tuple[bytes, int, int, int]]:
    """Entries of directory ``fd`` after ``cookie`` (0: from the start), as (name, inode,
    d_type, cookie after this entry), from at most ``size`` bytes of ``linux_dirent64``.

    An empty result is the end of the directory. ``fd``'s position is moved; the caller
    serialises uses of one descriptor (FUSE sends one READDIR at a time per open file).
    """
    if _SYS_GETDENTS64 is None:
        raise OSError(errno.ENOSYS, "getdents64: unknown architecture")
    os.lseek(fd, cookie, os.SEEK_SET)
    buf = ctypes.create_string_buffer(max(MIN_BUFFER, min(size, MAX_BUFFER)))
    n: int = _libc.syscall(ctypes.c_long(_SYS_GETDENTS64), ctypes.c_long(fd), buf,
                           ctypes.c_long(len(buf)))
    if n < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    raw = buf.raw[:n]
    entries = []
    pos = 0
    while pos < n:
        ino, off, reclen, dtype = _HEAD.unpack_from(raw, pos)
        end = raw.index(b"\0", pos + _HEAD.size, pos + reclen)
        entries.append((raw[pos + _HEAD.size:end], ino, dtype, off))
        pos += reclen
    return entries
