"""Landlock back-end: the ABI probe, the rights, and the rules stage 2 applies.

The kernel probes the ABI here (syscall 444 through ctypes) and computes every right and
mask; ``exo-stage2`` (``_stage2.c``), run by bubblewrap inside the sandbox, only creates the
ruleset, adds the rules and enforces them, from the records :func:`stage2_records` writes.
Landlock is applied after bubblewrap has built the mount namespace, because a Landlock domain
forbids further mount-topology changes.
"""

from __future__ import annotations

import ctypes
import os
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


def stage2_records(
    abi: int,
    fs_rules: Sequence[tuple[str, int]],
    *,
    net: tuple[Iterable[int], Iterable[int]] | None,
    scoped: bool,
) -> list[str]:
    """The Landlock records of exo-stage2's config (the format is in ``_stage2.c``).

    The ruleset handles every right ``abi`` knows, so anything not allowed below is refused.
    ``net`` is ``None`` to leave TCP unhandled (full network), else ``(bind_ports,
    connect_ports)``: every other TCP bind/connect is refused. Rights of each path rule are
    masked to the ABI here and to ``FILE_RIGHTS`` by stage 2 when the path is not a
    directory (Landlock rejects a file rule carrying directory rights).
    """
    handled_fs = fs_rights_for_abi(abi)
    handled_net = net_rights_for_abi(abi) if net is not None else 0
    scopes = scopes_for_abi(abi) if scoped else 0
    attr_size = 24 if abi >= 6 else 16 if abi >= 4 else 8  # fields this ABI's struct has
    records = ["ruleset", str(handled_fs), str(handled_net), str(scopes), str(attr_size),
               str(FILE_RIGHTS)]
    for path, access in fs_rules:
        if access & handled_fs:
            records += ["path", str(access & handled_fs), path]
    if net is not None and handled_net:
        bind_ports, connect_ports = net
        records += [x for port in bind_ports for x in ("port", str(NET_BIND_TCP), str(port))]
        records += [x for port in connect_ports
                    for x in ("port", str(NET_CONNECT_TCP), str(port))]
    return records
