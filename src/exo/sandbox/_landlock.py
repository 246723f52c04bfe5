"""Landlock back-end: raw syscalls 444-446 through ctypes.

This module is imported twice: by the kernel (to probe the ABI and to name the rights) and,
standalone, by the stage-2 launcher that runs *inside* bubblewrap under ``python3 -I -S``.
It therefore uses the standard library only and never imports from ``exo``.

Landlock is applied after bubblewrap has built the mount namespace, because a Landlock domain
forbids further mount-topology changes.
"""

from __future__ import annotations

import ctypes
import os
import stat
from collections.abc import Iterable, Sequence

_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_RULE_NET_PORT = 2

# Filesystem rights (include/uapi/linux/landlock.h).
EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5

# Network rights (ABI 4) and scopes (ABI 6).
NET_BIND_TCP = 1 << 0
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1

# Rights that make sense on a regular file; a rule on a non-directory carrying any other right
# is rejected with EINVAL, so rules are masked by path type.
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV

READ = READ_FILE | READ_DIR
WRITE = (
    WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | MAKE_SOCK | MAKE_FIFO
    | MAKE_SYM | REFER | TRUNCATE
)


def fs_rights_for_abi(abi: int) -> int:
    """Every filesystem right the given ABI knows (the set a ruleset must *handle*)."""
    rights = (1 << 13) - 1
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


def net_rights_for_abi(abi: int) -> int:
    return NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0


def scopes_for_abi(abi: int) -> int:
    return SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


class _NetPortAttr(ctypes.Structure):
    _fields_ = (("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64))


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall(nr: int, *args: object) -> int:
    res = int(_libc.syscall(ctypes.c_long(nr), *args))
    if res < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock syscall {nr}: {os.strerror(err)}")
    return res


def abi_version() -> int:
    """The Landlock ABI of the running kernel, 0 when Landlock is absent or disabled."""
    try:
        return _syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0),
                        ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except OSError:
        return 0


class Ruleset:
    """One Landlock ruleset: handled rights, allow rules, then ``restrict_self``."""

    def __init__(self, abi: int, *, handle_net: bool, scoped: bool) -> None:
        self.abi = abi
        self.handled_fs = fs_rights_for_abi(abi)
        self.handled_net = net_rights_for_abi(abi) if handle_net else 0
        scopes = scopes_for_abi(abi) if scoped else 0
        attr = _RulesetAttr(self.handled_fs, self.handled_net, scopes)
        size = 24 if abi >= 6 else 16 if abi >= 4 else 8
        self.fd = _syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                           ctypes.c_uint32(0))

    def allow_path(self, path: str, access: int) -> None:
        """Allow ``access`` beneath ``path``; rights are masked to the ABI and the path type."""
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        try:
            access &= self.handled_fs
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                access &= FILE_RIGHTS
            if not access:
                return
            attr = _PathBeneathAttr(access, fd)
            _syscall(_SYS_ADD_RULE, ctypes.c_int(self.fd), ctypes.c_int(_RULE_PATH_BENEATH),
                     ctypes.byref(attr), ctypes.c_uint32(0))
        finally:
            os.close(fd)

    def allow_port(self, port: int, access: int) -> None:
        access &= self.handled_net
        if not access:
            return
        attr = _NetPortAttr(access, port)
        _syscall(_SYS_ADD_RULE, ctypes.c_int(self.fd), ctypes.c_int(_RULE_NET_PORT),
                 ctypes.byref(attr), ctypes.c_uint32(0))

    def restrict_self(self) -> None:
        """Enforce on this thread and everything it execs; needs no_new_privs already set."""
        _syscall(_SYS_RESTRICT_SELF, ctypes.c_int(self.fd), ctypes.c_uint32(0))
        os.close(self.fd)


def apply(
    abi: int,
    fs_rules: Sequence[tuple[str, int]],
    *,
    net: tuple[Iterable[int], Iterable[int]] | None,
    scoped: bool,
) -> None:
    """Build and enforce a ruleset in one call (stage 2's entry point).

    ``net`` is ``None`` to leave TCP unhandled (full network), else ``(bind_ports,
    connect_ports)``: every other TCP bind/connect is refused.
    """
    ruleset = Ruleset(abi, handle_net=net is not None, scoped=scoped)
    for path, access in fs_rules:
        ruleset.allow_path(path, access)
    if net is not None:
        bind_ports, connect_ports = net
        for port in bind_ports:
            ruleset.allow_port(port, NET_BIND_TCP)
        for port in connect_ports:
            ruleset.allow_port(port, NET_CONNECT_TCP)
    ruleset.restrict_self()
