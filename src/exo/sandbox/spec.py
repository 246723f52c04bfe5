"""The portable description of a sandbox: what a process may touch, and how much.

The kernel builds a :class:`SandboxSpec` from a process's capabilities and manifest; the
platform back-ends (``_bwrap``, ``_landlock``, ``_seccomp``, ``_cgroups``) turn it into Linux
enforcement. Validation happens here, once, so a bad manifest fails with a one-line error
before any process exists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from .errors import SandboxError, SandboxUnavailable

NetMode = Literal["none", "tcp", "any"]
__all__ = ["NetMode", "NetPolicy", "SandboxError", "SandboxSpec", "SandboxUnavailable",
           "process_uids"]

#: Host uids of Exo accounts (``exo.kernel.sessions.host_uid``: Exo uid N is this + N,
#: ``EXO_UID_BASE`` there).
ACCOUNT_UID_BASE = 300000
ACCOUNT_UIDS = range(ACCOUNT_UID_BASE, ACCOUNT_UID_BASE + 65536)
#: Each account's processes run under host uids of their own, from this range up, so that
#: the counters Linux keeps per uid (inotify instances, pending signals, pipe pages,
#: descriptors in flight) are each process's: one command cannot spend its siblings'.
PROCESS_UID_BASE = 1 << 30
#: Host uids per account. Past this many live processes of one account, two share one.
PROCESS_UIDS = 128


def process_uids(account_uid: int) -> range:
    """The host uids account ``account_uid``'s processes run as (each a uid of its own,
    gid the account's); empty for a uid that is not an Exo account's."""
    if account_uid not in ACCOUNT_UIDS:
        return range(0)
    start = PROCESS_UID_BASE + (account_uid - ACCOUNT_UID_BASE) * PROCESS_UIDS
    return range(start, start + PROCESS_UIDS)


def _ports(ports: tuple[int, ...], what: str) -> tuple[int, ...]:
    out = tuple(ports)
    for port in out:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise SandboxError(f"invalid {what} port {port!r}: expected an integer 0..65535")
    return tuple(sorted(set(out)))


@dataclass(frozen=True)
class NetPolicy:
    """Network reach: ``none`` (own empty namespace), ``tcp`` (listed ports only), ``any``.

    In ``tcp`` mode the host network namespace is shared and Landlock filters TCP bind and
    connect by *port* (Landlock cannot filter by host); non-TCP inet sockets are refused by
    seccomp, since Landlock does not see them.
    """

    mode: NetMode = "none"
    connect_ports: tuple[int, ...] = ()
    bind_ports: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in ("none", "tcp", "any"):
            raise SandboxError(f"invalid net mode {self.mode!r}: expected none, tcp or any")
        object.__setattr__(self, "connect_ports", _ports(self.connect_ports, "connect"))
        object.__setattr__(self, "bind_ports", _ports(self.bind_ports, "bind"))
        if self.mode != "tcp" and (self.connect_ports or self.bind_ports):
            raise SandboxError(f"net mode {self.mode!r} takes no port lists (use mode 'tcp')")

    @classmethod
    def none(cls) -> NetPolicy:
        return cls("none")

    @classmethod
    def tcp(cls, connect: tuple[int, ...] = (), bind: tuple[int, ...] = ()) -> NetPolicy:
        return cls("tcp", tuple(connect), tuple(bind))

    @classmethod
    def any(cls) -> NetPolicy:
        return cls("any")


def _abs_paths(paths: tuple[Path | str, ...], what: str) -> tuple[Path, ...]:
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if not path.is_absolute():
            raise SandboxError(f"{what} path {str(p)!r} is not absolute")
        if "\0" in str(path):
            raise SandboxError(f"{what} path {str(p)!r} contains a NUL byte")
        out.append(path)
    return tuple(out)


def _env(env: Mapping[str, str]) -> Mapping[str, str]:
    for key, value in env.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise SandboxError(f"invalid environment variable name {key!r}")
        if not isinstance(value, str) or "\0" in value:
            raise SandboxError(f"invalid value for environment variable {key!r}")
    return MappingProxyType(dict(env))


@dataclass(frozen=True)
class SandboxSpec:
    """Everything a sandboxed process may reach; anything not named here is refused.

    ``read_paths`` and ``write_paths`` are host paths made visible at the same path inside
    the sandbox (read-only, or read-write with create/remove inside directories).
    ``exec_paths`` are extra locations from which programs may be executed (read-only).
    ``keep_fds`` are passed at the same number (e.g. the bootstrap channel); every other
    inherited descriptor except stdio is closed before the target runs.
    ``bind_sources`` maps some of those granted paths (the destination, seen inside) to a
    different host directory to mount there: the kernel's revocable FUSE export of that
    directory (``exo.kernel.revocable.RevocableDirs``). The destination goes through the
    same checks and gets the same Landlock rules as without it; the source must lie on one
    of the kernel's FUSE mounts (checked when the sandbox is built).
    ``tree``: the host directory of the Exo tree. When given, every granted path (and
    ``cwd``) is an Exo path, shown at that path inside, whose host path is below ``tree``
    (``/home/demo`` is ``tree/home/demo``): the process sees the Exo tree as ``/``
    (``exo.sandbox.namespace``). Without it, granted paths are host paths shown as they are.

    For unmodified Linux programs (POSIX-X, ``[posix_x]`` of a manifest):
    ``host_etc`` are host paths below ``/etc`` shown read-only at their name (checked by
    ``namespace.check_host_etc``: never a secret). ``user`` = ``(name, uid)``: run as that
    uid (and gid) inside a user namespace mapped to the caller's, with a passwd entry for
    it (PostgreSQL refuses to run as uid 0); it still holds no capability. ``fork`` False:
    creating a process (``fork``, ``vfork``, ``clone`` without ``CLONE_THREAD``) fails with
    EAGAIN. ``exec_only`` (None: any program of the system directories): the only files
    that may be executed (Landlock EXECUTE on each, the ELF loader added by the caller).

    ``account`` = ``(name, host_uid)``: the process runs as that unprivileged host uid and
    gid (no supplementary groups, no capability), not as the kernel's uid: each Exo user's
    processes are a different host user (``exo.kernel.sessions.host_uid``). The mounts are
    still made by bubblewrap as the kernel; stage 2 changes the ids before Landlock and
    exec. Not combined with ``user`` (whose user namespace maps to the kernel's uid).
    ``process_uid``: with ``account``, the host uid the process runs as instead of the
    account's, one of :func:`process_uids` (its gid stays the account's); ``/etc/passwd``
    names each of those uids as the account's user.
    ``tmp_user``: with ``tree``, the user whose own ``/tmp`` granted paths in ``/tmp``
    are (``exo.kernel.tree.instance_path``; None: the tree's ``tmp``).
    ``broker``: the seccomp filter hands the refused syscalls (``DENIED_SYSCALLS``) to a
    notifying filter the program installs before it runs (``exo.posix_x.broker``: the
    kernel answers them with Linux's errno and audits them); without one they fail with
    ENOSYS, still refused.
    """

    read_paths: tuple[Path, ...] = ()
    write_paths: tuple[Path, ...] = ()
    exec_paths: tuple[Path, ...] = ()
    net: NetPolicy = field(default_factory=NetPolicy.none)
    memory_max: int | None = None
    pids_max: int | None = None
    cpu_max: float | None = None
    cwd: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    keep_fds: tuple[int, ...] = ()
    bind_sources: Mapping[Path, Path] = field(default_factory=dict)
    tree: Path | None = None
    host_etc: tuple[Path, ...] = ()
    user: tuple[str, int] | None = None
    fork: bool = True
    exec_only: tuple[Path, ...] | None = None
    account: tuple[str, int] | None = None
    process_uid: int | None = None
    broker: bool = False
    tmp_user: str | None = None
    umask: int | None = None  # the program's file mode mask (a shell's `umask`)
    #: (resource, soft, hard) limits it starts with, -1 unlimited (a shell's `ulimit`)
    rlimits: tuple[tuple[int, int, int], ...] = ()

    def host_of(self, dest: Path | str) -> Path:
        """The host path of the granted Exo path ``dest`` (with ``tree``): in the user
        ``tmp_user``'s own ``/tmp`` when it is in ``/tmp`` (``exo.kernel.tree``)."""
        from .namespace import instance_path

        assert self.tree is not None
        return self.tree / instance_path(str(dest).lstrip("/"), self.tmp_user)

    def host_ids(self) -> tuple[int, int] | None:
        """The host (uid, gid) the process runs as: its process uid (else the account's)
        and the account's gid; None without an account."""
        if self.account is None:
            return None
        return (self.process_uid or self.account[1], self.account[1])

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        from .namespace import check_host_etc

        set_(self, "host_etc", tuple(Path(check_host_etc(str(p)))
                                     for p in _abs_paths(tuple(self.host_etc), "etc")))
        if self.user is not None:
            name, uid = self.user
            if (not isinstance(name, str) or not name.replace("-", "").replace("_", "")
                    .isalnum() or not isinstance(uid, int) or not 0 < uid < 65534):
                raise SandboxError(f"user {self.user!r}: expected (name, uid) with a "
                                   "plain name and 0 < uid < 65534")
        if self.account is not None:
            name, uid = self.account
            if (not isinstance(name, str) or not name.replace("-", "").replace("_", "")
                    .isalnum() or type(uid) is not int or not 1000 <= uid < 1 << 31):
                raise SandboxError(f"account {self.account!r}: expected (name, host uid) "
                                   "with a plain name and an unprivileged uid >= 1000")
            if self.user is not None:
                raise SandboxError("a sandbox runs as an account or as a POSIX-X user, "
                                   "not both")
        if self.process_uid is not None and (
                self.account is None or type(self.process_uid) is not int
                or self.process_uid not in process_uids(self.account[1])):
            raise SandboxError(f"process uid {self.process_uid!r}: not one of the "
                               "account's process uids")
        if self.exec_only is not None:
            set_(self, "exec_only", _abs_paths(tuple(self.exec_only), "exec_only"))
        set_(self, "read_paths", _abs_paths(tuple(self.read_paths), "read"))
        set_(self, "write_paths", _abs_paths(tuple(self.write_paths), "write"))
        set_(self, "exec_paths", _abs_paths(tuple(self.exec_paths), "exec"))
        if not isinstance(self.net, NetPolicy):
            raise SandboxError(f"net must be a NetPolicy, not {type(self.net).__name__}")
        if self.memory_max is not None and (
            not isinstance(self.memory_max, int) or self.memory_max < 1 << 20
        ):
            raise SandboxError(f"memory_max must be an integer of at least 1 MiB, "
                               f"got {self.memory_max!r}")
        if self.pids_max is not None and (not isinstance(self.pids_max, int)
                                          or self.pids_max < 1):
            raise SandboxError(f"pids_max must be a positive integer, got {self.pids_max!r}")
        if self.cpu_max is not None and (
            not isinstance(self.cpu_max, int | float) or not math.isfinite(self.cpu_max)
            or not 0.01 <= self.cpu_max <= 4096
        ):
            raise SandboxError(f"cpu_max must be a number of CPUs in 0.01..4096, "
                               f"got {self.cpu_max!r}")
        if self.umask is not None and (type(self.umask) is not int
                                       or not 0 <= self.umask <= 0o777):
            raise SandboxError(f"umask must be a mode mask in 0..0o777, got {self.umask!r}")
        if self.rlimits:
            from ._rlimits import check

            set_(self, "rlimits", check(self.rlimits))
        if self.cwd is not None:
            set_(self, "cwd", _abs_paths((self.cwd,), "cwd")[0])
        set_(self, "env", _env(self.env))
        fds = tuple(self.keep_fds)
        for fd in fds:
            if not isinstance(fd, int) or fd < 3:
                raise SandboxError(f"keep_fds entry {fd!r} is not a descriptor >= 3 "
                                   "(stdio is passed with stdin/stdout/stderr)")
        set_(self, "keep_fds", tuple(sorted(set(fds))))
        set_(self, "bind_sources", self._sources())
        if self.tree is not None:
            set_(self, "tree", _abs_paths((self.tree,), "tree")[0])

    def _sources(self) -> Mapping[Path, Path]:
        if not isinstance(self.bind_sources, Mapping):
            raise SandboxError("bind_sources must map granted paths to source paths")
        granted = {*self.read_paths, *self.write_paths, *self.exec_paths}
        out: dict[Path, Path] = {}
        for dest, source in self.bind_sources.items():
            d = _abs_paths((dest,), "bind destination")[0]
            s = _abs_paths((source,), "bind source")[0]
            if d not in granted:
                raise SandboxError(f"bind destination {str(d)!r} is not a granted path")
            out[d] = s
        return MappingProxyType(out)
