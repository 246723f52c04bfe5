"""Login sessions, kept by the kernel: who is logged in and the capability set they hold.

A login gives the session a capability set in the kernel: a capability space with no
process behind it (an id from ``SESSION_SPACE_BASE`` up, never a process's pid) holding
the user's root set (``exo.kernel.users.session_grants``). Everything the user's shell
starts holds capabilities *derived* from that space (``CapabilityManager.derive_into``),
so the kernel, not the shell, refuses a grant the user does not hold, whatever the shell
asks; ending the session revokes every capability derived from it.

Root's session holds every root capability: its space stays empty and its processes'
capabilities are roots of their own, as the kernel's own spawns are.

Each session also names the host uid its processes run as (``host_uid``): Exo uid N runs
as ``EXO_UID_BASE + N`` on the host, an unprivileged uid no host account uses, so two
users' processes (and root's) are different host users, never uid 0.
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref

from exo.abi.rights import Rights

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from exo.kernel.caps import CapabilityManager
    from exo.kernel.manifest import Grant

#: Capability-space ids of sessions start here; process pids stay far below.
SESSION_SPACE_BASE = 1 << 30
#: The host uid (and gid) of Exo uid N is EXO_UID_BASE + N: outside the host's accounts
#: (Debian gives users 1000-59999 and subordinate ranges from 100000 in steps of 65536).
#: Its processes run under uids of their own (``exo.sandbox.spec.process_uids``, whose
#: ACCOUNT_UID_BASE is this number: not imported, the boot path keeps dataclasses off).
EXO_UID_BASE = 300000
#: Exo uids above this are refused (the host uid must stay below 2**31 and unambiguous).
MAX_EXO_UID = 65535
#: At most this many sessions open at once (logins, su, sudo, shells built by hand):
#: each holds a capability space of a few capabilities.
MAX_SESSIONS = 4096


class SessionError(PermissionError):
    """An unknown or ended session, or a session asking for what it does not hold."""


def host_uid(exo_uid: int) -> int:
    """The unprivileged host uid Exo uid ``exo_uid``'s processes run as."""
    if type(exo_uid) is not int or not 0 <= exo_uid <= MAX_EXO_UID:
        raise SessionError(f"uid {exo_uid!r} is outside 0..{MAX_EXO_UID}")
    return EXO_UID_BASE + exo_uid


class ProcessUids:
    """Which host uids of each account's range (``exo.sandbox.spec.process_uids``) live
    processes run as: each process gets one no live process has, so the counters Linux
    keeps per uid are its own; past the range's size, the least shared one. A uid is given
    back once its process and everything it left in its cgroup are gone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders: dict[int, int] = {}  # uid -> live processes running as it

    def take(self, account_uid: int) -> int | None:
        """A uid for a new process of ``account_uid``; None when the account has no range."""
        from exo.sandbox.spec import process_uids  # (the spawn path: loaded by then)

        uids = process_uids(account_uid)
        if not uids:
            return None
        with self._lock:
            held = self._holders
            uid = next((u for u in uids if u not in held), None)
            if uid is None:
                uid = min(uids, key=held.__getitem__)
            held[uid] = held.get(uid, 0) + 1
            return uid

    def give(self, uid: int) -> None:
        with self._lock:
            left = self._holders.get(uid, 0) - 1
            if left > 0:
                self._holders[uid] = left
            else:
                self._holders.pop(uid, None)

    def held(self) -> int:
        """How many uids are in use (tests)."""
        with self._lock:
            return len(self._holders)


class KernelSession:
    """One login as the kernel keeps it. ``token`` names it to the kernel's API;
    ``grants`` is the root set it was given (None: root's, every root capability)."""

    __slots__ = ("closed", "grants", "home", "host_uid", "space", "token", "uid", "user")

    def __init__(self, token: str, user: str, uid: int, home: str, space: int,
                 grants: list[Grant] | None) -> None:
        self.token = token
        self.user = user
        self.uid = uid
        self.home = home
        self.space = space
        self.grants = grants
        self.host_uid = host_uid(uid)
        self.closed = False

    @property
    def everything(self) -> bool:
        return self.grants is None

    def __repr__(self) -> str:
        return f"<KernelSession {self.user} uid={self.uid} space={self.space}>"


class SessionTable:
    """The open sessions of one kernel (one per capability manager)."""

    def __init__(self, caps: CapabilityManager) -> None:
        self._caps = caps
        self._lock = threading.Lock()
        self._by_token: dict[str, KernelSession] = {}
        self._ids = itertools.count(SESSION_SPACE_BASE)

    def open(self, user: str, uid: int, home: str,
             grants: Sequence[Grant] | None) -> KernelSession:
        """A new session holding ``grants`` (None: every root capability)."""
        with self._lock:
            if len(self._by_token) >= MAX_SESSIONS:
                raise SessionError(f"too many open sessions ({MAX_SESSIONS})")
            space = next(self._ids)
            session = KernelSession(os.urandom(16).hex(), user, uid, home, space,
                                    None if grants is None else list(grants))
            self._caps.create_space(space)
            self._by_token[session.token] = session
        try:
            for g in grants or ():
                self._caps.grant_root(space, g.name, g.rights)
        except BaseException:
            self.close(session.token)
            raise
        return session

    def get(self, token: str) -> KernelSession:
        with self._lock:
            session = self._by_token.get(token) if isinstance(token, str) else None
        if session is None:
            raise SessionError("no such session (logged out, or never logged in)")
        return session

    def close(self, token: str) -> int:
        """End a session: every capability derived from it is revoked (its processes
        lose them at once), then its space goes. Returns how many were revoked."""
        with self._lock:
            session = self._by_token.pop(token, None)
        if session is None:
            return 0
        session.closed = True
        revoked = 0
        for info in self._caps.handles(session.space):
            revoked += self._caps.revoke(session.space, info.handle)
        self._caps.destroy_space(session.space)
        return revoked

    def holds(self, token: str, name: str, rights: str | Rights) -> bool:
        """Whether the session holds ``name`` with ``rights`` (asked of its space)."""
        from exo.kernel.caps import ResourceName

        session = self.get(token)
        if session.everything:
            return True
        try:
            want, wanted = ResourceName.parse(name), Rights.parse(rights)
        except ValueError:  # a name no capability can cover (a NUL, too long...)
            return False
        return any(i.resource.covers(want) and (i.rights & wanted) == wanted
                   for i in self._caps.handles(session.space))

    def derive(self, token: str, pid: int, grants: Sequence[Grant]) -> None:
        """Give process ``pid`` each of ``grants``, derived from the session's set: the
        kernel refuses (``CapabilityDenied``) a grant the session does not hold."""
        session = self.get(token)
        for g in grants:
            if session.everything:
                self._caps.grant_root(pid, g.name, g.rights)
            else:
                self._caps.derive_into(session.space, pid, g.name, g.rights)

    def close_all(self) -> None:
        with self._lock:
            tokens = list(self._by_token)
        for token in tokens:
            self.close(token)


_tables: weakref.WeakKeyDictionary[CapabilityManager, SessionTable] = \
    weakref.WeakKeyDictionary()
_tables_lock = threading.Lock()


def table_for(caps: CapabilityManager) -> SessionTable:
    """The session table of the kernel whose capability manager is ``caps``."""
    with _tables_lock:
        table = _tables.get(caps)
        if table is None:
            table = _tables[caps] = SessionTable(caps)
        return table
