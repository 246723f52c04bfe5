"""Linux FUSE passthrough (6.9+): the ioctls, flags and the one trick revocation needs.

With passthrough the server registers a real file with ``FUSE_DEV_IOC_BACKING_OPEN`` and
answers an OPEN with ``FOPEN_PASSTHROUGH`` and the backing id: the client kernel then
sends that open file's reads and writes straight to the real file, never to us. So there
is no request left in which to refuse them. What still stops them, measured on Linux 6.18
(``tests/unit/revocable/test_passthrough.py``): ``fuse_file_read_iter`` and
``fuse_file_write_iter`` fail with EIO once the FUSE inode is marked *bad*, and the client
marks it bad when a GETATTR answer says the inode changed type (``wrong_type``,
``force_getattr``), or when a LOOKUP answers its node id under a new generation (what
``dirs.RevocableDirs._cut`` does). Nothing else tried does it: aborting the connection
(``/sys/fs/fuse/connections/N/abort``), closing the backing id, closing our real
descriptor or unmounting all leave reads and writes working. Memory mappings, ``splice``
and ``sendfile`` do not look at the bad mark either (docs/revocable-files.md, "What
revocation guarantees, per mode").

The ioctls and flags of passthrough live in this module only.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import stat
import struct

TYPE_CHECKING = False  # no typing import at run time: boot path (exo/_value.py)
if TYPE_CHECKING:
    from typing import Final

#: FUSE_INIT: the ``flags2`` word is valid (both directions).
INIT_EXT: Final = 1 << 30
#: FUSE_PASSTHROUGH is bit 37 of the 64-bit flags, i.e. bit 5 of ``flags2``.
INIT2_PASSTHROUGH: Final = 1 << (37 - 32)
#: ``max_stack_depth`` we ask for: a backing file may itself be on a stacked file system
#: (overlayfs) but not deeper (FILESYSTEM_MAX_STACK_DEPTH is 2).
MAX_STACK_DEPTH: Final = 2
#: OPEN reply flag: reads and writes go to the backing file.
FOPEN_PASSTHROUGH: Final = 1 << 7

#: _IOW(229, 1, struct fuse_backing_map) and _IOW(229, 2, uint32_t).
_IOC_BACKING_OPEN: Final = (1 << 30) | (16 << 16) | (229 << 8) | 1
_IOC_BACKING_CLOSE: Final = (1 << 30) | (4 << 16) | (229 << 8) | 2
_BACKING_MAP = struct.Struct("<iIQ")  # fd flags padding

#: The ``fuse_attr`` mode field's offset (after ino size blocks [amc]time [amc]timensec).
_ATTR_MODE_OFFSET: Final = 6 * 8 + 3 * 4

_AT_EMPTY_PATH: Final = 0x1000
_AT_STATX_FORCE_SYNC: Final = 0x2000
_STATX_TYPE: Final = 0x1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint,
                        ctypes.c_void_p]


def kernel_offers(init_flags: int, init_flags2: int) -> bool:
    """Whether an INIT request offers passthrough (its ``flags`` and ``flags2`` words)."""
    return bool(init_flags & INIT_EXT and init_flags2 & INIT2_PASSTHROUGH)


def backing_open(devfd: int, real_fd: int) -> int:
    """Register ``real_fd`` with the connection; return its backing id (needs root).

    Raises OSError: EPERM (passthrough not negotiated / no CAP_SYS_ADMIN), ELOOP (the file
    is on a file system stacked too deep), EINVAL (not a regular file with read and write
    operations), ...
    """
    arg = bytearray(_BACKING_MAP.pack(real_fd, 0, 0))
    backing_id = int(fcntl.ioctl(devfd, _IOC_BACKING_OPEN, arg, True))
    if backing_id <= 0:  # the kernel never returns that on success; be sure
        raise OSError(errno.EPROTO, f"FUSE_DEV_IOC_BACKING_OPEN returned {backing_id}")
    return backing_id


def backing_close(devfd: int, backing_id: int) -> None:
    """Drop our registration; files already opened with it keep their own reference."""
    fcntl.ioctl(devfd, _IOC_BACKING_CLOSE, bytearray(struct.pack("<I", backing_id)), True)


def wrong_type(attr: bytes) -> bytes:
    """``attr`` (a ``fuse_attr``) turned into a FIFO's: answering a GETATTR with it makes
    the client mark the inode bad (``fuse_do_getattr``: ``inode_wrong_type``), after which
    every read, write, fstat, ftruncate and fsync of its open files fails with EIO."""
    out = bytearray(attr)
    mode = struct.unpack_from("<I", out, _ATTR_MODE_OFFSET)[0]
    struct.pack_into("<I", out, _ATTR_MODE_OFFSET, stat.S_IFIFO | stat.S_IMODE(mode))
    return bytes(out)


def force_getattr(path_fd: int) -> int:
    """Make the client send GETATTR for ``path_fd``'s inode now (cached attributes are
    not trusted: ``AT_STATX_FORCE_SYNC``); return the errno it ended with (0: none).

    ``path_fd`` is an ``O_PATH`` descriptor on the mount (opening it sent no OPEN).
    """
    buf = ctypes.create_string_buffer(256)
    rc = _libc.statx(path_fd, b"", _AT_EMPTY_PATH | _AT_STATX_FORCE_SYNC, _STATX_TYPE, buf)
    return int(ctypes.get_errno()) if rc != 0 else 0


__all__ = ["FOPEN_PASSTHROUGH", "INIT2_PASSTHROUGH", "INIT_EXT", "MAX_STACK_DEPTH",
           "backing_close", "backing_open", "force_getattr", "kernel_offers", "wrong_type"]
